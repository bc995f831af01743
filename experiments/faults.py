"""Faults from outside a command, reported as one line: see :mod:`vgjax.faults`."""

from __future__ import annotations

import functools

from experiments.cli import fail
from vgjax.faults import write_failure


def one_line_write_errors(advice: str):
    """Decorate a command's main: an OSError that escapes it (a full disk, a read-only folder)
    becomes one line -- what failed, where, and ``advice`` -- and exit status 1."""
    def wrap(main):
        @functools.wraps(main)
        def checked(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except OSError as e:
                fail(f"{write_failure(e)}; {advice}", 1)
        return checked
    return wrap
