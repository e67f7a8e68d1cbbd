"""The Keras model graph: which layer produced a layer's input.

`producer_of(layer)` follows the layer's first call (the one Keras runs first: `call_ranks`) back through the
functional graph (Sequential models build one too) to the layer that made its input's values, looking through
layers that only move, drop or pool values (a channel that is zero everywhere stays zero through them): Flatten,
Reshape, Permute, Dropout, padding, cropping, pooling, up-sampling. It stops at a layer with more than one input
(Add, Concatenate) and answers (name, kind), kind one of:
  "input"       the model's input, or a preprocessing layer that encodes it (StringLookup, IntegerLookup,
                CategoryEncoding, Hashing, Discretization): data, not a layer's doing (a one-hot's out-of-vocabulary
                slot is zero for every input by construction)
  "activation"  a layer that applies a non-linear activation: Activation, ReLU, LeakyReLU, ELU, PReLU, Softmax,
                or a layer with `activation=` of its own
  "join"        a layer with several inputs (Concatenate, Add, Multiply, ...): its zeros are those of its inputs
  "layer"       anything else (BatchNormalization, Embedding, ...)
or (None, None) where the graph does not say (a subclassed model's layers are called from Python code that Keras
does not trace into a graph; a layer not yet called).

Nested models (a backbone, or a Sequential block, used as a layer of another model) are looked through: a walk that
reaches a nested model's input continues with what feeds the model where it is called, and a nested model that
produced the input is entered at its output layer (`nested_inputs`). A nested model called from Python code (in
a subclassed layer's `call`) is called in no graph: its layers' producer is not known. (A Bidirectional or
TimeDistributed layer's inner layer is not either: `keras/model.py` asks for the wrapper's.)

The functional graph is read through `internals.first_inputs` (private Keras API, tested in
tests/test_internals.py).
"""

import keras

from tb_matmul_explainer import activations, internals

_PASS_THROUGH = tuple(
    getattr(keras.layers, name)
    for name in (
        "Flatten",
        "Reshape",
        "Permute",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "Identity",
        "RepeatVector",
    )
    if hasattr(keras.layers, name)
)
_ZEROING = tuple(
    getattr(keras.layers, name)
    for name in (
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
    )
    if hasattr(keras.layers, name)
)
_ACTIVATION_LAYERS = tuple(
    getattr(keras.layers, name)
    for name in ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax")
    if hasattr(keras.layers, name)
)


_ENCODING_LAYERS = tuple(
    getattr(keras.layers, name)
    for name in ("StringLookup", "IntegerLookup", "CategoryEncoding", "Hashing", "Discretization")
    if hasattr(keras.layers, name)
)


def kind_of(layer):
    """ "input", "activation", "join" or "layer" for a producing layer."""
    if isinstance(layer, (keras.layers.InputLayer, *_ENCODING_LAYERS)):
        return "input"
    if isinstance(layer, _ACTIVATION_LAYERS):
        if isinstance(layer, keras.layers.Activation) and activations.describe(layer.activation) is None:
            return "layer"
        return "activation"
    if activations.describe(getattr(layer, "activation", None)) is not None:
        return "activation"
    if len(internals.first_inputs(layer)) > 1:
        return "join"
    return "layer"


def nested_inputs(layers):
    """{id(InputLayer): its model} for the nested models among `layers` (a model used as a layer of another: a
    backbone, a Sequential block), so that a walk reaching a nested model's input continues where the model is
    called (`_walk`)."""
    owners = {}
    for layer in layers:
        if not isinstance(layer, keras.Model):
            continue
        for t in _symbolic(layer, "inputs"):
            history = getattr(t, "_keras_history", None)
            if history is not None and isinstance(history.operation, keras.layers.InputLayer):
                owners[id(history.operation)] = layer
    return owners


def call_ranks(models):
    """{id(node): position} of the calls in the functional graphs of `models` (the model and its nested models),
    in the order Keras runs them: a shared layer's records explain the call run first, so its producer is that
    call's (`internals.call_ranks`)."""
    ranks = {}
    for model in models:
        if isinstance(model, keras.Model):
            ranks.update(internals.call_ranks(model))
    return ranks


def _resolved(producer, owners, seen, ranks):
    """The layer that made `producer`'s output: through a nested model's input to where the model is called, and
    into a nested model to its output layer. None where that is not known (a nested model called from Python code,
    or with several inputs)."""
    while id(producer) not in seen:
        seen.add(id(producer))
        if id(producer) in owners:  # a nested model's input: what feeds the model
            inputs = internals.first_inputs(owners[id(producer)], ranks)
            if len(inputs) != 1:
                return None
            producer = inputs[0]
        elif isinstance(producer, keras.Model) and len(_symbolic(producer, "outputs")) == 1:
            history = getattr(_symbolic(producer, "outputs")[0], "_keras_history", None)
            if history is None:
                return producer
            producer = history.operation  # a nested model's output: the layer that made it
        else:
            return producer
    return None


def _symbolic(model, attribute):
    """A model's symbolic `inputs` or `outputs` as a list ([] for a subclassed model, which has none)."""
    try:
        tensors = getattr(model, attribute)
    except (AttributeError, ValueError):
        return []
    if tensors is None:
        return []
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def _walk(layer, owners=None, ranks=None):
    """(the producing layer or None, [the pass-through layers looked through, nearest first])."""
    seen, passed = set(), []
    current = layer
    while True:
        inputs = internals.first_inputs(current, ranks)
        if len(inputs) != 1 or id(inputs[0]) in seen:
            return (None if current is layer else current), passed[:-1] if passed else passed
        producer = _resolved(inputs[0], owners or {}, seen, ranks)
        if producer is None:
            return None, passed
        if not isinstance(producer, _PASS_THROUGH):
            return producer, passed
        passed.append(producer)
        current = producer


def producer_of(layer, owners=None, paths=None, ranks=None):
    """(name, kind) of the layer that produced `layer`'s input (see the module docstring), or (None, None);
    `owners` (`nested_inputs`) lets the walk leave and enter nested models; `paths` {id(layer): its Keras path}
    names the producer by its path (a layer inside a nested model) where it has one; `ranks` (`call_ranks`) picks
    the call Keras runs first."""
    producer, _ = _walk(layer, owners, ranks)
    if producer is None:
        return None, None
    return (paths or {}).get(id(producer), producer.name), kind_of(producer)


def zeroed_by(layer, owners=None, ranks=None):
    """Names of the layers between `layer` and its producer that set values to exactly zero (dropout while
    training, zero padding), producer side first: exactly-zero inputs the producer did not make."""
    _, passed = _walk(layer, owners, ranks)
    return tuple(p.name for p in reversed(passed) if isinstance(p, _ZEROING))
