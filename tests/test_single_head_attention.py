"""Keras' Attention (score_mode "dot" and "concat") and AdditiveAttention (`layers/other_attention.py`): the records
of their matmul products for the three roles against the per-cell classifiers on the same batch (one unit), with
and without `use_scale`, a causal mask and an unknown batch size; the layer computes what it computes
uninstrumented; a model with both trains with the callback, counts them as recorded and is served by the plugin."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import keras as tk
from tests.keras_helpers import (
    ALL_ROLES,
    EXACT,
    UNCOMPILED,
    assert_record_equals,
    einsum_oracles,
    fit_on_tokens,
    record_at,
    records,
)
from tests.plugin_helpers import get_json, make_client

BATCH, T_LEN, S_LEN, DIM, V_DIM = 3, 5, 6, 4, 3


def plain(layer, query, value, causal, weights):
    """The layer's computation in plain TensorFlow and the gradients of sum(output * weights) with respect to the
    score product Q.K^T (before the scale) and the output, with a head axis of 1 as `einsum_oracles` takes them."""
    q, v = tf.constant(query), tf.constant(value)
    k = v[..., :DIM]  # (the key is the value's first DIM features: see `inputs`)
    with tf.GradientTape() as tape:
        tape.watch([q, k, v])
        product = tf.linalg.matmul(q, k, transpose_b=True)
        if isinstance(layer, keras.layers.AdditiveAttention):
            scores = tf.reduce_sum(layer.scale * tf.tanh(q[:, :, None] + k[:, None]), -1)
        elif layer.score_mode == "concat":
            scores = layer.concat_score_weight * tf.reduce_sum(tf.tanh(layer.scale * (q[:, :, None] + k[:, None])), -1)
        else:
            scores = product * (1.0 if layer.scale is None else layer.scale)
        if causal:
            scores = tf.where(tf.linalg.band_part(tf.ones((T_LEN, S_LEN), tf.bool), -1, 0), scores, scores - 1e9)
        a = tf.nn.softmax(scores)
        out = tf.linalg.matmul(a, v)
        loss = tf.reduce_sum(out * weights)
    d_s, d_o = tape.gradient(loss, [product, out], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    p = dict(q=q, k=k, v=v, a=a, d_s=d_s, d_o=d_o)
    return {name: t[:, None] for name, t in p.items()}, out


def inputs():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(BATCH, T_LEN, DIM)).astype(np.float32)
    value = rng.normal(size=(BATCH, S_LEN, V_DIM + 1)).astype(np.float32)
    return query, value, rng.normal(size=(BATCH, T_LEN, V_DIM + 1)).astype(np.float32)


LAYERS = {
    "dot": lambda: keras.layers.Attention(name="att"),
    "scaled": lambda: keras.layers.Attention(use_scale=True, name="att"),
    "concat": lambda: keras.layers.Attention(score_mode="concat", use_scale=True, name="att"),
    "additive": lambda: keras.layers.AdditiveAttention(name="att"),
}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_the_products_records_equal_the_classifiers_on_the_same_batch(tmp_path, kind, causal):
    keras.utils.set_random_seed(3)
    query, value, weights = inputs()
    key = value[..., :DIM]
    layer = LAYERS[kind]()
    uninstrumented = layer([query, value, key], use_causal_mask=causal)
    if kind == "scaled":
        layer.scale.assign(1.7)
        uninstrumented = layer([query, value, key], use_causal_mask=causal)
    recorder = tk.LayerRecorder(layer, tmp_path, layers=[layer], roles=ALL_ROLES, **EXACT, **UNCOMPILED)
    parts = ["attention_scores", "attention_values"] if kind in ("dot", "scaled") else ["attention_values"]
    assert [t.name for t in recorder.targets] == [f"att/{part}" for part in parts]
    assert recorder.skipped == {}

    @tf.function(input_signature=[tf.TensorSpec([None, T_LEN, DIM]), tf.TensorSpec([None, S_LEN, V_DIM + 1])])
    def step(q, v):
        with recorder.recording(0, True):
            with tf.GradientTape() as tape:
                tape.watch([q, v])  # (the layer has no projections: the gradients reach its inputs)
                out = layer([q, v, v[..., :DIM]], use_causal_mask=causal)
                loss = tf.reduce_sum(out * weights)
            return out, tape.gradient(loss, [q, v])

    out, _ = step(query, value)
    recorder.flush()
    np.testing.assert_allclose(out.numpy(), np.asarray(uninstrumented), rtol=1e-5, atol=1e-6)
    assert "_apply_scores" not in vars(layer) and "_calculate_scores" not in vars(layer)
    p, plain_out = plain(layer, query, value, causal, weights)
    np.testing.assert_allclose(plain_out.numpy(), out.numpy(), rtol=1e-5, atol=1e-5)
    expected = {name: want for name, want in einsum_oracles(p).items() if name.split("/")[0] in parts}
    recs = records(tmp_path)
    assert sorted(recs) == sorted(f"att/{name}" for name in expected)
    for name, want in expected.items():
        md = recs[f"att/{name}"][0]
        assert (md.op, md.units, md.layer) == (name.split("/")[0], 1, "att/" + name.split("/")[0])
        assert_record_equals(record_at(recs, f"att/{name}", 0), want)


def test_a_model_with_both_trains_with_the_callback_and_tensorboard_serves_their_products(tmp_path):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8,), dtype="int32")
    h = keras.layers.Embedding(30, 6, name="embed")(inputs)
    dot = keras.layers.Attention(use_scale=True, name="dot")([h, h], use_causal_mask=True)
    additive = keras.layers.AdditiveAttention(name="additive")([h, h])
    h = keras.layers.GlobalAveragePooling1D(name="pool")(keras.layers.Concatenate(name="cat")([dot, additive]))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
    per_layer = fit_on_tokens(model, tmp_path, 30, 4)
    assert per_layer["dot/attention_scores"] == (8 * 8 * 6, True)  # T x S x d
    assert per_layer["additive/attention_values"] == (8 * 8 * 6, True)
    assert "additive/attention_scores" not in per_layer  # (additive scores: no matmul)
    client, _ = make_client(str(tmp_path))
    run = next(r for r in get_json(client, "/runs")["runs"] if r["run"] == "train")
    layers = {layer["name"]: layer["roles"] for layer in run["layers"]}
    for name in ("dot/attention_scores", "dot/attention_values", "additive/attention_values"):
        assert set(layers[name]) == set(ALL_ROLES), layers.keys()
        units = get_json(client, "/units", run="train", role="forward", layer=name)
        assert (units["step"], len(units["cells"])) == (0, 1)  # unit detail: the fit's first record
