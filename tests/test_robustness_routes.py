"""Robustness and security of the plugin's HTTP routes: a fuzz of malformed requests, GET only, hostile names.

The app is TensorBoard's real WSGI app (`plugin_helpers.make_client`: `TensorBoardWSGIApp` with its error and
security middleware, over an `EventMultiplexer`) on a log directory written by our writer (`plugin_helpers.
write_logdir`, plus a run and layers with script and HTML in their names). Requests are handed to the app as raw
WSGI environs (`werkzeug.test.run_wsgi_app`), so paths and query strings can carry any bytes, exactly as a server
would pass them on.

The fuzz (deterministic: `random.Random(SEED)`) sends `FUZZ_REQUESTS` malformed requests: missing, repeated,
huge, non-UTF-8 and path-traversal parameters; unknown runs, layers, roles and views; negative, enormous and
non-decimal steps; random bytes and traversal sequences in the path. Every response must be below 500, carry
`X-Content-Type-Options: nosniff`, be JSON (or the documented f32 body) when it is 200 on a data route, be
plain text when it is an error, and never contain a file from outside the plugin's static folder (the contents of
/etc/passwd, the package's Python sources, the event files).
"""

import glob
import json
import os
import random
import urllib.parse

import pytest
import tensorflow as tf
from werkzeug import test as werkzeug_test

import tb_matmul_explainer
from tb_matmul_explainer.plugin import web
from tests import plugin_helpers, tensorboard_server

PREFIX = plugin_helpers.PREFIX
SEED = 20240608
FUZZ_REQUESTS = 1200
METHODS = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND")
DATA_ROUTES = (
    "/runs",
    "/overview",
    "/timeline",
    "/heatmap",
    "/units",
    "/unit_heatmap",
    "/compare",
    "/diagnosis",
    "/alerts",
)
HOSTILE_RUN = "<img src=x onerror=alert(1)>\"'&"
HOSTILE_LAYER = "</script><script>alert(document.cookie)</script><b onmouseover=alert(2)>"
HOSTILE_LAYER_2 = "\u5c42\U0001f642 <svg/onload=alert(3)> &amp; \\u003c"
PACKAGE_DIR = os.path.dirname(os.path.abspath(tb_matmul_explainer.__file__))
STATIC_DIR = os.path.realpath(os.path.join(PACKAGE_DIR, "static"))


# ----------------------------------------------------------------------------------------------- fixtures


def write_hostile_run(logdir):
    """A run whose directory name and layer names hold HTML and script, written by our writer."""
    import numpy as np

    rng = np.random.default_rng(3)
    with tf.summary.create_file_writer(os.path.join(logdir, HOSTILE_RUN)).as_default():
        for step in (0, 1):
            for index, layer in enumerate((HOSTILE_LAYER, HOSTILE_LAYER_2)):
                x, kernel, d_out = plugin_helpers.layer_data(rng, 4, 3)
                plugin_helpers.write_layer("forward", layer, index, x, kernel, step)
                plugin_helpers.write_layer("kernel_gradient", layer, index, x, d_out, step)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("robust_routes"))
    plugin_helpers.write_logdir(d)
    write_hostile_run(d)
    return d


@pytest.fixture(scope="module")
def app(logdir):
    return plugin_helpers.make_client(logdir)[1]


@pytest.fixture(scope="module")
def forbidden(logdir):
    """Byte snippets that must never appear in a response: lines of /etc/passwd, of every Python source of the
    package and of the tests, and of the event files."""
    snippets = set()
    with open("/etc/passwd", "rb") as f:
        snippets.update(l.strip() for l in f.read().splitlines() if len(l.strip()) >= 10)
    for path in (
        glob.glob(os.path.join(PACKAGE_DIR, "**", "*.py"), recursive=True)
        + glob.glob(os.path.join(PACKAGE_DIR, "*.md"))
        + glob.glob(os.path.join(os.path.dirname(__file__), "*.py"))
    ):
        with open(path, "rb") as f:
            lines = [l.strip() for l in f.read().splitlines()]
        # distinctive lines only (not e.g. "return x" that a JSON body could hold by chance)
        snippets.update(l for l in lines if len(l) >= 40 and not l.startswith((b"#", b'"', b"'")))
    for path in glob.glob(os.path.join(logdir, "*", "events.out.tfevents.*")):
        with open(path, "rb") as f:
            head = f.read(24)
        snippets.add(head[:12])  # the record header (length + CRC) of the first event
    return snippets


@pytest.fixture(scope="module")
def static_files():
    out = {}
    for root, _, files in os.walk(STATIC_DIR):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.join(root, name)] = f.read()
    return out


# ----------------------------------------------------------------------------------------------- requests


def request(app, path, query=b"", method="GET", raw_path=None):
    """Sends one request as a raw WSGI environ; returns (status, headers, body). `path`/`query` are bytes or
    str (percent-encoded as given); `raw_path` (bytes) replaces PATH_INFO verbatim, as a server passes it."""
    if isinstance(query, str):
        query = query.encode("latin-1")
    environ = werkzeug_test.EnvironBuilder(path="/", method=method).get_environ()
    raw = raw_path if raw_path is not None else urllib.parse.unquote_to_bytes(path)
    environ["PATH_INFO"] = raw.decode("latin-1")  # PEP 3333: bytes as latin-1
    environ["RAW_URI"] = environ["REQUEST_URI"] = path if isinstance(path, str) else path.decode("latin-1")
    environ["QUERY_STRING"] = query.decode("latin-1")
    try:
        app_iter, status, headers = werkzeug_test.run_wsgi_app(app, environ, buffered=True)
        body = b"".join(app_iter)
    except Exception as e:  # the server would answer 500
        return 500, {}, ("%s: %s" % (type(e).__name__, e)).encode()
    return int(status.split()[0]), dict(headers), body


def check_response(status, headers, body, route, forbidden, static_files, what):
    assert status < 500, (what, status, body[:500])
    assert headers.get("X-Content-Type-Options") == "nosniff", (what, headers)
    content_type = headers.get("Content-Type", "")
    assert not content_type.startswith("text/html"), (what, content_type)
    for snippet in forbidden:
        assert snippet not in body, (what, snippet)
    if status == 200:
        if route in DATA_ROUTES:
            if content_type == "application/octet-stream":
                assert route == "/unit_heatmap", what
            else:
                assert content_type.startswith("application/json"), (what, content_type)
                json.loads(body, parse_constant=lambda c: pytest.fail("non-JSON constant %s" % c))
        elif route != "core":
            assert body in static_files.values(), (what, body[:200])
    elif status >= 400:
        assert content_type.startswith("text/plain"), (what, content_type)


# ----------------------------------------------------------------------------------------------- the fuzz

VALID = {
    "/runs": [],
    "/overview": [("run", "alpha"), ("role", "forward"), ("step", "20")],
    "/timeline": [("run", "alpha"), ("role", "forward"), ("layer", "d1")],
    "/heatmap": [("run", "beta"), ("role", "kernel_gradient")],
    "/units": [("run", "alpha"), ("role", "forward"), ("layer", "d2"), ("step", "10")],
    "/unit_heatmap": [("run", "alpha"), ("role", "forward"), ("layer", "d0"), ("format", "f32")],
    "/compare": [("view", "overview"), ("run", "alpha"), ("run", "beta"), ("role", "forward")],
    "/diagnosis": [("run", "alpha"), ("role", "kernel_gradient"), ("layer", "d1")],
    "/alerts": [("run", "beta"), ("step", "15")],
}

BAD_VALUES = [
    b"",
    b" ",
    b"\x00",
    b"%00",
    b"..",
    b"../../../../etc/passwd",
    b"..%2f..%2f..%2fetc%2fpasswd",
    b"/etc/passwd",
    b"%2e%2e%2f%2e%2e%2fplugin.py",
    b"..\\..\\plugin.py",
    b"%ff%fe%fd",
    b"\xff\xfe",
    b"%c0%af%c0%af",
    b"%ed%a0%80",
    b"nope",
    b"ALPHA",
    b"alpha ",
    b" alpha",
    b"alpha%00",
    b"d9",
    b"gamma",
    b"scalars_only",
    b"nan",
    b"forward ",
    b"Forward",
    b"kernel_gradient\x00",
    b"input_gradient",
    b"%E2%80%AE",
    b"<script>alert(1)</script>",
    b"%3Cscript%3E",
    b"{}",
    b"[]",
    b"null",
    b"true",
    b"\\u0000",
    b"%",
    b"%%",
    b"%zz",
    b"+",
    b"&",
    b"=",
    b"==",
    b"'; DROP TABLE runs; --",
    b"${jndi:ldap://x}",
    b"{{7*7}}",
    b"\r\nX-Injected: 1",
    b"%0d%0aX-Injected:%201",
]
BAD_STEPS = [
    b"-1",
    b"-0",
    b"-999999999999",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551616",
    b"1" + b"0" * 100,
    b"1e3",
    b"0x10",
    b"1.5",
    b"+5",
    b" 5",
    b"5 ",
    b"%D9%A3",
    b"\xd9\xa3",
    b"NaN",
    b"inf",
    b"-inf",
    b"",
    b"00000000000000000000000000001",
    b"0" * 5000,
    b"9" * 19,
    b"\xff",
    b"%ff",
    b"1_000",
]


def _encode(value):
    """Percent-encodes raw bytes for a query string (keeps existing %-sequences as the fuzz wrote them)."""
    return urllib.parse.quote(value, safe=b"%+=&").encode("ascii") if not value.startswith(b"%") else value


def fuzz_cases(rng, n):
    """n (route, path, query bytes, description) malformed requests."""
    routes = list(VALID)
    cases = []
    while len(cases) < n:
        kind = rng.choice(
            [
                "drop",
                "repeat",
                "huge",
                "bad_value",
                "bad_step",
                "unknown",
                "raw_query",
                "path_bytes",
                "path_traversal",
                "extra",
                "many_params",
            ]
        )
        route = rng.choice(routes)
        params = [(k.encode(), v.encode()) for k, v in VALID[route]]
        path = PREFIX + route
        raw_path = None
        if kind == "drop" and params:
            params.pop(rng.randrange(len(params)))
        elif kind == "repeat":
            name = rng.choice([p[0] for p in params] or [b"run", b"step"])
            params += [(name, rng.choice([b"alpha", b"beta", b"1", b"x"])) for _ in range(rng.choice([1, 2, 9, 50]))]
        elif kind == "huge":
            name = rng.choice([p[0] for p in params] or [b"run"])
            huge = rng.choice([b"a", b"\xff", b"../", b"9", b"%2e"]) * rng.choice([1000, 100_000])
            params = [(k, huge if k == name else v) for k, v in params] + ([(name, huge)] if not params else [])
        elif kind == "bad_value":
            name = rng.choice([p[0] for p in params] + [b"run", b"role", b"layer", b"view", b"format"])
            params = [p for p in params if p[0] != name] + [(name, rng.choice(BAD_VALUES))]
        elif kind == "bad_step":
            params = [p for p in params if p[0] != b"step"] + [(b"step", rng.choice(BAD_STEPS))]
        elif kind == "unknown":
            name = rng.choice([b"run", b"layer", b"role", b"view", b"format"])
            params = [p for p in params if p[0] != name] + [(name, b"unknown_%d" % rng.randrange(10**6))]
        elif kind == "raw_query":
            query = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            cases.append((route, path, query, "%s raw query %r" % (route, query[:40])))
            continue
        elif kind == "path_bytes":
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
            raw_path = (PREFIX + rng.choice(["/", route + "/", "/static/", "/index.js/"])).encode() + junk
            route = "static"
        elif kind == "path_traversal":
            raw_path = (
                PREFIX
                + rng.choice(
                    [
                        "/../../../../etc/passwd",
                        "/..%2f..%2f..%2fetc%2fpasswd",
                        "/%2e%2e/%2e%2e/plugin.py",
                        "/../plugin.py",
                        "/static/../plugin.py",
                        "/./../plugin.py",
                        "/index.js/../../plugin.py",
                        "//etc/passwd",
                        "/..\\plugin.py",
                        "/index.js%00.py",
                        "/%252e%252e/plugin.py",
                        "/....//....//etc/passwd",
                        "/static/../../tb_matmul_explainer/plugin.py",
                        "/.%2e/plugin.py",
                        "/%c0%ae%c0%ae/plugin.py",
                        "/../../../../../../../../proc/self/environ",
                        "/runs/../../../etc/passwd",
                        "/..;/plugin.py",
                        "/" + "../" * 40 + "etc/passwd",
                        "/static/%2e%2e%5cplugin.py",
                    ]
                )
            ).encode()
            if rng.random() < 0.5:
                raw_path = urllib.parse.unquote_to_bytes(raw_path)
            route = "static"
        elif kind == "extra":
            params += [(bytes(rng.randrange(256) for _ in range(5)), b"v")]
            rng.shuffle(params)
        else:  # many_params
            params += [(b"p%d" % i, b"v") for i in range(rng.choice([100, 2000]))]
        query = b"&".join(_encode(k) + b"=" + _encode(v) for k, v in params)
        cases.append((route, raw_path or path.encode(), query, "%s %s %r" % (route, kind, query[:80])))
    return cases


def test_fuzz_malformed_requests(app, forbidden, static_files):
    rng = random.Random(SEED)
    cases = fuzz_cases(rng, FUZZ_REQUESTS)
    statuses = {}
    for route, path, query, what in cases:
        status, headers, body = request(app, path, query, raw_path=path if route == "static" else None)
        check_response(status, headers, body, route, forbidden, static_files, what)
        statuses[status] = statuses.get(status, 0) + 1
    print("fuzz: %d malformed requests, statuses %s" % (len(cases), dict(sorted(statuses.items()))))
    assert len(cases) >= 1000
    assert sum(v for k, v in statuses.items() if k >= 500) == 0
    assert statuses.get(400, 0) > 100 and statuses.get(404, 0) > 100  # the fuzz reaches both error kinds


def test_valid_requests_still_answer(app, forbidden, static_files):
    """The fuzz's base requests are valid: the app answers them (so the fuzz mutates working requests)."""
    for route, params in VALID.items():
        query = urllib.parse.urlencode(params).encode()
        status, headers, body = request(app, PREFIX + route, query)
        assert status == 200, (route, body[:300])
        check_response(status, headers, body, route, forbidden, static_files, route)
    status, headers, body = request(app, PREFIX + "/index.js")
    assert status == 200 and body in static_files.values()


def test_raw_non_utf8_query_is_a_400(app, forbidden, static_files):
    """Raw bytes that are not UTF-8 in the query string (a server passes them on as they came): werkzeug's
    `request.args` raised UnicodeDecodeError, a 500; the plugin answers 400."""
    for query in (b"run=alpha\xf7&role=forward", b"%\xf7|=v&run=alpha&role=forward&layer=d1", b"\xff\xfe"):
        for route in DATA_ROUTES:
            status, headers, body = request(app, PREFIX + route, query)
            check_response(status, headers, body, route, forbidden, static_files, (route, query))
            assert status == (200 if route == "/runs" else 400), (route, query, status, body[:200])


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e/plugin.py",
        "/static/../plugin.py",
        "/index.js/../../plugin.py",
        "/./../__init__.py",
        "//etc/passwd",
        "/..%5cplugin.py",
        "/index.js%00",
    ],
)
def test_traversal_is_404_raw_and_decoded(app, forbidden, static_files, path):
    for raw in ((PREFIX + path).encode(), urllib.parse.unquote_to_bytes(PREFIX + path)):
        status, headers, body = request(app, raw, raw_path=raw)
        check_response(status, headers, body, "static", forbidden, static_files, raw)
        assert status == 404, (raw, status)


def test_symlinks_out_of_the_static_folder_are_not_followed(app, forbidden, static_files, tmp_path, monkeypatch):
    """A static folder holding links to files and folders outside it (e.g. a bundle built with symlinks): the links
    are not served; the real file is."""
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.js").write_bytes(b"export function render() {}\n")
    (static / "leak.js").symlink_to("/etc/passwd")
    (static / "pkg").symlink_to(PACKAGE_DIR, target_is_directory=True)
    monkeypatch.setattr(web, "STATIC_DIR", str(static))
    for path in ("/leak.js", "/pkg/plugin/web.py", "/pkg/static/index.js", "/pkg/../../etc/passwd"):
        status, headers, body = request(app, (PREFIX + path).encode(), raw_path=(PREFIX + path).encode())
        check_response(status, headers, body, "core", forbidden, static_files, path)
        assert status == 404, (path, status)
    status, _, body = request(app, (PREFIX + "/index.js").encode(), raw_path=(PREFIX + "/index.js").encode())
    assert status == 200 and body == b"export function render() {}\n"


# ----------------------------------------------------------------------------------------------- GET only


@pytest.mark.parametrize("route", list(DATA_ROUTES) + ["/index.js", "/no_such_file.js"])
@pytest.mark.parametrize("method", METHODS)
def test_other_methods_are_refused(app, forbidden, static_files, route, method):
    query = urllib.parse.urlencode(VALID.get(route, [])).encode()
    status, headers, body = request(app, PREFIX + route, query, method=method)
    check_response(status, headers, body, route, forbidden, static_files, (method, route))
    assert status == 405, (method, route, status, body[:200])
    assert headers.get("Allow") == "GET, HEAD"


@pytest.mark.parametrize("route", list(DATA_ROUTES))
def test_head_is_allowed(app, route):
    query = urllib.parse.urlencode(VALID[route]).encode()
    status, _, body = request(app, PREFIX + route, query, method="HEAD")
    assert status == 200 and body == b""


# ----------------------------------------------------------------------------------------------- hostile names


def _strict_json(body):
    return json.loads(body, parse_constant=lambda c: pytest.fail("non-JSON constant %s" % c))


def test_hostile_names_are_served_as_json_text(app, forbidden, static_files):
    status, headers, body = request(app, PREFIX + "/runs")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    runs = {r["run"]: r for r in _strict_json(body)["runs"]}
    assert HOSTILE_RUN in runs  # names arrive intact, as data
    assert [l["name"] for l in runs[HOSTILE_RUN]["layers"]] == [HOSTILE_LAYER, HOSTILE_LAYER_2]
    for layer in (HOSTILE_LAYER, HOSTILE_LAYER_2):
        for route, extra in [
            ("/timeline", {"role": "forward"}),
            ("/units", {"role": "forward"}),
            ("/unit_heatmap", {"role": "kernel_gradient"}),
            ("/diagnosis", {"role": "forward"}),
        ]:
            query = urllib.parse.urlencode(dict(run=HOSTILE_RUN, layer=layer, **extra)).encode()
            status, headers, body = request(app, PREFIX + route, query)
            check_response(status, headers, body, route, forbidden, static_files, (route, layer))
            assert status == 200 and headers["Content-Type"].startswith("application/json"), (route, body[:200])
            got = _strict_json(body)
            assert got["run"] == HOSTILE_RUN and got["layer"] == layer
    names = {
        "/overview": lambda j: [l["name"] for l in j["layers"]],
        "/heatmap": lambda j: j["layers"],
        "/alerts": lambda j: [d["layer"] for d in j["diagnoses"] if d["role"] == "forward"],
    }
    for route, extra in [("/overview", {"role": "forward"}), ("/heatmap", {"role": "forward"}), ("/alerts", {})]:
        status, headers, body = request(
            app, PREFIX + route, urllib.parse.urlencode(dict(run=HOSTILE_RUN, **extra)).encode()
        )
        check_response(status, headers, body, route, forbidden, static_files, route)
        assert status == 200
        assert names[route](_strict_json(body)) == [HOSTILE_LAYER, HOSTILE_LAYER_2]


def test_errors_that_echo_hostile_names_are_plain_text(app, forbidden, static_files):
    for params in [
        dict(run=HOSTILE_RUN + "x", role="forward", layer=HOSTILE_LAYER),
        dict(run=HOSTILE_RUN, role="forward", layer=HOSTILE_LAYER + "<x>"),
        dict(run="<script>alert(1)</script>", role="<b>x</b>", layer="<i>"),
    ]:
        for route in ("/timeline", "/units", "/diagnosis"):
            status, headers, body = request(app, PREFIX + route, urllib.parse.urlencode(params).encode())
            check_response(status, headers, body, route, forbidden, static_files, (route, params))
            assert status in (400, 404)
            assert headers["Content-Type"].startswith("text/plain")


# ----------------------------------------------------------------------------------------------- under load


def test_tags_are_read_once_for_every_step(logdir):
    """/alerts and /diagnosis read every tag of the run once (its digest keeps what the diagnosis reads of each
    record), then answer any step from the digests without reading again (found under load: every /alerts made one
    data-provider call per tag, ~40 ms each with the Rust data server, and /diagnosis of a kernel gradient at an
    earlier step re-read every layer's whole tag); /units at an earlier step reads its tag once into a cache."""
    from tensorboard.backend.event_processing import data_provider as multiplexer_provider

    client, _ = plugin_helpers.make_client(logdir)
    calls = []
    original = multiplexer_provider.MultiplexerDataProvider.read_tensors

    def counting(self, ctx, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None):
        calls.append((plugin_name, downsample))
        return original(
            self,
            ctx,
            experiment_id=experiment_id,
            plugin_name=plugin_name,
            downsample=downsample,
            run_tag_filter=run_tag_filter,
        )

    multiplexer_provider.MultiplexerDataProvider.read_tensors = counting
    try:
        first = client.get(PREFIX + "/alerts?run=alpha")
        assert first.status_code == 200
        assert len(calls) == 6  # alpha: 3 layers x 2 roles, each tag read once
        second = client.get(PREFIX + "/alerts?run=alpha")
        assert second.status_code == 200 and second.get_data() == first.get_data()
        for step in ("0", "15", "30"):
            assert client.get(PREFIX + "/alerts?run=alpha&step=" + step).status_code == 200
            for layer in ("d0", "d1", "d2"):
                for role in ("forward", "kernel_gradient"):
                    response = client.get(
                        PREFIX
                        + "/diagnosis?"
                        + urllib.parse.urlencode({"run": "alpha", "role": role, "layer": layer, "step": step})
                    )
                    assert response.status_code == 200
        assert len(calls) == 6  # nothing read again
        for step in ("0", "15", "20", "10"):
            assert client.get(PREFIX + "/units?run=alpha&role=forward&layer=d2&step=" + step).status_code == 200
        assert len(calls) == 7  # the tag's records once, then from the cache
    finally:
        multiplexer_provider.MultiplexerDataProvider.read_tensors = original


def _bench_module(name):
    import importlib.util
    import sys

    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)  # bench/load.py imports its neighbour plugin_latency
    spec = importlib.util.spec_from_file_location("bench_" + name, os.path.join(bench, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_concurrent_load_on_a_real_tensorboard(logdir):
    """A small `bench/load.py`: 16 clients x 20 requests across every route against a real TensorBoard (default
    loader) on loopback: zero errors (no timing assertion; bench/load.py reports latency)."""
    load = _bench_module("load")
    with tensorboard_server.start(logdir, "auto") as tb:

        def loaded():
            status, _, body, _ = tb.get(PREFIX + "/timeline?run=alpha&role=kernel_gradient&layer=d2")
            if status != 200 or len(json.loads(body)["steps"]) != 4:
                return False
            status, _, body, _ = tb.get(PREFIX + "/runs")
            return status == 200 and len(json.loads(body)["runs"]) == 5

        tb.wait_until(loaded, timeout=60)
        paths = [(route, route + "?" + urllib.parse.urlencode(params), 200) for route, params in VALID.items()]
        paths += [
            ("hostile", "/overview?" + urllib.parse.urlencode({"run": HOSTILE_RUN, "role": "forward"}), 200),
            ("gamma unreadable", "/timeline?run=gamma&role=forward&layer=d9", 400),
            ("unknown run", "/heatmap?run=nope&role=forward", 404),
        ]
        rng = random.Random(SEED)
        plans = [[rng.choice(paths) for _ in range(20)] for _ in range(16)]
        results, _ = load.run_load(tb.url, plans)
        errors, _, times = load.summarise(results)
        assert tb.alive(), "TensorBoard died under load:\n" + tb.log_tail()
    assert len(results) == 320 and len(times) == 320
    assert errors == [], errors[:5]
