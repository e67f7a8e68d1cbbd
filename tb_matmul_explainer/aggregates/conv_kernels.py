"""Convolution kernels: per-channel totals of a convolution, its kernel gradient and its input gradient over all
result cells and over the near-zero cells, and the driver shared by the three convolution roles.

All cells: the batch-summed classes of one operand, summed over each kernel offset's patches (a backprop-filter
or box sum of few channels), then against the other operand's classes. Near zero: one convolution-shaped product
of the first operand's stage-1 variants with M (TensorFlow's kernels), then against the second operand's classes.
Shapes are NHWC (`tb_matmul_explainer.conv`); SAME padding is in no class.
"""

import math
from typing import NamedTuple

import tensorflow as tf

from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer.aggregates import classes, conv_sampled, exact, sampling, totals
from tb_matmul_explainer.aggregates.classes import Operand
from tb_matmul_explainer.aggregates.exact import f64
from tb_matmul_explainer.aggregates.jit import kernel
from tb_matmul_explainer.aggregates.totals import PairTotals


class Geometry(NamedTuple):
    """A convolution's static geometry (Python values: it keys the compiled kernels)."""

    input_shape: tuple  # (batch,) + spatial + (in_channels,); batch may be None
    kernel_shape: tuple  # kernel_spatial + (in_channels, out_channels)
    strides: tuple  # one int per spatial axis
    padding: str  # "VALID" or "SAME"
    dilations: tuple = None  # one int per spatial axis (None: 1)
    groups: int = 1  # the kernel's in_channels are the input's / groups (`conv_groups`)


def _split(t, axis, groups):
    """`t` with its axis `axis` (>= 0) split into `(groups, size / groups)`."""
    shape = [tf.shape(t)[i] if d is None else d for i, d in enumerate(t.shape.as_list())]
    return tf.reshape(t, shape[:axis] + [groups, shape[axis] // groups] + shape[axis + 1 :])


def _kernel_classes(w, geometry):
    """The kernel's `ClassStack`, each part `[3, kp, in_g, groups, out_g]`."""
    kshape, g = list(geometry.kernel_shape), geometry.groups
    shape = [conv_lib.kernel_offsets(kshape), kshape[-2], g, kshape[-1] // g]
    return classes.class_stack(w.values, w.threshold, shape)


def _group_major(t, groups, parts):
    """Channels laid out `(parts, groups, size)` -> `(groups, parts, size)`, so that each group's are contiguous
    (the stacked stage-1 variants of an operand, for a grouped product)."""
    if groups == 1:
        return t
    shape = tf.shape(t)
    c = t.shape[-1]
    t = tf.reshape(t, tf.concat([shape[:-1], [parts, groups, c // (parts * groups)]], 0))
    rank = t.shape.rank
    t = tf.transpose(t, list(range(rank - 3)) + [rank - 2, rank - 3, rank - 1])
    return tf.reshape(t, tf.concat([shape[:-1], [c]], 0))


def _batch_class_totals(t):
    """Over the batch (axis 0): the P, Z, N counts and value sums of `t`'s classes, float64, stacked on the channel
    axis `[S, 6C]`, as one image `[1, S, 6C]`."""
    (x, thr) = t
    pos, neg = classes.masks(x, thr)
    b = tf.shape(x)[0]
    cnt_p = tf.reduce_sum(tf.cast(pos, tf.int32), 0)
    cnt_n = tf.reduce_sum(tf.cast(neg, tf.int32), 0)
    chans = [cnt_p, b - cnt_p - cnt_n, cnt_n] + [tf.reduce_sum(v, 0) for v in classes.values(x, pos, neg)]
    return tf.concat([f64(c) for c in chans], -1)[None]


def _forward_all(x, w, geometry):
    """All-cells totals of conv forward: patch sums per kernel offset of the batch-summed classes."""
    kshape, g = list(geometry.kernel_shape), geometry.groups
    cin, cout = x.values.shape[-1], kshape[-1]
    kp = conv_lib.kernel_offsets(kshape)
    xbar = _batch_class_totals(x)  # [1, S, 6 cin]
    strides, padding, dilations = geometry.strides, geometry.padding, geometry.dilations
    out_spatial = conv_lib.output_shape([1] + x.values.shape.as_list()[1:], kshape, strides, padding, dilations)[1:-1]
    ones = conv_lib.valid_ones(out_spatial, tf.float64)
    pat = conv_lib.backprop_filter(xbar, ones, kshape[:-2] + [6 * cin, 1], strides, padding, dilations)
    pat = tf.transpose(tf.reshape(pat, [kp, 6, g, cin // g]), [1, 0, 2, 3])  # [6, kp, groups, in_g]
    w_classes = _kernel_classes(w, geometry)
    counts = tf.reshape(tf.einsum("akgc,bkcgd->abgd", pat[:3], w_classes.counts), [3, 3, cout])
    sums = tf.reshape(tf.einsum("akgc,bkcgd->abgd", pat[3:], w_classes.values), [3, 3, cout])
    cells = tf.fill([cout], f64(tf.shape(x.values)[0]) * int(math.prod(out_spatial)))
    return PairTotals(counts, sums, cells)


def _window_sums(t, geometry):
    """Per channel of `t`, its sum over each output position's kernel taps (padding adds nothing): shifted slices
    for the few channels of an ungrouped convolution, TensorFlow's depthwise kernels (an all-ones kernel) for the
    many of a grouped one (slices over thousands of channels are slow)."""
    spatial = list(geometry.kernel_shape[:-2])
    if geometry.groups == 1:
        return conv_lib.box_sums(t, spatial, geometry.strides, geometry.padding, geometry.dilations)
    ones = tf.ones(spatial + [1, t.shape[-1]], t.dtype)
    return conv_lib.forward(t, ones, geometry.strides, geometry.padding, geometry.dilations)


def _box_count_pairs(box_counts, dp, dn, bound, positions, groups):
    """Exact float64 `[3, cout]` each: per box-count class and unit, the box counts (`[B, positions, 3, groups]`,
    each <= bound) summed over the positions where d_out is P, and where it is N (masks `[B, S'..., cout]`)."""
    b, cout = tf.shape(dp)[0], dp.shape[-1]
    if groups == 1:
        # Exact per image (one packed float32 matmul where the bound allows), then summed over the batch.
        per_pos, per_neg = exact.count_pair_matmul(
            tf.cast(box_counts[..., 0], tf.int32),
            tf.reshape(dp, [b, positions, cout]),
            tf.reshape(dn, [b, positions, cout]),
            bound,
            positions,
            transpose_a=True,
        )  # [B, 3, cout] each
        return tf.reduce_sum(per_pos, 0), tf.reduce_sum(per_neg, 0)
    # Grouped (a depthwise layer: a group per channel): products per group, summed per image in float32 where
    # that is exact (bound x positions < 2**24; float64 otherwise), then over the batch in float64.
    dtype = tf.float32 if bound * positions < 2**24 else tf.float64
    box_counts = tf.cast(box_counts, dtype)[..., None]
    per_image = [tf.reduce_sum(box_counts * tf.cast(_per_group(m, b, positions, groups), dtype), 1) for m in (dp, dn)]
    return [tf.reshape(tf.reduce_sum(f64(t), 0), [3, cout]) for t in per_image]


def _box_value_sums(box_values, d_values, b, positions, groups):
    """`[3, cout]` float64: the box value sums (`[B, positions, 3, groups]`) against one class of d_out's values."""
    if groups == 1:
        rows = tf.reshape(box_values, [-1, 3])
        return f64(tf.linalg.matmul(rows, classes.as_rows(d_values), transpose_a=True))
    products = tf.reduce_sum(box_values[..., None] * _per_group(d_values, b, positions, groups), [0, 1])
    return tf.reshape(f64(products), [3, -1])


def _per_group(t, b, positions, groups):
    """`[B, S'..., cout]` -> `[B, positions, 1, groups, out_g]` (to broadcast against `[B, positions, 3, groups]`)."""
    return tf.reshape(t, [b, positions, 1, groups, -1])


def _kernel_gradient_all(x, d, geometry):
    """All-cells totals of the conv kernel gradient: box filter of each group's channel sums against d_out's
    classes."""
    (X, x_thr), (D, d_thr) = x, d
    kshape, g = list(geometry.kernel_shape), geometry.groups
    in_g, cout = kshape[-2], kshape[-1]
    kp = conv_lib.kernel_offsets(kshape)
    xp, xn = classes.masks(X, x_thr)
    cnt_p = tf.reduce_sum(_split(tf.cast(xp, X.dtype), X.shape.rank - 1, g), -1)  # [B, S..., groups]
    cnt_n = tf.reduce_sum(_split(tf.cast(xn, X.dtype), X.shape.rank - 1, g), -1)
    x_sums = [tf.reduce_sum(_split(v, X.shape.rank - 1, g), -1) for v in classes.values(X, xp, xn)]
    # Box sums of the channel sums; counts and values summed apart so a non-finite value cannot reach a count.
    box = [_window_sums(tf.concat(chans, -1), geometry) for chans in ([cnt_p, in_g - cnt_p - cnt_n, cnt_n], x_sums)]
    positions = conv_lib.spatial_size(D.shape.as_list())
    b = tf.shape(D)[0]
    box = tf.reshape(tf.concat(box, -1), [b, positions, 6, g])
    dp, dn = classes.masks(D, d_thr)
    cnt_pos, cnt_neg = _box_count_pairs(box[:, :, :3], dp, dn, kp * in_g, positions, g)
    # Box counts per class and group: per image in float32 where exact (<= kp * in_g * positions < 2**24).
    box_counts = box[:, :, :3] if kp * in_g * positions < 2**24 else f64(box[:, :, :3])
    column_total = tf.repeat(tf.reduce_sum(f64(tf.reduce_sum(box_counts, 1)), 0), cout // g, axis=1)  # [3, cout]
    counts = tf.stack([cnt_pos, column_total - cnt_pos - cnt_neg, cnt_neg], axis=1)
    sums = tf.stack([_box_value_sums(box[:, :, 3:], v, b, positions, g) for v in classes.values(D, dp, dn)], axis=1)
    cells = tf.fill([cout], tf.constant(float(kp * in_g), tf.float64))
    return PairTotals(counts, tf.reshape(sums, [3, 3, cout]), cells)


def _input_gradient_all(d, w, geometry):
    """All-cells totals of the conv input gradient: patch sums of the batch-summed d_out classes per offset."""
    kshape, input_shape, g = list(geometry.kernel_shape), list(geometry.input_shape), geometry.groups
    cin, cout = input_shape[-1], kshape[-1]
    kp = conv_lib.kernel_offsets(kshape)
    dbar = _batch_class_totals(d)  # [1, S', 6 cout]
    ones = conv_lib.valid_ones(input_shape[1:-1], tf.float64)
    pat = conv_lib.backprop_filter(
        ones, dbar, kshape[:-2] + [1, 6 * cout], geometry.strides, geometry.padding, geometry.dilations
    )
    pat = tf.transpose(tf.reshape(pat, [kp, 6, g, cout // g]), [1, 0, 2, 3])  # [6, kp, groups, out_g]
    w_classes = _kernel_classes(w, geometry)
    counts = tf.reshape(tf.einsum("akgd,bkcgd->abgc", pat[:3], w_classes.counts), [3, 3, cin])
    sums = tf.reshape(tf.einsum("akgd,bkcgd->abgc", pat[3:], w_classes.values), [3, 3, cin])
    cells = tf.fill([cin], f64(tf.shape(d.values)[0]) * float(math.prod(input_shape[1:-1])))
    return PairTotals(counts, sums, cells)


def _all_cells(role, first, second, geometry):
    all_of = {"forward": _forward_all, "kernel_gradient": _kernel_gradient_all, "input_gradient": _input_gradient_all}[
        role
    ]
    return all_of(first, second, geometry)


_compiled_all_cells = kernel(_all_cells)


def all_cells(role, first, second, geometry):
    """All-cells `PairTotals` of a convolution role. A grouped kernel gradient runs uncompiled: its window sums
    and per-group products over many channels took 5-10x longer under XLA on CPU (measured, 144 channels)."""
    if role == "kernel_gradient" and geometry.groups > 1:
        return _all_cells(role, first, second, geometry)
    return _compiled_all_cells(role, first, second, geometry)


@kernel
def _stage2_against_kernel(a, w, any_first, strategy, units_of, groups):
    """Pair totals from a kernel-shaped stage-1 product `a` ([kp, (v, in_g), cout] for "forward",
    [kp, in_g, (groups, v, out_g)] for "input_gradient") and the kernel's classes. any_first: products in near-zero
    cells whose first factor is of any class, per kernel entry, `[kp, in_g, groups, out_g or 1]`."""
    kshape = w.values.shape.as_list()
    in_g, cout = kshape[-2], kshape[-1]
    kp, out_g = conv_lib.kernel_offsets(kshape), cout // groups
    v = exact.n_variants(strategy)
    if units_of == "forward":
        a = tf.transpose(tf.reshape(a, [kp, v, in_g, groups, out_g]), [1, 0, 2, 3, 4])  # [v, kp, in_g, g, out_g]
    else:
        a = tf.transpose(tf.reshape(a, [kp, in_g, groups, v, out_g]), [3, 0, 1, 2, 4])
    a_p, a_n = (f64(t) for t in exact.decode(tf.unstack(a[: v - 3]), strategy))
    a_counts = tf.stack([a_p, any_first - a_p - a_n, a_n])
    w_classes = classes.class_stack(w.values, w.threshold, [kp, in_g, groups, out_g])
    spec, units = ("akcgd,bkcgd->abgd", cout) if units_of == "forward" else ("akcgd,bkcgd->abgc", in_g * groups)
    counts = tf.einsum(spec, a_counts, w_classes.counts)
    return tf.reshape(counts, [3, 3, units]), tf.reshape(
        tf.einsum(spec, f64(a[v - 3 :]), w_classes.values), [3, 3, units]
    )


def _forward_near_zero(x, w, mask, geometry):
    """Near-zero totals of conv forward: backprop_filter(x variants, M) (TensorFlow), then against the kernel."""
    kshape, g = list(geometry.kernel_shape), geometry.groups
    strides, padding, dilations = geometry.strides, geometry.padding, geometry.dilations
    in_g, cout = kshape[-2], kshape[-1]
    kp = conv_lib.kernel_offsets(kshape)
    # Products whose first factor is anything: patch counts of the valid input (padding excluded) against M.
    msum = tf.reduce_sum(f64(mask), 0)[None]  # [1, S', cout]
    any_first = conv_lib.backprop_filter(
        conv_lib.valid_ones(x.values.shape[1:-1], tf.float64),
        msum,
        kshape[:-2] + [1, cout],
        strides,
        padding,
        dilations,
    )
    any_first = tf.reshape(any_first, [kp, 1, g, cout // g]) * tf.ones([1, in_g, 1, 1], tf.float64)

    def compute(strategy, bound):
        v = exact.n_variants(strategy)
        xs = _group_major(classes.stacked_variants(x.values, x.threshold, strategy, -1), g, v)
        a = conv_lib.backprop_filter(
            xs, tf.cast(mask, xs.dtype), kshape[:-2] + [v * in_g, cout], strides, padding, dilations
        )
        return _stage2_against_kernel(a, w, any_first, strategy, "forward", g)

    bound_static = conv_lib.batch_positions(mask.shape.as_list())
    bound_dynamic = tf.size(mask, out_type=tf.int64) // max(cout, 1)
    return exact.by_bound(bound_static, bound_dynamic, x.values.dtype, compute)


@kernel
def _stage2_elementwise(a, d, any_first, strategy, bound):
    """Pair totals from a = conv(x variants, M) ([v*B, S', cout]) and d_out's classes, elementwise."""
    D, d_thr = d
    cout = D.shape[-1]
    positions = conv_lib.spatial_size(D.shape.as_list())
    b = tf.shape(D)[0]
    v = exact.n_variants(strategy)
    a = tf.reshape(a, [v, b, positions, cout])
    dp, dn = classes.masks(D, d_thr)
    dpf = tf.reshape(tf.cast(dp, a.dtype), [b, positions, cout])
    dnf = tf.reshape(tf.cast(dn, a.dtype), [b, positions, cout])
    a_p, a_n = exact.decode(tf.unstack(a[: v - 3]), strategy)
    cross, first_totals = [], []
    for a_x in (a_p, a_n):
        per_image = exact.exact_sum(tf.stack([a_x * dpf, a_x * dnf, a_x]), 2, bound, positions)  # [3, B, cout]
        red = tf.reduce_sum(per_image, 1)
        cross.append([red[0], red[1]])
        first_totals.append(red[2])
    # Products whose first factor is anything, per position (the same for every image).
    d_batch = [tf.reshape(f64(tf.reduce_sum(tf.cast(t, tf.int32), 0)), [positions, cout]) for t in (dp, dn)]
    col_b = [tf.reduce_sum(any_first * t, 0) for t in d_batch]
    size = f64(b) * tf.reduce_sum(any_first, 0)
    counts = exact.pair_counts(cross, first_totals, col_b, size)
    d_values = tf.reshape(tf.stack(classes.values(tf.cast(D, a.dtype), dp, dn)), [3, b, positions, cout])
    a_v = a[v - 3 :]
    sums = f64(tf.stack([tf.reduce_sum(a_v[i][None] * d_values, [1, 2]) for i in range(3)]))
    return counts, sums


def _kernel_gradient_near_zero(x, d, mask, geometry):
    """Near-zero totals of the conv kernel gradient: conv(x variants, M) (TensorFlow), then against d_out."""
    kshape = list(geometry.kernel_shape)
    strides, padding, dilations = geometry.strides, geometry.padding, geometry.dilations
    in_g, cout = kshape[-2], kshape[-1]
    positions = conv_lib.spatial_size(d.values.shape.as_list())
    ones = tf.ones([1] + x.values.shape.as_list()[1:], tf.float32)
    any_first = conv_lib.forward(ones, tf.cast(mask, tf.float32), strides, padding, dilations)  # [1, S', cout]
    any_first = tf.reshape(f64(any_first), [positions, cout])
    bound = conv_lib.kernel_offsets(kshape) * in_g
    strategy = exact.strategy(bound, x.values.dtype)
    xs = classes.stacked_variants(x.values, x.threshold, strategy, 0)  # [v*B, S, cin]
    a = conv_lib.forward(xs, tf.cast(mask, xs.dtype), strides, padding, dilations)  # [v*B, S', cout]
    return _stage2_elementwise(a, d, any_first, strategy, bound)


def _input_gradient_near_zero(d, w, mask, geometry):
    """Near-zero totals of the conv input gradient: backprop_filter(M, d_out variants) (TensorFlow), then
    against the kernel."""
    kshape, g = list(geometry.kernel_shape), geometry.groups
    strides, padding, dilations = geometry.strides, geometry.padding, geometry.dilations
    in_g, cout, cin = kshape[-2], kshape[-1], geometry.input_shape[-1]
    kp = conv_lib.kernel_offsets(kshape)
    D = d.values
    # Products whose first factor is anything: d_out positions reaching each near-zero input cell.
    msum = tf.reduce_sum(f64(mask), 0)[None]  # [1, S, cin]
    any_first = conv_lib.backprop_filter(
        msum,
        conv_lib.valid_ones(D.shape.as_list()[1:-1], tf.float64),
        kshape[:-2] + [cin, 1],
        strides,
        padding,
        dilations,
    )
    any_first = tf.transpose(tf.reshape(any_first, [kp, g, in_g, 1]), [0, 2, 1, 3])  # [kp, in_g, groups, 1]

    def compute(strategy, bound):
        v = exact.n_variants(strategy)
        ds = _group_major(classes.stacked_variants(D, d.threshold, strategy, -1), g, v)
        a = conv_lib.backprop_filter(
            tf.cast(mask, ds.dtype), ds, kshape[:-2] + [in_g, v * cout], strides, padding, dilations
        )
        return _stage2_against_kernel(a, w, any_first, strategy, "input_gradient", g)

    bound_static = conv_lib.batch_positions(D.shape.as_list())
    bound_dynamic = tf.size(D, out_type=tf.int64) // max(cout, 1)
    return exact.by_bound(bound_static, bound_dynamic, D.dtype, compute)


def _near_zero_of_positions(role, first, second, R, r_thr, geometry, positions):
    """Near-zero `PairTotals`; `positions` (or None: all) holds sampled flat (batch, output position) indices."""
    if positions is not None:
        nz_cells = classes.near_zero_cells(R, r_thr)
        counts, sums = conv_sampled.near_zero(role, first, second, R, r_thr, geometry, positions)
        return PairTotals(counts, sums, nz_cells)
    mask, nz_cells = classes.result_mask(R, r_thr)
    near_zero_of = {
        "forward": _forward_near_zero,
        "kernel_gradient": _kernel_gradient_near_zero,
        "input_gradient": _input_gradient_near_zero,
    }[role]
    counts, sums = near_zero_of(first, second, mask, geometry)
    return PairTotals(counts, sums, nz_cells)


def role_totals(role, first_values, second_values, geometry, result_fn, opts):
    """The `UnitTotals` of a convolution role: `first_values` and `second_values` its operands (validated),
    `geometry` a `Geometry`, `result_fn()` the result, `opts` an `Options`."""
    first = Operand(first_values, totals.threshold(first_values, sampling.FIRST, opts))
    second = Operand(second_values, totals.threshold(second_values, sampling.SECOND, opts))
    all_totals = all_cells(role, first, second, geometry)
    units = geometry.input_shape[-1] if role == "input_gradient" else geometry.kernel_shape[-1]

    def near_zero_fn(R, r_thr):
        def exact_totals():
            return _near_zero_of_positions(role, first, second, R, r_thr, geometry, None)

        # near_zero="sampled": (batch, output position) pairs of d_out (gradients) or of the result (forward).
        d_like = conv_sampled.d_like(role, first.values, second.values, R)
        d_positions = classes.leading_size(d_like)

        def sampled_totals():
            positions = sampling.sample_rows(
                d_positions, opts.near_zero_rows, sampling.sub_seed(opts.seed, sampling.ROWS)
            )
            return _near_zero_of_positions(role, first, second, R, r_thr, geometry, positions)

        if opts.near_zero == "exact":
            return exact_totals()
        return sampling.exact_or_sampled(
            conv_lib.batch_positions(d_like.shape.as_list()),
            d_positions,
            opts.near_zero_rows,
            exact_totals,
            sampled_totals,
        )

    return totals.finish(opts, first, second, all_totals, units, result_fn, near_zero_fn)
