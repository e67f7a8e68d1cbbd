"""Coverage: how many layers, and what share of the model's multiply-adds per sample, are recorded.

Multiply-adds are counted per sample from shapes: one eager forward pass of the model on one sample of zeros
(batch 1, `training=False`, built from `model.inputs` or given) with every layer's call wrapped to note the shapes
it sees; each call's multiply-adds come from its adapter (`Adapter.multiply_adds`, plus `extra_multiply_adds` for
the matmuls inside a layer that are not layers, such as attention scores) or, for a layer no adapter claims,
output positions x kernel entries. A layer called several times (a layer shared by several calls) counts
every call; a recorded layer is explained at its first call, so only that call counts as recorded. The pass is
skipped (the share is then not known) when the input shape is not fully known and no sample is given, or when a
stateful layer would see its state changed.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tb_matmul_explainer import internals, layers
from tb_matmul_explainer.keras import model as model_lib


@dataclasses.dataclass
class Coverage:
    """Layers and multiply-adds per sample, recorded and in all (`multiply_adds` None when not known)."""

    recorded_layers: int
    matmuls: int  # recorded matmuls + the matmuls not recorded (`LayerRecorder.skipped`)
    recorded_multiply_adds: int = None
    multiply_adds: int = None
    per_layer: list = dataclasses.field(default_factory=list)  # (path, multiply-adds, recorded) in model order
    not_known: str = None  # why the multiply-adds are not known
    recorded_matmuls: int = None  # recorded explanations (a layer may have several parts); None: recorded_layers

    @property
    def share(self):
        """The recorded share of the multiply-adds (0..1), or None when not known."""
        if self.multiply_adds is None:
            return None
        return self.recorded_multiply_adds / self.multiply_adds if self.multiply_adds else 1.0

    def line(self):
        """One line for the start of training."""
        head = (
            f"tb_matmul_explainer: recording {self.recorded_layers} layers "
            f"({self.recorded_layers if self.recorded_matmuls is None else self.recorded_matmuls} of {self.matmuls} "
            "matmuls)"
        )
        if self.share is None:
            return f"{head}; share of multiply-adds not known ({self.not_known})"
        return (
            f"{head}, {percent(self.share)} of the model's multiply-adds per sample "
            f"({self.recorded_multiply_adds:,} of {self.multiply_adds:,})"
        )


def percent(share):
    """A share as a percentage: one decimal, two significant digits below 1% (0.04%, not 0.0%)."""
    return f"{100 * share:.2g}%" if 0 < share < 0.01 else f"{100 * share:.1f}%"


_MEASURE = "LayerRecorder(model, ...).coverage(sample) measures it from one input sample"


def _zeros(t):
    """One sample (batch 1) of zeros, or of empty strings, shaped and typed as the symbolic input `t`."""
    shape = (1,) + tuple(t.shape)[1:]
    return np.full(shape, "", dtype=object) if t.dtype == "string" else np.zeros(shape, dtype=t.dtype)


def _sample(model):
    """One sample of zeros per model input (batch 1), in the structure the model takes (a dict of named inputs,
    a list, one array), or a reason string."""
    inputs = getattr(model, "inputs", None) if isinstance(model, keras.Model) else None
    if not inputs:
        built = internals.built_input_shape(model)
        if built is None or any(d is None for d in built[1:]):
            return f"the model's input shape is not known (a subclassed model): {_MEASURE}"
        return np.zeros((1,) + built[1:], np.float32)  # (a subclassed model built or called on this shape)
    shapes = [tuple(t.shape)[1:] for t in inputs]
    if any(d is None for s in shapes for d in s):
        return f"the model's input shape {shapes} has unknown sizes: {_MEASURE}"
    try:
        structure = model.input  # (a dict of named inputs, a list, one input)
    except (AttributeError, ValueError):  # (a Sequential model never called has `inputs` only)
        structure = inputs if len(inputs) > 1 else inputs[0]
    return tf.nest.map_structure(_zeros, structure)


def _shape(t):
    return tuple(int(d) for d in t.shape)


def _tensors(structure):
    return [t for t in tf.nest.flatten(structure) if isinstance(t, (tf.Tensor, tf.Variable, np.ndarray))]


def call_shapes(model, entries, sample):
    """{id(layer): [(input shapes, output shape)]} of one forward pass of `model` on `sample` (wrappers call their
    layer as a recording step does, `Adapter.recording_call`)."""
    calls, patched = {}, []

    def wrap(layer, original):
        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            outs = _tensors(out)
            calls.setdefault(id(layer), []).append(
                ([_shape(t) for t in _tensors((args, kwargs))], _shape(outs[0]) if outs else ())
            )
            return out

        return call

    try:
        recording = {id(layer): call for layer, call in model_lib.wrappers(entries)}
        for e in entries:
            if not isinstance(e.layer, keras.Model):
                internals.patch_call(e.layer, wrap(e.layer, recording.get(id(e.layer), e.layer.call)))
                patched.append(e.layer)
        model(sample, training=False)
    finally:
        for layer in patched:
            internals.unpatch_call(layer)
    return calls


def _layer_multiply_adds(layer, layer_calls):
    """[(suffix, per-call multiply-adds list)]: the layer's own ('' suffix) and its not-layer matmuls'."""
    adapter = layers.adapter_for(layer)
    own = [
        adapter.multiply_adds(layer, i, o) if adapter else layers.generic_multiply_adds(layer, i, o)
        for i, o in layer_calls
    ]
    out = [("", own)]
    if adapter is not None:
        extras = [adapter.extra_multiply_adds(layer, i, o) for i, o in layer_calls]
        for suffix in extras[0] if extras else {}:
            out.append((suffix, [x[suffix] for x in extras]))
    return out


def measure(model, entries, targets, skipped, sample=None):
    """The `Coverage` of a recorder's targets (`model.resolve`'s entries, targets and skipped)."""
    recorded = {id(t.layer) for t in targets}
    tally = dict(recorded_layers=len(recorded), matmuls=len(targets) + len(skipped), recorded_matmuls=len(targets))
    names = {t.name for t in targets}  # (a layer's parts that are not its own matmul: attention's einsums)
    if sample is None:
        sample = _sample(model)
    if isinstance(sample, str):
        return Coverage(**tally, not_known=sample)
    if any(getattr(e.layer, "stateful", False) for e in entries):
        return Coverage(**tally, not_known="a stateful layer would see its state changed")
    try:
        calls = call_shapes(model, entries, sample)
    except Exception as e:  # (a line printed at the start of training must never stop it)
        why = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return Coverage(**tally, not_known=f"a forward pass on one sample failed: {type(e).__name__}: {why}")
    per_layer, total, done = [], 0, 0
    for e in entries:
        for suffix, counts in _layer_multiply_adds(e.layer, calls.get(id(e.layer), [])):
            macs = sum(counts)
            if not macs:
                continue
            name = f"{e.path}/{suffix}" if suffix else e.path
            is_recorded = name in names or (not suffix and id(e.layer) in recorded)
            per_layer.append((name, macs, is_recorded))
            total += macs
            done += counts[0] if is_recorded else 0
    return Coverage(**tally, recorded_multiply_adds=done, multiply_adds=total, per_layer=per_layer)
