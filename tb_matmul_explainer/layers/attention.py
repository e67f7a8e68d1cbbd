"""`keras.layers.MultiHeadAttention` and `GroupQueryAttention`: their two batched matmuls that are not layers, one
explanation each.

The query/key/value/output projections (and GroupQueryAttention's gate) are EinsumDense sublayers (recorded by
`einsum_dense`). Between them run two einsums between activations, recorded as `<layer path>/attention_scores` and
`<layer path>/attention_values`, one unit per head, for the three matmul roles (an einsum of two activations has no
weights; the roles are named by the position of its operands, as for a dense layer with the second operand in the
kernel's place):

  attention_scores  scores = Q.K^T per (sample, head): [T, key_dim] x [key_dim, S]. Keras multiplies the projected
                    query by 1/sqrt(key_dim) first; the einsum explained is the one computed, so Q is the SCALED
                    query (its threshold and sums are those of Q / sqrt(key_dim)).
                      forward          first Q, second K, result the scores (before mask and softmax)
                      kernel_gradient  first Q, second dS (d loss / d scores), result dK (dK^T = Q^T.dS)
                      input_gradient   first dS, second K, result dQ = dS.K (the scaled query's gradient)
  attention_values  output = A.V per (sample, head): [T, S] x [S, value_dim], A the attention probabilities after
                    dropout (what the einsum multiplies).
                      forward          first A, second V, result the output (before the output projection)
                      kernel_gradient  first A, second dO, result dV = A^T.dO
                      input_gradient   first dO, second V, result dA = dO.V^T

Per-head totals are summed over the batch, the query and key positions and the head's feature axis (a head's
cells: B x T x S for the scores and dA, B x key_dim x S for dK, B x T x key_dim for dQ, B x T x value_dim for the
output, B x S x value_dim for dV); `aggregates.batched` computes them. The operands are named in the records'
metadata (`metadata.OP_OPERANDS`: query, key, attention, value, output_gradient). K and V are activations: their
gradients are computed by the kernel-gradient record itself, per replica (`Adapter.kernel_is_weight`). Masks
(causal, padding, `attention_mask`) do not change what is counted: masked scores are computed anyway and are counted
like any other; their probabilities are exactly 0 (class Z in the value einsum's A) and so are their score
gradients (class Z in dS).

While a recording step is traced the layer's `_compute_attention` is replaced by Keras' own explicit path (scale,
score einsum, masked softmax, dropout, value einsum) with the two einsums made explicit through
`recorder._explain`; steps that do not record keep Keras' own (fused `dot_product_attention` where Keras uses
it). Taken: 3-D query/value inputs attending over axis 1 (the default `attention_axes`), a class that does not
override `call` or `_compute_attention`; otherwise both einsums are listed as not recorded, with the reason.

GroupQueryAttention (`GroupQueryAttentionAdapter`) is the same computation with head_dim for key_dim and value_dim
and Q scaled by 1/sqrt(head_dim), except that its N_kv key/value heads are repeated (`ops.repeat`, axis 2) to the
N_q query heads before `_compute_attention`. Its einsums are recorded after that repeat, as Keras computes them:
one unit per QUERY head, the repeated K and V as second operands. So the kernel-gradient records are those of the
repeated K and V: the gradient of the projected K (or V) head g is the sum of the dK (dV) of the
N_q / N_kv query heads of its group (`layer.num_repeats` consecutive units); the records do not add them up.
"""

import math

import tensorflow as tf
from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer import aggregates, internals, metadata
from tb_matmul_explainer.layers.base import Adapter

_PARTS = ("attention_scores", "attention_values")
_REASON = "the attention {what} einsum {formula} inside {kind} is not recorded: {why}"
_FORMULAS = {"attention_scores": ("score", "Q.K^T (unit: head)"), "attention_values": ("value", "A.V (unit: head)")}


def _heads_major(t):
    """[B, X, N, H] (projections, the output) -> [B, N, X, H]."""
    return tf.transpose(t, [0, 2, 1, 3])


def _swap_last(t):
    return tf.linalg.matrix_transpose(t)


class _Einsum:
    """One of the two einsums (`kind` = its part name). The first operand, the kernel-position operand and the
    result are put heads-major (`[B, N, rows, cols]`) so that the einsum is `first @ op(second)` per (sample,
    head), op = transposition for the scores (K^T) and none for the values (V)."""

    def __init__(self, kind, transposed):
        self.kind, self._transposed = kind, transposed

    def _first(self, x):  # Q [B,T,N,H] -> [B,N,T,H]; A is heads-major already
        return _heads_major(x) if self.kind == "attention_scores" else x

    def _second(self, kernel):  # op(K or V heads-major): the einsum's second factor [B, N, C, U]
        k = _heads_major(kernel)
        return _swap_last(k) if self._transposed else k

    def result(self, z):  # scores [B,N,T,S] already; output [B,T,N,H] -> [B,N,T,H]
        return z if self.kind == "attention_scores" else _heads_major(z)

    def forward_totals(self, x, kernel, z, options):
        return aggregates.batched_matmul(self._first(x), self._second(kernel), result=self.result(z), options=options)

    def kernel_gradient_totals(self, x, d_out, result, options):
        if result is not None:
            result = self._second(result)
        return aggregates.batched_matmul(_swap_last(self._first(x)), self.result(d_out), result=result, options=options)

    def input_gradient_totals(self, d_out, kernel, options):
        return aggregates.batched_matmul(self.result(d_out), _swap_last(self._second(kernel)), options=options)

    def kernel_gradient(self, x, d_out):
        """dK or dV in the layer's layout `[B, S, N, H]`."""
        d_second = tf.linalg.matmul(self._first(tf.cast(x, tf.float32)), self.result(d_out), transpose_a=True)
        return _heads_major(_swap_last(d_second) if self._transposed else d_second)


_EINSUMS = {
    "attention_scores": _Einsum("attention_scores", True),
    "attention_values": _Einsum("attention_values", False),
}


def _compute_attention(recorder, adapter, layer, scores_target, values_target):
    """Keras' explicit `_compute_attention` path with both einsums explained (see the module docstring)."""
    score_equation, value_equation = internals.attention_equations(layer)

    def compute(
        query, key, value, attention_mask=None, training=None, return_attention_scores=False, use_causal_mask=False
    ):
        if use_causal_mask:
            causal = internals.attention_causal_mask(layer, query, value)
            attention_mask = (
                causal if attention_mask is None else kops.logical_and(kops.cast(attention_mask, "bool"), causal)
            )
        query = kops.multiply(query, kops.cast(internals.attention_scale(layer), query.dtype))
        scores = recorder._explain(scores_target, query, key, lambda q, k: adapter.scores(score_equation, q, k), None)
        probabilities = internals.attention_softmax(layer, scores, attention_mask)
        dropped = internals.attention_dropout(layer, probabilities, training)
        output = recorder._explain(values_target, dropped, value, lambda a, v: kops.einsum(value_equation, a, v), None)
        return output, probabilities

    return compute


class AttentionAdapter(Adapter):
    """MultiHeadAttention: two parts, its score and value einsums (none when refused: both are then listed)."""

    kind = "attention"
    layer_types = (keras_layers.MultiHeadAttention,)
    near_zero_sample = "attention"
    kernel_is_weight = False
    # Keras' equations for rank-4 projections attending over axis 1: K [B,S,N,H], Q [B,T,N,H] -> scores
    # [B,N,T,S]; A [B,N,T,S], V [B,S,N,H] -> output [B,T,N,H].
    equations = ("aecd,abcd->acbe", "acbe,aecd->abcd")

    def scores(self, equation, query, key):
        """The score einsum as Keras calls it (MultiHeadAttention: key first)."""
        return kops.einsum(equation, key, query)

    def heads(self, layer):
        """The units: its heads."""
        return int(layer.num_heads)

    def head_dims(self, layer):
        """(key_dim, value_dim) of one head."""
        return int(layer.key_dim), int(layer.value_dim or layer.key_dim)

    def products(self, layer):
        """The layer's products that are matmuls (parts when recorded, listed when refused)."""
        return _PARTS

    def _why_not(self, layer):
        """Why the einsums of `layer` cannot be recorded, or None."""
        reason = super().refusal(layer)
        if reason is None and internals.overrides_compute_attention(layer):
            reason = f"{type(layer).__name__} overrides _compute_attention, so its einsums are not known"
        if reason is None and tuple(internals.attention_equations(layer)) != self.equations:
            reason = (
                f"its einsums {internals.attention_equations(layer)} are not those of 3-D inputs attending over "
                "axis 1 (the default attention_axes), the only ones supported"
            )
        return reason

    def refusal(self, layer):
        return None  # (the layer itself has no matmul of its own; its einsums are its parts)

    def parts(self, layer):
        return () if self._why_not(layer) else tuple((part, self) for part in self.products(layer))

    def activation(self, layer):
        return None

    def roles(self, layer, part, roles):
        return tuple(r for r in roles if r in metadata.MATMUL_ROLES)

    def part_op(self, layer, part):
        return part

    def units(self, layer, role, part=None):
        return self.heads(layer)

    def not_recorded(self, layer):
        why = self._why_not(layer)
        if why is None:
            return {}
        kind = type(layer).__name__
        return {
            part: _REASON.format(what=_FORMULAS[part][0], formula=_FORMULAS[part][1], kind=kind, why=why)
            for part in self.products(layer)
        }

    def patch(self, recorder, target):
        internals.override_compute_attention(
            target.layer,
            _compute_attention(
                recorder, self, target.layer, target.parts["attention_scores"], target.parts["attention_values"]
            ),
        )

    def unpatch(self, layer):
        internals.restore_compute_attention(layer)

    def forward_totals(self, target, x, kernel, z, geometry, options):
        return _EINSUMS[target.part].forward_totals(x, kernel, z, options)

    def kernel_gradient_totals(self, target, x, d_out, kernel_shape, geometry, result, options):
        return _EINSUMS[target.part].kernel_gradient_totals(x, d_out, result, options)

    def input_gradient_totals(self, target, x, d_out, kernel, geometry, options):
        return _EINSUMS[target.part].input_gradient_totals(d_out, kernel, options)

    def kernel_gradient(self, target, x, d_out, kernel_shape, geometry):
        return _EINSUMS[target.part].kernel_gradient(x, d_out)

    def units_last(self, target, t):
        return tf.transpose(_EINSUMS[target.part].result(t), [0, 2, 3, 1])

    def kernel_units_last(self, target, t):
        return tf.transpose(t, [0, 1, 3, 2])  # K, V, dK, dV [B, S, N, H] -> [B, S, H, N]

    def multiply_adds(self, layer, inputs, output):
        return 0  # (its projections are sublayers, counted on their own)

    def extra_multiply_adds(self, layer, inputs, output):
        query, value = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
        t, s = math.prod(query[1:-1]), math.prod(value[1:-1])
        heads, (key_dim, value_dim) = self.heads(layer), self.head_dims(layer)
        return {"attention_scores": heads * t * s * key_dim, "attention_values": heads * t * s * value_dim}


class GroupQueryAttentionAdapter(AttentionAdapter):
    """GroupQueryAttention: MultiHeadAttention's two parts per query head, after K and V are repeated to the query
    heads (see the module docstring)."""

    layer_types = (keras_layers.GroupQueryAttention,)
    # Q [B,T,N,H], K [B,S,N,H] -> scores [B,N,T,S]; A [B,N,T,S], V [B,S,N,H] -> output [B,T,N,H].
    equations = ("bquh,bkuh->buqk", "buqk,bkuh->bquh")

    def scores(self, equation, query, key):
        return kops.einsum(equation, query, key)

    def heads(self, layer):
        return int(layer.num_query_heads)

    def head_dims(self, layer):
        return int(layer.head_dim), int(layer.head_dim)


ADAPTER = AttentionAdapter()
GQA_ADAPTER = GroupQueryAttentionAdapter()
