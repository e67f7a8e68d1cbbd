"""Latency of the plugin's routes on a large log directory, served by a real TensorBoard process.

Generates (by default through the writer's packing path: `metadata.pack_record` + `tf.summary.write` with our
metadata; `--generator summary` uses the writer ops themselves, which take ~10 minutes to trace)
a log directory of RUNS x LAYERS x 2 roles x STEPS records of UNITS units (default 3 x 30 x 2 x 200 x 256:
36,000 records, every one with unit detail), or with `--shapes resnet50` (`--generator pack` only) the records a
recording of `keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)` has: per Conv2D and
Dense layer, forward and kernel_gradient (units = output channels) and input_features (units = input channels),
every 10th step with unit detail (`--detail_every`), the others compact. Then it starts `tensorboard` on it
(default loader: the Rust data server), waits until everything is loaded, measures the first ("cold") request of
each route, warms up, then sends REQUESTS requests per route with varied parameters and prints p50/p95 latency per
route and the peak resident memory (VmHWM) of the TensorBoard process and its children (the data server).

    python bench/plugin_latency.py [--runs 3 --layers 30 --steps 200 --units 256 --requests 50]
                                   [--shapes dense|resnet50] [--detail_every N]
                                   [--logdir DIR (reuse or keep)] [--load_fast true|false|auto]

Ends with one `target p95 <= 150 ms (<route>): <ms> (bound 150 ms): met|missed` line per route and
`target TensorBoard memory, <runs> runs x <steps> recorded steps (<shapes>): X GiB (bound 2 GiB): met|missed`
(the sum of the peaks of TensorBoard and its data server); exits 0.
"""

import argparse
import collections
import functools
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from tests import tensorboard_server  # noqa: E402  (starts TensorBoard and waits until it serves)

TARGET_MS = 150.0
MEMORY_BOUND_GIB = 2.0
PREFIX = "/data/plugin/matmul_explainer"


# ----------------------------------------------------------------------------------------------- generation

#: One recorded layer of the generated runs: its name, op and {role: units}.
Layer = collections.namedtuple("Layer", "name op roles")


def dense_shapes(layers, units):
    """`layers` Dense layers `layer_00`, ... of `units` units, roles forward and kernel_gradient."""
    return [Layer("layer_%02d" % i, "dense", {"forward": units, "kernel_gradient": units}) for i in range(layers)]


def resnet50_shapes():
    """Per Conv2D / Dense layer of ResNet50 (32x32x3, 10 classes): forward and kernel_gradient (units = output
    channels) and input_features (units = input channels)."""
    import keras

    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    return [
        Layer(
            layer.name,
            "dense" if isinstance(layer, keras.layers.Dense) else "conv2d",
            {"forward": layer.kernel.shape[-1], "kernel_gradient": layer.kernel.shape[-1]}
            | {"input_features": layer.kernel.shape[-2]},
        )
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]


def generate(logdir, runs, shapes, steps, generator="pack", detail_every=1, inputs=64, batch=32):
    """Writes the log directory; `generator` is "summary" (our writer ops, dense shapes only) or "pack" (the
    writer's packing path, unit detail every `detail_every`-th step)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if generator == "summary":
        generate_with_summary_ops(logdir, runs, len(shapes), steps, shapes[0].roles["forward"], inputs, batch)
    else:
        generate_with_packing(logdir, runs, shapes, steps, detail_every, inputs, batch)


def generate_with_summary_ops(logdir, runs, layers, steps, units, inputs, batch):
    """`summary.dense` / `summary.dense_kernel_gradient` for every layer, one `tf.function` per run. Exact, but
    tracing costs seconds per summary op (about 3 s each here: 10 minutes for 3 x 60 ops)."""
    import tensorflow as tf

    from tb_matmul_explainer import summary

    def layer_tensors(step, run, layer):
        seed = tf.stack([tf.cast(step, tf.int32), run * 1000 + layer])
        x = tf.nn.relu(tf.random.stateless_normal([batch, inputs], seed=seed))
        drift = 1.0 + tf.cast(step, tf.float32) / float(steps)
        kernel = tf.random.stateless_normal([inputs, units], seed=[run, layer]) * 0.1 * drift
        kernel = tf.where(tf.random.stateless_uniform([inputs, units], seed=[layer, 7]) < 0.02 * layer, 0.0, kernel)
        d_out = tf.random.stateless_normal([batch, units], seed=seed + 1) * 0.01
        return x, kernel, d_out

    for run in range(runs):
        writer = tf.summary.create_file_writer(os.path.join(logdir, "run_%d" % run), max_queue=200)

        @tf.function
        def write_step(step, run=run):
            for layer in range(layers):
                x, kernel, d_out = layer_tensors(step, run, layer)
                name = "layer_%02d" % layer
                summary.dense(name + "/forward", x, kernel, step=step, layer=name, layer_index=layer)
                summary.dense_kernel_gradient(
                    name + "/kernel_gradient", x, d_out, step=step, layer=name, layer_index=layer
                )

        start = time.monotonic()
        with writer.as_default():
            for step in range(steps):
                write_step(tf.constant(step, tf.int64))
                if (step + 1) % 50 == 0 or step + 1 == steps:
                    print(
                        "  run %d/%d: %d/%d steps (%.0f s)"
                        % (run + 1, runs, step + 1, steps, time.monotonic() - start),
                        flush=True,
                    )
        writer.close()


#: The fields of `aggregates.UnitTotals` that `metadata.pack_record` reads (NumPy, then TensorFlow).
Totals = collections.namedtuple(
    "Totals", "counts sums near_zero_counts near_zero_sums cells near_zero_cells thresholds nonfinite"
)


def draw_totals(rng, role, units, near_zero_share, inputs, batch):
    """`Totals` of `units` units drawn in NumPy: counts of each unit add up to cells x inputs (input_features: no
    pairs), near-zero parts scale with the near-zero cells (about `near_zero_share` of them)."""
    import numpy as np

    cells = float(batch if role == "forward" else inputs)
    products = cells * (inputs if role == "forward" else batch)
    counts = np.floor(rng.dirichlet(np.ones(9), size=units) * products)
    counts[:, 4] += products - counts.sum(axis=1)
    if role == "input_features":
        counts[:] = 0
    sums = rng.normal(size=(units, 9)) * counts * 0.01
    near = rng.binomial(int(cells), near_zero_share, size=units).astype(np.float64)
    frac = (near / cells)[:, None]
    return Totals(
        counts,
        sums,
        np.floor(counts * frac),
        sums * frac,
        np.full(units, cells),
        near,
        rng.random(3) * 0.01,
        np.zeros(3),
    )


def generate_with_packing(logdir, runs, shapes, steps, detail_every, inputs, batch):
    """`draw_totals` packed by `metadata.pack_record` (unit detail at the steps 0, `detail_every`, ...) and
    written by `tf.summary.write` with our `create_summary_metadata`: the same records and metadata the writer ops
    produce, minutes faster."""
    import numpy as np
    import tensorflow as tf

    from tb_matmul_explainer import metadata

    @functools.cache
    def packer(units, detail):  # one traced function per record shape
        return tf.function(lambda t: metadata.pack_record(t, detail=detail))

    rng = np.random.default_rng(0)
    for run in range(runs):
        start = time.monotonic()
        writer = tf.summary.create_file_writer(os.path.join(logdir, "run_%d" % run), max_queue=500)
        mds = {
            (layer.name, role): metadata.create_summary_metadata(
                layer.name, None, role=role, op=layer.op, layer=layer.name, index=i, units=units, confidence=0.95
            )
            for i, layer in enumerate(shapes)
            for role, units in layer.roles.items()
        }
        with writer.as_default():
            for step in range(steps):
                for i, layer in enumerate(shapes):
                    for role, units in layer.roles.items():
                        share = min(0.9, 0.05 + 0.02 * (i % 40) + 0.2 * step / steps)
                        totals = draw_totals(rng, role, units, share, inputs, batch)
                        tf.summary.write(
                            "%s/%s" % (layer.name, role),
                            packer(units, step % detail_every == 0)(Totals(*map(tf.constant, totals))),
                            step,
                            metadata=mds[layer.name, role],
                        )
                if (step + 1) % 50 == 0 or step + 1 == steps:
                    print(
                        "  run %d/%d: %d/%d steps (%.0f s)"
                        % (run + 1, runs, step + 1, steps, time.monotonic() - start),
                        flush=True,
                    )
        writer.close()


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


# ----------------------------------------------------------------------------------------------- server


def start_tensorboard(logdir, load_fast):
    """A `tensorboard_server.TensorBoardServer` on `logdir` (loopback, port 0, the given loader)."""
    return tensorboard_server.start(logdir, load_fast)


def get(base, path):
    """(status, body, ms) of GET base + path, gzip accepted (ms until the compressed body arrived)."""
    response = tensorboard_server.get(base + path, timeout=600, accept_gzip=True)
    return response.status, response.body, response.ms


def wait_loaded(tb, runs, shapes, steps, timeout):
    """Waits until TensorBoard `tb` serves every record of the generated runs; returns the seconds waited."""
    last, start = [], time.monotonic()

    def loaded():
        status, body, _ = get(tb.url, PREFIX + "/runs")
        if status != 200:
            return False
        listing = json.loads(body)["runs"]
        tags = sum(len(l["roles"]) for r in listing for l in r["layers"])
        if not last or tags != last[-1]:
            print("  loaded: %d runs, %d tags (%.0f s)" % (len(listing), tags, time.monotonic() - start), flush=True)
            last.append(tags)
        done = (
            len(listing) == runs
            and tags == runs * sum(len(layer.roles) for layer in shapes)
            and all(
                role["last_step"] == steps - 1 for r in listing for l in r["layers"] for role in l["roles"].values()
            )
        )
        if not done:
            return False
        # the last step is visible; wait until every record of the last-loaded tags is too
        q = "/timeline?" + urllib.parse.urlencode(
            {"run": "run_%d" % (runs - 1), "role": "kernel_gradient", "layer": shapes[-1].name}
        )
        status, body, _ = get(tb.url, PREFIX + q)
        return status == 200 and len(json.loads(body)["steps"]) == steps

    return tb.wait_until(loaded, timeout=timeout, interval=1.0, what="the generated logs to load")


def peak_rss_kib(pid):
    """VmHWM of `pid` and of its descendants: {pid: (name, KiB)}."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open("/proc/%d/status" % p) as f:
                status = f.read()
            name = re.search(r"^Name:\s*(\S+)", status, re.M).group(1)
            hwm = re.search(r"^VmHWM:\s*(\d+) kB", status, re.M)
            out[p] = (name, int(hwm.group(1)) if hwm else 0)
        except OSError:
            pass
    return out


# ----------------------------------------------------------------------------------------------- measurement


def route_queries(runs, layers, steps, rng, n):
    """`n` request paths per route, with random run, role (forward, kernel_gradient), layer (of the names
    `layers`) and step."""

    def run():
        return "run_%d" % rng.randrange(runs)

    def role():
        return rng.choice(["forward", "kernel_gradient"])

    def layer():
        return rng.choice(layers)

    def step():
        return str(rng.randrange(steps))

    q = urllib.parse.urlencode
    all_runs = [("run", "run_%d" % r) for r in range(runs)]
    makers = {
        "runs": lambda: "/runs",
        "overview": lambda: "/overview?" + q({"run": run(), "role": role(), "step": step()}),
        "timeline": lambda: "/timeline?" + q({"run": run(), "role": role(), "layer": layer()}),
        "heatmap": lambda: "/heatmap?" + q({"run": run(), "role": role()}),
        "units": lambda: "/units?" + q({"run": run(), "role": role(), "layer": layer(), "step": step()}),
        "units latest": lambda: "/units?" + q({"run": run(), "role": role(), "layer": layer()}),
        "unit_heatmap": lambda: "/unit_heatmap?" + q({"run": run(), "role": role(), "layer": layer()}),
        "unit_heatmap f32": lambda: (
            "/unit_heatmap?" + q({"run": run(), "role": role(), "layer": layer(), "format": "f32"})
        ),
        "compare overview": lambda: (
            "/compare?" + q([("view", "overview")] + all_runs + [("role", role()), ("step", step())])
        ),
        "compare heatmap": lambda: "/compare?" + q([("view", "heatmap")] + all_runs + [("role", role())]),
        "compare timeline": lambda: (
            "/compare?" + q([("view", "timeline")] + all_runs + [("role", role()), ("layer", layer())])
        ),
    }
    return {name: [make() for _ in range(n)] for name, make in makers.items()}


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--logdir", help="use (and keep) this log directory; generated if empty or missing")
    parser.add_argument("--load_fast", default="auto", choices=["auto", "true", "false"])
    parser.add_argument(
        "--generator",
        default="pack",
        choices=["pack", "summary"],
        help="pack: the writer's packing path (fast); summary: our writer ops (slow to trace)",
    )
    parser.add_argument("--load_timeout", type=int, default=900)
    parser.add_argument(
        "--shapes",
        default="dense",
        choices=["dense", "resnet50"],
        help="dense: --layers x 2 roles of --units units; resnet50: a ResNet50 (32x32) recording's tags",
    )
    parser.add_argument(
        "--detail_every", type=int, help="unit detail every N-th step (default: 1 for dense, 10 for resnet50)"
    )
    args = parser.parse_args()
    detail_every = args.detail_every or (10 if args.shapes == "resnet50" else 1)
    if detail_every < 1:
        parser.error(f"--detail_every must be >= 1, got {detail_every}")
    if args.shapes == "resnet50" and args.generator != "pack":
        parser.error("--shapes resnet50 needs --generator pack")

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    print(
        "machine: %d CPUs (%s), python %s, load average %.1f"
        % (os.cpu_count(), cpu, sys.version.split()[0], os.getloadavg()[0])
    )
    if args.shapes == "resnet50":
        shapes, label = resnet50_shapes(), "resnet50"
    else:
        shapes, label = dense_shapes(args.layers, args.units), "%d dense layers x %d units" % (args.layers, args.units)
    print(
        "data: %d runs x %d steps (unit detail every %d) of %s: %d layers, %d tags, %d-%d units per tag"
        % (
            args.runs,
            args.steps,
            detail_every,
            label,
            len(shapes),
            sum(len(layer.roles) for layer in shapes),
            min(u for layer in shapes for u in layer.roles.values()),
            max(u for layer in shapes for u in layer.roles.values()),
        )
    )

    keep = args.logdir is not None
    logdir = args.logdir or tempfile.mkdtemp(prefix="mmx_bench_")
    try:
        if not (os.path.isdir(logdir) and os.listdir(logdir)):
            os.makedirs(logdir, exist_ok=True)
            print("generating into %s" % logdir, flush=True)
            start = time.monotonic()
            generate(logdir, args.runs, shapes, args.steps, args.generator, detail_every)
            print("generated %.2f GB in %.0f s" % (dir_bytes(logdir) / 1e9, time.monotonic() - start), flush=True)
        else:
            print("reusing %s (%.2f GB)" % (logdir, dir_bytes(logdir) / 1e9))

        tb = start_tensorboard(logdir, args.load_fast)
        base = tb.url
        try:
            print("tensorboard pid %d at %s (--load_fast=%s); loading…" % (tb.pid, base, args.load_fast), flush=True)
            load_s = wait_loaded(tb, args.runs, shapes, args.steps, args.load_timeout)
            print("loaded in %.0f s" % load_s)
            rng = random.Random(0)
            queries = route_queries(args.runs, [layer.name for layer in shapes], args.steps, rng, args.requests)
            cold = {}
            for name, qs in queries.items():
                status, body, ms = get(base, PREFIX + qs[0])
                assert status == 200, (name, qs[0], status, body[:300])
                cold[name] = ms
            # warm-up: every series once (fills the plugin's digest cache), then a few requests per route
            start = time.monotonic()
            for run in range(args.runs):
                for role in ("forward", "kernel_gradient"):
                    get(base, PREFIX + "/heatmap?run=run_%d&role=%s" % (run, role))
            warmup_s = time.monotonic() - start
            for qs in queries.values():
                for path in qs[:3]:
                    get(base, PREFIX + path)
            rows = []
            for name, qs in queries.items():
                times, sizes = [], []
                for path in qs:
                    status, body, ms = get(base, PREFIX + path)
                    assert status == 200, (name, path, status, body[:300])
                    times.append(ms)
                    sizes.append(len(body))
                rows.append(
                    (name, cold[name], percentile(times, 50), percentile(times, 95), max(times), statistics.mean(sizes))
                )
            rss = peak_rss_kib(tb.pid)
            load = os.getloadavg()[0]
        finally:
            tb.stop(20)
    finally:
        if not keep:
            shutil.rmtree(logdir, ignore_errors=True)

    print()
    print("first ms: the route's first request, in table order after TensorBoard loaded (the plugin reads a tag on")
    print(
        "first use: %d-tag heatmaps are seconds cold); then warm-up: every heatmap once (%.1f s), 3 requests per"
        % (len(shapes), warmup_s)
    )
    print(
        "route; then p50/p95/max over %d requests per route with varied run/role/layer/step (gzip accepted)."
        % args.requests
    )
    print("%-18s %9s %9s %9s %9s %11s" % ("route", "first ms", "p50 ms", "p95 ms", "max ms", "body kB"))
    for name, c, p50, p95, mx, size in rows:
        print("%-18s %9.1f %9.1f %9.1f %9.1f %11.1f" % (name, c, p50, p95, mx, size / 1000))
    print()
    total = 0
    for pid, (name, kib) in sorted(rss.items()):
        print("peak RSS (VmHWM) pid %d %-24s %8.0f MiB" % (pid, name, kib / 1024))
        total += kib
    print("peak RSS, TensorBoard + children (sum of peaks): %.0f MiB" % (total / 1024))
    print("load average during the measurement: %.1f (1 min), on %d CPUs" % (load, os.cpu_count()))
    print()
    for name, _, _, p95, _, _ in rows:
        print(
            "target p95 <= %.0f ms (%s): %.1f ms (bound %.0f ms): %s"
            % (TARGET_MS, name, p95, TARGET_MS, "met" if p95 <= TARGET_MS else "missed")
        )
    gib = total / 1024**2
    print(
        "target TensorBoard memory, %d runs x %d recorded steps (%s): %.2f GiB (bound %g GiB): %s"
        % (args.runs, args.steps, label, gib, MEMORY_BOUND_GIB, "met" if gib <= MEMORY_BOUND_GIB else "missed")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
