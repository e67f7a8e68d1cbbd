"""Command line: `python -m tb_matmul_explainer report LOGDIR [--run R] [--step S]`.

Prints the ranked alerts, then each layer's diagnosis, then the matmuls that were not recorded (with the reason),
for every run (or one) in a log directory.
"""

import argparse
import sys

from tb_matmul_explainer import explain, loader


def _parser():
    parser = argparse.ArgumentParser(prog="python -m tb_matmul_explainer",
                                     description="Explain near-zero layer outputs and gradients recorded by "
                                                 "tb-matmul-explainer.")
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
            print("Alerts, worst first:", file=out)
            for a in alerts:
                print(f"  [{a.severity:.2f}] {a.layer} ({a.role.replace('_', ' ')}), from step {a.first_step}: "
                      f"{a.message}", file=out)
        else:
            print("No alerts.", file=out)
        print("Layers:", file=out)
        for d in diagnoses:
            print(f"  {d.layer} ({d.role.replace('_', ' ')}, step {d.step}): {d.text}", file=out)
        print_not_recorded(result.not_recorded.get(name, []), out)
    for run_name, tag, reason in result.unreadable:
        print(f"Could not read {run_name}/{tag}: {reason}", file=out)


def print_not_recorded(entries, out):
    """Prints a run's not-recorded matmuls [(path, reason)] (`loader.LoadResult.not_recorded`), if any."""
    if not entries:
        return
    print(f"Not recorded ({len(entries)}):", file=out)
    for path, reason in entries:
        print(f"  {path}: {reason}", file=out)


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        report(args.logdir, args.run, args.step)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
