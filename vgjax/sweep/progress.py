"""The sweep's progress display: a rich bar over member-epochs on a terminal, a throttled plain
line on stderr otherwise (fed :class:`vgjax.sweep.workers.EpochProgress` records). Progress is
counted in member-epochs, each weighted by its program's ``weight`` (the multi-seed suite gives
steps per epoch, so that a batch-512 epoch counts less than a batch-32 one and the ETA holds
across programs)."""

from __future__ import annotations

import sys
import time

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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
