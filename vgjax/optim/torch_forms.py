"""PyTorch's optimizers as optax transformations, operation for operation (docs/study.md §5).

The optimizer exercise's network is a PyTorch one, trained with ``torch.optim``; these are the
forms its code runs (``torch.optim`` 2.x, the single-tensor CPU path, and ADOPT as its reference
implementation, github.com/iShohei220/adopt, package ``torch-adopt`` 0.1.0, defines it). t counts
steps from 1, every state starts at zero, ``lr`` is the learning rate:

=============  =============================================================================
torch_sgd      p ← p − lr·g                                         (``optim.SGD(lr)``)
torch_momentum b ← μ·b + g  (b₁ = g, dampening 0);  p ← p − lr·b      (``optim.SGD(lr, momentum=μ)``)
torch_rmsprop  v ← α·v + (1−α)·g²;  p ← p − lr·g / (sqrt(v) + ε)      (``optim.RMSprop``: α 0.99,
               ε 1e-8 outside the root, no centering, no momentum)
torch_adam     m ← m + (1−β1)(g − m);  v ← β2·v + (1−β2)·g²;            (``optim.Adam``: β 0.9 / 0.999,
               p ← p − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + ε)    ε 1e-8 after the correction)
adopt_ref      t = 1: v ← g², no step.  t > 1: n = clip(g / max(sqrt(v), ε), ±(t−1)^¼);
               m ← m + (1−β1)(n − m);  p ← p − lr·m;  v ← β2·v + (1−β2)·g²
               (``ADOPT``: β 0.9 / 0.9999, ε 1e-6, the clipped version of Nov 2024)
=============  =============================================================================

The hyper-parameters come from :class:`vgjax.config.Config` (``momentum``, ``rho`` for α,
``b1``, ``b2``, ``eps``); the ``optimizers_*`` methods of :mod:`vgjax.methods` set PyTorch's and
ADOPT's defaults, which differ from Config's Keras defaults (ε 1e-7, ρ 0.9). Every numeric
hyper-parameter may be a traced scalar (sweeps pass the learning rate through
``optax.inject_hyperparams``). tests/test_torch_parity.py trains the §5 network with these and
with ``torch.optim`` side by side on the same weights and batches.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class CountState(NamedTuple):
    count: jax.Array  # steps taken (int32)


class MomentumState(NamedTuple):
    count: jax.Array
    buf: optax.Updates  # torch's momentum_buffer


class RMSpropState(NamedTuple):
    count: jax.Array
    square_avg: optax.Updates


class AdamState(NamedTuple):
    count: jax.Array
    exp_avg: optax.Updates
    exp_avg_sq: optax.Updates


def _zeros(params):
    return jax.tree.map(jnp.zeros_like, params)


def _count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def _lerp(a, b, w):
    """torch.lerp for weights below 0.5: a + w·(b − a)."""
    return a + w * (b - a)


def _one_minus_power(beta, t):
    """1 − β^t to float32 accuracy. torch computes the bias corrections in double; in float32
    1 − β2^t loses digits (float32(0.999) is 0.999000013, so 1 − β2 is off by 1.3e-5) and the step
    with it. With 1 − β from the Python float, −expm1(t·log1p(−(1 − β))) keeps them."""
    return -jnp.expm1(t * jnp.log1p(-(1 - beta)))


def torch_sgd(learning_rate) -> optax.GradientTransformation:
    """``torch.optim.SGD(lr)``: p ← p − lr·g."""

    def init(params):
        del params
        return CountState(_count())

    def update(grads, state, params=None):
        del params
        return jax.tree.map(lambda g: -learning_rate * g, grads), CountState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def torch_momentum(learning_rate, momentum=0.9) -> optax.GradientTransformation:
    """``torch.optim.SGD(lr, momentum=μ)`` (dampening 0, not Nesterov): b ← μ·b + g; p ← p − lr·b.

    torch sets b = g at the first step; with b₀ = 0 the rule gives the same."""

    def init(params):
        return MomentumState(_count(), _zeros(params))

    def update(grads, state, params=None):
        del params
        buf = jax.tree.map(lambda b, g: b * momentum + g, state.buf, grads)
        return (jax.tree.map(lambda b: -learning_rate * b, buf),
                MomentumState(optax.safe_increment(state.count), buf))

    return optax.GradientTransformation(init, update)


def torch_rmsprop(learning_rate, alpha=0.99, eps=1e-8) -> optax.GradientTransformation:
    """``torch.optim.RMSprop(lr)``: v ← α·v + (1−α)·g²; p ← p − lr·g / (sqrt(v) + ε)."""

    def init(params):
        return RMSpropState(_count(), _zeros(params))

    def update(grads, state, params=None):
        del params
        v = jax.tree.map(lambda v_, g: v_ * alpha + (1 - alpha) * (g * g), state.square_avg, grads)
        updates = jax.tree.map(lambda g, v_: -learning_rate * (g / (jnp.sqrt(v_) + eps)), grads, v)
        return updates, RMSpropState(optax.safe_increment(state.count), v)

    return optax.GradientTransformation(init, update)


def torch_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8) -> optax.GradientTransformation:
    """``torch.optim.Adam(lr)``: step lr/(1−β1^t), ε added to sqrt(v)/sqrt(1−β2^t)."""

    def init(params):
        return AdamState(_count(), _zeros(params), _zeros(params))

    def update(grads, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        dtype = jax.tree_util.tree_leaves(grads)[0].dtype
        t = count.astype(dtype)
        m = jax.tree.map(lambda m_, g: _lerp(m_, g, 1 - b1), state.exp_avg, grads)
        v = jax.tree.map(lambda v_, g: v_ * b2 + (1 - b2) * (g * g), state.exp_avg_sq, grads)
        step_size = learning_rate / _one_minus_power(b1, t)
        bc2_sqrt = jnp.sqrt(_one_minus_power(b2, t))
        updates = jax.tree.map(lambda m_, v_: -step_size * (m_ / (jnp.sqrt(v_) / bc2_sqrt + eps)), m, v)
        return updates, AdamState(count, m, v)

    return optax.GradientTransformation(init, update)


def adopt_ref(learning_rate, b1=0.9, b2=0.9999, eps=1e-6, clip_exponent=0.25) -> optax.GradientTransformation:
    """ADOPT as its reference implementation computes it (``clip_lambda = step ** 0.25``).

    The first step only sets v = g²; from the second on the gradient is normalised by the
    *previous* v (clamped below at ε), clipped to ±(t−1)^¼, averaged into m, and p moves by −lr·m;
    v takes the current gradient last. ``clip_exponent=None`` is the unclipped original version."""

    def init(params):
        return AdamState(_count(), _zeros(params), _zeros(params))

    def update(grads, state, params=None):
        del params
        first = state.count == 0
        dtype = jax.tree_util.tree_leaves(grads)[0].dtype

        def moment(m_, v_, g):
            n = g / jnp.maximum(jnp.sqrt(v_), eps)
            if clip_exponent is not None:
                clip = jnp.power(state.count.astype(dtype), clip_exponent)
                n = jnp.clip(n, -clip, clip)
            return jnp.where(first, m_, _lerp(m_, n, 1 - b1))

        m = jax.tree.map(moment, state.exp_avg, state.exp_avg_sq, grads)
        v = jax.tree.map(lambda v_, g: jnp.where(first, v_ + g * g, v_ * b2 + (1 - b2) * (g * g)),
                         state.exp_avg_sq, grads)
        updates = jax.tree.map(lambda m_: jnp.where(first, jnp.zeros_like(m_), -learning_rate * m_), m)
        return updates, AdamState(optax.safe_increment(state.count), m, v)

    return optax.GradientTransformation(init, update)
