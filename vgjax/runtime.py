"""CPU threading for small matrices, and facts about the running device.

:func:`pin_cpu_threads` restricts a process to a few cores; it must run before the first JAX
computation, since XLA sizes its thread pool from the CPU affinity when the backend starts
(measurements: docs/design.md, "CPU threads").
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_held_locks: list = []  # keep lock files open for the life of the process


def _claim_free_cores(candidates: list[int], n: int) -> list[int]:
    """Cores not claimed by another vgjax process (advisory lock files, released on exit)."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform: take the first cores
        return candidates[:n]
    lock_dir = Path(tempfile.gettempdir()) / "vgjax-cpu-cores"
    try:
        lock_dir.mkdir(exist_ok=True)
    except OSError:
        return candidates[:n]
    claimed: list[int] = []
    for core in candidates:
        try:
            f = open(lock_dir / f"core-{core}.lock", "w")
        except OSError:  # e.g. another user's lock file
            continue
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _held_locks.append(f)
        claimed.append(core)
        if len(claimed) == n:
            break
    return claimed


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pin_cpu_threads(threads: int | None = 1, cores: list[int] | None = None) -> list[int] | None:
    """Restrict this process (and so XLA's CPU thread pool) to ``threads`` cores.

    ``threads=None`` or ``0`` leaves the affinity alone (XLA's default: every core). Explicit
    ``cores`` are used as given; otherwise cores not claimed by another vgjax process are
    preferred. Has no effect on accelerators other than sizing the host thread pool.
    """
    if not threads or not hasattr(os, "sched_setaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    if cores is None:
        cores = _claim_free_cores(available, threads)
        if len(cores) < threads:  # everything claimed: share, spread by pid
            start = os.getpid() % len(available)
            cores = [available[(start + i) % len(available)] for i in range(threads)]
    os.sched_setaffinity(0, set(cores[:max(threads, 1)]))
    return sorted(cores)


def device_description() -> dict:
    import jax  # here, not at the top: this module is imported before pin_cpu_threads runs

    d = jax.devices()[0]
    return {"platform": d.platform, "device_kind": d.device_kind, "device_count": jax.device_count(),
            "jax_version": jax.__version__,
            "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def device_text(device: dict | str | None) -> str:
    """A recorded ``device_description()`` in words, e.g. ``cpu (1 device, jax 0.10.2)``."""
    if not isinstance(device, dict):
        return str(device) if device else "?"
    n = device.get("device_count")
    count = f"{n} device{'s' if n != 1 else ''}, " if n else ""
    return f"{device.get('device_kind', '?')} ({count}jax {device.get('jax_version', '?')})"
