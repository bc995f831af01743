"""The from-scratch optimizers of docs/study.md §5, in two forms that agree step for step.

1. A plain-numpy reference (:func:`numpy_step`, :func:`numpy_trajectory`) that returns every
   intermediate quantity (dW, V, S, V̂, Ŝ, the new W) so the exercise can be shown by hand.
2. optax ``GradientTransformation`` factories (:data:`OPTIMIZERS`) for the training engine: pytrees,
   jit-safe, NamedTuple states, usable under ``optax.inject_hyperparams`` (every numeric
   hyper-parameter may be a traced scalar; ``learning_rate`` may also be a schedule).

The four updates (t counts steps from 1; V₀ = S₀ = 0):

=================  =====================================================================
scratch_gd         W ← W − α·dW
scratch_momentum   V ← β·V + (1−β)·dW;  W ← W − α·V
scratch_rmsprop    S ← γ·S + (1−γ)·dW²;  W ← W − α·dW / sqrt(S + ε)
scratch_adam       V ← β1·V + (1−β1)·dW;  S ← β2·S + (1−β2)·dW²;  V̂ = V/(1−β1^t);
                   Ŝ = S/(1−β2^t);  W ← W − α·V̂ / (sqrt(Ŝ) + ε)
=================  =====================================================================

Relations to the optax built-ins (optax 0.2.8, read in its source; each is a test in
``tests/test_scratch.py`` and :func:`optax_builtin` builds the matching one):

- ``scratch_gd(α)`` is ``optax.sgd(α)``.
- ``optax.sgd(α, momentum=β)`` keeps an undamped trace m ← β·m + dW, so m = V/(1−β) and
  ``scratch_momentum(α, β)`` is ``optax.sgd(α·(1−β), momentum=β)`` (α·(1−β) = 0.3 for the study
  setting). ``optax.sgd(α, momentum=β)`` itself takes steps 1/(1−β) times larger (2× for β = 0.5).
- ``optax.rmsprop(α, decay=γ, eps=ε)`` computes ``g * rsqrt(nu + eps)`` by default
  (``eps_in_sqrt=True``): ε inside the square root, exactly the study's form, so it is
  ``scratch_rmsprop(α, γ, ε)``, and Keras' placement too (:mod:`vgjax.optim.registry`'s ``rmsprop``).
  ``eps_in_sqrt=False`` divides by sqrt(S) + ε instead.
- ``optax.adam(α, b1, b2, eps=ε)`` (``eps_root=0``) is ``scratch_adam(α, b1, b2, ε)``: ε outside
  the square root of the bias-corrected Ŝ.
"""

from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Hyper = jax.typing.ArrayLike  # a float, or a traced scalar under optax.inject_hyperparams
NumpyState = dict[str, np.ndarray]
Record = dict[str, "np.ndarray | int"]

# --------------------------------------------------------------------------- the docs/study.md §5 problem

QUADRATIC_START: tuple[float, float] = (-5.0, -2.0)
STUDY_EPOCHS = 30

STUDY_HPARAMS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "scratch_gd": MappingProxyType({"learning_rate": 0.4}),
    "scratch_momentum": MappingProxyType({"learning_rate": 0.6, "beta": 0.5}),
    "scratch_rmsprop": MappingProxyType({"learning_rate": 0.3, "gamma": 0.9, "eps": 1e-6}),
    "scratch_adam": MappingProxyType({"learning_rate": 0.2, "b1": 0.9, "b2": 0.999, "eps": 1e-6}),
})
"""The docs/study.md §5 table: α (``learning_rate``) and the other hyper-parameters of each optimizer."""

_QUADRATIC_GRAD_COEFFS = np.array([0.2, 4.0])


def quadratic(w):
    """f(w) = 0.1·w1² + 2·w2² over the last axis of ``w`` (numpy or jax; grids welcome)."""
    return 0.1 * w[..., 0] ** 2 + 2.0 * w[..., 1] ** 2


def quadratic_grad(w):
    """∇f(w) = (0.2·w1, 4·w2); works on numpy and jax arrays alike."""
    return w * _QUADRATIC_GRAD_COEFFS


# --------------------------------------------------------------------------- numpy reference
# Each step maps (W, dW, state, t, hyper-parameters) to (new W, new state, quantities to show).

def _gd_np(w, g, state, t, *, learning_rate):
    return w - learning_rate * g, state, {}


def _momentum_np(w, g, state, t, *, learning_rate, beta):
    v = beta * state["V"] + (1 - beta) * g
    return w - learning_rate * v, {"V": v}, {"V": v}


def _rmsprop_np(w, g, state, t, *, learning_rate, gamma, eps):
    s = gamma * state["S"] + (1 - gamma) * g**2
    return w - learning_rate * g / np.sqrt(s + eps), {"S": s}, {"S": s}


def _adam_np(w, g, state, t, *, learning_rate, b1, b2, eps):
    v = b1 * state["V"] + (1 - b1) * g
    s = b2 * state["S"] + (1 - b2) * g**2
    v_hat, s_hat = v / (1 - b1**t), s / (1 - b2**t)
    new_w = w - learning_rate * v_hat / (np.sqrt(s_hat) + eps)
    return new_w, {"V": v, "S": s}, {"V": v, "S": s, "V_hat": v_hat, "S_hat": s_hat}


_NUMPY_STEPS: dict[str, Callable[..., tuple[np.ndarray, NumpyState, NumpyState]]] = {
    "scratch_gd": _gd_np,
    "scratch_momentum": _momentum_np,
    "scratch_rmsprop": _rmsprop_np,
    "scratch_adam": _adam_np,
}
_STATE_KEYS: dict[str, tuple[str, ...]] = {
    "scratch_gd": (),
    "scratch_momentum": ("V",),
    "scratch_rmsprop": ("S",),
    "scratch_adam": ("V", "S"),
}


def _check_name(name: str) -> None:
    if name not in _NUMPY_STEPS:
        raise ValueError(f"unknown scratch optimizer {name!r}; choose from {', '.join(_NUMPY_STEPS)}")


def numpy_init(name: str, w) -> NumpyState:
    """The zero state (V₀ = 0 and/or S₀ = 0) of optimizer ``name`` for a point shaped like ``w``."""
    _check_name(name)
    return {key: np.zeros_like(np.asarray(w, dtype=np.float64)) for key in _STATE_KEYS[name]}


def numpy_step(name: str, w, grad, state: NumpyState, t: int,
               **hp: float) -> tuple[np.ndarray, NumpyState, Record]:
    """One update of step ``t`` (from 1) at point ``w`` with gradient ``grad``.

    Returns ``(new_w, new_state, record)``; ``record`` holds, in order, ``t``, ``W``, ``dW``, the
    state quantities that exist for this optimizer (``V``, ``S``, ``V_hat``, ``S_hat``) and
    ``W_new``. ``hp`` takes ``learning_rate`` and the hyper-parameters of :data:`STUDY_HPARAMS`;
    those left out take the defaults of the optax factory (:func:`default_hparams`).
    """
    hp = {**default_hparams(name), **hp}
    w, grad = np.asarray(w, dtype=np.float64), np.asarray(grad, dtype=np.float64)
    new_w, new_state, extra = _NUMPY_STEPS[name](w, grad, state, t, **hp)
    return new_w, new_state, {"t": t, "W": w, "dW": grad, **extra, "W_new": new_w}


class Trajectory(NamedTuple):
    """Points W₀ … W_steps (shape ``(steps + 1, dim)``) and the record of every step."""

    points: np.ndarray
    records: list[Record]


def numpy_trajectory(name: str, grad_fn: Callable[[np.ndarray], np.ndarray], w0, steps: int,
                     **hp: float) -> Trajectory:
    """``steps`` updates of optimizer ``name`` from ``w0``, in float64 numpy."""
    w = np.asarray(w0, dtype=np.float64)
    state, points, records = numpy_init(name, w), [w], []
    for t in range(1, steps + 1):
        w, state, record = numpy_step(name, w, grad_fn(w), state, t, **hp)
        points.append(w)
        records.append(record)
    return Trajectory(np.stack(points), records)


# --------------------------------------------------------------------------- optax transforms

class GDState(NamedTuple):
    count: jax.Array  # steps taken (int32); drives a learning-rate schedule


class MomentumState(NamedTuple):
    count: jax.Array
    v: optax.Updates  # V: damped moving average of the gradient


class RMSPropState(NamedTuple):
    count: jax.Array
    s: optax.Updates  # S: moving average of the squared gradient


class AdamState(NamedTuple):
    count: jax.Array
    v: optax.Updates
    s: optax.Updates


def _zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def _zeros(params: optax.Params) -> optax.Updates:
    return jax.tree.map(jnp.zeros_like, params)


def _lr_at(learning_rate, count: jax.Array):
    """The learning rate for this step: a scalar (maybe traced) or a schedule of the step count."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _ema(decay, moment: optax.Updates, value: optax.Updates) -> optax.Updates:
    """decay·moment + (1 − decay)·value, leaf by leaf."""
    return jax.tree.map(lambda m, x: decay * m + (1 - decay) * x, moment, value)


def _descend(lr, direction: optax.Updates, like: optax.Updates) -> optax.Updates:
    """The update −lr·direction, in the dtype of ``like`` (the incoming gradients)."""
    return jax.tree.map(lambda d, g: (-lr * d).astype(g.dtype), direction, like)


def scratch_gd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """Gradient descent: W ← W − α·dW."""

    def init(params):
        del params
        return GDState(_zero_count())

    def update(updates, state, params=None):
        del params
        lr = _lr_at(learning_rate, state.count)
        return _descend(lr, updates, updates), GDState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def scratch_momentum(learning_rate: optax.ScalarOrSchedule, beta: Hyper = 0.5
                     ) -> optax.GradientTransformation:
    """Momentum with (1−β) damping: V ← β·V + (1−β)·dW; W ← W − α·V."""

    def init(params):
        return MomentumState(_zero_count(), _zeros(params))

    def update(updates, state, params=None):
        del params
        v = _ema(beta, state.v, updates)
        lr = _lr_at(learning_rate, state.count)
        return _descend(lr, v, updates), MomentumState(optax.safe_increment(state.count), v)

    return optax.GradientTransformation(init, update)


def scratch_rmsprop(learning_rate: optax.ScalarOrSchedule, gamma: Hyper = 0.9, eps: Hyper = 1e-6
                    ) -> optax.GradientTransformation:
    """RMSProp: S ← γ·S + (1−γ)·dW²; W ← W − α·dW / sqrt(S + ε)."""

    def init(params):
        return RMSPropState(_zero_count(), _zeros(params))

    def update(updates, state, params=None):
        del params
        s = _ema(gamma, state.s, jax.tree.map(jnp.square, updates))
        direction = jax.tree.map(lambda g, s_: g / jnp.sqrt(s_ + eps), updates, s)
        lr = _lr_at(learning_rate, state.count)
        return _descend(lr, direction, updates), RMSPropState(optax.safe_increment(state.count), s)

    return optax.GradientTransformation(init, update)


def scratch_adam(learning_rate: optax.ScalarOrSchedule, b1: Hyper = 0.9, b2: Hyper = 0.999,
                 eps: Hyper = 1e-6) -> optax.GradientTransformation:
    """Adam: V, S as above with β1, β2; V̂ = V/(1−β1^t), Ŝ = S/(1−β2^t); W ← W − α·V̂/(sqrt(Ŝ) + ε)."""

    def init(params):
        return AdamState(_zero_count(), _zeros(params), _zeros(params))

    def update(updates, state, params=None):
        del params
        t = optax.safe_increment(state.count)
        v = _ema(b1, state.v, updates)
        s = _ema(b2, state.s, jax.tree.map(jnp.square, updates))
        c1, c2 = 1 - b1**t, 1 - b2**t
        direction = jax.tree.map(lambda v_, s_: (v_ / c1) / (jnp.sqrt(s_ / c2) + eps), v, s)
        lr = _lr_at(learning_rate, state.count)
        return _descend(lr, direction, updates), AdamState(t, v, s)

    return optax.GradientTransformation(init, update)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "scratch_gd": scratch_gd,
    "scratch_momentum": scratch_momentum,
    "scratch_rmsprop": scratch_rmsprop,
    "scratch_adam": scratch_adam,
}


def default_hparams(name: str) -> dict[str, float]:
    """The keyword defaults of ``OPTIMIZERS[name]`` (one source for both forms), e.g. β = 0.5."""
    _check_name(name)
    params = inspect.signature(OPTIMIZERS[name]).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def optax_builtin(name: str, learning_rate: float, **hp: float) -> optax.GradientTransformation:
    """The optax built-in that computes the same updates as ``OPTIMIZERS[name]`` (scalar α only)."""
    hp = {**default_hparams(name), **hp}
    if name == "scratch_gd":
        return optax.sgd(learning_rate)
    if name == "scratch_momentum":
        return optax.sgd(learning_rate * (1 - hp["beta"]), momentum=hp["beta"])
    if name == "scratch_rmsprop":
        return optax.rmsprop(learning_rate, decay=hp["gamma"], eps=hp["eps"], eps_in_sqrt=True)
    return optax.adam(learning_rate, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], eps_root=0.0)


def optax_trajectory(transform: optax.GradientTransformation, grad_fn: Callable, w0,
                     steps: int) -> np.ndarray:
    """Points W₀ … W_steps of ``transform`` from ``w0`` (a jitted ``lax.scan``; float32 by default)."""

    def body(carry, _):
        w, state = carry
        updates, state = transform.update(grad_fn(w), state, w)
        w = optax.apply_updates(w, updates)
        return (w, state), w

    @jax.jit
    def run(w_start):
        _, ws = jax.lax.scan(body, (w_start, transform.init(w_start)), length=steps)
        return jnp.concatenate([w_start[None], ws])

    return np.asarray(run(jnp.asarray(w0, dtype=jnp.result_type(float))))
