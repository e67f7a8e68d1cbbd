"""One time step of Keras' `SimpleRNNCell`, `LSTMCell` and `GRUCell` (implementation 2) with its matmuls given.

`step(cell, xw, recurrent, states)` computes what the cell's `call` computes from its input projection
`xw = x_t @ kernel` and its recurrent products, `recurrent(operand, part)` = operand @ that part of the recurrent
kernel (`recurrent_parts`: the whole `recurrent_kernel` with h_{t-1}, except GRU with reset_after=False: h_{t-1}
@ its z and r columns, then (r_t * h_{t-1}) @ its candidate columns), in Keras' order of operations (so that a
recording step computes the values the layer computes), and returns `(output, new_states)`. Dropout on x_t is
applied by the caller (before the projection); recurrent dropout is not supported (the adapter refuses it).

Gate order of the kernels' columns (Keras'): LSTM `i, f, c, o` (input, forget, cell candidate, output), GRU
`z, r, h` (update, reset, candidate), SimpleRNN one block; `metadata.GATES` names them per op.
"""

from keras import layers as keras_layers
from keras import ops as kops


def _simple_rnn(cell, xw, recurrent, states):
    h = xw if cell.bias is None else kops.add(xw, cell.bias)
    output = h + recurrent(states[0], "recurrent_kernel")
    if cell.activation is not None:
        output = cell.activation(output)
    return output, [output]


def _lstm(cell, xw, recurrent, states):
    c_tm1 = states[1]
    z = kops.add(xw, recurrent(states[0], "recurrent_kernel"))
    if cell.use_bias:
        z = kops.add(z, cell.bias)
    z0, z1, z2, z3 = kops.split(z, 4, axis=1)
    i = cell.recurrent_activation(z0)
    f = cell.recurrent_activation(z1)
    c = f * c_tm1 + i * cell.activation(z2)
    o = cell.recurrent_activation(z3)
    h = o * cell.activation(c)
    return h, [h, c]


def _gru(cell, xw, recurrent, states):
    h_tm1 = states[0]
    units = cell.units
    if cell.use_bias:
        if cell.reset_after:
            input_bias, recurrent_bias = (kops.squeeze(e, axis=0) for e in kops.split(cell.bias, 2, axis=0))
        else:
            input_bias, recurrent_bias = cell.bias, None
    matrix_x = kops.add(xw, input_bias) if cell.use_bias else xw
    x_z, x_r, x_h = kops.split(matrix_x, 3, axis=-1)
    matrix_inner = recurrent(h_tm1, "recurrent_kernel")
    if cell.reset_after and cell.use_bias:
        matrix_inner = matrix_inner + recurrent_bias
    recurrent_z = matrix_inner[:, :units]
    recurrent_r = matrix_inner[:, units : units * 2]
    z = cell.recurrent_activation(x_z + recurrent_z)
    r = cell.recurrent_activation(x_r + recurrent_r)
    if cell.reset_after:
        recurrent_h = r * matrix_inner[:, units * 2 :]
    else:
        recurrent_h = recurrent(r * h_tm1, "recurrent_kernel_candidate")
    hh = cell.activation(x_h + recurrent_h)
    h = z * h_tm1 + (1 - z) * hh
    return h, [h]


_STEPS = {
    keras_layers.SimpleRNNCell: _simple_rnn,
    keras_layers.LSTMCell: _lstm,
    keras_layers.GRUCell: _gru,
}
CELLS = tuple(_STEPS)


def recurrent_parts(cell):
    """{part: (first column, last column + 1)} of the recurrent kernel's matmuls in one step."""
    if isinstance(cell, keras_layers.GRUCell) and not cell.reset_after:
        return {"recurrent_kernel": (0, 2 * cell.units), "recurrent_kernel_candidate": (2 * cell.units, 3 * cell.units)}
    return {"recurrent_kernel": (0, int(cell.recurrent_kernel.shape[1]))}


def step(cell, xw, recurrent, states):
    """(output, new_states) of one step of `cell` (one of `CELLS`): xw [B, G*U], states [[B, U], ...];
    `recurrent(operand [B, U], part)` -> operand @ the part's columns of the recurrent kernel."""
    return _STEPS[type(cell)](cell, xw, recurrent, states)
