"""vgjax.optim.scratch: the docs/study.md §5 optimizers by hand, numpy vs optax, and their relation to optax built-ins."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vgjax.optim import scratch
from vgjax.optim.scratch import OPTIMIZERS, QUADRATIC_START, STUDY_HPARAMS

NAMES = list(OPTIMIZERS)
GRAD = scratch.quadratic_grad


def two_steps(name):
    """The records of the first two docs/study.md §5 steps of optimizer ``name``."""
    return scratch.numpy_trajectory(name, GRAD, QUADRATIC_START, 2, **STUDY_HPARAMS[name]).records


def ref_points(name, steps=30, **hp):
    return scratch.numpy_trajectory(name, GRAD, QUADRATIC_START, steps, **(hp or STUDY_HPARAMS[name])).points


def close(actual, expected, rtol=1e-9):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12)


# --------------------------------------------------------------------------- the problem and table

def test_spec_table_and_quadratic():
    assert {k: dict(v) for k, v in STUDY_HPARAMS.items()} == {
        "scratch_gd": {"learning_rate": 0.4},
        "scratch_momentum": {"learning_rate": 0.6, "beta": 0.5},
        "scratch_rmsprop": {"learning_rate": 0.3, "gamma": 0.9, "eps": 1e-6},
        "scratch_adam": {"learning_rate": 0.2, "b1": 0.9, "b2": 0.999, "eps": 1e-6},
    }
    assert QUADRATIC_START == (-5.0, -2.0) and scratch.STUDY_EPOCHS == 30
    w0 = np.array(QUADRATIC_START)
    assert scratch.quadratic(w0) == pytest.approx(0.1 * 25 + 2 * 4)  # 10.5
    close(GRAD(w0), [0.2 * -5, 4 * -2])  # (-1, -8)


def test_factory_defaults_are_the_spec_defaults():
    assert scratch.default_hparams("scratch_gd") == {}
    assert scratch.default_hparams("scratch_momentum") == {"beta": 0.5}
    assert scratch.default_hparams("scratch_rmsprop") == {"gamma": 0.9, "eps": 1e-6}
    assert scratch.default_hparams("scratch_adam") == {"b1": 0.9, "b2": 0.999, "eps": 1e-6}
    # The numpy form takes the same defaults: only the learning rate is needed.
    for name in NAMES:
        lr = STUDY_HPARAMS[name]["learning_rate"]
        close(scratch.numpy_trajectory(name, GRAD, QUADRATIC_START, 5, learning_rate=lr).points,
              ref_points(name, 5))


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown scratch optimizer 'sgd'"):
        scratch.numpy_step("sgd", np.zeros(2), np.zeros(2), {}, 1, learning_rate=0.1)


# --------------------------------------------------------------------------- two steps by hand

def test_gd_two_steps_by_hand():
    r1, r2 = two_steps("scratch_gd")
    # t=1: dW = (0.2·(-5), 4·(-2)) = (-1, -8); W1 = (-5 + 0.4·1, -2 + 0.4·8) = (-4.6, 1.2)
    close(r1["dW"], [-1, -8])
    close(r1["W_new"], [-4.6, 1.2])
    # t=2: dW = (0.2·(-4.6), 4·1.2) = (-0.92, 4.8); W2 = (-4.6 + 0.368, 1.2 - 1.92) = (-4.232, -0.72)
    close(r2["dW"], [-0.92, 4.8])
    close(r2["W_new"], [-4.232, -0.72])
    assert list(r1) == ["t", "W", "dW", "W_new"]


def test_momentum_two_steps_by_hand():
    r1, r2 = two_steps("scratch_momentum")
    # t=1: V = 0.5·0 + 0.5·(-1, -8) = (-0.5, -4); W1 = (-5 + 0.6·0.5, -2 + 0.6·4) = (-4.7, 0.4)
    close(r1["V"], [-0.5, -4])
    close(r1["W_new"], [-4.7, 0.4])
    # t=2: dW = (0.2·(-4.7), 4·0.4) = (-0.94, 1.6)
    #      V = 0.5·(-0.5, -4) + 0.5·(-0.94, 1.6) = (-0.72, -1.2)
    #      W2 = (-4.7 + 0.6·0.72, 0.4 + 0.6·1.2) = (-4.268, 1.12)
    close(r2["dW"], [-0.94, 1.6])
    close(r2["V"], [-0.72, -1.2])
    close(r2["W_new"], [-4.268, 1.12])
    assert list(r1) == ["t", "W", "dW", "V", "W_new"]


def test_rmsprop_two_steps_by_hand():
    r1, r2 = two_steps("scratch_rmsprop")
    # t=1: S = 0.9·0 + 0.1·(1, 64) = (0.1, 6.4)
    #      W1 = (-5 + 0.3·1/√(0.1 + 1e-6), -2 + 0.3·8/√(6.4 + 1e-6)) ≈ (-4.0513214, -1.0513168)
    close(r1["S"], [0.1, 6.4])
    w1 = [-5 + 0.3 * 1 / math.sqrt(0.1 + 1e-6), -2 + 0.3 * 8 / math.sqrt(6.4 + 1e-6)]
    close(r1["W_new"], w1)
    close(r1["W_new"], [-4.0513214, -1.0513168], rtol=1e-7)  # ≈ ±0.3·√10 = ±0.9486833 per axis
    # t=2: dW = (0.2·(-4.0513214), 4·(-1.0513168)) = (-0.8102643, -4.2052671)
    #      S = (0.9·0.1 + 0.1·0.8102643², 0.9·6.4 + 0.1·4.2052671²) = (0.15565282, 7.5284271)
    #      W2 = W1 - 0.3·dW/√(S + 1e-6) = (-4.0513214 + 0.6161239, -1.0513168 + 0.4597934)
    #         = (-3.4351975, -0.5915234)
    close(r2["dW"], [-0.8102643, -4.2052671], rtol=1e-7)
    close(r2["S"], [0.9 * 0.1 + 0.1 * 0.8102643**2, 0.9 * 6.4 + 0.1 * 4.2052671**2], rtol=1e-7)
    close(r2["S"], [0.15565282, 7.5284271], rtol=1e-7)
    close(r2["W_new"], [-3.4351975, -0.5915234], rtol=1e-7)
    assert list(r1) == ["t", "W", "dW", "S", "W_new"]


def test_adam_two_steps_by_hand():
    r1, r2 = two_steps("scratch_adam")
    # t=1: V = 0.1·(-1, -8) = (-0.1, -0.8);  S = 0.001·(1, 64) = (0.001, 0.064)
    #      V̂ = V/(1 - 0.9) = (-1, -8);  Ŝ = S/(1 - 0.999) = (1, 64)
    #      W1 = (-5 + 0.2·1/(1 + 1e-6), -2 + 0.2·8/(8 + 1e-6)) = (-4.8000002, -1.8000000)
    close(r1["V"], [-0.1, -0.8])
    close(r1["S"], [0.001, 0.064])
    close(r1["V_hat"], [-1, -8])
    close(r1["S_hat"], [1, 64])
    close(r1["W_new"], [-5 + 0.2 / (1 + 1e-6), -2 + 0.2 * 8 / (8 + 1e-6)])
    # t=2: dW = (0.2·(-4.8), 4·(-1.8)) = (-0.96, -7.2)
    #      V = 0.9·(-0.1, -0.8) + 0.1·(-0.96, -7.2) = (-0.186, -1.44)
    #      S = 0.999·(0.001, 0.064) + 0.001·(0.9216, 51.84) = (0.0019206, 0.115776)
    #      V̂ = V/(1 - 0.81) = (-0.9789474, -7.5789474);  Ŝ = S/(1 - 0.998001) = (0.9607804, 57.916959)
    #      W2 = W1 - 0.2·V̂/(√Ŝ + 1e-6) = (-4.8000002 + 0.1997454, -1.8 + 0.1991755)
    #         = (-4.6002548, -1.6008245)
    close(r2["dW"], [-0.96, -7.2], rtol=1e-6)
    close(r2["V"], [-0.186, -1.44], rtol=1e-6)
    close(r2["S"], [0.0019206, 0.115776], rtol=1e-6)
    close(r2["V_hat"], [-0.186 / 0.19, -1.44 / 0.19], rtol=1e-6)
    close(r2["S_hat"], [0.0019206 / 0.001999, 0.115776 / 0.001999], rtol=1e-6)
    close(r2["W_new"], [-4.6002548, -1.6008245], rtol=1e-7)
    assert list(r1) == ["t", "W", "dW", "V", "S", "V_hat", "S_hat", "W_new"]


# --------------------------------------------------------------------------- numpy == optax

@pytest.mark.parametrize("name", NAMES)
def test_numpy_and_optax_forms_give_the_same_30_step_trajectory(name):
    hp = STUDY_HPARAMS[name]
    ref = ref_points(name)
    # float64 on both sides: the same numbers up to rounding (|diff| <= 1e-12).
    with jax.enable_x64(True):
        ox64 = scratch.optax_trajectory(OPTIMIZERS[name](**hp), GRAD, QUADRATIC_START, 30)
    assert ox64.dtype == np.float64 and ox64.shape == (31, 2)
    np.testing.assert_allclose(ox64, ref, rtol=0, atol=1e-12)
    # float32 optax (the engine's dtype): within 1e-6, Adam within 5e-5 (its float32 bias
    # corrections 1 - 0.999^t carry ~1e-5 relative error; measured 2.5e-5).
    ox32 = scratch.optax_trajectory(OPTIMIZERS[name](**hp), GRAD, QUADRATIC_START, 30)
    assert ox32.dtype == np.float32
    np.testing.assert_allclose(ox32, ref, rtol=0, atol=5e-5 if name == "scratch_adam" else 1e-6)


# --------------------------------------------------------------------------- optax built-ins

def x64_path(transform, steps=30):
    with jax.enable_x64(True):
        return scratch.optax_trajectory(transform, GRAD, QUADRATIC_START, steps)


def test_gd_is_optax_sgd():
    np.testing.assert_allclose(x64_path(optax.sgd(0.4)), ref_points("scratch_gd"), rtol=0, atol=1e-12)


def test_momentum_is_optax_sgd_with_learning_rate_scaled_by_one_minus_beta():
    # optax.sgd(momentum=β) keeps m ← β·m + dW (no damping), so m = V/(1-β):
    # scratch_momentum(α, β) == optax.sgd(α·(1-β), momentum=β) = optax.sgd(0.3, momentum=0.5).
    ref = ref_points("scratch_momentum")
    np.testing.assert_allclose(x64_path(optax.sgd(0.6 * (1 - 0.5), momentum=0.5)), ref, rtol=0, atol=1e-12)
    # The optax state is V/(1-β): after step 1, m = dW = (-1, -8) while V = (-0.5, -4).
    m = optax.sgd(0.3, momentum=0.5)
    _, state = m.update(jnp.array([-1.0, -8.0]), m.init(jnp.zeros(2)))
    close(np.asarray(state[0].trace), [-1, -8])
    # optax.sgd(α, momentum=β) with the same α takes 1/(1-β) = 2x the first step:
    # W1 = (-5 + 0.6·1, -2 + 0.6·8) = (-4.4, 2.8) instead of (-4.7, 0.4), and a different path.
    undamped = x64_path(optax.sgd(0.6, momentum=0.5))
    close(undamped[1], [-4.4, 2.8])
    close(undamped[1] - undamped[0], 2 * (ref[1] - ref[0]))
    assert np.abs(undamped - ref).max() > 1.0  # measured 2.64


def test_rmsprop_is_optax_rmsprop_with_eps_inside_the_sqrt():
    # optax.rmsprop defaults to eps_in_sqrt=True: g·rsqrt(nu + eps), the study's form.
    import inspect
    assert inspect.signature(optax.rmsprop).parameters["eps_in_sqrt"].default is True
    ref = ref_points("scratch_rmsprop")
    np.testing.assert_allclose(x64_path(optax.rmsprop(0.3, decay=0.9, eps=1e-6)), ref, rtol=0, atol=1e-12)
    # eps_in_sqrt=False (Keras: dW/(√S + ε), vgjax.optim.registry's "rmsprop") is a different, nearby path:
    # step 1 gives w1 = -5 + 0.3/(√0.1 + 1e-6) instead of -5 + 0.3/√(0.1 + 1e-6), 1.7e-6 apart;
    # the largest gap over 30 steps is 2.0e-6.
    keras = x64_path(optax.rmsprop(0.3, decay=0.9, eps=1e-6, eps_in_sqrt=False))
    close(keras[1, 0], -5 + 0.3 / (math.sqrt(0.1) + 1e-6))
    assert keras[1, 0] - ref[1, 0] == pytest.approx(1.74e-6, rel=1e-2)
    assert 1e-6 < np.abs(keras - ref).max() < 5e-6


def test_adam_is_optax_adam():
    # optax.adam: m̂/(√(v̂ + eps_root) + eps), eps_root = 0 by default: the study's form.
    ref = ref_points("scratch_adam")
    tx = optax.adam(0.2, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0)
    np.testing.assert_allclose(x64_path(tx), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_optax_builtin_names_the_matching_built_in(name):
    np.testing.assert_allclose(x64_path(scratch.optax_builtin(name, **STUDY_HPARAMS[name])), ref_points(name),
                               rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- jit, pytrees, inject

@pytest.mark.parametrize("name", NAMES)
def test_jit_pytree_and_namedtuple_state(name):
    tx = OPTIMIZERS[name](**STUDY_HPARAMS[name])
    params = {"kernel": jnp.ones((2, 3)), "bias": jnp.full((3,), -2.0)}
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    state = tx.init(params)
    assert hasattr(state, "_fields") and state._fields[0] == "count"
    updates, state = jax.jit(tx.update)(grads, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert int(state.count) == 1
    # Every optimizer's first step on each leaf equals the numpy form's (float32 vs float64: Adam's
    # 1 - float32(0.999) is 1.3e-5 off, which moves its step by 6.7e-6 relative).
    rtol = 2e-5 if name == "scratch_adam" else 1e-6
    for key in params:
        g = np.asarray(grads[key], dtype=np.float64).ravel()
        w = np.asarray(params[key], dtype=np.float64).ravel()
        new_w, _, _ = scratch.numpy_step(name, w, g, scratch.numpy_init(name, w), 1, **STUDY_HPARAMS[name])
        np.testing.assert_allclose(np.asarray(updates[key]).ravel(), new_w - w, rtol=rtol)


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams(name):
    hp = STUDY_HPARAMS[name]
    tx = optax.inject_hyperparams(OPTIMIZERS[name])(**hp)
    state = tx.init(jnp.asarray(QUADRATIC_START))
    assert set(state.hyperparams) == set(hp)  # every numeric hyper-parameter is injected
    path = scratch.optax_trajectory(tx, GRAD, QUADRATIC_START, 30)
    np.testing.assert_allclose(path, ref_points(name), rtol=0, atol=5e-5)
    # Changing the injected learning rate in the state changes the next step (jitted update).
    w = jnp.asarray(QUADRATIC_START)
    state.hyperparams["learning_rate"] = jnp.asarray(0.01)
    updates, _ = jax.jit(tx.update)(GRAD(w), state, w)
    small = scratch.numpy_step(name, np.array(QUADRATIC_START), GRAD(np.array(QUADRATIC_START)),
                               scratch.numpy_init(name, w), 1, **{**hp, "learning_rate": 0.01})[0]
    np.testing.assert_allclose(np.asarray(updates), small - np.array(QUADRATIC_START), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_traced_learning_rate_under_vmap_and_schedule(name):
    hp = STUDY_HPARAMS[name]

    def final_point(lr):
        tx = OPTIMIZERS[name](**{**hp, "learning_rate": lr})

        def body(carry, _):
            w, state = carry
            updates, state = tx.update(GRAD(w), state, w)
            return (optax.apply_updates(w, updates), state), None

        w0 = jnp.asarray(QUADRATIC_START)
        return jax.lax.scan(body, (w0, tx.init(w0)), length=30)[0][0]

    lrs = jnp.array([hp["learning_rate"], 0.05])
    finals = jax.jit(jax.vmap(final_point))(lrs)
    np.testing.assert_allclose(finals[0], ref_points(name)[-1], rtol=0, atol=5e-5)
    slow = ref_points(name, **{**hp, "learning_rate": 0.05})
    np.testing.assert_allclose(finals[1], slow[-1], rtol=0, atol=5e-5)
    # A schedule is evaluated at the step count (constant schedule == constant rate).
    sched = OPTIMIZERS[name](**{**hp, "learning_rate": optax.constant_schedule(hp["learning_rate"])})
    np.testing.assert_allclose(scratch.optax_trajectory(sched, GRAD, QUADRATIC_START, 30), ref_points(name),
                               rtol=0, atol=5e-5)


def test_registered_in_the_optimizer_registry():
    from vgjax.optim import registry as optim

    assert set(OPTIMIZERS) <= set(optim.optimizer_names())
