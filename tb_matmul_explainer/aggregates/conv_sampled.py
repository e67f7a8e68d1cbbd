"""Convolutions with near_zero="sampled": near-zero pair totals estimated from sampled (batch, output position)
pairs and rescaled to all of them. The near-zero mask of the result is only formed where the sample reads it; the
patches read at the sampled positions come from `tb_matmul_explainer.conv.patches`.
"""

import tensorflow as tf

from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer.aggregates import classes
from tb_matmul_explainer.aggregates.exact import f64
from tb_matmul_explainer.aggregates.jit import kernel


def d_like(role, first, second, R):
    """The tensor whose (batch, output position) pairs are sampled: d_out for the gradients, the result (the
    layer's output) for forward."""
    return {"forward": R, "kernel_gradient": second, "input_gradient": first}[role]


def _sampled_variants(t, thr, valid=None):
    """P and N masks and the P, Z, N values of sampled patches (padding in no class), float."""
    pos, neg = classes.masks(t, thr)
    if valid is not None:
        pos, neg = pos & valid, neg & valid
    return [tf.cast(pos, t.dtype), tf.cast(neg, t.dtype)] + classes.values(t, pos, neg)


def _rows_at(t, positions):
    """The rows of `t` (flattened to `[rows, channels]`) at the sampled positions."""
    return tf.gather(classes.as_rows(t), positions)


def _out_spatial(geometry):
    kshape = list(geometry.kernel_shape)
    return conv_lib.output_shape(
        [1] + list(geometry.input_shape[1:]), kshape, geometry.strides, geometry.padding, geometry.dilations
    )[1:-1]


def _patches(t, positions, geometry):
    return conv_lib.patches(
        t,
        positions,
        list(geometry.kernel_shape)[:-2],
        _out_spatial(geometry),
        geometry.strides,
        geometry.padding,
        geometry.dilations,
    )


def _sizes(geometry):
    """(kernel offsets, in_g, groups, out_g) of a convolution."""
    kshape, g = list(geometry.kernel_shape), geometry.groups
    return conv_lib.kernel_offsets(kshape), kshape[-2], g, kshape[-1] // g


def _against_kernel(a, any_first, w, geometry, units_of):
    """Pair totals from the sample's first-operand products `a` (`[5, kp, in_g, groups, out_g]`: P, N masks, P, Z,
    N values) and `any_first` (products whose first factor is of any class) against the kernel's classes."""
    kp, in_g, g, out_g = _sizes(geometry)
    w_classes = classes.class_stack(w.values, w.threshold, [kp, in_g, g, out_g])
    a_counts = tf.stack([a[0], any_first - a[0] - a[1], a[1]])
    spec, units = ("akcgd,bkcgd->abgd", g * out_g) if units_of == "forward" else ("akcgd,bkcgd->abgc", g * in_g)
    counts, sums = tf.einsum(spec, a_counts, w_classes.counts), tf.einsum(spec, a[2:], w_classes.values)
    return tf.reshape(counts, [3, 3, units]), tf.reshape(sums, [3, 3, units])


def _forward(x, w, R, r_thr, geometry, positions, scale):
    kp, in_g, g, out_g = _sizes(geometry)
    patch_x, valid = _patches(x.values, positions, geometry)
    parts = _sampled_variants(patch_x, x.threshold, valid[..., None])
    dtype = x.values.dtype
    m_s = tf.cast(classes.near_zero_mask(_rows_at(R, positions), r_thr), dtype)  # [s, cout]
    parts = tf.reshape(tf.stack(parts), [5, -1, kp, g, in_g])
    a = tf.einsum("pskgc,sgd->pkcgd", parts, tf.reshape(m_s, [-1, g, out_g]))
    any_first = f64(tf.linalg.matmul(tf.cast(valid, dtype), m_s, transpose_a=True))  # [kp, cout]
    any_first = tf.reshape(any_first, [kp, 1, g, out_g]) * scale
    return _against_kernel(f64(a) * scale, any_first, w, geometry, "forward")


def _input_gradient(d, w, R, r_thr, geometry, positions, scale):
    kp, in_g, g, out_g = _sizes(geometry)
    dtype = d.values.dtype
    patch_r, valid = _patches(R, positions, geometry)
    patch_m = tf.cast(classes.near_zero_mask(patch_r, r_thr) & valid[..., None], dtype)  # padding: no cell
    patch_m = tf.reshape(patch_m, [-1, kp, g, in_g])
    parts = _sampled_variants(_rows_at(d.values, positions), d.threshold)  # [s, cout] each
    a = tf.einsum("skgc,psgd->pkcgd", patch_m, tf.reshape(tf.stack(parts), [5, -1, g, out_g]))
    any_first = tf.transpose(f64(tf.reduce_sum(patch_m, 0)), [0, 2, 1])[..., None] * scale  # [kp, in_g, g, 1]
    return _against_kernel(f64(a) * scale, any_first, w, geometry, "input_gradient")


def _kernel_gradient(x, d, R, r_thr, geometry, positions, scale):
    kp, in_g, g, out_g = _sizes(geometry)
    dtype = x.values.dtype
    patch_x, valid = _patches(x.values, positions, geometry)
    parts = tf.reshape(tf.stack(_sampled_variants(patch_x, x.threshold, valid[..., None])), [5, -1, kp, g, in_g])
    m = tf.reshape(tf.cast(classes.near_zero_mask(R, r_thr), dtype), [kp, in_g, g, out_g])
    a = tf.reshape(tf.einsum("pskgc,kcgd->psgd", parts, m), [5, -1, g * out_g])  # [5, s, cout]
    d_classes = classes.class_stack(_rows_at(d.values, positions), d.threshold)  # [3, s, cout] each
    any_first = tf.reshape(tf.einsum("sk,kcgd->sgd", tf.cast(valid, dtype), m), [-1, g * out_g])  # [s, cout]
    a = f64(a)
    a_counts = tf.stack([a[0], f64(any_first) - a[0] - a[1], a[1]])
    counts = tf.einsum("asd,bsd->abd", a_counts, d_classes.counts) * scale
    sums = tf.einsum("asd,bsd->abd", a[2:], d_classes.values) * scale
    return counts, sums


@kernel
def near_zero(role, first, second, R, r_thr, geometry, positions):
    """Near-zero (counts, sums) `[3, 3, U]` of a convolution role (first, second: `classes.Operand`s, R the
    result, geometry a `conv_kernels.Geometry`) from the sampled flat (batch, output position) `positions`,
    rescaled to all positions."""
    total = tf.cast(classes.leading_size(d_like(role, first.values, second.values, R)), tf.int64)
    scale = f64(total) / f64(tf.maximum(tf.size(positions), 1))
    role_fn = {"forward": _forward, "kernel_gradient": _kernel_gradient, "input_gradient": _input_gradient}[role]
    return role_fn(first, second, R, r_thr, geometry, positions, scale)
