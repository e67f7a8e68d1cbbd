"""The TensorBoard plugin backend (`plugin/`) over real log directories written by our own writer.

The app is TensorBoard's own WSGI app (`application.TensorBoardWSGIApp`, with its error middleware) over an
`EventMultiplexer` + `MultiplexerDataProvider`, driven by a werkzeug `Client`. Expected values come from reading
the event files directly (`summary_iterator`), independently of the data provider and of the plugin.
"""

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard import context as tb_context
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider as multiplexer_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from tb_matmul_explainer import aggregates, explain, loader, metadata, summary
from tb_matmul_explainer import plugin as plugin_lib
from tb_matmul_explainer.plugin import cache as plugin_cache
from tb_matmul_explainer.plugin import not_recorded
from tb_matmul_explainer.plugin import views as plugin_views
from tests.plugin_helpers import (
    FUTURE_VERSION,
    LAYERS,
    NOT_RECORDED,
    PARTLY_RECORDED,
    PREFIX,
    get_json,
    layer_data,
    make_client,
    make_flags,
    write_layer,
    write_not_recorded,
)

# ----------------------------------------------------------------------------------------------- expectations


def tag_of(written, run, role, layer):
    for tag, entry in written[run].items():
        meta = json.loads(entry["content"])
        if meta.get("v") in metadata.READABLE_VERSIONS and meta["role"] == role and meta["layer"] == layer:
            return tag
    return None


def records(written, run, role, layer):
    entry = written[run][tag_of(written, run, role, layer)]["records"]
    return sorted(entry.items())


def at_or_before(recs, step):
    chosen = [(s, a) for s, a in recs if step is None or s <= step]
    return chosen[-1] if chosen else (None, None)


def none_for_nan(values):
    values = np.asarray(values, np.float64)
    return [None if not np.isfinite(v) else float(v) for v in values.ravel()]


def close(actual, expected):
    """Equal up to float rounding; None where expected is not finite."""
    actual = [None if a is None else float(a) for a in np.asarray(actual, dtype=object).ravel()]
    expected = none_for_nan(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert (a is None) == (e is None), (actual, expected)
        if e is not None:
            assert a == pytest.approx(e, rel=1e-12, abs=1e-12)


def fraction(near, cells):
    return near / cells if cells > 0 else np.nan


# ----------------------------------------------------------------------------------------------- /runs


def test_runs_lists_our_runs_layers_in_model_order_and_roles(client, written):
    body = get_json(client, "/runs")
    assert body["version"] == metadata.CONTRACT_VERSION
    runs = {r["run"]: r for r in body["runs"]}
    assert sorted(runs) == ["alpha", "beta", "gamma", "nan"]  # scalars_only holds none of ours
    assert [l["name"] for l in runs["alpha"]["layers"]] == ["d0", "d1", "d2"]
    assert [l["name"] for l in runs["beta"]["layers"]] == ["d0", "d1"]
    assert runs["alpha"]["roles"] == ["forward", "kernel_gradient"]
    d2 = runs["alpha"]["layers"][2]
    assert (d2["index"], d2["op"], d2["units"]) == (2, "dense", 300)
    forward = d2["roles"]["forward"]
    assert forward["last_step"] == 30
    assert forward["confidence"] == pytest.approx(0.9)
    assert forward["operands"] == ["input", "kernel"]
    assert d2["roles"]["kernel_gradient"]["operands"] == ["input", "output_gradient"]
    assert runs["beta"]["layers"][1]["roles"]["forward"]["last_step"] == 25
    assert runs["alpha"]["unreadable"] == []


def test_runs_list_the_layers_not_recorded(client):
    runs = {r["run"]: r for r in get_json(client, "/runs")["runs"]}
    assert runs["alpha"]["notRecorded"] == [
        {"layer": "lstm", "reason": "LSTM is not supported: <no kernel matmul> & nothing to explain"}
    ]
    assert all(runs[r]["notRecorded"] == [] for r in ("beta", "gamma", "nan"))
    assert all(runs[r]["partlyRecorded"] == [] for r in runs)


def test_not_recorded_notes_next_to_records(tmp_path):
    """Text summaries under the not-recorded prefix, in event files next to our records, read through the data
    provider: the latest value per layer, plain text; other text tags, runs without notes, and values that are
    not a scalar string do not break /runs."""
    rng = np.random.default_rng(4)
    x, kernel, _ = layer_data(rng, 4, 3)
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        write_layer("forward", "dense", 0, x, kernel, 0)
        write_not_recorded("lstm", "an old reason", 0)
        write_not_recorded("zeta<script>alert(1)</script>", 'custom layer \u00e9 "quoted"\n<b>not html</b>', 0)
        write_not_recorded("vector", ["two", "strings"], 0)  # not a scalar string: a generic reason
        tf.summary.write(
            NOT_RECORDED + "number",
            tf.constant(3.5),
            step=0,  # a text tag holding a float
            metadata=summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"),
                data_class=summary_pb2.DATA_CLASS_TENSOR,
            ),
        )
        write_layer("forward", "dense", 0, x, kernel, 5)
        write_not_recorded("lstm", "LSTM is not supported", 5)  # written again (a resumed job): the latest wins
        tf.summary.text("notes/matmul_explainer/not_recorded/other", "not ours: another prefix", step=0)
        tf.summary.text(NOT_RECORDED, "no layer name", step=0)  # the bare prefix names no layer: left out
        tf.summary.text(PARTLY_RECORDED + "dense", "it is called 2 times in a step", step=5)
    with tf.summary.create_file_writer(str(tmp_path / "plain")).as_default():
        write_layer("forward", "dense", 0, x, kernel, 0)
    with tf.summary.create_file_writer(str(tmp_path / "text_only")).as_default():
        write_not_recorded("dense", "a run without records is not listed", 0)
    client, _ = make_client(str(tmp_path))
    runs = {r["run"]: r for r in get_json(client, "/runs")["runs"]}
    assert sorted(runs) == ["plain", "run"]
    assert runs["plain"]["notRecorded"] == [] and runs["plain"]["partlyRecorded"] == []
    assert runs["run"]["partlyRecorded"] == [{"layer": "dense", "reason": "it is called 2 times in a step"}]
    notes = runs["run"]["notRecorded"]
    assert [n["layer"] for n in notes] == ["lstm", "number", "vector", "zeta<script>alert(1)</script>"]
    by_layer = {n["layer"]: n["reason"] for n in notes}
    assert by_layer["lstm"] == "LSTM is not supported"
    assert by_layer["zeta<script>alert(1)</script>"] == 'custom layer \u00e9 "quoted"\n<b>not html</b>'
    assert by_layer["vector"] == by_layer["number"] == not_recorded.UNREADABLE_REASON
    assert [l["name"] for l in runs["run"]["layers"]] == ["dense"]  # the records are unaffected
    assert get_json(client, "/timeline", run="run", role="forward", layer="dense")["steps"] == [0, 5]
    assert client.get(PREFIX + "/runs").headers["Content-Type"].startswith("application/json")  # never HTML


def test_runs_without_any_text_tag(tmp_path):
    rng = np.random.default_rng(5)
    x, kernel, _ = layer_data(rng, 4, 3)
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        write_layer("forward", "dense", 0, x, kernel, 0)
    client, _ = make_client(str(tmp_path))
    (run,) = get_json(client, "/runs")["runs"]
    assert run["notRecorded"] == []


def test_unknown_contract_version_is_reported_and_rejected(client):
    gamma = {r["run"]: r for r in get_json(client, "/runs")["runs"]}["gamma"]
    assert [l["name"] for l in gamma["layers"]] == ["d0"]
    (entry,) = gamma["unreadable"]
    assert entry["tag"].startswith("d9_forward")
    assert f"contract version {FUTURE_VERSION}" in entry["reason"]
    response = client.get(PREFIX + "/timeline", query_string={"run": "gamma", "role": "forward", "layer": "d9"})
    assert response.status_code == 400
    assert f"contract version {FUTURE_VERSION}" in response.get_data(as_text=True)
    response = client.get(PREFIX + "/units", query_string={"run": "gamma", "role": "forward", "layer": "d9"})
    assert response.status_code == 400
    # the readable layer of the same run still works
    assert get_json(client, "/overview", run="gamma", role="forward")["layers"][0]["name"] == "d0"


# ----------------------------------------------------------------------------------------------- /overview


@pytest.mark.parametrize("step", [None, 0, 12, 30, 10**6])
def test_overview_equals_sum_of_written_rows(client, written, step):
    params = {"run": "alpha", "role": "forward"}
    if step is not None:
        params["step"] = str(step)
    body = get_json(client, "/overview", **params)
    assert body["run"] == "alpha" and body["role"] == "forward"
    assert body["step"] == (30 if step is None else step)
    assert [l["name"] for l in body["layers"]] == ["d0", "d1", "d2"]
    for entry in body["layers"]:
        at, array = at_or_before(records(written, "alpha", "forward", entry["name"]), step)
        assert entry["step"] == at
        rows = array[1:]
        total = rows.sum(axis=0)
        close(entry["counts"], total[0:9])
        close(entry["sums"], total[9:18])
        close(entry["near_zero_counts"], total[18:27])
        close(entry["near_zero_sums"], total[27:36])
        close([entry["cells"], entry["near_zero_cells"]], total[36:38])
        close([entry["near_zero_fraction"]], [fraction(total[37], total[36])])
        assert entry["dead_units"] == int(((rows[:, 36] > 0) & (rows[:, 37] >= rows[:, 36])).sum())
        close(entry["thresholds"], array[0, 0:3])
        close(entry["nonfinite"], array[0, 3:6])
        assert entry["units"] == int(array[0, 6])


def test_overview_step_between_records_uses_latest_before_per_layer(client, written):
    body = get_json(client, "/overview", run="beta", role="forward", step="7")
    # d1 has no forward record at or before 7: it is left out
    assert [(l["name"], l["step"]) for l in body["layers"]] == [("d0", 5)]


def test_overview_before_first_record_is_404(client):
    response = client.get(PREFIX + "/overview", query_string={"run": "beta", "role": "forward", "step": "4"})
    assert response.status_code == 404


# ----------------------------------------------------------------------------------------------- /timeline


@pytest.mark.parametrize(
    "run,role,layer", [("alpha", "forward", "d2"), ("beta", "forward", "d1"), ("beta", "kernel_gradient", "d0")]
)
def test_timeline_equals_written_records(client, written, run, role, layer):
    body = get_json(client, "/timeline", run=run, role=role, layer=layer)
    recs = records(written, run, role, layer)
    assert body["steps"] == [s for s, _ in recs]
    assert body["layer"] == layer
    totals = np.stack([a[1:].sum(axis=0) for _, a in recs])
    close(body["counts"], totals[:, 0:9])
    close(body["sums"], totals[:, 9:18])
    close(body["near_zero_counts"], totals[:, 18:27])
    close(body["near_zero_sums"], totals[:, 27:36])
    close(body["cells"], totals[:, 36])
    close(body["near_zero_cells"], totals[:, 37])
    close(body["near_zero_fraction"], [fraction(t[37], t[36]) for t in totals])


# ----------------------------------------------------------------------------------------------- /heatmap


def test_heatmap_is_layers_by_union_of_steps_with_null_for_missing(client, written):
    body = get_json(client, "/heatmap", run="beta", role="forward")
    assert body["layers"] == ["d0", "d1"]
    assert body["steps"] == [5, 15, 25]
    d0 = [fraction(a[1:, 37].sum(), a[1:, 36].sum()) for _, a in records(written, "beta", "forward", "d0")]
    d1 = [fraction(a[1:, 37].sum(), a[1:, 36].sum()) for _, a in records(written, "beta", "forward", "d1")]
    close(body["values"][0], d0)
    assert body["values"][1][0] is None
    close(body["values"][1][1:], d1)


# ----------------------------------------------------------------------------------------------- /units


@pytest.mark.parametrize("layer,step", [("d0", None), ("d0", 11), ("d2", 20), ("d2", 30), ("d1", 10**6)])
def test_units_are_the_written_rows(client, written, layer, step):
    params = {"run": "alpha", "role": "kernel_gradient", "layer": layer}
    if step is not None:
        params["step"] = str(step)
    body = get_json(client, "/units", **params)
    at, array = at_or_before(records(written, "alpha", "kernel_gradient", layer), step)
    rows = array[1:]
    assert body["step"] == at
    assert body["units"] == LAYERS[layer][2]
    assert body["group_size"] == int(array[0, 7])
    assert len(body["counts"]) == rows.shape[0]
    close(body["counts"], rows[:, 0:9])
    close(body["sums"], rows[:, 9:18])
    close(body["near_zero_counts"], rows[:, 18:27])
    close(body["near_zero_sums"], rows[:, 27:36])
    close(body["cells"], rows[:, 36])
    close(body["near_zero_cells"], rows[:, 37])
    close(body["near_zero_fraction"], [fraction(r[37], r[36]) for r in rows])


def test_units_group_beyond_max_units(client):
    body = get_json(client, "/units", run="alpha", role="forward", layer="d2")
    assert body["units"] == 300
    assert body["group_size"] == 2 and len(body["counts"]) == 150


def write_compact_run(logdir, details):
    """Run "compact": layer d0's forward record at each (step, detail) of `details`, with unit detail where
    `detail` is True (the records `ExplainerCallback(unit_detail_every=N)` writes between its detailed steps)."""
    rng = np.random.default_rng(3)
    index, inputs, units = LAYERS["d0"]
    md = metadata.create_summary_metadata(
        "d0", None, role="forward", op="dense", layer="d0", index=index, units=units, confidence=0.9
    )
    with tf.summary.create_file_writer(os.path.join(logdir, "compact")).as_default():
        for step, detail in details:
            x, kernel, _ = layer_data(rng, inputs, units)
            totals = aggregates.dense(tf.constant(x, tf.float32), tf.constant(kernel, tf.float32), confidence=0.9)
            summary.write_totals("d0_forward", totals, step, md, detail=detail)


@pytest.mark.parametrize("cache_mb", ["256", "0"])
def test_units_from_the_latest_record_with_unit_detail(tmp_path, cache_mb):
    """/units answers from the latest record with unit detail at or before the step (its `step` says which), 404
    with a message before the first one; the other routes keep every step."""
    write_compact_run(str(tmp_path), [(0, False), (10, True), (20, False), (30, False)])
    client, _ = make_client(str(tmp_path), "--matmul_explainer_cache_mb=" + cache_mb)
    q = {"run": "compact", "role": "forward", "layer": "d0"}
    assert get_json(client, "/units", **q)["step"] == 10  # the latest record (30) has no unit detail
    for step in (10, 15, 20, 30, 10**6):
        body = get_json(client, "/units", **q, step=str(step))
        assert body["step"] == 10
        assert len(body["counts"]) == LAYERS["d0"][2]
        (totals,) = get_json(client, "/overview", run="compact", role="forward", step="10")["layers"]
        close(np.sum(body["counts"], axis=0), totals["counts"])
        close(np.sum(body["near_zero_cells"]), totals["near_zero_cells"])
    for step in (0, 5):
        response = client.get(PREFIX + "/units", query_string={**q, "step": str(step)})
        assert response.status_code == 404, response.get_data(as_text=True)
        assert "no record with unit detail at or before step %d" % step in response.get_data(as_text=True)
    # Every step keeps its layer totals and per-unit near-zero shares.
    assert get_json(client, "/overview", run="compact", role="forward", step="20")["layers"][0]["step"] == 20
    assert get_json(client, "/unit_heatmap", **q)["steps"] == [0, 10, 20, 30]


# ----------------------------------------------------------------------------------------------- /unit_heatmap


def test_unit_heatmap_json_and_f32_agree_with_written_rows(client, written):
    recs = records(written, "alpha", "forward", "d1")
    expected = np.stack([[fraction(r[37], r[36]) for r in a[1:]] for _, a in recs], axis=1)  # [rows, steps]
    body = get_json(client, "/unit_heatmap", run="alpha", role="forward", layer="d1")
    assert body["steps"] == [s for s, _ in recs]
    assert body["rows"] == 3 and body["group_size"] == 1
    close(body["values"], expected)
    response = client.get(
        PREFIX + "/unit_heatmap", query_string={"run": "alpha", "role": "forward", "layer": "d1", "format": "f32"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Rows"] == "3"
    assert response.headers["X-Steps"] == ",".join(str(s) for s, _ in recs)
    assert response.headers["X-Group-Size"] == "1"
    values = np.frombuffer(response.get_data(), "<f4").reshape(3, len(recs))
    np.testing.assert_allclose(values, expected.astype(np.float32), rtol=1e-6)


# ----------------------------------------------------------------------------------------------- /compare


def test_compare_overview_aligns_layers_with_null_for_missing(client, written):
    body = get_json(client, "/compare", view="overview", run=["alpha", "beta"])
    assert body["view"] == "overview" and body["role"] == "forward" and body["runs"] == ["alpha", "beta"]
    assert body["layers"] == ["d0", "d1", "d2"]
    alpha, beta = body["results"]
    single = get_json(client, "/overview", run="alpha", role="forward")
    assert alpha["layers"] == single["layers"]
    assert [l and l["name"] for l in beta["layers"]] == ["d0", "d1", None]
    assert beta["layers"][0] == get_json(client, "/overview", run="beta", role="forward")["layers"][0]


def test_compare_heatmap_and_timeline(client):
    body = get_json(client, "/compare", view="heatmap", run=["beta", "alpha"], role="kernel_gradient")
    assert body["layers"] == ["d0", "d1", "d2"]
    beta, alpha = body["results"]
    assert beta["values"][2] is None and len(beta["values"][0]) == len(beta["steps"]) == 3
    assert alpha["values"] == get_json(client, "/heatmap", run="alpha", role="kernel_gradient")["values"]
    body = get_json(client, "/compare", view="timeline", run=["alpha", "beta"], layer="d2")
    assert body["results"][1] is None
    assert body["results"][0] == get_json(client, "/timeline", run="alpha", role="forward", layer="d2")


# ----------------------------------------------------------------------------------------------- non-finite data


def test_non_finite_values_are_null_in_strict_json(client, written):
    body = get_json(client, "/units", run="nan", role="forward", layer="d0")  # get_json rejects NaN/Infinity
    ((_, array),) = records(written, "nan", "forward", "d0")
    close(body["sums"], array[1:, 9:18])
    close(get_json(client, "/overview", run="nan", role="forward")["layers"][0]["sums"], array[1:, 9:18].sum(0))
    assert array[0, 3:6].sum() > 0  # the writer counted the non-finite inputs


# ----------------------------------------------------------------------------------------------- errors

BAD_REQUESTS = [
    ("/overview", {"role": "forward"}, 400),  # missing run
    ("/overview", {"run": "alpha"}, 400),  # missing role
    ("/overview", {"run": "alpha", "role": "sideways"}, 400),  # malformed role
    ("/overview", {"run": "alpha", "role": "input_gradient"}, 404),  # role without data
    ("/overview", {"run": "nope", "role": "forward"}, 404),  # unknown run
    ("/overview", {"run": "scalars_only", "role": "forward"}, 404),  # run without our data
    ("/overview", {"run": ["alpha", "beta"], "role": "forward"}, 400),  # repeated run
    ("/overview", {"run": "alpha", "role": "forward", "step": "-1"}, 400),
    ("/overview", {"run": "alpha", "role": "forward", "step": "1.5"}, 400),
    ("/overview", {"run": "alpha", "role": "forward", "step": "ten"}, 400),
    ("/overview", {"run": "alpha", "role": "forward", "step": ""}, 400),
    ("/overview", {"run": "alpha", "role": "forward", "step": "+3"}, 400),
    ("/overview", {"run": "alpha", "role": "forward", "step": "\uff13"}, 400),  # a non-ASCII digit
    ("/overview", {"run": "alpha", "role": "forward", "step": "9" * 40}, 400),
    ("/overview", {"run": "alpha", "role": "forward", "step": str(2**63)}, 400),
    ("/overview", {"run": "alpha", "role": "forward", "step": ["1", "2"]}, 400),
    ("/timeline", {"run": "alpha", "role": "forward"}, 400),  # missing layer
    ("/timeline", {"run": "alpha", "role": "forward", "layer": "zz"}, 404),
    ("/timeline", {"run": "beta", "role": "forward", "layer": "d2"}, 404),  # layer missing in this run
    ("/heatmap", {"run": "alpha"}, 400),
    ("/units", {"run": "alpha", "role": "forward", "layer": "d0", "step": "abc"}, 400),
    ("/units", {"run": "beta", "role": "forward", "layer": "d1", "step": "16"}, 200),
    ("/units", {"run": "beta", "role": "forward", "layer": "d1", "step": "14"}, 404),
    ("/units", {"run": "beta", "role": "forward", "layer": "d1", "step": "5"}, 404),
    ("/unit_heatmap", {"run": "alpha", "role": "forward", "layer": "d0", "format": "png"}, 400),
    ("/unit_heatmap", {"run": "alpha", "role": "forward", "layer": "nope"}, 404),
    ("/compare", {"run": "alpha"}, 400),  # missing view
    ("/compare", {"view": "table", "run": "alpha"}, 400),
    ("/compare", {"view": "overview"}, 400),  # no run
    ("/compare", {"view": "overview", "run": ["r%d" % i for i in range(9)]}, 400),
    ("/compare", {"view": "overview", "run": ["alpha", "nope"]}, 404),
    ("/compare", {"view": "timeline", "run": "alpha"}, 400),  # timeline needs layer
    ("/compare", {"view": "heatmap", "run": "alpha", "role": "up"}, 400),
    ("/compare", {"view": "overview", "run": "alpha", "step": "x"}, 400),
    ("/diagnosis", {"run": "alpha", "role": "forward"}, 400),  # missing layer
    ("/diagnosis", {"run": "alpha", "role": "forward", "layer": "zz"}, 404),
    ("/diagnosis", {"run": "beta", "role": "forward", "layer": "d1", "step": "4"}, 404),
    ("/diagnosis", {"run": "gamma", "role": "forward", "layer": "d9"}, 400),  # unknown contract version
    ("/alerts", {}, 400),
    ("/alerts", {"run": "nope"}, 404),
    ("/alerts", {"run": "alpha", "step": "-2"}, 400),
]


@pytest.mark.parametrize("path,params,code", BAD_REQUESTS)
def test_bad_requests_give_4xx_with_a_message(client, path, params, code):
    response = client.get(PREFIX + path, query_string=params)
    assert response.status_code == code, response.get_data(as_text=True)
    if code != 200:
        # TensorBoard's error middleware turned our tensorboard.errors exception into a plain-text response
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.get_data(as_text=True)
        assert text.startswith("Invalid argument" if code == 400 else "Not found"), text


# ----------------------------------------------------------------------------------------------- diagnosis


@pytest.mark.parametrize("run,step", [("alpha", None), ("alpha", 15), ("beta", None), ("nan", None)])
def test_alerts_and_diagnoses_equal_explain_over_the_loader(client, logdir, run, step):
    params = {"run": run} if step is None else {"run": run, "step": step}
    body = get_json(client, "/alerts", **params)
    diagnoses, alerts = explain.diagnose_run(loader.load(logdir).runs[run], step)
    assert [(a["kind"], a["layer"], a["role"], a["first_step"], a["message"]) for a in body["alerts"]] == [
        (a.kind, a.layer, a.role, a.first_step, a.message) for a in alerts
    ]
    assert body["diagnoses"] == [
        {"layer": d.layer, "role": d.role, "step": d.step, "text": d.text, "starved": d.starved} for d in diagnoses
    ]
    for d in diagnoses:
        one = get_json(
            client, "/diagnosis", run=run, role=d.role, layer=d.layer, **({} if step is None else {"step": step})
        )
        assert (one["step"], one["text"], one["dead_rows"]) == (d.step, d.text, d.dead_rows)
        assert one["causes"] == pytest.approx(d.causes)


def write_vanishing_logdir(logdir):
    """Run "deep": kernel gradients of k0 vanish at steps 10 and 20 only; dense d's units die from step 20."""
    rng = np.random.default_rng(11)
    with tf.summary.create_file_writer(os.path.join(logdir, "deep")).as_default():
        for step in (0, 10, 20, 30):
            for index, layer in enumerate(("k0", "k1", "k2")):
                x, _, d_out = layer_data(rng, 6, 4)
                scale = 1e-5 if layer == "k0" and step in (10, 20) else 1.0
                write_layer("kernel_gradient", layer, index, x, d_out * scale, step)
            x, kernel, _ = layer_data(rng, 6, 5)
            x = np.abs(x)
            if step >= 20:
                kernel[:, :2] = 0.0
            write_layer("forward", "d", 3, x, kernel, step)


def _diagnosis_json(d):
    """A /diagnosis body computed directly by `explain` (as `plugin.views.diagnosis` shapes it)."""
    return {
        "role": d.role,
        "layer": d.layer,
        "step": d.step,
        "text": d.text,
        "causes": {k: plugin_views.json_float(v) for k, v in d.causes.items()},
        "near_zero_fraction": plugin_views.json_float(d.near_zero_fraction),
        "dead_rows": d.dead_rows,
        "starved": d.starved,
        "alerts": [plugin_views.alert_json(a) for a in d.alerts],
    }


def without_open(body):
    """A body's alerts less their `open` field (where the tab shows them: needs the run's tags)."""
    alerts = [{k: v for k, v in a.items() if k != "open"} for a in body["alerts"]]
    return {**body, "alerts": alerts}


@pytest.mark.parametrize("cache_mb", ["256", "0"])
def test_past_step_diagnosis_equals_explain_over_the_records(tmp_path, cache_mb):
    """/diagnosis and /alerts at any step are answered from the cached digests (no record is read again): the
    bodies equal `explain.diagnose_run` over the records read by the loader, exactly, with and without a cache."""
    write_vanishing_logdir(str(tmp_path))
    client, _ = make_client(str(tmp_path), "--matmul_explainer_cache_mb=" + cache_mb)
    layers = loader.load(str(tmp_path)).runs["deep"]
    fired = set()
    for step in (None, 0, 5, 10, 15, 20, 25, 30, 10**6):
        params = {} if step is None else {"step": str(step)}
        for role in ("kernel_gradient", "forward"):
            diagnoses = [d for d in explain.diagnose_run(layers, step)[0] if d.role == role]
            for d in diagnoses:
                body = get_json(client, "/diagnosis", run="deep", role=role, layer=d.layer, **params)
                assert without_open(body) == dict(run="deep", **_diagnosis_json(d)), (step, d.layer)
                fired.update(a["kind"] for a in body["alerts"])
        diagnoses, alerts = explain.diagnose_run(layers, step)
        body = get_json(client, "/alerts", run="deep", **params)
        assert without_open(body)["alerts"] == [plugin_views.alert_json(a) for a in alerts]
        assert all(a["open"]["layer"] == a["layer"] for a in body["alerts"])
        assert body["diagnoses"] == [
            {"layer": d.layer, "role": d.role, "step": d.step, "text": d.text, "starved": d.starved} for d in diagnoses
        ]
    assert {"vanishing_gradient", "dead_units"} <= fired  # the rules that compare layers and steps were exercised
    vanishing = get_json(client, "/diagnosis", run="deep", role="kernel_gradient", layer="k0", step="15")
    assert [(a["kind"], a["first_step"]) for a in vanishing["alerts"]] == [("vanishing_gradient", 10)]
    assert get_json(client, "/diagnosis", run="deep", role="kernel_gradient", layer="k0")["alerts"] == []


def test_digest_keeps_exactly_what_the_diagnosis_reads(tmp_path):
    write_vanishing_logdir(str(tmp_path))
    layers = loader.load(str(tmp_path)).runs["deep"]
    client, app = make_client(str(tmp_path))
    get_json(client, "/heatmap", run="deep", role="kernel_gradient")  # reads the digests
    reader = _plugin_of(app).reader(tb_context.RequestContext(), "")
    for (layer, role), series in layers.items():
        view = plugin_views.LayerView(reader, reader.index()["deep"].layers[layer].roles[role])
        for step, record in zip(series.steps, series.records):
            at, t = view.record_at(step)
            expected = explain.totals(record)
            assert at == step and t.dead_rows == expected.dead_rows
            assert (t.rows, t.group_size) == (expected.rows, expected.group_size)
            for field in ("counts", "sums", "near_zero_counts", "near_zero_sums", "thresholds", "nonfinite"):
                np.testing.assert_array_equal(getattr(t, field), getattr(expected, field))
            assert (t.cells, t.near_zero_cells) == (expected.cells, expected.near_zero_cells)
            # The summaries' own fields; their `totals` were compared field by field above, record by record.
            assert [dataclasses.replace(h, totals=None) for h in view.history(step)] == [
                dataclasses.replace(h, totals=None) for h in series.history(step)
            ]


@pytest.mark.parametrize("cache_mb", ["256", "1", "0"])
def test_past_step_units_through_the_cache(logdir, written, cache_mb):
    """/units at every step, twice over (the second time from the records cache where it fits; with 1 MB the
    cache cannot hold the tag, with 0 there is none): always the written rows."""
    client, _ = make_client(logdir, "--matmul_explainer_cache_mb=" + cache_mb)
    get_json(client, "/heatmap", run="alpha", role="forward")
    for _ in range(2):
        for layer in ("d2", "d0"):
            recs = records(written, "alpha", "forward", layer)
            for step in (0, 9, 10, 25, 30, None):
                params = {} if step is None else {"step": str(step)}
                body = get_json(client, "/units", run="alpha", role="forward", layer=layer, **params)
                at, array = at_or_before(recs, step)
                assert body["step"] == at
                close(body["counts"], array[1:, 0:9])
                close(body["sums"], array[1:, 9:18])
                close(body["near_zero_sums"], array[1:, 27:36])
                close(body["near_zero_cells"], array[1:, 37])


def test_non_finite_values_are_alerted(client):
    body = get_json(client, "/alerts", run="nan")
    assert "non_finite" in [a["kind"] for a in body["alerts"]]


def test_non_finite_alert_since_the_step_they_came_in(tmp_path):
    """A run that diverges (a NaN sample at step 10, every weight NaN from step 20): /alerts, answered from the
    digests, dates the non-finite alert from step 10, claims no dead units or collapsed weights for the NaN, and
    equals `explain` over the records at every step."""
    rng = np.random.default_rng(5)
    with tf.summary.create_file_writer(os.path.join(str(tmp_path), "diverging")).as_default():
        for step in (0, 10, 20, 30):
            x, kernel, _ = layer_data(rng, 6, 5)
            if step == 10:
                x[2, 3] = np.nan
            if step >= 20:
                kernel[:] = np.nan
            write_layer("forward", "d0", 0, x, kernel, step)
    client, _ = make_client(str(tmp_path))
    layers = loader.load(str(tmp_path)).runs["diverging"]
    for step in (None, 0, 10, 20, 30):
        params = {} if step is None else {"step": str(step)}
        _, alerts = explain.diagnose_run(layers, step)
        body = get_json(client, "/alerts", run="diverging", **params)
        assert without_open(body)["alerts"] == [plugin_views.alert_json(a) for a in alerts]
    kinds = [(a["kind"], a["first_step"]) for a in get_json(client, "/alerts", run="diverging")["alerts"]]
    assert kinds == [("non_finite", 10)]


def test_non_utf8_query_is_not_a_server_error(client):
    for url in (
        PREFIX + "/overview?run=%ff%fe&role=forward",
        PREFIX + "/overview?run=alpha&role=%c3%28",
        PREFIX + "/timeline?run=alpha&role=forward&layer=%80",
        PREFIX + "/units?run=alpha&role=forward&layer=d0&step=%ff",
        PREFIX + "/%ff%fe.js",
    ):
        response = client.get(url)
        assert 400 <= response.status_code < 500, (url, response.status_code)


# ----------------------------------------------------------------------------------------------- static files


def test_serves_index_js_as_a_module(client):
    response = client.get(PREFIX + "/index.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert b"export" in response.get_data()


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%5c..%5cetc%5cpasswd",
        "//etc/passwd",
        "/%2Fetc%2Fpasswd",
        "/static/../../plugin.py",
        "/../plugin.py",
        "/%2e%2e%2fplugin.py",
        "/../plugin/web.py",
        "/%2e%2e/metadata.py",
        "/index.js%00.png",
        "/nothing.js",
        "/",
        "/.",
        "/..",
    ],
)
def test_static_files_are_guarded(client, path):
    response = client.get(PREFIX + path)
    assert response.status_code == 404, (path, response.get_data()[:200])
    assert b"root:" not in response.get_data() and b"import" not in response.get_data()


def test_static_guard_direct_paths(logdir):
    """Paths as a WSGI server may hand them over (already decoded, not normalised)."""
    _, app = make_client(logdir)
    for raw in (
        "/data/plugin/matmul_explainer/../../../../etc/passwd",
        "/data/plugin/matmul_explainer/../metadata.py",
        "/data/plugin/matmul_explainer/" + os.path.abspath(__file__),
    ):
        environ = werkzeug_test.EnvironBuilder(path="/").get_environ()
        environ["PATH_INFO"] = raw
        status = []
        body = b"".join(app(environ, lambda s, h, *a, status=status: status.append(s)))
        assert status[0].startswith("404"), (raw, status, body[:100])


# ------------------------------------------------------------------------------------------- TensorBoard integration


def test_plugins_listing_enables_the_tab(client):
    listing = json.loads(client.get("/data/plugins_listing").get_data())
    entry = listing[metadata.PLUGIN_NAME]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Matmul Explainer"
    assert entry["loading_mechanism"] == {"type": "IFRAME", "module_path": PREFIX + "/index.js"}


def _plugin_of(app):
    (plugin,) = [p for p in app._plugins if p.plugin_name == metadata.PLUGIN_NAME]
    return plugin


def _tab_enabled(client):
    return json.loads(client.get("/data/plugins_listing").get_data())[metadata.PLUGIN_NAME]["enabled"]


def test_tab_enabled_exactly_when_a_run_holds_our_summaries(tmp_path):
    """TensorBoard enables the tab from its data provider's `list_plugins` (our summaries set DATA_CLASS_TENSOR),
    so the plugin's `is_active` makes no call of its own, as TensorBoard's own plugins."""
    empty = tmp_path / "empty"
    with tf.summary.create_file_writer(str(empty / "run")).as_default():
        tf.summary.scalar("loss", 1.0, step=0)
    client, app = make_client(str(empty))
    assert _tab_enabled(client) is False
    assert _plugin_of(app).is_active() is False
    client, _ = make_client(str(tmp_path / "missing"))
    assert _tab_enabled(client) is False
    ours = tmp_path / "ours"
    with tf.summary.create_file_writer(str(ours / "run")).as_default():
        rng = np.random.default_rng(1)
        x, kernel, _ = layer_data(rng, 4, 3)
        write_layer("forward", "d", 0, x, kernel, 0)
    client, _ = make_client(str(ours))
    assert _tab_enabled(client) is True


# ----------------------------------------------------------------------------------------------- flags / retention


def test_fix_flags_adds_our_default_retention(tmp_path):
    assert make_flags(str(tmp_path)).samples_per_plugin == {"matmul_explainer": plugin_lib.DEFAULT_SAMPLES_PER_TAG}
    assert plugin_lib.DEFAULT_SAMPLES_PER_TAG >= 300
    flags = make_flags(str(tmp_path), "--samples_per_plugin=images=3,scalars=40")
    assert flags.samples_per_plugin == {"images": 3, "scalars": 40, "matmul_explainer": 500}


@pytest.mark.parametrize("value,expected", [("7", 7), ("0", 0), ("5000", 5000)])
def test_explicit_retention_wins(tmp_path, value, expected):
    flags = make_flags(str(tmp_path), "--samples_per_plugin=matmul_explainer=%s,images=2" % value)
    assert flags.samples_per_plugin == {"matmul_explainer": expected, "images": 2}


def test_with_default_retention_accepts_every_form():
    assert plugin_lib.with_default_retention(None) == {"matmul_explainer": 500}
    assert plugin_lib.with_default_retention("") == {"matmul_explainer": 500}
    assert plugin_lib.with_default_retention("matmul_explainer=0") == {"matmul_explainer": 0}
    assert plugin_lib.with_default_retention({"x": 1}) == {"x": 1, "matmul_explainer": 500}
    with pytest.raises(base_plugin.FlagsError):
        plugin_lib.with_default_retention("matmul_explainer=lots")


def test_read_downsample_is_never_zero():
    ctx = base_plugin.TBContext(sampling_hints={"matmul_explainer": 0}, flags=argparse.Namespace())
    assert plugin_lib.MatmulExplainerPlugin(ctx)._downsample >= 10**6
    ctx = base_plugin.TBContext(sampling_hints={"matmul_explainer": 7}, flags=argparse.Namespace())
    assert plugin_lib.MatmulExplainerPlugin(ctx)._downsample == 7


def test_our_flag_does_not_clash_and_is_validated(tmp_path):
    flags = make_flags(str(tmp_path), "--matmul_explainer_cache_mb=0")
    assert flags.matmul_explainer_cache_mb == 0
    with pytest.raises(base_plugin.FlagsError):
        make_flags(str(tmp_path), "--matmul_explainer_cache_mb=-1")


def test_default_retention_keeps_hundreds_of_records_with_the_legacy_loader(tmp_path):
    """TensorBoard keeps 10 samples of a third-party tensor summary by default; our fix_flags keeps 500."""
    rng = np.random.default_rng(2)
    x, kernel, _ = layer_data(rng, 3, 2, batch=2)
    write = tf.function(lambda step: write_layer("forward", "d", 0, x, kernel, step))  # traced once: fast
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        for step in range(520):
            write(tf.constant(step, tf.int64))
    client, _ = make_client(str(tmp_path))
    assert len(get_json(client, "/timeline", run="run", role="forward", layer="d")["steps"]) == 500
    client, _ = make_client(str(tmp_path), "--samples_per_plugin=matmul_explainer=0")
    assert len(get_json(client, "/timeline", run="run", role="forward", layer="d")["steps"]) == 520


def test_cache_is_invalidated_by_new_data(tmp_path, monkeypatch):
    """Cached digests and records are keyed by the listing's (max_step, max_wall_time); a listing is reused for
    LISTING_TTL_S seconds, so new data shows once that has passed."""
    monkeypatch.setattr(plugin_cache, "LISTING_TTL_S", 0.3)
    rng = np.random.default_rng(3)
    x, kernel, _ = layer_data(rng, 3, 2)
    run = str(tmp_path / "run")
    with tf.summary.create_file_writer(run).as_default():
        write_layer("forward", "d", 0, x, kernel, 0)
    flags = make_flags(str(tmp_path))
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance=flags.samples_per_plugin)
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = multiplexer_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    client = werkzeug_test.Client(
        application.TensorBoardWSGIApp(flags, [plugin_lib.MatmulExplainerLoader], data_provider=provider)
    )
    assert get_json(client, "/timeline", run="run", role="forward", layer="d")["steps"] == [0]
    assert get_json(client, "/units", run="run", role="forward", layer="d")["step"] == 0
    with tf.summary.create_file_writer(run).as_default():
        write_layer("forward", "d", 0, x, kernel, 1)
    multiplexer.Reload()
    time.sleep(0.35)
    assert get_json(client, "/timeline", run="run", role="forward", layer="d")["steps"] == [0, 1]
    assert get_json(client, "/units", run="run", role="forward", layer="d")["step"] == 1
