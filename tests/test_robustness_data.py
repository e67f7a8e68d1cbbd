"""Data while it is written, damaged data, and data from a newer writer: the routes keep serving what is readable.

Scenarios, each a run written by our writer (`plugin_helpers.write_layer`: `summary.dense` /
`summary.dense_kernel_gradient`), then damaged as a crash, a disk or a package upgrade would:

  live       a writer appends steps while TensorBoard reads (in-process: a multiplexer reloaded between steps;
             real TensorBoard: a writer thread while the test polls every route)
  truncated  the final event file is cut in the middle of the last record of one of our tags
  corrupted  garbage bytes overwrite the middle of an event file; a later event file (a restarted job) follows
  upgraded   a later event file holds records of the same tag written by a newer contract version (TensorBoard
             keeps the tag's first metadata, so these records arrive labelled as version 1)
  future     a tag of a newer contract version next to readable tags

"Readable" is what TensorFlow's own record reader (`summary_iterator`, with CRC checks) reads from each file, and
for our records what `metadata.unpack_record` accepts. Every route must answer 200 for readable data (never 5xx),
serve every readable step with exactly the written values (never bytes from a damaged record), and `/runs` must
list what could not be read with a reason. Both loaders of a real TensorBoard (the Rust data server and the
legacy multiplexer) and the in-process app are checked.
"""

import glob
import json
import os
import re
import struct
import threading
import time
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
from tensorboard.backend.event_processing import data_provider as multiplexer_provider
from tensorboard.compat.proto import event_pb2
from werkzeug import test as werkzeug_test

from tb_matmul_explainer import metadata
from tb_matmul_explainer import plugin as plugin_lib
from tb_matmul_explainer.plugin import cache as plugin_cache
from tests import plugin_helpers, tensorboard_server

PREFIX = plugin_helpers.PREFIX
LAYERS = (("d0", 6, 4), ("d1", 4, 3))  # name, inputs, units
ROLES = ("forward", "kernel_gradient")
STEPS = 6
LIVE_STEPS = 12


# ----------------------------------------------------------------------------------------------- writing


def write_step(step, rng, flush=None):
    """Every layer and role at `step` (our writer ops, into the default writer)."""
    for index, (layer, inputs, units) in enumerate(LAYERS):
        x, kernel, d_out = plugin_helpers.layer_data(rng, inputs, units)
        plugin_helpers.write_layer("forward", layer, index, x, kernel, step)
        plugin_helpers.write_layer("kernel_gradient", layer, index, x, d_out, step)
        if flush is not None:
            flush()


def write_run(run_dir, steps, seed=0):
    rng = np.random.default_rng(seed)
    writer = tf.summary.create_file_writer(run_dir)
    with writer.as_default():
        for step in steps:
            write_step(step, rng)
    writer.close()


def event_files(run_dir):
    return sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))


def frames(path):
    """[(offset, total length, Event)] of the TFRecord frames of a file (length, CRC, data, CRC)."""
    with open(path, "rb") as f:
        data = f.read()
    out, offset = [], 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        end = offset + 12 + length + 4
        if end > len(data):
            break
        out.append((offset, end - offset, event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])))
        offset = end
    return out


def ours(event):
    return [
        v
        for v in event.summary.value
        if v.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME or v.tag.endswith(tuple("_" + r for r in ROLES))
    ]


def truncate_last_record(run_dir, tag):
    """Cuts the (only) event file in the middle of the last record of `tag`; returns its step."""
    (path,) = event_files(run_dir)
    last = [(o, n, e) for o, n, e in frames(path) if any(v.tag == tag for v in e.summary.value)][-1]
    offset, length, event = last
    with open(path, "r+b") as f:
        f.truncate(offset + length // 2)
    return event.step


def corrupt_middle(run_dir):
    """Overwrites 24 bytes in the middle of the event file's data with garbage."""
    (path,) = event_files(run_dir)
    with open(path, "r+b") as f:
        size = f.seek(0, 2)
        f.seek(size // 2)
        f.write(b"\xde\xad\xbe\xef garbage \x00\xff" * 2)


def write_newer_version(
    run_dir, tag, layer, steps, columns=metadata.COLUMNS + 2, version=metadata.CONTRACT_VERSION + 1
):
    """Records of `tag` whose metadata says contract `version` and whose layout is not version 1's."""
    md = metadata.create_summary_metadata(
        layer, None, role="forward", op="dense", layer=layer, index=0, units=4, confidence=0.9
    )
    content = json.loads(md.plugin_data.content)
    content["v"] = version
    md.plugin_data.content = json.dumps(content).encode()
    writer = tf.summary.create_file_writer(run_dir)
    with writer.as_default():
        for step in steps:
            tf.summary.write(tag, tf.ones([5, columns], tf.float64), step, metadata=md)
    writer.close()


def readable(logdir):
    """{run: {tag: {step: array}}} of our records as TensorFlow's reader reads them (CRC-checked, each file up to
    its first damaged record) and `metadata.unpack_record` accepts them; plus {run: {tag: {steps}}} of records
    that are read but not accepted."""
    good, rejected = {}, {}
    for path in sorted(glob.glob(os.path.join(logdir, "*", "events.out.tfevents.*"))):
        run = os.path.basename(os.path.dirname(path))
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in ours(event):
                    array = tf.make_ndarray(value.tensor)
                    try:
                        metadata.unpack_record(array)
                    except metadata.ContractError:
                        rejected.setdefault(run, {}).setdefault(value.tag, set()).add(event.step)
                        continue
                    good.setdefault(run, {}).setdefault(value.tag, {})[event.step] = plugin_helpers.as_rows(array)
        except tf.errors.DataLossError:
            pass  # the rest of this file cannot be read
    return good, rejected


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("robust_data"))
    write_run(os.path.join(d, "clean"), range(STEPS))
    write_run(os.path.join(d, "truncated"), range(STEPS), seed=1)
    cut_step = truncate_last_record(os.path.join(d, "truncated"), "d0_forward")
    assert cut_step == STEPS - 1
    write_run(os.path.join(d, "corrupted"), range(STEPS), seed=2)
    corrupt_middle(os.path.join(d, "corrupted"))
    time.sleep(1.1)  # event file names hold the time in seconds: the restarted job's file sorts after
    write_run(os.path.join(d, "corrupted"), range(STEPS, STEPS + 3), seed=3)
    write_run(os.path.join(d, "upgraded"), range(STEPS), seed=4)
    time.sleep(1.1)
    write_newer_version(os.path.join(d, "upgraded"), "d0_forward", "d0", range(STEPS, STEPS + 3))
    write_run(os.path.join(d, "future"), range(STEPS), seed=5)
    write_newer_version(os.path.join(d, "future"), "d9_forward", "d9", range(STEPS))
    return d


@pytest.fixture(scope="module")
def expected(logdir):
    good, rejected = readable(logdir)
    # the damage did what the scenarios say (otherwise the tests below would prove nothing)
    assert sorted(good["truncated"]["d0_forward"]) == list(range(STEPS - 1))
    assert all(sorted(records) == list(range(STEPS - 1)) for records in good["truncated"].values())
    lost = set(range(STEPS)) - set(good["corrupted"]["d0_forward"])
    assert lost and set(range(STEPS, STEPS + 3)) <= set(good["corrupted"]["d0_forward"])
    assert rejected["upgraded"]["d0_forward"] == set(range(STEPS, STEPS + 3))
    return good, rejected


# ----------------------------------------------------------------------------------------------- checks


def _strict_json(body):
    return json.loads(body, parse_constant=lambda c: pytest.fail("non-JSON constant %s" % c))


def check_readable_served(get, good, rejected, runs=None):
    """Every readable step of every tag is served with its written values; every route answers 200."""
    status, body = get("/runs")
    assert status == 200, body[:300]
    listing = {r["run"]: r for r in _strict_json(body)["runs"]}
    for run, tags in good.items():
        if runs is not None and run not in runs:
            continue
        assert run in listing, (run, sorted(listing))
        for tag, records in tags.items():
            (role,) = [r for r in ROLES if tag.endswith("_" + r)]
            layer = tag[: -len(role) - 1]
            query = urllib.parse.urlencode({"run": run, "role": role, "layer": layer})
            status, body = get("/timeline?" + query)
            assert status == 200, (run, tag, body[:300])
            timeline = _strict_json(body)
            assert set(records) <= set(timeline["steps"]), (run, tag, sorted(records), timeline["steps"])
            for i, step in enumerate(timeline["steps"]):
                if step in records:
                    want = records[step][1:, metadata.COUNTS].sum(axis=0)
                    np.testing.assert_array_equal(timeline["counts"][i], want, err_msg="%s %s %d" % (run, tag, step))
            for step in sorted(records):
                status, body = get("/units?" + query + "&step=%d" % step)
                assert status == 200, (run, tag, step, body[:300])
                units = _strict_json(body)
                assert units["step"] == step
                np.testing.assert_array_equal(units["counts"], records[step][1:, metadata.COUNTS])
        for route in ("/overview?role=forward&", "/heatmap?role=kernel_gradient&", "/alerts?"):
            status, body = get(route + urllib.parse.urlencode({"run": run}))
            assert status == 200, (run, route, body[:300])
    return listing


def check_unreadable_listed(get, listing):
    """/runs says what could not be read, with a reason; a request for it directly is a 400 with the reason."""
    future = {u["tag"]: u["reason"] for u in listing["future"]["unreadable"]}
    newer = f"contract version {plugin_helpers.FUTURE_VERSION}"
    assert newer in future["d9_forward"]
    status, body = get("/timeline?run=future&role=forward&layer=d9")
    assert status == 400 and newer.encode() in body
    # the upgraded tag: its newer records are named once the tag has been read (the listing alone cannot know)
    status, body = get("/runs")
    upgraded = {
        u["tag"]: u["reason"] for u in {r["run"]: r for r in _strict_json(body)["runs"]}["upgraded"]["unreadable"]
    }
    assert re.search(r"3 of its records \(step 6, 7, 8\) cannot be read", upgraded["d0_forward"]), upgraded


# ----------------------------------------------------------------------------------------------- in-process


def make_app(logdir):
    """TensorBoard's WSGI app over a multiplexer that the test reloads (as `plugin_helpers.make_client`)."""
    flags = plugin_helpers.make_flags(logdir)
    guidance = dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE)
    guidance.update(flags.samples_per_plugin)
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE, tensor_size_guidance=guidance
    )
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = multiplexer_provider.MultiplexerDataProvider(multiplexer, logdir)
    app = application.TensorBoardWSGIApp(flags, [plugin_lib.MatmulExplainerLoader], data_provider=provider)
    client = werkzeug_test.Client(app)

    def get(path):
        response = client.get(PREFIX + path)
        return response.status_code, response.get_data()

    return get, multiplexer


def test_in_process_serves_everything_readable(logdir, expected):
    get, _ = make_app(logdir)
    good, rejected = expected
    listing = check_readable_served(get, good, rejected)
    check_unreadable_listed(get, listing)


def test_in_process_reading_while_a_writer_appends(tmp_path, monkeypatch):
    """Between every layer's records: reload, then every route. Steps only grow; a step half written (some layers
    and roles only) is served for what it has; at the end every step is there."""
    monkeypatch.setattr(plugin_cache, "LISTING_TTL_S", 0.0)
    run_dir = str(tmp_path / "live")
    writer = tf.summary.create_file_writer(run_dir)
    with writer.as_default():
        write_step(0, np.random.default_rng(0))
        writer.flush()
    get, multiplexer = make_app(str(tmp_path))
    seen = {}
    rng = np.random.default_rng(1)

    def poll():
        multiplexer.Reload()
        for layer, _, _ in LAYERS:
            for role in ROLES:
                query = urllib.parse.urlencode({"run": "live", "role": role, "layer": layer})
                status, body = get("/timeline?" + query)
                assert status == 200, body[:300]
                steps = _strict_json(body)["steps"]
                assert steps == sorted(steps) and set(seen.get((layer, role), [])) <= set(steps)
                seen[(layer, role)] = steps
                status, body = get("/units?" + query)
                assert status == 200 and _strict_json(body)["step"] == steps[-1]
        for route in (
            "/runs",
            "/overview?run=live&role=forward",
            "/heatmap?run=live&role=kernel_gradient",
            "/alerts?run=live",
            "/compare?view=heatmap&run=live",
        ):
            status, body = get(route)
            assert status == 200, (route, body[:300])

    with writer.as_default():
        for step in range(1, LIVE_STEPS):
            write_step(step, rng, flush=lambda: (writer.flush(), poll()))
    writer.close()
    poll()
    assert all(steps == list(range(LIVE_STEPS)) for steps in seen.values()), seen


# ----------------------------------------------------------------------------------------------- real TensorBoard


def http_get(base):
    def get(path):
        status, _, body, _ = tensorboard_server.get(base + PREFIX + path, timeout=60)
        return status, body

    return get


@pytest.fixture(
    scope="module", params=["true", "false"], ids=["load_fast=true (Rust data server)", "load_fast=false (multiplexer)"]
)
def server(request, logdir, expected):
    good, _ = expected
    with tensorboard_server.start(logdir, request.param, reload_interval=1) as tb:
        get = http_get(tb.url)

        def loaded():  # every readable record of every run listed
            status, body = get("/runs")
            if status != 200 or not {r["run"] for r in _strict_json(body)["runs"]} >= set(good):
                return False
            status, body = get("/timeline?run=corrupted&role=kernel_gradient&layer=d1")
            return status == 200 and set(good["corrupted"]["d1_kernel_gradient"]) <= set(_strict_json(body)["steps"])

        tb.wait_until(loaded, timeout=60)
        yield tb.url, get, request.param
        assert tb.alive(), "TensorBoard exited:\n" + tb.log_tail()


def test_real_tensorboard_serves_everything_readable(server, expected):
    _, get, _ = server
    good, rejected = expected
    listing = check_readable_served(get, good, rejected)
    check_unreadable_listed(get, listing)


def test_real_tensorboard_reading_while_a_writer_appends(server, logdir):
    """A writer thread appends steps (flushing each) to a new run while the test polls every route: no 5xx,
    the steps of every layer only grow, and all of them arrive."""
    _, get, load_fast = server
    run = "live_" + load_fast
    errors, done = [], threading.Event()

    def train():
        try:
            writer = tf.summary.create_file_writer(os.path.join(logdir, run))
            rng = np.random.default_rng(9)
            with writer.as_default():
                for step in range(LIVE_STEPS):
                    write_step(step, rng, flush=writer.flush)
                    time.sleep(0.15)
            writer.close()
        except Exception as e:  # reported by the main thread
            errors.append(e)
        finally:
            done.set()

    threading.Thread(target=train, daemon=True).start()
    seen, statuses = {}, {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        finished = done.is_set()
        for layer, _, _ in LAYERS:
            for role in ROLES:
                query = urllib.parse.urlencode({"run": run, "role": role, "layer": layer})
                for route in ("/timeline?", "/units?", "/diagnosis?"):
                    status, body = get(route + query)
                    statuses[status] = statuses.get(status, 0) + 1
                    assert status < 500, (route, body[:300])
                    assert status in (200, 404), (route, status, body[:300])  # 404 until the run/layer appears
                    if status == 200 and route == "/timeline?":
                        steps = _strict_json(body)["steps"]
                        assert steps == sorted(steps) and set(seen.get((layer, role), [])) <= set(steps)
                        seen[(layer, role)] = steps
        for route in (
            "/runs",
            "/overview?run=%s&role=forward" % run,
            "/heatmap?run=%s&role=forward" % run,
            "/alerts?run=" + run,
        ):
            status, body = get(route)
            statuses[status] = statuses.get(status, 0) + 1
            assert status in (200, 404), (route, status, body[:300])
        if finished and len(seen) == 4 and all(s == list(range(LIVE_STEPS)) for s in seen.values()):
            break
        time.sleep(0.2)
    assert not errors, errors
    assert len(seen) == 4 and all(s == list(range(LIVE_STEPS)) for s in seen.values()), seen
    assert statuses.get(200, 0) > 20, statuses
