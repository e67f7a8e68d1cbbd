"""MultiHeadAttention's score and value einsums (`layers/attention.py`): the records of the three roles against
the per-cell classifiers on the same batch, for self- and cross-attention, key_dim != value_dim, a causal mask and
an unknown batch size; the layer computes what it computes uninstrumented; a Transformer trains with the callback
and its attention records read back through TensorBoard."""

import math
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import aggregates
from tb_matmul_explainer import keras as tk
from tests.keras_helpers import (
    ALL_ROLES,
    UNCOMPILED,
    assert_record_equals,
    batched_oracle,
    einsum_oracles,
    heads_major,
    plain_attention,
    record_at,
    record_attention_step,
    records,
    run_script,
)

HEADS, KEY_DIM, VALUE_DIM, BATCH = 2, 4, 3, 3


def mha_attention(layer, query, value, causal, weights):
    """`plain_attention` of the layer's projections (causal: a lower-triangular mask)."""
    q = heads_major(layer.query_dense(query)) * (1.0 / math.sqrt(KEY_DIM))
    k, v = heads_major(layer.key_dense(value)), heads_major(layer.value_dense(value))
    allowed = tf.linalg.band_part(tf.ones((q.shape[2], k.shape[2]), tf.bool), -1, 0) if causal else None
    return plain_attention(q, k, v, allowed, layer.output_dense, weights)


def test_the_batched_kernels_equal_the_classifiers_compiled_and_sampled():
    """`aggregates.batched_matmul` XLA-compiled, with exact zeros; near_zero="sampled" over all entries is exact,
    over fewer it rescales to the batch (near-zero cells stay exact)."""
    rng = np.random.default_rng(1)
    first = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)
    first[first < -0.6] = 0.0
    second = rng.normal(size=(4, 3, 6, 7)).astype(np.float32)
    want = batched_oracle(first, second)
    got = aggregates.batched_matmul(first, second, threshold_method="exact", near_zero="exact", jit=True)
    assert_record_equals(got, want)
    sampled = dict(threshold_method="exact", near_zero="sampled", seed=3, jit=False)
    assert_record_equals(aggregates.batched_matmul(first, second, near_zero_sample_size=4, **sampled), want)
    estimate = aggregates.batched_matmul(first, second, near_zero_sample_size=2, **sampled)
    np.testing.assert_array_equal(estimate.counts, want["counts"])
    np.testing.assert_array_equal(estimate.near_zero_cells, want["near_zero_cells"])
    assert estimate.near_zero_counts.numpy().sum() % 2 == 0  # two of four entries, counted twice


@pytest.mark.parametrize("case", ["self", "cross", "causal"])
def test_the_einsums_records_equal_the_classifiers_on_the_same_batch(tmp_path, case):
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    t_len, s_len, v_features = (5, 7, 6) if case == "cross" else (6, 6, 8)
    query = rng.normal(size=(BATCH, t_len, 8)).astype(np.float32)
    value = rng.normal(size=(BATCH, s_len, v_features)).astype(np.float32) if case == "cross" else query
    weights = rng.normal(size=(BATCH, t_len, 8)).astype(np.float32)
    causal = case == "causal"
    layer = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, value_dim=VALUE_DIM, name="mha")
    out = record_attention_step(layer, tmp_path, query, value, causal, weights)
    p = mha_attention(layer, query, value, causal, weights)
    np.testing.assert_allclose(p["out"].numpy(), out.numpy(), rtol=1e-5, atol=1e-6)
    expected = einsum_oracles(p)
    recs = records(tmp_path)
    assert sorted(recs) == sorted(f"mha/{name}" for name in expected)
    for name, want in expected.items():
        md = recs[f"mha/{name}"][0]
        assert (md.op, md.units, md.layer) == (name.split("/")[0], HEADS, "mha/" + name.split("/")[0])
        assert_record_equals(record_at(recs, f"mha/{name}", 0), want)
    assert recs["mha/attention_scores/forward"][0].operands == ("query", "key")
    assert recs["mha/attention_values/kernel_gradient"][0].operands == ("attention", "output_gradient")
    if causal:  # masked scores are counted; their probabilities and score gradients are exactly zero (class Z)
        a = record_at(recs, "mha/attention_values/forward", 0)
        assert a.cells.sum() == BATCH * HEADS * t_len * VALUE_DIM
        assert a.counts.sum() == BATCH * HEADS * t_len * s_len * VALUE_DIM
        masked = BATCH * HEADS * (t_len * (t_len - 1) // 2) * VALUE_DIM
        assert a.counts[:, 3:6].sum() >= masked


def transformer(t_len=12, causal=True):
    """One Transformer encoder block over token embeddings, causal self-attention with key_dim != value_dim."""
    inputs = keras.Input((t_len,), dtype="int32")
    h = keras.layers.Embedding(50, 32, name="embed")(inputs)
    attention = keras.layers.MultiHeadAttention(4, 8, value_dim=6, name="attention")
    a = attention(h, h, use_causal_mask=causal)
    h = keras.layers.LayerNormalization(name="norm_1")(h + a)
    f = keras.layers.Dense(32, name="ffn")(keras.layers.Dense(64, activation="relu", name="ffn_1")(h))
    h = keras.layers.GlobalAveragePooling1D(name="pool")(keras.layers.LayerNormalization(name="norm_2")(h + f))
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(h), name="transformer")


def test_a_transformer_trains_with_the_callback_and_its_einsums_read_back_through_tensorboard(tmp_path):
    from tb_matmul_explainer import explain, loader

    keras.utils.set_random_seed(6)
    model = transformer()
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(6).integers(0, 50, (64, 12)).astype(np.int32)
    callback = tk.ExplainerCallback(
        tmp_path, update_freq=2, roles=ALL_ROLES, unit_detail_every=1, verbose=0, **UNCOMPILED
    )
    model.fit(x, x[:, 0] % 4, batch_size=16, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    assert callback.skipped == {} and callback.coverage.share == 1.0
    recs = records(tmp_path)
    cells = {  # a head's cells per role: batch x rows x columns of its result
        "attention_scores/forward": 16 * 12 * 12,
        "attention_scores/kernel_gradient": 16 * 8 * 12,
        "attention_scores/input_gradient": 16 * 12 * 8,
        "attention_values/forward": 16 * 12 * 6,
        "attention_values/kernel_gradient": 16 * 12 * 6,
        "attention_values/input_gradient": 16 * 12 * 12,
    }
    contracted = {"attention_scores": (8, 12, 12), "attention_values": (12, 12, 6)}  # per role: C of its matmul
    for name, n in cells.items():
        tag = f"attention/{name}"
        assert [step for step, _ in recs[tag][1]] == [0, 2], tag
        record = record_at(recs, tag, 2)
        part, role = name.split("/")
        np.testing.assert_array_equal(record.cells, np.full(4, n), err_msg=tag)
        products = n * contracted[part][("forward", "kernel_gradient", "input_gradient").index(role)]
        np.testing.assert_array_equal(record.counts.sum(1), np.full(4, products), err_msg=tag)
        assert np.isfinite(record.sums).all() and 0 <= record.near_zero_cells.sum() <= record.cells.sum(), tag
    # Causal: the masked probabilities are exactly zero, so at least the masked share of A's products is Z.
    values = record_at(recs, "attention/attention_values/forward", 2)
    assert values.counts[:, 3:6].sum() / values.counts.sum() >= (12 * 11 / 2) / (12 * 12)
    diagnoses, alerts = explain.diagnose_run(loader.load(str(tmp_path)).runs["train"])
    assert alerts == [], [(a.kind, a.layer, a.message) for a in alerts]
    assert {d.layer for d in diagnoses} >= {"attention/attention_scores", "attention/attention_values"}


MIRRORED = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tb_matmul_explainer import keras as tk

    def build():
        keras.utils.set_random_seed(2)
        inputs = keras.Input((5, 6))
        a = keras.layers.MultiHeadAttention(2, 3, value_dim=2, name="mha")(inputs, inputs, use_causal_mask=True)
        model = keras.Model(inputs, keras.layers.Dense(1, name="out")(keras.layers.Flatten()(a)))
        model.compile(keras.optimizers.SGD(0.01), "mse")
        return model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 5, 6)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    settings = dict(update_freq=1, roles=("forward", "kernel_gradient", "input_gradient"), threshold_method="exact",
                    near_zero="exact", jit=False, verbose=0)
    callback = tk.ExplainerCallback(sys.argv[1] + "/one", **settings)
    build().fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        model = build()
    callback = tk.ExplainerCallback(sys.argv[1] + "/two", **settings)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
""")


def test_replicas_sum_the_einsums_records_over_the_global_batch(tmp_path):
    """Under MirroredStrategy (two logical CPUs, a subprocess) each replica explains its half of the batch; K and V
    are activations, so their gradients are per replica and every role's cells and products add up to the
    single-replica record's (sums too: the nine sums add up to the results, whatever the thresholds)."""
    run_script(MIRRORED, tmp_path, timeout=600)
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    tags = [f"mha/attention_{part}/{role}" for part in ("scores", "values") for role in ALL_ROLES]
    for tag in tags:
        single, summed = record_at(one, tag, 0), record_at(two, tag, 0)
        np.testing.assert_array_equal(summed.cells, single.cells, err_msg=tag)
        np.testing.assert_array_equal(summed.counts.sum(1), single.counts.sum(1), err_msg=tag)
        np.testing.assert_allclose(summed.sums.sum(1), single.sums.sum(1), rtol=1e-4, atol=1e-5, err_msg=tag)
        np.testing.assert_allclose(summed.result_magnitude, single.result_magnitude, rtol=1e-4, err_msg=tag)
