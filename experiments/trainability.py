"""python -m experiments.trainability [train | report DIR] [flags]

The trainability map (docs/escape.md "Trainability map"): depth x init std for sigmoid, tanh and
the beta-sigmoid at a small budget, against the mean-field depth scale (vgjax.analysis.trainability).

  train   one sweep per activation (experiments.sweep: baseline_7 with --activation, --depth, the
          init stds vmapped) into --out/<activation>/.
  report  reads --out's sweeps and writes report.md, trainability.csv and trainability.png.

Exit status: 0 done, 2 usage or data error, 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments import cli
from experiments import sweep as sweep_cli
from vgjax.analysis import grids

tr = cli.lazy("vgjax.analysis.trainability")  # the theory (scipy) and figures: loaded for the report

STEPS = ("train", "report")


def sweep_argv(activation: str, depths, args) -> list[str]:
    g = grids
    argv = ["--method", "baseline_7", "--activation", activation, "--depth", ",".join(map(str, depths)),
            "--init-std", ",".join(f"{s:g}" for s in g.MAP_STDS), "--seeds", str(g.MAP_SEEDS),
            "--epochs", str(g.MAP_EPOCHS), "--train-limit", str(g.MAP_TRAIN_LIMIT), "--batch-size", str(g.MAP_BATCH),
            "--lr", f"{g.MAP_LR:g}", "--out", str(Path(args.out) / activation), "--chunk", str(len(g.MAP_STDS) * g.MAP_SEEDS)]
    if activation.startswith("sigmoid_"):
        argv += ["--beta", f"{grids.MAP_BETA:g}"]
    for flag, value in (("--workers", args.workers), ("--threads", args.threads), ("--data-dir", args.data_dir)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + ["--resume"] * args.resume


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    step = argv.pop(0) if argv and argv[0] in STEPS else None
    if step is None:
        cli.fail(f"give a step: {' or '.join(STEPS)}")
    p = cli.Parser(prog=f"python -m experiments.trainability {step}", description=__doc__.split("\n\n")[1])
    if step == "report":
        p.add_argument("dir", metavar="DIR", help="the directory of the train step (one sweep per activation)")
        p.add_argument("--out", required=True, help="directory for the report")
        p.add_argument("--no-figures", action="store_true", help="write the report without its figures")
    else:
        p.add_argument("--out", default="runs/trainability", help="directory for the sweeps")
        p.add_argument("--workers", type=int, default=None, help="the sweeps' --workers (CPU worker processes)")
        p.add_argument("--threads", type=int, default=None, help="the sweeps' --threads (CPU cores per worker)")
        p.add_argument("--resume", action="store_true", help="continue interrupted sweeps in --out")
        p.add_argument("--activations", type=lambda v: [a for a in v.split(",") if a],
                       default=list(grids.MAP_GRID),
                       help=f"which of {', '.join(grids.MAP_GRID)} to train [default: all]")
        p.add_argument("--data-dir", default=None, help="directory of the Fashion-MNIST files [default: found]")
    args = p.parse_args(argv)
    if step == "train":
        unknown = sorted(set(args.activations) - set(grids.MAP_GRID))
        if unknown:
            cli.fail(f"--activations: unknown {', '.join(unknown)} (choose from {', '.join(grids.MAP_GRID)})")
        for activation, depths in ((a, d) for a, d in grids.MAP_GRID.items() if a in args.activations):
            status = sweep_cli.main(sweep_argv(activation, depths, args))
            if status != 0:
                return status
        return 0
    root = Path(args.dir)
    dirs = [root / a for a in grids.MAP_GRID if (root / a / "summary.json").is_file()]
    if not dirs:
        cli.fail(f"{root}: no sweep of {', '.join(grids.MAP_GRID)} in it (run the train step)")
    command = f"python -m experiments.trainability report {args.dir} --out {args.out}"
    try:
        written = tr.write_report(dirs, Path(args.out), command, figures=not args.no_figures)
    except (OSError, ValueError, KeyError) as e:
        cli.fail(cli.one_line(e))
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
