"""GroupQueryAttention's score and value einsums (`layers/attention.py`, `GroupQueryAttentionAdapter`): the records of
the three roles against the per-cell classifiers on the same batch (per query head, K and V repeated to the query
heads), for self- and cross-attention, a causal mask, a causal sliding window, a gate and an unknown batch size; a model
with GroupQueryAttention trains with the callback, counts its einsums as recorded and is served by the plugin under
their Keras paths."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import internals
from tb_matmul_explainer import keras as tk
from tests.keras_helpers import (
    ALL_ROLES,
    UNCOMPILED,
    assert_record_equals,
    einsum_oracles,
    fit_on_tokens,
    heads_major,
    plain_attention,
    record_at,
    record_attention_step,
    records,
)
from tests.plugin_helpers import get_json, make_client

Q_HEADS, KV_HEADS, HEAD_DIM, BATCH = 4, 2, 3, 3


def plain_gqa(layer, query, value, allowed, weights):
    """`plain_attention` of the layer's projections, K and V repeated to the query heads."""
    dense = {sub.name: sub for sub in internals.sublayers(layer)}
    q = heads_major(dense["query"](query)) * (1.0 / math.sqrt(HEAD_DIM))
    k, v = (heads_major(tf.repeat(dense[name](value), layer.num_repeats, axis=2)) for name in ("key", "value"))
    gate = dense["gate"](query) if "gate" in dense else 1.0
    return plain_attention(q, k, v, allowed, lambda o: dense["attention_output"](o * gate), weights)


def mask_of(case, t_len, s_len):
    """The [T, S] positions a query may attend to in `case` (None: all)."""
    rows, cols = np.arange(t_len)[:, None], np.arange(s_len)[None, :]
    if case == "causal":
        return tf.constant(rows >= cols)
    if case == "window":  # causal and a sliding window of 3: Keras builds the mask in `call`
        return tf.constant((rows >= cols) & (np.abs(rows - cols) < 3))
    return None


@pytest.mark.parametrize("case", ["self", "cross", "causal", "window", "gate"])
def test_the_einsums_records_equal_the_classifiers_per_query_head(tmp_path, case):
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    t_len, s_len = (5, 7) if case == "cross" else (6, 6)
    query = rng.normal(size=(BATCH, t_len, 8)).astype(np.float32)
    value = rng.normal(size=(BATCH, s_len, 8)).astype(np.float32) if case == "cross" else query
    weights = rng.normal(size=(BATCH, t_len, 8)).astype(np.float32)
    causal = case in ("causal", "window")
    layer = keras.layers.GroupQueryAttention(
        HEAD_DIM, Q_HEADS, KV_HEADS, sliding_window=3 if case == "window" else None, use_gate=case == "gate", name="gqa"
    )
    out = record_attention_step(layer, tmp_path, query, value, causal, weights)
    p = plain_gqa(layer, query, value, mask_of(case, t_len, s_len), weights)
    np.testing.assert_allclose(p["out"].numpy(), out.numpy(), rtol=1e-5, atol=1e-6)
    expected = einsum_oracles(p)
    recs = records(tmp_path)
    assert sorted(recs) == sorted(f"gqa/{name}" for name in expected)
    for name, want in expected.items():
        md = recs[f"gqa/{name}"][0]
        assert (md.op, md.units, md.layer) == (name.split("/")[0], Q_HEADS, "gqa/" + name.split("/")[0])
        assert_record_equals(record_at(recs, f"gqa/{name}", 0), want)
    assert recs["gqa/attention_scores/input_gradient"][0].operands == ("output_gradient", "key")
    if causal:  # masked probabilities are exactly zero (class Z of the value einsum's A)
        a = record_at(recs, "gqa/attention_values/forward", 0)
        masked = BATCH * Q_HEADS * int((~mask_of(case, t_len, s_len).numpy()).sum()) * HEAD_DIM
        assert a.counts[:, 3:6].sum() >= masked


def decoder(t_len=10):
    """A decoder block over token embeddings: causal GroupQueryAttention (8 query heads sharing 2 key/value heads,
    gated) and a feed-forward layer."""
    inputs = keras.Input((t_len,), dtype="int32")
    h = keras.layers.Embedding(40, 16, name="embed")(inputs)
    a = keras.layers.GroupQueryAttention(4, 8, 2, use_gate=True, name="gqa")(h, h, use_causal_mask=True)
    h = keras.layers.LayerNormalization(name="norm")(h + a)
    h = keras.layers.GlobalAveragePooling1D(name="pool")(keras.layers.Dense(16, activation="relu", name="ffn")(h))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h), name="decoder")


def test_a_gqa_model_trains_with_the_callback_and_tensorboard_serves_its_einsums(tmp_path):
    keras.utils.set_random_seed(5)
    model = decoder()
    per_layer = fit_on_tokens(model, tmp_path, 40, 5)
    assert per_layer["gqa/attention_scores"] == (8 * 10 * 10 * 4, True)  # query heads x T x S x head_dim
    assert per_layer["gqa/attention_values"] == (8 * 10 * 10 * 4, True)
    recs = records(tmp_path)
    cells = {"attention_scores": 16 * 10 * 10, "attention_values": 16 * 10 * 4}  # a query head's forward cells
    for part, n in cells.items():
        record = record_at(recs, f"gqa/{part}/forward", 1)
        np.testing.assert_array_equal(record.cells, np.full(8, n))

    client, _ = make_client(str(tmp_path))
    run = next(r for r in get_json(client, "/runs")["runs"] if r["run"] == "train")
    layers = {layer["name"]: layer["roles"] for layer in run["layers"]}
    for part in ("attention_scores", "attention_values"):
        assert set(layers[f"gqa/{part}"]) == set(ALL_ROLES), layers.keys()
        for role in ALL_ROLES:
            units = get_json(client, "/units", run="train", role=role, layer=f"gqa/{part}")
            assert (units["step"], len(units["cells"])) == (0, 8)  # unit detail: the fit's first record
    assert {"gqa/query", "gqa/key", "gqa/value", "gqa/gate", "gqa/attention_output"} <= set(layers)


def test_a_subclass_overriding_compute_attention_lists_both_einsums_as_not_recorded(tmp_path):
    class Custom(keras.layers.GroupQueryAttention):
        def _compute_attention(self, *args, **kwargs):
            return super()._compute_attention(*args, **kwargs)

    layer = Custom(HEAD_DIM, Q_HEADS, KV_HEADS, name="custom")
    x = np.zeros((1, 4, 8), np.float32)
    layer(x, x)
    with pytest.warns(tk.UnsupportedLayerWarning):
        recorder = tk.LayerRecorder(layer, tmp_path, layers=[layer], **UNCOMPILED)
    assert sorted(recorder.skipped) == ["custom/attention_scores", "custom/attention_values"]
    assert all("overrides _compute_attention" in why for why in recorder.skipped.values())
