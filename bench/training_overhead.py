"""Training-time overhead of `ExplainerCallback`: plain `model.fit` vs `model.fit` with the callback.

Run: `.venv/bin/python bench/training_overhead.py [--repeats N] [--problems mlp,cnn,resnet50] [--quick]`.

Problems (`--problems`, default mlp,cnn), on synthetic local data (8 distinct batches cycled; nothing downloads):
two shaped like Cockpit's (DeepOBS) benchmark problems, and a larger one:
  mlp  784-1000-500-100-10, ReLU, batch 128
  cnn  "3c3d" on 32x32x3, batch 128: conv 64 5x5 valid, max-pool 3/2, conv 96 3x3 valid, max-pool 3/2,
       conv 128 3x3 same, max-pool 3/2, dense 512, dense 256, dense 10 (ReLU), like DeepOBS cifar10_3c3d
  resnet50 `keras.applications.ResNet50(weights=None)` on 32x32x3, 10 classes (logits), batch 32: on 2 shared CPU
       cores a plain step took ~2.4 s and a recording step ~14 s at batch 32; batch 128 would make every step about
       4x longer, too long for repeated windows in a run of ~25 minutes. Its first recording step takes 5-10 minutes
       to prepare there (trace, graph optimisation, XLA; in the warm-up, not timed), so it runs only the default
       settings at every step and a never-firing cadence (every 16 and exact settings would each prepare their own
       recording function); its every-100 figure is composed from the every-step fit's recording steps and the never
       fit's steps. Its targets: every step <= 4.0x, every 100 <= 1.03x.
SGD, sparse categorical cross-entropy. The callback records every Dense/Conv layer with its default roles and
settings (the matmul roles plus the activation step and input features; sampled thresholds, sampled near-zero
totals), at `update_freq` 1, 16, 100 and a cadence that never fires within the measurement (update_freq=10**9; its
step 0 falls in the warm-up); then again with exact thresholds (threshold_method="exact", near_zero="exact").

Method: one process, one model per problem, every configuration's callback made once (so each compiled function is
traced once, in a warm-up fit). Each measurement is one `fit` of 3 warm-up steps + a window of W steps; a timing
callback listed first takes the start of every step (so every callback's per-step hooks are inside a step's time)
and notes which steps ran the recording function. W is a multiple of `update_freq` (plain 30, every step 10, every
16: 16, every 100: 100, never 30; resnet50: plain 12, every step 4, never 12), so a window holds exactly W /
update_freq recording steps. Time per step at cadence N = (median recording step + (N - 1) x median other step) / N
within a window, which a burst of other load on the machine moves far less than the window's mean (also printed).
The exact settings' every-100 figure is derived the same way from the exact every-16 fit's recording and other steps
(it runs the same kind of function; this keeps the run under 10 minutes on 2 CPUs). Configurations are interleaved:
each repeat runs the every-step and every-16 fits, then a plain fit, then the every-100 and never fits (a plain fit
right after a recording-heavy one measured up to 10% slow here, which the finest comparisons must not see); a ratio
is the median over repeats of (time per step / the same repeat's plain time per step). The never-firing cadence gets
extra adjacent (plain, never) pairs, and the Python cost of the callback's per-step hook is timed on its own.
"""

import argparse
import collections
import dataclasses
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
PLAIN, NEVER_KEY = ("plain", None), ("default", NEVER)
EXACT = {"threshold_method": "exact", "near_zero": "exact"}
TARGETS = {1: 3.0, 16: 1.15, 100: 1.02, NEVER: 1.01}
BATCH = 128
WARMUP = 3
# Steps timed per measurement (None: the plain fit): a multiple of the cadence, so that a window holds
# window / update_freq records.
WINDOWS = {None: 30, 1: 10, 16: 16, 100: 100, NEVER: 30}


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is measured for one problem: `configs` are the (settings label, cadence) fits besides the plain one;
    `derived` composes a cadence's figure from one fit's recording steps and another's other steps; `targets`
    bound the default settings' ratio per cadence."""

    batch: int
    configs: tuple
    windows: dict
    derived: dict
    never_pairs: int  # extra (plain, never) pairs after the repeats
    targets: dict
    note: str = ""


_ALL = tuple(("default", f) for f in (1, 16, 100, NEVER)) + (("exact", 1), ("exact", 16))
_EXACT_100 = {("exact", 100): (("exact", 16), ("exact", 16))}
PROBLEMS = {
    "mlp": Problem(BATCH, _ALL, WINDOWS, _EXACT_100, 12, TARGETS),
    "cnn": Problem(BATCH, _ALL, WINDOWS, _EXACT_100, 6, TARGETS),
    "resnet50": Problem(
        32,
        (("default", 1), NEVER_KEY),
        {None: 12, 1: 4, NEVER: 12},
        {("default", 100): (("default", 1), NEVER_KEY)},
        0,
        {1: 4.0, 100: 1.03},
        "not measured: every 16, exact settings (each would trace its own recording function, 5-10 min on 2 "
        "CPUs); every 100 composed from the every-step fit's recording steps and the never fit's steps",
    ),
}


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


def build(problem, batch=BATCH):
    """(compiled model, dataset cycling 8 synthetic batches of `batch` examples)."""
    keras.utils.set_random_seed(0)
    relu = "relu"
    if problem == "resnet50":
        model = keras.applications.ResNet50(
            weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
        )
        return _compiled(model, batch, (32, 32, 3))
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
    return _compiled(keras.Sequential(layers), batch, shape)


def _compiled(model, batch, shape):
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8 * batch,) + shape).astype(np.float32)
    y = rng.integers(0, 10, 8 * batch).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).cache().repeat().prefetch(2)
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


def warm_up(model, data, keys, callbacks):
    """Trace every function once: one short fit per configuration, each holding a recording step if it has one."""
    for label, freq in keys:
        window = 2
        if freq in (16, 100):  # just long enough to reach the next recording step
            window = max(1, (-int(model.optimizer.iterations.numpy())) % freq - WARMUP + 1)
        measure(model, data, window, callbacks.get((label, freq)))
        assert freq in (None, NEVER) or callbacks[(label, freq)]._instrumented is not None, (label, freq)


def run_problem(name, repeats, quick, log_root):
    """Measures one problem of PROBLEMS. Returns medians over repeats, keyed by (settings label, cadence):
    (composed times, their ratios, window means, their ratios), the hook's time (s) and the layers not recorded."""
    problem = PROBLEMS[name]
    model, data = build(name, problem.batch)
    keys = [PLAIN] + list(problem.configs)
    window = {key: problem.windows[key[1]] // (2 if quick and key[1] in (None, 1, NEVER) else 1) for key in keys}
    callbacks = {
        (label, freq): ExplainerCallback(
            os.path.join(log_root, name, f"{label}_{freq}"), update_freq=freq, **(EXACT if label == "exact" else {})
        )
        for label, freq in problem.configs
    }
    warm_up(model, data, keys, callbacks)
    times, ratios, means, mean_ratios = (collections.defaultdict(list) for _ in range(4))

    def keep(key, steps, plain):
        """Adds one fit's figures; `steps` and `plain` are `measure` results of that fit and of its plain fit."""
        mean, recording, other = steps
        freq = key[1]
        assert len(recording) == (0 if freq in (None, NEVER) else window[key] // freq), (key, len(recording))
        times[key].append(composed(freq or NEVER, recording, other))
        means[key].append(mean)
        ratios[key].append(times[key][-1] / composed(NEVER, plain[1], plain[2]))
        mean_ratios[key].append(mean / plain[0])

    # Each repeat: the recording-heavy fits first, then the plain fit right before the light ones it is compared
    # with most finely (a plain fit measured just after a heavy one ran up to 10% slow here); ratios use the
    # repeat's own plain fit.
    order = [k for k in keys if k[1] in (1, 16)] + [PLAIN] + [k for k in keys if k[1] in (100, NEVER)]
    for _ in range(repeats):
        steps = {key: measure(model, data, window[key], callbacks.get(key)) for key in order}
        for key in order:
            keep(key, steps[key], steps[PLAIN])
        for (label, freq), (recording_key, other_key) in problem.derived.items():
            times[(label, freq)].append(composed(freq, steps[recording_key][1], steps[other_key][2]))
            ratios[(label, freq)].append(times[(label, freq)][-1] / times[PLAIN][-1])
    # The never-firing cadence against plain fits, in extra adjacent pairs (the smallest difference to resolve).
    for _ in range(problem.never_pairs):
        plain = measure(model, data, window[PLAIN], None)
        keep(NEVER_KEY, measure(model, data, window[NEVER_KEY], callbacks[NEVER_KEY]), plain)
    hook = None
    if NEVER_KEY in callbacks:  # the Python cost of the callback's per-step hook on a step that does not record
        never, calls = callbacks[NEVER_KEY], 20000
        started = time.perf_counter()
        for _ in range(calls):
            never.on_train_batch_begin(5)
        hook = (time.perf_counter() - started) / calls
        never.on_train_end()
    skipped = {name for cb in callbacks.values() for name in cb.skipped}
    med = lambda d: {key: statistics.median(v) for key, v in d.items() if v}  # noqa: E731
    return med(times), med(ratios), med(means), med(mean_ratios), hook, skipped


HEADER = f"{'problem':8} {'settings':9} {'plain ms':>9} " + " ".join(
    f"{'every ' + str(f) if f != NEVER else 'never':>16}" for f in (1, 16, 100, NEVER)
)


def table_rows(problem, times, ratios):
    rows = []
    for label in ("default", "exact"):
        if not any(key[0] == label for key in times):
            continue
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
    problems = args.problems.split(",")
    unknown = sorted(set(problems) - set(PROBLEMS))
    if unknown:
        parser.error(f"--problems: unknown {unknown}; choose from {sorted(PROBLEMS)}")
    print(f"machine: {machine()}")
    print(
        f"median of {args.repeats} interleaved repeats; time per step in ms and ratio to the plain "
        "fit; default = the callback's defaults (sampled thresholds, sampled near-zero rows/positions), "
        "exact = threshold_method='exact', near_zero='exact'",
        flush=True,
    )
    results, window_results = {}, {}
    with tempfile.TemporaryDirectory() as log_root:
        for problem in problems:
            started = time.perf_counter()
            times, ratios, means, mean_ratios, hook, skipped = run_problem(problem, args.repeats, args.quick, log_root)
            results[problem], window_results[problem] = (times, ratios), (means, mean_ratios)
            if skipped:
                print(f"{problem}: layers not recorded: {sorted(skipped)}")
            if PROBLEMS[problem].note:
                print(f"{problem}: {PROBLEMS[problem].note}")
            print(f"{problem}: batch {PROBLEMS[problem].batch}; measured in {time.perf_counter() - started:.0f} s")
            if hook is not None:
                print(
                    f"{problem}: the callback's per-step hook on a step that does not record: {hook * 1e6:.1f} us "
                    f"({hook / times[PLAIN]:.2%} of a plain step)"
                )
            print("\n".join([HEADER] + table_rows(problem, times, ratios)), flush=True)
    print()
    print(
        "time per step = (median recording step + (N - 1) x median other step) / N; ratio = median over repeats "
        "of (that / the same repeat's plain fit):"
    )
    print(HEADER)
    for problem, (times, ratios) in results.items():
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
        for freq, bound in PROBLEMS[problem].targets.items():
            ratio = ratios[("default", freq)]
            what = "never fires" if freq == NEVER else f"every {freq} steps"
            print(f"target {problem} {what}: {ratio:.3f}x (bound {bound}x): {'met' if ratio <= bound else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
