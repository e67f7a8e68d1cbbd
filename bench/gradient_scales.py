"""Per-layer gradient scales of healthy and vanishing-gradient models, measured with plain TensorFlow (no product
code): the figures that calibrate a scale-free vanishing-gradient rule.

Run: `.venv/bin/python bench/gradient_scales.py [--models a,b] [--steps 30] [--csv DIR]`.

Each model of `real_models.MODELS` trains normally (its own optimizer, batch 32, GradientTape) on locally made
data; at steps 0, 10, 20 and the last, for every layer with a kernel: g = mean|dW|, w = mean|W|, r = g / w and
u = mean|W_after - W_before| / w (the update-to-weight ratio). Printed per model and step: the spread of r and of
g across layers (min, 5th percentile, median, max, max/min); then per layer its worst max(r)/r and max(g)/g over
the measured steps (the layers with the largest first), whether a BatchNormalization follows it; then candidate
rules: how many layers each bound B would flag. For convolutions: the share of kernel-gradient entries that are
exactly zero (a 3x3 SAME kernel on a 1x1 feature map only ever meets padding with its outer taps).
"""

import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import real_models  # noqa: E402
import tensorflow as tf  # noqa: E402
from training_overhead import machine  # noqa: E402

BATCH = 32
BOUNDS = (10, 30, 100, 300, 1000, 10000)


def train_and_measure(name, steps):
    """{step: {layer: (g, w, r, u, zero share of dW)}}, the kernel layers, and seconds per step."""
    spec = real_models.MODELS[name]
    keras.utils.set_random_seed(0)
    model, optimizer = spec.build(), spec.optimizer()
    layers = real_models.kernel_layers(model)
    x, y = spec.data(BATCH * steps, 0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    variables = model.trainable_variables
    kernels = [layer.kernel for layer in layers]
    where = [next(i for i, v in enumerate(variables) if v is k) for k in kernels]

    @tf.function
    def step_fn(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, [grads[i] for i in where]

    measured = {}
    at = {0, 10, 20, steps - 1}
    started = time.perf_counter()
    for s in range(steps):
        xb, yb = x[s * BATCH : (s + 1) * BATCH], y[s * BATCH : (s + 1) * BATCH]
        before = [k.numpy() for k in kernels] if s in at else None
        loss, grads = step_fn(xb, yb)
        if s in at:
            rows = {}
            for layer, k, w0, g in zip(layers, kernels, before, grads):
                g = g.numpy()
                gm, wm = float(np.abs(g).mean()), float(np.abs(w0).mean())
                u = float(np.abs(k.numpy() - w0).mean()) / wm
                rows[layer.path] = (gm, wm, gm / wm, u, float((g == 0).mean()))
            measured[s] = rows
            print(f"  step {s}: loss {float(loss):.3f} ({time.perf_counter() - started:.0f} s so far)", flush=True)
    return measured, layers, (time.perf_counter() - started) / steps


def spread(values):
    v = np.asarray(values)
    return (
        f"min {v.min():.3g}  p5 {np.percentile(v, 5):.3g}  median {np.median(v):.3g}  max {v.max():.3g}  "
        f"max/min {v.max() / v.min() if v.min() > 0 else np.inf:.3g}"
    )


def report(name, measured, layers):
    names = [layer.path for layer in layers]
    bn = {layer.path: real_models.followed_by_batch_norm(layer) for layer in layers}
    print(
        f"{name}: {len(names)} kernel layers, {sum(bn.values())} followed by BatchNormalization"
        + (f" (not: {[n for n in names if not bn[n]]})" if 0 < sum(bn.values()) < len(names) else "")
    )
    worst_r, worst_g, worst_med = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    first_last, neighbour = [], []
    for s, rows in measured.items():
        r = np.array([rows[n][2] for n in names])
        g = np.array([rows[n][0] for n in names])
        u = np.array([rows[n][3] for n in names])
        print(f"  step {s:2d}  r = |dW|/|W|: {spread(r)}")
        print(f"           |dW|:        {spread(g)}")
        print(f"           Adam/SGD update/|W|: {spread(u)}")
        smallest = np.argsort(r)[:3]
        print(
            "           smallest r: "
            + ", ".join(f"{names[i]} {r[i]:.3g}" for i in smallest)
            + "; smallest |dW|: "
            + ", ".join(f"{names[i]} {g[i]:.3g}" for i in np.argsort(g)[:3])
        )
        for n, ri, gi in zip(names, r, g):
            worst_r[n] = max(worst_r[n], r.max() / ri if ri > 0 else np.inf)
            worst_g[n] = max(worst_g[n], g.max() / gi if gi > 0 else np.inf)
            worst_med[n] = max(worst_med[n], np.median(r) / ri if ri > 0 else np.inf)
        first_last.append(r[-1] / r[0] if r[0] > 0 else np.inf)
        neighbour.append(max(r[i + 1] / r[i] for i in range(len(r) - 1)) if len(r) > 1 else 1.0)
    order = sorted(names, key=lambda n: -worst_r[n])
    shown = order if len(order) <= 14 else order[:10]
    print("  worst over the measured steps, per layer (max(r)/r, median(r)/r, max(|dW|)/|dW|, BN after):")
    for n in shown:
        print(f"    {n:36s} {worst_r[n]:9.3g} {worst_med[n]:9.3g} {worst_g[n]:9.3g}  {'BN' if bn[n] else '-'}")
    if len(order) > len(shown):
        print(
            f"    ... {len(order) - len(shown)} more layers, the next worst max(r)/r {worst_r[order[len(shown)]]:.3g}"
        )
    print("  layers flagged (at any measured step) by bound B:   " + "  ".join(f"B={b}" for b in BOUNDS))
    for label, worst in (
        ("max(r)/r >= B", worst_r),
        ("median(r)/r >= B", worst_med),
        ("max|dW|/|dW| >= B (old)", worst_g),
    ):
        print(
            f"    {label:28s} " + "  ".join(f"{sum(v >= b for v in worst.values()):>{len(str(b)) + 2}}" for b in BOUNDS)
        )
    print(
        f"  r(last layer)/r(first layer) per step: {[f'{v:.3g}' for v in first_last]}; "
        f"largest r(next)/r(layer) between neighbours per step: {[f'{v:.3g}' for v in neighbour]}"
    )
    zeros = {n: max(rows[n][4] for rows in measured.values()) for n in names}
    zero_layers = [n for n in names if zeros[n] > 0.01]
    if zero_layers:
        print(
            "  kernel-gradient entries exactly zero (largest share over steps), layers above 1%: "
            + ", ".join(f"{n} {zeros[n]:.3f}" for n in zero_layers)
        )
    return worst_r, worst_med, worst_g


def write_csv(path, name, measured):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["model", "step", "layer", "mean_abs_dW", "mean_abs_W", "r", "update_over_W", "dW_zero_share"])
        for s, rows in measured.items():
            for layer, values in rows.items():
                out.writerow([name, s, layer, *(f"{v:.6g}" for v in values)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sigmoid_mlp,relu_mlp,transformer,mobilenet_v2,resnet50")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--csv", help="write each model's per-layer figures to DIR/<model>.csv")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    unknown = [m for m in models if m not in real_models.MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {sorted(real_models.MODELS)}")
    if args.steps < 21:
        parser.error(f"--steps must be at least 21 (measured at steps 0, 10, 20 and the last), got {args.steps}")
    print(f"machine: {machine()}; batch {BATCH}, {args.steps} steps", flush=True)
    for name in models:
        print(f"{name}: training ...", flush=True)
        measured, layers, per_step = train_and_measure(name, args.steps)
        print(f"{name}: {per_step:.2f} s per step")
        report(name, measured, layers)
        if args.csv:
            os.makedirs(args.csv, exist_ok=True)
            write_csv(os.path.join(args.csv, f"{name}.csv"), name, measured)
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
