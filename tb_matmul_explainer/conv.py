"""Convolution geometry and the linear convolution ops, for NHWC 1D/2D/3D convolutions.

Geometry: argument checks, output shapes, SAME padding, kernel offsets, and the input patches read at sampled
(batch, output position) pairs. Ops: the convolution, its two gradients and window sums (`box_sums`).

Shapes: inputs `(batch,) + spatial + (in_channels,)`, kernel `kernel_spatial + (in_channels, out_channels)`,
result `(batch,) + out_spatial + (out_channels,)`; a grouped convolution's kernel holds in_channels / groups
(`conv_groups`, which the ops below dispatch to when the channel counts say so). Strides and dilations are per
spatial axis; padding is 'VALID' or 'SAME' (TensorFlow's rule, on the dilated window). A dilated convolution is the
undilated one with the dilated kernel (`dilate_kernel`: zeros between the taps): the ops below run that, and take
the taps of a kernel-shaped result (`take_taps`), so they need no dilation support from TensorFlow's kernels
(whose CPU gradients lack it).

`backprop_filter` and `backprop_input` are linear in each operand, which is what lets the classifiers apply them
to class-masked operands. TensorFlow's convolution kernels mishandle zero-size operands (an empty batch returns
the input's shape), so every function here returns correctly shaped zeros when an operand is statically empty.
"""

import itertools
import math

import tensorflow as tf

from tb_matmul_explainer import conv_groups, validation


def check_operands(input_shape, kernel_shape, inputs_name="inputs", kernel_name="kernel", groups=1):
    """Validates ranks and channel agreement of two shapes (the kernel's in-channels are the input's / `groups`);
    returns the number of spatial axes (1, 2 or 3)."""
    input_shape, kernel_shape = tf.TensorShape(input_shape), tf.TensorShape(kernel_shape)
    validation.check_shape_rank(input_shape, inputs_name, 3, 5)
    validation.check_shape_rank(kernel_shape, kernel_name, 3, 5)
    if kernel_shape.rank != input_shape.rank:
        raise ValueError(
            f"{kernel_name} must have the same rank as {inputs_name} ({input_shape.rank}), "
            f"got {kernel_name} shape {kernel_shape} and {inputs_name} shape {input_shape}"
        )
    if any(d == 0 for d in kernel_shape[:-2]):
        raise ValueError(f"{kernel_name} must have a non-empty window (spatial sizes >= 1), got shape {kernel_shape}")
    cin, kcin, cout = input_shape[-1], kernel_shape[-2], kernel_shape[-1]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if cin is not None and kcin is not None and cin != kcin * groups:
        per_group = "" if groups == 1 else f" / groups ({groups})"
        raise ValueError(
            f"{kernel_name} in-channels ({kcin}) must equal {inputs_name} channels ({cin}){per_group}: "
            f"shapes {kernel_shape} and {input_shape}"
        )
    if cout is not None and cout % groups:
        raise ValueError(f"{kernel_name} out-channels ({cout}) must be a multiple of groups ({groups})")
    if groups > 1 and input_shape.rank == 5:
        raise ValueError("grouped 3D convolutions are not supported (TensorFlow has no 3D depthwise kernels)")
    return input_shape.rank - 2


def check_geometry(
    input_shape,
    kernel_shape,
    strides,
    padding,
    d_out=None,
    input_name="inputs",
    kernel_name="kernel",
    dilations=1,
    groups=1,
):
    """Validates a convolution's geometry (and `d_out`'s shape against its result, if given); returns (strides
    tuple, padding, static output shape list, dilations tuple)."""
    padding = validation.normalize_padding(padding)
    spatial_rank = check_operands(input_shape, kernel_shape, input_name, kernel_name, groups)
    strides = validation.normalize_strides(strides, spatial_rank)
    dilations = validation.normalize_strides(dilations, spatial_rank, "dilations")
    out_shape = output_shape(
        tf.TensorShape(input_shape).as_list(), tf.TensorShape(kernel_shape).as_list(), strides, padding, dilations
    )
    if d_out is not None:
        validation.check_rank(d_out, "d_out", len(out_shape), len(out_shape))
        for got, want in zip(d_out.shape.as_list(), out_shape):
            if got is not None and want is not None and got != want:
                raise ValueError(f"d_out must have the convolution's result shape {out_shape}, got {d_out.shape}")
    return strides, padding, out_shape, dilations


def static_dims(shape, name, allow_batch_none=True):
    """`shape` as a list of non-negative ints (None allowed for the batch axis if `allow_batch_none`)."""
    try:
        dims = [None if d is None else int(d) for d in tf.TensorShape(shape).as_list()]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}") from None
    unknown = dims[1:] if allow_batch_none else dims
    if any(d is None for d in unknown) or any(d is not None and d < 0 for d in dims):
        raise ValueError(f"{name} must hold non-negative ints (None only for the batch axis), got {shape!r}")
    return dims


def spatial_size(shape):
    """Product of the spatial dims of an NHWC shape (None if any is unknown)."""
    dims = shape[1:-1]
    return None if any(d is None for d in dims) else int(math.prod(dims))


def batch_positions(shape):
    """Batch entries times spatial positions of a static NHWC shape (None if unknown)."""
    n = shape[0]
    p = spatial_size(shape)
    return None if n is None or p is None else n * p


def kernel_offsets(kernel_shape):
    """The number of spatial offsets (taps) of a kernel shape."""
    return int(math.prod(kernel_shape[:-2]))


def _ones(dilations, rank):
    return dilations is None or all(r == 1 for r in dilations[:rank])


def effective_spatial(kernel_spatial, dilations=None):
    """The spatial extent of a kernel's dilated window: (k - 1) * dilation + 1 per axis."""
    if dilations is None:
        return list(kernel_spatial)
    return [None if k is None else (k - 1) * r + 1 for k, r in zip(kernel_spatial, dilations)]


def dilated_shape(kernel_shape, dilations=None):
    """A kernel shape with its spatial axes replaced by the dilated window's."""
    kernel_shape = list(kernel_shape)
    return effective_spatial(kernel_shape[:-2], dilations) + kernel_shape[-2:]


def dilate_kernel(kernel, dilations=None):
    """The kernel with `dilation - 1` zeros between its taps along each spatial axis."""
    rank = kernel.shape.rank - 2
    if _ones(dilations, rank):
        return kernel
    for axis, r in enumerate(dilations):
        if r == 1:
            continue
        shape = tf.shape(kernel)
        spaced = tf.pad(
            tf.expand_dims(kernel, axis + 1), [[0, 0]] * (axis + 1) + [[0, r - 1]] + [[0, 0]] * (rank + 1 - axis)
        )
        merged = tf.concat([shape[:axis], [shape[axis] * r], shape[axis + 1 :]], 0)
        kernel = tf.reshape(spaced, merged)[(slice(None),) * axis + (slice(0, (kernel.shape[axis] - 1) * r + 1),)]
    return kernel


def take_taps(t, dilations=None):
    """The entries of a dilated-window-shaped tensor (spatial axes first) at the kernel's taps."""
    if _ones(dilations, len(dilations or ())):
        return t
    return t[tuple(slice(None, None, r) for r in dilations)]


def valid_ones(spatial, dtype):
    """Ones of shape `[1] + spatial + [1]`: one image whose every position is valid (not padding)."""
    return tf.ones([1] + list(spatial) + [1], dtype)


def pad_before(size, k, stride, padding):
    """The padding TensorFlow adds before an axis of length `size` (kernel `k`, `stride`)."""
    if padding == "VALID":
        return 0
    out = -(-size // stride)
    return max((out - 1) * stride + k - size, 0) // 2


def output_spatial_size(size, kernel_size, stride, padding):
    """TensorFlow's output length along one spatial axis (None if `size` is unknown)."""
    if size is None:
        return None
    if padding == "SAME":
        return math.ceil(size / stride)
    return max(0, math.ceil((size - kernel_size + 1) / stride))


def output_shape(input_shape, kernel_shape, strides, padding, dilations=None):
    """Static result shape (a list; unknown entries are None) of a convolution."""
    window = effective_spatial(kernel_shape[:-2], dilations)
    spatial = [output_spatial_size(s, k, st, padding) for s, k, st in zip(input_shape[1:-1], window, strides)]
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


def forward(inputs, kernel, strides, padding, dilations=None):
    """The convolution itself; zeros of the right shape when an operand or the result is empty.

    (With VALID padding and a kernel larger than the input the result has a zero-size spatial axis; TensorFlow's
    kernels then return a wrong shape or raise.)"""
    kernel = dilate_kernel(kernel, dilations)
    shape = output_shape(inputs.shape.as_list(), kernel.shape.as_list(), strides, padding)
    if _statically_empty(inputs, kernel) or 0 in shape:
        return _zeros(shape, inputs, inputs.dtype)
    if inputs.shape[-1] != kernel.shape[-2]:
        return conv_groups.forward(inputs, kernel, strides, padding)
    return tf.nn.convolution(inputs, kernel, strides=strides, padding=padding)


def backprop_filter(inputs, d_out, kernel_shape, strides, padding, dilations=None):
    """Gradient of the convolution with respect to its kernel: shape `kernel_shape`.

    Equals `sum over batch and output positions of inputs_patch (outer) d_out` per kernel offset.
    """
    kernel_shape = [int(d) for d in kernel_shape]
    if not _ones(dilations, len(kernel_shape) - 2):
        return take_taps(
            backprop_filter(inputs, d_out, dilated_shape(kernel_shape, dilations), strides, padding), dilations
        )
    if _statically_empty(inputs, d_out) or 0 in kernel_shape:
        return tf.zeros(kernel_shape, inputs.dtype)
    if inputs.shape[-1] != kernel_shape[-2]:
        return conv_groups.backprop_filter(inputs, d_out, kernel_shape, strides, padding)
    spatial = len(kernel_shape) - 2
    if spatial == 1:
        return tf.squeeze(
            backprop_filter(_as_2d(inputs), _as_2d(d_out), [1] + kernel_shape, (1,) + tuple(strides), padding), 0
        )
    full_strides = [1] + list(strides) + [1]
    if spatial == 2:
        return tf.raw_ops.Conv2DBackpropFilter(
            input=inputs, filter_sizes=kernel_shape, out_backprop=d_out, strides=full_strides, padding=padding
        )
    return tf.raw_ops.Conv3DBackpropFilterV2(
        input=inputs, filter_sizes=kernel_shape, out_backprop=d_out, strides=full_strides, padding=padding
    )


def backprop_input(d_out, kernel, input_shape, strides, padding, dilations=None):
    """Gradient of the convolution with respect to its input: shape `input_shape`.

    `input_shape` may hold None for the batch axis; it is then taken from `d_out` at run time.
    """
    kernel = dilate_kernel(kernel, dilations)
    if _statically_empty(d_out, kernel) or 0 in [d for d in input_shape if d is not None]:
        return _zeros(list(input_shape), d_out, d_out.dtype)
    if input_shape[-1] != kernel.shape[-2]:
        return conv_groups.backprop_input(d_out, kernel, input_shape, strides, padding)
    dynamic = tf.concat([tf.shape(d_out)[:1], tf.constant(list(input_shape[1:]), tf.int32)], 0)
    return tf.nn.conv_transpose(d_out, kernel, output_shape=dynamic, strides=list(strides), padding=padding)


def box_sums(t, kernel_spatial, strides, padding, dilations=None):
    """Per channel, the sum of `t` over each output position's kernel taps (padding adds nothing): what a
    convolution with an identity kernel of `kernel_spatial` gives, as a sum of shifted strided slices (one fused
    pass under XLA; a convolution with a handful of channels is slow on CPU)."""
    in_spatial = t.shape.as_list()[1:-1]
    dilations = dilations or (1,) * len(in_spatial)
    window = effective_spatial(kernel_spatial, dilations)
    out_spatial = output_shape([1] + in_spatial + [1], list(window) + [1, 1], strides, padding)[1:-1]
    pads = [[0, 0]]
    for n, k, st, out in zip(in_spatial, window, strides, out_spatial):
        before = pad_before(n, k, st, padding)
        pads.append([before, max((out - 1) * st + k - n - before, 0)])
    t = tf.pad(t, pads + [[0, 0]])
    total = None
    for offset in itertools.product(*[range(0, k, r) for k, r in zip(window, dilations)]):
        begin = [0] + list(offset) + [0]
        end = [0] + [o + (out - 1) * st + 1 for o, out, st in zip(offset, out_spatial, strides)] + [0]
        outer = 1 | 1 << (len(begin) - 1)  # batch and channel axes whole
        piece = tf.strided_slice(t, begin, end, [1] + list(strides) + [1], begin_mask=outer, end_mask=outer)
        total = piece if total is None else total + piece
    return total


def patches(t, positions, kernel_spatial, out_spatial, strides, padding, dilations=None):
    """The patches of `t` read at sampled flat (batch, output position) indices: values `[s, kp, C]` (zero where
    the tap falls in padding) and validity `[s, kp]`."""
    in_spatial = t.shape.as_list()[1:-1]
    dilations = dilations or (1,) * len(in_spatial)
    window = effective_spatial(kernel_spatial, dilations)
    rest, spatial_coords = tf.cast(positions, tf.int64), []
    for size in reversed(out_spatial):
        spatial_coords.append(rest % size)
        rest = rest // size  # (at the end: the batch index)
    # [s, 1, d]. Not a slice of one stack of batch and spatial coordinates: with one spatial axis, grappler's
    # arithmetic optimizer rewrote that slice and dropped its new axis (a shape error at run time, TF 2.21).
    spatial = tf.expand_dims(tf.stack(spatial_coords[::-1], -1), 1)
    taps = [range(0, k, r) for k, r in zip(window, dilations)]
    offsets = tf.constant(list(itertools.product(*taps)), tf.int64)  # [kp, d]
    pads = tf.constant([pad_before(n, k, st, padding) for n, k, st in zip(in_spatial, window, strides)], tf.int64)
    where = spatial * tf.constant(strides, tf.int64) + offsets[None] - pads  # [s, kp, d]
    valid = tf.reduce_all((where >= 0) & (where < tf.constant(in_spatial, tf.int64)), -1)
    where = tf.clip_by_value(where, 0, tf.constant(in_spatial, tf.int64) - 1)
    batch = tf.broadcast_to(tf.reshape(rest, [-1, 1, 1]), tf.concat([tf.shape(where)[:2], [1]], 0))
    values = tf.gather_nd(t, tf.concat([batch, where], -1))  # [s, kp, C]
    values = tf.where(valid[..., None], values, tf.zeros_like(values))
    return values, valid


def padding_only_taps(input_spatial, kernel_spatial, strides, padding, dilations=None):
    """The number of kernel taps (spatial offsets) that meet only padding at every output position: with SAME
    padding a 3x3 kernel on a 1x1 feature map has 8. Their kernel-gradient entries are exactly zero by
    construction. `input_spatial`, `kernel_spatial`, `strides`, `dilations`: static ints per spatial axis."""
    live = 1
    dilations = dilations or (1,) * len(kernel_spatial)
    for n, k, s, r in zip(input_spatial, kernel_spatial, strides, dilations):
        window = (k - 1) * r + 1
        out, before = output_spatial_size(n, window, s, padding), pad_before(n, window, s, padding)
        live *= sum(1 for j in range(0, window, r) if any(0 <= o * s + j - before < n for o in range(out)))
    return math.prod(kernel_spatial) - live
