"""One time step of Keras' `SimpleRNNCell`, `LSTMCell` and `GRUCell` (implementation 2) with both matmuls given.

`step(cell, xw, hu, states)` computes what the cell's `call` computes from its input projection `xw = x_t @ kernel`
and its recurrent product `hu = h_{t-1} @ recurrent_kernel`, in Keras' order of operations (so that a recording
step computes the values the layer computes), and returns `(output, new_states)`. Dropout on x_t is applied by the
caller (before the projection); recurrent dropout is not supported (the adapter refuses it).

Gate order of the kernels' columns (Keras'): LSTM `i, f, c, o` (input, forget, cell candidate, output), GRU
`z, r, h` (update, reset, candidate), SimpleRNN one block; `metadata.GATES` names them per op.
"""

from keras import layers as keras_layers
from keras import ops as kops


def _simple_rnn(cell, xw, hu, states):
    h = xw if cell.bias is None else kops.add(xw, cell.bias)
    output = h + hu
    if cell.activation is not None:
        output = cell.activation(output)
    return output, [output]


def _lstm(cell, xw, hu, states):
    c_tm1 = states[1]
    z = kops.add(xw, hu)
    if cell.use_bias:
        z = kops.add(z, cell.bias)
    z0, z1, z2, z3 = kops.split(z, 4, axis=1)
    i = cell.recurrent_activation(z0)
    f = cell.recurrent_activation(z1)
    c = f * c_tm1 + i * cell.activation(z2)
    o = cell.recurrent_activation(z3)
    h = o * cell.activation(c)
    return h, [h, c]


def _gru(cell, xw, hu, states):
    """reset_after=True (the adapter refuses reset_after=False)."""
    h_tm1 = states[0]
    units = cell.units
    matrix_x, matrix_inner = xw, hu
    if cell.use_bias:
        input_bias, recurrent_bias = (kops.squeeze(e, axis=0) for e in kops.split(cell.bias, 2, axis=0))
        matrix_x = kops.add(matrix_x, input_bias)
        matrix_inner = matrix_inner + recurrent_bias
    x_z, x_r, x_h = kops.split(matrix_x, 3, axis=-1)
    recurrent_z = matrix_inner[:, :units]
    recurrent_r = matrix_inner[:, units : units * 2]
    recurrent_h = matrix_inner[:, units * 2 :]
    z = cell.recurrent_activation(x_z + recurrent_z)
    r = cell.recurrent_activation(x_r + recurrent_r)
    hh = cell.activation(x_h + r * recurrent_h)
    h = z * h_tm1 + (1 - z) * hh
    return h, [h]


_STEPS = {
    keras_layers.SimpleRNNCell: _simple_rnn,
    keras_layers.LSTMCell: _lstm,
    keras_layers.GRUCell: _gru,
}
CELLS = tuple(_STEPS)


def step(cell, xw, hu, states):
    """(output, new_states) of one step of `cell` (one of `CELLS`): xw [B, G*U], hu [B, G*U], states [[B, U], ...]."""
    return _STEPS[type(cell)](cell, xw, hu, states)
