"""Activations (incl. the two new remedies) and the Standardize layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgjax.nn.layers import ACTIVATIONS, Standardize, get_activation, sigmoid_beta, sigmoid_modgrad

Z = jnp.linspace(-30.0, 30.0, 2001)


def test_sigmoid_modgrad_forward_is_sigmoid_and_backward_adds_beta():
    for beta in (0.0, 0.05, 0.3):
        np.testing.assert_array_equal(sigmoid_modgrad(Z, beta), jax.nn.sigmoid(Z))
        g = jax.vmap(jax.grad(lambda z: sigmoid_modgrad(z, beta)))(Z)
        s = jax.nn.sigmoid(Z)
        np.testing.assert_allclose(g, s * (1 - s) + beta, rtol=1e-6, atol=1e-7)


def test_sigmoid_modgrad_chain_rule_inside_a_loss():
    w = jnp.array([0.3, -1.2, 2.0])
    x = jnp.array([1.0, 2.0, -0.5])
    beta = 0.05
    g = jax.grad(lambda w: jnp.sum(sigmoid_modgrad(w * x, beta) ** 2))(w)
    s = jax.nn.sigmoid(w * x)
    np.testing.assert_allclose(g, 2 * s * (s * (1 - s) + beta) * x, rtol=1e-6)


def test_sigmoid_beta_derivative_never_below_beta():
    for beta in (0.01, 0.05, 0.5):
        d = jax.vmap(jax.grad(lambda z: sigmoid_beta(z, beta)))(Z)
        assert float(d.min()) >= beta - 1e-7
        np.testing.assert_allclose(d.min(), beta, atol=1e-6)  # reached in the saturated tails
        np.testing.assert_allclose(sigmoid_beta(Z, beta), jax.nn.sigmoid(Z) + beta * Z, rtol=1e-6)


def test_registry_has_the_issue_activations_and_rejects_unknown():
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "swish"):
        assert float(get_activation(name)(jnp.float32(0.0), 0.0)) == pytest.approx(
            {"sigmoid": 0.5}.get(name, 0.0), abs=1e-6)
    assert "sigmoid_beta" in ACTIVATIONS and "sigmoid_modgrad" in ACTIVATIONS
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("softplus2")


@pytest.mark.parametrize("per_feature", [False, True])
def test_standardize_gives_zero_mean_unit_std(per_feature):
    x = jax.random.normal(jax.random.PRNGKey(0), (256, 20)) * 7.0 + 3.0
    y = Standardize(per_feature=per_feature).apply({}, x)
    axes = 0 if per_feature else None
    np.testing.assert_allclose(y.mean(axis=axes), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=axes), 1.0, atol=1e-4)


@pytest.mark.parametrize("per_feature", [False, True])
def test_standardize_survives_a_constant_input(per_feature):
    y = Standardize(per_feature=per_feature).apply({}, jnp.full((8, 5), 4.2))
    assert bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_allclose(y, 0.0, atol=1e-3)
    g = jax.grad(lambda x: Standardize(per_feature=per_feature).apply({}, x).sum())(jnp.full((8, 5), 4.2))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_standardize_mask_ignores_padding_rows():
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 4))
    padded = jnp.concatenate([x, jnp.full((6, 4), 1e6)])
    mask = jnp.arange(16) < 10
    y = Standardize().apply({}, padded, mask=mask)
    np.testing.assert_allclose(y[:10], Standardize().apply({}, x), rtol=1e-5, atol=1e-5)
