"""The from-scratch optimizers of SPEC §5 as optax transformations (provisional)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class _Moments(NamedTuple):
    count: jax.Array
    v: optax.Params
    s: optax.Params


def _transform(update):
    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return _Moments(jnp.zeros([], jnp.int32), zeros, zeros)

    return optax.GradientTransformation(init, update)


def scratch_gd(learning_rate):
    def update(g, state, params=None):
        return jax.tree_util.tree_map(lambda d: -learning_rate * d, g), state
    return _transform(update)


def scratch_momentum(learning_rate, beta=0.5):
    def update(g, state, params=None):
        v = jax.tree_util.tree_map(lambda v, d: beta * v + (1 - beta) * d, state.v, g)
        return jax.tree_util.tree_map(lambda v: -learning_rate * v, v), state._replace(count=state.count + 1, v=v)
    return _transform(update)


def scratch_rmsprop(learning_rate, gamma=0.9, eps=1e-6):
    def update(g, state, params=None):
        s = jax.tree_util.tree_map(lambda s, d: gamma * s + (1 - gamma) * d * d, state.s, g)
        u = jax.tree_util.tree_map(lambda d, s: -learning_rate * d / jnp.sqrt(s + eps), g, s)
        return u, state._replace(count=state.count + 1, s=s)
    return _transform(update)


def scratch_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-6):
    def update(g, state, params=None):
        t = state.count + 1
        v = jax.tree_util.tree_map(lambda v, d: b1 * v + (1 - b1) * d, state.v, g)
        s = jax.tree_util.tree_map(lambda s, d: b2 * s + (1 - b2) * d * d, state.s, g)
        c1, c2 = 1 - b1 ** t.astype(jnp.float32), 1 - b2 ** t.astype(jnp.float32)
        u = jax.tree_util.tree_map(lambda v, s: -learning_rate * (v / c1) / (jnp.sqrt(s / c2) + eps), v, s)
        return u, _Moments(t, v, s)
    return _transform(update)


OPTIMIZERS = {"scratch_gd": scratch_gd, "scratch_momentum": scratch_momentum,
              "scratch_rmsprop": scratch_rmsprop, "scratch_adam": scratch_adam}
