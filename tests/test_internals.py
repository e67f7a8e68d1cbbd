"""Every private Keras/TensorFlow API the package reads (all in `tb_matmul_explainer.internals`) is still there and
still means what the package relies on: each test fails loudly, naming the API, when a release changes it."""

import keras
import numpy as np
import tensorflow as tf

from tb_matmul_explainer import internals


def test_layer_tree_is_layer_underscore_layers():
    """Layer._layers: the sublayers a layer tracks (MultiHeadAttention's projections, a nested model's layers)."""
    inner = keras.Sequential([keras.Input((4,), name="input_layer"), keras.layers.Dense(3, name="d")], name="inner")
    outer = keras.Sequential([keras.Input((4,)), inner], name="outer")
    assert hasattr(outer, "_layers"), "Keras removed Layer._layers: the model walk would find no layers"
    assert inner in internals.sublayers(outer)
    assert [layer.name for layer in internals.sublayers(inner)] == ["input_layer", "d"]
    mha = keras.layers.MultiHeadAttention(2, 4, name="mha")
    x = np.zeros((1, 3, 8), np.float32)
    mha(x, x)
    names = {layer.name for layer in internals.sublayers(mha)}
    assert {"query", "key", "value", "attention_output"} <= names, names


def test_own_variables_are_the_layers_own_not_its_sublayers():
    """Layer._trainable_variables / _non_trainable_variables: a layer's own variables (a kernel is found there)."""
    cell = keras.layers.LSTMCell(3)
    cell.build((None, 2))
    names = sorted(v.name for v in internals.own_variables(cell))
    assert names == ["bias", "kernel", "recurrent_kernel"], names
    mha = keras.layers.MultiHeadAttention(2, 4)
    mha.build((1, 3, 8), (1, 3, 8))
    assert internals.own_variables(mha) == [], "MultiHeadAttention now owns variables itself"


def test_an_instance_level_call_replaces_the_classes_call():
    """Layer.__call__ looks `self.call` up at each call: the recorder's patched calls rely on it."""
    layer = keras.layers.Dense(2)
    x = np.ones((1, 3), np.float32)
    layer(x)
    internals.patch_call(layer, lambda inputs, training=None: tf.zeros((1, 2)) + 7.0)
    try:
        np.testing.assert_array_equal(np.asarray(layer(x)), np.full((1, 2), 7.0))
    finally:
        internals.unpatch_call(layer)
    assert "call" not in vars(layer)
    assert not np.allclose(np.asarray(layer(x)), 7.0)


def test_instance_cache_lives_on_the_model_outside_keras_tracking():
    """Layer.__setattr__ bypassed: the cache is a plain list on the instance, not tracked (no weights, no config)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cache = internals.instance_cache(model, "test_cache")
    cache.append(tf.Variable(1.0))
    assert internals.instance_cache(model, "test_cache") is cache and type(cache) is list
    assert len(model.weights) == 2, "Keras tracked the instance cache's contents"


def test_make_function_is_keras_train_function_factory():
    """Model._make_function(step): the callback builds its instrumented train function with it."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    assert hasattr(model, "_make_function"), "Keras removed Model._make_function"
    seen = []

    def step(data):
        seen.append(True)
        return model.train_step(data)

    function = internals.make_function(model, step)
    data = tf.data.Dataset.from_tensor_slices((np.ones((4, 2), np.float32), np.ones((4, 1), np.float32))).batch(4)
    logs = function(iter(data))
    assert seen and "loss" in logs


def test_causal_padding_is_the_left_padding_of_a_causal_conv1d():
    """Conv1D._compute_causal_padding: [[0, 0], [(kernel - 1) * dilation, 0], [0, 0]]."""
    layer = keras.layers.Conv1D(2, 3, padding="causal")
    layer.build((None, 5, 1))
    assert [list(p) for p in internals.causal_padding(layer)] == [[0, 0], [2, 0], [0, 0]]


def test_first_inputs_follows_the_functional_graph():
    """Layer._inbound_nodes, Node.input_tensors, KerasTensor._keras_history: the producer of a layer's input."""
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(3, name="hidden")
    out = keras.layers.Dense(2, name="out")
    out(hidden(inputs))
    assert [op.name for op in internals.first_inputs(out)] == ["hidden"], (
        "Keras changed _inbound_nodes / input_tensors / _keras_history: producers would silently become unknown"
    )
    assert [op.name for op in internals.first_inputs(hidden)] == ["features"]


def test_built_input_shape_is_the_shape_a_subclassed_model_was_called_with():
    """Layer._build_shapes_dict: a subclassed model's input shape once called (None before)."""

    class Model(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Model()
    assert internals.built_input_shape(model) is None
    model(np.zeros((3, 5), np.float32))
    assert internals.built_input_shape(model) == (3, 5), (
        "Keras changed Layer._build_shapes_dict: a subclassed model's coverage would say its input shape is not known"
    )


def test_call_ranks_order_the_calls_as_keras_runs_them():
    """Functional._nodes_by_depth: in this Siamese model Keras runs the shared conv's later-made call (on b)
    first, and `first_inputs` with the ranks names its input (the calls are counted as Keras makes them)."""
    a, b = keras.Input((6, 6, 1), name="a"), keras.Input((6, 6, 1), name="b")
    conv, flat, dense = keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(2)
    model = keras.Model([a, b], keras.layers.Concatenate()([dense(flat(conv(a))), dense(flat(conv(b)))]))
    ran = []
    call = conv.call
    conv.call = lambda x, *args, **kwargs: (ran.append(float(np.asarray(x).max())), call(x, *args, **kwargs))[1]
    model([np.zeros((1, 6, 6, 1), np.float32), np.ones((1, 6, 6, 1), np.float32)])
    assert ran == [1.0, 0.0], "Keras no longer runs the b branch first here: choose another model for this test"
    ranks = internals.call_ranks(model)
    assert [op.name for op in internals.first_inputs(conv)] == ["a"]
    assert [op.name for op in internals.first_inputs(conv, ranks)] == ["b"], (
        "Keras changed Functional._nodes_by_depth or its order: a shared layer's producer would not be the call "
        "its records explain"
    )
    assert internals.call_ranks(keras.layers.Dense(2)) == {}
    # KerasHistory.node_index: the model inputs that call reads, through the layers called before it.
    assert internals.first_call_sources(dense, ranks) in {("a",), ("b",)}
    assert internals.first_call_sources(conv, ranks) == ("b",) and internals.first_call_sources(conv) == ("a",)
    assert internals.first_call_sources(model.layers[-1]) == ()  # (called once)


def test_default_writer_sets_tensorflows_private_summary_state(tmp_path):
    """tensorflow.python.ops.summary_ops_v2._summary_state.writer: set without the flush of as_default()."""
    assert internals.summary_state() is not None, (
        "TensorFlow removed summary_ops_v2._summary_state.writer: every record would flush the writer"
    )
    writer = tf.summary.create_file_writer(str(tmp_path))
    before = internals.summary_state().writer
    with internals.default_writer(writer):
        assert internals.summary_state().writer is writer
        assert tf.summary.scalar("x", 1.0, step=0)
    assert internals.summary_state().writer is before


def _attention(**kwargs):
    layer = keras.layers.MultiHeadAttention(2, 4, value_dim=3, **kwargs)
    rng = np.random.default_rng(0)
    query, value = (tf.constant(rng.normal(size=(2, n, 5)).astype(np.float32)) for n in (3, 4))
    layer(query, value)
    return layer, query, value


def test_multi_head_attention_calls_compute_attention_on_the_instance():
    """MultiHeadAttention.call runs `self._compute_attention(query, key, value, attention_mask, training,
    return_attention_scores, [use_causal_mask=True])`: the recorder's replacement of it relies on that."""
    layer, query, value = _attention()
    assert not internals.overrides_compute_attention(layer)
    seen = []

    def compute(q, k, v, attention_mask=None, training=None, return_attention_scores=False, use_causal_mask=False):
        seen.append((tuple(q.shape), tuple(k.shape), tuple(v.shape), attention_mask is not None or use_causal_mask))
        return tf.zeros((2, 3, 2, 3)), None

    internals.override_compute_attention(layer, compute)
    try:
        out = layer(query, query, use_causal_mask=True)
    finally:
        internals.restore_compute_attention(layer)
    assert "_compute_attention" not in vars(layer)
    assert seen == [((2, 3, 2, 4), (2, 3, 2, 4), (2, 3, 2, 3), True)], seen
    np.testing.assert_allclose(np.asarray(out), np.asarray(layer.output_dense(tf.zeros((2, 3, 2, 3)))), atol=1e-6)


def test_multi_head_attention_einsums_are_the_ones_the_recorder_reproduces():
    """_dot_product_equation, _combine_equation, _inverse_sqrt_key_dim, _masked_softmax, _dropout_layer and
    _compute_causal_mask: composed as `layers/attention.py` composes them, they give Keras' own explicit path."""
    layer, query, value = _attention()
    assert internals.attention_equations(layer) == ("aecd,abcd->acbe", "acbe,aecd->abcd")
    assert internals.attention_scale(layer) == 1.0 / np.sqrt(4.0)
    q, k, v = layer.query_dense(query), layer.key_dense(value), layer.value_dense(value)
    mask = tf.constant(np.random.default_rng(1).random((2, 3, 4)) > 0.3)
    want, want_probabilities = layer._compute_attention(q, k, v, mask, False, return_attention_scores=True)
    score_equation, value_equation = internals.attention_equations(layer)
    scores = tf.einsum(score_equation, k, q * internals.attention_scale(layer))
    probabilities = internals.attention_softmax(layer, scores, mask)
    got = tf.einsum(value_equation, internals.attention_dropout(layer, probabilities, False), v)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(probabilities), np.asarray(want_probabilities))
    assert np.all(np.asarray(probabilities)[~np.broadcast_to(mask.numpy()[:, None], probabilities.shape)] == 0)
    causal = internals.attention_causal_mask(layer, q, q)
    causal = np.broadcast_to(np.asarray(causal), (2, 3, 3))  # ([1, T, S] broadcast over the batch)
    np.testing.assert_array_equal(causal, np.tril(np.ones((3, 3), bool))[None].repeat(2, 0))
    dropping, *_ = _attention(dropout=0.5)
    ones = tf.ones((2, 2, 3, 4))
    assert np.any(np.asarray(internals.attention_dropout(dropping, ones, True)) == 0)
    assert internals.attention_dropout(layer, ones, True) is ones


def _group_query_attention(**kwargs):
    layer = keras.layers.GroupQueryAttention(3, 4, 2, **kwargs)
    rng = np.random.default_rng(0)
    query, value = (tf.constant(rng.normal(size=(2, n, 5)).astype(np.float32)) for n in (3, 4))
    layer(query, value)
    return layer, {sub.name: sub for sub in internals.sublayers(layer)}, query, value


def test_group_query_attention_calls_compute_attention_on_the_instance_with_repeated_heads():
    """GroupedQueryAttention.call repeats K and V to the query heads, then runs `self._compute_attention(query,
    key, value, attention_mask=..., training=..., [use_causal_mask=True])`: `use_causal_mask` when the causal mask
    is its only mask, the mask built in `call` otherwise (here a sliding window)."""
    layer, dense, query, _ = _group_query_attention()
    assert not internals.overrides_compute_attention(layer)
    seen = []

    def compute(q, k, v, attention_mask=None, training=None, return_attention_scores=False, use_causal_mask=False):
        seen.append((tuple(q.shape), tuple(k.shape), tuple(v.shape), attention_mask is not None, use_causal_mask))
        return tf.zeros((2, 3, 4, 3)), None

    internals.override_compute_attention(layer, compute)
    try:
        out = layer(query, query, use_causal_mask=True)
        layer.sliding_window = 2
        layer(query, query, use_causal_mask=True)
    finally:
        internals.restore_compute_attention(layer)
    assert "_compute_attention" not in vars(layer)
    assert seen == [((2, 3, 4, 3),) * 3 + (False, True), ((2, 3, 4, 3),) * 3 + (True, False)], seen
    want = dense["attention_output"](tf.zeros((2, 3, 4, 3)))
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), atol=1e-6)

    class Custom(keras.layers.GroupQueryAttention):
        def _compute_attention(self, *args, **kwargs):
            return super()._compute_attention(*args, **kwargs)

    assert internals.overrides_compute_attention(Custom(3, 4, 2))


def test_group_query_attention_einsums_are_the_ones_the_recorder_reproduces():
    """_dot_product_equation (query first), _combine_equation, _inverse_sqrt_head_dim, _masked_softmax,
    _dropout_layer and _compute_causal_mask of GroupedQueryAttention, composed as `layers/attention.py` composes
    them, give Keras' own result."""
    layer, dense, query, value = _group_query_attention()
    assert internals.attention_equations(layer) == ("bquh,bkuh->buqk", "buqk,bkuh->bquh")
    assert internals.attention_scale(layer) == 1.0 / np.sqrt(3.0)
    q = dense["query"](query)
    k, v = (tf.repeat(dense[name](value), 2, axis=2) for name in ("key", "value"))
    mask = tf.constant(np.random.default_rng(1).random((2, 3, 4)) > 0.3)
    want, _ = layer._compute_attention(q, k, v, attention_mask=mask, training=False)
    score_equation, value_equation = internals.attention_equations(layer)
    scores = tf.einsum(score_equation, q * internals.attention_scale(layer), k)
    probabilities = internals.attention_softmax(layer, scores, mask)
    got = tf.einsum(value_equation, internals.attention_dropout(layer, probabilities, False), v)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(probabilities)[~np.broadcast_to(mask.numpy()[:, None], probabilities.shape)] == 0)
    causal = np.broadcast_to(np.asarray(internals.attention_causal_mask(layer, q, q)), (2, 3, 3))
    np.testing.assert_array_equal(causal, np.tril(np.ones((3, 3), bool))[None].repeat(2, 0))
    dropping, *_ = _group_query_attention(dropout=0.5)
    ones = tf.ones((2, 4, 3, 4))
    assert np.any(np.asarray(internals.attention_dropout(dropping, ones, True)) == 0)
    assert internals.attention_dropout(layer, ones, True) is ones


def test_attention_calls_calculate_and_apply_scores_on_the_instance():
    """Attention.call runs `self._calculate_scores(query=, key=)` and `self._apply_scores(scores=, value=,
    scores_mask=, training=)` -> (output, weights); AdditiveAttention inherits `call` and `_apply_scores`."""
    rng = np.random.default_rng(0)
    query, value = (tf.constant(rng.normal(size=(2, n, 4)).astype(np.float32)) for n in (3, 5))
    for layer in (keras.layers.Attention(), keras.layers.AdditiveAttention()):
        layer([query, value])
        assert not internals.overrides_attention_scores(layer)
        seen = []

        def calculate(query, key, seen=seen):
            seen.append(("scores", tuple(query.shape), tuple(key.shape)))
            return tf.zeros((2, 3, 5))

        def apply(scores, value, scores_mask=None, training=False, seen=seen):
            seen.append(("apply", tuple(scores.shape), tuple(value.shape), scores_mask is not None))
            return tf.ones((2, 3, 4)), tf.zeros((2, 3, 5))

        internals.override_attention_scores(layer, calculate, apply)
        try:
            out = layer([query, value], use_causal_mask=True)
        finally:
            internals.restore_attention_scores(layer)
        assert "_calculate_scores" not in vars(layer) and "_apply_scores" not in vars(layer)
        assert seen == [("scores", (2, 3, 4), (2, 5, 4)), ("apply", (2, 3, 5), (2, 5, 4), True)], seen
        np.testing.assert_array_equal(np.asarray(out), np.ones((2, 3, 4)))

    class Custom(keras.layers.AdditiveAttention):
        def _apply_scores(self, *args, **kwargs):
            return super()._apply_scores(*args, **kwargs)

    assert internals.overrides_attention_scores(Custom())


def test_attention_weights_are_the_ones_keras_applies():
    """`_apply_scores` of the layer's class returns (weights @ value, weights): the weights after the mask and
    softmax are the attention scores Keras returns, and their product with V its output."""
    rng = np.random.default_rng(1)
    query, value = (tf.constant(rng.normal(size=(2, n, 4)).astype(np.float32)) for n in (3, 5))
    layer = keras.layers.Attention()
    want, want_weights = layer([query, value], use_causal_mask=True, return_attention_scores=True)
    scores = tf.linalg.matmul(query, value, transpose_b=True)
    causal = tf.constant(np.tril(np.ones((3, 5), bool))[None])
    weights = internals.attention_weights(layer, scores, value, causal, False)
    np.testing.assert_allclose(np.asarray(weights), np.asarray(want_weights), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(tf.linalg.matmul(weights, value)), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_other_attention_axes_give_other_equations():
    """The equations name the attention axes: the adapter takes only the default ones (3-D inputs, axis 1)."""
    layer = keras.layers.MultiHeadAttention(2, 4, attention_axes=(1, 2))
    x = np.zeros((1, 3, 3, 5), np.float32)
    layer(x, x)
    assert internals.attention_equations(layer) != ("aecd,abcd->acbe", "acbe,aecd->abcd")


def test_rnn_loop_is_keras_backend_rnn():
    """keras.src.backend.rnn: Keras' own RNN loop (what RNN.inner_loop runs), with masking and go_backwards; the
    recurrent layers' recording calls run their cells in it."""
    x = tf.constant(np.arange(12, dtype=np.float32).reshape(1, 4, 3))
    mask = tf.constant([[True, True, False, True]])

    def step(inputs, states):
        total = states[0] + 2 * tf.reduce_sum(inputs, axis=-1, keepdims=True)
        return total, [total]

    last, outputs, states = internals.rnn_loop(
        step, x, [tf.zeros((1, 1))], go_backwards=True, mask=mask, return_all_outputs=True
    )
    # Backwards over steps 3, 2 (masked: the state carried), 1, 0; each step adds 2 * its row's sum.
    assert outputs[0, :, 0].numpy().tolist() == [60.0, 60.0, 84.0, 90.0]
    assert float(last[0, 0]) == 90.0 and float(states[0][0, 0]) == 90.0


def _events(log_dir):
    """(tag, step, float value) of every summary value in the event files under `log_dir`."""
    from tensorflow.core.util import event_pb2

    found = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(raw.numpy())
            for value in event.summary.value:
                found.append((value.tag, event.step, float(tf.make_ndarray(value.tensor))))
    return found


def test_write_summary_writes_without_a_conditional_when_known_at_trace_time(tmp_path):
    """summary_ops_v2._summary_state (.writer, .is_recording, .is_recording_distribution_strategy) and the file
    writer's ._resource: with `record_if(True)` the write is a bare WriteSummary op, and the event is the one
    `tf.summary.write` writes; with a recording condition only the graph knows, the conditional stays."""
    writer = tf.summary.create_file_writer(str(tmp_path))
    md = tf.compat.v1.SummaryMetadata(plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="p"))

    @tf.function
    def write(value, step, record):
        with writer.as_default(), tf.summary.record_if(record):
            return internals.write_summary("t", value, step, md)

    decided = write.get_concrete_function(tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int64), True)
    op_types = {op.type for op in decided.graph.get_operations()}
    assert "WriteSummary" in op_types and not op_types & {"If", "StatelessIf"}, op_types
    assert bool(write(tf.constant(1.5), tf.constant(3, tf.int64), True))
    assert not bool(write(tf.constant(2.5), tf.constant(4, tf.int64), False))
    graph_decides = write.get_concrete_function(
        tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.bool)
    )
    assert {"If", "StatelessIf"} & {op.type for op in graph_decides.graph.get_operations()}
    assert bool(write(tf.constant(4.5), tf.constant(5, tf.int64), tf.constant(True)))
    assert not bool(write(tf.constant(5.5), tf.constant(6, tf.int64), tf.constant(False)))
    writer.flush()
    assert _events(tmp_path) == [("t", 3, 1.5), ("t", 5, 4.5)]
    assert not bool(internals.write_summary("t", tf.constant(1.0), 7, md))  # no default writer: nothing written
