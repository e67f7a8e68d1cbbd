"""`keras.layers.SeparableConv1D/2D`: a depthwise convolution, then a pointwise (1x1) one; two explanations.

`<path>/depthwise`: the depthwise convolution of the layer input with `depthwise_kernel` (as `depthwise_conv`:
units = in_channels x depth_multiplier, strides, padding and dilation the layer's, no bias or activation).
`<path>/pointwise`: the 1x1 convolution of the depthwise result with `pointwise_kernel` (as `conv`: units =
filters, input features = in_channels x depth_multiplier), then the layer's bias and activation. The depthwise
part's patched call computes both (Keras' separable call with the two products explicit); the layer's
multiply-adds per sample are both parts'. Taken as `DepthwiseConv1D/2D` are (`depthwise_conv`).
"""

import math

from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer.layers.conv import ConvAdapter
from tb_matmul_explainer.layers.depthwise_conv import DepthwiseConvAdapter


def _shape(variable):
    return tuple(int(d) for d in variable.shape)


class DepthwisePart(DepthwiseConvAdapter):
    """The depthwise part; its patched call explains the layer's two parts."""

    shares_records = False  # (its plan or parts: not shared, see keras/shared.py)

    layer_types = tuple(getattr(keras_layers, n) for n in ("SeparableConv1D", "SeparableConv2D"))

    def kernel_of(self, layer):
        return layer.depthwise_kernel

    def activation(self, layer):
        return None

    def parts(self, layer):
        return (("depthwise", self), ("pointwise", POINTWISE))

    def bias_of(self, layer):
        return None

    def multiply_adds(self, layer, inputs, output):
        kernels = (layer.depthwise_kernel, layer.pointwise_kernel)
        return math.prod(output[:-1]) * sum(math.prod(_shape(k)) for k in kernels)

    def patched_call(self, recorder, target):
        layer = target.layer
        depthwise = super().patched_call(recorder, target)  # (no bias, no activation: `bias_of`, `activation`)
        pointwise_target = target.parts["pointwise"]
        rank = layer.rank

        def call(inputs):
            m = recorder._explain(
                pointwise_target,
                depthwise(inputs),
                kops.convert_to_tensor(layer.pointwise_kernel),
                lambda x, k: kops.conv(x, k, strides=1, padding="valid", data_format=layer.data_format),
                {"strides": (1,) * rank, "padding": "valid", "dilations": (1,) * rank, "groups": 1},
            )
            bias = kops.reshape(layer.bias, (1,) * (rank + 1) + (layer.filters,)) if layer.use_bias else None
            return recorder._activate(pointwise_target, m, bias, layer.activation)

        return call


class PointwisePart(ConvAdapter):
    """The pointwise part (explained by the depthwise part's patched call)."""

    shares_records = False  # (its plan or parts: not shared, see keras/shared.py)

    layer_types = DepthwisePart.layer_types

    def units(self, layer, role, part=None):
        features, filters = _shape(layer.pointwise_kernel)[-2:]
        return features if role in ("input_gradient", "input_features") else filters

    def patched_call(self, recorder, target):
        raise NotImplementedError("the depthwise part's patched call explains the pointwise part")


POINTWISE = PointwisePart()
ADAPTER = DepthwisePart()
