"""Shared helpers of the plugin tests: writing small log directories with our own writer (`summary`), reading the
event files back directly (`summary_iterator`, independent of the data provider and the plugin), and TensorBoard's
own WSGI app over them (`make_client`, `get_json`)."""

import glob
import json
import os

import numpy as np
import tensorflow as tf
from tensorboard import program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
from tensorboard.backend.event_processing import data_provider as multiplexer_provider
from tensorboard.plugins.core import core_plugin
from werkzeug import test as werkzeug_test

from tb_matmul_explainer import metadata, summary
from tb_matmul_explainer import plugin as plugin_lib

PREFIX = "/data/plugin/matmul_explainer"


# ----------------------------------------------------------------------------------------------- writing logs


def write_layer(role, layer, index, first, second, step):
    """Writes one record with our writer: `summary.dense` / `summary.dense_kernel_gradient`."""
    op = summary.dense if role == "forward" else summary.dense_kernel_gradient
    written = op(
        "%s_%s" % (layer, role),
        tf.constant(np.asarray(first, np.float32)),
        tf.constant(np.asarray(second, np.float32)),
        step=step,
        layer=layer,
        layer_index=index,
        confidence=0.9,
        threshold_method="exact",
    )
    if tf.executing_eagerly():
        assert bool(written)


FUTURE_VERSION = metadata.CONTRACT_VERSION + 1


def write_future_tag(tag, step):
    """A tag whose metadata claims the next contract version (built by hand: it tests the rejection)."""
    md = metadata.create_summary_metadata(
        "future", None, role="forward", op="dense", layer="d9", index=9, units=2, confidence=0.9
    )
    content = json.loads(md.plugin_data.content)
    content["v"] = FUTURE_VERSION
    md.plugin_data.content = json.dumps(content).encode()
    tf.summary.write(tag, tf.zeros([3, metadata.COLUMNS], tf.float64), step, metadata=md)


NOT_RECORDED = "matmul_explainer/not_recorded/"  # tag prefix of the Keras callback's "not recorded" text notes
PARTLY_RECORDED = "matmul_explainer/partly_recorded/"  # ... and of its "recorded only in part" notes


def write_not_recorded(layer, reason, step):
    """The note the Keras callback writes for a layer it cannot record: a standard TensorBoard text summary."""
    assert tf.summary.text(NOT_RECORDED + layer, reason, step=step)


# Layers: name -> (index, inputs, units); run beta lacks d2, and records d1 forward only at some steps.
LAYERS = {"d0": (0, 6, 5), "d1": (1, 5, 3), "d2": (2, 6, 300)}


def layer_data(rng, inputs, units, batch=8):
    x = rng.normal(size=(batch, inputs))
    x[rng.random(x.shape) < 0.4] = 0.0  # ReLU-like exact zeros
    kernel = rng.normal(size=(inputs, units)) * 0.5
    d_out = rng.normal(size=(batch, units)) * 0.1
    return x, kernel, d_out


def write_logdir(logdir, seed=0):
    """Runs alpha (with a "not recorded" note for layer lstm), beta (without d2), gamma (with a tag of the next
    contract version), nan (non-finite data), and scalars_only (not ours)."""
    rng = np.random.default_rng(seed)
    plan = {"alpha": ([0, 10, 20, 30], ["d0", "d1", "d2"]), "beta": ([5, 15, 25], ["d0", "d1"])}
    for run, (steps, layers) in plan.items():
        with tf.summary.create_file_writer(os.path.join(logdir, run)).as_default():
            for step in steps:
                for layer in layers:
                    index, inputs, units = LAYERS[layer]
                    x, kernel, d_out = layer_data(rng, inputs, units)
                    if not (run == "beta" and layer == "d1" and step == 5):
                        write_layer("forward", layer, index, x, kernel, step)
                    write_layer("kernel_gradient", layer, index, x, d_out, step)
    with tf.summary.create_file_writer(os.path.join(logdir, "alpha")).as_default():
        write_not_recorded("lstm", "LSTM is not supported: <no kernel matmul> & nothing to explain", 0)
    with tf.summary.create_file_writer(os.path.join(logdir, "gamma")).as_default():
        x, kernel, _ = layer_data(rng, 6, 5)
        write_layer("forward", "d0", 0, x, kernel, 3)
        write_future_tag("d9_forward", 3)
    with tf.summary.create_file_writer(os.path.join(logdir, "nan")).as_default():
        x, kernel, _ = layer_data(rng, 6, 5)
        x[0, 0] = np.nan
        kernel[1, 2] = np.inf
        write_layer("forward", "d0", 0, x, kernel, 1)
    with tf.summary.create_file_writer(os.path.join(logdir, "scalars_only")).as_default():
        tf.summary.scalar("loss", 1.0, step=0)


def as_rows(array):
    """A record with unit detail as a `[rows + 1, 40]` array: header row (version 3: its first 40 header values),
    then the per-unit rows (version 1 and 2 arrays are returned as they are)."""
    if array.ndim == 2:
        return array
    assert metadata.has_unit_detail(array), "the test logs are written with unit detail"
    rows = int(array[metadata.HEADER_ROWS])
    header = np.zeros(metadata.COLUMNS)
    header[: metadata.HEADER_SIZE] = array[: metadata.HEADER_SIZE]
    return np.vstack([header, array[metadata.PER_ROW :].reshape(rows, metadata.COLUMNS)])


def read_written(logdir):
    """{run: {tag: {"content": bytes, "records": {step: array}}}} read straight from the event files."""
    out = {}
    for path in sorted(glob.glob(os.path.join(logdir, "*", "events.out.tfevents.*"))):
        run = os.path.basename(os.path.dirname(path))
        tags = {}
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                    tags.setdefault(value.tag, {"content": value.metadata.plugin_data.content, "records": {}})
                if value.tag in tags:
                    tags[value.tag]["records"][event.step] = as_rows(tf.make_ndarray(value.tensor))
        if tags:
            out.setdefault(run, {}).update(tags)
    return out


# ----------------------------------------------------------------------------------------------- app


def make_flags(logdir, *argv):
    """TensorBoard's real flag parser (core flags + ours), with every loader's fix_flags applied."""
    tb = program.TensorBoard(plugins=[core_plugin.CorePluginLoader, plugin_lib.MatmulExplainerLoader])
    tb.configure(("", "--logdir", logdir) + argv)
    return tb.flags


def make_client(logdir, *argv):
    flags = make_flags(logdir, *argv)
    guidance = dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE)
    guidance.update(flags.samples_per_plugin)  # as TensorBoard's LocalDataIngester does
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE, tensor_size_guidance=guidance
    )
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = multiplexer_provider.MultiplexerDataProvider(multiplexer, logdir)
    app = application.TensorBoardWSGIApp(flags, [plugin_lib.MatmulExplainerLoader], data_provider=provider)
    return werkzeug_test.Client(app), app


def _reject_constant(token):
    raise AssertionError("response has a non-JSON constant %r" % token)


def get_json(client, path, **params):
    response = client.get(PREFIX + path, query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.get_data(as_text=True), parse_constant=_reject_constant)
