"""Faults from outside a program, as its commands report them: a full disk (or any failed write)
as one phrase naming the file, and SIGINT / SIGTERM that interrupt once however often they come.
"""

from __future__ import annotations

import contextlib
import errno
import re
import signal


def one_line(e: BaseException) -> str:
    """An exception as a short phrase."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__


class InterruptOnce:
    """A SIGINT / SIGTERM handler: the first signal raises KeyboardInterrupt, later ones are only
    counted, so that a repeated Ctrl-C cannot cut short the clean-up of the first one (recording
    where the run stopped). :meth:`check` raises it again where the first one was swallowed (a
    KeyboardInterrupt raised inside a weakref callback or ``__del__`` is printed and dropped)."""

    def __init__(self):
        self.count = 0
        self.raised = False  # the KeyboardInterrupt reached the command's handler

    def __call__(self, signum, frame):
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.count and not self.raised:
            raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_once():
    """Within the block, SIGINT and SIGTERM are :class:`InterruptOnce`; the old handlers after it."""
    handler = InterruptOnce()
    sigs = [signal.SIGINT, signal.SIGTERM]
    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, handler)
    try:
        yield handler
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def no_space(e: BaseException) -> bool:
    """Whether ``e`` (or an exception it was raised from) is a full disk: OSError ENOSPC, or
    orbax / tensorstore's error that wraps one."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return True
        if "No space left on device" in str(e) or "os_error_code='28'" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def written_path(e: BaseException) -> str | None:
    """The file an exception about a failed write names, if any (OSError.filename, or the
    quoted file of an orbax / tensorstore write error)."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.filename:
            return str(e.filename)
        m = re.search(r'(?:Failed writing|local file|writing file): "([^"]+)"', str(e))
        if m:
            return m.group(1)
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def write_failure(e: BaseException, fallback: str | None = None) -> str | None:
    """One phrase for a failed write ("no space left on device while writing X"), or None when
    ``e`` is not one (neither a full disk nor an OSError)."""
    where = written_path(e) or fallback
    at = f" while writing {where}" if where else ""
    if no_space(e):
        return f"no space left on device{at}"
    if isinstance(e, OSError):
        return f"{e.strerror or one_line(e)}{at}"
    return None
