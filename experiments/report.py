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

The report replaces only what a report wrote (vgjax.owned's manifest, ``.vgjax-owned.json``): a
``report.md`` or ``figures/`` there that no manifest lists as the report's (or, in a sweep, its
curve figures as the sweep's) is refused with one line before anything is written, as is a
directory a live command holds (vgjax.run.lock); a re-run over its own earlier report replaces it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments import cli
from vgjax import owned
from vgjax.run import lock as runlock

# loaded when first used, after the arguments are parsed (cli.lazy: --help answers without jax)
report_lib, sweep_report, sweep_lib = map(cli.lazy, ("vgjax.report.runs", "vgjax.report.sweep", "vgjax.sweep"))
REPORT_FILE, FIGURES_DIR = "report.md", "figures"  # vgjax.report.runs' (vgjax.run.rundir.FIGURES_DIR)


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.report", description=__doc__.split("\n\n")[1])
    p.add_argument("runs_dir", metavar="RUNS_DIR",
                   help="directory holding one run directory per method, or a sweep directory")
    p.add_argument("--no-figures", action="store_true", help="write the table and text only")
    return p


def outputs(runs_dir: Path, is_sweep: bool, figures: bool) -> tuple[list[str], list[str]]:
    """(the entries the report writes in ``runs_dir``, the sweep's own entries it redraws); none
    when there is nothing to report (write_report then says why, before it writes anything)."""
    if is_sweep:
        config, _ = sweep_report.load_sweep(runs_dir)  # an unfinished sweep: ValueError, nothing written
        axis = sweep_report.pivot_axis(config) if figures else None
        curves = figures and (runs_dir / "metrics.csv").exists()
        return ([REPORT_FILE, *([sweep_report.PIVOT_FIGURE.format(axis=axis)] if axis else [])],
                list(sweep_lib.store.CURVE_FILES) if curves else [])
    if not report_lib.collect(runs_dir):
        return [], []
    return [REPORT_FILE, *([FIGURES_DIR] if figures else [])], []


def claim_outputs(runs_dir: Path, mine: list[str], redrawn: list[str]) -> None:
    """Refuse (one line, exit 2) unless every entry the report writes is absent or its own (the
    redrawn curves: the sweep's), and no live command holds the directory; then claim them."""
    holder = runlock.live_holder(runs_dir)
    if holder:
        cli.fail(f"{runs_dir} is in use by a live command ({holder}); write the report once it has ended")
    clash = owned.foreign(runs_dir, "report", mine) + owned.foreign(runs_dir, "sweep", redrawn)
    if clash:
        cli.fail(f"{runs_dir} holds {', '.join(clash)}, not written by experiments.report (no {owned.MANIFEST} "
                 f"lists them): nothing there is replaced; move them away and run the report again")
    owned.claim(runs_dir, "report", mine)
    if redrawn:
        owned.claim(runs_dir, "sweep", redrawn)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        cli.fail(f"{runs_dir}: no such directory")
    figures = not args.no_figures
    try:
        is_sweep = sweep_report.is_sweep_dir(runs_dir)
        mine, redrawn = outputs(runs_dir, is_sweep, figures)
        if mine:
            claim_outputs(runs_dir, mine, redrawn)
        if is_sweep:
            path = sweep_report.write_sweep_report(runs_dir, figures=figures)
        else:
            path = report_lib.write_report(runs_dir, figures=figures)
    except (FileNotFoundError, ValueError) as e:  # a damaged JSON file's message names it
        cli.fail(str(e))
    except (KeyError, TypeError, AttributeError) as e:
        cli.fail(f"a run file under {runs_dir} does not hold what a run writes ({cli.one_line(e)})")
    except OSError as e:  # a read-only directory, a full disk
        cli.fail(f"cannot write the report in {runs_dir}: {e.strerror or cli.one_line(e)}")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
