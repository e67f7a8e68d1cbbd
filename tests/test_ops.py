"""The per-cell classifiers against the independent NumPy oracle, the worked examples and the bad-input rules."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tb_matmul_explainer import ops
from tests import oracle


def assert_matches(result, expected_counts, expected_sums, rtol=1e-5, atol=1e-5):
    counts, sums = (np.asarray(r) for r in result[:2])
    assert counts.shape == expected_counts.shape
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_allclose(sums, expected_sums, rtol=rtol, atol=atol)


def random_values(rng, shape, dtype=np.float32, zeros=0.2):
    x = rng.normal(size=shape).astype(dtype)
    x[rng.random(shape) < zeros] = 0
    return x


# ---- worked examples (known results of the original research code) ----


def test_worked_example_matmul():
    a = np.tile(np.arange(0.0, 1.0, 0.1), (10, 1))
    counts, sums, (tx, ty) = ops.matmul_classify(a, a, confidence=0.65, return_thresholds=True)
    assert float(tx) == float(ty) == 0.30000000000000004
    totals = dict(zip(ops.TERMS, np.sum(counts, axis=(0, 1))))
    assert totals == {"PP": 490, "PZ": 210, "PN": 0, "ZP": 210, "ZZ": 90, "ZN": 0, "NP": 0, "NZ": 0, "NN": 0}
    np.testing.assert_allclose(np.sum(sums, axis=(0, 1)), [176.4, 12.6, 0, 12.6, 0.9, 0, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(np.sum(sums), np.sum(a @ a))
    np.testing.assert_array_equal(counts[0, :, 0], [0, 0, 0, 7, 7, 7, 7, 7, 7, 7])
    np.testing.assert_array_equal(counts[0, :, 1], [7, 7, 7, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(counts[0, :, 3], [0, 0, 0, 3, 3, 3, 3, 3, 3, 3])
    np.testing.assert_array_equal(counts[0, :, 4], [3, 3, 3, 0, 0, 0, 0, 0, 0, 0])


def _worked_conv_operands():
    x = np.tile(np.arange(0.0, 0.9, 0.1), (9, 1)).astype(np.float32).reshape(1, 9, 9, 1)
    k = np.array([[-1, 0, -1], [1, 1, 1], [-1, 0, -1]], np.float32).reshape(3, 3, 1, 1)
    return x, k


def test_worked_example_conv():
    x, k = _worked_conv_operands()
    counts, sums, (tx, tk) = ops.conv_classify(x, k, confidence=0.75, return_thresholds=True)
    assert counts.shape == (1, 7, 7, 1, 9)
    np.testing.assert_allclose([float(tx), float(tk)], [0.2, 1.0], rtol=1e-6)
    totals = dict(zip(ops.TERMS, np.sum(counts, axis=(0, 1, 2, 3))))
    assert totals == {"PP": 126, "PZ": 84, "PN": 168, "ZP": 21, "ZZ": 14, "ZN": 28, "NP": 0, "NZ": 0, "NN": 0}
    np.testing.assert_allclose(np.sum(sums, axis=(0, 1, 2, 3)), [57.4, 0, -77.0, 1.4, 0, -1.4, 0, 0, 0], atol=1e-4)
    result = tf.nn.convolution(x, k).numpy()
    np.testing.assert_allclose(
        result[0, :, :, 0], np.tile([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7], (7, 1)), atol=1e-6
    )
    np.testing.assert_allclose(np.sum(sums, -1), result, atol=1e-5)


def test_same_padding_is_in_no_class():
    x, k = _worked_conv_operands()
    counts, _ = ops.conv_classify(x, k, padding="same", confidence=0.75)
    products = np.sum(counts, -1)[0, :, :, 0]
    assert products[0, 0] == 4 and products[0, 4] == 6 and products[4, 4] == 9


# ---- the oracle on many shapes ----


@pytest.mark.parametrize(
    "x_shape,y_shape",
    [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (3, 4, 2)), ((1, 1), (1, 1)), ((5, 7), (7, 1))],
)
@pytest.mark.parametrize("confidence", [0.0, 0.5, 0.95, 1.0])
def test_matmul_matches_oracle(x_shape, y_shape, confidence):
    rng = np.random.default_rng(hash((x_shape, y_shape, confidence)) % 2**32)
    x, y = random_values(rng, x_shape), random_values(rng, y_shape)
    tx, ty = oracle.threshold(x, confidence), oracle.threshold(y, confidence)
    counts, sums = oracle.classify(np.matmul, x, y, tx, ty)
    got = ops.matmul_classify(x, y, confidence=confidence, return_thresholds=True)
    assert float(got[2][0]) == float(tx) and float(got[2][1]) == float(ty)
    assert_matches(got, counts, sums)
    np.testing.assert_allclose(np.sum(got[1], -1), np.matmul(x, y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("thresholds", [0.5, (0.3, None), (None, 0.7), (None, None), [0.0, 1.5]])
def test_explicit_thresholds(thresholds):
    rng = np.random.default_rng(1)
    x, y = random_values(rng, (6, 5), np.float64), random_values(rng, (5, 4), np.float64)
    pair = thresholds if isinstance(thresholds, (tuple, list)) else (thresholds, thresholds)
    tx = pair[0] if pair[0] is not None else oracle.threshold(x, 0.9)
    ty = pair[1] if pair[1] is not None else oracle.threshold(y, 0.9)
    expected = oracle.classify(np.matmul, x, y, tx, ty)
    got = ops.matmul_classify(x, y, confidence=0.9, thresholds=thresholds, return_thresholds=True)
    assert_matches(got, *expected, rtol=1e-12, atol=1e-12)
    assert [float(t) for t in got[2]] == [float(tx), float(ty)]


def test_value_equal_to_threshold_is_signed_not_zero():
    x = np.array([[-0.5, 0.5, 0.25, 0.0]], np.float32)
    pos, zero, neg, thr = ops.classification_mask(x, threshold=0.5)
    np.testing.assert_array_equal(pos, [[False, True, False, False]])
    np.testing.assert_array_equal(zero, [[False, False, True, True]])
    np.testing.assert_array_equal(neg, [[True, False, False, False]])
    assert float(thr) == 0.5


def test_tensor_classify():
    rng = np.random.default_rng(2)
    x = random_values(rng, (4, 6))
    counts, sums, thr = ops.tensor_classify(x, confidence=0.8, return_threshold=True)
    assert float(thr) == float(oracle.threshold(x, 0.8))
    p, z, n = oracle.masks(x, thr.numpy())
    np.testing.assert_array_equal(counts, np.stack([p, z, n], -1).astype(np.float32))
    np.testing.assert_allclose(np.sum(sums, -1), x)
    assert ops.classify_terms(counts) == ["P", "Z", "N"]


def test_classify_terms():
    assert ops.classify_terms() == list(ops.TERMS)
    terms = ops.classify_terms(np.zeros((2, 3, 9)), retain_shape=True)
    assert terms.shape == (2, 3, 9) and terms[1, 2, 4] == "ZZ"
    with pytest.raises(ValueError, match="last axis"):
        ops.classify_terms(np.zeros((2, 4)))


@pytest.mark.parametrize("x_shape,y_shape", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,))])
def test_multiply_matches_oracle(x_shape, y_shape):
    rng = np.random.default_rng(3)
    x, y = random_values(rng, x_shape), random_values(rng, y_shape)
    expected = oracle.classify(np.multiply, x, y, oracle.threshold(x, 0.9), oracle.threshold(y, 0.9))
    assert_matches(ops.multiply_classify(x, y, confidence=0.9), *expected)


@pytest.mark.parametrize("axes", [1, 2, [[1], [0]], [[0, 2], [1, 0]]])
def test_tensordot_matches_oracle(axes):
    rng = np.random.default_rng(4)
    x = random_values(rng, (3, 4, 2) if axes != 1 else (3, 4))
    y = random_values(
        rng,
        {1: (4, 5), 2: (4, 2, 3)}.get(axes, (2, 4, 3))
        if not isinstance(axes, list)
        else ((4, 5) if axes == [[1], [0]] else (2, 3, 5)),
    )
    expected = oracle.classify(
        lambda a, b: np.tensordot(a, b, axes), x, y, oracle.threshold(x, 0.9), oracle.threshold(y, 0.9)
    )
    assert_matches(ops.tensordot_classify(x, y, axes, confidence=0.9), *expected)


CONV_CASES = [
    ((2, 9, 3), (3, 3, 4), 1, "VALID"),
    ((2, 10, 3), (4, 3, 2), 3, "same"),
    ((1, 7, 6, 2), (3, 2, 2, 3), (2, 1), "SAME"),
    ((2, 8, 8, 3), (3, 3, 3, 2), 2, "valid"),
    ((1, 6, 6, 1), (2, 2, 1, 1), 2, "Same"),
    ((1, 5, 4, 6, 2), (2, 3, 2, 2, 2), (1, 2, 3), "SAME"),
    ((1, 4, 4, 4, 1), (3, 3, 3, 1, 2), 1, "VALID"),
]


@pytest.mark.parametrize("x_shape,k_shape,strides,padding", CONV_CASES)
def test_conv_matches_oracle(x_shape, k_shape, strides, padding):
    rng = np.random.default_rng(5)
    x, k = random_values(rng, x_shape), random_values(rng, k_shape)
    s = strides if isinstance(strides, tuple) else (strides,) * (len(x_shape) - 2)
    p = padding.upper()
    expected = oracle.classify(
        lambda a, b: oracle.conv(a, b, s, p), x, k, oracle.threshold(x, 0.8), oracle.threshold(k, 0.8)
    )
    got = ops.conv_classify(x, k, strides=strides, padding=padding, confidence=0.8)
    assert_matches(got, *expected)
    np.testing.assert_allclose(np.sum(got[1], -1), tf.nn.convolution(x, k, s, p), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape,k_shape,strides,padding", CONV_CASES)
def test_conv_backprop_filter_matches_oracle(x_shape, k_shape, strides, padding):
    rng = np.random.default_rng(6)
    s = strides if isinstance(strides, tuple) else (strides,) * (len(x_shape) - 2)
    p = padding.upper()
    x = random_values(rng, x_shape)
    d = random_values(rng, oracle.conv(x, np.zeros(k_shape), s, p).shape)
    expected = oracle.classify(
        lambda a, b: oracle.conv_filter_grad(a, b, k_shape, s, p),
        x,
        d,
        oracle.threshold(x, 0.8),
        oracle.threshold(d, 0.8),
    )
    got = ops.conv_backprop_filter_classify(x, d, k_shape, strides=strides, padding=padding, confidence=0.8)
    assert_matches(got, *expected)

    @tf.function  # TensorFlow's eager Conv3D gradient is broken; its graph gradient is the reference
    def kernel_gradient():
        kernel = tf.zeros(k_shape)
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            out = tf.nn.convolution(x, kernel, s, p)
        return tape.gradient(out, kernel, d)

    np.testing.assert_allclose(np.sum(got[1], -1), kernel_gradient(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape,k_shape,strides,padding", CONV_CASES)
def test_conv_backprop_input_matches_oracle(x_shape, k_shape, strides, padding):
    rng = np.random.default_rng(7)
    s = strides if isinstance(strides, tuple) else (strides,) * (len(x_shape) - 2)
    p = padding.upper()
    k = random_values(rng, k_shape)
    d = random_values(rng, oracle.conv(np.zeros(x_shape), k, s, p).shape)
    expected = oracle.classify(
        lambda a, b: oracle.conv_input_grad(a, b, x_shape, s, p),
        d,
        k,
        oracle.threshold(d, 0.8),
        oracle.threshold(k, 0.8),
    )
    assert_matches(
        ops.conv_backprop_input_classify(d, k, x_shape, strides=strides, padding=padding, confidence=0.8), *expected
    )


# ---- dtypes ----


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.int32, tf.int64, tf.bool])
def test_low_precision_and_integer_inputs_compute_in_float32(dtype):
    rng = np.random.default_rng(8)
    x = tf.cast(rng.integers(-3, 4, size=(4, 5)), dtype)
    y = tf.cast(rng.integers(-3, 4, size=(5, 3)), dtype)
    counts, sums = ops.matmul_classify(x, y, confidence=0.9)
    assert counts.dtype == tf.float32 and sums.dtype == tf.float32
    xf, yf = tf.cast(x, tf.float32).numpy(), tf.cast(y, tf.float32).numpy()
    assert_matches(
        (counts, sums), *oracle.classify(np.matmul, xf, yf, oracle.threshold(xf, 0.9), oracle.threshold(yf, 0.9))
    )


def test_mixed_float_dtypes_are_promoted():
    counts, sums = ops.matmul_classify(np.ones((2, 3), np.float32), np.ones((3, 2), np.float64))
    assert sums.dtype == tf.float64
    np.testing.assert_array_equal(np.sum(sums, -1), np.full((2, 2), 3.0))


@pytest.mark.parametrize("bad", [np.array([["a"]]), np.ones((2, 2), np.complex64)])
def test_non_numeric_input_is_a_type_error(bad):
    with pytest.raises(TypeError, match="x"):
        ops.matmul_classify(bad, np.ones((2, 2)))


# ---- zero-size, NaN, inf ----


@pytest.mark.parametrize("x_shape,y_shape", [((0, 3), (3, 4)), ((3, 0), (0, 4)), ((2, 0, 3), (3, 2))])
def test_zero_size_matmul(x_shape, y_shape):
    counts, sums = ops.matmul_classify(np.ones(x_shape), np.ones(y_shape))
    expected_shape = np.matmul(np.ones(x_shape), np.ones(y_shape)).shape + (9,)
    assert counts.shape == expected_shape and sums.shape == expected_shape
    assert not np.any(counts.numpy()) and not np.any(sums.numpy())


def test_zero_size_convolutions():
    counts, _ = ops.conv_classify(np.ones((0, 5, 5, 2)), np.ones((3, 3, 2, 4)), padding="SAME")
    assert counts.shape == (0, 5, 5, 4, 9)
    counts, _ = ops.conv_backprop_filter_classify(np.ones((0, 5, 5, 2)), np.ones((0, 3, 3, 4)), (3, 3, 2, 4))
    assert counts.shape == (3, 3, 2, 4, 9) and not np.any(counts.numpy())
    counts, _ = ops.conv_backprop_input_classify(np.ones((0, 3, 3, 4)), np.ones((3, 3, 2, 4)), (0, 5, 5, 2))
    assert counts.shape == (0, 5, 5, 2, 9)


def test_all_zero_inputs():
    counts, sums = ops.matmul_classify(np.zeros((3, 4)), np.zeros((4, 2)))
    assert np.all(counts.numpy()[..., ops.TERMS.index("ZZ")] == 4)
    assert np.sum(counts) == 24 and not np.any(sums.numpy())


def test_nan_and_inf_keep_both_invariants():
    x = np.array([[1.0, np.nan, -2.0, 0.5], [np.inf, 1.0, -np.inf, 0.0], [1.0, 2.0, 3.0, 4.0]], np.float32)
    y = np.array([[1.0, -1.0], [2.0, 0.0], [0.5, 3.0], [-1.0, 1.0]], np.float32)
    counts, sums, (tx, _) = ops.matmul_classify(x, y, confidence=0.9, return_thresholds=True)
    assert float(tx) == float(oracle.threshold(x, 0.9))  # thresholds from the finite values only
    np.testing.assert_array_equal(np.sum(counts, -1), np.full((3, 2), 4.0))  # no product dropped
    expected = x @ y
    total = np.sum(sums, -1)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(total[finite], expected[finite], rtol=1e-6)
    assert not np.any(np.isfinite(total[~finite]))  # a non-finite result stays visible
    pos, zero, neg, _ = ops.classification_mask(x, confidence=0.9)
    assert bool(zero[0, 1]) and bool(pos[1, 0]) and bool(neg[1, 2])  # NaN is Z, +inf P, -inf N


def test_works_inside_tf_function_with_unknown_batch():
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([4, 3], tf.float32)])
    def classify(x, y):
        return ops.matmul_classify(x, y, confidence=0.9)

    rng = np.random.default_rng(9)
    x, y = random_values(rng, (6, 4)), random_values(rng, (4, 3))
    assert_matches(
        classify(x, y), *oracle.classify(np.matmul, x, y, oracle.threshold(x, 0.9), oracle.threshold(y, 0.9))
    )


# ---- bad input ----


@pytest.mark.parametrize(
    "call,error,pattern",
    [
        (lambda: ops.matmul_classify(np.ones((2, 3)), np.ones((4, 2))), ValueError, r"x's last axis \(3\)"),
        (lambda: ops.matmul_classify(np.ones(3), np.ones((3, 2))), ValueError, "x must have rank"),
        (lambda: ops.matmul_classify(np.ones((2, 2, 3)), np.ones((3, 3, 2))), ValueError, "batch axes"),
        (lambda: ops.multiply_classify(np.ones((2, 3)), np.ones((4,))), ValueError, "broadcast"),
        (lambda: ops.matmul_classify(np.ones((2, 2)), np.ones((2, 2)), confidence=1.5), ValueError, "confidence"),
        (lambda: ops.matmul_classify(np.ones((2, 2)), np.ones((2, 2)), confidence="high"), TypeError, "confidence"),
        (
            lambda: ops.matmul_classify(np.ones((2, 2)), np.ones((2, 2)), thresholds=(1, 2, 3)),
            ValueError,
            "thresholds must have length 2",
        ),
        (lambda: ops.matmul_classify(np.ones((2, 2)), np.ones((2, 2)), thresholds=-1.0), ValueError, "thresholds"),
        (lambda: ops.matmul_classify(np.ones((2, 2)), np.ones((2, 2)), thresholds="0.1"), TypeError, "thresholds"),
        (
            lambda: ops.conv_classify(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 1)), padding="FULL"),
            ValueError,
            "padding",
        ),
        (lambda: ops.conv_classify(np.ones((1, 5, 5, 2)), np.ones((3, 3, 3, 1))), ValueError, "in-channels"),
        (lambda: ops.conv_classify(np.ones((1, 5, 5, 2)), np.ones((3, 2, 1))), ValueError, "same rank"),
        (
            lambda: ops.conv_classify(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 1)), strides=(1, 2, 3)),
            ValueError,
            "strides",
        ),
        (lambda: ops.conv_classify(np.ones((5, 5)), np.ones((3, 3))), ValueError, "inputs must have rank"),
        (
            lambda: ops.conv_backprop_filter_classify(np.ones((1, 5, 5, 2)), np.ones((1, 4, 4, 1)), (3, 3, 2, 1)),
            ValueError,
            "d_out must have",
        ),
        (lambda: ops.tensordot_classify(np.ones((2, 3)), np.ones((4, 2)), 1), ValueError, "axes"),
        (lambda: ops.classification_mask(np.ones(3), threshold=float("nan")), ValueError, "threshold"),
    ],
)
def test_bad_input_names_the_argument(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_scalar_thresholds_and_python_thresholds_are_returned():
    # The research code raised TypeError on a scalar and crashed returning a Python threshold.
    _, _, thresholds = ops.matmul_classify(np.ones((2, 2)), np.ones((2, 2)), thresholds=0.5, return_thresholds=True)
    assert [float(t) for t in thresholds] == [0.5, 0.5]


# ---- properties ----


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_invariants_hold_for_random_matmuls(data):
    n, k, m = (data.draw(st.integers(0, 6)) for _ in range(3))
    values = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -2.0, 1e-3, 3.0])
    # TensorFlow's CPU kernels flush subnormals to zero, so the oracle would disagree on them by design.
    finite = st.floats(-10, 10, allow_subnormal=False)
    x = data.draw(hnp.arrays(np.float64, (n, k), elements=values | finite))
    y = data.draw(hnp.arrays(np.float64, (k, m), elements=values | finite))
    confidence = data.draw(st.floats(0, 1))
    counts, sums = ops.matmul_classify(x, y, confidence=confidence)
    np.testing.assert_array_equal(np.sum(counts, -1), np.full((n, m), k))
    np.testing.assert_allclose(np.sum(sums, -1), x @ y, rtol=1e-9, atol=1e-9)
    expected = oracle.classify(np.matmul, x, y, oracle.threshold(x, confidence), oracle.threshold(y, confidence))
    assert_matches((counts, sums), *expected, rtol=1e-9, atol=1e-9)
