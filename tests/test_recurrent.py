"""SimpleRNN, LSTM, GRU: the records of both kernels equal the per-cell classifiers on the (batch x time) rows of
an unrolled loop; a recording step computes what the layer computes; refused settings are named with the reason."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import keras as tk
from tb_matmul_explainer import metadata
from tb_matmul_explainer.layers.recurrent_cells import recurrent_parts, step
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
    """{part: (operand rows, d_out rows)} of loss = sum(out * y), by an unrolled loop of the cell's step with every
    product watched: kernel: x_t and d(loss)/d(x_t W); recurrent parts: their operand (h_{t-1}, or r_t * h_{t-1})
    and d(loss)/d(operand @ their columns of U)."""
    cell = layer.cell
    states = [tf.zeros((B, U))] * (2 if isinstance(cell, keras.layers.LSTMCell) else 1)
    operands, products, outs = {}, {}, []
    with tf.GradientTape(persistent=True) as tape:
        for t in reversed(range(T)) if layer.go_backwards else range(T):
            xw = tf.constant(x[:, t]) @ cell.kernel
            tape.watch(xw)
            operands[("kernel", t)], products[("kernel", t)] = x[:, t], xw

            def product(operand, part, t=t):
                lo, hi = recurrent_parts(cell)[part]
                products[(part, t)] = operand @ cell.recurrent_kernel[:, lo:hi]
                tape.watch(products[(part, t)])
                operands[(part, t)] = operand
                return products[(part, t)]

            out, states = step(cell, xw, product, states)
            outs.append(out)
        output = tf.stack(outs, 1) if layer.return_sequences else outs[-1]
        loss = tf.reduce_sum(output * y)
    np.testing.assert_allclose(output, layer(x), rtol=1e-5, atol=1e-6)  # the unrolled loop is the layer
    d_out = dict(zip(products, tape.gradient(loss, list(products.values()))))

    def rows(by_step, part):
        t = tf.stack([by_step[(part, t)] for t in range(T)], 1).numpy()
        return t.reshape(-1, t.shape[-1])

    parts = ["kernel", *recurrent_parts(cell)]
    return {part: (rows(operands, part), rows(d_out, part)) for part in parts}


def _kernel(layer, part):
    if part == "kernel":
        return layer.cell.kernel.numpy()
    lo, hi = recurrent_parts(layer.cell)[part]
    return layer.cell.recurrent_kernel.numpy()[:, lo:hi]


def assert_matches(record, expected):
    """`assert_record_equals`, with the result's threshold to 1e-5: d_out (and the kernel gradient, summed over
    the steps) come from TensorFlow's loop, equal to the unrolled loop's to rounding."""
    np.testing.assert_allclose(record.thresholds[2], expected["thresholds"][2], rtol=1e-5)
    expected["thresholds"][2] = record.thresholds[2]
    assert_record_equals(record, expected, rtol=1e-3, atol=1e-6)


def _recording_step(layer, recorder, out_rank):
    """One recording training step, traced with unknown batch size and number of steps."""

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, C], tf.float32), tf.TensorSpec([None] * out_rank, tf.float32)]
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
        ("GRU", dict(reset_after=False, return_sequences=True)),
    ],
)
def test_both_kernels_records_equal_the_classifiers_on_the_rows_of_all_time_steps(tmp_path, kind, options):
    layer = _layer(kind, **options)
    x, y = _data(layer)
    recorder = tk.LayerRecorder(layer, tmp_path, roles=ALL_ROLES, **EXACT, **UNCOMPILED)
    parts = ["kernel", "recurrent_kernel"] + (["recurrent_kernel_candidate"] if "reset_after" in options else [])
    assert [t.name for t in recorder.targets] == [f"rnn/{part}" for part in parts]
    _recording_step(layer, recorder, y.ndim)(x, y)
    recorder.flush()
    recs = records(tmp_path)
    assert sorted(recs) == sorted(f"rnn/{part}/{role}" for part in parts for role in ALL_ROLES)
    op = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}[kind]
    for part, (rows, d_out) in unrolled(layer, x, y).items():
        kernel = _kernel(layer, part)
        md = recs[f"rnn/{part}/forward"][0]
        assert (md.op, md.layer, md.units) == (op, f"rnn/{part}", kernel.shape[1])
        assert recs[f"rnn/{part}/input_gradient"][0].units == kernel.shape[0]
        assert_matches(record_at(recs, f"rnn/{part}/forward", 0), dense_forward_oracle(rows, kernel))
        assert_matches(record_at(recs, f"rnn/{part}/kernel_gradient", 0), dense_kernel_gradient_oracle(rows, d_out))
        assert_matches(record_at(recs, f"rnn/{part}/input_gradient", 0), dense_input_gradient_oracle(d_out, kernel))


def _outputs_and_gradients(layer, recorder, x, kwargs, instrumented):
    with tf.GradientTape() as tape:
        tape.watch(x)
        if instrumented:
            with recorder.recording(0, True):
                out = tf.nest.flatten(layer(x, **kwargs))
                loss = sum(tf.reduce_sum(o * o) for o in out)
                grads = tape.gradient(loss, [x] + layer.trainable_weights)
        else:
            out = tf.nest.flatten(layer(x, **kwargs))
            loss = sum(tf.reduce_sum(o * o) for o in out)
    if not instrumented:
        grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return out + grads


@pytest.mark.parametrize(
    "kind, options, call",
    [
        ("SimpleRNN", dict(return_sequences=True, go_backwards=True), {}),
        ("LSTM", dict(return_state=True), dict(mask=[[1, 1, 0, 1]] * 3 + [[0, 1, 1, 1], [1, 0, 0, 0]])),
        ("LSTM", dict(return_sequences=True, go_backwards=True, zero_output_for_mask=True), dict(mask="ragged")),
        ("GRU", dict(return_sequences=True, unroll=True, dropout=0.3), dict(training=True)),
        ("GRU", dict(use_bias=False), dict(initial_state="given")),
        ("GRU", dict(reset_after=False, return_sequences=True), dict(mask="ragged")),
    ],
)
def test_a_recording_step_computes_what_the_layer_computes(tmp_path, kind, options, call):
    layer = _layer(kind, **options)
    x = tf.constant(_data(layer)[0])
    kwargs = dict(call)
    if kwargs.get("mask") == "ragged":
        kwargs["mask"] = tf.sequence_mask([4, 3, 1, 2, 4], T)
    elif "mask" in kwargs:
        kwargs["mask"] = tf.constant(np.array(kwargs["mask"], bool))
    if "initial_state" in kwargs:
        kwargs["initial_state"] = tf.constant(np.random.default_rng(3).normal(size=(B, U)), tf.float32)
    recorder = tk.LayerRecorder(layer, tmp_path, roles=ALL_ROLES, **UNCOMPILED)
    seed = layer.cell.seed_generator.state.numpy()  # (both runs draw the same dropout mask)
    got = _outputs_and_gradients(layer, recorder, x, kwargs, True)
    layer.cell.seed_generator.state.assign(seed)
    want = _outputs_and_gradients(layer, recorder, x, kwargs, False)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
    assert "call" not in vars(layer)


def test_masked_steps_are_in_no_record(tmp_path):
    """Post-padded sequences behind a Masking layer: the records hold the unmasked (batch, time) rows only; up to
    its length a sequence's steps are those of the unmasked loop, so the forward records equal the classifiers on
    those rows, and the gradient records count every product of those rows and add up to TensorFlow's gradient."""
    lengths = [4, 2, 3, 1, 4]
    layer = _layer("LSTM")
    x, y = _data(layer)
    valid = np.arange(T)[None, :] < np.array(lengths)[:, None]
    model = keras.Sequential([keras.Input((T, C)), keras.layers.Masking(name="masking"), layer])
    recorder = tk.LayerRecorder(model, tmp_path, roles=ALL_ROLES, **EXACT, **UNCOMPILED)
    parts = unrolled(layer, x, y)
    x[~valid] = 0.0
    step = _recording_step(model, recorder, y.ndim)
    gradients = dict(zip(("kernel", "recurrent_kernel"), step(x, y)))
    recorder.flush()
    recs = records(tmp_path)
    n = int(valid.sum())
    for part, (rows, _) in parts.items():
        kernel = _kernel(layer, part)
        assert_record_equals(
            record_at(recs, f"rnn/{part}/forward", 0), dense_forward_oracle(rows[valid.reshape(-1)], kernel)
        )
        gradient = record_at(recs, f"rnn/{part}/kernel_gradient", 0)
        np.testing.assert_array_equal(gradient.counts.sum(1), np.full(4 * U, n * kernel.shape[0]))
        np.testing.assert_allclose(gradient.sums.sum(1), gradients[part].numpy().sum(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(record_at(recs, f"rnn/{part}/input_gradient", 0).counts.sum(1), n * 4 * U)


def test_refused_settings_are_named_with_the_reason(tmp_path):
    inputs = keras.Input((T, C), batch_size=B)
    h = keras.layers.LSTM(U, recurrent_dropout=0.2, return_sequences=True, name="lstm")(inputs)
    h = keras.layers.GRU(U, implementation=1, return_sequences=True, name="gru")(h)
    h = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.GRUCell(U)]), name="stacked")(h)
    model = keras.Model(inputs, h)
    with pytest.warns(tk.UnsupportedLayerWarning):
        recorder = tk.LayerRecorder(model, tmp_path, **UNCOMPILED)
    assert recorder.targets == []
    assert recorder.skipped == {
        "lstm": "recurrent_dropout=0.2 is not supported (each gate's matmul then has its own dropped copy of the "
        "hidden state)",
        "gru": "implementation=1 is not supported (implementation=2, the default)",
        "stacked/stacked_rnn_cells": "StackedRNNCells is not recorded: only an RNN holding one SimpleRNNCell, "
        "LSTMCell or GRUCell is",
    }


def _classifier():
    keras.utils.set_random_seed(21)
    inputs = keras.Input((T, C))
    h = keras.layers.TimeDistributed(keras.layers.Dense(6, activation="relu", name="embed"), name="td")(inputs)
    h = keras.layers.Bidirectional(keras.layers.LSTM(U, return_sequences=True, name="lstm"), name="bi")(h)
    h = keras.layers.GRU(U, name="gru")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(h))
    model.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_a_recurrent_classifier_trains_with_the_callback_and_is_read_back_through_tensorboard(tmp_path, capsys):
    """TimeDistributed(Dense) -> Bidirectional(LSTM) -> GRU -> Dense: every matmul recorded under its Keras path,
    the wrapped Dense once per step over all time steps."""
    rng = np.random.default_rng(22)
    x = rng.normal(size=(16, T, C)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = _classifier()
    embed = model.get_layer("td").layer.kernel.numpy()
    callback = tk.ExplainerCallback(tmp_path, update_freq=2, roles=ALL_ROLES, **EXACT, **UNCOMPILED)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[callback], verbose=0)
    assert "recording 5 layers (8 of 8 matmuls), 100.0% of the model's multiply-adds" in capsys.readouterr().out
    assert callback.skipped == {}
    recs = records(tmp_path)
    parts = [f"bi/{d}_lstm/{k}" for d in ("forward", "backward") for k in ("kernel", "recurrent_kernel")]
    names = ["td/embed", *parts, "gru/kernel", "gru/recurrent_kernel", "head"]
    assert sorted(recs) == sorted(f"{n}/{r}" for n in names for r in ALL_ROLES)
    assert all([s for s, _ in data] == [0, 2] for _, data in recs.values())
    assert recs["bi/backward_lstm/kernel/forward"][0].op == "lstm" and recs["gru/kernel/forward"][0].units == 3 * U
    # The wrapped Dense: one record of all (batch x time) rows of the step's batch.
    assert_record_equals(record_at(recs, "td/embed/forward", 0), dense_forward_oracle(x[:8].reshape(-1, C), embed))
    for name in parts:
        record = record_at(recs, f"{name}/kernel_gradient", 2)  # (no unit detail: step 2 is the fit's second record)
        assert not record.detail
        assert record.totals[metadata.COUNTS].sum() == 8 * T * (6 if name.endswith("/kernel") else U) * 4 * U


def test_a_stateful_layer_carries_its_state_across_recording_steps_as_keras_does(tmp_path):
    keras.utils.set_random_seed(13)
    layer = keras.layers.LSTM(U, stateful=True, return_sequences=True, name="rnn")
    x = tf.constant(_data(layer)[0])
    layer(x)
    recorder = tk.LayerRecorder(layer, tmp_path, roles=ALL_ROLES, **UNCOMPILED)
    runs = []
    for instrumented in (True, False):
        layer.reset_state()
        runs.append([_outputs_and_gradients(layer, recorder, x, {}, instrumented) for _ in range(2)])
        runs[-1].append([tf.identity(v) for v in layer.states])
    assert not np.allclose(runs[1][0][0], runs[1][1][0])  # (the second call starts from the first's state)
    for got, want in zip(tf.nest.flatten(runs[0]), tf.nest.flatten(runs[1])):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
