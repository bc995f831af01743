"""The sweep's grid: one discrete config and the seeds and continuous values swept around it.

A *member* is one training run: a seed and one value of each continuous hyper-parameter
(``init_std``, ``lr``, ``beta``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from vgjax.config import Config, ConfigError
from vgjax.methods import get_config
from vgjax.sweep.settings import DISCRETE

AXES = ("init_std", "lr", "beta")  # continuous hyper-parameters, one value per member
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")  # recorded per member and epoch
STD_SCALED_INITS = ("random_normal", "truncated_normal")  # initializers of the form f(key) * std
BETA_ACTIVATIONS = ("sigmoid_beta", "sigmoid_modgrad")

Members = dict[str, np.ndarray]  # "seed", "setting" and every axis: arrays of shape (M,)


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
    # explicit settings instead of the product of the axes: (method, init std, lr, beta) each, the
    # methods of one program (:mod:`vgjax.sweep.groups`); a setting's method labels its results
    points: tuple[tuple[str, float, float, float], ...] = ()

    def values(self, axis: str) -> tuple[float, ...]:
        if self.points:
            return tuple(dict.fromkeys(float(p[1 + AXES.index(axis)]) for p in self.points))
        return tuple(getattr(self, axis)) or (float(getattr(self.config, axis)),)

    def settings(self) -> list[dict]:
        if self.points:
            return [{"method": m, **dict(zip(AXES, map(float, v)))} for m, *v in self.points]
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
    if spec.points and (spec.init_std or spec.lr or spec.beta):
        raise ConfigError("a sweep has either explicit settings (points) or axes, not both")
    if c.stages is not None and any(len(set(spec.values(a))) > 1 or set(spec.values(a)) != {getattr(c, a)}
                                    for a in AXES):
        raise ConfigError("a staged sweep (--stages / method freeze) varies the seeds only, "
                          "not init std, learning rate or beta")
    if c.init_from is not None:
        raise ConfigError("--init-from cannot be combined with a sweep")
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds) or min(spec.seeds) < 0:
        raise ConfigError("seeds must be distinct non-negative integers")
    if c.init not in STD_SCALED_INITS and set(spec.values("init_std")) != {c.init_std}:
        raise ConfigError(f"init std has no effect on initializer {c.init!r}; "
                          f"it applies to {', '.join(STD_SCALED_INITS)}")
    if c.activation not in BETA_ACTIVATIONS and len(set(spec.values("beta"))) > 1:
        raise ConfigError(f"beta has no effect on activation {c.activation!r}; "
                          f"it applies to {', '.join(BETA_ACTIVATIONS)}")
    for axis, positive in (("init_std", True), ("lr", True), ("beta", False)):
        for v in spec.values(axis):
            if not math.isfinite(v) or (positive and v <= 0):
                raise ConfigError(f"{axis} values must be finite{' and > 0' if positive else ''}, got {v}")


def build_specs(methods: list[str], discrete: dict[str, list | None], *, init_std=None, lr=None, beta=None,
                seeds: int = 1, epochs: int | None = None, train_limit: int | None = None,
                fixed: dict | None = None) -> list[SweepSpec]:
    """One validated SweepSpec per combination of method and discrete values (``discrete``: a list,
    or None for the method's own, per name of :data:`vgjax.sweep.settings.DISCRETE`), the
    continuous axes and seeds ``0 .. seeds-1`` around each; ``fixed``: further Config fields, one
    value for the whole sweep. A bad value raises ConfigError."""
    specs = []
    lists = [discrete.get(k) or [None] for k in DISCRETE]
    for method, *values in itertools.product(methods, *lists):
        config = get_config(method, epochs=epochs, train_limit=train_limit, diagnostics=False, **(fixed or {}),
                            **dict(zip(DISCRETE, values)))
        spec = SweepSpec(config, tuple(init_std or ()), tuple(lr or ()), tuple(beta or ()), tuple(range(seeds)))
        validate_spec(spec)
        specs.append(spec)
    return specs


def take(members: Members, start: int, stop: int) -> Members:
    """Members ``start:stop``."""
    return {k: v[start:stop] for k, v in members.items()}
