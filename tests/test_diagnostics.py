"""Per-layer diagnostics inside the jitted epoch, and the histogram hook, against separate
non-jitted computations on tiny networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import synthetic
from vgjax.train import diagnostics as D
from vgjax.train.stages import run_table
from vgjax.run import runner
from vgjax.config import Config
from vgjax.nn.models import build_model
from vgjax.optim.registry import make_optimizer
from vgjax.run.rundir import RunDir
from vgjax.train.stages import Stage
from vgjax.train.engine import create_train_state, make_engine


def manual_preacts(params, x, depth, act=jax.nn.sigmoid):
    """Pre-activations of every hidden layer and the logits, by hand."""
    zs, h = {}, x
    for i in range(1, depth + 1):
        z = h @ params[f"hidden_{i}"]["kernel"] + params[f"hidden_{i}"]["bias"]
        zs[f"hidden_{i}"] = z
        h = act(z)
    return zs, h @ params["output"]["kernel"] + params["output"]["bias"]


def mean_ce(params, x, y, depth):
    logits = manual_preacts(params, x, depth)[1]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), y])


manual_grad = jax.jit(jax.grad(mean_ce), static_argnums=3)


def np_sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def tiny_run(path, config, data, probe_n=16):
    """A real run through runner.run with the diagnostics wired as experiments.run does."""
    rd = RunDir(path)
    rd.create(config.to_dict())
    probe_x, probe_y = D.probe_batch(data, probe_n)
    total = run_table(config).total_epochs
    fn, hooks = D.hooks_for(config, rd, probe_x, probe_y, total)
    return runner.run(config, rd, data, hooks=hooks, diagnostics=fn)


def test_epoch_diagnostics_match_a_separate_computation():
    cfg = Config(depth=2, width=8, batch_size=8, lr=0.5)
    data = synthetic(n=20, n_test=24)  # three steps: 8, 8 and a masked 4
    probe = np.asarray(data.x_test)
    model, tx = build_model(cfg), make_optimizer(cfg)
    engine = make_engine(cfg, model, tx, diagnostics=D.make_epoch_diagnostics(cfg, probe))
    state = create_train_state(model, tx, jax.random.PRNGKey(3))
    p0 = jax.tree_util.tree_map(np.asarray, state.params)
    new_state, m = jax.jit(engine.epoch)(state, data.x_train, data.y_train)
    m = jax.device_get(m)
    p1 = jax.tree_util.tree_map(np.asarray, new_state.params)
    layers = ["hidden_1", "hidden_2", "output"]
    assert set(m["grad_norm_first"]) == set(layers) == set(m["update_ratio"]) == set(m["weight_std"])
    assert set(m["saturation"]) == {"hidden_1", "hidden_2"}

    # grad_norm_first: jax.grad of the same first minibatch, at the epoch's starting weights
    epoch_key = jax.random.fold_in(state.key, 0)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(epoch_key, 0), 20))
    x = np.asarray(data.x_train, np.float32) / 255.0
    y = np.asarray(data.y_train)
    g = manual_grad(p0, x[perm[:8]], y[perm[:8]], 2)
    for name in layers:
        np.testing.assert_allclose(m["grad_norm_first"][name], np.linalg.norm(g[name]["kernel"]), rtol=1e-4)
        # the epoch mean is a different number (three steps)
        assert m["grad_norm_first"][name] != pytest.approx(m["grad_norm"][name], rel=1e-6)
        w0, w1 = p0[name]["kernel"], p1[name]["kernel"]
        np.testing.assert_allclose(m["update_ratio"][name], np.linalg.norm(w1 - w0) / np.linalg.norm(w0), rtol=1e-4)
        np.testing.assert_allclose(m["weight_mean"][name], w1.mean(), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(m["weight_std"][name], w1.std(), rtol=1e-4)

    # saturation: on the probe, at the end-of-epoch weights, sigmoid'(z)/0.25 < 0.1
    zs, _ = manual_preacts(p1, probe.astype(np.float64) / 255.0, 2, act=np_sigmoid)
    for name, z in zs.items():
        s = np_sigmoid(z)
        np.testing.assert_allclose(m["saturation"][name], np.mean(s * (1 - s) / 0.25 < 0.1), atol=1e-6)


# Pre-activations (example A, example B) of five hand-made units:
#   u0: 10, 10   u1: 0, 0   u2: 5, -5   u3: 2, -2   u4: -4, -1
HAND_EXPECTED = {
    "sigmoid": 0.5, "sigmoid_beta": 0.5, "sigmoid_modgrad": 0.5,  # u0 x2, u2 x2, u4 at -4
    "tanh": 0.7,  # also u3 (tanh'(2) = 0.07)
    "relu": 0.4, "leaky_relu": 0.4, "elu": 0.4, "gelu": 0.4,  # dead: u1 (0, 0) and u4 (-4, -1)
    "linear": 0.0,
}


@pytest.mark.parametrize("activation", sorted(HAND_EXPECTED))
def test_saturation_on_a_hand_made_probe(activation):
    cfg = Config(depth=1, width=5, activation=activation)
    model, tx = build_model(cfg), make_optimizer(cfg)
    engine = make_engine(cfg, model, tx)
    state = create_train_state(model, tx, jax.random.PRNGKey(0))
    kernel = np.zeros((784, 5), np.float32)
    kernel[0] = [0, 0, 10, 4, -3]
    bias = np.array([10, 0, -5, -2, -1], np.float32)
    params = {**state.params, "hidden_1": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}}
    state = state.replace(params=params)
    probe = np.zeros((2, 784), np.uint8)
    probe[0, 0] = 255  # example A: pixel 0 = 1.0; example B: all zeros
    zs = D.pre_activations(engine, state, jnp.asarray(probe, jnp.float32) / 255.0)
    np.testing.assert_allclose(zs["hidden_1"], [[10, 0, 5, 2, -4], [10, 0, -5, -2, -1]], atol=1e-5)
    sat = jax.device_get(D.probe_saturation(engine, state, probe))
    assert float(sat["hidden_1"]) == pytest.approx(HAND_EXPECTED[activation])


@pytest.mark.fast
def test_saturation_thresholds_are_ten_percent_of_the_maximum_derivative():
    """Documented boundaries: sigmoid |z| > 3.64 (sigmoid'(z) < 0.1 * 0.25), tanh |z| > 1.82."""
    z = jnp.array([[3.5, 3.8, -3.5, -3.8, 0.0, 2.0, 1.7, 1.9, -1.7, -1.9]])
    assert float(D.saturation_fraction("sigmoid", z)) == pytest.approx(2 / 10)
    assert float(D.saturation_fraction("tanh", z)) == pytest.approx(7 / 10)


def test_saturation_with_batchnorm_and_skips_reads_the_dense_outputs():
    cfg = Config(depth=3, width=6, norm="batchnorm", skips=((1, 3),), activation="tanh")
    model, tx = build_model(cfg), make_optimizer(cfg)
    engine = make_engine(cfg, model, tx)
    state = create_train_state(model, tx, jax.random.PRNGKey(1))
    zs = jax.jit(lambda st, x: D.pre_activations(engine, st, x))(state, jnp.ones((3, 784)) * 0.5)
    assert sorted(zs) == ["hidden_1", "hidden_2", "hidden_3"]
    assert all(z.shape == (3, 6) for z in zs.values())


def test_no_probe_uses_synthetic_images_and_rejects_bad_shapes():
    cfg = Config(depth=1, width=4, batch_size=8)
    fn = D.make_epoch_diagnostics(cfg)  # the benchmark's call
    model, tx = build_model(cfg), make_optimizer(cfg)
    engine = make_engine(cfg, model, tx, diagnostics=fn)
    data = synthetic(n=16, n_test=24)
    _, m = jax.jit(engine.epoch)(create_train_state(model, tx, jax.random.PRNGKey(0)), data.x_train, data.y_train)
    assert 0.0 <= float(m["saturation"]["hidden_1"]) <= 1.0
    with pytest.raises(ValueError, match="784"):
        D.make_epoch_diagnostics(cfg, np.zeros((4, 10), np.uint8))


def test_hooks_for_follows_the_toggle(tmp_path):
    px, py = np.zeros((4, 784), np.uint8), np.zeros(4, np.int32)
    fn, hooks = D.hooks_for(Config(diagnostics=False), tmp_path, px, py, 300)
    assert fn is None and hooks == []
    fn, hooks = D.hooks_for(Config(), tmp_path, px, py, 300)
    assert callable(fn) and len(hooks) == 1 and isinstance(hooks[0], D.HistogramHook)
    assert hooks[0].epochs == (0, 1, 10, 300)
    assert D.resolve_epochs(None, 5) == (0, 1, 5) and D.resolve_epochs([2, -1, 99], 7) == (2, 7)


def test_probe_batch_is_the_first_test_examples():
    data = synthetic(n=8, n_test=600)
    x, y = D.probe_batch(data)
    assert x.shape == (512, 784) and x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(x, np.asarray(data.x_test)[:512])


def test_histogram_hook_writes_weights_and_probe_gradients(tmp_path):
    cfg = Config(depth=2, width=8, batch_size=8)
    data = synthetic(n=16, n_test=24)
    model, tx = build_model(cfg), make_optimizer(cfg)
    engine = make_engine(cfg, model, tx)
    state = create_train_state(model, tx, jax.random.PRNGKey(0))
    px, py = np.asarray(data.x_test)[:16], np.asarray(data.y_test)[:16]
    hook = D.HistogramHook(tmp_path, (0, 2), px, py, total_epochs=2)
    stage = Stage(1, (1,), (), 2)
    hook.on_stage_start(state, engine, stage, 0)
    assert [p.name for p in hook.written] == ["epoch_0000.npz"]
    h = D.load_histograms(hook.written[0])
    assert h["epoch"] == 0 and h["layers"] == ["hidden_1", "hidden_2", "output"]
    g = manual_grad(jax.device_get(state.params), px.astype(np.float32) / 255.0, py, 2)
    for name in h["layers"]:
        w = np.asarray(state.params[name]["kernel"]).ravel()
        gk = np.asarray(g[name]["kernel"]).ravel()
        assert h[name]["weight_counts"].sum() == w.size
        np.testing.assert_array_equal(h[name]["weight_counts"],
                                      np.histogram(w, bins=h[name]["weight_edges"])[0])
        np.testing.assert_allclose(h[name]["weight_edges"][[0, -1]], [-np.abs(w).max(), np.abs(w).max()], rtol=1e-6)
        np.testing.assert_allclose(h[name]["grad_norm"], np.linalg.norm(gk), rtol=1e-4)
        assert h[name]["grad_counts"].sum() == gk.size
        assert h[name]["grad_log10_counts"].sum() + int(h[name]["grad_zero"]) == gk.size
    # vanishing shows in the file: the first layer's gradient mass sits left of the output's
    edges = h["grad_log10_edges"]
    centre = lambda c: np.sum(c * (edges[:-1] + edges[1:]) / 2) / c.sum()  # noqa: E731
    assert centre(h["hidden_1"]["grad_log10_counts"]) < centre(h["output"]["grad_log10_counts"])
    # epochs not asked for write nothing; a resumed stage (state.epoch > 0) does not rewrite epoch 0
    hook.on_epoch_end({"epoch": 1}, state, engine)
    hook.on_stage_start(state.replace(epoch=jnp.asarray(1)), engine, stage, 0)
    hook.on_stage_start(state, engine, Stage(2, (1,), (), 2), 0)
    assert len(hook.written) == 1
    hook.on_epoch_end({"epoch": 2}, state, engine)
    assert (tmp_path / "histograms" / "epoch_0002.npz").exists()


def test_a_staged_run_through_the_runner_records_every_diagnostic(tmp_path):
    cfg = Config(depth=2, width=8, batch_size=8, stages="1-1 | 1:1 | 1+2:2:1", lr=0.1)
    result = tiny_run(tmp_path / "run", cfg, synthetic(n=24, n_test=24))
    assert result.status == "finished"
    rows = RunDir(tmp_path / "run").history()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for metric in ("grad_norm", "grad_norm_first", "update_ratio", "weight_mean", "weight_std"):
        assert {f"{metric}/hidden_1", f"{metric}/output"} <= set(rows[0])
        assert f"{metric}/hidden_2" not in rows[0] and f"{metric}/hidden_2" in rows[2]
    assert "saturation/hidden_1" in rows[0] and "saturation/output" not in rows[0]
    # hidden_1 is frozen in stage 2: its kernel does not move
    assert rows[1]["update_ratio/hidden_1"] == 0.0 and rows[1]["update_ratio/hidden_2"] > 0
    files = sorted(p.name for p in (tmp_path / "run" / "histograms").iterdir())
    assert files == ["epoch_0000.npz", "epoch_0001.npz", "epoch_0003.npz"]
    assert D.load_histograms(tmp_path / "run" / "histograms" / "epoch_0001.npz")["layers"] == ["hidden_1", "output"]


def test_diagnostics_off_adds_no_columns(tmp_path):
    cfg = Config(depth=1, width=4, batch_size=8, epochs=1, diagnostics=False)
    tiny_run(tmp_path / "run", cfg, synthetic(n=8, n_test=24))
    row = RunDir(tmp_path / "run").history()[0]
    assert "grad_norm/hidden_1" in row and not any(k.startswith(("update_ratio", "saturation")) for k in row)
    assert not (tmp_path / "run" / "histograms").exists()
