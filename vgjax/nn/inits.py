"""Kernel initialisers by their Keras names, built on ``jax.nn.initializers``.

``make_initializer(name, std=..., scale=...)`` returns a JAX initializer ``f(key, shape, dtype)``.
A user-defined initializer is any such function: pass it to :class:`vgjax.nn.models.MLP` as
``kernel_init`` or register it with :func:`register_initializer` to make it selectable by name
(``--init NAME``).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from vgjax.config import NAMES, check_name, register_name

Initializer = Callable[..., jax.Array]


def _random_uniform(scale: float) -> Initializer:
    """Uniform(-scale, scale), Keras' RandomUniform(minval=-scale, maxval=scale)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-scale, maxval=scale)

    return init


# Each factory takes (std, scale); std is the normal's standard deviation, scale the
# multiplier / bound / constant where the initializer has one.
_FACTORIES: dict[str, Callable[[float, float], Initializer]] = {
    "random_normal": lambda std, scale: jinit.normal(stddev=std),
    "random_uniform": lambda std, scale: _random_uniform(scale),
    "truncated_normal": lambda std, scale: jinit.truncated_normal(stddev=std),
    "glorot_normal": lambda std, scale: jinit.variance_scaling(scale, "fan_avg", "truncated_normal"),
    "glorot_uniform": lambda std, scale: jinit.variance_scaling(scale, "fan_avg", "uniform"),
    "he_normal": lambda std, scale: jinit.variance_scaling(2.0 * scale, "fan_in", "truncated_normal"),
    "he_uniform": lambda std, scale: jinit.variance_scaling(2.0 * scale, "fan_in", "uniform"),
    "lecun_normal": lambda std, scale: jinit.variance_scaling(scale, "fan_in", "truncated_normal"),
    "lecun_uniform": lambda std, scale: jinit.variance_scaling(scale, "fan_in", "uniform"),
    "orthogonal": lambda std, scale: jinit.orthogonal(scale=scale),
    "zeros": lambda std, scale: jinit.zeros,
    "ones": lambda std, scale: jinit.ones,
    "constant": lambda std, scale: jinit.constant(scale),
}


def register_initializer(name: str, factory: Callable[[float, float], Initializer]) -> None:
    """Make a user-defined initializer selectable by name; ``factory(std, scale)`` -> initializer."""
    _FACTORIES[name] = factory
    register_name("initializer", name)


def initializer_names() -> tuple[str, ...]:
    return tuple(NAMES["initializer"])


def torch_bias(fan_in: int) -> Initializer:
    """PyTorch's ``nn.Linear`` default bias: Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return _random_uniform(1.0 / fan_in ** 0.5)


def shared_draw(init: Initializer, key: jax.Array) -> Initializer:
    """``init`` drawing from one fixed ``key`` whatever key it is given.

    This is what one unseeded Keras initializer object passed to several layers does: every
    call repeats the same draw, so equal shapes get equal kernels, and (JAX's counter-based
    generator, like TensorFlow's) a larger kernel starts with the same values row by row.
    """

    def draw(_key, shape, dtype=jnp.float32):
        return init(key, shape, dtype)

    return draw


def make_initializer(name: str, std: float = 0.05, scale: float = 1.0) -> Initializer:
    check_name("initializer", name)
    return _FACTORIES[name](std, scale)
