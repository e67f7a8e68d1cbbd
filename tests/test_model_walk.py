"""Names, the not-recorded list and coverage: every recorded explanation is named by its Keras path, nothing is
skipped silently, and the multiply-adds per sample are counted from shapes."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from tb_matmul_explainer import keras as tk


def _recorder(model, tmp_path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recorder = tk.LayerRecorder(model, tmp_path, jit=False, **kwargs)
    return recorder, [str(w.message) for w in caught if issubclass(w.category, tk.UnsupportedLayerWarning)]


# 2-D attention (over two axes of a 4-D input): its einsums are not recorded (listed, with the reason).
_SHAPES = {None: (6, 8), (1, 2): (3, 2, 8)}


def _block(name, attention_axes=None):
    inputs = keras.Input(_SHAPES[attention_axes])
    attention = keras.layers.MultiHeadAttention(2, 4, attention_axes=attention_axes, name="attention")
    attended = attention(inputs, inputs)
    return keras.Model(inputs, keras.layers.Dense(8, name="ffn")(attended), name=name)


def _two_blocks(attention_axes=None):
    inputs = keras.Input(_SHAPES[attention_axes])
    x = _block("block_1", attention_axes)(inputs)
    x = _block("block_2", attention_axes)(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(keras.layers.Flatten()(x)))


def test_nested_layers_are_named_by_their_keras_path_and_stable_across_builds(tmp_path):
    recorder, _ = _recorder(_two_blocks(), tmp_path)
    names = [t.name for t in recorder.targets]
    parts = ("attention/attention_scores", "attention/attention_values")
    assert names == [
        f"block_{i}/{part}"
        for i in (1, 2)
        for part in (*parts, "attention/query", "attention/key", "attention/value", "attention/attention_output")
        + ("ffn",)
    ] + ["head"]
    assert {md.display_name for t in recorder.targets for md in t.metadata.values()} == {
        f"{name}/{role}"
        for name in names
        for role in ("forward", "kernel_gradient") + (() if name.endswith(parts) else ("input_features",))
    }
    again, _ = _recorder(_two_blocks(), tmp_path)  # a second build in the same process: the same names
    assert [t.name for t in again.targets] == names
    chosen, _ = _recorder(_two_blocks(), tmp_path, layers=["block_2/attention/query"])
    assert [t.name for t in chosen.targets] == ["block_2/attention/query"]


def test_repeated_paths_are_made_unique_in_model_order(tmp_path):
    class Twins(keras.layers.Layer):
        def __init__(self):
            super().__init__(name="twins")
            self.a = keras.layers.Dense(2, name="same")
            self.b = keras.layers.Dense(2, name="same")

        def call(self, x):
            return self.b(self.a(x))

    layer = Twins()
    layer(np.zeros((1, 3), np.float32))
    recorder, _ = _recorder(layer, tmp_path)
    assert [t.name for t in recorder.targets] == ["twins/same", "twins/same_2"]


def test_attention_einsums_are_warned_about_and_listed_and_recurrent_cells_are_not(tmp_path):
    recorder, messages = _recorder(_two_blocks(attention_axes=(1, 2)), tmp_path)
    assert sorted(recorder.skipped) == [
        f"block_{i}/attention/attention_{what}" for i in (1, 2) for what in ("scores", "values")
    ]
    assert all("default attention_axes" in r for r in recorder.skipped.values())
    assert "block_2/attention/query" in [t.name for t in recorder.targets]
    assert len(messages) == 4 and all("'block_" in m for m in messages)
    inputs = keras.Input((5, 3))
    rnn = keras.Model(inputs, keras.layers.Dense(1, name="out")(keras.layers.LSTM(4, name="lstm")(inputs)))
    recorder, messages = _recorder(rnn, tmp_path)
    assert recorder.skipped == {} and messages == []  # (the cell's kernels are recorded on the LSTM)
    assert [t.name for t in recorder.targets] == ["lstm/kernel", "lstm/recurrent_kernel", "out"]


class HalvedDepthwise(keras.layers.DepthwiseConv2D):
    def call(self, inputs):
        return 0.5 * super().call(inputs)


def test_coverage_counts_multiply_adds_per_sample_from_shapes(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="conv"),
            HalvedDepthwise(3, depth_multiplier=2, name="dw"),  # refused (it overrides call), still counted
            keras.layers.Flatten(),
            keras.layers.Dense(5, name="head"),
        ]
    )
    recorder, _ = _recorder(model, tmp_path)
    coverage = recorder.coverage()
    conv, dw, head = 6 * 6 * (3 * 3 * 3 * 4), 4 * 4 * (3 * 3 * 4 * 2), 4 * 4 * 8 * 5
    assert coverage.per_layer == [("conv", conv, True), ("dw", dw, False), ("head", head, True)]
    assert (coverage.recorded_multiply_adds, coverage.multiply_adds) == (conv + head, conv + dw + head)
    assert (coverage.recorded_layers, coverage.matmuls) == (2, 3)
    assert f"{100 * (conv + head) / (conv + dw + head):.1f}%" in coverage.line()
    assert coverage.line().startswith("tb_matmul_explainer: recording 2 layers (2 of 3 matmuls)")


def test_coverage_of_attention_and_recurrent_layers(tmp_path):
    recorder, _ = _recorder(_block("block"), tmp_path)
    coverage = recorder.coverage()
    per_layer = {path: macs for path, macs, _ in coverage.per_layer}
    assert all(recorded for _, _, recorded in coverage.per_layer) and coverage.share == 1.0
    assert per_layer["attention/attention_scores"] == 2 * 6 * 6 * 4  # heads x T x S x key_dim
    assert per_layer["attention/attention_values"] == 2 * 6 * 6 * 4
    assert per_layer["attention/query"] == 6 * 8 * 2 * 4
    inputs = keras.Input((5, 3))
    rnn = keras.Model(inputs, keras.layers.Dense(1, name="out")(keras.layers.GRU(4, name="gru")(inputs)))
    recorder, _ = _recorder(rnn, tmp_path)
    per_layer = {path: macs for path, macs, _ in recorder.coverage().per_layer}
    assert per_layer == {"gru": 5 * (3 * 12 + 4 * 12), "out": 4}  # both kernels at each of 5 steps


def test_coverage_is_not_known_without_an_input_shape(tmp_path):
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    recorder, _ = _recorder(model, tmp_path)
    coverage = recorder.coverage()
    assert coverage.share is None and "unknown sizes" in coverage.line()
    coverage = recorder.coverage(np.zeros((1, 7, 3), np.float32))
    assert coverage.per_layer == [("d", 7 * 3 * 2, True)] and coverage.share == 1.0


def test_coverage_of_named_inputs_of_several_dtypes_measures_and_training_goes_on(tmp_path):
    """The Keras structured-data examples' way: a dict of named inputs, not in sorted order, one of them strings
    through a StringLookup. The coverage pass feeds the model its own structure (a trial's fit stopped with "data
    type 'string' not understood" and "The structure of `inputs` doesn't match"); a pass that fails anyway is a
    line saying why, never an exception in `fit`."""
    age, income = keras.Input((1,), name="age"), keras.Input((1,), name="income")
    city = keras.Input((1,), name="city", dtype="string")
    lookup = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot", name="lookup")(city)
    joined = keras.layers.Concatenate()([age, income, keras.layers.Reshape((3,))(lookup)])
    model = keras.Model({"age": age, "income": income, "city": city}, keras.layers.Dense(1, name="out")(joined))
    model.compile(optimizer="sgd", loss="mse")
    recorder, _ = _recorder(model, tmp_path)
    assert recorder.coverage().share == 1.0 and recorder.coverage().multiply_adds == 5
    x = {"age": tf.ones((8, 1)), "city": tf.constant([["a"]] * 8), "income": tf.ones((8, 1))}
    callback = tk.ExplainerCallback(tmp_path / "fit", update_freq=1)
    data = tf.data.Dataset.from_tensors((x, tf.zeros((8, 1))))
    model.fit(data, epochs=1, verbose=0, callbacks=[callback])
    assert callback.recorded_steps == [0] and callback.coverage.share == 1.0

    class Failing(keras.layers.Layer):
        def call(self, x):
            if x.shape[0] == 1:  # (only the coverage pass's batch of one)
                raise ValueError("not on a batch of one")
            return x

    inputs = keras.Input((4,))
    failing = keras.Model(inputs, keras.layers.Dense(2, name="d")(Failing()(inputs)))
    coverage = _recorder(failing, tmp_path / "failing")[0].coverage()
    assert coverage.share is None and "a forward pass on one sample failed: ValueError" in coverage.line()


class _Residual(keras.Model):
    def __init__(self):
        super().__init__()
        self.c1 = keras.layers.Dense(6, activation="relu")
        self.c2 = keras.layers.Dense(6)
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(x + self.c2(self.c1(x)))


def test_coverage_of_a_subclassed_model_is_measured_on_the_shape_it_was_called_with(tmp_path):
    """A subclassed model has no symbolic inputs; once called (or built) its input shape is known (a trial's start
    line said "not known (a subclassed model)" for a model called before fit)."""
    model = _Residual()
    model(np.zeros((4, 6), np.float32))
    recorder, _ = _recorder(model, tmp_path)
    coverage = recorder.coverage()
    assert coverage.share == 1.0 and coverage.multiply_adds == 6 * 6 + 6 * 6 + 6 * 2, coverage.line()


def test_the_callback_prints_the_coverage_line_at_the_start_of_training(tmp_path, capsys):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    model.compile("sgd", "mse")
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, roles=("forward",), jit=False)
    model.fit(np.zeros((4, 4), np.float32), np.zeros((4, 3), np.float32), epochs=1, verbose=0, callbacks=[callback])
    assert "tb_matmul_explainer: recording 1 layers (1 of 1 matmuls), 100.0% of the model's multiply-adds" in (
        capsys.readouterr().out
    )
    assert callback.coverage.share == 1.0


def test_the_run_holds_the_not_recorded_list_and_the_report_prints_it_in_model_order(tmp_path, capsys):
    from tb_matmul_explainer import __main__ as cli
    from tb_matmul_explainer import loader

    model = _two_blocks(attention_axes=(1, 2))
    model.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    callback = tk.ExplainerCallback(tmp_path, update_freq=1, roles=("forward",), jit=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tk.UnsupportedLayerWarning)
        model.fit(
            rng.normal(size=(4, 3, 2, 8)).astype(np.float32),
            np.zeros((4, 3), np.float32),
            epochs=1,
            verbose=0,
            callbacks=[callback],
        )
    expected = [(path, callback.skipped[path]) for path in callback.skipped]
    assert [p for p, _ in expected] == [
        f"block_{i}/attention/attention_{w}" for i in (1, 2) for w in ("scores", "values")
    ]
    assert loader.load(str(tmp_path)).not_recorded == {"train": expected}
    assert ("block_2/attention/query", "forward") in loader.load(str(tmp_path)).runs["train"]
    assert cli.main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Not recorded (4):" in out
    assert out.index("block_1/attention/attention_scores: the attention score einsum") < out.index(
        "block_2/attention/attention_values: the attention value einsum"
    )


def test_other_attention_layers_record_their_matmul_products(tmp_path):
    query, value = keras.Input((6, 8)), keras.Input((5, 8))
    dot = keras.layers.Attention(name="dot")([query, value])
    concat = keras.layers.Attention(score_mode="concat", name="concat")([query, value])
    additive = keras.layers.AdditiveAttention(name="additive")([query, value])
    gqa = keras.layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2, name="gqa")(
        query, value
    )
    out = keras.layers.Dense(2, name="head")(keras.layers.Concatenate()([dot, concat, additive, gqa]))
    recorder, messages = _recorder(keras.Model([query, value], out), tmp_path)
    assert recorder.skipped == {} and messages == []
    assert [t.name for t in recorder.targets if t.kind == "attention"] == [
        "dot/attention_scores",
        "dot/attention_values",
        "concat/attention_values",  # (concat and additive scores are sums of tanh: no matmul)
        "additive/attention_values",
        "gqa/attention_scores",
        "gqa/attention_values",
    ]
    per_layer = {path: (macs, recorded) for path, macs, recorded in recorder.coverage().per_layer}
    assert per_layer["dot/attention_scores"] == (6 * 5 * 8, True)  # T x S x d
    assert per_layer["gqa/attention_values"] == (4 * 6 * 5 * 4, True)  # query heads x T x S x head_dim
    assert recorder.coverage().share == 1.0


class _OwnScores(keras.layers.Attention):
    def _calculate_scores(self, query, key):
        return super()._calculate_scores(query, key)


def test_an_attention_that_overrides_its_scores_lists_its_products_as_not_recorded(tmp_path):
    query, value = keras.Input((6, 8)), keras.Input((5, 8))
    out = _OwnScores(name="own")([query, value])
    recorder, messages = _recorder(keras.Model([query, value], out), tmp_path)
    assert sorted(recorder.skipped) == ["own/attention_scores", "own/attention_values"] and len(messages) == 2
    assert all("overrides _calculate_scores" in why for why in recorder.skipped.values())
