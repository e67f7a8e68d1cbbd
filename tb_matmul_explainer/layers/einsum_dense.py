"""`keras.layers.EinsumDense` whose equation is a matmul over the input's trailing axes.

Taken: `input_free + contracted, contracted + units -> input_free + units` (e.g. `ab,bc->ac`, `abc,cd->abd`,
`...b,bcd->...cd`): the kernel's contracted axes come first, its unit axes last. The records treat it as the dense
matmul `x [..., C] @ kernel [C, U]` with the contracted axes flattened into C and the kernel's unit axes into U
(`Target.plan` = the number of contracted axes). Anything else (a kernel axis shared with the output, transposed
kernels) is refused with the equation in the reason.
"""

import math
import re

import tensorflow as tf
from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer.layers.dense import DenseAdapter


def einsum_plan(equation):
    """The number of contracted axes if `equation` is a matmul over the input's trailing axes with the kernel's
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
    ok = (
        contracted
        and not shared
        and len(set(ker)) == len(ker)
        and ker == "".join(contracted) + "".join(units)
        and lhs.endswith("".join(contracted))
        and out == lhs[: len(lhs) - len(contracted)] + "".join(units)
    )
    if not ok:
        return (
            f"its equation {equation!r} is not a matmul over the input's trailing axes "
            "(supported: 'input_free + contracted, contracted + units -> input_free + units', "
            "e.g. 'abc,cd->abd')"
        )
    return len(contracted)


def _flatten_trailing(t, axes, size=-1):
    """t with its last `axes` axes flattened into one (of `size`: given, it holds for an empty batch too)."""
    return tf.reshape(t, tf.concat([tf.shape(t)[: t.shape.rank - axes], [size]], 0))


class EinsumDenseAdapter(DenseAdapter):
    shares_records = False  # (its plan or parts: not shared, see keras/shared.py)
    kind = "einsum_dense"
    layer_types = (keras_layers.EinsumDense,)

    def refusal(self, layer):
        reason = super().refusal(layer)
        if reason is None:
            plan = einsum_plan(layer.equation)
            reason = plan if isinstance(plan, str) else None
        return reason

    def plan(self, layer):
        return einsum_plan(layer.equation)

    def units(self, layer, role, part=None):
        shape = [int(d) for d in layer.kernel.shape]
        contracted = einsum_plan(layer.equation)
        in_units, out_units = math.prod(shape[:contracted]), math.prod(shape[contracted:])
        return in_units if role in ("input_gradient", "input_features") else out_units

    def patched_call(self, recorder, target):
        layer = target.layer

        def call(inputs, training=None):
            m = recorder._explain(
                target,
                inputs,
                kops.convert_to_tensor(layer.kernel),
                lambda x, k: kops.einsum(layer.equation, x, k),
                None,
            )
            return recorder._activate(target, m, layer.bias, layer.activation)

        return call

    def _dims(self, target, kernel_shape):
        contracted = target.plan
        return (
            contracted,
            len(kernel_shape) - contracted,
            math.prod(int(d) for d in kernel_shape[:contracted]),
            math.prod(int(d) for d in kernel_shape[contracted:]),
        )

    def as_dense(self, target, x, kernel, y):
        contracted, unit_axes, c, u = self._dims(target, kernel.shape)
        return (_flatten_trailing(x, contracted, c), tf.reshape(kernel, [c, u]), _flatten_trailing(y, unit_axes, u))

    def as_dense_gradient(self, target, x, d_out, kernel_shape):
        contracted, unit_axes, c, u = self._dims(target, tf.TensorShape(kernel_shape))
        return (_flatten_trailing(x, contracted, c), _flatten_trailing(d_out, unit_axes, u), tf.TensorShape([c, u]))

    def units_last(self, target, t):
        contracted, unit_axes, _, u = self._dims(target, target.layer.kernel.shape)
        return _flatten_trailing(t, unit_axes, u)

    def features_last(self, target, x):
        contracted, _, c, _ = self._dims(target, target.layer.kernel.shape)
        return _flatten_trailing(x, contracted, c)

    def multiply_adds(self, layer, inputs, output):
        contracted = einsum_plan(layer.equation)
        return math.prod(inputs[0][: len(inputs[0]) - contracted]) * math.prod(int(d) for d in layer.kernel.shape)


ADAPTER = EinsumDenseAdapter()
