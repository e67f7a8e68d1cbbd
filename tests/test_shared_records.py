"""Records of layers that compute alike share one traced computation (keras/shared.py): the records are the same
as when every layer inlines its own, keys tell layers apart by what they compute, and a computation that reaches
outside its inputs is refused."""

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer.keras import ExplainerCallback
from tb_matmul_explainer.keras import shared as shared_lib
from tb_matmul_explainer.layers.conv import ConvAdapter
from tests.keras_helpers import record_at, records, run_script

FIELDS = ("counts", "sums", "near_zero_counts", "near_zero_sums", "cells", "near_zero_cells", "thresholds")


def _repeated_shapes_net():
    """Two residual blocks of the same shape (conv -> BatchNorm -> ReLU layer, conv with its own ReLU) and three
    Dense layers, two of them alike: layers that share their records' computations, and layers that do not."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4), name="image")
    h = inputs
    for block in (1, 2):
        y = keras.layers.Conv2D(4, 3, padding="same", name=f"block{block}_conv1")(h)
        y = keras.layers.BatchNormalization(name=f"block{block}_bn")(y)
        y = keras.layers.Activation("relu", name=f"block{block}_relu")(y)
        y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"block{block}_conv2")(y)
        h = keras.layers.Add(name=f"block{block}_add")([h, y])
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    h = keras.layers.Dense(8, activation="relu", name="dense_a")(h)
    h = keras.layers.Dense(8, activation="relu", name="dense_b")(h)
    h = keras.layers.Dense(8, activation="relu", name="dense_c")(h)
    outputs = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model(inputs, outputs, name="repeated")
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _fit(log_dir, **options):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6, 6, 4)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    callback = ExplainerCallback(log_dir, update_freq=1, seed=7, verbose=0, **options)
    _repeated_shapes_net().fit(x, y, batch_size=16, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    return callback, records(log_dir)


def _assert_same_records(shared, inlined, steps):
    tags = sorted(tag for tag in shared if not tag.endswith("_fraction"))
    assert tags == sorted(tag for tag in inlined if not tag.endswith("_fraction"))
    for tag in tags:
        for step in steps:
            a, b = record_at(shared, tag, step), record_at(inlined, tag, step)
            for field in FIELDS + ("result_magnitude", "reference"):
                if getattr(b, field) is None:
                    assert getattr(a, field) is None, (tag, step, field)
                    continue
                np.testing.assert_allclose(
                    getattr(a, field), getattr(b, field), rtol=1e-12, atol=0, equal_nan=True, err_msg=f"{tag} {field}"
                )
    return tags


def test_shared_records_equal_inlined_ones(tmp_path):
    shared_callback, shared = _fit(tmp_path / "shared")
    # block2_conv1 repeats block1_conv1 (3 roles: input features, forward, kernel gradient), block2_conv2 repeats
    # block1_conv2 (5: with its activation's two), dense_c repeats dense_b (5); block1_conv2 differs from
    # block1_conv1 by its activation, dense_b from dense_a by its input.
    assert len(shared_callback.recorder._shared_records) == 3 + 5 + 5
    inlined_callback, inlined = _fit(tmp_path / "inlined", share_records=False)
    assert len(inlined_callback.recorder._shared_records) == 0
    tags = _assert_same_records(shared, inlined, (0, 1))
    assert "block2_conv1/kernel_gradient" in tags and "dense_c/activation_gradient" in tags


MIRRORED = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tb_matmul_explainer.keras import ExplainerCallback
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 5)).astype(np.float32), rng.integers(0, 3, 32)
    for share in (True, False):
        keras.utils.set_random_seed(0)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="relu", name="a")]
                                     + [keras.layers.Dense(6, activation="relu", name=n) for n in "bc"]
                                     + [keras.layers.Dense(3, name="logits")])
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        callback = ExplainerCallback(sys.argv[1] + ("/shared" if share else "/inlined"), update_freq=1, seed=5,
                                     verbose=0, share_records=share)
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
        print("shared functions", len(callback.recorder._shared_records))
""")


def test_shared_records_under_a_mirrored_strategy_equal_inlined_ones(tmp_path):
    """Two replicas (logical CPUs, set before TensorFlow starts: a subprocess) call the shared functions."""
    out = run_script(MIRRORED, tmp_path, timeout=300)
    assert "shared functions 5" in out and "shared functions 0" in out, out
    _assert_same_records(records(tmp_path / "shared"), records(tmp_path / "inlined"), (0, 1))


class _Target:
    def __init__(self, layer, adapter, part=None):
        self.layer, self.adapter, self.part = layer, adapter, part


def test_record_key_tells_layers_apart_by_what_they_compute():
    x = tf.zeros([2, 6, 6, 4])
    conv = lambda name, **kw: keras.layers.Conv2D(4, 3, name=name, **kw)  # noqa: E731
    key = lambda layer, adapter=None, inputs=(x,): shared_lib.record_key(  # noqa: E731
        _Target(layer, adapter or ConvAdapter()), "forward", {"strides": 1}, inputs
    )
    assert key(conv("a")) == key(conv("b"))  # the name does not count
    assert key(conv("a")) != key(conv("b", strides=2))
    assert key(conv("a")) != key(conv("b", activation="relu"))
    assert key(conv("a")) != key(conv("a"), inputs=(tf.zeros([2, 8, 8, 4]),))
    assert key(conv("a")) != key(conv("a"), inputs=(x, 0.5))  # a Python threshold is part of the key
    assert key(conv("a"), adapter=_NotShared()) is None


class _NotShared(ConvAdapter):
    shares_records = False


def test_a_shared_computation_reaching_outside_its_inputs_is_refused():
    records_ = shared_lib.SharedRecords()
    key = ("forward", ConvAdapter, keras.layers.Conv2D, "{}", None, "None", ((2,), "float32"))

    @tf.function
    def step(x):
        outside = x * 2.0
        seen = set()
        first = records_.compute(seen, key, lambda t: t + 1.0, (x,))  # the first of its key: inlined
        shared = records_.compute(seen, key, lambda t: t + 1.0, (outside,))  # a call of the shared function
        records_.compute(seen, ("other",) + key[1:], lambda t: t + outside, (x,))  # inlined: it may
        with pytest.raises(RuntimeError, match="captured tensors outside its inputs"):
            records_.compute(seen, ("other",) + key[1:], lambda t: t + outside, (x,))
        return first, shared

    first, shared = step(tf.constant([1.0, 2.0]))
    np.testing.assert_array_equal(first, [2.0, 3.0])
    np.testing.assert_array_equal(shared, [3.0, 5.0])
    assert len(records_) == 2


def test_share_records_must_be_a_bool(tmp_path):
    with pytest.raises(ValueError, match="share_records must be True or False, got 'no'"):
        ExplainerCallback(tmp_path, share_records="no")
