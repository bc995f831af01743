"""A member's training as phases: one compiled program per phase, the states carried from one
phase to the next. A plain sweep is one phase (init, then every epoch); a staged sweep ("train
some layers", :mod:`vgjax.train.stages`) is one phase per stage, each with its own model, optimizer
and vmapped epoch, started from the previous stage's trained weights by the single run's own
function, vmapped (:mod:`vgjax.train.stage_start`), so that seed ``k`` is ``experiments.run --seed k``
of the staged run (docs/design.md, "Sweeps").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from vgjax.train import stage_start
from vgjax.train import stages as stages_lib
from vgjax.config import OUTPUT_INIT_HIDDEN, Config, ConfigError
from vgjax.nn.models import build_model
from vgjax.sweep.grid import STD_SCALED_INITS
from vgjax.sweep.program import MEMBER_AXIS, SweepProgram, scale_kernels
from vgjax.train.engine import TrainState

# (the previous phase's states or None, the chunk's sharded member arrays) -> the phase's states
StartFn = Callable[[TrainState | None, dict], TrainState]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One compiled stretch of every member's training: ``start`` then ``epochs`` of ``program.epoch``."""

    program: SweepProgram
    epochs: int
    start: StartFn
    stage: int = 0  # 1-based stage number in a staged sweep; 0 in a plain one


def build_phases(config: Config, epochs: int | None = None,
                 devices: Sequence[jax.Device] | None = None) -> tuple[Phase, ...]:
    """The phases of ``config`` over ``devices`` (default: all local devices); ``epochs``
    overrides a plain config's (a staged one trains its table). Cached like the programs."""
    devices = tuple(jax.local_devices() if devices is None else devices)
    if config.stages is None:
        program = SweepProgram.build(config, devices)
        return (Phase(program, config.epochs if epochs is None else epochs, _plain_start(program)),)
    if epochs is not None and epochs != stages_lib.planned_epochs(config):
        raise ValueError(f"a staged sweep trains its table's {stages_lib.planned_epochs(config)} epochs, not {epochs}")
    return _staged_phases(config, devices)


def _plain_start(program: SweepProgram) -> StartFn:
    return lambda previous, hp: program.init(hp)


@functools.lru_cache(maxsize=16)
def _staged_phases(config: Config, devices: tuple[jax.Device, ...]) -> tuple[Phase, ...]:
    table = stages_lib.run_table(config)
    mesh = Mesh(np.asarray(devices), (MEMBER_AXIS,))
    return tuple(_stage_phase(config, table, stage, mesh) for stage in table.stages)


def _stage_phase(config: Config, table: stages_lib.StageTable, stage: stages_lib.Stage, mesh: Mesh) -> Phase:
    """One stage started per member by :mod:`vgjax.train.stage_start`, as the single run starts it."""
    parts = stage_start.stage_parts(config, table, stage)
    program = SweepProgram(parts.config, parts.engine, mesh)
    fresh_variables = _fresh_variables(parts.config, stage.index)
    init = jax.jit(jax.vmap(functools.partial(stage_start.start_member, parts)), out_shardings=program.member_sharding)

    def start(previous: TrainState | None, hp: dict) -> TrainState:
        return init(hp["seed"], fresh_variables(hp["seed"]), stage_start.carried(previous))

    return Phase(program, stage.epochs, start, stage.index)


def _fresh_variables(config: Config, stage: int) -> Callable[[jax.Array], dict]:
    """The stage model's freshly initialised variables per member, as two compiled programs when
    the kernels are ``f(key) * std`` (the std multiply fused into the sampler would round
    differently from the single run's; see :meth:`SweepProgram.init`)."""
    scaled = config.init in STD_SCALED_INITS
    unit = build_model(config.replace(init_std=1.0) if scaled else config)

    def draw(seed: jax.Array) -> dict:
        return stage_start.fresh_variables(unit, seed, stage)

    def scale(variables: dict) -> dict:
        output = config.output_init == OUTPUT_INIT_HIDDEN
        return {**variables, "params": scale_kernels(variables["params"], config.init_std, output)}

    draw_fn = jax.jit(jax.vmap(draw))
    scale_fn = jax.jit(jax.vmap(scale))
    return (lambda seed: scale_fn(draw_fn(seed))) if scaled else draw_fn


def common_epochs(configs: Sequence[Config]) -> int:
    """The epochs every program of a sweep trains (a staged one: its stage table's); ConfigError
    when they differ."""
    epochs = {c.method: stages_lib.planned_epochs(c) for c in configs}
    if len(set(epochs.values())) > 1:
        raise ConfigError("the sweep's programs must train the same number of epochs, got "
                          + ", ".join(f"{m}: {e}" for m, e in epochs.items()))
    return next(iter(epochs.values()))


def stage_columns(config: Config) -> np.ndarray:
    """Per global epoch of ``config``'s members: (stage, epoch within the stage), shape (epochs, 2)."""
    table = stages_lib.run_table(config)
    rows = [(s.index, e) for s in table.stages for e in range(1, s.epochs + 1)]
    return np.asarray(rows, np.int64)
