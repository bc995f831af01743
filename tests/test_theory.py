"""Mean-field theory (vgjax.analysis.theory): integrals, kernels, critical std, and a measured check."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from vgjax.nn import inits, layers
from vgjax.report import figures
from vgjax.analysis import theory as T
from vgjax.analysis import theory_check as TC

QS = [1e-8, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6]


def quad_reference(f, q):
    """E[f(h)], h ~ N(0, q), by adaptive QUADPACK split at the activation's features."""
    s = math.sqrt(q)
    cut = 12 * s
    pts = [p for p in (-64, -16, -4, -1, 0, 1, 4, 16, 64) if -cut < p < cut]
    edges = [-cut] + pts + [cut]
    g = lambda h: float(f(np.array(h))) * math.exp(-h * h / (2 * q)) / math.sqrt(2 * math.pi * q)
    return sum(integrate.quad(g, a, b, epsabs=0, epsrel=1e-12, limit=400)[0]
               for a, b in zip(edges[:-1], edges[1:]))


# --- one-dimensional integrals --------------------------------------------------------------


@pytest.mark.parametrize("q", QS)
def test_relu_closed_forms_through_the_general_integrator(q):
    # the quadrature itself (not the closed-form shortcut): E[relu^2] = q/2, E[relu'^2] = 1/2
    np.testing.assert_allclose(T.expect(lambda h: np.maximum(h, 0) ** 2, q), q / 2, rtol=1e-11)
    np.testing.assert_allclose(T.expect(lambda h: (h > 0).astype(float), q), 0.5, rtol=1e-11)
    phi2, dphi2 = T.moments(T.activation("relu"), q)
    assert phi2 == pytest.approx(q / 2) and dphi2 == pytest.approx(0.5)


def test_tanh_and_sigmoid_near_zero_match_their_series():
    tanh, sig = T.activation("tanh"), T.activation("sigmoid")
    for q in (1e-3, 1e-4):
        phi2, dphi2 = T.moments(tanh, q)
        assert phi2 == pytest.approx(q - 2 * q ** 2 + 17 * q ** 3 / 3, rel=1e-7)
        assert dphi2 == pytest.approx(1 - 2 * q + 7 * q ** 2, rel=1e-7)
        phi2, dphi2 = T.moments(sig, q)
        assert phi2 == pytest.approx(0.25 + q / 16, rel=1e-6)
        assert dphi2 == pytest.approx(1 / 16 - q / 32, rel=1e-6)
    assert T.moments(sig, 1e-12)[1] == pytest.approx(1 / 16, rel=1e-10)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu", "selu", "gelu", "sigmoid_beta"])
def test_moments_agree_with_adaptive_quadrature_up_to_huge_q(name):
    act = T.activation(name)
    for q in QS:
        phi2, dphi2 = T.moments(act, q)
        assert phi2 == pytest.approx(quad_reference(lambda h: act.phi(h) ** 2, q), rel=1e-9)
        assert dphi2 == pytest.approx(quad_reference(lambda h: act.dphi(h) ** 2, q), rel=1e-9)


@pytest.mark.parametrize("q", [1e4, 1e6, 1e8])
def test_huge_q_against_the_asymptotic_series(q):
    # E[sigma'(h)] = (1 - pi^2/(6q) + 7 pi^4/(120 q^2) - ...) / sqrt(2 pi q) (the logistic
    # distribution's moments: E X^2 = pi^2/3, E X^4 = 7 pi^4/15); E[sigma] = 1/2 exactly
    sig = T.activation("sigmoid")
    expected = (1 - math.pi ** 2 / (6 * q) + 7 * math.pi ** 4 / (120 * q * q)) / math.sqrt(2 * math.pi * q)
    assert T.expect(sig.dphi, q) == pytest.approx(expected, rel=1e-9)
    assert T.expect(sig.phi, q) == pytest.approx(0.5, rel=1e-13)
    # E[sigma^2] = E[sigma] - E[sigma'] (sigma^2 = sigma - sigma')
    assert T.moments(sig, q)[0] == pytest.approx(0.5 - expected, rel=1e-9)


def test_gauss_hermite_would_not_be_accurate_for_wide_gaussians():
    """Why the composite rule: 64-node Gauss-Hermite misses sigma'^2 at q = 1e6 by far."""
    z, w = np.polynomial.hermite_e.hermegauss(64)
    gh = np.sum(w / math.sqrt(2 * math.pi) * T.activation("sigmoid").dphi(1e3 * z) ** 2)
    exact = T.moments(T.activation("sigmoid"), 1e6)[1]
    assert abs(gh / exact - 1) > 0.1


# --- pair integrals -------------------------------------------------------------------------


def test_pair_integrator_reproduces_the_arccos_kernel():
    relu_numeric = T.Act("relu_numeric", lambda h: np.maximum(h, 0.0), lambda h: (h > 0).astype(float),
                         smooth=False)
    relu = T.activation("relu")
    for q1, q2 in [(0.3, 0.7), (50.0, 20.0), (1e5, 3e5)]:
        for rho in (-0.7, 0.0, 0.5, 0.95, 0.999):
            c = rho * math.sqrt(q1 * q2)
            num = T.pair_moments(relu_numeric, q1, q2, c)
            ref = T.pair_moments(relu, q1, q2, c)
            np.testing.assert_allclose(num[0], ref[0], rtol=2e-4, atol=1e-6 * math.sqrt(q1 * q2))
            np.testing.assert_allclose(num[1], ref[1], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("q", [0.1, 3.0, 100.0, 1e4])
def test_pair_limits_for_sigmoid(q):
    sig = T.activation("sigmoid")
    # rho = 1: the single-example moments; rho = 0: products of means (E[sigma] = 1/2)
    pf, pd = T.pair_moments(sig, q, q, q)
    phi2, dphi2 = T.moments(sig, q)
    np.testing.assert_allclose([pf[0], pd[0]], [phi2, dphi2], rtol=1e-6)
    pf, pd = T.pair_moments(sig, q, 2 * q, 0.0)
    np.testing.assert_allclose(pf[0], 0.25, rtol=1e-7)
    np.testing.assert_allclose(pd[0], T.expect(sig.dphi, q) * T.expect(sig.dphi, 2 * q), rtol=1e-6)


def test_softmax_error_moments():
    # tiny logits: p ~ uniform, |p|^2 -> 1/10; huge logits: p one-hot, |p|^2 -> 1
    assert T.softmax_sq(1e-8)[0] == pytest.approx(0.1, rel=1e-6)
    assert T.softmax_sq(1e12)[0] == pytest.approx(1.0, abs=1e-4)
    # independent logits: E[p.p'] = sum_k E[p_k]^2 = 1/10; identical logits: E|p|^2
    assert T.softmax_cross(4.0, 9.0, 0.0)[0] == pytest.approx(0.1, abs=3e-3)
    assert T.softmax_cross(4.0, 4.0, 4.0)[0] == pytest.approx(T.softmax_sq(4.0)[0], rel=1e-2)


def test_pair_weights_are_unbiased_for_iid_pairs():
    labels = np.repeat(np.arange(10), 4)
    wd, wo = T._pair_weights(labels, {k: 0.1 for k in range(10)})
    iu = np.triu_indices(len(labels), 1)
    same = (labels[iu[0]] == labels[iu[1]]).astype(float)
    assert wd.sum() == pytest.approx(1) and wo.sum() == pytest.approx(1)
    assert np.sum(wo * same) == pytest.approx(0.1)  # P(same class) for two i.i.d. examples


# --- activations and initialisers match the project's --------------------------------------


def test_every_registry_activation_has_a_theory():
    assert set(T.ACTIVATION_NAMES) == set(layers.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(layers.ACTIVATIONS))
def test_numpy_activations_match_the_registry(name):
    h = np.linspace(-8, 8, 161)
    act, f = T.activation(name, 0.05), layers.ACTIVATIONS[name]
    np.testing.assert_allclose(act.phi(h), np.asarray(f(jnp.asarray(h, jnp.float32), 0.05)), rtol=1e-5, atol=1e-6)
    grad = jax.vmap(jax.grad(lambda z: f(z, 0.05)))(jnp.asarray(h, jnp.float32))
    np.testing.assert_allclose(act.dphi(h), np.asarray(grad), rtol=1e-4, atol=1e-5)  # float32 jax


def test_equivalent_std_of_named_initialisers():
    shape = (512, 128)  # fan_in != fan_out: Glorot, He and orthogonal differ
    for init in ("truncated_normal", "random_uniform", "glorot_uniform", "he_normal", "orthogonal"):
        w = np.asarray(inits.make_initializer(init, std=0.05, scale=1.0)(jax.random.PRNGKey(0), shape))
        assert np.std(w) == pytest.approx(T.equivalent_std(init, *shape, std=0.05), rel=0.03), init
    with pytest.raises(ValueError, match="does not apply"):
        T.equivalent_std("zeros", 10, 10)


# --- fixed point and critical std ------------------------------------------------------------


def test_critical_std_of_tanh_is_where_chi_crosses_one():
    tanh = T.activation("tanh")
    (s_c,) = T.critical_stds("tanh", 128)
    assert s_c == pytest.approx(1 / math.sqrt(128), rel=1e-3)  # sigma_w^2 = 1, no bias
    assert T.chi_star(tanh, 0.95 * s_c) < 1 < T.chi_star(tanh, 1.05 * s_c)
    assert T.critical_stds("relu", 128) == [pytest.approx(math.sqrt(2 / 128))]  # He


def test_sigmoid_fixed_point_and_critical_std():
    sig = T.activation("sigmoid")
    q = T.fixed_point_q(sig, 0.05 ** 2 * 128)
    assert 0.05 ** 2 * 128 * T.moments(sig, q)[0] == pytest.approx(q, rel=1e-9)
    (s_c,) = T.critical_stds("sigmoid", 128)
    assert 0.5 < s_c < 1.5  # near the study's "std 1" remedy
    assert T.chi_star(sig, 0.95 * s_c) < 1 < T.chi_star(sig, 1.05 * s_c)
    assert T.chi_star(sig, 0.05) < 0.02  # baseline_7: ~1/(16 * 2.5) per layer


# --- the prediction against a measurement -----------------------------------------------------


@pytest.fixture(scope="module")
def fashion(fashion_mnist_dir):
    from vgjax import data

    return data.load(fashion_mnist_dir)


def test_baseline_7_prediction_matches_a_measurement(fashion):
    """8 seeds x the first minibatch of 32; every layer within a factor 1.5 (measured when
    written: ratios 0.95-1.06, layer-1/output 2.3e-6 predicted and measured)."""
    from vgjax.methods import get_config

    config = get_config("baseline_7")
    idx = T.stratified_sample(fashion.y_train, 3, seed=0)
    prof = T.predict_profile(T.Net.from_config(config), fashion.x_train[idx] / 255.0,
                             fashion.y_train[idx], config.batch_size)
    meas = TC.measure_profile(config, fashion.x_train, fashion.y_train, range(8))
    rms = np.sqrt(np.mean(np.stack([meas[k] for k in prof.layers]) ** 2, 1))
    ratio = rms / prof.norm()
    assert np.all((ratio < 1.5) & (ratio > 1 / 1.5)), dict(zip(prof.layers, ratio.round(3)))
    # vanishing: ~6 orders of magnitude from the output layer to the first
    assert 1e-7 < prof.ratio_to_output()[0] < 1e-5


def test_cli_rejects_bad_flags_with_one_line(capsys):
    from experiments import theory as cli_theory

    for argv in (["--seeds", "0"], ["--per-class", "1"], ["--bogus"]):
        with pytest.raises(SystemExit) as e:
            cli_theory.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err


def test_measurement_is_the_engines_first_step_gradient_norm():
    """With one batch per epoch, the engine logs exactly the first step's kernel-gradient norms."""
    from tests.conftest import synthetic
    from vgjax.config import Config
    from vgjax.nn.models import build_model
    from vgjax.optim.registry import make_optimizer
    from vgjax.train.engine import create_train_state, make_engine

    cfg = Config(depth=3, batch_size=16, seed=3)
    data = synthetic(n=16)
    model, tx = build_model(cfg), make_optimizer(cfg)
    state = create_train_state(model, tx, jax.random.PRNGKey(cfg.seed))
    _, metrics = jax.jit(make_engine(cfg, model, tx).epoch)(state, data.x_train, data.y_train)
    meas = TC.measure_profile(cfg, np.asarray(data.x_train), np.asarray(data.y_train), [cfg.seed])
    for name, value in metrics["grad_norm"].items():
        assert meas[name][0] == pytest.approx(float(value), rel=1e-5)


# --- trainability vs init std (vgjax.analysis.theory_check.trainability) -------------------------------


def _tiny_arrays(n: int = 500):
    """The first ``n`` Fashion-MNIST training and test images (random pixels where there is no data)."""
    from tests.conftest import find_fashion_mnist
    from vgjax import data, sweep

    found, _ = find_fashion_mnist()
    if found is not None:
        d = data.load(found)
        return sweep.Arrays(np.asarray(d.x_train[:n]), np.asarray(d.y_train[:n]),
                            np.asarray(d.x_test[:n]), np.asarray(d.y_test[:n]))
    rng = np.random.default_rng(0)  # no data here: the plumbing is tested on noise
    x = rng.integers(0, 256, (2 * n, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 2 * n).astype(np.int32)
    return sweep.Arrays(x[:n], y[:n], x[n:], y[n:])


def test_trainability_tiny_run_rows_table_and_figure(tmp_path):
    """2 stds x 1 seed x 1 epoch x 500 images per activation: each row is the std its sweep
    members used, chi is vgjax.analysis.theory's, and the CSV, table and PNG come out."""
    stds = {"sigmoid": [0.1, *TC.critical("sigmoid", 128)], "tanh": [*TC.critical("tanh", 128), 2.0]}
    train, status = TC.trainability(_tiny_arrays(), depth=7, width=128, batch_size=32, epochs=1, train_limit=500,
                                    seeds=1, stds=stds)
    assert status.startswith("done")
    rows = train["rows"]
    assert [(r["activation"], r["init_std"]) for r in rows] == [
        (a, pytest.approx(s, rel=1e-6)) for a in TC.TRAIN_ACTIVATIONS for s in stds[a]]
    for r, sw in zip(rows, [sw for sw in train["sweeps"] for _ in range(2)]):
        # the config each row's members were trained with: its activation, the std it reports
        assert sw["config"]["activation"] == r["activation"] and sw["config"]["depth"] == 7
        assert sw["config"]["lr"] == 0.01 and sw["config"]["batch_size"] == 32 and sw["config"]["optimizer"] == "sgd"
        assert r["member_init_std"] == [pytest.approx(r["init_std"], rel=1e-7)] and r["seeds"] == [0]
        assert 0.0 <= r["val_acc_mean"] <= 1.0 and r["val_acc_std"] == 0.0
        # chi and q* are the theory module's for that std
        act = T.activation(r["activation"])
        assert r["chi"] == T.chi_star(act, r["init_std"], 128)
        assert r["q_star"] == T.fixed_point_q(act, r["init_std"] ** 2 * 128)
    assert [r["critical"] for r in rows] == [False, True, True, False]  # sigmoid 0.897, tanh 0.0884
    assert train["settings"]["train_limit"] == 500 and train["settings"]["epochs"] == 1
    csv = TC.trainability_csv(train).splitlines()
    assert csv[0].startswith("activation,init_std,chi,") and len(csv) == 1 + len(rows)
    assert csv[1].split(",")[:2] == ["sigmoid", "0.1"]
    text = TC.trainability_text(train)
    assert "critical" in text and len(text.splitlines()) == 2 + len(rows)
    figures.plot_trainability(train, tmp_path / "trainability.png")
    assert (tmp_path / "trainability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trainability_grid_includes_the_critical_std_and_can_be_skipped():
    from experiments import theory as E

    for act in TC.TRAIN_ACTIVATIONS:
        grid = TC.trainability_stds(act, 128)
        (c,) = TC.critical(act, 128)
        assert c == T.critical_stds(act, 128)[0]
        assert grid[0] == pytest.approx(0.05) and grid[-1] == pytest.approx(10.0)
        assert len(grid) == 10 and min(abs(s / c - 1) for s in grid) < 1e-5
    args = E.build_parser().parse_args(["--no-trainability", "--quick"])
    E.check_args(args)
    assert (args.trainability_epochs, args.trainability_train_limit) == (1, 5000)
    assert E.run_trainability(args, None, None) == (None, "skipped (--no-trainability)")
    with pytest.raises(SystemExit):
        E.check_args(E.build_parser().parse_args(["--trainability-seeds", "0"]))
