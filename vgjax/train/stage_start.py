"""The start of a stage, for one member: the single run calls these functions, the sweeps vmap them,
so the two cannot drift (docs/design.md, "Train some layers").

:func:`stage_parts` builds what a stage shares across members (its model, its optimizer with the
frozen layers, its engine); :func:`fresh_variables` draws one member's new variables from its seed
(a staged run's hidden kernels from the seed's shared key, as the original's sub-models share one
initializer object); :func:`start_state` is pure and traceable: the fresh variables with the previous
stage's trained layers carried over, and the train state created from the stage's key.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import optax

from vgjax.config import Config
from vgjax.nn.models import build_model, init_variables
from vgjax.optim.registry import make_optimizer
from vgjax.train import keys
from vgjax.train.engine import Engine, TrainState, create_train_state, make_engine
from vgjax.train.stages import Stage, StageTable, carry_over


@dataclasses.dataclass(frozen=True)
class StageParts:
    """What every member of one stage shares."""

    stage: Stage
    config: Config  # the stage's: the run's config at the stage's depth
    engine: Engine
    key_stage: int | None  # the stage number folded into the keys (None: an unstaged run)
    keep_output: bool  # the previous stage's output layer carried over


def stage_parts(config: Config, table: StageTable, stage: Stage, diagnostics: Callable | None = None) -> StageParts:
    """The model, optimizer (the stage's frozen layers held) and engine of ``stage``."""
    stage_config = config.replace(depth=table.stage_depth(stage))
    model = build_model(stage_config)
    shapes = jax.eval_shape(lambda k: init_variables(model, k, k), jax.random.PRNGKey(0))
    params, stats = shapes["params"], shapes.get("batch_stats", {})
    frozen = table.frozen_layer_names(stage)
    tx = make_optimizer(config, params, frozen=[n for n in frozen if n in params])
    engine = make_engine(config, model, tx, diagnostics=diagnostics, frozen_stats=tuple(n for n in frozen if n in stats))
    staged = config.stages is not None
    return StageParts(stage, stage_config, engine, stage.index if staged else None,
                      config.stage_output == "keep" or not staged)


def fresh_variables(model, seed, key_stage: int | None) -> dict:
    """One member's freshly drawn variables of ``model`` (``seed``: an int or a traced int32)."""
    shared = keys.shared_init_key(seed) if key_stage is not None else None
    return dict(init_variables(model, keys.init_key(keys.stage_key(seed, key_stage)), shared))


def start_state(model, tx: optax.GradientTransformation, seed, fresh: dict, previous: dict | None = None, *,
                key_stage: int | None = None, keep_output: bool = True) -> TrainState:
    """One member's state at the start of a stage: ``fresh`` variables with every layer of ``previous``
    (``{"params": ..., "batch_stats": ...}`` or None) whose name and shape match carried over (the
    output layer only when ``keep_output``); its keys from ``seed`` and ``key_stage``."""
    params = carry_over(fresh["params"], previous["params"] if previous else None, keep_output)
    stats = carry_over(fresh.get("batch_stats", {}), previous["batch_stats"] if previous else None)
    return create_train_state(model, tx, keys.stage_key(seed, key_stage),
                              variables={"params": params, "batch_stats": stats})


def start_member(parts: StageParts, seed, fresh: dict, previous: dict | None = None) -> TrainState:
    """:func:`start_state` with a stage's parts: what the single run calls and a staged sweep vmaps."""
    return start_state(parts.engine.model, parts.engine.tx, seed, fresh, previous, key_stage=parts.key_stage,
                       keep_output=parts.keep_output)


def carried(state: TrainState | None) -> dict | None:
    """The variables of a state that the next stage carries over."""
    return None if state is None else {"params": state.params, "batch_stats": state.batch_stats}
