"""The adapter contract: what one Keras layer kind tells the recorder.

An `Adapter` owns, for the layers of its kind: which ones it takes (`claims`, and `refusal` with the reason when it
cannot record one), how their call is captured (`patched_call`: the layer's own computation with its matmul made
explicit through `recorder._explain(target, x, kernel, product, geometry)` and its bias + activation through
`recorder._activate(target, m, bias, activation)`), the units of each role, the per-unit totals of the three matmul
roles (through `aggregates`), the multiply-adds of a call (for the coverage line) and the matmuls inside it that are
not recorded (`not_recorded`). A layer with several matmuls yields one part (a target of its own) per matmul
(`parts`, e.g. a separable convolution's depthwise and pointwise parts). Adding a layer kind is one new module
holding one `Adapter` subclass, listed in `layers/__init__.py`.

Each part is one recorded `Target` named `<Keras path>/<part>`, with the part in `target.part` (recurrent layers:
`kernel`, `recurrent_kernel`); the layer's call is patched once, with its first part's target, whose `parts` maps
every part to its target.

Tensors handed to the totals: x the layer input, kernel the kernel, z the matmul result (before bias), d_out =
d(loss)/dz, all float32 or the layer's compute dtype; `geometry` whatever the adapter's patched call passed to
`_explain` (None for dense kinds, strides/padding for convolutions).
"""

import math

from tb_matmul_explainer import internals


def kernel_of(layer):
    """The layer's `kernel` variable, or None."""
    return getattr(layer, "kernel", None)


class Adapter:
    """One Keras layer kind (subclasses set `kind`, `layer_types` and override what differs from a dense matmul)."""

    kind = None  # metadata op family / name of the kind, e.g. "dense"
    layer_types = ()  # the Keras classes this adapter claims (subclasses included)
    near_zero_sample = "dense"  # which DEFAULT_NEAR_ZERO_SAMPLE entry applies ("dense" rows or "conv" positions)
    records = True  # False: a kind whose matmuls are only listed as not recorded
    # True: the second operand is a weight (its gradient, the kernel gradient, is the same on every replica and
    # TensorFlow computes it for trainable layers); False: an activation (attention's K and V: per replica, and
    # the kernel-gradient record computes its result itself).
    kernel_is_weight = True
    # True: a record depends only on the layer's configuration (without its name), its part, the geometry and the
    # tensors handed to the totals, so layers that compute alike may share its traced computation (keras/shared.py).
    shares_records = False

    def claims(self, layer):
        """Whether `layer` is of this kind."""
        return isinstance(layer, self.layer_types)

    def refusal(self, layer):
        """None if the layer can be recorded, else the reason it cannot (a sentence without a final period)."""
        if getattr(layer, "quantization_mode", None):
            return f"quantized kernels ({layer.quantization_mode}) are not supported"
        own = {cls.call for cls in self.layer_types}
        if type(layer).call not in own:
            return (
                f"{type(layer).__name__} overrides call(), so its computation is not known to be the one of the "
                "Keras layer it extends, which the recorder reproduces"
            )
        return None

    def plan(self, layer):
        """Per-layer data the adapter's methods need (`Target.plan`), computed once."""
        return None

    def parts(self, layer):
        """`((part, adapter), ...)`: the explanations of the layer, one recorded target each, named by the layer's
        path (part None) or `<path>/<part>`, each with the adapter that computes its totals. A layer with several
        matmuls of its own (a separable convolution's depthwise and pointwise kernels, a recurrent layer's input
        and recurrent kernels) yields one part per matmul; its first part's `patched_call` explains them all."""
        return ((None, self),)

    def activation(self, layer):
        """The layer's own activation, applied by `recorder._activate` (None: none recorded)."""
        return getattr(layer, "activation", None)

    def roles(self, layer, part, roles):
        """The roles recorded for a part (all the asked-for ones by default)."""
        return roles

    def op(self, layer):
        """The metadata `op` of the layer's records."""
        return self.kind

    def part_op(self, layer, part):
        """The metadata `op` of one part's records (the layer's `op` unless parts differ)."""
        return self.op(layer)

    def units(self, layer, role, part=None):
        """The number of units of the record of `role` (input features for input_gradient / input_features)."""
        shape = [int(d) for d in layer.kernel.shape]
        return shape[-2] if role in ("input_gradient", "input_features") else shape[-1]

    def patched_call(self, recorder, target):
        """The `call` that replaces the layer's while a recording step is traced."""
        raise NotImplementedError

    def patch(self, recorder, target):
        """Instruments the layer of `target` (its first part; `target.parts` holds every part's target) while a
        recording step is traced: its `call` replaced by `patched_call` unless the adapter patches elsewhere."""
        internals.patch_call(target.layer, self.patched_call(recorder, target))

    def unpatch(self, layer):
        """Undoes `patch`."""
        internals.unpatch_call(layer)

    def recording_call(self, layer):
        """For a wrapper that records nothing itself: the `call` that replaces its own while a recording step is
        traced and in the coverage pass (the same values, its wrapped layer called as it is recorded); None: the
        layer keeps its call."""
        return None

    # -- totals of the three matmul roles ------------------------------------------------------------------------

    def forward_totals(self, target, x, kernel, z, geometry, options):
        raise NotImplementedError

    def kernel_gradient_totals(self, target, x, d_out, kernel_shape, geometry, result, options):
        raise NotImplementedError

    def input_gradient_totals(self, target, x, d_out, kernel, geometry, options):
        raise NotImplementedError

    def kernel_gradient(self, target, x, d_out, kernel_shape, geometry):
        """The kernel gradient computed from x and d_out (float32), shaped like the kernel (for frozen layers and
        replicas, where TensorFlow computes none the record can use)."""
        raise NotImplementedError

    def padding_only(self, target, x, kernel_shape, geometry):
        """Kernel-gradient cells that only ever meet padding (all units); NaN where not known when traced."""
        return 0.0

    def units_last(self, target, t):
        """z, a, their gradients or the kernel with the output units flattened into one last axis."""
        return t

    def kernel_units_last(self, target, t):
        """The kernel (or a tensor shaped like it) with the units of the kernel-gradient record last."""
        return t

    def features_last(self, target, x):
        """The layer input with its input features on one last axis."""
        return x

    # -- coverage ------------------------------------------------------------------------------------------------

    def multiply_adds(self, layer, inputs, output):
        """Multiply-adds of one call of the layer on one sample: `inputs`, `output` its shapes (batch 1)."""
        return math.prod(output[:-1]) * math.prod(int(d) for d in layer.kernel.shape)

    def not_recorded(self, layer):
        """{suffix: reason} of matmuls inside the layer that are not layers and are not recorded."""
        return {}

    def extra_multiply_adds(self, layer, inputs, output):
        """{suffix: multiply-adds per sample} of the matmuls `not_recorded` names."""
        return {}
