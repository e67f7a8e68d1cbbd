"""End to end: a real `tensorboard` process, with our plugin from its installed entry point, under both loaders.

The logs are written with our writer (`plugin_helpers.write_logdir`), plus a run of 150 records (more than the 10
or 100 samples TensorBoard keeps of a third-party tensor summary by default). Every route's response from the
real server must equal the in-process app's response over the same logs (which `test_plugin` checks against the
event files).
"""

import importlib.metadata
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import plugin_helpers, tensorboard_server

PREFIX = "/data/plugin/matmul_explainer"
LONG_STEPS = 150
LOAD_TIMEOUT_S = 60

ROUTES = [
    "/runs",
    "/overview?run=alpha&role=forward",
    "/overview?run=beta&role=kernel_gradient&step=16",
    "/timeline?run=alpha&role=forward&layer=d2",
    "/timeline?run=long&role=forward&layer=d",
    "/heatmap?run=beta&role=forward",
    "/units?run=alpha&role=kernel_gradient&layer=d2&step=20",
    "/units?run=nan&role=forward&layer=d0",
    "/unit_heatmap?run=alpha&role=forward&layer=d1",
    "/compare?view=overview&run=alpha&run=beta",
    "/compare?view=heatmap&run=beta&run=alpha&role=kernel_gradient",
    "/compare?view=timeline&run=alpha&run=beta&layer=d2",
]
ERRORS = [
    ("/overview?run=alpha&role=forward&step=-1", 400),
    ("/overview?run=nope&role=forward", 404),
    ("/timeline?run=gamma&role=forward&layer=d9", 400),  # contract version 3
    ("/units?run=alpha&role=forward&layer=d0&step=%ff", 400),
    ("/..%2F..%2F..%2Fetc%2Fpasswd", 404),
]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("e2e_logs"))
    plugin_helpers.write_logdir(d)
    rng = np.random.default_rng(7)
    x, kernel, _ = plugin_helpers.layer_data(rng, 3, 2, batch=2)
    write = tf.function(lambda step: plugin_helpers.write_layer("forward", "d", 0, x, kernel, step))
    with tf.summary.create_file_writer(os.path.join(d, "long")).as_default():
        for step in range(LONG_STEPS):
            write(tf.constant(step, tf.int64))
    return d


@pytest.fixture(scope="module")
def expected(logdir):
    """Responses of the in-process app (legacy multiplexer) over the same logs."""
    client, _ = plugin_helpers.make_client(logdir)
    out = {}
    for route in ROUTES:
        response = client.get(PREFIX + route)
        assert response.status_code == 200, (route, response.get_data(as_text=True))
        out[route] = response.get_data()
    return out


def _get(base, path):
    status, headers, body, _ = tensorboard_server.get(base + path, timeout=30)
    return status, headers, body


@pytest.fixture(
    scope="module", params=["true", "false"], ids=["load_fast=true (Rust data server)", "load_fast=false (multiplexer)"]
)
def server(request, logdir):
    names = [ep.name for ep in importlib.metadata.entry_points(group="tensorboard_plugins")]
    assert "matmul_explainer" in names, "install the package first: pip install --no-deps -e ."
    with tensorboard_server.start(logdir, request.param, reload_interval=1) as tb:
        tb.wait_until(lambda: _loaded(tb.url), timeout=LOAD_TIMEOUT_S, interval=0.5)
        yield tb.url


def _loaded(url):
    status, _, body = _get(url, PREFIX + "/timeline?run=long&role=forward&layer=d")
    if status != 200 or len(json.loads(body)["steps"]) != LONG_STEPS:
        return False
    status, _, body = _get(url, PREFIX + "/runs")
    return status == 200 and len(json.loads(body)["runs"]) == 5


def test_plugin_is_listed_and_enabled(server):
    status, _, body = _get(server, "/data/plugins_listing")
    assert status == 200
    entry = json.loads(body)["matmul_explainer"]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Matmul Explainer"
    assert entry["loading_mechanism"]["module_path"] == PREFIX + "/index.js"


def test_every_route_matches_the_in_process_app(server, expected):
    for route in ROUTES:
        status, headers, body = _get(server, PREFIX + route)
        assert status == 200, (route, body[:300])
        assert json.loads(body) == json.loads(expected[route]), route


def test_retention_keeps_more_than_tensorboards_default(server):
    _, _, body = _get(server, PREFIX + "/timeline?run=long&role=forward&layer=d")
    assert json.loads(body)["steps"] == list(range(LONG_STEPS))


def test_errors_and_static(server):
    for route, code in ERRORS:
        status, _, body = _get(server, PREFIX + route)
        assert status == code, (route, status, body[:300])
    status, headers, body = _get(server, PREFIX + "/index.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    status, headers, body = _get(server, PREFIX + "/unit_heatmap?run=alpha&role=forward&layer=d1&format=f32")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert len(body) == 4 * int(headers["X-Rows"]) * len(headers["X-Steps"].split(","))
