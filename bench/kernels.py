"""Benchmark of the per-unit aggregate kernels (`tb_matmul_explainer.aggregates`) against the op itself and the
per-cell route (classify every cell with `ops`, then reduce per unit).

Run: `.venv/bin/python bench/kernels.py [--repeats N] [--no-xla]`. Prints the machine, one table (each figure
the median of interleaved repeats after warm-up, everything in `tf.function`, all in one process) and one line per
target (`target <what>: <figure> (bound <bound>): met|missed`); exits 0 either way.

Columns: `op ms` the layer's own product (reference); `all x` per-unit totals over all cells (near_zero="off") as
a ratio to the op; `near0 x` with near-zero cells too (near_zero="exact"; the result passed in, as a layer has it);
`near0s x` the same with near_zero="sampled" and the Keras callback's default sample sizes
(`keras.DEFAULT_NEAR_ZERO_SAMPLE`: 32 batch rows of a dense layer, 1024 (batch, position) pairs of a convolution);
`cell x` the per-cell route: nine products of class masks and nine of class-masked values, reduced per unit over
all cells and over near-zero cells; `all/cell`, `near0/cell` the speed-ups over the per-cell route. Every
explanation column includes computing its thresholds: rows `sampled` (threshold.sampled_threshold) and `exact`
(threshold.percentile_threshold). Targets are judged on the `sampled` rows; the near-zero target twice, with exact
near-zero totals and with near_zero="sampled" (the approximation the issue allows as an option), whose error
against exact is printed too.
"""

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the table readable

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tb_matmul_explainer import aggregates, ops, threshold  # noqa: E402
from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer.keras import DEFAULT_NEAR_ZERO_SAMPLE  # noqa: E402

tf.get_logger().setLevel("ERROR")  # several tf.functions share one lambda's source: retracing notes are noise

TARGET_ALL = 1.0
TARGET_NEAR_ZERO = 5.0
TARGET_SPEEDUP = 20.0


def _processor():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _data(seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return tf.constant(rng.standard_normal(shape).astype(np.float32))

    relu = lambda t: tf.nn.relu(t)  # noqa: E731  (layer inputs after a ReLU: about half exact zeros)
    return {
        "dense": dict(x=relu(normal(256, 1024)), w=normal(1024, 1024) * 0.03, d=normal(256, 1024) * 1e-3),
        "conv": dict(x=relu(normal(32, 32, 32, 64)), w=normal(3, 3, 64, 64) * 0.04, d=normal(32, 32, 32, 64) * 1e-3),
    }


def _per_cell(classify, result, opts_thresholds, unit_axis_last=True):
    """The per-cell route: classify every cell, then reduce counts and sums per unit (all and near-zero)."""
    counts, sums = classify(opts_thresholds[:2])
    _, zero, _, _ = ops.classification_mask(result, threshold=opts_thresholds[2])
    axes = list(range(counts.shape.rank - 2))
    zf = tf.cast(zero, counts.dtype)[..., None]
    return (
        tf.reduce_sum(counts, axes),
        tf.reduce_sum(sums, axes),
        tf.reduce_sum(counts * zf, axes),
        tf.reduce_sum(sums * zf, axes),
    )


def _thresholds(tensors, method, confidence=0.95):
    if method == "exact":
        return tuple(threshold.percentile_threshold(t, confidence) for t in tensors)
    return tuple(threshold.sampled_threshold(t, confidence) for t in tensors)


def build_cases(jit=True):
    data = _data()
    dn, cv = data["dense"], data["conv"]
    strides, padding = (1, 1), "SAME"
    kshape = cv["w"].shape.as_list()
    in_shape = cv["x"].shape.as_list()
    cases, errors = [], {}

    def add(name, op, operands, kernel, classify):
        def agg(*args, **kwargs):
            return kernel(*args, jit=jit, **kwargs)

        sample = DEFAULT_NEAR_ZERO_SAMPLE["conv" if name.startswith("conv") else "dense"]
        result = tf.function(op)(*operands)
        fns = {"op": (tf.function(op), operands)}
        for method in ("sampled", "exact"):
            fns[f"all {method}"] = (
                tf.function(lambda *a, m=method: agg(*a, near_zero="off", threshold_method=m)),
                operands,
            )
            fns[f"near0 {method}"] = (
                tf.function(lambda *a, m=method: agg(*a[:-1], result=a[-1], near_zero="exact", threshold_method=m)),
                operands + (result,),
            )
            fns[f"near0s {method}"] = (
                tf.function(
                    lambda *a, m=method: agg(
                        *a[:-1], result=a[-1], near_zero="sampled", threshold_method=m, near_zero_sample_size=sample
                    )
                ),
                operands + (result,),
            )
            fns[f"cell {method}"] = (
                tf.function(lambda *a, m=method: _per_cell(lambda th: classify(*a[:-1], th), a[-1], _thresholds(a, m))),
                operands + (result,),
            )
        cases.append((name, fns))
        errors[name] = _sampling_error(lambda **k: agg(*operands, result=result, threshold_method="exact", **k), sample)

    add(
        "dense 256x1024 @ 1024x1024",
        lambda x, w: x @ w,
        (dn["x"], dn["w"]),
        lambda x, w, **k: aggregates.dense(x, w, **k),
        lambda x, w, th: ops.matmul_classify(x, w, thresholds=th),
    )
    add(
        "dense kernel gradient",
        lambda x, d: tf.linalg.matmul(x, d, transpose_a=True),
        (dn["x"], dn["d"]),
        lambda x, d, **k: aggregates.dense_kernel_gradient(x, d, **k),
        lambda x, d, th: ops.matmul_classify(tf.transpose(x), d, thresholds=th),
    )
    add(
        "dense input gradient",
        lambda d, w: tf.linalg.matmul(d, w, transpose_b=True),
        (dn["d"], dn["w"]),
        lambda d, w, **k: aggregates.dense_input_gradient(d, w, **k),
        lambda d, w, th: ops.matmul_classify(d, tf.transpose(w), thresholds=th),
    )
    add(
        "conv2d 32x32x32x64 * 3x3x64x64 SAME",
        lambda x, w: conv_lib.forward(x, w, strides, padding),
        (cv["x"], cv["w"]),
        lambda x, w, **k: aggregates.conv(x, w, strides, padding, **k),
        lambda x, w, th: ops.conv_classify(x, w, strides, padding, thresholds=th),
    )
    add(
        "conv2d kernel gradient",
        lambda x, d: conv_lib.backprop_filter(x, d, kshape, strides, padding),
        (cv["x"], cv["d"]),
        lambda x, d, **k: aggregates.conv_kernel_gradient(x, d, kshape, strides, padding, **k),
        lambda x, d, th: ops.conv_backprop_filter_classify(x, d, kshape, strides, padding, thresholds=th),
    )
    add(
        "conv2d input gradient",
        lambda d, w: conv_lib.backprop_input(d, w, in_shape, strides, padding),
        (cv["d"], cv["w"]),
        lambda d, w, **k: aggregates.conv_input_gradient(d, w, in_shape, strides, padding, **k),
        lambda d, w, th: ops.conv_backprop_input_classify(d, w, in_shape, strides, padding, thresholds=th),
    )
    return cases, errors


def _shares(counts, per_unit=False):
    """Near-zero pair shares `[1, 9]` of the whole layer, or `[U, 9]` of each unit."""
    counts = counts.numpy()
    if not per_unit:
        counts = counts.sum(0, keepdims=True)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def _sampling_error(aggregate, sample, seeds=5):
    """How far near_zero="sampled" lands from exact (exact thresholds, so that only the sampling differs), worst
    over `seeds` seeds: (largest error of a layer-wide pair share, mean over units of a unit's largest pair-share
    error, units with near-zero cells only)."""
    exact = aggregate(near_zero="exact")
    has = exact.near_zero_cells.numpy() > 0
    layer, unit = 0.0, 0.0
    for seed in range(seeds):
        est = aggregate(near_zero="sampled", near_zero_sample_size=sample, seed=seed)
        layer = max(layer, float(np.abs(_shares(est.near_zero_counts) - _shares(exact.near_zero_counts)).max()))
        per_unit = np.abs(_shares(est.near_zero_counts, True) - _shares(exact.near_zero_counts, True)).max(1)
        unit = max(unit, float(per_unit[has].mean()) if has.any() else 0.0)
    return layer, unit


def _run(fn, args):
    out = fn(*args)
    for t in tf.nest.flatten(out):
        t.numpy()


def measure(cases, repeats, warmup=2):
    times = {(c, k): [] for c, fns in cases for k in fns}
    for _ in range(warmup):
        for _case, fns in cases:
            for fn, args in fns.values():
                _run(fn, args)
    for _ in range(repeats):
        for c, fns in cases:
            for k, (fn, args) in fns.items():
                start = time.perf_counter()
                _run(fn, args)
                times[(c, k)].append(time.perf_counter() - start)
    return {key: statistics.median(v) * 1e3 for key, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-xla", action="store_true", help="run the aggregate kernels without XLA")
    args = parser.parse_args(argv)

    print(
        f"machine: {os.cpu_count()} CPUs, {_processor()}; {platform.platform()}; TensorFlow {tf.__version__}; "
        f"devices: {', '.join(d.device_type for d in tf.config.list_logical_devices())}"
    )
    cases, errors = build_cases(jit=not args.no_xla)
    med = measure(cases, args.repeats)

    header = (
        f"{'case':38s} {'thresholds':10s} {'op ms':>8s} {'all x':>7s} {'near0 x':>8s} {'near0s x':>9s} "
        f"{'cell x':>8s} {'all/cell':>9s} {'near0/cell':>10s}"
    )
    print(header)
    print("-" * len(header))
    worst = {"all": 0.0, "near0": 0.0, "near0s": 0.0, "all_speedup": float("inf"), "near0_speedup": float("inf")}
    for name, _ in cases:
        op = med[(name, "op")]
        for method in ("sampled", "exact"):
            a, n, ns, c = (med[(name, f"{k} {method}")] for k in ("all", "near0", "near0s", "cell"))
            print(
                f"{name:38s} {method:10s} {op:8.2f} {a / op:7.2f} {n / op:8.2f} {ns / op:9.2f} {c / op:8.1f} "
                f"{c / a:9.1f} {c / n:10.1f}"
            )
            if method == "sampled":
                worst["all"] = max(worst["all"], a / op)
                worst["near0"] = max(worst["near0"], n / op)
                worst["near0s"] = max(worst["near0s"], ns / op)
                worst["all_speedup"] = min(worst["all_speedup"], c / a)
                worst["near0_speedup"] = min(worst["near0_speedup"], c / n)
    print(
        f"(op in ms, other columns ratios; each figure the median of {args.repeats} interleaved repeats; "
        f"XLA {'off' if args.no_xla else 'on'})"
    )
    print(f"note: near_zero='sampled' instead of 'exact', worst case: {worst['near0s']:.2f}x the op")
    print(
        "error of near_zero='sampled' (default sample sizes, exact thresholds, worst of 5 seeds): largest error "
        "of a layer-wide near-zero pair share; mean over units of a unit's largest pair-share error"
    )
    for name, _ in cases:
        layer, unit = errors[name]
        print(f"  {name:38s} layer {layer:.4f}  unit {unit:.4f}")
    targets = [
        ("all-cells totals / op, worst case", worst["all"], TARGET_ALL, "<=", worst["all"] <= TARGET_ALL),
        (
            "near-zero totals / op, worst case",
            worst["near0"],
            TARGET_NEAR_ZERO,
            "<=",
            worst["near0"] <= TARGET_NEAR_ZERO,
        ),
        (
            "near-zero totals with near_zero='sampled' (the callback's default) / op, worst case",
            worst["near0s"],
            TARGET_NEAR_ZERO,
            "<=",
            worst["near0s"] <= TARGET_NEAR_ZERO,
        ),
        (
            "all-cells speed-up over the per-cell route, worst case",
            worst["all_speedup"],
            TARGET_SPEEDUP,
            ">=",
            worst["all_speedup"] >= TARGET_SPEEDUP,
        ),
        (
            "near-zero speed-up over the per-cell route, worst case",
            worst["near0_speedup"],
            TARGET_SPEEDUP,
            ">=",
            worst["near0_speedup"] >= TARGET_SPEEDUP,
        ),
    ]
    for what, figure, bound, rel, ok in targets:
        print(f"target {what}: {figure:.2f}x (bound {rel} {bound:g}x): {'met' if ok else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
