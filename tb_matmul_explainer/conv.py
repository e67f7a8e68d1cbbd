"""Convolution geometry and the two convolution gradients, for NHWC 1D/2D/3D convolutions.

Shapes: inputs `(batch,) + spatial + (in_channels,)`, kernel `kernel_spatial + (in_channels, out_channels)`,
result `(batch,) + out_spatial + (out_channels,)`. Strides are per spatial axis; padding is 'VALID' or 'SAME'
(TensorFlow's rule). Dilation is not supported.

`backprop_filter` and `backprop_input` are linear in each operand, which is what lets the classifiers apply them
to class-masked operands. TensorFlow's convolution kernels mishandle zero-size operands (an empty batch returns
the input's shape), so every function here returns correctly shaped zeros when an operand is statically empty.
"""

import math

import tensorflow as tf

from tb_matmul_explainer import validation


def check_operands(input_shape, kernel_shape, inputs_name="inputs", kernel_name="kernel"):
    """Validates ranks and channel agreement of two shapes; returns the number of spatial axes (1, 2 or 3)."""
    input_shape, kernel_shape = tf.TensorShape(input_shape), tf.TensorShape(kernel_shape)
    validation.check_shape_rank(input_shape, inputs_name, 3, 5)
    validation.check_shape_rank(kernel_shape, kernel_name, 3, 5)
    if kernel_shape.rank != input_shape.rank:
        raise ValueError(f"{kernel_name} must have the same rank as {inputs_name} ({input_shape.rank}), "
                         f"got {kernel_name} shape {kernel_shape} and {inputs_name} shape {input_shape}")
    if any(d == 0 for d in kernel_shape[:-2]):
        raise ValueError(f"{kernel_name} must have a non-empty window (spatial sizes >= 1), got shape {kernel_shape}")
    cin, kcin = input_shape[-1], kernel_shape[-2]
    if cin is not None and kcin is not None and cin != kcin:
        raise ValueError(f"{kernel_name} in-channels ({kcin}) must equal {inputs_name} channels ({cin}): "
                         f"shapes {kernel_shape} and {input_shape}")
    return input_shape.rank - 2


def output_spatial_size(size, kernel_size, stride, padding):
    """TensorFlow's output length along one spatial axis (None if `size` is unknown)."""
    if size is None:
        return None
    if padding == "SAME":
        return math.ceil(size / stride)
    return max(0, math.ceil((size - kernel_size + 1) / stride))


def output_shape(input_shape, kernel_shape, strides, padding):
    """Static result shape (a list; unknown entries are None) of a convolution."""
    spatial = [output_spatial_size(s, k, st, padding)
               for s, k, st in zip(input_shape[1:-1], kernel_shape[:-2], strides)]
    return [input_shape[0]] + spatial + [kernel_shape[-1]]


def _statically_empty(*tensors):
    return any(0 in t.shape.as_list() for t in tensors if t.shape.rank is not None)


def _as_2d(tensor):
    """Inserts a unit spatial axis so that a 1D convolution runs as a 2D one."""
    return tf.expand_dims(tensor, 1)


def _zeros(shape, batch_from, dtype):
    """Zeros of a static `shape` whose batch entry (first) may be None: then it is taken from `batch_from`."""
    if shape[0] is not None:
        return tf.zeros(shape, dtype)
    return tf.zeros(tf.concat([tf.shape(batch_from)[:1], tf.constant(shape[1:], tf.int32)], 0), dtype)


def forward(inputs, kernel, strides, padding):
    """The convolution itself; zeros of the right shape when an operand or the result is empty.

    (With VALID padding and a kernel larger than the input the result has a zero-size spatial axis; TensorFlow's
    kernels then return a wrong shape or raise.)"""
    shape = output_shape(inputs.shape.as_list(), kernel.shape.as_list(), strides, padding)
    if _statically_empty(inputs, kernel) or 0 in shape:
        return _zeros(shape, inputs, inputs.dtype)
    return tf.nn.convolution(inputs, kernel, strides=strides, padding=padding)


def backprop_filter(inputs, d_out, kernel_shape, strides, padding):
    """Gradient of the convolution with respect to its kernel: shape `kernel_shape`.

    Equals `sum over batch and output positions of inputs_patch (outer) d_out` per kernel offset.
    """
    kernel_shape = [int(d) for d in kernel_shape]
    if _statically_empty(inputs, d_out) or 0 in kernel_shape:
        return tf.zeros(kernel_shape, inputs.dtype)
    spatial = len(kernel_shape) - 2
    if spatial == 1:
        return tf.squeeze(backprop_filter(_as_2d(inputs), _as_2d(d_out), [1] + kernel_shape, (1,) + tuple(strides),
                                          padding), 0)
    full_strides = [1] + list(strides) + [1]
    if spatial == 2:
        return tf.raw_ops.Conv2DBackpropFilter(input=inputs, filter_sizes=kernel_shape, out_backprop=d_out,
                                               strides=full_strides, padding=padding)
    return tf.raw_ops.Conv3DBackpropFilterV2(input=inputs, filter_sizes=kernel_shape, out_backprop=d_out,
                                             strides=full_strides, padding=padding)


def backprop_input(d_out, kernel, input_shape, strides, padding):
    """Gradient of the convolution with respect to its input: shape `input_shape`.

    `input_shape` may hold None for the batch axis; it is then taken from `d_out` at run time.
    """
    if _statically_empty(d_out, kernel) or 0 in [d for d in input_shape if d is not None]:
        return _zeros(list(input_shape), d_out, d_out.dtype)
    dynamic = tf.concat([tf.shape(d_out)[:1], tf.constant(list(input_shape[1:]), tf.int32)], 0)
    return tf.nn.conv_transpose(d_out, kernel, output_shape=dynamic, strides=list(strides), padding=padding)


def padding_only_taps(input_spatial, kernel_spatial, strides, padding):
    """The number of kernel taps (spatial offsets) that meet only padding at every output position: with SAME
    padding a 3x3 kernel on a 1x1 feature map has 8. Their kernel-gradient entries are exactly zero by
    construction. `input_spatial`, `kernel_spatial`, `strides`: static ints per spatial axis."""
    live = 1
    for n, k, s in zip(input_spatial, kernel_spatial, strides):
        if padding == "SAME":
            out = -(-n // s)
            before = max((out - 1) * s + k - n, 0) // 2
        else:
            out, before = max((n - k) // s + 1, 0), 0
        live *= sum(1 for j in range(k) if any(0 <= o * s + j - before < n for o in range(out)))
    return math.prod(kernel_spatial) - live
