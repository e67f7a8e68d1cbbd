"""Bytes on disk per recorded step: what `ExplainerCallback` writes for a ResNet50 (contract version 3).

Run: `python bench/record_size.py [--steps 12] [--quick] [--logdir DIR (kept)]`.

Trains `keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)` (`--quick`: a small CNN
with two BatchNorm residual blocks) on random local data (batch 32, Adam, sparse categorical cross-entropy;
nothing downloads) with `ExplainerCallback(logdir, update_freq=1)` (default roles, default `unit_detail_every`, so
steps 0 and 10 carry unit detail, the others are compact) for `--steps` steps. The first recording step of ResNet50
traces and compiles the instrumented step: 5-11 minutes on a 2-core machine (11 with other work on it).

Then it reads the event files of `<logdir>/train` and, per recorded step, sums the serialized size of each event
with summary values (`len(event.SerializeToString())` plus the 16 bytes of TFRecord framing): the plugin's records
and the callback's scalars. It prints per step: bytes, records, and whether the records carry unit detail; the
medians of the detailed and compact steps; the mean over one cycle of `unit_detail_every` recorded steps, (one
detailed + (N - 1) compact) / N; and, for comparison, the contract-version-2 size of the same events (every
record a `[rows + 1, 40]` float64 tensor, rows from the record's header, the rest of each event unchanged).

Ends with one line (exit status 0 either way):
  target ResNet50 recorded step on disk, mean at the default unit_detail_every: X MB (bound 2 MB): met|missed
"""

import argparse
import collections
import glob
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

BATCH = 32
BOUND_MB = 2.0
FRAMING = 16  # TFRecord: length (8) + its CRC (4) + the data's CRC (4)


def build(quick):
    """(model, name): ResNet50 (32x32x3, 10 classes, no weights) or, `quick`, a two-block residual CNN."""
    import keras

    keras.utils.set_random_seed(0)
    if not quick:
        return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10), "ResNet50"
    layers = keras.layers
    x = inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same", name="stem")(x)
    for block in (1, 2):
        y = layers.Conv2D(16, 3, padding="same", name=f"block{block}_conv")(x)
        y = layers.BatchNormalization(name=f"block{block}_bn")(y)
        x = layers.ReLU(name=f"block{block}_relu")(layers.Add(name=f"block{block}_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="residual_cnn"), "residual CNN (quick)"


def train(logdir, steps, quick):
    """Fits the model `steps` steps with the callback writing to `logdir`; returns (model name, unit_detail_every)."""
    import keras
    import numpy as np

    from tb_matmul_explainer.keras import ExplainerCallback

    model, name = build(quick)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((BATCH * steps, 32, 32, 3), dtype="float32")
    y = rng.integers(0, 10, BATCH * steps).astype("int32")
    callback = ExplainerCallback(logdir, update_freq=1)
    start = time.monotonic()
    model.fit(x, y, batch_size=BATCH, epochs=1, callbacks=[callback], verbose=0, shuffle=False)
    print(f"trained {name}: {steps} steps in {time.monotonic() - start:.0f} s", flush=True)
    return name, callback.unit_detail_every


def as_version_2(event, value, rows):
    """The serialized size of `event` if `value`'s record were a contract-version-2 `[rows + 1, 40]` tensor."""
    from tb_matmul_explainer import metadata

    old = type(event)()
    old.CopyFrom(event)
    for v in old.summary.value:
        if v.tag == value.tag:
            del v.tensor.tensor_shape.dim[:]
            v.tensor.tensor_shape.dim.add(size=rows + 1)
            v.tensor.tensor_shape.dim.add(size=metadata.COLUMNS)
            v.tensor.tensor_content = bytes((rows + 1) * metadata.COLUMNS * 8)
    return len(old.SerializeToString())


def measure(train_dir):
    """{step: Counter(bytes, v2_bytes, records, detailed)} over the events with summary values in `train_dir`."""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    from tb_matmul_explainer import metadata

    steps, ours = collections.defaultdict(collections.Counter), set()
    for path in sorted(glob.glob(os.path.join(train_dir, "events.out.tfevents.*"))):
        for data in event_file_loader.RawEventFileLoader(path).Load():
            event = event_pb2.Event.FromString(data)
            if not event.HasField("summary"):
                continue
            size = len(event.SerializeToString()) + FRAMING
            step = steps[event.step]
            step["bytes"] += size
            step["v2_bytes"] += size
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                    ours.add(value.tag)  # (the metadata may come with a tag's first event only)
                if value.tag not in ours:
                    continue  # the callback's scalars, the not-recorded texts
                array = tensor_util.make_ndarray(value.tensor)
                rows = int(array[metadata.HEADER_ROWS])
                step["records"] += 1
                step["detailed"] += metadata.has_unit_detail(array)
                step["v2_bytes"] += as_version_2(event, value, rows) + FRAMING - size
    return steps


def report(name, steps, every):
    """Prints the per-step table, the cycle mean, the version-2 comparison and the target line."""
    print(f"\n{'step':>5s} {'bytes':>12s} {'records':>8s} {'unit detail':>12s} {'as version 2':>13s}")
    for s, c in sorted(steps.items()):
        detail = "yes" if c["detailed"] == c["records"] else ("no" if not c["detailed"] else "mixed")
        print(f"{s:5d} {c['bytes']:12,d} {c['records']:8d} {detail:>12s} {c['v2_bytes']:13,d}")
    detailed = [c for c in steps.values() if c["records"] and c["detailed"] == c["records"]]
    compact = [c for c in steps.values() if c["records"] and not c["detailed"]]
    if not detailed or not compact:
        print("need at least one detailed and one compact recorded step (--steps >= 2)")
        print(f"target {name} recorded step on disk, mean at the default unit_detail_every: n/a (bound 2 MB): missed")
        return

    def median(group, key):
        return statistics.median(c[key] for c in group)

    mean = (median(detailed, "bytes") + (every - 1) * median(compact, "bytes")) / every
    largest = max(steps.items(), key=lambda item: item[1]["bytes"])
    print(f"\nmedian detailed step: {median(detailed, 'bytes') / 1e6:.3f} MB ({len(detailed)} steps)")
    print(f"median compact step:  {median(compact, 'bytes') / 1e6:.3f} MB ({len(compact)} steps)")
    print(f"largest step: {largest[1]['bytes'] / 1e6:.3f} MB (step {largest[0]})")
    print(f"mean over a cycle of {every} recorded steps (1 detailed + {every - 1} compact): {mean / 1e6:.3f} MB")
    v2 = statistics.median(c["v2_bytes"] for c in steps.values() if c["records"])
    print(f"the same records as contract version 2 ([rows + 1, 40] float64): {v2 / 1e6:.3f} MB per step (median)")
    print(
        f"target {name} recorded step on disk, mean at the default unit_detail_every: {mean / 1e6:.2f} MB "
        f"(bound {BOUND_MB:g} MB): {'met' if mean <= BOUND_MB * 1e6 else 'missed'}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="steps trained, each recorded (update_freq=1)")
    parser.add_argument("--quick", action="store_true", help="a two-block residual CNN instead of ResNet50")
    parser.add_argument("--logdir", help="write here and keep it (default: a temporary directory, removed)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(
        f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), python "
        f"{sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}"
    )
    logdir = args.logdir or tempfile.mkdtemp(prefix="mmx_record_size_")
    try:
        if not args.quick:
            print("training ResNet50; its first recording step traces and optimises: 2-5 min on 2 cores", flush=True)
        name, every = train(logdir, args.steps, args.quick)
        report(name, measure(os.path.join(logdir, "train")), every)
    finally:
        if not args.logdir:
            shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
