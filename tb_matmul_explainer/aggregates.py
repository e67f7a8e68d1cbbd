"""Per-unit nine-pair totals for summaries: factorised reductions instead of per-cell classification.

Each function explains `result = op(first, second)` and returns a `UnitTotals` (all float64): per unit u and pair
t in `ops.TERMS` (first letter = first operand) the number of products `counts[u, t]` and their sum `sums[u, t]`
over the unit's result cells, and the same over its near-zero cells only (`near_zero_counts`, `near_zero_sums`).
They equal `ops`' per-cell classifiers reduced over those cells: counts exactly, sums to float tolerance.

  role             function               first, second   result             unit (its cells)       near zero
  forward          dense                  x, kernel       x @ kernel         out unit (all rows)    x_a^T @ M
                   conv                   inputs, kernel  convolution        out ch. (batch, pos.)  bpf(x_a, M)
  kernel_gradient  dense_kernel_gradient  x, d_out        x^T @ d_out [k,m]  out unit (its k)       x_a @ M
                   conv_kernel_gradient   x, d_out        bpf(x, d_out)      out ch. (taps x in)    conv(x_a, M)
  input_gradient   dense_input_gradient   d_out, kernel   d_out @ kernel^T   in feature (all rows)  d_a^T @ M
                   conv_input_gradient    d_out, kernel   backprop_input     in ch. (batch, pos.)   bpf(M, d_a)

Dense x/d_out: rank >= 2, leading axes aggregated. Convolutions: NHWC 1D/2D/3D, int or per-axis strides,
VALID/SAME (padding is in no class). Classes as in `ops` (Z: v == 0, |v| < thr or NaN; P: v > 0; N: v < 0); a
result cell is near zero when it is Z under the result's threshold. M is that near-zero mask.

All cells: sum_cells op(Xa, Yb) factorises, e.g. `(1^T Xa) @ Yb` for dense forward, so the cost is O(operands +
9 k U): rows (or batch and positions) are summed first, then one small product per class. Near zero: one stacked
product of the first operand's variants with M (last column; bpf = backprop-filter; variants: P and N masks, packed as
P + 4096 N where the count bound allows, and P, Z, N values: 4-5x the op's multiply-adds), then against the second
operand's classes: one batched product per unit with the kernel's five class variants (`[u, 5, c]`) where the
contraction runs over the kernel (dense forward and input gradient), an elementwise pass elsewhere. Counts stay
exact: integers ride in float32 only under a static bound below 2**24 (else bit planes or float64); totals are
float64. Sums accumulate in the compute dtype (float16 and bfloat16 computed in float32, mixed floats promoted, as in
`validation`).

thresholds: None, one number (both operands and the result) or (first, second, result), None entries derived from
`confidence` by `threshold_method` "sampled" (`threshold.sampled_threshold`, default) or "exact" (O(N) percentile).
near_zero: "exact" (default); "off" (near-zero outputs zero, the result untouched, its threshold and non-finite
count NaN); "sampled": near-zero pair totals estimated from `near_zero_sample_size` batch rows (dense) or (batch,
position) pairs (convs) and rescaled, exact when there are no more (dense forward and input gradient take the
sampled rows cell by cell, one set of the kernel's class variants serving them and the all-cells totals); measured
(test_near_zero_sampled_error, 1024 of 8192): pair shares within 0.02-0.05 of exact, a unit's near-zero count
within ~2/sqrt(its near-zero cells in the sample) (3% for kernel gradients).

Non-finite: NaN is Z, +inf P, -inf N; counts stay exact; sums are non-finite wherever the per-cell route's are
(the factorised products may spread a NaN further, as 0 * inf, and a dense kernel's N-value products, taken
as raw - P - Z, are NaN wherever its P or Z products are not finite); `nonfinite` counts them per tensor. Zero-size
batches give zeros. Works eagerly and in `tf.function` with unknown batch dims; with `XLA` (default) the masks and
elementwise stages are XLA-compiled while the big product runs on TensorFlow's kernels (faster on CPU).
Cost on 2 CPU cores: bench/kernels.py.
"""

import functools
import itertools
import math
import numbers
from typing import NamedTuple

import tensorflow as tf

from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer import threshold as threshold_lib
from tb_matmul_explainer import validation

ROLES = ("forward", "kernel_gradient", "input_gradient")
THRESHOLD_METHODS = ("sampled", "exact")
NEAR_ZERO_MODES = ("exact", "sampled", "off")
NEAR_ZERO_SAMPLE_SIZE = 1024

_F32_EXACT = 1 << 24          # float32 holds every integer up to 2**24
_PACK = 4096                  # P and N counts share one float32 operand as P + _PACK * N ...
_PACK_LIMIT = _PACK - 1       # ... while a count is at most _PACK_LIMIT: _PACK_LIMIT * (_PACK + 1) < 2**24
_INT32_MAX = (1 << 31) - 1
_SMALL_BATCH = (1 << 12) - 1  # a bound on the rows that most batches meet (fewer bit planes, see _dense_shared)

# Compile the kernels with XLA (fuses the elementwise class masks into few passes; measured in bench/kernels.py).
XLA = True


def _kernel(fn):
    """Runs `fn` as one XLA-compiled function when `XLA` is set (static Python arguments key the cache)."""
    compiled = tf.function(fn, jit_compile=True)

    @functools.wraps(fn)
    def call(*args):
        return compiled(*args) if XLA else fn(*args)

    return call


class UnitTotals(NamedTuple):
    """Per-unit nine-pair totals (all float64; pairs in `ops.TERMS` order)."""
    counts: tf.Tensor            # [U, 9] exact
    sums: tf.Tensor              # [U, 9]
    near_zero_counts: tf.Tensor  # [U, 9] exact (estimates with near_zero="sampled")
    near_zero_sums: tf.Tensor    # [U, 9]
    cells: tf.Tensor             # [U] result cells of each unit
    near_zero_cells: tf.Tensor   # [U] near-zero result cells of each unit
    thresholds: tf.Tensor        # [3] first operand, second operand, result
    nonfinite: tf.Tensor         # [3] non-finite values in first operand, second operand, result


class _Options(NamedTuple):
    confidence: float
    thresholds: tuple
    method: str
    near_zero: str
    sample_size: int
    seed: object
    nz_sample_size: int


# ----------------------------------------------------------------------------------------------------------------
# Options, thresholds, classes


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _options(confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size):
    confidence = validation.check_confidence(confidence)
    thresholds = validation.parse_thresholds(thresholds, 3, "thresholds")
    if not isinstance(threshold_method, str) or threshold_method not in THRESHOLD_METHODS:
        raise ValueError(f"threshold_method must be one of {THRESHOLD_METHODS}, got {threshold_method!r}")
    if not isinstance(near_zero, str) or near_zero not in NEAR_ZERO_MODES:
        raise ValueError(f"near_zero must be one of {NEAR_ZERO_MODES}, got {near_zero!r}")
    sample_size = threshold_lib.DEFAULT_SAMPLE_SIZE if sample_size is None else _positive_int(sample_size,
                                                                                            "sample_size")
    near_zero_sample_size = _positive_int(near_zero_sample_size, "near_zero_sample_size")
    if seed is not None and not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        seed = tf.convert_to_tensor(seed)
        if seed.shape.rank != 1 or seed.shape[0] != 2 or not seed.dtype.is_integer:
            raise ValueError(f"seed must be None, an int, or a shape-[2] integer tensor, got {seed!r}")
    return _Options(confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size)


def _sub_seed(seed, index):
    """A distinct stateless seed per use (0, 1, 2: thresholds of first, second, result; 3: row sample)."""
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral):
        return tf.constant([int(seed), index], tf.int64)
    return tf.cast(seed, tf.int64) + tf.constant([0, index], tf.int64)


def _threshold(t, index, opts):
    given = opts.thresholds[index]
    if isinstance(given, float):
        return tf.constant(given, t.dtype)  # tf.cast would round a Python float through float32
    if given is not None:
        return tf.cast(given, t.dtype)
    if opts.method == "exact":
        return threshold_lib.percentile_threshold(t, opts.confidence)
    return threshold_lib.sampled_threshold(t, opts.confidence, opts.sample_size, seed=_sub_seed(opts.seed, index))


def _masks(t, thr):
    """P and N masks (Z is neither; NaN falls in neither)."""
    return (t >= thr) & (t > 0), (t <= -thr) & (t < 0)


def _values(t, pos, neg):
    """The operand masked to P, Z and N."""
    zero = tf.zeros_like(t)
    return [tf.where(pos, t, zero), tf.where(pos | neg, zero, t), tf.where(neg, t, zero)]


def _by_class_products(left, S, s_p, s_z, s_t, cast=tf.identity):
    """`left @` S's P, Z and N values (`S` and its P and Z values `s_p`, `s_z` transposed when `s_t`), each through
    `cast`. The N product is taken as `left @ S - P - Z`: the raw S needs no masked copy (kernel-sized copies
    dominate the cost here); its rounding error is of the order of the P and Z products' own."""
    p, z, raw = (cast(tf.linalg.matmul(left, v, transpose_b=s_t)) for v in (s_p, s_z, S))
    return [p, z, raw - p - z]


def _near_zero_mask(result, thr):
    pos, neg = _masks(result, thr)
    return ~(pos | neg)


def _operands(first, second, names):
    first = validation.as_float_tensor(first, names[0])
    second = validation.as_float_tensor(second, names[1])
    return validation.promote_floats(first, second)


def _given_result(result, dtype, expected_shape):
    """The caller's result in the compute dtype, its static shape checked against `expected_shape`."""
    result = validation.as_float_tensor(result, "result")
    if result.dtype != dtype:
        result = tf.cast(result, dtype)
    if result.shape.rank is not None:
        ok = result.shape.rank == len(expected_shape) and all(
            a is None or b is None or a == b for a, b in zip(result.shape.as_list(), expected_shape))
        if not ok:
            raise ValueError(f"result must have the op's result shape {expected_shape}, got {result.shape}")
    return result


def _f64(t):
    return tf.cast(t, tf.float64)


def _count_nonfinite(t):
    """Non-finite values in t; one cheap sum decides whether they need counting."""
    return tf.cond(tf.math.is_finite(tf.reduce_sum(t)), lambda: tf.constant(0.0, tf.float64),
                   lambda: _f64(threshold_lib.count_nonfinite(t)))


def _to_units(t):
    """[3, 3, U] -> [U, 9] in TERMS order."""
    return tf.reshape(tf.transpose(t, [2, 0, 1]), [-1, 9])


def _zeros_totals(units):
    z = tf.zeros([3, 3, units], tf.float64)
    return z, z, tf.zeros([units], tf.float64)


def _assemble(all_totals, nz_totals, cells, thresholds, nonfinite):
    counts, sums = all_totals
    nz_counts, nz_sums, nz_cells = nz_totals
    return UnitTotals(_to_units(counts), _to_units(sums), _to_units(nz_counts), _to_units(nz_sums),
                      cells, nz_cells, tf.stack([_f64(t) for t in thresholds]), tf.stack(nonfinite))


def _finish(opts, first, second, thr_first, thr_second, all_totals, units, result_fn, nz_fn):
    """Shared tail: the result's threshold, the near-zero totals (or zeros), and the UnitTotals."""
    nonfinite = [_count_nonfinite(first), _count_nonfinite(second)]
    counts, sums, cells = all_totals
    if opts.near_zero == "off":
        nan = tf.constant(math.nan, tf.float64)
        thr_result = nan if opts.thresholds[2] is None else tf.constant(opts.thresholds[2], tf.float64)
        nonfinite.append(nan)
        nz = _zeros_totals(units)
    else:
        result = result_fn()
        thr_result = _threshold(result, 2, opts)
        nonfinite.append(_count_nonfinite(result))
        nz = nz_fn(result, thr_result)
    return _assemble((counts, sums), nz, cells, [thr_first, thr_second, thr_result], nonfinite)


# ----------------------------------------------------------------------------------------------------------------
# Exact integer arithmetic helpers


def _exact_sum(t, axis, elem_bound, length):
    """Exact float64 sum of non-negative integer-valued `t` (each entry <= elem_bound) along `axis`."""
    if t.dtype == tf.float64:
        return tf.reduce_sum(t, axis)
    if length is not None and elem_bound * length <= _F32_EXACT:
        return _f64(tf.reduce_sum(t, axis))
    return tf.reduce_sum(_f64(t), axis)


def _exact_matmul(left, right, bound, length, transpose_a=False, transpose_b=False):
    """Exact float64 `left @ right` for non-negative int32 `left` (entries <= bound) and a 0/1 float32 `right`,
    contracting over `length` terms (None if unknown). Runs in float32 on bit planes of `left`, each small enough
    that every partial sum stays below 2**24; falls back to float64 when `length` is unknown or too large."""
    def mm(a, b):
        return tf.linalg.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)

    if length is None or length > _F32_EXACT // 2:
        return mm(_f64(left), _f64(right))
    if length == 0:
        return _f64(mm(tf.cast(left, tf.float32), right))
    bits = int(math.floor(math.log2(_F32_EXACT // length + 1)))  # (2**bits - 1) * length <= 2**24
    planes = max(1, math.ceil(max(int(bound), 1).bit_length() / bits))
    if planes == 1:
        return _f64(mm(tf.cast(left, tf.float32), right))
    return _combine_planes(mm(_bit_planes(left, bits, planes, -1 if transpose_a else -2), right), bits, planes)


def _bit_planes(left, bits, planes, axis):
    """Non-negative int32 `left` split into `planes` planes of `bits` bits, concatenated along `axis`, float32."""
    mask = tf.constant((1 << bits) - 1, tf.int32)
    parts = [tf.bitwise.bitwise_and(tf.bitwise.right_shift(left, tf.constant(bits * i, tf.int32)), mask)
             for i in range(planes)]
    return tf.cast(tf.concat(parts, axis), tf.float32)


def _combine_planes(product, bits, planes):
    """Exact float64 sum of the plane products (split along axis -2) weighted by their place values."""
    pieces = tf.split(product, planes, axis=-2)
    return tf.add_n([float(1 << (bits * i)) * _f64(p) for i, p in enumerate(pieces)])


def _packed_plan(length, bound):
    """(bits per plane, base) such that a float32 product of a `bits`-bit plane of the counts with the packed
    mask `P + base * N` stays exact (every partial sum below 2**24) over `length` terms; None if none fits."""
    if length is None:
        return None
    for bits in range(max(1, min(24, int(bound).bit_length())), 0, -1):
        most = ((1 << bits) - 1) * max(length, 1)        # largest P (or N) part of one product
        base = 1 << most.bit_length()                     # > most
        if most * (base + 1) <= _F32_EXACT:
            return bits, base
    return None


def _count_pair_matmul(left, pos, neg, bound, length, transpose_a=False, transpose_b=False):
    """Exact float64 `(left @ pos, left @ neg)` for non-negative int32 `left` (entries <= bound) and boolean
    masks, contracting over `length` terms: one float32 matmul of bit planes of `left` with the packed mask
    `pos + base * neg` when that stays exact, else `_exact_matmul` per mask."""
    plan = _packed_plan(length, bound)
    if plan is None:
        return tuple(_exact_matmul(left, tf.cast(m, tf.float32), bound, length, transpose_a, transpose_b)
                     for m in (pos, neg))
    bits, base = plan
    planes = max(1, math.ceil(max(int(bound), 1).bit_length() / bits))
    stacked = _bit_planes(left, bits, planes, -1 if transpose_a else -2)
    product = tf.linalg.matmul(stacked, _packed_code(pos, neg, base), transpose_a=transpose_a,
                               transpose_b=transpose_b)
    p_part, n_part = _unpack(product, base)
    return _combine_planes(p_part, bits, planes), _combine_planes(n_part, bits, planes)


def _packed_code(pos, neg, base):
    """The float32 count code `P + base * N` of two disjoint masks."""
    return tf.where(pos, tf.constant(1.0), tf.where(neg, tf.constant(float(base)), tf.constant(0.0)))


def _unpack(product, base):
    """(P part, N part) of an exact float32 product with a packed code."""
    n_part = tf.math.floor(product / base)
    return product - base * n_part, n_part


def _strategy(bound, dtype):
    """How stage-1 near-zero products carry counts that are at most `bound`."""
    if dtype == tf.float64 or bound > _F32_EXACT:
        return "f64"
    if bound <= _PACK_LIMIT:
        return "packed"
    return "f32"


def _by_bound(static_bound, dynamic_bound, dtype, fn):
    """fn(strategy, bound) with the strategy fixed by a static bound, else chosen at run time by tf.cond."""
    if static_bound is not None or dtype == tf.float64:
        bound = _INT32_MAX if static_bound is None else static_bound
        return fn(_strategy(bound, dtype), bound)
    dynamic_bound = tf.cast(dynamic_bound, tf.int64)
    return tf.cond(dynamic_bound <= _PACK_LIMIT,
                   lambda: fn("packed", _PACK_LIMIT),
                   lambda: tf.cond(dynamic_bound <= _F32_EXACT,
                                   lambda: fn("f32", _F32_EXACT),
                                   lambda: fn("f64", _INT32_MAX)))


def _variants(t, pos, neg, strategy):
    """Stage-1 operand variants: the count variant(s) then the P, Z, N values, in the strategy's dtype."""
    dtype = tf.float64 if strategy == "f64" else t.dtype
    if strategy == "packed":
        counts = [tf.where(pos, tf.constant(1, dtype), tf.where(neg, tf.constant(_PACK, dtype),
                                                                 tf.constant(0, dtype)))]
    else:
        counts = [tf.cast(pos, dtype), tf.cast(neg, dtype)]
    return counts + [tf.cast(v, dtype) for v in _values(t, pos, neg)]


def _decode(count_parts, strategy):
    """The P and N count products from the count variant product(s)."""
    if strategy != "packed":
        return count_parts[0], count_parts[1]
    return _unpack(count_parts[0], _PACK)


def _n_variants(strategy):
    return 4 if strategy == "packed" else 5


def _pair_counts(cross, total_a, col_b, size):
    """Assembles [3, 3, U] exact counts from the P/N x P/N products.

    cross[a][b]: sum of A_a * mask_b for a, b in (P, N);  total_a[a]: sum of A_a (a in P, N);
    col_b[b]: the products whose second factor is b and whose first factor is anything (b in P, N);
    size: all products (any classes).
    """
    rows = []
    for a in range(2):
        p, n = cross[a][0], cross[a][1]
        rows.append([p, total_a[a] - p - n, n])
    zp = col_b[0] - rows[0][0] - rows[1][0]
    zn = col_b[1] - rows[0][2] - rows[1][2]
    zz = size - zp - zn - sum(rows[0]) - sum(rows[1])
    table = [rows[0], [zp, zz, zn], rows[1]]
    return tf.stack([tf.stack(r) for r in table])


# ----------------------------------------------------------------------------------------------------------------
# Dense: one core for the three roles. The logical first operand F is [r, c], the second S is [c, u] and the
# result R is [r, u]; units are u. F may be stored transposed ([c, r], the kernel gradient) and S too ([u, c],
# the input gradient).


def _row_class_totals(F, f_thr, r_axis):
    """Per contraction index c, over F's rows (axis `r_axis`): the P, Z, N counts `[3, c]` (int32, exact) and
    the P, Z, N value sums `[3, c]`."""
    fp, fn = _masks(F, f_thr)
    r = tf.shape(F)[r_axis]
    cnt_p = tf.reduce_sum(tf.cast(fp, tf.int32), r_axis)
    cnt_n = tf.reduce_sum(tf.cast(fn, tf.int32), r_axis)
    cnt = tf.stack([cnt_p, r - cnt_p - cnt_n, cnt_n])
    sv = tf.stack([tf.reduce_sum(v, r_axis) for v in _values(F, fp, fn)])
    return cnt, sv


def _dense_all(F, S, f_t, s_t, f_thr, s_thr):
    r_axis = 1 if f_t else 0
    cnt, sv = _row_class_totals(F, f_thr, r_axis)
    r = tf.shape(F)[r_axis]
    sp, sn = _masks(S, s_thr)
    c_len = S.shape[1 if s_t else 0]
    r_static = F.shape[r_axis]
    cnt_pos, cnt_neg = _count_pair_matmul(cnt, sp, sn, _INT32_MAX if r_static is None else r_static, c_len,
                                          transpose_b=s_t)                  # [3, u] each
    units = tf.shape(S)[0 if s_t else 1]
    total = tf.reduce_sum(_f64(cnt), 1)[:, None]
    counts = tf.stack([cnt_pos, total - cnt_pos - cnt_neg, cnt_neg], axis=1)
    s_p, s_z, _ = _values(S, sp, sn)
    sums = tf.stack(_by_class_products(sv, S, s_p, s_z, s_t, _f64), axis=1)
    cells = tf.fill([units], _f64(r))
    return counts, sums, cells


# Dense forward and input gradient with near_zero="sampled": the kernel's class variants are made once, and one
# product with its count code and one with its values serve both the all-cells totals (first rows: F's per-column
# class totals) and the near-zero totals, taken cell by cell on the sampled rows (further rows: those rows' class
# variants). No kernel-sized intermediate beyond the variants themselves.


def _shared_plan(F, S, s_t):
    """(bits, base) of the packed count code that the shared path uses, or None where it does not apply (a
    float64 computation, an unknown contraction length, or one too long for an exact float32 packed code)."""
    c_len = S.shape[1 if s_t else 0]
    if F.dtype != tf.float32 or c_len is None:
        return None
    r_static = F.shape[0]
    return _packed_plan(c_len, _INT32_MAX if r_static is None else r_static)


@_kernel
def _kernel_variants(S, s_thr, s_t, base):
    """S's classes in its stored layout (`[c, u]`, or `[u, c]` when `s_t`), float32: the count code
    `P + base * N` and the P and Z values (the N products come from S itself, see `_by_class_products`)."""
    pos, neg = _masks(S, s_thr)
    s_p, s_z, _ = _values(S, pos, neg)
    return _packed_code(pos, neg, base), s_p, s_z


@_kernel
def _shared_left(F, idx, f_thr, bits, planes):
    """The left operands of the shared products, float32 `[*, c]`: for the count code, F's per-column class
    counts as bit planes (`3 planes` rows), a row of ones, then the sampled rows' P and N masks (`2s`); for the
    values, F's per-column class value sums (3 rows), then the sampled rows' P, Z, N values (`3s`)."""
    cnt, sv = _row_class_totals(F, f_thr, 0)
    F_s = tf.gather(F, idx)
    fp, fn = _masks(F_s, f_thr)
    ones = tf.ones([1, tf.shape(F)[1]], tf.float32)
    count_rows = tf.concat([_bit_planes(cnt, bits, planes, 0), ones, tf.cast(fp, tf.float32),
                            tf.cast(fn, tf.float32)], 0)
    return count_rows, tf.concat([sv] + _values(F_s, fp, fn), 0), tf.reduce_sum(_f64(cnt), 1)


class _SampledCells(NamedTuple):
    """Per-cell products of the sampled rows (see `_dense_shared`)."""
    idx: tf.Tensor         # [s] sampled rows
    p_part: tf.Tensor      # [2, s, u] P-class products of the rows' P (then N) masks with the kernel, exact
    n_part: tf.Tensor      # [2, s, u] the same for the kernel's N class
    row_counts: tf.Tensor  # [2, s] the rows' P and N counts
    unit_counts: tf.Tensor  # [2, u] the kernel's P and N counts per unit
    sums: tf.Tensor        # [3, s, 3, u] per-cell sums by pair


def _dense_shared(F, S, s_t, f_thr, s_thr, plan, size, seed):
    """All-cells totals (as `_dense_all`) and the per-cell products of up to `size` sampled rows (all rows when
    there are no more), from one product with the kernel's count code and one with its values."""
    bits, base = plan
    r_static, rows = F.shape[0], tf.shape(F)[0]
    if r_static is not None and r_static <= size:
        idx = tf.range(rows)
    else:
        idx = _sample_rows(rows, tf.minimum(rows, size), seed)
    code, s_p, s_z = _kernel_variants(S, s_thr, s_t, base)

    def products(row_bound):  # F's per-column class counts are at most row_bound: as many bit planes as that needs
        planes = max(1, math.ceil(max(row_bound, 1).bit_length() / bits))
        s, k = tf.size(idx), 3 * planes
        count_rows, value_rows, total = _shared_left(F, idx, f_thr, bits, planes)
        p_part, n_part = _unpack(tf.linalg.matmul(count_rows, code, transpose_b=s_t), base)   # [k + 1 + 2s, u]
        value_prod = tf.concat(_by_class_products(value_rows, S, s_p, s_z, s_t), 1)          # [3 + 3s, 3u]
        units = tf.shape(p_part)[1]

        cnt_pos, cnt_neg = _combine_planes(p_part[:k], bits, planes), _combine_planes(n_part[:k], bits, planes)
        counts = tf.stack([cnt_pos, total[:, None] - cnt_pos - cnt_neg, cnt_neg], axis=1)
        sums = tf.reshape(_f64(value_prod[:3]), tf.stack([3, 3, units]))
        all_totals = counts, sums, tf.fill([units], _f64(rows))

        per_row = tf.stack([2, s, units])
        cells = _SampledCells(
            idx, tf.reshape(p_part[k + 1:], per_row), tf.reshape(n_part[k + 1:], per_row),
            tf.reshape(tf.reduce_sum(count_rows[k + 1:], 1), tf.stack([2, s])),
            tf.concat([p_part[k:k + 1], n_part[k:k + 1]], 0),
            tf.reshape(value_prod[3:], tf.stack([3, s, 3, units])))
        return all_totals, cells

    if r_static is not None:
        return products(r_static)
    # An unknown batch size: fewer planes for the usual batches, all 31 bits beyond them.
    return tf.cond(rows <= _SMALL_BATCH, lambda: products(_SMALL_BATCH), lambda: products(_INT32_MAX))


@_kernel
def _weigh_sampled_cells(p_part, n_part, row_counts, sums, R_s, r_thr):
    """The sampled rows' per-cell products weighted by their near-zero mask (from their results R_s `[s, u]`) and
    summed over the rows: the P and N count products `[2, u]` each, the rows' P and N counts `[2, u]` and the
    mask's count `[u]` (float64, exact), and the pair sums `[3, 3, u]` (summed in float32)."""
    m = tf.cast(_near_zero_mask(R_s, r_thr), sums.dtype)
    m64 = _f64(m)
    cross_p = tf.reduce_sum(_f64(p_part) * m64, 1)
    cross_n = tf.reduce_sum(_f64(n_part) * m64, 1)
    totals = tf.reduce_sum(_f64(row_counts)[:, :, None] * m64, 1)
    return cross_p, cross_n, totals, tf.reduce_sum(m64, 0), _f64(tf.reduce_sum(sums * m[None, :, None, :], 1))


def _dense_sampled_near_zero(cells, R, r_thr, rows, c_len):
    """Near-zero totals from the sampled rows' per-cell products, weighted by their near-zero mask, summed over
    the rows and scaled by rows / sampled rows (exact when every row is sampled)."""
    nz_cells = _near_zero_cells(R, r_thr)  # the mask itself is needed on the sampled rows only
    cross_p, cross_n, totals, mcol, sums = _weigh_sampled_cells(cells.p_part, cells.n_part, cells.row_counts,
                                                                cells.sums, tf.gather(R, cells.idx), r_thr)
    unit_p, unit_n = _f64(cells.unit_counts[0]), _f64(cells.unit_counts[1])
    counts = _pair_counts([[cross_p[0], cross_n[0]], [cross_p[1], cross_n[1]]], [totals[0], totals[1]],
                          [mcol * unit_p, mcol * unit_n], mcol * _f64(c_len))
    scale = _f64(rows) / _f64(tf.maximum(tf.size(cells.idx), 1))
    return counts * scale, sums * scale, nz_cells


@_kernel
def _stacked_variants(t, thr, strategy, axis, ones_row=False):
    """The stage-1 variants of `t` (see `_variants`) concatenated along `axis`: one fused pass; `ones_row`: and a
    last row of ones (`t` of rank 2, axis 0 only), whose product with M counts M's entries per unit."""
    pos, neg = _masks(t, thr)
    variants = _variants(t, pos, neg, strategy)
    if ones_row:
        variants.append(tf.ones(tf.stack([1, tf.shape(t)[1]]), variants[-1].dtype))
    return tf.concat(variants, axis)


def _per_unit_count(M):
    """float64 count of the true entries of M per unit (M's last axis)."""
    # One 2-D column sum: a count over several axes at once runs several times slower on CPU (XLA and not).
    return _f64(tf.reduce_sum(tf.cast(_as_rows(M), tf.int64), 0))


@_kernel
def _near_zero_cells(R, r_thr):
    """The near-zero cells per unit (R's last axis)."""
    return _per_unit_count(_near_zero_mask(R, r_thr))


@_kernel
def _result_mask(R, r_thr, count=True):
    """The near-zero result mask as 0/1 in R's dtype, and (if `count`) the near-zero cells per unit (R's last
    axis)."""
    M = _near_zero_mask(R, r_thr)
    return (tf.cast(M, R.dtype), _per_unit_count(M)) if count else tf.cast(M, R.dtype)


@_kernel
def _dense_stage2(a, S, s_thr, mcol, strategy, bound, exact):
    """Pair totals from the stage-1 product `a` ([v*c, u]) and the second operand's classes (elementwise);
    `mcol`: the near-zero cells per unit (float64 [u])."""
    c_len, c_dyn, units = S.shape[0], tf.shape(S)[0], tf.shape(mcol)[0]
    v = _n_variants(strategy)
    a = tf.reshape(a, [v, -1, units])
    sp, sn = _masks(S, s_thr)
    spf, snf = tf.cast(sp, a.dtype), tf.cast(sn, a.dtype)
    a_p, a_n = _decode(tf.unstack(a[: v - 3]), strategy)
    total = _exact_sum if exact else (lambda t, axis, *_: tf.reduce_sum(_f64(t), axis))
    cross, totals = [], []
    for a_x in (a_p, a_n):
        red = total(tf.stack([a_x * spf, a_x * snf, a_x]), 1, bound, c_len)
        cross.append([red[0], red[1]])
        totals.append(red[2])
    s_col = [_exact_sum(tf.cast(sp, tf.float32), 0, 1, c_len), _exact_sum(tf.cast(sn, tf.float32), 0, 1, c_len)]
    counts = _pair_counts(cross, totals, [mcol * s_col[0], mcol * s_col[1]], mcol * _f64(c_dyn))
    s_values = tf.stack(_values(tf.cast(S, a.dtype), sp, sn))                          # [3, c, u]
    a_v = a[v - 3:]
    sums = _f64(tf.stack([tf.reduce_sum(a_v[i][None] * s_values, 1) for i in range(3)]))
    return counts, sums


@_kernel
def _unit_variants(S_units, thr, dtype):
    """The second operand's class variants, units-major: `[u, 5, c]` (P mask, N mask, P, Z, N values) in
    `dtype`, from `S_units` = S as `[u, c]`."""
    pos, neg = _masks(S_units, thr)
    parts = [tf.cast(pos, dtype), tf.cast(neg, dtype)] + [tf.cast(v, dtype) for v in _values(S_units, pos, neg)]
    return tf.stack(parts, 1)


def _dense_near_zero_units_major(F, S, mf, s_t, f_thr, s_thr, strategy):
    """Near-zero totals when the contraction runs over the kernel (forward, input gradient): stage 1
    `M^T @ F_variants` as `[u, 5, c]`, then one batched product per unit with S's class variants (`[u, 5, c]`),
    both on TensorFlow's matmul. strategy "f32" keeps counts exact only while rows * c <= 2**24. Also returns M's
    column sums."""
    dtype = tf.float64 if strategy == "f64" else F.dtype
    units, c_len = tf.shape(mf)[1], tf.shape(F)[1]
    fs = _stacked_variants(F, f_thr, strategy, 1)                                  # [r, 5c]
    a = tf.linalg.matmul(tf.cast(mf, dtype), fs, transpose_a=True)                 # [u, 5c]
    a = tf.reshape(a, tf.stack([units, 5, c_len]))
    # TensorFlow's transpose (multithreaded) beats one inside XLA
    sv = _unit_variants(S if s_t else tf.transpose(S), tf.cast(s_thr, S.dtype), dtype)   # [u, 5, c]
    prod = _f64(tf.linalg.matmul(a, sv, transpose_b=True))                         # [u, 5, 5]
    totals = _f64(tf.reduce_sum(a[:, :2], -1))                                     # [u, 2]: A_P, A_N over c
    s_col = _f64(tf.reduce_sum(sv[:, :2], -1))                                     # [u, 2]: S's P, N per unit
    mcol = tf.reduce_sum(_f64(mf), 0)
    cross = [[prod[:, i, j] for j in range(2)] for i in range(2)]
    counts = _pair_counts(cross, [totals[:, 0], totals[:, 1]], [mcol * s_col[:, 0], mcol * s_col[:, 1]],
                          mcol * _f64(c_len))
    sums = tf.transpose(prod[:, 2:, 2:], [1, 2, 0])                                # [3, 3, u]
    return counts, sums, mcol


def _dense_near_zero(F, S, mf, f_t, s_t, f_thr, s_thr, r_static, exact=True):
    """Near-zero totals and M's column sums (float64): one stacked product of F's variants with M (TensorFlow's
    matmul), then against S's classes: elementwise for the kernel gradient (contraction over the batch; the column
    sums from a row of ones in the product), a batched product per unit otherwise (contraction over the kernel)."""
    if not f_t:
        c_len = F.shape[1]  # integer counts stay exact in float32 while rows * c_len <= 2**24
        if F.dtype == tf.float64 or c_len is None or c_len > _F32_EXACT:
            strategy = "f64"
        elif not exact:
            strategy = "f32"
        elif r_static is not None:
            strategy = "f32" if r_static * c_len <= _F32_EXACT else "f64"
        else:
            return tf.cond(tf.shape(mf)[0] * c_len <= _F32_EXACT,
                           lambda: _dense_near_zero_units_major(F, S, mf, s_t, f_thr, s_thr, "f32"),
                           lambda: _dense_near_zero_units_major(F, S, mf, s_t, f_thr, s_thr, "f64"))
        return _dense_near_zero_units_major(F, S, mf, s_t, f_thr, s_thr, strategy)

    c_len = F.shape[1]

    def compute(strategy, bound):
        fs = _stacked_variants(F, f_thr, strategy, 0, True)
        a = tf.linalg.matmul(fs, tf.cast(mf, fs.dtype))                            # [v*n + 1, u]
        if fs.dtype == tf.float64 or (c_len is not None and c_len <= _F32_EXACT):  # the ones row's sums are exact
            mcol = _f64(a[-1])
        else:
            mcol = tf.reduce_sum(_f64(mf), 0)
        return _dense_stage2(a[:-1], S, s_thr, mcol, strategy, bound, exact) + (mcol,)

    return _by_bound(r_static, tf.shape(mf)[0], F.dtype, compute)


def _sample_rows(n, size, seed):
    """`size` distinct row indices out of n >= size, in order."""
    keys = tf.random.uniform([n]) if seed is None else tf.random.stateless_uniform([n], seed=seed)
    return tf.sort(tf.math.top_k(keys, k=size).indices)


def _exact_or_sampled(rows_static, rows, size, exact_fn, sampled_fn):
    """near_zero="sampled": the exact totals when the sample would hold every row, else the estimate."""
    if rows_static is not None:
        return exact_fn() if rows_static <= size else sampled_fn()
    return tf.cond(rows <= size, exact_fn, sampled_fn)


@_kernel
def _dense_all_kernel(F, S, f_t, s_t, f_thr, s_thr):
    return _dense_all(F, S, f_t, s_t, f_thr, s_thr)


def _dense_near_zero_totals(F, S, R, f_t, s_t, f_thr, s_thr, r_thr, idx):
    """Near-zero totals; `idx` (or None) holds the sampled batch rows: rows of F and M (forward, input
    gradient) or of stored F and S (kernel gradient)."""
    if idx is None:
        return _dense_near_zero(F, S, _result_mask(R, r_thr, False), f_t, s_t, f_thr, s_thr,
                                F.shape[1 if f_t else 0])
    scale = _f64(tf.shape(F)[0]) / _f64(tf.maximum(tf.size(idx), 1))
    F_s = tf.gather(F, idx)
    if f_t:  # every cell of M takes part (the rows sampled are the batch's, a contraction axis here)
        mf = _result_mask(R, r_thr, False)
        counts, sums, nz_cells = _dense_near_zero(F_s, tf.gather(S, idx), mf, f_t, s_t, f_thr, s_thr, F.shape[1],
                                                  exact=False)
    else:  # M's sampled rows only: the cells of the whole M are counted apart
        mf, nz_cells = _result_mask(R, r_thr)
        counts, sums, _ = _dense_near_zero(F_s, S, tf.gather(mf, idx), f_t, s_t, f_thr, s_thr, None, exact=False)
    return counts * scale, sums * scale, nz_cells


def _dense_role(F, S, R_fn, f_t, s_t, opts):
    f_thr = _threshold(F, 0, opts)
    s_thr = _threshold(S, 1, opts)
    units = tf.shape(S)[0 if s_t else 1]
    plan = None if f_t or opts.near_zero != "sampled" else _shared_plan(F, S, s_t)
    if plan is not None:
        all_totals, cells = _dense_shared(F, S, s_t, f_thr, s_thr, plan, opts.nz_sample_size,
                                          _sub_seed(opts.seed, 3))
        c_len = tf.shape(F)[1]
        return _finish(opts, F, S, f_thr, s_thr, all_totals, units, R_fn,
                       lambda R, r_thr: _dense_sampled_near_zero(cells, R, r_thr, tf.shape(F)[0], c_len))
    all_totals = _dense_all_kernel(F, S, f_t, s_t, f_thr, s_thr)

    def nz_fn(R, r_thr):
        def exact():
            return _dense_near_zero_totals(F, S, R, f_t, s_t, f_thr, s_thr, r_thr, None)

        def sampled():  # stored axis 0 of F holds the batch rows in every dense role
            idx = _sample_rows(tf.shape(F)[0], opts.nz_sample_size, _sub_seed(opts.seed, 3))
            return _dense_near_zero_totals(F, S, R, f_t, s_t, f_thr, s_thr, r_thr, idx)

        if opts.near_zero == "exact":
            return exact()
        return _exact_or_sampled(F.shape[0], tf.shape(F)[0], opts.nz_sample_size, exact, sampled)

    return _finish(opts, F, S, f_thr, s_thr, all_totals, units, R_fn, nz_fn)


def _leading_size(t):
    """The number of rows of `t` flattened to `[rows, last axis]` (no -1 inference: the last axis may be 0)."""
    return tf.reduce_prod(tf.shape(t)[:-1])


def _as_rows(t):
    return tf.reshape(t, tf.stack([_leading_size(t), tf.shape(t)[-1]]))


def _flatten_rows(t, name):
    validation.check_rank(t, name, 2)
    return _as_rows(t) if t.shape.rank != 2 else t


def _check_dim(a, b, message):
    if a is not None and b is not None and a != b:
        raise ValueError(message)


def dense(x, kernel, *, result=None, confidence=0.95, thresholds=None, threshold_method="sampled",
          near_zero="exact", sample_size=None, seed=None, near_zero_sample_size=NEAR_ZERO_SAMPLE_SIZE):
    """Per-output-unit totals of the dense forward product `x @ kernel`.

    Args:
      x: `[..., k]` (rank >= 2; all leading axes are aggregated). First operand.
      kernel: `[k, m]`. Second operand.
      result: optional `x @ kernel` (`[..., m]`), e.g. the layer's pre-activation; computed when needed.
      confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size: see the
        module docstring.
    Returns:
      `UnitTotals` with U = m; a unit's cells are all rows of x.
    """
    opts = _options(confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size)
    x, kernel = _operands(x, kernel, ("x", "kernel"))
    validation.check_rank(x, "x", 2)
    validation.check_rank(kernel, "kernel", 2, 2)
    _check_dim(x.shape[-1], kernel.shape[0],
               f"x's last axis ({x.shape[-1]}) must equal kernel's first axis ({kernel.shape[0]}): "
               f"shapes {x.shape} and {kernel.shape}")
    F = _flatten_rows(x, "x")
    expected = x.shape.as_list()[:-1] + [kernel.shape[1]]

    def result_fn():
        if result is None:
            return tf.linalg.matmul(F, kernel)
        return _as_rows(_given_result(result, F.dtype, expected))

    return _dense_role(F, kernel, result_fn, False, False, opts)


def dense_kernel_gradient(x, d_out, *, result=None, confidence=0.95, thresholds=None, threshold_method="sampled",
                          near_zero="exact", sample_size=None, seed=None,
                          near_zero_sample_size=NEAR_ZERO_SAMPLE_SIZE):
    """Per-output-unit totals of the dense kernel gradient `x^T @ d_out` (`[k, m]`, leading axes contracted).

    Args:
      x: `[..., k]` the layer's input (first operand). d_out: `[..., m]`, same leading axes (second operand).
      result: optional gradient `[k, m]`.
    Returns:
      `UnitTotals` with U = m; a unit's cells are its k kernel entries.
    """
    opts = _options(confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size)
    x, d_out = _operands(x, d_out, ("x", "d_out"))
    validation.check_rank(x, "x", 2)
    validation.check_rank(d_out, "d_out", 2)
    lead_x, lead_d = x.shape[:-1], d_out.shape[:-1]
    if not lead_x.is_compatible_with(lead_d):
        raise ValueError(f"x and d_out must have the same leading axes: shapes {x.shape} and {d_out.shape}")
    F = _flatten_rows(x, "x")         # stored [n, k] = logical F^T ([k, n])
    S = _flatten_rows(d_out, "d_out")  # [n, m]
    expected = [x.shape[-1], d_out.shape[-1]]

    def result_fn():
        if result is None:
            return tf.linalg.matmul(F, S, transpose_a=True)
        return _given_result(result, F.dtype, expected)

    return _dense_role(F, S, result_fn, True, False, opts)


def dense_input_gradient(d_out, kernel, *, result=None, confidence=0.95, thresholds=None,
                         threshold_method="sampled", near_zero="exact", sample_size=None, seed=None,
                         near_zero_sample_size=NEAR_ZERO_SAMPLE_SIZE):
    """Per-input-feature totals of the dense input gradient `d_out @ kernel^T` (`[..., k]`).

    Args:
      d_out: `[..., m]` (first operand; leading axes aggregated). kernel: `[k, m]` (second operand).
      result: optional gradient `[..., k]`.
    Returns:
      `UnitTotals` with U = k; a unit's cells are all rows of d_out.
    """
    opts = _options(confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size)
    d_out, kernel = _operands(d_out, kernel, ("d_out", "kernel"))
    validation.check_rank(d_out, "d_out", 2)
    validation.check_rank(kernel, "kernel", 2, 2)
    _check_dim(d_out.shape[-1], kernel.shape[1],
               f"d_out's last axis ({d_out.shape[-1]}) must equal kernel's last axis ({kernel.shape[1]}): "
               f"shapes {d_out.shape} and {kernel.shape}")
    F = _flatten_rows(d_out, "d_out")
    expected = d_out.shape.as_list()[:-1] + [kernel.shape[0]]

    def result_fn():
        if result is None:
            return tf.linalg.matmul(F, kernel, transpose_b=True)
        return _as_rows(_given_result(result, F.dtype, expected))

    return _dense_role(F, kernel, result_fn, False, True, opts)


# ----------------------------------------------------------------------------------------------------------------
# Convolutions


def _spatial_size(shape):
    """Product of the spatial dims (None if any is unknown)."""
    dims = shape[1:-1]
    return None if any(d is None for d in dims) else int(math.prod(dims))


def _batch_positions_static(shape):
    n = shape[0]
    p = _spatial_size(shape)
    return None if n is None or p is None else n * p


def _conv_geometry(input_shape, kernel_shape, strides, padding, d_out=None, input_name="inputs",
                   kernel_name="kernel"):
    """Validates the geometry; returns (strides tuple, padding, static output shape list)."""
    padding = validation.normalize_padding(padding)
    spatial_rank = conv_lib.check_operands(input_shape, kernel_shape, input_name, kernel_name)
    strides = validation.normalize_strides(strides, spatial_rank)
    out_shape = conv_lib.output_shape(tf.TensorShape(input_shape).as_list(), tf.TensorShape(kernel_shape).as_list(),
                                      strides, padding)
    if d_out is not None:
        validation.check_rank(d_out, "d_out", len(out_shape), len(out_shape))
        for got, want in zip(d_out.shape.as_list(), out_shape):
            if got is not None and want is not None and got != want:
                raise ValueError(f"d_out must have the convolution's result shape {out_shape}, got {d_out.shape}")
    return strides, padding, out_shape


def _static_dims(shape, name, allow_batch_none=True):
    try:
        dims = [None if d is None else int(d) for d in tf.TensorShape(shape).as_list()]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}") from None
    unknown = dims[1:] if allow_batch_none else dims
    if any(d is None for d in unknown) or any(d is not None and d < 0 for d in dims):
        raise ValueError(f"{name} must hold non-negative ints (None only for the batch axis), got {shape!r}")
    return dims


def _kernel_offsets(kernel_shape):
    return int(math.prod(kernel_shape[:-2]))


def _per_tap_valid_ones(spatial, dtype):
    return tf.ones([1] + list(spatial) + [1], dtype)


def _conv_forward_all(x, W, strides, padding, x_thr, w_thr):
    """All-cells totals of conv forward: patch sums per kernel offset of the batch-summed classes."""
    kshape = W.shape.as_list()
    cin, cout = kshape[-2], kshape[-1]
    kp = _kernel_offsets(kshape)
    xp, xn = _masks(x, x_thr)
    b = tf.shape(x)[0]
    cnt_p = tf.reduce_sum(tf.cast(xp, tf.int32), 0)
    cnt_n = tf.reduce_sum(tf.cast(xn, tf.int32), 0)
    counts = [cnt_p, b - cnt_p - cnt_n, cnt_n]
    values = [tf.reduce_sum(v, 0) for v in _values(x, xp, xn)]
    xbar = tf.concat([_f64(t) for t in counts + values], -1)[None]         # [1, S, 6 cin] float64
    out_spatial = conv_lib.output_shape([1] + x.shape.as_list()[1:], kshape, strides, padding)[1:-1]
    ones = _per_tap_valid_ones(out_spatial, tf.float64)
    pat = conv_lib.backprop_filter(xbar, ones, kshape[:-2] + [6 * cin, 1], strides, padding)
    pat = tf.transpose(tf.reshape(pat, [kp, 6, cin]), [1, 0, 2])            # [6, kp, cin]
    wp, wn = _masks(W, w_thr)
    w_counts = tf.reshape(tf.stack([_f64(wp), _f64(~(wp | wn)), _f64(wn)]), [3, kp, cin, cout])
    w_values = tf.reshape(_f64(tf.stack(_values(W, wp, wn))), [3, kp, cin, cout])
    counts = tf.einsum("akc,bkcd->abd", pat[:3], w_counts)
    sums = tf.einsum("akc,bkcd->abd", pat[3:], w_values)
    positions = int(math.prod(out_spatial))
    cells = tf.fill([cout], _f64(b) * positions)
    return counts, sums, cells


@_kernel
def _conv_small_stage2(a, W, w_thr, any_first, strategy, units_of):
    """Pair totals from a kernel-shaped stage-1 product `a` ([kp, v, cin, cout] for "forward",
    [kp, cin, v, cout] for "input_gradient") and the kernel's classes. any_first: products in near-zero cells
    whose first factor is of any class, per kernel entry."""
    kshape = W.shape.as_list()
    cin, cout = kshape[-2], kshape[-1]
    kp = _kernel_offsets(kshape)
    v = _n_variants(strategy)
    if units_of == "forward":
        a = tf.transpose(tf.reshape(a, [kp, v, cin, cout]), [1, 0, 2, 3])          # [v, kp, cin, cout]
    else:
        a = tf.transpose(tf.reshape(a, [kp, cin, v, cout]), [2, 0, 1, 3])
    a_p, a_n = (_f64(t) for t in _decode(tf.unstack(a[: v - 3]), strategy))
    a_counts = tf.stack([a_p, any_first - a_p - a_n, a_n])
    wp, wn = _masks(W, w_thr)
    w_full = tf.reshape(tf.stack([_f64(wp), _f64(~(wp | wn)), _f64(wn)]), [3, kp, cin, cout])
    w_values = tf.reshape(_f64(tf.stack(_values(W, wp, wn))), [3, kp, cin, cout])
    spec = "akcd,bkcd->abd" if units_of == "forward" else "akcd,bkcd->abc"
    return tf.einsum(spec, a_counts, w_full), tf.einsum(spec, _f64(a[v - 3:]), w_values)


def _conv_forward_near_zero(x, W, mf, strides, padding, x_thr, w_thr):
    """Near-zero totals of conv forward: backprop_filter(x variants, M) (TensorFlow), then against the kernel."""
    kshape = W.shape.as_list()
    cin, cout = kshape[-2], kshape[-1]
    kp = _kernel_offsets(kshape)
    # Products whose first factor is anything: patch counts of the valid input (padding excluded) against M.
    msum = tf.reduce_sum(_f64(mf), 0)[None]                                 # [1, S', cout]
    any_first = conv_lib.backprop_filter(_per_tap_valid_ones(x.shape[1:-1], tf.float64), msum,
                                         kshape[:-2] + [1, cout], strides, padding)
    any_first = tf.reshape(any_first, [kp, 1, cout]) * tf.ones([1, cin, 1], tf.float64)   # [kp, cin, cout]

    def compute(strategy, bound):
        xs = _stacked_variants(x, x_thr, strategy, -1)
        v = _n_variants(strategy)
        a = conv_lib.backprop_filter(xs, tf.cast(mf, xs.dtype), kshape[:-2] + [v * cin, cout], strides, padding)
        return _conv_small_stage2(a, W, w_thr, any_first, strategy, "forward")

    bound_static = _batch_positions_static(mf.shape.as_list())
    bound_dynamic = tf.size(mf, out_type=tf.int64) // max(cout, 1)
    return _by_bound(bound_static, bound_dynamic, x.dtype, compute)


def conv(inputs, kernel, strides=1, padding="VALID", *, result=None, confidence=0.95, thresholds=None,
         threshold_method="sampled", near_zero="exact", sample_size=None, seed=None,
         near_zero_sample_size=NEAR_ZERO_SAMPLE_SIZE):
    """Per-output-channel totals of the convolution `tf.nn.convolution(inputs, kernel, strides, padding)`.

    Args:
      inputs: `(batch,) + spatial + (in_channels,)`, 1 to 3 spatial axes (NHWC). First operand.
      kernel: `kernel_spatial + (in_channels, out_channels)`. Second operand.
      strides: int or one int per spatial axis. padding: 'VALID' or 'SAME' (any case); padding is in no class.
      result: optional convolution result `(batch,) + out_spatial + (out_channels,)`.
    Returns:
      `UnitTotals` with U = out_channels; a unit's cells are all batch entries and output positions.
    """
    opts = _options(confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size)
    x, W = _operands(inputs, kernel, ("inputs", "kernel"))
    strides, padding, out_shape = _conv_geometry(x.shape, W.shape, strides, padding)
    if None in W.shape.as_list() or None in x.shape.as_list()[1:]:
        raise ValueError(f"inputs (except the batch axis) and kernel need known shapes, got {x.shape}, {W.shape}")
    def result_fn():
        if result is None:
            if x.shape[0] is not None:
                return conv_lib.forward(x, W, strides, padding)
            # TensorFlow's convolution returns the input's shape for an empty batch: guard it.
            empty = tf.zeros([0] + out_shape[1:], x.dtype)
            return tf.cond(tf.shape(x)[0] > 0, lambda: conv_lib.forward(x, W, strides, padding), lambda: empty)
        return _given_result(result, x.dtype, out_shape)

    return _conv_role("forward", x, W, tuple(W.shape.as_list()), strides, padding, result_fn, opts)


def _box_sums(t, kernel_spatial, strides, padding):
    """Per channel, the sum of `t` over each output position's kernel window (padding adds nothing): what a
    convolution with an identity kernel of `kernel_spatial` gives, as a sum of shifted strided slices (one fused
    pass under XLA; a convolution with a handful of channels is slow on CPU)."""
    in_spatial = t.shape.as_list()[1:-1]
    out_spatial = conv_lib.output_shape([1] + in_spatial + [1], list(kernel_spatial) + [1, 1], strides,
                                        padding)[1:-1]
    pads = [[0, 0]]
    for n, k, st, out in zip(in_spatial, kernel_spatial, strides, out_spatial):
        before = _pad_before(n, k, st, padding)
        pads.append([before, max((out - 1) * st + k - n - before, 0)])
    t = tf.pad(t, pads + [[0, 0]])
    total = None
    for offset in itertools.product(*[range(k) for k in kernel_spatial]):
        begin = [0] + list(offset) + [0]
        end = [0] + [o + (out - 1) * st + 1 for o, out, st in zip(offset, out_spatial, strides)] + [0]
        outer = 1 | 1 << (len(begin) - 1)  # batch and channel axes whole
        piece = tf.strided_slice(t, begin, end, [1] + list(strides) + [1], begin_mask=outer, end_mask=outer)
        total = piece if total is None else total + piece
    return total


def _conv_kernel_gradient_all(x, D, kshape, strides, padding, x_thr, d_thr):
    """All-cells totals of the conv kernel gradient: box filter of channel sums against d_out's classes."""
    cin, cout = kshape[-2], kshape[-1]
    kp = _kernel_offsets(kshape)
    xp, xn = _masks(x, x_thr)
    cnt_p = tf.reduce_sum(tf.cast(xp, x.dtype), -1)
    cnt_n = tf.reduce_sum(tf.cast(xn, x.dtype), -1)
    # Box sums of the channel sums; counts and values summed apart so a non-finite value cannot reach a count.
    box = [_box_sums(tf.stack(chans, -1), kshape[:-2], strides, padding) for chans in
           ([cnt_p, cin - cnt_p - cnt_n, cnt_n], [tf.reduce_sum(v, -1) for v in _values(x, xp, xn)])]
    positions = _spatial_size(D.shape.as_list())
    b = tf.shape(D)[0]
    box = tf.reshape(tf.concat(box, -1), [b, positions, 6])
    dp, dn = _masks(D, d_thr)
    # Counts: exact per image (box counts <= kp * cin), then summed over the batch in float64.
    box_counts = tf.cast(box[..., :3], tf.int32)
    per_pos, per_neg = _count_pair_matmul(box_counts, tf.reshape(dp, [b, positions, cout]),
                                          tf.reshape(dn, [b, positions, cout]), kp * cin, positions,
                                          transpose_a=True)                  # [B, 3, cout] each
    cnt_pos, cnt_neg = tf.reduce_sum(per_pos, 0), tf.reduce_sum(per_neg, 0)
    total = tf.reduce_sum(_f64(box_counts), [0, 1])[:, None]
    counts = tf.stack([cnt_pos, total - cnt_pos - cnt_neg, cnt_neg], axis=1)
    box_values = _as_rows(box[..., 3:])
    sums = tf.stack([_f64(tf.linalg.matmul(box_values, _as_rows(v), transpose_a=True)) for v in _values(D, dp, dn)],
                    axis=1)
    cells = tf.fill([cout], tf.constant(float(kp * cin), tf.float64))
    return counts, sums, cells


@_kernel
def _conv_kernel_gradient_stage2(a, D, d_thr, any_first, strategy, bound):
    """Pair totals from a = conv(x variants, M) ([v*B, S', cout]) and d_out's classes, elementwise."""
    cout = D.shape[-1]
    positions = _spatial_size(D.shape.as_list())
    b = tf.shape(D)[0]
    v = _n_variants(strategy)
    a = tf.reshape(a, [v, b, positions, cout])
    dp, dn = _masks(D, d_thr)
    dpf = tf.reshape(tf.cast(dp, a.dtype), [b, positions, cout])
    dnf = tf.reshape(tf.cast(dn, a.dtype), [b, positions, cout])
    a_p, a_n = _decode(tf.unstack(a[: v - 3]), strategy)
    cross, totals = [], []
    for a_x in (a_p, a_n):
        per_image = _exact_sum(tf.stack([a_x * dpf, a_x * dnf, a_x]), 2, bound, positions)   # [3, B, cout]
        red = tf.reduce_sum(per_image, 1)
        cross.append([red[0], red[1]])
        totals.append(red[2])
    # Products whose first factor is anything, per position (the same for every image).
    d_batch = [tf.reshape(_f64(tf.reduce_sum(tf.cast(t, tf.int32), 0)), [positions, cout]) for t in (dp, dn)]
    col_b = [tf.reduce_sum(any_first * t, 0) for t in d_batch]
    size = _f64(b) * tf.reduce_sum(any_first, 0)
    counts = _pair_counts(cross, totals, col_b, size)
    d_values = tf.reshape(tf.stack(_values(tf.cast(D, a.dtype), dp, dn)), [3, b, positions, cout])
    a_v = a[v - 3:]
    sums = _f64(tf.stack([tf.reduce_sum(a_v[i][None] * d_values, [1, 2]) for i in range(3)]))
    return counts, sums


def _conv_kernel_gradient_near_zero(x, D, mf, kshape, strides, padding, x_thr, d_thr):
    """Near-zero totals of the conv kernel gradient: conv(x variants, M) (TensorFlow), then against d_out."""
    cin, cout = kshape[-2], kshape[-1]
    kp = _kernel_offsets(kshape)
    positions = _spatial_size(D.shape.as_list())
    ones = tf.ones([1] + x.shape.as_list()[1:-1] + [cin], tf.float32)
    any_first = conv_lib.forward(ones, tf.cast(mf, tf.float32), strides, padding)            # [1, S', cout]
    any_first = tf.reshape(_f64(any_first), [positions, cout])
    bound = kp * cin
    strategy = _strategy(bound, x.dtype)
    xs = _stacked_variants(x, x_thr, strategy, 0)                                           # [v*B, S, cin]
    a = conv_lib.forward(xs, tf.cast(mf, xs.dtype), strides, padding)                       # [v*B, S', cout]
    return _conv_kernel_gradient_stage2(a, D, d_thr, any_first, strategy, bound)


def conv_kernel_gradient(x, d_out, kernel_shape, strides=1, padding="VALID", *, result=None, confidence=0.95,
                         thresholds=None, threshold_method="sampled", near_zero="exact", sample_size=None,
                         seed=None, near_zero_sample_size=NEAR_ZERO_SAMPLE_SIZE):
    """Per-output-channel totals of the convolution's kernel gradient `backprop_filter(x, d_out)`.

    Args:
      x: the convolution's input `(batch,) + spatial + (in_channels,)` (first operand).
      d_out: gradient of the result `(batch,) + out_spatial + (out_channels,)` (second operand).
      kernel_shape: `kernel_spatial + (in_channels, out_channels)`.
      result: optional kernel gradient of shape `kernel_shape`.
    Returns:
      `UnitTotals` with U = out_channels; a unit's cells are its kernel offsets x in-channels.
    """
    opts = _options(confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size)
    x, D = _operands(x, d_out, ("x", "d_out"))
    kshape = _static_dims(kernel_shape, "kernel_shape", allow_batch_none=False)
    strides, padding, out_shape = _conv_geometry(x.shape, kshape, strides, padding, d_out=D, input_name="x",
                                                 kernel_name="kernel_shape")
    if None in x.shape.as_list()[1:]:
        raise ValueError(f"x needs known shape except the batch axis, got {x.shape}")
    def result_fn():
        if result is None:
            return conv_lib.backprop_filter(x, D, kshape, strides, padding)
        return _given_result(result, x.dtype, kshape)

    return _conv_role("kernel_gradient", x, D, tuple(kshape), strides, padding, result_fn, opts)


def _conv_input_gradient_all(D, W, input_shape, strides, padding, d_thr, w_thr):
    """All-cells totals of the conv input gradient: patch sums of the batch-summed d_out classes per offset."""
    kshape = W.shape.as_list()
    cin, cout = kshape[-2], kshape[-1]
    kp = _kernel_offsets(kshape)
    dp, dn = _masks(D, d_thr)
    b = tf.shape(D)[0]
    cnt_p = tf.reduce_sum(tf.cast(dp, tf.int32), 0)
    cnt_n = tf.reduce_sum(tf.cast(dn, tf.int32), 0)
    chans = [cnt_p, b - cnt_p - cnt_n, cnt_n] + [tf.reduce_sum(v, 0) for v in _values(D, dp, dn)]
    dbar = tf.concat([_f64(t) for t in chans], -1)[None]                    # [1, S', 6 cout]
    ones = _per_tap_valid_ones(input_shape[1:-1], tf.float64)
    pat = conv_lib.backprop_filter(ones, dbar, kshape[:-2] + [1, 6 * cout], strides, padding)
    pat = tf.transpose(tf.reshape(pat, [kp, 6, cout]), [1, 0, 2])            # [6, kp, cout]
    wp, wn = _masks(W, w_thr)
    w_counts = tf.reshape(tf.stack([_f64(wp), _f64(~(wp | wn)), _f64(wn)]), [3, kp, cin, cout])
    w_values = tf.reshape(_f64(tf.stack(_values(W, wp, wn))), [3, kp, cin, cout])
    counts = tf.einsum("akd,bkcd->abc", pat[:3], w_counts)
    sums = tf.einsum("akd,bkcd->abc", pat[3:], w_values)
    cells = tf.fill([cin], _f64(b) * float(math.prod(input_shape[1:-1])))
    return counts, sums, cells


def _conv_input_gradient_near_zero(D, W, mf, input_shape, strides, padding, d_thr, w_thr):
    """Near-zero totals of the conv input gradient: backprop_filter(M, d_out variants) (TensorFlow), then
    against the kernel."""
    kshape = W.shape.as_list()
    cin, cout = kshape[-2], kshape[-1]
    kp = _kernel_offsets(kshape)
    # Products whose first factor is anything: d_out positions reaching each near-zero input cell.
    msum = tf.reduce_sum(_f64(mf), 0)[None]                                 # [1, S, cin]
    any_first = conv_lib.backprop_filter(msum, _per_tap_valid_ones(D.shape.as_list()[1:-1], tf.float64),
                                         kshape[:-2] + [cin, 1], strides, padding)
    any_first = tf.reshape(any_first, [kp, cin, 1])

    def compute(strategy, bound):
        ds = _stacked_variants(D, d_thr, strategy, -1)
        v = _n_variants(strategy)
        a = conv_lib.backprop_filter(tf.cast(mf, ds.dtype), ds, kshape[:-2] + [cin, v * cout], strides, padding)
        return _conv_small_stage2(a, W, w_thr, any_first, strategy, "input_gradient")

    bound_static = _batch_positions_static(D.shape.as_list())
    bound_dynamic = tf.size(D, out_type=tf.int64) // max(cout, 1)
    return _by_bound(bound_static, bound_dynamic, D.dtype, compute)


def conv_input_gradient(d_out, kernel, input_shape, strides=1, padding="VALID", *, result=None, confidence=0.95,
                        thresholds=None, threshold_method="sampled", near_zero="exact", sample_size=None,
                        seed=None, near_zero_sample_size=NEAR_ZERO_SAMPLE_SIZE):
    """Per-input-channel totals of the convolution's input gradient `backprop_input(d_out, kernel)`.

    Args:
      d_out: gradient of the result `(batch,) + out_spatial + (out_channels,)` (first operand).
      kernel: `kernel_spatial + (in_channels, out_channels)` (second operand).
      input_shape: the convolution input's shape `(batch,) + spatial + (in_channels,)` (batch may be None).
      result: optional input gradient of shape `input_shape`.
    Returns:
      `UnitTotals` with U = in_channels; a unit's cells are all batch entries and input positions.
    """
    opts = _options(confidence, thresholds, threshold_method, near_zero, sample_size, seed, near_zero_sample_size)
    D, W = _operands(d_out, kernel, ("d_out", "kernel"))
    in_shape = _static_dims(input_shape, "input_shape")
    strides, padding, out_shape = _conv_geometry(in_shape, W.shape, strides, padding, d_out=D,
                                                 input_name="input_shape")
    if None in W.shape.as_list():
        raise ValueError(f"kernel needs a known shape, got {W.shape}")
    def result_fn():
        if result is None:
            return conv_lib.backprop_input(D, W, in_shape, strides, padding)
        return _given_result(result, D.dtype, in_shape)

    return _conv_role("input_gradient", D, W, tuple(in_shape), strides, padding, result_fn, opts)


@_kernel
def _conv_all_kernel(role, first, second, geometry, strides, padding, thr_first, thr_second):
    geometry = list(geometry)
    if role == "forward":
        return _conv_forward_all(first, second, strides, padding, thr_first, thr_second)
    if role == "kernel_gradient":
        return _conv_kernel_gradient_all(first, second, geometry, strides, padding, thr_first, thr_second)
    return _conv_input_gradient_all(first, second, geometry, strides, padding, thr_first, thr_second)


def _conv_near_zero_totals(role, first, second, R, geometry, strides, padding, thr_first, thr_second, r_thr,
                           positions):
    """Near-zero totals; `positions` (or None) holds sampled flat (batch, output position) indices."""
    geometry = list(geometry)
    if positions is not None:
        nz_cells = _near_zero_cells(R, r_thr)
        counts, sums = _conv_sampled_kernel(role, first, second, R, r_thr, tuple(geometry), strides, padding,
                                            thr_first, thr_second, positions)
        return counts, sums, nz_cells
    mf, nz_cells = _result_mask(R, r_thr)
    if role == "forward":
        counts, sums = _conv_forward_near_zero(first, second, mf, strides, padding, thr_first, thr_second)
    elif role == "kernel_gradient":
        counts, sums = _conv_kernel_gradient_near_zero(first, second, mf, geometry, strides, padding, thr_first,
                                                       thr_second)
    else:
        counts, sums = _conv_input_gradient_near_zero(first, second, mf, geometry, strides, padding, thr_first,
                                                      thr_second)
    return counts, sums, nz_cells


def _conv_role(role, first, second, geometry, strides, padding, result_fn, opts):
    """Shared driver of the three convolution roles. geometry: kernel shape (forward, kernel gradient: the
    kernel's shape) or input shape (input gradient)."""
    thr_first = _threshold(first, 0, opts)
    thr_second = _threshold(second, 1, opts)
    all_totals = _conv_all_kernel(role, first, second, geometry, strides, padding, thr_first, thr_second)
    units = geometry[-1]

    def nz_fn(R, r_thr):
        def exact():
            return _conv_near_zero_totals(role, first, second, R, geometry, strides, padding, thr_first,
                                          thr_second, r_thr, None)

        # near_zero="sampled": (batch, output position) pairs of d_out (gradients) or of the result (forward).
        d_like = second if role == "kernel_gradient" else (first if role == "input_gradient" else R)
        total = _leading_size(d_like)

        def sampled():
            positions = _sample_rows(total, opts.nz_sample_size, _sub_seed(opts.seed, 3))
            return _conv_near_zero_totals(role, first, second, R, geometry, strides, padding, thr_first,
                                          thr_second, r_thr, positions)

        if opts.near_zero == "exact":
            return exact()
        return _exact_or_sampled(_batch_positions_static(d_like.shape.as_list()), total, opts.nz_sample_size,
                                 exact, sampled)

    return _finish(opts, first, second, thr_first, thr_second, all_totals, units, result_fn, nz_fn)


def _pad_before(size, k, stride, padding):
    if padding == "VALID":
        return 0
    out = -(-size // stride)
    return max((out - 1) * stride + k - size, 0) // 2


def _patches(t, positions, kernel_spatial, out_spatial, strides, padding):
    """The patches of `t` read at sampled flat (batch, output position) indices: values `[s, kp, C]` (zero where
    the tap falls in padding) and validity `[s, kp]`."""
    in_spatial = t.shape.as_list()[1:-1]
    rest, spatial_coords = tf.cast(positions, tf.int64), []
    for size in reversed(out_spatial):
        spatial_coords.append(rest % size)
        rest = rest // size
    coords = tf.stack([rest] + spatial_coords[::-1], -1)                                   # [s, 1 + d]
    offsets = tf.constant(list(itertools.product(*[range(k) for k in kernel_spatial])), tf.int64)  # [kp, d]
    pads = tf.constant([_pad_before(n, k, st, padding) for n, k, st in zip(in_spatial, kernel_spatial, strides)],
                       tf.int64)
    where = coords[:, None, 1:] * tf.constant(strides, tf.int64) + offsets[None] - pads             # [s, kp, d]
    valid = tf.reduce_all((where >= 0) & (where < tf.constant(in_spatial, tf.int64)), -1)
    where = tf.clip_by_value(where, 0, tf.constant(in_spatial, tf.int64) - 1)
    batch = tf.broadcast_to(tf.reshape(coords[:, 0], [-1, 1, 1]), tf.concat([tf.shape(where)[:2], [1]], 0))
    values = tf.gather_nd(t, tf.concat([batch, where], -1))                                # [s, kp, C]
    values = tf.where(valid[..., None], values, tf.zeros_like(values))
    return values, valid


def _sampled_variants(t, thr, valid=None):
    """P and N masks and the P, Z, N values of sampled patches (padding in no class), float."""
    pos, neg = _masks(t, thr)
    if valid is not None:
        pos, neg = pos & valid, neg & valid
    vals = _values(t, pos, neg)
    return [tf.cast(pos, t.dtype), tf.cast(neg, t.dtype)] + vals


@_kernel
def _conv_sampled_kernel(role, first, second, R, r_thr, geometry, strides, padding, thr_first, thr_second,
                         positions):
    """Near-zero totals estimated from sampled (batch, output position) pairs, rescaled to all of them. The
    near-zero mask of the result R is only formed where the sample reads it."""
    geometry = list(geometry)
    if role == "input_gradient":
        kshape = second.shape.as_list()
        in_shape = geometry
    else:
        kshape = geometry if role == "kernel_gradient" else second.shape.as_list()
        in_shape = first.shape.as_list()
    kspatial, cin, cout = kshape[:-2], kshape[-2], kshape[-1]
    kp = _kernel_offsets(kshape)
    out_spatial = conv_lib.output_shape([1] + list(in_shape[1:]), kshape, strides, padding)[1:-1]
    d_like = {"forward": R, "kernel_gradient": second, "input_gradient": first}[role]
    total = tf.cast(_leading_size(d_like), tf.int64)
    scale = _f64(total) / _f64(tf.maximum(tf.size(positions), 1))
    rows = lambda t: tf.gather(_as_rows(t), positions)  # noqa: E731
    dtype = first.dtype

    if role == "input_gradient":
        patch_r, valid = _patches(R, positions, kspatial, out_spatial, strides, padding)
        patch_m = tf.cast(_near_zero_mask(patch_r, r_thr) & valid[..., None], dtype)   # padding: no cell
        d_s = rows(first)                                                                  # [s, cout]
        parts = _sampled_variants(d_s, thr_first)
        a = tf.linalg.matmul(tf.reshape(patch_m, [-1, kp * cin]), tf.concat(parts, -1), transpose_a=True)
        a = tf.transpose(tf.reshape(_f64(a), [kp, cin, 5, cout]), [2, 0, 1, 3]) * scale
        any_first = tf.reshape(_f64(tf.reduce_sum(patch_m, 0)), [kp, cin, 1]) * scale
        w_thr, w = thr_second, second
    elif role == "forward":
        patch_x, valid = _patches(first, positions, kspatial, out_spatial, strides, padding)
        parts = _sampled_variants(patch_x, thr_first, valid[..., None])
        m_s = tf.cast(_near_zero_mask(rows(R), r_thr), dtype)                             # [s, cout]
        a = tf.linalg.matmul(tf.concat([tf.reshape(p, [-1, kp * cin]) for p in parts], -1), m_s, transpose_a=True)
        a = tf.reshape(_f64(a), [5, kp, cin, cout]) * scale
        any_first = _f64(tf.linalg.matmul(tf.cast(valid, dtype), m_s, transpose_a=True))    # [kp, cout]
        any_first = tf.reshape(any_first, [kp, 1, cout]) * scale
        w_thr, w = thr_second, second
    else:
        patch_x, valid = _patches(first, positions, kspatial, out_spatial, strides, padding)
        parts = _sampled_variants(patch_x, thr_first, valid[..., None])
        m = tf.reshape(tf.cast(_near_zero_mask(R, r_thr), dtype), [kp * cin, cout])
        a = tf.stack([tf.linalg.matmul(tf.reshape(p, [-1, kp * cin]), m) for p in parts])  # [5, s, cout]
        d_s = rows(second)
        dp, dn = _masks(d_s, thr_second)
        d_full = tf.stack([_f64(dp), _f64(~(dp | dn)), _f64(dn)])                          # [3, s, cout]
        d_values = _f64(tf.stack(_values(d_s, dp, dn)))
        any_first = tf.linalg.matmul(tf.cast(tf.repeat(valid, cin, axis=1), dtype), m)      # [s, cout]
        a = _f64(a)
        a_counts = tf.stack([a[0], _f64(any_first) - a[0] - a[1], a[1]])
        counts = tf.einsum("asd,bsd->abd", a_counts, d_full) * scale
        sums = tf.einsum("asd,bsd->abd", a[2:], d_values) * scale
        return counts, sums

    wp, wn = _masks(w, w_thr)
    w_full = tf.reshape(tf.stack([_f64(wp), _f64(~(wp | wn)), _f64(wn)]), [3, kp, cin, cout])
    w_values = tf.reshape(_f64(tf.stack(_values(w, wp, wn))), [3, kp, cin, cout])
    a_counts = tf.stack([a[0], any_first - a[0] - a[1], a[1]])
    counts = tf.einsum("akcd,bkcd->abd" if role == "forward" else "akcd,bkcd->abc", a_counts, w_full)
    sums = tf.einsum("akcd,bkcd->abd" if role == "forward" else "akcd,bkcd->abc", a[2:], w_values)
    return counts, sums
