"""Optimizer registry over optax, and layer freezing through ``optax.partition``.

The study's optimizers follow Keras' formulas (docs/study.md, "Framework semantics"):

- ``adam`` is Keras' Adam: epsilon is added to the square root of the *uncorrected* second
  moment and both bias corrections are folded into the step size,
  ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``. Optax's form (epsilon added
  after the correction, as in PyTorch) is ``adam_optax``. With gradients near epsilon, as in a
  vanishing network, the two differ: Keras' effective epsilon is ``eps / sqrt(1 - b2^t)``, about
  30x larger at step 1 (measured in docs/results.md, "Parity with Keras").
- ``rmsprop`` is Keras' RMSprop: ``w -= lr * g / sqrt(v + eps)`` (epsilon inside the root).

PyTorch's optimizers (``torch_sgd``, ``torch_momentum``, ``torch_rmsprop``, ``torch_adam``) and
ADOPT's reference form (``adopt_ref``) are in :mod:`vgjax.optim.torch_forms`; ``adopt`` is optax's
``contrib.adopt`` with Config's b2 and eps (at least 1e-6), the form of the earlier §5 runs.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from vgjax.optim import scratch, torch_forms as torch_optim
from vgjax.config import NAMES, Config, ConfigError, check_name, register_name

# name -> (config, learning_rate) -> GradientTransformation. learning_rate may be a traced
# scalar (sweeps pass it through optax.inject_hyperparams).
Factory = Callable[[Config, "float | jax.Array"], optax.GradientTransformation]

class KerasAdamState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def keras_adam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7) -> optax.GradientTransformation:
    """Keras' Adam, operation for operation (``keras.optimizers.Adam.update_step``, float32)."""

    def init(params):
        # two separate trees: the jitted epoch donates the state, and one buffer cannot be donated twice
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
        return KerasAdamState(jnp.zeros((), jnp.int32), zeros(), zeros())

    def update(grads, state, params=None):
        del params
        count = state.count + 1
        dtype = jax.tree_util.tree_leaves(grads)[0].dtype  # Keras computes in the variables' dtype
        t = count.astype(dtype)
        alpha = learning_rate * jnp.sqrt(1 - jnp.power(jnp.asarray(b2, dtype), t)) / (1 - jnp.power(jnp.asarray(b1, dtype), t))
        mu = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - b1), state.mu, grads)
        nu = jax.tree_util.tree_map(lambda v, g: v + (jnp.square(g) - v) * (1 - b2), state.nu, grads)
        updates = jax.tree_util.tree_map(lambda m, v: -((m * alpha) / (jnp.sqrt(v) + eps)), mu, nu)
        return updates, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


_FACTORIES: dict[str, Factory] = {
    "sgd": lambda c, lr: optax.sgd(lr),
    "momentum": lambda c, lr: optax.sgd(lr, momentum=c.momentum),
    "nesterov": lambda c, lr: optax.sgd(lr, momentum=c.momentum, nesterov=True),
    "rmsprop": lambda c, lr: optax.rmsprop(lr, decay=c.rho, eps=c.eps, eps_in_sqrt=True),
    "adam": lambda c, lr: keras_adam(lr, b1=c.b1, b2=c.b2, eps=c.eps),
    "adam_optax": lambda c, lr: optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps),
    "adamw": lambda c, lr: optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay),
    "adopt": lambda c, lr: optax.contrib.adopt(lr, b1=c.b1, b2=c.b2, eps=max(c.eps, 1e-6)),
    "adagrad": lambda c, lr: optax.adagrad(lr, eps=c.eps),
}


# the from-scratch optimizers of docs/study.md §5 (``scratch_gd`` …) from :mod:`vgjax.optim.scratch`
for _name, _make in scratch.OPTIMIZERS.items():
    _FACTORIES[_name] = lambda c, lr, make=_make: make(learning_rate=lr)


# PyTorch's forms (docs/study.md §5's network, the optimizers_* methods) from :mod:`vgjax.optim.torch_forms`
_FACTORIES.update({
    "torch_sgd": lambda c, lr: torch_optim.torch_sgd(lr),
    "torch_momentum": lambda c, lr: torch_optim.torch_momentum(lr, momentum=c.momentum),
    "torch_rmsprop": lambda c, lr: torch_optim.torch_rmsprop(lr, alpha=c.rho, eps=c.eps),
    "torch_adam": lambda c, lr: torch_optim.torch_adam(lr, b1=c.b1, b2=c.b2, eps=c.eps),
    "adopt_ref": lambda c, lr: torch_optim.adopt_ref(lr, b1=c.b1, b2=c.b2, eps=c.eps),
})


def optimizer_names() -> tuple[str, ...]:
    return tuple(NAMES["optimizer"])


def register_optimizer(name: str, factory: Factory) -> None:
    """Make a user-defined optimizer selectable by name (``--optimizer NAME``)."""
    _FACTORIES[name] = factory
    register_name("optimizer", name)


def make_base_optimizer(config: Config, learning_rate=None) -> optax.GradientTransformation:
    check_name("optimizer", config.optimizer)
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
