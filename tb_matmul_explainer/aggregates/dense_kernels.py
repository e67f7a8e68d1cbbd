"""Dense kernels: per-unit totals of a dense product over all result cells and over its near-zero cells, and the
driver shared by the three dense roles.

The logical first operand F is `[r, c]`, the second S is `[c, u]` and the result R is `[r, u]`; units are u. F is
stored as `[r, c]`, except for the kernel gradient (`batch_contracted`: F stored `[n, k]`, the product contracting
over the batch n); S is stored as `[c, u]`, or `[u, c]` when `second_transposed` (the input gradient's kernel).
"""

import tensorflow as tf

from tb_matmul_explainer.aggregates import classes, dense_sampled, exact, sampling, totals
from tb_matmul_explainer.aggregates.classes import Operand
from tb_matmul_explainer.aggregates.exact import f64
from tb_matmul_explainer.aggregates.jit import kernel
from tb_matmul_explainer.aggregates.totals import PairTotals


@kernel
def all_cells(first, second, batch_contracted, second_transposed):
    """`PairTotals` over all result cells: F's per-column class totals over its rows, then against S's classes."""
    (F, f_thr), (S, s_thr) = first, second
    r_axis = 1 if batch_contracted else 0
    cnt, sv = classes.row_class_totals(F, f_thr, r_axis)
    r = tf.shape(F)[r_axis]
    sp, sn = classes.masks(S, s_thr)
    c_len = S.shape[1 if second_transposed else 0]
    r_static = F.shape[r_axis]
    cnt_pos, cnt_neg = exact.count_pair_matmul(
        cnt, sp, sn, exact.INT32_MAX if r_static is None else r_static, c_len, transpose_b=second_transposed
    )  # [3, u] each
    units = tf.shape(S)[0 if second_transposed else 1]
    column_total = tf.reduce_sum(f64(cnt), 1)[:, None]
    counts = tf.stack([cnt_pos, column_total - cnt_pos - cnt_neg, cnt_neg], axis=1)
    s_p, s_z, _ = classes.values(S, sp, sn)
    sums = tf.stack(classes.by_class_products(sv, S, s_p, s_z, second_transposed, f64), axis=1)
    return PairTotals(counts, sums, tf.fill([units], f64(r)))


@kernel
def _stage2_elementwise(a, second, mcol, strategy, bound, exact_counts):
    """Pair totals from the stage-1 product `a` ([v*c, u]) and the second operand's classes (elementwise);
    `mcol`: the near-zero cells per unit (float64 [u])."""
    S, s_thr = second
    c_len, c_dyn, units = S.shape[0], tf.shape(S)[0], tf.shape(mcol)[0]
    v = exact.n_variants(strategy)
    a = tf.reshape(a, [v, -1, units])
    sp, sn = classes.masks(S, s_thr)
    spf, snf = tf.cast(sp, a.dtype), tf.cast(sn, a.dtype)
    a_p, a_n = exact.decode(tf.unstack(a[: v - 3]), strategy)
    count_sum = exact.exact_sum if exact_counts else exact.float64_sum
    cross, first_totals = [], []
    for a_x in (a_p, a_n):
        red = count_sum(tf.stack([a_x * spf, a_x * snf, a_x]), 1, bound, c_len)
        cross.append([red[0], red[1]])
        first_totals.append(red[2])
    s_col = [exact.exact_sum(tf.cast(m, tf.float32), 0, 1, c_len) for m in (sp, sn)]
    counts = exact.pair_counts(cross, first_totals, [mcol * s_col[0], mcol * s_col[1]], mcol * f64(c_dyn))
    s_values = tf.stack(classes.values(tf.cast(S, a.dtype), sp, sn))  # [3, c, u]
    a_v = a[v - 3 :]
    sums = f64(tf.stack([tf.reduce_sum(a_v[i][None] * s_values, 1) for i in range(3)]))
    return counts, sums


@kernel
def _unit_variants(S_units, thr, dtype):
    """The second operand's class variants, units-major: `[u, 5, c]` (P mask, N mask, P, Z, N values) in
    `dtype`, from `S_units` = S as `[u, c]`."""
    pos, neg = classes.masks(S_units, thr)
    parts = [tf.cast(pos, dtype), tf.cast(neg, dtype)] + [tf.cast(v, dtype) for v in classes.values(S_units, pos, neg)]
    return tf.stack(parts, 1)


def _near_zero_units_major(first, second, mask, second_transposed, strategy):
    """Near-zero totals when the contraction runs over the kernel (forward, input gradient): stage 1
    `M^T @ F_variants` as `[u, 5, c]`, then one batched product per unit with S's class variants (`[u, 5, c]`),
    both on TensorFlow's matmul. strategy "f32" keeps counts exact only while rows * c <= 2**24. Returns the
    counts, the sums and M's column sums."""
    (F, f_thr), (S, s_thr) = first, second
    dtype = tf.float64 if strategy == "f64" else F.dtype
    units, c_len = tf.shape(mask)[1], tf.shape(F)[1]
    fs = classes.stacked_variants(F, f_thr, strategy, 1)  # [r, 5c]
    a = tf.linalg.matmul(tf.cast(mask, dtype), fs, transpose_a=True)  # [u, 5c]
    a = tf.reshape(a, tf.stack([units, 5, c_len]))
    # TensorFlow's transpose (multithreaded) beats one inside XLA
    sv = _unit_variants(S if second_transposed else tf.transpose(S), tf.cast(s_thr, S.dtype), dtype)  # [u, 5, c]
    prod = f64(tf.linalg.matmul(a, sv, transpose_b=True))  # [u, 5, 5]
    first_totals = f64(tf.reduce_sum(a[:, :2], -1))  # [u, 2]: A_P, A_N over c
    s_col = f64(tf.reduce_sum(sv[:, :2], -1))  # [u, 2]: S's P, N per unit
    mcol = tf.reduce_sum(f64(mask), 0)
    cross = [[prod[:, i, j] for j in range(2)] for i in range(2)]
    counts = exact.pair_counts(
        cross, [first_totals[:, 0], first_totals[:, 1]], [mcol * s_col[:, 0], mcol * s_col[:, 1]], mcol * f64(c_len)
    )
    sums = tf.transpose(prod[:, 2:, 2:], [1, 2, 0])  # [3, 3, u]
    return counts, sums, mcol


def _units_major_strategy(F, rows_static, exact_counts):
    """The strategy of the units-major stage 1 (counts up to rows * c), or None when only the run time knows."""
    c_len = F.shape[1]  # integer counts stay exact in float32 while rows * c_len <= 2**24
    if F.dtype == tf.float64 or c_len is None or c_len > exact.F32_EXACT:
        return "f64"
    if not exact_counts:
        return "f32"
    if rows_static is not None:
        return "f32" if rows_static * c_len <= exact.F32_EXACT else "f64"
    return None


def near_zero(first, second, mask, batch_contracted, second_transposed, rows_static, exact_counts=True):
    """Near-zero totals and M's column sums (float64) for the 0/1 near-zero mask `mask` (`[r, u]`): one stacked
    product of F's variants with M (TensorFlow's matmul), then against S's classes: elementwise for the kernel
    gradient (contraction over the batch; the column sums from a row of ones in the product), a batched product
    per unit otherwise (contraction over the kernel). `rows_static`: the static number of batch rows (or None);
    `exact_counts=False` lets counts of sampled rows round in float32."""
    F, f_thr = first
    if not batch_contracted:
        strategy = _units_major_strategy(F, rows_static, exact_counts)
        if strategy is not None:
            return _near_zero_units_major(first, second, mask, second_transposed, strategy)
        return tf.cond(
            tf.shape(mask)[0] * F.shape[1] <= exact.F32_EXACT,
            lambda: _near_zero_units_major(first, second, mask, second_transposed, "f32"),
            lambda: _near_zero_units_major(first, second, mask, second_transposed, "f64"),
        )

    c_len = F.shape[1]

    def compute(strategy, bound):
        fs = classes.stacked_variants(F, f_thr, strategy, 0, True)
        a = tf.linalg.matmul(fs, tf.cast(mask, fs.dtype))  # [v*n + 1, u]
        if fs.dtype == tf.float64 or (c_len is not None and c_len <= exact.F32_EXACT):  # the ones row's sums exact
            mcol = f64(a[-1])
        else:
            mcol = tf.reduce_sum(f64(mask), 0)
        return _stage2_elementwise(a[:-1], second, mcol, strategy, bound, exact_counts) + (mcol,)

    return exact.by_bound(rows_static, tf.shape(mask)[0], F.dtype, compute)


def _near_zero_of_rows(first, second, R, r_thr, rows, batch_contracted, second_transposed):
    """Near-zero `PairTotals`; `rows` (or None: all) holds the sampled batch rows: rows of F and M (forward, input
    gradient) or of stored F and S (kernel gradient), the totals rescaled to all rows."""
    F, S = first.values, second.values
    if rows is None:
        counts, sums, mcol = near_zero(
            first,
            second,
            classes.result_mask(R, r_thr, False),
            batch_contracted,
            second_transposed,
            F.shape[1 if batch_contracted else 0],
        )
        return PairTotals(counts, sums, mcol)
    scale = f64(tf.shape(F)[0]) / f64(tf.maximum(tf.size(rows), 1))
    first_rows = first._replace(values=tf.gather(F, rows))
    if batch_contracted:  # every cell of M takes part (the rows sampled are the batch's, a contraction axis here)
        mask = classes.result_mask(R, r_thr, False)
        second_rows = second._replace(values=tf.gather(S, rows))
        counts, sums, nz_cells = near_zero(
            first_rows, second_rows, mask, batch_contracted, second_transposed, F.shape[1], exact_counts=False
        )
    else:  # M's sampled rows only: the cells of the whole M are counted apart
        mask, nz_cells = classes.result_mask(R, r_thr)
        counts, sums, _ = near_zero(
            first_rows, second, tf.gather(mask, rows), batch_contracted, second_transposed, None, exact_counts=False
        )
    return PairTotals(counts * scale, sums * scale, nz_cells)


def role_totals(F, S, result_fn, batch_contracted, second_transposed, opts):
    """The `UnitTotals` of a dense role: F and S stored as the module docstring says, `result_fn()` the result
    `[r, u]` (or `[k, m]` for the kernel gradient), `opts` an `Options`."""
    first = Operand(F, totals.threshold(F, sampling.FIRST, opts))
    second = Operand(S, totals.threshold(S, sampling.SECOND, opts))
    units = tf.shape(S)[0 if second_transposed else 1]
    plan = None if batch_contracted or opts.near_zero != "sampled" else dense_sampled.plan(F, S, second_transposed)
    if plan is not None:
        all_totals, cells = dense_sampled.shared_products(
            first, second, second_transposed, plan, opts.near_zero_rows, sampling.sub_seed(opts.seed, sampling.ROWS)
        )
        return totals.finish(
            opts,
            first,
            second,
            all_totals,
            units,
            result_fn,
            lambda R, r_thr: dense_sampled.near_zero(cells, R, r_thr, tf.shape(F)[0], tf.shape(F)[1]),
        )
    all_totals = all_cells(first, second, batch_contracted, second_transposed)

    def near_zero_fn(R, r_thr):
        def exact_totals():
            return _near_zero_of_rows(first, second, R, r_thr, None, batch_contracted, second_transposed)

        def sampled_totals():  # stored axis 0 of F holds the batch rows in every dense role
            rows = sampling.sample_rows(
                tf.shape(F)[0], opts.near_zero_rows, sampling.sub_seed(opts.seed, sampling.ROWS)
            )
            return _near_zero_of_rows(first, second, R, r_thr, rows, batch_contracted, second_transposed)

        if opts.near_zero == "exact":
            return exact_totals()
        return sampling.exact_or_sampled(F.shape[0], tf.shape(F)[0], opts.near_zero_rows, exact_totals, sampled_totals)

    return totals.finish(opts, first, second, all_totals, units, result_fn, near_zero_fn)
