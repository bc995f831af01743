"""Sweeps: many seeds and hyper-parameters trained as one compiled, vmapped program.

A *member* is one training run: a seed and one value of each continuous hyper-parameter
(``init_std``, ``lr``, ``beta``). Members differ only in arrays, so the pure functions of
:class:`vgjax.train.Engine` are ``jax.vmap``-ped over them (:class:`SweepProgram`):

- init: the config's named initializer at std 1, then kernels times the member's std. jax's
  normal initializer computes ``normal(key) * stddev``, so this is bit-identical to a single run
  with that std -- provided the multiply is not fused into the sampler (XLA then rounds the
  product differently in the last bit), hence two compiled init programs. The learning rate
  lives in the optimizer state (``optax.inject_hyperparams``), beta in
  ``TrainState.hparams["beta"]``;
- one epoch: ``Engine.epoch`` then ``Engine.evaluate``, vmapped and jitted once. Python calls it
  once per epoch: one host sync per epoch feeds the progress display, the history and the
  divergence check, and dispatch costs nothing next to an epoch. Every chunk reuses the compiled
  program (chunks are padded to one size). A ``lax.scan`` over all epochs would compile the same
  body and only hide progress until the end.

Seed ``k`` of a sweep is the single run ``create_train_state(model, tx, PRNGKey(k))`` +
``Engine.epoch`` as :func:`vgjax.train.fit` runs it (``python -m experiments.run --seed k``).

Members are split into chunks that fit the device memory (an estimate of per-member state and
activations against ``device.memory_stats()``, or a conservative budget where a device reports
none); each chunk is sharded over all local devices along the member axis (a 1-D
``jax.sharding.Mesh``, the chunk padded to a multiple of the device count). On a CPU, vmap is
no faster per member than one run after another (measured: benchmarks/sweep_speed.py), so
``run_sweep(workers=P)`` splits the members over P single-threaded worker processes instead,
each running small vmapped chunks; on an accelerator everything is one vmapped program.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import multiprocessing
import queue as queue_lib
import time
import traceback
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vgjax import keys
from vgjax.config import OUTPUT_INIT_HIDDEN, Config, ConfigError
from vgjax.data import Arrays
from vgjax.models import INPUT_DIM, NUM_CLASSES, build_model, init_variables
from vgjax.optim import make_base_optimizer
from vgjax.train import DeviceData, Engine, TrainState, create_train_state, make_engine

AXES = ("init_std", "lr", "beta")  # continuous hyper-parameters, one value per member
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
STD_SCALED_INITS = ("random_normal", "truncated_normal")  # initializers of the form f(key) * std
BETA_ACTIVATIONS = ("sigmoid_beta", "sigmoid_modgrad")
MEMBER_AXIS = "members"
PLATEAU_ACCURACY = 0.2  # chance is 0.1: a member has left the plateau once val accuracy > 0.2
DEFAULT_BUDGET_BYTES = 1 << 30  # memory for one chunk where the device reports none (CPU)
MEMORY_FRACTION = 0.5  # share of a device's free memory one chunk may use
# On a CPU, vmapping more than a few members is slower per member than running them one after
# another (their parameters no longer stay in cache; see benchmarks/sweep_speed.py): cap chunks.
CPU_CHUNK = 4

Members = dict[str, np.ndarray]  # "seed", "setting" and every axis: arrays of shape (M,)


# ----------------------------------------------------------------------------- the grid

@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """One discrete configuration and the continuous values and seeds swept around it.

    An empty axis means the config's own value. Settings are the cartesian product of the axes
    (init std varying slowest); members are setting-major: member ``i`` is setting
    ``i // len(seeds)`` with seed ``seeds[i % len(seeds)]``.
    """

    config: Config
    init_std: tuple[float, ...] = ()
    lr: tuple[float, ...] = ()
    beta: tuple[float, ...] = ()
    seeds: tuple[int, ...] = (0,)

    def values(self, axis: str) -> tuple[float, ...]:
        return tuple(getattr(self, axis)) or (float(getattr(self.config, axis)),)

    def settings(self) -> list[dict[str, float]]:
        return [dict(zip(AXES, v)) for v in itertools.product(*(self.values(a) for a in AXES))]

    def members(self) -> Members:
        settings, n = self.settings(), len(self.seeds)
        setting = np.repeat(np.arange(len(settings)), n)
        out: Members = {"setting": setting, "seed": np.tile(np.asarray(self.seeds, np.int32), len(settings))}
        for a in AXES:
            out[a] = np.asarray([settings[s][a] for s in setting], np.float32)
        return out


def validate_spec(spec: SweepSpec) -> None:
    """Reject sweeps that cannot run as one vmapped program, or whose axis would do nothing."""
    c = spec.config
    if c.stages is not None:
        raise ConfigError("staged training (--stages / method freeze) cannot be swept; use experiments.run")
    if c.init_from is not None:
        raise ConfigError("--init-from cannot be combined with a sweep")
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds) or min(spec.seeds) < 0:
        raise ConfigError("seeds must be distinct non-negative integers")
    if spec.init_std and c.init not in STD_SCALED_INITS and set(spec.init_std) != {c.init_std}:
        raise ConfigError(f"init std has no effect on initializer {c.init!r}; "
                          f"it applies to {', '.join(STD_SCALED_INITS)}")
    if spec.beta and c.activation not in BETA_ACTIVATIONS and len(set(spec.beta)) > 1:
        raise ConfigError(f"beta has no effect on activation {c.activation!r}; "
                          f"it applies to {', '.join(BETA_ACTIVATIONS)}")
    for axis, positive in (("init_std", True), ("lr", True), ("beta", False)):
        for v in spec.values(axis):
            if not math.isfinite(v) or (positive and v <= 0):
                raise ConfigError(f"{axis} values must be finite{' and > 0' if positive else ''}, got {v}")


# ----------------------------------------------------------------------------- one member

def sweep_optimizer(config: Config, learning_rate: float | jax.Array) -> optax.GradientTransformation:
    """The configured optimizer with its learning rate held in the optimizer state.

    ``inject_hyperparams`` stores numeric hyper-parameters in the state at ``init`` and its
    ``update`` reads them from there, so one static transformation serves every member.
    """
    factory = functools.partial(_base_optimizer, config)
    return optax.inject_hyperparams(factory)(learning_rate=learning_rate)


def _base_optimizer(config: Config, learning_rate) -> optax.GradientTransformation:
    return make_base_optimizer(config, learning_rate=learning_rate)


def scale_kernels(params: dict, factor: jax.Array | float, output: bool = True) -> dict:
    """Multiply every Dense kernel by ``factor`` (biases and normalisation parameters unchanged);
    the output layer's only when ``output`` (it has its own initializer otherwise)."""
    return {name: {k: v * factor if k == "kernel" and (output or name != "output") else v
                   for k, v in layer.items()}
            for name, layer in params.items()}


@dataclasses.dataclass(frozen=True)
class SweepProgram:
    """The pure per-member functions of one discrete config and their vmapped, jitted forms."""

    config: Config
    engine: Engine
    mesh: Mesh

    @classmethod
    def build(cls, config: Config, devices: Sequence[jax.Device] | None = None) -> "SweepProgram":
        """The program of ``config`` over ``devices`` (default: all local devices).

        Programs are cached by (config, devices), so later sweeps of the same config reuse the
        compiled functions.
        """
        return _build_program(config, tuple(jax.local_devices() if devices is None else devices))

    @property
    def n_devices(self) -> int:
        return self.mesh.size

    def unit_variables(self, seed: jax.Array) -> dict:
        """The variables ``create_train_state(model, tx, PRNGKey(seed))`` initialises, at std 1."""
        return dict(init_variables(self.engine.model, keys.init_key(keys.seed_key(seed))))

    def member_state(self, variables: dict, hp: dict[str, jax.Array]) -> TrainState:
        """The member's state from its std-1 variables: kernels times std, lr and beta set."""
        if self.config.init in STD_SCALED_INITS:
            output = self.config.output_init == OUTPUT_INIT_HIDDEN
            variables = {**variables, "params": scale_kernels(variables["params"], hp["init_std"], output)}
        tx = sweep_optimizer(self.config, hp["lr"])
        state = create_train_state(self.engine.model, tx, keys.seed_key(hp["seed"]), variables)
        return state.replace(hparams={**state.hparams, "beta": jnp.asarray(hp["beta"], jnp.float32)})

    def init_member(self, hp: dict[str, jax.Array]) -> TrainState:
        """One member's initial state (the pure composition of the two steps above)."""
        return self.member_state(self.unit_variables(hp["seed"]), hp)

    def epoch_member(self, state: TrainState, x: jax.Array, y: jax.Array, x_val: jax.Array,
                     y_val: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        """One epoch of ``Engine.epoch`` and the validation ``Engine.evaluate`` after it."""
        state, train = self.engine.epoch(state, x, y)
        val = self.engine.evaluate(state, x_val, y_val)
        return state, {"loss": train["loss"], "accuracy": train["accuracy"],
                       "val_loss": val["loss"], "val_accuracy": val["accuracy"]}

    @property
    def member_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(MEMBER_AXIS))

    @functools.cached_property
    def _unit_variables(self) -> Callable:
        return jax.jit(jax.vmap(self.unit_variables), out_shardings=self.member_sharding)

    @functools.cached_property
    def _member_state(self) -> Callable:
        return jax.jit(jax.vmap(self.member_state), out_shardings=self.member_sharding)

    def init(self, hp: dict[str, jax.Array]) -> TrainState:
        """Initial states of sharded members, as two compiled programs: fused into the sampler,
        the std multiply rounds differently in the last bit; applied afterwards it gives the
        single run's kernels exactly (``normal(key) * std``, as jax's initializer computes)."""
        return self._member_state(self._unit_variables(hp["seed"]), hp)

    @functools.cached_property
    def epoch(self) -> Callable:
        fn = jax.vmap(self.epoch_member, in_axes=(0, None, None, None, None))
        return jax.jit(fn, donate_argnums=(0,), out_shardings=self.member_sharding)

    def shard(self, hp: Members) -> dict[str, jax.Array]:
        """Member arrays (the axes and seeds) placed along the mesh's member axis."""
        tree = {k: hp[k] for k in ("seed", *AXES)}
        return jax.device_put(tree, self.member_sharding)

    def replicate(self, data: DeviceData) -> tuple[jax.Array, ...]:
        arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
        return tuple(jax.device_put(arrays, NamedSharding(self.mesh, PartitionSpec())))


@functools.lru_cache(maxsize=32)
def _build_program(config: Config, devices: tuple[jax.Device, ...]) -> SweepProgram:
    unit = config.replace(init_std=1.0) if config.init in STD_SCALED_INITS else config
    engine = make_engine(config, build_model(unit), sweep_optimizer(config, config.lr))
    return SweepProgram(config, engine, Mesh(np.asarray(devices), (MEMBER_AXIS,)))


# ----------------------------------------------------------------------------- memory and chunks

def _tree_bytes(tree: Any) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


def member_bytes(program: SweepProgram, n_train: int = 60000) -> int:
    """A generous estimate of one member's device memory during an epoch.

    Train state four times (in, out, gradients, updates), the activations of one training
    minibatch forward and backward, the evaluation batch's activations, and the per-step
    metrics the scan keeps. (The data are shared by all members and not counted.)
    """
    c = program.config
    hp = {"seed": jnp.int32(0), **{a: jnp.float32(1.0) for a in AXES}}
    state = _tree_bytes(jax.eval_shape(program.init_member, hp))
    units = INPUT_DIM + c.depth * c.width + NUM_CLASSES
    train = 3 * 4 * c.batch_size * units
    evaluate = 2 * 4 * c.eval_batch_size * (units - INPUT_DIM)
    steps = math.ceil(n_train / c.batch_size)
    return 4 * state + train + evaluate + 4 * steps * (c.depth + 5)


def memory_budget(devices: Sequence[jax.Device]) -> tuple[int, str]:
    """Bytes one chunk may use over ``devices``, and where that number came from."""
    try:
        stats = devices[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics raise or return None
        stats = None
    if stats and "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        return int(MEMORY_FRACTION * free) * len(devices), "device memory_stats"
    return DEFAULT_BUDGET_BYTES, "default budget (device reports no memory statistics)"


def chunk_size(n_members: int, n_devices: int, limit: int, balance: bool = True) -> int:
    """Members per chunk, a multiple of the device count: at most ``limit`` (rounded up to a
    multiple), and with ``balance`` as even over the chunks as that number of chunks allows."""
    size = min(max(limit, 1), n_members)
    if balance:
        size = math.ceil(n_members / math.ceil(n_members / size))
    return math.ceil(size / n_devices) * n_devices


def auto_chunk_limit(program: SweepProgram, n_train: int = 60000) -> tuple[int, str]:
    """Members per chunk that fit the memory budget (on a CPU also at most ``CPU_CHUNK``)."""
    devices = list(program.mesh.devices.flat)
    budget, source = memory_budget(devices)
    per = member_bytes(program, n_train)
    limit = max(1, budget // per)
    why = f"{source}: {budget / 2**20:.0f} MiB / {per / 2**20:.1f} MiB per member"
    if devices[0].platform == "cpu" and limit > CPU_CHUNK * len(devices):
        limit, why = CPU_CHUNK * len(devices), f"CPU cap of {CPU_CHUNK} members per device ({why})"
    return limit, why


def pad_members(hp: Members, size: int) -> Members:
    """Repeat the last member until there are ``size`` (padding is computed, then dropped)."""
    n = len(hp["seed"])
    return {k: np.concatenate([v, np.repeat(v[-1:], size - n)]) for k, v in hp.items()}


# ----------------------------------------------------------------------------- running

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


def _take(members: Members, start: int, stop: int) -> Members:
    return {k: v[start:stop] for k, v in members.items()}


def train_chunks(program: SweepProgram, members: Members, data: Any, epochs: int, size: int,
                 on_epoch: ProgressFn | None = None, offset: int = 0,
                 worker: int = 0) -> tuple[dict[str, np.ndarray], float]:
    """Train ``members`` in chunks of ``size`` (each padded to full size, so one compiled
    program serves every chunk). Returns the history and the seconds to the first epoch's end."""
    n = len(members["seed"])
    history = {m: np.full((n, epochs), np.nan, np.float32) for m in METRICS}
    arrays = program.replicate(data)
    starts = list(range(0, n, size))
    t0, first = time.perf_counter(), 0.0
    for ci, start in enumerate(starts):
        stop = min(start + size, n)
        states = program.init(program.shard(pad_members(_take(members, start, stop), size)))
        for e in range(epochs):
            states, metrics = program.epoch(states, *arrays)
            metrics = {k: np.asarray(v)[:stop - start] for k, v in jax.device_get(metrics).items()}
            first = first or time.perf_counter() - t0
            for k in METRICS:
                history[k][start:stop, e] = metrics[k]
            if on_epoch is not None:
                on_epoch(EpochProgress(offset + start, offset + stop, e + 1, epochs, ci + 1, len(starts),
                                       worker, metrics))
        del states
    return history, first


def _chunk_plan(program: SweepProgram, n: int, chunk: int | None, n_train: int) -> tuple[int, str]:
    """A forced ``chunk`` is taken as given (rounded up to the device count); the automatic
    limit is balanced over the chunks it needs."""
    if chunk:
        return chunk_size(n, program.n_devices, chunk, balance=False), "forced (--chunk)"
    limit, source = auto_chunk_limit(program, n_train)
    return chunk_size(n, program.n_devices, limit), source


def run_sweep(spec: SweepSpec, data: Any, epochs: int | None = None, *, chunk: int | None = None,
              devices: Sequence[jax.Device] | None = None, workers: int = 0, threads: int = 1,
              cores: Sequence[int] | None = None, on_epoch: ProgressFn | None = None) -> SweepResult:
    """Train every member of ``spec`` for ``epochs`` (default: the config's); collect the metrics.

    ``data``: ``DeviceData`` or host arrays with the same four attributes. ``chunk`` forces the
    members per chunk (else from the memory estimate). ``workers=0`` runs the chunks vmapped in
    this process, sharded over ``devices`` (default: all local devices); ``workers=P`` splits
    the members into P contiguous groups trained by worker processes pinned to ``threads`` CPU
    cores each (``cores``: which ones, in turn; else free ones are claimed) -- the faster way on
    a CPU.
    """
    validate_spec(spec)
    epochs = spec.config.epochs if epochs is None else epochs
    members = spec.members()
    n = len(members["seed"])
    t0 = time.perf_counter()
    if workers:
        history, size, source, first = _run_workers(spec, members, Arrays.of(data), epochs, chunk,
                                                    min(workers, n), threads, cores, on_epoch)
        n_devices = 1
    else:
        program = SweepProgram.build(spec.config, devices)
        size, source = _chunk_plan(program, n, chunk, len(data.y_train))
        history, first = train_chunks(program, members, data, epochs, size, on_epoch)
        n_devices = program.n_devices
    return SweepResult(spec, members, history, size, source, n_devices, min(workers, n),
                       time.perf_counter() - t0, first)


# ----------------------------------------------------------------------------- worker processes

class WorkerError(RuntimeError):
    """A sweep worker process failed (its traceback is the message)."""


def _worker_main(queue: Any, worker: int, spec: SweepSpec, members: Members, offset: int, data: Arrays,
                 epochs: int, chunk: int | None, threads: int, cores: list[int] | None) -> None:
    """Entry point of one worker process: pin to CPU cores, train its members, send the history."""
    try:
        from vgjax import runtime

        runtime.pin_cpu_threads(threads, cores=cores)
        program = SweepProgram.build(spec.config)
        size, source = _chunk_plan(program, len(members["seed"]), chunk, len(data.y_train))
        history, first = train_chunks(program, members, data, epochs, size,
                                      lambda p: queue.put(("epoch", p)), offset, worker)
        queue.put(("done", worker, history, size, source, first))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        queue.put(("error", worker, traceback.format_exc()))


def _run_workers(spec: SweepSpec, members: Members, data: Arrays, epochs: int, chunk: int | None,
                 workers: int, threads: int, cores: Sequence[int] | None,
                 on_epoch: ProgressFn | None) -> tuple[dict[str, np.ndarray], int, str, float]:
    """Train contiguous groups of members in ``workers`` spawned processes; merge their histories."""
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    queue = ctx.Queue()
    groups = np.array_split(np.arange(len(members["seed"])), workers)
    procs = []
    for w, g in enumerate(groups):
        own = None if cores is None else [list(cores)[(w * threads + i) % len(cores)] for i in range(threads)]
        args = (queue, w, spec, _take(members, g[0], g[-1] + 1), int(g[0]), data, epochs, chunk, threads, own)
        procs.append(ctx.Process(target=_worker_main, args=args, daemon=True))
    for p in procs:
        p.start()
    done: dict[int, tuple] = {}
    exited: set[int] = set()  # ended without a result: given one more timeout for it to arrive
    try:
        while len(done) < workers:
            try:
                msg = queue.get(timeout=1.0)
            except queue_lib.Empty:
                dead = [w for w, p in enumerate(procs) if w not in done and p.exitcode is not None]
                lost = [w for w in dead if w in exited or procs[w].exitcode != 0]
                if lost:
                    raise WorkerError(f"sweep worker {lost[0]} exited with status {procs[lost[0]].exitcode}")
                exited.update(dead)
                continue
            if msg[0] == "epoch" and on_epoch is not None:
                on_epoch(msg[1])
            elif msg[0] == "done":
                done[msg[1]] = msg[2:]
            elif msg[0] == "error":
                raise WorkerError(f"sweep worker {msg[1]} failed:\n{msg[2]}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    history = {m: np.concatenate([done[w][0][m] for w in range(workers)]) for m in METRICS}
    _, size, source, first = done[0]
    return history, size, source, first


# ----------------------------------------------------------------------------- results

def first_epoch(mask: np.ndarray) -> np.ndarray:
    """1-based index of the first true entry along the last axis (epochs); 0 where there is none."""
    return np.where(mask.any(-1), mask.argmax(-1) + 1, 0)


def diverged_epochs(history: dict[str, np.ndarray]) -> np.ndarray:
    """Per member, the first epoch whose train or validation loss is NaN/Inf (0: never)."""
    return first_epoch(~np.isfinite(history["loss"]) | ~np.isfinite(history["val_loss"]))


def plateau_exit_epochs(history: dict[str, np.ndarray], threshold: float = PLATEAU_ACCURACY) -> np.ndarray:
    """Per member, the first epoch whose val accuracy exceeds ``threshold`` (0: never left)."""
    return first_epoch(history["val_accuracy"] > threshold)


def _num(x: Any) -> float | None:
    """A summary statistic as a float of 7 significant digits (float32 precision); None if NaN/Inf."""
    x = float(x)
    return float(f"{x:.7g}") if math.isfinite(x) else None


def describe(values: np.ndarray) -> dict[str, float | None]:
    """Mean, sample std (ddof 1; 0 for one value), min and max, ignoring NaN (None if all NaN)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": _num(v.mean()), "std": _num(v.std(ddof=1) if v.size > 1 else 0.0),
            "min": _num(v.min()), "max": _num(v.max())}


def summarize(settings: list[dict], members: Members, history: dict[str, np.ndarray],
              threshold: float = PLATEAU_ACCURACY) -> list[dict]:
    """Per setting: final and best val accuracy over seeds, the plateau exit, divergence."""
    left, diverged = plateau_exit_epochs(history, threshold), diverged_epochs(history)
    val = history["val_accuracy"]
    out = []
    for i, setting in enumerate(settings):
        rows = np.flatnonzero(members["setting"] == i)
        exits = left[rows][left[rows] > 0]
        bad = rows[diverged[rows] > 0]
        out.append({
            "setting": i, **setting, "seeds": int(rows.size),
            "final_val_accuracy": describe(val[rows, -1]),
            "best_val_accuracy": describe(np.nanmax(val[rows], axis=1)),
            "final_loss": describe(history["loss"][rows, -1]),
            "left_plateau": {"threshold": threshold, "fraction": float(exits.size / max(rows.size, 1)),
                             "epoch_mean": _num(exits.mean()) if exits.size else None,
                             "epoch_median": _num(np.median(exits)) if exits.size else None},
            "diverged": {"count": int(bad.size), "seeds": [int(s) for s in members["seed"][bad]],
                         "epochs": [int(e) for e in diverged[bad]]},
        })
    return out


def _f32(x: Any) -> float:
    """The shortest decimal that round-trips to the same float32 (0.1, not 0.10000000149)."""
    return float(str(np.float32(x)))


def metric_rows(settings: list[dict], members: Members, history: dict[str, np.ndarray]) -> list[dict]:
    """One row per (member, epoch): setting columns, seed, epoch, the four metrics."""
    rows = []
    epochs = history["loss"].shape[1]
    for i in range(len(members["seed"])):
        base = {"setting": int(members["setting"][i]), **settings[members["setting"][i]],
                "seed": int(members["seed"][i])}
        for e in range(epochs):
            rows.append({**base, "epoch": e + 1, **{m: _f32(history[m][i, e]) for m in METRICS}})
    return rows
