"""Tests of `tb_matmul_explainer.aggregates`: per-unit totals against the per-cell route.

The per-cell route is the exact classifiers of `ops` (explicit thresholds, or the ones the aggregates report),
reduced over each unit's cells; near-zero cells are the result cells that `ops.classification_mask` classes Z under
the result's threshold. Counts must match exactly, sums to float tolerance.
"""

import dataclasses
import functools

import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import aggregates as ag
from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer import ops, threshold
from tb_matmul_explainer.aggregates import sampling

RNG = np.random.default_rng(1234)


def normal(*shape, zeros=0.0, dtype=np.float32):
    """Gaussian values with a fraction of exact zeros (as after a ReLU)."""
    x = RNG.standard_normal(shape)
    if zeros:
        x[RNG.random(shape) < zeros] = 0.0
    return x.astype(dtype)


# ----------------------------------------------------------------------------------------------------------------
# The per-cell route


def _reduce(counts, sums, result, r_thr):
    """[..., U, 9] per-cell classification -> per-unit totals over all and over near-zero cells."""
    counts, sums = np.asarray(counts, np.float64), np.asarray(sums, np.float64)
    zero = ops.classification_mask(tf.constant(result), threshold=float(r_thr))[1].numpy()
    axes = tuple(range(counts.ndim - 2))
    z = zero.astype(np.float64)[..., None]
    with np.errstate(invalid="ignore"):
        return dict(
            counts=counts.sum(axes),
            sums=sums.sum(axes),
            near_zero_counts=(counts * z).sum(axes),
            near_zero_sums=np.where(z > 0, sums, 0.0).sum(axes),
            cells=np.full(counts.shape[-2], float(np.prod(counts.shape[:-2]))),
            near_zero_cells=zero.sum(axes).astype(np.float64),
        )


def per_cell(role, kind, first, second, thresholds, result, geometry=None, strides=1, padding="VALID"):
    """Per-cell route for one role; `thresholds` is the triple (first, second, result) to use."""
    th = (float(thresholds[0]), float(thresholds[1]))
    if kind == "dense":
        if role == "forward":
            c, s = ops.matmul_classify(first.reshape(-1, first.shape[-1]), second, thresholds=th)
        elif role == "kernel_gradient":
            c, s = ops.matmul_classify(
                first.reshape(-1, first.shape[-1]).T, second.reshape(-1, second.shape[-1]), thresholds=th
            )
        else:
            c, s = ops.matmul_classify(first.reshape(-1, first.shape[-1]), second.T, thresholds=th)
        result = np.asarray(result).reshape(np.asarray(c).shape[:-1])
    elif role == "forward":
        c, s = ops.conv_classify(first, second, strides, padding, thresholds=th)
    elif role == "kernel_gradient":
        c, s = ops.conv_backprop_filter_classify(first, second, geometry, strides, padding, thresholds=th)
    else:
        c, s = ops.conv_backprop_input_classify(first, second, geometry, strides, padding, thresholds=th)
    return _reduce(c, s, np.asarray(result), thresholds[2])


def op_result(role, kind, first, second, geometry=None, strides=1, padding="VALID"):
    f, s = tf.constant(first), tf.constant(second)
    if kind == "dense":
        f2 = tf.reshape(f, [-1, f.shape[-1]])
        if role == "forward":
            return tf.reshape(f2 @ s, first.shape[:-1] + (second.shape[-1],)).numpy()
        if role == "kernel_gradient":
            return tf.linalg.matmul(f2, tf.reshape(s, [-1, s.shape[-1]]), transpose_a=True).numpy()
        return tf.reshape(tf.linalg.matmul(f2, s, transpose_b=True), first.shape[:-1] + (second.shape[0],)).numpy()
    spatial = f.shape.rank - 2 if role != "input_gradient" else s.shape.rank - 2
    st = (strides,) * spatial if isinstance(strides, int) else tuple(strides)
    pad = padding.upper()
    if role == "forward":
        return conv_lib.forward(f, s, st, pad).numpy()
    if role == "kernel_gradient":
        return conv_lib.backprop_filter(f, s, geometry, st, pad).numpy()
    return conv_lib.backprop_input(f, s, geometry, st, pad).numpy()


FUNCTIONS = {
    ("dense", "forward"): lambda f, s, g, st, p, **k: ag.dense(f, s, **k),
    ("dense", "kernel_gradient"): lambda f, s, g, st, p, **k: ag.dense_kernel_gradient(f, s, **k),
    ("dense", "input_gradient"): lambda f, s, g, st, p, **k: ag.dense_input_gradient(f, s, **k),
    ("conv", "forward"): lambda f, s, g, st, p, **k: ag.conv(f, s, st, p, **k),
    ("conv", "kernel_gradient"): lambda f, s, g, st, p, **k: ag.conv_kernel_gradient(f, s, g, st, p, **k),
    ("conv", "input_gradient"): lambda f, s, g, st, p, **k: ag.conv_input_gradient(f, s, g, st, p, **k),
}


def aggregate(kind, role, first, second, geometry=None, strides=1, padding="VALID", jit=False, **kwargs):
    """The aggregate function of (kind, role), uncompiled unless `jit`: XLA compilation costs about a second per
    new shape, so the large equality matrices run the same kernels uncompiled, and the tests that pass
    `jit=True` (`aggregate_compiled`) run the compiled (default) path."""
    return FUNCTIONS[(kind, role)](first, second, geometry, strides, padding, jit=jit, **kwargs)


aggregate_compiled = functools.partial(aggregate, jit=True)


def assert_matches(got, want, rtol=1e-5, atol_scale=1e-5, sums=True):
    for name in ("counts", "near_zero_counts", "cells", "near_zero_cells"):
        np.testing.assert_array_equal(getattr(got, name).numpy(), want[name], err_msg=name)
    if sums:
        for name in ("sums", "near_zero_sums"):
            w = want[name]
            atol = atol_scale * max(1.0, float(np.nanmax(np.abs(w))) if w.size else 1.0)
            np.testing.assert_allclose(getattr(got, name).numpy(), w, rtol=rtol, atol=atol, err_msg=name)


def check(
    kind,
    role,
    first,
    second,
    geometry=None,
    strides=1,
    padding="VALID",
    thresholds=(0.3, 0.4, 0.5),
    pass_result=True,
    rtol=1e-5,
    **kwargs,
):
    """Runs the aggregate and the per-cell route on the same thresholds and compares them."""
    result = op_result(role, kind, first, second, geometry, strides, padding)
    got = aggregate(
        kind,
        role,
        first,
        second,
        geometry,
        strides,
        padding,
        thresholds=thresholds,
        result=result if pass_result else None,
        **kwargs,
    )
    used = got.thresholds.numpy()
    if thresholds is not None and not isinstance(thresholds, (int, float)):
        for given, u in zip(thresholds, used):
            if given is not None:
                assert u == np.float32(given) or u == given
    want = per_cell(role, kind, first, second, used, result, geometry, strides, padding)
    assert_matches(got, want, rtol=rtol)
    return got, want, result


# ----------------------------------------------------------------------------------------------------------------
# Dense


DENSE_SHAPES = [((6, 7), (7, 5)), ((2, 3, 7), (7, 4)), ((2, 2, 3, 5), (5, 3)), ((1, 1), (1, 1)), ((9, 3), (3, 8))]


@pytest.mark.parametrize("x_shape,w_shape", DENSE_SHAPES)
@pytest.mark.parametrize("role", ag.ROLES)
def test_dense_matches_per_cell(role, x_shape, w_shape):
    x = normal(*x_shape, zeros=0.3)
    w = normal(*w_shape)
    if role == "forward":
        check("dense", role, x, w)
    elif role == "kernel_gradient":
        check("dense", role, x, normal(*x_shape[:-1], w_shape[1]))
    else:
        check("dense", role, normal(*x_shape[:-1], w_shape[1]), w)


def dense_operands(role, rows=(4, 5), k=6, m=3, zeros=0.3):
    x = normal(*rows, k, zeros=zeros)
    if role == "forward":
        return x, normal(k, m)
    if role == "kernel_gradient":
        return x, normal(*rows, m)
    return normal(*rows, m), normal(k, m)


@pytest.mark.parametrize("role", ag.ROLES)
@pytest.mark.parametrize("thresholds", [None, 0.5, (None, 0.2, None), (0.0, 0.0, 0.0), (0.4, None, 1.5)])
def test_dense_derived_and_explicit_thresholds(role, thresholds):
    f, s = dense_operands(role)
    got, _, result = check("dense", role, f, s, thresholds=thresholds, threshold_method="exact")
    used = got.thresholds.numpy()
    triple = ag.Options(thresholds=thresholds).thresholds
    for i, t in enumerate((f, s, result)):
        want = threshold.percentile_threshold(t, 0.95).numpy() if triple[i] is None else triple[i]
        assert used[i] == np.float32(want)


@pytest.mark.parametrize("role", ag.ROLES)
@pytest.mark.parametrize("confidence", [0.0, 0.5, 1.0])
def test_dense_confidence_extremes(role, confidence):
    f, s = dense_operands(role, zeros=0.4)
    check("dense", role, f, s, thresholds=None, confidence=confidence, threshold_method="exact")


@pytest.mark.parametrize("role", ag.ROLES)
def test_dense_result_computed_when_not_given(role):
    # Thresholds away from every value, so the recomputed result classifies identically.
    f, s = dense_operands(role)
    check("dense", role, f, s, thresholds=(0.25, 0.35, 0.45), pass_result=False)


@pytest.mark.parametrize("role", ag.ROLES)
def test_dense_large_batch_uses_unpacked_counts(role):
    # More than 4095 rows: the near-zero counts no longer fit the packed P + 4096 N encoding.
    f, s = dense_operands(role, rows=(4200,), k=5, m=3)
    check("dense", role, f, s, thresholds=(0.3, 0.3, None), threshold_method="exact")


def test_dense_counts_exact_beyond_float32():
    # 4096 rows x 4100 inputs: 16.8M products per unit, more than float32 holds exactly (bit-plane path).
    n, k, m = 4096, 4100, 3
    x = np.ones((n, k), np.float32)
    x[:, ::7] = -1.0
    x[:, 1::7] = 0.0
    w = normal(k, m)
    got = ag.dense(x, w, thresholds=(0.5, 0.5, 0.5), near_zero="off")
    classes = [x[0] > 0.5, np.abs(x[0]) < 0.5, x[0] < -0.5]
    w_classes = [w > 0.5, np.abs(w) < 0.5, w < -0.5]
    want = np.array([[n * np.sum(a[:, None] & b, 0) for b in w_classes] for a in classes], np.int64)
    want = want.transpose(2, 0, 1).reshape(m, 9)
    assert n * k > 2**24
    np.testing.assert_array_equal(got.counts.numpy().astype(np.int64), want)
    assert got.counts.numpy().sum(1).tolist() == [float(n * k)] * m


@pytest.mark.parametrize("role", ["forward", "input_gradient"])
def test_dense_near_zero_counts_exact_beyond_float32(role):
    # Every result cell near zero (result threshold 1e30), so the near-zero counts must equal the all-cells ones;
    # rows x contraction > 2**24 needs the float64 stage 2, chosen statically and (unknown batch) at run time.
    n, k, m = 4097, 4099, 3
    x = np.ones((n, k), np.float32)
    w = normal(k, m)
    w[:, 0] = 1.0  # unit 0: every product is PP, n * k of them: odd and above 2**24, so not a float32
    fn = ag.dense if role == "forward" else ag.dense_input_gradient
    kernel = w if role == "forward" else w.T
    options = dict(thresholds=(0.5, 0.5, 1e30), near_zero="exact")
    dynamic = tf.function(
        lambda a, b: fn(a, b, **options),
        input_signature=[tf.TensorSpec([None, k], tf.float32), tf.TensorSpec(kernel.shape)],
    )
    assert n * k > 2**24
    for got in (fn(x, kernel, **options), dynamic(x, kernel)):
        np.testing.assert_array_equal(got.near_zero_counts.numpy(), got.counts.numpy())
        assert got.near_zero_counts.numpy().sum(1).tolist() == [float(n * k)] * m
        assert got.near_zero_counts.numpy()[0, 0] == n * k


# ----------------------------------------------------------------------------------------------------------------
# Convolutions

CONV_CASES = [
    # (input shape, kernel shape, strides, padding)
    ((2, 9, 3), (3, 3, 4), 1, "VALID"),
    ((2, 9, 3), (4, 3, 2), 2, "same"),
    ((1, 10, 2), (3, 2, 3), 3, "SAME"),
    ((2, 7, 6, 3), (3, 2, 3, 4), 1, "SAME"),
    ((2, 7, 6, 3), (3, 3, 3, 2), 2, "VALID"),
    ((1, 8, 7, 2), (2, 3, 2, 3), (2, 1), "Same"),
    ((2, 9, 9, 2), (3, 3, 2, 2), 3, "SAME"),
    ((1, 5, 6, 4, 2), (2, 3, 2, 2, 3), 1, "VALID"),
    ((2, 5, 4, 5, 2), (3, 2, 3, 2, 2), (2, 1, 3), "SAME"),
    ((1, 2, 2, 1), (3, 3, 1, 2), 1, "SAME"),  # kernel larger than the input
]


def conv_operands(role, in_shape, k_shape, strides, padding, zeros=0.3, dtype=np.float32):
    x = normal(*in_shape, zeros=zeros, dtype=dtype)
    k = normal(*k_shape, dtype=dtype)
    out_shape = tuple(
        op_result("forward", "conv", x.astype(np.float32), k.astype(np.float32), None, strides, padding).shape
    )
    d = normal(*out_shape, dtype=dtype)
    if role == "forward":
        return x, k, None
    if role == "kernel_gradient":
        return x, d, list(k_shape)
    return d, k, list(in_shape)


@pytest.mark.parametrize("in_shape,k_shape,strides,padding", CONV_CASES)
@pytest.mark.parametrize("role", ag.ROLES)
def test_conv_matches_per_cell(role, in_shape, k_shape, strides, padding):
    f, s, g = conv_operands(role, in_shape, k_shape, strides, padding)
    check("conv", role, f, s, g, strides, padding)


@pytest.mark.parametrize("role", ag.ROLES)
@pytest.mark.parametrize(
    "thresholds,confidence", [(None, 0.95), (None, 0.0), (None, 1.0), (0.0, 0.9), ((None, 0.3, None), 0.8)]
)
def test_conv_derived_thresholds(role, thresholds, confidence):
    f, s, g = conv_operands(role, (2, 7, 6, 3), (3, 3, 3, 4), 1, "SAME", zeros=0.4)
    got, _, result = check(
        "conv", role, f, s, g, 1, "SAME", thresholds=thresholds, confidence=confidence, threshold_method="exact"
    )
    triple = ag.Options(thresholds=thresholds).thresholds
    for i, t in enumerate((f, s, result)):
        want = threshold.percentile_threshold(t, confidence).numpy() if triple[i] is None else triple[i]
        assert got.thresholds.numpy()[i] == np.float32(want)


@pytest.mark.parametrize("role", ag.ROLES)
def test_conv_result_computed_when_not_given(role):
    f, s, g = conv_operands(role, (2, 6, 5, 2), (3, 2, 2, 3), 2, "SAME")
    check("conv", role, f, s, g, 2, "SAME", thresholds=(0.25, 0.35, 0.45), pass_result=False)


@pytest.mark.parametrize("role", ag.ROLES)
def test_conv_many_positions_uses_unpacked_counts(role):
    # 8 x 24 x 24 = 4608 output positions: more than the packed encoding allows.
    f, s, g = conv_operands(role, (8, 24, 24, 2), (3, 3, 2, 2), 1, "SAME")
    check("conv", role, f, s, g, 1, "SAME", thresholds=(0.3, 0.3, None), threshold_method="exact", jit=True)


def test_conv_kernel_gradient_many_taps_uses_unpacked_counts():
    # 3 x 3 x 500 = 4500 taps per output: the conv kernel gradient's near-zero counts go unpacked.
    f, s, g = conv_operands("kernel_gradient", (1, 5, 5, 500), (3, 3, 500, 2), 1, "SAME")
    check(
        "conv",
        "kernel_gradient",
        f,
        s,
        g,
        1,
        "SAME",
        thresholds=(0.3, 0.3, None),
        threshold_method="exact",
        rtol=1e-4,
        jit=True,
    )


# ----------------------------------------------------------------------------------------------------------------
# Cases every role must survive


ALL_ROLES = [(kind, role) for kind in ("dense", "conv") for role in ag.ROLES]


def operands(kind, role, zeros=0.3, dtype=np.float32, batch=2):
    if kind == "dense":
        f, s = dense_operands(role, rows=(batch, 3), zeros=zeros)
        return f.astype(dtype), s.astype(dtype), None, 1, "VALID"
    in_shape = (batch, 7, 6, 3)
    f, s, g = conv_operands(role, in_shape, (3, 2, 3, 4), 2, "SAME", zeros=zeros, dtype=dtype)
    return f, s, g, 2, "SAME"


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_jit_off_gives_the_same(kind, role):
    f, s, g, st, p = operands(kind, role)
    exact = dict(thresholds=(0.3, 0.4, None), threshold_method="exact")
    with_xla = aggregate(kind, role, f, s, g, st, p, jit=True, **exact)
    without = aggregate(kind, role, f, s, g, st, p, jit=False, **exact)
    for a, b in zip(with_xla, without):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    result = op_result(role, kind, f, s, g, st, p)
    assert_matches(without, per_cell(role, kind, f, s, without.thresholds.numpy(), result, g, st, p))
    # near_zero="sampled" with fewer rows/positions than the batch has (its own gather code), seeded
    sampled = dict(near_zero="sampled", near_zero_sample_size=2, seed=5, **exact)
    with_xla = aggregate(kind, role, f, s, g, st, p, jit=True, **sampled)
    without = tf.function(lambda: aggregate(kind, role, f, s, g, st, p, jit=False, **sampled))()  # in a graph
    for a, b in zip(with_xla, without):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_jit_is_on_by_default_and_options_are_checked_once():
    assert ag.Options().jit
    opts = ag.Options(thresholds=0.3, near_zero="sampled", near_zero_sample_size=8, jit=False)
    assert opts.thresholds == (0.3, 0.3, 0.3)
    x, w = normal(5, 4), normal(4, 3)
    by_object, by_keywords = ag.dense(x, w, options=opts), ag.dense(x, w, **dataclasses.asdict(opts))
    for a, b in zip(by_object, by_keywords):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    _raises(TypeError, "not both", lambda: ag.dense(x, w, options=opts, seed=1))
    _raises(TypeError, "options", lambda: ag.dense(x, w, options={"seed": 1}))
    _raises(TypeError, "jit", lambda: ag.Options(jit="yes"))
    _raises(ValueError, "near_zero_sample_size", lambda: dataclasses.replace(opts, near_zero_sample_size=0))


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_zero_size_batch(kind, role):
    f, s, g, st, p = operands(kind, role, batch=0)
    if role == "input_gradient" and kind == "conv":
        g = [0] + g[1:]
    for near_zero in ("exact", "sampled", "off"):
        got = aggregate_compiled(kind, role, f, s, g, st, p, near_zero=near_zero)
        units = got.counts.shape[0]
        assert got.counts.shape == (units, 9) and units > 0
        for name in ("counts", "sums", "near_zero_counts", "near_zero_sums"):
            assert np.all(getattr(got, name).numpy() == 0), name
        if role == "kernel_gradient":  # the kernel gradient's cells exist; its products do not
            assert np.all(got.counts.numpy() == 0)
        else:
            assert np.all(got.cells.numpy() == 0)


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_nonfinite_values(kind, role):
    f, s, g, st, p = operands(kind, role)
    f = f.copy()
    s = s.copy()
    f.flat[1] = np.nan
    f.flat[4] = np.inf
    s.flat[2] = -np.inf
    s.flat[5] = np.nan
    result = op_result(role, kind, f, s, g, st, p)
    got = aggregate_compiled(
        kind, role, f, s, g, st, p, thresholds=(0.3, 0.4, None), result=result, threshold_method="exact"
    )
    want = per_cell(role, kind, f, s, got.thresholds.numpy(), result, g, st, p)
    assert_matches(got, want, sums=False)
    # Non-finite values never vanish: sums are non-finite wherever the per-cell route's are (the factorised
    # products may spread a NaN further, as 0 * inf), and equal where both are finite.
    for name in ("sums", "near_zero_sums"):
        a, b = getattr(got, name).numpy(), want[name]
        assert np.all(~np.isfinite(a)[~np.isfinite(b)]), name
        fin = np.isfinite(a) & np.isfinite(b)
        np.testing.assert_allclose(a[fin], b[fin], rtol=1e-5, atol=1e-4)
    assert got.nonfinite.numpy()[:2].tolist() == [2.0, 2.0]
    assert got.nonfinite.numpy()[2] == np.sum(~np.isfinite(result))
    # Counts still add up: every product falls in exactly one pair.
    products = _products_per_unit(kind, role, f, s, g, st, p)
    np.testing.assert_array_equal(got.counts.numpy().sum(1), products)


def _products_per_unit(kind, role, f, s, g, st, p):
    ones_f, ones_s = np.ones_like(f, np.float32), np.ones_like(s, np.float32)
    res = op_result(role, kind, ones_f, ones_s, g, st, p)
    return res.reshape(-1, res.shape[-1]).sum(0)


@pytest.mark.parametrize("kind,role", ALL_ROLES)
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float64])
def test_dtypes(kind, role, dtype):
    f, s, g, st, p = operands(kind, role)
    f_t, s_t = tf.cast(f, dtype), tf.cast(s, dtype)
    compute = np.float64 if dtype == tf.float64 else np.float32
    f_c, s_c = tf.cast(f_t, compute).numpy(), tf.cast(s_t, compute).numpy()
    result = op_result(role, kind, f_c, s_c, g, st, p)
    got = aggregate(
        kind,
        role,
        f_t,
        s_t,
        g,
        st,
        p,
        thresholds=(0.3, 0.4, None),
        result=tf.cast(result, dtype),
        threshold_method="exact",
    )
    for t in got:
        assert t.dtype == tf.float64
    result_c = tf.cast(tf.cast(result, dtype), compute).numpy()
    assert_matches(got, per_cell(role, kind, f_c, s_c, got.thresholds.numpy(), result_c, g, st, p), rtol=1e-4)


def test_mixed_dtypes_are_promoted():
    x, w = normal(5, 4), normal(4, 3).astype(np.float64)
    got = ag.dense(x, w, thresholds=0.3)
    assert_matches(
        got, per_cell("forward", "dense", x.astype(np.float64), w, got.thresholds.numpy(), x.astype(np.float64) @ w)
    )


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_inside_tf_function_with_unknown_batch(kind, role):
    f, s, g, st, p = operands(kind, role)
    f_spec = tf.TensorSpec([None] + list(f.shape[1:]), tf.float32)
    s_spec = tf.TensorSpec([None] + list(s.shape[1:]) if role == "kernel_gradient" else s.shape, tf.float32)
    if kind == "conv" and role == "input_gradient":
        g = [None] + g[1:]

    @tf.function(input_signature=[f_spec, s_spec])
    def run(a, b):
        return aggregate_compiled(kind, role, a, b, g, st, p, thresholds=(0.3, 0.4, None), threshold_method="exact")

    for batch in (3, 0, 1):
        f_b, s_b, _, _, _ = operands(kind, role, batch=batch)
        got = run(f_b, s_b)
        g_b = g if not (kind == "conv" and role == "input_gradient") else [batch] + g[1:]
        result = op_result(role, kind, f_b, s_b, g_b, st, p)
        assert_matches(got, per_cell(role, kind, f_b, s_b, got.thresholds.numpy(), result, g_b, st, p))


@pytest.mark.parametrize("role", ag.ROLES)
def test_unknown_batch_large_runtime_batch_takes_exact_branch(role):
    # The packed / float32 / float64 strategy is chosen at run time when the batch is unknown at trace time.
    f, s = dense_operands(role, rows=(5000,), k=4, m=3)
    spec = lambda t: tf.TensorSpec([None] + list(t.shape[1:]), tf.float32)  # noqa: E731
    s_spec = spec(s) if role == "kernel_gradient" else tf.TensorSpec(s.shape, tf.float32)

    @tf.function(input_signature=[spec(f), s_spec])
    def run(a, b):
        return aggregate_compiled("dense", role, a, b, thresholds=(0.3, 0.4, None), threshold_method="exact")

    got = run(f, s)
    result = op_result(role, "dense", f, s)
    assert_matches(got, per_cell(role, "dense", f, s, got.thresholds.numpy(), result))


# ----------------------------------------------------------------------------------------------------------------
# Invariants, options


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_sums_add_up_to_the_result(kind, role):
    f, s, g, st, p = operands(kind, role)
    result = op_result(role, kind, f, s, g, st, p)
    got = aggregate_compiled(kind, role, f, s, g, st, p, result=result, seed=3)
    units = result.reshape(-1, result.shape[-1])
    np.testing.assert_allclose(got.sums.numpy().sum(1), units.sum(0), rtol=1e-5, atol=1e-5)
    zero = ops.classification_mask(result, threshold=got.thresholds.numpy()[2])[1].numpy()
    np.testing.assert_allclose(
        got.near_zero_sums.numpy().sum(1), np.where(zero, result, 0).reshape(units.shape).sum(0), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(got.counts.numpy().sum(1), _products_per_unit(kind, role, f, s, g, st, p))


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_sampled_thresholds_are_used_consistently(kind, role):
    f, s, g, st, p = operands(kind, role)
    a = aggregate(kind, role, f, s, g, st, p, seed=7, sample_size=16)
    b = aggregate(kind, role, f, s, g, st, p, seed=7, sample_size=16)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    result = op_result(role, kind, f, s, g, st, p)
    assert_matches(a, per_cell(role, kind, f, s, a.thresholds.numpy(), result, g, st, p))


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_near_zero_off(kind, role):
    f, s, g, st, p = operands(kind, role)
    got = aggregate(kind, role, f, s, g, st, p, near_zero="off", thresholds=(0.3, 0.4, None))
    for name in ("near_zero_counts", "near_zero_sums", "near_zero_cells"):
        assert np.all(getattr(got, name).numpy() == 0)
    assert np.isnan(got.thresholds.numpy()[2]) and np.isnan(got.nonfinite.numpy()[2])
    exact = aggregate(kind, role, f, s, g, st, p, thresholds=(0.3, 0.4, None))
    np.testing.assert_array_equal(got.counts.numpy(), exact.counts.numpy())
    got = aggregate(kind, role, f, s, g, st, p, near_zero="off", thresholds=(0.3, 0.4, 0.5))
    assert got.thresholds.numpy()[2] == 0.5


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_near_zero_sampled_is_exact_when_the_sample_covers_the_batch(kind, role):
    f, s, g, st, p = operands(kind, role)
    exact = aggregate_compiled(kind, role, f, s, g, st, p, thresholds=(0.3, 0.4, None), threshold_method="exact")
    sampled = aggregate_compiled(
        kind,
        role,
        f,
        s,
        g,
        st,
        p,
        thresholds=(0.3, 0.4, None),
        threshold_method="exact",
        near_zero="sampled",
        near_zero_sample_size=10**6,
    )
    for a, b in zip(exact, sampled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def _sampled_rows_route(role, f, s, seed, size, thresholds, result_threshold):
    """near_zero="sampled" by hand for a dense role: the per-cell route on the batch rows the kernel samples
    (`sampling.sample_rows` with the same seed), near-zero cells by the full result's mask, scaled by rows / sample."""
    n = f.shape[0]
    idx = np.sort(sampling.sample_rows(n, size, sampling.sub_seed(seed, sampling.ROWS)).numpy())
    result = op_result(role, "dense", f, s)
    zero = ops.classification_mask(tf.constant(result), threshold=float(result_threshold))[1].numpy()
    th = (float(thresholds[0]), float(thresholds[1]))
    if role == "kernel_gradient":
        c, sm = ops.matmul_classify(f[idx].T, s[idx], thresholds=th)
    else:
        second = s if role == "forward" else s.T
        c, sm = ops.matmul_classify(f[idx], second, thresholds=th)
        zero = zero[idx]
    z = zero.astype(np.float64)[..., None]
    scale = n / size
    return (np.asarray(c, np.float64) * z).sum(0) * scale, (np.asarray(sm, np.float64) * z).sum(0) * scale


@pytest.mark.parametrize("role", ag.ROLES)
@pytest.mark.parametrize("xla", [False, True])
@pytest.mark.parametrize("unknown_batch,rows", [(False, 300), (True, 300), (True, 16400)])
def test_dense_near_zero_sampled_is_the_sampled_rows_exactly(role, xla, unknown_batch, rows):
    """The estimate is exactly the sampled rows' near-zero cells, rescaled (counts exact, sums to float
    tolerance), and the all-cells totals stay exact alongside it (also beyond the usual batch sizes, where the
    all-cells counts take more bit planes)."""
    f, s = dense_operands(role, rows=(rows,), k=20, m=12)
    f[:, 0] = np.abs(f[:, 0]) + 1.0  # a column with every row P: its count needs every bit of the row count
    kwargs = dict(thresholds=(0.3, 0.4, None), near_zero="sampled", near_zero_sample_size=37, seed=5, jit=xla)
    fn = functools.partial(aggregate, "dense", role, **kwargs)
    if unknown_batch:
        spec = lambda t: tf.TensorSpec([None, t.shape[1]], tf.float32)  # noqa: E731
        second = spec(s) if role == "kernel_gradient" else tf.TensorSpec(s.shape, tf.float32)
        fn = tf.function(fn, input_signature=[spec(f), second])
    got = fn(f, s)
    r_thr = got.thresholds.numpy()[2]
    want_counts, want_sums = _sampled_rows_route(role, f, s, 5, 37, (0.3, 0.4), r_thr)
    np.testing.assert_allclose(got.near_zero_counts.numpy(), want_counts, rtol=1e-12)
    np.testing.assert_allclose(
        got.near_zero_sums.numpy(), want_sums, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want_sums).max())
    )
    full = per_cell(role, "dense", f, s, (0.3, 0.4, r_thr), op_result(role, "dense", f, s))
    np.testing.assert_array_equal(got.counts.numpy(), full["counts"])
    np.testing.assert_allclose(got.sums.numpy(), full["sums"], rtol=1e-5, atol=1e-5 * np.abs(full["sums"]).max())


def _shares(counts):
    counts = counts.numpy()
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


@pytest.mark.parametrize("kind,role", ALL_ROLES)
def test_near_zero_sampled_error(kind, role):
    """Measured error of near_zero="sampled" (quoted in the module docstring): 1024 of 8192 batch
    positions/rows, Gaussian data with 30% exact zeros in the first operand, confidence 0.95."""
    if kind == "dense":
        f, s = dense_operands(role, rows=(8192,), k=16, m=8)
        g, st, p = None, 1, "VALID"
    else:
        f, s, g = conv_operands(role, (8, 32, 32, 4), (3, 3, 4, 8), 1, "SAME")
        st, p = 1, "SAME"
    kwargs = dict(threshold_method="exact")
    exact = aggregate(kind, role, f, s, g, st, p, **kwargs)
    worst_share, worst_total = 0.0, 0.0
    for seed in range(5):
        est = aggregate(kind, role, f, s, g, st, p, near_zero="sampled", seed=seed, **kwargs)
        np.testing.assert_array_equal(est.near_zero_cells.numpy(), exact.near_zero_cells.numpy())
        np.testing.assert_array_equal(est.counts.numpy(), exact.counts.numpy())
        worst_share = max(worst_share, np.abs(_shares(est.near_zero_counts) - _shares(exact.near_zero_counts)).max())
        t_est, t_exact = est.near_zero_counts.numpy().sum(1), exact.near_zero_counts.numpy().sum(1)
        worst_total = max(worst_total, np.max(np.abs(t_est - t_exact) / np.maximum(t_exact, 1)))
    print(f"{kind} {role}: worst pair-share error {worst_share:.4f}, worst total-count error {worst_total:.3f}")
    assert worst_share < 0.08
    assert worst_total < (0.05 if role == "kernel_gradient" else 0.6)


# ----------------------------------------------------------------------------------------------------------------
# Bad input


def _raises(exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


def test_bad_input_names_the_argument():
    x, w = normal(4, 3), normal(3, 2)
    _raises(ValueError, "kernel", lambda: ag.dense(x, normal(4, 2)))
    _raises(ValueError, "x", lambda: ag.dense(normal(3), w))
    _raises(ValueError, "kernel", lambda: ag.dense(x, normal(3, 2, 1)))
    _raises(ValueError, "thresholds", lambda: ag.dense(x, w, thresholds=(0.1, 0.2)))
    _raises(ValueError, "thresholds", lambda: ag.dense(x, w, thresholds=-1.0))
    _raises(TypeError, "thresholds", lambda: ag.dense(x, w, thresholds="big"))
    _raises(ValueError, "near_zero", lambda: ag.dense(x, w, near_zero="some"))
    _raises(ValueError, "threshold_method", lambda: ag.dense(x, w, threshold_method="median"))
    _raises(ValueError, "confidence", lambda: ag.dense(x, w, confidence=1.5))
    _raises(ValueError, "sample_size", lambda: ag.dense(x, w, sample_size=0))
    _raises(ValueError, "near_zero_sample_size", lambda: ag.dense(x, w, near_zero_sample_size=-3))
    _raises(ValueError, "result", lambda: ag.dense(x, w, result=normal(4, 5)))
    _raises(TypeError, "x", lambda: ag.dense(np.array([["a"]]), w))
    _raises(ValueError, "d_out", lambda: ag.dense_kernel_gradient(x, normal(5, 2)))
    _raises(ValueError, "kernel", lambda: ag.dense_input_gradient(normal(4, 2), normal(3, 5)))
    xi, k = normal(1, 6, 6, 2), normal(3, 3, 2, 4)
    _raises(ValueError, "padding", lambda: ag.conv(xi, k, 1, "FULL"))
    _raises(ValueError, "strides", lambda: ag.conv(xi, k, 0, "SAME"))
    _raises(ValueError, "strides", lambda: ag.conv(xi, k, (1, 2, 3), "SAME"))
    _raises(ValueError, "kernel", lambda: ag.conv(xi, normal(3, 3, 3, 4)))
    _raises(ValueError, "kernel", lambda: ag.conv(xi, normal(3, 2, 4)))
    _raises(ValueError, "inputs", lambda: ag.conv(normal(6, 2), k))
    _raises(ValueError, "d_out", lambda: ag.conv_kernel_gradient(xi, normal(1, 5, 5, 4), [3, 3, 2, 4], 1, "SAME"))
    _raises(ValueError, "kernel_shape", lambda: ag.conv_kernel_gradient(xi, normal(1, 4, 4, 4), [3, 3, 3, 4]))
    _raises(ValueError, "d_out", lambda: ag.conv_input_gradient(normal(1, 5, 5, 4), k, [1, 6, 6, 2], 1, "SAME"))
    _raises(ValueError, "input_shape", lambda: ag.conv_input_gradient(normal(1, 4, 4, 4), k, [1, 6, 6, 3]))


def test_unit_totals_contract():
    x, w = normal(4, 3), normal(3, 2)
    got = ag.dense(x, w)
    assert isinstance(got, ag.UnitTotals)
    assert [t.shape.as_list() for t in got] == [[2, 9]] * 4 + [[2], [2], [3], [3]]
    assert ag.ROLES == ("forward", "kernel_gradient", "input_gradient")
