"""One training process of tests/test_multi_worker.py (run as a script, not collected by pytest).

    python tests/multi_worker_run.py LOG_DIR worker   # one worker of MultiWorkerMirroredStrategy (TF_CONFIG)
    python tests/multi_worker_run.py LOG_DIR single   # one process, no strategy, the same global batches

Trains a small MLP (8 -> Dense 6 relu "hidden" -> Dense 3 "out", seeded initializers, SGD, MSE) for `STEPS` steps
of `GLOBAL_BATCH` samples with `ExplainerCallback(update_freq=UPDATE_FREQ)`, explicit thresholds and exact
near-zero totals (so that per-replica totals sum to exactly what one process computes over the global batch).
Every global batch holds the same samples, so every worker's share of a step is a share of that batch.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

from tb_matmul_explainer.keras import ExplainerCallback

GLOBAL_BATCH = 16
STEPS = 4
UPDATE_FREQ = 2
FEATURES = 8
OPTIONS = dict(
    roles=("forward", "kernel_gradient"),
    thresholds=0.05,
    threshold_method="exact",
    near_zero="exact",
    jit=False,
    verbose=0,
)


class ShapedLogsSequential(keras.Sequential):
    """Returns its logs as shape-[1] tensors: Keras 3.x reduces a step's logs under MultiWorkerMirroredStrategy
    with `strategy.reduce("MEAN", v, axis=0)`, which fails on the scalar loss."""

    def train_step(self, data):
        return {name: tf.reshape(value, [1]) for name, value in super().train_step(data).items()}


def build():
    """The model, not yet built (see `main`)."""
    return ShapedLogsSequential(
        [
            keras.layers.Dense(
                6, activation="relu", name="hidden", kernel_initializer=keras.initializers.GlorotUniform(seed=1)
            ),
            keras.layers.Dense(3, name="out", kernel_initializer=keras.initializers.GlorotUniform(seed=2)),
        ],
        name="mlp",
    )


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH, FEATURES)).astype(np.float32)
    y = rng.normal(size=(GLOBAL_BATCH, 3)).astype(np.float32)
    return np.tile(x, (STEPS, 1)), np.tile(y, (STEPS, 1))


def main(log_dir, mode):
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if mode == "worker" else tf.distribute.get_strategy()
    # The model object is made outside the strategy's scope and built, compiled and trained inside it: Keras 3.x's
    # symbolic build for a model made inside a MultiWorkerMirroredStrategy scope fails on (x, y) data (it calls
    # `strategy.reduce` on the tuple); a model made outside it skips that build and trains with the scope's
    # strategy, its variables made in the scope.
    model = build()
    with strategy.scope():
        model.build((None, FEATURES))
        model.compile(keras.optimizers.SGD(0.1), "mse")
        dataset = tf.data.Dataset.from_tensor_slices(data()).batch(GLOBAL_BATCH)
        callback = ExplainerCallback(log_dir, update_freq=UPDATE_FREQ, **OPTIONS)
        model.fit(dataset, epochs=1, verbose=0, callbacks=[callback])
    print("recorded steps:", callback.recorded_steps, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
