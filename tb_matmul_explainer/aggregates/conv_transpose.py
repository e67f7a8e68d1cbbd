"""The kernel gradient of a transposed convolution, per unit = its output channel.

A transposed convolution (Keras' kernel `kernel_spatial + (filters, in_channels)`) is the input gradient of the
convolution C with the same kernel, C mapping the transposed convolution's result to its input: its forward
totals are `conv_input_gradient`'s and its input gradient's are `conv`'s. Its kernel gradient
`dW[k, f, c] = sum x[.., c] * d_out[.., f]` is C's kernel gradient with the operands swapped (C's input is d_out),
and its units (f) are C's in-channels, not the out-channels that the convolution kernels group by. So it is
computed per cell, as `ops` does: C's kernel gradient of the stacked class masks (float64: counts exact) and of
the class values (the compute dtype), about 9x the layer's kernel-gradient multiply-adds each, then reduced per
unit; near_zero="sampled" is computed exactly.
"""

import tensorflow as tf

from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer.aggregates import classes, sampling, totals
from tb_matmul_explainer.aggregates.classes import Operand
from tb_matmul_explainer.aggregates.exact import f64
from tb_matmul_explainer.aggregates.options import Options
from tb_matmul_explainer.aggregates.totals import PairTotals


def _stacked(t, thr):
    """The P, Z, N masks (float64) and values of `t`, each stacked on the channel axis as `(class, channel)`."""
    pos, neg = classes.masks(t, thr)
    masks = tf.concat([f64(pos), f64(~(pos | neg)), f64(neg)], -1)
    return masks, tf.concat(classes.values(t, pos, neg), -1)


def _per_cell(x, d, kshape, strides, padding, dilations):
    """Per kernel cell and class pair: (counts, sums), each `[kp, 3 (x class), 3 (d_out class), f, c]`."""
    spatial, (f, c) = kshape[:-2], kshape[-2:]
    kp = conv_lib.kernel_offsets(kshape)
    (x_masks, x_values), (d_masks, d_values) = _stacked(*x), _stacked(*d)
    out = []
    for d_part, x_part in ((d_masks, x_masks), (d_values, x_values)):
        cells = conv_lib.backprop_filter(d_part, x_part, spatial + [3 * f, 3 * c], strides, padding, dilations)
        out.append(tf.transpose(tf.reshape(f64(cells), [kp, 3, f, 3, c]), [0, 3, 1, 2, 4]))
    return out


def _reduce(counts, sums, weight):
    """`PairTotals` over the cells of `weight` (`[kp, f, c]`, 1 where a cell counts)."""
    w = weight[:, None, None]
    masked_sums = tf.where(w > 0, sums, tf.zeros_like(sums))  # (a non-finite sum stays in its own cells)
    return PairTotals(
        tf.reduce_sum(counts * w, [0, 4]), tf.reduce_sum(masked_sums, [0, 4]), tf.reduce_sum(weight, [0, 2])
    )


def conv_transpose_kernel_gradient(
    x, d_out, kernel_shape, strides=1, padding="VALID", *, dilations=1, result=None, options=None, **settings
):
    """Per-output-channel totals of a transposed convolution's kernel gradient.

    Args:
      x: the transposed convolution's input `(batch,) + spatial + (in_channels,)` (first operand).
      d_out: gradient of its result `(batch,) + out_spatial + (filters,)` (second operand).
      kernel_shape: `kernel_spatial + (filters, in_channels)`.
      strides, padding, dilations: the transposed convolution's (C's).
      result: optional kernel gradient of shape `kernel_shape`.
      options, **settings: an `Options`, or its fields as keywords.
    Returns:
      `UnitTotals` with U = filters; a unit's cells are its kernel offsets x in-channels.
    """
    opts = Options.of(options, **settings)
    X, D = totals.operands(x, d_out, ("x", "d_out"))
    kshape = conv_lib.static_dims(kernel_shape, "kernel_shape", allow_batch_none=False)
    strides, padding, _, dilations = conv_lib.check_geometry(
        D.shape, kshape, strides, padding, X, "d_out", "kernel_shape", dilations
    )
    if None in D.shape.as_list()[1:]:
        raise ValueError(f"d_out needs a known shape except the batch axis, got {D.shape}")

    def result_fn():
        if result is None:
            return conv_lib.backprop_filter(D, X, kshape, strides, padding, dilations)
        return totals.given_result(result, X.dtype, kshape)

    first = Operand(X, totals.threshold(X, sampling.FIRST, opts))
    second = Operand(D, totals.threshold(D, sampling.SECOND, opts))
    counts, sums = _per_cell(first, second, kshape, strides, padding, dilations)
    kp = conv_lib.kernel_offsets(kshape)
    all_cells = _reduce(counts, sums, tf.ones([kp] + kshape[-2:], tf.float64))

    def near_zero_fn(R, r_thr):
        return _reduce(counts, sums, tf.reshape(f64(classes.near_zero_mask(R, r_thr)), [kp] + kshape[-2:]))

    return totals.finish(opts, first, second, all_cells, kshape[-2], result_fn, near_zero_fn)
