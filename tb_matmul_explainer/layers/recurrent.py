"""Recurrent layers: `SimpleRNN`, `LSTM`, `GRU` (and `RNN` around their cells): both kernels, aggregated over time.

Each layer yields two explanations (parts), named `<Keras path>/kernel` and `<Keras path>/recurrent_kernel`:

  kernel            x_t @ kernel for every time step: a dense matmul over (batch x time) rows, x [B, T, C] (after
                    the layer's input dropout), kernel [C, G*U]
  recurrent_kernel  h_{t-1} @ recurrent_kernel for every time step (h_0 = the initial state): a dense matmul over
                    (batch x time) rows of the shifted hidden-state sequence, recurrent_kernel [U, G*U]

GRU with reset_after=False computes its recurrent kernel as two matmuls, so it has three parts: `recurrent_kernel`
is h_{t-1} @ its z and r columns [U, 2*U], and `recurrent_kernel_candidate` is (r_t * h_{t-1}) @ its candidate
columns [U, U] (`recurrent_cells.recurrent_parts`).

Units are the kernels' columns in Keras' gate order (`metadata.GATES`; metadata `op` "lstm": i, f, c, o;
"gru": z, r, h; "simple_rnn": one block), gate k holding units k*U .. (k+1)*U - 1; input_gradient units are the
kernel's rows (C input features; U hidden features for the recurrent kernel). Aggregated over time steps: every
count and sum of a record adds up the products of all time steps of all batch rows; d_out is d(loss)/d(product)
per step and gate (for GRU the candidate's recurrent product enters as r * (h U_h + b_h), so its d_out carries r).
Only the input kernel records `input_features`; none records the activation roles (the gates' activations are
inside the cell). The first step's rows of the recurrent records are h_0 (zeros unless an initial state is given).

Masking (a `Masking` layer or a `mask` argument): a masked step carries the state and Keras discards what its
matmuls computed, so masked steps are in no record (neither their products nor their cells).

How it is captured (recording steps only): the layer runs a reimplementation of its loop (`recurrent_cells.step`,
Keras' order of operations, Keras' own loop function) with the input projection computed once outside the loop
(`recorder._explain` on x and kernel), a first forward-only pass of the loop for the hidden-state sequence, then
`recorder._explain` on that sequence and the recurrent kernel, whose product is fed to the loop's recurrent matmul
as a zero-valued term (`m - stop_gradient(m)`): values and gradients are the layer's, and d(loss)/d(product) of
every step reaches the records. A recording step thus costs about one more forward pass of the loop and two
(batch x time)-row matmuls; on a GPU, LSTM and GRU also leave cuDNN's fused kernel for Keras' generic loop in that
step (several times slower for the layer). Steps that do not record run the model's own compiled step.

A stateful layer starts from and updates its state variables, as Keras does (one update per step: the first pass
only reads them). Refused, with the reason: recurrent_dropout > 0, implementation=1. An RNN around other cells is left
to `OtherRNNAdapter` (its cell is listed as not supported).
"""

import math

import tensorflow as tf
from keras import layers as keras_layers
from keras import ops as kops
from keras import tree

from tb_matmul_explainer import internals
from tb_matmul_explainer.layers.base import Adapter
from tb_matmul_explainer.layers.dense import DenseAdapter
from tb_matmul_explainer.layers.recurrent_cells import CELLS, recurrent_parts, step

_OPS = {"SimpleRNNCell": "simple_rnn", "LSTMCell": "lstm", "GRUCell": "gru"}
_KERNELS = ("kernel", "recurrent_kernel")  # the cells' kernel variables


class RecurrentCellAdapter(Adapter):
    """A cell inside an RNN: recorded on its RNN (`RNNAdapter`); a subclass of a cell is not supported."""

    kind = "recurrent_cell"
    layer_types = CELLS
    records = False

    def refusal(self, layer):
        if type(layer) in CELLS:
            return None
        return (
            f"{type(layer).__name__} is not one of Keras' SimpleRNNCell, LSTMCell, GRUCell, whose computation the "
            "recorder reproduces"
        )

    def multiply_adds(self, layer, inputs, output):
        return 0  # (counted on the RNN layer)


def _cell_kernels(layer):
    return [getattr(layer.cell, name, None) for name in _KERNELS]


def _rnn_multiply_adds(layer, inputs):
    """Both kernels once per time step (the cell's own calls are not counted: TensorFlow's loop calls it once more
    than there are steps, to learn the output shapes)."""
    steps = int(inputs[0][1])
    return steps * sum(math.prod(int(d) for d in k.shape) for k in _cell_kernels(layer) if k is not None)


class OtherRNNAdapter(Adapter):
    """An RNN around a cell `RNNAdapter` does not take: nothing of its own; its cell's multiply-adds. Its cell is
    listed as not recorded where no adapter would say so (Keras' cells inside `StackedRNNCells`)."""

    kind = "rnn"
    layer_types = (keras_layers.RNN,)
    records = False

    def refusal(self, layer):
        return None

    def multiply_adds(self, layer, inputs, output):
        return _rnn_multiply_adds(layer, inputs)

    def _stacked(self, layer):
        return getattr(layer.cell, "cells", None) if isinstance(layer.cell, keras_layers.StackedRNNCells) else None

    def not_recorded(self, layer):
        if self._stacked(layer) is None:
            return {}
        return {
            layer.cell.name: "StackedRNNCells is not recorded: only an RNN holding one SimpleRNNCell, LSTMCell or "
            "GRUCell is"
        }

    def extra_multiply_adds(self, layer, inputs, output):
        cells = self._stacked(layer)
        if cells is None:
            return {}
        steps = int(inputs[0][1])
        kernels = [getattr(c, name, None) for c in cells for name in _KERNELS]
        return {layer.cell.name: steps * sum(math.prod(int(d) for d in k.shape) for k in kernels if k is not None)}


class RNNAdapter(DenseAdapter):
    """SimpleRNN, LSTM, GRU, or RNN around one of their cells: two parts, dense totals over (batch x time) rows."""

    shares_records = False  # (its plan or parts: not shared, see keras/shared.py)

    kind = "recurrent"
    layer_types = (keras_layers.SimpleRNN, keras_layers.LSTM, keras_layers.GRU, keras_layers.RNN)

    def claims(self, layer):
        return isinstance(layer, keras_layers.RNN) and type(getattr(layer, "cell", None)) in CELLS

    def refusal(self, layer):
        reason = super().refusal(layer)
        cell = layer.cell
        if reason is None and getattr(cell, "quantization_mode", None):
            reason = f"quantized kernels ({cell.quantization_mode}) are not supported"
        if reason is None and cell.recurrent_dropout:
            reason = (
                f"recurrent_dropout={cell.recurrent_dropout} is not supported (each gate's matmul then has its own "
                "dropped copy of the hidden state)"
            )
        if reason is None and getattr(cell, "implementation", 2) != 2:
            reason = f"implementation={cell.implementation} is not supported (implementation=2, the default)"
        return reason

    def parts(self, layer):
        return tuple((part, self) for part in ("kernel", *recurrent_parts(layer.cell)))

    def activation(self, layer):
        return None

    def roles(self, layer, part, roles):
        return roles if part == "kernel" else tuple(r for r in roles if r != "input_features")

    def op(self, layer):
        return _OPS[type(layer.cell).__name__]

    def units(self, layer, role, part=None):
        rows = int(layer.cell.kernel.shape[0]) if part == "kernel" else layer.cell.units
        if role in ("input_gradient", "input_features"):
            return rows
        if part == "kernel":
            return int(layer.cell.kernel.shape[1])
        lo, hi = recurrent_parts(layer.cell)[part]
        return hi - lo

    def patched_call(self, recorder, target):
        return _recording_call(recorder, target.layer, target.parts)

    def multiply_adds(self, layer, inputs, output):
        return _rnn_multiply_adds(layer, inputs)


class _Rows:
    """The unmasked (batch, time) rows of [B, T, ...] sequences (all of them without a mask)."""

    def __init__(self, mask):
        self.mask = mask

    def gather(self, t):
        return t if self.mask is None else tf.boolean_mask(t, self.mask)

    def scatter(self, rows):
        """[B, T, N] with `rows` at the unmasked positions and zeros at the masked ones."""
        if self.mask is None:
            return rows
        shape = tf.concat([tf.shape(self.mask, out_type=tf.int64), [rows.shape[-1]]], 0)
        return tf.scatter_nd(tf.where(self.mask), rows, shape)


def _recording_call(recorder, layer, targets):
    """The RNN layer's `call` while a recording step is traced (see the module docstring); `targets`: part ->
    its `Target`."""
    cell = layer.cell
    columns = recurrent_parts(cell)

    def call(sequences, initial_state=None, mask=None, training=False):
        initial_state = _initial_state(layer, sequences, initial_state)
        if tree.is_nested(mask):
            mask = mask[0]
        rows = _Rows(None if mask is None else tf.cast(mask, tf.bool))
        if training and 0.0 < cell.dropout < 1.0:
            sequences = sequences * kops.expand_dims(cell.get_dropout_mask(sequences[:, 0, :]), 1)
        kernel = kops.convert_to_tensor(cell.kernel)
        xw = rows.scatter(recorder._explain(targets["kernel"], rows.gather(sequences), kernel, kops.matmul, None))
        loop = dict(
            go_backwards=layer.go_backwards,
            mask=mask,
            unroll=layer.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=layer.zero_output_for_mask,
        )
        kernels = _recurrent_kernels(cell, columns)
        constant = {part: tf.stop_gradient(k) for part, k in kernels.items()}
        operands = _recurrent_operands(cell, tf.stop_gradient(xw), initial_state, constant, loop)
        products = [
            rows.scatter(recorder._explain(targets[part], rows.gather(operands[part]), k, kops.matmul, None))
            for part, k in kernels.items()
        ]
        sizes = [int(t.shape[-1]) for t in [xw, *products]]

        def step_fn(inputs, states):
            xw_t, *injected = tf.split(inputs, sizes, axis=-1)
            injected = dict(zip(kernels, injected))

            def product(operand, part):
                # The value from the live operand (its gradient to h_{t-1}), the kernel's gradient via `products`.
                m = injected[part]
                return kops.matmul(operand, constant[part]) + (m - tf.stop_gradient(m))

            return step(cell, xw_t, product, states)

        last, outputs, states = internals.rnn_loop(
            step_fn,
            kops.concatenate([xw, *products], -1),
            initial_state,
            return_all_outputs=layer.return_sequences,
            **loop,
        )
        return _finish(layer, training, last, outputs, states)

    return call


def _initial_state(layer, sequences, initial_state):
    """The loop's initial states as Keras' RNN takes them: the given ones, the stateful layer's variables, or
    zeros; a list, in the cell's compute dtype."""
    if initial_state is None:
        initial_state = layer.states if layer.stateful else layer.get_initial_state(kops.shape(sequences)[0])
    if not tree.is_nested(initial_state):
        initial_state = [initial_state]
    return [kops.cast(kops.convert_to_tensor(s), layer.cell.compute_dtype) for s in initial_state]


def _finish(layer, training, last, outputs, states):
    """What Keras' RNN does after its loop: the dropout mask reset, a stateful layer's states kept, the output
    (and states) returned in the layer's dtype."""
    if training and 0.0 < layer.cell.dropout < 1.0:
        layer.cell.reset_dropout_mask()
    if layer.stateful:
        for variable, state in zip(tree.flatten(layer.states), tree.flatten(states)):
            variable.assign(kops.cast(state, variable.dtype))
    output = kops.cast(outputs if layer.return_sequences else last, layer.compute_dtype)
    if layer.return_state:
        return output, *[kops.cast(s, layer.compute_dtype) for s in states]
    return output


def _recurrent_kernels(cell, columns):
    """{part: its columns of the recurrent kernel} (the whole kernel for a part that has all its columns)."""
    kernel = kops.convert_to_tensor(cell.recurrent_kernel)
    return {
        part: kernel if (lo, hi) == (0, kernel.shape[1]) else kernel[:, lo:hi] for part, (lo, hi) in columns.items()
    }


def _recurrent_operands(cell, xw, initial_state, kernels, loop):
    """{part: its first operand at every step [B, T, U]} (h_{t-1}; GRU reset_after=False's candidate: r_t * h_{t-1})
    in the input's time order, from a forward-only pass of the loop, without gradient (the cell's bias and the
    initial state get theirs from the second pass)."""

    def step_fn(xw_t, states):
        seen = {}

        def product(operand, part):
            seen[part] = operand
            return kops.matmul(operand, kernels[part])

        _, new_states = step(cell, xw_t, product, states)
        return kops.concatenate([seen[part] for part in kernels], -1), new_states

    _, operands, _ = internals.rnn_loop(step_fn, xw, [tf.stop_gradient(s) for s in initial_state], **loop)
    operands = tf.stop_gradient(tf.reverse(operands, [1]) if loop["go_backwards"] else operands)
    return dict(zip(kernels, tf.split(operands, len(kernels), axis=-1)))


ADAPTERS = (RecurrentCellAdapter(), RNNAdapter(), OtherRNNAdapter())
