"""The padding of a partial last minibatch is invisible, and evaluation runs in inference mode.

A training step on k real rows padded to a full batch (the engine's last minibatch) must equal the
same step on exactly those k rows: loss, accuracy count, gradient, new parameters and new
BatchNorm running statistics -- for every normalisation, whose statistics would otherwise count
the padding rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import synthetic
from vgjax.config import Config
from vgjax.nn.models import build_model
from vgjax.optim.registry import make_optimizer
from vgjax.train.engine import create_train_state, make_engine

pytestmark = pytest.mark.fast

REAL, BATCH = 5, 16


def setup(norm, batch_size):
    cfg = Config(depth=2, width=8, norm=norm, batch_size=batch_size, lr=0.1)
    model, tx = build_model(cfg), make_optimizer(cfg)
    return make_engine(cfg, model, tx), create_train_state(model, tx, jax.random.PRNGKey(1))


@pytest.mark.parametrize("norm", ["none", "batchnorm", "standardize", "standardize_feature"])
def test_a_padded_step_equals_the_step_on_the_real_rows(norm):
    data = synthetic(n=32)
    rows = jnp.array([3, 17, 8, 25, 11])
    key = jax.random.PRNGKey(9)
    engine, state = setup(norm, BATCH)
    padded = jnp.concatenate([rows, jnp.zeros(BATCH - REAL, rows.dtype)])
    mask = jnp.arange(BATCH) < REAL
    got, out = jax.jit(engine.train_step)(state, data.x_train, data.y_train, padded, mask, key)
    engine_k, _ = setup(norm, REAL)
    want, out_k = jax.jit(engine_k.train_step)(state, data.x_train, data.y_train, rows, jnp.ones(REAL, bool), key)
    for k in ("loss_sum", "correct", "count"):
        np.testing.assert_allclose(out[k], out_k[k], rtol=1e-5, err_msg=k)
    assert float(out["count"]) == REAL
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)  # noqa: E731
    jax.tree_util.tree_map(close, out["grad_norm"], out_k["grad_norm"])
    jax.tree_util.tree_map(close, got.params, want.params)
    jax.tree_util.tree_map(close, got.batch_stats, want.batch_stats)


def test_accuracy_counts_only_real_rows():
    """With all-zero weights every logit ties, argmax is class 0: 'correct' counts real label-0 rows."""
    data = synthetic(n=200)
    engine, state = setup("none", BATCH)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
    state = state.replace(params=zeros)
    labels = np.asarray(data.y_train)
    rows = np.flatnonzero(labels != 0)[:REAL]  # real rows whose label is not 0 ...
    padded = np.concatenate([rows, np.full(BATCH - REAL, np.flatnonzero(labels == 0)[0])])  # ... padding with label 0
    mask = jnp.arange(BATCH) < REAL
    _, out = jax.jit(engine.train_step)(state, data.x_train, data.y_train, jnp.asarray(padded), mask,
                                         jax.random.PRNGKey(0))
    assert float(out["correct"]) == 0.0


def test_evaluate_uses_running_statistics_and_no_dropout():
    cfg = Config(depth=2, width=8, norm="batchnorm", dropout=0.5, eval_batch_size=16)
    model, tx = build_model(cfg), make_optimizer(cfg)
    engine = make_engine(cfg, model, tx)
    state = create_train_state(model, tx, jax.random.PRNGKey(2))
    stats = jax.tree_util.tree_map(lambda v: v + 0.3, state.batch_stats)  # away from mean 0 / var 1
    state = state.replace(batch_stats=stats)
    data = synthetic(n=16, n_test=40)
    ev = jax.jit(engine.evaluate)(state, data.x_test, data.y_test)
    logits = model.apply({"params": state.params, "batch_stats": stats},
                         np.asarray(data.x_test, np.float32) / 255.0, train=False)
    y = np.asarray(data.y_test)
    logp = jax.nn.log_softmax(logits)
    np.testing.assert_allclose(ev["loss"], -np.mean(np.asarray(logp)[np.arange(40), y]), rtol=1e-5)
    np.testing.assert_allclose(ev["accuracy"], np.mean(np.argmax(logits, -1) == y), rtol=1e-6)
