"""The six public functions: argument checks, the operands' layout and the result's, then the role's driver
(`dense_kernels.role_totals` or `conv_kernels.role_totals`), under the call's compile mode.

Each takes the options as keywords (`confidence=0.95, thresholds=None, threshold_method="sampled",
near_zero="exact", sample_size=None, seed=None, near_zero_sample_size=1024, jit=True`, see `Options`) or as one
`options=Options(...)`.
"""

import tensorflow as tf

from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer import validation
from tb_matmul_explainer.aggregates import classes, conv_kernels, dense_kernels, totals
from tb_matmul_explainer.aggregates.conv_kernels import Geometry
from tb_matmul_explainer.aggregates.jit import compile_mode
from tb_matmul_explainer.aggregates.options import Options


def _flatten_rows(t, name):
    validation.check_rank(t, name, 2)
    return classes.as_rows(t) if t.shape.rank != 2 else t


def _check_dim(a, b, message):
    if a is not None and b is not None and a != b:
        raise ValueError(message)


def _contracting_the_kernel(first, kernel, names, transposed, result, opts):
    """Dense forward (`first @ kernel`) or input gradient (`first @ kernel^T` when `transposed`): `first` of rank
    >= 2 with its leading axes aggregated, the kernel `[k, m]`."""
    first, kernel = totals.operands(first, kernel, names)
    validation.check_rank(first, names[0], 2)
    validation.check_rank(kernel, "kernel", 2, 2)
    contracted, units = (kernel.shape[1], kernel.shape[0]) if transposed else (kernel.shape[0], kernel.shape[1])
    _check_dim(
        first.shape[-1],
        contracted,
        f"{names[0]}'s last axis ({first.shape[-1]}) must equal kernel's {'last' if transposed else 'first'} "
        f"axis ({contracted}): shapes {first.shape} and {kernel.shape}",
    )
    F = _flatten_rows(first, names[0])
    expected = first.shape.as_list()[:-1] + [units]

    def result_fn():
        if result is None:
            return tf.linalg.matmul(F, kernel, transpose_b=transposed)
        return classes.as_rows(totals.given_result(result, F.dtype, expected))

    with compile_mode(opts.jit):
        return dense_kernels.role_totals(F, kernel, result_fn, False, transposed, opts)


def dense(x, kernel, *, result=None, options=None, **settings):
    """Per-output-unit totals of the dense forward product `x @ kernel`.

    Args:
      x: `[..., k]` (rank >= 2; all leading axes are aggregated). First operand.
      kernel: `[k, m]`. Second operand.
      result: optional `x @ kernel` (`[..., m]`), e.g. the layer's pre-activation; computed when needed.
      options, **settings: an `Options`, or its fields as keywords.
    Returns:
      `UnitTotals` with U = m; a unit's cells are all rows of x.
    """
    return _contracting_the_kernel(x, kernel, ("x", "kernel"), False, result, Options.of(options, **settings))


def dense_kernel_gradient(x, d_out, *, result=None, options=None, **settings):
    """Per-output-unit totals of the dense kernel gradient `x^T @ d_out` (`[k, m]`, leading axes contracted).

    Args:
      x: `[..., k]` the layer's input (first operand). d_out: `[..., m]`, same leading axes (second operand).
      result: optional gradient `[k, m]`.
      options, **settings: an `Options`, or its fields as keywords.
    Returns:
      `UnitTotals` with U = m; a unit's cells are its k kernel entries.
    """
    opts = Options.of(options, **settings)
    x, d_out = totals.operands(x, d_out, ("x", "d_out"))
    validation.check_rank(x, "x", 2)
    validation.check_rank(d_out, "d_out", 2)
    if not x.shape[:-1].is_compatible_with(d_out.shape[:-1]):
        raise ValueError(f"x and d_out must have the same leading axes: shapes {x.shape} and {d_out.shape}")
    F = _flatten_rows(x, "x")  # stored [n, k] = logical F^T ([k, n])
    S = _flatten_rows(d_out, "d_out")  # [n, m]
    expected = [x.shape[-1], d_out.shape[-1]]

    def result_fn():
        if result is None:
            return tf.linalg.matmul(F, S, transpose_a=True)
        return totals.given_result(result, F.dtype, expected)

    with compile_mode(opts.jit):
        return dense_kernels.role_totals(F, S, result_fn, True, False, opts)


def dense_input_gradient(d_out, kernel, *, result=None, options=None, **settings):
    """Per-input-feature totals of the dense input gradient `d_out @ kernel^T` (`[..., k]`).

    Args:
      d_out: `[..., m]` (first operand; leading axes aggregated). kernel: `[k, m]` (second operand).
      result: optional gradient `[..., k]`.
      options, **settings: an `Options`, or its fields as keywords.
    Returns:
      `UnitTotals` with U = k; a unit's cells are all rows of d_out.
    """
    return _contracting_the_kernel(d_out, kernel, ("d_out", "kernel"), True, result, Options.of(options, **settings))


def conv(inputs, kernel, strides=1, padding="VALID", *, dilations=1, groups=1, result=None, options=None, **settings):
    """Per-output-channel totals of the convolution `tf.nn.convolution(inputs, kernel, strides, padding)`.

    Args:
      inputs: `(batch,) + spatial + (in_channels,)`, 1 to 3 spatial axes (NHWC). First operand.
      kernel: `kernel_spatial + (in_channels, out_channels)`. Second operand.
      strides: int or one int per spatial axis. padding: 'VALID' or 'SAME' (any case); padding is in no class.
      dilations: int or one int per spatial axis (the kernel's taps are `dilations` apart).
      groups: the kernel's in_channels are the input's / groups; output channel `j * out_g + d` reads input
        channels `j * in_g + c` (a depthwise convolution: in_g = 1). Grouped: 1D/2D, equal strides.
      result: optional convolution result `(batch,) + out_spatial + (out_channels,)`.
      options, **settings: an `Options`, or its fields as keywords.
    Returns:
      `UnitTotals` with U = out_channels; a unit's cells are all batch entries and output positions.
    """
    opts = Options.of(options, **settings)
    x, W = totals.operands(inputs, kernel, ("inputs", "kernel"))
    strides, padding, out_shape, dilations = conv_lib.check_geometry(
        x.shape, W.shape, strides, padding, dilations=dilations, groups=groups
    )
    if None in W.shape.as_list() or None in x.shape.as_list()[1:]:
        raise ValueError(f"inputs (except the batch axis) and kernel need known shapes, got {x.shape}, {W.shape}")

    def result_fn():
        if result is None:
            if x.shape[0] is not None:
                return conv_lib.forward(x, W, strides, padding, dilations)
            # TensorFlow's convolution returns the input's shape for an empty batch: guard it.
            empty = tf.zeros([0] + out_shape[1:], x.dtype)
            return tf.cond(
                tf.shape(x)[0] > 0, lambda: conv_lib.forward(x, W, strides, padding, dilations), lambda: empty
            )
        return totals.given_result(result, x.dtype, out_shape)

    geometry = Geometry(tuple(x.shape.as_list()), tuple(W.shape.as_list()), strides, padding, dilations, groups)
    with compile_mode(opts.jit):
        return conv_kernels.role_totals("forward", x, W, geometry, result_fn, opts)


def conv_kernel_gradient(
    x, d_out, kernel_shape, strides=1, padding="VALID", *, dilations=1, groups=1, result=None, options=None, **settings
):
    """Per-output-channel totals of the convolution's kernel gradient `backprop_filter(x, d_out)`.

    Args:
      x: the convolution's input `(batch,) + spatial + (in_channels,)` (first operand).
      d_out: gradient of the result `(batch,) + out_spatial + (out_channels,)` (second operand).
      kernel_shape: `kernel_spatial + (in_channels, out_channels)`.
      strides, padding, dilations, groups: as for `conv`.
      result: optional kernel gradient of shape `kernel_shape`.
      options, **settings: an `Options`, or its fields as keywords.
    Returns:
      `UnitTotals` with U = out_channels; a unit's cells are its kernel offsets x in-channels.
    """
    opts = Options.of(options, **settings)
    x, D = totals.operands(x, d_out, ("x", "d_out"))
    kshape = conv_lib.static_dims(kernel_shape, "kernel_shape", allow_batch_none=False)
    strides, padding, _, dilations = conv_lib.check_geometry(
        x.shape, kshape, strides, padding, D, "x", "kernel_shape", dilations, groups
    )
    if None in x.shape.as_list()[1:]:
        raise ValueError(f"x needs known shape except the batch axis, got {x.shape}")

    def result_fn():
        if result is None:
            return conv_lib.backprop_filter(x, D, kshape, strides, padding, dilations)
        return totals.given_result(result, x.dtype, kshape)

    geometry = Geometry(tuple(x.shape.as_list()), tuple(kshape), strides, padding, dilations, groups)
    with compile_mode(opts.jit):
        return conv_kernels.role_totals("kernel_gradient", x, D, geometry, result_fn, opts)


def conv_input_gradient(
    d_out,
    kernel,
    input_shape,
    strides=1,
    padding="VALID",
    *,
    dilations=1,
    groups=1,
    result=None,
    options=None,
    **settings,
):
    """Per-input-channel totals of the convolution's input gradient `backprop_input(d_out, kernel)`.

    Args:
      d_out: gradient of the result `(batch,) + out_spatial + (out_channels,)` (first operand).
      kernel: `kernel_spatial + (in_channels, out_channels)` (second operand).
      input_shape: the convolution input's shape `(batch,) + spatial + (in_channels,)` (batch may be None).
      strides, padding, dilations, groups: as for `conv`.
      result: optional input gradient of shape `input_shape`.
      options, **settings: an `Options`, or its fields as keywords.
    Returns:
      `UnitTotals` with U = in_channels; a unit's cells are all batch entries and input positions.
    """
    opts = Options.of(options, **settings)
    D, W = totals.operands(d_out, kernel, ("d_out", "kernel"))
    in_shape = conv_lib.static_dims(input_shape, "input_shape")
    strides, padding, _, dilations = conv_lib.check_geometry(
        in_shape, W.shape, strides, padding, D, "input_shape", dilations=dilations, groups=groups
    )
    if None in W.shape.as_list():
        raise ValueError(f"kernel needs a known shape, got {W.shape}")

    def result_fn():
        if result is None:
            return conv_lib.backprop_input(D, W, in_shape, strides, padding, dilations)
        return totals.given_result(result, D.dtype, in_shape)

    geometry = Geometry(tuple(in_shape), tuple(W.shape.as_list()), strides, padding, dilations, groups)
    with compile_mode(opts.jit):
        return conv_kernels.role_totals("input_gradient", D, W, geometry, result_fn, opts)
