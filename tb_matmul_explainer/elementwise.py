"""Per-unit totals of the elementwise steps around a layer's matmul (record roles of `metadata.py`):

  activation_totals           z = m + b, a = f(z): pairs (class of m, class of b), "near zero" = inactive
  activation_gradient_totals  dJ/dz = dJ/da * f'(z), as `ops.multiply_classify` summed per unit
  input_feature_totals        the layer input per input feature: near-zero, exactly zero, sum |x|

Tensors are `[..., U]` with the units on the last axis (every leading axis counts as a row: batch rows x
positions); classes follow `ops`: Z is x == 0, |x| < threshold or NaN, P/N the rest by sign, compared in the
tensor's own float dtype (a float32 threshold compares the same in float32 as in float64). Every function
returns `(aggregates.UnitTotals, metadata.RecordExtras)` in float64.

Cost: the per-unit columns (a record's near-zero cells, the extras) of a tensor of at most `max_rows` (default
MAX_ROWS; None: no limit) rows are counted on every row (exact integer counts). A larger one (a convolution's
batch x positions) is counted on `max_rows` rows drawn uniformly (with replacement), rescaled to all rows (x rows /
MAX_ROWS), as the matmul records' sampled near-zero totals are. The pair split (counts and sums per unit and pair,
the most costly part: a bin count per cell) is counted on at most `pair_rows` of those rows, drawn the same way
and rescaled the same way (None: on the same rows as the columns; the recorder passes the matmul records'
near-zero sample, `keras.DEFAULT_NEAR_ZERO_SAMPLE`, except with near_zero="exact"). `cells` and the non-finite
counts are always exact, over every cell. The sampled shares' standard error is at most 0.8 percentage points per
unit over MAX_ROWS rows (8.8 over 32); a unit inactive in every sampled cell reads as inactive in all of them.
"""

import functools

import tensorflow as tf

from tb_matmul_explainer import activations, aggregates, metadata
from tb_matmul_explainer import threshold as threshold_lib
from tb_matmul_explainer.aggregates import classes

MAX_ROWS = 4096


def _float(t):
    """t as a float32/float64 tensor (other dtypes as float32)."""
    t = tf.convert_to_tensor(t)
    return t if t.dtype in (tf.float32, tf.float64) else tf.cast(t, tf.float32)


def class_codes(t, thr):
    """int32 codes of t's classes at threshold `thr`: 0 P, 1 Z, 2 N (Z: zero, |t| < thr or NaN)."""
    t = _float(t)
    large = tf.abs(t) >= tf.cast(thr, t.dtype)  # (False for NaN)
    # 1 - sign: six ops per tensor (two masks' arithmetic took eleven, two selects against scalars twice the time).
    return 1 - tf.cast(tf.sign(tf.where(large, t, tf.zeros([], t.dtype))), tf.int32)


def _near_zero(t, thr):
    """bool: t is in class Z at threshold `thr`."""
    t = _float(t)
    return classes.near_zero_mask(t, tf.cast(thr, t.dtype))


def _rows(t):
    """t as `[rows, U]` (float32/float64)."""
    t = _float(t)
    return tf.reshape(t, [-1, t.shape[-1]])


def _units(t):
    """The units (last axis) of a `[R, U]` tensor: an int where the shape says, else a tensor (static shapes
    keep a record's fields' shapes known to `metadata.pack_record`)."""
    return t.shape[1] if t.shape[1] is not None else tf.shape(t)[1]


def _column_count(mask, at_most=None):
    """float64 `[U]`: the true cells of a bool `[R, U]` mask per column; `at_most` a bound on R known at trace
    time (None: the static shape's). Up to 2**24 rows a float32 sum (exact there; on CPU a quarter of the time
    of an int64 count)."""
    rows = mask.shape[0] if at_most is None else at_most
    if rows is not None and rows <= 2**24:
        return tf.cast(tf.reduce_sum(tf.cast(mask, tf.float32), 0), tf.float64)
    return tf.cast(tf.math.count_nonzero(mask, 0, dtype=tf.int64), tf.float64)


def _sample(seed, max_rows, *tensors):
    """`(rows, kept, tensors)`: the number of rows R of the `[R, ...]` tensors, the number kept (None: every row,
    known at trace time), and the tensors restricted to `max_rows` rows drawn uniformly with replacement (the same
    rows in each) when R > max_rows (max_rows None: every row)."""
    rows = tf.shape(tensors[0], out_type=tf.int64)[0]
    static = tensors[0].shape[0]
    if max_rows is None or (static is not None and static <= max_rows):
        return rows, None, list(tensors)

    def sampled():
        if seed is None:
            drawn = tf.random.uniform([max_rows], 0, rows, tf.int64)
        else:
            drawn = tf.random.stateless_uniform([max_rows], seed, 0, rows, tf.int64)
        return [tf.gather(t, drawn) for t in tensors]

    tensors = sampled() if static is not None else tf.cond(rows <= max_rows, lambda: list(tensors), sampled)
    return rows, tf.minimum(rows, max_rows), tensors


def _rescale(t, rows, kept):
    """float64 t x rows / kept (multiplied first: a count of every kept row becomes exactly `rows`); kept None
    (every row counted): t itself."""
    if kept is None:
        return tf.cast(t, tf.float64)
    return tf.cast(t, tf.float64) * tf.cast(rows, tf.float64) / tf.cast(kept, tf.float64)


def _pair_totals(first_codes, second_codes, value, near_zero, group_size=1):
    """Per stored row (`group_size` consecutive units, as `metadata.pack_record` sums them) and pair (first class
    major), from `[R, U]` class codes of both operands, the cell's value and its near-zero indicator (bool):
    counts, sums, near-zero counts, near-zero sums, each `[ceil(U / group_size), 9]` float64. Each cell lands in
    its own (near-zero or not, row, pair) bin: two bin counts, one of cells and one of values (no `[R, U, 9]`
    intermediate; a NaN stays in its pair, as in the per-cell route). Fewer bins count faster: counting 32
    rows of 1000 units into 250 rows' bins took a third of the time of 1000 units' bins."""
    units = _units(first_codes)
    stored = (units + group_size - 1) // group_size
    n = stored * 9
    offsets = 9 * (tf.range(units) // group_size)
    bins = first_codes * 3 + second_codes + offsets[None, :] + n * tf.cast(near_zero, tf.int32)
    bins = tf.reshape(bins, [-1])

    def per_bin(weights):
        total = tf.raw_ops.Bincount(arr=bins, size=2 * n, weights=weights)
        return tf.reshape(tf.cast(total, tf.float64), [2, stored, 9])

    counts = per_bin(tf.zeros([0], tf.int32))
    sums = per_bin(tf.reshape(tf.cast(value, tf.float64), [-1]))
    return counts[0] + counts[1], sums[0] + sums[1], counts[1], sums[1]


def _float64s(*values):
    """`[len(values)]` float64: scalars (thresholds, counts) of any dtype, stacked."""
    return tf.stack([tf.cast(v, tf.float64) for v in values])


def _pair_seed(seed):
    """The pair sample's seed, apart from the columns' (None: None)."""
    return None if seed is None else seed + tf.constant([0, 1], tf.int64)


def _sampled_pair_totals(codes, value, near_zero, rows, counted, group_size, near_zero_cells, thresholds, nonfinite):
    """`aggregates.UnitTotals` of a pair record whose pair split, `[ceil(U / group_size), 9]`, is counted on
    `[counted, U]` codes of both operands (`codes`), values and near-zero mask and rescaled to `rows` rows (counted
    None: every row); `near_zero_cells` per unit, `thresholds` and `nonfinite` its three header scalars each."""
    counts, sums, near_zero_counts, near_zero_sums = [
        _rescale(t, rows, counted) for t in _pair_totals(*codes, value, near_zero, group_size)
    ]
    return aggregates.UnitTotals(
        counts=counts,
        sums=sums,
        near_zero_counts=near_zero_counts,
        near_zero_sums=near_zero_sums,
        cells=tf.cast(tf.fill([tf.shape(near_zero_cells)[0]], rows), tf.float64),
        near_zero_cells=near_zero_cells,
        thresholds=_float64s(*thresholds),
        nonfinite=_float64s(*nonfinite),
    )


def _counted(kept, pair_kept):
    """The rows a pair split was counted on: the pair sample's, else the columns' (None: every row)."""
    return kept if pair_kept is None else pair_kept


def activation_totals(
    m,
    z,
    a,
    activation,
    bias_codes,
    bias_nonfinite,
    thresholds,
    output_threshold,
    seed=None,
    max_rows=MAX_ROWS,
    pair_rows=None,
    group_size=1,
):
    """The activation record: m, z, a `[..., U]`; `activation` an `activations.Activation` (f'(z) is computed on
    the counted rows: a cell is inactive where |f'(z)| is below `activations.inactive_threshold`); bias_codes the
    bias's `class_codes` (classed before broadcasting; all Z without a bias), `[U]` (one bias per unit) or
    `[..., U]` like z; `bias_nonfinite` the non-finite bias values among z's cells; `thresholds` = (m's, the
    bias's); `output_threshold` the threshold of a. Inactive cells, |z| and outputs near zero per unit over up
    to `max_rows` rows; the pair split over up to `pair_rows` of them, per `group_size` units (`_pair_totals`)."""
    m, z, a = _rows(m), _rows(z), _rows(a)
    per_unit = bias_codes.shape.rank == 1
    m_nonfinite, z_nonfinite = tf.unstack(threshold_lib.count_nonfinite_each([m, z]))
    nonfinite = (m_nonfinite, bias_nonfinite, z_nonfinite)
    cell_bias = () if per_unit else (tf.reshape(bias_codes, tf.shape(z)),)
    rows, kept, (m, z, a, *cell_bias) = _sample(seed, max_rows, m, z, a, *cell_bias)
    slope = activations.slope(activation, z)
    inactive = tf.abs(slope) < activations.inactive_threshold(activation, slope)
    _, pair_kept, (pair_m, pair_z, pair_inactive, *cell_bias) = _sample(
        _pair_seed(seed), pair_rows, m, z, inactive, *cell_bias
    )
    pair_bias = tf.broadcast_to(bias_codes, tf.shape(pair_z)) if per_unit else cell_bias[0]
    scaled = lambda t: _rescale(t, rows, kept)  # noqa: E731
    totals = _sampled_pair_totals(
        (class_codes(pair_m, thresholds[0]), pair_bias),
        pair_z,
        pair_inactive,
        rows,
        _counted(kept, pair_kept),
        group_size,
        scaled(_column_count(inactive, max_rows)),
        (*thresholds, 0.0),
        nonfinite,
    )
    extras = metadata.RecordExtras(
        scaled(tf.reduce_sum(tf.abs(z), 0)),
        scaled(_column_count(_near_zero(a, output_threshold), max_rows)),
        tf.constant(0.0, tf.float64),
        tf.cast(output_threshold, tf.float64),
    )
    return totals, extras


def activation_gradient_totals(
    d_a, z, d_z, activation, d_a_threshold, result_threshold, seed=None, max_rows=MAX_ROWS, pair_rows=None, group_size=1
):
    """The activation-gradient record of dJ/dz = dJ/da * f'(z): d_a = dJ/da, z and d_z = dJ/dz (TensorFlow's, for
    its non-finite count) `[..., U]`; `activation` an `activations.Activation`, f'(z) computed on the counted
    rows and classed by `activations.inactive_threshold`; the product is classed with `result_threshold`.
    Near-zero products and |dJ/dz| per unit over up to `max_rows` rows; the pair split over up to `pair_rows` of
    them, per `group_size` units."""
    d_a, z = _rows(d_a), _rows(z)
    nonfinite = _nonfinite_with_slope(d_a, d_z, z, activation)
    rows, kept, (d_a, z) = _sample(seed, max_rows, d_a, z)
    slope = activations.slope(activation, z)
    thresholds = (d_a_threshold, activations.inactive_threshold(activation, slope))
    result = d_a * slope
    near_zero = _near_zero(result, result_threshold)
    _, pair_kept, (pair_d_a, pair_slope, pair_result, pair_near_zero) = _sample(
        _pair_seed(seed), pair_rows, d_a, slope, result, near_zero
    )
    totals = _sampled_pair_totals(
        (class_codes(pair_d_a, thresholds[0]), class_codes(pair_slope, thresholds[1])),
        pair_result,
        pair_near_zero,
        rows,
        _counted(kept, pair_kept),
        group_size,
        _rescale(_column_count(near_zero, max_rows), rows, kept),
        (*thresholds, result_threshold),
        nonfinite,
    )
    return totals, _plain_extras(_rescale(tf.reduce_sum(tf.abs(result), 0), rows, kept))


def _nonfinite_with_slope(d_a, d_z, z, activation):
    """The non-finite values of (d_a, f'(z), d_z), f'(z) over all of z: computed and counted only where some
    value is non-finite when f's slope is bounded (`max_slope`: finite where z is finite), else always."""
    slope = lambda: activations.slope(activation, z)  # noqa: E731
    if activation.max_slope is None:
        d_a_nonfinite, slope_nonfinite, d_z_nonfinite = tf.unstack(
            threshold_lib.count_nonfinite_each([d_a, slope(), d_z])
        )
    else:
        d_a_nonfinite, d_z_nonfinite, _, slope_nonfinite = tf.unstack(
            threshold_lib.count_nonfinite_each([d_a, d_z, z], follow=[slope])
        )
    return d_a_nonfinite, slope_nonfinite, d_z_nonfinite


def input_feature_totals(x, threshold, seed=None, max_rows=MAX_ROWS, group_size=1):
    """The input-features record: x `[..., F]` (units = its last axis), classed with `threshold`; its pair fields
    are zeros, `[ceil(F / group_size), 9]`."""
    x = _rows(x)
    units = _units(x)
    nonfinite = tf.stack(
        [
            tf.cast(threshold_lib.count_nonfinite(x), tf.float64),
            tf.constant(0.0, tf.float64),
            tf.constant(0.0, tf.float64),
        ]
    )
    rows, kept, (x,) = _sample(seed, max_rows, x)
    scaled = lambda t: _rescale(t, rows, kept)  # noqa: E731
    zeros9 = tf.zeros([(units + group_size - 1) // group_size, 9], tf.float64)
    totals = aggregates.UnitTotals(
        counts=zeros9,
        sums=zeros9,
        near_zero_counts=zeros9,
        near_zero_sums=zeros9,
        cells=tf.cast(tf.fill([units], rows), tf.float64),
        near_zero_cells=scaled(_column_count(_near_zero(x, threshold), max_rows)),
        thresholds=tf.stack(
            [tf.cast(threshold, tf.float64), tf.constant(0.0, tf.float64), tf.constant(0.0, tf.float64)]
        ),
        nonfinite=nonfinite,
    )
    extras = metadata.RecordExtras(
        scaled(tf.reduce_sum(tf.abs(x), 0)),
        scaled(_column_count(tf.equal(x, 0), max_rows)),
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
        magnitude = tf.cast(tf.reduce_sum(tf.abs(_rows(result)), 0), tf.float64)
    return _plain_extras(magnitude, reference, padding_only)


@functools.cache
def compiled(fn):
    """`fn` (one of this module's totals functions) as one XLA-compiled function, traced per input signature
    (Python arguments, such as the activation, key it): the same totals, in about half the time on CPU (a few
    fused loops instead of ~20 passes) after a compile of about half a second per new signature
    (bench/recording_cost.py, the recorder's `jit=True`)."""
    return tf.function(fn, jit_compile=True, autograph=False)
