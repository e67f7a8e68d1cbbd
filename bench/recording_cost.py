"""What a recording step costs, feature by feature: `ExplainerCallback` recording every step under settings that
switch its parts off one at a time, against plain `model.fit` steps, all in one process.

Run: `.venv/bin/python bench/recording_cost.py [--problem mlp|cnn] [--repeats N] [--growth-only | --jit-only]`
(`--growth-only`: only the two configurations of issue 15's target, default and matmul roles only; `--jit-only`:
default and default with XLA).

The problems and the timing method are `bench/training_overhead.py`'s (its `build` and `measure`): every
configuration records every Dense/Conv layer at update_freq=1; a configuration's figure is the median recording
step of a window, and its ratio the median over interleaved repeats of (that / the same repeat's median plain
step). Configurations, from the callback's defaults down:
  default              DEFAULT_ROLES (matmul roles + activation step, activation gradient, input features),
                       sampled thresholds, near-zero totals from DEFAULT_NEAR_ZERO_SAMPLE rows/positions
  default, jit=True    the same with the aggregate kernels XLA-compiled (the default is jit=False)
  matmul roles only    roles forward + kernel_gradient (the records of contract version 1); every row below too
  near-zero rows/pos N the same with near_zero_sample_size=N (fewer sampled rows: cheaper, noisier per unit)
  near-zero off        near_zero="off": all-cells totals only (the near-zero columns are zeros)
  ... fixed thresholds near_zero="off" and explicit thresholds (no threshold is computed)
  ... forward only     the same, roles=("forward",)
  ... no scalars       the same, scalars=False (no plain scalars; the records themselves are still written)
The differences between adjacent rows attribute the recording step's overhead to its parts. The target lines:
issue 15's bound on what the activation and input-feature records add to a recording step (default against
matmul roles only, the median over repeats of their ratio), and issue 4's every-step target for the default
settings (bench/training_overhead.py measures all its targets).
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import training_overhead  # noqa: E402

from tb_matmul_explainer.keras import DEFAULT_NEAR_ZERO_SAMPLE, DEFAULT_ROLES, ExplainerCallback  # noqa: E402

TARGET_EVERY_STEP = training_overhead.TARGETS[1]
TARGET_GROWTH = 0.10  # issue 15: the new records add at most 10% to a recording step
WINDOW = 8  # recording steps timed per measurement
FIXED = (1e-3, 1e-3, 1e-3)  # explicit thresholds (first operand, second operand, result)


def configurations(problem):
    """(label, ExplainerCallback keyword arguments)."""
    kind = "conv" if problem == "cnn" else "dense"
    sample = DEFAULT_NEAR_ZERO_SAMPLE[kind]
    off = {"near_zero": "off"}
    return [
        ("default", {"roles": DEFAULT_ROLES}),
        ("default, jit=True", {"roles": DEFAULT_ROLES, "jit": True}),
        ("matmul roles only", {}),
        (f"near-zero rows/pos {sample // 2}", {"near_zero_sample_size": sample // 2}),
        (f"near-zero rows/pos {sample // 4}", {"near_zero_sample_size": sample // 4}),
        ("near-zero off", off),
        ("... fixed thresholds", {**off, "thresholds": FIXED}),
        ("... forward only", {**off, "thresholds": FIXED, "roles": ("forward",)}),
        ("... no scalars", {**off, "thresholds": FIXED, "roles": ("forward",), "scalars": False}),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--repeats", type=int, default=5)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--growth-only", action="store_true", help="only default and matmul roles only")
    only.add_argument("--jit-only", action="store_true", help="only default and default, jit=True")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    print(f"machine: {training_overhead.machine()}")
    model, data = training_overhead.build(args.problem)
    configs = configurations(args.problem)
    if args.growth_only or args.jit_only:
        keep = ("default", "matmul roles only" if args.growth_only else "default, jit=True")
        configs = [c for c in configs if c[0] in keep]
    with tempfile.TemporaryDirectory() as log_root:
        callbacks = {}
        for i, (label, options) in enumerate(configs):
            options = {"roles": ("forward", "kernel_gradient"), **options}
            callbacks[label] = ExplainerCallback(os.path.join(log_root, str(i)), update_freq=1, **options)
            training_overhead.measure(model, data, 2, callbacks[label])  # traces its recording function
        steps = {label: [] for label, _ in configs}
        ratios = {label: [] for label, _ in configs}
        plain = []
        for repeat in range(args.repeats):
            _, _, other = training_overhead.measure(model, data, 2 * WINDOW, None)
            plain.append(statistics.median(other))
            order = configs if repeat % 2 == 0 else configs[::-1]  # no configuration always runs first
            for label, _ in order:
                _, recording, _ = training_overhead.measure(model, data, WINDOW, callbacks[label])
                steps[label].append(statistics.median(recording))
                ratios[label].append(steps[label][-1] / plain[-1])
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        for callback in callbacks.values():
            callback.on_train_end()

    base = statistics.median(plain)
    default = statistics.median(steps["default"])
    print(
        f"{args.problem}, batch {training_overhead.BATCH}; recording every step; median of {args.repeats} "
        f"interleaved repeats; plain step {base * 1e3:.2f} ms"
    )
    print(f"{'configuration':28s} {'step ms':>8s} {'x plain':>8s} {'share of default overhead':>26s}")
    for label, _ in configs:
        t = statistics.median(steps[label])
        share = (t - base) / (default - base) if default > base else float("nan")
        print(f"{label:28s} {t * 1e3:8.2f} {statistics.median(ratios[label]):8.2f} {share:26.0%}")
    if "matmul roles only" in steps:
        growth = statistics.median(a / b for a, b in zip(steps["default"], steps["matmul roles only"])) - 1
        print(
            f"target {args.problem} recording step growth from the activation and input-feature records: "
            f"{growth:+.0%} (bound {TARGET_GROWTH:+.0%}): {'met' if growth <= TARGET_GROWTH else 'missed'}"
        )
    else:
        print("(--jit-only: the growth target is not measured; run without --jit-only for it)")
    if "default, jit=True" in steps:
        change = statistics.median(a / b for a, b in zip(steps["default, jit=True"], steps["default"])) - 1
        print(f"with XLA a recording step takes {change:+.0%} (median over repeats of the ratio to default)")
    ratio = statistics.median(ratios["default"])
    print(
        f"target {args.problem} every step, default settings: {ratio:.2f}x (bound {TARGET_EVERY_STEP}x): "
        f"{'met' if ratio <= TARGET_EVERY_STEP else 'missed'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
