"""Training-time overhead of `ExplainerCallback`: plain `model.fit` vs `model.fit` with the callback.

Run: `.venv/bin/python bench/training_overhead.py [--repeats N] [--problems mlp,cnn] [--quick]`.

Two problems shaped like Cockpit's (DeepOBS) benchmark problems, on synthetic data (8 distinct batches cycled):
  mlp  784-1000-500-100-10, ReLU, batch 128
  cnn  "3c3d" on 32x32x3, batch 128: conv 64 5x5 valid, max-pool 3/2, conv 96 3x3 valid, max-pool 3/2,
       conv 128 3x3 same, max-pool 3/2, dense 512, dense 256, dense 10 (ReLU), like DeepOBS cifar10_3c3d
SGD, sparse categorical cross-entropy. The callback records every Dense/Conv layer with its default roles and
settings (the matmul roles plus the activation step and input features; sampled thresholds, sampled near-zero
totals), at `update_freq` 1, 16,
100 and a cadence that never fires within the measurement (update_freq=10**9; its step 0 falls in the warm-up);
then again with exact thresholds (threshold_method="exact", near_zero="exact").

Method: one process, one model per problem, every configuration's callback made once (so each compiled function
is traced once, in a warm-up fit). Each measurement is one `fit` of 3 warm-up steps + a window of W steps; a
timing callback listed first takes the start of every step (so every callback's per-step hooks are inside a
step's time) and notes which steps ran the recording function. W is a multiple of `update_freq` (plain 30,
every step 10, every 16: 16, every 100: 100, never 30), so a window holds exactly W / update_freq recording
steps. Time per step at cadence N = (median recording step + (N - 1) x median other step) / N within a window,
which a burst of other load on the machine moves far less than the window's mean (also printed).
The exact settings' every-100 figure is derived the same way from the exact every-16 fit's recording and other
steps (it runs the same kind of function; this keeps the run under 10 minutes on 2 CPUs). Configurations are
interleaved: each repeat runs the every-step and every-16 fits, then a plain fit, then the every-100 and never
fits (a plain fit right after a recording-heavy one measured up to 10% slow here, which the finest comparisons
must not see); a ratio is the median over repeats of (time per step / the same repeat's plain time per step).
The never-firing cadence gets extra adjacent (plain, never) pairs, and the Python cost of the callback's per-step
hook is timed on its own.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tb_matmul_explainer.keras import ExplainerCallback  # noqa: E402

NEVER = 10**9
TARGETS = {1: 3.0, 16: 1.15, 100: 1.02, NEVER: 1.01}
BATCH = 128
WARMUP = 3
# Steps timed per measurement: a multiple of the cadence, so that a window holds window / update_freq records.
WINDOWS = {"plain": 30, 1: 10, 16: 16, 100: 100, NEVER: 30}
NEVER_PAIRS = {"mlp": 12, "cnn": 6}  # extra (plain, never) pairs after the repeats


def _processor():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    gpus = tf.config.list_physical_devices("GPU")
    gpu = ""
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        gpu = f"; GPU: {details.get('device_name', gpus[0].name)} (x{len(gpus)})"
    return (
        f"{os.cpu_count()} CPUs, {_processor()}{gpu}; {platform.platform()}; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}"
    )


def build(problem):
    keras.utils.set_random_seed(0)
    relu = "relu"
    if problem == "mlp":
        layers = [
            keras.Input((784,)),
            keras.layers.Dense(1000, relu),
            keras.layers.Dense(500, relu),
            keras.layers.Dense(100, relu),
            keras.layers.Dense(10),
        ]
        shape = (784,)
    else:
        pool = lambda: keras.layers.MaxPooling2D(3, 2, padding="same")  # noqa: E731
        layers = [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(64, 5, activation=relu),
            pool(),
            keras.layers.Conv2D(96, 3, activation=relu),
            pool(),
            keras.layers.Conv2D(128, 3, padding="same", activation=relu),
            pool(),
            keras.layers.Flatten(),
            keras.layers.Dense(512, relu),
            keras.layers.Dense(256, relu),
            keras.layers.Dense(10),
        ]
        shape = (32, 32, 3)
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8 * BATCH,) + shape).astype(np.float32)
    y = rng.integers(0, 10, 8 * BATCH).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True).cache().repeat().prefetch(2)
    return model, data


class _Timer(keras.callbacks.Callback):
    """Listed first: the start of every step, and whether the step before it ran the explainer's recording
    function (the explainer swaps functions in its own `on_train_batch_begin`, after this one). Only a batch-begin
    hook, so that Keras keeps dispatching batch-end callbacks asynchronously, as in a plain fit."""

    def __init__(self, explainer):
        super().__init__()
        self.explainer = explainer
        self.begins, self.recorded = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.begins.append(time.perf_counter())
        if batch > 0:
            self.recorded.append(
                self.explainer is not None and self.model.train_function is self.explainer._instrumented
            )


def measure(model, data, window, explainer):
    """One fit: WARMUP steps, then `window` timed steps. Returns (mean time per step over the window,
    [durations of recording steps], [durations of the other steps])."""
    timer = _Timer(explainer)
    model.fit(
        data,
        epochs=1,
        steps_per_epoch=WARMUP + window + 1,
        callbacks=[timer] + ([explainer] if explainer else []),
        verbose=0,
    )
    steps = range(WARMUP, WARMUP + window)
    durations = [timer.begins[i + 1] - timer.begins[i] for i in steps]
    recording = [d for d, i in zip(durations, steps) if timer.recorded[i]]
    other = [d for d, i in zip(durations, steps) if not timer.recorded[i]]
    return sum(durations) / window, recording, other


def composed(freq, recording, other):
    """Time per step at cadence `freq` from the median recording step and the median other step."""
    if freq == 1:
        return statistics.median(recording)
    if freq == NEVER or not recording:
        return statistics.median(other)
    return (statistics.median(recording) + (freq - 1) * statistics.median(other)) / freq


def configurations(log_dir, quick):
    """(label, cadence, exact, window, callback factory)."""
    configs = [("plain", None, False, WINDOWS["plain"] // (2 if quick else 1))]
    for exact in (False, True):
        for freq in (1, 16, 100, NEVER):
            if exact and freq in (100, NEVER):  # exact every 100: derived from the every-16 fit's steps
                continue
            window = WINDOWS[freq] // (2 if quick and freq in (1, NEVER) else 1)
            configs.append(("exact" if exact else "default", freq, exact, window))
    return configs


def run_problem(problem, repeats, quick, log_root):
    model, data = build(problem)
    configs = configurations(log_root, quick)
    callbacks = {}
    for label, freq, exact, _window in configs:
        if freq is None:
            continue
        options = {"threshold_method": "exact", "near_zero": "exact"} if exact else {}
        callbacks[(label, freq)] = ExplainerCallback(
            os.path.join(log_root, problem, f"{label}_{freq}"), update_freq=freq, **options
        )
    keys = [(label, freq) for label, freq, _, _ in configs]
    composed_times = {key: [] for key in keys}
    composed_ratios = {key: [] for key in keys}
    window_means = {key: [] for key in keys}
    window_ratios = {key: [] for key in keys}
    # Warm-up: trace every function once (a window holding a recording step).
    for label, freq, _, _ in configs:
        window = 2
        if freq in (16, 100):  # just long enough to reach the next recording step
            window = max(1, (-int(model.optimizer.iterations.numpy())) % freq - WARMUP + 1)
        measure(model, data, window, callbacks.get((label, freq)))
        assert freq in (None, NEVER) or callbacks[(label, freq)]._instrumented is not None, (label, freq)

    window_of = {(label, freq): w for label, freq, _, w in configs}

    def measure_config(label, freq, window, plain, keep=True):
        mean, recording, other = measure(model, data, window, callbacks.get((label, freq)))
        if not keep:
            return composed(NEVER, recording, other), mean
        return record_result(label, freq, window, mean, recording, other, plain)

    def record_result(label, freq, window, mean, recording, other, plain):
        if freq is not None and freq != NEVER:
            assert len(recording) == window // freq, (label, freq, len(recording))
        if freq == NEVER:
            assert not recording
        t = composed(freq or NEVER, recording, other)
        composed_times[(label, freq)].append(t)
        window_means[(label, freq)].append(mean)
        if plain is not None:
            composed_ratios[(label, freq)].append(t / plain[0])
            window_ratios[(label, freq)].append(mean / plain[1])
        if (label, freq) == ("exact", 16) and plain is not None:
            derived = composed(100, recording, other)
            composed_times.setdefault(("exact", 100), []).append(derived)
            composed_ratios.setdefault(("exact", 100), []).append(derived / plain[0])
        return t, mean

    # Each repeat: the recording-heavy fits first, then the plain fit right before the light ones it is compared
    # with most finely (a plain fit measured just after a heavy one ran up to 10% slow here); ratios use the
    # repeat's own plain fit.
    heavy = [c for c in configs if c[1] in (1, 16)]
    light = [c for c in configs if c[1] not in (None, 1, 16)]
    plain_config = configs[0]
    for _ in range(repeats):
        measured = {}
        for label, freq, _, window in heavy:
            mean, recording, other = measure(model, data, window, callbacks[(label, freq)])
            measured[(label, freq)] = (freq, mean, recording, other)
        plain = measure_config(*plain_config[:2], plain_config[3], None)
        for (label, freq), (_, mean, recording, other) in measured.items():
            record_result(label, freq, window_of[(label, freq)], mean, recording, other, plain)
        for label, freq, _, window in light:
            measure_config(label, freq, window, plain)
    # The never-firing cadence against plain fits, in extra adjacent pairs (the smallest difference to resolve).
    window = {(label, freq): w for label, freq, _, w in configs}
    for _ in range(NEVER_PAIRS[problem]):
        plain = measure_config("plain", None, window[("plain", None)], None, keep=False)
        measure_config("default", NEVER, window[("default", NEVER)], plain)
    # The Python cost of the callback's per-step hook on a step that does not record.
    never = callbacks[("default", NEVER)]
    calls = 20000
    started = time.perf_counter()
    for _ in range(calls):
        never.on_train_batch_begin(5)
    hook = (time.perf_counter() - started) / calls
    never.on_train_end()
    skipped = {name for cb in callbacks.values() for name in cb.skipped}
    med = lambda d: {key: statistics.median(v) for key, v in d.items() if v}  # noqa: E731
    return med(composed_times), med(composed_ratios), med(window_means), med(window_ratios), hook, skipped


HEADER = f"{'problem':8} {'settings':9} {'plain ms':>9} " + " ".join(
    f"{'every ' + str(f) if f != NEVER else 'never':>16}" for f in (1, 16, 100, NEVER)
)


def table_rows(problem, times, ratios):
    rows = []
    for label in ("default", "exact"):
        cells = []
        for freq in (1, 16, 100, NEVER):
            t = times.get((label, freq))
            cells.append(f"{'-':>16}" if t is None else f"{t * 1e3:8.2f} {ratios[(label, freq)]:6.3f}x")
        rows.append(f"{problem:8} {label:9} {times[('plain', None)] * 1e3:9.2f} " + " ".join(cells))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", default="mlp,cnn")
    parser.add_argument("--quick", action="store_true", help="shorter plain, every-step and never windows")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(
        f"batch {BATCH}; median of {args.repeats} interleaved repeats; time per step in ms and ratio to the plain "
        "fit; default = the callback's defaults (sampled thresholds, sampled near-zero rows/positions), "
        "exact = threshold_method='exact', near_zero='exact'",
        flush=True,
    )
    results, window_results = {}, {}
    with tempfile.TemporaryDirectory() as log_root:
        for problem in args.problems.split(","):
            started = time.perf_counter()
            times, ratios, means, mean_ratios, hook, skipped = run_problem(problem, args.repeats, args.quick, log_root)
            results[problem], window_results[problem] = (times, ratios), (means, mean_ratios)
            if skipped:
                print(f"{problem}: layers not recorded: {sorted(skipped)}")
            print(
                f"{problem}: measured in {time.perf_counter() - started:.0f} s; the callback's per-step hook on a "
                f"step that does not record: {hook * 1e6:.1f} us ({hook / times[('plain', None)]:.2%} of a plain "
                "step)"
            )
            print("\n".join([HEADER] + table_rows(problem, times, ratios)), flush=True)
    print()
    print(
        "time per step = (median recording step + (N - 1) x median other step) / N; ratio = median over repeats "
        "of (that / the same repeat's plain fit):"
    )
    print(HEADER)
    for problem, (_times, ratios) in results.items():
        print("\n".join(table_rows(problem, times, ratios)))
    print()
    print(
        "for comparison, the mean over each window (every 16: 16 steps, every 100: 100 steps), medians over "
        "repeats (sensitive to other load on the machine):"
    )
    print(HEADER)
    for problem, (means, mean_ratios) in window_results.items():
        print("\n".join(table_rows(problem, means, mean_ratios)))
    print()
    for problem, (_times, ratios) in results.items():
        for freq, bound in TARGETS.items():
            ratio = ratios[("default", freq)]
            what = "never fires" if freq == NEVER else f"every {freq} steps"
            print(f"target {problem} {what}: {ratio:.3f}x (bound {bound}x): {'met' if ratio <= bound else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
