"""Convolution kinds with a kernel that are not recorded yet: transposed convolutions.

They are refused with a reason naming the kind; their multiply-adds per sample are counted so that the coverage
line says what share of the model they hold. (A kind that becomes supported moves to a module of its own.)
"""

import math

from keras import layers as keras_layers

from tb_matmul_explainer.layers.base import Adapter


def _size(variable):
    return math.prod(int(d) for d in variable.shape)


def _types(*names):
    return tuple(getattr(keras_layers, name) for name in names if hasattr(keras_layers, name))


class NotYetAdapter(Adapter):
    records = False

    def __init__(self, kind, layer_types, per_position):
        self.kind, self.layer_types, self._per_position = kind, layer_types, per_position

    def refusal(self, layer):
        from tb_matmul_explainer.layers import SUPPORTED  # (the package imports this module)

        return f"layer type {type(layer).__name__} is not supported yet (supported: {SUPPORTED})"

    def multiply_adds(self, layer, inputs, output):
        return self._per_position(layer, inputs, output)


def _transpose(layer, inputs, output):
    return math.prod(inputs[0][:-1]) * _size(layer.kernel)  # each input position meets the whole kernel


ADAPTERS = (
    NotYetAdapter("conv_transpose", _types("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"), _transpose),
)
