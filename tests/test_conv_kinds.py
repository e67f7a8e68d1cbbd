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


def reference(role, x, k, d, strides, padding, dilations, thresholds=PAIR, groups=1):
    """(first operand, second operand, result, per-cell totals) of one convolution role."""
    geometry, kw = (strides, padding), dict(dilations=dilations, thresholds=thresholds, groups=groups)
    x, k, d = (tf.constant(t) for t in (x, k, d))
    if role == "forward":
        z = conv_lib.forward(x, k, *geometry, dilations).numpy()
        return x, k, z, per_cell(ops.conv_classify, z, x, k, *geometry, **kw)
    if role == "kernel_gradient":
        dk = conv_lib.backprop_filter(x, d, k.shape, *geometry, dilations).numpy()
        return x, d, dk, per_cell(ops.conv_backprop_filter_classify, dk, x, d, k.shape, *geometry, **kw)
    dx = conv_lib.backprop_input(d, k, x.shape, *geometry, dilations).numpy()
    return d, k, dx, per_cell(ops.conv_backprop_input_classify, dx, d, k, x.shape, *geometry, **kw)


def totals(role, first, second, result, shapes, strides, padding, dilations, options=OPTIONS, groups=1):
    """The aggregate of one role; `shapes` = (input shape, kernel shape)."""
    kw = dict(result=result, dilations=dilations, groups=groups, **options)
    if role == "forward":
        return ag.conv(first, second, strides, padding, **kw)
    if role == "kernel_gradient":
        return ag.conv_kernel_gradient(first, second, shapes[1], strides, padding, **kw)
    return ag.conv_input_gradient(first, second, shapes[0], strides, padding, **kw)


def check_roles(x, k, strides, padding, dilations, groups=1, options=OPTIONS):
    """Every role's aggregate against the per-cell route, d_out random."""
    rank = x.ndim - 2
    strides, padding, dilations = per_axis(strides, rank), padding.upper(), per_axis(dilations, rank)
    z = conv_lib.forward(tf.constant(x), tf.constant(k), strides, padding, dilations)
    d = normal(*z.shape, zeros=0.0)
    for role in ag.ROLES:
        first, second, result, want = reference(role, x, k, d, strides, padding, dilations, groups=groups)
        shapes = (x.shape, k.shape)
        got = totals(role, first, second, result, shapes, strides, padding, dilations, options, groups)
        assert_record_equals(got, want)


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


@pytest.mark.parametrize("groups,k_shape,near_zero", [(1, (3, 2, 2, 3), "sampled"), (2, (3, 2, 1, 4), "exact")])
@pytest.mark.parametrize("role", ag.ROLES)
def test_totals_with_unknown_batch_compiled(role, groups, k_shape, near_zero):
    """Dilated, plain and depthwise, inside a tf.function whose batch axis is None, XLA-compiled; sampled near-zero
    totals from a sample that covers the batch."""
    strides, padding, dilations = (1, 1), "SAME", (2, 3)
    x, k = normal(3, 9, 8, 2), normal(*k_shape)
    d = normal(3, 9, 8, k_shape[-1], zeros=0.0)
    options = dict(OPTIONS, jit=True, near_zero=near_zero, near_zero_sample_size=10_000)
    geometry = (strides, padding, dilations)
    first, second, result, _ = reference(role, x, k, d, *geometry, groups=groups)
    unknown = lambda t: tf.TensorSpec([None, *t.shape[1:]], tf.float32)  # noqa: E731
    signature = [unknown(first), unknown(second) if role == "kernel_gradient" else tf.TensorSpec(second.shape)]
    signature.append(tf.TensorSpec(result.shape) if role == "kernel_gradient" else unknown(result))
    shapes = ([None, *x.shape[1:]], k.shape)
    run = tf.function(
        lambda a, b, r: totals(role, a, b, r, shapes, *geometry, options, groups), input_signature=signature
    )
    for batch in (3, 1):
        first, second, result, want = reference(role, x[:batch], k, d[:batch], *geometry, groups=groups)
        assert_record_equals(run(first, second, result), want)


# ----------------------------------------------------------------------------------------------------------------
# Groups (depthwise: one input channel per group)

GROUPED = [
    ((2, 9, 4), (3, 2, 6), 1, "VALID", 1, 2),
    ((2, 9, 4), (3, 1, 8), 2, "SAME", 1, 4),  # depthwise, multiplier 2
    ((2, 7, 8, 6), (3, 3, 2, 6), 1, "SAME", 1, 3),
    ((2, 8, 7, 3), (3, 2, 1, 3), 2, "SAME", 1, 3),  # depthwise
    ((1, 9, 9, 4), (2, 3, 1, 8), 1, "SAME", (2, 1), 4),  # depthwise, dilated
    ((1, 9, 8, 2), (3, 3, 1, 2), 2, "VALID", 2, 2),  # depthwise, strided and dilated
]


def grouped_reference(x, k, strides, padding, dilations, groups):
    """The grouped convolution and its gradients per group with TensorFlow's own ops (on a random d_out)."""
    x, k = tf.constant(x), tf.constant(k)
    window = conv_lib.effective_spatial(k.shape[:-2], dilations)
    pads = [[0, 0]]
    for n, w, s in zip(x.shape[1:-1], window, strides):  # TensorFlow's SAME padding, made explicit
        total = max((-(-n // s) - 1) * s + w - n, 0) if padding == "SAME" else 0
        pads.append([total // 2, total - total // 2])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, k])
        xs, ks = tf.split(tf.pad(x, pads + [[0, 0]]), groups, -1), tf.split(k, groups, -1)
        # TensorFlow takes no strides with dilation: stride 1, then subsampled.
        full = tf.concat([tf.nn.convolution(a, b, 1, "VALID", dilations=dilations) for a, b in zip(xs, ks)], -1)
        z = full[(slice(None),) + tuple(slice(None, None, s) for s in strides)]
    d = tf.constant(normal(*z.shape, zeros=0.0))
    dk, dx = tape.gradient(z, [k, x], output_gradients=d)
    return z, d, dk, dx


@pytest.mark.parametrize("in_shape,k_shape,strides,padding,dilations,groups", GROUPED)
def test_grouped_ops_equal_tensorflow(in_shape, k_shape, strides, padding, dilations, groups):
    x, k = normal(*in_shape), normal(*k_shape)
    rank = len(in_shape) - 2
    st, dil = per_axis(strides, rank), per_axis(dilations, rank)
    z, d, dk, dx = grouped_reference(x, k, st, padding, dil, groups)
    x, k = tf.constant(x), tf.constant(k)
    np.testing.assert_allclose(conv_lib.forward(x, k, st, padding, dil), z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(conv_lib.backprop_filter(x, d, k_shape, st, padding, dil), dk, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv_lib.backprop_input(d, k, in_shape, st, padding, dil), dx, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("in_shape,k_shape,strides,padding,dilations,groups", GROUPED)
def test_grouped_totals_match_per_cell(in_shape, k_shape, strides, padding, dilations, groups):
    check_roles(normal(*in_shape), normal(*k_shape, zeros=0.1), strides, padding, dilations, groups)


@pytest.mark.parametrize("near_zero", ["sampled", "exact"])
def test_grouped_totals_compiled(near_zero):
    """XLA-compiled kernels; near-zero totals from a sample that covers every position, or exact."""
    options = dict(OPTIONS, jit=True, near_zero=near_zero, near_zero_sample_size=10_000)
    check_roles(normal(2, 7, 8, 6), normal(3, 3, 2, 6, zeros=0.1), 2, "SAME", 1, 3, options)
    check_roles(normal(2, 9, 4), normal(3, 1, 8, zeros=0.1), 1, "VALID", 2, 4, options)


# ----------------------------------------------------------------------------------------------------------------
# Trained with the callback, read back through TensorBoard


def assert_record_matches(record, want):
    """A record read back against the per-cell route: its result was computed by the layer's own op (Keras'),
    the reference's by the geometry ops, so the result threshold agrees to float rounding."""
    np.testing.assert_allclose(record.thresholds, want["thresholds"], rtol=1e-4)
    assert_record_equals(record, {**want, "thresholds": record.thresholds}, rtol=1e-3, atol=1e-6)


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
    check_layer_records(recs, model, "dilated", x, y, ((1, 1), "SAME", (2, 3)), kernel)


@pytest.mark.parametrize("spatial", [(130,), (13, 10), (5, 4, 6)])
def test_sampled_patches_in_a_graph_equal_eager(spatial):
    """The patches read at sampled positions are the same traced as run eagerly, for 1 to 3 spatial axes (with one,
    grappler once rewrote the coordinates' shape: a Conv1D over more positions than the sample could not train)."""
    t = tf.constant(normal(4, *spatial, 3))
    kernel_spatial, strides = (3,) * len(spatial), (1,) + (2,) * (len(spatial) - 1)
    out_spatial = conv_lib.output_shape([1, *spatial, 3], [*kernel_spatial, 3, 1], strides, "SAME")[1:-1]
    positions = np.random.default_rng(0).integers(0, 4 * int(np.prod(out_spatial)), 300)
    patches = lambda p: conv_lib.patches(t, p, kernel_spatial, out_spatial, strides, "SAME")  # noqa: E731
    traced = tf.function(patches)(tf.constant(positions))
    for got, want in zip(traced, patches(tf.constant(positions))):
        np.testing.assert_array_equal(got, want)


def test_conv1d_over_more_positions_than_the_sample_trains_and_reads_back(tmp_path):
    """A Conv1D over a timeseries (16 x 130 positions, more than the default near-zero sample of 1024) trains with
    the callback and records every role: the all-cells totals and near-zero cells exact, the near-zero products'
    split over the nine pairs estimated from the sample close to the exact one."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(16, 130, 2)).astype(np.float32), rng.normal(size=(16, 130, 2)).astype(np.float32)
    keras.utils.set_random_seed(6)
    layer = keras.layers.Conv1D(4, 3, padding="same", name="temporal")
    model = keras.Sequential([keras.Input((130, 2)), layer, keras.layers.Dense(2, name="head")])
    kernel = layer.kernel.numpy()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, roles=ALL_ROLES, threshold_method="exact", **UNCOMPILED)
    model.fit(x, y, batch_size=len(x), epochs=1, callbacks=[callback], verbose=0)
    recs = records(tmp_path)
    inputs, d_out = layer_operands(model, "temporal", x, y)
    for role in ALL_ROLES:
        *_, want = reference(role, inputs, kernel, d_out, (1,), "SAME", (1,), thresholds=None)
        got = record_at(recs, f"temporal/{role}", 0)
        np.testing.assert_array_equal(got.counts, want["counts"])
        np.testing.assert_allclose(got.sums, want["sums"], rtol=1e-3, atol=1e-6)
        np.testing.assert_array_equal(got.cells, want["cells"])
        np.testing.assert_array_equal(got.near_zero_cells, want["near_zero_cells"])
        split = lambda counts: np.sum(counts, 0) / np.sum(counts)  # noqa: E731
        np.testing.assert_allclose(split(got.near_zero_counts), split(want["near_zero_counts"]), atol=0.06)


def check_layer_records(recs, model, name, x, y, geometry, kernel, groups=1):
    """The step-0 records of every role of a layer against the per-cell route on the same batch."""
    inputs, d_out = layer_operands(model, name, x, y)
    for role in ALL_ROLES:
        *_, want = reference(role, inputs, kernel, d_out, *geometry, thresholds=None, groups=groups)
        assert_record_matches(record_at(recs, f"{name}/{role}", 0), want)


def test_depthwise_and_grouped_convs_train_and_read_back(tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 9, 8, 3)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
    keras.utils.set_random_seed(6)
    dw2 = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw2")
    grouped = keras.layers.Conv2D(4, 2, padding="same", groups=2, name="grouped")
    dw1 = keras.layers.DepthwiseConv1D(2, dilation_rate=2, name="dw1")
    model = keras.Sequential(
        [
            keras.Input((9, 8, 3)),
            dw2,
            grouped,
            keras.layers.Reshape((5 * 4, 4)),
            dw1,
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="head"),
        ]
    )
    kernels = {layer.name: layer.kernel.numpy() for layer in (dw2, grouped, dw1)}
    recs = fit_and_read(tmp_path, model, x, y)
    ops_of = [recs[f"{n}/forward"][0].op for n in ("dw2", "grouped", "dw1")]
    assert ops_of == ["depthwise_conv2d", "conv2d", "depthwise_conv1d"]
    assert [recs[f"dw2/{r}"][0].units for r in ALL_ROLES] == [6, 6, 3]
    same = ((1, 1), "SAME", (1, 1))
    check_layer_records(recs, model, "dw2", x, y, ((2, 2), "SAME", (1, 1)), kernels["dw2"].reshape(3, 3, 1, 6), 3)
    check_layer_records(recs, model, "grouped", x, y, same, kernels["grouped"], groups=2)
    check_layer_records(recs, model, "dw1", x, y, ((1,), "VALID", (2,)), kernels["dw1"].reshape(2, 1, 4), 4)


def separable_operands(model, name, x, y, strides, padding, dilations):
    """(input, depthwise result, d(loss)/d(depthwise result), d(loss)/d(pointwise result)) of a Sequential model's
    linear SeparableConv layer on the batch, the two parts computed by the geometry ops."""
    layer = model.get_layer(name)
    dk = layer.depthwise_kernel.numpy()
    dk = dk.reshape(dk.shape[:-2] + (1, -1))
    out = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        for each in model.layers:
            if each is not layer:
                out = each(out)
                continue
            inputs = out
            h = conv_lib.forward(inputs, tf.constant(dk), strides, padding, dilations)
            tape.watch(h)
            z = conv_lib.forward(h, layer.pointwise_kernel, (1,) * len(strides), "VALID")
            tape.watch(z)
            out = z + layer.bias
        loss = keras.losses.MeanSquaredError()(y, out)
    return inputs.numpy(), dk, h.numpy(), tape.gradient(loss, h).numpy(), tape.gradient(loss, z).numpy()


@pytest.mark.parametrize("rank", [1, 2])
def test_separable_conv_records_its_two_parts(tmp_path, rank):
    rng = np.random.default_rng(7)
    spatial, strides, dilations = ((9, 8), (2, 2), (1, 1)) if rank == 2 else ((11,), (1,), (2,))
    x = rng.normal(size=(5, *spatial, 3)).astype(np.float32)
    y = rng.normal(size=(5, 2)).astype(np.float32)
    keras.utils.set_random_seed(8)
    sep_type = keras.layers.SeparableConv2D if rank == 2 else keras.layers.SeparableConv1D
    sep = sep_type(4, 3, strides=strides, padding="same", dilation_rate=dilations, depth_multiplier=2, name="sep")
    model = keras.Sequential(
        [keras.Input((*spatial, 3)), sep, keras.layers.Flatten(), keras.layers.Dense(2, name="head")]
    )
    recs = fit_and_read(tmp_path, model, x, y)
    assert {tag.rsplit("/", 1)[0] for tag in recs} == {"sep/depthwise", "sep/pointwise", "head"}
    md = {part: recs[f"sep/{part}/forward"][0] for part in ("depthwise", "pointwise")}
    assert (md["depthwise"].op, md["depthwise"].units) == (f"depthwise_conv{rank}d", 6)
    assert (md["pointwise"].op, md["pointwise"].units, md["pointwise"].layer) == (f"conv{rank}d", 4, "sep/pointwise")
    targets = {t.name: t for t in tk.LayerRecorder(model, tmp_path / "walk", **UNCOMPILED).targets}
    assert targets["sep/pointwise"].producer == ("sep/depthwise", "layer")  # (its input-features records say so)
    inputs, dk, h, d_h, d_z = separable_operands(model, "sep", x, y, strides, "SAME", dilations)
    pk = sep.pointwise_kernel.numpy()
    ones = (1,) * rank
    for role in ALL_ROLES:
        *_, want = reference(role, inputs, dk, d_h, strides, "SAME", dilations, thresholds=None, groups=3)
        assert_record_matches(record_at(recs, f"sep/depthwise/{role}", 0), want)
        *_, want = reference(role, h, pk, d_z, ones, "VALID", ones, thresholds=None)
        assert_record_matches(record_at(recs, f"sep/pointwise/{role}", 0), want)


# ----------------------------------------------------------------------------------------------------------------
# Transposed convolutions: C's input gradient (forward), C's convolution (input gradient), and the kernel gradient


def swap_pairs(t):
    """[..., 9] pairs (a, b) -> (b, a)."""
    t = np.asarray(t)
    return t.reshape(t.shape[:-1] + (3, 3)).swapaxes(-1, -2).reshape(t.shape)


def transpose_kernel_gradient_per_cell(x, dz, kernel_shape, strides, padding, dilations, thresholds=PAIR):
    """(result, per-filter totals) of a transposed convolution's kernel gradient from C's per-cell classifier: the
    operands swapped back (x first) and units on the kernel's second-to-last axis."""
    counts, sums, thr = ops.conv_backprop_filter_classify(
        dz,
        x,
        kernel_shape,
        strides,
        padding,
        thresholds=None if thresholds is None else thresholds[::-1],
        return_thresholds=True,
        dilations=dilations,
    )
    result = conv_lib.backprop_filter(tf.constant(dz), tf.constant(x), kernel_shape, strides, padding, dilations)
    return result.numpy(), oracle(swap_pairs(counts), swap_pairs(sums), result, -2, thr[::-1])


TRANSPOSED = [  # z's shape (C's input: output_padding included), kernel (..., filters, in_channels), geometry
    ((2, 9, 3), (3, 3, 2), (2,), "VALID", (1,)),
    ((2, 10, 3), (3, 3, 4), (2,), "SAME", (1,)),
    ((2, 9, 8, 2), (3, 2, 2, 3), (2, 2), "SAME", (1, 1)),
    ((1, 8, 9, 2), (2, 3, 2, 2), (1, 1), "VALID", (2, 2)),
    ((1, 5, 6, 4, 2), (2, 2, 2, 2, 3), (2, 1, 2), "SAME", (1, 1, 1)),
]


@pytest.mark.parametrize("z_shape,k_shape,strides,padding,dilations", TRANSPOSED)
def test_transpose_kernel_gradient_matches_per_cell(z_shape, k_shape, strides, padding, dilations):
    x_shape = conv_lib.output_shape(list(z_shape), list(k_shape), strides, padding, dilations)
    x, dz = normal(*x_shape), normal(*z_shape, zeros=0.0)
    result, want = transpose_kernel_gradient_per_cell(x, dz, list(k_shape), strides, padding, dilations)
    got = ag.conv_transpose_kernel_gradient(
        x, dz, k_shape, strides, padding, dilations=dilations, result=result, **OPTIONS
    )
    assert_record_equals(got, want)


@pytest.mark.parametrize("near_zero", ["exact", "sampled"])
def test_transpose_kernel_gradient_with_unknown_batch(near_zero):
    z_shape, k_shape, strides, padding, dilations = TRANSPOSED[2]
    x_shape = conv_lib.output_shape(list(z_shape), list(k_shape), strides, padding, dilations)
    x, dz = normal(3, *x_shape[1:]), normal(3, *z_shape[1:], zeros=0.0)
    options = dict(OPTIONS, near_zero=near_zero)
    run = tf.function(
        lambda a, b, r: ag.conv_transpose_kernel_gradient(
            a, b, k_shape, strides, padding, dilations=dilations, result=r, **options
        ),
        input_signature=[
            tf.TensorSpec([None, *x.shape[1:]]),
            tf.TensorSpec([None, *dz.shape[1:]]),
            tf.TensorSpec(k_shape),
        ],
    )
    for batch in (3, 1):
        result, want = transpose_kernel_gradient_per_cell(
            x[:batch], dz[:batch], list(k_shape), strides, padding, dilations
        )
        assert_record_equals(run(x[:batch], dz[:batch], result), want)


def check_transposed_records(recs, model, name, x, y, strides, padding, dilations):
    """The step-0 records of a transposed convolution against C's per-cell classifiers on the same batch."""
    inputs, dz = layer_operands(model, name, x, y)
    kernel = model.get_layer(name).kernel.numpy()
    geometry = (strides, padding)
    z = conv_lib.backprop_input(tf.constant(inputs), tf.constant(kernel), dz.shape, *geometry, dilations).numpy()
    dx = conv_lib.forward(tf.constant(dz), tf.constant(kernel), *geometry, dilations).numpy()
    kw = dict(dilations=dilations, thresholds=None)
    want = {
        "forward": per_cell(ops.conv_backprop_input_classify, z, inputs, kernel, dz.shape, *geometry, **kw),
        "kernel_gradient": transpose_kernel_gradient_per_cell(
            inputs, dz, list(kernel.shape), *geometry, dilations, None
        )[1],
        "input_gradient": per_cell(ops.conv_classify, dx, dz, kernel, *geometry, **kw),
    }
    for role in ALL_ROLES:
        assert_record_matches(record_at(recs, f"{name}/{role}", 0), want[role])


def test_transposed_convs_train_and_read_back(tmp_path):
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(5, 3, 3, 2)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
    keras.utils.set_random_seed(10)
    up2 = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1, name="up2")
    up1 = keras.layers.Conv1DTranspose(2, 3, strides=2, name="up1")  # (dilated ones: Keras has no CPU kernel)
    model = keras.Sequential(
        [
            keras.Input((3, 3, 2)),
            up2,
            keras.layers.Reshape((36, 3)),
            up1,
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="head"),
        ]
    )
    recs = fit_and_read(tmp_path, model, x, y)
    assert [recs[f"{n}/forward"][0].op for n in ("up2", "up1")] == ["conv2d_transpose", "conv1d_transpose"]
    assert [recs[f"up2/{r}"][0].units for r in ALL_ROLES] == [3, 3, 2]
    check_transposed_records(recs, model, "up2", x, y, (2, 2), "SAME", (1, 1))
    check_transposed_records(recs, model, "up1", x, y, (2,), "VALID", (1,))
