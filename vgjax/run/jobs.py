"""Training runs as child processes: the suite's jobs, their scheduling and their record.

A :class:`Job` is one ``python -m experiments.run`` process writing one run directory (or, on a
GPU or TPU, the same run called in this process, one after another: :func:`plan_workers`); its log
goes to a file and its progress (epoch, validation accuracy, time per epoch, ETA) is read from
the run's history. :func:`plan_jobs` makes one job per method (the settings given to the suite as
each method's run receives them: :func:`method_overrides`), :func:`order_jobs` puts the most
expensive first, :func:`suite_dir_problem` and :func:`claim_suite_dir` guard the suite's own files
in its directory (:mod:`vgjax.owned`). :func:`run_jobs` runs a list of jobs a few at a time
(:mod:`vgjax.run.pool`), reporting to a progress object (``update()`` and ``event(job,
"start"|"end")``; the command line's :class:`experiments.progress.JobsProgress` draws it), and
:func:`suite_record` is what ``suite.json`` holds. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable


from vgjax.run import pool
from vgjax import owned, runtime
from vgjax.config import Config
from vgjax.methods import METHODS, get_config
from vgjax.train import stages
from vgjax.run.rundir import DONE_STATUSES, RunDir
from vgjax.files import read_json

SUITE_FILE = "suite.json"  # in the directory of the suite's run directories
LOGS_DIR = "logs"  # the jobs' logs, beside the run directories
RUN_MODULE = "experiments.run"  # a job's command is python -m RUN_MODULE ARGS
EXIT_INTERRUPTED = 130
PROTOCOL_EPOCHS = 300  # the seed protocol's epochs (and the staged schedule's last stage)
# settings of staged training: given to the suite, they reach its staged methods only (a method
# without stages refuses them)
STAGE_ONLY = ("epochs_scale", "stage_output")
# what the suite itself writes in its directory, beside the run directories (vgjax.owned)
SUITE_ENTRIES = {SUITE_FILE: "suite", LOGS_DIR: "suite", "report.md": "report", "figures": "report"}


@dataclasses.dataclass
class Job:
    method: str
    out: Path
    command: list[str]
    action: str  # run | resume | overwrite | skip
    log: Path
    completed_codes: tuple[int, ...] = (0,)  # exit codes of a run that ended as its summary says
    cwd: Path | None = None
    # in-process: the run's main(ARGS) is called here instead of starting a child process
    call: Callable[[list[str]], int] | None = None
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

    # the vgjax.run.pool.Task methods
    # (an in-process job has ended when start returns: there is nothing to poll, stop or kill)
    def start(self) -> None:
        if self.call is not None:
            run_in_process(self)
        else:
            start(self, self.cwd or Path.cwd())

    def poll(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:  # only the process this job started
            self.proc.terminate()

    def wait(self, timeout: float | None) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def plan_workers(requested: int | None, sequential: bool, platform: str | None = None) -> tuple[int, bool]:
    """(runs at once, whether they run in this process) for a suite.

    On a CPU (``platform``, default :func:`vgjax.runtime.configured_platform`): ``requested``
    child processes, else one per usable core (one when ``sequential``). On a GPU or TPU one run
    at a time, in this process: parallel processes would each claim the device's memory (or
    fight over a TPU, which one process holds), and one process starts the device once.
    """
    if (platform or runtime.configured_platform()) != "cpu":
        return 1, True
    if sequential:
        return 1, False
    return requested or runtime.usable_cores(), False


class PlanError(ValueError):
    """The suite may not run in its directory as asked (the message is one line)."""


def is_staged(method: str) -> bool:
    return METHODS[method].changes.get("stages") is not None


def method_overrides(method: str, given: dict) -> dict:
    """The shared settings ``given`` to the suite (Config fields and run flags by name), as one
    method's run receives them: ``epochs E`` reaches a staged method as ``epochs_scale E/300``
    (unless ``epochs_scale`` is given), the staged settings (STAGE_ONLY) staged methods only."""
    out = {}
    staged = is_staged(method) or "stages" in given
    for dest, value in given.items():
        if dest in STAGE_ONLY and not staged:
            continue
        if dest == "epochs" and staged:
            if "epochs_scale" not in given:
                out["epochs_scale"] = value / PROTOCOL_EPOCHS
            continue
        out[dest] = value
    return out


def estimated_cost(method: str, overrides: dict) -> float:
    """Relative cost of a method's run with ``overrides`` (:func:`method_overrides`;
    :func:`vgjax.train.stages.relative_cost`), 0 for a config the run itself will refuse."""
    fields = {f.name for f in dataclasses.fields(Config)}
    try:
        return stages.relative_cost(stages.run_table(get_config(method, **{k: v for k, v in overrides.items()
                                                                             if k in fields})))
    except Exception:  # noqa: BLE001 - a bad config is reported by the run itself
        return 0.0


def order_jobs(jobs: list[Job], overrides: dict[str, dict]) -> None:
    """Most expensive first (in place; ``overrides``: each method's), so that the longest run does
    not start last and leave a core idle; stable, so equal costs keep the given order."""
    jobs.sort(key=lambda j: -estimated_cost(j.method, overrides.get(j.method, {})))


def plan_jobs(runs_dir: Path, run_args: dict[str, list[str]], *, threads: int, resume: bool, overwrite: bool,
              completed_codes: tuple[int, ...] = (0,)) -> list[Job]:
    """One job per method of ``run_args`` (method -> its further experiments.run flags), its run in
    ``runs_dir/<method>``. Raises :class:`PlanError` rather than touch a directory that is not a
    vgjax run, or existing runs without ``resume`` or ``overwrite``."""
    jobs, clashes = [], []
    for m, flags in run_args.items():
        out = runs_dir / m
        if (resume or overwrite) and out.exists() and (
                not out.is_dir() or (RunDir(out).run_files() and not RunDir(out).is_vgjax_run())):
            raise PlanError(f"{out} is not a vgjax run directory (no {owned.MANIFEST} says experiments.run wrote "
                            f"it): nothing there is replaced; choose another --out")
        action = action_for(out, resume=resume, overwrite=overwrite)
        if action is None:
            clashes.append(m)
            action = "run"
        cmd = [sys.executable, "-m", RUN_MODULE, "--method", m, "--out", str(out), "--threads", str(threads), *flags]
        if action in ("resume", "overwrite"):
            cmd.append("--" + action)
        jobs.append(Job(m, out, cmd, action, runs_dir / LOGS_DIR / f"{m}.log", completed_codes))
    if clashes:
        raise PlanError(f"{runs_dir} already holds runs of {', '.join(clashes)}; use --resume to skip complete "
                        f"ones and continue the others, or --overwrite to start over")
    return jobs


def _entries(kind: str) -> list[str]:
    return [n for n, k in SUITE_ENTRIES.items() if k == kind]


def suite_dir_problem(runs_dir: Path) -> str | None:
    """Why the suite may not write its own entries (SUITE_ENTRIES) in ``runs_dir`` (someone else's
    file is there), or None; they are claimed (:func:`claim_suite_dir`) once every check has passed."""
    for kind in ("suite", "report"):
        problem = owned.write_problem(runs_dir, kind, _entries(kind), "experiments.suite")
        if problem:
            return problem
    return None


def claim_suite_dir(runs_dir: Path) -> None:
    """Record the suite's entries as its own in ``runs_dir`` and create its logs folder."""
    for kind in ("suite", "report"):
        owned.claim(runs_dir, kind, _entries(kind))
    (runs_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)


def action_for(out: Path, *, resume: bool, overwrite: bool) -> str | None:
    """What a job does with its run directory: run (there is none yet), overwrite, resume, or
    skip (it is complete); None when one exists and neither resume nor overwrite was asked for."""
    rd = RunDir(out)
    if not rd.exists():
        return "run"
    if overwrite:
        return "overwrite"
    if resume:
        return "skip" if rd.status() in DONE_STATUSES else "resume"
    return None


def planned_epochs(run_dir: Path) -> int | None:
    """Planned global epochs of a run, from its config.json (stage table for staged runs)."""
    try:
        config = read_json(RunDir(run_dir).config_path)
    except (OSError, json.JSONDecodeError):
        return None
    try:
        return stages.planned_epochs(config) or None
    except Exception:  # noqa: BLE001 - a bad table is reported by the run itself
        return None


def refresh(job: Job) -> None:
    """Epoch, accuracy and ETA of a running job, read from its history.jsonl."""
    if job.planned is None:
        job.planned = planned_epochs(job.out)
    rows = RunDir(job.out).history()
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
    job.ended = job.ended or time.perf_counter()
    job.exit_code = job.proc.returncode if job.proc else job.exit_code
    if job._log_handle:
        job._log_handle.close()
    refresh(job)
    summary_status = RunDir(job.out).status()
    if job.exit_code in job.completed_codes and summary_status:
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


def run_in_process(job: Job) -> None:
    """Call the job's run here (``job.call`` with the arguments after ``-m experiments.run``), its
    output going to the job's log; returns when the run has ended. A run that was interrupted
    (exit status 130) interrupts the suite: KeyboardInterrupt once its status is recorded."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    argv = job.command[job.command.index(RUN_MODULE) + 1:]
    job.started, job.status = time.perf_counter(), "running"
    with open(job.log, "a") as log:
        log.write("$ " + shlex.join(job.command) + "  # in the suite's process\n")
        log.flush()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                code = job.call(argv)
        except SystemExit as e:  # a usage error (exit 2) of the run
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except Exception as e:  # noqa: BLE001 - one failing method does not stop the others
            log.write(traceback.format_exc())
            log.write(f"error: {type(e).__name__}: {e}\n")
            code = 1
    job.exit_code, job.ended = code, time.perf_counter()
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt


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


def run_jobs(jobs: list[Job], workers: int, poll: float, progress, cwd: Path) -> bool:
    """Run the jobs in their order, ``workers`` at a time, telling ``progress`` (its ``update()`` every
    poll, ``event(job, "start"|"end")``); returns False if interrupted (children get SIGTERM, then
    SIGKILL after a minute)."""
    todo = [j for j in jobs if j.action != "skip"]
    for job in todo:
        job.cwd = cwd

    def tick(running: list[Job]) -> None:
        progress.update()
        time.sleep(poll)
        for job in running:
            refresh(job)

    def ended(job: Job) -> None:
        finish(job)
        progress.event(job, "end")

    try:
        pool.run(todo, workers, tick, on_start=lambda job: progress.event(job, "start"), on_end=ended)
    except KeyboardInterrupt:
        for job in todo:
            if job.status == "running":  # stopped by pool.run
                finish(job)
        return False
    progress.update()
    return True


def previous_entries(runs_dir: Path) -> dict:
    try:
        return read_json(runs_dir / SUITE_FILE).get("methods", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}


def fill_skipped(jobs: list[Job], runs_dir: Path) -> None:
    """Status and numbers of skipped (already complete) methods, from their files."""
    before = previous_entries(runs_dir)
    for j in jobs:
        if j.action != "skip":
            continue
        rd = RunDir(j.out)
        j.status = rd.status() or "skipped"
        refresh(j)
        prev = before.get(j.method, {})
        j.exit_code = prev.get("exit_code")
        try:
            j.prev_wall_s = prev.get("wall_time_s") or read_json(rd.summary_path).get("wall_time_s")
        except (OSError, json.JSONDecodeError):
            j.prev_wall_s = None


def suite_record(jobs: list[Job], *, workers: int, wall: float, interrupted: bool, sequential: bool,
                 threads: int) -> dict:
    """What suite.json holds: the suite's settings and, per method, how its job went."""
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
            "sequential": bool(sequential), "threads_per_run": threads, "wall_time_s": wall,
            "in_process": any(j.call is not None for j in jobs), "methods": methods}
