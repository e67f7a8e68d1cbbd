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


def _against_kernel(a, any_first, w, spec):
    """Pair totals from the sample's first-operand products `a` (`[5, kp, cin, cout]`: P, N masks, P, Z, N values)
    and `any_first` (products whose first factor is of any class) against the kernel's classes."""
    kshape = w.values.shape.as_list()
    w_classes = classes.class_stack(w.values, w.threshold, [conv_lib.kernel_offsets(kshape)] + kshape[-2:])
    a_counts = tf.stack([a[0], any_first - a[0] - a[1], a[1]])
    return tf.einsum(spec, a_counts, w_classes.counts), tf.einsum(spec, a[2:], w_classes.values)


def _forward(x, w, R, r_thr, geometry, positions, scale):
    kshape = list(geometry.kernel_shape)
    kp, cin, cout = conv_lib.kernel_offsets(kshape), kshape[-2], kshape[-1]
    patch_x, valid = _patches(x.values, positions, geometry)
    parts = _sampled_variants(patch_x, x.threshold, valid[..., None])
    dtype = x.values.dtype
    m_s = tf.cast(classes.near_zero_mask(_rows_at(R, positions), r_thr), dtype)  # [s, cout]
    a = tf.linalg.matmul(tf.concat([tf.reshape(p, [-1, kp * cin]) for p in parts], -1), m_s, transpose_a=True)
    a = tf.reshape(f64(a), [5, kp, cin, cout]) * scale
    any_first = f64(tf.linalg.matmul(tf.cast(valid, dtype), m_s, transpose_a=True))  # [kp, cout]
    any_first = tf.reshape(any_first, [kp, 1, cout]) * scale
    return _against_kernel(a, any_first, w, "akcd,bkcd->abd")


def _input_gradient(d, w, R, r_thr, geometry, positions, scale):
    kshape = list(geometry.kernel_shape)
    kp, cin, cout = conv_lib.kernel_offsets(kshape), kshape[-2], kshape[-1]
    dtype = d.values.dtype
    patch_r, valid = _patches(R, positions, geometry)
    patch_m = tf.cast(classes.near_zero_mask(patch_r, r_thr) & valid[..., None], dtype)  # padding: no cell
    parts = _sampled_variants(_rows_at(d.values, positions), d.threshold)  # [s, cout] each
    a = tf.linalg.matmul(tf.reshape(patch_m, [-1, kp * cin]), tf.concat(parts, -1), transpose_a=True)
    a = tf.transpose(tf.reshape(f64(a), [kp, cin, 5, cout]), [2, 0, 1, 3]) * scale
    any_first = tf.reshape(f64(tf.reduce_sum(patch_m, 0)), [kp, cin, 1]) * scale
    return _against_kernel(a, any_first, w, "akcd,bkcd->abc")


def _kernel_gradient(x, d, R, r_thr, geometry, positions, scale):
    kshape = list(geometry.kernel_shape)
    kp, cin, cout = conv_lib.kernel_offsets(kshape), kshape[-2], kshape[-1]
    dtype = x.values.dtype
    patch_x, valid = _patches(x.values, positions, geometry)
    parts = _sampled_variants(patch_x, x.threshold, valid[..., None])
    m = tf.reshape(tf.cast(classes.near_zero_mask(R, r_thr), dtype), [kp * cin, cout])
    a = tf.stack([tf.linalg.matmul(tf.reshape(p, [-1, kp * cin]), m) for p in parts])  # [5, s, cout]
    d_classes = classes.class_stack(_rows_at(d.values, positions), d.threshold)  # [3, s, cout] each
    any_first = tf.linalg.matmul(tf.cast(tf.repeat(valid, cin, axis=1), dtype), m)  # [s, cout]
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
