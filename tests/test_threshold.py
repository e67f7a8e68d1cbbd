"""Tests for tb_matmul_explainer.threshold: bit-exact against tfp.stats.percentile (the oracle), graph mode,
non-finite handling, the sampled estimate's accuracy, and argument errors."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tb_matmul_explainer import threshold

CONFIDENCES = (0.0, 1.0, 0.95, 0.65, 0.75, 0.5, 0.99, 0.01, 0.999999, 1e-7)


def oracle(x, confidence):
    """tfp.stats.percentile of |x| over the finite values (0 when there are none), as a NumPy scalar."""
    x = np.asarray(x)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return x.dtype.type(0)
    return tfp.stats.percentile(
        tf.abs(tf.constant(finite)), 100 * (1 - float(confidence)), interpolation="midpoint"
    ).numpy()


def assert_bits_equal(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == ()
    assert got.tobytes() == want.tobytes(), f"got {got!r}, want {want!r}"


def random_tensor(rng, dtype, shape):
    """Values of one of several kinds, chosen at random: continuous, tie-heavy, zero-heavy, extreme."""
    n = int(np.prod(shape))
    kind = rng.integers(7)
    if kind == 0:
        x = rng.standard_normal(n)
    elif kind == 1:  # few distinct values
        x = rng.integers(-3, 4, n) * 0.1
    elif kind == 2:  # ReLU-like: half exact zeros, some negative zeros
        x = np.where(rng.random(n) < 0.5, 0.0, rng.standard_normal(n))
        x = np.where(rng.random(n) < 0.1, -0.0, x)
    elif kind == 3:  # wide dynamic range
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-30, 30, n)
    elif kind == 4:  # a few values repeated, all exact zeros otherwise
        x = np.zeros(n)
        x[rng.integers(0, n, max(1, n // 10))] = rng.choice([1.0, -2.5, 3.0], max(1, n // 10))
    elif kind == 5:  # uniform with ties at scale
        x = rng.integers(0, 1000, n) / 997.0
    else:  # extremes of the dtype: subnormals, the largest finite values (midpoint may overflow to inf)
        info = np.finfo(dtype)
        x = rng.choice([0.0, info.tiny / 4, info.tiny, 1.0, info.max, -info.max], n)
    return np.asarray(x, dtype=dtype).reshape(shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_tfp_on_random_tensors(dtype):
    rng = np.random.default_rng(1 if dtype == np.float32 else 2)
    for case in range(170):
        rank = case % 5
        if rank == 0:
            shape = ()
        else:
            n = int(rng.integers(1, 5000)) if case % 13 else int(rng.integers(5000, 60000))
            dims = [1] * rank
            for _ in range(8):  # spread n over the dims roughly
                dims[rng.integers(rank)] *= 2
            dims[0] = max(1, n // int(np.prod(dims[1:])))
            shape = tuple(dims)
        x = random_tensor(rng, dtype, shape)
        confidence = CONFIDENCES[case % len(CONFIDENCES)] if case % 3 else float(rng.random())
        got = threshold.percentile_threshold(tf.constant(x), confidence)
        assert_bits_equal(got, oracle(x, confidence))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_tfp_on_larger_tensors(dtype):
    rng = np.random.default_rng(3)
    for n in (65537, 300_001):
        for x in (rng.standard_normal(n), np.maximum(rng.standard_normal(n), 0.0)):
            x = x.astype(dtype)
            for confidence in (0.95, 0.5, 0.0, 1.0):
                assert_bits_equal(threshold.percentile_threshold(x, confidence), oracle(x, confidence))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 101])
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_small_sizes_and_edge_confidences(n, confidence):
    x = np.linspace(-1.0, 2.0, n).astype(np.float32)
    assert_bits_equal(threshold.percentile_threshold(x, confidence), oracle(x, confidence))


def test_adjacent_order_statistics_in_different_digit_groups():
    # The two order statistics differ in their top 16 bits (float32) or in an early 16-bit digit (float64).
    for dtype in (np.float32, np.float64):
        for pair in ([1.0, 2.0], [1.0, np.nextafter(1.0, 2.0, dtype=dtype)], [0.0, 1e-30], [3.0, 3.0000002]):
            x = np.array(pair, dtype)
            for confidence in (0.5, 0.25, 0.75):
                assert_bits_equal(threshold.percentile_threshold(x, confidence), oracle(x, confidence))


def test_every_rank_of_small_tie_heavy_arrays():
    # Sweeps the percentile across all ranks, so both order statistics land on exact zeros, straddle the last
    # zero, sit in the bucket of zeros and subnormals, or cross a 16-bit digit group.
    for dtype in (np.float32, np.float64):
        tiny = np.finfo(dtype).tiny
        for values in (
            [0.0, -0.0, 0.0, 2.0, 2.0, 3.0],
            [0.0, 0.0, tiny / 8, tiny, 1.0, 1.0],
            [0.0, 1.0, np.nextafter(dtype(1.0), dtype(2.0)), 4.0],
            [5.0, 5.0, 5.0],
        ):
            x = np.array(values, dtype)
            for confidence in np.linspace(0.0, 1.0, 41):
                assert_bits_equal(threshold.percentile_threshold(x, float(confidence)), oracle(x, confidence))


finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=9),
        elements=st.one_of(finite_floats, st.sampled_from([0.0, -0.0, 1.0, 0.5])),
    ),
    confidence=st.one_of(st.sampled_from([0.0, 1.0, 0.95, 0.65]), st.floats(0.0, 1.0)),
)
def test_property_matches_tfp(x, confidence):
    assert_bits_equal(threshold.percentile_threshold(x, confidence), oracle(x, confidence))


@settings(max_examples=100, deadline=None)
@given(
    x=hnp.arrays(
        np.float32, st.integers(0, 40), elements=st.one_of(finite_floats, st.sampled_from([np.nan, np.inf, -np.inf]))
    ),
    confidence=st.floats(0.0, 1.0),
)
def test_property_nonfinite_excluded(x, confidence):
    assert_bits_equal(threshold.percentile_threshold(x, confidence), oracle(x, confidence))
    assert int(threshold.count_nonfinite(x)) == int(np.sum(~np.isfinite(x)))


def test_nonfinite_values_are_excluded():
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(3000).astype(dtype)
        x[rng.integers(0, 3000, 300)] = np.nan
        x[rng.integers(0, 3000, 100)] = np.inf
        x[rng.integers(0, 3000, 100)] = -np.inf
        for confidence in (0.95, 0.5, 0.0, 1.0):
            got = threshold.percentile_threshold(x, confidence)
            assert_bits_equal(got, oracle(x, confidence))
            assert np.isfinite(got.numpy())


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("values", [[], [np.nan], [np.nan, np.inf, -np.inf], [np.inf] * 5])
def test_no_finite_values_gives_zero(dtype, values):
    got = threshold.percentile_threshold(tf.constant(values, dtype), 0.95)
    assert got.dtype == dtype and got.shape == () and got.numpy() == 0
    got = threshold.sampled_threshold(tf.constant(values, dtype), 0.95)
    assert got.dtype == dtype and got.numpy() == 0


@pytest.mark.parametrize("shape", [(0,), (3, 0), (2, 0, 5), (0, 0, 0, 0)])
def test_zero_size_gives_zero(shape):
    got = threshold.percentile_threshold(tf.zeros(shape, tf.float64), 0.5)
    assert got.dtype == tf.float64 and got.numpy() == 0
    assert int(threshold.count_nonfinite(tf.zeros(shape))) == 0


def test_worked_example():
    a = np.tile(np.arange(0.0, 1.0, 0.1), (10, 1))
    got = threshold.percentile_threshold(a, 0.65)
    assert got.dtype == tf.float64
    assert got.numpy() == 0.30000000000000004


def test_inside_tf_function_with_unknown_batch_dimension():
    rng = np.random.default_rng(5)

    @tf.function(input_signature=[tf.TensorSpec([None, 7], tf.float32)])
    def exact(x):
        return threshold.percentile_threshold(x, 0.95)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float64)])  # unknown rank too
    def exact64(x):
        return threshold.percentile_threshold(x, 0.65)

    @tf.function(input_signature=[tf.TensorSpec([None, 7], tf.float32)])
    def sampled(x):
        return threshold.sampled_threshold(x, 0.95, sample_size=700, seed=3)

    @tf.function(input_signature=[tf.TensorSpec([None, 7], tf.float32)])
    def nonfinite(x):
        return threshold.count_nonfinite(x)

    for batch in (0, 1, 3, 100, 2000):
        x = rng.standard_normal((batch, 7)).astype(np.float32)
        assert_bits_equal(exact(x), oracle(x, 0.95))
        assert_bits_equal(exact64(x.astype(np.float64)), oracle(x.astype(np.float64), 0.65))
        if batch * 7 <= 700:
            assert_bits_equal(sampled(x), oracle(x, 0.95))
        else:
            assert sampled(x).numpy() > 0
        assert int(nonfinite(x)) == 0


def test_xla_compiled_caller_gets_the_same_value():
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(20000).astype(dtype)
        fn = tf.function(lambda t: threshold.percentile_threshold(t, 0.95), jit_compile=True)
        assert_bits_equal(fn(tf.constant(x)), oracle(x, 0.95))


def test_other_dtypes_follow_the_dtype_policy():
    got = threshold.percentile_threshold(np.array([1, -2, 3, 0], np.int32), 0.5)
    assert got.dtype == tf.float32 and got.numpy() == 1.5
    got = threshold.percentile_threshold(tf.constant([0.5, -1.0, 2.0], tf.float16), 0.5)
    assert got.dtype == tf.float32 and got.numpy() == 1.0
    with pytest.raises(TypeError, match="x"):
        threshold.percentile_threshold(tf.constant(["a"]), 0.5)


def test_sampled_equals_exact_when_small():
    rng = np.random.default_rng(8)
    for n in (1, 50, 4096):
        for dtype in (np.float32, np.float64):
            x = random_tensor(rng, dtype, (n,))
            for confidence in (0.95, 0.5, 1.0, 0.0):
                assert_bits_equal(threshold.sampled_threshold(x, confidence), oracle(x, confidence))
    x = rng.standard_normal(1000).astype(np.float32)
    assert_bits_equal(threshold.sampled_threshold(x, 0.9, sample_size=1000), oracle(x, 0.9))


def test_sampled_near_zero_fraction_within_tolerance():
    # The documented accuracy: mean(|x| < thr) - (1 - confidence) has standard deviation about
    # sqrt(p (1 - p) / sample_size); every draw must be within 5 of those, and the spread must match.
    x = tf.constant(np.random.default_rng(7).standard_normal(1 << 20).astype(np.float32))
    magnitude = tf.abs(x)
    size = threshold.DEFAULT_SAMPLE_SIZE
    for confidence in (0.95, 0.5):
        p = 1.0 - confidence
        sd = math.sqrt(p * (1 - p) / size)
        errors = np.array(
            [
                float(
                    tf.reduce_mean(tf.cast(magnitude < threshold.sampled_threshold(x, confidence, seed=s), tf.float64))
                )
                - p
                for s in range(40)
            ]
        )
        assert np.max(np.abs(errors)) < 5 * sd, (confidence, errors)
        assert 0.5 * sd < errors.std() < 1.6 * sd, (confidence, errors.std(), sd)
        assert abs(errors.mean()) < 3 * sd / math.sqrt(len(errors)) + 1.0 / size


def test_sampled_seeds():
    x = tf.constant(np.random.default_rng(9).standard_normal(50000).astype(np.float32))
    a = threshold.sampled_threshold(x, 0.95, seed=11)
    assert a.numpy() == threshold.sampled_threshold(x, 0.95, seed=11).numpy()
    assert a.numpy() == threshold.sampled_threshold(x, 0.95, seed=tf.constant([11, 0])).numpy()
    draws = {float(threshold.sampled_threshold(x, 0.95, seed=s)) for s in range(5)}
    assert len(draws) > 1
    assert threshold.sampled_threshold(x, 0.95).numpy() > 0  # seed=None: stateful random op
    with pytest.raises(ValueError, match="seed"):
        threshold.sampled_threshold(x, 0.95, seed=[1, 2, 3])


@pytest.mark.parametrize("mode", ["eager", "tf.function", "xla"])
def test_sampled_mostly_nonfinite_falls_back_to_exact(mode):
    """The fallback (an exact percentile, a call that is not inlined into the caller's graph) runs in graphs and
    under XLA too."""
    x = np.full(100_000, np.nan, np.float32)
    x[[5, 77, 999]] = [0.25, -4.0, 1.0]
    for seed in (1, 2):

        def sampled(t, seed=seed):
            return threshold.sampled_threshold(t, 0.5, sample_size=64, seed=seed)

        if mode != "eager":
            sampled = tf.function(sampled, jit_compile=mode == "xla", autograph=False)
        assert_bits_equal(sampled(tf.constant(x)), oracle(x, 0.5))


def test_sampled_ignores_nonfinite_draws():
    rng = np.random.default_rng(10)
    x = rng.standard_normal(200_000).astype(np.float32)
    x[:100_000] = np.inf  # half the draws land on inf and must be dropped, not ranked
    got = float(threshold.sampled_threshold(x, 0.5, seed=4))
    assert abs(np.mean(np.abs(x[100_000:]) < got) - 0.5) < 0.05


def test_count_nonfinite():
    x = np.array([[0.0, np.nan, 1.0], [np.inf, -np.inf, -0.0]], np.float32)
    got = threshold.count_nonfinite(x)
    assert got.dtype == tf.int64 and int(got) == 3
    assert int(threshold.count_nonfinite(np.float64(np.nan))) == 1
    assert int(threshold.count_nonfinite(np.arange(5))) == 0


@pytest.mark.parametrize("unknown_shape", [False, True])
def test_count_nonfinite_of_a_large_tensor(unknown_shape):
    """Above the small size the count first sums the tensor: all finite -> 0 from one read, else the exact count,
    also when the finite values' sum overflows."""
    count = threshold.count_nonfinite
    if unknown_shape:
        count = tf.function(count, input_signature=[tf.TensorSpec([None], tf.float32)])
    x = np.random.default_rng(0).normal(size=100_000).astype(np.float32)
    assert int(count(tf.constant(x))) == 0
    x[[3, 50_000, 99_999]] = [np.nan, np.inf, -np.inf]
    assert int(count(tf.constant(x))) == 3
    huge = np.full(100_000, 3e38, np.float32)  # finite values whose sum is +inf
    assert int(count(tf.constant(huge))) == 0


@pytest.mark.parametrize("fn", [threshold.percentile_threshold, threshold.sampled_threshold])
@pytest.mark.parametrize(
    "confidence, error",
    [
        (1.5, ValueError),
        (-0.1, ValueError),
        (float("nan"), ValueError),
        ("a", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_bad_confidence(fn, confidence, error):
    with pytest.raises(error, match="confidence"):
        fn(np.ones(3, np.float32), confidence)


@pytest.mark.parametrize("sample_size", [0, -3, 2.5, "10", True])
def test_bad_sample_size(sample_size):
    with pytest.raises(ValueError, match="sample_size"):
        threshold.sampled_threshold(np.ones(3, np.float32), 0.5, sample_size=sample_size)


@pytest.mark.parametrize("unknown_shape", [False, True])
def test_count_nonfinite_each_counts_every_tensor_under_one_conditional(unknown_shape):
    """Each tensor's own count, whichever holds the non-finite values, across dtypes; a `follow` tensor is counted
    only when some tensor holds one (its contract: finite wherever they are)."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=30_000).astype(np.float32)
    b = rng.normal(size=(100, 300))
    follow_calls = []

    def follow():
        follow_calls.append(1)
        return tf.constant([np.nan, 1.0, np.inf], tf.float32)

    def count(a, b):
        return threshold.count_nonfinite_each([a, b], follow=[follow])

    if unknown_shape:
        count = tf.function(
            count, input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None, None], tf.float64)]
        )
    assert threshold.count_nonfinite_each([a, b]).numpy().tolist() == [0, 0]
    assert count(a, b).numpy().tolist() == [0, 0, 0]
    b[[3, 7], [5, 9]] = [np.nan, -np.inf]
    assert count(a, b).numpy().tolist() == [0, 2, 2]
    a[0] = np.inf
    assert threshold.count_nonfinite_each([a, b]).numpy().tolist() == [1, 2]
    huge = np.full(30_000, 3e38, np.float32)  # finite values whose sums overflow: the counting branch, still 0
    assert threshold.count_nonfinite_each([huge, huge]).numpy().tolist() == [0, 0]
    assert follow_calls  # traced into the counting branch
    small = [np.float32([np.nan, 1.0]), np.zeros((2, 3))]  # small tensors: counted directly
    assert threshold.count_nonfinite_each(small).numpy().tolist() == [1, 0]
