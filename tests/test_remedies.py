"""The study's methods: each trains, and the main claim holds on real data under a short budget."""

import jax
import numpy as np
import pytest

from vgjax.methods import get_config, method_names
from tests.conftest import synthetic
from vgjax.nn.models import build_model
from vgjax.optim.registry import make_optimizer
from vgjax.run.runner import setup_stage
from vgjax.train.stages import run_table
from vgjax.train.engine import DeviceData, create_train_state, fit, make_engine


@pytest.mark.parametrize("method", [m for m in method_names() if m != "freeze"])
def test_every_method_trains_a_step(method):
    """Two SGD steps on 64 synthetic images: a finite loss, and the output layer moved."""
    cfg = get_config(method, batch_size=32)
    model, tx = build_model(cfg), make_optimizer(cfg)
    engine = make_engine(cfg, model, tx)
    state = create_train_state(model, tx, jax.random.PRNGKey(0))
    data = synthetic(n=64)  # two steps: ADOPT makes no update on its first step
    new, metrics = jax.jit(engine.epoch)(state, data.x_train, data.y_train)
    assert np.isfinite(float(metrics["loss"]))
    moved = jax.tree_util.tree_map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), state.params, new.params)
    assert all(jax.tree_util.tree_leaves(moved["output"]))  # the output layer always learns


def test_freeze_method_first_stage_trains_a_step():
    cfg = get_config("freeze", epochs_scale=0.01)
    table = run_table(cfg)
    setup = setup_stage(cfg, table, table.stages[0], None)
    data = synthetic(n=32)
    _, metrics = jax.jit(setup.engine.epoch)(setup.state, data.x_train, data.y_train)
    assert np.isfinite(float(metrics["loss"])) and list(setup.state.params) == ["hidden_1", "hidden_2", "output"]


@pytest.fixture(scope="module")
def fashion_subset(fashion_mnist_dir):
    from vgjax.data import load

    d = load(fashion_mnist_dir)
    return DeviceData.from_numpy(d.x_train, d.y_train, d.x_test[:2000], d.y_test[:2000], train_limit=5000)


@pytest.mark.slow
def test_remedies_beat_baseline_7_under_a_short_equal_budget(fashion_subset):
    """baseline_7 stays at chance while the fast remedies are clearly above it.

    Budget: the first 5,000 training images, 3 epochs, batch 32 (470 steps), SGD lr 0.01 unless
    the method says otherwise; validation on the first 2,000 test images. Measured (seed 0) on the
    original's models (shared hidden draw, Glorot-uniform output layer), val accuracy after 3
    epochs: baseline_7 0.102; weight_std_1 0.275; batchnorm 0.770; custom_norm 0.775. (On the
    earlier models, with independent draws and a Normal(0, 0.05) output layer, weight_std_1 reached
    0.48: its identical std-1 layers start slower.) The other remedies need longer to separate
    under this budget and are judged by the full 300-epoch runs instead.
    Thresholds: chance is 0.10 (balanced classes); baseline_7 must stay below 0.15, each remedy
    must exceed 0.2 — well above the baseline's ceiling and below the lowest remedy measured, so
    a real regression (e.g. a broken normalisation) fails it.
    """
    accs = {}
    for method in ("baseline_7", "weight_std_1", "batchnorm", "custom_norm"):
        cfg = get_config(method, seed=0)
        model, tx = build_model(cfg), make_optimizer(cfg)
        result = fit(make_engine(cfg, model, tx), create_train_state(model, tx, jax.random.PRNGKey(0)),
                     fashion_subset, 3)
        accs[method] = result.history[-1]["val_accuracy"]
    assert accs["baseline_7"] < 0.15, accs
    for method in ("weight_std_1", "batchnorm", "custom_norm"):
        assert accs[method] > 0.2, accs
