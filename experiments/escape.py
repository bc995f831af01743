"""python -m experiments.escape [train | report SWEEP_DIR] [flags]

The plateau-escape study (docs/escape.md): how often, and when, a deep sigmoid MLP leaves the
chance plateau, over depth x batch size x init std with many seeds. Two steps, each usable alone:

  train   trains the grid as one sweep (experiments.sweep: baseline_7, the depths, batch sizes and
          init stds given, seeds 0 .. N-1) into --out (default runs/escape); --resume continues an
          interrupted one (its finished chunks are kept).
  predict fits the step law (docs/escape.md "Escape in SGD steps") to a reported sweep and writes
          its predictions for the settings of vgjax.analysis.escape.PREDICTION_GRID to --out (a dated csv).
  report  reads that sweep's metrics.csv and summary.json and writes report.md, escape.csv,
          curves.csv, escape_curves.png and escape_vs_chi.png to --out (default SWEEP_DIR/report);
          it replaces only a report it wrote there itself (vgjax.owned), never anyone's files.

Without a step, train and then report (the report step's --out is --report-out). The defaults
are the full grid of the study: depth 3..7, batch 32,128,512, init std 0.05,0.1,0.2, 16 seeds,
300 epochs -- an accelerator's job; see docs/escape.md for a CPU budget.

Exit status: 0 done, 2 usage or data error, 130 interrupted (train: continue with --resume).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from experiments import cli
from experiments import sweep as sweep_cli
from vgjax import owned
from vgjax.analysis.grids import FULL_EPOCHS, FULL_GRID, FULL_SEEDS

escape_lib = cli.lazy("vgjax.analysis.escape")  # jax and matplotlib: loaded when first used

STEPS = ("train", "report", "predict")
DEPTHS, BATCHES, STDS = FULL_GRID["depth"], FULL_GRID["batch_size"], FULL_GRID["init_std"]
SEEDS, EPOCHS, METHOD = FULL_SEEDS, FULL_EPOCHS, "baseline_7"
TRAIN_OUT = "runs/escape"
REPORT_DIR = "report"  # the report's default directory, inside the sweep's
REPORT_ENTRIES = ("report.md", "escape.csv", "curves.csv", "escape_curves.png", "escape_vs_chi.png")


def add_train_flags(p: cli.Parser) -> None:
    p.add_argument("--depth", type=cli.int_list, default=DEPTHS, help="numbers of hidden layers")
    p.add_argument("--batch-size", type=cli.int_list, default=BATCHES, help="batch sizes")
    p.add_argument("--init-std", type=cli.float_list, default=STDS, help="kernel init stds")
    p.add_argument("--seeds", type=int, default=SEEDS, help="seeds 0 .. N-1 per setting")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per run")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--out", default=TRAIN_OUT, help="the sweep's directory")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out (same flags)")
    p.add_argument("--overwrite", action="store_true", help="replace a sweep already in --out")
    p.add_argument("--workers", type=int, default=None,
                   help="CPU worker processes [default: one per usable core on a CPU, 0 (vmapped here) on "
                        "an accelerator]")
    p.add_argument("--chunk", type=int, default=None, help="members per compiled chunk [default: from memory]")
    p.add_argument("--unroll", type=int, default=None, help="training steps per compiled loop iteration [default: 1]")


def add_report_flags(p: cli.Parser, out_flag: str) -> None:
    p.add_argument(out_flag, dest="report_out", default=None,
                   help=f"directory for the report and figures [default: SWEEP_DIR/{REPORT_DIR}]")
    p.add_argument("--no-theory", action="store_true", help="skip the mean-field prediction (needs no data)")
    p.add_argument("--theory-per-class", type=int, default=3,
                   help="training examples per class in the theory's data sample")
    p.add_argument("--no-figures", action="store_true", help="write report.md and the csv files only")


def build_parser(step: str | None) -> cli.Parser:
    prog = "python -m experiments.escape" + (f" {step}" if step else "")
    p = cli.Parser(prog=prog, description="\n\n".join(__doc__.split("\n\n")[1:]).strip())  # the steps too
    if step == "predict":
        p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="the sweep the law is fitted to")
        p.add_argument("--made", required=True, help="the date the predictions are made (YYYY-MM-DD)")
        p.add_argument("--out", required=True, help="the csv file to write (it must not exist)")
        p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
        return p
    if step == "report":
        p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep directory written by the train step")
    if step != "report":
        add_train_flags(p)
    if step != "train":
        add_report_flags(p, "--out" if step == "report" else "--report-out")
    p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--data-source", choices=("idx", "tfds"), default="idx", help="where the arrays come from")
    return p


def sweep_argv(args) -> list[str]:
    """The experiments.sweep command line of the train step."""
    argv = ["--method", METHOD, "--depth", ",".join(map(str, args.depth)),
            "--batch-size", ",".join(map(str, args.batch_size)), "--init-std", ",".join(f"{s:g}" for s in args.init_std),
            "--seeds", str(args.seeds), "--epochs", str(args.epochs), "--out", args.out]
    for flag, value in (("--train-limit", args.train_limit), ("--workers", args.workers), ("--chunk", args.chunk),
                        ("--unroll", args.unroll), ("--data-dir", args.data_dir),
                        ("--data-source", None if args.data_source == "idx" else args.data_source)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + ["--resume"] * args.resume + ["--overwrite"] * args.overwrite


def train(args) -> int:
    if args.epochs < 1 or args.seeds < 1:
        cli.fail(f"--epochs and --seeds must be >= 1, got {args.epochs} and {args.seeds}")
    return sweep_cli.main(sweep_argv(args))


def report(args, sweep_dir: str) -> int:
    path = Path(sweep_dir)
    if not path.is_dir():
        cli.fail(f"{path}: no such directory (give the sweep directory of the train step)")
    if args.report_out is not None and not args.report_out.strip():
        cli.fail("--out is empty: give a directory for the report")
    args.report_out = args.report_out or str(path / REPORT_DIR)
    problem = owned.write_problem(args.report_out, "report", REPORT_ENTRIES, "experiments.escape report")
    if problem:  # checked before the data are read and before anything is written
        cli.fail(problem)
    if args.theory_per_class < 2:
        cli.fail(f"--theory-per-class must be >= 2, got {args.theory_per_class}")
    try:
        escape_lib.load_escape_sweep(path)  # a sweep that cannot be reported fails before the data are read
    except (OSError, ValueError) as e:
        cli.fail(str(e))
    arrays = None if args.no_theory else cli.load_data(args.data_dir, args.data_source)
    command = " ".join(["python -m experiments.escape report", sweep_dir, "--out", args.report_out]
                       + ["--no-theory"] * args.no_theory + ["--no-figures"] * args.no_figures
                       + ([f"--theory-per-class {args.theory_per_class}"] if args.theory_per_class != 3 else []))
    try:
        owned.claim(args.report_out, "report", REPORT_ENTRIES)
        written = escape_lib.write_escape_report(path, args.report_out, arrays, args.theory_per_class,
                                      figures=not args.no_figures, command=command)
    except (FileNotFoundError, ValueError) as e:
        cli.fail(cli.one_line(e) if isinstance(e, FileNotFoundError) else str(e))
    except OSError as e:
        cli.fail(f"cannot write the report to {args.report_out}: {e.strerror or cli.one_line(e)}")
    except (KeyError, TypeError) as e:
        cli.fail(f"{path} does not hold what a sweep writes ({cli.one_line(e)})")
    print(written)
    return 0


def predict(args) -> int:
    import datetime

    from vgjax.analysis import escape

    path, out = Path(args.sweep_dir), Path(args.out)
    try:
        datetime.date.fromisoformat(args.made)
    except ValueError:
        cli.fail(f"--made must be a date YYYY-MM-DD, got {args.made!r}")
    if out.exists():
        cli.fail(f"{out} exists: a dated prediction is never rewritten (give another --out)")
    if not path.is_dir():
        cli.fail(f"{path}: no such directory (give the sweep directory the law is fitted to)")
    arrays = cli.load_data(args.data_dir, "idx")
    try:
        law, boot = escape.fitted_law(path, arrays)
        settings = escape.prediction_settings()
        predicted = escape.theory_rows(settings, np.asarray(arrays.x_train), np.asarray(arrays.y_train))
    except (OSError, ValueError) as e:
        cli.fail(cli.one_line(e))
    from vgjax.run.rundir import history_csv
    from vgjax.files import atomic_write_text

    atomic_write_text(out, history_csv(escape.predictions(law, boot, settings, predicted, args.made)))
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    step = argv.pop(0) if argv and argv[0] in STEPS else None
    args = build_parser(step).parse_args(argv)
    if step == "report":
        return report(args, args.sweep_dir)
    if step == "predict":
        return predict(args)
    status = train(args)
    if step == "train" or status != 0:
        return status
    return report(args, args.out)


if __name__ == "__main__":
    sys.exit(main())
