"""Small custom layers and the activation registry.

Activations are plain functions ``f(z, beta) -> array``; ``beta`` is only used by the two
remedies of docs/study.md §4.8 (``sigmoid_beta`` and ``sigmoid_modgrad``) and is an ordinary (traceable)
argument so sweeps can vmap over it.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgjax.config import check_name

Activation = Callable[[jax.Array, jax.Array | float], jax.Array]


def sigmoid_beta(z: jax.Array, beta: jax.Array | float = 0.05) -> jax.Array:
    """Modified sigmoid g(z) = sigmoid(z) + beta * z: unbounded, g'(z) >= beta everywhere."""
    return jax.nn.sigmoid(z) + beta * z


@jax.custom_vjp
def sigmoid_modgrad(z: jax.Array, beta: jax.Array | float = 0.05) -> jax.Array:
    """Plain sigmoid forward; backward uses sigma'(z) + beta ("modified derivative" backprop)."""
    return jax.nn.sigmoid(z)


def _modgrad_fwd(z, beta):
    s = jax.nn.sigmoid(z)
    return s, (s, beta)


def _modgrad_bwd(res, g):
    s, beta = res
    # beta is a hyper-parameter, not a trained quantity: it receives no gradient.
    return g * (s * (1.0 - s) + beta), jnp.zeros_like(beta)


sigmoid_modgrad.defvjp(_modgrad_fwd, _modgrad_bwd)


def _plain(fn: Callable[[jax.Array], jax.Array]) -> Activation:
    return lambda z, beta=0.0: fn(z)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": _plain(jax.nn.sigmoid),
    "tanh": _plain(jnp.tanh),
    "relu": _plain(jax.nn.relu),
    "leaky_relu": _plain(jax.nn.leaky_relu),  # negative slope 0.01
    "elu": _plain(jax.nn.elu),
    "selu": _plain(jax.nn.selu),
    "gelu": _plain(jax.nn.gelu),
    "swish": _plain(jax.nn.swish),
    "linear": _plain(lambda z: z),
    "sigmoid_beta": sigmoid_beta,
    "sigmoid_modgrad": sigmoid_modgrad,
}


def get_activation(name: str) -> Activation:
    check_name("activation", name)
    return ACTIVATIONS[name]


def _masked_moments(x: jax.Array, axes: tuple[int, ...], mask: jax.Array | None):
    """Mean and variance of ``x`` over ``axes``, counting only rows where ``mask`` is true."""
    if mask is None:
        return jnp.mean(x, axis=axes), jnp.var(x, axis=axes)
    w = jnp.broadcast_to(mask[:, None].astype(x.dtype), x.shape)
    count = jnp.maximum(jnp.sum(w, axis=axes), 1.0)
    mean = jnp.sum(w * x, axis=axes) / count
    var = jnp.sum(w * (x - mean) ** 2, axis=axes) / count
    return mean, var


class Standardize(nn.Module):
    """(x - mean) / std with no learned parameters (docs/study.md §4.4b).

    ``per_feature=False`` uses the mean and std of the whole batch tensor, as the original study;
    ``per_feature=True`` standardises every feature over the batch. ``eps`` is added to the
    variance so a constant input maps to 0 instead of dividing by zero. ``mask`` marks the valid
    rows of a padded batch.
    """

    per_feature: bool = False
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        axes = (0,) if self.per_feature else (0, 1)
        mean, var = _masked_moments(x, axes, mask)
        return (x - mean) * jax.lax.rsqrt(var + self.eps)
