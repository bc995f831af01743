"""A sweep over several cooperating processes: JAX's multi-controller runtime (docs/design.md,
"Sweeps", "Across hosts").

Every process runs the same program: :func:`join` calls ``jax.distributed.initialize`` (the CPU
collectives are gloo), the members are sharded over the global mesh (``jax.devices()``: every
process's devices), each process places the member and data shards of its own devices, and the
per-epoch metrics are gathered (:func:`to_host`) so that every process holds every member's
history. Process 0, the writer, alone touches the sweep directory; what the others must know of it
(the finished chunks of a resumed sweep) is shared with :func:`exchange`. Every function here that
communicates is a collective: all processes call it, in the same order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import threading
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from vgjax.sweep.grid import METRICS, Members
from vgjax.sweep.store import ChunkStore

CPU_COLLECTIVES = "gloo"  # jax_cpu_collectives_implementation: the cross-process CPU collectives


@dataclasses.dataclass(frozen=True)
class Cluster:
    """How this process joins the others; None leaves a value to JAX (``JAX_COORDINATOR_ADDRESS``,
    or its cluster detection: Cloud TPU, Slurm, Open MPI, Kubernetes)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    timeout_s: float = 300.0  # for every process to join


class JoinError(RuntimeError):
    """This process could not join the others (JAX's message, or the join timed out)."""


def join(cluster: Cluster, on_timeout: Callable[[], None]) -> None:
    """``jax.distributed.initialize`` before any JAX computation. JAX aborts the process (no
    Python exception) when the processes do not all join in time, so a watchdog calls
    ``on_timeout`` (which must end the process) ``cluster.timeout_s`` seconds on, before JAX would."""
    jax.config.update("jax_cpu_collectives_implementation", CPU_COLLECTIVES)
    watchdog = threading.Timer(cluster.timeout_s, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id,
                                   initialization_timeout=int(cluster.timeout_s) + 60)
    except (ValueError, TypeError, RuntimeError) as e:
        raise JoinError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
    finally:
        watchdog.cancel()


def is_writer() -> bool:
    """Process 0 writes the sweep's files; the only process of a single-process sweep does."""
    return jax.process_index() == 0


def to_host(tree: Any) -> dict:
    """Arrays sharded over the (global) mesh as numpy arrays on this host: a device_get of local
    arrays, a gather of the processes' shards (a collective) of global ones."""
    leaves = jax.tree_util.tree_leaves(tree)
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def exchange(text: str) -> list[str]:
    """Every process's ``text``, by process index (a collective; ``[text]`` in one process)."""
    if jax.process_count() == 1:
        return [text]
    payload = np.frombuffer(text.encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.asarray([payload.size], np.int32))
    padded = np.zeros(int(np.max(sizes)), np.uint8)
    padded[:payload.size] = payload
    rows = multihost_utils.process_allgather(padded)
    return [bytes(r[:int(n)]).decode() for r, n in zip(rows, np.ravel(sizes))]


def from_writer(value: Any) -> Any:
    """The writer's ``value`` (JSON-able) on every process (a collective)."""
    return json.loads(exchange(json.dumps(value) if is_writer() else "null")[0])


def first_problem(problem: str | None) -> tuple[int, str] | None:
    """(process, problem) of the first process that has one, the same on every process; None when
    none has (a collective). An empty problem counts: it was reported already."""
    texts = exchange(json.dumps(problem))
    for i, text in enumerate(texts):
        if json.loads(text) is not None:
            return i, json.loads(text)
    return None


def digest(value: Any) -> str:
    """A short digest of a JSON-able value (to compare settings across processes)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_digest(data: Any) -> str:
    """A digest of the four data arrays (every process must train on the same data)."""
    h = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_test, data.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode() + a.tobytes())
    return h.hexdigest()[:16]


def lost_contact(e: BaseException) -> bool:
    """Whether ``e`` is a failed collective of a multi-process sweep: a process has gone."""
    return isinstance(e, jax.errors.JaxRuntimeError) and jax.process_count() > 1


def leave_now(status: int) -> None:
    """End this process at once with ``status``: JAX's shutdown would wait for the lost process
    and then abort with a long log, so it is skipped."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class SharedStore:
    """A :class:`ChunkStore` of a multi-process sweep: the writer reads and writes the files, and
    tells the other processes which chunks are finished (they skip the same ones; their histories
    of those members are NaN, and they write nothing)."""

    def __init__(self, store: ChunkStore):
        self.store, self.writer = store, is_writer()

    def load(self, program: int, members: Members, epochs: int) -> tuple[dict, list[str]]:
        done, damaged = self.store.load(program, members, epochs) if self.writer else ({}, [])
        ranges = from_writer(sorted(done))
        if self.writer:
            return done, damaged
        return {(a, b): {m: np.full((b - a, epochs), np.nan, np.float32) for m in METRICS} for a, b in ranges}, []

    def save(self, *args) -> None:
        if self.writer:
            self.store.save(*args)

    def write_plan(self, plan: dict) -> None:
        if self.writer:
            self.store.write_plan(plan)

    def read_plan(self) -> dict:
        return from_writer(self.store.read_plan() if self.writer else None)

    def remove(self) -> None:
        if self.writer:
            self.store.remove()


class SilentProgress:
    """The progress display of a process that does not write: nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def start_group(self, label: str) -> None:
        pass

    def __call__(self, p) -> None:
        pass

    def close(self) -> None:
        pass
