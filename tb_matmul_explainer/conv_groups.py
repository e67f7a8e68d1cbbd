"""Grouped convolutions (1D/2D, NHWC) as depthwise ones, and the kernel-layout moves between the two.

A grouped convolution with `groups` g has a kernel `kernel_spatial + (in_channels / g, out_channels)`: output
channel `j * out_g + d` (group j) reads input channels `j * in_g + c`. It is the depthwise convolution whose
multiplier is out_g, with the kernel moved to `kernel_spatial + (in_channels, out_g)` (`to_depthwise`), followed
by a sum over each group's in_g channels (`gather`); its gradients are the depthwise gradients with d_out spread
over those channels (`spread`). TensorFlow's depthwise kernels are fast on CPU and GPU, where its grouped
convolution is slow on CPU (and has no CPU gradients) and XLA's is slower still. A depthwise layer is the case
in_g = 1. The kernels take equal strides on both axes of a 2D convolution (TensorFlow's CPU depthwise kernels
require it); a 1D convolution runs as a 2D one of height 1. Kernels here are undilated (`conv.dilate_kernel`).
"""

import tensorflow as tf


def groups_of(in_channels, kernel_in_channels):
    """The number of groups a convolution's input and kernel channel counts imply."""
    return in_channels // kernel_in_channels


def _check_rank(spatial):
    if spatial == 3:
        raise ValueError("grouped 3D convolutions are not supported (TensorFlow has no 3D depthwise kernels)")


def to_depthwise(kernel, groups):
    """`kernel_spatial + (in_g, out)` -> `kernel_spatial + (groups * in_g, out / groups)`."""
    spatial = kernel.shape.as_list()[:-2]
    in_g, out = kernel.shape.as_list()[-2:]
    r = len(spatial)
    t = tf.reshape(kernel, spatial + [in_g, groups, out // groups])
    t = tf.transpose(t, list(range(r)) + [r + 1, r, r + 2])
    return tf.reshape(t, spatial + [groups * in_g, out // groups])


def from_depthwise(kernel, groups):
    """The inverse of `to_depthwise`: `kernel_spatial + (in, out_g)` -> `kernel_spatial + (in / groups, out)`."""
    spatial = kernel.shape.as_list()[:-2]
    cin, out_g = kernel.shape.as_list()[-2:]
    r = len(spatial)
    t = tf.reshape(kernel, spatial + [groups, cin // groups, out_g])
    t = tf.transpose(t, list(range(r)) + [r + 1, r, r + 2])
    return tf.reshape(t, spatial + [cin // groups, groups * out_g])


def spread(d_out, groups, in_g):
    """`(..., out)` -> `(..., groups * in_g * out_g)`: each group's out_g channels repeated for its in_g inputs."""
    shape = tf.shape(d_out)
    out_g = d_out.shape[-1] // groups
    t = tf.reshape(d_out, tf.concat([shape[:-1], [groups, 1, out_g]], 0))
    t = tf.broadcast_to(t, tf.concat([shape[:-1], [groups, in_g, out_g]], 0))
    return tf.reshape(t, tf.concat([shape[:-1], [groups * in_g * out_g]], 0))


def gather(t, groups, in_g):
    """`(..., groups * in_g * out_g)` -> `(..., groups * out_g)`: the sum over each group's in_g channels."""
    shape = tf.shape(t)
    out_g = t.shape[-1] // (groups * in_g)
    t = tf.reshape(t, tf.concat([shape[:-1], [groups, in_g, out_g]], 0))
    return tf.reshape(tf.reduce_sum(t, -2), tf.concat([shape[:-1], [groups * out_g]], 0))


def _as_2d(t, axis=1):
    return tf.expand_dims(t, axis)


def _strides(strides):
    if len(strides) == 1:
        return [1, strides[0], strides[0], 1]  # height 1 with kernel 1: its stride changes nothing
    if strides[0] != strides[1]:
        raise ValueError(f"grouped and depthwise convolutions take equal strides on both axes, got {strides}")
    return [1, strides[0], strides[1], 1]


def forward(inputs, kernel, strides, padding):
    """The grouped convolution (kernel's in-channels = inputs' / groups)."""
    spatial = inputs.shape.rank - 2
    _check_rank(spatial)
    groups = groups_of(inputs.shape[-1], kernel.shape[-2])
    w = to_depthwise(kernel, groups)
    if spatial == 1:
        inputs, w = _as_2d(inputs), _as_2d(w, 0)
    out = tf.nn.depthwise_conv2d(inputs, w, _strides(strides), padding)
    out = gather(out, groups, kernel.shape[-2])
    return tf.squeeze(out, 1) if spatial == 1 else out


def backprop_filter(inputs, d_out, kernel_shape, strides, padding):
    """The grouped convolution's kernel gradient, of `kernel_shape` (in-channels = inputs' / groups)."""
    spatial = inputs.shape.rank - 2
    _check_rank(spatial)
    groups = groups_of(inputs.shape[-1], kernel_shape[-2])
    d = spread(d_out, groups, kernel_shape[-2])
    sizes = list(kernel_shape[:-2]) + [inputs.shape[-1], kernel_shape[-1] // groups]
    if spatial == 1:
        inputs, d, sizes = _as_2d(inputs), _as_2d(d), [1] + sizes
    grad = tf.nn.depthwise_conv2d_backprop_filter(inputs, sizes, d, _strides(strides), padding)
    if spatial == 1:
        grad = tf.squeeze(grad, 0)
    return from_depthwise(grad, groups)


def backprop_input(d_out, kernel, input_shape, strides, padding):
    """The grouped convolution's input gradient; `input_shape` static but for the batch axis (None)."""
    spatial = len(input_shape) - 2
    _check_rank(spatial)
    groups = groups_of(input_shape[-1], kernel.shape[-2])
    d, w = spread(d_out, groups, kernel.shape[-2]), to_depthwise(kernel, groups)
    sizes = tf.concat([tf.shape(d_out)[:1], tf.constant(list(input_shape[1:]), tf.int32)], 0)
    if spatial == 1:
        d, w = _as_2d(d), _as_2d(w, 0)
        sizes = tf.concat([sizes[:1], [1], sizes[1:]], 0)
    grad = tf.nn.depthwise_conv2d_backprop_input(sizes, w, d, _strides(strides), padding)
    return tf.squeeze(grad, 1) if spatial == 1 else grad
