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

from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer.layers.conv import ConvAdapter, geometry_of, grouped_refusal


def grouped_shape(layer):
    """The depthwise kernel's shape as a grouped convolution's: `kernel_spatial + (1, in_channels * multiplier)`."""
    *spatial, cin, multiplier = (int(d) for d in layer.kernel.shape)
    return tuple(spatial) + (1, cin * multiplier)


class DepthwiseConvAdapter(ConvAdapter):
    kind = "depthwise_conv"
    layer_types = tuple(getattr(keras_layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D"))

    def refusal(self, layer):
        reason = super(ConvAdapter, self).refusal(layer)
        if reason is not None:
            return reason
        if layer.data_format != "channels_last":
            return f"data_format={layer.data_format!r} is not supported (channels_last only)"
        if layer.padding not in ("valid", "same"):
            return f"padding={layer.padding!r} is not supported"
        return grouped_refusal(layer.rank, layer.strides, int(layer.kernel.shape[-2]))

    def op(self, layer):
        return f"depthwise_conv{layer.rank}d"

    def units(self, layer, role):
        cin, multiplier = (int(d) for d in layer.kernel.shape[-2:])
        return cin if role in ("input_gradient", "input_features") else cin * multiplier

    def patched_call(self, recorder, target):
        layer = target.layer
        shape = tuple(int(d) for d in layer.kernel.shape)
        cin = shape[-2]

        def call(inputs):
            m = recorder._explain(
                target,
                inputs,
                kops.reshape(layer.kernel, grouped_shape(layer)),
                lambda x, k: kops.depthwise_conv(
                    x,
                    kops.reshape(k, shape),
                    strides=layer.strides,
                    padding=layer.padding,
                    dilation_rate=layer.dilation_rate,
                    data_format=layer.data_format,
                ),
                geometry_of(layer, layer.padding, cin),
            )
            units = cin * layer.depth_multiplier
            bias = kops.reshape(layer.bias, (1,) * (layer.rank + 1) + (units,)) if layer.use_bias else None
            return recorder._activate(target, m, bias, layer.activation)

        return call


ADAPTER = DepthwiseConvAdapter()
