"""The custom-training-loop recipe (GradientTape + LayerRecorder), exactly as the README gives it."""

import keras
import tensorflow as tf

from tb_matmul_explainer import metadata
from tb_matmul_explainer.keras import LayerRecorder
from tests import tb_reader
from tests.keras_helpers import (
    EXACT,
    UNCOMPILED,
    assert_record_equals,
    dense_forward_oracle,
    dense_kernel_gradient_oracle,
    mlp_data,
)


def test_gradient_tape_recipe_records_the_steps_it_is_asked_to(tmp_path):
    x_all, y_all = mlp_data(n=48)
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(6, activation="relu", name="hidden"), keras.layers.Dense(3, name="out")]
    )
    w0 = [w.numpy() for w in model.weights]
    dataset = tf.data.Dataset.from_tensor_slices((x_all, y_all)).batch(8)

    # --- the recipe ------------------------------------------------------------------------------------------
    recorder = LayerRecorder(model, str(tmp_path), roles=("forward", "kernel_gradient"), **EXACT, **UNCOMPILED)
    optimizer = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.MeanSquaredError()

    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        return loss

    plain_step = tf.function(train_step)

    @tf.function
    def recording_step(x, y, step):
        with recorder.recording(step):  # around the forward pass and tape.gradient
            return train_step(x, y)

    for step, (x, y) in enumerate(dataset):
        if step % 3 == 0:
            recording_step(x, y, tf.constant(step, tf.int64))
        else:
            plain_step(x, y)
    recorder.flush()
    # ----------------------------------------------------------------------------------------------------------

    assert recording_step.experimental_get_tracing_count() == 1
    assert all("call" not in vars(layer) for layer in model.layers)
    run = tb_reader.read_records(str(tmp_path))["train"]
    assert sorted(run) == ["hidden/forward", "hidden/kernel_gradient", "out/forward", "out/kernel_gradient"]
    assert [d.step for d in run["hidden/forward"][1]] == [0, 3]
    # Step 0 explains the first batch with the initial weights.
    x0, y0 = tf.constant(x_all[:8]), tf.constant(y_all[:8])
    w1, b1, w2, b2 = (tf.constant(w) for w in w0)
    with tf.GradientTape() as tape:
        z1 = x0 @ w1
        tape.watch(z1)
        loss = loss_fn(y0, tf.nn.relu(z1 + b1) @ w2 + b2)
    d1 = tape.gradient(loss, z1).numpy()
    assert_record_equals(
        metadata.unpack_record(run["hidden/forward"][1][0].numpy), dense_forward_oracle(x_all[:8], w0[0])
    )
    assert_record_equals(
        metadata.unpack_record(run["hidden/kernel_gradient"][1][0].numpy), dense_kernel_gradient_oracle(x_all[:8], d1)
    )
