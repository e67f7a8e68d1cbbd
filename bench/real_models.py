"""Models and locally made data for judging the diagnosis on real architectures (nothing is downloaded).

Each entry of `MODELS` is a `Spec`: a builder (a fresh, untrained Keras model that ends in a softmax over
`CLASSES`), an optimizer factory, a data maker `data(samples, seed) -> (x, y)` (y: int class ids) and whether the
model is healthy (False: a planted problem the diagnosis must find). Bench scripts import this module from
`bench/`; a test imports it after putting `bench/` on `sys.path`.

  resnet50          keras.applications.ResNet50(weights=None), 32x32x3 images, Adam(1e-3)        healthy
  mobilenet_v2      keras.applications.MobileNetV2(weights=None), 32x32x3 images, Adam(1e-3)     healthy
  transformer       token ids (length 32) -> Embedding -> 2 blocks of MultiHeadAttention + LayerNorm + FFN
                    -> average pooling -> Dense softmax, Adam(1e-3)                                   healthy
  efficientnet_b0, densenet121, convnext_tiny
                    keras.applications EfficientNetB0, DenseNet121, ConvNeXtTiny (weights=None), 32x32x3
                    images, Adam(1e-3)                                                                healthy
  sigmoid_mlp       8 x Dense(64, sigmoid), RandomNormal(0.1) init, SGD(0.05) (demo/train.py's): vanishing gradients
  relu_mlp          Dense(128, relu) x 2, He init, Adam(1e-3) (demo/train.py's healthy MLP)           healthy
Small ones for tests (seconds, not minutes):
  small_resnet      two BatchNorm residual blocks on 16x16x3 images, Adam(1e-3)                      healthy
  tiny_transformer  one Transformer block, sequences of length 16, Adam(1e-3)                        healthy
Builder only (bench/coverage.py): recurrent (token ids -> Embedding -> LSTM(64) -> GRU(64) -> Dense softmax).
"""

import dataclasses
import os
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

CLASSES = 10
FEATURES = 32  # tabular inputs, as demo/train.py's
VOCAB = 1000


@dataclasses.dataclass(frozen=True)
class Spec:
    build: Callable  # () -> keras.Model (softmax outputs over CLASSES)
    optimizer: Callable  # () -> keras.optimizers.Optimizer
    data: Callable  # (samples, seed) -> (x, y)
    healthy: bool


# ---- data ------------------------------------------------------------------------------------------------------


def image_data(samples, seed, size=32):
    """[samples, size, size, 3] float32 images whose bright row (position = label) makes the label learnable."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=samples)
    x = rng.normal(scale=0.5, size=(samples, size, size, 3)).astype("float32")
    x[np.arange(samples), (y * size) // CLASSES, :, 0] += 2.0
    return x, y.astype("int32")


def token_data(samples, seed, length=32, vocab=VOCAB):
    """[samples, length] int32 token ids; the label is the first token's id modulo CLASSES."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, size=(samples, length)).astype("int32")
    return x, (x[:, 0] % CLASSES).astype("int32")


def tabular_data(samples, seed):
    """[samples, FEATURES] features and the labels of a random teacher network (demo/train.py's data)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, FEATURES)).astype("float32")
    teacher = rng.normal(size=(FEATURES, CLASSES)).astype("float32")
    y = np.argmax(np.tanh(x @ teacher) + 0.1 * rng.normal(size=(samples, CLASSES)), axis=1)
    return x, y.astype("int32")


# ---- models ----------------------------------------------------------------------------------------------------


def resnet50():
    return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=CLASSES)


DEAD_BLOCK = "conv3_block2_2"  # resnet50_dead_block: this block's BatchNorm beta is -10, so its ReLU is off


def resnet50_dead_block():
    """ResNet50 with one planted problem: `DEAD_BLOCK`_bn's beta set to -10, so every unit of `DEAD_BLOCK`_relu
    is off (dead) for every input, and conv3_block2_3_conv reads zeros."""
    model = resnet50()
    bn = model.get_layer(f"{DEAD_BLOCK}_bn")
    bn.beta.assign(np.full(bn.beta.shape, -10.0, np.float32))
    return model


def mobilenet_v2():
    # keras warns that 32x32 is not one of its pretrained sizes; irrelevant with weights=None.
    return keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=CLASSES)


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned [length, dim] embedding of each position to [batch, length, dim] inputs."""

    def build(self, input_shape):
        self.positions = self.add_weight(shape=tuple(input_shape[1:]), initializer="glorot_uniform", name="positions")

    def call(self, x):
        return x + self.positions


def _encoder_block(x, i, dim, heads, ffn):
    attended = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_attention")(x, x)
    x = keras.layers.LayerNormalization(name=f"block{i}_norm1")(keras.layers.Add()([x, attended]))
    h = keras.layers.Dense(ffn, activation="relu", name=f"block{i}_ffn1")(x)
    h = keras.layers.Dense(dim, name=f"block{i}_ffn2")(h)
    return keras.layers.LayerNormalization(name=f"block{i}_norm2")(keras.layers.Add()([x, h]))


def transformer(blocks=2, length=32, vocab=VOCAB, dim=64, heads=4, ffn=128, name="transformer"):
    """Token ids [batch, length] -> token + position embeddings -> `blocks` encoder blocks -> mean -> softmax."""
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(vocab, dim, name="token_embedding")(tokens)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(1, blocks + 1):
        x = _encoder_block(x, i, dim, heads, ffn)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(CLASSES, activation="softmax", name="classifier")(x), name=name)


def tiny_transformer():
    return transformer(blocks=1, length=16, vocab=64, dim=16, heads=2, ffn=32, name="tiny_transformer")


def efficientnet_b0():
    return keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=CLASSES)


def densenet121():
    return keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3), classes=CLASSES)


def convnext_tiny():
    return keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=CLASSES)


def recurrent(length=32, vocab=VOCAB, dim=32, units=64):
    """Token ids [batch, length] -> Embedding -> LSTM(units, sequences) -> GRU(units) -> Dense softmax."""
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(vocab, dim, name="token_embedding")(tokens)
    x = keras.layers.LSTM(units, return_sequences=True, name="lstm")(x)
    x = keras.layers.GRU(units, name="gru")(x)
    return keras.Model(
        tokens, keras.layers.Dense(CLASSES, activation="softmax", name="classifier")(x), name="recurrent"
    )


def sigmoid_mlp(depth=8):
    """demo/train.py's planted vanishing-gradient case (with the softmax inside the model)."""
    init = keras.initializers.RandomNormal(stddev=0.1, seed=0)
    layers = [keras.Input((FEATURES,))]
    layers += [
        keras.layers.Dense(64, activation="sigmoid", kernel_initializer=init, name=f"sigmoid_{i + 1}")
        for i in range(depth)
    ]
    layers.append(keras.layers.Dense(CLASSES, activation="softmax", kernel_initializer=init, name="logits"))
    return keras.Sequential(layers, name="sigmoid_mlp")


def relu_mlp():
    """demo/train.py's healthy MLP (with the softmax inside the model)."""

    def dense(units, name):
        return keras.layers.Dense(
            units,
            activation="relu",
            kernel_initializer="he_normal",  # noqa
            name=name,
        )

    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            dense(128, "dense_1"),
            dense(128, "dense_2"),
            keras.layers.Dense(CLASSES, activation="softmax", name="logits"),
        ],
        name="relu_mlp",
    )


def _residual_block(x, i, filters):
    h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv1")(x)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"block{i}_bn1")(h))
    h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv2")(h)
    h = keras.layers.BatchNormalization(name=f"block{i}_bn2")(h)
    return keras.layers.ReLU()(keras.layers.Add()([x, h]))


def small_resnet(size=16, filters=8):
    """A stem convolution and two BatchNorm residual blocks on [size, size, 3] images (a ResNet in miniature)."""
    images = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="stem_conv")(images)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="stem_bn")(x))
    for i in (1, 2):
        x = _residual_block(x, i, filters)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(
        images, keras.layers.Dense(CLASSES, activation="softmax", name="classifier")(x), name="small_resnet"
    )


def _adam():
    return keras.optimizers.Adam(1e-3)


MODELS = {
    "resnet50": Spec(resnet50, _adam, image_data, True),
    "mobilenet_v2": Spec(mobilenet_v2, _adam, image_data, True),
    "transformer": Spec(transformer, _adam, token_data, True),
    "sigmoid_mlp": Spec(sigmoid_mlp, lambda: keras.optimizers.SGD(0.05), tabular_data, False),
    "resnet50_dead_block": Spec(resnet50_dead_block, _adam, image_data, False),
    "efficientnet_b0": Spec(efficientnet_b0, _adam, image_data, True),
    "densenet121": Spec(densenet121, _adam, image_data, True),
    "convnext_tiny": Spec(convnext_tiny, _adam, image_data, True),
    "relu_mlp": Spec(relu_mlp, _adam, tabular_data, True),
    "small_resnet": Spec(small_resnet, _adam, lambda n, seed: image_data(n, seed, size=16), True),
    "tiny_transformer": Spec(tiny_transformer, _adam, lambda n, seed: token_data(n, seed, length=16, vocab=64), True),
}


def kernel_layers(model):
    """Layers with a kernel (Conv*, DepthwiseConv2D, Dense, EinsumDense, including those nested inside other
    layers such as MultiHeadAttention), in model order, each once."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if id(layer) not in seen and getattr(layer, "kernel", None) is not None:
            seen.add(id(layer))
            found.append(layer)
    return found


def followed_by_batch_norm(layer):
    """True if every layer that consumes `layer`'s output in the model graph is a BatchNormalization."""
    consumers = [node.operation for node in getattr(layer, "_outbound_nodes", [])]
    return bool(consumers) and all(isinstance(c, keras.layers.BatchNormalization) for c in consumers)
