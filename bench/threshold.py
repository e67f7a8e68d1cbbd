"""Benchmark: exact O(N) percentile_threshold and sampled_threshold vs tfp.stats.percentile (which sorts).

Run: .venv/bin/python bench/threshold.py [--repeats 7] [--sizes 1M,16M]
For float32 tensors (standard normal, and ReLU-like with ~50% exact zeros) it times, in one process and
interleaved, each function wrapped in tf.function (median of --repeats runs after a warm-up run), checks the
exact threshold equals tfp's bit for bit, and prints the ratio tfp/ours. The target lines use the smaller ratio
of the two data kinds per size. Always exits 0.
"""

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tb_matmul_explainer import threshold  # noqa: E402

CONFIDENCE = 0.95
SIZES = {"1M": 1 << 20, "16M": 1 << 24}


def machine():
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return (
        f"{platform.machine()} {model or 'unknown CPU'}, {os.cpu_count()} CPUs, "
        f"GPUs: {', '.join(gpus) or 'none'}; TensorFlow {tf.__version__}, TFP {tfp.__version__}"
    )


def data(kind, n):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n, dtype=np.float32)
    if kind == "relu":
        x = np.maximum(x, 0.0)  # ~50% exact zeros
    return tf.constant(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="1M,16M", help="comma-separated, from: " + ",".join(SIZES))
    args = parser.parse_args()
    sizes = [s for s in args.sizes.split(",") if s in SIZES]

    fns = {
        "tfp.stats.percentile": tf.function(
            lambda x: tfp.stats.percentile(tf.abs(x), 100 * (1 - CONFIDENCE), interpolation="midpoint")
        ),
        "percentile_threshold": tf.function(lambda x: threshold.percentile_threshold(x, CONFIDENCE)),
        "sampled_threshold": tf.function(lambda x: threshold.sampled_threshold(x, CONFIDENCE, seed=1)),
    }
    print(f"machine: {machine()}")
    print(
        f"float32, confidence {CONFIDENCE}, median of {args.repeats} runs after warm-up, ms; "
        f"sample_size {threshold.DEFAULT_SAMPLE_SIZE}"
    )
    header = (
        f"{'size':>5} {'data':>7} {'tfp (sort)':>11} {'exact':>9} {'sampled':>9} {'tfp/exact':>10} "
        f"{'tfp/sampled':>12} {'bit-equal':>9}"
    )
    print(header)
    print("-" * len(header))

    worst = {}
    for size in sizes:
        for kind in ("normal", "relu"):
            x = data(kind, SIZES[size])
            values = {name: fn(x).numpy() for name, fn in fns.items()}  # warm-up (traces)
            times = {name: [] for name in fns}
            for _ in range(args.repeats):  # interleaved
                for name, fn in fns.items():
                    start = time.perf_counter()
                    fn(x).numpy()
                    times[name].append(time.perf_counter() - start)
            ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
            ratio = ms["tfp.stats.percentile"] / ms["percentile_threshold"]
            ratio_sampled = ms["tfp.stats.percentile"] / ms["sampled_threshold"]
            equal = values["tfp.stats.percentile"].tobytes() == values["percentile_threshold"].tobytes()
            worst[size] = min(worst.get(size, float("inf")), ratio if equal else 0.0)
            print(
                f"{size:>5} {kind:>7} {ms['tfp.stats.percentile']:>11.2f} {ms['percentile_threshold']:>9.2f} "
                f"{ms['sampled_threshold']:>9.2f} {ratio:>9.1f}x {ratio_sampled:>11.1f}x "
                f"{'yes' if equal else 'NO':>9}"
            )

    for size in sizes:
        ratio = worst[size]
        verdict = "met" if ratio >= 1.0 else "missed"
        print(
            f"target exact threshold faster than tfp.stats.percentile ({size}): {ratio:.1f}x (bound >= 1.0x): {verdict}"
        )
    return 0


if __name__ == "__main__":
    main()
    sys.exit(0)
