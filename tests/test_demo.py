"""The bundled demo: each run's diagnosis names the problem planted in it (and nothing for the healthy one)."""

import os
import subprocess
import sys

import pytest

from tb_matmul_explainer import explain, loader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("demo"))
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "demo", "train.py"),
            "--logdir",
            logdir,
            "--epochs",
            "1",
            "--update-freq",
            "20",
        ],
        check=True,
        cwd=ROOT,
    )
    return loader.load(logdir).runs


def alerts_of(runs, run):
    return explain.diagnose_run(runs[run])[1]


def test_the_healthy_runs_have_nothing_wrong(demo_runs):
    diagnoses, alerts = explain.diagnose_run(demo_runs["healthy_mlp/train"])
    assert alerts == []
    assert all(d.text.startswith("Nothing wrong") for d in diagnoses)
    # The small CNN (SGD) loses some of its dense layer's ReLUs as it trains: the only alert it may raise is dead
    # units at an activation, named where they die, never a vanishing gradient or a consumer's false alarm.
    _, alerts = explain.diagnose_run(demo_runs["small_cnn/train"])
    assert all((a.kind, a.role) == ("dead_units", "activation") and a.severity < 0.5 for a in alerts), alerts


def test_dying_relus_are_named_where_they_die(demo_runs):
    """The alert belongs to the layers whose ReLUs died, not to the layer that consumes their zeros."""
    diagnoses, alerts = explain.diagnose_run(demo_runs["dying_relu_mlp/train"])
    assert alerts and {(a.kind, a.role) for a in alerts} == {("dead_units", "activation")}
    assert alerts[0].layer in ("dense_1", "dense_2") and "logits" not in {a.layer for a in alerts}
    logits = next(d for d in diagnoses if (d.layer, d.role) == ("logits", "forward"))
    assert logits.starved and "near-zero input from dense_2" in logits.text


def test_vanishing_gradients_are_named_in_the_first_layers(demo_runs):
    alerts = alerts_of(demo_runs, "sigmoid_deep_mlp/train")
    assert {a.kind for a in alerts} == {"vanishing_gradient"}
    assert alerts[0].layer == "sigmoid_1"
