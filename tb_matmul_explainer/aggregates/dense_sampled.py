"""Dense forward and input gradient with near_zero="sampled": the kernel's class variants are made once, and one
product with its count code and one with its values serve both the all-cells totals (first rows: F's per-column
class totals) and the near-zero totals, taken cell by cell on the sampled rows (further rows: those rows' class
variants). No kernel-sized intermediate beyond the variants themselves. Layout as in `dense_kernels` (F `[r, c]`;
S `[c, u]`, or `[u, c]` when `second_transposed`).
"""

from typing import NamedTuple

import tensorflow as tf

from tb_matmul_explainer.aggregates import classes, exact, sampling
from tb_matmul_explainer.aggregates.exact import f64
from tb_matmul_explainer.aggregates.jit import kernel
from tb_matmul_explainer.aggregates.totals import PairTotals

SMALL_BATCH = (1 << 12) - 1  # a bound on the rows that most batches meet (fewer bit planes, see shared_products)


def plan(F, S, second_transposed):
    """(bits, base) of the packed count code that the shared path uses, or None where it does not apply (a
    float64 computation, an unknown contraction length, or one too long for an exact float32 packed code)."""
    c_len = S.shape[1 if second_transposed else 0]
    if F.dtype != tf.float32 or c_len is None:
        return None
    r_static = F.shape[0]
    return exact.packed_plan(c_len, exact.INT32_MAX if r_static is None else r_static)


@kernel
def _kernel_variants(S, s_thr, second_transposed, base):
    """S's classes in its stored layout, float32: the count code `P + base * N` and the P and Z values (the N
    products come from S itself, see `classes.by_class_products`)."""
    pos, neg = classes.masks(S, s_thr)
    s_p, s_z, _ = classes.values(S, pos, neg)
    return exact.packed_code(pos, neg, base), s_p, s_z


@kernel
def _shared_left(F, rows, f_thr, bits, planes):
    """The left operands of the shared products, float32 `[*, c]`: for the count code, F's per-column class
    counts as bit planes (`3 planes` rows), a row of ones, then the sampled rows' P and N masks (`2s`); for the
    values, F's per-column class value sums (3 rows), then the sampled rows' P, Z, N values (`3s`)."""
    cnt, sv = classes.row_class_totals(F, f_thr, 0)
    F_s = tf.gather(F, rows)
    fp, fn = classes.masks(F_s, f_thr)
    ones = tf.ones([1, tf.shape(F)[1]], tf.float32)
    count_rows = tf.concat(
        [exact.bit_planes(cnt, bits, planes, 0), ones, tf.cast(fp, tf.float32), tf.cast(fn, tf.float32)], 0
    )
    return count_rows, tf.concat([sv] + classes.values(F_s, fp, fn), 0), tf.reduce_sum(f64(cnt), 1)


class SampledCells(NamedTuple):
    """Per-cell products of the sampled rows (see `shared_products`)."""

    rows: tf.Tensor  # [s] sampled rows
    p_part: tf.Tensor  # [2, s, u] P-class products of the rows' P (then N) masks with the kernel, exact
    n_part: tf.Tensor  # [2, s, u] the same for the kernel's N class
    row_counts: tf.Tensor  # [2, s] the rows' P and N counts
    unit_counts: tf.Tensor  # [2, u] the kernel's P and N counts per unit
    sums: tf.Tensor  # [3, s, 3, u] per-cell sums by pair


def shared_products(first, second, second_transposed, code_plan, size, seed):
    """All-cells `PairTotals` (as `dense_kernels.all_cells`) and the `SampledCells` of up to `size` sampled rows
    (all rows when there are no more), from one product with the kernel's count code and one with its values."""
    (F, f_thr), (S, s_thr) = first, second
    bits, base = code_plan
    r_static, n_rows = F.shape[0], tf.shape(F)[0]
    if r_static is not None and r_static <= size:
        rows = tf.range(n_rows)
    else:
        rows = sampling.sample_rows(n_rows, tf.minimum(n_rows, size), seed)
    code, s_p, s_z = _kernel_variants(S, s_thr, second_transposed, base)

    def products(row_bound):  # F's per-column class counts are at most row_bound: as many bit planes as that needs
        planes = exact.planes_for(row_bound, bits)
        s, k = tf.size(rows), 3 * planes
        count_rows, value_rows, column_total = _shared_left(F, rows, f_thr, bits, planes)
        p_part, n_part = exact.unpack(
            tf.linalg.matmul(count_rows, code, transpose_b=second_transposed), base
        )  # [k + 1 + 2s, u]
        value_prod = tf.concat(classes.by_class_products(value_rows, S, s_p, s_z, second_transposed), 1)
        units = tf.shape(p_part)[1]  # value_prod [3+3s, 3u]

        cnt_pos = exact.combine_planes(p_part[:k], bits, planes)
        cnt_neg = exact.combine_planes(n_part[:k], bits, planes)
        counts = tf.stack([cnt_pos, column_total[:, None] - cnt_pos - cnt_neg, cnt_neg], axis=1)
        sums = tf.reshape(f64(value_prod[:3]), tf.stack([3, 3, units]))
        all_totals = PairTotals(counts, sums, tf.fill([units], f64(n_rows)))

        per_row = tf.stack([2, s, units])
        cells = SampledCells(
            rows,
            tf.reshape(p_part[k + 1 :], per_row),
            tf.reshape(n_part[k + 1 :], per_row),
            tf.reshape(tf.reduce_sum(count_rows[k + 1 :], 1), tf.stack([2, s])),
            tf.concat([p_part[k : k + 1], n_part[k : k + 1]], 0),
            tf.reshape(value_prod[3:], tf.stack([3, s, 3, units])),
        )
        return all_totals, cells

    if r_static is not None:
        return products(r_static)
    # An unknown batch size: fewer planes for the usual batches, all 31 bits beyond them.
    return tf.cond(n_rows <= SMALL_BATCH, lambda: products(SMALL_BATCH), lambda: products(exact.INT32_MAX))


@kernel
def _weigh_sampled_cells(p_part, n_part, row_counts, sums, R_s, r_thr):
    """The sampled rows' per-cell products weighted by their near-zero mask (from their results R_s `[s, u]`) and
    summed over the rows: the P and N count products `[2, u]` each, the rows' P and N counts `[2, u]` and the
    mask's count `[u]` (float64, exact), and the pair sums `[3, 3, u]` (summed in float32)."""
    m = tf.cast(classes.near_zero_mask(R_s, r_thr), sums.dtype)
    m64 = f64(m)
    cross_p = tf.reduce_sum(f64(p_part) * m64, 1)
    cross_n = tf.reduce_sum(f64(n_part) * m64, 1)
    row_totals = tf.reduce_sum(f64(row_counts)[:, :, None] * m64, 1)
    return cross_p, cross_n, row_totals, tf.reduce_sum(m64, 0), f64(tf.reduce_sum(sums * m[None, :, None, :], 1))


def near_zero(cells, R, r_thr, n_rows, c_len):
    """Near-zero `PairTotals` from the sampled rows' per-cell products, weighted by their near-zero mask, summed
    over the rows and scaled by rows / sampled rows (exact when every row is sampled)."""
    nz_cells = classes.near_zero_cells(R, r_thr)  # the mask itself is needed on the sampled rows only
    cross_p, cross_n, row_totals, mcol, sums = _weigh_sampled_cells(
        cells.p_part, cells.n_part, cells.row_counts, cells.sums, tf.gather(R, cells.rows), r_thr
    )
    unit_p, unit_n = f64(cells.unit_counts[0]), f64(cells.unit_counts[1])
    counts = exact.pair_counts(
        [[cross_p[0], cross_n[0]], [cross_p[1], cross_n[1]]],
        [row_totals[0], row_totals[1]],
        [mcol * unit_p, mcol * unit_n],
        mcol * f64(c_len),
    )
    scale = f64(n_rows) / f64(tf.maximum(tf.size(cells.rows), 1))
    return PairTotals(counts * scale, sums * scale, nz_cells)
