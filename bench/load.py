"""The plugin under concurrent load: 16 clients x 200 requests against a real TensorBoard on loopback.

Generates a log directory of RUNS x LAYERS x 2 roles x STEPS records of UNITS units (default 3 x 16 x 2 x 120 x
256: 11,520 records, 0.9 GB) with `plugin_latency.generate` (the writer's packing path: `metadata.pack_record` +
`tf.summary.write` with our metadata), starts `tensorboard` on 127.0.0.1 with its default loader (the Rust data
server where installed), waits until everything is loaded, warms up (every heatmap once, as a user opening each
run does), then runs CLIENTS threads, each sending REQUESTS requests over its own keep-alive-free
`http.client` connections, cycling through every route with varied run/role/layer/step (as
`plugin_latency.route_queries`), plus one request in 20 for an unknown run (expected 404). An error is any
response other than the expected status, a body that is not the expected JSON (or f32 bytes), a timeout or a
connection failure. Prints the error count, latency percentiles overall and per route, and the throughput.

    python bench/load.py [--clients 16 --requests 200] [--runs 3 --layers 16 --steps 120 --units 256]
                         [--logdir DIR (reuse or keep)] [--load_fast auto|true|false]

Ends with `target zero errors under 16x200 load: <n> (bound 0): met|missed` (issue 8 asks for zero errors and a
reported p95, with no latency bound) and `p95 latency under load: <ms> (reported; no bound)`; exits 0. Loopback
only.

Figures (2-core CPU shared with other jobs, load average ~2.5 before the run, default loader, 3 x 16 x 2 x 120 x
256): before /diagnosis and /alerts were answered from the per-tag digests: 0 errors, p50 203 ms, p95 597 ms,
/diagnosis p95 5.0 s (a kernel gradient at an earlier step re-read every layer's whole tag), /units p95 637 ms,
43 requests/s. After (two runs): 0 errors, p50 130-141 ms, p95 238-271 ms, /diagnosis p95 ~200 ms, /units p95
336-454 ms (an earlier step of a tag not in the cache reads the tag), 102-112 requests/s. With 16 clients always
waiting, latency is mostly queueing: p50 ~ 16 / throughput.
"""

import argparse
import collections
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_BENCH, os.path.dirname(_BENCH)]  # this folder and the repository root
import plugin_latency  # noqa: E402  (same folder: generator, route queries, percentiles)

from tests import tensorboard_server  # noqa: E402  (starts TensorBoard and waits until it serves)

PREFIX = "/data/plugin/matmul_explainer"
TIMEOUT_S = 60


def request_plan(runs, layers, steps, rng, n, missing_share=0.05):
    """n (route name, path, expected status) requests cycling over the routes with varied parameters."""
    layer_names = ["layer_%02d" % i for i in range(layers)]  # `plugin_latency.dense_shapes`
    per_route = plugin_latency.route_queries(runs, layer_names, steps, rng, max(1, n // 8))
    # /diagnosis and /alerts are not in plugin_latency's list: add them
    q = urllib.parse.urlencode
    per_route["diagnosis"] = [
        "/diagnosis?"
        + q(
            {
                "run": "run_%d" % rng.randrange(runs),
                "role": rng.choice(["forward", "kernel_gradient"]),
                "layer": rng.choice(layer_names),
                "step": str(rng.randrange(steps)),
            }
        )
        for _ in range(max(1, n // 8))
    ]
    per_route["alerts"] = ["/alerts?" + q({"run": "run_%d" % rng.randrange(runs)}) for _ in range(max(1, n // 8))]
    names = sorted(per_route)
    plan = []
    for i in range(n):
        if rng.random() < missing_share:
            plan.append(("unknown run (404)", "/overview?run=no_such_run&role=forward", 404))
            continue
        name = names[i % len(names)]
        plan.append((name, rng.choice(per_route[name]), 200))
    rng.shuffle(plan)
    return plan


def _check_body(path, status, headers, body):
    """None if the body is what the route promises, else a short reason."""
    if status != 200:
        return None
    if "format=f32" in path:
        rows, steps = int(headers.get("X-Rows", "-1")), len(headers.get("X-Steps", "").split(","))
        return None if len(body) == 4 * rows * steps else "f32 body of %d bytes" % len(body)
    try:
        json.loads(body, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError as e:
        return "invalid JSON: %s" % e
    return None


def one_request(host, port, path, timeout=TIMEOUT_S):
    """(status, headers, body, ms) over a fresh connection; raises on connection errors and timeouts."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", PREFIX + path)
        response = conn.getresponse()
        body = response.read()
        return response.status, dict(response.getheaders()), body, (time.perf_counter() - start) * 1000
    finally:
        conn.close()


def run_load(base, plans):
    """Runs one thread per plan (all started together); returns (results, wall seconds).

    results: list of (route name, ms or None, error or None)."""
    parsed = urllib.parse.urlparse(base)
    host, port = parsed.hostname, parsed.port
    results, lock = [], threading.Lock()
    barrier = threading.Barrier(len(plans))

    def client(plan):
        local = []
        barrier.wait()
        for name, path, expected in plan:
            try:
                status, headers, body, ms = one_request(host, port, path)
            except Exception as e:  # connection refused/reset, timeout
                local.append((name, None, "%s: %s" % (type(e).__name__, e)))
                continue
            error = None
            if status != expected:
                error = "status %d (expected %d) for %s: %r" % (status, expected, path, body[:120])
            else:
                reason = _check_body(path, status, headers, body)
                error = reason and "%s for %s" % (reason, path)
            local.append((name, ms, error))
        with lock:
            results.extend(local)

    threads = [threading.Thread(target=client, args=(plan,)) for plan in plans]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def summarise(results):
    """(errors, {route: [ms...]}, all ms)."""
    errors = [r for r in results if r[2] is not None]
    by_route = collections.defaultdict(list)
    for name, ms, _ in results:
        if ms is not None:
            by_route[name].append(ms)
    return errors, by_route, [ms for _, ms, _ in results if ms is not None]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--logdir", help="use (and keep) this log directory; generated if empty or missing")
    parser.add_argument("--load_fast", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--load_timeout", type=int, default=600)
    args = parser.parse_args()

    print(
        "machine: %d CPUs, python %s, load average %.1f" % (os.cpu_count(), sys.version.split()[0], os.getloadavg()[0])
    )
    print(
        "data: %d runs x %d layers x 2 roles x %d steps x %d units" % (args.runs, args.layers, args.steps, args.units)
    )
    shapes = plugin_latency.dense_shapes(args.layers, args.units)
    keep = args.logdir is not None
    logdir = args.logdir or tempfile.mkdtemp(prefix="mmx_load_")
    try:
        if not (os.path.isdir(logdir) and os.listdir(logdir)):
            os.makedirs(logdir, exist_ok=True)
            print("generating into %s" % logdir, flush=True)
            start = time.monotonic()
            plugin_latency.generate(logdir, args.runs, shapes, args.steps)
            print(
                "generated %.2f GB in %.0f s" % (plugin_latency.dir_bytes(logdir) / 1e9, time.monotonic() - start),
                flush=True,
            )
        else:
            print("reusing %s (%.2f GB)" % (logdir, plugin_latency.dir_bytes(logdir) / 1e9))
        tb = tensorboard_server.start(logdir, args.load_fast)
        base = tb.url
        try:
            if urllib.parse.urlparse(base).hostname not in ("127.0.0.1", "localhost"):
                raise SystemExit("TensorBoard is not on loopback: %s" % base)
            print("tensorboard pid %d at %s (--load_fast=%s); loading..." % (tb.pid, base, args.load_fast), flush=True)
            load_s = plugin_latency.wait_loaded(tb, args.runs, shapes, args.steps, args.load_timeout)
            print("loaded in %.0f s" % load_s)
            start = time.monotonic()
            for run in range(args.runs):
                for role in ("forward", "kernel_gradient"):
                    plugin_latency.get(base, PREFIX + "/heatmap?run=run_%d&role=%s" % (run, role))
            print("warm-up (every heatmap once): %.1f s" % (time.monotonic() - start), flush=True)
            rng = random.Random(0)
            plans = [request_plan(args.runs, args.layers, args.steps, rng, args.requests) for _ in range(args.clients)]
            print("load: %d clients x %d requests..." % (args.clients, args.requests), flush=True)
            results, wall = run_load(base, plans)
            alive = tb.alive()
        finally:
            tb.stop(20)
    finally:
        if not keep:
            shutil.rmtree(logdir, ignore_errors=True)

    errors, by_route, all_ms = summarise(results)
    pct = plugin_latency.percentile
    print()
    print("%-20s %8s %9s %9s %9s" % ("route", "requests", "p50 ms", "p95 ms", "max ms"))
    for name in sorted(by_route):
        times = by_route[name]
        print("%-20s %8d %9.1f %9.1f %9.1f" % (name, len(times), pct(times, 50), pct(times, 95), max(times)))
    p50, p95 = pct(all_ms, 50), pct(all_ms, 95)
    print("%-20s %8d %9.1f %9.1f %9.1f" % ("all", len(all_ms), p50, p95, max(all_ms)))
    print()
    print(
        "requests: %d in %.1f s (%.0f/s), TensorBoard alive afterwards: %s"
        % (len(results), wall, len(results) / wall, alive)
    )
    print("errors: %d" % len(errors))
    for name, _, error in errors[:10]:
        print("  %s: %s" % (name, error))
    print("load average after the run: %.1f (1 min), on %d CPUs" % (os.getloadavg()[0], os.cpu_count()))
    print()
    n_errors = len(errors) + (0 if alive else 1)
    print(
        "target zero errors under %dx%d load: %d (bound 0): %s"
        % (args.clients, args.requests, n_errors, "met" if n_errors == 0 else "missed")
    )
    print("p95 latency under load: %.1f ms (reported; no bound)" % p95)
    return 0


if __name__ == "__main__":
    sys.exit(main())
