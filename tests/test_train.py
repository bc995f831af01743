"""The engine: one scanned step equals hand-computed SGD; masking; determinism; divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tests.conftest import synthetic
from vgjax.config import Config
from vgjax.nn.models import build_model
from vgjax.optim.registry import make_optimizer
from vgjax.train.engine import DeviceData, create_train_state, fit, make_engine


def _setup(cfg, seed=0):
    model, tx = build_model(cfg), make_optimizer(cfg)
    return make_engine(cfg, model, tx), create_train_state(model, tx, jax.random.PRNGKey(seed))


def manual_forward(params, x, depth):
    h = x
    for i in range(1, depth + 1):
        h = jax.nn.sigmoid(h @ params[f"hidden_{i}"]["kernel"] + params[f"hidden_{i}"]["bias"])
    return h @ params["output"]["kernel"] + params["output"]["bias"]


def test_one_scanned_step_equals_hand_computed_sgd():
    cfg = Config(depth=2, batch_size=8, lr=0.5)
    data = synthetic(n=8)
    engine, state = _setup(cfg)
    p0 = jax.tree_util.tree_map(np.asarray, state.params)
    new_state, metrics = jax.jit(engine.epoch)(state, data.x_train, data.y_train)
    # The whole set is one batch: the shuffle only permutes rows, the mean loss does not change.
    x = np.asarray(data.x_train, np.float32) / 255.0
    y = np.asarray(data.y_train)

    def loss(p):
        logits = manual_forward(p, x, 2)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), y])

    l0, g = jax.value_and_grad(loss)(p0)
    expected = jax.tree_util.tree_map(lambda w, gw: w - 0.5 * gw, p0, g)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                           new_state.params, expected)
    np.testing.assert_allclose(metrics["loss"], l0, rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"]["hidden_1"], np.linalg.norm(g["hidden_1"]["kernel"]), rtol=1e-4)
    assert int(new_state.epoch) == 1


def test_partial_last_batch_is_masked_like_keras():
    """60 examples at batch 32 = one batch of 32 and one of 28 (not padded with fake rows)."""
    cfg = Config(depth=1, batch_size=32, lr=0.1)
    data = synthetic(n=60)
    engine, state = _setup(cfg)
    new_state, metrics = jax.jit(engine.epoch)(state, data.x_train, data.y_train)
    # replay by hand with the same permutation
    epoch_key = jax.random.fold_in(state.key, 0)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(epoch_key, 0), 60))
    x = np.asarray(data.x_train, np.float32) / 255.0
    y = np.asarray(data.y_train)
    p = state.params
    total = 0.0
    for idx in (perm[:32], perm[32:]):
        def loss(p):
            logits = manual_forward(p, x[idx], 1)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(idx)), y[idx]])
        l, g = jax.value_and_grad(loss)(p)
        total += float(l) * len(idx)
        p = jax.tree_util.tree_map(lambda w, gw: w - 0.1 * gw, p, g)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new_state.params, p)
    np.testing.assert_allclose(metrics["loss"], total / 60, rtol=1e-5)


def test_runs_are_bit_for_bit_deterministic():
    cfg = Config(depth=3, batch_size=16, norm="batchnorm", dropout=0.2)
    data = synthetic(n=100)
    results = []
    for _ in range(2):
        engine, state = _setup(cfg, seed=7)
        results.append(fit(engine, state, data, 3))
    a, b = results
    jax.tree_util.tree_map(np.testing.assert_array_equal, a.state.params, b.state.params)
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in h]
    assert strip(a.history) == strip(b.history)
    engine, state = _setup(cfg, seed=8)
    c = fit(engine, state, data, 3)
    assert strip(c.history) != strip(a.history)


def test_huge_learning_rate_diverges_and_is_detected():
    cfg = Config(depth=2, activation="linear", init_std=10.0, lr=1e3, batch_size=16)
    engine, state = _setup(cfg)
    result = fit(engine, state, synthetic(n=64), 20)
    assert result.status == "diverged"
    assert result.diverged_epoch == len(result.history) < 20
    assert not np.isfinite(result.history[-1]["loss"])


def test_evaluate_matches_a_direct_computation():
    cfg = Config(depth=2, eval_batch_size=16)  # 40 test rows: batches of 16, 16, 8
    data = synthetic()
    engine, state = _setup(cfg)
    ev = jax.jit(engine.evaluate)(state, data.x_test, data.y_test)
    logits = manual_forward(state.params, np.asarray(data.x_test, np.float32) / 255.0, 2)
    y = np.asarray(data.y_test)
    np.testing.assert_allclose(ev["loss"], optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), rtol=1e-5)
    np.testing.assert_allclose(ev["accuracy"], np.mean(np.argmax(logits, -1) == y), rtol=1e-6)


def test_train_limit_keeps_the_first_rows():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 784), np.uint8)
    d = DeviceData.from_numpy(x, np.arange(50) % 10, x[:5], np.arange(5), train_limit=20)
    assert d.x_train.shape == (20, 784)
    np.testing.assert_array_equal(d.x_train, x[:20])


def test_unrolling_the_epoch_changes_the_loop_not_the_steps():
    """Config.unroll (lax.scan's unroll): the same steps in the same order, so on a CPU the same
    parameters and metrics bit for bit, including an epoch whose steps are not a multiple of it."""
    data = synthetic(n=200, n_test=40)  # 7 steps of 32, the last one partial
    out = {}
    for unroll in (1, 3):
        cfg = Config(depth=3, width=16, batch_size=32, diagnostics=False, unroll=unroll)
        model, tx = build_model(cfg), make_optimizer(cfg)
        engine = make_engine(cfg, model, tx)
        assert engine.unroll == unroll
        state = create_train_state(model, tx, jax.random.PRNGKey(1))
        state, metrics = jax.jit(engine.epoch)(state, data.x_train, data.y_train)
        out[unroll] = jax.device_get((state.params, metrics["loss"], metrics["accuracy"]))
    jax.tree_util.tree_map(np.testing.assert_array_equal, out[1], out[3])
