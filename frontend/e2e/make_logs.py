"""Writes the log directories the browser tests serve, with tb_matmul_explainer's own summary ops.

    python frontend/e2e/make_logs.py OUT_DIR

OUT_DIR/demo: a small custom training loop (GradientTape) on synthetic data, recorded with
`tb_matmul_explainer.summary` (forward, kernel gradient and input gradient of every Dense layer):
  healthy                       a ReLU MLP trained normally
  dying                         the same MLP with a negative bias and a large learning rate (dying ReLUs)
  <img src=x onerror=alert(1)>  a run whose NAME is an HTML injection attempt, with one layer renamed (so the
                                compare view has layers missing in one run or the other); from step 60 on, 16 of
                                that layer's (hidden_b) 96 kernel columns are zeroed, so 16 units are dead and the
                                backend raises a `dead_units` alert that began at step 60
OUT_DIR/big: one run `wide` whose layer has 1024 units, recorded with max_units=1024 at 200 steps (the
1024-unit x 200-step heatmap the render-time figure is measured on).
"""

import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from tb_matmul_explainer import summary

# The per-unit kernels' XLA compilation (once per shape, ~7 s each on 2 busy cores) dominates a short log like
# these; without it the same ops run unfused with the same results.
JIT = os.environ.get("MMX_XLA", "0") == "1"

XSS_RUN = "<img src=x onerror=alert(1)>"


def mlp(sizes, rng, bias):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        k = tf.Variable(rng.normal(0, np.sqrt(2.0 / a), (a, b)).astype(np.float32), name=f"kernel{i}")
        c = tf.Variable(np.full((b,), bias if i < len(sizes) - 2 else 0.0, np.float32), name=f"bias{i}")
        layers.append((k, c))
    return layers


def train_run(logdir, run, *, names, bias, lr, steps, every, seed, sizes=(32, 96, 96, 64, 10), dead=None):
    """`dead`: (layer index, number of units, first step): from that step on, that many of the layer's kernel
    columns are zeroed (masked in the forward pass, so they stay zero): those units' results are exactly zero."""
    rng = np.random.default_rng(seed)
    params = mlp(sizes, rng, bias)
    masks = [tf.Variable(np.ones((b,), np.float32), trainable=False, name=f"mask{i}") for i, b in enumerate(sizes[1:])]
    x_all = rng.normal(0, 1, (2048, sizes[0])).astype(np.float32)
    w_true = rng.normal(0, 1, (sizes[0], sizes[-1])).astype(np.float32)
    y_all = np.argmax(x_all @ w_true, axis=1)
    writer = tf.summary.create_file_writer(os.path.join(logdir, run))
    variables = [v for kc in params for v in kc]
    opt = tf.keras.optimizers.SGD(learning_rate=lr)

    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            h = x
            inputs, zs = [], []
            for i, (k, c) in enumerate(params):
                inputs.append(h)
                z = h @ (k * masks[i])
                zs.append(z)
                h = z + c
                if i < len(params) - 1:
                    h = tf.nn.relu(h)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, h, from_logits=True))
        grads = tape.gradient(loss, variables + zs)
        return loss, inputs, zs, grads[: len(variables)], grads[len(variables) :]

    @tf.function
    def plain_step(x, y):
        loss, _, _, grads, _ = forward_backward(x, y)
        opt.apply_gradients(zip(grads, variables))
        return loss

    # Recording steps run eagerly: tracing the summary ops' graphs costs far more than the 30 records do.
    def recording_step(x, y, step):
        loss, inputs, zs, grads, d_outs = forward_backward(x, y)
        for i, (k, _) in enumerate(params):
            kw = dict(step=step, layer=names[i], layer_index=i, scalars=False, jit=JIT)
            summary.dense(f"{names[i]}/forward", inputs[i], k * masks[i], result=zs[i], **kw)
            summary.dense_kernel_gradient(f"{names[i]}/kernel_gradient", inputs[i], d_outs[i], **kw)
            if i > 0:
                summary.dense_input_gradient(f"{names[i]}/input_gradient", d_outs[i], k * masks[i], **kw)
        tf.summary.scalar("loss", loss, step=step)
        opt.apply_gradients(zip(grads, variables))
        return loss

    with writer.as_default():
        for step in range(steps):
            if dead is not None and step == dead[2]:
                layer, n, _ = dead
                masks[layer].assign(np.where(np.arange(sizes[layer + 1]) < n, 0.0, 1.0).astype(np.float32))
            idx = rng.integers(0, len(x_all), 64)
            x, y = tf.constant(x_all[idx]), tf.constant(y_all[idx])
            if step % every == 0:
                recording_step(x, y, tf.constant(step, tf.int64))
            else:
                plain_step(x, y)
    writer.close()


def write_demo(out):
    names = ["dense", "dense_1", "dense_2", "logits"]
    train_run(out, "healthy", names=names, bias=0.0, lr=0.05, steps=300, every=10, seed=1)
    train_run(out, "dying", names=names, bias=-1.5, lr=0.6, steps=300, every=10, seed=2)
    train_run(
        out,
        XSS_RUN,
        names=["dense", "hidden_b", "dense_2", "logits"],
        bias=0.1,
        lr=0.05,
        steps=200,
        every=20,
        seed=3,
        dead=(1, 16, 60),
    )


def write_big(out, units=1024, steps=200):
    rng = np.random.default_rng(7)
    writer = tf.summary.create_file_writer(os.path.join(out, "wide"))

    @tf.function
    def record(x, k, step):
        return summary.dense(
            "wide/forward", x, k, step=step, layer="wide", layer_index=0, max_units=units, jit=JIT, scalars=False
        )

    k0 = rng.normal(0, 0.2, (64, units)).astype(np.float32)
    drift = rng.normal(0, 0.02, (64, units)).astype(np.float32)
    with writer.as_default():
        for s in range(steps):
            x = np.maximum(rng.normal(0, 1, (32, 64)), 0).astype(np.float32)
            # Units die one after another: their kernel columns shrink towards zero over the steps.
            dying = (np.arange(units) < units * s / steps).astype(np.float32) * 0.97 + 0.03
            k = (k0 + drift * s / steps) * (1 - dying * 0.999)[None, :]
            record(tf.constant(x), tf.constant(k.astype(np.float32)), tf.constant(s * 10, tf.int64))
    writer.close()


def main():
    out = sys.argv[1]
    t0 = time.time()
    write_demo(os.path.join(out, "demo"))
    t1 = time.time()
    write_big(os.path.join(out, "big"))
    t2 = time.time()
    print(json.dumps({"demo_s": round(t1 - t0, 1), "big_s": round(t2 - t1, 1), "xss_run": XSS_RUN}))


if __name__ == "__main__":
    main()
