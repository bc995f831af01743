"""python -m experiments.plot RUN_DIR [RUN_DIR ...] [--out DIR] [--explainers]

Redraws the figures of saved runs from their files (history, summary, histograms) into
``<run_dir>/figures/``. A directory that is not a run but holds runs (a runs root such as
``runs/``) stands for all of them. With more than one run, the comparison figures (validation
accuracy and first-layer gradient norm of every run on one axis) go to ``--out``, else to
``<root>/figures`` for a runs root, else to ``figures/`` in the runs' common parent directory.
``--explainers`` also draws the explanatory figures (normal densities, activations).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from experiments import cli
from vgjax.run import rundir as runlog
from vgjax import files

# loaded when first used, after the arguments are parsed (cli.lazy: --help answers without jax)
plots = cli.lazy("vgjax.report.plots")
sweep_report = cli.lazy("vgjax.report.sweep")


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.plot", description=__doc__.split("\n\n")[1])
    p.add_argument("paths", nargs="*", metavar="RUN_DIR", help="run directories or runs roots")
    p.add_argument("--out", default=None, help="directory of the comparison / explanatory figures")
    p.add_argument("--explainers", action="store_true", help="also draw the explanatory figures")
    p.add_argument("--no-compare", action="store_true", help="skip the comparison figures")
    return p


def is_run(p: Path) -> bool:
    """A vgjax run directory: its marker, or (from before the marker) a config.json naming a method
    that vgjax reads as its config."""
    rd = runlog.RunDir(p)
    if rd.marker_path.is_file():
        return True
    try:
        config = files.read_json(rd.config_path)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "method" in config and rd.is_vgjax_run()


def _not_a_run(p: Path) -> str:
    """Why ``p``, which holds a config.json, is not a run to draw: a sweep, or someone else's folder."""
    if sweep_report.is_sweep_dir(p):
        return (f"{p} is a sweep directory (experiments.sweep), not a run directory: its figures are "
                f"{p / 'sweep_val_accuracy.png'} and sweep_loss.png; python -m experiments.report {p} "
                f"writes its report and redraws them")
    return f"{p} is not a vgjax run directory (its config.json is not a vgjax run's); nothing is drawn"


def expand(paths: list[str]) -> tuple[list[Path], Path | None]:
    """Run directories named by ``paths`` and the runs root when exactly one root was given."""
    runs: list[Path] = []
    roots = []
    for text in paths:
        p = Path(text)
        if not p.is_dir():
            cli.fail(f"{p}: no such directory")
        if (p / "config.json").exists():
            if not is_run(p):
                cli.fail(_not_a_run(p))
            runs.append(p)
            continue
        found = [d for d in runlog.find_run_dirs(p) if is_run(d)]
        if not found:
            cli.fail(f"{p} is neither a run directory (no config.json) nor a directory of vgjax runs")
        runs.extend(found)
        roots.append(p)
    root = roots[0] if len(roots) == 1 and len(paths) == 1 else None
    return runs, root


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _draw(args)
    except KeyboardInterrupt:
        print("interrupted: the figure being drawn was not written (each figure is whole or absent, and a "
              "run's figures/ gets all of its figures or none); run the command again", file=sys.stderr)
        return cli.EXIT_INTERRUPTED


def _draw(args) -> int:
    if not args.paths and not args.explainers:
        cli.fail("give at least one run directory (or --explainers)")
    runs, root = expand(args.paths)
    written: list[Path] = []
    for run in runs:
        try:
            paths = plots.plot_run(run)
        except (OSError, ValueError, KeyError) as e:
            if cli.no_space(e):
                cli.fail(f"{cli.write_failure(e)}; none of {run}'s figures were written", 1)
            print(f"warning: could not draw {run}: {e}", file=sys.stderr)
            continue
        if not paths:
            print(f"{run}: no epochs recorded yet, nothing to draw", file=sys.stderr)
        written += paths
    if len(runs) > 1 and not args.no_compare:
        if args.out:
            out = Path(args.out)
        elif root is not None:
            out = root / runlog.FIGURES_DIR
        else:
            out = Path(os.path.commonpath([str(r.resolve().parent) for r in runs])) / runlog.FIGURES_DIR
        written += plots.plot_comparison(runs, out)
    if args.explainers:
        written += plots.plot_explainers(Path(args.out) if args.out else Path(runlog.FIGURES_DIR))
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
