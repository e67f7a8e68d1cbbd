"""`keras.layers.MultiHeadAttention`: its two batched matmuls that are not layers, listed as not recorded.

The query/key/value/output projections are EinsumDense sublayers (recorded by `einsum_dense`). Inside the layer's
own call run two more matmuls: scores = Q.K^T (per head: [T, key_dim] x [key_dim, S]) and output =
softmax(scores).V (per head: [T, S] x [S, value_dim]). They are not recorded yet; this adapter names them
(`<layer path>/attention_scores`, `<layer path>/attention_values`) with the reason, and counts their multiply-adds
per sample from the call's query and value shapes, so that the coverage line and the run say what is missing.
"""

import math

from keras import layers as keras_layers

from tb_matmul_explainer.layers.base import Adapter

_REASON = (
    "the attention {what} einsum {formula} inside MultiHeadAttention is not a layer and is not recorded yet "
    "(its query/key/value/output projections are)"
)


class AttentionAdapter(Adapter):
    kind = "attention"
    layer_types = (keras_layers.MultiHeadAttention,)
    records = False

    def refusal(self, layer):
        return None

    def not_recorded(self, layer):
        return {
            "attention_scores": _REASON.format(what="score", formula="Q.K^T (unit: head)"),
            "attention_values": _REASON.format(what="value", formula="softmax(scores).V (unit: head)"),
        }

    def multiply_adds(self, layer, inputs, output):
        return 0  # (its projections are sublayers, counted on their own)

    def extra_multiply_adds(self, layer, inputs, output):
        query, value = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
        t, s = math.prod(query[1:-1]), math.prod(value[1:-1])
        heads, key_dim = int(layer.num_heads), int(layer.key_dim)
        value_dim = int(layer.value_dim or key_dim)
        return {"attention_scores": heads * t * s * key_dim, "attention_values": heads * t * s * value_dim}


ADAPTER = AttentionAdapter()
