"""The command lines' progress displays, the only terminal output of a sweep or a suite (the library
reports through callbacks and never prints): :class:`SweepProgress`, fed the sweep's
:class:`vgjax.sweep.workers.EpochProgress` records, and :class:`JobsProgress`, told the suite's
jobs' events by :func:`vgjax.run.jobs.run_jobs`. Both draw with rich on a terminal and write throttled
plain lines to stderr otherwise.

A sweep's progress is counted in member-epochs, each weighted by its program's ``weight`` (the
multi-seed suite gives steps per epoch, so that a batch-512 epoch counts less than a batch-32 one
and the ETA holds across programs)."""

from __future__ import annotations

import sys
import time

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vgjax.run.jobs import Job, fmt_s, last_error
from vgjax.train.engine import diverged


class SweepProgress:
    """A rich progress bar over member-epochs on a terminal, a throttled plain line otherwise."""

    def __init__(self, total: int, every_s: float = 10.0):
        self.console = Console(stderr=True)
        self.total, self.done, self.every_s = total, 0, every_s
        self.label, self.last, self.weight = "", 0.0, 1
        self.t0 = time.perf_counter()
        self._progress = None
        if self.console.is_terminal:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                      TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[info]}"),
                                      TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self._task = self._progress.add_task("sweep", total=total, info="")
            self._progress.start()

    def start_group(self, label: str, weight: int = 1) -> None:
        self.label, self.weight = label, weight

    def eta_text(self) -> str:
        """The time left at the rate so far (member-epochs of this process' run)."""
        elapsed = time.perf_counter() - self.t0
        if not self.done:
            return "ETA ?"
        left = int(elapsed * (self.total - self.done) / self.done)
        return f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"

    def __call__(self, p) -> None:
        self.done += (p.stop - p.start) * self.weight
        val = p.metrics["val_accuracy"]
        bad = int(np.sum(diverged(p.metrics["loss"], p.metrics["val_loss"])))
        where = f"{self.label} chunk {p.chunk}/{p.chunks}" + (f" worker {p.worker}" if p.worker else "")
        info = (f"members {p.start}-{p.stop - 1} epoch {p.epoch}/{p.epochs} val_acc mean {np.mean(val):.3f} "
                f"max {np.max(val):.3f}" + (f" diverged {bad}" if bad else ""))
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, description=where, info=info)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s or p.epoch == p.epochs:
            self.last = now
            print(f"{where}: {info} ({100 * self.done / self.total:.0f}% of the sweep, {self.eta_text()})",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class JobsProgress:
    """A rich Live table on a terminal, one plain line per event otherwise."""

    def __init__(self, jobs: list[Job], plain_every: float = 30.0, live: bool = True):
        self.jobs, self.plain_every = jobs, plain_every
        self.console = Console(stderr=True)
        self.t0 = time.perf_counter()
        self.live = None
        if live and self.console.is_terminal:
            self.live = Live(self.table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.start()
        for j in jobs:
            if j.action == "skip":
                self.line(f"[suite] skip {j.method}: already {j.status}")

    def table(self) -> Table:
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
