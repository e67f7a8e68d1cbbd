"""Writes the browser tests' Keras log directory: real `model.fit` training recorded by `ExplainerCallback`.

    python frontend/e2e/make_keras_logs.py OUT_DIR

OUT_DIR/keras holds two runs of the same small regression model, `Input(12, 2) -> OwnCallConv1D(4, 3,
dilation_rate=2) "dilated" -> Flatten -> Dense(8, relu) "hidden" -> Dense(1) "one_unit"`, recorded at every step
(`update_freq=1`, roles forward and kernel_gradient):
  batch1/train     batch size 1: 6 steps (0-5), each record explains one sample
  nonfinite/train  batch size 4: 4 steps (0-3); sample 9 (step 2's batch) holds a NaN, so at step 2 the NaN reaches
                   hidden's and one_unit's inputs, results and the output gradients; the NaN gradients make every
                   weight NaN, so step 3 is non-finite throughout; steps 0 and 1 are finite
  dying/train      `Input(8) -> Dense(16, relu) "hidden_1" -> Dense(16, relu, bias -8) "hidden_2" -> Dense(3) "logits"`,
                   4 steps of batch 16: hidden_2's ReLUs are dead from step 0 (the alert names hidden_2's activation)
  transformer/train  `Input(8 tokens) -> Embedding -> block_1 (a nested model: MultiHeadAttention(4 heads, key_dim 4,
                   value_dim 2, causal) "attention" + residual + LayerNormalization) -> pooling -> Dense(3) "logits"`,
                   4 steps of batch 8, the three matmul roles: the attention einsums are recorded as
                   `block_1/attention/attention_scores` and `block_1/attention/attention_values` (unit: head)
In the first two, "dilated" is not recorded (a Conv1D subclass with a call() of its own, which the recorder cannot
know to be the convolution it reproduces): the callback warns and writes the text summary
`matmul_explainer/not_recorded/dilated` with the reason, which /runs lists as `notRecorded`. Prints a JSON line
with the steps, the reason and the timings.
"""

import json
import os
import sys
import time
import warnings

import keras
import numpy as np

from tb_matmul_explainer import keras as tk

# As in make_logs.py: the per-unit kernels' XLA compilation would dominate these few records.
JIT = os.environ.get("MMX_XLA", "0") == "1"


class OwnCallConv1D(keras.layers.Conv1D):
    """A Conv1D whose call() is its own (the same convolution): refused by the recorder, so never recorded."""

    def call(self, inputs):
        return super().call(inputs)


def build(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 2))
    h = OwnCallConv1D(4, 3, dilation_rate=2, activation="relu", name="dilated")(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(8, activation="relu", name="hidden")(h)
    outputs = keras.layers.Dense(1, name="one_unit")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "mse", jit_compile=False)
    return model


def fit(out, run, x, y, batch_size, seed):
    model = build(seed)
    callback = tk.ExplainerCallback(os.path.join(out, run), update_freq=1, jit=JIT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", tk.UnsupportedLayerWarning)
        history = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    warned = [str(w.message) for w in caught if issubclass(w.category, tk.UnsupportedLayerWarning)]
    assert any("'dilated'" in m for m in warned), warned
    callback.recorder.close()
    return {"steps": callback.recorded_steps, "skipped": callback.skipped, "loss": history.history["loss"]}


def fit_dying(out, rng):
    """The dying-ReLU run (every role the callback records by default); returns its recorded steps."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="hidden_1"),
            keras.layers.Dense(
                16, activation="relu", bias_initializer=keras.initializers.Constant(-8.0), name="hidden_2"
            ),
            keras.layers.Dense(3, name="logits"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False
    )
    callback = tk.ExplainerCallback(os.path.join(out, "dying"), update_freq=1, jit=JIT)
    model.fit(
        rng.normal(size=(64, 8)).astype(np.float32),
        rng.integers(0, 3, 64),
        batch_size=16,
        epochs=1,
        shuffle=False,
        callbacks=[callback],
        verbose=0,
    )
    callback.recorder.close()
    return callback.recorded_steps


def fit_transformer(out, rng):
    """The Transformer run (forward, kernel_gradient, input_gradient); returns its recorded steps."""
    keras.utils.set_random_seed(4)
    tokens = keras.Input((8, 16))
    attention = keras.layers.MultiHeadAttention(4, 4, value_dim=2, name="attention")
    attended = attention(tokens, tokens, use_causal_mask=True)
    block = keras.Model(tokens, keras.layers.LayerNormalization(name="norm")(tokens + attended), name="block_1")
    inputs = keras.Input((8,), dtype="int32")
    h = block(keras.layers.Embedding(20, 16, name="embed")(inputs))
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling1D(name="pool")(h))
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False
    )
    callback = tk.ExplainerCallback(
        os.path.join(out, "transformer"), update_freq=1, jit=JIT, roles=("forward", "kernel_gradient", "input_gradient")
    )
    x = rng.integers(0, 20, (32, 8)).astype(np.int32)
    model.fit(x, x[:, 0] % 3, batch_size=8, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    assert not callback.skipped, callback.skipped
    callback.recorder.close()
    return callback.recorded_steps


def main():
    out = os.path.join(sys.argv[1], "keras")
    rng = np.random.default_rng(11)
    x = rng.normal(size=(16, 12, 2)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    t0 = time.time()
    batch1 = fit(out, "batch1", x[:6], y[:6], batch_size=1, seed=1)
    t1 = time.time()
    x_nan = x.copy()
    x_nan[9, 4, 1] = np.nan
    nonfinite = fit(out, "nonfinite", x_nan, y, batch_size=4, seed=2)
    t2 = time.time()
    dying = fit_dying(out, rng)
    transformer = fit_transformer(out, rng)
    assert batch1["steps"] == list(range(6)) and nonfinite["steps"] == list(range(4)) and dying == list(range(4))
    assert transformer == list(range(4)), transformer
    print(
        json.dumps(
            {
                "batch1_s": round(t1 - t0, 1),
                "nonfinite_s": round(t2 - t1, 1),
                "batch1": batch1,
                "nonfinite": {**nonfinite, "loss": str(nonfinite["loss"])},
            }
        )
    )


if __name__ == "__main__":
    main()
