"""Methods as data: several methods × seeds trained as ONE vmapped program (docs/design.md,
"Methods as data").

A member of a multi-method program carries, besides its seed, init std, learning rate and beta
(:mod:`vgjax.sweep.program`), the discrete choices that separate the study's methods as small
integers: its activation, its normalisation, its optimizer, its depth and which skip paths it
has. The network is the *union* of the methods' networks (:class:`UnionMLP`): the largest depth,
a BatchNorm layer where any method has one, every skip path any method has. Per member:

- activation and optimizer: ``lax.switch`` on the member's index; under ``vmap`` (the index is
  batched) JAX turns it into a ``select_n`` over every branch, so every member computes every
  branch's activation and every optimizer's update, and keeps its own;
- normalisation: every normalisation computed (BatchNorm, the standardize layers, none) and the
  member's selected (``select_n``);
- depth: the union's depth for everyone; hidden layer ``i`` of a member of depth ``d < i`` is the
  identity (``where(i <= d, layer(h), h)``), its parameters zeros that get no gradient;
- skip paths: ``where(flag, h + skip, h)`` per path.

A selection returns the selected branch's value unchanged, and the unselected branches get a zero
cotangent, so a member trains exactly as its method's own program, the other branches costing
only their arithmetic. The optimizer state is the union of every optimizer's state (each keeps
its own; a member updates only its own, by the switch).

A member's initial state is its method's own (:meth:`SweepProgram.init` of the method's program,
per group of :mod:`vgjax.sweep.groups`), its parameters padded to the union's layers: so a
member's initial weights are its single run's bit for bit. The staged schedule (``freeze``) is a
sequence of programs with frozen layers and its own output layers (:mod:`vgjax.sweep.phases`)
and stays a program of its own, as do methods of another batch size (the optimizer exercise).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from vgjax.nn import layers
from vgjax.config import NORMS, Config, ConfigError
from vgjax.sweep.grid import AXES, Members
from vgjax.sweep.groups import group_methods
from vgjax.sweep.phases import Phase
from vgjax.sweep.program import MEMBER_AXIS, SweepProgram, sweep_optimizer
from vgjax.train.engine import Engine, TrainState

# what may differ between the methods of one multi-method program: the member arrays of a sweep
# (AXES), and the discrete choices a member carries as an index
CHOICES = ("activation", "norm", "optimizer", "depth", "skips")
MEMBER_KEYS = ("seed", *AXES, "group", *CHOICES)


class UnionOptState(NamedTuple):
    index: jax.Array  # the member's optimizer: an index into the union's optimizers
    states: tuple  # every optimizer's state, in the union's order


def union_optimizer(txs: Sequence[optax.GradientTransformation], index: jax.Array | int = 0
                    ) -> optax.GradientTransformation:
    """Every transformation of ``txs`` with its own state; ``update`` applies the one the state's
    ``index`` names (``lax.switch``: a select over all of them when vmapped over members)."""
    txs = tuple(txs)

    def init(params):
        return UnionOptState(jnp.asarray(index, jnp.int32), tuple(tx.init(params) for tx in txs))

    def branch(k):
        def run(grads, states, params):
            updates, state = txs[k].update(grads, states[k], params)
            return updates, states[:k] + (state,) + states[k + 1:]
        return run

    def update(grads, state, params=None):
        updates, states = jax.lax.switch(state.index, [branch(k) for k in range(len(txs))], grads, state.states,
                                         params)
        return updates, UnionOptState(state.index, states)

    return optax.GradientTransformation(init, update)


def _select(index: jax.Array, values: Sequence[jax.Array]) -> jax.Array:
    """``values[index]`` (one value: itself)."""
    return values[0] if len(values) == 1 else jax.lax.select_n(index, *values)


class UnionMLP(nn.Module):
    """The union of several MLPs of :class:`vgjax.nn.models.MLP` (same width, layer names and
    order), each member's choices given per call in ``choice`` (scalars; vmapped: per member)."""

    depth: int = 7
    width: int = 128
    activations: tuple[str, ...] = ("sigmoid",)
    norms: tuple[str, ...] = ("none",)
    skips: tuple[tuple[int, int], ...] = ()
    norm_eps: float = 1e-6
    bn_momentum: float = 0.99
    bn_eps: float = 1e-3
    num_classes: int = 10

    def _normalise(self, h, i, train, mask, index):
        out = []
        for norm in self.norms:
            if norm == "batchnorm":
                bn = nn.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_eps, name=f"norm_{i}")
                out.append(bn(h, use_running_average=not train, mask=None if mask is None else mask[:, None]))
            elif norm in ("standardize", "standardize_feature"):
                std = layers.Standardize(per_feature=norm == "standardize_feature", eps=self.norm_eps,
                                         name=f"{norm}_{i}")
                out.append(std(h, mask=mask))
            else:
                out.append(h)
        return _select(index, out)

    @nn.compact
    def __call__(self, x, train: bool = False, mask=None, choice: dict | None = None):
        choice = choice or {}
        zero = jnp.zeros((), jnp.int32)
        act_index, norm_index = choice.get("activation", zero), choice.get("norm", zero)
        depth, flags = choice.get("depth", jnp.int32(self.depth)), choice.get("skips", zero)
        beta = choice.get("beta", jnp.float32(0.05))
        acts = [layers.get_activation(a) for a in self.activations]
        branches = [lambda z, b, f=f: f(z, b) for f in acts]
        incoming: dict[int, list[tuple[int, int]]] = {}
        for p, (a, b) in enumerate(self.skips):
            incoming.setdefault(b, []).append((p, a))
        outputs: dict[int, jax.Array] = {}
        h = x
        for i in range(1, self.depth + 1):
            g = self._normalise(h, i, train, mask, norm_index)
            g = nn.Dense(self.width, name=f"hidden_{i}")(g)
            g = branches[0](g, beta) if len(branches) == 1 else jax.lax.switch(act_index, branches, g, beta)
            for p, a in incoming.get(i, ()):
                g = jnp.where((flags >> p) & 1 == 1, g + outputs[a], g)
            h = g if i == 1 else jnp.where(i <= depth, g, h)
            outputs[i] = h
        return nn.Dense(self.num_classes, name="output")(h)


@dataclasses.dataclass(frozen=True)
class UnionEngine(Engine):
    """:class:`vgjax.train.engine.Engine` of a :class:`UnionMLP`: the member's choices are read from
    ``TrainState.hparams`` (every other step of training and evaluation is the Engine's own)."""

    @property
    def uses_batch_stats(self) -> bool:
        return "batchnorm" in self.model.norms

    def _apply(self, params, batch_stats, hparams, x, *, train: bool, mask=None, dropout_key=None):
        variables = {"params": params}
        if self.uses_batch_stats:
            variables["batch_stats"] = batch_stats
        if train and self.uses_batch_stats:
            logits, updates = self.model.apply(variables, x, train=True, mask=mask, choice=hparams,
                                               mutable=["batch_stats"])
            return logits, updates["batch_stats"]
        return self.model.apply(variables, x, train=train, mask=mask, choice=hparams), batch_stats


# ----------------------------------------------------------------------------- the methods as data

@dataclasses.dataclass(frozen=True)
class MultiSpec:
    """Methods (name -> config) × seeds as one program. Members are method-major: member ``i`` is
    method ``i // len(seeds)`` with seed ``seeds[i % len(seeds)]``."""

    configs: tuple[tuple[str, Config], ...]
    seeds: tuple[int, ...] = (0,)

    @classmethod
    def of(cls, configs: dict[str, Config], seeds: Sequence[int]) -> "MultiSpec":
        return cls(tuple(configs.items()), tuple(seeds))

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.configs)

    @functools.cached_property
    def layout(self) -> "Layout":
        return union_layout(dict(self.configs))

    def members(self) -> Members:
        lay, n = self.layout, len(self.seeds)
        rows = [lay.choice(m) for m in self.methods]
        out: Members = {"setting": np.repeat(np.arange(len(rows)), n),
                        "seed": np.tile(np.asarray(self.seeds, np.int32), len(rows))}
        for key in ("group", *CHOICES):
            out[key] = np.repeat(np.asarray([r[key] for r in rows], np.int32), n)
        for a in AXES:
            out[a] = np.repeat(np.asarray([r[a] for r in rows], np.float32), n)
        return out


@dataclasses.dataclass(frozen=True)
class Layout:
    """The union network and optimizers of some methods, and every method's choices."""

    base: Config  # the shared config: the union's depth; what the choices do not cover
    groups: tuple[Config, ...]  # each group's config (:func:`vgjax.sweep.groups.group_methods`)
    activations: tuple[str, ...]
    norms: tuple[str, ...]
    optimizers: tuple[Config, ...]  # one config per distinct optimizer (its own hyper-parameters)
    skips: tuple[tuple[int, int], ...]
    choices: tuple  # (method, ((key, value), ...)): "group", CHOICES and AXES

    def choice(self, method: str) -> dict:
        return dict(dict(self.choices)[method])


# the fields in which the methods of one program may differ: the choices, the member arrays, the
# optimizers' own hyper-parameters, and what only the initial state depends on
FREE_FIELDS = ("method", "activation", "beta", "norm", "depth", "skips", "init", "init_std", "init_scale",
               "init_draw", "output_init", "bias_init", "optimizer", "lr", "momentum", "b1", "b2", "eps", "rho",
               "weight_decay")
OPTIMIZER_FIELDS = ("optimizer", "momentum", "b1", "b2", "eps", "rho", "weight_decay")


def _default(field: str) -> Any:
    return Config.__dataclass_fields__[field].default


def _discrete(config: Config) -> Config:
    """What must be the same for every method of one program: the config less its free fields."""
    return config.replace(**{f: _default(f) for f in FREE_FIELDS})


def union_layout(configs: dict[str, Config]) -> Layout:
    """The union of ``configs``; ConfigError when they differ in more than :data:`FREE_FIELDS`
    (batch size, width, regularisation …), or one is staged, has dropout, or a skip path beyond
    its depth."""
    for method, c in configs.items():
        if c.stages is not None:
            raise ConfigError(f"{method}: a staged method is a program of its own, not a member of a "
                              "multi-method one")
        if c.dropout:
            raise ConfigError(f"{method}: dropout is not a choice of a multi-method program")
        if any(b > c.depth for _, b in c.skips):
            raise ConfigError(f"{method}: a skip path beyond its depth")
    if len({c.evaluation_batch_size() for c in configs.values()}) > 1:
        # the standardize layers evaluate in batches of the fit batch size (as Keras does), the
        # others in 2000 rows: one program evaluates all its members in one batch size
        raise ConfigError("methods of one program must evaluate in one batch size (--eval-batch-size)")
    if len({_discrete(c) for c in configs.values()}) > 1:
        raise ConfigError("methods of one program may differ only in " + ", ".join(FREE_FIELDS[1:]))
    grouped = group_methods(configs)
    group_of = {m: i for i, g in enumerate(grouped) for m in g}
    activations = tuple(dict.fromkeys(c.activation for c in configs.values()))
    norms = tuple(n for n in NORMS if any(c.norm == n for c in configs.values()))
    opt_key = lambda c: tuple(getattr(c, f) for f in OPTIMIZER_FIELDS)  # noqa: E731
    optimizers = {}
    for c in configs.values():
        optimizers.setdefault(opt_key(c), c)
    keys = list(optimizers)
    skips = tuple(dict.fromkeys(p for c in configs.values() for p in c.skips))
    choices = tuple((method, {"group": group_of[method], "activation": activations.index(c.activation),
                              "norm": norms.index(c.norm), "optimizer": keys.index(opt_key(c)),
                              "depth": c.depth, "skips": sum(1 << skips.index(p) for p in c.skips),
                              **{a: float(getattr(c, a)) for a in AXES}})
                    for method, c in configs.items())
    base = next(iter(configs.values()))
    base = base.replace(depth=max(c.depth for c in configs.values()), method="+".join(configs))
    return Layout(base, tuple(configs[g[0]] for g in grouped), activations, norms, tuple(optimizers.values()),
                  skips, tuple((m, tuple(d.items())) for m, d in choices))


def _pad(tree: dict, like: dict) -> dict:
    """``tree`` with every layer of ``like`` it lacks, as zeros (unused by its member)."""
    return {name: tree[name] if name in tree else jax.tree_util.tree_map(jnp.zeros_like, sub)
            for name, sub in like.items()}


@dataclasses.dataclass(frozen=True)
class MultiProgram(SweepProgram):
    """The one program of a :class:`Layout`: :class:`SweepProgram`'s chunked, sharded epoch over
    members of every method. ``init`` starts every member as its method's own program does."""

    layout: Layout | None = None
    groups: tuple[SweepProgram, ...] = ()

    @classmethod
    def of(cls, spec: MultiSpec, devices: Sequence[jax.Device] | None = None) -> "MultiProgram":
        return _build_multi(spec.layout, tuple(jax.local_devices() if devices is None else devices))

    def _union_tx(self, lr, index) -> optax.GradientTransformation:
        return union_optimizer([sweep_optimizer(c, lr) for c in self.layout.optimizers], index)

    def _shapes(self) -> dict:
        return jax.eval_shape(lambda k: self.engine.model.init(k, jnp.zeros((1, 784), jnp.float32)),
                              jax.random.PRNGKey(0))

    def assemble(self, hp: dict, variables: tuple[dict, ...], run_keys: tuple[jax.Array, ...]) -> TrainState:
        """One member's union state from every group's variables for it (its own group's kept)."""
        like = self._shapes()
        pick = lambda *xs: _select(hp["group"], xs)  # noqa: E731
        params = jax.tree_util.tree_map(pick, *[_pad(v["params"], like["params"]) for v in variables])
        stats_like = like.get("batch_stats", {})
        stats = jax.tree_util.tree_map(pick, *[_pad(v.get("batch_stats", {}), stats_like) for v in variables])
        tx = self._union_tx(hp["lr"], hp["optimizer"])
        hparams = {"beta": jnp.asarray(hp["beta"], jnp.float32),
                   **{k: jnp.asarray(hp[k], jnp.int32) for k in ("activation", "norm", "depth", "skips")}}
        return TrainState(params=params, batch_stats=stats, opt_state=tx.init(params), key=pick(*run_keys),
                          epoch=jnp.zeros((), jnp.int32), hparams=hparams)

    def init_member(self, hp: dict) -> TrainState:
        """One member's initial state (memory estimates; choices not given are the first's)."""
        hp = {**{k: jnp.int32(0) for k in ("group", *CHOICES)}, "depth": jnp.int32(self.config.depth), **hp}
        states = [g.init_member(hp) for g in self.groups]
        return self.assemble(hp, tuple({"params": s.params, "batch_stats": s.batch_stats} for s in states),
                             tuple(s.key for s in states))

    @functools.cached_property
    def _assemble(self):
        return jax.jit(jax.vmap(self.assemble), out_shardings=self.member_sharding)

    def init(self, hp: dict) -> TrainState:
        """Every group's own initial states for all the chunk's members (exactly its program's
        ``init``), then each member's own group's, padded to the union."""
        states = [g.init(hp) for g in self.groups]
        return self._assemble(hp, tuple({"params": s.params, "batch_stats": s.batch_stats} for s in states),
                              tuple(s.key for s in states))

    def shard(self, hp: Members) -> dict[str, jax.Array]:
        return jax.device_put({k: hp[k] for k in MEMBER_KEYS}, self.member_sharding)


@functools.lru_cache(maxsize=8)
def _build_multi(layout: Layout, devices: tuple[jax.Device, ...]) -> MultiProgram:
    base = layout.base
    model = UnionMLP(depth=base.depth, width=base.width, activations=layout.activations, norms=layout.norms,
                     skips=layout.skips, norm_eps=base.norm_eps, bn_momentum=base.bn_momentum, bn_eps=base.bn_eps)
    tx = union_optimizer([sweep_optimizer(c, c.lr) for c in layout.optimizers])
    engine = UnionEngine(model=model, tx=tx, batch_size=base.batch_size, eval_batch_size=base.evaluation_batch_size(),
                         l1=base.l1, l2=base.l2, regularize_bias=base.regularize_bias, precision=base.precision,
                         unroll=base.unroll)
    groups = tuple(SweepProgram.build(c, devices) for c in layout.groups)
    return MultiProgram(base, engine, Mesh(np.asarray(devices), (MEMBER_AXIS,)), layout, groups)


def multi_phases(spec: MultiSpec, epochs: int, devices: Sequence[jax.Device] | None = None) -> tuple[Phase, ...]:
    """The one phase of ``spec``'s program, for :func:`vgjax.sweep.train_chunks`."""
    program = MultiProgram.of(spec, devices)
    return (Phase(program, epochs, lambda previous, hp: program.init(hp)),)


def run_multi(spec: MultiSpec, data: Any, epochs: int, chunk: int | None = None,
              devices: Sequence[jax.Device] | None = None, on_epoch=None) -> tuple[Members, dict[str, np.ndarray]]:
    """Train every member of ``spec`` for ``epochs`` as one program in chunks (default: the
    memory plan's size); returns the members and their history, metric -> (members, epochs)."""
    from vgjax.sweep.plan import chunk_plan
    from vgjax.sweep.workers import limit_train, train_chunks

    data = limit_train(data, spec.layout.base.train_limit)
    members = spec.members()
    phases = multi_phases(spec, epochs, jax.local_devices() if devices is None else devices)
    size, _ = chunk_plan(phases[0].program, len(members["seed"]), chunk, len(data.y_train))
    history, _ = train_chunks(phases, members, data, size, on_epoch)
    return members, history
