"""What a recording step costs a recurrent layer: LSTM(64) and GRU(64) over 32 steps of 32 features, batch 32.

    python bench/recurrent_cost.py [--repeats N]

Per layer, three compiled training steps of the layer alone (forward + gradients of its weights, in one
`tf.function` each): `plain` (the layer's own call), `two loops` (the recording call with `record=False`: the
reimplemented loop, its forward-only first pass and the two (batch x time)-row matmuls, the records skipped) and
`recording` (`record=True`, all three matmul roles of both kernels, default sampled options). Each figure is the
median over interleaved repeats of the median of 10 timed calls; the ratios are to `plain`. On a CPU (this
machine) Keras runs the same generic loop in `plain`; on a GPU it would run cuDNN's fused kernel there instead.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tb_matmul_explainer.keras import LayerRecorder  # noqa: E402

ROLES = ("forward", "kernel_gradient", "input_gradient")


def steps(layer, log_dir):
    """{name: compiled step(x)} for one layer."""
    recorder = LayerRecorder(layer, log_dir, roles=ROLES)

    def loss_of(out):
        return tf.reduce_sum(out * out)

    @tf.function
    def plain(x):
        with tf.GradientTape() as tape:
            loss = loss_of(layer(x))
        return tape.gradient(loss, layer.trainable_weights)

    def instrumented(record):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape, recorder.recording(0, record):
                loss = loss_of(layer(x))
                return tape.gradient(loss, layer.trainable_weights)

        return step

    return {"plain": plain, "two loops": instrumented(False), "recording": instrumented(True)}


def timed(step, x, calls=10):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), step(x))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x = tf.constant(np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32))
    for kind in ("LSTM", "GRU"):
        keras.utils.set_random_seed(0)
        layer = getattr(keras.layers, kind)(64, return_sequences=True)
        layer(x)
        with tempfile.TemporaryDirectory() as log_dir:
            fns = steps(layer, log_dir)
            for fn in fns.values():
                timed(fn, x, calls=2)  # trace and warm up
            runs = {name: [] for name in fns}
            for _ in range(args.repeats):
                for name, fn in fns.items():
                    runs[name].append(timed(fn, x))
        medians = {name: statistics.median(t) for name, t in runs.items()}
        line = ", ".join(f"{name} {1000 * m:.1f} ms ({m / medians['plain']:.1f}x)" for name, m in medians.items())
        print(f"{kind}(64), 32 steps, batch 32: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
