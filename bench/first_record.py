"""Time to the first record: the first recording step of `ExplainerCallback` against the plain first step.

Run: `.venv/bin/python bench/first_record.py [--models mnist,mobilenet_v2,resnet50] [--repeats N] [--quick]`.

Models (nothing downloaded, data made locally, batch 32, Adam, sparse categorical cross-entropy):
  mnist         the Keras examples' "simple MNIST convnet": 28x28x1 -> Conv2D 32 3x3 relu -> MaxPool 2 ->
                Conv2D 64 3x3 relu -> MaxPool 2 -> Flatten -> Dropout 0.5 -> Dense 10 softmax
  mobilenet_v2  keras.applications.MobileNetV2(weights=None), 32x32x3
  resnet50      keras.applications.ResNet50(weights=None), 32x32x3

Method: every measurement runs in a FRESH Python process (nothing traced or compiled before it), which builds the
model, compiles it and runs one `fit` of `STEPS` steps, either plain or with `ExplainerCallback(update_freq=2)`
(default settings: every supported layer, its default roles; it records the steps 0 and 2). A timing callback
listed first notes the time from its `on_train_batch_begin` to its `on_train_batch_end` of step 0: the plain
model's first step, or the first recording step (tracing the instrumented step, compiling it and its first run).
The recorded child also reports the time spent inside `LayerRecorder.recording` on its first entry (tracing the
model's train step with the records: Python), so that the first recording step splits into trace and the rest
(graph optimisation, kernel compilation, the first run). Peak memory is the child's `ru_maxrss` at the end of
its fit. Each figure is the median over the repeats. `--quick`: one repeat. The first steps' CPU seconds (all
threads of the child) are printed too: on a machine shared with other work they move far less than wall time.

Ends with two target lines (exit status 0 either way):
  target first recording step / plain first step, worst model: R (bound 3.0): met|missed
  target peak memory with the callback / without, worst model: R (bound 1.5x): met|missed
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("mnist", "mobilenet_v2", "resnet50")
BATCH = 32
STEPS = 4
UPDATE_FREQ = 2
TIME_BOUND = 3.0
MEMORY_BOUND = 1.5
CHILD_TIMEOUT_S = 3600
MARK = "first_record_result: "


# ---- the child (one fresh process per measurement) -------------------------------------------------------------


def build(name):
    """(model, x, y) for one of `MODELS`: a fresh model and STEPS batches of local data."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    if name == "mnist":
        model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Conv2D(32, 3, activation="relu", name="conv_1"),
                keras.layers.MaxPooling2D(2, name="pool_1"),
                keras.layers.Conv2D(64, 3, activation="relu", name="conv_2"),
                keras.layers.MaxPooling2D(2, name="pool_2"),
                keras.layers.Flatten(name="flatten"),
                keras.layers.Dropout(0.5, name="dropout"),
                keras.layers.Dense(10, activation="softmax", name="classifier"),
            ],
            name="mnist_convnet",
        )
        shape = (28, 28, 1)
    elif name in ("mobilenet_v2", "resnet50"):
        app = keras.applications.MobileNetV2 if name == "mobilenet_v2" else keras.applications.ResNet50
        model = app(weights=None, input_shape=(32, 32, 3), classes=10)
        shape = (32, 32, 3)
    else:
        raise ValueError(f"--models must be among {MODELS}, got {name!r}")
    x = rng.random((BATCH * STEPS,) + shape, dtype="float32")
    y = rng.integers(0, 10, BATCH * STEPS).astype("int32")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model, x, y


def _time_recording_trace(times):
    """Notes the seconds spent inside `LayerRecorder.recording` (tracing the step with its records)."""
    from tb_matmul_explainer.keras import recorder

    enter, exit_ = recorder._Recording.__enter__, recorder._Recording.__exit__

    def timed_enter(self):
        self._bench_start = time.perf_counter()
        return enter(self)

    def timed_exit(self, *exc):
        times.append(time.perf_counter() - self._bench_start)
        return exit_(self, *exc)

    recorder._Recording.__enter__, recorder._Recording.__exit__ = timed_enter, timed_exit


def child(name, recorded):
    """Runs one measurement; prints one `MARK` line of JSON: first_step_s, trace_s, peak_rss_mb."""
    import resource
    import warnings

    import keras

    from tb_matmul_explainer.keras import ExplainerCallback, UnsupportedLayerWarning

    warnings.simplefilter("ignore", UnsupportedLayerWarning)
    model, x, y = build(name)

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.seconds = time.perf_counter() - self.start
                self.cpu_seconds = time.process_time() - self.cpu_start

    first, traces = FirstStep(), []
    callbacks = [first]
    with tempfile.TemporaryDirectory() as log_dir:
        if recorded:
            _time_recording_trace(traces)
            callbacks.append(ExplainerCallback(log_dir, update_freq=UPDATE_FREQ, verbose=0))
        model.fit(x, y, batch_size=BATCH, epochs=1, callbacks=callbacks, verbose=0, shuffle=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    result = {
        "first_step_s": first.seconds,
        "first_step_cpu_s": first.cpu_seconds,
        "trace_s": traces[0] if traces else None,
        "peak_rss_mb": peak,
    }
    print(MARK + json.dumps(result), flush=True)


# ---- the parent ------------------------------------------------------------------------------------------------


def run_child(name, recorded):
    """One fresh process; returns its result dict, or raises RuntimeError with its output's tail."""
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
    )
    args = [sys.executable, os.path.abspath(__file__), "--child", name] + (["--recorded"] if recorded else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise RuntimeError(f"{name} ({'recorded' if recorded else 'plain'}) failed:\n{done.stderr[-3000:]}")


def measure(name, repeats):
    """Medians over `repeats` (plain, recorded) pairs of fresh processes."""
    runs = {False: [], True: []}
    for r in range(repeats):
        for recorded in (False, True):
            start = time.perf_counter()
            result = run_child(name, recorded)
            runs[recorded].append(result)
            print(
                f"  {name} repeat {r + 1}/{repeats} {'recorded' if recorded else 'plain'}: first step "
                f"{result['first_step_s']:.2f} s ({result['first_step_cpu_s']:.2f} CPU s), "
                f"peak {result['peak_rss_mb']:.0f} MB "
                f"(process {time.perf_counter() - start:.0f} s)",
                flush=True,
            )

    def median(recorded, key):
        return statistics.median(run[key] for run in runs[recorded])

    return {
        "plain_s": median(False, "first_step_s"),
        "record_s": median(True, "first_step_s"),
        "plain_cpu_s": median(False, "first_step_cpu_s"),
        "record_cpu_s": median(True, "first_step_cpu_s"),
        "trace_s": median(True, "trace_s"),
        "plain_mb": median(False, "peak_rss_mb"),
        "record_mb": median(True, "peak_rss_mb"),
    }


def report(results):
    """The table and the two target lines."""
    print(
        f"\n{'model':14s} {'plain 1st step':>15s} {'1st record step':>16s} {'(trace)':>9s} {'ratio':>7s} "
        f"{'peak plain':>11s} {'peak rec.':>10s} {'ratio':>7s}"
    )
    for name, r in results.items():
        print(
            f"{name:14s} {r['plain_s']:13.2f} s {r['record_s']:14.2f} s {r['trace_s']:7.1f} s "
            f"{r['record_s'] / r['plain_s']:7.2f} {r['plain_mb']:8.0f} MB {r['record_mb']:7.0f} MB "
            f"{r['record_mb'] / r['plain_mb']:7.2f}"
        )
    time_worst = max(results, key=lambda n: results[n]["record_s"] / results[n]["plain_s"])
    memory_worst = max(results, key=lambda n: results[n]["record_mb"] / results[n]["plain_mb"])
    t = results[time_worst]["record_s"] / results[time_worst]["plain_s"]
    m = results[memory_worst]["record_mb"] / results[memory_worst]["plain_mb"]
    cpu = {n: r["record_cpu_s"] / r["plain_cpu_s"] for n, r in results.items()}
    cpu_worst = max(cpu, key=cpu.get)
    print(
        f"(the same in CPU seconds of the child, less sensitive to other load on the machine: worst model "
        f"{cpu[cpu_worst]:.2f} ({cpu_worst}))"
    )
    if set(results) != set(MODELS):
        print(f"note: the targets cover only the models run: {sorted(results)}")
    print(
        f"target first recording step / plain first step, worst model: {t:.2f} ({time_worst}) "
        f"(bound {TIME_BOUND}): {'met' if t <= TIME_BOUND else 'missed'}"
    )
    print(
        f"target peak memory with the callback / without, worst model: {m:.2f} ({memory_worst}) "
        f"(bound {MEMORY_BOUND}x): {'met' if m <= MEMORY_BOUND else 'missed'}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, among {MODELS}")
    parser.add_argument("--repeats", type=int, default=3, help="fresh (plain, recorded) process pairs per model")
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--recorded", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.recorded)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            parser.error(f"--models must be among {MODELS}, got {m!r}")
    repeats = 1 if args.quick else args.repeats
    results = {}
    for name in models:
        print(f"== {name}: {repeats} x (plain, recorded) in fresh processes", flush=True)
        results[name] = measure(name, repeats)
    report(results)


if __name__ == "__main__":
    main()
