"""The recording step prepared for a model: made once, shared by every `ExplainerCallback` that records it alike.

Preparing a recording step costs seconds (a small model) to minutes (ResNet50 on 2 CPU cores): the recorder's
model walk and coverage pass, and above all tracing the instrumented train function and its first run (graph
optimisation, kernel compilation). A callback made again for the same model with the same settings (a new
callback per `fit` call, say) reuses what an earlier one prepared, as long as the model keeps the same compiled
`train_function` (`compile()` makes a new one, and then the step is prepared again). The cache lives on the
model (`internals.instance_cache`), so it goes when the model goes. `first_call_progress` wraps the
instrumented function so that its first call (the trace and the first run) is announced on the console.
"""

import dataclasses
import time

import tensorflow as tf

from tb_matmul_explainer import internals

_CACHE = "matmul_explainer_prepared"


@dataclasses.dataclass
class Prepared:
    """What one model's recording step needs, for one set of settings (`key`)."""

    key: tuple
    pinned: object  # the settings' objects whose ids are in `key` (kept alive so that the ids stay theirs)
    recorder: object  # LayerRecorder
    coverage: object
    plain: object = None  # the model's train_function the instrumented one was made for
    step_variable: tf.Variable = None
    detail_variable: tf.Variable = None
    instrumented: object = None


def settings_key(settings):
    """A hashable key of a settings dict: plain values as they are, sequences element-wise, other objects (layer
    objects, tensors) by identity."""

    def freeze(value):
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        if isinstance(value, (list, tuple)):
            return tuple(freeze(v) for v in value)
        return ("id", id(value))

    return tuple(sorted((name, freeze(value)) for name, value in settings.items()))


def lookup(model, key):
    """The `Prepared` of `model` for `key`, or None."""
    for prepared in internals.instance_cache(model, _CACHE):
        if prepared.key == key:
            return prepared
    return None


def store(model, prepared):
    internals.instance_cache(model, _CACHE).append(prepared)


def step_variable(model):
    """The step counter of an instrumented function (created in the model's strategy scope; one per replica set,
    read on every replica and written by the callback)."""
    return _callback_variable(model, 0, tf.int64, "matmul_explainer_step")


def detail_variable(model):
    """Whether the instrumented function's records keep their unit detail (a bool, written by the callback)."""
    return _callback_variable(model, True, tf.bool, "matmul_explainer_unit_detail")


def _callback_variable(model, initial, dtype, name):
    with model.distribute_strategy.scope():
        return tf.Variable(
            initial,
            dtype=dtype,
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_WRITE,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            name=name,
        )


def build_optimizer(model):
    """Builds an unbuilt optimizer's variables now. Keras otherwise creates them while it traces the first train
    step, and a `tf.function` whose first trace creates variables is traced a second time: building them first
    halves the first recording step's trace when step 0 records."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not getattr(optimizer, "built", True):
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def instrumented_function(model, recorder, step_var, update_freq, detail_var):
    """Keras' own train function around the model's `train_step`, run inside `recorder.recording` at the step
    that `step_var` holds (recording when it is a multiple of `update_freq`; unit detail when `detail_var`
    holds True). Compiled without XLA (summary writes cannot be compiled); the model's own `jit_compile` is left
    as it was."""

    def step(data):
        current = step_var.read_value()
        if model.steps_per_execution > 1:
            with tf.control_dependencies([current]):
                step_var.assign_add(1)
        # One step per call: the function runs only at steps that record (a Python True spares the conditionals).
        record = True if model.steps_per_execution == 1 else tf.equal(current % update_freq, 0)
        with recorder.recording(current, record, detail_var.read_value()):
            return model.train_step(data)

    build_optimizer(model)
    jit = model.jit_compile
    try:
        model.jit_compile = False
        return internals.make_function(model, step)
    finally:
        model.jit_compile = jit


def first_call_progress(function, layers, verbose):
    """`function` announcing its first call on stdout when `verbose` (as the coverage line): "preparing the
    recording step for N layers ..." before, "... ready in S s" after (the trace, graph optimisation and first
    run of the step)."""
    state = {"first": True}

    def call(*args, **kwargs):
        if not (state["first"] and verbose):
            return function(*args, **kwargs)
        state["first"] = False
        print(
            f"tb_matmul_explainer: preparing the recording step for {layers} layers "
            "(first time only; this takes a while) ...",
            flush=True,
        )
        start = time.perf_counter()
        outputs = function(*args, **kwargs)
        print(
            f"tb_matmul_explainer: ... recording step ready in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        return outputs

    return call
