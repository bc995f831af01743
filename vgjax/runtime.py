"""CPU threading for small matrices, and facts about the running device.

:func:`pin_cpu_threads` restricts a process to a few cores; it must run before the first JAX
computation, since XLA sizes its thread pool from the CPU affinity when the backend starts
(measurements: docs/design.md, "CPU threads"). It pins only when JAX will run on the CPU
(:func:`configured_platform`): on a GPU or TPU the host threads that feed the device keep every
core. The platform is decided from the configuration, without starting a backend, because the
backend's threads inherit the affinity they are created with: pinning first and undoing it once
the backend turns out to be an accelerator would leave those threads on one core.

Process facts degrade gracefully where the OS lacks them: no ``fcntl`` (Windows) means no
advisory core claims, no ``sched_getaffinity`` (macOS, Windows) means ``os.cpu_count()`` and no
pinning.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
import tempfile
from pathlib import Path

# JAX platform names (JAX_PLATFORMS, plugin names) -> the kind of device they run on
_PLATFORM_KINDS = {"cpu": "cpu", "cuda": "gpu", "rocm": "gpu", "gpu": "gpu", "tpu": "tpu", "metal": "gpu"}

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


def cpu_affinity() -> list[int] | None:
    """The cores this process may run on, or None where the OS does not say (macOS, Windows)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    cores = cpu_affinity()
    return len(cores) if cores is not None else (os.cpu_count() or 1)


def _kind(name: str) -> str:
    name = name.strip().lower()
    for key, kind in _PLATFORM_KINDS.items():
        if key in name:
            return kind
    return name


def installed_plugins() -> list[str]:
    """Names of the installed JAX device plugins (CUDA, ROCm, TPU), found without importing them."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="jax_plugins")}
    spec = importlib.util.find_spec("jax_plugins")
    if spec is not None and spec.submodule_search_locations:
        names |= {m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)}
    if importlib.util.find_spec("libtpu") is not None:
        names.add("tpu")
    return sorted(names)


def configured_platform() -> str:
    """'cpu', 'gpu' or 'tpu': where JAX will run, decided without starting a backend.

    A started backend answers exactly; otherwise the first entry of ``jax_platforms`` (the
    JAX_PLATFORMS variable or ``jax.config.update``), else the installed plugins (JAX prefers an
    accelerator plugin to the CPU). A plugin installed without its device makes JAX fall back to
    the CPU while this says 'gpu'/'tpu': set JAX_PLATFORMS=cpu there to get the pinning back.
    """
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            from jax._src import xla_bridge

            started = xla_bridge.backends_are_initialized()
        except (ImportError, AttributeError):  # a JAX without this (private) function
            started = False
        if started:
            return _kind(jax.default_backend())
        setting = jax.config.jax_platforms
    else:
        setting = os.environ.get("JAX_PLATFORMS")
    first = (setting or "").split(",")[0]
    if first.strip():
        return _kind(first)
    kinds = {_kind(n) for n in installed_plugins()}
    return "tpu" if "tpu" in kinds else "gpu" if "gpu" in kinds else "cpu"


def pin_cpu_threads(threads: int | None = 1, cores: list[int] | None = None,
                    platform: str | None = None) -> list[int] | None:
    """Restrict this process (and so XLA's CPU thread pool) to ``threads`` cores, on a CPU backend.

    ``threads=None`` or ``0`` leaves the affinity alone (XLA's default: every core), and so does a
    GPU or TPU ``platform`` (default: :func:`configured_platform`), whose host threads feed the
    device. Explicit ``cores`` are used as given; otherwise cores not claimed by another vgjax
    process are preferred. Returns the cores pinned to, or None when nothing was pinned.
    """
    if not threads or not hasattr(os, "sched_setaffinity") or cpu_affinity() is None:
        return None
    if (platform or configured_platform()) != "cpu":
        return None
    available = cpu_affinity()
    if cores is None:
        cores = _claim_free_cores(available, threads)
        if len(cores) < threads:  # everything claimed: share, spread by pid
            start = os.getpid() % len(available)
            cores = [available[(start + i) % len(available)] for i in range(threads)]
    os.sched_setaffinity(0, set(cores[:max(threads, 1)]))
    return sorted(cores)


def device_description(precision: str | None = None) -> dict:
    """The device a run trains on; with ``precision`` (Config.precision), its matmul precision too."""
    import jax  # here, not at the top: this module is imported before pin_cpu_threads runs

    d = jax.devices()[0]
    out = {"platform": d.platform, "device_kind": d.device_kind, "device_count": jax.device_count(),
           "jax_version": jax.__version__, "cpu_affinity": cpu_affinity()}
    if precision is not None:
        out["precision"] = precision
    return out


def device_text(device: dict | str | None) -> str:
    """A recorded ``device_description()`` in words, e.g. ``cpu (1 device, jax 0.10.2)``."""
    if not isinstance(device, dict):
        return str(device) if device else "?"
    n = device.get("device_count")
    count = f"{n} device{'s' if n != 1 else ''}, " if n else ""
    return f"{device.get('device_kind', '?')} ({count}jax {device.get('jax_version', '?')})"
