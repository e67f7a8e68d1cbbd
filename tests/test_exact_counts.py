"""Property tests of `aggregates.exact`: the exact-count arithmetic equals integer arithmetic in NumPy (int64)
for random shapes, count bounds and contraction lengths, including lengths and bounds past float32's 2**24."""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tb_matmul_explainer.aggregates import exact

SETTINGS = dict(deadline=None, max_examples=40)


@st.composite
def counts_and_masks(draw, max_bound=exact.INT32_MAX):
    """Non-negative int32 counts `[n, c]` (each <= bound) and two disjoint boolean masks `[c, u]`."""
    n, c, u = draw(st.integers(0, 4)), draw(st.integers(0, 6)), draw(st.integers(0, 4))
    bound = draw(st.sampled_from([1, 7, exact.PACK_LIMIT, 1 << 20, exact.F32_EXACT + 1, max_bound]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    left = rng.integers(0, bound, size=(n, c), endpoint=True).astype(np.int32)
    if left.size and draw(st.booleans()):
        left.flat[0] = bound  # the bound itself is reached
    classes = rng.integers(0, 3, size=(c, u))
    return left, bound, classes == 0, classes == 2


def _int_matmul(left, mask):
    return left.astype(np.int64) @ mask.astype(np.int64)


@settings(**SETTINGS)
@given(data=counts_and_masks(), length=st.sampled_from([None, "c", 1 << 12, 1 << 23, 1 << 25]))
def test_count_pair_matmul_is_the_integer_product_of_the_masks(data, length):
    """Packed (P + base * N) bit-plane products decode to the integer matmul of the 0/1 masks, whatever length
    bound the caller states (None: unknown), as long as it is at least the true one."""
    left, bound, pos, neg = data
    length = left.shape[1] if length == "c" else length
    got_p, got_n = exact.count_pair_matmul(tf.constant(left), tf.constant(pos), tf.constant(neg), bound, length)
    assert got_p.dtype == tf.float64 and got_n.dtype == tf.float64
    np.testing.assert_array_equal(got_p.numpy(), _int_matmul(left, pos))
    np.testing.assert_array_equal(got_n.numpy(), _int_matmul(left, neg))


@settings(**SETTINGS)
@given(data=counts_and_masks(), transposed=st.booleans())
def test_count_pair_matmul_transposed(data, transposed):
    """The same with the counts stored transposed (`transpose_a`) and the masks too (`transpose_b`)."""
    left, bound, pos, neg = data
    a, p, n = (left.T, pos.T, neg.T) if transposed else (left, pos, neg)
    got_p, got_n = exact.count_pair_matmul(
        tf.constant(a),
        tf.constant(p),
        tf.constant(n),
        bound,
        left.shape[1],
        transpose_a=transposed,
        transpose_b=transposed,
    )
    np.testing.assert_array_equal(got_p.numpy(), _int_matmul(left, pos))
    np.testing.assert_array_equal(got_n.numpy(), _int_matmul(left, neg))


@settings(**SETTINGS)
@given(data=counts_and_masks(), length=st.sampled_from([None, "c", 1 << 12, 1 << 24]))
def test_exact_matmul_of_bit_planes_equals_the_integer_product(data, length):
    left, bound, pos, _ = data
    length = left.shape[1] if length == "c" else length
    got = exact.exact_matmul(tf.constant(left), tf.constant(pos.astype(np.float32)), bound, length)
    assert got.dtype == tf.float64
    np.testing.assert_array_equal(got.numpy(), _int_matmul(left, pos))


@settings(**SETTINGS)
@given(value=st.integers(0, exact.INT32_MAX), bits=st.integers(1, 24))
def test_bit_planes_recombine_to_the_integer(value, bits):
    planes = exact.planes_for(value, bits)
    assert (1 << (bits * planes)) > value  # enough planes for the bound
    split = exact.bit_planes(tf.constant([[value]], tf.int32), bits, planes, -2)  # [planes, 1]
    assert np.all(split.numpy() < (1 << bits))
    np.testing.assert_array_equal(exact.combine_planes(split, bits, planes).numpy(), [[value]])


@settings(**SETTINGS)
@given(length=st.integers(0, 1 << 26), bound=st.integers(1, exact.INT32_MAX))
def test_packed_plan_keeps_every_partial_sum_exact(length, bound):
    """A plan's largest P + base * N product over `length` terms stays within float32's exact integers."""
    plan = exact.packed_plan(length, bound)
    if plan is None:
        most = max(length, 1)  # even 1-bit planes cannot pack: P + base * N with base > length overflows
        assert most * ((1 << most.bit_length()) + 1) > exact.F32_EXACT
        return
    bits, base = plan
    most = ((1 << bits) - 1) * max(length, 1)
    assert base > most and most * (base + 1) <= exact.F32_EXACT


@settings(**SETTINGS)
@given(p=st.integers(0, exact.PACK_LIMIT), n=st.integers(0, exact.PACK_LIMIT))
def test_packed_counts_decode(p, n):
    """Sums of the packed code P + PACK * N decode to (P, N) while both stay within PACK_LIMIT."""
    got_p, got_n = exact.decode([tf.constant(float(p + exact.PACK * n), tf.float32)], "packed")
    assert (got_p.numpy(), got_n.numpy()) == (p, n)


@settings(**SETTINGS)
@given(bound=st.integers(0, exact.INT32_MAX), dtype=st.sampled_from([tf.float32, tf.float64]))
def test_strategy_carries_counts_up_to_the_bound_exactly(bound, dtype):
    name = exact.strategy(bound, dtype)
    if name == "packed":
        assert dtype == tf.float32 and bound * (exact.PACK + 1) < exact.F32_EXACT
    elif name == "f32":
        assert dtype == tf.float32 and bound <= exact.F32_EXACT
    else:
        assert dtype == tf.float64 or bound > exact.F32_EXACT
    assert exact.n_variants(name) == (4 if name == "packed" else 5)


@settings(**SETTINGS)
@given(rows=st.integers(0, 3 * exact.F32_EXACT), static=st.booleans())
def test_by_bound_picks_the_strategy_at_trace_or_run_time(rows, static):
    """A static bound picks the strategy in Python; an unknown one picks it in the graph, the same one."""

    def fn(name, bound):
        return tf.constant(["packed", "f32", "f64"].index(name))

    if static:
        got = exact.by_bound(rows, None, tf.float32, fn)
    else:
        got = tf.function(lambda r: exact.by_bound(None, r, tf.float32, fn))(tf.constant(rows, tf.int64))
    assert ["packed", "f32", "f64"][int(got)] == exact.strategy(rows, tf.float32)


@settings(**SETTINGS)
@given(n=st.integers(0, 6), length=st.integers(1, 1 << 25), elem_bound=st.integers(1, 1 << 12))
def test_exact_sum_is_exact_in_float64(n, length, elem_bound):
    """Integer-valued float32 entries sum exactly (in float32 only where the total stays below 2**24)."""
    rng = np.random.default_rng(n + length)
    values = rng.integers(0, elem_bound, size=(3, n), endpoint=True)
    got = exact.exact_sum(tf.constant(values, tf.float32), 1, elem_bound, max(n, length))  # length: a bound
    np.testing.assert_array_equal(got.numpy(), values.sum(1))


def test_pair_counts_fill_the_table_from_its_margins():
    """`pair_counts` derives the Z row and column from the margins: random 3x3 tables round-trip."""
    rng = np.random.default_rng(3)
    table = rng.integers(0, 50, size=(3, 3, 4)).astype(np.float64)  # [first class, second class, unit]
    cross = [[table[0, 0], table[0, 2]], [table[2, 0], table[2, 2]]]
    total_a = [table[0].sum(0), table[2].sum(0)]
    col_b = [table[:, 0].sum(0), table[:, 2].sum(0)]
    got = exact.pair_counts(cross, total_a, col_b, table.sum((0, 1)))
    np.testing.assert_array_equal(got.numpy(), table)
