"""Multi-worker training (`MultiWorkerMirroredStrategy`, two worker processes on loopback): only the chief
writes records, and they cover the global batch as one process training on it records."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tb_matmul_explainer import metadata
from tests.keras_helpers import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "tests", "multi_worker_run.py")
TIMEOUT_S = 300


def _free_ports(n):
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(tf_config=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _check(process, what):
    out, _ = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, f"{what} failed:\n{out[-4000:]}"
    return out


def _start(log_dir, mode, tf_config=None):
    return subprocess.Popen(
        [sys.executable, RUN, str(log_dir), mode],
        env=_env(tf_config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(multi-worker log dir, single-process log dir) after both trainings."""
    try:
        ports = _free_ports(2)
    except OSError as e:
        pytest.skip(f"cannot bind loopback ports for the two workers: {e}")
    multi, single = tmp_path_factory.mktemp("multi"), tmp_path_factory.mktemp("single")
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = [_start(multi, "worker", {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in (0, 1)]
    reference = _start(single, "single")
    try:
        for i, w in enumerate(workers):
            _check(w, f"worker {i}")
        _check(reference, "the single-process run")
    finally:
        for p in workers + [reference]:
            if p.poll() is None:
                p.kill()
    return multi, single


def test_only_the_chief_writes_records(runs):
    multi, _ = runs
    assert sorted(os.listdir(multi)) == ["train"], "a non-chief worker's temporary directory was left behind"
    event_files = [f for f in os.listdir(multi / "train") if f.endswith(".matmul_explainer")]
    assert len(event_files) == 1, event_files


def test_the_chiefs_records_cover_the_global_batch_as_one_process(runs):
    multi, single = runs
    got, want = records(multi), records(single)
    assert sorted(got) == sorted(want)
    for tag in ("hidden/forward", "out/forward", "hidden/kernel_gradient", "out/kernel_gradient"):
        assert [s for s, _ in got[tag][1]] == [0, 2], tag  # every recorded step once
        assert [r.detail for _, r in got[tag][1]] == [True, False], tag  # unit detail at each fit's first record
        for (_, g), (_, w) in zip(got[tag][1], want[tag][1]):
            # Counts are exact: the replicas' totals over their halves sum to the global batch's.
            np.testing.assert_array_equal(g.cells, w.cells, err_msg=tag)
            np.testing.assert_array_equal(g.near_zero_cells, w.near_zero_cells, err_msg=tag)
            counts = np.r_[metadata.COUNTS, metadata.NEAR_ZERO_COUNTS]
            np.testing.assert_array_equal(g.totals[counts], w.totals[counts], err_msg=tag)
            np.testing.assert_allclose(g.totals[metadata.SUMS], w.totals[metadata.SUMS], rtol=1e-4, atol=1e-6)
            if g.detail:
                np.testing.assert_array_equal(g.counts, w.counts, err_msg=tag)
                np.testing.assert_array_equal(g.near_zero_counts, w.near_zero_counts, err_msg=tag)
                np.testing.assert_allclose(g.sums, w.sums, rtol=1e-4, atol=1e-6, err_msg=tag)
    # A forward record's products per unit: the global batch x the layer's inputs.
    step0 = got["hidden/forward"][1][0][1]
    np.testing.assert_array_equal(np.asarray(step0.counts).sum(-1), 16 * 8)
