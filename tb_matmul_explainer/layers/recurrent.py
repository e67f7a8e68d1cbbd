"""Recurrent cells (`SimpleRNNCell`, `LSTMCell`, `GRUCell`, inside `SimpleRNN`, `LSTM`, `GRU`): not recorded yet.

Each time step runs the input kernel on x_t and the recurrent kernel on h_{t-1} inside the RNN's loop; neither is
recorded yet. `RecurrentCellAdapter` names the cell with that reason; `RNNAdapter` counts the multiply-adds per
sample on the RNN layer that runs the cell: both kernels once per time step (the cell's own calls are not counted:
TensorFlow's loop calls it once more than there are steps, to learn the output shapes).
"""

import math

from keras import layers as keras_layers

from tb_matmul_explainer.layers.base import Adapter

_CELLS = tuple(
    getattr(keras_layers, name) for name in ("SimpleRNNCell", "LSTMCell", "GRUCell") if hasattr(keras_layers, name)
)


class RecurrentCellAdapter(Adapter):
    kind = "recurrent"
    layer_types = _CELLS
    records = False

    def refusal(self, layer):
        return (
            f"recurrent cells ({type(layer).__name__}) are not recorded yet: their input kernel and recurrent "
            "kernel run once per time step inside the RNN loop"
        )

    def multiply_adds(self, layer, inputs, output):
        return 0  # (counted on the RNN layer, `RNNAdapter`)


class RNNAdapter(Adapter):
    """An RNN layer (SimpleRNN, LSTM, GRU, RNN(cell)): nothing of its own to record; its cell's multiply-adds."""

    kind = "rnn"
    layer_types = (keras_layers.RNN,)
    records = False

    def refusal(self, layer):
        return None

    def multiply_adds(self, layer, inputs, output):
        steps = int(inputs[0][1])
        kernels = [getattr(layer.cell, name, None) for name in ("kernel", "recurrent_kernel")]
        return steps * sum(math.prod(int(d) for d in k.shape) for k in kernels if k is not None)


ADAPTERS = (RecurrentCellAdapter(), RNNAdapter())
