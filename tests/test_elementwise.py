"""The elementwise records' totals (`elementwise.py`) against plain NumPy: exact up to MAX_ROWS rows, a uniform row
sample rescaled to every row above it, with `cells` and the non-finite counts always exact."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import activations, elementwise
from tb_matmul_explainer.aggregates import classes

SEED = tf.constant([7, 0], tf.int64)


def _classes(t, thr):
    """(P, Z, N) masks as `ops` classes them."""
    pos = (t >= thr) & (t > 0)
    neg = (t <= -thr) & (t < 0)
    return pos, ~(pos | neg), neg


def _input_features(x, thr):
    totals, extras = elementwise.input_feature_totals(tf.constant(x), thr, seed=SEED)
    return totals, extras


def test_up_to_max_rows_every_row_is_counted_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(elementwise.MAX_ROWS, 5)).astype(np.float32)
    x[x < -0.5] = 0.0
    totals, extras = _input_features(x, 0.1)
    np.testing.assert_array_equal(totals.cells, np.full(5, elementwise.MAX_ROWS))
    np.testing.assert_array_equal(totals.near_zero_cells, _classes(x, np.float32(0.1))[1].sum(0))
    np.testing.assert_array_equal(extras.reference, (x == 0).sum(0))
    np.testing.assert_allclose(extras.result_magnitude, np.abs(x).sum(0), rtol=1e-5)


def test_above_max_rows_a_rescaled_sample_with_exact_cells_and_nonfinite_counts():
    rng = np.random.default_rng(1)
    rows = 6 * elementwise.MAX_ROWS
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    x[:, 0] = 0.0  # a dead feature: every sampled row is zero, so all rows read as zero
    x[:, 1] = np.where(rng.random(rows) < 0.3, 0.0, x[:, 1])  # 30% zeros
    x[5, 2], x[rows - 1, 3] = np.nan, np.inf  # counted wherever they are, sampled or not
    totals, extras = _input_features(x, 0.1)
    np.testing.assert_array_equal(totals.cells, np.full(4, rows))
    np.testing.assert_array_equal(totals.nonfinite, [2, 0, 0])
    assert totals.near_zero_cells[0] == rows and extras.reference[0] == rows  # exactly, not nearly
    near_zero = _classes(x, np.float32(0.1))[1].mean(0)
    # Shares from 4096 sampled rows: within 4 standard errors (at most 0.8 percentage points each).
    np.testing.assert_allclose(totals.near_zero_cells / rows, near_zero, atol=0.032)
    np.testing.assert_allclose(extras.reference[1] / rows, 0.3, atol=0.032)
    finite = np.where(np.isfinite(x), np.abs(x), 0.0)
    np.testing.assert_allclose(extras.result_magnitude[1:2], finite.sum(0)[1:2], rtol=0.05)


def test_activation_gradient_sample_matches_the_exact_shares():
    rng = np.random.default_rng(2)
    rows = 3 * elementwise.MAX_ROWS
    d_a = rng.normal(size=(rows, 3)).astype(np.float32)
    on = rng.random((rows, 3)) < [[0.1, 0.5, 1.0]]  # ReLU on in 10%, 50%, 100% of cells
    z = np.where(on, 1.0, -1.0).astype(np.float32) * rng.uniform(0.1, 2.0, size=(rows, 3)).astype(np.float32)
    d_z = d_a * on
    d_z[7, 1] = np.nan  # TensorFlow's dJ/dz: its non-finite values are counted over every cell
    relu = activations.describe(keras.activations.relu)
    totals, _ = elementwise.activation_gradient_totals(
        tf.constant(d_a), tf.constant(z), tf.constant(d_z), relu, np.float32(0.05), np.float32(0.05), seed=SEED
    )
    np.testing.assert_array_equal(totals.nonfinite, [0, 0, 1])
    counts = totals.counts.numpy() / rows
    off = counts[:, 1::3].sum(1)  # f' in Z: the activation off
    np.testing.assert_allclose(off, [0.9, 0.5, 0.0], atol=0.03)
    assert counts[2, 1::3].sum() == 0  # never off: no sampled row can say otherwise
    np.testing.assert_allclose(totals.counts.numpy().sum(1), np.full(3, rows))  # the rescaled pairs add up
    assert float(totals.thresholds[1]) == float(np.nextafter(np.float32(0.01), np.float32(1)))


def test_slope_nonfinite_counted_only_where_it_can_occur():
    z = np.zeros((3 * elementwise.MAX_ROWS, 2), np.float32)
    z[0, 0] = np.nan
    exponential = activations.describe(keras.activations.exponential)  # no bounded slope: always counted
    z_big = np.full((10, 2), 100.0, np.float32)  # exp(100) overflows float32: an infinite slope
    for activation, values, expected in (
        (activations.describe(keras.activations.relu), z, 0),  # relu'(NaN) is 0 in TensorFlow
        (activations.describe(keras.activations.sigmoid), z, 1),
        (exponential, z_big, 20),
    ):
        t = tf.constant(values)
        totals, _ = elementwise.activation_gradient_totals(
            tf.ones_like(t), t, tf.ones_like(t), activation, 0.1, 0.1, seed=SEED
        )
        assert int(totals.nonfinite[1]) == expected, activation.name


@pytest.mark.parametrize("rows", [100, 3 * elementwise.MAX_ROWS])
def test_unknown_row_count_takes_the_same_route(rows):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 2)).astype(np.float32)
    f = tf.function(
        lambda t: elementwise.input_feature_totals(t, 0.1, seed=SEED),
        input_signature=[tf.TensorSpec([None, 2], tf.float32)],
    )
    unknown, _ = f(tf.constant(x))
    known, _ = _input_features(x, 0.1)
    np.testing.assert_array_equal(unknown.near_zero_cells, known.near_zero_cells)
    np.testing.assert_array_equal(unknown.cells, np.full(2, rows))


def test_max_rows_none_counts_every_row():
    """near_zero="exact" passes max_rows=None: every row is counted, whatever their number."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2 * elementwise.MAX_ROWS + 1, 3)).astype(np.float32)
    totals, extras = elementwise.input_feature_totals(tf.constant(x), 0.1, max_rows=None)
    np.testing.assert_array_equal(totals.near_zero_cells, _classes(x, np.float32(0.1))[1].sum(0))
    np.testing.assert_allclose(extras.result_magnitude, np.abs(x).sum(0), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("thr", [0.0, -0.0, 0.5, 1e-45, np.inf, -1.0])
def test_class_codes_and_near_zero_follow_the_class_definition(dtype, thr):
    """P: t >= thr and t > 0; N: t <= -thr and t < 0; Z otherwise (zeros, small values, NaN), at edge values, the
    definition evaluated by TensorFlow's own comparisons (which flush subnormals on CPU, as the codes do)."""
    tiny = np.finfo(dtype).tiny
    t = np.array([0.0, -0.0, 0.5, -0.5, 0.49, -0.51, tiny, -tiny / 4, np.inf, -np.inf, np.nan, 3.0, -3.0], dtype)
    threshold_tensor = tf.constant(thr, tf.as_dtype(dtype))
    tt = tf.constant(t)
    pos = ((tt >= threshold_tensor) & (tt > 0)).numpy()
    neg = ((tt <= -threshold_tensor) & (tt < 0)).numpy()
    expected = np.where(pos, 0, np.where(neg, 2, 1))
    assert set(expected) == {0, 1, 2}
    np.testing.assert_array_equal(elementwise.class_codes(t, threshold_tensor).numpy(), expected)
    np.testing.assert_array_equal(elementwise._near_zero(t, threshold_tensor).numpy(), expected == 1)
    kernel_pos, kernel_neg = classes.masks(tt, threshold_tensor)  # the aggregate kernels' masks
    np.testing.assert_array_equal(kernel_pos.numpy(), pos)
    np.testing.assert_array_equal(kernel_neg.numpy(), neg)
    np.testing.assert_array_equal(classes.near_zero_mask(tt, threshold_tensor).numpy(), expected == 1)


def _relu_activation(rng, rows, units):
    m = rng.normal(size=(rows, units)).astype(np.float32)
    m[:, 0] = np.abs(m[:, 0])  # x.W positive ...
    bias = np.linspace(-1.0, 1.0, units).astype(np.float32)
    bias[0] = -10.0  # ... but the bias outweighs it: unit 0 is dead
    z = m + bias
    return m, bias, z, np.maximum(z, 0)


def _activation_totals(m, bias, z, a, **kwargs):
    relu = activations.describe(keras.activations.relu)
    return elementwise.activation_totals(
        tf.constant(m),
        tf.constant(z),
        tf.constant(a),
        relu,
        elementwise.class_codes(bias, 0.05),
        0,
        (np.float32(0.1), np.float32(0.05)),
        np.float32(0.1),
        seed=SEED,
        **kwargs,
    )


def test_pair_split_from_a_row_sample_keeps_the_per_unit_columns_exact():
    """pair_rows: the pair split counted on a uniform row sample, rescaled to every row; inactive cells, |z| and
    outputs near zero per unit still over every row (up to max_rows)."""
    rng = np.random.default_rng(5)
    rows, units = 4096, 6
    m, bias, z, a = _relu_activation(rng, rows, units)
    exact, exact_extras = _activation_totals(m, bias, z, a, pair_rows=None)
    sampled, extras = _activation_totals(m, bias, z, a, pair_rows=1024)
    for field in ("cells", "near_zero_cells", "thresholds", "nonfinite"):
        np.testing.assert_array_equal(getattr(sampled, field), getattr(exact, field))
    np.testing.assert_array_equal(extras.reference, exact_extras.reference)
    np.testing.assert_allclose(extras.result_magnitude, exact_extras.result_magnitude, rtol=1e-6)
    np.testing.assert_array_equal(exact.near_zero_cells, (z <= 0).sum(0))
    assert sampled.near_zero_cells[0] == rows  # the dead unit, exactly
    np.testing.assert_array_equal(sampled.counts.numpy().sum(1), np.full(units, rows))  # every row, rescaled
    assert sampled.near_zero_counts[0].numpy().sum() == rows  # dead in every sampled row: dead in all of them
    # Shares from 1024 of 4096 rows: within 4 standard errors (at most 1.6 percentage points each).
    np.testing.assert_allclose(sampled.counts / rows, exact.counts / rows, atol=0.063)
    np.testing.assert_allclose(sampled.near_zero_counts / rows, exact.near_zero_counts / rows, atol=0.063)
    assert not np.array_equal(sampled.counts, exact.counts)  # (a sample, not the same rows)


@pytest.mark.parametrize("group_size", [2, 3])
def test_pair_split_per_stored_row_sums_the_units_of_each_row(group_size):
    """group_size: the pair blocks summed per `group_size` consecutive units (as `metadata.pack_record` stores
    them), the per-unit columns untouched."""
    rng = np.random.default_rng(6)
    m, bias, z, a = _relu_activation(rng, 50, 7)
    per_unit, _ = _activation_totals(m, bias, z, a)
    grouped, _ = _activation_totals(m, bias, z, a, group_size=group_size)
    groups = np.arange(7) // group_size
    for field in ("counts", "sums", "near_zero_counts", "near_zero_sums"):
        value = getattr(per_unit, field).numpy()
        expected = np.stack([value[groups == i].sum(0) for i in range(groups[-1] + 1)])
        np.testing.assert_allclose(getattr(grouped, field), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(grouped.near_zero_cells, per_unit.near_zero_cells)
    d_a = rng.normal(size=z.shape).astype(np.float32)
    relu = activations.describe(keras.activations.relu)
    args = (tf.constant(d_a), tf.constant(z), tf.constant(d_a), relu, np.float32(0.1), np.float32(0.05))
    gradient, _ = elementwise.activation_gradient_totals(*args)
    gradient_grouped, _ = elementwise.activation_gradient_totals(*args, group_size=group_size)
    expected = np.stack([gradient.counts.numpy()[groups == i].sum(0) for i in range(groups[-1] + 1)])
    np.testing.assert_array_equal(gradient_grouped.counts, expected)


def test_compiled_totals_equal_the_uncompiled_ones():
    """`compiled` (the recorder's jit=True): the same counts, and sums equal up to float64 rounding."""
    rng = np.random.default_rng(7)
    m, bias, z, a = _relu_activation(rng, 300, 5)
    d_a = rng.normal(size=z.shape).astype(np.float32)
    relu = activations.describe(keras.activations.relu)
    act_args = (tf.constant(m), tf.constant(z), tf.constant(a), relu, elementwise.class_codes(bias, 0.05), 0)
    act_args += ((np.float32(0.1), np.float32(0.05)), np.float32(0.1))
    grad_args = (tf.constant(d_a), tf.constant(z), tf.constant(d_a), relu, np.float32(0.1), np.float32(0.05))
    for fn, args in (
        (elementwise.activation_totals, act_args),
        (elementwise.activation_gradient_totals, grad_args),
        (elementwise.input_feature_totals, (tf.constant(a), np.float32(0.1))),
    ):
        kwargs = dict(seed=SEED, max_rows=256, pair_rows=64, group_size=2)
        if fn is elementwise.input_feature_totals:
            kwargs = dict(seed=SEED, max_rows=256, group_size=2)
        plain = fn(*args, **kwargs)
        fast = elementwise.compiled(fn)(*args, **kwargs)
        for p, f in zip(tf.nest.flatten(plain), tf.nest.flatten(fast)):
            np.testing.assert_allclose(f, p, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(fast[0].counts, plain[0].counts)
        np.testing.assert_array_equal(fast[0].near_zero_cells, plain[0].near_zero_cells)
