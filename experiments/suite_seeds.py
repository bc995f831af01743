"""``python -m experiments.suite --seeds N``: every method of the suite × N seeds × its protocol,
as few compiled programs as possible (:mod:`vgjax.sweep.seeds`): seeds vmapped within a method,
and methods that differ only in init std, learning rate or beta vmapped together. On a CPU each
program's members are split over single-threaded worker processes; on a GPU or TPU one process
vmaps them. Writes ``<out>/seeds_suite.json``, one sweep directory per program, ``summary.csv`` and
``report.md`` (default out: ``runs/seeds``); ``--resume`` continues an interrupted suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from experiments import cli, progress as shown
from vgjax import owned, runtime, sweep
from vgjax.run import lock as runlock
from vgjax.sweep import seeds as seed_suite
from vgjax.config import ConfigError
from vgjax.config import fields as config_fields
from vgjax.methods import get_config
from vgjax.files import atomic_write_json, read_json

DEFAULT_OUT = Path("runs") / "seeds"
# suite flags that belong to the one-run-per-method suite only
RUN_ONLY = (("sequential", "--sequential"), ("in_order", "--in-order"), ("method_args", "--method-args"))


def check_args(args, passthrough: list[str]) -> None:
    if args.seeds < 1:
        cli.fail(f"--seeds must be >= 1, got {args.seeds}")
    for dest, flag in RUN_ONLY:
        if getattr(args, dest):
            cli.fail(f"{flag} applies to the one-run-per-method suite, not to --seeds")
    if passthrough:
        cli.fail("run flags after -- apply to the one-run-per-method suite, not to --seeds")
    if args.resume and args.overwrite:
        cli.fail("--resume and --overwrite exclude each other")
    if args.workers is not None and args.workers < 0:
        cli.fail("--workers must be >= 0")
    # the programs are sweeps: they keep no checkpoints, stop no member early and write no
    # TensorBoard scalars, so such a flag would be ignored silently
    given = [cli.config_flag(f.name) for f in config_fields("bookkeeping")
             if f.name != "diagnostics" and getattr(args, f.name, None) is not None]
    if given:
        cli.fail(f"{given[0]} applies to the one-run-per-method suite, not to --seeds (its programs keep no "
                 f"checkpoints, stop no seed early and write no TensorBoard scalars)")


def build_configs(methods: list[str], overrides: dict[str, dict]) -> dict:
    configs = {}
    for m in methods:
        try:
            configs[m] = get_config(m, diagnostics=False, **overrides[m])
        except ConfigError as e:
            cli.config_error(e, overrides[m])
    return configs


SUITE_ENTRIES = (seed_suite.SUITE_FILE, "summary.csv", "report.md")  # besides its program directories


def prepare_out(out: Path, rec: dict, resume: bool, overwrite: bool, remove: bool = True) -> None:
    """Fail before any work when ``out`` cannot be used as asked; with --overwrite (and
    ``remove``), remove what an earlier suite there wrote (only the entries its manifest lists:
    vgjax.owned)."""
    path = out / seed_suite.SUITE_FILE
    names = [*SUITE_ENTRIES, *(p["name"] for p in rec["programs"])]
    if not path.exists():
        if resume:
            cli.fail(f"{out} holds no multi-seed suite to resume (no {seed_suite.SUITE_FILE}); start it without --resume")
        problem = owned.write_problem(out, "seeds-suite", names, "experiments.suite --seeds")
        if problem:
            cli.fail(problem)
        return
    if owned.owners(out).get(seed_suite.SUITE_FILE) != "seeds-suite":
        cli.fail(f"{path} was not written by experiments.suite --seeds (no {owned.MANIFEST} lists it): nothing "
                 f"there is replaced; choose another --out")
    try:
        saved = read_json(path)
    except (OSError, ValueError) as e:
        cli.fail(f"cannot read {path}: {e}")
    if resume:
        if saved != json.loads(json.dumps(rec)):
            differ = [k for k in rec if saved.get(k) != json.loads(json.dumps(rec[k]))]
            cli.fail(f"{out} holds a multi-seed suite of other settings (differs in {', '.join(differ)}); "
                     f"give the flags it was started with, or --overwrite to replace it")
        problem = owned.write_problem(out, "seeds-suite", names, "experiments.suite --seeds")
        if problem:
            cli.fail(problem)
        return
    if not overwrite:
        cli.fail(f"{out} already holds a multi-seed suite; use --resume to continue it or --overwrite to replace it")
    problem = owned.write_problem(out, "seeds-suite", names, "experiments.suite --seeds")
    if problem:
        cli.fail(problem)
    if not remove:
        return
    try:
        owned.remove(out, "seeds-suite")  # its files and program directories, nothing else
    except OSError as e:
        cli.fail(f"cannot remove the earlier suite's files in {out}: {e.strerror}")


def train_all(programs, out: Path, arrays, workers: int, args) -> None:
    todo = [p for p in programs if not sweep.is_finished(out / p.name)]
    for p in set(programs) - set(todo):
        sweep.ChunkStore(out / p.name).remove()  # left when a kill came between its summary and their removal
    warn = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    done = [seed_suite.finished_chunks(out, p, warn) for p in todo]
    progress = shown.SweepProgress(max(sum(seed_suite.remaining_cost(p, d) for p, d in zip(todo, done)), 1))
    try:
        for i, (p, d) in enumerate(zip(todo, done)):
            progress.start_group(f"[{i + 1}/{len(todo)}] {p.name}", p.steps)
            seed_suite.train_program(p, out, arrays, d, workers=workers, threads=args.threads, progress=progress)
    finally:
        progress.close()


def main(args, methods: list[str], overrides: dict[str, dict], passthrough: list[str], argv: list[str]) -> int:
    """The multi-seed suite of ``methods``; ``overrides``: each method's Config overrides."""
    check_args(args, passthrough)
    configs = build_configs(methods, overrides)
    seeds = list(range(args.seeds))
    try:
        programs = seed_suite.plan_programs(configs, seeds, group=not args.separate)
    except ConfigError as e:
        cli.fail(str(e))
    out = Path(args.runs_dir) if args.runs_dir else DEFAULT_OUT
    rec = seed_suite.record(programs, configs, seeds)
    holder = runlock.live_holder(out) if out.is_dir() else None
    if holder:
        cli.fail(f"{out} is in use by a live suite ({holder}); wait for it to end or stop it, or use another --out")
    workers = sweep.choose_workers(args.workers, args.threads)
    if workers == 0:
        runtime.pin_cpu_threads(args.threads)  # before the backend starts: this process trains
    prepare_out(out, rec, args.resume, args.overwrite, remove=False)  # before the data are read
    arrays = cli.load_data(args.data_dir, args.data_source or "idx")
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = runlock.RunLock(out).acquire()
    except runlock.LockedError as e:
        cli.fail(f"{out} is in use by a live suite ({e}); wait for it to end or stop it, or use another --out")
    except OSError as e:
        cli.fail(f"cannot create or lock the output directory {out}: {e.strerror}")
    cli.sigterm_as_interrupt()
    try:
        prepare_out(out, rec, args.resume, args.overwrite)  # again, now that it is ours: only now is anything removed
        owned.claim(out, "seeds-suite", [*SUITE_ENTRIES, *(p.name for p in programs)])
        atomic_write_json(out / seed_suite.SUITE_FILE, rec)
        train_all(programs, out, arrays, workers, args)
        report = seed_suite.write_suite_report(out, programs, _info(args, argv, workers, configs, methods))
    except KeyboardInterrupt:
        print(f"interrupted; finished programs and chunks are kept: continue with --resume --out {out}",
              file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    finally:
        lock.release()
    print(f"report: {report}")
    return 0


def _info(args, argv: list[str], workers: int, configs: dict, methods: list[str]) -> dict:
    mode = f"{workers} worker processes" if workers else "vmapped in one process"
    return {"command": "python -m experiments.suite " + " ".join(argv), "seeds": args.seeds, "mode": mode,
            "train_images": configs[methods[0]].train_limit or 60000,
            "device": runtime.device_description(configs[methods[0]].precision)}
