"""Optimizer registry over optax, and layer freezing through ``optax.partition``.

Keras conventions are kept where the study relies on them: RMSProp and Adam use Keras' epsilon
(1e-7) outside the square root. (Keras' Adam adds epsilon to sqrt(v) before bias correction,
optax after; the two differ only by a rescaled epsilon, immaterial at 1e-7.)
"""

from __future__ import annotations

from typing import Callable, Iterable

import jax
import optax

from vgjax.config import Config, ConfigError

# name -> (config, learning_rate) -> GradientTransformation. learning_rate may be a traced
# scalar (sweeps pass it through optax.inject_hyperparams).
Factory = Callable[[Config, "float | jax.Array"], optax.GradientTransformation]

_FACTORIES: dict[str, Factory] = {
    "sgd": lambda c, lr: optax.sgd(lr),
    "momentum": lambda c, lr: optax.sgd(lr, momentum=c.momentum),
    "nesterov": lambda c, lr: optax.sgd(lr, momentum=c.momentum, nesterov=True),
    "rmsprop": lambda c, lr: optax.rmsprop(lr, decay=c.rho, eps=c.eps, eps_in_sqrt=False),
    "adam": lambda c, lr: optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps),
    "adamw": lambda c, lr: optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay),
    "adopt": lambda c, lr: optax.contrib.adopt(lr, b1=c.b1, b2=c.b2, eps=max(c.eps, 1e-6)),
    "adagrad": lambda c, lr: optax.adagrad(lr, eps=c.eps),
}


def _register_scratch() -> None:
    """The from-scratch optimizers of SPEC §5 (``scratch_gd`` …) from :mod:`vgjax.scratch`."""
    try:
        from vgjax import scratch
    except ImportError:  # pragma: no cover - scratch.py is part of the package
        return
    for name, make in scratch.OPTIMIZERS.items():
        _FACTORIES.setdefault(name, lambda c, lr, make=make: make(learning_rate=lr))


_register_scratch()


def optimizer_names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def register_optimizer(name: str, factory: Factory) -> None:
    _FACTORIES[name] = factory


def make_base_optimizer(config: Config, learning_rate=None) -> optax.GradientTransformation:
    if config.optimizer not in _FACTORIES:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}; choose from {', '.join(_FACTORIES)}")
    lr = config.lr if learning_rate is None else learning_rate
    return _FACTORIES[config.optimizer](config, lr)


def freeze_labels(params, frozen: Iterable[str]) -> dict:
    """Label tree for ``optax.partition``: every leaf under a frozen top-level layer is "frozen"."""
    frozen = set(frozen)
    unknown = frozen - set(params)
    if unknown:
        raise ConfigError(f"cannot freeze unknown layers: {', '.join(sorted(unknown))}")
    return {name: jax.tree_util.tree_map(lambda _: "frozen" if name in frozen else "train", sub)
            for name, sub in params.items()}


def make_optimizer(config: Config, params=None, frozen: Iterable[str] = (),
                   learning_rate=None) -> optax.GradientTransformation:
    """The configured optimizer; layers named in ``frozen`` get ``optax.set_to_zero()``.

    Regularisation lives in the loss, so its gradient reaches frozen layers too: the partition
    zeroes their whole update, which keeps them bit-for-bit unchanged.
    """
    tx = make_base_optimizer(config, learning_rate)
    frozen = tuple(frozen)
    if not frozen:
        return tx
    if params is None:
        raise ValueError("freezing needs the parameter tree to build the label tree")
    labels = freeze_labels(params, frozen)
    return optax.partition({"train": tx, "frozen": optax.set_to_zero()}, labels)
