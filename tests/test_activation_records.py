"""The records around a layer's matmul (contract version 2): the activation step, the activation gradient, the input
features with their producer, and the per-unit magnitudes. Each is checked against the per-cell classifiers
(`ops`) or plain TensorFlow on the same batch and weights, read back through TensorBoard's multiplexer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import explain, graph, metadata, ops
from tb_matmul_explainer import keras as tk
from tests.keras_helpers import EXACT, assert_record_equals, mlp, mlp_data, oracle, record_at, records

ROLES = ("forward", "kernel_gradient", "activation", "activation_gradient", "input_features")


def _classes(t, thr):
    """[..., 3] float masks P, Z, N of `t` by the per-cell classifier."""
    pos, zero, neg, _ = ops.classification_mask(tf.constant(t, tf.float32), threshold=float(thr))
    return np.stack([m.numpy() for m in (pos, zero, neg)], -1).astype(np.float64)


def _threshold(t):
    return float(ops.classification_mask(tf.constant(t, tf.float32))[3])


def _trained_mlp(tmp_path):
    x, y = mlp_data()
    model = mlp()
    model.build((None, 8))
    rng = np.random.default_rng(5)
    model.get_layer("hidden").bias.assign(rng.normal(size=6).astype(np.float32))  # bias of both signs
    w0 = [w.numpy() for w in model.weights]
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[tk.ExplainerCallback(tmp_path, update_freq=2, roles=ROLES, **EXACT)],
    )
    return x[:16], y[:16], w0, records(tmp_path)


def test_every_role_is_written_where_it_applies(tmp_path):
    _, _, _, recs = _trained_mlp(tmp_path)
    # "out" has no activation of its own: no activation roles.
    assert set(recs) == {f"hidden/{r}" for r in ROLES} | {"out/forward", "out/kernel_gradient", "out/input_features"}
    assert recs["hidden/activation"][0].activation == "relu"
    # The Sequential model's input layer: "input_layer", or "input_layer_N" after other models in this process.
    assert recs["hidden/input_features"][0].producer.startswith("input_layer")
    assert recs["hidden/input_features"][0].producer_kind == "input"
    assert (recs["out/input_features"][0].producer, recs["out/input_features"][0].producer_kind) == (
        "hidden",
        "activation",
    )
    assert recs["hidden/forward"][0].version == metadata.CONTRACT_VERSION == 3


def test_activation_and_activation_gradient_records_match_the_classifiers(tmp_path):
    x, y, (w1, b1, w2, b2), recs = _trained_mlp(tmp_path)
    m = x @ w1
    with tf.GradientTape() as tape:
        z = tf.constant(m) + b1
        tape.watch(z)
        a = tf.nn.relu(z)
        tape.watch(a)
        loss = keras.losses.MeanSquaredError()(y, a @ w2 + b2)
    d_a = tape.gradient(loss, a).numpy()
    z, a = z.numpy(), a.numpy()

    # Activation: pairs (class of m, class of b), "near zero" = ReLU inactive (z <= 0).
    b = np.broadcast_to(b1, z.shape)
    pairs = (_classes(m, _threshold(m))[..., :, None] * _classes(b, _threshold(b1))[..., None, :]).reshape(16, 6, 9)
    off = (z <= 0)[..., None]
    record = record_at(recs, "hidden/activation", 0)
    np.testing.assert_array_equal(record.counts, pairs.sum(0))
    np.testing.assert_allclose(record.sums, (pairs * z[..., None]).sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(record.near_zero_counts, (pairs * off).sum(0))
    np.testing.assert_allclose(record.near_zero_sums, (pairs * off * z[..., None]).sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(record.near_zero_cells, off[..., 0].sum(0))
    np.testing.assert_allclose(record.result_magnitude, np.abs(z).sum(0), rtol=1e-5)
    np.testing.assert_array_equal(record.reference, _classes(a, _threshold(a))[..., 1].sum(0))
    np.testing.assert_allclose(record.sums.sum(1), z.sum(0), rtol=1e-5, atol=1e-5)  # the split is exact

    # Activation gradient: dJ/dz = dJ/da * relu'(z), as multiply_classify, with relu'(z) classed Z exactly where
    # ReLU is off (its threshold: the next float32 above 1% of relu's largest slope, 1).
    slope = (z > 0).astype(np.float32)
    slope_threshold = float(np.nextafter(np.float32(0.01), np.float32(1)))
    counts, sums, thr = ops.multiply_classify(d_a, slope, thresholds=(None, slope_threshold), return_thresholds=True)
    np.testing.assert_array_equal(counts.numpy()[..., 1::3].sum(-1), (z <= 0).astype(np.float32))  # f' Z = off
    assert_record_equals(record_at(recs, "hidden/activation_gradient", 0), oracle(counts, sums, d_a * slope, -1, thr))


def test_input_features_and_magnitudes_match_plain_tensorflow(tmp_path):
    x, y, (w1, b1, w2, b2), recs = _trained_mlp(tmp_path)
    h = np.maximum(x @ w1 + b1, 0)
    record = record_at(recs, "out/input_features", 0)
    np.testing.assert_array_equal(record.cells, np.full(6, 16.0))
    np.testing.assert_array_equal(record.near_zero_cells, _classes(h, _threshold(h))[..., 1].sum(0))
    np.testing.assert_array_equal(record.reference, (h == 0).sum(0))
    np.testing.assert_allclose(record.result_magnitude, np.abs(h).sum(0), rtol=1e-5)
    np.testing.assert_array_equal(record.counts, np.zeros((6, 9)))
    np.testing.assert_allclose(record_at(recs, "out/forward", 0).result_magnitude, np.abs(h @ w2).sum(0), rtol=1e-5)
    kernel_gradient = record_at(recs, "hidden/kernel_gradient", 0)
    np.testing.assert_allclose(kernel_gradient.reference, np.abs(w1).sum(0), rtol=1e-6)
    assert np.all(kernel_gradient.result_magnitude > 0) and kernel_gradient.padding_only == 0


def test_same_convolution_on_a_one_pixel_map_names_its_padding_only_taps(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 1, 1, 3)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((1, 1, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="logits"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    model.fit(
        x,
        rng.normal(size=(8, 2)).astype(np.float32),
        batch_size=8,
        verbose=0,
        callbacks=[tk.ExplainerCallback(tmp_path, update_freq=1, **EXACT)],
    )
    record = record_at(records(tmp_path), "conv/kernel_gradient", 0)
    assert record.padding_only == 8 * 3 * 4  # 8 of 9 taps meet only padding, for 3 inputs x 4 filters
    assert record.near_zero_cells.sum() >= record.padding_only


def test_producers_are_found_through_the_keras_graph():
    inputs = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("relu", name="c1_relu")(h)
    p = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(4, 1, name="c2")(p)
    s = keras.layers.Add(name="add")([h, p])
    out = keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flat")(s))
    model = keras.Model(inputs, out)
    assert graph.producer_of(model.get_layer("c1")) == ("image", "input")
    assert graph.producer_of(model.get_layer("c2")) == ("c1_relu", "activation")  # through the pooling
    assert graph.producer_of(model.get_layer("head")) == ("add", "join")  # through Flatten, stops at Add
    assert graph.producer_of(model.get_layer("c1_relu")) == ("bn", "layer")
    assert graph.kind_of(keras.layers.Activation("linear")) == "layer"
    seq = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="tanh", name="t"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(2, name="o"),
        ]
    )
    assert graph.producer_of(seq.get_layer("o")) == ("t", "activation")
    assert graph.zeroed_by(seq.get_layer("o")) == (seq.layers[1].name,)  # the Dropout's zeros are not t's
    assert graph.zeroed_by(model.get_layer("c2")) == () and graph.zeroed_by(model.get_layer("c1")) == ()


def test_zeros_made_by_dropout_are_not_blamed_on_the_producer(tmp_path):
    """Dropout(0.5) between "hidden" (tanh: no exact zeros) and "out" zeroes about half of out's inputs while
    training: its input-features record and diagnosis name the Dropout beside the producer."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(64, 3)).astype(np.float32)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, "tanh", name="hidden"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.Dense(3, name="out"),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[tk.ExplainerCallback(tmp_path, update_freq=1)])
    info, series = records(tmp_path)["out/input_features"]
    assert (info.producer, info.zeroed_by) == ("hidden", ("drop",))
    zeros = series[0][1].reference.sum() / series[0][1].cells.sum()  # exactly-zero input values
    assert 0.35 < zeros < 0.65
    text = explain.diagnose(series[0][1], layer="out", role="input_features", info=info).text
    assert "(from hidden through drop, which sets values to exactly zero)" in text, text
    assert records(tmp_path)["hidden/input_features"][0].zeroed_by == ()


class _Holder(keras.layers.Layer):
    """A subclassed layer that calls a Sequential block from Python code (the Keras MLP-Mixer example's way)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.Sequential([keras.layers.Dense(4, "relu", name="h_dense")], name="inner")

    def call(self, x):
        return self.inner(x)


def test_producers_are_found_through_nested_models():
    """A backbone model and a Sequential block used as layers: the walk leaves a nested model's input for what
    feeds the model, and enters a nested model at its output layer (named by its Keras path); a block called from
    a subclassed layer's Python code has no producer in any graph (not its internal InputLayer)."""
    inner_in = keras.Input((8,), name="bb_in")
    backbone = keras.Model(inner_in, keras.layers.Dense(4, "relu", name="bb_dense")(inner_in), name="backbone")
    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="s_dense")], name="block")
    inputs = keras.Input((8,), name="data")
    h = keras.layers.Dense(8, "tanh", name="pre")(inputs)
    h = block(backbone(h))
    out = keras.layers.Dense(2, name="head")(_Holder(name="holder")(h))
    model = keras.Model(inputs, out)
    targets, _, _ = tk.model.resolve(model, None, ("forward",), 0.95, (None, None, None))
    producers = {t.name: t.producer for t in targets}
    assert producers == {
        "pre": ("data", "input"),
        "backbone/bb_dense": ("pre", "activation"),  # (not "bb_in", the backbone's own input)
        "block/s_dense": ("backbone/bb_dense", "activation"),
        "holder/inner/h_dense": (None, None),
        "head": ("holder", "layer"),
    }


def test_a_wrapped_layer_reads_the_wrappers_input():
    """Bidirectional and TimeDistributed call their inner layer in no graph of its own: its producer (and the
    zero-making layers before it) are the wrapper's."""
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(20, 8, name="emb")(tokens)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    h = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi")(h)
    model = keras.Model(tokens, keras.layers.TimeDistributed(keras.layers.Dense(3, name="proj"), name="td")(h))
    targets, _, _ = tk.model.resolve(model, None, ("forward",), 0.95, (None, None, None))
    assert {t.name: (t.producer, t.zeroed_by) for t in targets} == {
        "bi/forward_lstm/kernel": (("emb", "layer"), ("drop",)),
        "bi/forward_lstm/recurrent_kernel": (("bi/forward_lstm/kernel", "layer"), ()),
        "bi/backward_lstm/kernel": (("emb", "layer"), ("drop",)),
        "bi/backward_lstm/recurrent_kernel": (("bi/backward_lstm/kernel", "layer"), ()),
        "td/proj": (("bi", "layer"), ()),
    }


def test_a_shared_layer_is_explained_and_named_at_the_call_keras_runs_first(tmp_path):
    """A conv shared by two branches (a Siamese model): Keras runs its calls deepest-first, here the img_b branch's
    before img_a's; the records explain the call run first, and its producer, the partly-recorded note and the
    records agree on which one (the records' forward sums are that call's x.W)."""
    keras.utils.set_random_seed(3)
    img_a, img_b = keras.Input((8, 8, 2), name="img_a"), keras.Input((8, 8, 2), name="img_b")
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="shared_conv")
    pool, flat = keras.layers.MaxPooling2D(2, name="pool"), keras.layers.Flatten(name="flat")
    dense = keras.layers.Dense(4, activation="relu", name="shared_dense")
    a, b = dense(flat(pool(conv(img_a)))), dense(flat(pool(conv(img_b))))
    out = keras.layers.Dense(1, name="out")(keras.layers.Concatenate(name="concat")([a, b]))
    model = keras.Model([img_a, img_b], out)
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(16, 8, 8, 2)).astype(np.float32)
    xb = xa[::-1] - 3.0  # another batch, shifted: the two calls' products differ
    kernel, bias, dense_kernel = conv.kernel.numpy(), conv.bias.numpy(), dense.kernel.numpy()
    with pytest.warns(tk.PartlyRecordedWarning) as caught:
        model.fit(
            [xa, xb],
            np.zeros((16, 1), np.float32),
            batch_size=16,
            epochs=1,
            verbose=0,
            callbacks=[tk.ExplainerCallback(tmp_path, update_freq=1, roles=("forward", "input_features"), **EXACT)],
        )
    recs = records(tmp_path)
    series, info = recs["shared_conv/forward"][1], recs["shared_conv/input_features"][0]
    products = {
        name: float(tf.reduce_sum(tf.nn.conv2d(x, kernel, 1, "VALID"))) for name, x in (("img_a", xa), ("img_b", xb))
    }
    explained = float(series[0][1].sums.sum())
    matching = min(products, key=lambda name: abs(products[name] - explained))
    assert abs(products["img_a"] - products["img_b"]) > 100 * abs(products[matching] - explained)
    assert info.producer == matching, (info.producer, products, explained)
    note = next(str(w.message) for w in caught if "'shared_conv'" in str(w.message))
    assert f"the first call it runs only, the one on the input from {matching}" in note, note

    # shared_dense's first-run call may be on the other branch: its note says which model input that call reads.
    def dense_products(x):
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "VALID") + bias), 2, 2, "VALID")
        return float(tf.reduce_sum(tf.reshape(h, (16, -1)) @ dense_kernel))

    dense_explained = float(recs["shared_dense/forward"][1][0][1].sums.sum())
    candidates = {"img_a": dense_products(xa), "img_b": dense_products(xb)}
    reads = min(candidates, key=lambda n: abs(candidates[n] - dense_explained))
    assert abs(candidates["img_a"] - candidates["img_b"]) > 100 * abs(candidates[reads] - dense_explained)
    dense_note = next(str(w.message) for w in caught if "'shared_dense'" in str(w.message))
    assert f"the one on the input from shared_conv, which reads {reads} " in dense_note, dense_note
    assert matching == "img_b"  # Keras' order here (deepest first); the old walk named img_a, its first-made call


def test_a_causal_conv1ds_input_features_are_the_data_without_its_padding(tmp_path):
    """Causal Conv1D is explained as the VALID conv of its left-padded input; its input features are the data's
    (a trial read "8% of its input values are exactly zero (from input_layer)": 2 padded steps of 26)."""
    rng = np.random.default_rng(6)
    x = (rng.uniform(0.5, 1.5, size=(32, 24, 3)) * rng.choice([-1, 1], size=(32, 24, 3))).astype(np.float32)
    assert not np.any(x == 0)
    model = keras.Sequential(
        [keras.Input((24, 3)), keras.layers.Conv1D(4, 3, padding="causal", name="causal"), keras.layers.Flatten()]
    )
    model.compile(optimizer="sgd", loss="mse")
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, roles=("forward", "input_features"), **EXACT)
    model.fit(x, np.zeros((32, 96), np.float32), batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    record = records(tmp_path)["causal/input_features"][1][0][1]
    assert record.cells.sum() == 32 * 24 * 3 and record.reference.sum() == 0


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.a = keras.layers.Dense(3, activation="relu")
        self.b = keras.layers.Dense(2)

    def call(self, x):
        return self.b(self.a(x))


def test_subclassed_models_say_the_producer_is_not_known():
    model = _Subclassed()
    model(np.zeros((1, 4), np.float32))
    assert graph.producer_of(model.b) == (None, None)


def test_the_private_keras_graph_api_is_still_there():
    """graph.py reads Layer._inbound_nodes, Node.input_tensors and KerasTensor._keras_history: if a Keras release
    renames them, this fails (and producers would silently become unknown)."""
    inputs = keras.Input((4,))
    layer = keras.layers.Dense(2)
    layer(inputs)
    node = layer._inbound_nodes[0]
    assert node.input_tensors[0]._keras_history.operation.name == inputs._keras_history.operation.name


def _fit_mlp(log_dir, **options):
    x, y = mlp_data()
    model = mlp()
    callback = tk.ExplainerCallback(log_dir, update_freq=2, roles=ROLES, **options)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    return records(log_dir)


def test_records_of_one_operand_share_its_threshold(tmp_path):
    """m is the forward record's result and the activation record's first operand; dJ/dz (= d_out) is the
    activation gradient's result and the kernel gradient's second operand: each is classed with one threshold."""
    recs = _fit_mlp(tmp_path / "sampled")
    for step in (0, 2):
        forward, activation = record_at(recs, "hidden/forward", step), record_at(recs, "hidden/activation", step)
        kernel_gradient = record_at(recs, "hidden/kernel_gradient", step)
        activation_gradient = record_at(recs, "hidden/activation_gradient", step)
        assert forward.thresholds[2] == activation.thresholds[0] > 0
        assert activation_gradient.thresholds[2] == kernel_gradient.thresholds[1]
        assert np.isfinite(kernel_gradient.thresholds[1])
    # Near-zero totals off: the forward record computes no result threshold (NaN); the activation record's m has one.
    recs = _fit_mlp(tmp_path / "off", near_zero="off")
    assert np.isnan(record_at(recs, "hidden/forward", 0).thresholds[2])
    assert record_at(recs, "hidden/activation", 0).thresholds[0] > 0


@pytest.mark.parametrize("functional", [False, True])
def test_a_layer_output_read_by_the_next_layer_has_one_threshold(tmp_path, functional):
    """a = tanh(z) of "hidden" is "out"'s input x: the activation record's output threshold is the one "out"'s
    forward and input-features records class x with (32 x 160 values: a sampled threshold, computed once; two
    samples of it would differ)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(64, 3)).astype(np.float32)
    layers = [keras.layers.Dense(160, "tanh", name="hidden"), keras.layers.Dense(3, name="out")]
    if functional:
        inputs = keras.Input((8,))
        model = keras.Model(inputs, layers[1](layers[0](inputs)))
    else:
        model = keras.Sequential([keras.Input((8,)), *layers])
    model.compile(optimizer="sgd", loss="mse")
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, roles=ROLES)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    recs = records(tmp_path)
    for step in (0, 1):
        output_threshold = record_at(recs, "hidden/activation", step).output_threshold
        assert output_threshold > 0
        assert record_at(recs, "out/forward", step).thresholds[0] == output_threshold
        assert record_at(recs, "out/input_features", step).thresholds[0] == output_threshold


@pytest.mark.parametrize("case", ["sigmoid_bce", "softmax_ce", "sigmoid_mse"])
def test_a_loss_that_reads_the_logits_trains_as_in_a_plain_step_and_is_marked(tmp_path, case):
    """Keras' cross-entropy reads the logits of a sigmoid or softmax output (`_keras_logits`): a recording step
    computes the same loss and gradients as a plain one, and the output's activation record says that the loss read
    the logits (no dJ/da: no activation-gradient record). A loss on the probabilities (MSE) passes dJ/da."""
    x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 3, 16)
    binary = (labels % 2)[:, None].astype(np.float32)
    activation, units, loss_fn, y = {
        "sigmoid_bce": ("sigmoid", 1, keras.losses.BinaryCrossentropy(), binary),
        "softmax_ce": ("softmax", 3, keras.losses.SparseCategoricalCrossentropy(), labels),
        "sigmoid_mse": ("sigmoid", 1, keras.losses.MeanSquaredError(), binary),
    }[case]
    keras.utils.set_random_seed(0)
    big = keras.initializers.RandomNormal(stddev=5.0)  # saturating outputs: where the two losses differ most
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(6, activation="relu", name="hidden"),
            keras.layers.Dense(units, activation=activation, kernel_initializer=big, name="out"),
        ]
    )
    recorder = tk.LayerRecorder(model, tmp_path, roles=ROLES, **EXACT)

    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    def recording_step():
        with recorder.recording(tf.constant(0, tf.int64)):  # (around the forward pass and the gradients)
            return step()

    (plain_loss, plain_grads), (loss, grads) = tf.function(step)(), tf.function(recording_step)()
    recorder.close()
    assert float(loss) == float(plain_loss)
    for g, plain_g in zip(grads, plain_grads):
        # Equal to float32 rounding: on CPUs where TensorFlow fuses MatMul + BiasAdd + activation (oneDNN), the
        # recording step, which also reads z, is fused differently (seen: 5e-7 relative, sigmoid_mse on AVX-512).
        np.testing.assert_allclose(g.numpy(), plain_g.numpy(), rtol=1e-5, atol=1e-8)
    recs = records(tmp_path)
    reads = case != "sigmoid_mse"
    assert recs["out/activation"][0].loss_reads_logits is reads
    assert recs["hidden/activation"][0].loss_reads_logits is False
    assert ("out/activation_gradient" in recs) is (activation == "sigmoid" and not reads)
