"""Exact per-cell nine-pair classifiers (drop-in names for the original research code).

Each operand's values are classed as positive (P), near-zero (Z) or negative (N):

  Z: x == 0, or |x| < threshold, or x is NaN;   P: x > 0 and not Z;   N: x < 0 and not Z.

A value equal to the threshold is P or N. +inf is P and -inf is N. The default threshold is the
`100 * (1 - confidence)` percentile of |x| over the operand's finite values (`threshold.percentile_threshold`);
`confidence=1.0` makes only exact zeros Z. An explicit threshold overrides it.

For an operation `op(x, y)` (matmul, multiply, tensordot, convolution, ...) the classifiers return

  counts[..., t] = op(class_mask_a(x), class_mask_b(y))    for t = (a, b) in TERMS
  sums[..., t]   = op(x * class_mask_a(x), y * class_mask_b(y))

with shape `value_shape + (9,)`, where `value_shape` is the shape of `op(x, y)`. Every product falls in exactly
one pair (SAME padding in none), so `sum(counts, -1)` is the number of products per result cell, and
`sum(sums, -1) == op(x, y)` to float tolerance wherever the result is finite. Where a result cell is not finite
(a NaN or inf operand took part), its sums are not finite either: non-finite values never vanish silently.

Two-operand functions take `confidence=0.95, thresholds=None, return_thresholds=False`; `thresholds` is None,
one number for both operands, or a pair whose entries may be None. With `return_thresholds=True` they also
return the two thresholds used, as scalar tensors. Dtypes follow `validation` (float16/bfloat16 and integers are
computed in float32; mixed float dtypes are promoted). All functions return `tf.Tensor`s and work eagerly and
inside `tf.function`.
"""

import numpy as np
import tensorflow as tf

from tb_matmul_explainer import conv, validation
from tb_matmul_explainer import threshold as threshold_lib

TERMS = ("PP", "PZ", "PN", "ZP", "ZZ", "ZN", "NP", "NZ", "NN")
SINGLE_TERMS = ("P", "Z", "N")


def classify_terms(example=None, retain_shape=False):
    """The term names for a classification result: 9 pair names, or P/Z/N for a 3-class result.

    Args:
      example: optional counts or sums (or a `(counts, sums)` tuple) whose last axis has 3 or 9 entries.
      retain_shape: if True, return a string array shaped like `example` naming each entry's term.
    """
    if example is None:
        if retain_shape:
            raise ValueError("retain_shape=True needs an example to take the shape from")
        return list(TERMS)
    if isinstance(example, tuple):
        example = example[0]
    shape = tuple(tf.TensorShape(getattr(example, "shape", None) or ()).as_list())
    if not shape or shape[-1] not in (3, 9):
        raise ValueError(f"example must have 3 or 9 entries in its last axis, got shape {shape}")
    names = list(SINGLE_TERMS if shape[-1] == 3 else TERMS)
    if not retain_shape:
        return names
    return np.broadcast_to(np.array(names), shape).copy()


def classification_mask(x, confidence=0.95, threshold=None):
    """Classes each value of `x`. Returns `(pos, zero, neg, threshold)`: three bool tensors shaped like `x`
    (exactly one is true per value) and the threshold used as a scalar tensor of x's compute dtype."""
    x = validation.as_float_tensor(x, "x")
    confidence = validation.check_confidence(confidence)
    threshold = validation.check_threshold(threshold, "threshold")
    return _masks(x, confidence, threshold)


def _masks(x, confidence, threshold):
    if threshold is None:
        thr = threshold_lib.percentile_threshold(x, confidence)
    elif isinstance(threshold, float):
        thr = tf.constant(threshold, x.dtype)  # tf.cast would round a Python float through float32
    else:
        thr = tf.cast(threshold, x.dtype)
    zero = (x == 0) | (tf.abs(x) < thr) | tf.math.is_nan(x)
    pos = (x > 0) & ~zero
    neg = (x < 0) & ~zero
    return pos, zero, neg, thr


def tensor_classify(x, confidence=0.95, threshold=None, return_threshold=False):
    """Classes the values of one tensor. Returns `(counts, sums)` of shape `x.shape + (3,)` (P, Z, N), and the
    threshold with `return_threshold=True`."""
    x = validation.as_float_tensor(x, "x")
    confidence = validation.check_confidence(confidence)
    threshold = validation.check_threshold(threshold, "threshold")
    masks = _masks(x, confidence, threshold)
    counts = tf.stack([tf.cast(m, x.dtype) for m in masks[:3]], axis=-1)
    sums = tf.stack([tf.where(m, x, tf.zeros_like(x)) for m in masks[:3]], axis=-1)
    return (counts, sums, masks[3]) if return_threshold else (counts, sums)


def _classify(op, x, y, confidence, thresholds, return_thresholds, names=("x", "y"), check=None):
    """Applies `op` to every class pair of x and y; `check(x, y)` validates shapes first."""
    x = validation.as_float_tensor(x, names[0])
    y = validation.as_float_tensor(y, names[1])
    x, y = validation.promote_floats(x, y)
    confidence = validation.check_confidence(confidence)
    x_threshold, y_threshold = validation.parse_thresholds(thresholds)
    if check is not None:
        check(x, y)
    *x_masks, x_thr = _masks(x, confidence, x_threshold)
    *y_masks, y_thr = _masks(y, confidence, y_threshold)
    zeros_x, zeros_y = tf.zeros_like(x), tf.zeros_like(y)
    counts, sums = [], []
    for xm in x_masks:
        for ym in y_masks:
            counts.append(op(tf.cast(xm, x.dtype), tf.cast(ym, y.dtype)))
            sums.append(op(tf.where(xm, x, zeros_x), tf.where(ym, y, zeros_y)))
    counts = tf.stack(counts, axis=-1)
    sums = tf.stack(sums, axis=-1)
    if return_thresholds:
        return counts, sums, [x_thr, y_thr]
    return counts, sums


def _check_matmul(x, y):
    validation.check_rank(x, "x", 2)
    validation.check_rank(y, "y", 2)
    k_x, k_y = x.shape[-1], y.shape[-2]
    if k_x is not None and k_y is not None and k_x != k_y:
        raise ValueError(
            f"x's last axis ({k_x}) must equal y's second-to-last axis ({k_y}): shapes {x.shape} and {y.shape}"
        )
    try:
        tf.broadcast_static_shape(x.shape[:-2], y.shape[:-2])
    except ValueError:
        raise ValueError(f"batch axes of x and y must broadcast: shapes {x.shape} and {y.shape}") from None


def matmul_classify(x, y, confidence=0.95, thresholds=None, return_thresholds=False):
    """Classifies `tf.linalg.matmul(x, y)` (rank >= 2, batch axes broadcast). Shape `value_shape + (9,)`."""
    return _classify(tf.linalg.matmul, x, y, confidence, thresholds, return_thresholds, check=_check_matmul)


def _check_broadcast(x, y):
    try:
        tf.broadcast_static_shape(x.shape, y.shape)
    except ValueError:
        raise ValueError(f"x and y must broadcast: shapes {x.shape} and {y.shape}") from None


def multiply_classify(x, y, confidence=0.95, thresholds=None, return_thresholds=False):
    """Classifies the elementwise product `x * y` (with broadcasting). Shape `broadcast_shape + (9,)`."""
    return _classify(tf.multiply, x, y, confidence, thresholds, return_thresholds, check=_check_broadcast)


def tensordot_classify(x, y, axes, confidence=0.95, thresholds=None, return_thresholds=False):
    """Classifies `tf.tensordot(x, y, axes)` (axes as in `tf.tensordot`). Shape `value_shape + (9,)`."""

    def check(x, y):
        try:
            tf.tensordot(
                tf.zeros([d or 1 for d in x.shape], x.dtype), tf.zeros([d or 1 for d in y.shape], y.dtype), axes
            )
        except (
            ValueError,
            TypeError,
            IndexError,
            tf.errors.InvalidArgumentError,
        ) as e:  # IndexError: axis out of range
            raise ValueError(f"axes {axes!r} do not fit x shape {x.shape} and y shape {y.shape}: {e}") from None

    return _classify(
        lambda a, b: tf.tensordot(a, b, axes), x, y, confidence, thresholds, return_thresholds, check=check
    )


def conv_classify(
    inputs,
    kernel,
    strides=1,
    padding="VALID",
    confidence=0.95,
    thresholds=None,
    return_thresholds=False,
    *,
    dilations=1,
    groups=1,
):
    """Classifies `tf.nn.convolution(inputs, kernel, strides, padding)`.

    Args:
      inputs: `(batch,) + spatial + (in_channels,)`, 1 to 3 spatial axes (NHWC).
      kernel: `kernel_spatial + (in_channels, out_channels)`.
      strides: int, or one int per spatial axis.
      padding: 'VALID' or 'SAME', any letter case. SAME padding is counted in no class.
      dilations: int, or one int per spatial axis.
      groups: the kernel holds in_channels / groups (a grouped or depthwise convolution, 1D/2D).
    Returns:
      `(counts, sums)` of shape `(batch,) + out_spatial + (out_channels, 9)`.
    """
    padding = validation.normalize_padding(padding)
    spatial = {}

    def check(x, k):
        rank = conv.check_operands(x.shape, k.shape, groups=groups)
        spatial["strides"] = validation.normalize_strides(strides, rank)
        spatial["dilations"] = validation.normalize_strides(dilations, rank, "dilations")

    def op(a, b):
        return conv.forward(a, b, spatial["strides"], padding, spatial["dilations"])

    return _classify(
        op, inputs, kernel, confidence, thresholds, return_thresholds, names=("inputs", "kernel"), check=check
    )


def _check_conv_gradient(x_shape, d_out, kernel_shape, strides, padding, dilations, groups, x_name="x"):
    """Validates a (convolution input shape, d_out, kernel shape) triple; returns normalised strides and
    dilations."""
    x_shape, kernel_shape = tf.TensorShape(x_shape), tf.TensorShape(kernel_shape)
    spatial_rank = conv.check_operands(x_shape, kernel_shape, x_name, "kernel_shape", groups)
    strides = validation.normalize_strides(strides, spatial_rank)
    dilations = validation.normalize_strides(dilations, spatial_rank, "dilations")
    validation.check_rank(d_out, "d_out", x_shape.rank, x_shape.rank)
    expected = conv.output_shape(x_shape.as_list(), kernel_shape.as_list(), strides, padding, dilations)
    for got, want in zip(d_out.shape.as_list(), expected):
        if got is not None and want is not None and got != want:
            raise ValueError(f"d_out must have the convolution's result shape {expected}, got {d_out.shape}")
    return strides, dilations


def _static_shape(shape, name):
    """A shape argument as a list of ints (None allowed for the batch axis only)."""
    try:
        dims = [None if d is None else int(d) for d in tf.TensorShape(shape).as_list()]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}") from None
    if any(d is None for d in dims[1:]) or any(d is not None and d < 0 for d in dims):
        raise ValueError(f"{name} must hold non-negative ints (None only for the batch axis), got {shape!r}")
    return dims


def conv_backprop_filter_classify(
    x,
    d_out,
    kernel_shape,
    strides=1,
    padding="VALID",
    confidence=0.95,
    thresholds=None,
    return_thresholds=False,
    *,
    dilations=1,
    groups=1,
):
    """Classifies the kernel gradient of a convolution: `dJ/dW = backprop_filter(x, d_out)`.

    Args:
      x: the convolution's input, `(batch,) + spatial + (in_channels,)` (first operand).
      d_out: `dJ/d(result)`, `(batch,) + out_spatial + (out_channels,)` (second operand).
      kernel_shape: `kernel_spatial + (in_channels / groups, out_channels)`.
      dilations, groups: as for `conv_classify`.
    Returns:
      `(counts, sums)` of shape `kernel_shape + (9,)`.
    """
    padding = validation.normalize_padding(padding)
    geometry = {}

    def check(a, d):
        geometry["kernel_shape"] = _static_shape(kernel_shape, "kernel_shape")
        if None in geometry["kernel_shape"]:
            raise ValueError(f"kernel_shape must be fully known, got {kernel_shape!r}")
        geometry["strides"], geometry["dilations"] = _check_conv_gradient(
            a.shape, d, geometry["kernel_shape"], strides, padding, dilations, groups
        )

    def op(a, d):
        return conv.backprop_filter(a, d, geometry["kernel_shape"], geometry["strides"], padding, geometry["dilations"])

    return _classify(op, x, d_out, confidence, thresholds, return_thresholds, names=("x", "d_out"), check=check)


def conv_backprop_input_classify(
    d_out,
    kernel,
    input_shape,
    strides=1,
    padding="VALID",
    confidence=0.95,
    thresholds=None,
    return_thresholds=False,
    *,
    dilations=1,
    groups=1,
):
    """Classifies the input gradient of a convolution: `dJ/dx = backprop_input(d_out, kernel)`.

    Args:
      d_out: `dJ/d(result)`, `(batch,) + out_spatial + (out_channels,)` (first operand).
      kernel: `kernel_spatial + (in_channels, out_channels)` (second operand).
      input_shape: the convolution input's shape `(batch,) + spatial + (in_channels,)`.
      dilations, groups: as for `conv_classify`.
    Returns:
      `(counts, sums)` of shape `input_shape + (9,)`.
    """
    padding = validation.normalize_padding(padding)
    geometry = {}

    def check(d, k):
        geometry["input_shape"] = _static_shape(input_shape, "input_shape")
        geometry["strides"], geometry["dilations"] = _check_conv_gradient(
            geometry["input_shape"], d, k.shape, strides, padding, dilations, groups, x_name="input_shape"
        )

    def op(d, k):
        return conv.backprop_input(d, k, geometry["input_shape"], geometry["strides"], padding, geometry["dilations"])

    return _classify(
        op, d_out, kernel, confidence, thresholds, return_thresholds, names=("d_out", "kernel"), check=check
    )
