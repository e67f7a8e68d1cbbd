"""ExplainerCallback: records of real `model.fit` runs, read back through TensorBoard's own multiplexer and data
provider, equal a direct computation with the per-cell classifiers on the same batch and weights."""

import io
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import __main__ as cli
from tb_matmul_explainer import aggregates, loader, ops
from tb_matmul_explainer import keras as tk
from tests import tb_reader
from tests.keras_helpers import (
    ALL_ROLES,
    EXACT,
    UNCOMPILED,
    assert_record_equals,
    dense_forward_oracle,
    dense_input_gradient_oracle,
    dense_kernel_gradient_oracle,
    mlp,
    mlp_data,
    mlp_gradients,
    oracle,
    record_at,
    records,
    run_script,
    steps_of,
)


def test_sequential_records_equal_the_classifiers_on_the_same_batch(tmp_path):
    """Default XLA kernels; all three roles; every value of the step-0 record against the classifiers."""
    x, y = mlp_data()
    model = mlp()
    model.build((None, 8))
    w0 = [w.numpy() for w in model.weights]
    callback = tk.ExplainerCallback(tmp_path, update_freq=2, roles=ALL_ROLES, **EXACT)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    recs = records(tmp_path)
    assert set(recs) == {f"{layer}/{role}" for layer in ("hidden", "out") for role in ALL_ROLES}
    for tag in recs:
        assert steps_of(recs, tag) == [0, 2], tag
    for tag, (md, _) in recs.items():
        layer, role = tag.split("/")
        assert (md.layer, md.role, md.op) == (layer, role, "dense")
        assert md.index == {"hidden": 0, "out": 1}[layer]
        assert md.units == {("hidden", "input_gradient"): 8, ("out", "input_gradient"): 6}.get(
            (layer, role), 6 if layer == "hidden" else 3
        )
    (x1, d1), (x2, d2) = mlp_gradients(w0, x[:16], y[:16])
    assert_record_equals(record_at(recs, "hidden/forward", 0), dense_forward_oracle(x1, w0[0]))
    assert_record_equals(record_at(recs, "out/forward", 0), dense_forward_oracle(x2, w0[2]))
    assert_record_equals(record_at(recs, "hidden/kernel_gradient", 0), dense_kernel_gradient_oracle(x1, d1))
    assert_record_equals(record_at(recs, "out/kernel_gradient", 0), dense_kernel_gradient_oracle(x2, d2))
    assert_record_equals(record_at(recs, "hidden/input_gradient", 0), dense_input_gradient_oracle(d1, w0[0]))
    assert_record_equals(record_at(recs, "out/input_gradient", 0), dense_input_gradient_oracle(d2, w0[2]))
    # The Scalars dashboard gets the two fractions per tag.
    scalars = tb_reader.read_scalars(str(tmp_path))["train"]
    assert [s for s, _ in scalars["hidden/forward/near_zero_fraction"]] == [0, 2]
    assert "out/kernel_gradient/dead_unit_fraction" in scalars
    # The model is left as it was.
    assert all("call" not in vars(layer) for layer in model.layers)
    assert model.train_function is callback._plain


def test_functional_conv_model_records_match_the_conv_classifiers(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 9, 9, 2)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    keras.utils.set_random_seed(3)
    inputs = keras.Input((9, 9, 2))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
    model.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kernel = model.get_layer("conv").kernel.numpy()
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, **EXACT, **UNCOMPILED)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[callback], verbose=0)
    recs = records(tmp_path)
    assert set(recs) == {
        "conv/forward",
        "conv/kernel_gradient",
        "conv/activation",
        "conv/activation_gradient",
        "conv/input_features",
        "logits/forward",
        "logits/kernel_gradient",
        "logits/input_features",
    }
    md = recs["conv/forward"][0]
    assert (md.op, md.index, md.units) == ("conv2d", 0, 4) and recs["logits/forward"][0].index == 2
    counts, sums, thr = ops.conv_classify(x, kernel, 2, "SAME", return_thresholds=True)
    z = tf.nn.convolution(x, kernel, 2, "SAME")
    assert_record_equals(record_at(recs, "conv/forward", 0), oracle(counts, sums, z, -1, thr))
    # The kernel gradient: d_out from a direct tape over the same computation.
    dense = model.get_layer("logits")
    with tf.GradientTape() as tape:
        tape.watch(z)
        logits = tf.reshape(tf.nn.relu(z + model.get_layer("conv").bias), [8, -1]) @ dense.kernel + dense.bias
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    d_out = tape.gradient(loss, z)
    counts, sums, thr = ops.conv_backprop_filter_classify(x, d_out, kernel.shape, 2, "SAME", return_thresholds=True)
    gradient = tf.reduce_sum(sums, -1)
    assert_record_equals(
        record_at(recs, "conv/kernel_gradient", 0), oracle(counts, sums, gradient, -1, thr), rtol=1e-3, atol=1e-6
    )


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv1D(3, 3, padding="causal", activation="relu", name="causal")
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.mix = keras.layers.EinsumDense("ab,bc->ac", output_shape=4, bias_axes="c", name="mix")
        self.head = keras.layers.Dense(1, name="head")

    def call(self, x):
        return self.head(self.mix(self.pool(self.conv(x))))


def test_subclassed_model_with_causal_conv1d_and_einsum_dense(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 7, 2)).astype(np.float32)
    y = rng.normal(size=(12, 1)).astype(np.float32)
    keras.utils.set_random_seed(5)
    model = Subclassed()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    model(x[:1])
    kernels = {name: model.get_layer(name).kernel.numpy() for name in ("causal", "mix")}
    callback = tk.ExplainerCallback(tmp_path, update_freq=3, **EXACT, **UNCOMPILED)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    recs = records(tmp_path)
    matmul_roles = ("forward", "kernel_gradient", "input_features")  # (mix and head have no activation)
    assert sorted(recs) == sorted(
        [f"causal/{r}" for r in tk.DEFAULT_ROLES] + [f"{n}/{r}" for n in ("mix", "head") for r in matmul_roles]
    )
    assert [recs[f"{n}/forward"][0].index for n in ("causal", "mix", "head")] == [0, 2, 3]
    assert recs["causal/forward"][0].op == "conv1d" and recs["mix/forward"][0].op == "einsum_dense"
    assert steps_of(recs, "mix/forward") == [0]
    # Causal: the VALID convolution over the left-padded input (padding zeros are near-zero inputs).
    padded = np.pad(x[:4], [(0, 0), (2, 0), (0, 0)])
    counts, sums, thr = ops.conv_classify(padded, kernels["causal"], 1, "VALID", return_thresholds=True)
    z = tf.nn.convolution(padded, kernels["causal"], 1, "VALID")
    assert_record_equals(record_at(recs, "causal/forward", 0), oracle(counts, sums, z, -1, thr))
    pooled = tf.reduce_mean(tf.nn.relu(z + model.get_layer("causal").bias), axis=1).numpy()
    assert_record_equals(record_at(recs, "mix/forward", 0), dense_forward_oracle(pooled, kernels["mix"]))


class ScaledDense(keras.layers.Dense):
    def call(self, inputs, training=None):
        return 2.0 * super().call(inputs)


def test_unsupported_layer_is_named_with_the_reason_and_the_others_are_recorded(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3, dilation_rate=2, name="dilated"),  # recorded
            keras.layers.Conv2D(2, 3, name="plain_conv"),
            keras.layers.SeparableConv2D(2, 1, name="sep"),  # recorded: two parts
            keras.layers.Flatten(),
            ScaledDense(3, name="scaled"),
            keras.layers.Dense(1, name="head"),
        ]
    )
    model.compile("sgd", "mse")
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, roles=("forward",), **UNCOMPILED)
    with pytest.warns(tk.UnsupportedLayerWarning) as caught:
        model.fit(x, np.zeros((4, 1), np.float32), batch_size=4, epochs=1, callbacks=[callback], verbose=0)
    messages = [str(w.message) for w in caught]
    assert any("'scaled'" in m and "overrides call()" in m for m in messages)
    assert set(callback.skipped) == {"scaled"}
    assert sorted(records(tmp_path)) == [
        "dilated/forward",
        "head/forward",
        "plain_conv/forward",
        "sep/depthwise/forward",
        "sep/pointwise/forward",
    ]
    # Each skipped layer is also in the run, for TensorBoard: a standard text summary with the warning's reason,
    # written once, at the first recorded step.
    model.fit(x, np.zeros((4, 1), np.float32), batch_size=4, epochs=1, callbacks=[callback], verbose=0)
    texts = tb_reader.read_records(str(tmp_path), plugin_name="text")["train"]
    assert sorted(texts) == ["matmul_explainer/not_recorded/scaled"]
    for name, reason in callback.skipped.items():
        _, data = texts[tk.NOT_RECORDED_TAG_PREFIX + name]
        assert [(d.step, d.numpy.item().decode()) for d in data] == [(0, reason)]
        assert any(f"'{name}'" in m and reason in m for m in messages)
    assert callback.skipped["scaled"].startswith("ScaledDense overrides call()")


def test_nothing_skipped_writes_no_not_recorded_text(tmp_path):
    x, y = mlp_data(n=8)
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, roles=("forward",), **UNCOMPILED)
    mlp().fit(x, y, batch_size=8, epochs=1, callbacks=[callback], verbose=0)
    assert callback.skipped == {}
    assert tb_reader.read_records(str(tmp_path), plugin_name="text") == {}


def test_layers_can_be_chosen_by_name_or_object(tmp_path):
    x, y = mlp_data(n=16)
    model = mlp()
    model.build((None, 8))
    callback = tk.ExplainerCallback(
        tmp_path, update_freq=1, layers=[model.get_layer("out")], roles=("forward",), **UNCOMPILED
    )
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[callback], verbose=0)
    assert list(records(tmp_path)) == ["out/forward"]
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[tk.ExplainerCallback(tmp_path / "b", layers=["nope"])])
    for bad, match in [
        (dict(update_freq=0), "update_freq"),
        (dict(roles=("sideways",)), "roles"),
        (dict(near_zero="maybe"), "near_zero"),
        (dict(confidence=2.0), "confidence"),
        (dict(thresholds=(1, 2)), "thresholds"),
    ]:
        with pytest.raises(ValueError, match=match):
            tk.ExplainerCallback(tmp_path, **bad)


def count_kernel_runs(monkeypatch):
    """Patches `aggregates.dense` to count, in the graph, how many times it runs."""
    runs = tf.Variable(0)
    original = aggregates.dense

    def counted(*args, **kwargs):
        with tf.control_dependencies([runs.assign_add(1)]):
            totals = original(*args, **kwargs)
        return aggregates.UnitTotals(*[tf.identity(t) for t in totals])

    monkeypatch.setattr(aggregates, "dense", counted)
    return runs


def test_steps_that_do_not_record_never_run_the_kernels(tmp_path, monkeypatch):
    """Steps that do not record run the model's own train function: the kernels run only on recording steps."""
    runs = count_kernel_runs(monkeypatch)
    x, y = mlp_data(n=40)
    model = mlp()
    callback = tk.ExplainerCallback(tmp_path, update_freq=4, roles=("forward",), **UNCOMPILED)
    functions = []

    class After(keras.callbacks.Callback):  # listed after the explainer: sees the function it chose
        def on_train_batch_begin(self, batch, logs=None):
            functions.append(self.model.train_function is callback._instrumented)

    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, callbacks=[callback, After()], verbose=0)
    assert functions == [True, False, False, False, True, False, False, False, True, False]
    assert int(runs.numpy()) == 3 * 2  # recording steps 0, 4, 8; two layers
    assert steps_of(records(tmp_path), "hidden/forward") == [0, 4, 8]


def test_epochs_keep_counting_and_validation_batches_are_not_recorded(tmp_path):
    x, y = mlp_data(n=12)
    model = mlp()
    callback = tk.ExplainerCallback(tmp_path, update_freq=2, roles=("forward",), **UNCOMPILED)
    model.fit(x, y, batch_size=4, epochs=3, validation_data=mlp_data(n=8, seed=9), callbacks=[callback], verbose=0)
    assert steps_of(records(tmp_path), "out/forward") == [0, 2, 4, 6, 8]
    # A second fit continues from the optimizer's step count.
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[callback], verbose=0)
    assert steps_of(records(tmp_path), "out/forward") == [0, 2, 4, 6, 8, 10]
    assert callback.recorded_steps == [0, 2, 4, 6, 8, 10]


class OwnOptimizerModel(keras.Model):
    """A model that trains with an optimizer of its own (as a GAN's custom `compile` and `train_step` do), so that
    `model.optimizer.iterations` stays at 0."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(4, activation="relu", name="hidden")
        self.out = keras.layers.Dense(3, name="out")
        self.own = keras.optimizers.SGD(0.01)

    def call(self, x):
        return self.out(self.hidden(x))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self(x, training=True) - y))
        self.own.apply_gradients(zip(tape.gradient(loss, self.trainable_variables), self.trainable_variables))
        return {"loss": loss}


def test_a_model_whose_optimizer_never_steps_keeps_counting_over_fits(tmp_path):
    """`model.optimizer.iterations` stays 0 here: a second fit, with the same or a new callback, continues at step
    4 instead of recording steps 0 and 2 again."""
    x, y = mlp_data(n=16)
    model = OwnOptimizerModel()
    model(x[:1])  # (a subclassed model is built by a call)
    model.compile(optimizer="sgd")
    for _ in range(2):
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                  callbacks=[tk.ExplainerCallback(tmp_path, update_freq=2, roles=("forward",))])  # fmt: skip
    assert int(model.optimizer.iterations.numpy()) == 0
    assert steps_of(records(tmp_path), "hidden/forward") == [0, 2, 4, 6]


class OutsideTheTapeModel(keras.Model):
    """`pre` runs before the GradientTape (a GAN's generator in the Keras example's discriminator step); `shared` is
    called twice per step."""

    def __init__(self):
        super().__init__()
        self.pre = keras.layers.Dense(8, activation="relu", name="pre")
        self.shared = keras.layers.Dense(3, name="shared")

    def call(self, x):
        return self.shared(x) + self.shared(2.0 * x)

    def train_step(self, data):
        x, y = data
        x = self.pre(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self(x, training=True) - y))
        variables = self.shared.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss}


def test_a_layer_recorded_only_in_part_is_warned_about_once(tmp_path):
    """A layer called twice in a step (its records explain the first call), and one whose output no gradient
    reaches (called outside the tape): a PartlyRecordedWarning each, naming the layer and what is missing, and a
    note in the run that the loader (so the report) and the tab read."""
    x, y = mlp_data(n=16)
    model = OutsideTheTapeModel()
    model(model.pre(x[:1]))
    model.compile(optimizer="sgd")
    with pytest.warns(tk.PartlyRecordedWarning) as caught:
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tk.ExplainerCallback(tmp_path, update_freq=2)])
    messages = sorted(str(w.message) for w in caught if issubclass(w.category, tk.PartlyRecordedWarning))
    assert len(messages) == 2, messages
    assert "'pre' is only partly recorded: no gradient reached its output" in messages[0]
    assert "kernel_gradient, activation_gradient records are not written" in messages[0]
    assert "'shared' is only partly recorded: it is called 2 times in a step" in messages[1]
    recs = records(tmp_path)
    assert "pre/forward" in recs and "pre/kernel_gradient" not in recs
    assert steps_of(recs, "shared/kernel_gradient") == [0, 2]
    notes = dict(loader.load(str(tmp_path)).partly_recorded["train"])
    assert sorted(notes) == ["pre", "shared"]
    assert notes["pre"].startswith("no gradient reached its output") and "called 2 times" in notes["shared"]
    report = io.StringIO()
    cli.report(str(tmp_path), out=report)
    assert "Recorded in part (2):\n  pre: no gradient reached its output" in report.getvalue()


def test_steps_per_execution_records_exactly_the_cadence_steps(tmp_path, monkeypatch):
    """With 3 steps per execution, steps 0, 4, 8, 12 are recorded, each explaining its own batch (SGD with a zero
    learning rate keeps the weights, so each record equals the classifiers on that step's batch); the other steps
    of an execution that records skip the kernels."""
    runs = count_kernel_runs(monkeypatch)
    x, y = mlp_data(n=64)
    model = mlp()
    model.compile(keras.optimizers.SGD(0.0), "mse", steps_per_execution=3)
    model.build((None, 8))
    kernel = model.get_layer("hidden").kernel.numpy()
    callback = tk.ExplainerCallback(
        tmp_path, update_freq=4, roles=("forward",), unit_detail_every=1, **EXACT, **UNCOMPILED
    )
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[callback], verbose=0)
    recs = records(tmp_path)
    assert steps_of(recs, "hidden/forward") == [0, 4, 8, 12]
    assert int(runs.numpy()) == 4 * 2  # 4 recorded steps x 2 layers, though 4 executions x 3 steps were instrumented
    for step in (0, 4, 12):
        batch = x[(step % 8) * 8 : (step % 8) * 8 + 8]
        assert_record_equals(record_at(recs, "hidden/forward", step), dense_forward_oracle(batch, kernel))


def test_nan_loss_is_recorded_and_training_goes_on(tmp_path):
    x, y = mlp_data(n=16)
    x[3, 2] = np.nan
    model = mlp()
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, **UNCOMPILED)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[callback], verbose=0)
    assert len(history.history["loss"]) == 2 and np.isnan(history.history["loss"][0])
    recs = records(tmp_path)
    assert steps_of(recs, "hidden/forward") == [0, 1, 2, 3]
    first = record_at(recs, "hidden/forward", 0)
    assert first.nonfinite[0] == 1 and first.nonfinite[2] > 0  # the NaN input and the results it reached
    assert record_at(recs, "hidden/kernel_gradient", 0).nonfinite[1] > 0  # d_out is NaN


def test_mixed_precision_records_in_float32_with_the_loss_scale_divided_out(tmp_path):
    x, y = mlp_data(n=16)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = mlp()
        model.build((None, 8))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        w0 = [w.numpy() for w in model.weights]
        callback = tk.ExplainerCallback(tmp_path, update_freq=1, **EXACT, **UNCOMPILED)
        model.fit(x, y, batch_size=16, epochs=1, callbacks=[callback], verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    recs = records(tmp_path)
    (x1, d1), _ = mlp_gradients(w0, x, y)
    record = record_at(recs, "hidden/kernel_gradient", 0)
    # Sums over the nine pairs give back the (unscaled) kernel gradient, to float16 precision.
    np.testing.assert_allclose(record.sums.sum(1), (x1.T @ d1).sum(0), rtol=0.05, atol=1e-3)
    forward = record_at(recs, "hidden/forward", 0)
    np.testing.assert_allclose(forward.sums.sum(1), (x1 @ w0[0]).sum(0), rtol=0.02, atol=0.02)
    assert forward.counts.sum() == 16 * 8 * 6


def test_patched_layers_compute_what_the_layers_compute(tmp_path):
    """Outputs and gradients of every supported layer are unchanged while it is instrumented."""
    rng = np.random.default_rng(7)
    cases = [
        (keras.layers.Dense(5, activation="tanh"), (4, 3, 6)),
        (keras.layers.EinsumDense("abc,cde->abde", output_shape=(3, 2, 4), bias_axes="de"), (2, 3, 5)),
        (keras.layers.Conv1D(4, 3, padding="causal", activation="relu"), (2, 9, 3)),
        (keras.layers.Conv2D(4, 3, strides=2, padding="same"), (2, 7, 7, 3)),
        (keras.layers.Conv2D(3, 3, dilation_rate=(2, 1), padding="same"), (2, 7, 6, 2)),
        (keras.layers.Conv1D(4, 2, groups=2, padding="same", activation="relu"), (2, 7, 4)),
        (keras.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu"), (2, 7, 7, 3)),
        (keras.layers.DepthwiseConv1D(3, dilation_rate=2, padding="same"), (2, 9, 3)),
        (keras.layers.SeparableConv2D(4, 3, strides=2, depth_multiplier=2, activation="relu"), (2, 7, 7, 3)),
        (keras.layers.SeparableConv1D(2, 3, dilation_rate=2, padding="same"), (2, 9, 3)),
        (
            keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1, activation="relu"),
            (2, 4, 5, 2),
        ),
        (keras.layers.Conv1DTranspose(2, 2, strides=3), (2, 5, 3)),
        (keras.layers.Conv3DTranspose(2, 2, strides=(1, 2, 1), padding="same"), (1, 3, 3, 2, 2)),
        (keras.layers.Conv3D(2, 2, strides=(1, 2, 1)), (1, 4, 5, 4, 2)),
    ]
    for layer, shape in cases:
        x = tf.constant(rng.normal(size=shape).astype(np.float32))
        layer(x)
        recorder = tk.LayerRecorder(layer, tmp_path, roles=ALL_ROLES, **UNCOMPILED)
        assert len(recorder.targets) == (2 if "separable" in layer.name else 1)

        def run(instrumented, x=x, layer=layer, recorder=recorder):
            with tf.GradientTape() as tape:
                tape.watch(x)
                if instrumented:
                    with recorder.recording(0, True):
                        out = layer(x)
                        loss = tf.reduce_sum(out * out)
                        grads = tape.gradient(loss, [x] + layer.trainable_weights)
                else:
                    out = layer(x)
                    loss = tf.reduce_sum(out * out)
            if not instrumented:
                grads = tape.gradient(loss, [x] + layer.trainable_weights)
            return [out] + grads

        for got, want in zip(run(True), run(False)):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6, err_msg=layer.name)
        assert "call" not in vars(layer)
    recorder.flush()
    recs = records(tmp_path)
    assert {md.op for md, _ in recs.values()} == {
        "conv1d",
        "conv2d",
        "conv3d",
        "dense",
        "einsum_dense",
        "depthwise_conv1d",
        "depthwise_conv2d",
        "conv1d_transpose",
        "conv2d_transpose",
        "conv3d_transpose",
    }


MIRRORED = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tb_matmul_explainer import keras as tk
    from tests.keras_helpers import mlp, mlp_data
    x, y = mlp_data()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = mlp()
        model.build((None, 8))
    np.savez(sys.argv[1] + "/weights.npz", *[w.numpy() for w in model.weights])
    callback = tk.ExplainerCallback(sys.argv[1], update_freq=2, threshold_method="exact", near_zero="exact",
                                    jit=False)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    print("replicas", strategy.num_replicas_in_sync)
""")


def test_mirrored_strategy_sums_replicas_into_one_record_of_the_global_batch(tmp_path):
    """Two logical CPUs (set before TensorFlow starts, hence a subprocess): each replica explains its half of
    the batch with its own thresholds, the totals are summed, and one writer writes one record per step."""
    assert "replicas 2" in run_script(MIRRORED, tmp_path, timeout=240)
    recs = records(tmp_path)
    assert steps_of(recs, "hidden/forward") == [0, 2]  # once per step, not once per replica
    x, y = mlp_data()
    w0 = list(np.load(tmp_path / "weights.npz").values())
    halves = [slice(0, 8), slice(8, 16)]
    # Forward: the sum of each replica's totals (each half with its own exact thresholds).
    parts = [dense_forward_oracle(x[h], w0[0]) for h in halves]
    expected = {key: sum(np.asarray(p[key]) for p in parts) for key in parts[0]}
    expected["thresholds"] = np.mean([p["thresholds"] for p in parts], axis=0)
    assert_record_equals(record_at(recs, "hidden/forward", 0), expected)
    # Kernel gradient: near-zero cells of the global gradient; each replica's d_out is d(global loss)/dz.
    (x1, d1), _ = mlp_gradients(w0, x[:16], y[:16])
    record = record_at(recs, "hidden/kernel_gradient", 0)
    whole = dense_kernel_gradient_oracle(x1, d1)
    np.testing.assert_array_equal(record.cells, whole["cells"])  # k cells per unit, not k per replica
    np.testing.assert_array_equal(record.near_zero_cells, whole["near_zero_cells"])
    np.testing.assert_allclose(record.thresholds[2], whole["thresholds"][2], rtol=1e-5)
    np.testing.assert_array_equal(record.counts.sum(1), np.full(6, 8 * 16))  # every product of the global batch
    np.testing.assert_allclose(record.sums.sum(1), whole["sums"].sum(1), rtol=1e-4, atol=1e-6)


def test_unit_detail_every_keeps_the_pair_table_every_nth_record_and_at_each_fits_first(tmp_path):
    """unit_detail_every=3 over 7 recorded steps, then a second fit: unit detail at steps 0, 3, 6 and at the second
    fit's first step; every other record holds the same layer totals and per-row near-zero cells as a run that keeps
    unit detail in every record (SGD with a zero learning rate: both runs see the same weights and batches)."""
    x, y = mlp_data(n=56)
    runs = {}
    for every in (3, 1):
        model = mlp()
        model.compile(keras.optimizers.SGD(0.0), "mse")
        callback = tk.ExplainerCallback(
            tmp_path / str(every), update_freq=1, unit_detail_every=every, verbose=0, **EXACT, **UNCOMPILED
        )
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
        model.fit(x[:16], y[:16], batch_size=8, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
        runs[every] = records(tmp_path / str(every))
    for tag in ("hidden/forward", "hidden/kernel_gradient", "hidden/activation", "out/input_features"):
        sparse, full = runs[3][tag][1], runs[1][tag][1]
        assert [s for s, _ in sparse] == [s for s, _ in full] == list(range(9))
        assert [s for s, r in sparse if r.detail] == [0, 3, 6, 7] and all(r.detail for _, r in full)
        for (_, compact), (_, detailed) in zip(sparse, full):
            np.testing.assert_array_equal(compact.totals, detailed.totals)
            np.testing.assert_array_equal(compact.dead_near_zero_counts, detailed.dead_near_zero_counts)
            np.testing.assert_array_equal(compact.near_zero_cells, detailed.near_zero_cells)
            assert compact.counts is None if not compact.detail else compact.counts.shape == detailed.counts.shape
    with pytest.raises(ValueError, match="unit_detail_every must be an int >= 1"):
        tk.ExplainerCallback(tmp_path, unit_detail_every=0)
