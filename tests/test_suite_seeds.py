"""The multi-seed suite (``experiments.suite --seeds N``): which methods share a program, seed k of
a grouped program is ``experiments.run --seed k`` bit for bit on a CPU, worker processes and one
vmapping process give the same files, a killed suite resumes to them, bad input is one line."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments import run as run_cli
from experiments import suite
from vgjax.sweep import seeds as seed_suite
from vgjax.methods import get_config, method_names
from vgjax.run.rundir import read_history
from vgjax.sweep.groups import group_methods

ROOT = Path(__file__).resolve().parents[1]
METHODS = "baseline_7,weight_std_10,relu,tanh"
TINY = ["--epochs", "2", "--train-limit", "256"]
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def suite_cmd(out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "experiments.suite", "--seeds", "2", "--methods", METHODS, *TINY,
            "--data-dir", str(data_dir), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, fashion_mnist_dir):
    """The tiny suite, uninterrupted, with two worker processes."""
    out = tmp_path_factory.mktemp("seeds") / "suite"
    r = subprocess.run(suite_cmd(out, fashion_mnist_dir, "--workers", "2"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def read_metrics(path: Path) -> list[dict]:
    with open(path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_methods_differing_only_in_member_values_share_a_program():
    configs = {m: get_config(m) for m in method_names()}
    groups = group_methods(configs)
    assert ["baseline_7", "weight_std_1", "weight_std_10"] in groups
    assert sorted(sum(groups, [])) == sorted(configs)  # every method once
    alone = [g[0] for g in groups if len(g) == 1]
    # another depth, activation, optimizer, normalisation or stage table is another program
    for m in ("baseline_3", "baseline_5", "relu", "sigmoid_beta", "sigmoid_modgrad", "adam", "batchnorm",
              "freeze", "optimizers_sgd", "optimizers_adam"):
        assert m in alone, m
    # two staged configs are never merged, even when equal
    assert group_methods({"a": get_config("freeze"), "b": get_config("freeze")}) == [["a"], ["b"]]
    # beta is a member value of the beta activations: two beta values share a program
    beta = {"x": get_config("sigmoid_beta", beta=0.05), "y": get_config("sigmoid_beta", beta=0.5)}
    assert group_methods(beta) == [["x", "y"]]


@pytest.mark.slow
def test_grouped_members_are_the_single_runs_bit_for_bit(finished, tmp_path, fashion_mnist_dir):
    """Seed k of every method of the grouped program (and of a program of its own) against
    ``experiments.run --method M --seed k``: every metric of every epoch, as float32, equal."""
    program = {"baseline_7": "baseline_7+weight_std_10", "weight_std_10": "baseline_7+weight_std_10",
               "relu": "relu"}
    for method, seed in (("weight_std_10", 1), ("baseline_7", 0), ("relu", 1)):
        out = tmp_path / f"{method}-{seed}"
        assert run_cli.main(["--method", method, "--seed", str(seed), *TINY, "--no-diagnostics",
                             "--data-dir", str(fashion_mnist_dir), "--out", str(out)]) == 0
        single = read_history(out / "history.jsonl")
        rows = [r for r in read_metrics(finished / program[method])
                if r["method"] == method and int(r["seed"]) == seed]
        assert [int(r["epoch"]) for r in rows] == [1, 2]
        for r, s in zip(rows, single):
            for m in METRICS:
                assert np.float32(r[m]) == np.float32(s[m]), (method, seed, m, r[m], s[m])


@pytest.mark.slow
def test_a_killed_suite_resumes_to_the_files_of_an_uninterrupted_one(finished, tmp_path, fashion_mnist_dir):
    """Killed (SIGTERM, which stops its worker processes) once its first program is written;
    ``--resume`` keeps that program and trains the rest. Every program's metrics.csv equals the
    uninterrupted suite's byte for byte, and so does the method table. (SIGKILL inside a program
    is the sweep's own resume, tests/test_sweep_resume.py.)"""
    out = tmp_path / "suite"
    proc = subprocess.Popen(suite_cmd(out, fashion_mnist_dir, "--workers", "2"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = out / "baseline_7+weight_std_10" / "summary.json"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, proc.stdout.read()[-3000:]
    assert first.exists() and not (out / "report.md").exists(), "the kill came too late to test a resume"
    wall = json.loads(first.read_text())["wall_time_s"]
    r = subprocess.run(suite_cmd(out, fashion_mnist_dir, "--workers", "2", "--resume"), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(first.read_text())["wall_time_s"] == wall  # kept, not trained again
    for name in ("baseline_7+weight_std_10", "relu", "tanh"):
        assert (out / name / "metrics.csv").read_bytes() == (finished / name / "metrics.csv").read_bytes(), name
        assert not (out / name / "chunks").exists()
    table = lambda p: [line for line in (p / "report.md").read_text().splitlines() if line.startswith("| ")]  # noqa: E731
    assert table(out) == table(finished) and len(table(out)) == 1 + 4  # the header and a row per method


def test_the_report_reads_every_method_from_its_program(finished):
    rows = list(csv.DictReader(open(finished / "summary.csv", newline="")))
    assert [r["method"] for r in rows] == METHODS.split(",")
    record = json.loads((finished / seed_suite.SUITE_FILE).read_text())
    assert [p["name"] for p in record["programs"]] == ["baseline_7+weight_std_10", "relu", "tanh"]
    for r in rows:
        summary = json.loads((finished / r["program"] / "summary.json").read_text())
        setting = next(s for s in summary["settings"] if s["method"] == r["method"])
        assert float(r["final_val_accuracy_mean"]) == setting["final_val_accuracy"]["mean"]
        assert int(r["seeds"]) == 2
    text = (finished / "report.md").read_text()
    assert "cpu" in text and "2 worker processes" in text and "seeds: 2 per method" in text


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--seeds", "2", "--sequential"], "--sequential applies to the one-run-per-method suite"),
    (["--seeds", "2", "--methods", "relu", "--", "--depth", "2"], "run flags after --"),
    (["--seeds", "2", "--methods", "relu", "--lr", "-1"], "lr"),
])
def test_usage_errors_are_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        suite.main([*args, "--out", str(tmp_path / "s")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_an_existing_suite_needs_resume_with_the_same_flags_or_overwrite(finished, tmp_path, capsys):
    def fails(*args) -> str:
        with pytest.raises(SystemExit) as e:
            suite.main(["--seeds", "2", "--methods", METHODS, *TINY, "--out", str(finished), *args])
        assert e.value.code == 2
        return capsys.readouterr().err
    assert "already holds a multi-seed suite" in fails()
    assert "differs in seeds" in fails("--resume", "--seeds", "3")
    with pytest.raises(SystemExit):
        suite.main(["--seeds", "2", "--out", str(tmp_path / "none"), "--resume"])
    assert "no multi-seed suite to resume" in capsys.readouterr().err


def test_vmapped_members_keep_their_single_runs_loss_sums_bit_for_bit(fashion_mnist_dir):
    """What the bit-for-bit members rest on (vgjax.train.engine.pairwise_sum), on more data than the
    suite's tests: seeds 0-2 of baseline_7 for three epochs on 3,000 real images (94 steps each)
    as sweep chunks of one, two and three members against vgjax.train.engine.fit of each seed. (With
    jnp.sum for a batch's loss, members differed here in the last bit of their loss.)"""
    import jax

    from vgjax import data, sweep
    from vgjax.nn.models import build_model
    from vgjax.optim.registry import make_optimizer
    from vgjax.train.engine import DeviceData, create_train_state, fit, make_engine

    a = data.load(fashion_mnist_dir)
    arrays = sweep.Arrays(a.x_train[:3000], a.y_train[:3000], a.x_test[:2000], a.y_test[:2000])
    cfg = get_config("baseline_7", diagnostics=False, epochs=3)
    single = []
    for seed in (0, 1, 2):
        model, tx = build_model(cfg), make_optimizer(cfg)
        run = fit(make_engine(cfg, model, tx), create_train_state(model, tx, jax.random.PRNGKey(seed)),
                  DeviceData.from_numpy(*arrays), 3)
        single.append({m: np.float32([r[m] for r in run.history]) for m in METRICS})
    spec = sweep.SweepSpec(cfg, seeds=(0, 1, 2))
    for chunk in (1, 2, 3):
        res = sweep.run_sweep(spec, arrays, chunk=chunk, devices=jax.local_devices()[:1])
        for seed in (0, 1, 2):
            for m in METRICS:
                assert (res.history[m][seed] == single[seed][m]).all(), (chunk, seed, m, res.history[m][seed])


def test_a_live_suite_locks_its_directory(tmp_path, capsys):
    """Another live process holding the directory's lock: a second suite there is one line, exit
    2, before it reads the data or removes anything (even with --overwrite)."""
    out = tmp_path / "suite"
    out.mkdir()
    (out / "keep").write_text("a file of the live suite")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from vgjax.run.lock import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit) as e:
            suite.main(["--seeds", "2", "--methods", "relu", *TINY, "--out", str(out), "--overwrite",
                        "--data-dir", str(tmp_path / "no-data")])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "in use by a live suite" in err and len(err.splitlines()) == 1
        assert (out / "keep").exists()
    finally:
        holder.kill()
        holder.wait()
