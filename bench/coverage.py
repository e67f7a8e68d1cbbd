"""Coverage of real architectures: which layers are recorded and what share of each model's multiply-adds.

    python bench/coverage.py [--model NAME ...]

Builds (no training, nothing downloaded) keras.applications MobileNetV2, EfficientNetB0, ResNet50, DenseNet121
(`weights=None`, 32x32x3, the smallest input each accepts), the 2-block Transformer classifier and the LSTM/GRU
classifier of bench/real_models.py, and prints per model the recorded layers and matmuls and the share of the
multiply-adds per sample that the recorder would record (`LayerRecorder.coverage`, counted from shapes), then the
matmuls that are not recorded, grouped by reason. Ends with the target line (over the models measured); exits 0
either way. `--model` measures only the models whose name contains NAME (case-insensitive), e.g. `--model
transformer`.
"""

import argparse
import collections
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import real_models  # noqa: E402

from tb_matmul_explainer.keras import LayerRecorder, UnsupportedLayerWarning  # noqa: E402
from tb_matmul_explainer.keras.coverage import percent  # noqa: E402

BOUND = 0.99
MODELS = {
    "MobileNetV2": real_models.mobilenet_v2,
    "EfficientNetB0": real_models.efficientnet_b0,
    "ResNet50": real_models.resnet50,
    "DenseNet121": real_models.densenet121,
    "Transformer (2 blocks)": real_models.transformer,
    "LSTM -> GRU": real_models.recurrent,
}


def measure(build):
    model = build()
    with tempfile.TemporaryDirectory() as log_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedLayerWarning)
        recorder = LayerRecorder(model, log_dir)
        return recorder.coverage(), recorder.skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description="Share of each real model's multiply-adds that is recorded.")
    parser.add_argument("--model", action="append", help="only the models whose name contains this (repeatable)")
    wanted = parser.parse_args(argv).model
    chosen = {n: b for n, b in MODELS.items() if not wanted or any(w.lower() in n.lower() for w in wanted)}
    if not chosen:
        parser.error(f"--model {wanted} matches none of {list(MODELS)}")
    worst = None
    for name, build in chosen.items():
        coverage, skipped = measure(build)
        print(f"== {name}: {coverage.line().split(': ', 1)[1]}")
        by_reason = collections.defaultdict(list)
        for path, reason in skipped.items():
            by_reason[reason].append(path)
        for reason, paths in by_reason.items():
            shown = ", ".join(paths[:3]) + (f", ... ({len(paths)} in all)" if len(paths) > 3 else "")
            print(f"   not recorded: {shown}: {reason}")
        share = coverage.share if coverage.share is not None else 0.0
        if worst is None or share < worst[1]:
            worst = (name, share)
    met = "met" if worst[1] >= BOUND else "missed"
    print(
        f"target multiply-adds recorded, worst model: {percent(worst[1])} ({worst[0]}) "
        f"(bound {100 * BOUND:.0f}%): {met}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
