"""Activation functions: when an activation is *inactive* (passes almost no gradient), per Keras activation.

A layer computes z = x.W + b, then a = f(z); backward, dJ/dz = dJ/da * f'(z). The activation is inactive at a
cell when |f'(z)| <= INACTIVE_SLOPE x the largest slope f can have (`Activation.max_slope`): ReLU off (z <= 0),
ReLU6 off or clipped, sigmoid/tanh/softplus/ELU/SELU/GELU/SiLU saturated. f'(z) is the derivative TensorFlow's own
gradient uses (autodiff of f), so the classification sees exactly what backpropagation sees. A unit whose
activation is inactive for almost every input is dead: no gradient reaches its weights.

Elementwise activations have f'(z) per cell. `softmax` is not elementwise: its inactive cells are those whose
diagonal slope s(1 - s) is at most INACTIVE_SLOPE x 1/4 (the output saturated at 0 or 1); there is no elementwise
dJ/dz = dJ/da * f'(z) for it, so it has no activation-gradient record (`Activation.elementwise` is False).
Activations whose slope has no bound (exponential) or that are not covered are judged against the batch's own
largest slope (`max_slope` None). `linear` has no activation step at all (`describe` returns None).
"""

import dataclasses

import keras
import tensorflow as tf

INACTIVE_SLOPE = 0.01

# The largest |f'(z)| of each built-in (with Keras' default parameters).
_MAX_SLOPE = {
    "relu": 1.0,
    "relu6": 1.0,
    "leaky_relu": 1.0,
    "elu": 1.0,
    "selu": 1.0507009873554805 * 1.6732632423543772,
    "gelu": 1.1289,
    "silu": 1.0998,
    "swish": 1.0998,
    "sigmoid": 0.25,
    "hard_sigmoid": 1.0 / 6.0,
    "tanh": 1.0,
    "softplus": 1.0,
    "softmax": 0.25,
    "mish": 1.0886,
    "softsign": 1.0,
    "celu": 1.0,
    "hard_silu": 1.5,
    "hard_swish": 1.5,
    "hard_tanh": 1.0,
    "log_sigmoid": 1.0,
    "sparse_plus": 1.0,
    "squareplus": 1.0,
    "tanh_shrink": 1.0,
    "sparse_sigmoid": 0.5,
    "soft_shrink": 1.0,
    "hard_shrink": 1.0,
    "threshold": 1.0,
}
_NOT_ELEMENTWISE = ("softmax", "log_softmax", "sparsemax", "glu")


@dataclasses.dataclass(frozen=True)
class Activation:
    """A layer's activation: its Keras name, the function, and how its slope is judged."""

    name: str
    fn: object
    max_slope: float = None  # None: judged against the batch's largest slope
    elementwise: bool = True


def name_of(fn):
    """The Keras name of an activation function (`keras.activations.serialize`), or its `__name__`."""
    try:
        name = keras.activations.serialize(fn)
    except (ValueError, TypeError, AttributeError):
        name = None
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return name if isinstance(name, str) else getattr(fn, "__name__", type(fn).__name__)


def describe(fn):
    """The `Activation` of a layer's `activation` attribute, or None for none / linear."""
    if fn is None:
        return None
    name = name_of(fn)
    if name == "linear":
        return None
    if name in _NOT_ELEMENTWISE:
        return Activation(name, fn, _MAX_SLOPE.get(name), elementwise=False)
    return Activation(name, fn, _MAX_SLOPE.get(name))


def slope(activation, z):
    """f'(z) per cell (float32, z's shape): autodiff of an elementwise f; s(1 - s) for softmax."""
    z = tf.cast(z, tf.float32)
    if not activation.elementwise:
        s = tf.nn.softmax(z, axis=-1)
        return s * (1.0 - s)
    with tf.GradientTape() as tape:
        tape.watch(z)
        a = tf.cast(activation.fn(z), tf.float32)
    return tape.gradient(a, z, output_gradients=tf.ones_like(a))


def inactive_threshold(activation, f_slope):
    """float32 scalar: the threshold below which |f'(z)| is inactive, just above INACTIVE_SLOPE x the largest
    slope (`max_slope`, else the batch's largest |f_slope|), so that classing f'(z) with it (Z: |s| < threshold)
    marks exactly the inactive cells. It is the activation-gradient record's threshold of its second operand."""
    reference = activation.max_slope
    if reference is None:
        reference = tf.reduce_max(tf.abs(tf.cast(f_slope, tf.float32)))
    bound = tf.cast(INACTIVE_SLOPE * reference, tf.float32)
    # The next float32 up turns "<= bound" into "< threshold"; never below the smallest normal float (CPUs
    # flush subnormals to zero, and a zero slope must stay inactive when the bound is 0).
    return tf.maximum(tf.math.nextafter(bound, float("inf")), tf.constant(1.1754944e-38, tf.float32))
