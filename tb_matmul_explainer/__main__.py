"""Command line: `python -m tb_matmul_explainer report LOGDIR [--run R] [--step S]`.

Prints the ranked alerts (with the layer whose record showed an alert, where that is not its origin), then each
layer's diagnosis, then per layer its chain: what each recorded step of it has near zero, in chain order
(`CHAIN`), then the matmuls that were not recorded and the layers recorded only in part (with the reason), for
every run (or one) in a log directory.
"""

import argparse
import contextlib
import os
import sys

import numpy as np

from tb_matmul_explainer import explain, loader

#: A layer's recorded steps in chain order: (role, label, what its near-zero cells are).
CHAIN = (
    ("input_features", "input features", "near zero"),
    ("forward", "x.W", "near zero"),
    ("activation", "activation", "inactive"),
    ("activation_gradient", "dJ/dz", "near zero"),
    ("kernel_gradient", "dJ/dW", "near zero"),
    ("input_gradient", "dJ/dx", "near zero"),
)
_FORWARD = ("input_features", "forward", "activation")
_DERIVATIVE_Z = [1, 4, 7]  # PZ, ZZ, NZ: the second operand (f'(z)) in Z


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m tb_matmul_explainer",
        description="Explain near-zero layer outputs and gradients recorded by tb-matmul-explainer.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="print ranked alerts and per-layer diagnoses")
    report.add_argument("logdir", help="log directory (as given to tensorboard --logdir)")
    report.add_argument("--run", help="only this run (default: every run)")
    report.add_argument("--step", type=_step, help="diagnose at this step (default: each layer's latest)")
    return parser


def _step(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--step must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--step must be a non-negative integer, got {text!r}")
    return value


def report(logdir, run=None, step=None, out=None):
    """Writes the report for `logdir` to `out` (default stdout); raises ValueError/FileNotFoundError."""
    out = out or sys.stdout
    result = loader.load(logdir)
    runs = result.runs
    if run is not None:
        if run not in runs:
            raise ValueError(f"--run {run!r} not found; runs with matmul-explainer data: {sorted(runs)}")
        runs = {run: runs[run]}
    for name, layers in runs.items():
        diagnoses, alerts = explain.diagnose_run(layers, step)
        print(f"== run {name}", file=out)
        if alerts:
            print("Alerts, where problems start first, then worst first:", file=out)
            for a in alerts:
                seen = f", seen in {a.seen_in}" if a.seen_in else ""
                print(
                    f"  [{a.severity:.2f}] {a.layer} ({a.role.replace('_', ' ')}{seen}), from step "
                    f"{a.first_step}: {a.message}",
                    file=out,
                )
        else:
            print("No alerts.", file=out)
        print("Layers:", file=out)
        for d in diagnoses:
            print(f"  {d.layer} ({d.role.replace('_', ' ')}, step {d.step}): {d.text}", file=out)
        print("Chains (forward: input features -> x.W -> activation; backward: dJ/dz -> dJ/dW, dJ/dx):", file=out)
        for line in chain_lines(layers, step):
            print(f"  {line}", file=out)
        print_notes("Not recorded", result.not_recorded.get(name, []), out)
        print_notes("Recorded in part", result.partly_recorded.get(name, []), out)
    for run_name, tag, reason in result.unreadable:
        print(f"Could not read {run_name}/{tag}: {reason}", file=out)


def chain_lines(layers, step=None):
    """One line per layer (model order): "layer: forward: ... | backward: ...", each recorded role's share of
    near-zero (activation: inactive) cells at `step` and its dead rows; roles the layer lacks are left out.
    `layers`: {(layer, role): loader.LayerSeries}."""
    by_layer = {}
    for (layer, role), series in layers.items():
        by_layer.setdefault(layer, {})[role] = series
    lines = []
    for layer, roles in by_layer.items():
        parts = {True: [], False: []}
        for role, label, what in CHAIN:
            picked = roles[role].record_at(step) if role in roles else None
            if picked is not None:
                parts[role in _FORWARD].append(_chain_step(roles[role].info, role, label, what, picked[1]))
        halves = [
            f"{name}: {' -> '.join(p)}" for name, p in (("forward", parts[True]), ("backward", parts[False])) if p
        ]
        lines.append(f"{layer}: {' | '.join(halves)}")
    return lines


_GRADIENT_ROLES = ("kernel_gradient", "input_gradient", "activation_gradient")


def _chain_step(info, role, label, what, record):
    """One step of a chain line, e.g. "activation relu 100% inactive (16/16 dead)"."""
    t = explain.totals(record)
    share = float(explain.near_zero_fraction(t.near_zero_cells, t.cells, empty=0.0))
    name = f"{label} {info.activation}" if role == "activation" and info.activation else label
    text = f"{name} {share:.0%} {what}"
    dead, of, _ = explain.dead_count(t)
    if role == "activation" and info.loss_reads_logits:
        text += " (the loss reads its logits: not dead)"
    elif dead and role in _GRADIENT_ROLES:
        text += f" ({dead}/{of} units without gradient)"  # (a gradient near zero everywhere is none, not "dead")
    elif dead:
        text += f" ({dead}/{of} dead)"
    if role == "input_features" and info.producer:
        text += f" from {info.producer}"
    if role == "input_features" and info.zeroed_by:
        text += f" through {', '.join(info.zeroed_by)}"
    near = np.asarray(t.near_zero_counts, np.float64)
    if role == "activation_gradient" and near.sum() > 0:
        text += f" ({near[_DERIVATIVE_Z].sum() / near.sum():.0%} of them where f' is off)"
    return text


def print_notes(heading, entries, out):
    """Prints a run's not-recorded matmuls or partly recorded layers [(path, reason)]
    (`loader.LoadResult.not_recorded`, `partly_recorded`), if any, under `heading`."""
    if not entries:
        return
    print(f"{heading} ({len(entries)}):", file=out)
    for path, reason in entries:
        print(f"  {path}: {reason}", file=out)


@contextlib.contextmanager
def _quiet_native_stderr():
    """File descriptor 2 to /dev/null inside: TensorFlow's start-up notices (CPU features, oneDNN) come from absl
    logging before it is initialised, which TF_CPP_MIN_LOG_LEVEL does not silence."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _import_tensorflow_quietly():
    """Imports TensorFlow (TensorBoard's event reading loads it) without its start-up notices on stderr, unless
    the user set TF_CPP_MIN_LOG_LEVEL (then its notices are theirs to see)."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with _quiet_native_stderr(), contextlib.suppress(ImportError):  # (without TensorFlow, TensorBoard's stub)
        import tensorflow  # noqa: F401


def main(argv=None):
    args = _parser().parse_args(argv)
    _import_tensorflow_quietly()
    try:
        report(args.logdir, args.run, args.step)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
