"""A run directory's lock: one live process writes a run at a time.

The lock is the file ``.vgjax-lock`` in the run directory, created exclusively (``O_CREAT |
O_EXCL``, atomic on local file systems) and holding its owner's host name, process id and
process start time. The owner removes it when it ends, also after SIGINT or SIGTERM. A lock whose
owner no longer runs (kill -9, a crash, a reboot) is *stale* and is taken over: on the same host
the owner's pid no longer exists, or belongs to a process started at another time (a reused pid).
A lock from another host is treated as live, since its process cannot be checked from here;
remove the file by hand once that run is known to be gone.

Only the standard library is used (no ``fcntl``), so this works on every platform; on Windows,
where a process cannot be probed portably, every lock is treated as live.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

LOCK_NAME = ".vgjax-lock"
_GRACE_S = 10.0  # an unreadable lock younger than this may be one being written right now


class LockedError(RuntimeError):
    """The run directory is held by another live process."""


def _start_time(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # os.kill would terminate it; cannot probe portably
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _record() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "token": uuid.uuid4().hex}


def read_lock(directory: str | Path) -> dict | None:
    """The lock's record; ``{}`` for a lock file that cannot be read; None when there is none."""
    path = Path(directory) / LOCK_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        rec = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return rec if isinstance(rec, dict) and isinstance(rec.get("pid"), int) else {}


def is_stale(directory: str | Path, rec: dict) -> bool:
    """Whether a lock record's owner is gone (see the module docstring)."""
    if not rec:  # unreadable: stale unless it may be a lock being written right now
        try:
            age = time.time() - (Path(directory) / LOCK_NAME).stat().st_mtime
        except OSError:
            return True
        return age > _GRACE_S
    if rec.get("host") != socket.gethostname():
        return False
    pid = rec["pid"]
    if not _pid_alive(pid):
        return True
    start = _start_time(pid)
    return bool(rec.get("start") and start and start != rec["start"])


def describe(rec: dict) -> str:
    if not rec:
        return "a process that is starting (unreadable lock)"
    return f"pid {rec.get('pid')} on {rec.get('host')}, since {rec.get('since')}"


def live_holder(directory: str | Path) -> str | None:
    """Who holds ``directory``'s lock, in words, or None if nobody alive does. Reads only."""
    rec = read_lock(directory)
    if rec is None or is_stale(directory, rec):
        return None
    if rec.get("host") == socket.gethostname() and rec.get("pid") == os.getpid():
        return None  # ourselves
    return describe(rec)


class RunLock:
    """``with RunLock(run_dir):`` holds the directory's lock (which must exist) or raises LockedError."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.record: dict | None = None
        self.took_over: dict | None = None  # the stale record replaced, if any

    def acquire(self) -> "RunLock":
        for _ in range(50):
            rec = _record()
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = read_lock(self.directory)
                if held is None:
                    continue  # released meanwhile
                if not is_stale(self.directory, held):
                    if not held:
                        time.sleep(0.1)  # being written right now: look again
                        continue
                    raise LockedError(describe(held))
                self._remove_stale(held)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(rec, f)
                f.flush()
                os.fsync(f.fileno())
            self.record = rec
            return self
        raise LockedError(describe(read_lock(self.directory) or {}))

    def _remove_stale(self, held: dict) -> None:
        """Move the stale lock aside (one process wins the rename), check it is the one judged."""
        aside = self.directory / f"{LOCK_NAME}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = read_lock_file(aside)
        if held and moved != held:  # another process' fresh lock: put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        else:
            self.took_over = held
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        if self.record is None:
            return
        if read_lock(self.directory) == self.record:
            self.path.unlink(missing_ok=True)
        self.record = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_lock_file(path: Path) -> dict:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return rec if isinstance(rec, dict) else {}
