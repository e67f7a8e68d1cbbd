"""Writes the many-layer log directory the browser tests serve, with tb_matmul_explainer's own summary ops.

    python frontend/e2e/make_many_logs.py OUT_DIR

OUT_DIR/many: two runs of a deep stack of small Dense layers (forward role only, 3 recorded steps, no training:
only the overview's size matters here), written in seconds:
  dense200   200 layers named as Keras names them (dense, dense_1, ..., dense_199); from layer 137 on, 12 of
             `dense_137`'s 16 kernel columns are zero, so its units are dead and the backend raises an alert
  resnet50   54 layers named as keras.applications.ResNet50's recorded Conv2D/Dense layers (conv1_conv,
             conv2_block1_0_conv, ..., predictions), the overview the docs' screenshot shows; 12 of
             `conv4_block3_2_conv`'s 16 kernel columns are zero
"""

import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from tb_matmul_explainer import summary

JIT = False  # a few eager records: compiling the kernels would cost more than running them

UNITS = 16
STEPS = (0, 10, 20)


def resnet50_names():
    """The 54 recorded layers of keras.applications.ResNet50, in model order."""
    names = ["conv1_conv"]
    for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3)):
        for b in range(1, blocks + 1):
            names += [f"conv{stage}_block{b}_{i}_conv" for i in ((0, 1, 2, 3) if b == 1 else (1, 2, 3))]
    return names + ["predictions"]


def write_run(logdir, run, names, dead_layer, seed):
    """One record per layer at each of STEPS: a ReLU stack x -> relu(x @ k_i); `dead_layer` has 12 zero columns."""
    rng = np.random.default_rng(seed)
    kernels = [rng.normal(0, np.sqrt(2.0 / UNITS), (UNITS, UNITS)).astype(np.float32) for _ in names]
    kernels[names.index(dead_layer)][:, :12] = 0.0
    writer = tf.summary.create_file_writer(os.path.join(logdir, run))
    with writer.as_default():
        for step in STEPS:
            h = tf.constant(rng.normal(0, 1, (32, UNITS)).astype(np.float32))
            for i, (name, k) in enumerate(zip(names, kernels)):
                k = tf.constant(k)
                z = h @ k
                summary.dense(
                    f"{name}/forward", h, k, result=z, step=step, layer=name, layer_index=i, scalars=False, jit=JIT
                )
                # Keep the signal alive through the stack (a fresh input for the layers after a dead one).
                h = tf.nn.relu(z) + tf.constant(rng.normal(0, 0.5, (32, UNITS)).astype(np.float32)) * 0.5
            tf.summary.scalar("loss", float(tf.reduce_mean(h * h)), step=step)  # so TensorBoard has a Scalars tab
    writer.close()


def main():
    out = os.path.join(sys.argv[1], "many")
    t0 = time.time()
    write_run(out, "dense200", ["dense"] + [f"dense_{i}" for i in range(1, 200)], "dense_137", seed=11)
    write_run(out, "resnet50", resnet50_names(), "conv4_block3_2_conv", seed=12)
    print(json.dumps({"many_s": round(time.time() - t0, 1), "layers": [200, len(resnet50_names())]}))


if __name__ == "__main__":
    main()
