"""What a recording step computes at trace time, from the adapters' patched calls.

`Explaining` is the part of `LayerRecorder` that the patched calls reach: `_explain(target, x, kernel, product,
geometry)` computes the layer's matmul with the forward and input-features records written and hooks on the
gradients of its result and its kernel (which write the two gradient records), and `_activate(target, m, bias,
activation)` applies bias and activation with the activation records. Records are computed only when the step
records (`when_recording`), summed across replicas under a distribution strategy, and written with the
recorder's writer. The per-unit totals come from the target's adapter (`layers/`). Where the second operand is an
activation, not a weight (`Adapter.kernel_is_weight` False: attention's K and V), its gradient is per replica and
the kernel-gradient record computes it from the first operand and d_out when it records.
"""

import contextlib
import dataclasses
import warnings

import tensorflow as tf
from keras import ops as kops

from tb_matmul_explainer import aggregates, elementwise, internals, metadata, summary, validation
from tb_matmul_explainer import threshold as threshold_lib
from tb_matmul_explainer.keras import shared as shared_lib
from tb_matmul_explainer.keras.options import DEFAULT_NEAR_ZERO_SAMPLE, PartlyRecordedWarning

_FIELDS = (
    "counts",
    "sums",
    "near_zero_counts",
    "near_zero_sums",
    "cells",
    "near_zero_cells",
    "thresholds",
    "nonfinite",
)
_EXTRA_FIELDS = metadata.RecordExtras._fields
_ELEMENTWISE_ROLES = ("activation", "activation_gradient", "input_features")
_GRADIENT_ROLES = ("kernel_gradient", "input_gradient", "activation_gradient")


@dataclasses.dataclass
class Trace:
    """The recording step being traced (one per thread: replicas trace in their own threads)."""

    step: tf.Tensor
    record: object  # a bool tensor, or a Python bool when known at trace time
    replicas: int
    context: object
    detail: object = True  # keep the records' unit detail: a bool tensor, or a Python bool
    seen: set = dataclasses.field(default_factory=set)
    states: dict = dataclasses.field(default_factory=dict)  # id(target) -> its call's state (`_explain`)
    shared_keys: set = dataclasses.field(default_factory=set)  # record keys met in this step (`shared.py`)
    thresholds: dict = dataclasses.field(default_factory=dict)  # source tensor's ref -> its threshold (`_source`)


def when_recording(trace, compute, otherwise):
    """`compute()` when the step records, else `otherwise()`: a `tf.cond`, or (when `trace.record` is a Python
    bool, known at trace time) the branch itself. A graph without a conditional per record and per threshold is
    faster to trace and to optimise on its first run, and computes the same values."""
    if isinstance(trace.record, bool):
        return compute() if trace.record else otherwise()
    return tf.cond(trace.record, compute, otherwise)


def gradient_hook(z, on_gradient):
    """An identity on z whose gradient function calls `on_gradient(d_out)` (summary ops join the same graph)."""

    @tf.custom_gradient
    def hook(value):
        def grad(d_out):
            on_gradient(d_out)
            return d_out

        return tf.identity(value), grad

    return hook(z)


_PASS_THROUGH = ("Identity", "IdentityN", "StopGradient", "Snapshot")


def _source(t):
    """The tensor `t` passes on unchanged through identities (a gradient hook, `stop_gradient`): a layer's output
    `a` and the next layer's input `x` read directly from it have one source. None outside a graph."""
    try:
        while t.op.type in _PASS_THROUGH:
            t = t.op.inputs[t.value_index]  # (IdentityN: the input at the output's position)
    except AttributeError:  # (an eager tensor has no op)
        return None
    return t


class Explaining:
    """Trace-time methods of `LayerRecorder` (it sets roles, options, thresholds, loss_scale, writer, ...)."""

    def _explain(self, target, x, kernel, product, geometry):
        """At trace time, from a patched call: returns `m = product(x, kernel)` (the layer's matmul or
        convolution, before bias and activation) with the forward and input-features records written and hooks
        on the gradients of m and of the kernel. A layer called several times in one step is explained at its
        first call only (`_activate` then explains its activation step)."""
        trace = self._trace
        if trace is None:
            return product(x, kernel)
        if id(target) in trace.seen:
            trace.states[id(target)]["calls"] += 1
            return product(x, kernel)
        trace.seen.add(id(target))
        roles = target.roles
        kernel = tf.convert_to_tensor(kernel)  # (a variable's value, read once: eagerly it may be the variable)
        # This call's operands' thresholds, d_out, ..., shared by its records; the target and its calls in the step.
        state = trace.states[id(target)] = {"target": target, "calls": 1}
        xs, ks = tf.stop_gradient(x), tf.stop_gradient(kernel)
        if "kernel_gradient" in roles and target.layer.trainable and target.adapter.kernel_is_weight:
            # The kernel gradient itself (computed by TensorFlow anyway) is the kernel-gradient record's result.
            kernel = gradient_hook(
                kernel, lambda d_kernel: self._on_kernel_gradient(target, trace, state, xs, ks, d_kernel, geometry)
            )
        m = product(x, kernel)
        if "input_features" in roles:
            x_thr = self._threshold(trace, state, "x", xs, 0)
            self._record(
                target,
                "input_features",
                trace,
                lambda xs, x_thr: self._elementwise(elementwise.input_feature_totals)(
                    target.adapter.features_last(target, xs),
                    x_thr,
                    seed=self._seed(11),
                    max_rows=self._elementwise_rows,
                    group_size=self._group_size(target, "input_features"),
                ),
                (xs, x_thr),
            )
        if "forward" in roles:
            ms = tf.stop_gradient(m)
            thresholds = (
                self._threshold(trace, state, "x", xs, 0),
                self._threshold(trace, state, "kernel", ks, 1),
                # m's threshold: shared with the activation record (not computed when near-zero totals are off).
                self._threshold(trace, state, "m", ms, 2) if self.options.near_zero != "off" else self.thresholds[2],
            )
            self._record(
                target,
                "forward",
                trace,
                lambda xs, ks, ms, *thresholds: (
                    self._forward_totals(target, xs, ks, ms, geometry, thresholds),
                    elementwise.matmul_extras(target.units["forward"], target.adapter.units_last(target, ms)),
                ),
                (xs, ks, ms, *thresholds),
                geometry,
            )
        if {"kernel_gradient", "input_gradient", "activation_gradient"} & set(roles):
            state["m_hooked"] = True
            m = gradient_hook(m, lambda d_out: self._on_output_gradient(target, trace, state, xs, ks, d_out, geometry))
        return m

    def _activate(self, target, m, bias, activation):
        """At trace time, from a patched call: `a = activation(m + bias)` (bias None: none; already shaped to
        broadcast; activation None: none) with the activation record written and a hook on a's gradient, for a
        layer that `_explain` explained in this step."""
        z = m if bias is None else kops.add(m, bias)
        a = z if activation is None else activation(z)
        trace = self._trace
        state = None if trace is None else trace.states.get(id(target))
        if state is None or target.activation is None or "activated" in state:
            return a
        if "activation" not in target.roles and "activation_gradient" not in target.roles:
            return a
        state["activated"] = True
        act = target.activation
        ms, zs, as_ = (target.adapter.units_last(target, tf.cast(tf.stop_gradient(t), tf.float32)) for t in (m, z, a))
        bs = None if bias is None else tf.cast(tf.stop_gradient(bias), tf.float32)
        if "activation" in target.roles:
            m_threshold = self._threshold(trace, state, "m", ms, 2)
            a_threshold = self._tensor_threshold(trace, as_, 5)
            z_shape = tf.shape(tf.stop_gradient(z))

            def totals(ms, zs, as_, bs, m_threshold, a_threshold, z_shape):
                units = zs.shape[-1]
                if bs is None:
                    b_threshold, b_codes, b_nonfinite = tf.constant(0.0), tf.ones([units], tf.int32), 0
                else:  # the bias classed once; its codes broadcast as the bias is (per unit: after sampling)
                    b_threshold = self._operand_threshold(bs, 4)
                    b_codes = elementwise.class_codes(bs, b_threshold)
                    if bs.shape.rank != 1 or bs.shape[0] != units:
                        b_codes = tf.reshape(tf.broadcast_to(b_codes, z_shape), tf.shape(zs))
                    copies = tf.reduce_prod(tf.cast(z_shape, tf.int64)) // tf.size(bs, out_type=tf.int64)
                    b_nonfinite = threshold_lib.count_nonfinite(bs) * copies
                return self._elementwise(elementwise.activation_totals)(
                    ms,
                    zs,
                    as_,
                    act,
                    b_codes,
                    b_nonfinite,
                    (m_threshold, b_threshold),
                    a_threshold,
                    seed=self._seed(9),
                    max_rows=self._elementwise_rows,
                    pair_rows=self._pair_rows(target),
                    group_size=self._group_size(target, "activation"),
                )

            inputs = (ms, zs, as_, bs, m_threshold, a_threshold, z_shape)

            def write(loss_reads_logits=None):
                md = target.metadata["activation"]
                if loss_reads_logits is not None:
                    md = metadata.with_loss_reads_logits(md, loss_reads_logits)
                self._record(target, "activation", trace, totals, inputs, summary_metadata=md)

            if state.get("m_hooked"):  # written when dJ/dz arrives (or at the step's end): it says whether dJ/da did
                state["write_activation"] = write
            else:
                write()
        if state.get("m_hooked"):
            # dJ/da is kept for the record made when dJ/dz (the matmul's d_out) arrives, just after it. When the loss
            # reads the logits z itself (Keras' cross-entropy on a sigmoid or softmax output, through the
            # `_keras_logits` Keras attaches to a), no dJ/da arrives: the hooked a keeps that attribute, so that the
            # loss of a recording step is computed as in a plain step.
            state["z"] = zs
            logits = getattr(a, "_keras_logits", None)
            a = gradient_hook(a, lambda d_a: state.update(d_a=target.adapter.units_last(target, self._unscale(d_a))))
            if logits is not None:
                with contextlib.suppress(AttributeError):  # (a tensor without attributes: the loss reads a)
                    a._keras_logits = logits
        return a

    def _finish_step(self, trace):
        """At the end of the traced step: the activation records of layers whose d_out never arrived (their
        gradient was not computed), written without saying whether the loss reads their logits; a warning, once
        per layer, for a layer whose records miss part of the step (`_warn_partial`)."""
        for state in trace.states.values():
            write = state.pop("write_activation", None)
            if write is not None:
                write()
            target = state["target"]
            gradient_roles = [r for r in target.roles if r in _GRADIENT_ROLES]
            if state["calls"] > 1:
                source = f", the one on the input from {target.producer[0]}" if target.producer[0] else ""
                if target.sources:  # (several shared layers in a row may each explain a different branch)
                    source += f"{',' if source else ', the one'} which reads {' and '.join(target.sources)}"
                self._warn_partial(
                    target,
                    f"it is called {state['calls']} times in a step and its records explain the first call it runs "
                    f"only{source} (its kernel-gradient record holds that call's part of the gradient: where the "
                    "other calls' results are differentiated too, the optimizer applies the sum)",
                )
            if gradient_roles and "d_out_value" not in state:
                self._warn_partial(
                    target,
                    "no gradient reached its output in the recording step (is it called outside the GradientTape, "
                    f"or is its output unused by the loss?): its {', '.join(gradient_roles)} records are not written",
                )

    def _warn_partial(self, target, why):
        key = (target.name, why)
        if key not in self._warned:
            self._warned.add(key)
            known = self.partly_recorded.get(target.name)
            self.partly_recorded[target.name] = f"{known}; {why}" if known else why
            warnings.warn(
                f"tb_matmul_explainer: layer {target.name!r} is only partly recorded: {why}.",
                PartlyRecordedWarning,
                stacklevel=2,
            )

    def _activation_gradient_record(self, target, trace, state, d_out):
        """dJ/dz = dJ/da * f'(z), recorded from the matmul's output gradient hook: d_out is dJ/dz, so the record's
        result threshold is the one the matmul's gradient records use. f'(z) is classed by the activation's own
        inactive bound (Z: inactive), not by a percentile."""
        d_a, z = state["d_a"], state["z"]
        result_threshold = self._threshold(trace, state, "d_out", d_out, 2)

        def totals(d_a, z, d_out, result_threshold):
            return self._elementwise(elementwise.activation_gradient_totals)(
                d_a,
                z,
                target.adapter.units_last(target, d_out),
                target.activation,
                self._operand_threshold(d_a, 6),
                result_threshold,
                seed=self._seed(10),
                max_rows=self._elementwise_rows,
                pair_rows=self._pair_rows(target),
                group_size=self._group_size(target, "activation_gradient"),
            )

        self._record(target, "activation_gradient", trace, totals, (d_a, z, d_out, result_threshold))

    _SEED_INDEX = {"x": 0, "kernel": 1, "d_out": 2, "m": 3}

    def _elementwise(self, totals_fn):
        """An `elementwise` totals function, XLA-compiled when the recorder's `jit` asks for it."""
        return elementwise.compiled(totals_fn) if self.options.jit else totals_fn

    @property
    def _elementwise_rows(self):
        """Rows the elementwise records count (near_zero="exact": every row)."""
        return None if self.options.near_zero == "exact" else elementwise.MAX_ROWS

    def _pair_rows(self, target):
        """Rows the elementwise records' pair split counts: the matmul records' near-zero sample (near_zero="exact":
        every row)."""
        return None if self.options.near_zero == "exact" else self._near_zero_sample(target)

    def _group_size(self, target, role):
        """Units per stored row of the role's records (`metadata.group_size`)."""
        return metadata.group_size(target.units[role], self.max_units)

    def _near_zero_sample(self, target):
        """The near-zero sample's size for the target's kind (rows, positions or entries)."""
        return self.options.near_zero_sample_size or DEFAULT_NEAR_ZERO_SAMPLE[target.adapter.near_zero_sample]

    def _seed(self, index):
        if self.seed is None:
            return None
        return tf.constant([self.seed, 0], tf.int64) + tf.constant([0, 100 + index], tf.int64)

    def _operand_threshold(self, t, index):
        """The threshold of an operand used by one record only (computed where the record is computed)."""
        value = validation.as_float_tensor(t, "operand")
        if self.threshold_method == "exact":
            return tf.cast(threshold_lib.percentile_threshold(value, self.confidence), tf.float32)
        return tf.cast(
            threshold_lib.sampled_threshold(value, self.confidence, self.sample_size, seed=self._seed(index)),
            tf.float32,
        )

    def _threshold(self, trace, state, operand, t, position):
        """The threshold of an operand at `position` (0 first, 1 second, 2 result) of a record: the explicit one if
        given, else computed from the operand `t` (a tensor, or a function returning it; only when recording) and
        shared by the records that use the operand, so that it is classed the same way in each."""
        if self.thresholds[position] is not None:
            return self.thresholds[position]
        if operand not in state:
            state[operand] = self._tensor_threshold(trace, t, self._SEED_INDEX[operand])
        return state[operand]

    def _tensor_threshold(self, trace, t, index):
        """The threshold of tensor `t` (or a function returning it) in this step, computed only when recording.
        One tensor read by records of two layers (a layer's output `a`, read directly as the next layer's input
        x) has one threshold: the same values are classed the same way in both, and it is computed once."""
        source = None if callable(t) else _source(t)
        key = None if source is None else source.ref()
        if key is None or key not in trace.thresholds:
            value = when_recording(
                trace,
                lambda: self._operand_threshold(t() if callable(t) else t, index),
                lambda: tf.constant(0.0, tf.float32),
            )
            if key is None:
                return value
            trace.thresholds[key] = value
        return trace.thresholds[key]

    def _unscale(self, gradient):
        """A gradient in float32, divided by the loss scale."""
        gradient = tf.cast(gradient, tf.float32)
        if self.loss_scale is not None:
            gradient = gradient / tf.cast(self.loss_scale(), tf.float32)
        return gradient

    def _on_output_gradient(self, target, trace, state, x, kernel, d_out, geometry):
        d_out = self._unscale(d_out)
        state["d_out_value"] = d_out
        through_activation = "d_a" in state  # (the activation's gradient hook runs just before: dJ/da precedes dJ/dz)
        write_activation = state.pop("write_activation", None)
        if write_activation is not None:
            write_activation(loss_reads_logits=not through_activation)
        if through_activation and "activation_gradient" in target.roles:
            self._activation_gradient_record(target, trace, state, d_out)
        if "kernel_gradient" in target.roles and not (target.layer.trainable and target.adapter.kernel_is_weight):
            # TensorFlow computes no kernel gradient for a frozen layer (and none the record can reach for an
            # activation in the kernel's place): the record computes it.
            self._kernel_gradient_record(target, trace, state, x, kernel, None, geometry)
        if "input_gradient" in target.roles:
            thresholds = (
                self._threshold(trace, state, "d_out", d_out, 0),
                self._threshold(trace, state, "kernel", kernel, 1),
                self.thresholds[2],
            )
            self._record(
                target,
                "input_gradient",
                trace,
                lambda x, d_out, kernel, *thresholds: (
                    self._input_gradient_totals(target, x, d_out, kernel, geometry, thresholds),
                    elementwise.matmul_extras(target.units["input_gradient"]),
                ),
                (x, d_out, kernel, *thresholds),
                geometry,
            )

    def _on_kernel_gradient(self, target, trace, state, x, kernel, d_kernel, geometry):
        if "d_out_value" in state:  # (m's gradient always comes first: the kernel's gradient is computed from it)
            self._kernel_gradient_record(target, trace, state, x, kernel, self._unscale(d_kernel), geometry)

    def _kernel_gradient_record(self, target, trace, state, x, kernel, result, geometry):
        d_out = state["d_out_value"]
        kernel_shape = kernel.shape
        shared = target.adapter.kernel_is_weight
        if trace.replicas > 1 and shared:
            # The record's result is the global (all-reduced) kernel gradient, the one the optimizer applies.
            if result is None:
                result = when_recording(
                    trace,
                    lambda: target.adapter.kernel_gradient(target, x, d_out, kernel_shape, geometry),
                    lambda: tf.zeros(kernel_shape, tf.float32),
                )
            result = trace.context.all_reduce(tf.distribute.ReduceOp.SUM, result)
        thresholds = (
            self._threshold(trace, state, "x", x, 0),
            self._threshold(trace, state, "d_out", d_out, 1),
            self.thresholds[2],
        )

        def totals(x, d_out, kernel, result, *thresholds):
            value = result
            if value is None:  # (a frozen layer: computed here, for its |dW| too)
                value = target.adapter.kernel_gradient(target, x, d_out, kernel_shape, geometry)
            unit_totals = self._kernel_gradient_totals(target, x, d_out, kernel_shape, geometry, value, thresholds)
            units = target.units["kernel_gradient"]

            def per_unit(t):
                return tf.reshape(target.adapter.kernel_units_last(target, t), [-1, units])

            weights = per_unit(tf.abs(tf.cast(kernel, tf.float32)))
            return unit_totals, elementwise.matmul_extras(
                units,
                None if value is None else per_unit(value),
                tf.reduce_sum(weights, 0),
                target.adapter.padding_only(target, x, kernel_shape, geometry),
            )

        self._record(target, "kernel_gradient", trace, totals, (x, d_out, kernel, result, *thresholds), geometry)

    def _options(self, target, thresholds):
        """The aggregate kernels' options for one record: the recorder's, with its thresholds."""
        return dataclasses.replace(
            self.options, thresholds=thresholds, near_zero_sample_size=self._near_zero_sample(target)
        )

    def _forward_totals(self, target, x, kernel, z, geometry, thresholds):
        return target.adapter.forward_totals(target, x, kernel, z, geometry, self._options(target, thresholds))

    def _kernel_gradient_totals(self, target, x, d_out, kernel_shape, geometry, result, thresholds):
        return target.adapter.kernel_gradient_totals(
            target, x, d_out, kernel_shape, geometry, result, self._options(target, thresholds)
        )

    def _input_gradient_totals(self, target, x, d_out, kernel, geometry, thresholds):
        return target.adapter.input_gradient_totals(
            target, x, d_out, kernel, geometry, self._options(target, thresholds)
        )

    def _record(self, target, role, trace, totals_fn, inputs, geometry=None, summary_metadata=None):
        """Computes (only when recording), reduces across replicas, and writes one record. `totals_fn(*inputs)`
        returns `aggregates.UnitTotals` or `(UnitTotals, metadata.RecordExtras)` and reads no other tensor of the
        step (layers that compute alike share it: `keras/shared.py`); `geometry` is the one of the patched call;
        `summary_metadata` defaults to the target's for `role`."""
        tag = f"{target.name}/{role}"
        summary_metadata = summary_metadata or target.metadata[role]
        units = target.units[role]

        def record_fields(*inputs):
            totals = totals_fn(*inputs)
            totals, extras = (
                totals if isinstance(totals, tuple) and len(totals) == 2 else (totals, metadata.no_extras(units))
            )
            return [tf.cast(t, tf.float64) for t in (*totals, *extras)]

        def shared(compute, inputs):
            if not self._shared_records.enabled:  # (no key to make: each record is inlined)
                return compute(*inputs)
            key = shared_lib.record_key(target, role, geometry, inputs)
            return self._shared_records.compute(trace.shared_keys, key, compute, inputs)

        if trace.replicas == 1:
            # The record packed where it is computed: layers that compute alike share the packing too.
            def packed(*inputs_and_detail):
                *inputs, detail = inputs_and_detail
                totals, extras = self._split_fields(record_fields(*inputs))
                return summary.pack_totals(
                    totals, max_units=self.max_units, scalars=self.scalars, extras=extras, detail=detail
                )

            def write():
                with internals.default_writer(self.writer), tf.summary.record_if(True):
                    record = shared(packed, (*inputs, trace.detail))
                    return summary.write_packed(tag, record, trace.step, summary_metadata)

            when_recording(trace, write, lambda: tf.constant(False))
            return
        # (The elementwise records' pair blocks come summed per stored row: `elementwise._pair_totals`.)
        pair_rows = -(-units // self._group_size(target, role)) if role in _ELEMENTWISE_ROLES else units
        zeros = (
            [tf.zeros([pair_rows, 9], tf.float64)] * 4
            + [tf.zeros([units], tf.float64)] * 2
            + [tf.zeros([3], tf.float64)] * 2
            + [tf.zeros([units], tf.float64)] * 2
            + [tf.zeros([], tf.float64)] * 2
        )
        fields = when_recording(trace, lambda: shared(record_fields, inputs), lambda: zeros)
        fields = trace.context.all_reduce(tf.distribute.ReduceOp.SUM, fields)
        fields = dict(zip(_FIELDS + _EXTRA_FIELDS, fields))
        r = float(trace.replicas)
        # Thresholds: the mean of the replicas'. Kernel gradient: the result (global) is the same on every replica.
        fields["thresholds"] = fields["thresholds"] / r
        fields["output_threshold"] = fields["output_threshold"] / r
        fields["padding_only"] = fields["padding_only"] / r
        if role == "kernel_gradient" and target.adapter.kernel_is_weight:
            fields["cells"] = fields["cells"] / r
            fields["near_zero_cells"] = fields["near_zero_cells"] / r
            fields["nonfinite"] = fields["nonfinite"] * tf.constant([1.0, 1.0, 1.0 / r], tf.float64)
            fields["result_magnitude"] = fields["result_magnitude"] / r
            fields["reference"] = fields["reference"] / r
        fields = [fields[f] for f in _FIELDS + _EXTRA_FIELDS]
        when_recording(trace, lambda: self._write(tag, summary_metadata, fields, trace), lambda: tf.constant(False))

    @staticmethod
    def _split_fields(fields):
        """A record's float64 fields (`_FIELDS` then `_EXTRA_FIELDS`) as (UnitTotals, RecordExtras)."""
        return aggregates.UnitTotals(*fields[: len(_FIELDS)]), metadata.RecordExtras(*fields[len(_FIELDS) :])

    def _write(self, tag, summary_metadata, fields, trace):
        totals, extras = self._split_fields(fields)
        with internals.default_writer(self.writer), tf.summary.record_if(True):
            return summary.write_totals(
                tag,
                totals,
                trace.step,
                summary_metadata,
                max_units=self.max_units,
                scalars=self.scalars,
                extras=extras,
                detail=trace.detail,
            )
