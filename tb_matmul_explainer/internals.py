"""Every access to private Keras and TensorFlow APIs, in one place.

Nothing else in the package reads or writes a private attribute of a Keras or TensorFlow object. Each accessor
below names the private API it relies on; tests/test_internals.py exercises every one of them on the installed
releases and fails loudly (naming the API) when a release renames or removes one, rather than letting the
recorder silently record less.

  sublayers        Layer._layers                          the layer tree (the model walk, Keras paths)
  own_variables    Layer._trainable_variables,            the variables a layer owns itself (not its sublayers')
                   Layer._non_trainable_variables
  patch_call       Layer.__call__ calling `self.call`     an instance-level `call` replaces the class's while tracing
  instance_cache   Layer.__setattr__ (bypassed)           a list kept on a model, out of Keras' attribute tracking
  make_function    Model._make_function                   Keras' own train-function factory around a step
  causal_padding   Conv1D._compute_causal_padding         the left padding of a causal Conv1D
  first_inputs     Layer._inbound_nodes, Node.input_tensors, KerasTensor._keras_history
                                                          the operations that produced a layer's first call's inputs
  built_input_shape Layer._build_shapes_dict             the input shape a subclassed model was built with
  first_call_sources  Layer._inbound_nodes, KerasHistory.node_index
                                                          the model inputs a shared layer's first call reads
  call_ranks       Functional._nodes_by_depth, the order of Function._run_through_graph
                                                          which call of a shared layer Keras runs first
  rnn_loop         keras.src.backend.rnn                  Keras' own RNN loop (masking, go_backwards, unroll), which the
                                                          recurrent layers run their cells in
  default_writer   tensorflow.python.ops.summary_ops_v2._summary_state
                                                          the default summary writer, set without a flush on exit
  write_summary    summary_ops_v2._summary_state (.writer, .is_recording, .is_recording_distribution_strategy),
                   _ResourceSummaryWriter._resource, gen_summary_ops.write_summary
                                                          a summary write without a conditional where the decision is
                                                          known at trace time
  attention        MultiHeadAttention and GroupedQueryAttention: ._compute_attention (called by `call` as
                   `self._compute_attention`), ._dot_product_equation, ._combine_equation, ._masked_softmax,
                   ._dropout_layer, ._compute_causal_mask; MultiHeadAttention._inverse_sqrt_key_dim,
                   GroupedQueryAttention._inverse_sqrt_head_dim
                                                          the score and value einsums between the projections
  scores           Attention/AdditiveAttention._calculate_scores, ._apply_scores (called by `call` on the instance)
                                                          the score and value products of single-head attention
"""

import tensorflow as tf


def sublayers(layer):
    """The layers directly tracked by `layer` (Keras' `Layer._layers`), in the order Keras tracked them."""
    return list(getattr(layer, "_layers", None) or [])


def own_variables(layer):
    """The variables `layer` created itself, not those of its sublayers."""
    return list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", []))


def patch_call(layer, call):
    """Makes `layer(...)` run `call` instead of the class's `call` (Keras' `Layer.__call__` looks `self.call` up at
    each call, so an instance attribute wins). Raises RuntimeError if the layer already has one."""
    if "call" in vars(layer):
        raise RuntimeError(
            f"layer {layer.name!r} already has an instance-level `call`; is another recorder instrumenting it?"
        )
    vars(layer)["call"] = call


def unpatch_call(layer):
    """Undoes `patch_call` (nothing if the layer has no instance-level `call`)."""
    vars(layer).pop("call", None)


def instance_cache(layer, name):
    """A list stored on `layer` under `_<name>` (created empty on first use), written into the instance's
    `__dict__` directly so that Keras' attribute tracking neither wraps nor saves it; it lives as long as the
    layer."""
    return vars(layer).setdefault("_" + name, [])


def make_function(model, step_function):
    """Keras' own train function around `step_function(data)` (`Model._make_function`: the same distribution,
    `steps_per_execution` loop and `tf.function` options as the model's `train_function`)."""
    return model._make_function(step_function)


def causal_padding(layer):
    """The `[[0, 0], [left, 0], [0, 0]]` padding a causal Conv1D applies before its VALID convolution."""
    return layer._compute_causal_padding()


def _first_call(layer, ranks=None):
    """The node of `layer`'s first call: the one Keras runs first where `ranks` places its calls, else the first
    made; None for a layer never called symbolically."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    ranked = [n for n in nodes if id(n) in (ranks or {})]
    return min(ranked, key=lambda n: ranks[id(n)]) if ranked else (nodes[0] if nodes else None)


def first_inputs(layer, ranks=None):
    """The operations (layers) that produced the inputs of `layer`'s first call in a functional graph ([] if
    unknown: a subclassed model's layers, a layer never called symbolically). "First" is the call Keras runs first
    where `ranks` ({id(node): position}, `call_ranks`) places the layer's calls, else the first one made."""
    node = _first_call(layer, ranks)
    if node is None:
        return []
    tensors = getattr(node, "input_tensors", None) or []
    history = [getattr(t, "_keras_history", None) for t in tensors]
    return [h.operation for h in history if h is not None]


def built_input_shape(model):
    """The input shape a built model without symbolic inputs (a subclassed model) was built or first called with
    (`Layer._build_shapes_dict`), where it had one input; None otherwise."""
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) != 1:
        return None
    shape = next(iter(shapes.values()))
    if not isinstance(shape, (tuple, list)) or not all(d is None or isinstance(d, int) for d in shape):
        return None
    return tuple(shape)


def first_call_sources(layer, ranks=None):
    """For a layer called several times in the graph (shared): the names of the model inputs (InputLayers) that
    the inputs of its first call (`first_inputs`) are computed from, following each tensor to the call that made it
    (`KerasTensor._keras_history.node_index`), sorted; () for a layer called once, or where the graph does not
    say."""
    import keras

    if len(getattr(layer, "_inbound_nodes", None) or []) < 2:
        return ()
    sources, seen, todo = set(), set(), [_first_call(layer, ranks)]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for t in getattr(node, "input_tensors", None) or []:
            history = getattr(t, "_keras_history", None)
            if history is None:
                continue
            made_by = history.operation
            if isinstance(made_by, keras.layers.InputLayer):
                sources.add(made_by.name)
            else:
                made = getattr(made_by, "_inbound_nodes", None) or []
                if history.node_index < len(made):
                    todo.append(made[history.node_index])
    return tuple(sorted(sources))


def call_ranks(model):
    """{id(node): position} of the calls in `model`'s functional graph in the order Keras runs them (deepest
    first, as `Function._run_through_graph`): a layer shared by two branches is run on the later-made branch first
    where that branch is deeper in Keras' ordering. {} for a model without a graph (subclassed)."""
    by_depth = getattr(model, "_nodes_by_depth", None) or {}
    nodes = [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]
    return {id(node): i for i, node in enumerate(nodes)}


def rnn_loop(step_function, inputs, initial_states, **options):
    """Keras' backend RNN loop (`keras.src.backend.rnn`, what `RNN.inner_loop` runs): (last output, outputs,
    states) of `step_function(inputs_t, states) -> (output, new_states)` over the time axis of `inputs` (nested
    [B, T, ...] tensors); options: go_backwards, mask, unroll, input_length, zero_output_for_mask,
    return_all_outputs."""
    from keras.src import backend

    return backend.rnn(step_function, inputs, initial_states, **options)


class default_writer:
    """`writer.as_default()` without its flush on exit (a flush op per record would cost file I/O per record; the
    writer flushes on its own schedule). Falls back to the public `as_default()` if TensorFlow's private summary
    state is gone (tests/test_internals.py says so loudly)."""

    def __init__(self, writer):
        self._writer = writer

    def __enter__(self):
        self._state = summary_state()
        if self._state is None:
            self._context = self._writer.as_default()
            self._context.__enter__()
            return
        self._context = None
        self._previous = self._state.writer
        self._state.writer = self._writer

    def __exit__(self, *exc):
        if self._context is not None:
            return self._context.__exit__(*exc)
        self._state.writer = self._previous
        return False


def summary_state():
    """TensorFlow's thread-local summary state (holding `.writer`), or None if this release has none."""
    from tensorflow.python.ops import summary_ops_v2

    state = getattr(summary_ops_v2, "_summary_state", None)
    return state if state is not None and hasattr(state, "writer") else None


def write_summary(tag, tensor, step, metadata):
    """`tf.summary.write(tag, tensor, step, metadata=metadata)` (a bool tensor: written), without its conditional
    when whether to write is known at trace time (a default writer on a file, `record_if` and the distribution
    strategy's recording flag plain values, as inside the recorder's `record_if(True)`): inside a traced step each
    conditional adds a branch function to trace and optimise and ~10 ops to run per write. Falls back to
    `tf.summary.write` otherwise."""
    state = summary_state()
    decided = None if state is None else _recording_decided(state)
    if decided is None:
        return tf.summary.write(tag, tensor, step, metadata=metadata)
    if not decided:
        return tf.constant(False)
    from tensorflow.python.ops import gen_summary_ops

    with tf.device("cpu:0"):
        written = gen_summary_ops.write_summary(
            state.writer._resource, step, tensor, tag, getattr(metadata, "SerializeToString", lambda: metadata)()
        )
    with tf.control_dependencies([written]):
        return tf.constant(True)


def _recording_decided(state):
    """True/False when `tf.summary.should_record_summaries()` is a trace-time constant and the default writer is
    a plain file writer (no DTensor mesh); None when only the graph can tell."""
    writer = state.writer
    if writer is None:
        return False
    if not hasattr(writer, "_resource") or getattr(writer, "_mesh", None) is not None:
        return None
    flags = []
    for flag, default in ((state.is_recording, True), (state.is_recording_distribution_strategy, True)):
        if callable(flag):
            return None
        value = default if flag is None else tf.get_static_value(flag)
        if value is None:
            return None
        flags.append(bool(value))
    return all(flags)


def override_compute_attention(layer, compute):
    """Makes `layer` (a MultiHeadAttention or GroupQueryAttention) run `compute(query, key, value,
    attention_mask=None, training=None, return_attention_scores=False, use_causal_mask=False)` instead of its
    `_compute_attention` (its `call` looks it up on the instance at each call). Raises RuntimeError if the layer
    already has one."""
    if "_compute_attention" in vars(layer):
        raise RuntimeError(f"layer {layer.name!r} already has an instance-level `_compute_attention`")
    vars(layer)["_compute_attention"] = compute


def restore_compute_attention(layer):
    """Undoes `override_compute_attention` (nothing if the layer has no instance-level one)."""
    vars(layer).pop("_compute_attention", None)


def _attention_class(layer):
    """The Keras attention class `layer` is an instance of: MultiHeadAttention or GroupQueryAttention."""
    from keras.layers import GroupQueryAttention, MultiHeadAttention

    return GroupQueryAttention if isinstance(layer, GroupQueryAttention) else MultiHeadAttention


def overrides_compute_attention(layer):
    """Whether `layer`'s class replaces its Keras class's `_compute_attention` (its einsums are then unknown)."""
    return type(layer)._compute_attention is not _attention_class(layer)._compute_attention


def attention_equations(layer):
    """(score equation, value equation `probabilities, value -> output`) of a built MultiHeadAttention (score
    operands `key, query`) or GroupQueryAttention (`query, key`): `_dot_product_equation`, `_combine_equation`."""
    return layer._dot_product_equation, layer._combine_equation


def attention_scale(layer):
    """The factor the layer multiplies the projected query by before the score einsum: 1/sqrt(key_dim)
    (MultiHeadAttention), 1/sqrt(head_dim) (GroupQueryAttention)."""
    from keras.layers import GroupQueryAttention

    return layer._inverse_sqrt_head_dim if isinstance(layer, GroupQueryAttention) else layer._inverse_sqrt_key_dim


def attention_softmax(layer, scores, attention_mask):
    """The layer's masked softmax of `scores` (masked positions get probability 0)."""
    return layer._masked_softmax(scores, attention_mask)


def attention_dropout(layer, probabilities, training):
    """The layer's dropout of the attention probabilities (none at rate 0)."""
    return layer._dropout_layer(probabilities, training=training) if layer.dropout > 0.0 else probabilities


def attention_causal_mask(layer, query, value):
    """The layer's causal mask for the projected query and value (`[T, S]` lower triangular, with a
    leading axis that broadcasts over the batch)."""
    return layer._compute_causal_mask(query, value)


def override_attention_scores(layer, calculate_scores=None, apply_scores=None):
    """Makes `layer` (a Keras Attention or AdditiveAttention) run `calculate_scores(query, key) -> scores` and
    `apply_scores(scores, value, scores_mask=None, training=False) -> (output, weights)` (those not None) instead
    of its `_calculate_scores` and `_apply_scores` (its `call` looks them up on the instance, with keyword
    arguments). Raises RuntimeError if the layer already has one."""
    overrides = {"_calculate_scores": calculate_scores, "_apply_scores": apply_scores}
    if any(name in vars(layer) for name in overrides):
        raise RuntimeError(f"layer {layer.name!r} already has an instance-level `_calculate_scores`/`_apply_scores`")
    vars(layer).update({name: f for name, f in overrides.items() if f is not None})


def restore_attention_scores(layer):
    """Undoes `override_attention_scores`."""
    for name in ("_calculate_scores", "_apply_scores"):
        vars(layer).pop(name, None)


def overrides_attention_scores(layer):
    """Whether `layer`'s class replaces the `_calculate_scores` or `_apply_scores` of the Keras class it extends
    (Attention or AdditiveAttention): its products are then unknown."""
    from keras.layers import AdditiveAttention, Attention

    base = AdditiveAttention if isinstance(layer, AdditiveAttention) else Attention
    return any(getattr(type(layer), name) is not getattr(base, name) for name in ("_calculate_scores", "_apply_scores"))


def attention_weights(layer, scores, value, scores_mask, training):
    """The attention weights (masked softmax of `scores`, after dropout when training) of a Keras Attention or
    AdditiveAttention, from its class's own `_apply_scores` (whose product with `value`, unused, a traced graph
    drops)."""
    _, weights = type(layer)._apply_scores(
        layer, scores=scores, value=value, scores_mask=scores_mask, training=training
    )
    return weights


__all__ = [
    "attention_causal_mask",
    "attention_dropout",
    "attention_equations",
    "attention_scale",
    "attention_softmax",
    "attention_weights",
    "built_input_shape",
    "causal_padding",
    "default_writer",
    "call_ranks",
    "first_call_sources",
    "first_inputs",
    "instance_cache",
    "make_function",
    "override_attention_scores",
    "override_compute_attention",
    "overrides_attention_scores",
    "overrides_compute_attention",
    "own_variables",
    "patch_call",
    "restore_attention_scores",
    "restore_compute_attention",
    "rnn_loop",
    "sublayers",
    "summary_state",
    "unpatch_call",
]
