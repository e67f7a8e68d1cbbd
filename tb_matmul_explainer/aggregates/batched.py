"""Batched matmul kernels: per-head totals of `first @ second` where both operands are activations, one matmul per
(batch, head) slice (attention's score and value einsums, `layers/attention.py`).

Layout: first `[G, H, R, C]`, second `[G, H, C, U]`, result `[G, H, R, U]` (`tf.linalg.matmul` per slice). The
units are the H heads; a head's cells are its G x R x U result cells (G: the batch). Unlike a dense kernel, the
second operand differs per slice, so the totals are summed per slice and then per head:

  all cells   sum_{r,u} (F_a S_b)[r, u] = sum_c (sum_r F_a[r, c]) (sum_u S_b[c, u]) per slice: O(operands)
  near zero   stage 1: `F_v^T @ M` per slice for F's five variants (P, N masks; P, Z, N values), `[5, G, H, C, U]`,
              on TensorFlow's batched matmul (5x the op's multiply-adds); stage 2: elementwise against S's classes,
              summed per head in float64.

Counts are exact: stage-1 counts are integers of at most R (float32 while R <= 2**24, float64 beyond or when R is
not known when traced); the per-head sums of products run in float64. near_zero="sampled": the near-zero totals of
`near_zero_sample_size` batch entries (slices along G), rescaled to the batch; exact when there are no more.
"""

import tensorflow as tf

from tb_matmul_explainer import validation
from tb_matmul_explainer.aggregates import classes, exact, sampling, totals
from tb_matmul_explainer.aggregates.classes import Operand
from tb_matmul_explainer.aggregates.exact import f64
from tb_matmul_explainer.aggregates.jit import compile_mode, kernel
from tb_matmul_explainer.aggregates.options import Options
from tb_matmul_explainer.aggregates.totals import PairTotals

_PER_HEAD = (0, 2, 3)  # the axes summed per head in a [G, H, ., .] tensor


@kernel
def all_cells(first, second):
    """`PairTotals` over all result cells: per slice and contraction index, F's class totals over its rows and S's
    over its columns, multiplied and summed per head."""
    (F, f_thr), (S, s_thr) = first, second
    fp, fn = classes.masks(F, f_thr)
    sp, sn = classes.masks(S, s_thr)
    rows, cols = tf.shape(F)[2], tf.shape(S)[3]

    def class_counts(pos, neg, axis, size):  # [3, G, H, C] exact (int32 sums of 0/1), as float64
        p, n = (f64(tf.reduce_sum(tf.cast(m, tf.int32), axis)) for m in (pos, neg))
        return tf.stack([p, f64(size) - p - n, n])

    f_counts, s_counts = class_counts(fp, fn, 2, rows), class_counts(sp, sn, 3, cols)
    f_sums = f64(tf.stack([tf.reduce_sum(v, 2) for v in classes.values(F, fp, fn)]))
    s_sums = f64(tf.stack([tf.reduce_sum(v, 3) for v in classes.values(S, sp, sn)]))
    counts = tf.einsum("aghc,bghc->abh", f_counts, s_counts)
    sums = tf.einsum("aghc,bghc->abh", f_sums, s_sums)
    cells = f64(tf.shape(F)[0] * rows * cols)
    return PairTotals(counts, sums, tf.fill(tf.shape(F)[1:2], cells))


@kernel
def _near_zero(first, second, mask, dtype):
    """Near-zero counts and sums `[3, 3, H]` for the 0/1 mask M `[G, H, R, U]` (see the module docstring)."""
    (F, f_thr), (S, s_thr) = first, second
    fp, fn = classes.masks(F, f_thr)
    f_variants = [tf.cast(fp, dtype), tf.cast(fn, dtype)] + [tf.cast(v, dtype) for v in classes.values(F, fp, fn)]
    a = tf.linalg.matmul(tf.stack(f_variants), tf.cast(mask, dtype)[None], transpose_a=True)  # [5, G, H, C, U]
    sp, sn = classes.masks(S, s_thr)
    s_masks = [f64(m) for m in (sp, sn)]
    a_counts = [f64(a[0]), f64(a[1])]
    cross = [[tf.reduce_sum(a_x * s_x, _PER_HEAD) for s_x in s_masks] for a_x in a_counts]
    first_totals = [tf.reduce_sum(a_x, _PER_HEAD) for a_x in a_counts]
    m_cols = f64(tf.reduce_sum(tf.cast(mask, dtype), 2))[:, :, None, :]  # [G, H, 1, U]: M's column sums
    second_totals = [tf.reduce_sum(m_cols * s_x, _PER_HEAD) for s_x in s_masks]
    size = tf.reduce_sum(m_cols, _PER_HEAD) * f64(tf.shape(F)[3])
    counts = exact.pair_counts(cross, first_totals, second_totals, size)
    s_values = [tf.cast(v, dtype) for v in classes.values(S, sp, sn)]
    sums = tf.stack([tf.stack([f64(tf.reduce_sum(a[2 + i] * s_v, _PER_HEAD)) for s_v in s_values]) for i in range(3)])
    return counts, sums


def _stage1_dtype(F):
    """float32 keeps stage-1 counts (at most R) exact while R <= 2**24; float64 beyond or when R is not known."""
    rows = F.shape[2]
    return F.dtype if F.dtype == tf.float64 or (rows is not None and rows <= exact.F32_EXACT) else tf.float64


def _near_zero_totals(first, second, R, r_thr, entries=None):
    """Near-zero `PairTotals`; `entries` (or None: all) the sampled batch entries, the totals rescaled."""
    mask = classes.near_zero_mask(R, r_thr)
    cells = f64(tf.reduce_sum(tf.cast(mask, tf.int64), _PER_HEAD))
    dtype = _stage1_dtype(first.values)
    if entries is None:
        return PairTotals(*_near_zero(first, second, mask, dtype), cells)
    pick = lambda operand: operand._replace(values=tf.gather(operand.values, entries))  # noqa: E731
    counts, sums = _near_zero(pick(first), pick(second), tf.gather(mask, entries), dtype)
    scale = f64(tf.shape(mask)[0]) / f64(tf.maximum(tf.size(entries), 1))
    return PairTotals(counts * scale, sums * scale, cells)


def batched_matmul(first, second, *, result=None, options=None, **settings):
    """Per-head totals of the batched product `first @ second`.

    Args:
      first: `[G, H, R, C]` (first operand). second: `[G, H, C, U]` (second operand).
      result: optional `first @ second` (`[G, H, R, U]`); computed when needed.
      options, **settings: an `Options`, or its fields as keywords (near_zero_sample_size: batch entries).
    Returns:
      `UnitTotals` with one unit per head (H); a head's cells are its G x R x U result cells.
    """
    opts = Options.of(options, **settings)
    first, second = totals.operands(first, second, ("first", "second"))
    validation.check_rank(first, "first", 4, 4)
    validation.check_rank(second, "second", 4, 4)
    if not first.shape[:2].is_compatible_with(second.shape[:2]) or not first.shape[3:].is_compatible_with(
        second.shape[2:3]
    ):
        raise ValueError(
            f"first [G, H, R, C] and second [G, H, C, U] do not match: shapes {first.shape} and {second.shape}"
        )
    f = Operand(first, totals.threshold(first, sampling.FIRST, opts))
    s = Operand(second, totals.threshold(second, sampling.SECOND, opts))
    expected = first.shape.as_list()[:3] + second.shape.as_list()[3:]

    def result_fn():
        if result is None:
            return tf.linalg.matmul(first, second)
        return totals.given_result(result, first.dtype, expected)

    def near_zero_fn(R, r_thr):
        def exact_totals():
            return _near_zero_totals(f, s, R, r_thr)

        def sampled_totals():
            entries = sampling.sample_rows(
                tf.shape(first)[0], opts.near_zero_rows, sampling.sub_seed(opts.seed, sampling.ROWS)
            )
            return _near_zero_totals(f, s, R, r_thr, entries)

        if opts.near_zero == "exact":
            return exact_totals()
        return sampling.exact_or_sampled(
            first.shape[0], tf.shape(first)[0], opts.near_zero_rows, exact_totals, sampled_totals
        )

    with compile_mode(opts.jit):
        return totals.finish(opts, f, s, all_cells(f, s), tf.shape(first)[1], result_fn, near_zero_fn)
