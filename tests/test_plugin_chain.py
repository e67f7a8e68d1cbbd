"""The plugin's routes over the roles around the matmul (activation, activation_gradient, input_features), on logs
written by the real Keras callback: every route answers them, alerts say where a problem starts and where the tab
can open it, the overview gives each layer's inactive share, and version-1 logs are served as before.

Expected values come from the loader (which reads the event files itself) and `explain.diagnose_run` over it.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import __main__ as cli
from tb_matmul_explainer import explain, loader, metadata
from tb_matmul_explainer.keras import ExplainerCallback
from tests.plugin_helpers import PREFIX, get_json, make_client

NEW_ROLES = ("activation", "activation_gradient", "input_features")
BATCH = 16


def _fit(model, logdir, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4 * BATCH, 8)).astype(np.float32)
    y = rng.integers(0, 3, 4 * BATCH)
    model.compile(keras.optimizers.SGD(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(
        x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[ExplainerCallback(logdir, update_freq=1)]
    )


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Run "dying/train": hidden_2's ReLUs are dead from step 0 (bias -8); run "bn/train": the ReLUs of relu_1, an
    Activation layer after BatchNormalization (beta -6), are dead, seen only in logits' input features."""
    root = str(tmp_path_factory.mktemp("chain"))
    keras.utils.set_random_seed(0)
    _fit(
        keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu", name="hidden_1"),
                keras.layers.Dense(
                    16, activation="relu", bias_initializer=keras.initializers.Constant(-8.0), name="hidden_2"
                ),
                keras.layers.Dense(3, name="logits"),
            ]
        ),
        os.path.join(root, "dying"),
        0,
    )
    inputs = keras.Input((8,))
    h = keras.layers.Dense(16, name="pre")(inputs)
    h = keras.layers.BatchNormalization(beta_initializer=keras.initializers.Constant(-6.0), name="bn")(h)
    h = keras.layers.Activation("relu", name="relu_1")(h)
    _fit(keras.Model(inputs, keras.layers.Dense(3, name="logits")(h)), os.path.join(root, "bn"), 1)
    return root


@pytest.fixture(scope="module")
def client(logdir):
    return make_client(logdir)[0]


@pytest.fixture(scope="module")
def runs(logdir):
    return loader.load(logdir).runs


def test_runs_list_the_new_roles_per_layer_with_their_metadata(client):
    body = get_json(client, "/runs")
    dying = next(r for r in body["runs"] if r["run"] == "dying/train")
    layers = {l["name"]: l["roles"] for l in dying["layers"]}
    assert set(NEW_ROLES) <= set(dying["roles"])
    assert set(NEW_ROLES) <= set(layers["hidden_2"]) and "activation" not in layers["logits"]
    assert layers["hidden_2"]["activation"]["activation"] == "relu"
    assert layers["hidden_2"]["activation"]["operands"] == ["matmul", "bias"]
    assert (layers["logits"]["input_features"]["producer"], layers["logits"]["input_features"]["producer_kind"]) == (
        "hidden_2",
        "activation",
    )
    assert layers["hidden_1"]["input_features"]["producer_kind"] == "input"


@pytest.mark.parametrize("run", ["dying/train", "bn/train"])
def test_every_route_answers_every_role(client, runs, run):
    """200 with values for every (layer, role); input_features' pair columns are 0 and nothing divides by them."""
    for (layer, role), series in runs[run].items():
        last = series.steps[-1]
        overview = get_json(client, "/overview", run=run, role=role)
        entry = next(l for l in overview["layers"] if l["name"] == layer)
        t = series.table
        assert entry["cells"] == t.cells[-1] and entry["dead_units"] == len(t.dead_rows[-1])
        assert entry["near_zero_fraction"] == pytest.approx(t.near_zero_cells[-1] / t.cells[-1])
        timeline = get_json(client, "/timeline", run=run, role=role, layer=layer)
        assert timeline["steps"] == series.steps
        heat = get_json(client, "/heatmap", run=run, role=role)
        assert heat["values"][heat["layers"].index(layer)][-1] == pytest.approx(entry["near_zero_fraction"])
        units = get_json(client, "/units", run=run, role=role, layer=layer)
        detailed = [s for s, r in zip(series.steps, series.records) if r.detail]
        assert detailed == [0] and last == 3  # unit_detail_every=10: only the fit's first of 4 recorded steps
        assert (units["step"], len(units["cells"])) == (detailed[-1], len(series.records[-1].cells))
        assert None not in units["near_zero_fraction"]
        get_json(client, "/unit_heatmap", run=run, role=role, layer=layer)
        assert (
            client.get(
                PREFIX + "/unit_heatmap", query_string={"run": run, "role": role, "layer": layer, "format": "f32"}
            ).status_code
            == 200
        )
        diagnosis = get_json(client, "/diagnosis", run=run, role=role, layer=layer)
        assert diagnosis["text"] and isinstance(diagnosis["starved"], bool)
        compare = get_json(client, "/compare", view="timeline", run=run, role=role, layer=layer)
        assert compare["results"][0]["steps"] == series.steps
        if role == "input_features":
            assert entry["counts"] == [0.0] * 9 and entry["sums"] == [0.0] * 9


def test_overview_gives_each_layers_inactive_share(client, runs):
    for role in ("forward", "kernel_gradient", "input_features"):
        body = get_json(client, "/overview", run="dying/train", role=role, step=2)
        shares = {l["name"]: l["inactive_fraction"] for l in body["layers"]}
        assert shares["logits"] is None  # no activation of its own
        for layer in ("hidden_1", "hidden_2"):
            t = runs["dying/train"][(layer, "activation")].table
            i = t.index_at(2)
            assert shares[layer] == pytest.approx(t.near_zero_cells[i] / t.cells[i])
    assert get_json(client, "/overview", run="dying/train", role="forward")["layers"][1]["inactive_fraction"] == 1.0
    compared = get_json(client, "/compare", view="overview", run=["dying/train", "bn/train"], role="forward")
    assert compared["results"][1]["layers"][compared["layers"].index("pre")]["inactive_fraction"] is None


def test_alerts_name_the_origin_and_where_the_tab_opens_it(client, runs):
    body = get_json(client, "/alerts", run="dying/train")
    lead = body["alerts"][0]
    assert (lead["kind"], lead["layer"], lead["role"], lead["seen_in"]) == (
        "dead_units",
        "hidden_2",
        "activation",
        None,
    )
    assert lead["open"] == {
        "layer": "hidden_2",
        "role": "activation",
        "tag": runs["dying/train"][("hidden_2", "activation")].tag,
    }
    starved = {(d["layer"], d["role"]): d["starved"] for d in body["diagnoses"]}
    assert starved[("logits", "forward")] is True and starved[("hidden_2", "activation")] is False
    one = get_json(client, "/diagnosis", run="dying/train", role="forward", layer="logits")
    assert one["starved"] is True and "hidden_2" in one["text"]

    # relu_1 has no records of its own: the alert opens at the input features of logits, which showed it.
    bn = get_json(client, "/alerts", run="bn/train")["alerts"]
    relu = next(a for a in bn if a["layer"] == "relu_1")
    assert (relu["kind"], relu["role"], relu["seen_in"]) == ("dead_units", "input_features", "logits")
    assert relu["open"] == {
        "layer": "logits",
        "role": "input_features",
        "tag": runs["bn/train"][("logits", "input_features")].tag,
    }
    _, alerts = explain.diagnose_run(runs["bn/train"])
    assert [(a["layer"], a["seen_in"] or "") for a in bn] == [(a.layer, a.seen_in) for a in alerts]


def _write_version_1(logdir):
    """A version-1 run: one forward record per step of a dense layer, in the layout version 1 wrote ([rows+1, 38],
    metadata {"v": 1} without the version-2 fields)."""
    rng = np.random.default_rng(3)
    content = {
        "v": 1,
        "role": "forward",
        "op": "dense",
        "operands": ["input", "kernel"],
        "layer": "old",
        "index": 0,
        "units": 4,
        "confidence": 0.95,
        "thresholds": [None, None, None],
    }
    from tensorboard.compat.proto import summary_pb2

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=json.dumps(content).encode()
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )
    with tf.summary.create_file_writer(os.path.join(logdir, "v1")).as_default():
        for step in (0, 1):
            array = np.zeros((5, metadata.V1_COLUMNS))
            array[0, :8] = [0.1, 0.1, 0.2, 0, 0, 0, 4, 1]
            array[1:, :9] = rng.integers(0, 5, (4, 9))
            array[1:, 36] = array[1:, :9].sum(axis=1)
            array[1:, 37] = array[1:, 36] // 4
            tf.summary.write("old_forward", tf.constant(array), step=step, metadata=meta)


def test_version_1_logs_are_served_with_null_inactive_share(tmp_path):
    _write_version_1(str(tmp_path))
    client, _ = make_client(str(tmp_path))
    runs = get_json(client, "/runs")["runs"]
    assert runs[0]["roles"] == ["forward"] and runs[0]["layers"][0]["roles"]["forward"]["producer"] is None
    entry = get_json(client, "/overview", run="v1", role="forward")["layers"][0]
    assert entry["inactive_fraction"] is None and entry["step"] == 1
    alerts = get_json(client, "/alerts", run="v1")
    assert [d["layer"] for d in alerts["diagnoses"]] == ["old"]
    assert all(a["open"]["layer"] == "old" for a in alerts["alerts"])


def test_report_prints_seen_in_and_a_chain_per_layer(logdir, runs, capsys):
    assert cli.main(["report", logdir]) == 0
    out = capsys.readouterr().out
    assert "relu_1 (input features, seen in logits), from step 0:" in out
    dying = out.split("== run dying/train")[1].splitlines()
    chain = next(line.strip() for line in dying if line.strip().startswith("hidden_2: forward:"))
    # Chain order, and the dead ReLUs at the activation step, with its function and every unit dead.
    assert (
        chain.index("input features") < chain.index("x.W") < chain.index("activation relu 100% inactive (16/16 dead)")
    )
    assert chain.index("| backward: dJ/dz") < chain.index("dJ/dW")  # input_gradient is not a default role
    logits = next(line.strip() for line in dying if line.strip().startswith("logits: forward:"))
    assert "from hidden_2" in logits and "activation" not in logits.split("|")[0]


def test_dataframe_has_result_magnitude_and_reference(runs, logdir):
    frame = loader.to_dataframe(loader.load(logdir))
    row = frame[(frame.run == "dying/train") & (frame.layer == "hidden_2") & (frame.role == "kernel_gradient")]
    t = runs["dying/train"][("hidden_2", "kernel_gradient")].table
    assert list(row.groupby("step").reference.first()) == pytest.approx(list(t.reference))
    assert list(row.groupby("step").result_magnitude.first()) == pytest.approx(list(t.result_magnitude))
    assert (t.reference > 0).all()  # sum of |W|: the weights the gradient updates
