"""docs/study.md §6 toolbox: initialisers, regularisers, dropout, early stopping, best checkpoints."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import synthetic
from vgjax.nn import inits
from vgjax.run.callbacks import BestCheckpoint, EarlyStopping
from vgjax.config import Config
from vgjax.nn.models import build_model, init_variables
from vgjax.optim.registry import make_optimizer
from vgjax.run.rundir import RunDir
from vgjax.run.runner import load_saved_state, run
from vgjax.train.stages import run_table
from vgjax.train.engine import create_train_state, kernel_penalty, make_engine

FAN_IN, FAN_OUT = 400, 300
N = FAN_IN * FAN_OUT  # 120,000 draws: the sample variance has relative std sqrt(2/N) ~ 0.4%

EXPECTED_VAR = {  # the formula each initializer promises, with std=0.2, scale=0.7
    "random_normal": 0.2 ** 2,
    "random_uniform": 0.7 ** 2 / 3,
    "truncated_normal": 0.2 ** 2 * 0.773741,  # N(0, s^2) cut at +-2s keeps 77.37% of the variance
    "glorot_normal": 0.7 * 2 / (FAN_IN + FAN_OUT),
    "glorot_uniform": 0.7 * 2 / (FAN_IN + FAN_OUT),
    "he_normal": 0.7 * 2 / FAN_IN,
    "he_uniform": 0.7 * 2 / FAN_IN,
    "lecun_normal": 0.7 / FAN_IN,
    "lecun_uniform": 0.7 / FAN_IN,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_VAR))
def test_initializer_variance_matches_its_formula(name):
    w = np.asarray(inits.make_initializer(name, std=0.2, scale=0.7)(jax.random.PRNGKey(0), (FAN_IN, FAN_OUT)))
    # 5% tolerance is > 10 standard errors of the sample variance: it cannot pass by accident
    # for a wrong formula (the nearest alternative, e.g. fan_in vs fan_avg, differs by 14%).
    assert w.var() == pytest.approx(EXPECTED_VAR[name], rel=0.05)
    assert abs(w.mean()) < 5 * math.sqrt(EXPECTED_VAR[name] / N)


def test_orthogonal_constant_zeros_ones():
    q = np.asarray(inits.make_initializer("orthogonal", scale=1.0)(jax.random.PRNGKey(1), (128, 128)))
    np.testing.assert_allclose(q.T @ q, np.eye(128), atol=1e-4)
    r = np.asarray(inits.make_initializer("orthogonal", scale=2.0)(jax.random.PRNGKey(1), (784, 128)))
    np.testing.assert_allclose(r.T @ r, 4 * np.eye(128), atol=1e-3)  # orthonormal columns, scaled
    assert np.all(np.asarray(inits.make_initializer("constant", scale=0.3)(None, (3, 4))) == np.float32(0.3))
    assert np.all(np.asarray(inits.make_initializer("zeros")(None, (3, 4))) == 0)
    assert np.all(np.asarray(inits.make_initializer("ones")(None, (3, 4))) == 1)


def test_user_defined_initializer_by_name_and_by_function():
    inits.register_initializer("halves", lambda std, scale: (lambda key, shape, dtype=jnp.float32: jnp.full(shape, 0.5, dtype)))
    params = init_variables(build_model(Config(init="halves", depth=1)), jax.random.PRNGKey(0))["params"]
    assert np.all(np.asarray(params["hidden_1"]["kernel"]) == 0.5)
    minus_one = lambda key, shape, dtype=jnp.float32: jnp.full(shape, -1.0, dtype)  # noqa: E731
    params = init_variables(build_model(Config(depth=1), kernel_init=minus_one), jax.random.PRNGKey(0))["params"]
    assert np.all(np.asarray(params["hidden_1"]["kernel"]) == -1)
    assert np.abs(np.asarray(params["output"]["kernel"])).max() <= np.sqrt(6 / (128 + 10))  # Keras' Glorot
    model = build_model(Config(depth=1, output_init="hidden"), kernel_init=minus_one)
    assert np.all(np.asarray(init_variables(model, jax.random.PRNGKey(0))["params"]["output"]["kernel"]) == -1)


def test_penalties_equal_their_formulas_and_change_the_gradient():
    params = {"hidden_1": {"kernel": jnp.array([[1.0, -2.0], [0.5, -0.25]]), "bias": jnp.array([3.0, -3.0])}}
    assert float(kernel_penalty(params, 0.1, 0.0)) == pytest.approx(0.1 * 3.75)
    assert float(kernel_penalty(params, 0.0, 0.01)) == pytest.approx(0.01 * 5.3125)
    assert float(kernel_penalty(params, 0.1, 0.01)) == pytest.approx(0.375 + 0.053125)  # elastic net
    assert float(kernel_penalty(params, 0.1, 0.0, include_bias=True)) == pytest.approx(0.1 * 9.75)
    g = jax.grad(lambda p: kernel_penalty(p, 0.1, 0.01))(params)
    k = params["hidden_1"]["kernel"]
    np.testing.assert_allclose(g["hidden_1"]["kernel"], 0.1 * jnp.sign(k) + 0.02 * k, rtol=1e-6)
    np.testing.assert_array_equal(g["hidden_1"]["bias"], 0.0)


def test_regulariser_is_added_to_the_training_loss_and_reported_separately():
    data = synthetic(n=32)
    out = {}
    for l2 in (0.0, 0.01):
        cfg = Config(depth=2, batch_size=32, l2=l2)
        model, tx = build_model(cfg), make_optimizer(cfg)
        engine = make_engine(cfg, model, tx)
        state = create_train_state(model, tx, jax.random.PRNGKey(0))
        new, m = jax.jit(engine.epoch)(state, data.x_train, data.y_train)
        out[l2] = (state, new, m)
    s0, n0, m0 = out[0.0]
    s1, n1, m1 = out[0.01]
    assert float(m0["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-6)  # same data loss
    assert float(m1["reg_loss"]) == pytest.approx(float(kernel_penalty(s1.params, 0.0, 0.01)), rel=1e-5)
    # SGD: the L2 term adds lr * 2 * l2 * W to each kernel's step
    delta = np.asarray(n0.params["hidden_2"]["kernel"]) - np.asarray(n1.params["hidden_2"]["kernel"])
    np.testing.assert_allclose(delta, 0.01 * 2 * 0.01 * np.asarray(s1.params["hidden_2"]["kernel"]), atol=1e-7)


def test_dropout_train_vs_eval_keep_fraction_and_determinism():
    model = build_model(Config(depth=1, dropout=0.3, activation="linear"))
    variables = init_variables(model, jax.random.PRNGKey(0))
    x = jnp.ones((256, 784))
    _, inter = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(5)},
                           mutable=["intermediates"])
    h_train = np.asarray(inter["intermediates"]["hidden_1_out"][0])
    _, inter_eval = model.apply(variables, x, train=False, mutable=["intermediates"])
    h_eval = np.asarray(inter_eval["intermediates"]["hidden_1_out"][0])
    kept = h_train != 0
    assert kept.mean() == pytest.approx(0.7, abs=0.01)  # 32,768 units: std of the fraction 0.25%
    np.testing.assert_allclose(h_train[kept], (h_eval / 0.7)[kept], rtol=1e-5)  # inverted dropout
    again = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(5)})
    np.testing.assert_array_equal(again, model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(5)}))
    assert np.all(h_eval == h_eval[0])  # no dropout in evaluation


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_state():
    es = EarlyStopping("val_loss", patience=2, min_delta=0.01, restore_best=True)
    losses = [1.0, 0.8, 0.795, 0.7, 0.71, 0.705, 0.6]  # epoch 3 is not an improvement (< 0.01)
    stops = []
    for epoch, v in enumerate(losses, start=1):
        stops.append(es.on_epoch_end({"epoch": epoch, "val_loss": v}, {"w": np.array([float(epoch)])}, None))
        if stops[-1]:
            break
    assert stops == [False, False, False, False, False, True]
    assert es.stopped_epoch == 6 and es.track.best_epoch == 4
    state, info = es.finalize({"w": np.array([6.0])})
    assert float(state["w"][0]) == 4.0 and info["early_stopping"]["restored_best"]
    acc = EarlyStopping("val_accuracy", patience=1)
    assert acc.track.mode == "max"
    assert acc.on_epoch_end({"epoch": 1, "val_accuracy": 0.5}, None, None) is False
    assert acc.on_epoch_end({"epoch": 2, "val_accuracy": 0.4}, None, None) is True


def test_early_stopping_in_a_real_run_records_why_and_when(tmp_path):
    cfg = Config(depth=2, batch_size=16, epochs=30, lr=2.0)
    rd = RunDir(tmp_path / "r")
    rd.create(cfg.to_dict())
    es = EarlyStopping("val_accuracy", patience=1, min_delta=0.5)  # cannot improve by 0.5 twice
    result = run(cfg, rd, synthetic(n=64), hooks=[es])
    summary = json.loads(rd.summary_path.read_text())
    assert result.status == summary["status"] == "stopped"
    assert summary["epochs_run"] == 2 and summary["early_stopping"]["stopped_epoch"] == 2


def test_best_checkpoint_holds_the_best_epoch_and_reloads_its_metrics(tmp_path):
    cfg = Config(depth=2, batch_size=16, epochs=6, lr=0.5)
    data = synthetic(n=128, n_test=64)
    rd = RunDir(tmp_path / "r")
    rd.create(cfg.to_dict())
    result = run(cfg, rd, data, hooks=[BestCheckpoint(rd.path / "best")])
    best = max(result.history, key=lambda r: r["val_accuracy"])
    saved = json.loads((rd.path / "best" / "best.json").read_text())
    assert saved["epoch"] == best["epoch"]  # first epoch reaching the maximum
    _, engine, state, info = load_saved_state(rd.path, "best")
    assert info["epoch"] == best["epoch"]
    metrics = jax.jit(engine.evaluate)(state, data.x_test, data.y_test)
    assert float(metrics["accuracy"]) == pytest.approx(best["val_accuracy"], abs=1e-7)
    assert float(metrics["loss"]) == pytest.approx(best["val_loss"], rel=1e-6)
    # --init-from: a new run starts from exactly that model
    cfg2 = Config(depth=2, batch_size=16, epochs=1, init_from=str(rd.path))
    rd2 = RunDir(tmp_path / "r2")
    rd2.create(cfg2.to_dict())
    from vgjax.run.runner import setup_stage
    table = run_table(cfg2)
    start = setup_stage(cfg2, table, table.stages[0], None).state
    jax.tree_util.tree_map(np.testing.assert_array_equal, start.params, state.params)
