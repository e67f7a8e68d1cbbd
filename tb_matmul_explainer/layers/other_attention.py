"""Keras' attention layers other than MultiHeadAttention and GroupQueryAttention (`attention`): their products
between activations, listed as not recorded.

  Attention            scores = Q.K^T (score_mode "dot"; "concat" scores are a sum of tanh, no matmul) and
                       output = A.V; no kernels of its own.
  AdditiveAttention    output = A.V (its scores are additive, no matmul).

These products are not layers and are not recorded yet: the adapter names them (`<layer path>/attention_scores`,
`<layer path>/attention_values`) with the reason and counts their multiply-adds per sample from the call's query
and value shapes (batch 1: `[1, T, d]`, `[1, S, dv]`), so that the coverage line and the run say what is missing.
"""

from keras import layers as keras_layers

from tb_matmul_explainer.layers.base import Adapter

_REASON = (
    "the attention {what} product {formula} inside {kind} is not a layer and is not recorded yet (only "
    "MultiHeadAttention's and GroupQueryAttention's are)"
)
_FORMULAS = {"attention_scores": ("score", "Q.K^T"), "attention_values": ("value", "A.V")}


def _types(*names):
    return tuple(getattr(keras_layers, name) for name in names if hasattr(keras_layers, name))


def _products(layer):
    """The products of `layer` that are matmuls: attention_scores (when a dot product) and attention_values."""
    additive = isinstance(layer, _types("AdditiveAttention")) or getattr(layer, "score_mode", "dot") != "dot"
    return ("attention_values",) if additive else ("attention_scores", "attention_values")


class OtherAttentionAdapter(Adapter):
    kind = "other_attention"
    layer_types = _types("Attention", "AdditiveAttention")
    records = False

    def refusal(self, layer):
        return None  # (nothing of its own to record: its projections, if any, are sublayers)

    def not_recorded(self, layer):
        kind = type(layer).__name__
        return {
            part: _REASON.format(what=_FORMULAS[part][0], formula=_FORMULAS[part][1], kind=kind)
            for part in _products(layer)
        }

    def multiply_adds(self, layer, inputs, output):
        return 0

    def extra_multiply_adds(self, layer, inputs, output):
        query, value = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
        t, s = query[1], value[1]
        macs = {"attention_scores": t * s * query[-1], "attention_values": t * s * value[-1]}
        return {part: macs[part] for part in _products(layer)}


ADAPTER = OtherAttentionAdapter()
