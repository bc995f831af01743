"""Every optimizer of the registry, one step at a time, against its documented formula.

The engine trains with ``vgjax.optim.registry.make_optimizer(config)``; this module checks what that
transformation does, in float64, over three steps at gradients from 1e-2 down to 1e-8 and 0 --
the vanishing regime where the placement of epsilon decides the step (epsilon 1e-7 outside
``sqrt(v)`` versus inside it changes a step at g = 1e-6 about 300x; Keras puts it inside for
RMSprop, and for Adam adds it before the bias correction, docs/study.md §3).

``REFERENCE`` holds one plain-numpy update rule per registry name. A new registry entry needs one
line here (the test that every name has a reference fails until it is added); a changed entry
needs its line changed, which is the point: the formula is written down once, next to the test.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
import optax
import pytest

from vgjax.optim import scratch
from vgjax.config import Config
from vgjax.optim.registry import make_optimizer, optimizer_names

pytestmark = pytest.mark.fast

# Hyper-parameters: the Config defaults (Keras' eps 1e-7, rho 0.9, b1 0.9, b2 0.999,
# momentum 0.9) with a weight decay so that adamw's decay term is visible.
LR = 0.01
CONFIG = Config(lr=LR, weight_decay=0.01)

W0 = np.array([0.05, -0.03, 0.02, -0.07, 0.01, 0.04])
# per element: a normal gradient, then the vanishing regime down to 1e-8, and an exact zero
G = np.array([1e-2, 1e-6, -1e-7, 1e-8, -3e-6, 0.0])
STEPS = 3


def grads(t: int) -> np.ndarray:
    """Gradient of step t (1-based): the scales of G, varied per step so moments are not constant."""
    return G * (1.0 + 0.5 * t) * (-1.0) ** (t // 2)


# ------------------------------------------------------------------------------------------------
# Reference rules: rule(state, w, g, t, c) -> (new_state, new_w); state starts as {} (t is 1-based).


def _ema(state, key, decay, value):
    state[key] = decay * state.get(key, 0.0) + (1 - decay) * value
    return state[key]


def ref_sgd(s, w, g, t, c):
    return s, w - c.lr * g


def ref_momentum(s, w, g, t, c):  # optax's undamped trace
    s["m"] = c.momentum * s.get("m", 0.0) + g
    return s, w - c.lr * s["m"]


def ref_nesterov(s, w, g, t, c):
    s["m"] = c.momentum * s.get("m", 0.0) + g
    return s, w - c.lr * (g + c.momentum * s["m"])


def ref_rmsprop_keras(s, w, g, t, c):  # Keras (2 and 3): eps inside the root, lr g / sqrt(v + eps)
    v = _ema(s, "v", c.rho, g * g)
    return s, w - c.lr * g / np.sqrt(v + c.eps)


def ref_adam_optax(s, w, g, t, c):  # optax.adam: bias-corrected moments, eps after the correction
    m, v = _ema(s, "m", c.b1, g), _ema(s, "v", c.b2, g * g)
    m_hat, v_hat = m / (1 - c.b1 ** t), v / (1 - c.b2 ** t)
    return s, w - c.lr * m_hat / (np.sqrt(v_hat) + c.eps)


def ref_adam_keras(s, w, g, t, c):  # Keras: lr_t = lr sqrt(1-b2^t)/(1-b1^t); eps added to sqrt(v)
    m, v = _ema(s, "m", c.b1, g), _ema(s, "v", c.b2, g * g)
    lr_t = c.lr * np.sqrt(1 - c.b2 ** t) / (1 - c.b1 ** t)
    return s, w - lr_t * m / (np.sqrt(v) + c.eps)


def ref_adamw(s, w, g, t, c):  # optax.adamw: decoupled decay lr * wd * w
    m, v = _ema(s, "m", c.b1, g), _ema(s, "v", c.b2, g * g)
    m_hat, v_hat = m / (1 - c.b1 ** t), v / (1 - c.b2 ** t)
    return s, w - c.lr * (m_hat / (np.sqrt(v_hat) + c.eps) + c.weight_decay * w)


def ref_adopt(s, w, g, t, c):  # optax.contrib.adopt, eps max(eps, 1e-6) as the registry passes it
    eps = max(c.eps, 1e-6)
    if t == 1:  # the first step only initialises v = g^2 and moves nothing
        s["v"], s["m"] = g * g, np.zeros_like(g)
        return s, w
    clip = (t - 1) ** 0.25
    s["m"] = c.b1 * s["m"] + (1 - c.b1) * np.clip(g / np.maximum(np.sqrt(s["v"]), eps), -clip, clip)
    s["v"] = c.b2 * s["v"] + (1 - c.b2) * g * g
    return s, w - c.lr * s["m"]


def ref_adagrad(s, w, g, t, c):  # optax.adagrad: accumulator starts at 0.1, eps inside the root
    s["acc"] = s.get("acc", 0.1) + g * g
    return s, w - c.lr * g / np.sqrt(s["acc"] + c.eps)


def _hp(name):
    return scratch.default_hparams(name)


def ref_scratch_gd(s, w, g, t, c):
    return s, w - c.lr * g


def ref_scratch_momentum(s, w, g, t, c):  # docs/study.md §5: damped, V = beta V + (1 - beta) dW
    v = _ema(s, "v", _hp("scratch_momentum")["beta"], g)
    return s, w - c.lr * v


def ref_scratch_rmsprop(s, w, g, t, c):  # docs/study.md §5: dW / sqrt(S + eps)
    hp = _hp("scratch_rmsprop")
    v = _ema(s, "s", hp["gamma"], g * g)
    return s, w - c.lr * g / np.sqrt(v + hp["eps"])


def ref_scratch_adam(s, w, g, t, c):  # docs/study.md §5: V_hat / (sqrt(S_hat) + eps)
    hp = _hp("scratch_adam")
    m, v = _ema(s, "m", hp["b1"], g), _ema(s, "v", hp["b2"], g * g)
    return s, w - c.lr * (m / (1 - hp["b1"] ** t)) / (np.sqrt(v / (1 - hp["b2"] ** t)) + hp["eps"])


def ref_torch_momentum(s, w, g, t, c):  # torch.optim.SGD(momentum=mu): b = mu b + g, undamped
    s["b"] = c.momentum * s.get("b", 0.0) + g
    return s, w - c.lr * s["b"]


def ref_torch_rmsprop(s, w, g, t, c):  # torch.optim.RMSprop: alpha = rho, eps outside the root
    v = _ema(s, "v", c.rho, g * g)
    return s, w - c.lr * g / (np.sqrt(v) + c.eps)


def ref_torch_adam(s, w, g, t, c):  # torch.optim.Adam: eps added to sqrt(v) / sqrt(1 - b2^t)
    m, v = _ema(s, "m", c.b1, g), _ema(s, "v", c.b2, g * g)
    return s, w - c.lr / (1 - c.b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - c.b2 ** t) + c.eps)


def ref_adopt_ref(s, w, g, t, c):  # ADOPT's reference: v = g^2 first; clip (t - 1)^(1/4); no eps floor
    if t == 1:
        s["v"], s["m"] = g * g, np.zeros_like(g)
        return s, w
    n = np.clip(g / np.maximum(np.sqrt(s["v"]), c.eps), -(t - 1) ** 0.25, (t - 1) ** 0.25)
    s["m"] = s["m"] + (1 - c.b1) * (n - s["m"])
    s["v"] = c.b2 * s["v"] + (1 - c.b2) * g * g
    return s, w - c.lr * s["m"]


# registry name -> the rule it must follow. One line per entry.
REFERENCE = {
    "sgd": ref_sgd,
    "momentum": ref_momentum,
    "nesterov": ref_nesterov,
    "rmsprop": ref_rmsprop_keras,
    "adam": ref_adam_keras,
    "adam_optax": ref_adam_optax,
    "adamw": ref_adamw,
    "adopt": ref_adopt,
    "adagrad": ref_adagrad,
    "scratch_gd": ref_scratch_gd,
    "scratch_momentum": ref_scratch_momentum,
    "scratch_rmsprop": ref_scratch_rmsprop,
    "scratch_adam": ref_scratch_adam,
    "torch_sgd": ref_sgd,
    "torch_momentum": ref_torch_momentum,
    "torch_rmsprop": ref_torch_rmsprop,
    "torch_adam": ref_torch_adam,
    "adopt_ref": ref_adopt_ref,
}


# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def float64():
    """jax with 64-bit floats, for this block only."""
    if hasattr(jax, "enable_x64"):
        with jax.enable_x64(True):
            yield
    else:  # older jax
        from jax.experimental import enable_x64
        with enable_x64():
            yield


def reference_trajectory(name: str, config: Config) -> list[np.ndarray]:
    state, w, out = {}, W0.copy(), []
    for t in range(1, STEPS + 1):
        state, w = REFERENCE[name](state, w, grads(t), t, config)
        out.append(w.copy())
    return out


def registry_trajectory(name: str, config: Config, frozen=()) -> list[dict]:
    """The registry transformation's parameters after each step, in float64 (two layers a, b)."""
    with float64():
        params = {"a": {"kernel": jax.numpy.asarray(W0)}, "b": {"kernel": jax.numpy.asarray(W0)}}
        tx = make_optimizer(config, params, frozen=frozen)
        opt_state = tx.init(params)
        out = []
        for t in range(1, STEPS + 1):
            g = jax.numpy.asarray(grads(t))
            updates, opt_state = tx.update({"a": {"kernel": g}, "b": {"kernel": g}}, opt_state, params)
            params = optax.apply_updates(params, updates)
            assert params["b"]["kernel"].dtype == np.float64
            out.append(jax.tree_util.tree_map(np.asarray, params))
    return out


def test_every_registry_optimizer_has_a_reference_formula():
    missing = set(optimizer_names()) - set(REFERENCE)
    assert not missing, f"add a reference rule to REFERENCE for: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_three_steps_match_the_formula_in_float64_down_to_vanishing_gradients(name):
    if name not in optimizer_names():
        pytest.skip(f"{name} is not in this registry")
    config = CONFIG.replace(optimizer=name)
    for t, (got, want) in enumerate(zip(registry_trajectory(name, config), reference_trajectory(name, config)), 1):
        # compare the displacement from W0, elementwise and relative: at g = 1e-8 a step is tiny
        # next to the weight, and an eps misplaced changes it by orders of magnitude
        np.testing.assert_allclose(got["b"]["kernel"] - W0, want - W0, rtol=1e-7, atol=1e-18,
                                   err_msg=f"{name}, step {t}")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_frozen_layers_get_exactly_zero_and_the_rest_the_formula(name):
    if name not in optimizer_names():
        pytest.skip(f"{name} is not in this registry")
    config = CONFIG.replace(optimizer=name)
    got = registry_trajectory(name, config, frozen=["a"])[-1]
    np.testing.assert_array_equal(got["a"]["kernel"], W0)
    np.testing.assert_allclose(got["b"]["kernel"] - W0, reference_trajectory(name, config)[-1] - W0,
                               rtol=1e-7, atol=1e-18)


def test_rmsprop_step_at_a_vanishing_gradient_is_keras_step():
    """The scale that matters here: at g = 1.5e-6 Keras' RMSprop (eps inside the root) takes a step
    of lr g / sqrt(0.1 g^2 + 1e-7), about 0.005 lr -- not lr / sqrt(1 - rho) as with eps outside."""
    config = CONFIG.replace(optimizer="rmsprop")
    step = registry_trajectory("rmsprop", config)[0]["b"]["kernel"] - W0
    g = grads(1)[1]
    expected = -LR * g / np.sqrt((1 - config.rho) * g * g + config.eps)
    np.testing.assert_allclose(step[1], expected, rtol=1e-9)
    assert abs(step[1]) < 0.01 * LR / np.sqrt(1 - config.rho)  # eps outside the root: ~200x larger
