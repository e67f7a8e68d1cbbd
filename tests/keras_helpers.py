"""Shared helpers of the Keras tests: option presets, the small MLP and its data, reading records back through
TensorBoard's own data provider (`tb_reader`), and the per-cell oracle for per-unit totals."""

import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from tb_matmul_explainer import metadata, ops, threshold
from tests import tb_reader

EXACT = dict(threshold_method="exact", near_zero="exact")
ALL_ROLES = ("forward", "kernel_gradient", "input_gradient")


# Most tests run the aggregate kernels uncompiled (same values; spares the compile time of every small shape).
UNCOMPILED = dict(jit=False)


# ---------------------------------------------------------------------------------------------------------------
# Oracle: per-unit totals from the per-cell classifiers


def _near_zero(result, thr):
    result = np.asarray(result)
    return (result == 0) | (np.abs(result) < thr) | np.isnan(result)


def oracle(counts, sums, result, units_axis, thresholds, confidence=0.95):
    """Per-unit totals from per-cell classifier output ([..., U, 9] with units on `units_axis`)."""
    counts, sums, result = (np.asarray(t, np.float64) for t in (counts, sums, result))
    thr_r = float(threshold.percentile_threshold(tf.constant(result, tf.float32), confidence))
    nz = _near_zero(result, thr_r)[..., None]
    axes = tuple(a for a in range(result.ndim) if a != units_axis % result.ndim)
    return dict(
        counts=counts.sum(axes),
        sums=sums.sum(axes),
        near_zero_counts=(counts * nz).sum(axes),
        near_zero_sums=(sums * nz).sum(axes),
        cells=np.ones_like(result).sum(axes),
        near_zero_cells=nz[..., 0].sum(axes),
        thresholds=[float(t) for t in thresholds] + [thr_r],
    )


def dense_forward_oracle(x, kernel, confidence=0.95):
    counts, sums, thr = ops.matmul_classify(x, kernel, confidence, return_thresholds=True)
    return oracle(counts, sums, tf.constant(x) @ tf.constant(kernel), -1, thr, confidence)


def dense_kernel_gradient_oracle(x, d_out, confidence=0.95):
    xt = np.ascontiguousarray(np.asarray(x).T)
    counts, sums, thr = ops.matmul_classify(xt, d_out, confidence, return_thresholds=True)
    return oracle(counts, sums, tf.constant(xt) @ tf.constant(d_out), -1, thr, confidence)


def dense_input_gradient_oracle(d_out, kernel, confidence=0.95):
    kt = np.ascontiguousarray(np.asarray(kernel).T)
    counts, sums, thr = ops.matmul_classify(d_out, kt, confidence, return_thresholds=True)
    return oracle(counts, sums, tf.constant(d_out) @ tf.constant(kt), -1, thr, confidence)


def batched_oracle(first, second):
    """Per-head totals of `first @ second` ([B, N, R, C] x [B, N, C, U]) from the per-cell classifier."""
    counts, sums, thr = ops.matmul_classify(first, second, return_thresholds=True)
    return oracle(counts, sums, tf.linalg.matmul(first, second), 1, thr)


def heads_major(t):
    """[B, X, N, H] (projections, an einsum's output) -> [B, N, X, H], and back."""
    return tf.transpose(t, [0, 2, 1, 3])


def plain_attention(q, k, v, allowed, output_dense, weights):
    """Attention in plain TensorFlow from heads-major projections q (scaled), k, v ([B, N, X, H]; `allowed` a
    [T, S] bool mask or None): the output projected by `output_dense`, and the gradients of sum(output *
    weights) with respect to the scores S, the probabilities A and the einsum output O, as `einsum_oracles`
    takes them."""
    with tf.GradientTape() as tape:
        tape.watch([q, k, v])
        scores = tf.linalg.matmul(q, k, transpose_b=True)
        probabilities = tf.nn.softmax(scores if allowed is None else tf.where(allowed, scores, -1e9))
        o = tf.linalg.matmul(probabilities, v)
        out = output_dense(heads_major(o))
        loss = tf.reduce_sum(out * weights)
    d_s, d_a, d_o = tape.gradient(loss, [scores, probabilities, o])
    return dict(q=q, k=k, v=v, a=probabilities, d_s=d_s, d_a=d_a, d_o=d_o, out=out)


def einsum_oracles(p):
    """{"<part>/<role>": oracle} of an attention layer's two einsums, from its heads-major operands and gradients
    `p` (q, k, v [B, N, X, H], a, d_s [B, N, T, S], d_o [B, N, T, H]) as `layers/attention.py` names them."""
    swap = tf.linalg.matrix_transpose
    return {
        "attention_scores/forward": batched_oracle(p["q"], swap(p["k"])),
        "attention_scores/kernel_gradient": batched_oracle(swap(p["q"]), p["d_s"]),
        "attention_scores/input_gradient": batched_oracle(p["d_s"], p["k"]),
        "attention_values/forward": batched_oracle(p["a"], p["v"]),
        "attention_values/kernel_gradient": batched_oracle(swap(p["a"]), p["d_o"]),
        "attention_values/input_gradient": batched_oracle(p["d_o"], swap(p["v"])),
    }


def record_attention_step(layer, log_dir, query, value, causal, weights):
    """Records one training step of an attention `layer` called on (query, value) (all roles, exact, the batch size
    unknown when traced; loss sum(output * weights)) into `log_dir`. Checks that both einsums are targets, nothing
    is skipped, the layer computes what it computes uninstrumented and is restored afterwards; returns the output."""
    from tb_matmul_explainer import keras as tk

    uninstrumented = layer(query, value, use_causal_mask=causal)
    recorder = tk.LayerRecorder(layer, log_dir, layers=[layer], roles=ALL_ROLES, **EXACT, **UNCOMPILED)
    assert [t.name for t in recorder.targets] == [f"{layer.name}/attention_scores", f"{layer.name}/attention_values"]
    assert recorder.skipped == {}
    signature = [tf.TensorSpec([None, *t.shape[1:]]) for t in (query, value)]

    @tf.function(input_signature=signature)
    def step(q, v):
        with recorder.recording(0, True):
            with tf.GradientTape() as tape:
                out = layer(q, v, use_causal_mask=causal)
                loss = tf.reduce_sum(out * weights)
            return out, tape.gradient(loss, layer.trainable_weights)

    out, _ = step(query, value)
    recorder.flush()
    np.testing.assert_allclose(out.numpy(), np.asarray(uninstrumented), rtol=1e-5, atol=1e-6)
    assert "_compute_attention" not in vars(layer)
    return out


def fit_on_tokens(model, log_dir, vocabulary, seed):
    """Trains `model` (int32 token ids [B, T] -> 3 logits) for two steps of 16 random sequences with the callback
    recording every step (all roles); checks that nothing is skipped and every multiply-add is recorded; returns
    the coverage's {path: (multiply-adds per sample, recorded)}."""
    from tb_matmul_explainer import keras as tk

    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(seed).integers(0, vocabulary, (32, model.input.shape[1])).astype(np.int32)
    callback = tk.ExplainerCallback(log_dir, update_freq=1, roles=ALL_ROLES, verbose=0, **UNCOMPILED)
    model.fit(x, x[:, 0] % 3, batch_size=16, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    assert callback.skipped == {} and callback.coverage.share == 1.0
    return {path: (macs, recorded) for path, macs, recorded in callback.coverage.per_layer}


def assert_record_equals(record, expected, rtol=1e-4, atol=1e-5):
    np.testing.assert_array_equal(record.counts, expected["counts"])
    np.testing.assert_allclose(record.sums, expected["sums"], rtol=rtol, atol=atol)
    np.testing.assert_array_equal(record.near_zero_counts, expected["near_zero_counts"])
    np.testing.assert_allclose(record.near_zero_sums, expected["near_zero_sums"], rtol=rtol, atol=atol)
    np.testing.assert_array_equal(record.cells, expected["cells"])
    np.testing.assert_array_equal(record.near_zero_cells, expected["near_zero_cells"])
    np.testing.assert_allclose(record.thresholds, expected["thresholds"], rtol=1e-6)


def run_script(script, log_dir, timeout):
    """Runs the Python `script` (argv[1] = log_dir) in a fresh process from the repository root (to set up devices
    before TensorFlow starts); returns its stdout, failing with its stderr's tail."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", script, str(log_dir)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def records(log_dir, run="train"):
    """{tag: (parsed metadata, [(step, Record)])} of one run."""
    out = {}
    for tag, (series, data) in tb_reader.read_records(str(log_dir))[run].items():
        out[tag] = (
            metadata.parse_plugin_metadata(series.plugin_content),
            [(d.step, metadata.unpack_record(d.numpy)) for d in data],
        )
    return out


def steps_of(recs, tag):
    return [step for step, _ in recs[tag][1]]


def record_at(recs, tag, step):
    return dict(recs[tag][1])[step]


# ---------------------------------------------------------------------------------------------------------------
# A small deterministic MLP and its gradients, computed directly


def mlp_data(n=48, k=8, m=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)).astype(np.float32), rng.normal(size=(n, m)).astype(np.float32)


def mlp(k=8, hidden=6, m=3, functional=False):
    keras.utils.set_random_seed(1)
    if functional:
        inputs = keras.Input((k,))
        h = keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(m, name="out")(h))
    else:
        model = keras.Sequential(
            [
                keras.Input((k,)),
                keras.layers.Dense(hidden, activation="relu", name="hidden"),
                keras.layers.Dense(m, name="out"),
            ]
        )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def mlp_gradients(weights, x, y):
    """(inputs, d_out) of both layers for the mean squared error, computed directly."""
    w1, b1, w2, b2 = (tf.constant(w) for w in weights)
    x, y = tf.constant(x), tf.constant(y)
    with tf.GradientTape() as tape:
        z1 = x @ w1
        tape.watch(z1)
        a1 = tf.nn.relu(z1 + b1)
        z2 = a1 @ w2
        tape.watch(z2)
        loss = keras.losses.MeanSquaredError()(y, z2 + b2)
    d1, d2 = tape.gradient(loss, [z1, z2])
    return (x.numpy(), d1.numpy()), (a1.numpy(), d2.numpy())


# ---------------------------------------------------------------------------------------------------------------
