"""python -m experiments.suite [--methods a,b,...] [--seeds N] [--workers N] [--out DIR] [--resume] [overrides] [-- RUN_ARGS]

Runs every method of the study (docs/study.md §3–§4: the baseline, remedy and staged groups; with
``--include-optimizers`` also docs/study.md §5's optimizer comparison) under the seed protocol, one run
directory per method (``RUNS/<method>``), then writes ``RUNS/suite.json`` and the report
(``RUNS/report.md``, :mod:`experiments.report`).

Each method is a separate ``python -m experiments.run --method M --out RUNS/M --threads 1 ...``
process. On a CPU, independent methods run in parallel as single-threaded workers, one per core
(``--workers``, default: the usable cores); on a GPU or TPU one after another in the suite's own
process (``vgjax.run.jobs.plan_workers``; docs/guide/accelerators.md, "Speed"). ``--sequential`` runs them one after another
(to measure the speed-up). Worker output goes to ``RUNS/logs/<method>.log``; the progress view
reads every run's ``history.jsonl``.

A method that fails (exit status 2, a crash) or diverges (exit status 3) is reported and does not
stop the others. ``--resume`` skips methods whose run is complete (summary status finished,
diverged or stopped) and continues interrupted ones from their last checkpoint.

Overrides (``--epochs``, ``--train-limit``, ...) apply to every method; ``--epochs E`` reaches
staged methods as ``--epochs-scale E/300`` (their last, all-layers stage then runs E epochs, like
the baselines) unless ``--epochs-scale`` is given. ``--method-args M='ARGS'`` adds flags for one
method; everything after ``--`` is passed to every run. Exit status: 0 every method completed
(finished or stopped; or was already complete), 1 some method failed or diverged, 2 usage error,
130 interrupted. A live suite locks RUNS (vgjax.run.lock): a second suite into it is refused. With ``--seeds N`` every method runs N seeds as vmapped programs instead
(:mod:`experiments.suite_seeds`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from experiments import cli
from vgjax.config import fields as config_fields
from vgjax.files import atomic_write_json
from vgjax.methods import METHODS, default_methods

# loaded when first used, after the arguments are parsed (cli.lazy: --help answers without jax)
suite_seeds, jobs_lib, shown, callbacks, report_lib, run_dir_mod, run_args = map(cli.lazy, (
    "experiments.suite_seeds", "vgjax.run.jobs", "experiments.progress", "vgjax.run.callbacks",
    "vgjax.report.runs", "experiments.run_dir", "experiments.run_args"))

ROOT = Path(__file__).resolve().parents[1]
# exit codes of experiments.run after which the run's summary.json says how it ended
COMPLETED_EXIT_CODES = (0, cli.EXIT_DIVERGED, cli.EXIT_INTERRUPTED)

# experiments.run flags besides the Config fields' (cli.add_config_flags), passed only when given
COMMON = {"data_dir": str, "data_source": str}


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.suite", description=__doc__.split("\n\n")[1])
    p.add_argument("--method", "--methods", dest="methods", default=None,
                   help="comma-separated methods [default: the baseline, remedy and staged groups]")
    p.add_argument("--include-optimizers", action="store_true", help="also the docs/study.md §5 optimizer methods")
    p.add_argument("--workers", type=int, default=None, help="parallel runs [default: usable CPU cores]")
    p.add_argument("--sequential", action="store_true", help="run the methods one after another (benchmark)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run (0: all)")
    p.add_argument("--in-order", action="store_true",
                   help="start the methods in the given order [default: most expensive first]")
    p.add_argument("--out", "--runs-dir", dest="runs_dir", default=None,
                   help="directory of the run directories [default: runs; with --seeds: runs/seeds]")
    p.add_argument("--seeds", type=int, default=None, help="N seeds per method, vmapped (the multi-seed suite)")
    p.add_argument("--separate", action="store_true", help="with --seeds: one program per method (no grouping)")
    p.add_argument("--resume", action="store_true", help="skip complete methods, continue interrupted ones")
    p.add_argument("--overwrite", action="store_true", help="start over methods that already have a run")
    p.add_argument("--method-args", action="append", default=[], metavar="M=ARGS",
                   help="extra experiments.run flags for one method, e.g. relu='--lr 0.1' (repeatable)")
    for dest, typ in COMMON.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, type=typ, default=None,
                       help=f"passed to every run as --{dest.replace('_', '-')}")
    cli.add_config_flags(p, note="each method's; passed to every run")
    p.add_argument("--no-report", action="store_true", help="do not write report.md at the end")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between progress updates")
    return p


def given_settings(args) -> dict:
    """The shared settings given to the suite: the Config fields and COMMON flags on its command line."""
    return {**cli.config_overrides(args), **{k: getattr(args, k) for k in COMMON if getattr(args, k) is not None}}


def overrides_by_method(args, methods: list[str]) -> dict[str, dict]:
    """Each method's share of the settings given to the suite (:func:`vgjax.run.jobs.method_overrides`)."""
    given = given_settings(args)
    return {m: jobs_lib.method_overrides(m, given) for m in methods}


def run_flags(method: str, args) -> list[str]:
    """The experiments.run flags shared by the suite's runs, adapted to the method."""
    flags = []
    for dest, value in overrides_by_method(args, [method])[method].items():
        flags += cli.run_flag(dest, value)
    return flags


def plan(args, methods: list[str], passthrough: list[str], runs_dir: Path,
         extra: dict[str, list[str]] | None = None) -> list[jobs_lib.Job]:
    """One job per method; refuses (exit 2) to touch existing runs without --resume/--overwrite."""
    extra = extra or {}
    flags = {m: [*run_flags(m, args), *extra.get(m, []), *passthrough] for m in methods}
    try:
        return jobs_lib.plan_jobs(runs_dir, flags, threads=args.threads, resume=args.resume, overwrite=args.overwrite,
                                  completed_codes=COMPLETED_EXIT_CODES)
    except jobs_lib.PlanError as e:
        cli.fail(str(e))


def selected_methods(args) -> list[str]:
    """The methods to run: --methods (checked), else the default groups; exit 2 on a bad list."""
    if not args.methods:
        return default_methods(args.include_optimizers)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        cli.fail(f"unknown method(s) {', '.join(unknown)}; see python -m experiments.run --list")
    if len(set(methods)) != len(methods):
        cli.fail("--methods names a method twice")
    return methods


def check_args(args, methods: list[str]) -> None:
    if not methods:
        cli.fail("no methods to run")
    if args.resume and args.overwrite:
        cli.fail("--resume and --overwrite exclude each other")
    if args.workers is not None and args.workers < 1:
        cli.fail("--workers must be >= 1")
    if args.poll <= 0:
        cli.fail("--poll must be > 0")
    if getattr(args, "tensorboard", None) and not callbacks.tensorboard_available():
        cli.fail(callbacks.TENSORBOARD_MISSING)


def finish_suite(args, jobs: list[jobs_lib.Job], runs_dir: Path, workers: int, wall: float, completed: bool) -> int:
    """suite.json, the summary table, the report; the exit status."""
    record = jobs_lib.suite_record(jobs, workers=workers, wall=wall, interrupted=not completed,
                                   sequential=args.sequential, threads=args.threads)
    atomic_write_json(runs_dir / jobs_lib.SUITE_FILE, record)
    print(jobs_lib.summary_table(jobs))
    mode = "sequentially" if args.sequential else f"with {workers} worker(s)"
    print(f"suite wall time {jobs_lib.fmt_s(wall)} ({wall:.1f} s) {mode}; {jobs_lib.SUITE_FILE} in {runs_dir}")
    if not completed:
        print("interrupted; continue with --resume", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    if not args.no_report:
        try:
            print(f"report: {report_lib.write_report(runs_dir)}")
        except Exception as e:  # noqa: BLE001 - the runs are done; a report problem must not hide that
            print(f"warning: could not write the report: {e}", file=sys.stderr)
    failed = [j.method for j in jobs if j.status in ("failed", "diverged", "interrupted")]
    if failed:
        print(f"not completed: {', '.join(failed)} (see the logs in {runs_dir / jobs_lib.LOGS_DIR})",
              file=sys.stderr)
        return 1
    return 0


def check_dir(runs_dir: Path) -> None:
    """One line (exit 2) when someone else's file is where the suite writes its own entries."""
    problem = jobs_lib.suite_dir_problem(runs_dir)
    if problem:
        cli.fail(problem)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, passthrough = cli.split_passthrough(argv)
    args = build_parser().parse_args(own)
    methods = selected_methods(args)
    if args.seeds is not None:
        fields = {f.name for f in config_fields()}
        overrides = {m: {k: v for k, v in given.items() if k in fields}
                     for m, given in overrides_by_method(args, methods).items()}
        return suite_seeds.main(args, methods, overrides, passthrough, argv)
    check_args(args, methods)
    extra = cli.parse_method_args(args.method_args, methods)
    runs_dir = Path(args.runs_dir or "runs").resolve()
    run_dir_mod.refuse_if_live(runs_dir, "suite")
    check_dir(runs_dir)
    jobs = plan(args, methods, passthrough, runs_dir, extra)
    run_args.check_runs({m: ["--method", m, *run_flags(m, args), *passthrough] for m in methods},
                        "the suite's flags reach every method; see --help")  # before the first run starts
    lock = run_dir_mod.lock_dir(runs_dir, "suite")  # one live suite per directory, like a run's and a sweep's
    try:
        check_dir(runs_dir)  # again, now that the directory is ours
        jobs = plan(args, methods, passthrough, runs_dir, extra)
        return run_suite(args, jobs, runs_dir)
    finally:
        lock.release()


def run_suite(args, jobs: list[jobs_lib.Job], runs_dir: Path) -> int:
    """Run the planned jobs in the checked and locked ``runs_dir``; the exit status."""
    workers, in_process = jobs_lib.plan_workers(args.workers, args.sequential)  # a GPU/TPU: here, one by one
    try:
        jobs_lib.claim_suite_dir(runs_dir)
    except (OSError, ValueError) as e:
        cli.fail(f"cannot write the runs directory {runs_dir}: {getattr(e, 'strerror', None) or e}")
    if not args.in_order:
        jobs_lib.order_jobs(jobs, overrides_by_method(args, [j.method for j in jobs]))
    jobs_lib.fill_skipped(jobs, runs_dir)
    if in_process:
        from experiments import run as run_cli
        for job in jobs:
            job.call = run_cli.main
    cli.sigterm_as_interrupt()
    progress = shown.JobsProgress(jobs, live=not in_process)
    t0 = time.perf_counter()
    completed = jobs_lib.run_jobs(jobs, workers, args.poll, progress, ROOT)
    wall = time.perf_counter() - t0
    progress.close()
    return finish_suite(args, jobs, runs_dir, workers, wall, completed)


if __name__ == "__main__":
    sys.exit(main())
