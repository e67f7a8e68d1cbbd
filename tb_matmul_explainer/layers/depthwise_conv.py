"""`keras.layers.DepthwiseConv1D/2D`: z = each input channel convolved with its own `depth_multiplier` filters;
units = output channels (in_channels x depth_multiplier, channel `c * depth_multiplier + j`).

Explained as the grouped convolution with one group per input channel (`conv_groups`): the kernel handed to the
records is Keras' `kernel_spatial + (in_channels, depth_multiplier)` read as `kernel_spatial + (1, in_channels *
depth_multiplier)` (the same values in the same order), so a kernel-gradient cell is one kernel offset of one output
channel. Taken: `channels_last`, `valid`/`same` padding, any strides and dilation (2D: equal strides, as
TensorFlow's depthwise kernels need); refused otherwise. The patched call is Keras' DepthwiseConv call with z
explicit (`kops.depthwise_conv`), then bias and activation; totals, kernel gradient and padding-only taps are the
convolution adapter's with `groups` = in_channels.
"""

import math

from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer.layers.conv import ConvAdapter, geometry_of, grouped_refusal


def grouped_shape(kernel):
    """A depthwise kernel's shape as a grouped convolution's: `kernel_spatial + (1, in_channels * multiplier)`."""
    *spatial, cin, multiplier = (int(d) for d in kernel.shape)
    return tuple(spatial) + (1, cin * multiplier)


class DepthwiseConvAdapter(ConvAdapter):
    kind = "depthwise_conv"
    layer_types = tuple(getattr(keras_layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D"))

    def kernel_of(self, layer):
        """The depthwise kernel variable, `kernel_spatial + (in_channels, depth_multiplier)`."""
        return layer.kernel

    def bias_of(self, layer):
        """The bias added to this part's result, shaped to broadcast (None: none)."""
        if not layer.use_bias:
            return None
        return kops.reshape(layer.bias, (1,) * (layer.rank + 1) + (grouped_shape(self.kernel_of(layer))[-1],))

    paddings = ("valid", "same")

    def geometry_refusal(self, layer):
        return grouped_refusal(layer.rank, layer.strides, int(self.kernel_of(layer).shape[-2]))

    def op(self, layer):
        return f"depthwise_conv{layer.rank}d"

    def units(self, layer, role, part=None):
        cin, multiplier = (int(d) for d in self.kernel_of(layer).shape[-2:])
        return cin if role in ("input_gradient", "input_features") else cin * multiplier

    def multiply_adds(self, layer, inputs, output):
        return math.prod(output[:-1]) * math.prod(int(d) for d in self.kernel_of(layer).shape)

    def patched_call(self, recorder, target):
        layer = target.layer
        variable = self.kernel_of(layer)
        shape = tuple(int(d) for d in variable.shape)

        def call(inputs):
            m = recorder._explain(
                target,
                inputs,
                kops.reshape(variable, grouped_shape(variable)),
                lambda x, k: kops.depthwise_conv(
                    x,
                    kops.reshape(k, shape),
                    strides=layer.strides,
                    padding=layer.padding,
                    dilation_rate=layer.dilation_rate,
                    data_format=layer.data_format,
                ),
                geometry_of(layer, layer.padding, shape[-2]),
            )
            return recorder._activate(target, m, self.bias_of(layer), self.activation(layer))

        return call


ADAPTER = DepthwiseConvAdapter()
