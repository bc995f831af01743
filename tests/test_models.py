"""The MLP family: shapes, parameter counts, names, skip sums, normalisation placement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgjax.methods import get_config, method_names
from vgjax.config import Config, ConfigError
from vgjax.nn.models import MLP, build_model, count_params, init_variables, layer_names


@pytest.mark.parametrize("depth", [3, 5, 7])
def test_parameter_count_and_names(depth):
    params = init_variables(build_model(Config(depth=depth)), jax.random.PRNGKey(0))["params"]
    expected = 784 * 128 + 128 + (depth - 1) * (128 * 128 + 128) + 128 * 10 + 10
    assert count_params(params) == expected
    assert list(params) == layer_names(depth)
    assert params["hidden_1"]["kernel"].shape == (784, 128)
    assert params["output"]["kernel"].shape == (128, 10)
    for name in params:
        np.testing.assert_array_equal(params[name]["bias"], 0.0)


def test_kernel_init_std_is_the_configured_one():
    for std in (0.05, 1.0, 10.0):
        params = init_variables(build_model(Config(init_std=std)), jax.random.PRNGKey(1))["params"]
        k = np.asarray(params["hidden_1"]["kernel"])  # 100,352 draws: relative error of std ~0.2%
        assert abs(k.std() / std - 1) < 0.01 and abs(k.mean()) < 0.01 * std


def _intermediates(model, x, **kw):
    variables = init_variables(model, jax.random.PRNGKey(0))
    _, state = model.apply(variables, x, mutable=["intermediates"], **kw)
    return variables, state["intermediates"]


def test_skip_sums_are_exactly_the_named_outputs():
    cfg = get_config("skip")
    assert cfg.skips == ((1, 3), (4, 7))
    model = build_model(cfg)
    x = jax.random.uniform(jax.random.PRNGKey(2), (5, 784))
    variables, inter = _intermediates(model, x)
    p = variables["params"]
    act = jax.nn.sigmoid
    h1 = act(x @ p["hidden_1"]["kernel"])
    h2 = act(h1 @ p["hidden_2"]["kernel"])
    h3 = act(h2 @ p["hidden_3"]["kernel"]) + h1  # the (1, 3) path feeds hidden_4
    h4 = act(h3 @ p["hidden_4"]["kernel"])
    h = h4
    for i in (5, 6, 7):
        h = act(h @ p[f"hidden_{i}"]["kernel"])
    h7 = h + h4  # the (4, 7) path feeds the output layer
    np.testing.assert_allclose(inter["skip_sum_3"][0], h3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inter["skip_sum_7"][0], h7, rtol=1e-5, atol=1e-6)
    logits = model.apply(variables, x)
    np.testing.assert_allclose(logits, h7 @ p["output"]["kernel"], rtol=1e-5, atol=1e-5)
    assert set(k for k in inter if k.startswith("skip_sum")) == {"skip_sum_3", "skip_sum_7"}


@pytest.mark.parametrize("skips", [((0, 3),), ((3, 3),), ((2, 8),), ((1, 3), (1, 3))])
def test_bad_skip_paths_are_rejected_at_config_time(skips):
    with pytest.raises(ConfigError):
        Config(skips=skips)


def test_batchnorm_sits_before_each_hidden_dense():
    model = build_model(get_config("batchnorm"))
    variables = init_variables(model, jax.random.PRNGKey(0))
    assert set(variables["batch_stats"]) == {f"norm_{i}" for i in range(1, 8)}
    assert variables["params"]["norm_1"]["scale"].shape == (784,)  # normalises the Dense input
    assert variables["params"]["norm_2"]["scale"].shape == (128,)
    # Keras defaults: momentum 0.99, epsilon 1e-3
    x = jax.random.uniform(jax.random.PRNGKey(3), (64, 784))
    _, upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
    mean_1 = upd["batch_stats"]["norm_1"]["mean"]
    np.testing.assert_allclose(mean_1, 0.01 * x.mean(0), rtol=1e-4, atol=1e-7)


def test_batchnorm_eval_uses_running_statistics():
    model = build_model(get_config("batchnorm", depth=1))
    variables = init_variables(model, jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(4), (32, 784))
    stats = dict(variables["batch_stats"])
    stats["norm_1"] = {"mean": jnp.full((784,), 0.5), "var": jnp.full((784,), 4.0)}
    logits = model.apply({"params": variables["params"], "batch_stats": stats}, x, train=False)
    p = variables["params"]
    xn = (x - 0.5) / jnp.sqrt(4.0 + 1e-3) * p["norm_1"]["scale"] + p["norm_1"]["bias"]
    h = jax.nn.sigmoid(xn @ p["hidden_1"]["kernel"])
    np.testing.assert_allclose(logits, h @ p["output"]["kernel"], rtol=1e-5, atol=1e-5)


def test_custom_norm_standardizes_each_hidden_input():
    model = build_model(get_config("custom_norm", depth=2))
    x = jax.random.uniform(jax.random.PRNGKey(5), (16, 784)) * 3 + 1
    variables, inter = _intermediates(model, x)
    assert "batch_stats" not in variables
    p = variables["params"]
    xs = (x - x.mean()) / jnp.sqrt(x.var() + 1e-6)
    h1 = jax.nn.sigmoid(xs @ p["hidden_1"]["kernel"])
    np.testing.assert_allclose(inter["hidden_1_out"][0], h1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", method_names())
def test_every_method_builds_and_runs_forward(method):
    cfg = get_config(method)
    model = build_model(cfg.replace(depth=cfg.depth))
    variables = init_variables(model, jax.random.PRNGKey(0))
    out = model.apply(variables, jnp.ones((4, 784)) * 0.5)
    assert out.shape == (4, 10) and bool(jnp.all(jnp.isfinite(out)))


def test_mlp_default_is_the_seed_protocol_model():
    m = MLP()
    assert (m.depth, m.width, m.activation) == (7, 128, "sigmoid")
