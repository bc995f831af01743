"""The compiled program of a sweep: the pure per-member functions of one discrete config, vmapped
over members and jitted once (docs/design.md, "Sweeps").

Members differ only in arrays: the init std multiplies the std-1 kernels, the learning rate lives
in the optimizer state (``optax.inject_hyperparams``), beta in ``TrainState.hparams["beta"]``.
Seed ``k`` uses the keys of :mod:`vgjax.train.keys`, so a member is the single run of its seed.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vgjax.train import keys
from vgjax.config import OUTPUT_INIT_HIDDEN, Config
from vgjax.nn.models import build_model, init_variables
from vgjax.optim.registry import make_base_optimizer
from vgjax.sweep.grid import AXES, STD_SCALED_INITS, Members
from vgjax.train.engine import DeviceData, Engine, TrainState, make_engine
from vgjax.train.stage_start import start_state

MEMBER_AXIS = "members"


def sweep_optimizer(config: Config, learning_rate: float | jax.Array) -> optax.GradientTransformation:
    """The configured optimizer with its learning rate held in the optimizer state.

    ``inject_hyperparams`` stores numeric hyper-parameters in the state at ``init`` and its
    ``update`` reads them from there, so one static transformation serves every member.
    """
    factory = functools.partial(make_base_optimizer, config)
    return optax.inject_hyperparams(factory)(learning_rate=learning_rate)


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
        state = start_state(self.engine.model, tx, hp["seed"], variables)  # a plain sweep: one stage, nothing carried
        return state.replace(hparams={**state.hparams, "beta": jnp.asarray(hp["beta"], jnp.float32)})

    def init_member(self, hp: dict[str, jax.Array]) -> TrainState:
        """One member's initial state (the pure composition of the two steps above)."""
        return self.member_state(self.unit_variables(hp["seed"]), hp)

    def epoch_member(self, state: TrainState, x: jax.Array, y: jax.Array, x_val: jax.Array,
                     y_val: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        """One epoch of ``Engine.epoch`` and the validation ``Engine.evaluate`` after it."""
        state, train = self.engine.epoch(state, x, y)
        val = self.engine.evaluate(state, x_val, y_val)
        # the ratios' sums too: the host divides them (vgjax.train.engine.exact_ratios)
        sums = {f"{p}{k}": d[k] for p, d in (("", train), ("val_", val))
                for k in ("correct", "count", "loss_total", "loss_weight")}
        return state, {"loss": train["loss"], "accuracy": train["accuracy"], "val_loss": val["loss"],
                       "val_accuracy": val["accuracy"], **sums}

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
