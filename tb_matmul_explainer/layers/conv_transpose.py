"""`keras.layers.Conv1DTranspose/2DTranspose/3DTranspose`: z = the transposed convolution of x with the kernel
`kernel_spatial + (filters, in_channels)`; units = filters (input features: in_channels).

A transposed convolution is the input gradient of the convolution C with the same kernel, strides, padding and
dilation, C mapping z to x. So its forward totals are C's input-gradient totals (`aggregates.conv_input_gradient`
of x and the kernel, z's shape, output_padding included, as C's input shape), its input gradient's are C's forward
totals (`aggregates.conv` of d_out and the kernel), and its kernel gradient's are C's kernel gradient with the
operands swapped, per filter (`aggregates.conv_transpose_kernel_gradient`, computed per cell). Padding is C's (in no
class). Taken: `channels_last`, `valid`/`same` padding, any strides, output_padding and dilation; the patched call is
Keras' ConvTranspose call with z explicit (`kops.conv_transpose`), then bias and activation.
"""

import math

from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer import aggregates, validation
from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer.layers.conv import ConvAdapter, geometry_of, padding_only_cells


def _c_geometry(geometry):
    """C's geometry arguments (no groups: Keras' transposed convolutions have none)."""
    return {key: geometry[key] for key in ("strides", "padding", "dilations")}


class ConvTransposeAdapter(ConvAdapter):
    shares_records = False  # (its plan or parts: not shared, see keras/shared.py)
    kind = "conv_transpose"
    layer_types = tuple(getattr(keras_layers, f"Conv{r}DTranspose") for r in (1, 2, 3))

    paddings = ("valid", "same")

    def geometry_refusal(self, layer):
        return None

    def op(self, layer):
        return f"conv{layer.rank}d_transpose"

    def units(self, layer, role, part=None):
        filters, cin = (int(d) for d in layer.kernel.shape[-2:])
        return cin if role in ("input_gradient", "input_features") else filters

    def patched_call(self, recorder, target):
        layer = target.layer

        def call(inputs):
            m = recorder._explain(
                target,
                inputs,
                kops.convert_to_tensor(layer.kernel),
                lambda x, k: kops.conv_transpose(
                    x,
                    k,
                    strides=layer.strides,
                    padding=layer.padding,
                    output_padding=layer.output_padding,
                    data_format=layer.data_format,
                    dilation_rate=layer.dilation_rate,
                ),
                geometry_of(layer, layer.padding, 1),
            )
            bias = kops.reshape(layer.bias, (1,) * (layer.rank + 1) + (layer.filters,)) if layer.use_bias else None
            return recorder._activate(target, m, bias, layer.activation)

        return call

    def forward_totals(self, target, x, kernel, z, geometry, options):
        return aggregates.conv_input_gradient(
            x, kernel, [None] + z.shape.as_list()[1:], **_c_geometry(geometry), result=z, options=options
        )

    def kernel_gradient_totals(self, target, x, d_out, kernel_shape, geometry, result, options):
        return aggregates.conv_transpose_kernel_gradient(
            x, d_out, kernel_shape, **_c_geometry(geometry), result=result, options=options
        )

    def input_gradient_totals(self, target, x, d_out, kernel, geometry, options):
        return aggregates.conv(d_out, kernel, **_c_geometry(geometry), options=options)

    def kernel_gradient(self, target, x, d_out, kernel_shape, geometry):
        rank = len(kernel_shape) - 2
        strides = validation.normalize_strides(geometry["strides"], rank)
        padding = validation.normalize_padding(geometry["padding"])
        return conv_lib.backprop_filter(d_out, x, list(kernel_shape), strides, padding, geometry["dilations"])

    def padding_only(self, target, x, kernel_shape, geometry):
        """C's padding-only taps: C's input is z, the layer's output."""
        return padding_only_cells(target.layer.compute_output_shape(tuple(x.shape)), kernel_shape, geometry)

    def multiply_adds(self, layer, inputs, output):
        """Input positions x kernel entries: each input position meets the whole kernel."""
        return math.prod(inputs[0][:-1]) * math.prod(int(d) for d in layer.kernel.shape)


ADAPTER = ConvTransposeAdapter()
