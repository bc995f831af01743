"""Sweeps: seed k equals the single run, settings reach their members, chunking, sharding,
worker processes and the command line.

Tolerance. Initial states are compared bit for bit (the std-1 initializer times std is exactly
the std initializer). Trained quantities are compared with rtol 1e-5: a vmapped matmul is a
batched GEMM whose inner loops may sum in another order than the unbatched one (and chunks of
another size or shard batch differently), which moves the last bit or two of float32 values
(seen here: 2.4e-7 on a loss of 2.3); over a few dozen SGD steps that stays far below 1e-5.
Accuracies may differ by one example (a near-tied logit could flip), so by at most 1/n.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from vgjax import sweep
from vgjax.config import Config, ConfigError
from vgjax.nn.models import build_model
from vgjax.optim.registry import make_optimizer
from vgjax.train.engine import DeviceData, create_train_state, fit, make_engine

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_VAL, EPOCHS = 256, 200, 2
# sigmoid_beta so that beta matters. lr 1000 diverges (NaN) at once: a result like any other.
# (No member of std 10: its loss of several hundred is chaotic, and the last-bit differences of
# batched matmuls grow there to percents within two epochs.)
CONFIG = Config(depth=2, width=16, activation="sigmoid_beta", batch_size=32, epochs=EPOCHS, diagnostics=False)
SPEC = sweep.SweepSpec(CONFIG, init_std=(0.05, 1.0), lr=(0.05, 1000.0), beta=(0.05, 0.5), seeds=(0, 3))


def synthetic(seed: int = 0) -> sweep.Arrays:
    rng = np.random.default_rng(seed)
    images = lambda n: rng.integers(0, 256, (n, 784), np.uint8)  # noqa: E731
    labels = lambda n: rng.integers(0, 10, n).astype(np.int32)  # noqa: E731
    return sweep.Arrays(images(N_TRAIN), labels(N_TRAIN), images(N_VAL), labels(N_VAL))


def assert_histories_close(a: dict, b: dict, n_val: int = N_VAL, n_train: int = N_TRAIN) -> None:
    for m in ("loss", "val_loss"):
        np.testing.assert_allclose(a[m], b[m], rtol=1e-5, equal_nan=True, err_msg=m)
    np.testing.assert_allclose(a["accuracy"], b["accuracy"], atol=1.01 / n_train, err_msg="accuracy")
    np.testing.assert_allclose(a["val_accuracy"], b["val_accuracy"], atol=1.01 / n_val, err_msg="val_accuracy")


@pytest.fixture(scope="module")
def reference():
    """The whole sweep as one chunk on one device, and its members' states after init and training."""
    data = synthetic()
    program = sweep.SweepProgram.build(CONFIG, jax.local_devices()[:1])
    members = SPEC.members()
    arrays = program.replicate(data)
    init = jax.device_get(program.init(program.shard(members)))
    states = program.init(program.shard(members))
    for _ in range(EPOCHS):
        states, _ = program.epoch(states, *arrays)
    result = sweep.run_sweep(SPEC, data, chunk=len(members["seed"]), devices=jax.local_devices()[:1])
    return {"data": data, "members": members, "init": init, "final": jax.device_get(states), "result": result}


def member(tree, i: int):
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[i], tree)


def single_run(i: int, members: dict, data: sweep.Arrays):
    """Member i as ``experiments.run --seed k`` trains it: create_train_state + fit."""
    cfg = CONFIG.replace(init_std=float(members["init_std"][i]), lr=float(members["lr"][i]),
                         beta=float(members["beta"][i]))
    model, tx = build_model(cfg), make_optimizer(cfg)
    state = create_train_state(model, tx, jax.random.PRNGKey(int(members["seed"][i])))
    initial = jax.device_get(state)  # fit donates the state's buffers
    return initial, fit(make_engine(cfg, model, tx), state, DeviceData.from_numpy(*data), EPOCHS)


def test_grid_is_setting_major_and_rejects_axes_without_effect():
    m = SPEC.members()
    settings = SPEC.settings()
    assert len(settings) == 8 and len(m["seed"]) == 16
    assert list(m["seed"][:4]) == [0, 3, 0, 3] and list(m["setting"][:4]) == [0, 0, 1, 1]
    for i in range(16):
        s = settings[m["setting"][i]]
        assert (m["init_std"][i], m["lr"][i], m["beta"][i]) == pytest.approx((s["init_std"], s["lr"], s["beta"]))
    with pytest.raises(ConfigError, match="beta has no effect"):
        sweep.validate_spec(sweep.SweepSpec(Config(), beta=(0.1, 0.2)))
    with pytest.raises(ConfigError, match="init std has no effect"):
        sweep.validate_spec(sweep.SweepSpec(Config(init="he_normal"), init_std=(0.1, 1.0)))
    with pytest.raises(ConfigError, match="staged sweep .* varies the seeds only"):
        sweep.validate_spec(sweep.SweepSpec(Config(stages="default"), init_std=(0.05, 1.0)))
    sweep.validate_spec(sweep.SweepSpec(Config(stages="default"), seeds=(0, 1)))  # seeds: one program per stage


@pytest.mark.parametrize("n, devices, limit, balance, expected", [
    (16, 1, 6, True, 6), (16, 1, 7, True, 6), (16, 1, 6, False, 6), (16, 4, 5, True, 4), (16, 4, 9, True, 8),
    (16, 4, 12, False, 12), (6, 4, 100, True, 8), (3, 1, 1, True, 1), (5, 2, 1, True, 2)])
def test_chunk_size(n, devices, limit, balance, expected):
    assert sweep.chunk_size(n, devices, limit, balance) == expected


def test_seed_k_equals_the_single_run(reference):
    """Two members (seeds 3 and 0, different std, lr, beta) against create_train_state + fit."""
    members, res = reference["members"], reference["result"]
    for i in (2 * 1 + 1, 2 * 4):  # (std 0.05, lr 0.05, beta 0.5, seed 3), (std 1, lr 0.05, beta 0.05, seed 0)
        state0, run = single_run(i, members, reference["data"])
        # the initial state is bit-identical: kernels, biases, run key, beta
        init = member(reference["init"], i)
        jax.tree_util.tree_map(np.testing.assert_array_equal, init.params, state0.params)
        np.testing.assert_array_equal(init.key, state0.key)
        assert init.hparams["beta"] == np.float32(members["beta"][i])
        # training: the per-epoch metrics of fit and the final parameters
        assert run.status == "finished"
        single = {m: np.array([[r[m] for r in run.history]], np.float32) for m in sweep.METRICS}
        assert_histories_close({m: res.history[m][i:i + 1] for m in sweep.METRICS}, single)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                               member(reference["final"], i).params, jax.device_get(run.state.params))


def test_settings_reach_their_members(reference):
    """The std=1 members were initialised at std 1, the lr=1000 members' optimizer holds 1000."""
    members, init = reference["members"], reference["init"]
    kernel_std = np.std(init.params["hidden_1"]["kernel"], axis=(1, 2))
    np.testing.assert_allclose(kernel_std, members["init_std"], rtol=0.05)
    np.testing.assert_array_equal(init.opt_state.hyperparams["learning_rate"], members["lr"])
    np.testing.assert_array_equal(init.hparams["beta"], members["beta"])
    final = reference["final"]
    np.testing.assert_array_equal(final.opt_state.hyperparams["learning_rate"], members["lr"])
    assert (final.epoch == EPOCHS).all() and (final.opt_state.count == EPOCHS * N_TRAIN // 32).all()
    # the rows of the metrics table carry the member's own setting
    rows = sweep.metric_rows(SPEC.settings(), members, reference["result"].history)
    assert len(rows) == 16 * EPOCHS
    for k, r in enumerate(rows):
        i = k // EPOCHS
        assert r["epoch"] == k % EPOCHS + 1
        assert (r["init_std"], r["lr"], r["beta"], r["seed"]) == pytest.approx(
            (members["init_std"][i], members["lr"][i], members["beta"][i], members["seed"][i]))


def test_divergence_is_a_result_per_member(reference):
    res = reference["result"]
    diverged = sweep.diverged_epochs(res.history)
    nan_final = ~np.isfinite(res.history["loss"][:, -1])
    assert nan_final.any() and not nan_final.all()  # the grid has both kinds
    assert ((diverged > 0) == ~np.isfinite(res.history["loss"]).all(axis=1) | nan_final).all()
    summary = sweep.summarize(SPEC.settings(), res.members, res.history)
    assert sum(s["diverged"]["count"] for s in summary) == int((diverged > 0).sum())
    for s in summary:
        assert s["seeds"] == 2 and 0.0 <= s["left_plateau"]["fraction"] <= 1.0
        assert len(s["diverged"]["seeds"]) == s["diverged"]["count"]


def test_summary_statistics():
    hist = {"loss": np.array([[2.3, 2.2], [2.3, np.nan], [2.3, 1.0]], np.float32),
            "val_loss": np.array([[2.3, 2.2], [np.nan, np.nan], [2.3, 1.0]], np.float32),
            "val_accuracy": np.array([[0.1, 0.15], [0.1, 0.1], [0.25, 0.5]], np.float32),
            "accuracy": np.zeros((3, 2), np.float32)}
    members = {"setting": np.array([0, 0, 0]), "seed": np.array([0, 1, 2])}
    (s,) = sweep.summarize([{"init_std": 1.0}], members, hist)
    assert s["diverged"] == {"count": 1, "seeds": [1], "epochs": [1]}
    assert s["left_plateau"]["fraction"] == pytest.approx(1 / 3) and s["left_plateau"]["epoch_median"] == 1.0
    assert s["final_val_accuracy"]["max"] == 0.5 and s["best_val_accuracy"]["min"] == 0.1
    assert s["final_val_accuracy"]["std"] == pytest.approx(np.std([0.15, 0.1, 0.5], ddof=1), rel=1e-5)


def test_chunks_and_worker_processes_give_the_same_results(reference):
    """Two worker processes of 8 members, each in chunks of 6 (6 + 2 padded to 6), against the
    one-chunk reference: chunking, padding and the processes change nothing."""
    res = sweep.run_sweep(SPEC, reference["data"], workers=2, chunk=6)
    assert res.workers == 2 and res.chunk_size == 6
    assert_histories_close(res.history, reference["result"].history)


SHARDED = """
import json, sys, jax, numpy as np
from tests.test_sweep import SPEC, synthetic
from vgjax import sweep
assert jax.device_count() == 4, jax.devices()
res = sweep.run_sweep(SPEC, synthetic(), chunk=12)  # chunks of 12 and 4 (padded to 12), 3 per device
program = sweep.SweepProgram.build(SPEC.config)  # the cached program run_sweep used
states = program.init(program.shard({k: v[:12] for k, v in SPEC.members().items()}))
leaf = states.params["hidden_1"]["kernel"]
np.savez(sys.argv[1], **res.history)
print(json.dumps({"devices": res.n_devices, "chunk": res.chunk_size,
                  "shard_devices": len(leaf.sharding.device_set),
                  "member_axis": leaf.sharding.spec == jax.sharding.PartitionSpec("members"),
                  "shard_shape": leaf.addressable_shards[0].data.shape[0]}))
"""


def test_sharded_over_four_devices_equals_one_device(reference, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "sharded.npz"
    proc = subprocess.run([sys.executable, "-c", SHARDED, str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info == {"devices": 4, "chunk": 12, "shard_devices": 4, "member_axis": True, "shard_shape": 3}
    with np.load(out) as h:
        assert_histories_close(dict(h), reference["result"].history)


# ----------------------------------------------------------------------------- command line

def sweep_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_writes_every_file(tmp_path, fashion_mnist_dir):
    out = tmp_path / "sw"
    proc = sweep_cli("--method", "baseline_3", "--depth", "2", "--width", "16", "--init-std", "0.05,1",
                     "--seeds", "2", "--epochs", "2", "--train-limit", "512", "--workers", "0",
                     "--data-dir", str(fashion_mnist_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "2 settings x 2 seeds" in proc.stdout
    files = {p.name for p in out.iterdir()}
    assert files == {"config.json", "metrics.csv", "summary.json", "summary.csv", "sweep_val_accuracy.png",
                     "sweep_loss.png", ".vgjax-owned.json"}  # the manifest of what the sweep wrote (vgjax.owned)
    config = json.loads((out / "config.json").read_text())
    assert config["sweep"]["init_std"] == [0.05, 1.0] and config["configs"][0]["depth"] == 2
    assert config["configs"][0]["width"] == 16
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == ("setting,method,depth,width,activation,optimizer,batch_size,init_draw,output_init,bias_init,init_std,lr,beta,"
                        "seed,epoch,loss,accuracy,val_loss,val_accuracy")
    assert len(lines) == 1 + 2 * 2 * 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["members"] == 4 and summary["diverged_members"] == 0
    assert summary["runs"][0]["chunk_size"] >= 1
    for s in summary["settings"]:
        acc = s["final_val_accuracy"]
        assert 0.05 <= acc["min"] <= acc["mean"] <= acc["max"] <= 1.0
        assert s["best_val_accuracy"]["mean"] >= acc["mean"] and s["seeds"] == 2
        assert 2.0 < s["final_loss"]["mean"] < 5.0  # sigmoid nets after two short epochs
    assert len((out / "summary.csv").read_text().splitlines()) == 3
    for png in ("sweep_val_accuracy.png", "sweep_loss.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = sweep_cli("--method", "baseline_3", "--seeds", "1", "--epochs", "1", "--train-limit", "64",
                      "--data-dir", str(fashion_mnist_dir), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--init-std", "0.05,abc"], "every value must be a number"),
    (["--method", "nope"], "unknown method"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--method", "baseline_7", "--beta", "0.05,0.5"], "beta has no effect"),
    (["--lr", "0.1,-1"], "lr values must be finite and > 0"),
    (["--bogus"], "unrecognized arguments"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message, capsys):
    from experiments import sweep as sweep_cli_module

    with pytest.raises(SystemExit) as exc:
        sweep_cli_module.main(args + ["--out", "/nonexistent/never-written"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_usage_error_from_the_shell_has_no_traceback():
    proc = sweep_cli("--method", "baseline_7", "--init-std", "0.1,,2")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
