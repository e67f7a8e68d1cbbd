"""SimpleRNN, LSTM, GRU: the records of both kernels equal the per-cell classifiers on the (batch x time) rows of
an unrolled loop; a recording step computes what the layer computes; refused settings are named with the reason."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import keras as tk
from tb_matmul_explainer.layers.recurrent_cells import step
from tests.keras_helpers import (
    ALL_ROLES,
    EXACT,
    UNCOMPILED,
    assert_record_equals,
    dense_forward_oracle,
    dense_input_gradient_oracle,
    dense_kernel_gradient_oracle,
    record_at,
    records,
)

B, T, C, U = 5, 4, 3, 4


def _layer(kind, **kwargs):
    keras.utils.set_random_seed(11)
    layer = getattr(keras.layers, kind)(U, name="rnn", **kwargs)
    layer(np.zeros((1, T, C), np.float32))
    return layer


def _data(layer, seed=12):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, C)).astype(np.float32)
    x[:, :, 0] = np.maximum(x[:, :, 0], 0)  # some exact zeros, as after a ReLU
    out_shape = (B, T, U) if layer.return_sequences else (B, U)
    return x, rng.normal(size=out_shape).astype(np.float32)


def unrolled(layer, x, y):
    """{part: (x rows, d_out rows)} of loss = sum(out * y), by an unrolled loop of the cell's step with both
    products watched: kernel: x_t and d(loss)/d(x_t W); recurrent_kernel: h_{t-1} and d(loss)/d(h_{t-1} U)."""
    cell = layer.cell
    states = [tf.zeros((B, U))] * (2 if isinstance(cell, keras.layers.LSTMCell) else 1)
    xw, hu, h_prev, outs = {}, {}, {}, []
    with tf.GradientTape(persistent=True) as tape:
        for t in reversed(range(T)) if layer.go_backwards else range(T):
            xw[t] = tf.constant(x[:, t]) @ cell.kernel
            h_prev[t] = states[0]
            hu[t] = h_prev[t] @ cell.recurrent_kernel
            tape.watch([xw[t], hu[t]])
            out, states = step(cell, xw[t], hu[t], states)
            outs.append(out)
        output = tf.stack(outs, 1) if layer.return_sequences else outs[-1]
        loss = tf.reduce_sum(output * y)
    np.testing.assert_allclose(output, layer(x), rtol=1e-5, atol=1e-6)  # the unrolled loop is the layer

    def rows(by_step):
        t = tf.stack([by_step[t] for t in range(T)], 1).numpy()
        return t.reshape(-1, t.shape[-1])

    d_xw = dict(zip(range(T), tape.gradient(loss, [xw[t] for t in range(T)])))
    d_hu = dict(zip(range(T), tape.gradient(loss, [hu[t] for t in range(T)])))
    return {"kernel": (x.reshape(-1, C), rows(d_xw)), "recurrent_kernel": (rows(h_prev), rows(d_hu))}


def assert_matches(record, expected):
    """`assert_record_equals`, with the result's threshold to 1e-5: d_out (and the kernel gradient, summed over
    the steps) come from TensorFlow's loop, equal to the unrolled loop's to rounding."""
    np.testing.assert_allclose(record.thresholds[2], expected["thresholds"][2], rtol=1e-5)
    expected["thresholds"][2] = record.thresholds[2]
    assert_record_equals(record, expected, rtol=1e-3, atol=1e-6)


def _recording_step(layer, recorder, out_rank):
    """One recording training step, traced with an unknown batch size."""

    @tf.function(
        input_signature=[tf.TensorSpec([None, T, C], tf.float32), tf.TensorSpec([None] * out_rank, tf.float32)]
    )
    def train(x, y):
        with tf.GradientTape() as tape, recorder.recording(0, True):
            loss = tf.reduce_sum(layer(x) * y)
            return tape.gradient(loss, layer.trainable_weights)

    return train


@pytest.mark.parametrize(
    "kind, options",
    [
        ("SimpleRNN", {}),
        ("LSTM", dict(return_sequences=True)),
        ("LSTM", {}),
        ("GRU", dict(return_sequences=True, go_backwards=True)),
        ("GRU", {}),
    ],
)
def test_both_kernels_records_equal_the_classifiers_on_the_rows_of_all_time_steps(tmp_path, kind, options):
    layer = _layer(kind, **options)
    x, y = _data(layer)
    recorder = tk.LayerRecorder(layer, tmp_path, roles=ALL_ROLES, **EXACT, **UNCOMPILED)
    assert [t.name for t in recorder.targets] == ["rnn/kernel", "rnn/recurrent_kernel"]
    _recording_step(layer, recorder, y.ndim)(x, y)
    recorder.flush()
    recs = records(tmp_path)
    assert sorted(recs) == sorted(f"rnn/{part}/{role}" for part in ("kernel", "recurrent_kernel") for role in ALL_ROLES)
    op = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}[kind]
    gates = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[kind]
    for part, (rows, d_out) in unrolled(layer, x, y).items():
        kernel = getattr(layer.cell, part).numpy()
        md = recs[f"rnn/{part}/forward"][0]
        assert (md.op, md.layer, md.units) == (op, f"rnn/{part}", gates * U)
        assert recs[f"rnn/{part}/input_gradient"][0].units == kernel.shape[0]
        assert_matches(record_at(recs, f"rnn/{part}/forward", 0), dense_forward_oracle(rows, kernel))
        assert_matches(record_at(recs, f"rnn/{part}/kernel_gradient", 0), dense_kernel_gradient_oracle(rows, d_out))
        assert_matches(record_at(recs, f"rnn/{part}/input_gradient", 0), dense_input_gradient_oracle(d_out, kernel))
