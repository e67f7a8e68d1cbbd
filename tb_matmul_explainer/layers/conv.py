"""`keras.layers.Conv1D/2D/3D`: z = the convolution of x with the kernel, units = output channels.

Taken: `channels_last`, any strides, `valid`/`same` padding, and `causal` for Conv1D (explained as the VALID
convolution over the left-padded input, the padding zeros counted as near-zero inputs), any `dilation_rate`, and
`groups` for 1D/2D convolutions with equal strides (`conv_groups`' limits); refused otherwise, with the setting in
the reason. The patched call is Keras' ConvND.call with z explicit (`kops.conv`), then bias and activation; the
geometry handed to the totals is `{"strides", "padding", "dilations", "groups"}` (`geometry_of`). Per-unit totals
are `aggregates.conv*`; SAME padding is in no class (its kernel-gradient taps that only meet padding are counted in
`padding_only`).
"""

import math

import tensorflow as tf
from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer import aggregates, internals, validation
from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer.layers.base import Adapter


def _geometry(geometry):
    """The aggregates' geometry arguments from the one the patched call passed."""
    return {key: geometry[key] for key in ("strides", "padding", "dilations", "groups")}


def grouped_refusal(rank, strides, groups):
    """Why a grouped convolution (depthwise included) cannot be recorded, or None (`conv_groups`' limits)."""
    if groups > 1 and rank == 3:
        return f"groups={groups} is not supported for 3D convolutions (TensorFlow has no 3D depthwise kernels)"
    if groups > 1 and rank == 2 and strides[0] != strides[1]:
        return (
            f"strides={tuple(strides)} with groups are not supported "
            "(TensorFlow's depthwise kernels take equal strides)"
        )
    return None


def geometry_of(layer, padding, groups):
    """The geometry a patched call hands to the totals."""
    return {
        "strides": tuple(layer.strides),
        "padding": padding,
        "dilations": tuple(layer.dilation_rate),
        "groups": groups,
    }


class ConvAdapter(Adapter):
    kind = "conv"
    layer_types = (keras_layers.Conv1D, keras_layers.Conv2D, keras_layers.Conv3D)
    near_zero_sample = "conv"
    shares_records = True

    paddings = ("valid", "same", "causal")  # the `padding` settings taken

    def refusal(self, layer):
        reason = super().refusal(layer)
        if reason is not None:
            return reason
        if layer.data_format != "channels_last":
            return f"data_format={layer.data_format!r} is not supported (channels_last only)"
        if layer.padding not in self.paddings:
            return f"padding={layer.padding!r} is not supported"
        return self.geometry_refusal(layer)

    def geometry_refusal(self, layer):
        """Why the layer's strides, dilation or groups cannot be recorded, or None."""
        return grouped_refusal(layer.rank, layer.strides, layer.groups)

    def op(self, layer):
        return f"conv{layer.rank}d"

    def units(self, layer, role, part=None):
        """Output channels, or input channels (the kernel's in-channels x groups) for the input roles."""
        in_g, filters = (int(d) for d in layer.kernel.shape[-2:])
        return in_g * layer.groups if role in ("input_gradient", "input_features") else filters

    def features_last(self, target, x):
        """The layer's input without the causal padding that the records' x carries (its zeros are the pad's, not
        the data's: a causal Conv1D's input read 8% exactly zero from 2 padded steps of 26)."""
        if target.layer.padding == "causal":
            return x[:, int(internals.causal_padding(target.layer)[1][0]) :, :]
        return x

    def patched_call(self, recorder, target):
        layer = target.layer

        def call(inputs):
            padding = layer.padding
            if padding == "causal":
                inputs = kops.pad(inputs, internals.causal_padding(layer))
                padding = "valid"
            m = recorder._explain(
                target,
                inputs,
                kops.convert_to_tensor(layer.kernel),
                lambda x, k: kops.conv(
                    x,
                    k,
                    strides=list(layer.strides),
                    padding=padding,
                    dilation_rate=layer.dilation_rate,
                    data_format=layer.data_format,
                ),
                geometry_of(layer, padding, layer.groups),
            )
            bias = kops.reshape(layer.bias, (1,) * (layer.rank + 1) + (layer.filters,)) if layer.use_bias else None
            return recorder._activate(target, m, bias, layer.activation)

        return call

    def forward_totals(self, target, x, kernel, z, geometry, options):
        return aggregates.conv(x, kernel, **_geometry(geometry), result=z, options=options)

    def kernel_gradient_totals(self, target, x, d_out, kernel_shape, geometry, result, options):
        return aggregates.conv_kernel_gradient(
            x, d_out, kernel_shape, **_geometry(geometry), result=result, options=options
        )

    def input_gradient_totals(self, target, x, d_out, kernel, geometry, options):
        return aggregates.conv_input_gradient(d_out, kernel, x.shape, **_geometry(geometry), options=options)

    def kernel_gradient(self, target, x, d_out, kernel_shape, geometry):
        kernel_shape = tf.TensorShape(kernel_shape)
        strides = validation.normalize_strides(geometry["strides"], kernel_shape.rank - 2)
        return conv_lib.backprop_filter(
            tf.cast(x, tf.float32),
            d_out,
            kernel_shape.as_list(),
            strides,
            validation.normalize_padding(geometry["padding"]),
            geometry["dilations"],
        )

    def padding_only(self, target, x, kernel_shape, geometry):
        return padding_only_cells(x.shape, kernel_shape, geometry)

    def multiply_adds(self, layer, inputs, output):
        """Output positions x kernel entries (right for groups too: the kernel holds in_channels / groups)."""
        return math.prod(output[:-1]) * math.prod(int(d) for d in layer.kernel.shape)


def padding_only_cells(input_shape, kernel_shape, geometry):
    """Kernel-gradient cells of a convolution with input `input_shape` that only ever meet SAME padding (NaN where
    its spatial shape is not known)."""
    if geometry["padding"].upper() != "SAME":
        return 0.0
    spatial = list(input_shape)[1:-1]
    if any(d is None for d in spatial):
        return float("nan")
    kernel_shape = tf.TensorShape(kernel_shape)
    strides = validation.normalize_strides(geometry["strides"], kernel_shape.rank - 2)
    taps = conv_lib.padding_only_taps(
        [int(d) for d in spatial],
        [int(d) for d in kernel_shape[:-2]],
        [int(s) for s in strides],
        "SAME",
        geometry["dilations"],
    )
    return float(taps * int(kernel_shape[-2]) * int(kernel_shape[-1]))


ADAPTER = ConvAdapter()
