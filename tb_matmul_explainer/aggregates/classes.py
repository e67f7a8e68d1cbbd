"""Operand and result classes as the kernels use them: P/N masks, class-masked values, the stacked stage-1
variants, per-class stacks, the near-zero result mask and its per-unit counts, and the rows layout.

Classes as in `ops`: Z is `v == 0`, `|v| < thr` or NaN; P is `v > 0` and N is `v < 0` otherwise. A result cell is
near zero when it is Z under the result's threshold.
"""

from typing import NamedTuple

import tensorflow as tf

from tb_matmul_explainer.aggregates import exact
from tb_matmul_explainer.aggregates.exact import f64
from tb_matmul_explainer.aggregates.jit import kernel


class Operand(NamedTuple):
    """An operand as stored and its threshold (a scalar in the operand's dtype)."""

    values: tf.Tensor
    threshold: tf.Tensor


class ClassStack(NamedTuple):
    """An operand's classes stacked on a new first axis in P, Z, N order, float64."""

    counts: tf.Tensor  # [3, ...] 0/1 class masks
    values: tf.Tensor  # [3, ...] the operand masked to each class


def masks(t, thr):
    """P and N masks (Z is neither; NaN falls in neither): `t >= thr & t > 0` and `t <= -thr & t < 0`, from one
    magnitude comparison (negation is exact, so |t| >= thr decides both)."""
    large = tf.abs(t) >= thr
    return large & (t > 0), large & (t < 0)


def values(t, pos, neg):
    """The operand masked to P, Z and N."""
    zero = tf.zeros_like(t)
    return [tf.where(pos, t, zero), tf.where(pos | neg, zero, t), tf.where(neg, t, zero)]


def class_stack(t, thr, shape=None):
    """`t`'s P, Z, N masks and values as a `ClassStack`, each part reshaped to `[3] + shape` if given."""
    pos, neg = masks(t, thr)
    counts = tf.stack([f64(pos), f64(~(pos | neg)), f64(neg)])
    class_values = f64(tf.stack(values(t, pos, neg)))
    if shape is not None:
        counts, class_values = tf.reshape(counts, [3] + list(shape)), tf.reshape(class_values, [3] + list(shape))
    return ClassStack(counts, class_values)


def row_class_totals(F, f_thr, r_axis):
    """Per contraction index c, over F's rows (axis `r_axis`): the P, Z, N counts `[3, c]` (int32, exact) and
    the P, Z, N value sums `[3, c]`."""
    fp, fn = masks(F, f_thr)
    r = tf.shape(F)[r_axis]
    cnt_p = tf.reduce_sum(tf.cast(fp, tf.int32), r_axis)
    cnt_n = tf.reduce_sum(tf.cast(fn, tf.int32), r_axis)
    cnt = tf.stack([cnt_p, r - cnt_p - cnt_n, cnt_n])
    sv = tf.stack([tf.reduce_sum(v, r_axis) for v in values(F, fp, fn)])
    return cnt, sv


def by_class_products(left, S, s_p, s_z, s_t, cast=tf.identity):
    """`left @` S's P, Z and N values (`S` and its P and Z values `s_p`, `s_z` transposed when `s_t`), each through
    `cast`. The N product is taken as `left @ S - P - Z`: the raw S needs no masked copy (kernel-sized copies
    dominate the cost here); its rounding error is of the order of the P and Z products' own."""
    p, z, raw = (cast(tf.linalg.matmul(left, v, transpose_b=s_t)) for v in (s_p, s_z, S))
    return [p, z, raw - p - z]


def near_zero_mask(result, thr):
    """bool: `result` is in class Z at `thr` (neither P nor N)."""
    return ~((tf.abs(result) >= thr) & tf.not_equal(result, 0))


def variants(t, pos, neg, strategy):
    """Stage-1 operand variants: the count variant(s) then the P, Z, N values, in the strategy's dtype (see
    `exact.n_variants`)."""
    dtype = tf.float64 if strategy == "f64" else t.dtype
    if strategy == "packed":
        counts = [
            tf.where(pos, tf.constant(1, dtype), tf.where(neg, tf.constant(exact.PACK, dtype), tf.constant(0, dtype)))
        ]
    else:
        counts = [tf.cast(pos, dtype), tf.cast(neg, dtype)]
    return counts + [tf.cast(v, dtype) for v in values(t, pos, neg)]


@kernel
def stacked_variants(t, thr, strategy, axis, ones_row=False):
    """The stage-1 variants of `t` (see `variants`) concatenated along `axis`: one fused pass; `ones_row`: and a
    last row of ones (`t` of rank 2, axis 0 only), whose product with M counts M's entries per unit."""
    pos, neg = masks(t, thr)
    parts = variants(t, pos, neg, strategy)
    if ones_row:
        parts.append(tf.ones(tf.stack([1, tf.shape(t)[1]]), parts[-1].dtype))
    return tf.concat(parts, axis)


def leading_size(t):
    """The number of rows of `t` flattened to `[rows, last axis]` (no -1 inference: the last axis may be 0): a
    Python int when t's leading shape is known at trace time, else an int32 scalar tensor."""
    static = t.shape[:-1].num_elements()
    return static if static is not None else tf.reduce_prod(tf.shape(t)[:-1])


def as_rows(t):
    """`t` flattened to `[rows, last axis]`."""
    if t.shape.is_fully_defined():
        return tf.reshape(t, [leading_size(t), t.shape[-1]])
    return tf.reshape(t, tf.stack([leading_size(t), tf.shape(t)[-1]]))


def per_unit_count(M):
    """float64 count of the true entries of M per unit (M's last axis)."""
    # One 2-D column sum: a count over several axes at once runs several times slower on CPU (XLA and not).
    return f64(tf.reduce_sum(tf.cast(as_rows(M), tf.int64), 0))


@kernel
def near_zero_cells(R, r_thr):
    """The near-zero cells per unit (R's last axis)."""
    return per_unit_count(near_zero_mask(R, r_thr))


@kernel
def result_mask(R, r_thr, count=True):
    """The near-zero result mask as 0/1 in R's dtype, and (if `count`) the near-zero cells per unit (R's last
    axis)."""
    M = near_zero_mask(R, r_thr)
    return (tf.cast(M, R.dtype), per_unit_count(M)) if count else tf.cast(M, R.dtype)
