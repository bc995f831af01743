"""Child processes run a few at a time: the scheduling loop shared by the sweep's worker processes
(:mod:`vgjax.sweep.workers`) and the suite's run processes (:mod:`vgjax.run.jobs`).

A task is anything with the five methods of :class:`Task`. :func:`run` starts the tasks in their
order, at most ``slots`` at once, calls ``tick(running)`` between checks (to sleep, or to read the
children's messages) and reports every task that ends; whatever interrupts it (Ctrl-C, a failure
raised by ``tick``) first stops the running tasks (:func:`stop`) and then propagates.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Callable, Iterable, Protocol, Sequence

PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15  # linux/prctl.h
WATCH_THREAD = "vgjax-watch"  # the watching thread's name, also the kernel's (ps -L, /proc/PID/task/*/comm)


class Task(Protocol):
    def start(self) -> None:
        """Start the child process."""

    def poll(self) -> bool:
        """True once the task has ended (and its result, if any, is in)."""

    def terminate(self) -> None:
        """Ask the child to end (SIGTERM); nothing if it has already."""

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever) for the child to exit; True if it has."""

    def kill(self) -> None:
        """End the child at once (SIGKILL)."""


def stop(tasks: Sequence[Task], grace: float | None = 60.0) -> None:
    """Ask every task to end, give each ``grace`` seconds (None: as long as it takes), kill the rest."""
    for task in tasks:
        task.terminate()
    for task in tasks:
        if not task.wait(grace):
            task.kill()
            task.wait(None)


def run(tasks: Iterable[Task], slots: int, tick: Callable[[list], None],
        on_start: Callable[[Task], None] | None = None, on_end: Callable[[Task], None] | None = None,
        grace: float | None = 60.0) -> None:
    """Run ``tasks`` in order, ``slots`` at a time, until every one has ended.

    ``tick(running)`` is called once per round, before the running tasks are polled; ``on_start``
    and ``on_end`` get each task as it starts and ends. On any exception the running tasks are
    stopped (``grace`` seconds each, then killed) before it propagates.
    """
    queue, running = list(tasks), []
    try:
        while queue or running:
            while queue and len(running) < slots:
                task = queue.pop(0)
                task.start()
                running.append(task)
                if on_start is not None:
                    on_start(task)
            tick(running)
            for task in list(running):
                if task.poll():
                    running.remove(task)
                    if on_end is not None:
                        on_end(task)
    except BaseException:
        stop(running, grace)
        raise


def end_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this child process end when its parent ``parent_pid`` dies, however it dies (kill -9
    included), so that no child goes on training for a parent that is gone: on Linux the kernel
    kills it (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere, a daemon thread checks every
    ``poll_s`` seconds that its parent is still its parent and ends the process otherwise. A
    parent that died before this call ends it at once."""
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        if prctl is not None:
            prctl(PR_SET_NAME, WATCH_THREAD.encode(), 0, 0, 0)
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name=WATCH_THREAD).start()


def _prctl():
    """libc's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
