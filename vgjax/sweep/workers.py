"""Running a sweep: chunks of members trained by the compiled program in this process, or
contiguous groups of members trained by single-threaded worker processes (:mod:`vgjax.run.pool`),
the faster way on a CPU (docs/design.md, "Sweeps").
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue as queue_lib
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from vgjax.run import pool
from vgjax import runtime
from vgjax.data import Arrays
from vgjax.sweep import hosts
from vgjax.sweep.grid import METRICS, Members, SweepSpec, take, validate_spec
from vgjax.sweep.plan import chunk_plan, pad_members
from vgjax.sweep.phases import Phase, build_phases
from vgjax.train.engine import exact_ratios


@dataclasses.dataclass(frozen=True)
class EpochProgress:
    """One finished epoch of one chunk: members ``start:stop`` of the sweep."""

    start: int
    stop: int
    epoch: int  # 1-based
    epochs: int
    chunk: int  # 1-based, counted within its worker
    chunks: int
    worker: int  # 0 when the sweep runs in this process
    metrics: dict[str, np.ndarray]  # (stop - start,) each


@dataclasses.dataclass
class SweepResult:
    spec: SweepSpec
    members: Members
    history: dict[str, np.ndarray]  # metric -> (members, epochs)
    chunk_size: int  # members per chunk (per worker process when there are several)
    chunk_source: str
    n_devices: int
    workers: int  # 0: vmapped in this process; else single-threaded worker processes
    wall_time_s: float
    first_epoch_s: float  # the first chunk's init and first epoch, compilation included


ProgressFn = Callable[[EpochProgress], None]
ChunkFn = Callable[[int, int, dict], None]  # (first member, end member, history of those members)


def choose_workers(requested: int | None, threads: int) -> int:
    """Worker processes of a sweep: 0 (vmapped in this process) on accelerators; on a CPU
    ``requested``, else one worker of ``threads`` threads per usable core."""
    if runtime.configured_platform() != "cpu":  # decided without starting a backend
        return 0
    if requested is not None:
        return requested
    return max(1, runtime.usable_cores() // threads)


def train_chunks(phases: Sequence[Phase], members: Members, data: Any, size: int,
                 on_epoch: ProgressFn | None = None, offset: int = 0, worker: int = 0,
                 done: Mapping[tuple[int, int], dict] | None = None,
                 on_chunk: ChunkFn | None = None) -> tuple[dict[str, np.ndarray], float]:
    """Train ``members`` in chunks of ``size`` (each padded to full size, so one compiled
    program serves every chunk), every chunk through all ``phases``. A chunk whose member range
    (counted from ``offset``) is in ``done`` takes its history from there instead; ``on_chunk``
    gets every chunk trained here. Returns the history and the seconds to the first epoch's end."""
    n, epochs = len(members["seed"]), sum(p.epochs for p in phases)
    history = {m: np.full((n, epochs), np.nan, np.float32) for m in METRICS}
    arrays = phases[0].program.replicate(data)
    starts = list(range(0, n, size))
    t0, first = time.perf_counter(), 0.0
    for ci, start in enumerate(starts):
        stop = min(start + size, n)
        if done and (offset + start, offset + stop) in done:
            for k in METRICS:
                history[k][start:stop] = done[(offset + start, offset + stop)][k]
            continue
        hp = phases[0].program.shard(pad_members(take(members, start, stop), size))
        states, e0 = None, 0
        for phase in phases:
            states = phase.start(states, hp)
            for e in range(phase.epochs):
                states, metrics = phase.program.epoch(states, *arrays)
                metrics = {k: np.asarray(v)[:stop - start] for k, v in hosts.to_host(metrics).items()}
                metrics = exact_ratios(exact_ratios(metrics), "val_")  # divided here, exactly
                first = first or time.perf_counter() - t0
                for k in METRICS:
                    history[k][start:stop, e0 + e] = metrics[k]
                if on_epoch is not None:
                    on_epoch(EpochProgress(offset + start, offset + stop, e0 + e + 1, epochs, ci + 1, len(starts),
                                           worker, metrics))
            e0 += phase.epochs
        del states
        if on_chunk is not None:
            on_chunk(offset + start, offset + stop, {k: history[k][start:stop].copy() for k in METRICS})
    return history, first


def limit_train(data: Any, train_limit: int | None) -> Any:
    """``data`` with only its first ``train_limit`` training examples (the rule of
    :class:`vgjax.train.engine.DeviceData`); unchanged when None or when there are no more."""
    if train_limit is None or train_limit >= len(data.y_train):
        return data
    return Arrays(data.x_train[:train_limit], data.y_train[:train_limit], data.x_test, data.y_test)


def run_sweep(spec: SweepSpec, data: Any, epochs: int | None = None, *, chunk: int | None = None,
              devices: Sequence[jax.Device] | None = None, workers: int = 0, threads: int = 1,
              cores: Sequence[int] | None = None, on_epoch: ProgressFn | None = None,
              done: Mapping[tuple[int, int], dict] | None = None, on_chunk: ChunkFn | None = None) -> SweepResult:
    """Train every member of ``spec`` for ``epochs`` (default: the config's; a staged config
    trains its stage table); collect the metrics.

    ``data``: ``DeviceData`` or host arrays with the same four attributes, of which the first
    ``spec.config.train_limit`` training examples are used. ``chunk`` forces the members per
    chunk (else from the memory estimate). ``workers=0`` runs the chunks vmapped in this process,
    sharded over ``devices`` (default: ``jax.devices()``, which in a multi-process sweep are every
    process's devices: :mod:`vgjax.sweep.hosts`); ``workers=P`` splits the members into
    P contiguous groups trained by worker processes pinned to ``threads`` CPU cores each
    (``cores``: which ones, in turn; else free ones are claimed) -- the faster way on a CPU.
    ``done`` and ``on_chunk``: finished chunks by member range, and a function given every chunk
    trained now (how a sweep resumes; see :func:`train_chunks`).
    """
    validate_spec(spec)
    data = limit_train(data, spec.config.train_limit)
    members = spec.members()
    n = len(members["seed"])
    t0 = time.perf_counter()
    if workers:
        history, size, source, first = _run_workers(spec, members, Arrays.of(data), epochs, chunk,
                                                    min(workers, n), threads, cores, on_epoch, done, on_chunk)
        n_devices = 1
    else:
        phases = build_phases(spec.config, epochs, jax.devices() if devices is None else devices)
        program = phases[0].program
        size, source = chunk_plan(program, n, chunk, len(data.y_train))
        if jax.process_count() > 1:  # every process trains the writer's chunks
            size, source = hosts.from_writer([size, source])
        history, first = train_chunks(phases, members, data, size, on_epoch, done=done, on_chunk=on_chunk)
        n_devices = program.n_devices
    return SweepResult(spec, members, history, size, source, n_devices, min(workers, n),
                       time.perf_counter() - t0, first)


# ----------------------------------------------------------------------------- worker processes

class WorkerError(RuntimeError):
    """A sweep worker process failed (its traceback is the message)."""


def _worker_main(queue: Any, worker: int, spec: SweepSpec, members: Members, offset: int, data: Arrays,
                 epochs: int | None, chunk: int | None, threads: int, cores: list[int] | None,
                 done: Mapping[tuple[int, int], dict] | None) -> None:
    """Entry point of one worker process: pin to CPU cores, train its members, send every
    finished chunk and the history."""
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:  # a worker outlives no parent (kill -9 of it)
        pool.end_with_parent(parent.pid)
    try:
        runtime.pin_cpu_threads(threads, cores=cores)  # before this process' first JAX computation
        phases = build_phases(spec.config, epochs)
        size, source = chunk_plan(phases[0].program, len(members["seed"]), chunk, len(data.y_train))
        history, first = train_chunks(phases, members, data, size, lambda p: queue.put(("epoch", p)), offset,
                                      worker, done, lambda a, b, h: queue.put(("chunk", a, b, h)))
        queue.put(("done", worker, history, size, source, first))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        queue.put(("error", worker, traceback.format_exc()))


class _Worker:
    """One worker process as a :class:`vgjax.run.pool.Task`: it has ended once its result arrived."""

    def __init__(self, ctx: Any, index: int, args: tuple, done: dict[int, tuple]):
        self.index, self.done = index, done
        self.process = ctx.Process(target=_worker_main, args=args, daemon=True)

    def start(self) -> None:
        self.process.start()

    def poll(self) -> bool:
        return self.index in self.done

    @property
    def started(self) -> bool:
        return self.process.pid is not None  # an interrupt can come before every worker has started

    def terminate(self) -> None:
        if self.started and self.process.is_alive():
            self.process.terminate()

    def wait(self, timeout: float | None) -> bool:
        if not self.started:
            return True
        self.process.join(timeout)
        return self.process.exitcode is not None

    def kill(self) -> None:
        if self.started:
            self.process.kill()


def _read_messages(queue: Any, done: dict[int, tuple], exited: set[int], on_epoch: ProgressFn | None,
                   on_chunk: ChunkFn | None) -> Callable[[list], None]:
    """The pool's tick: wait up to a second for one message of a worker and act on it; a worker
    that ended without a result is given one more second for it to arrive, then WorkerError."""

    def tick(running: list[_Worker]) -> None:
        try:
            msg = queue.get(timeout=1.0)
        except queue_lib.Empty:
            dead = [w for w in running if w.process.exitcode is not None]
            lost = [w for w in dead if w.index in exited or w.process.exitcode != 0]
            if lost:
                raise WorkerError(f"sweep worker {lost[0].index} exited with status {lost[0].process.exitcode}")
            exited.update(w.index for w in dead)
            return
        if msg[0] == "epoch" and on_epoch is not None:
            on_epoch(msg[1])
        elif msg[0] == "chunk" and on_chunk is not None:
            on_chunk(*msg[1:])
        elif msg[0] == "done":
            done[msg[1]] = msg[2:]
        elif msg[0] == "error":
            raise WorkerError(f"sweep worker {msg[1]} failed:\n{msg[2]}")

    return tick


def _run_workers(spec: SweepSpec, members: Members, data: Arrays, epochs: int | None, chunk: int | None,
                 workers: int, threads: int, cores: Sequence[int] | None, on_epoch: ProgressFn | None,
                 done: Mapping[tuple[int, int], dict] | None,
                 on_chunk: ChunkFn | None) -> tuple[dict[str, np.ndarray], int, str, float]:
    """Train contiguous groups of members in ``workers`` spawned processes; merge their histories."""
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    queue = ctx.Queue()
    groups = np.array_split(np.arange(len(members["seed"])), workers)
    results: dict[int, tuple] = {}
    tasks = []
    for w, g in enumerate(groups):
        own = None if cores is None else [list(cores)[(w * threads + i) % len(cores)] for i in range(threads)]
        args = (queue, w, spec, take(members, g[0], g[-1] + 1), int(g[0]), data, epochs, chunk, threads, own,
                None if done is None else dict(done))
        tasks.append(_Worker(ctx, w, args, results))
    try:
        pool.run(tasks, len(tasks), _read_messages(queue, results, set(), on_epoch, on_chunk), grace=None)
    finally:
        pool.stop(tasks, grace=None)
    history = {m: np.concatenate([results[w][0][m] for w in range(workers)]) for m in METRICS}
    _, size, source, first = results[0]
    return history, size, source, first
