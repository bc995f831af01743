"""python -m experiments.suite [--methods a,b,...] [--workers N] [--runs-dir runs] [--resume] [overrides] [-- RUN_ARGS]

Runs every method of the study (docs/study.md §3–§4: the baseline, remedy and staged groups; with
``--include-optimizers`` also docs/study.md §5's optimizer comparison) under the seed protocol, one run
directory per method (``RUNS/<method>``), then writes ``RUNS/suite.json`` and the report
(``RUNS/report.md``, :mod:`experiments.report`).

Each method is a separate ``python -m experiments.run --method M --out RUNS/M --threads 1 ...``
process. On a CPU, independent methods run in parallel as single-threaded workers, one per core
(``--workers``, default: the cores this process may use): XLA's intra-op threading does not speed
up these small matrices, while separate processes scale (docs/study.md, README "Speed"). ``--sequential`` runs the
same methods one after another (to measure the speed-up). Worker output goes to
``RUNS/logs/<method>.log``; the progress view (a live table on a terminal, plain lines otherwise)
reads every run's ``history.jsonl``.

A method that fails (exit status 2, a crash) or diverges (exit status 3) is reported and does not
stop the others. ``--resume`` skips methods whose run is complete (summary status finished,
diverged or stopped) and continues interrupted ones from their last checkpoint.

Overrides (``--epochs``, ``--train-limit``, ...) apply to every method; ``--epochs E`` reaches
staged methods as ``--epochs-scale E/300`` (their last, all-layers stage then runs E epochs, like
the baselines) unless ``--epochs-scale`` is given. ``--method-args M='ARGS'`` adds flags for one
method; everything after ``--`` is passed to every run. Exit status: 0 every method completed
(finished or stopped; or was already complete), 1 some method failed or diverged, 2 usage error,
130 interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from experiments import cli

ROOT = Path(__file__).resolve().parents[1]
DONE_STATUSES = ("finished", "diverged", "stopped")
PROTOCOL_EPOCHS = 300  # the seed protocol's epochs (and the staged schedule's last stage)

# suite flag -> experiments.run flag, type (every one optional, passed only when given)
COMMON = {
    "epochs": int, "train_limit": int, "batch_size": int, "seed": int, "lr": float,
    "epochs_scale": float, "checkpoint_every": int, "data_dir": str, "data_source": str,
}


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.suite", description=__doc__.split("\n\n")[1])
    p.add_argument("--methods", default=None,
                   help="comma-separated methods [default: the baseline, remedy and staged groups]")
    p.add_argument("--include-optimizers", action="store_true", help="also the docs/study.md §5 optimizer methods")
    p.add_argument("--workers", type=int, default=None, help="parallel runs [default: usable CPU cores]")
    p.add_argument("--sequential", action="store_true", help="run the methods one after another (benchmark)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run (0: all)")
    p.add_argument("--in-order", action="store_true",
                   help="start the methods in the given order [default: most expensive first]")
    p.add_argument("--runs-dir", default="runs", help="directory of the run directories")
    p.add_argument("--resume", action="store_true", help="skip complete methods, continue interrupted ones")
    p.add_argument("--overwrite", action="store_true", help="start over methods that already have a run")
    p.add_argument("--method-args", action="append", default=[], metavar="M=ARGS",
                   help="extra experiments.run flags for one method, e.g. relu='--lr 0.1' (repeatable)")
    for dest, typ in COMMON.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, type=typ, default=None,
                       help=f"passed to every run as --{dest.replace('_', '-')}")
    p.add_argument("--no-diagnostics", action="store_true", help="passed to every run")
    p.add_argument("--no-report", action="store_true", help="do not write report.md at the end")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between progress updates")
    return p


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def default_methods(include_optimizers: bool) -> list[str]:
    from vgjax.methods import method_names

    groups = ["baseline", "remedy", "staged"] + (["optimizers"] if include_optimizers else [])
    return [m for g in groups for m in method_names(g)]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------------
# jobs


@dataclasses.dataclass
class Job:
    method: str
    out: Path
    command: list[str]
    action: str  # run | resume | overwrite | skip
    log: Path
    proc: subprocess.Popen | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    status: str = "queued"  # queued | running | finished | diverged | stopped | interrupted | failed | skipped
    planned: int | None = None
    epoch: int = 0
    val_accuracy: float | None = None
    eta_s: float | None = None
    sec_per_epoch: float | None = None
    prev_wall_s: float | None = None  # skipped jobs: the wall time recorded when they ran
    _printed: float = 0.0
    _printed_epoch: int = -1
    _log_handle: object = None

    @property
    def wall_time_s(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.perf_counter()) - self.started


def is_staged(method: str) -> bool:
    from vgjax.methods import METHODS

    return METHODS[method].changes.get("stages") is not None


def run_overrides(method: str, args) -> dict:
    """The shared settings given to the suite, as one method's run receives them: ``--epochs E``
    reaches a staged method as ``--epochs-scale E/300`` (unless ``--epochs-scale`` is given)."""
    out = {}
    for dest in COMMON:
        value = getattr(args, dest)
        if value is None:
            continue
        if dest == "epochs" and is_staged(method):
            if args.epochs_scale is None:
                out["epochs_scale"] = value / PROTOCOL_EPOCHS
            continue
        out[dest] = value
    return out


def run_flags(method: str, args) -> list[str]:
    """The experiments.run flags shared by the suite's runs, adapted to the method."""
    flags = []
    for dest, value in run_overrides(method, args).items():
        flags += ["--" + dest.replace("_", "-"), str(value)]
    if args.no_diagnostics:
        flags.append("--no-diagnostics")
    return flags


def estimated_cost(method: str, args) -> float:
    """Relative cost of a method's run: epochs times (hidden layers + 3), summed over its stages.

    Only the order matters: the scheduler starts the most expensive runs first (longest
    processing time first), so the longest one does not start last and leave a core idle at
    the end. Per-epoch time on one core grows about linearly with depth (see benchmarks/
    epoch_speed.py: 0.52 s for 3 layers, 0.85 s for 7 at batch 32); the +3 is the depth-free part
    (input and output layers, data handling, evaluation).
    """
    from vgjax.methods import get_config
    from vgjax.config import Config
    from vgjax.runner import stage_table

    fields = {f.name for f in dataclasses.fields(Config)}
    overrides = {k: v for k, v in run_overrides(method, args).items() if k in fields}
    try:
        table = stage_table(get_config(method, **overrides))
    except Exception:  # noqa: BLE001 - a bad config is reported by the run itself
        return 0.0
    return float(sum(s.epochs * (table.stage_depth(s) + 3) for s in table.stages))


def order_jobs(jobs: list[Job], args) -> None:
    """Most expensive first (in place); stable, so equal costs keep the given order."""
    jobs.sort(key=lambda j: -estimated_cost(j.method, args))


def parse_method_args(items: list[str], methods: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            cli.fail(f"--method-args {item!r} must look like METHOD='--flag value'")
        if name not in methods:
            cli.fail(f"--method-args: {name!r} is not among the suite's methods ({', '.join(methods)})")
        try:
            out.setdefault(name, []).extend(shlex.split(text))
        except ValueError as e:
            cli.fail(f"--method-args {item!r}: {e}")
    return out


def plan(args, methods: list[str], passthrough: list[str], runs_dir: Path,
         extra: dict[str, list[str]] | None = None) -> list[Job]:
    """One job per method; refuses (exit 2) to touch existing runs without --resume/--overwrite."""
    from vgjax.runlog import RunDir

    extra = extra or {}
    jobs, clashes = [], []
    for m in methods:
        out = runs_dir / m
        rd = RunDir(out)
        action = "run"
        if rd.exists():
            if args.overwrite:
                action = "overwrite"
            elif args.resume:
                action = "skip" if rd.status() in DONE_STATUSES else "resume"
            else:
                clashes.append(m)
        cmd = [sys.executable, "-m", "experiments.run", "--method", m, "--out", str(out),
               "--threads", str(args.threads), *run_flags(m, args), *extra.get(m, []), *passthrough]
        if action in ("resume", "overwrite"):
            cmd.append("--" + action)
        jobs.append(Job(m, out, cmd, action, runs_dir / "logs" / f"{m}.log"))
    if clashes:
        cli.fail(f"{runs_dir} already holds runs of {', '.join(clashes)}; use --resume to skip complete ones "
                 f"and continue the others, or --overwrite to start over")
    return jobs


def planned_epochs(run_dir: Path) -> int | None:
    """Planned global epochs of a run, from its config.json (stage table for staged runs)."""
    from vgjax.runlog import read_json

    try:
        config = read_json(run_dir / "config.json")
    except (OSError, json.JSONDecodeError):
        return None
    if config.get("stages") is None:
        return int(config.get("epochs", 0)) or None
    try:
        from vgjax import stages

        return stages.load_table(config["stages"]).scaled(config.get("epochs_scale", 1.0)).total_epochs
    except Exception:  # noqa: BLE001 - a bad table is reported by the run itself
        return None


def refresh(job: Job) -> None:
    """Epoch, accuracy and ETA of a running job, read from its history.jsonl."""
    from vgjax.runlog import read_history

    if job.planned is None:
        job.planned = planned_epochs(job.out)
    rows = read_history(job.out / "history.jsonl")
    if not rows:
        return
    job.epoch = int(rows[-1]["epoch"])
    job.val_accuracy = rows[-1].get("val_accuracy")
    # the median of the last few epochs, never the first (mostly compilation): robust to the
    # recompilation at stage starts and after a resume
    recent = [r["epoch_time_s"] for r in rows[1:] if "epoch_time_s" in r][-5:]
    if recent:
        job.sec_per_epoch = statistics.median(recent)
        if job.planned:
            job.eta_s = max(job.planned - job.epoch, 0) * job.sec_per_epoch


def finish(job: Job) -> None:
    """Status of an ended job from its exit code and summary.json."""
    from vgjax.runlog import RunDir

    job.ended = time.perf_counter()
    job.exit_code = job.proc.returncode if job.proc else None
    if job._log_handle:
        job._log_handle.close()
    refresh(job)
    summary_status = RunDir(job.out).status()
    if job.exit_code in (0, cli.EXIT_DIVERGED, cli.EXIT_INTERRUPTED) and summary_status:
        job.status = summary_status
    else:
        job.status = "failed"
    job.eta_s = 0 if job.status == "finished" else None


def start(job: Job, cwd: Path) -> None:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    job._log_handle = open(job.log, "a")  # a resumed method keeps its earlier log
    job._log_handle.write("$ " + shlex.join(job.command) + "\n")
    job._log_handle.flush()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(cwd)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PYTHONUNBUFFERED", "1")
    job.started = time.perf_counter()
    job.proc = subprocess.Popen(job.command, cwd=cwd, env=env, stdout=job._log_handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    job.status = "running"


def last_error(job: Job) -> str:
    """The last 'error:' line (or last line) of a job's log."""
    try:
        lines = [ln for ln in job.log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or [""])[-1].strip()


# ----------------------------------------------------------------------------------------------
# progress


def fmt_s(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """A rich Live table on a terminal, one plain line per event otherwise."""

    def __init__(self, jobs: list[Job], plain_every: float = 30.0):
        from rich.console import Console

        self.jobs, self.plain_every = jobs, plain_every
        self.console = Console(stderr=True)
        self.t0 = time.perf_counter()
        self.live = None
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self.table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.start()

    def table(self):
        from rich.table import Table

        done = sum(j.status not in ("queued", "running") for j in self.jobs)
        t = Table(title=f"suite: {done}/{len(self.jobs)} methods done, elapsed {fmt_s(time.perf_counter() - self.t0)}")
        for col in ("method", "status", "epoch", "val acc", "s/epoch", "ETA", "wall"):
            t.add_column(col, justify="left" if col in ("method", "status") else "right")
        for j in self.jobs:
            epoch = f"{j.epoch}/{j.planned}" if j.planned else (str(j.epoch) if j.epoch else "–")
            style = {"failed": "red", "diverged": "red", "finished": "green", "running": "bold"}.get(j.status, "")
            t.add_row(j.method, f"[{style}]{j.status}[/]" if style else j.status, epoch,
                      f"{j.val_accuracy:.4f}" if isinstance(j.val_accuracy, float) else "–",
                      f"{j.sec_per_epoch:.2f}" if j.sec_per_epoch else "–", fmt_s(j.eta_s), fmt_s(j.wall_time_s))
        return t

    def line(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def event(self, job: Job, what: str) -> None:
        if what == "start":
            self.line(f"[suite] start {job.method}" + (f" ({job.action})" if job.action != "run" else ""))
        elif what == "end":
            msg = (f"[suite] {job.method}: {job.status} (exit {job.exit_code}) after {job.epoch} epochs "
                   f"in {fmt_s(job.wall_time_s)}")
            if job.status == "failed":
                msg += f" — {last_error(job)} (log: {job.log})"
            self.line(msg)

    def update(self) -> None:
        if self.live is not None:
            self.live.update(self.table())
            return
        now = time.perf_counter()
        for j in self.jobs:
            news = j.status == "running" and j.epoch > 0 and j.epoch != j._printed_epoch
            if news and now - j._printed >= self.plain_every:
                j._printed, j._printed_epoch = now, j.epoch
                acc = f" val_acc {j.val_accuracy:.4f}" if isinstance(j.val_accuracy, float) else ""
                self.line(f"[suite] {j.method} epoch {j.epoch}/{j.planned or '?'}{acc} eta {fmt_s(j.eta_s)}")

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self.table())
            self.live.stop()


def summary_table(jobs: list[Job]) -> str:
    head = f"{'method':<18} {'status':<11} {'exit':>4} {'epochs':>8} {'val_acc':>8} {'wall':>9}"
    lines = [head, "-" * len(head)]
    for j in jobs:
        epochs = f"{j.epoch}/{j.planned}" if j.planned else str(j.epoch)
        acc = f"{j.val_accuracy:.4f}" if isinstance(j.val_accuracy, float) else "–"
        code = "–" if j.exit_code is None else str(j.exit_code)
        lines.append(f"{j.method:<18} {j.status:<11} {code:>4} {epochs:>8} {acc:>8} {fmt_s(j.wall_time_s):>9}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the scheduler


def run_jobs(jobs: list[Job], workers: int, poll: float, progress: Progress, cwd: Path = ROOT) -> bool:
    """Run the jobs in their order, ``workers`` at a time; returns False if interrupted (children
    get SIGTERM)."""
    queue = [j for j in jobs if j.action != "skip"]
    running: list[Job] = []
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                start(job, cwd)
                running.append(job)
                progress.event(job, "start")
            time.sleep(poll)
            for job in list(running):
                refresh(job)
                if job.proc.poll() is not None:
                    finish(job)
                    running.remove(job)
                    progress.event(job, "end")
            progress.update()
    except KeyboardInterrupt:
        for job in running:  # only the processes this suite started, by their handles
            if job.proc.poll() is None:
                job.proc.terminate()
        for job in running:
            try:
                job.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                job.proc.kill()
                job.proc.wait()
            finish(job)
        return False
    return True


def previous_entries(runs_dir: Path) -> dict:
    from vgjax.runlog import read_json

    try:
        return read_json(runs_dir / "suite.json").get("methods", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}


def fill_skipped(jobs: list[Job], runs_dir: Path) -> None:
    """Status and numbers of skipped (already complete) methods, from their files."""
    from vgjax.runlog import RunDir, read_json

    before = previous_entries(runs_dir)
    for j in jobs:
        if j.action != "skip":
            continue
        j.status = RunDir(j.out).status() or "skipped"
        refresh(j)
        prev = before.get(j.method, {})
        j.exit_code = prev.get("exit_code")
        try:
            j.prev_wall_s = prev.get("wall_time_s") or read_json(j.out / "summary.json").get("wall_time_s")
        except (OSError, json.JSONDecodeError):
            j.prev_wall_s = None


def suite_record(jobs: list[Job], args, workers: int, wall: float, interrupted: bool) -> dict:
    methods = {}
    for j in jobs:
        wall_j = j.prev_wall_s if j.action == "skip" else j.wall_time_s
        methods[j.method] = {"status": j.status, "exit_code": j.exit_code, "wall_time_s": wall_j,
                             "action": j.action, "epochs_run": j.epoch, "epochs_planned": j.planned,
                             "run_dir": j.out.name, "log": str(j.log.relative_to(j.out.parent)),
                             "command": shlex.join(j.command[1:])}
        if j.status == "failed":
            methods[j.method]["error"] = last_error(j)
    return {"status": "interrupted" if interrupted else "finished", "workers": workers,
            "sequential": bool(args.sequential), "threads_per_run": args.threads, "wall_time_s": wall,
            "methods": methods}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, passthrough = split_passthrough(argv)
    args = build_parser().parse_args(own)
    from vgjax.methods import METHODS

    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            cli.fail(f"unknown method(s) {', '.join(unknown)}; see python -m experiments.run --list")
        if len(set(methods)) != len(methods):
            cli.fail("--methods names a method twice")
    else:
        methods = default_methods(args.include_optimizers)
    if not methods:
        cli.fail("no methods to run")
    if args.resume and args.overwrite:
        cli.fail("--resume and --overwrite exclude each other")
    if args.workers is not None and args.workers < 1:
        cli.fail("--workers must be >= 1")
    if args.poll <= 0:
        cli.fail("--poll must be > 0")
    extra = parse_method_args(args.method_args, methods)
    workers = 1 if args.sequential else (args.workers or usable_cores())
    runs_dir = Path(args.runs_dir).resolve()
    try:
        (runs_dir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        cli.fail(f"cannot write the runs directory {args.runs_dir}: {e.strerror}")
    jobs = plan(args, methods, passthrough, runs_dir, extra)
    if not args.in_order:
        order_jobs(jobs, args)
    fill_skipped(jobs, runs_dir)
    cli.sigterm_as_interrupt()
    progress = Progress(jobs)
    for j in jobs:
        if j.action == "skip":
            progress.line(f"[suite] skip {j.method}: already {j.status}")
    t0 = time.perf_counter()
    completed = run_jobs(jobs, workers, args.poll, progress)
    wall = time.perf_counter() - t0
    progress.close()
    from vgjax.runlog import atomic_write_json

    record = suite_record(jobs, args, workers, wall, not completed)
    atomic_write_json(runs_dir / "suite.json", record)
    print(summary_table(jobs))
    mode = "sequentially" if args.sequential else f"with {workers} worker(s)"
    print(f"suite wall time {fmt_s(wall)} ({wall:.1f} s) {mode}; suite.json in {runs_dir}")
    if not completed:
        print("interrupted; continue with --resume", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    if not args.no_report:
        try:
            from experiments.report import write_report

            print(f"report: {write_report(runs_dir)}")
        except Exception as e:  # noqa: BLE001 - the runs are done; a report problem must not hide that
            print(f"warning: could not write the report: {e}", file=sys.stderr)
    failed = [j.method for j in jobs if j.status in ("failed", "diverged", "interrupted")]
    if failed:
        print(f"not completed: {', '.join(failed)} (see the logs in {runs_dir / 'logs'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
