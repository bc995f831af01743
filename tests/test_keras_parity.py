"""vgjax against the original Keras models, step by step (docs/study.md, "Framework semantics").

For every model and remedy of the study and two training runs of the staged schedule: the
original Keras model is built as the original code builds it, vgjax's initial parameters are
copied into it, and both train on the same 101 minibatches of real Fashion-MNIST in vgjax's
shuffled order (100 of 32 images and a partial last one of 17). Per-step losses, final
parameters and BatchNorm's moving statistics must agree. A second test checks the other half of
fidelity, the initialisation itself: vgjax's initial parameters must be distributed as Keras'
own (shared hidden draw, Glorot-uniform output layer, zero biases).

Tolerance. Both sides compute in float32 (unit roundoff 6e-8) but sum the 784- and 128-term dot
products and the batch means in different orders (XLA vs TensorFlow's Eigen kernels), so each
step's loss and gradient differ by a few ulps. Measured over the 101 steps: per-step losses agree
to 2.2e-7 relative and final parameters to 1.2e-7 of their largest magnitude (batchnorm and
weight_std_1 the largest), i.e. a few float32 ulps. The assertions allow 1e-5 on both: ~50x the
largest drift measured, yet far below every semantic difference tried (a Normal(0, 0.05) output
layer, independent draws, optax's Adam instead of Keras', a kept output layer in a staged run,
BatchNorm momentum 0.9, a loss averaged over the padded rows of the partial batch: each fails).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("tensorflow")
kr = pytest.importorskip("tests.keras_reference")

from vgjax.methods import get_config  # noqa: E402
from vgjax import data as data_lib  # noqa: E402
from vgjax.nn.models import build_model, init_variables  # noqa: E402
from vgjax.optim.registry import make_optimizer  # noqa: E402
from vgjax.run.runner import setup_stage  # noqa: E402
from vgjax.train.stages import run_table  # noqa: E402
from vgjax.train.engine import _batches, create_train_state, make_engine, scale_pixels  # noqa: E402

N = 100 * 32 + 17  # 101 minibatches, the last one partial
LOSS_RTOL = 1e-5
PARAM_TOL = 1e-5

STUDY_METHODS = ["baseline_3", "baseline_5", "baseline_7", "weight_std_1", "weight_std_10", "relu", "tanh",
                "adam", "batchnorm", "custom_norm", "skip"]


@pytest.fixture(scope="module")
def arrays():
    try:
        d = data_lib.load()
    except data_lib.DataError as e:
        if os.environ.get("CI"):
            pytest.fail(f"Fashion-MNIST must be available in CI: {e}")
        pytest.skip(f"Fashion-MNIST not found: {e}")
    return d.x_train[:N], d.y_train[:N].astype(np.int32)


def vgjax_steps(config, engine, state, x_u8, y, steps=None):
    """vgjax's epoch 1 (or its first ``steps``) as separate jitted steps: (per-step losses, final
    state, index batches)."""
    epoch_key = jax.random.fold_in(state.key, state.epoch)  # the rule of Engine.epoch
    perm = jax.random.permutation(jax.random.fold_in(epoch_key, 0), x_u8.shape[0])
    idx, mask = _batches(x_u8.shape[0], config.batch_size, perm)
    step = jax.jit(engine.train_step)
    xd, yd = jnp.asarray(x_u8), jnp.asarray(y)
    losses = []
    idx, mask = idx[:steps], mask[:steps]
    for i in range(idx.shape[0]):
        state, out = step(state, xd, yd, idx[i], mask[i], None)
        losses.append(float(out["loss_sum"] / out["count"]))
    batches = [np.asarray(b)[np.asarray(m)] for b, m in zip(idx, mask)]
    return np.array(losses), state, batches


def keras_steps(model, params, stats, x_u8, y, batches):
    """Keras on the same batches. It gets vgjax's own float32 pixels: XLA computes x / 255 as
    x * (1/255), which can differ from the correctly rounded quotient in the last bit; only the
    std-10 network is sensitive enough to notice (a 6e-8 pixel difference moves its logits by 4e-4)."""
    kr.set_from_vgjax(model, params, stats)
    pixels = np.asarray(jax.jit(scale_pixels)(jnp.asarray(x_u8)))
    return np.array(kr.train_batches(model, pixels, y, batches))


def assert_close_trees(vg: dict, ke: dict, what: str) -> None:
    assert set(vg) == set(ke), what
    for name in vg:
        for k in vg[name]:
            a, b = np.asarray(vg[name][k]), np.asarray(ke[name][k])
            tol = PARAM_TOL * max(1.0, float(np.abs(b).max()))
            err = float(np.abs(a - b).max())
            assert err <= tol, f"{what} {name}/{k}: max |vgjax - keras| = {err:.3g} > {tol:.3g}"


def compare(config, engine, state, x_u8, y, model, frozen=(), steps=None):
    params0 = jax.tree_util.tree_map(np.asarray, state.params)
    stats0 = jax.tree_util.tree_map(np.asarray, state.batch_stats)
    vg_losses, final, batches = vgjax_steps(config, engine, state, x_u8, y, steps)
    assert steps is not None or (len(batches) == 101 and len(batches[-1]) == 17)
    ke_losses = keras_steps(model, params0, stats0, x_u8, y, batches)
    np.testing.assert_allclose(vg_losses, ke_losses, rtol=LOSS_RTOL, atol=LOSS_RTOL,
                               err_msg=f"{config.method}: per-step losses")
    ke_params, ke_stats = kr.get_weights(model)
    vg_params = jax.tree_util.tree_map(np.asarray, final.params)
    assert_close_trees(vg_params, ke_params, f"{config.method} parameters")
    if config.norm == "batchnorm":
        assert_close_trees(jax.tree_util.tree_map(np.asarray, final.batch_stats), ke_stats,
                           f"{config.method} BatchNorm moving statistics")
    for name in frozen:  # frozen layers: bit-for-bit unchanged on both sides
        for k in params0[name]:
            assert np.array_equal(vg_params[name][k], params0[name][k]), (name, k)
            assert np.array_equal(ke_params[name][k], params0[name][k]), (name, k)
    return final


# Kernels of std 10 saturate the sigmoids (median |pre-activation| ~ 60): there the float32
# gradient itself is ill-conditioned (both frameworks' first-step gradients of hidden layer 1
# differ from the float64 one by 3–20 %), and training is chaotic: even in float64, with equal
# pixels, a difference in the last bit grows ~100x per step (1e-15 at step 1, 4e-6 at step 5,
# 2e-2 at step 7). So this model is compared in float64 over its first 4 steps.
FLOAT64_STEPS = {"weight_std_10": 4}


@pytest.mark.parametrize("method", STUDY_METHODS)
def test_training_steps_match_keras(arrays, method):
    x_u8, y = arrays
    config = get_config(method)
    model, tx = build_model(config), make_optimizer(config)
    state = create_train_state(model, tx, jax.random.PRNGKey(0))
    engine = make_engine(config, model, tx)
    kr.seed(0)
    if method not in FLOAT64_STEPS:
        compare(config, engine, state, x_u8, y, kr.compile_model(kr.build(config), config))
        return
    with jax.enable_x64(True), kr.floatx("float64"):
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), state.params)
        state = state.replace(params=params, opt_state=tx.init(params))
        compare(config, engine, state, x_u8, y, kr.compile_model(kr.build(config), config),
                steps=FLOAT64_STEPS[method])


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_staged_runs_match_keras(arrays, norm):
    """Runs 2 (sub-model 1 frozen) and 3 (unfrozen) of remedy 6, each a new model with a new
    output layer, trained after run 1's weights carried over. With BatchNorm in the sub-models
    (a variant): Keras 3 runs a frozen sub-model's BatchNormalization in inference mode (moving
    statistics, not updated), vgjax's frozen norm layers must too; run 1 is trained for a few
    steps first, so that the moving statistics differ from a batch's own."""
    x_u8, y = arrays
    config = get_config("freeze", norm=norm)
    table = run_table(config)
    run1, run2, run3 = table.stages[:3]
    assert (run2.stacked, run2.frozen, run3.stacked, run3.frozen) == ((1, 2), (1,), (1, 2), ())
    kr.seed(0)
    subs = kr.submodels(table.sizes, norm=norm)
    setup = setup_stage(config, table, run1, None)
    state = setup.state
    if norm == "batchnorm":
        _, state, _ = vgjax_steps(config, setup.engine, state, x_u8, y, steps=20)
        assert not np.allclose(np.asarray(state.batch_stats["norm_1"]["mean"]), 0)
    for run in (run2, run3):
        setup = setup_stage(config, table, run, state)
        # a new Dense(10) with Keras' defaults, not the previous run's output layer
        out = np.asarray(setup.state.params["output"]["kernel"])
        assert not np.allclose(out, np.asarray(state.params["output"]["kernel"]))
        assert np.all(np.asarray(setup.state.params["output"]["bias"]) == 0)
        frozen = [n for n in table.frozen_layer_names(run) if n in setup.state.params]
        model = kr.compile_model(kr.staged(subs, run.stacked, run.frozen), config)
        state = compare(config, setup.engine, setup.state, x_u8, y, model, frozen)


def _keras_initial(config) -> dict:
    kr.seed(1)
    return kr.get_weights(kr.build(config))[0]


@pytest.mark.parametrize("method", ["baseline_7", "weight_std_10", "skip"])
def test_initialisation_is_distributed_as_keras(method):
    """Same structure (identical hidden layers from the shared draw) and same distributions
    (two-sample Kolmogorov–Smirnov distance per layer) as the original model's own init."""
    config = get_config(method)
    vg = jax.tree_util.tree_map(np.asarray, init_variables(build_model(config), jax.random.PRNGKey(0))["params"])
    ke = _keras_initial(config)
    assert set(vg) == set(ke)
    for side in (vg, ke):
        assert all(np.array_equal(side["hidden_2"]["kernel"], side[f"hidden_{i}"]["kernel"])
                   for i in range(3, config.depth + 1))
        assert np.array_equal(side["hidden_1"]["kernel"][:128], side["hidden_2"]["kernel"])
        assert all(np.all(side[n]["bias"] == 0) for n in side)
    for name in vg:
        a, b = np.sort(vg[name]["kernel"].ravel()), np.sort(ke[name]["kernel"].ravel())
        grid = np.concatenate([a, b])
        ks = np.abs(np.searchsorted(a, grid, "right") / a.size - np.searchsorted(b, grid, "right") / b.size).max()
        # the 1e-3 critical value of the two-sample KS test for these sizes (10 x 128 at least)
        crit = 1.95 * np.sqrt((a.size + b.size) / (a.size * b.size))
        assert ks < crit, f"{method} {name}: KS distance {ks:.3f} >= {crit:.3f}"


def test_the_benchmarks_keras_side_reshuffles_every_epoch():
    """benchmarks/keras_parity.py feeds Keras a new order each epoch, as vgjax and the study shuffle;
    a seeded ``fit(shuffle=True)`` would repeat its first epoch's order (docs/results.md)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "keras_parity.py"
    spec = importlib.util.spec_from_file_location("keras_parity_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    orders = bench.keras_epoch_orders(0, 1000, 3)
    assert all(sorted(o) == list(range(1000)) for o in orders)
    assert not any(np.array_equal(a, b) for i, a in enumerate(orders) for b in orders[i + 1:])
    assert not np.array_equal(orders[0], bench.keras_epoch_orders(1, 1000, 1)[0])


def test_the_batch_statistics_layer_is_evaluated_as_keras_does(arrays):
    """custom_norm's layer standardises with the statistics of the batch it is given, so its
    validation metrics depend on the evaluation batch: by default vgjax evaluates it in batches of
    the fit batch size (32), as Keras' ``fit`` evaluates validation data (``validation_batch_size``
    defaults to ``batch_size``, itself 32) and ``evaluate`` does; the last batch is partial (17 rows)."""
    x_u8, y = arrays
    config = get_config("custom_norm")
    assert config.evaluation_batch_size() == config.batch_size == 32
    assert get_config("batchnorm").evaluation_batch_size() == 2000  # moving statistics: no dependence
    model, tx = build_model(config), make_optimizer(config)
    engine = make_engine(config, model, tx)
    _, state, _ = vgjax_steps(config, engine, create_train_state(model, tx, jax.random.PRNGKey(0)), x_u8, y,
                              steps=30)
    vg = jax.device_get(jax.jit(engine.evaluate)(state, jnp.asarray(x_u8), jnp.asarray(y)))
    kr.seed(0)
    keras_model = kr.compile_model(kr.build(config), config)
    kr.set_from_vgjax(keras_model, jax.tree_util.tree_map(np.asarray, state.params))
    pixels = np.asarray(jax.jit(scale_pixels)(jnp.asarray(x_u8)))
    ke = keras_model.evaluate(pixels, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(float(vg["loss"]), ke["loss"], rtol=LOSS_RTOL)
    assert abs(float(vg["accuracy"]) - ke["accuracy"]) <= 1 / len(y)
