"""`UnitTotals` and what every role shares around its kernels: the operands' dtype and the caller's result,
the thresholds, the non-finite counts, and the assembly of the totals (the near-zero part zero when off)."""

import math
from typing import NamedTuple

import tensorflow as tf

from tb_matmul_explainer import threshold as threshold_lib
from tb_matmul_explainer import validation
from tb_matmul_explainer.aggregates import sampling
from tb_matmul_explainer.aggregates.exact import f64


class UnitTotals(NamedTuple):
    """Per-unit nine-pair totals (all float64; pairs in `ops.TERMS` order)."""

    counts: tf.Tensor  # [U, 9] exact
    sums: tf.Tensor  # [U, 9]
    near_zero_counts: tf.Tensor  # [U, 9] exact (estimates with near_zero="sampled")
    near_zero_sums: tf.Tensor  # [U, 9]
    cells: tf.Tensor  # [U] result cells of each unit
    near_zero_cells: tf.Tensor  # [U] near-zero result cells of each unit
    thresholds: tf.Tensor  # [3] first operand, second operand, result
    nonfinite: tf.Tensor  # [3] non-finite values in first operand, second operand, result


class PairTotals(NamedTuple):
    """Totals over a set of result cells, pairs as `[3, 3, U]` (first operand's class, second's, unit)."""

    counts: tf.Tensor  # [3, 3, U] float64
    sums: tf.Tensor  # [3, 3, U] float64
    cells: tf.Tensor  # [U] float64: the result cells of each unit in the set


def operands(first, second, names):
    """The two operands as float tensors of one compute dtype (see `validation`)."""
    first = validation.as_float_tensor(first, names[0])
    second = validation.as_float_tensor(second, names[1])
    return validation.promote_floats(first, second)


def given_result(result, dtype, expected_shape):
    """The caller's result in the compute dtype, its static shape checked against `expected_shape`."""
    result = validation.as_float_tensor(result, "result")
    if result.dtype != dtype:
        result = tf.cast(result, dtype)
    if result.shape.rank is not None:
        ok = result.shape.rank == len(expected_shape) and all(
            a is None or b is None or a == b for a, b in zip(result.shape.as_list(), expected_shape)
        )
        if not ok:
            raise ValueError(f"result must have the op's result shape {expected_shape}, got {result.shape}")
    return result


def threshold(t, index, opts):
    """The threshold of `t` at position `index` (sampling.FIRST, SECOND or RESULT) in t's dtype: the given one,
    else derived from `opts.confidence` by `opts.threshold_method`."""
    given = opts.thresholds[index]
    if isinstance(given, float):
        return tf.constant(given, t.dtype)  # tf.cast would round a Python float through float32
    if given is not None:
        return tf.cast(given, t.dtype)
    if opts.threshold_method == "exact":
        return threshold_lib.percentile_threshold(t, opts.confidence)
    return threshold_lib.sampled_threshold(
        t, opts.confidence, opts.sample_size, seed=sampling.sub_seed(opts.seed, index)
    )


def _to_units(*blocks):
    """`[3, 3, U]` blocks -> `[U, 9]` each, in TERMS order (one transpose for them all)."""
    units = tf.reshape(tf.transpose(tf.stack(blocks), [0, 3, 1, 2]), [len(blocks), -1, 9])
    return tf.unstack(units, len(blocks))


def _zeros(units):
    z = tf.zeros([3, 3, units], tf.float64)
    return PairTotals(z, z, tf.zeros([units], tf.float64))


def finish(opts, first, second, all_cells, units, result_fn, near_zero_fn):
    """The `UnitTotals` of a role: `first` and `second` its `classes.Operand`s, `all_cells` its `PairTotals` over
    all result cells; unless near_zero="off", the result (`result_fn()`), its threshold and the near-zero
    `PairTotals` (`near_zero_fn(result, result_threshold)`), else zeros and NaN for the result's figures."""
    if opts.near_zero == "off":
        nan = tf.constant(math.nan, tf.float64)
        given = opts.thresholds[2]
        thr_result = (
            nan if given is None else tf.constant(given, tf.float64) if isinstance(given, float) else f64(given)
        )
        nonfinite = tf.concat([f64(threshold_lib.count_nonfinite_each([first.values, second.values])), [nan]], 0)
        near_zero = _zeros(units)
    else:
        result = result_fn()
        thr_result = threshold(result, sampling.RESULT, opts)
        nonfinite = f64(threshold_lib.count_nonfinite_each([first.values, second.values, result]))
        near_zero = near_zero_fn(result, thr_result)
    thresholds = [first.threshold, second.threshold, thr_result]
    return UnitTotals(
        *_to_units(all_cells.counts, all_cells.sums, near_zero.counts, near_zero.sums),
        all_cells.cells,
        near_zero.cells,
        tf.stack([f64(t) for t in thresholds]),
        nonfinite,
    )
