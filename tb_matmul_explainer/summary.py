"""`tf.summary`-style writer ops: record a layer's nine-pair explanation at a step.

Each op writes one tensor summary (the record layout is `metadata.py`'s) under the tag `name` (inside the
current name scope), and, unless `scalars=False`, two plain scalars that TensorBoard's Scalars dashboard shows:
`<tag>/near_zero_fraction` (near-zero result cells / all result cells) and `<tag>/dead_unit_fraction` (units
whose results are near zero in every cell / units).

Like `tf.summary.histogram`: `step=None` takes `tf.summary.experimental.get_step()`; the ops return a bool (True
if written); they work eagerly and inside `tf.function`; and they are lazy: nothing is computed unless a default
writer is set and `tf.summary.should_record_summaries()` is true (so `tf.summary.record_if(False)` costs nothing).

Common keyword arguments: the fields of `aggregates.Options`, checked by it (`confidence=0.95`; `thresholds`:
None, one number, or a triple first operand / second operand / result, entries may be None;
`threshold_method="sampled"` or "exact"; `near_zero="exact"`, "sampled" or "off"; `sample_size`; `seed`;
`near_zero_sample_size`; `jit`); `max_units` (per-unit detail up to this many units, grouped beyond); `scalars`;
`layer` (the layer's name for the UI, default `name`) and `layer_index` (its position in the model, for
ordering); `description`.

`write_totals(tag, totals, step, summary_metadata)` is the writing step alone, for callers that compute the totals
themselves (the Keras instrumentation does): one record plus its two scalars, under exactly the tags given.
"""

import dataclasses

import tensorflow as tf
from tensorboard.plugins.scalar import metadata as scalar_metadata

from tb_matmul_explainer import aggregates, internals, metadata


def write_totals(
    tag, totals, step, summary_metadata, *, max_units=metadata.DEFAULT_MAX_UNITS, scalars=True, extras=None, detail=True
):
    """Writes one record and, unless `scalars=False`, its two scalars, to the default writer.

    Contract:
      * the record: `metadata.pack_record(totals, max_units, extras, detail)` (`totals` an `aggregates.UnitTotals`,
        `extras` a `metadata.RecordExtras` or None, `detail` a bool or bool tensor: keep the unit detail) under exactly
        `tag` with `summary_metadata` (from `metadata.create_summary_metadata`);
      * the scalars: `<tag>/near_zero_fraction` (near-zero result cells / all result cells, 0 with no cells) and
        `<tag>/dead_unit_fraction` (share of the record's unit rows whose cells are all near zero, a row without
        cells not counting as dead), computed in the totals' dtype and written as float32 with TensorBoard's
        scalar plugin metadata, exactly what `tf.summary.scalar` writes, so the Scalars dashboard shows them.
    Tags are used as given: no name scope is prepended (inside `tf.function` or `tf.cond`, TensorFlow's name scopes
    would otherwise leak into them). Like `tf.summary.write` it writes only with a default writer and when
    `tf.summary.should_record_summaries()`; it computes nothing lazily itself (the caller decides whether to compute
    the totals). Returns the record's `tf.summary.write` result (a bool tensor). Eager or inside `tf.function`;
    where whether to write is known at trace time, without a conditional per write (`internals.write_summary`).
    """
    packed = pack_totals(totals, max_units=max_units, scalars=scalars, extras=extras, detail=detail)
    return write_packed(tag, packed, step, summary_metadata)


def pack_totals(totals, *, max_units=metadata.DEFAULT_MAX_UNITS, scalars=True, extras=None, detail=True):
    """What `write_totals` writes, as tensors: `(record, scalar_values)`, the record vector and the two scalars'
    float32 values (`()` when `scalars=False`). Computed apart from the writes so that layers computing alike can
    share it (`keras/shared.py`)."""
    record = metadata.pack_record(totals, max_units, extras, detail)
    if not scalars:
        return record, ()
    cells = tf.reduce_sum(totals.cells)
    near_zero = tf.math.divide_no_nan(tf.reduce_sum(totals.near_zero_cells), cells)
    dead = tf.reduce_mean(tf.cast((totals.cells > 0) & (totals.near_zero_cells >= totals.cells), tf.float64))
    return record, (tf.cast(near_zero, tf.float32), tf.cast(dead, tf.float32))


def write_packed(tag, packed, step, summary_metadata):
    """Writes `pack_totals`'s `(record, scalar_values)` under `tag` (the scalars under `<tag>/near_zero_fraction`
    and `<tag>/dead_unit_fraction`); returns the record's write result."""
    record, scalar_values = packed
    written = internals.write_summary(tag, record, step, summary_metadata)
    if scalar_values:
        md = scalar_metadata.create_summary_metadata(display_name=None, description=None)
        for name, value in zip(("near_zero_fraction", "dead_unit_fraction"), scalar_values):
            internals.write_summary(f"{tag}/{name}", value, step, md)
    return written


def dense(name, x, kernel, result=None, step=None, **kwargs):
    """Explains `x @ kernel` (x of rank >= 2); units are the kernel's output units."""
    return _write(
        name, "forward", "dense", int(kernel.shape[-1]), step, kwargs,
        lambda opts: aggregates.dense(x, kernel, result=result, options=opts),
    )  # fmt: skip


def conv(name, inputs, kernel, strides=1, padding="VALID", result=None, step=None, **kwargs):
    """Explains an NHWC 1D/2D/3D convolution; units are the output channels."""
    return _write(
        name, "forward", _conv_op(kernel), int(kernel.shape[-1]), step, kwargs,
        lambda opts: aggregates.conv(inputs, kernel, strides, padding, result=result, options=opts),
    )  # fmt: skip


def dense_kernel_gradient(name, x, d_out, result=None, step=None, **kwargs):
    """Explains the kernel gradient `x^T @ d_out`; units are the output units."""
    return _write(
        name, "kernel_gradient", "dense", int(d_out.shape[-1]), step, kwargs,
        lambda opts: aggregates.dense_kernel_gradient(x, d_out, result=result, options=opts),
    )  # fmt: skip


def conv_kernel_gradient(name, x, d_out, kernel_shape, strides=1, padding="VALID", result=None, step=None, **kwargs):
    """Explains a convolution's kernel gradient; units are the output channels."""
    return _write(
        name, "kernel_gradient", _conv_op(kernel_shape), int(kernel_shape[-1]), step, kwargs,
        lambda opts: aggregates.conv_kernel_gradient(x, d_out, kernel_shape, strides, padding, result=result,
                                                     options=opts),
    )  # fmt: skip


def dense_input_gradient(name, d_out, kernel, result=None, step=None, **kwargs):
    """Explains the input gradient `d_out @ kernel^T`; units are the input features."""
    return _write(
        name, "input_gradient", "dense", int(kernel.shape[-2]), step, kwargs,
        lambda opts: aggregates.dense_input_gradient(d_out, kernel, result=result, options=opts),
    )  # fmt: skip


def conv_input_gradient(name, d_out, kernel, input_shape, strides=1, padding="VALID", result=None, step=None, **kwargs):
    """Explains a convolution's input gradient; units are the input channels."""
    return _write(
        name, "input_gradient", _conv_op(kernel), int(kernel.shape[-2]), step, kwargs,
        lambda opts: aggregates.conv_input_gradient(d_out, kernel, input_shape, strides, padding, result=result,
                                                    options=opts),
    )  # fmt: skip


def _conv_op(kernel_or_shape):
    rank = len(kernel_or_shape.shape) if hasattr(kernel_or_shape, "shape") else len(kernel_or_shape)
    if rank not in (3, 4, 5):
        raise ValueError(f"kernel must have rank 3, 4 or 5 (1D to 3D convolution), got rank {rank}")
    return f"conv{rank - 2}d"


_OPTION_FIELDS = frozenset(f.name for f in dataclasses.fields(aggregates.Options))


def _write(name, role, op, units, step, kwargs, totals_fn):
    """Checks the keyword arguments (the module docstring's common ones), then writes `totals_fn(aggregates.Options)`
    when recording."""
    options = dict(kwargs)
    layer = options.pop("layer", None)
    layer_index = options.pop("layer_index", 0)
    description = options.pop("description", None)
    unknown = set(options) - _OPTION_FIELDS - {"max_units", "scalars"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
    max_units = options.pop("max_units", metadata.DEFAULT_MAX_UNITS)
    scalars = options.pop("scalars", True)
    if not isinstance(max_units, int) or isinstance(max_units, bool) or max_units < 1:
        raise ValueError(f"max_units must be a positive int, got {max_units!r}")
    opts = aggregates.Options(**options)
    summary_metadata = metadata.create_summary_metadata(
        layer or name,
        description,
        role=role,
        op=op,
        layer=layer or name,
        index=layer_index,
        units=units,
        confidence=opts.confidence,
        thresholds=[t if t is None else float(t) for t in opts.thresholds],
    )
    with tf.summary.experimental.summary_scope(name, "matmul_explainer_summary") as (tag, _):

        def record():
            return write_totals(tag, totals_fn(opts), step, summary_metadata, max_units=max_units, scalars=scalars)

        return tf.cond(tf.summary.should_record_summaries(), record, lambda: tf.constant(False))
