"""Per-unit totals of the elementwise steps around a layer's matmul (record roles of `metadata.py`):

  activation_totals           z = m + b, a = f(z): pairs (class of m, class of b), "near zero" = inactive
  activation_gradient_totals  dJ/dz = dJ/da * f'(z), as `ops.multiply_classify` summed per unit
  input_feature_totals        the layer input per input feature: near-zero, exactly zero, sum |x|

Each is one or a few passes over a tensor of the layer's input or output size (no matmul), so they cost far less
than the layer itself. Tensors are `[..., U]` with the units on the last axis (every leading axis counts as a
row); classes follow `ops`: Z is x == 0, |x| < threshold or NaN, P/N the rest by sign. Counts are exact (float64
sums of 0/1 masks). Every function returns `(aggregates.UnitTotals, metadata.RecordExtras)`.
"""

import tensorflow as tf

from tb_matmul_explainer import aggregates, metadata
from tb_matmul_explainer import threshold as threshold_lib


def class_codes(t, thr):
    """int32 codes of t's classes at threshold `thr`: 0 P, 1 Z, 2 N (Z: zero, |t| < thr or NaN)."""
    t = tf.cast(t, tf.float64)
    thr = tf.cast(thr, tf.float64)
    pos = (t >= thr) & (t > 0)
    neg = (t <= -thr) & (t < 0)
    return tf.where(pos, 0, tf.where(neg, 2, 1))


def _near_zero(t, thr):
    """float64 1 where t is in class Z at threshold `thr`, else 0."""
    return tf.cast(tf.equal(class_codes(t, thr), 1), tf.float64)


def _rows(t):
    """t as `[rows, U]` float64."""
    t = tf.cast(t, tf.float64)
    return tf.reshape(t, [-1, t.shape[-1]])


def _nonfinite(*tensors):
    return tf.stack([tf.cast(threshold_lib.count_nonfinite(t), tf.float64) for t in tensors])


def _pair_totals(first_codes, second_codes, value, near_zero):
    """Per unit and pair (first class major), from `[R, U]` class codes of both operands, the cell's value and its
    near-zero indicator (float64): counts, sums, near-zero counts, near-zero sums, each `[U, 9]`. Each cell lands
    in its own unit's pair bin (`tf.math.bincount`: no `[R, U, 9]` intermediate; a NaN stays in its pair, as in
    the per-cell route)."""
    units = tf.shape(first_codes)[1]
    bins = tf.reshape(first_codes * 3 + second_codes + 9 * tf.range(units)[None, :], [-1])
    value, near_zero = tf.reshape(value, [-1]), tf.reshape(near_zero, [-1])
    n = units * 9

    def per_bin(weights):
        total = tf.math.bincount(bins, weights=weights, minlength=n, maxlength=n, dtype=tf.float64)
        return tf.reshape(total, [units, 9])

    return per_bin(None), per_bin(value), per_bin(near_zero), per_bin(near_zero * value)


def activation_totals(m, bias, z, inactive, a, thresholds, output_threshold):
    """The activation record: m, bias, z, a, inactive `[..., U]` (bias broadcast to z's shape, zeros without one;
    inactive a bool mask), `thresholds` = (m's, the bias's), `output_threshold` the threshold of a."""
    m, bias, z, a = _rows(m), _rows(bias), _rows(z), _rows(a)
    w = tf.cast(_rows(inactive), tf.float64)
    counts, sums, near_zero_counts, near_zero_sums = _pair_totals(
        class_codes(m, thresholds[0]), class_codes(bias, thresholds[1]), z, w
    )
    cells = tf.cast(tf.fill([tf.shape(m)[1]], tf.shape(m)[0]), tf.float64)
    totals = aggregates.UnitTotals(
        counts=counts,
        sums=sums,
        near_zero_counts=near_zero_counts,
        near_zero_sums=near_zero_sums,
        cells=cells,
        near_zero_cells=tf.reduce_sum(w, 0),
        thresholds=tf.stack(
            [tf.cast(thresholds[0], tf.float64), tf.cast(thresholds[1], tf.float64), tf.constant(0.0, tf.float64)]
        ),
        nonfinite=_nonfinite(m, bias, z),
    )
    outputs_near_zero = tf.reduce_sum(_near_zero(a, output_threshold), 0)
    extras = metadata.RecordExtras(
        tf.reduce_sum(tf.abs(z), 0),
        outputs_near_zero,
        tf.constant(0.0, tf.float64),
        tf.cast(output_threshold, tf.float64),
    )
    return totals, extras


def activation_gradient_totals(d_a, slope, thresholds, result_threshold):
    """The activation-gradient record: d_a = dJ/da and slope = f'(z), `[..., U]`; `thresholds` = (d_a's,
    slope's); the result dJ/dz = d_a * slope is classed with `result_threshold`."""
    d_a, slope = _rows(d_a), _rows(slope)
    result = d_a * slope
    near_zero = _near_zero(result, result_threshold)
    counts, sums, near_zero_counts, near_zero_sums = _pair_totals(
        class_codes(d_a, thresholds[0]), class_codes(slope, thresholds[1]), result, near_zero
    )
    totals = aggregates.UnitTotals(
        counts=counts,
        sums=sums,
        near_zero_counts=near_zero_counts,
        near_zero_sums=near_zero_sums,
        cells=tf.cast(tf.fill([tf.shape(d_a)[1]], tf.shape(d_a)[0]), tf.float64),
        near_zero_cells=tf.reduce_sum(near_zero, 0),
        thresholds=tf.cast(tf.stack([thresholds[0], thresholds[1], result_threshold]), tf.float64),
        nonfinite=_nonfinite(d_a, slope, result),
    )
    return totals, _plain_extras(tf.reduce_sum(tf.abs(result), 0))


def input_feature_totals(x, threshold):
    """The input-features record: x `[..., F]` (units = its last axis), classed with `threshold`."""
    x = _rows(x)
    units = tf.shape(x)[1]
    zeros9 = tf.zeros(tf.stack([units, 9]), tf.float64)
    totals = aggregates.UnitTotals(
        counts=zeros9,
        sums=zeros9,
        near_zero_counts=zeros9,
        near_zero_sums=zeros9,
        cells=tf.cast(tf.fill([units], tf.shape(x)[0]), tf.float64),
        near_zero_cells=tf.reduce_sum(_near_zero(x, threshold), 0),
        thresholds=tf.stack(
            [tf.cast(threshold, tf.float64), tf.constant(0.0, tf.float64), tf.constant(0.0, tf.float64)]
        ),
        nonfinite=tf.stack(
            [
                tf.cast(threshold_lib.count_nonfinite(x), tf.float64),
                tf.constant(0.0, tf.float64),
                tf.constant(0.0, tf.float64),
            ]
        ),
    )
    extras = metadata.RecordExtras(
        tf.reduce_sum(tf.abs(x), 0),
        tf.reduce_sum(tf.cast(x == 0, tf.float64), 0),
        tf.constant(0.0, tf.float64),
        tf.constant(0.0, tf.float64),
    )
    return totals, extras


def _plain_extras(result_magnitude, reference=None, padding_only=0.0):
    """`RecordExtras` of a pair record: |result| per unit, the role's reference (0), padding-only cells."""
    reference = tf.zeros_like(result_magnitude) if reference is None else tf.cast(reference, tf.float64)
    return metadata.RecordExtras(
        tf.cast(result_magnitude, tf.float64),
        reference,
        tf.cast(padding_only, tf.float64),
        tf.constant(0.0, tf.float64),
    )


def matmul_extras(units, result=None, reference=None, padding_only=0.0):
    """`RecordExtras` of a matmul role's record of `units` units: sum |result| per unit (result `[..., U]`, or
    None: NaN, not recorded), the role's reference per unit (kernel_gradient: sum |kernel|), padding-only cells."""
    if result is None:
        magnitude = tf.fill([units], tf.constant(float("nan"), tf.float64))
    else:
        magnitude = tf.reduce_sum(tf.abs(_rows(result)), 0)
    return _plain_extras(magnitude, reference, padding_only)
