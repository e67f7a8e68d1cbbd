"""Convolution kinds beyond the plain one: dilated convolutions. Per-unit totals (`aggregates`) against the
per-cell route (`ops` classifiers with explicit operand thresholds, the result's exact percentile), counts exact
and sums to float tolerance, for the three roles, and the geometry ops against TensorFlow's own."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import aggregates as ag
from tb_matmul_explainer import conv as conv_lib
from tb_matmul_explainer import keras as tk
from tb_matmul_explainer import ops
from tests.keras_helpers import ALL_ROLES, EXACT, UNCOMPILED, assert_record_equals, oracle, record_at, records

RNG = np.random.default_rng(16)
PAIR = (0.3, 0.4)
OPTIONS = dict(thresholds=PAIR + (None,), threshold_method="exact", near_zero="exact", jit=False)


def normal(*shape, zeros=0.3):
    x = RNG.standard_normal(shape)
    x[RNG.random(shape) < zeros] = 0.0
    return x.astype(np.float32)


def per_cell(classify, result, *args, thresholds=PAIR, **kwargs):
    """Per-unit totals from a per-cell classifier (units on the last axis); `thresholds` None: percentiles."""
    counts, sums, thresholds = classify(*args, thresholds=thresholds, return_thresholds=True, **kwargs)
    return oracle(counts, sums, result, -1, thresholds)


def per_axis(value, rank):
    return (value,) * rank if isinstance(value, int) else tuple(value)


def reference(role, x, k, d, strides, padding, dilations, thresholds=PAIR):
    """(first operand, second operand, result, per-cell totals) of one convolution role."""
    geometry, kw = (strides, padding), dict(dilations=dilations, thresholds=thresholds)
    x, k, d = (tf.constant(t) for t in (x, k, d))
    if role == "forward":
        z = conv_lib.forward(x, k, *geometry, dilations).numpy()
        return x, k, z, per_cell(ops.conv_classify, z, x, k, *geometry, **kw)
    if role == "kernel_gradient":
        dk = conv_lib.backprop_filter(x, d, k.shape, *geometry, dilations).numpy()
        return x, d, dk, per_cell(ops.conv_backprop_filter_classify, dk, x, d, k.shape, *geometry, **kw)
    dx = conv_lib.backprop_input(d, k, x.shape, *geometry, dilations).numpy()
    return d, k, dx, per_cell(ops.conv_backprop_input_classify, dx, d, k, x.shape, *geometry, **kw)


def totals(role, first, second, result, shapes, strides, padding, dilations, options=OPTIONS):
    """The aggregate of one role; `shapes` = (input shape, kernel shape)."""
    kw = dict(result=result, dilations=dilations, **options)
    if role == "forward":
        return ag.conv(first, second, strides, padding, **kw)
    if role == "kernel_gradient":
        return ag.conv_kernel_gradient(first, second, shapes[1], strides, padding, **kw)
    return ag.conv_input_gradient(first, second, shapes[0], strides, padding, **kw)


def check_roles(x, k, strides, padding, dilations):
    """Every role's aggregate against the per-cell route, d_out random."""
    rank = x.ndim - 2
    strides, padding, dilations = per_axis(strides, rank), padding.upper(), per_axis(dilations, rank)
    z = conv_lib.forward(tf.constant(x), tf.constant(k), strides, padding, dilations)
    d = normal(*z.shape, zeros=0.0)
    for role in ag.ROLES:
        first, second, result, want = reference(role, x, k, d, strides, padding, dilations)
        assert_record_equals(totals(role, first, second, result, (x.shape, k.shape), strides, padding, dilations), want)


# ----------------------------------------------------------------------------------------------------------------
# Dilation

DILATED = [
    ((2, 9, 3), (3, 3, 4), 1, "VALID", 2),
    ((2, 9, 3), (3, 3, 4), 2, "SAME", 3),
    ((2, 9, 8, 2), (3, 2, 2, 3), 1, "SAME", (2, 3)),
    ((1, 7, 9, 2), (2, 3, 2, 2), (2, 1), "VALID", (3, 2)),
    ((1, 5, 6, 5, 2), (2, 2, 2, 2, 3), 1, "SAME", (2, 1, 2)),
    ((1, 3, 3, 1), (3, 3, 1, 2), 1, "SAME", 2),  # dilated window larger than the input
]


@pytest.mark.parametrize("in_shape,k_shape,strides,padding,dilations", DILATED)
def test_dilated_ops_equal_tensorflow(in_shape, k_shape, strides, padding, dilations):
    x, k = tf.constant(normal(*in_shape)), tf.constant(normal(*k_shape))
    st, dil = per_axis(strides, len(in_shape) - 2), per_axis(dilations, len(in_shape) - 2)
    window = conv_lib.effective_spatial(k_shape[:-2], dil)
    pads = [[0, 0]]
    for n, w, s in zip(in_shape[1:-1], window, st):  # TensorFlow's SAME padding, made explicit
        total = max((-(-n // s) - 1) * s + w - n, 0) if padding == "SAME" else 0
        pads.append([total // 2, total - total // 2])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, k])
        # TensorFlow takes no strides with dilation: the padded input at stride 1, then subsampled.
        full = tf.nn.convolution(tf.pad(x, pads + [[0, 0]]), k, 1, "VALID", dilations=dil)
        z = full[(slice(None),) + tuple(slice(None, None, s) for s in st)]
    d = tf.constant(normal(*z.shape, zeros=0.0))
    np.testing.assert_allclose(conv_lib.forward(x, k, st, padding.upper(), dil), z, rtol=1e-5, atol=1e-5)
    dk, dx = tape.gradient(z, [k, x], output_gradients=d)
    np.testing.assert_allclose(conv_lib.backprop_filter(x, d, k_shape, st, padding, dil), dk, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv_lib.backprop_input(d, k, in_shape, st, padding, dil), dx, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_shape,k_shape,strides,padding,dilations", DILATED)
def test_dilated_totals_match_per_cell(in_shape, k_shape, strides, padding, dilations):
    check_roles(normal(*in_shape), normal(*k_shape, zeros=0.1), strides, padding, dilations)


@pytest.mark.parametrize("role", ag.ROLES)
def test_dilated_totals_with_unknown_batch_compiled(role):
    """Inside a tf.function whose batch axis is None, XLA-compiled, near-zero totals sampled over the batch."""
    strides, padding, dilations = (1, 1), "SAME", (2, 3)
    x, k = normal(3, 9, 8, 2), normal(3, 2, 2, 3)
    d = normal(3, 9, 8, 3, zeros=0.0)
    options = dict(OPTIONS, jit=True, near_zero="sampled", near_zero_sample_size=10_000)
    first, second, result, _ = reference(role, x, k, d, strides, padding, dilations)
    unknown = lambda t: tf.TensorSpec([None, *t.shape[1:]], tf.float32)  # noqa: E731
    signature = [unknown(first), unknown(second) if role == "kernel_gradient" else tf.TensorSpec(second.shape)]
    signature.append(tf.TensorSpec(result.shape) if role == "kernel_gradient" else unknown(result))
    shapes = ([None, *x.shape[1:]], k.shape)
    run = tf.function(
        lambda a, b, r: totals(role, a, b, r, shapes, strides, padding, dilations, options), input_signature=signature
    )
    for batch in (3, 1):
        first, second, result, want = reference(role, x[:batch], k, d[:batch], strides, padding, dilations)
        assert_record_equals(run(first, second, result), want)


# ----------------------------------------------------------------------------------------------------------------
# Trained with the callback, read back through TensorBoard


def fit_and_read(tmp_path, model, x, y):
    """One recorded training step of the whole batch (all roles, exact); {tag: ...} read back by TensorBoard."""
    model.compile(keras.optimizers.SGD(0.0), "mse")
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, roles=ALL_ROLES, **EXACT, **UNCOMPILED)
    model.fit(x, y, batch_size=len(x), epochs=1, callbacks=[callback], verbose=0)
    return records(tmp_path)


def layer_operands(model, name, x, y):
    """(input, d(loss)/d(output)) of a Sequential model's layer on the batch (its own output: linear activation)."""
    out, seen = tf.constant(x), {}
    with tf.GradientTape() as tape:
        for layer in model.layers:
            if layer.name == name:
                seen["input"] = out
                out = layer(out)
                tape.watch(out)
                seen["output"] = out
            else:
                out = layer(out)
        loss = keras.losses.MeanSquaredError()(y, out)
    return seen["input"].numpy(), tape.gradient(loss, seen["output"]).numpy()


def test_dilated_conv_trains_and_reads_back(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 9, 8, 2)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
    keras.utils.set_random_seed(4)
    layer = keras.layers.Conv2D(3, (3, 2), dilation_rate=(2, 3), padding="same", name="dilated")
    model = keras.Sequential(
        [keras.Input((9, 8, 2)), layer, keras.layers.Flatten(), keras.layers.Dense(2, name="head")]
    )
    kernel = layer.kernel.numpy()
    recs = fit_and_read(tmp_path, model, x, y)
    assert recs["dilated/forward"][0].op == "conv2d"
    inputs, d_out = layer_operands(model, "dilated", x, y)
    for role in ALL_ROLES:
        *_, want = reference(role, inputs, kernel, d_out, (1, 1), "SAME", (2, 3), thresholds=None)
        assert_record_equals(record_at(recs, f"dilated/{role}", 0), want, rtol=1e-3, atol=1e-6)
