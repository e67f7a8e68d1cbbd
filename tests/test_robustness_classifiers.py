"""Robustness of the classifiers (`ops`), the threshold (`threshold`) and the per-unit kernels (`aggregates`).

Hypothesis generates operands of random shapes (zero-size axes included), dtypes (float16/32/64, bfloat16,
integers, bool), values with ties, exact zeros, NaN and +-inf, and random (also invalid) arguments. Every case
either

  * matches the independent NumPy oracle (`tests/oracle.py`: threshold, masks, classify; convolutions through its
    index map, read as a gather so that a NaN reaches only the outputs that read it) and keeps both invariants:
    counts over the nine pairs = products per result cell, and sums over the nine pairs == op(x, y) wherever the
    result is finite (a non-finite result keeps non-finite sums); or
  * raises a ValueError or TypeError with a message (expected for the invalid arguments drawn on purpose).

Any other exception fails the test. TensorFlow's CPU kernels flush subnormals to zero, so no value is subnormal:
finite magnitudes are 0 or in [2**-10, 2**10]. The per-unit kernels are compared with the oracle's per-cell results
reduced over each unit's cells, with explicit thresholds or `threshold_method="exact"`.

Cases per run: the `max_examples` below sum to 1,170 and 1,150 run (one test's space is exhausted at 70;
`derandomize=True`: the same cases on every run); `test_case_count` checks that at least 1,000 ran when the whole
module runs.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tb_matmul_explainer import aggregates, ops, threshold
from tests import oracle

SETTINGS = dict(
    deadline=None, derandomize=True, database=None, print_blob=True, suppress_health_check=list(HealthCheck)
)
CASES = {}  # test name -> examples run

FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")
INT_DTYPES = ("int8", "uint8", "int32", "int64", "bool")
DTYPES = FLOAT_DTYPES + INT_DTYPES
SPECIAL = (0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.25, -0.25, 2.0, -2.0, 3.0)
NONFINITE = (math.nan, math.inf, -math.inf)
EXPECTED_ERRORS = (ValueError, TypeError)


def count(name):
    CASES[name] = CASES.get(name, 0) + 1


# ----------------------------------------------------------------------------------------------- operands


def _finite_float(width):
    magnitude = st.floats(2.0**-10, 2.0**10, width=width, allow_subnormal=False)
    return st.builds(lambda sign, m: sign * m, st.sampled_from((1.0, -1.0)), magnitude)


def operand(data, shape, dtype, nonfinite=False, pool=None):
    """(argument passed to the function, the values as computed: float32/float64 ndarray).

    `pool`: draw elements from these few values only (many ties)."""
    if dtype in INT_DTYPES:
        elements = st.booleans() if dtype == "bool" else st.integers(0 if dtype == "uint8" else -4, 4)
        arr = data.draw(hnp.arrays(np.dtype(dtype), shape, elements=elements))
        value = arr if data.draw(st.booleans()) else tf.constant(arr)
        return value, arr.astype(np.float32)
    width = {"float16": 16, "float32": 32, "float64": 64, "bfloat16": 32}[dtype]
    elements = st.sampled_from(pool) if pool else (st.sampled_from(SPECIAL) | _finite_float(width))
    if nonfinite:
        elements = elements | st.sampled_from(NONFINITE)
    np_dtype = np.float32 if dtype == "bfloat16" else np.dtype(dtype)
    arr = data.draw(hnp.arrays(np_dtype, shape, elements=elements))
    if dtype == "bfloat16":
        value = tf.cast(tf.constant(arr), tf.bfloat16)
        return value, tf.cast(value, tf.float32).numpy()
    value = arr if data.draw(st.booleans()) else tf.constant(arr)
    computed = arr.astype(np.float32) if dtype == "float16" else arr
    return value, computed


def draw_dtypes(data):
    return data.draw(st.sampled_from(DTYPES)), data.draw(st.sampled_from(DTYPES))


def promote(a, b):
    """The compute dtype policy for two operands: float64 if either is, else float32."""
    if a.dtype == np.float64 or b.dtype == np.float64:
        return a.astype(np.float64), b.astype(np.float64)
    return a, b


def draw_values(data, shapes):
    """Operands for `shapes`: dtypes, NaN/inf and tie-heavy pools drawn per case."""
    nonfinite = data.draw(st.integers(0, 3)) == 0
    pool = data.draw(st.none() | st.sampled_from([(0.0, 1.0), (0.0, -1.0, 1.0), (0.5, -0.5, 0.0, 2.0)]))
    out = []
    for shape in shapes:
        dtype = data.draw(st.sampled_from(DTYPES))
        out.append(operand(data, shape, dtype, nonfinite=nonfinite, pool=pool))
    return out


CONFIDENCE = st.sampled_from([0.0, 0.5, 0.9, 0.95, 1.0]) | st.floats(0.0, 1.0)
BAD_CONFIDENCE = st.sampled_from([-0.1, 1.5, math.nan, math.inf, "0.9", None, True, [0.9]])
THRESHOLD = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 1e-3]) | st.floats(0.0, 10.0, allow_subnormal=False)
BAD_THRESHOLD = st.sampled_from([-1.0, math.nan, "0.1", b"x", object()])


def threshold_arg(data, n):
    """(argument, per-operand explicit values or None, valid?) for a `thresholds` argument of n operands."""
    kind = data.draw(st.sampled_from(["none", "one", "seq", "np", "tensor", "bad"]))
    if kind == "none":
        return None, (None,) * n, True
    if kind in ("one", "np", "tensor"):
        t = data.draw(THRESHOLD)
        if kind == "np":
            return np.float32(t), (float(np.float32(t)),) * n, True
        if kind == "tensor":
            return tf.constant(t, tf.float32), (float(np.float32(t)),) * n, True
        return t, (t,) * n, True
    if kind == "seq":
        entries = [data.draw(st.none() | THRESHOLD) for _ in range(n)]
        return tuple(entries), tuple(entries), True
    bad = data.draw(st.sampled_from(["value", "length", "entry"]))
    if bad == "value":
        return data.draw(BAD_THRESHOLD), None, False
    if bad == "length":
        return tuple([0.5] * data.draw(st.sampled_from([0, 1, n + 1]))), None, False
    entries = [data.draw(st.none() | THRESHOLD) for _ in range(n)]
    entries[data.draw(st.integers(0, n - 1))] = data.draw(BAD_THRESHOLD)
    return tuple(entries), None, False


def thresholds_used(values, explicit, confidence):
    """The oracle's threshold per operand: explicit ones rounded to the compute dtype, else the percentile."""
    return [v.dtype.type(e) if e is not None else oracle.threshold(v, confidence) for v, e in zip(values, explicit)]


# ----------------------------------------------------------------------------------------------- oracle ops


def conv_taps(in_spatial, k_spatial, strides, padding):
    """For each (output position, kernel offset): the flattened input position read, or -1 (padding)."""
    g, out_spatial = oracle.index_map(list(in_spatial), list(k_spatial), strides, padding)
    taps = np.where(g.any(-1), g.argmax(-1), -1) if g.size else np.full(g.shape[:2], -1)
    return taps.astype(np.int64), out_spatial


def _size(dims):
    return int(np.prod(dims, dtype=np.int64))


def _patches(x, taps):
    """[B, I, C] -> [B, O, K, C]; padding reads a zero (as TensorFlow's kernels multiply padding by the kernel)."""
    padded = np.concatenate([x, np.zeros_like(x[:, :1])], axis=1)
    return padded[:, taps]


def np_conv(x, w, strides, padding):
    b, *sp, c = x.shape
    *ksp, _, d = w.shape
    taps, out_sp = conv_taps(sp, ksp, strides, padding)
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.einsum("bokc,kcd->bod", _patches(x.reshape(b, _size(sp), c), taps), w.reshape(_size(ksp), c, d))
    return out.reshape([b] + out_sp + [d])


def np_conv_filter_grad(x, dy, kshape, strides, padding):
    b, *sp, c = x.shape
    taps, _ = conv_taps(sp, kshape[:-2], strides, padding)
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.einsum(
            "bokc,bod->kcd",
            _patches(x.reshape(b, _size(sp), c), taps),
            dy.reshape(b, _size(dy.shape[1:-1]), dy.shape[-1]),
        )
    return out.reshape(kshape)


def np_conv_input_grad(dy, w, in_shape, strides, padding):
    b, *sp, c = in_shape
    taps, _ = conv_taps(sp, w.shape[:-2], strides, padding)
    d = w.shape[-1]
    with np.errstate(invalid="ignore", over="ignore"):
        parts = np.einsum(
            "bod,kcd->bokc", dy.reshape(b, _size(dy.shape[1:-1]), d), w.reshape(_size(w.shape[:-2]), c, d)
        )
        out = np.zeros((b, int(np.prod(sp)) + 1, c), np.float64)
        np.add.at(out, (slice(None), taps), parts)
    return out[:, :-1].reshape(in_shape)


def classify(op, x, y, tx, ty):
    with np.errstate(invalid="ignore", over="ignore"):
        return oracle.classify(op, x, y, tx, ty)


def products_per_cell(op, x, y):
    return op(np.ones_like(x, np.float64), np.ones_like(y, np.float64))


def magnitude_scale(op, x, y):
    """op(|x|, |y|) over the finite values: the scale that bounds a cell's rounding error."""

    def clean(a):
        return np.where(np.isfinite(a), np.abs(a), 0.0).astype(np.float64)

    return op(clean(x), clean(y))


def eps_of(dtype):
    return float(np.finfo(np.float32 if np.dtype(dtype) != np.float64 else np.float64).eps)


def assert_sums(got, want, scale, eps, terms, strict_nonfinite=True, what="sums"):
    """Finite entries close (error bound from the magnitudes); non-finite entries where the oracle's are."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    finite_got, finite_want = np.isfinite(got), np.isfinite(want)
    if strict_nonfinite:
        np.testing.assert_array_equal(finite_got, finite_want, err_msg=what + ": non-finite pattern")
        inf = np.isinf(want)
        np.testing.assert_array_equal(got[inf], want[inf], err_msg=what + ": infinities")
    both = finite_got & finite_want
    scale = np.broadcast_to(np.asarray(scale, np.float64), got.shape)
    bound = eps * (terms + 4) * np.where(np.isfinite(scale), scale, 0.0) + 1e-30
    err = np.abs(got[both] - want[both])
    assert np.all(err <= bound[both]), (what, float(np.max(err - bound[both])) if err.size else 0.0)


def check_two_operand(name, call, op, args, explicit, confidence, strict_nonfinite=True):
    """Runs `call()` (a classifier with return_thresholds=True) and checks it against the oracle and invariants."""
    (_, x), (_, y) = args
    x, y = promote(x, y)
    counts, sums, used = call()
    counts, sums = np.asarray(counts), np.asarray(sums)
    assert counts.dtype == sums.dtype == x.dtype, (counts.dtype, x.dtype)
    tx, ty = thresholds_used((x, y), explicit, confidence)
    assert np.asarray(used[0]) == tx and np.asarray(used[1]) == ty, (used, tx, ty)
    want_counts, want_sums = classify(op, x, y, tx, ty)
    assert counts.shape == want_counts.shape, (counts.shape, want_counts.shape)
    np.testing.assert_array_equal(counts, want_counts)
    k = products_per_cell(op, x, y)
    terms = float(np.max(k)) if k.size else 0.0
    scale = magnitude_scale(op, x, y)
    assert_sums(sums, want_sums, scale[..., None], eps_of(x.dtype), terms, strict_nonfinite)
    # invariant 1: every product in exactly one pair
    np.testing.assert_array_equal(counts.sum(-1), k)
    # invariant 2: the pairs add up to the op's result where it is finite; stay non-finite where it is not
    with np.errstate(invalid="ignore", over="ignore"):
        result = op(x.astype(np.float64), y.astype(np.float64))
    total = sums.astype(np.float64).sum(-1)
    finite = np.isfinite(result)
    bound = eps_of(x.dtype) * (terms + 13) * scale + 1e-30
    assert np.all(np.abs(total[finite] - result[finite]) <= bound[finite])
    if strict_nonfinite:
        assert not np.any(np.isfinite(total[~finite]))
    count(name)


def expect_error(call):
    with pytest.raises(EXPECTED_ERRORS) as info:
        call()
    assert str(info.value).strip(), "an error without a message"


def either(call):
    """Runs `call`; a ValueError/TypeError with a message is an accepted outcome (returns None)."""
    try:
        return call()
    except EXPECTED_ERRORS as e:
        assert str(e).strip()
        return None


# ----------------------------------------------------------------------------------------------- matmul


@settings(max_examples=220, **SETTINGS)
@given(data=st.data())
def test_matmul_classify(data):
    batch = data.draw(st.sampled_from([(), (), (), (2,), (0,), (2, 1)]))
    n, k, m = (data.draw(st.integers(0, 5)) for _ in range(3))
    y_batch = data.draw(st.sampled_from([batch, batch[-1:], ()] if batch else [()]))
    mismatch = data.draw(st.integers(0, 9)) == 0
    x_shape, y_shape = batch + (n, k), y_batch + (k + int(mismatch), m)
    args = draw_values(data, [x_shape, y_shape])
    bad_conf = data.draw(st.integers(0, 14)) == 0
    confidence = data.draw(BAD_CONFIDENCE if bad_conf else CONFIDENCE)
    targ, explicit, valid_t = threshold_arg(data, 2)

    def call():
        return ops.matmul_classify(
            args[0][0], args[1][0], confidence=confidence, thresholds=targ, return_thresholds=True
        )

    if mismatch or bad_conf or not valid_t:
        expect_error(call)
        count("test_matmul_classify")
        return
    check_two_operand("test_matmul_classify", call, np.matmul, args, explicit, confidence)


@settings(max_examples=90, **SETTINGS)
@given(data=st.data())
def test_matmul_classify_bad_ranks_and_dtypes(data):
    """Wrong ranks, non-numeric dtypes, ragged lists: a clear TypeError/ValueError, never another crash."""
    bad = data.draw(st.sampled_from(["rank0", "rank1", "complex", "string", "ragged", "none", "dict"]))
    y = np.ones((3, 2), np.float32)
    x = {
        "rank0": np.float32(1.0),
        "rank1": np.ones(3, np.float32),
        "complex": np.ones((2, 3), np.complex64),
        "string": np.array([["a", "b", "c"]]),
        "ragged": [[1.0, 2.0], [1.0]],
        "none": None,
        "dict": {"a": 1},
    }[bad]
    swap = data.draw(st.booleans())
    fn = data.draw(st.sampled_from(["matmul", "multiply", "tensor", "mask", "threshold"]))
    if fn == "matmul":
        expect_error(lambda: ops.matmul_classify(*((y.T, x) if swap else (x, y))))
    elif fn == "multiply":
        if bad in ("rank0", "rank1"):
            return count("test_matmul_classify_bad_ranks_and_dtypes")  # valid: broadcasting
        expect_error(lambda: ops.multiply_classify(*((y, x) if swap else (x, y))))
    elif fn == "tensor":
        if bad in ("rank0", "rank1"):
            either(lambda: ops.tensor_classify(x))
        else:
            expect_error(lambda: ops.tensor_classify(x))
    elif fn == "mask":
        if bad not in ("rank0", "rank1"):
            expect_error(lambda: ops.classification_mask(x))
    elif bad not in ("rank0", "rank1"):
        expect_error(lambda: threshold.percentile_threshold(x, 0.9))
    count("test_matmul_classify_bad_ranks_and_dtypes")


# ----------------------------------------------------------------------------------------------- multiply, tensordot


@settings(max_examples=100, **SETTINGS)
@given(data=st.data())
def test_multiply_classify(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=3))
    x_shape, y_shape = shapes.input_shapes
    clash = data.draw(st.integers(0, 9)) == 0 and len(x_shape) > 0
    if clash:
        x_shape = x_shape[:-1] + (4,)
        y_shape = (y_shape[:-1] + (5,)) if y_shape else (5,)
    args = draw_values(data, [x_shape, y_shape])
    confidence = data.draw(CONFIDENCE)
    targ, explicit, valid_t = threshold_arg(data, 2)

    def call():
        return ops.multiply_classify(
            args[0][0], args[1][0], confidence=confidence, thresholds=targ, return_thresholds=True
        )

    if clash or not valid_t:
        expect_error(call)
        return count("test_multiply_classify")
    check_two_operand("test_multiply_classify", call, np.multiply, args, explicit, confidence)


@settings(max_examples=70, **SETTINGS)
@given(data=st.data())
def test_tensordot_classify(data):
    x_shape = tuple(data.draw(st.lists(st.integers(0, 3), min_size=0, max_size=3)))
    kind = data.draw(st.sampled_from(["int", "pairs", "bad"]))
    if kind == "int":
        axes = data.draw(st.integers(0, len(x_shape)))
        y_shape = x_shape[len(x_shape) - axes :] + tuple(data.draw(st.lists(st.integers(0, 3), max_size=2)))
    elif kind == "pairs":
        n = data.draw(st.integers(0, len(x_shape)))
        x_axes = data.draw(st.permutations(range(len(x_shape))))[:n]
        y_rest = tuple(data.draw(st.lists(st.integers(0, 3), max_size=2)))
        y_shape = tuple(x_shape[a] for a in x_axes) + y_rest
        axes = [list(x_axes), list(range(n))]
    else:
        axes = data.draw(st.sampled_from([5, -1, [[0], [0, 1]], "x", [[7], [0]]]))
        y_shape = (2, 3)
    args = draw_values(data, [x_shape, y_shape])
    confidence = data.draw(CONFIDENCE)

    def call():
        return ops.tensordot_classify(args[0][0], args[1][0], axes, confidence=confidence, return_thresholds=True)

    if kind == "bad":
        expect_error(call)
        return count("test_tensordot_classify")
    check_two_operand(
        "test_tensordot_classify", call, lambda a, b: np.tensordot(a, b, axes), args, (None, None), confidence
    )


# ----------------------------------------------------------------------------------------------- single operand


@settings(max_examples=110, **SETTINGS)
@given(data=st.data())
def test_tensor_classify_masks_and_threshold(data):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    ((value, x),) = draw_values(data, [shape])
    confidence = data.draw(CONFIDENCE)
    given_thr = data.draw(st.none() | THRESHOLD)
    thr = x.dtype.type(given_thr) if given_thr is not None else oracle.threshold(x, confidence)
    assert np.asarray(threshold.percentile_threshold(value, confidence)) == oracle.threshold(x, confidence)
    assert int(threshold.count_nonfinite(value)) == int(np.sum(~np.isfinite(x)))
    sampled = threshold.sampled_threshold(value, confidence, sample_size=max(1, x.size), seed=3)
    assert np.asarray(sampled) == oracle.threshold(x, confidence)  # exact when the sample covers x
    pos, zero, neg, used = ops.classification_mask(value, confidence, threshold=given_thr)
    assert np.asarray(used) == thr
    for got, want in zip((pos, zero, neg), oracle.masks(x, thr)):
        np.testing.assert_array_equal(np.asarray(got), want)
    counts, sums, used = ops.tensor_classify(value, confidence, threshold=given_thr, return_threshold=True)
    assert np.asarray(used) == thr
    masks = oracle.masks(x, thr)
    np.testing.assert_array_equal(np.asarray(counts), np.stack([m.astype(x.dtype) for m in masks], -1))
    np.testing.assert_array_equal(np.asarray(counts).sum(-1), np.ones(shape))
    want_sums = np.stack([np.where(m, x, 0) for m in masks], -1)
    np.testing.assert_array_equal(np.asarray(sums), want_sums)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(np.asarray(sums).sum(-1)[finite], x[finite])
    count("test_tensor_classify_masks_and_threshold")


# ----------------------------------------------------------------------------------------------- convolutions


def conv_geometry(data, allow_bad=True):
    """Shapes of a random NHWC convolution (possibly invalid): a dict."""
    rank = data.draw(st.integers(1, 3))
    batch = data.draw(st.sampled_from([0, 1, 2]))
    cin, cout = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
    max_side = {1: 6, 2: 4, 3: 3}[rank]
    spatial = [data.draw(st.integers(0, max_side)) for _ in range(rank)]
    kernel = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    strides = tuple(data.draw(st.integers(1, 3)) for _ in range(rank))
    padding = data.draw(st.sampled_from(["VALID", "SAME", "valid", "Same"]))
    strides_arg = data.draw(st.sampled_from(["tuple", "int", "full"]))
    if strides_arg == "int":
        strides = (strides[0],) * rank
        sarg = strides[0]
    elif strides_arg == "full":
        sarg = (1,) + strides + (1,)
    else:
        sarg = strides
    g = dict(
        rank=rank,
        x=[batch] + spatial + [cin],
        k=kernel + [cin, cout],
        strides=strides,
        sarg=sarg,
        padding=padding.upper(),
        parg=padding,
        bad=None,
    )
    if allow_bad and data.draw(st.integers(0, 7)) == 0:
        g["bad"] = data.draw(st.sampled_from(["padding", "stride0", "strides_len", "channels", "rank", "kernel0"]))
        if g["bad"] == "padding":
            g["parg"] = data.draw(st.sampled_from(["FULL", "", None, 1]))
        elif g["bad"] == "stride0":
            g["sarg"] = data.draw(st.sampled_from([0, -1, (0,) * rank, 1.5, "1", True]))
        elif g["bad"] == "strides_len":
            g["sarg"] = (1,) * (rank + 1)
        elif g["bad"] == "channels":
            g["k"] = kernel + [cin + 1, cout]
        elif g["bad"] == "rank":
            g["k"] = kernel + [1, cin, cout] if rank < 3 else kernel[1:] + [cin, cout]
        else:
            g["k"] = [0] + kernel[1:] + [cin, cout]
    return g


def _out_shape(g):
    _, out_sp = conv_taps(g["x"][1:-1], g["k"][:-2], g["strides"], g["padding"])
    return [g["x"][0]] + out_sp + [g["k"][-1]]


def _conv_case(data, role):
    g = conv_geometry(data)
    if g["bad"] in ("channels", "rank", "kernel0", "padding") or g["bad"] and role != "forward":
        shapes = {
            "forward": [g["x"], g["k"]],
            "kernel_gradient": [g["x"], [1] * len(g["x"])],
            "input_gradient": [[1] * len(g["x"]), g["k"]],
        }[role]
    else:
        out = _out_shape(g)
        shapes = {"forward": [g["x"], g["k"]], "kernel_gradient": [g["x"], out], "input_gradient": [out, g["k"]]}[role]
    if g["bad"] is None and role != "forward" and data.draw(st.integers(0, 9)) == 0:
        shapes[1 if role == "kernel_gradient" else 0][-1] += 1  # d_out of the wrong shape
        g["bad"] = "d_out"
    args = draw_values(data, [tuple(s) for s in shapes])
    return g, args


@settings(max_examples=80, **SETTINGS)
@given(data=st.data())
def test_conv_classify(data):
    g, args = _conv_case(data, "forward")
    confidence = data.draw(CONFIDENCE)
    targ, explicit, valid_t = threshold_arg(data, 2)

    def call():
        return ops.conv_classify(
            args[0][0], args[1][0], g["sarg"], g["parg"], confidence=confidence, thresholds=targ, return_thresholds=True
        )

    if g["bad"] or not valid_t:
        expect_error(call)
        return count("test_conv_classify")

    def op(a, b):
        return np_conv(a, b, g["strides"], g["padding"])

    check_two_operand("test_conv_classify", call, op, args, explicit, confidence)


@settings(max_examples=70, **SETTINGS)
@given(data=st.data())
def test_conv_backprop_filter_classify(data):
    g, args = _conv_case(data, "kernel_gradient")
    confidence = data.draw(CONFIDENCE)
    targ, explicit, valid_t = threshold_arg(data, 2)

    def call():
        return ops.conv_backprop_filter_classify(
            args[0][0],
            args[1][0],
            g["k"],
            g["sarg"],
            g["parg"],
            confidence=confidence,
            thresholds=targ,
            return_thresholds=True,
        )

    if g["bad"] or not valid_t:
        expect_error(call)
        return count("test_conv_backprop_filter_classify")

    def op(a, b):
        return np_conv_filter_grad(a, b, g["k"], g["strides"], g["padding"])

    # With an infinity in an operand, TensorFlow's backprop-filter kernel may multiply it by a class mask's zero
    # (inf * 0 = NaN) where the oracle skips the product, so the non-finite pattern is only compared for finite
    # operands (as the aggregate tests do); the cells finite in both are still checked.
    finite = all(np.all(np.isfinite(np.asarray(a[1], np.float64))) for a in args)
    check_two_operand(
        "test_conv_backprop_filter_classify", call, op, args, explicit, confidence, strict_nonfinite=finite
    )


@settings(max_examples=70, **SETTINGS)
@given(data=st.data())
def test_conv_backprop_input_classify(data):
    g, args = _conv_case(data, "input_gradient")
    confidence = data.draw(CONFIDENCE)
    targ, explicit, valid_t = threshold_arg(data, 2)

    def call():
        return ops.conv_backprop_input_classify(
            args[0][0],
            args[1][0],
            g["x"],
            g["sarg"],
            g["parg"],
            confidence=confidence,
            thresholds=targ,
            return_thresholds=True,
        )

    if g["bad"] or not valid_t:
        expect_error(call)
        return count("test_conv_backprop_input_classify")

    def op(a, b):
        return np_conv_input_grad(a, b, g["x"], g["strides"], g["padding"])

    check_two_operand("test_conv_backprop_input_classify", call, op, args, explicit, confidence)


# ----------------------------------------------------------------------------------------------- aggregates


def unit_reference(op, x, y, tx, ty, result, r_thr):
    """The oracle's per-cell route reduced per unit (the result's last axis): a dict like `UnitTotals`, plus the
    error scales and the per-unit result sums for the invariants."""
    counts, sums = classify(op, x, y, tx, ty)
    units = counts.shape[-2]

    def flat(a):
        return a.reshape(_size(a.shape[:-2]), units, 9)

    counts, sums = flat(counts), flat(sums)
    result = result.reshape(counts.shape[0], units)
    near = oracle.masks(result, r_thr)[1]
    z = near[..., None]
    scale = magnitude_scale(op, x, y).reshape(counts.shape[0], units)
    k = products_per_cell(op, x, y).reshape(counts.shape[0], units)
    with np.errstate(invalid="ignore", over="ignore"):
        return dict(
            counts=counts.sum(0),
            sums=sums.sum(0),
            near_zero_counts=np.where(z, counts, 0.0).sum(0),
            near_zero_sums=np.where(z, sums, 0.0).sum(0),
            cells=np.full(units, float(counts.shape[0])),
            near_zero_cells=near.sum(0).astype(np.float64),
            scale=scale.sum(0),
            nz_scale=np.where(near, scale, 0.0).sum(0),
            products=k.sum(0),
            terms=float(k.sum(0).max()) if k.size else 0.0,
            result_sum=result.astype(np.float64).sum(0),
        )


def rows(a):
    """[..., k] -> [n, k] with explicit sizes (a -1 is ambiguous for zero-size arrays)."""
    return a.reshape(_size(a.shape[:-1]), a.shape[-1])


def tf_rows(t):
    return tf.reshape(t, [_size(t.shape[:-1]), t.shape[-1]])


AGG_ROLES = {
    # name: geometry -> (the kernel, the op on (first, second) in NumPy)
    "dense": lambda g: (lambda f, s, **kw: aggregates.dense(f, s, **kw), lambda a, b: rows(a) @ b),
    "dense_kernel_gradient": lambda g: (
        lambda f, s, **kw: aggregates.dense_kernel_gradient(f, s, **kw),
        lambda a, b: rows(a).T @ rows(b),
    ),
    "dense_input_gradient": lambda g: (
        lambda f, s, **kw: aggregates.dense_input_gradient(f, s, **kw),
        lambda a, b: rows(a) @ b.T,
    ),
    "conv": lambda g: (
        lambda f, s, **kw: aggregates.conv(f, s, g["sarg"], g["parg"], **kw),
        lambda a, b: np_conv(a, b, g["strides"], g["padding"]),
    ),
    "conv_kernel_gradient": lambda g: (
        lambda f, s, **kw: aggregates.conv_kernel_gradient(f, s, g["k"], g["sarg"], g["parg"], **kw),
        lambda a, b: np_conv_filter_grad(a, b, g["k"], g["strides"], g["padding"]),
    ),
    "conv_input_gradient": lambda g: (
        lambda f, s, **kw: aggregates.conv_input_gradient(f, s, g["x"], g["sarg"], g["parg"], **kw),
        lambda a, b: np_conv_input_grad(a, b, g["x"], g["strides"], g["padding"]),
    ),
}


def tf_result(op_name, g, x, y):
    """The op's result as TensorFlow computes it in the compute dtype (what a layer hands the kernels)."""
    a, b = tf.constant(x), tf.constant(y)
    if op_name == "dense":
        return tf.reshape(tf_rows(a) @ b, x.shape[:-1] + y.shape[-1:]).numpy()
    if op_name == "dense_kernel_gradient":
        return tf.linalg.matmul(tf_rows(a), tf_rows(b), transpose_a=True).numpy()
    if op_name == "dense_input_gradient":
        return tf.reshape(tf.linalg.matmul(tf_rows(a), b, transpose_b=True), x.shape[:-1] + y.shape[:1]).numpy()
    from tb_matmul_explainer import conv as conv_lib

    if op_name == "conv":
        return conv_lib.forward(a, b, g["strides"], g["padding"]).numpy()
    if op_name == "conv_kernel_gradient":
        return conv_lib.backprop_filter(a, b, g["k"], g["strides"], g["padding"]).numpy()
    return conv_lib.backprop_input(a, b, g["x"], g["strides"], g["padding"]).numpy()


AGG_THRESHOLDS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 0.125])  # exact in every float dtype


def check_aggregate(name, op_name, g, args, data, jit=False):
    """The kernel against the per-cell route on drawn thresholds. XLA compiles each new shape (about a second), so
    random shapes run the kernels uncompiled; `test_aggregates_compiled` runs the compiled path (`jit`) on a few
    fixed shapes."""
    fn, op = AGG_ROLES[op_name](g)
    (f_arg, x), (s_arg, y) = args
    x, y = promote(x, y)
    mode = data.draw(st.sampled_from(["explicit", "exact", "mixed"]))
    confidence = data.draw(CONFIDENCE)
    if mode == "explicit":
        given = tuple(data.draw(AGG_THRESHOLDS) for _ in range(3))
    elif mode == "exact":
        given = (None, None, None)
    else:
        given = tuple(data.draw(st.none() | AGG_THRESHOLDS) for _ in range(3))
    result = tf_result(op_name, g, x, y)
    pass_result = data.draw(st.booleans())
    got = fn(
        f_arg,
        s_arg,
        result=result if pass_result else None,
        confidence=confidence,
        thresholds=given,
        threshold_method="exact",
        jit=jit,
    )
    got = {k: np.asarray(v) for k, v in got._asdict().items()}
    tx, ty = thresholds_used((x, y), given[:2], confidence)
    tr = result.dtype.type(given[2]) if given[2] is not None else oracle.threshold(result, confidence)
    np.testing.assert_array_equal(got["thresholds"], np.array([tx, ty, tr], np.float64))
    np.testing.assert_array_equal(got["nonfinite"], [np.sum(~np.isfinite(v)) for v in (x, y, result)])
    want = unit_reference(op, x, y, tx, ty, result, tr)
    for key in ("counts", "near_zero_counts", "cells", "near_zero_cells"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # invariant 1: a unit's pair counts add up to its products
    np.testing.assert_array_equal(got["counts"].sum(-1), want["products"])
    any_nonfinite = not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)))
    eps = eps_of(x.dtype)
    # The factorised products may spread a NaN further than the per-cell route (documented): with non-finite
    # operands only the entries finite in both are compared.
    assert_sums(
        got["sums"],
        want["sums"],
        want["scale"][:, None],
        eps,
        want["terms"] * 4,
        strict_nonfinite=not any_nonfinite,
        what="sums",
    )
    assert_sums(
        got["near_zero_sums"],
        want["near_zero_sums"],
        want["nz_scale"][:, None],
        eps,
        want["terms"] * 4,
        strict_nonfinite=not any_nonfinite,
        what="near_zero_sums",
    )
    if any_nonfinite:  # non-finite values never vanish: where the per-cell route's sums are not finite, nor are ours
        assert not np.any(np.isfinite(got["sums"][~np.isfinite(want["sums"])]))
    # invariant 2: a unit's pair sums add up to the sum of its result cells where finite
    total, expected = got["sums"].sum(-1), want["result_sum"]
    finite = np.isfinite(expected) & np.isfinite(total)
    if not any_nonfinite:
        assert np.all(np.isfinite(total) == np.isfinite(expected))
    bound = eps * (want["terms"] * 4 + 13) * want["scale"] + 1e-30
    assert np.all(np.abs(total[finite] - expected[finite]) <= bound[finite])
    count(name)


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_aggregates_dense(data):
    op_name = data.draw(st.sampled_from(["dense", "dense_kernel_gradient", "dense_input_gradient"]))
    lead = tuple(data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=2)))
    k, m = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 4))
    shapes = {
        "dense": [lead + (k,), (k, m)],
        "dense_kernel_gradient": [lead + (k,), lead + (m,)],
        "dense_input_gradient": [lead + (m,), (k, m)],
    }[op_name]
    bad = data.draw(st.integers(0, 9)) == 0
    if bad:  # the operands do not fit together
        shapes[1] = {
            "dense": (k + 1, m),
            "dense_kernel_gradient": (lead[0] + 1,) + lead[1:] + (m,),
            "dense_input_gradient": (k, m + 1),
        }[op_name]
    args = draw_values(data, shapes)
    if bad:
        fn, _ = AGG_ROLES[op_name](None)
        expect_error(lambda: fn(args[0][0], args[1][0], thresholds=0.5))
        return count("test_aggregates_dense")
    check_aggregate("test_aggregates_dense", op_name, None, args, data)


@settings(max_examples=120, **SETTINGS)
@given(data=st.data())
def test_aggregates_conv(data):
    op_name = data.draw(st.sampled_from(["conv", "conv_kernel_gradient", "conv_input_gradient"]))
    role = {"conv": "forward", "conv_kernel_gradient": "kernel_gradient", "conv_input_gradient": "input_gradient"}[
        op_name
    ]
    g, args = _conv_case(data, role)
    if g["bad"]:
        fn, _ = AGG_ROLES[op_name](g)
        expect_error(lambda: fn(args[0][0], args[1][0], thresholds=0.5))
        return count("test_aggregates_conv")

    check_aggregate("test_aggregates_conv", op_name, g, args, data)


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_aggregates_bad_options(data):
    """Bad options of the kernels: a clear ValueError/TypeError."""
    option = data.draw(
        st.sampled_from(
            [
                "confidence",
                "thresholds",
                "threshold_method",
                "near_zero",
                "sample_size",
                "seed",
                "near_zero_sample_size",
            ]
        )
    )
    value = {
        "confidence": BAD_CONFIDENCE,
        "thresholds": st.sampled_from([-1.0, math.nan, "x", (1.0, 2.0), (1, 2, 3, 4), (None, -1.0, None)]),
        "threshold_method": st.sampled_from(["median", None, 1, "EXACT"]),
        "near_zero": st.sampled_from(["all", None, True, "Exact"]),
        "sample_size": st.sampled_from([0, -5, 1.5, "10", True]),
        "seed": st.sampled_from([[1, 2, 3], "seed", 1.5, [[1, 2]]]),
        "near_zero_sample_size": st.sampled_from([0, -1, 2.5, "8", False]),
    }[option]
    bad = data.draw(value)
    fn = data.draw(
        st.sampled_from(
            [
                lambda **kw: aggregates.dense(np.ones((3, 2), np.float32), np.ones((2, 4), np.float32), **kw),
                lambda **kw: aggregates.conv(
                    np.ones((1, 4, 4, 1), np.float32), np.ones((2, 2, 1, 2), np.float32), **kw
                ),
            ]
        )
    )
    expect_error(lambda: fn(**{option: bad}))
    count("test_aggregates_bad_options")


@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_aggregates_compiled(data):
    """The default, XLA-compiled path on fixed shapes (each new shape compiles once)."""
    op_name = data.draw(st.sampled_from(["dense", "conv"]))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    nonfinite = data.draw(st.integers(0, 3)) == 0
    g = None
    if op_name == "dense":
        shapes = [(6, 5), (5, 3)]
    else:
        g = dict(x=[2, 5, 5, 2], k=[3, 3, 2, 3], strides=(1, 1), sarg=1, padding="SAME", parg="SAME")
        shapes = [tuple(g["x"]), tuple(g["k"])]
    args = [operand(data, s, dtype, nonfinite=nonfinite) for s in shapes]
    check_aggregate("test_aggregates_compiled", op_name, g, args, data, jit=True)


# ----------------------------------------------------------------------------------------------- regressions


def test_conv_kernel_larger_than_input_gives_empty_result():
    """VALID padding with a kernel larger than the input: TensorFlow's Conv2D returned a wrong shape (kernel
    one larger) or raised InvalidArgumentError (larger still); `conv.forward` now returns the empty result."""
    x = np.ones((2, 1, 3, 1), np.float32)
    for k in [(2, 1, 1, 4), (3, 3, 1, 4)]:
        counts, sums = ops.conv_classify(x, np.ones(k, np.float32))
        want = oracle.conv(x, np.ones(k), (1, 1), "VALID").shape
        assert counts.shape == sums.shape == want + (9,)
        totals = aggregates.conv(x, np.ones(k, np.float32), thresholds=0.5)
        assert not np.any(totals.counts.numpy()) and not np.any(totals.cells.numpy())


def test_zero_size_kernel_window_is_a_value_error():
    for call in (
        lambda: ops.conv_classify(np.ones((1, 3, 3, 1)), np.ones((0, 1, 1, 1))),
        lambda: ops.conv_backprop_filter_classify(np.ones((1, 3, 3, 1)), np.ones((1, 4, 3, 1)), (0, 1, 1, 1)),
        lambda: aggregates.conv(np.ones((1, 3, 3, 1)), np.ones((1, 0, 1, 1)), thresholds=0.5),
    ):
        with pytest.raises(ValueError, match="non-empty window"):
            call()


def test_tensordot_axis_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="axes"):
        ops.tensordot_classify(np.ones(3), np.ones((2, 3)), [[7], [0]])


def _zeros(*shape):
    return np.zeros(shape, np.float32)


# Zero-size cases the hypothesis tests above first found the kernels crashing on (`tf.reshape(t, [-1, 0])` infers one
# row; `tf.size(t) // shape[-1]` divides by zero channels), each with its exact expected cells per unit.
ZERO_SIZE_CASES = {
    "dense, empty x and kernel with zero units, result given": (
        lambda: aggregates.dense(_zeros(0, 0), _zeros(0, 0), result=_zeros(0, 0), thresholds=0.5),
        [],
    ),
    "dense, x of rank 3 with zero-size leading and last axes": (
        lambda: aggregates.dense(_zeros(0, 0, 0), _zeros(0, 1), thresholds=0.5),
        [0.0],
    ),
    "dense, x of rank 3 with a zero-size middle axis, result given": (
        lambda: aggregates.dense(_zeros(2, 0, 3), _zeros(3, 0), result=_zeros(2, 0, 0), thresholds=0.5),
        [],
    ),
    "dense_kernel_gradient, x of rank 3 with zero-size leading and last axes": (
        lambda: aggregates.dense_kernel_gradient(_zeros(0, 0, 0), _zeros(0, 0, 1), thresholds=0.5),
        [0.0],
    ),
    "dense_input_gradient, zero units out, rank 3": (
        lambda: aggregates.dense_input_gradient(_zeros(2, 3, 0), _zeros(2, 0), thresholds=0.5),
        [6.0, 6.0],
    ),
    "conv, zero output channels": (lambda: aggregates.conv(_zeros(1, 3, 3, 1), _zeros(1, 1, 1, 0), thresholds=0.5), []),
    "conv, zero output channels, near_zero sampled": (
        lambda: aggregates.conv(
            _zeros(1, 3, 3, 1), _zeros(1, 1, 1, 0), thresholds=0.5, near_zero="sampled", near_zero_sample_size=2
        ),
        [],
    ),
    "conv_kernel_gradient, zero output channels": (
        lambda: aggregates.conv_kernel_gradient(_zeros(1, 3, 2), _zeros(1, 3, 0), [1, 2, 0], thresholds=0.5),
        [],
    ),
    "conv_kernel_gradient, empty batch, zero in and out channels": (
        lambda: aggregates.conv_kernel_gradient(_zeros(0, 0, 0), _zeros(0, 0, 0), [1, 0, 0], thresholds=0.5),
        [],
    ),
    "conv_input_gradient, zero output channels": (
        lambda: aggregates.conv_input_gradient(_zeros(1, 3, 3, 0), _zeros(1, 1, 2, 0), (1, 3, 3, 2), thresholds=0.5),
        [9.0, 9.0],
    ),
}


@pytest.mark.parametrize("case", sorted(ZERO_SIZE_CASES))
def test_aggregates_zero_size(case):
    """Zero-size axes give zero totals of the right shape: no TensorFlow error, no phantom row."""
    call, cells = ZERO_SIZE_CASES[case]
    got = call()
    np.testing.assert_array_equal(got.cells.numpy(), cells)
    for name in ("counts", "sums", "near_zero_counts", "near_zero_sums"):
        value = getattr(got, name).numpy()
        assert value.shape == (len(cells), 9), (name, value.shape)
        np.testing.assert_array_equal(value, 0.0, err_msg=name)
    np.testing.assert_array_equal(got.nonfinite.numpy(), [0, 0, 0])


# ----------------------------------------------------------------------------------------------- totals

MIN_CASES = 1000


def test_case_count():
    """At least 1,000 generated cases ran (only meaningful when the whole module ran)."""
    names = [n for n, v in globals().items() if n.startswith("test_") and hasattr(v, "hypothesis")]
    if set(CASES) != set(names):
        pytest.skip("only part of the module ran: %s" % sorted(set(names) - set(CASES)))
    total = sum(CASES.values())
    print("hypothesis cases run: %d (%s)" % (total, ", ".join("%s=%d" % kv for kv in sorted(CASES.items()))))
    assert total >= MIN_CASES, CASES
