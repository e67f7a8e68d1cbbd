"""`keras.layers.TimeDistributed` around a layer that computes each batch row on its own (Dense, EinsumDense,
convolutions): its layer is recorded once per step over all time steps.

TimeDistributed calls its layer's `call` once per time step (or in a vectorized map when the number of steps is
not known), so the layer would be explained at its first step only. While a recording step is traced (and in the
coverage pass), `recording_call` replaces TimeDistributed's call by one call of its layer on the (batch x time)
rows (the input [B, T, ...] reshaped to [B*T, ...], the result back to [B, T, ...]): the same values, and the
layer's records (named by its Keras path, `<wrapper path>/<layer name>`) aggregate all time steps. The wrapper
records nothing of its own. (`Bidirectional` needs nothing: it calls its forward and backward copies of the layer
once each, and each is recorded under its own path, e.g. `bidirectional/forward_lstm/kernel`.)
"""

import inspect

import tensorflow as tf
from keras import layers as keras_layers

from tb_matmul_explainer.layers.base import Adapter

ROW_WISE_KINDS = ("dense", "einsum_dense", "conv")


class TimeDistributedAdapter(Adapter):
    kind = "time_distributed"
    layer_types = (keras_layers.TimeDistributed,)
    records = False

    def claims(self, layer):
        from tb_matmul_explainer.layers import adapter_for

        inner = adapter_for(getattr(layer, "layer", None)) if isinstance(layer, self.layer_types) else None
        return inner is not None and inner.kind in ROW_WISE_KINDS and inner.refusal(layer.layer) is None

    def refusal(self, layer):
        return None

    def multiply_adds(self, layer, inputs, output):
        return 0  # (its layer counts its own calls)

    def recording_call(self, layer):
        inner = layer.layer
        takes_training = "training" in inspect.signature(type(inner).call).parameters

        def call(inputs, training=None, mask=None):
            static = inputs.shape
            rows = tf.reshape(inputs, tf.concat([[-1], tf.shape(inputs)[2:]], 0))
            rows.set_shape([None, *static[2:]])
            out = inner.call(rows, training=training) if takes_training else inner.call(rows)
            result = tf.reshape(out, tf.concat([tf.shape(inputs)[:2], tf.shape(out)[1:]], 0))
            result.set_shape([static[0], static[1], *out.shape[1:]])
            return result

        return call


ADAPTERS = (TimeDistributedAdapter(),)
