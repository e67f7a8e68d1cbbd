"""One adapter per Keras layer kind: which layers it takes, how their call is captured, their units per role and
their explanations (the contract: `base.Adapter`). Adding a kind is one module here and one line in `ADAPTERS`.

  dense          Dense
  einsum_dense   EinsumDense (matmuls over the input's trailing axes)
  conv           Conv1D/2D/3D (any strides and dilation; groups for 1D/2D)
  depthwise_conv DepthwiseConv1D/2D
  separable_conv SeparableConv1D/2D: two explanations, <path>/depthwise and <path>/pointwise
  conv_transpose Conv1D/2D/3DTranspose
  attention      MultiHeadAttention, GroupQueryAttention: their score and value einsums (two explanations per
                 layer, unit: head, GroupQueryAttention's query heads)
  other_attention Attention, AdditiveAttention: their matmul products (dot scores, values; unit: the layer)
  recurrent      SimpleRNN, LSTM, GRU (and RNN around their cells): input and recurrent kernels, over time steps
  wrappers       TimeDistributed around a row-wise kind: its layer called once on the (batch x time) rows
"""

import math

from tb_matmul_explainer import internals
from tb_matmul_explainer.layers import (
    attention,
    conv,
    conv_transpose,
    dense,
    depthwise_conv,
    einsum_dense,
    other_attention,
    recurrent,
    separable_conv,
    wrappers,
)

ADAPTERS = (
    dense.ADAPTER,
    einsum_dense.ADAPTER,
    conv.ADAPTER,
    depthwise_conv.ADAPTER,
    separable_conv.ADAPTER,
    conv_transpose.ADAPTER,
    attention.ADAPTER,
    attention.GQA_ADAPTER,
    other_attention.ADAPTER,
    *recurrent.ADAPTERS,
    *wrappers.ADAPTERS,
)
SUPPORTED = (
    "Dense, EinsumDense, Conv1D, Conv2D, Conv3D, DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, "
    "SeparableConv2D, Conv1DTranspose, Conv2DTranspose, Conv3DTranspose, SimpleRNN, LSTM, GRU, "
    "MultiHeadAttention, GroupQueryAttention, Attention and AdditiveAttention (their products between activations)"
)


def adapter_for(layer):
    """The adapter that claims `layer` (the first in `ADAPTERS`), or None."""
    return next((a for a in ADAPTERS if a.claims(layer)), None)


def kernels_of(layer):
    """The variables `layer` owns whose name says they are a kernel (its sublayers' excluded)."""
    return [v for v in internals.own_variables(layer) if "kernel" in v.name]


def generic_multiply_adds(layer, inputs, output):
    """Multiply-adds per sample of a layer no adapter claims: output positions x its kernels' entries (an
    estimate; 0 without a kernel)."""
    return math.prod(output[:-1]) * sum(math.prod(int(d) for d in v.shape) for v in kernels_of(layer))


__all__ = ["ADAPTERS", "SUPPORTED", "adapter_for", "generic_multiply_adds", "kernels_of"]
