"""A zoo of planted pathologies, trained with the callback and diagnosed from the logs: the diagnosis names the
planted layer, its cause and its first step, and says nothing is wrong for the healthy controls. Each planted
fact is first checked independently of the product, with plain TensorFlow on the same batch and weights."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import explain, loader
from tb_matmul_explainer.__main__ import chain_lines
from tb_matmul_explainer.keras import ExplainerCallback

BATCH, FEATURES, CLASSES = 32, 16, 4


def data(seed=0, samples=8 * BATCH, shape=(FEATURES,)):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples,) + shape).astype(np.float32)
    y = rng.integers(0, CLASSES, samples)
    return x, y


def train(model, tmp_path, x, y, optimizer=None, update_freq=2, epochs=1):
    """Fits `model` with the callback; returns (diagnoses, alerts) of its run at the latest step."""
    model.compile(
        optimizer or keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[ExplainerCallback(tmp_path, update_freq=update_freq)],
    )
    return explain.diagnose_run(loader.load(str(tmp_path)).runs["train"])


def alerts_by_layer(alerts):
    out = {}
    for a in alerts:
        out.setdefault(a.layer, []).append(a)
    return out


def test_dying_relus_from_a_negative_bias_are_named_where_they_die(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = data()
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(32, activation="relu", name="hidden_1"),
            keras.layers.Dense(
                32, activation="relu", bias_initializer=keras.initializers.Constant(-8.0), name="hidden_2"
            ),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    model.build((None, FEATURES))
    # Independently: with the initial weights, hidden_2's pre-activation is negative for every input and unit.
    h1 = model.get_layer("hidden_1")(tf.constant(x[:BATCH]))
    z2 = h1 @ model.get_layer("hidden_2").kernel + model.get_layer("hidden_2").bias
    assert np.all(z2.numpy() < 0)
    diagnoses, alerts = train(model, tmp_path, x, y)
    assert alerts, "no alert for a layer whose ReLUs are all dead"
    lead = alerts[0]
    assert (lead.kind, lead.layer, lead.first_step) == ("dead_units", "hidden_2", 0)
    assert "bias outweighs x.W" in lead.message and "bias_initializer" in lead.message  # the cause, and a fix
    by_layer = alerts_by_layer(alerts)
    assert "logits" not in by_layer and "hidden_1" not in by_layer  # the consumer is starved, not dead
    logits = next(d for d in diagnoses if (d.layer, d.role) == ("logits", "forward"))
    assert "hidden_2" in logits.text
    # Its gradient stops there: not "nothing wrong" beside the layer's own alert.
    gradient = next(d for d in diagnoses if (d.layer, d.role) == ("hidden_2", "activation_gradient"))
    assert not gradient.text.startswith("Nothing wrong")
    assert "32 of 32 units get no gradient in any cell" in gradient.text
    assert "their own activation is off there" in gradient.text and "after the layer" not in gradient.text
    # hidden_1 is healthy but learns nothing either: no gradient passes hidden_2's dead units back to it.
    upstream = next(d for d in diagnoses if (d.layer, d.role) == ("hidden_1", "activation_gradient"))
    assert (
        "get no gradient in any cell" in upstream.text and "no gradient arrives from after the layer" in upstream.text
    )
    chain = next(line for line in chain_lines(loader.load(str(tmp_path)).runs["train"]) if line.startswith("hidden_2:"))
    assert "dJ/dz 100% near zero (32/32 units without gradient) (100% of them where f' is off)" in chain, chain


def test_a_bias_that_turns_units_off_is_named_though_x_w_is_mostly_negative_too(tmp_path):
    """A VGG16 trial (block3_conv2 at bias -5; here -8): x.W of the dead units is negative in most of their cells
    too, and active in about a fifth; without the bias those units would be alive, so the bias is the cause."""
    keras.utils.set_random_seed(9)
    rng = np.random.default_rng(9)
    x = np.abs(rng.normal(size=(8 * BATCH, FEATURES))).astype(np.float32)  # post-ReLU-like: positive inputs
    y = rng.integers(0, CLASSES, 8 * BATCH)
    layer = keras.layers.Dense(32, activation="relu", bias_initializer=keras.initializers.Constant(-8.0), name="conv")
    model = keras.Sequential([keras.Input((FEATURES,)), layer, keras.layers.Dense(CLASSES, name="logits")])
    model.build((None, FEATURES))
    layer.kernel.assign((rng.normal(size=(FEATURES, 32)) * 0.5 - 0.15).astype(np.float32))
    m = (tf.constant(x[:BATCH]) @ layer.kernel).numpy()
    assert np.all(m - 8.0 <= 0)  # every unit dead with the bias ...
    assert 0.05 < np.mean(m > 0) < 0.25  # ... x.W alone active in some of the cells ...
    assert np.mean(np.mean(m > 0, axis=0) >= 0.01) > 0.5  # ... and most units alive without the bias
    _, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.0))
    lead = alerts[0]
    assert (lead.kind, lead.layer) == ("dead_units", "conv")
    assert "the bias outweighs x.W" in lead.message and "look at the bias" in lead.message, lead.message


class DyingSubclassed(keras.Model):
    """The negative-bias case as a subclassed model: Keras has no graph of it, so no producer is known."""

    def __init__(self):
        super().__init__()
        self.hidden_1 = keras.layers.Dense(32, activation="relu", name="hidden_1")
        self.hidden_2 = keras.layers.Dense(
            32, activation="relu", bias_initializer=keras.initializers.Constant(-8.0), name="hidden_2"
        )
        self.logits = keras.layers.Dense(CLASSES, name="logits")

    def call(self, x):
        return self.logits(self.hidden_2(self.hidden_1(x)))


def test_dying_relus_in_a_subclassed_model_are_named_once_and_block_nothing_after_them(tmp_path):
    """Without a graph, the dead input features of "logits" are matched to hidden_2's dead units (same count, same
    step): no second alert at logits, and hidden_2's near-zero kernel gradient is its own dead units' doing, not
    something after it."""
    keras.utils.set_random_seed(0)
    x, y = data()
    model = DyingSubclassed()
    model(x[:1])
    z2 = model.hidden_1(tf.constant(x[:BATCH])) @ model.hidden_2.kernel + model.hidden_2.bias
    assert np.all(z2.numpy() < 0)  # independently: every unit of hidden_2 is off for every input
    diagnoses, alerts = train(model, tmp_path, x, y)
    assert [(a.kind, a.layer, a.role) for a in alerts] == [("dead_units", "hidden_2", "activation")]
    by_key = {(d.layer, d.role): d for d in diagnoses}
    gradient = by_key[("hidden_2", "kernel_gradient")].text
    assert "its own units are dead" in gradient and "after it" not in gradient, gradient
    assert "near-zero input from hidden_2 (whose dead units match them" in by_key[("logits", "forward")].text


@pytest.mark.parametrize("bias_2", [-0.5, 0.0])
def test_dead_units_of_a_layer_fed_only_by_dead_units_follow_from_their_producer(tmp_path, bias_2):
    keras.utils.set_random_seed(0)
    x, y = data()
    negative = keras.initializers.Constant
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(32, activation="relu", bias_initializer=negative(-8.0), name="hidden_1"),
            keras.layers.Dense(32, activation="relu", bias_initializer=negative(bias_2), name="hidden_2"),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    model.build((None, FEATURES))
    # Independently: hidden_1 is off for every input, so hidden_2's pre-activation is its bias alone (-0.5, or 0:
    # where ReLU's gradient is 0 too).
    h1 = model.get_layer("hidden_1")(tf.constant(x[:BATCH]))
    assert np.all(h1.numpy() == 0)
    with tf.GradientTape() as tape:
        z2 = model.get_layer("hidden_2").bias + 0.0 * h1[:, :1]
        tape.watch(z2)
        a2 = tf.nn.relu(z2)
    assert np.all(tape.gradient(a2, z2).numpy() == 0)
    _, alerts = train(model, tmp_path, x, y)
    dead = [a for a in alerts if a.kind == "dead_units"]
    assert [(a.layer, a.first_step) for a in dead] == [("hidden_1", 0), ("hidden_2", 0)]
    assert "x.W is near zero" in dead[1].message
    side = (
        "and so is the bias: pre-activations are near zero"
        if bias_2 == 0
        else "the bias makes pre-activations negative"
    )
    assert side in dead[1].message, dead[1].message
    assert "Its input from hidden_1 is dead (see hidden_1's alert): this follows from it." in dead[1].message
    assert "Its input from" not in dead[0].message


def test_dead_relus_after_batchnorm_are_named_at_the_activation_layer(tmp_path):
    keras.utils.set_random_seed(1)
    x, y = data(shape=(8, 8, 3))
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv_1")(inputs)
    h = keras.layers.BatchNormalization(beta_initializer=keras.initializers.Constant(-6.0), name="bn_1")(h)
    h = keras.layers.Activation("relu", name="relu_1")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv_2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(h))
    # Independently: relu_1's output is exactly zero everywhere on the first batch (training-mode BatchNorm).
    probe = keras.Model(inputs, model.get_layer("relu_1").output)
    assert np.all(probe(x[:BATCH], training=True).numpy() == 0)
    diagnoses, alerts = train(model, tmp_path, x, y)
    lead = alerts[0]
    assert (lead.kind, lead.layer, lead.first_step) == ("dead_units", "relu_1", 0)
    assert "conv_2" in lead.message  # where it was seen
    assert "conv_2" not in alerts_by_layer(alerts)


def test_dead_units_of_a_wide_layer_are_counted_unit_by_unit(tmp_path):
    """600 units are stored in 200 groups of 3 (max_units 256); one unit of every group dies. No stored group is
    dead, yet a third of the units are: the alert counts them."""
    keras.utils.set_random_seed(8)
    x, y = data()
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(600, activation="relu", name="wide"),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    model.build((None, FEATURES))
    wide = model.get_layer("wide")
    wide.bias.assign(np.where(np.arange(600) % 3 == 0, -50.0, 0.0).astype(np.float32))
    # Independently: exactly the units with index % 3 == 0 are off for every input of the first batch.
    z = (tf.constant(x[:BATCH]) @ wide.kernel + wide.bias).numpy()
    assert np.array_equal(np.flatnonzero(np.all(z <= 0, axis=0)), np.arange(0, 600, 3))
    diagnoses, alerts = train(model, tmp_path, x, y)
    lead = alerts[0]
    assert (lead.kind, lead.layer, lead.role, lead.first_step) == ("dead_units", "wide", "activation", 0)
    assert lead.message.startswith("200 of 600 units are dead")
    activation = next(d for d in diagnoses if (d.layer, d.role) == ("wide", "activation"))
    assert activation.dead_rows == []  # (no stored group of 3 is dead)
    # Their dJ/dz is zero because their own ReLU is off (a VGG16 fc layer read "no gradient arrives from after the
    # layer"): in plain TF, dJ/da reaches every dead unit, f'(z) = 0 stops it.
    with tf.GradientTape() as tape:
        a = tf.nn.relu(tf.constant(x[:BATCH]) @ wide.kernel + wide.bias)
        loss = tf.reduce_sum(a @ model.get_layer("logits").kernel)
    assert np.all(np.abs(tape.gradient(loss, a).numpy()[:, ::3]).max(axis=0) > 0)
    gradient = next(d.text for d in diagnoses if (d.layer, d.role) == ("wide", "activation_gradient"))
    assert "their own activation is off there" in gradient and "arrives from after" not in gradient, gradient


@pytest.mark.parametrize("dead", [1, 2])
def test_one_dead_unit_of_a_narrow_layer_raises_no_alert(tmp_path, dead):
    """One unit of 8 dead (12.5%: a healthy U-Net's narrow decoder conv loses one now and then) is said, not
    alerted; two are alerted."""
    keras.utils.set_random_seed(19)
    x, y = data()
    narrow = keras.layers.Dense(8, activation="relu", name="narrow")
    model = keras.Sequential([keras.Input((FEATURES,)), narrow, keras.layers.Dense(CLASSES, name="logits")])
    model.build((None, FEATURES))
    narrow.bias.assign(np.where(np.arange(8) < dead, -50.0, 0.0).astype(np.float32))
    z = (tf.constant(x[:BATCH]) @ narrow.kernel + narrow.bias).numpy()
    assert np.all(z <= 0, axis=0).sum() == dead
    diagnoses, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.0))
    text = next(d.text for d in diagnoses if (d.layer, d.role) == ("narrow", "activation"))
    if dead == 1:
        assert alerts == [] and "(1 of 8 units dead, fewer than the 2 that raise an alert)" in text, text
    else:
        assert [(a.kind, a.layer) for a in alerts] == [("dead_units", "narrow")]


def test_a_frozen_zero_kernel_is_collapsed_since_the_first_step(tmp_path):
    keras.utils.set_random_seed(2)
    x, y = data()
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(32, activation="tanh", name="hidden"),
            keras.layers.Dense(16, kernel_initializer="zeros", name="frozen"),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    model.get_layer("frozen").trainable = False
    # Independently: its kernel would get a gradient (frozen, it does not move).
    frozen, kernel = model.get_layer("frozen"), tf.constant(model.get_layer("frozen").kernel.numpy())
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        h = model.get_layer("hidden")(tf.constant(x[:BATCH])) @ kernel + frozen.bias
        logits = model.get_layer("logits")(h)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y[:BATCH], logits, from_logits=True))
    assert float(tf.reduce_mean(tf.abs(tape.gradient(loss, kernel)))) > 0
    diagnoses, alerts = train(model, tmp_path, x, y)
    # One alert for one cause: its dead units and near-zero results follow from the zero kernel; and the fix.
    assert [(a.kind, a.layer, a.first_step) for a in alerts] == [("collapsed_weights", "frozen", 0)]
    assert "Its dead units and near-zero results follow from it." in alerts[0].message
    assert "It has stayed all zero since step 0 although its gradient dW is not zero" in alerts[0].message
    assert alerts[0].message.endswith("Let it train, or give it a non-zero kernel_initializer.")
    assert "frozen" in next(d.text for d in diagnoses if (d.layer, d.role) == ("hidden", "kernel_gradient"))


def test_dead_units_after_a_layer_that_cuts_the_data_off_follow_from_it(tmp_path):
    """A frozen all-zero kernel with bias 1 (a VGG16 trial: a conv at bias -20 left the layers after it computing
    from biases alone): the next layer's input is the same for every sample, so about half its units are dead for
    every input, whatever its weights. They follow from the zero layer: its alert leads, theirs says so."""
    keras.utils.set_random_seed(14)
    x, y = data()
    cut = keras.layers.Dense(16, activation="relu", name="cut")
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(16, activation="relu", name="first"),
            cut,
            keras.layers.Dense(32, activation="relu", name="after"),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    model.build((None, FEATURES))
    cut.kernel.assign(np.zeros(cut.kernel.shape, np.float32))
    cut.bias.assign(np.ones(cut.bias.shape, np.float32))
    cut.trainable = False
    h = model.get_layer("first")(tf.constant(x[:BATCH]))
    z = (cut(h) @ model.get_layer("after").kernel + model.get_layer("after").bias).numpy()
    assert np.all(z == z[:1])  # the same pre-activations for every sample ...
    assert np.mean(np.all(z <= 0, axis=0)) >= 0.25  # ... and a quarter or more of the units off for all of them
    _, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.0))
    assert [(a.layer, a.kind) for a in alerts][:2] == [("cut", "collapsed_weights"), ("after", "dead_units")]
    assert "Its input does not depend on the data: cut, before it, has an all-zero kernel since step 0" in (
        alerts[1].message
    ), alerts[1].message
    assert "weights point" not in alerts[1].message  # (its own cause, x.W of a constant input, is no cause)


def test_zeros_that_a_layer_carries_on_are_nothing_wrong(tmp_path):
    """A 1x1 depthwise conv after a ReLU conv (NASNetMobile's depthwise convs on 1x1 maps are elementwise scales):
    its results are zero exactly where its input is, about half of them, with no dead channel. Its forward line
    says "Nothing wrong here" and why, rather than a bare "51% of results are near zero"."""
    keras.utils.set_random_seed(15)
    x, y = data(shape=(4, 4, 3))
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    scale = keras.layers.DepthwiseConv2D(1, name="scale")
    h = keras.layers.GlobalAveragePooling2D()(scale(h))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(h))
    a = model.get_layer("conv")(tf.constant(x[:BATCH])).numpy()
    out = scale(a).numpy() - scale.bias.numpy()
    assert np.array_equal(out == 0, a == 0) and 0.3 < np.mean(a == 0) < 0.7  # zero where its input is, about half
    assert not np.any(np.all(a == 0, axis=(0, 1, 2)))  # no channel zero everywhere
    diagnoses, alerts = train(model, tmp_path, x, y)
    assert alerts == []
    text = next(d.text for d in diagnoses if (d.layer, d.role) == ("scale", "forward"))
    assert text.startswith("Nothing wrong here: ") and "Its input from conv is exactly zero in" in text, text
    assert "the layer carries those zeros on" in text


def test_saturated_lstm_gates_are_the_layers_own_doing(tmp_path):
    """An LSTM whose first half of units has every gate saturated by its bias (a learning rate of 0.5 left 22-27 of
    32 units per gate saturated in a trial): their kernel columns get no gradient. That is the cell's own sigmoid
    and tanh, not a later layer: an alert on its kernel gradients, naming the gates and the common causes."""
    keras.utils.set_random_seed(16)
    x, y = data(shape=(6, 4))
    lstm = keras.layers.LSTM(8, name="lstm")
    model = keras.Sequential([keras.Input((6, 4)), lstm, keras.layers.Dense(CLASSES, name="logits")])
    model.build((None, 6, 4))
    half = np.tile(np.arange(8) < 4, 4)  # units 0-3 of each gate (i, f, c, o)
    lstm.cell.bias.assign(np.where(half, 30.0, lstm.cell.bias.numpy()).astype(np.float32))
    with tf.GradientTape() as tape:
        logits = model(tf.constant(x[:BATCH]))
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y[:BATCH], logits, from_logits=True))
    dw = np.abs(tape.gradient(loss, lstm.cell.kernel).numpy()).mean(axis=0)
    assert dw[half].max() < 1e-6 * dw[~half].mean()  # the saturated columns' gradient is gone
    diagnoses, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.0))
    gates = [a for a in alerts if a.layer.startswith("lstm/") and a.role == "kernel_gradient"]
    assert gates and all(a.kind == "excess_near_zero" for a in gates), [a.message for a in alerts]
    assert "near zero where the gates saturate" in gates[0].message and "normalise them" in gates[0].message


def test_dead_features_of_a_concatenation_follow_from_the_layers_it_joins(tmp_path):
    """Two branches with dead ReLUs (7 of 16 and 8 of 16), concatenated, read by a Dense (a Siamese trial ranked
    "concat: 27 of 64 output features are near zero" above the branch layer whose units died): the branches lead,
    and the Concatenate's alert says that it makes no zeros of its own."""
    keras.utils.set_random_seed(17)
    x, y = data()
    inputs = keras.Input((FEATURES,))
    a = keras.layers.Dense(16, activation="relu", name="branch_a")
    b = keras.layers.Dense(16, activation="relu", name="branch_b")
    joined = keras.layers.Concatenate(name="concat")([a(inputs), b(inputs)])
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(joined))
    a.bias.assign(np.where(np.arange(16) < 7, -50.0, 0.0).astype(np.float32))
    b.bias.assign(np.where(np.arange(16) < 8, -50.0, 0.0).astype(np.float32))
    h = model.get_layer("concat")([a(x[:BATCH]), b(x[:BATCH])]).numpy()
    assert np.all(h == 0, axis=0).sum() == 15  # 7 + 8 of 32 features zero for every input
    _, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.0))
    dead = [(a.layer, a.role) for a in alerts if a.kind == "dead_units"]
    assert dead == [("branch_b", "activation"), ("branch_a", "activation"), ("concat", "input_features")], dead
    assert "concat joins several layers' outputs" in alerts[2].message and "makes no zeros of its own" in (
        alerts[2].message
    )


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_an_input_feature_left_unnormalised_is_named(tmp_path, scale):
    """Tabular data with one raw feature (a wide & deep trial: income at ~4e4 among normalised features killed 19 of
    32 ReLUs, which read "the weights point away from the data"): the feature is named, with the fix; the same
    data normalised raises nothing of the kind."""
    keras.utils.set_random_seed(20)
    x, y = data()
    x[:, 2] = np.abs(x[:, 2]) * scale
    means = np.abs(x).mean(axis=0)
    assert (means[2] / np.median(means) >= 1000) == (scale > 1)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(16, activation="relu", name="dense"),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    _, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.0))
    unscaled = [a for a in alerts if a.kind == "unscaled_input"]
    if scale == 1.0:
        assert unscaled == []
    else:
        assert [(a.layer, a.role) for a in unscaled] == [("dense", "input_features")]
        assert f"input feature 2 (counting from 0) of {FEATURES}" in unscaled[0].message
        assert "Normalise it" in unscaled[0].message


@pytest.mark.parametrize("joined", [True, False])
def test_zero_features_of_the_data_joined_by_a_concatenate_raise_nothing(tmp_path, joined):
    """The Keras structured-data examples: numeric features concatenated with a lookup's one-hot, whose
    out-of-vocabulary slot is zero for every input (a trial read "concatenate: 3 of 16 of its output features are
    near zero ... see their alerts first" with no alert to see). Nothing it joins is dead: no alert, and the
    input-features line says why."""
    keras.utils.set_random_seed(21)
    rng = np.random.default_rng(21)
    numbers = keras.Input((4,), name="numbers")
    city = keras.Input((1,), name="city", dtype="int64")
    one_hot = keras.layers.IntegerLookup(vocabulary=[1, 2, 3], output_mode="one_hot", name="lookup")(city)
    features_in = keras.layers.Concatenate(name="concat")([numbers, one_hot]) if joined else one_hot
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(features_in)
    model = keras.Model({"numbers": numbers, "city": city}, keras.layers.Dense(CLASSES, name="logits")(hidden))
    x = {"numbers": rng.normal(size=(8 * BATCH, 4)).astype(np.float32), "city": rng.integers(1, 4, (8 * BATCH, 1))}
    one_hot = model.get_layer("lookup")(x["city"][:BATCH]).numpy()
    assert np.all(one_hot[:, 0] == 0) and np.all(one_hot.any(axis=0)[1:])  # (its out-of-vocabulary slot)
    diagnoses, alerts = train(model, tmp_path, x, rng.integers(0, CLASSES, 8 * BATCH))
    assert alerts == [], [a.message for a in alerts]
    text = next(d.text for d in diagnoses if (d.layer, d.role) == ("hidden", "input_features"))
    if joined:
        assert text.startswith("Nothing wrong here: 1 of 8 input features") and "out-of-vocabulary" in text, text
    else:  # (read straight from the lookup: the data's own encoding, like the model's input)
        assert "1 of 4 input features are near zero in every row (from lookup)" in text, text


def test_a_branch_that_the_loss_weighs_zero_gets_no_gradient_and_says_so(tmp_path):
    """A second head trained with loss weight 0: no gradient reaches it or the layer before it in that branch. One
    alert, at the head (nearest the loss), names both; the shared trunk, reached through the other head, is fine."""
    keras.utils.set_random_seed(6)
    x, y = data()
    inputs = keras.Input((FEATURES,))
    trunk = keras.layers.Dense(32, activation="relu", name="trunk")(inputs)
    used = keras.layers.Dense(CLASSES, name="used")(keras.layers.Dense(16, activation="relu", name="used_h")(trunk))
    unused = keras.layers.Dense(1, name="unused")(keras.layers.Dense(16, activation="relu", name="unused_h")(trunk))
    model = keras.Model(inputs, {"used": used, "unused": unused})
    model.compile(
        keras.optimizers.Adam(1e-3),
        loss={"used": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "unused": "mse"},
        loss_weights={"used": 1.0, "unused": 0.0},
    )
    targets = {"used": y, "unused": x[:, :1]}
    # Independently: the branch's kernel gradients are exactly zero, the trunk's and the used head's are not.
    with tf.GradientTape() as tape:
        out = model(x[:BATCH])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y[:BATCH], out["used"])
        loss += 0.0 * keras.losses.MeanSquaredError()(x[:BATCH, :1], out["unused"])
    names = ("trunk", "used_h", "unused_h", "unused")
    kernels = [model.get_layer(n).kernel for n in names]
    grads = dict(zip(names, tape.gradient(loss, kernels)))
    assert all(np.abs(grads[n].numpy()).sum() == 0 for n in ("unused_h", "unused"))
    assert all(np.abs(grads[n].numpy()).sum() > 0 for n in ("trunk", "used_h"))
    model.fit(x, targets, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[ExplainerCallback(tmp_path, 2)])
    diagnoses, alerts = explain.diagnose_run(loader.load(str(tmp_path)).runs["train"])
    assert [(a.kind, a.layer, a.first_step) for a in alerts] == [("no_gradient", "unused", 0)]
    assert "so do unused_h (2 layers)" in alerts[0].message and "loss_weights" in alerts[0].message
    text = {(d.layer, d.role): d.text for d in diagnoses}
    assert "see unused's alert" in text[("unused_h", "kernel_gradient")]
    assert "reaches" not in text[("trunk", "kernel_gradient")]


def test_a_zero_init_residual_blocks_gradient_and_the_alert_names_that_cause(tmp_path):
    """A residual branch whose last BatchNormalization has gamma zero (zero-init residual, on purpose): its layer
    gets no gradient until gamma trains. The alert's causes include it (a trial read only "does not reach the loss,
    or loss_weights" and went hunting for a graph bug)."""
    keras.utils.set_random_seed(18)
    x, y = data()
    inputs = keras.Input((FEATURES,))
    pre = keras.layers.Dense(16, activation="relu", name="pre")(inputs)
    branch = keras.layers.Dense(16, name="branch")(pre)
    branch = keras.layers.BatchNormalization(gamma_initializer="zeros", name="bn")(branch)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(keras.layers.Add()([pre, branch])))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(y[:BATCH], model(x[:BATCH], training=True), from_logits=True)
        )
    assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, model.get_layer("branch").kernel)))) == 0.0
    _, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.0))
    assert [(a.kind, a.layer) for a in alerts] == [("no_gradient", "branch")], [a.message for a in alerts]
    assert "a BatchNormalization or LayerNormalization whose gamma is zero" in alerts[0].message


def test_a_zero_kernel_does_not_make_a_layer_beside_it_vanish(tmp_path):
    """A layer with an all-zero kernel has no |dW| / |W|: it is left out of the vanishing-gradient comparison (a
    collapsed-weights alert says what is wrong), not a reason to judge every layer on raw gradient sizes, by which a
    healthy layer whose gradient reaches the loss around it (a skip connection) read as vanishing."""
    keras.utils.set_random_seed(7)
    x, y = data()
    inputs = keras.Input((FEATURES,))
    h = keras.layers.Dense(32, activation="tanh", name="hidden")(inputs)
    zero = keras.layers.Dense(32, kernel_initializer="zeros", name="zero")
    zero.trainable = False
    skip = keras.layers.Add(name="skip")([h, zero(h)])
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(skip))
    # Independently: hidden's gradient reaches the loss around the zero layer, as large relative to its weights
    # as the logits' (no 100x gap).
    with tf.GradientTape() as tape:
        logits = model(x[:BATCH])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y[:BATCH], logits)
    kernels = [model.get_layer(n).kernel for n in ("hidden", "logits")]
    relative = [
        float(tf.reduce_mean(tf.abs(g)) / tf.reduce_mean(tf.abs(k)))
        for g, k in zip(tape.gradient(loss, kernels), kernels)
    ]
    assert relative[1] < 100 * relative[0]
    _, alerts = train(model, tmp_path, x, y)
    assert [(a.kind, a.layer) for a in alerts] == [("collapsed_weights", "zero")]
    # However large the zero layer's own gradient (the raw scale the version-1 rule would compare every layer
    # with, direction-free), the layers with a |dW| / |W| are compared by it alone.
    layers = loader.load(str(tmp_path)).runs["train"]
    kernel_gradients = [
        (layer, explain.totals(view.record_at(None)[1]))
        for (layer, role), view in layers.items()
        if role == "kernel_gradient"
    ]
    large = [
        (layer, dataclasses.replace(t, sums=t.sums * 1e6) if layer == "zero" else t) for layer, t in kernel_gradients
    ]
    assert explain.vanishing_gradient_alerts(large, 0) == []
    # ... as when its record has no |dW| at all (a frozen layer's, before the record computed it).
    unknown = [(layer, dataclasses.replace(t, result_magnitude=np.nan) if layer == "zero" else t) for layer, t in large]
    assert explain.vanishing_gradient_alerts(unknown, 0) == []


def test_zeros_carried_on_from_an_all_zero_layer_follow_from_it(tmp_path):
    """An all-zero frozen kernel before BatchNormalization and a swish Activation (an EfficientNet block's
    project conv): the BN and activation outputs are exactly zero too (swish(0) = 0 with slope 0.5: not "off").
    The collapsed kernel leads; the zero features after it say they may be its zeros carried on, and rank after."""
    keras.utils.set_random_seed(9)
    x, y = data()
    zero = keras.layers.Dense(16, kernel_initializer="zeros", use_bias=False, name="zero")
    zero.trainable = False
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(32, activation="tanh", name="hidden"),
            zero,
            keras.layers.BatchNormalization(center=False, scale=False, name="bn"),
            keras.layers.Activation("swish", name="act"),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    model.build((None, FEATURES))
    a = model.layers[3](model.layers[2](zero(model.layers[0](tf.constant(x[:BATCH]))), training=True))
    assert np.all(a.numpy() == 0)  # independently: exactly zero after BN and swish
    _, alerts = train(model, tmp_path, x, y)
    assert (alerts[0].kind, alerts[0].layer) == ("collapsed_weights", "zero")
    carried = [a for a in alerts[1:] if a.role == "input_features"]
    assert carried and all("They may be zero's zero outputs carried on" in a.message for a in carried)
    assert not any("beta and gamma" in a.message for a in carried)  # (what feeds them is zero: not their cause)


def test_kernel_entries_that_meet_only_explicit_padding_are_zero_by_construction(tmp_path):
    """A ZeroPadding2D layer before a valid 5x5 stride-2 convolution of a 2x2 map (EfficientNet's block6a_dwconv
    and its _pad): 21 of 25 kernel taps only meet padding, so most of dW is exactly zero. Its text says so."""
    keras.utils.set_random_seed(10)
    x, y = data(shape=(2, 2, 4))
    model = keras.Sequential(
        [
            keras.Input((2, 2, 4)),
            keras.layers.ZeroPadding2D(2, name="zero_pad"),
            keras.layers.Conv2D(8, 5, strides=2, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    diagnoses, alerts = train(model, tmp_path, x, y)
    assert alerts == []
    text = next(d.text for d in diagnoses if (d.layer, d.role) == ("conv", "kernel_gradient"))
    assert "Its input's exact zeros come from zero_pad" in text and "zero by construction, nothing to fix" in text


def test_a_zero_key_projection_is_collapsed_and_the_scores_that_read_it_are_not(tmp_path):
    """Attention with a frozen all-zero key projection: the key tensor is exactly zero, so query x key (whose
    second operand is an activation, not a kernel) is zero too. The collapsed weights are the projection's, alone;
    the scores' einsum is starved by its operand, not "collapsed"."""
    keras.utils.set_random_seed(11)
    x, y = data(shape=(6, FEATURES))
    inputs = keras.Input((6, FEATURES))
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    h = keras.layers.GlobalAveragePooling1D()(mha(inputs, inputs))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(h))
    key = mha._key_dense
    key.kernel.assign(np.zeros(key.kernel.shape, np.float32))
    key.trainable = False
    _, alerts = train(model, tmp_path, x, y)
    collapsed = [a.layer for a in alerts if a.kind == "collapsed_weights"]
    assert collapsed == ["mha/key"]
    assert not [a for a in alerts if a.layer == "mha/attention_scores" and a.kind == "collapsed_weights"]


def test_a_zero_value_projection_leads_and_the_attention_it_starves_follows_from_it(tmp_path):
    """A frozen all-zero value projection (a ViT trial): V is exactly zero, so A x V and the output projection's
    input are too. One alert, at the projection, saying that the einsum's dead units follow from it; the einsum
    names the value, not both operands; the output projection's input is the einsum's output (no unknown producer,
    no activation advice)."""
    keras.utils.set_random_seed(13)
    x, y = data(shape=(6, FEATURES))
    inputs = keras.Input((6, FEATURES))
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    h = keras.layers.Add()([inputs, mha(inputs, inputs)])
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(keras.layers.GlobalAveragePooling1D()(h)))
    value = mha._value_dense
    value.kernel.assign(np.zeros(value.kernel.shape, np.float32))
    value.bias.assign(np.zeros(value.bias.shape, np.float32))
    value.trainable = False
    out, scores = mha(x[:BATCH], x[:BATCH], return_attention_scores=True)
    assert float(tf.reduce_max(tf.abs(value(x[:BATCH])))) == 0.0 and float(tf.reduce_min(scores)) > 0.0
    diagnoses, alerts = train(model, tmp_path, x, y)
    assert [(a.layer, a.kind) for a in alerts] == [("mha/value", "collapsed_weights")], [a.message for a in alerts]
    assert "mha/attention_values's dead units (it reads its output) follow from it too" in alerts[0].message
    einsum = next(d.text for d in diagnoses if (d.layer, d.role) == ("mha/attention_values", "forward"))
    assert (
        "near-zero value (100% of their products)" in einsum and "because mha/value's weights have collapsed" in einsum
    )
    query = next(d.text for d in diagnoses if (d.layer, d.role) == ("mha/query", "kernel_gradient"))
    assert "because mha/value, beside it in the same layer, passes almost none back" in query, query
    info = loader.load(str(tmp_path)).runs["train"][("mha/attention_output", "input_features")].info
    assert (info.producer, info.producer_kind) == ("mha/attention_values", "layer")


def test_a_starved_gradient_is_blamed_on_the_layer_after_it_that_passes_least_back(tmp_path):
    """Half of `half`'s units dead, with a residual path around it; every unit of `shut` after it dead: `first`
    gets no gradient because of `shut`, not `half` (the first dead layer after it in model order)."""
    keras.utils.set_random_seed(12)
    x, y = data()
    inputs = keras.Input((FEATURES,))
    h = keras.layers.Dense(32, activation="relu", name="first")(inputs)
    half = keras.layers.Dense(32, activation="relu", name="half")
    h = keras.layers.Add()([h, half(h)])
    shut = keras.layers.Dense(32, activation="relu", bias_initializer=keras.initializers.Constant(-50.0), name="shut")
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(shut(h)))
    half.bias.assign(np.where(np.arange(32) < 16, -50.0, 0.0).astype(np.float32))
    diagnoses, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.0))
    assert {(a.layer, round(a.severity, 2)) for a in alerts if a.kind == "dead_units"} >= {("half", 0.5), ("shut", 1.0)}
    first = next(d.text for d in diagnoses if (d.layer, d.role) == ("first", "kernel_gradient"))
    assert "because shut, after it, passes almost none back" in first


def test_dead_units_before_a_max_pooling_are_off_on_their_own(tmp_path):
    """Channels dead from a negative bias, before a 2x2 max-pooling that passes gradient to one position in four:
    their missing gradient is their own activation being off, though dJ/da is zero in 3 of 4 cells anyway."""
    keras.utils.set_random_seed(8)
    x, y = data(shape=(8, 8, 3))
    conv = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            conv,
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(CLASSES),
        ]
    )
    model.build((None, 8, 8, 3))
    conv.bias.assign(np.where(np.arange(16) < 8, -20.0, 0.0).astype(np.float32))
    z = conv.convolution_op(tf.constant(x[:BATCH]), conv.kernel) + conv.bias
    assert np.all(z.numpy()[..., :8] < 0)  # independently: channels 0-7 are off everywhere
    diagnoses, _ = train(model, tmp_path, x, y)
    gradient = next(d for d in diagnoses if (d.layer, d.role) == ("conv", "activation_gradient"))
    assert "8 of 16 units get no gradient in any cell: their own activation is off there" in gradient.text


def test_exact_cancellation_is_named(tmp_path):
    keras.utils.set_random_seed(3)
    x, y = data()
    inputs = keras.Input((FEATURES,))
    twice = keras.layers.Concatenate(name="twice")([inputs, inputs])
    cancel = keras.layers.Dense(16, use_bias=False, name="cancel")
    h = cancel(twice)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(keras.layers.Activation("tanh")(h)))
    w = np.random.default_rng(3).normal(size=(FEATURES, 16)).astype(np.float32)
    cancel.kernel.assign(np.concatenate([w, -w]))  # x.w - x.w: every result cancels
    cancel.trainable = False
    # Independently: the results are tiny against the products' magnitude.
    z = (tf.constant(x[:BATCH]) @ tf.constant(w)).numpy()
    assert np.abs(z).sum() > 1.0
    _, alerts = train(model, tmp_path, x, y)
    cancelling = [a for a in alerts if a.kind == "cancellation"]
    assert [(a.layer, a.first_step) for a in cancelling] == [("cancel", 0)]


def test_saturated_sigmoids_are_named(tmp_path):
    keras.utils.set_random_seed(4)
    x, y = data()
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                32, activation="sigmoid", bias_initializer=keras.initializers.Constant(-15.0), name="saturated"
            ),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    model.build((None, FEATURES))
    z = tf.constant(x[:BATCH]) @ model.get_layer("saturated").kernel + model.get_layer("saturated").bias
    s = tf.sigmoid(z).numpy()
    assert np.all(s * (1 - s) < 0.0025)  # f'(z) below 1% of its largest value everywhere
    diagnoses, alerts = train(model, tmp_path, x, y)
    lead = alerts[0]
    assert (lead.kind, lead.layer, lead.first_step) == ("dead_units", "saturated", 0)
    assert "saturated" in lead.message
    # Its gradient line: not "nothing wrong", though dJ/dz's own percentile threshold calls few of them near zero.
    gradient = next(d.text for d in diagnoses if (d.layer, d.role) == ("saturated", "activation_gradient"))
    assert not gradient.startswith("Nothing wrong") and "f'(z) is near zero in 100% of cells" in gradient
    # Nor its kernel gradient's (its weights learn nothing), nor the lines of logits, whose input is ~1e-6 everywhere.
    assert s.max() < 1e-3
    kernel = next(d.text for d in diagnoses if (d.layer, d.role) == ("saturated", "kernel_gradient"))
    assert "But 100% of its units are dead (its activation's alert): their weights get almost no gradient" in kernel
    for role in ("input_features", "forward", "kernel_gradient"):
        text = next(d.text for d in diagnoses if (d.layer, d.role) == ("logits", role))
        assert not text.startswith("Nothing wrong"), (role, text)


def test_vanishing_gradients_in_a_deep_sigmoid_mlp(tmp_path):
    keras.utils.set_random_seed(5)
    x, y = data()
    init = keras.initializers.RandomNormal(stddev=0.1, seed=0)
    model = keras.Sequential(
        [keras.Input((FEATURES,))]
        + [
            keras.layers.Dense(32, activation="sigmoid", kernel_initializer=init, name=f"sigmoid_{i + 1}")
            for i in range(8)
        ]
        + [keras.layers.Dense(CLASSES, kernel_initializer=init, name="logits")]
    )
    _, alerts = train(model, tmp_path, x, y, optimizer=keras.optimizers.SGD(0.05))
    vanishing = [a for a in alerts if a.kind == "vanishing_gradient"]
    assert vanishing and vanishing[0].layer == "sigmoid_1" and vanishing[0].first_step == 0
    assert all(a.kind == "vanishing_gradient" for a in alerts)


def residual_cnn():
    """Two BatchNorm residual blocks, ResNet-style (conv -> BN -> ReLU, Add, ReLU)."""
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    h = keras.layers.Activation("relu", name="stem_relu")(keras.layers.BatchNormalization(name="stem_bn")(h))
    for b in (1, 2):
        r = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name=f"block{b}_conv_1")(h)
        r = keras.layers.Activation("relu", name=f"block{b}_relu_1")(
            keras.layers.BatchNormalization(name=f"block{b}_bn_1")(r)
        )
        r = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name=f"block{b}_conv_2")(r)
        r = keras.layers.BatchNormalization(name=f"block{b}_bn_2")(r)
        h = keras.layers.Activation("relu", name=f"block{b}_out")(keras.layers.Add(name=f"block{b}_add")([h, r]))
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(h), name="residual_cnn")


def transformer_block():
    """One Transformer encoder block over token embeddings."""
    inputs = keras.Input((12,), dtype="int32")
    h = keras.layers.Embedding(50, 32, name="embed")(inputs)
    a = keras.layers.MultiHeadAttention(4, 8, name="attention")(h, h)
    h = keras.layers.LayerNormalization(name="norm_1")(h + a)
    f = keras.layers.Dense(64, activation="relu", name="ffn_1")(h)
    f = keras.layers.Dense(32, name="ffn_2")(f)
    h = keras.layers.LayerNormalization(name="norm_2")(h + f)
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(h), name="transformer")


@pytest.mark.parametrize("name", ["residual_cnn", "transformer", "relu_mlp"])
def test_healthy_controls_have_nothing_wrong(tmp_path, name):
    keras.utils.set_random_seed(6)
    if name == "residual_cnn":
        model, (x, y) = residual_cnn(), data(shape=(16, 16, 3))
    elif name == "transformer":
        model = transformer_block()
        x = np.random.default_rng(6).integers(0, 50, (8 * BATCH, 12)).astype(np.int32)
        y = x[:, 0] % CLASSES
    else:
        model = keras.Sequential(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(CLASSES),
            ]
        )
        x, y = data()
    diagnoses, alerts = train(model, tmp_path, x, y, epochs=2)
    assert alerts == [], [(a.kind, a.layer, a.message) for a in alerts]
    assert all(d.text.startswith("Nothing wrong") for d in diagnoses), [
        d.text for d in diagnoses if not d.text.startswith("Nothing wrong")
    ]


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_a_confident_classifier_is_not_called_saturated(tmp_path, head):
    """Trained to confidence, a classifier's softmax (sigmoid) output is saturated almost everywhere; Keras'
    cross-entropy reads its logits, so no gradient is lost there and nothing is wrong."""
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    classes = 10 if head == "softmax" else 2
    centers = rng.normal(size=(classes, FEATURES)) * 4
    y = rng.integers(0, classes, 32 * BATCH)
    x = ((centers[y] + rng.normal(size=(len(y), FEATURES))) / 4).astype(np.float32)  # (unit scale)
    if head == "sigmoid":
        y = y[:, None].astype(np.float32)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(32, activation="tanh", name="hidden"),
            keras.layers.Dense(classes if head == "softmax" else 1, activation=head, name="out"),
        ]
    )
    loss = keras.losses.SparseCategoricalCrossentropy() if head == "softmax" else keras.losses.BinaryCrossentropy()
    model.compile(keras.optimizers.Adam(1e-2), loss)
    callback = ExplainerCallback(tmp_path, update_freq=64)
    model.fit(x, y, batch_size=BATCH, epochs=8, shuffle=False, verbose=0, callbacks=[callback])
    # Independently: enough units are saturated (|f'(z)| <= 1% of its largest) in >= 99% of their cells that the
    # dead-unit rule of a hidden activation would raise its alert.
    p = model(x[-8 * BATCH :]).numpy()
    assert np.mean(np.mean(p * (1 - p) <= 0.0025, axis=0) >= 0.99) >= explain.DEAD_UNITS
    diagnoses, alerts = explain.diagnose_run(loader.load(str(tmp_path)).runs["train"])
    assert alerts == [], [(a.kind, a.layer, a.message) for a in alerts]
    activation = next(d for d in diagnoses if (d.layer, d.role) == ("out", "activation") and d.step > 0)
    assert activation.text.startswith("Nothing wrong") and "logits" in activation.text
    run = loader.load(str(tmp_path)).runs["train"]
    outputs = [
        d
        for step in (0, None)
        for d in explain.diagnose_run(run, step)[0]
        if (d.layer, d.role) == ("out", "activation")
    ]
    for d in outputs:  # "confident" only where the output is saturated in a tenth of its cells or more
        assert ("(confident outputs)" in d.text) == (d.near_zero_fraction >= 0.10), (
            d.step,
            d.near_zero_fraction,
            d.text,
        )
    assert {d.near_zero_fraction >= 0.10 for d in outputs} == {True, False}  # (untrained at step 0, confident later)
    chain = next(line for line in chain_lines(loader.load(str(tmp_path)).runs["train"]) if line.startswith("out:"))
    assert "(the loss reads its logits: not dead)" in chain and "dead)" not in chain.replace("not dead)", "")
