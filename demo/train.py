"""Demo training: writes runs with known problems under LOGDIR (default demo/logs), on synthetic data.

Runs (one subdirectory each):
  healthy_mlp      ReLU MLP, He initialisation, Adam: nothing wrong.
  dying_relu_mlp   the same MLP with a large learning rate and negative bias initialisation: dying ReLUs.
  sigmoid_deep_mlp eight sigmoid layers with small random weights, plain SGD: vanishing gradients.
  small_cnn        a small ReLU CNN on synthetic 16x16 images.

    python demo/train.py [--logdir demo/logs] [--epochs 3] [--update-freq 10]
"""

import argparse
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tb_matmul_explainer.keras import ExplainerCallback  # noqa: E402

FEATURES, CLASSES = 32, 10


def tabular_data(seed, samples=4096):
    """Features and labels of a random teacher network (no downloads)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, FEATURES)).astype("float32")
    teacher = rng.normal(size=(FEATURES, CLASSES)).astype("float32")
    y = np.argmax(np.tanh(x @ teacher) + 0.1 * rng.normal(size=(samples, CLASSES)), axis=1)
    return x, y


def image_data(seed, samples=2048):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=samples)
    x = rng.normal(scale=0.5, size=(samples, 16, 16, 3)).astype("float32")
    x[np.arange(samples), y, :, 0] += 2.0  # a bright row whose position is the label
    return x, y


def mlp(bias=0.0, name="mlp"):
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                128,
                activation="relu",
                kernel_initializer="he_normal",
                bias_initializer=keras.initializers.Constant(bias),
                name="dense_1",
            ),
            keras.layers.Dense(
                128,
                activation="relu",
                kernel_initializer="he_normal",
                bias_initializer=keras.initializers.Constant(bias),
                name="dense_2",
            ),
            keras.layers.Dense(CLASSES, name="logits"),
        ],
        name=name,
    )


def sigmoid_mlp(depth=8):
    init = keras.initializers.RandomNormal(stddev=0.1, seed=0)
    layers = [keras.Input((FEATURES,))]
    layers += [
        keras.layers.Dense(64, activation="sigmoid", kernel_initializer=init, name=f"sigmoid_{i + 1}")
        for i in range(depth)
    ]
    layers.append(keras.layers.Dense(CLASSES, kernel_initializer=init, name="logits"))
    return keras.Sequential(layers, name="sigmoid_deep_mlp")


def small_cnn():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_1"),
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv_2"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", name="dense"),
            keras.layers.Dense(CLASSES, name="logits"),
        ],
        name="small_cnn",
    )


RUNS = {
    "healthy_mlp": (lambda: mlp(name="healthy_mlp"), lambda: keras.optimizers.Adam(1e-3), tabular_data),
    "dying_relu_mlp": (lambda: mlp(bias=-3.0, name="dying_relu_mlp"), lambda: keras.optimizers.SGD(0.5), tabular_data),
    "sigmoid_deep_mlp": (sigmoid_mlp, lambda: keras.optimizers.SGD(0.05), tabular_data),
    "small_cnn": (small_cnn, lambda: keras.optimizers.Adam(1e-3), image_data),
}


def train(logdir, epochs, update_freq, runs=tuple(RUNS)):
    for i, name in enumerate(runs):
        build, optimizer, data = RUNS[name]
        keras.utils.set_random_seed(i)
        model = build()
        model.compile(
            optimizer=optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        x, y = data(i)
        start = time.time()
        print(f"[{i + 1}/{len(runs)}] {name}: training {epochs} epochs ...", flush=True)
        history = model.fit(
            x,
            y,
            batch_size=64,
            epochs=epochs,
            validation_split=0.1,
            verbose=0,
            callbacks=[ExplainerCallback(os.path.join(logdir, name), update_freq=update_freq)],
        )
        print(
            f"    loss {history.history['loss'][-1]:.3f}, accuracy {history.history['accuracy'][-1]:.2f} "
            f"({time.time() - start:.0f} s)",
            flush=True,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default=os.path.join(os.path.dirname(__file__), "logs"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--update-freq", type=int, default=10, help="record every N training steps")
    parser.add_argument("--runs", nargs="*", choices=sorted(RUNS), default=list(RUNS))
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.update_freq < 1:
        parser.error("--epochs and --update-freq must be positive")
    if os.path.isdir(args.logdir):
        shutil.rmtree(args.logdir)
    train(args.logdir, args.epochs, args.update_freq, args.runs)
    print(f"Wrote {len(args.runs)} runs to {args.logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
