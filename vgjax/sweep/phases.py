"""A member's training as phases: one compiled program per phase, the states carried from one
phase to the next. A plain sweep is one phase (init, then every epoch); a staged sweep ("train
some layers", :mod:`vgjax.train.stages`) is one phase per stage, each with its own model, optimizer
and vmapped epoch, started from the previous stage's trained weights by the rules of
:func:`vgjax.run.runner.setup_stage`, so that seed ``k`` is ``experiments.run --seed k`` of the
staged run (docs/design.md, "Sweeps").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from vgjax.train import keys
from vgjax.train import stages as stages_lib
from vgjax.config import OUTPUT_INIT_HIDDEN, Config
from vgjax.nn.models import build_model, init_variables
from vgjax.optim.registry import make_optimizer
from vgjax.sweep.grid import STD_SCALED_INITS
from vgjax.sweep.program import MEMBER_AXIS, SweepProgram, scale_kernels
from vgjax.train.engine import TrainState, create_train_state, make_engine

# (the previous phase's states or None, the chunk's sharded member arrays) -> the phase's states
StartFn = Callable[[TrainState | None, dict], TrainState]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One compiled stretch of every member's training: ``start`` then ``epochs`` of ``program.epoch``."""

    program: SweepProgram
    epochs: int
    start: StartFn
    stage: int = 0  # 1-based stage number in a staged sweep; 0 in a plain one


def is_staged(config: Config) -> bool:
    return config.stages is not None


def planned_epochs(config: Config) -> int:
    """Epochs every member trains: the config's, or the stage table's total."""
    return stages_lib.planned_epochs(config)


def build_phases(config: Config, epochs: int | None = None,
                 devices: Sequence[jax.Device] | None = None) -> tuple[Phase, ...]:
    """The phases of ``config`` over ``devices`` (default: all local devices); ``epochs``
    overrides a plain config's (a staged one trains its table). Cached like the programs."""
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not is_staged(config):
        program = SweepProgram.build(config, devices)
        return (Phase(program, config.epochs if epochs is None else epochs, _plain_start(program)),)
    if epochs is not None and epochs != planned_epochs(config):
        raise ValueError(f"a staged sweep trains its table's {planned_epochs(config)} epochs, not {epochs}")
    return _staged_phases(config, devices)


def _plain_start(program: SweepProgram) -> StartFn:
    return lambda previous, hp: program.init(hp)


@functools.lru_cache(maxsize=16)
def _staged_phases(config: Config, devices: tuple[jax.Device, ...]) -> tuple[Phase, ...]:
    table = stages_lib.run_table(config)
    mesh = Mesh(np.asarray(devices), (MEMBER_AXIS,))
    return tuple(_stage_phase(config, table, stage, mesh) for stage in table.stages)


def _stage_phase(config: Config, table: stages_lib.StageTable, stage: stages_lib.Stage, mesh: Mesh) -> Phase:
    """One stage as :func:`vgjax.run.runner.setup_stage` builds it, its state made per member."""
    stage_config = config.replace(depth=table.stage_depth(stage))
    model = build_model(stage_config)
    shapes = jax.eval_shape(lambda k: init_variables(model, k, k), jax.random.PRNGKey(0))
    params, stats = shapes["params"], shapes.get("batch_stats", {})
    frozen = table.frozen_layer_names(stage)
    tx = make_optimizer(config, params, frozen=[n for n in frozen if n in params])
    engine = make_engine(config, model, tx, frozen_stats=tuple(n for n in frozen if n in stats))
    program = SweepProgram(stage_config, engine, mesh)
    fresh_variables = _fresh_variables(stage_config, stage.index)
    keep_output = config.stage_output == "keep"

    def member(seed: jax.Array, fresh: dict, previous: dict | None) -> TrainState:
        params = stages_lib.carry_over(fresh["params"], previous["params"] if previous else None, keep_output)
        stats = stages_lib.carry_over(fresh.get("batch_stats", {}), previous["batch_stats"] if previous else None)
        key = keys.stage_key(seed, stage.index)
        return create_train_state(model, tx, key, variables={"params": params, "batch_stats": stats})

    init = jax.jit(jax.vmap(member), out_shardings=program.member_sharding)

    def start(previous: TrainState | None, hp: dict) -> TrainState:
        carried = None if previous is None else {"params": previous.params, "batch_stats": previous.batch_stats}
        return init(hp["seed"], fresh_variables(hp["seed"]), carried)

    return Phase(program, stage.epochs, start, stage.index)


def _fresh_variables(config: Config, stage: int) -> Callable[[jax.Array], dict]:
    """The stage model's freshly initialised variables per member, as two compiled programs when
    the kernels are ``f(key) * std`` (the std multiply fused into the sampler would round
    differently from the single run's; see :meth:`SweepProgram.init`)."""
    scaled = config.init in STD_SCALED_INITS
    unit = build_model(config.replace(init_std=1.0) if scaled else config)

    def draw(seed: jax.Array) -> dict:
        key = keys.stage_key(seed, stage)
        return dict(init_variables(unit, keys.init_key(key), keys.shared_init_key(seed)))

    def scale(variables: dict) -> dict:
        output = config.output_init == OUTPUT_INIT_HIDDEN
        return {**variables, "params": scale_kernels(variables["params"], config.init_std, output)}

    draw_fn = jax.jit(jax.vmap(draw))
    scale_fn = jax.jit(jax.vmap(scale))
    return (lambda seed: scale_fn(draw_fn(seed))) if scaled else draw_fn


def stage_columns(config: Config) -> np.ndarray:
    """Per global epoch of ``config``'s members: (stage, epoch within the stage), shape (epochs, 2)."""
    table = stages_lib.run_table(config)
    rows = [(s.index, e) for s in table.stages for e in range(1, s.epochs + 1)]
    return np.asarray(rows, np.int64)
