"""Keras' single-head attention layers, `Attention` (Luong) and `AdditiveAttention` (Bahdanau): their products
between activations, one explanation each, one unit (the layers have no heads).

  Attention            `<path>/attention_scores`: scores = Q.K^T (score_mode "dot"; "concat" scores are a sum of
                       tanh, no matmul) and `<path>/attention_values`: output = A.V; no kernels of its own.
  AdditiveAttention    `<path>/attention_values`: output = A.V (its scores are additive, no matmul).

They are MultiHeadAttention's two einsums with one head, recorded by the same machinery (`attention`): the layer's
inputs Q [..., T, d], K [..., S, d], V [..., S, dv] are given the `[B, X, 1, H]` layout of a projection with one
head (leading axes flattened into B) and the attention weights A the `[B, 1, T, S]` one, so that every role, its
operands and its cells are as `layers/attention.py` says, with these differences: Q is the query as given (not
scaled); with `use_scale` the explained product is Q.K^T BEFORE Keras multiplies it by its trainable `scale`, so
dS is the gradient of that product (scale times that of the scaled scores); A are the weights after masking
(query/value masks, causal mask), softmax and dropout, from the layer's own `_apply_scores`.

While a recording step is traced the layer's `_calculate_scores` (score_mode "dot" only) and `_apply_scores` are
replaced by the products made explicit through `recorder._explain`. Taken: classes that override none of `call`,
`_calculate_scores` and `_apply_scores`; otherwise the products are listed as not recorded, with the reason.
"""

import math

import tensorflow as tf
from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer import internals
from tb_matmul_explainer.layers.attention import AttentionAdapter
from tb_matmul_explainer.layers.base import Adapter


def _one_head(t, axis):
    """[..., X, H] -> [B, X, 1, H] (axis 2: a projection's layout with one head) or [B, 1, X, H] (axis 1: the
    attention weights'), the leading axes flattened into B."""
    rows = tf.reshape(t, tf.concat([[-1], tf.shape(t)[-2:]], 0))
    rows.set_shape([None, *t.shape[-2:]])
    return tf.expand_dims(rows, axis)


def _back(t, axis, like):
    """The product `t` ([B, 1, T, S] or [B, T, 1, H]) without its head `axis`, in the layout of `like`
    ([..., T, _]): [..., T, S or H]."""
    squeezed = tf.squeeze(t, axis)
    result = tf.reshape(squeezed, tf.concat([tf.shape(like)[:-1], tf.shape(squeezed)[-1:]], 0))
    result.set_shape([*like.shape[:-1], squeezed.shape[-1]])  # (what Keras' own would know when traced)
    return result


def _patched(recorder, layer, parts):
    """(calculate_scores or None, apply_scores): the layer's own with its products explained."""

    def scores_product(q, k):
        return kops.einsum("btnd,bsnd->bnts", q, k)

    def values_product(a, v):
        return kops.einsum("bnts,bsnd->btnd", a, v)

    def calculate_scores(query, key):
        qs, ks = _one_head(query, 2), _one_head(key, 2)
        scores = _back(recorder._explain(parts["attention_scores"], qs, ks, scores_product, None), 1, query)
        return scores if layer.scale is None else kops.multiply(scores, layer.scale)

    def apply_scores(scores, value, scores_mask=None, training=False):
        weights = internals.attention_weights(layer, scores, value, scores_mask, training)
        a, v = _one_head(weights, 1), _one_head(value, 2)
        return _back(recorder._explain(parts["attention_values"], a, v, values_product, None), 2, weights), weights

    return (calculate_scores if "attention_scores" in parts else None), apply_scores


class OtherAttentionAdapter(AttentionAdapter):
    """Attention and AdditiveAttention: their matmul products, one part each (none when refused: all listed)."""

    layer_types = (keras_layers.Attention,)  # (AdditiveAttention extends it)

    def products(self, layer):
        """The products of `layer` that are matmuls: attention_scores (when a dot product) and attention_values."""
        additive = isinstance(layer, keras_layers.AdditiveAttention) or layer.score_mode != "dot"
        return ("attention_values",) if additive else ("attention_scores", "attention_values")

    def _why_not(self, layer):
        reason = Adapter.refusal(self, layer)  # (call overridden; AttentionAdapter's checks are MHA's)
        if reason is None and internals.overrides_attention_scores(layer):
            reason = (
                f"{type(layer).__name__} overrides _calculate_scores or _apply_scores, so its products are not known"
            )
        return reason

    def heads(self, layer):
        return 1

    def patch(self, recorder, target):
        internals.override_attention_scores(target.layer, *_patched(recorder, target.layer, target.parts))

    def unpatch(self, layer):
        internals.restore_attention_scores(layer)

    def extra_multiply_adds(self, layer, inputs, output):
        query, value = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
        t, s = math.prod(query[1:-1]), math.prod(value[1:-1])
        macs = {"attention_scores": t * s * query[-1], "attention_values": t * s * value[-1]}
        return {part: macs[part] for part in self.products(layer)}


ADAPTER = OtherAttentionAdapter()
