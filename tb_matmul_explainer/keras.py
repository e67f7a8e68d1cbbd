"""Keras 3 instrumentation: records chosen layers' nine-pair explanations on the actual training batches.

Two public pieces:

* `ExplainerCallback(log_dir, update_freq=100, ...)`: a `keras.callbacks.Callback` for `model.fit`.
* `LayerRecorder(model, log_dir, ...)`: the same instrumentation for a custom training loop (GradientTape),
  used as `with recorder.recording(step): ...` inside the user's own (recording) train step.

What is recorded. For each chosen layer and role, one tag `<layer name>/<role>` in the run directory
`<log_dir>/<run>` (`run="train"` by default, the directory Keras' own `TensorBoard` callback writes its training
scalars to; `run=None` writes into `log_dir` itself), holding one `metadata.py` record per recorded step, plus the
two plain scalars `<tag>/near_zero_fraction` and `<tag>/dead_unit_fraction` (unless `scalars=False`). Roles:
  forward          the layer's input x and kernel; result z = x @ kernel (the convolution), before bias/activation
  kernel_gradient  x and d_out = d(loss)/dz; result = the kernel gradient TensorFlow computes for the step
  input_gradient   d_out and the kernel; result = d(loss)/dx
An operand is classed the same way in every record of the step that uses it (x in forward and kernel_gradient,
the kernel in forward and input_gradient, d_out in both gradients): its threshold is computed once.
Defaults: `threshold_method="sampled"` (a percentile of `sample_size` random values) and `near_zero="sampled"`
(near-zero totals from `DEFAULT_NEAR_ZERO_SAMPLE` batch rows of a Dense layer or batch positions of a
convolution, rescaled; `near_zero_sample_size` sets both); all-cells totals and near-zero cell counts are exact.
Supported layers: `Dense`, `EinsumDense` whose equation is a matmul over trailing input axes (e.g. `ab,bc->ac`,
`abc,cd->abd`, `...b,bcd->...cd`; the kernel's output axes are flattened into units), and `Conv1D/2D/3D` with
`channels_last`, any strides, `valid`/`same` padding (`causal` for Conv1D: explained as the VALID convolution over
the left-padded input, the padding zeros counted as near-zero inputs), `dilation_rate=1` and `groups=1`, that do
not override `call`. Any other layer that has a kernel (and any unsupported setting) is skipped with an
`UnsupportedLayerWarning` naming the layer and the reason; the other layers are still recorded (`skipped` lists
them). A layer called several times in one step is explained at its first call. The skipped layers are also
recorded in the run, for TensorBoard: one standard text summary per layer, tag
`matmul_explainer/not_recorded/<layer name>` (`NOT_RECORDED_TAG_PREFIX`), holding the warning's reason, written once
at the first recorded step (by the callback; in a custom loop, `LayerRecorder.write_not_recorded(step)`).

Cadence (callback). Steps are 0-based global training steps: the number of optimizer steps taken before the step
(`model.optimizer.iterations` at `on_train_begin`, then counted by the callback; it keeps counting over epochs
and over later `fit` calls). `update_freq=N` records the steps 0, N, 2N, ...; validation batches are never
recorded.

How it stays cheap. A recording step and a plain step are different compiled functions: the callback keeps the
model's own `train_function` for the steps that do not record (they cost nothing extra, and keep TensorFlow's
fused matmul + bias + activation kernels; the callback's only per-step work is a Python check in
`on_train_batch_begin`, and it defines no batch-end hook, so Keras keeps dispatching those asynchronously) and
swaps in an instrumented train function (built by Keras' own `_make_function` around the model's own
`train_step`, so custom `train_step`s, loss scaling and metrics keep working; compiled once and cached) just
before a step that records. While the instrumented function is traced, the chosen layers' `call` is replaced by
an equivalent that computes z explicitly, writes the forward record with result=z, and passes z and the kernel
through identities whose gradient functions receive d_out and the kernel gradient and write the gradient
records (those ops become part of the same compiled step). Nothing is run twice: the records explain the batch
that the step trains on, with the weights before the step's update. The kernel-gradient record needs the
kernel's gradient to be computed (the layer is trainable and the train step differentiates its kernel); for a
frozen layer the record computes it.

`steps_per_execution=K > 1`: an execution (K steps in one compiled call) that contains a recording step runs the
instrumented function for all K steps; exactly the steps s with s % N == 0 are recorded, each with its own step
number; the other steps in that execution only skip the record kernels (a `tf.cond`).

Mixed precision: float16/bfloat16 operands are explained in float32. Under loss scaling (Keras'
`LossScaleOptimizer`, or any optimizer whose `scale_loss` scales), d_out is divided by the scale
(`optimizer.scale_loss(1.0)` at that step), so gradient records are in the units of the unscaled loss. A step
whose scaled gradients overflow is recorded too (its non-finite values counted in the record's header).

NaN loss: the step is recorded (non-finite values are counted in the header; NaN is classed near-zero as the
classifiers do); training is unaffected by the recorder.

`tf.distribute` (e.g. MirroredStrategy): each replica computes its totals on its shard of the batch with its own
thresholds; the totals are summed across replicas (`ReplicaContext.all_reduce`), so a record covers the global
batch, and only replica 0 writes it (TensorFlow's summary ops already record on replica 0 only). The record's
header holds the mean of the replicas' operand thresholds. For `kernel_gradient` the result is the all-reduced
(global) kernel gradient: its near-zero cells and its threshold are those of the gradient the optimizer applies,
and each replica's contributions to those cells are summed. Keras divides each replica's loss by the number of
replicas, so d_out is d(global mean loss)/dz. With `steps_per_execution > 1` under a strategy, the all-reduce of
the totals runs on every step of a recording execution (zeros on the steps that do not record).

XLA: the instrumented function is compiled without XLA (summary writes cannot be compiled); the plain steps keep
the model's `jit_compile` setting.
"""

import dataclasses
import math
import os
import re
import threading
import warnings

import keras
import tensorflow as tf
from keras import ops as kops

from tb_matmul_explainer import activations, aggregates, elementwise, graph, metadata, summary, validation
from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer import threshold as threshold_lib

DEFAULT_RUN = "train"
# Tag prefix of the text summaries naming the layers that are not recorded (one per layer, the reason as text).
NOT_RECORDED_TAG_PREFIX = "matmul_explainer/not_recorded/"
# The matmul roles plus the steps around them (metadata.py): what makes a layer's inputs and outputs near zero.
DEFAULT_ROLES = ("forward", "kernel_gradient", "activation", "activation_gradient", "input_features")
# near_zero="sampled" (the default): batch rows (dense) or batch positions (convolutions) whose near-zero cells are
# explained, the totals rescaled to the whole batch (see `aggregates`); all-cells totals are always exact.
DEFAULT_NEAR_ZERO_SAMPLE = {"dense": 32, "conv": 1024}
_FIELDS = ("counts", "sums", "near_zero_counts", "near_zero_sums", "cells", "near_zero_cells", "thresholds",
           "nonfinite")
_EXTRA_FIELDS = metadata.RecordExtras._fields


def _check_options(*, roles, confidence, thresholds, threshold_method, near_zero, sample_size,
                   near_zero_sample_size, seed, max_units, jit=True):
    """Validates the recorder's options; returns the normalised roles and the `aggregates.Options` (its
    near_zero_sample_size None where the per-kind default applies)."""
    roles = (roles,) if isinstance(roles, str) else tuple(roles)
    if not roles:
        raise ValueError("roles must name at least one role")
    for role in roles:
        if role not in metadata.ROLES:
            raise ValueError(f"roles must be among {metadata.ROLES}, got {role!r}")
    if max_units is not None and (isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1):
        raise ValueError(f"max_units must be a positive int, got {max_units!r}")
    options = aggregates.Options(confidence=confidence, thresholds=thresholds, threshold_method=threshold_method,
                                 near_zero=near_zero, sample_size=sample_size,
                                 near_zero_sample_size=near_zero_sample_size, seed=seed, jit=jit)
    return tuple(r for r in metadata.ROLES if r in roles), options


class UnsupportedLayerWarning(UserWarning):
    """A layer that the recorder cannot explain; the message names the layer and the reason."""


@dataclasses.dataclass
class _Target:
    """One recorded layer."""
    layer: object
    index: int        # position in the model's layers (depth-first, model order)
    name: str         # tag prefix: the layer's name (made unique if two layers share it)
    kind: str         # "dense", "einsum_dense" or "conv"
    op: str           # metadata op
    metadata: dict    # role -> SummaryMetadata
    einsum: int = None  # EinsumDense: the number of contracted (trailing input, leading kernel) axes
    activation: object = None  # activations.Activation of the layer's own activation (None: linear)
    roles: tuple = ()  # the roles recorded (`_roles_of`)
    units: dict = None  # role -> units of its record
    producer: tuple = (None, None)  # (name, kind) of the layer that produced the input (`producer_of`)


# ---------------------------------------------------------------------------------------------------------------
# Which layers, and why not


def _walk(model):
    """All layers below `model`, depth-first in model order (parents before their sublayers); a layer that is not
    a model comes first itself."""
    seen, out = {id(model)}, [] if isinstance(model, keras.Model) else [model]

    def visit(layer):
        for child in getattr(layer, "_layers", []):
            if id(child) in seen or isinstance(child, keras.layers.InputLayer):
                continue
            seen.add(id(child))
            out.append(child)
            visit(child)

    visit(model)
    return out


def _groups(all_layers):
    """{id(layer): the index of its outermost non-Model ancestor-or-self} over `_walk`'s list (parents first): the
    sublayers of a MultiHeadAttention share its index."""
    index, group = {id(layer): i for i, layer in enumerate(all_layers)}, {}

    def assign(layer, g):
        for child in getattr(layer, "_layers", []):
            if id(child) in index and id(child) not in group:
                group[id(child)] = g
                assign(child, g)

    for i, layer in enumerate(all_layers):
        if id(layer) not in group:
            group[id(layer)] = i
            if not isinstance(layer, keras.Model):
                assign(layer, i)
    return group


def _einsum_plan(equation):
    """The number of contracted axes if the equation is a matmul over the input's trailing axes with the kernel's
    contracted axes first and its unit axes last; else a reason string."""
    eq = equation.replace(" ", "")
    match = re.fullmatch(r"((?:\.\.\.)?[a-zA-Z]*),([a-zA-Z]+)->((?:\.\.\.)?[a-zA-Z]*)", eq)
    if not match:
        return f"its equation {equation!r} is not of the form 'input,kernel->output'"
    lhs, ker, out = match.groups()
    lhs_letters, out_letters = lhs.replace("...", ""), out.replace("...", "")
    contracted = [c for c in ker if c in lhs_letters and c not in out_letters]
    units = [c for c in ker if c not in lhs_letters]
    shared = [c for c in ker if c in lhs_letters and c in out_letters]
    ok = (contracted and not shared and len(set(ker)) == len(ker)
          and ker == "".join(contracted) + "".join(units)
          and lhs.endswith("".join(contracted))
          and out == lhs[:len(lhs) - len(contracted)] + "".join(units))
    if not ok:
        return (f"its equation {equation!r} is not a matmul over the input's trailing axes "
                "(supported: 'input_free + contracted, contracted + units -> input_free + units', "
                "e.g. 'abc,cd->abd')")
    return len(contracted)


_OWN_CALLS = None


def _own_calls():
    """The `call` methods whose computation the patched calls reproduce (a subclass overriding `call` is not)."""
    global _OWN_CALLS
    if _OWN_CALLS is None:
        layers = keras.layers
        _OWN_CALLS = {layers.Dense.call, layers.EinsumDense.call, layers.Conv1D.call, layers.Conv2D.call,
                      layers.Conv3D.call}
    return _OWN_CALLS


def _support(layer):
    """(kind, op) for a supported layer, or (None, reason); (None, None) for layers without a kernel."""
    name = type(layer).__name__
    supported_type = isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Conv1D,
                                        keras.layers.Conv2D, keras.layers.Conv3D))
    if supported_type and getattr(layer, "quantization_mode", None):
        return None, f"quantized kernels ({layer.quantization_mode}) are not supported"
    if supported_type and type(layer).call not in _own_calls():
        return None, (f"{name} overrides call(), so its computation is not known to be the one of the "
                      "Keras layer it extends, which the recorder reproduces")
    if isinstance(layer, keras.layers.Dense):
        return "dense", "dense"
    if isinstance(layer, keras.layers.EinsumDense):
        plan = _einsum_plan(layer.equation)
        if isinstance(plan, str):
            return None, plan
        return "einsum_dense", "einsum_dense"
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        if layer.data_format != "channels_last":
            return None, f"data_format={layer.data_format!r} is not supported (channels_last only)"
        if any(d != 1 for d in layer.dilation_rate):
            return None, f"dilation_rate={tuple(layer.dilation_rate)} is not supported (dilation 1 only)"
        if getattr(layer, "groups", 1) != 1:
            return None, f"groups={layer.groups} is not supported (groups=1 only)"
        if layer.padding not in ("valid", "same", "causal"):
            return None, f"padding={layer.padding!r} is not supported"
        return "conv", f"conv{layer.rank}d"
    own = [v for v in getattr(layer, "_trainable_variables", []) + getattr(layer, "_non_trainable_variables", [])]
    if any("kernel" in v.name for v in own):
        return None, (f"layer type {name} is not supported "
                      "(supported: Dense, EinsumDense, Conv1D, Conv2D, Conv3D)")
    return None, None


def _units(layer, kind, role):
    kernel_shape = [int(d) for d in layer.kernel.shape]
    if kind == "einsum_dense":
        contracted = _einsum_plan(layer.equation)
        in_units, out_units = math.prod(kernel_shape[:contracted]), math.prod(kernel_shape[contracted:])
    else:
        in_units, out_units = kernel_shape[-2], kernel_shape[-1]
    return in_units if role in ("input_gradient", "input_features") else out_units


def _roles_of(target, roles):
    """The roles recorded for a target: the activation roles only with a non-linear activation of its own
    (activation_gradient only for an elementwise one)."""
    act = target.activation
    return tuple(r for r in roles
                 if (r != "activation" or act is not None)
                 and (r != "activation_gradient" or (act is not None and act.elementwise)))


# ---------------------------------------------------------------------------------------------------------------
# The recorder


class LayerRecorder:
    """Instruments a Keras model's layers so that a traced training step records them.

    Args:
      model: a built Keras 3 model (Sequential, functional or subclassed) or layer.
      log_dir: the log directory; records go to `<log_dir>/<run>`.
      layers: None (every supported layer) or a list of layer names and/or layer objects.
      roles: any of "forward", "kernel_gradient", "input_gradient".
      confidence, thresholds, threshold_method, near_zero, sample_size, near_zero_sample_size, seed: as for the
        `summary` ops and `aggregates` (defaults: sampled thresholds, sampled near-zero totals, see above).
      max_units: per-unit detail up to this many units (grouped beyond), as for the `summary` ops.
      scalars: also write `<tag>/near_zero_fraction` and `<tag>/dead_unit_fraction`.
      run: the run subdirectory of `log_dir` ("train"), or None for `log_dir` itself.
      loss_scale: None, or a callable returning the current loss scale (a tensor); d_out is divided by it.
      jit: run the aggregate kernels XLA-compiled (`aggregates.Options.jit`; the same values either way).

    `recording(step, record=True)` is a context manager to enter inside a `tf.function` (or eagerly) around the
    forward pass *and* `tape.gradient`: layers called in it are explained at `step` (an int or int tensor)
    whenever `record` (a bool or bool tensor) is true. Outside it the model is untouched.
    """

    def __init__(self, model, log_dir, *, layers=None, roles=DEFAULT_ROLES, confidence=0.95, thresholds=None,
                 threshold_method="sampled", near_zero="sampled", sample_size=None, near_zero_sample_size=None,
                 seed=None, max_units=metadata.DEFAULT_MAX_UNITS, scalars=True, run=DEFAULT_RUN, loss_scale=None,
                 jit=True):
        self.roles, self.options = _check_options(
            roles=roles, confidence=confidence, thresholds=thresholds, threshold_method=threshold_method,
            near_zero=near_zero, sample_size=sample_size, near_zero_sample_size=near_zero_sample_size, seed=seed,
            max_units=max_units, jit=jit)
        self.confidence, self.thresholds = self.options.confidence, self.options.thresholds
        self.threshold_method, self.near_zero = self.options.threshold_method, self.options.near_zero
        self.sample_size, self.seed = self.options.sample_size, self.options.seed
        self.near_zero_sample_size = near_zero_sample_size
        self.max_units = max_units
        self.scalars = bool(scalars)
        self.log_dir = os.fspath(log_dir)
        self.run = run
        self.loss_scale = loss_scale
        self.model = model
        self.targets, self.skipped = self._resolve(model, layers)
        self._writer = None
        self._local = threading.local()  # the active trace, per thread (replicas trace in their own threads)
        self._lock = threading.Lock()
        self._patched = 0

    # -- setup -----------------------------------------------------------------------------------------------

    def _resolve(self, model, wanted):
        all_layers = _walk(model)
        if wanted is not None:
            wanted = [wanted] if isinstance(wanted, (str, keras.layers.Layer)) else list(wanted)
            by_name = {}
            for layer in all_layers:
                by_name.setdefault(layer.name, layer)
            chosen = set()
            for item in wanted:
                if isinstance(item, str):
                    if item not in by_name:
                        raise ValueError(f"no layer named {item!r} in the model; its layers are "
                                         f"{[layer.name for layer in all_layers]}")
                    chosen.add(id(by_name[item]))
                elif isinstance(item, keras.layers.Layer):
                    if not any(layer is item for layer in all_layers):
                        raise ValueError(f"layer {item.name!r} is not part of the model")
                    chosen.add(id(item))
                else:
                    raise TypeError(f"layers must hold layer names or layer objects, got {type(item).__name__}")
        targets, skipped, names = [], {}, set()
        groups = _groups(all_layers)
        for index, layer in enumerate(all_layers):
            if wanted is not None and id(layer) not in chosen:
                continue
            kind, op_or_reason = _support(layer)
            if kind is None:
                if op_or_reason is None:
                    if wanted is not None:
                        op_or_reason = (f"layer type {type(layer).__name__} has no kernel to explain "
                                        "(supported: Dense, EinsumDense, Conv1D, Conv2D, Conv3D)")
                    else:
                        continue
                skipped[layer.name] = op_or_reason
                warnings.warn(f"tb_matmul_explainer: layer {layer.name!r} ({type(layer).__name__}) is not recorded: "
                              f"{op_or_reason}. The other layers are still recorded.", UnsupportedLayerWarning,
                              stacklevel=3)
                continue
            if not layer.built:
                raise ValueError(f"layer {layer.name!r} is not built yet: build or call the model first")
            name = layer.name if layer.name not in names else f"{layer.name}_{index}"
            names.add(name)
            target = _Target(layer=layer, index=index, name=name, kind=kind, op=op_or_reason, metadata={},
                             activation=activations.describe(getattr(layer, "activation", None)),
                             producer=graph.producer_of(layer))
            if kind == "einsum_dense":
                target.einsum = _einsum_plan(layer.equation)
            target.roles = _roles_of(target, self.roles)
            target.units = {role: _units(layer, kind, role) for role in target.roles}
            for role in target.roles:
                target.metadata[role] = metadata.create_summary_metadata(
                    f"{name}/{role}", None, role=role, op=op_or_reason, layer=name, index=index,
                    units=_units(layer, kind, role), confidence=self.confidence,
                    thresholds=self.thresholds if role in metadata.MATMUL_ROLES else (None, None, None),
                    activation=target.activation.name if role.startswith("activation") else None,
                    producer=target.producer[0], producer_kind=target.producer[1], group=groups[id(layer)])
            targets.append(target)
        return targets, skipped

    @property
    def writer(self):
        """The recorder's `tf.summary` writer (created on first use, outside any strategy scope)."""
        if self._writer is None:
            path = self.log_dir if self.run is None else os.path.join(self.log_dir, self.run)
            with tf.init_scope():
                self._writer = tf.summary.create_file_writer(path, filename_suffix=".matmul_explainer")
        return self._writer

    def write_not_recorded(self, step):
        """Writes, with the recorder's writer, one standard text summary per skipped layer (see `skipped`): tag
        `NOT_RECORDED_TAG_PREFIX + layer name`, the text the reason `UnsupportedLayerWarning` gave, at `step`.
        Call it eagerly (outside `tf.function`), once: the callback does at its first recorded step. Returns the
        number of summaries written."""
        if not self.skipped:
            return 0
        with self.writer.as_default(), tf.summary.record_if(True):
            for name, reason in self.skipped.items():
                tf.summary.text(NOT_RECORDED_TAG_PREFIX + name, tf.constant(reason), step=int(step))
        return len(self.skipped)

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- the recording context -------------------------------------------------------------------------------

    def recording(self, step, record=True):
        return _Recording(self, step, record)

    @property
    def _trace(self):
        return getattr(self._local, "trace", None)

    def _patch(self):
        with self._lock:
            if self._patched == 0:
                for target in self.targets:
                    layer = target.layer
                    if "call" in vars(layer):
                        raise RuntimeError(f"layer {layer.name!r} already has an instance-level `call`; "
                                           "is another recorder instrumenting it?")
                    vars(layer)["call"] = _PATCHES[target.kind](self, target)
            self._patched += 1

    def _unpatch(self):
        with self._lock:
            self._patched -= 1
            if self._patched == 0:
                for target in self.targets:
                    vars(target.layer).pop("call", None)

    # -- at trace time, from the patched calls -----------------------------------------------------------------

    def _explain(self, target, x, kernel, product, geometry):
        """At trace time, from a patched call: returns `m = product(x, kernel)` (the layer's matmul or
        convolution, before bias and activation) with the forward and input-features records written and hooks
        on the gradients of m and of the kernel. A layer called several times in one step is explained at its
        first call only (`_activate` then explains its activation step)."""
        trace = self._trace
        if trace is None or id(target) in trace.seen:
            return product(x, kernel)
        trace.seen.add(id(target))
        roles = target.roles
        kernel = tf.convert_to_tensor(kernel)  # (a variable's value, read once: eagerly it may be the variable)
        state = trace.states[id(target)] = {}  # this call's operands' thresholds, d_out, shared by its records
        xs, ks = tf.stop_gradient(x), tf.stop_gradient(kernel)
        if "kernel_gradient" in roles and target.layer.trainable:
            # The kernel gradient itself (computed by TensorFlow anyway) is the kernel-gradient record's result.
            kernel = _gradient_hook(kernel, lambda d_kernel: self._on_kernel_gradient(target, trace, state, xs, ks,
                                                                                      d_kernel, geometry))
        m = product(x, kernel)
        if "input_features" in roles:
            x_thr = self._threshold(trace, state, "x", xs, 0)
            self._record(target, "input_features", trace,
                         lambda: elementwise.input_feature_totals(_features_last(target, xs), x_thr))
        if "forward" in roles:
            thresholds = (self._threshold(trace, state, "x", xs, 0), self._threshold(trace, state, "kernel", ks, 1),
                          self.thresholds[2])
            ms = tf.stop_gradient(m)
            self._record(target, "forward", trace,
                         lambda: (self._forward_totals(target, xs, ks, ms, geometry, thresholds),
                                  elementwise.matmul_extras(target.units["forward"], _units_last(target, ms))))
        if "kernel_gradient" in roles or "input_gradient" in roles:
            m = _gradient_hook(m, lambda d_out: self._on_output_gradient(target, trace, state, xs, ks, d_out,
                                                                         geometry))
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
        state["activated"] = True
        act = target.activation
        ms, zs, as_ = (_units_last(target, tf.cast(tf.stop_gradient(t), tf.float32)) for t in (m, z, a))
        bs = None if bias is None else tf.cast(tf.stop_gradient(bias), tf.float32)
        if "activation" in target.roles:
            def totals():
                b = tf.zeros_like(zs) if bs is None else tf.reshape(
                    tf.broadcast_to(bs, tf.shape(tf.stop_gradient(z))), tf.shape(zs))
                thresholds = (self._operand_threshold(ms, 3),
                              tf.constant(0.0) if bs is None else self._operand_threshold(bs, 4))
                slope = activations.slope(act, zs)
                return elementwise.activation_totals(ms, b, zs, activations.inactive(act, slope), as_, thresholds,
                                                     self._operand_threshold(as_, 5))

            self._record(target, "activation", trace, totals)
        if "activation_gradient" in target.roles:
            a = _gradient_hook(a, lambda d_a: self._record(
                target, "activation_gradient", trace, lambda: self._activation_gradient_totals(target, zs, d_a)))
        return a

    def _activation_gradient_totals(self, target, z, d_a):
        d_a = _units_last(target, self._unscale(d_a))
        slope = activations.slope(target.activation, z)
        thresholds = (self._operand_threshold(d_a, 6), self._operand_threshold(slope, 7))
        return elementwise.activation_gradient_totals(d_a, slope, thresholds, self._operand_threshold(d_a * slope, 8))

    _SEED_INDEX = {"x": 0, "kernel": 1, "d_out": 2}

    def _seed(self, index):
        if self.seed is None:
            return None
        return tf.constant([self.seed, 0], tf.int64) + tf.constant([0, 100 + index], tf.int64)

    def _operand_threshold(self, t, index):
        """The threshold of an operand used by one record only (computed where the record is computed)."""
        value = validation.as_float_tensor(t, "operand")
        if self.threshold_method == "exact":
            return tf.cast(threshold_lib.percentile_threshold(value, self.confidence), tf.float32)
        return tf.cast(threshold_lib.sampled_threshold(value, self.confidence, self.sample_size,
                                                       seed=self._seed(index)), tf.float32)

    def _threshold(self, trace, state, operand, t, position):
        """The threshold of an operand at `position` (0 first, 1 second) of a record: the explicit one if given,
        else computed from the operand (only when recording) and shared by the records that use the operand, so
        that it is classed the same way in each."""
        if self.thresholds[position] is not None:
            return self.thresholds[position]
        if operand not in state:
            index = self._SEED_INDEX[operand]
            state[operand] = tf.cond(trace.record, lambda: self._operand_threshold(t, index),
                                     lambda: tf.constant(0.0, tf.float32))
        return state[operand]

    def _unscale(self, gradient):
        """A gradient in float32, divided by the loss scale."""
        gradient = tf.cast(gradient, tf.float32)
        if self.loss_scale is not None:
            gradient = gradient / tf.cast(self.loss_scale(), tf.float32)
        return gradient

    def _on_output_gradient(self, target, trace, state, x, kernel, d_out, geometry):
        d_out = self._unscale(d_out)
        state["d_out_value"] = d_out
        if "kernel_gradient" in target.roles and not target.layer.trainable:
            # TensorFlow computes no kernel gradient for a frozen layer: the record computes it.
            self._kernel_gradient_record(target, trace, state, x, kernel, None, geometry)
        if "input_gradient" in target.roles:
            thresholds = (self._threshold(trace, state, "d_out", d_out, 0),
                          self._threshold(trace, state, "kernel", kernel, 1), self.thresholds[2])
            self._record(target, "input_gradient", trace,
                         lambda: (self._input_gradient_totals(target, x, d_out, kernel, geometry, thresholds),
                                  elementwise.matmul_extras(target.units["input_gradient"])))

    def _on_kernel_gradient(self, target, trace, state, x, kernel, d_kernel, geometry):
        if "d_out_value" in state:  # (m's gradient always comes first: the kernel's gradient is computed from it)
            self._kernel_gradient_record(target, trace, state, x, kernel, self._unscale(d_kernel), geometry)

    def _kernel_gradient_record(self, target, trace, state, x, kernel, result, geometry):
        d_out = state["d_out_value"]
        kernel_shape = kernel.shape
        if trace.replicas > 1:
            # The record's result is the global (all-reduced) kernel gradient, the one the optimizer applies.
            if result is None:
                result = tf.cond(trace.record, lambda: _kernel_gradient(target, x, d_out, kernel_shape, geometry),
                                 lambda: tf.zeros(kernel_shape, tf.float32))
            result = trace.context.all_reduce(tf.distribute.ReduceOp.SUM, result)
        thresholds = (self._threshold(trace, state, "x", x, 0), self._threshold(trace, state, "d_out", d_out, 1),
                      self.thresholds[2])

        def totals():
            unit_totals = self._kernel_gradient_totals(target, x, d_out, kernel_shape, geometry, result, thresholds)
            units = target.units["kernel_gradient"]
            weights = tf.reshape(tf.abs(tf.cast(kernel, tf.float32)), [-1, units])
            return unit_totals, elementwise.matmul_extras(
                units, None if result is None else tf.reshape(result, [-1, units]), tf.reduce_sum(weights, 0),
                _padding_only(target, x, kernel_shape, geometry))

        self._record(target, "kernel_gradient", trace, totals)

    def _aggregate_options(self, target, thresholds):
        """The keyword arguments of the aggregate kernels for one record: `options`, with its thresholds."""
        rows = (self.options.near_zero_sample_size
                or DEFAULT_NEAR_ZERO_SAMPLE["conv" if target.kind == "conv" else "dense"])
        return {"options": dataclasses.replace(self.options, thresholds=thresholds, near_zero_sample_size=rows)}

    def _forward_totals(self, target, x, kernel, z, geometry, thresholds):
        options = self._aggregate_options(target, thresholds)
        if target.kind == "conv":
            return aggregates.conv(x, kernel, geometry["strides"], geometry["padding"], result=z, **options)
        x, kernel, z = _as_dense(target, x, kernel, z)
        return aggregates.dense(x, kernel, result=z, **options)

    def _kernel_gradient_totals(self, target, x, d_out, kernel_shape, geometry, result, thresholds):
        options = self._aggregate_options(target, thresholds)
        if target.kind == "conv":
            return aggregates.conv_kernel_gradient(x, d_out, kernel_shape, geometry["strides"], geometry["padding"],
                                                   result=result, **options)
        x, d_out, shape = _as_dense_gradient(target, x, d_out, kernel_shape)
        if result is not None:
            result = tf.reshape(result, shape)
        return aggregates.dense_kernel_gradient(x, d_out, result=result, **options)

    def _input_gradient_totals(self, target, x, d_out, kernel, geometry, thresholds):
        options = self._aggregate_options(target, thresholds)
        if target.kind == "conv":
            return aggregates.conv_input_gradient(d_out, kernel, x.shape, geometry["strides"], geometry["padding"],
                                                  **options)
        _, kernel, d_out = _as_dense(target, x, kernel, d_out)
        return aggregates.dense_input_gradient(d_out, kernel, **options)

    def _record(self, target, role, trace, totals_fn):
        """Computes (only when recording), reduces across replicas, and writes one record. `totals_fn` returns
        `aggregates.UnitTotals` or `(UnitTotals, metadata.RecordExtras)`."""
        tag = f"{target.name}/{role}"
        summary_metadata = target.metadata[role]
        units = target.units[role]

        def compute():
            totals = totals_fn()
            totals, extras = totals if isinstance(totals, tuple) and len(totals) == 2 else (
                totals, metadata.no_extras(units))
            return [tf.cast(t, tf.float64) for t in (*totals, *extras)]

        if trace.replicas == 1:
            tf.cond(trace.record, lambda: self._write(tag, summary_metadata, compute(), trace.step),
                    lambda: tf.constant(False))
            return
        zeros = [tf.zeros([units, 9], tf.float64)] * 4 + [tf.zeros([units], tf.float64)] * 2 + \
                [tf.zeros([3], tf.float64)] * 2 + [tf.zeros([units], tf.float64)] * 2 + [tf.zeros([], tf.float64)] * 2
        fields = tf.cond(trace.record, compute, lambda: zeros)
        fields = trace.context.all_reduce(tf.distribute.ReduceOp.SUM, fields)
        fields = dict(zip(_FIELDS + _EXTRA_FIELDS, fields))
        r = float(trace.replicas)
        # Thresholds: the mean of the replicas'. Kernel gradient: the result (global) is the same on every replica.
        fields["thresholds"] = fields["thresholds"] / r
        fields["output_threshold"] = fields["output_threshold"] / r
        fields["padding_only"] = fields["padding_only"] / r
        if role == "kernel_gradient":
            fields["cells"] = fields["cells"] / r
            fields["near_zero_cells"] = fields["near_zero_cells"] / r
            fields["nonfinite"] = fields["nonfinite"] * tf.constant([1.0, 1.0, 1.0 / r], tf.float64)
            fields["result_magnitude"] = fields["result_magnitude"] / r
            fields["reference"] = fields["reference"] / r
        fields = [fields[f] for f in _FIELDS + _EXTRA_FIELDS]
        tf.cond(trace.record, lambda: self._write(tag, summary_metadata, fields, trace.step),
                lambda: tf.constant(False))

    def _write(self, tag, summary_metadata, fields, step):
        totals = aggregates.UnitTotals(*fields[:len(_FIELDS)])
        extras = metadata.RecordExtras(*fields[len(_FIELDS):])
        with _default_writer(self.writer), tf.summary.record_if(True):
            return summary.write_totals(tag, totals, step, summary_metadata, max_units=self.max_units,
                                        scalars=self.scalars, extras=extras)


class _Recording:
    """`LayerRecorder.recording(step, record)`: patches the layers while the step is traced (or run eagerly)."""

    def __init__(self, recorder, step, record):
        self.recorder, self.step, self.record = recorder, step, record

    def __enter__(self):
        recorder = self.recorder
        if recorder._trace is not None:
            raise RuntimeError("LayerRecorder.recording() is already active in this thread")
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        recorder.writer  # created now (in an init scope), outside the step's graph
        recorder._local.trace = _Trace(step=tf.cast(self.step, tf.int64),
                                       record=tf.convert_to_tensor(self.record, tf.bool),
                                       replicas=replicas, context=context)
        recorder._patch()
        return recorder

    def __exit__(self, *exc):
        self.recorder._unpatch()
        self.recorder._local.trace = None
        return False


@dataclasses.dataclass
class _Trace:
    step: tf.Tensor
    record: tf.Tensor
    replicas: int
    context: object
    seen: set = dataclasses.field(default_factory=set)
    states: dict = dataclasses.field(default_factory=dict)  # id(target) -> its call's state (`_explain`)


class _default_writer:
    """`writer.as_default()` without its flush on exit (a flush op per record would cost file I/O per record;
    the writer flushes on its own schedule, at epoch end and at the end of training)."""

    def __init__(self, writer):
        self._writer = writer

    def __enter__(self):
        from tensorflow.python.ops import summary_ops_v2

        self._state = getattr(summary_ops_v2, "_summary_state", None)
        if self._state is None or not hasattr(self._state, "writer"):  # TensorFlow changed: the public way
            self._context = self._writer.as_default()
            self._context.__enter__()
            return
        self._context = None
        self._previous = self._state.writer
        self._state.writer = self._writer

    def __exit__(self, *exc):
        if self._context is not None:
            return self._context.__exit__(*exc)
        self._state.writer = self._previous
        return False


def _gradient_hook(z, on_gradient):
    """An identity on z whose gradient function calls `on_gradient(d_out)` (summary ops join the same graph)."""

    @tf.custom_gradient
    def hook(value):
        def grad(d_out):
            on_gradient(d_out)
            return d_out

        return tf.identity(value), grad

    return hook(z)


def _as_dense(target, x, kernel, y):
    """EinsumDense operands as a dense matmul: x [..., C], kernel [C, U], y (z or d_out) [..., U]."""
    if target.kind != "einsum_dense":
        return x, kernel, y
    contracted = target.einsum
    c = math.prod(int(d) for d in kernel.shape[:contracted])
    u = math.prod(int(d) for d in kernel.shape[contracted:])
    x = tf.reshape(x, tf.concat([tf.shape(x)[:x.shape.rank - contracted], [c]], 0))
    y = tf.reshape(y, tf.concat([tf.shape(y)[:y.shape.rank - (kernel.shape.rank - contracted)], [u]], 0))
    return x, tf.reshape(kernel, [c, u]), y


def _as_dense_gradient(target, x, d_out, kernel_shape):
    """EinsumDense kernel-gradient operands as dense ones: x [..., C], d_out [..., U], and the shape [C, U]."""
    kernel_shape = tf.TensorShape(kernel_shape)
    if target.kind != "einsum_dense":
        return x, d_out, kernel_shape
    contracted = target.einsum
    c = math.prod(int(d) for d in kernel_shape[:contracted])
    u = math.prod(int(d) for d in kernel_shape[contracted:])
    x = tf.reshape(x, tf.concat([tf.shape(x)[:x.shape.rank - contracted], [c]], 0))
    d_out = tf.reshape(d_out, tf.concat([tf.shape(d_out)[:d_out.shape.rank - (kernel_shape.rank - contracted)], [u]],
                                        0))
    return x, d_out, tf.TensorShape([c, u])


def _units_last(target, t):
    """A tensor whose trailing axes are the layer's output units (z, a, their gradients; the kernel) with them
    flattened into one axis (EinsumDense); other layers' tensors as they are."""
    if target.kind != "einsum_dense":
        return t
    unit_axes = target.layer.kernel.shape.rank - target.einsum
    return tf.reshape(t, tf.concat([tf.shape(t)[:t.shape.rank - unit_axes], [-1]], 0))


def _features_last(target, x):
    """The layer input with its input features on one last axis (EinsumDense: the contracted axes flattened)."""
    if target.kind != "einsum_dense":
        return x
    return tf.reshape(x, tf.concat([tf.shape(x)[:x.shape.rank - target.einsum], [-1]], 0))


def _padding_only(target, x, kernel_shape, geometry):
    """Kernel-gradient result cells that only ever meet SAME padding (all units); 0 for a dense layer, NaN where
    the input's spatial size is not known when traced."""
    if target.kind != "conv" or geometry["padding"].upper() != "SAME":
        return 0.0
    spatial = x.shape[1:-1]
    if any(d is None for d in spatial):
        return float("nan")
    strides = validation.normalize_strides(geometry["strides"], kernel_shape.rank - 2)
    taps = conv_lib.padding_only_taps([int(d) for d in spatial], [int(d) for d in kernel_shape[:-2]],
                                      [int(s) for s in strides], "SAME")
    return float(taps * int(kernel_shape[-2]) * int(kernel_shape[-1]))


def _kernel_gradient(target, x, d_out, kernel_shape, geometry):
    """The layer's kernel gradient computed from x and d_out (float32), shaped like the kernel."""
    x = tf.cast(x, tf.float32)
    kernel_shape = tf.TensorShape(kernel_shape)
    if target.kind == "conv":
        strides = validation.normalize_strides(geometry["strides"], kernel_shape.rank - 2)
        return conv_lib.backprop_filter(x, d_out, kernel_shape.as_list(), strides,
                                        validation.normalize_padding(geometry["padding"]))
    x, d_out, _ = _as_dense_gradient(target, x, d_out, kernel_shape)
    x2 = tf.reshape(x, [-1, x.shape[-1]])
    d2 = tf.reshape(d_out, [-1, d_out.shape[-1]])
    return tf.reshape(tf.matmul(x2, d2, transpose_a=True), kernel_shape)


# ---------------------------------------------------------------------------------------------------------------
# Patched layer calls: the Keras 3 layer's own computation with z explicit


def _dense_call(recorder, target):
    layer = target.layer

    def call(inputs, training=None):
        m = recorder._explain(target, inputs, kops.convert_to_tensor(layer.kernel), kops.matmul, None)
        return recorder._activate(target, m, layer.bias, layer.activation)

    return call


def _einsum_call(recorder, target):
    layer = target.layer

    def call(inputs, training=None):
        m = recorder._explain(target, inputs, kops.convert_to_tensor(layer.kernel),
                              lambda x, k: kops.einsum(layer.equation, x, k), None)
        return recorder._activate(target, m, layer.bias, layer.activation)

    return call


def _conv_call(recorder, target):
    layer = target.layer

    def call(inputs):
        padding = layer.padding
        if padding == "causal":
            inputs = kops.pad(inputs, layer._compute_causal_padding())
            padding = "valid"
        m = recorder._explain(
            target, inputs, kops.convert_to_tensor(layer.kernel),
            lambda x, k: kops.conv(x, k, strides=list(layer.strides), padding=padding,
                                   dilation_rate=layer.dilation_rate, data_format=layer.data_format),
            {"strides": tuple(layer.strides), "padding": padding})
        bias = kops.reshape(layer.bias, (1,) * (layer.rank + 1) + (layer.filters,)) if layer.use_bias else None
        return recorder._activate(target, m, bias, layer.activation)

    return call


_PATCHES = {"dense": _dense_call, "einsum_dense": _einsum_call, "conv": _conv_call}


# ---------------------------------------------------------------------------------------------------------------
# The callback


class ExplainerCallback(keras.callbacks.Callback):
    """Records chosen layers of a Keras 3 model during `model.fit`, every `update_freq` steps.

    Args:
      log_dir: the log directory (as for `keras.callbacks.TensorBoard`); records go to `<log_dir>/train`.
      update_freq: record the global steps 0, N, 2N, ... (an int >= 1).
      layers: None (every supported layer) or layer names / layer objects.
      roles: any of "forward", "kernel_gradient", "input_gradient".
      confidence, thresholds, threshold_method, near_zero, sample_size, near_zero_sample_size, seed, max_units,
        scalars, run, jit: as for `LayerRecorder`.

    After `fit`, `skipped` maps the names of layers that could not be recorded to the reason, and `recorded_steps`
    lists the steps recorded (in this process).
    """

    def __init__(self, log_dir, update_freq=100, layers=None, roles=DEFAULT_ROLES, confidence=0.95, thresholds=None,
                 threshold_method="sampled", near_zero="sampled", sample_size=None, near_zero_sample_size=None,
                 seed=None, max_units=metadata.DEFAULT_MAX_UNITS, scalars=True, run=DEFAULT_RUN, jit=True):
        super().__init__()
        if isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1:
            raise ValueError(f"update_freq must be an int >= 1 (record the steps 0, N, 2N, ...), got {update_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._recorder_args = dict(layers=layers, roles=roles, confidence=confidence, thresholds=thresholds,
                                   threshold_method=threshold_method, near_zero=near_zero, sample_size=sample_size,
                                   near_zero_sample_size=near_zero_sample_size, seed=seed, max_units=max_units,
                                   scalars=scalars, run=run, jit=jit)
        _check_options(roles=roles, confidence=confidence, thresholds=thresholds, threshold_method=threshold_method,
                       near_zero=near_zero, sample_size=sample_size, near_zero_sample_size=near_zero_sample_size,
                       seed=seed, max_units=max_units, jit=jit)
        self.recorder = None
        self.skipped = {}
        self.recorded_steps = []
        self._not_recorded_written = False
        self._plain = None
        self._instrumented = None
        self._step = 0
        self._step_variable = None
        self._steps_in_call = 0
        self._model_id = None

    # -- setup -----------------------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError("ExplainerCallback needs the TensorFlow backend")
        if self.recorder is None or self._model_id != id(model):
            self.recorder = LayerRecorder(model, self.log_dir, loss_scale=self._loss_scale, **self._recorder_args)
            self.skipped = dict(self.recorder.skipped)
            self._not_recorded_written = False
            self._model_id = id(model)
            self._instrumented = None
            self._step_variable = None  # (created in the model's strategy scope)
        if self._instrumented is not None and model.train_function is self._instrumented:
            model.train_function = self._plain  # a previous fit stopped by an exception left it swapped in
        if model.train_function is not self._plain:  # new fit after compile(): rebuild the instrumented function
            self._plain = model.train_function
            self._instrumented = None
        if self._step_variable is None:
            with model.distribute_strategy.scope():
                self._step_variable = tf.Variable(0, dtype=tf.int64, trainable=False,
                                                  synchronization=tf.VariableSynchronization.ON_WRITE,
                                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                                                  name="matmul_explainer_step")
        self._steps_in_call = 0
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and getattr(optimizer, "iterations", None) is not None:
            self._step = int(optimizer.iterations.numpy())

    def _loss_scale(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return tf.constant(1.0)
        return kops.convert_to_tensor(optimizer.scale_loss(tf.constant(1.0, tf.float32)))

    def _instrumented_step(self, data):
        step = self._step_variable.read_value()
        if self.model.steps_per_execution > 1:
            with tf.control_dependencies([step]):
                self._step_variable.assign_add(1)
        record = tf.equal(step % self.update_freq, 0)
        with self.recorder.recording(step, record):
            return self.model.train_step(data)

    def _instrumented_function(self):
        if self._instrumented is None:
            model = self.model
            jit = model.jit_compile
            try:
                model.jit_compile = False  # summary writes cannot be XLA-compiled
                self._instrumented = model._make_function(self._instrumented_step)
            finally:
                model.jit_compile = jit
        return self._instrumented

    # -- per step --------------------------------------------------------------------------------------------

    def on_train_batch_begin(self, batch, logs=None):
        # Everything happens here (no `on_train_batch_end`, so that Keras keeps dispatching batch-end callbacks
        # asynchronously, as it does without this callback). The steps of the previous call are counted now.
        # Keras reports `end_step = begin + steps_per_execution - 1` even for a shorter last execution, so the
        # number of steps in a call comes from the epoch's number of steps, where Keras knows it.
        self._step += self._steps_in_call
        steps = self.params.get("steps") if self.params else None
        k = self.model.steps_per_execution
        if steps is not None:
            k = max(1, min(k, steps - batch))
        self._steps_in_call = k
        first = self._step
        if (-first) % self.update_freq < k:  # a multiple of N in [first, first + k)
            self._step_variable.assign(first)
            self.model.train_function = self._instrumented_function()
            recorded = [s for s in range(first, first + k) if s % self.update_freq == 0]
            if not self._not_recorded_written:
                self._not_recorded_written = True
                self.recorder.write_not_recorded(recorded[0])
            self.recorded_steps.extend(recorded)
        elif self.model.train_function is not self._plain:
            self.model.train_function = self._plain

    def on_epoch_end(self, epoch, logs=None):
        self._step += self._steps_in_call
        self._steps_in_call = 0
        self.model.train_function = self._plain
        if self.recorder is not None:
            self.recorder.flush()

    def on_train_end(self, logs=None):
        self._step += self._steps_in_call  # (a fit stopped inside an epoch)
        self._steps_in_call = 0
        if self._plain is not None:
            self.model.train_function = self._plain
        if self.recorder is not None:
            self.recorder.flush()
