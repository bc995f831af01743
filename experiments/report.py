"""python -m experiments.report RUNS_DIR | SWEEP_DIR

Writes ``RUNS_DIR/report.md`` and the comparison figures (``RUNS_DIR/figures/``) from the run
directories under ``RUNS_DIR``: one table row per method, computed from its ``history.jsonl``,
and one paragraph per method comparing it with ``baseline_7``, generated from the same numbers.
When ``RUNS_DIR`` was written by ``experiments.suite``, the report also states the suite's wall
time, the sum of its methods' wall times and the ratio of the two (the parallel speed-up).
Given a sweep directory (``experiments.sweep``), it writes that sweep's multi-seed report
instead (:mod:`vgjax.report.sweep`).

Table columns: status; epochs run; final and best validation accuracy; final training loss; the
first epoch at which validation accuracy reached 0.8 (or "never"); the first-layer gradient norm
at epoch 1 relative to the last (output) layer's (``grad_norm/hidden_1 / grad_norm/output``, both
the mean over epoch 1's steps); wall time (the run's summary, else the sum of its epoch times).
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments import cli

# loaded when first used, after the arguments are parsed (cli.lazy: --help answers without jax)
report_lib, sweep_report = cli.lazy("vgjax.report.runs"), cli.lazy("vgjax.report.sweep")


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.report", description=__doc__.split("\n\n")[1])
    p.add_argument("runs_dir", metavar="RUNS_DIR",
                   help="directory holding one run directory per method, or a sweep directory")
    p.add_argument("--no-figures", action="store_true", help="write the table and text only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        cli.fail(f"{runs_dir}: no such directory")
    try:
        if sweep_report.is_sweep_dir(runs_dir):
            path = sweep_report.write_sweep_report(runs_dir, figures=not args.no_figures)
        else:
            path = report_lib.write_report(runs_dir, figures=not args.no_figures)
    except (FileNotFoundError, ValueError) as e:  # a damaged JSON file's message names it
        cli.fail(str(e))
    except (KeyError, TypeError, AttributeError) as e:
        cli.fail(f"a run file under {runs_dir} does not hold what a run writes ({cli.one_line(e)})")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
