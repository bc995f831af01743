"""Files written whole or not at all, and read back with a clear error: the lowest layer of every
command's writes (run directories, sweeps, reports, the ownership manifest of :mod:`vgjax.owned`).

An atomic write goes to a temporary file beside its target, is flushed and synced, then renamed
into place, so a reader sees the old file or the new one and never half of one; a failed write
(a full disk) leaves the old file and names the target in its ``OSError``. JSON is strict (no NaN:
non-finite floats become null). :func:`signals_deferred` holds SIGINT/SIGTERM back while a group of
files is written that must change together."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # e.g. ENOSPC from write: name the file
            e.filename = str(path)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(strict(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file; a damaged one raises json.JSONDecodeError whose message names the file."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        err = json.JSONDecodeError(f"{path} is not UTF-8 text", "", 0)
        err.args = (f"{path} is not UTF-8 text ({e.reason} at byte {e.start})",)
        raise err from None
    except json.JSONDecodeError as e:
        raise json.JSONDecodeError(f"{path} is not valid JSON ({e.msg})", e.doc, e.pos) from None


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT / SIGTERM back for the duration of the block, then deliver the first one."""
    sigs = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None]
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in sigs}
    if any(h is None for h in old.values()):  # a handler installed outside Python: leave it
        yield
        return
    pending: list[int] = []
    for s in sigs:
        signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if pending:
            signal.raise_signal(pending[0])
