"""Staged sweeps ("train some layers" over seeds): every stage starts each member exactly as
``vgjax.run.runner.setup_stage`` starts the single run of its seed (new model, fresh output layer,
trained weights carried over, the stage's keys), and seed k of the sweep trains to the numbers
of ``experiments.run --method freeze --seed k`` (within the rounding of tests/test_sweep.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.test_sweep import ROOT, assert_histories_close, sweep_cli
from vgjax.run import runner
from vgjax import sweep
from vgjax.train import stages as stages_lib
from vgjax.config import ConfigError
from vgjax.methods import get_config
from vgjax.sweep.files import read_metrics

N_TRAIN, N_VAL = 192, 100
STAGES = "1-1 | 1:2 | 1+2:2:1 | 1+2:2"
CONFIG = get_config("freeze", stages=STAGES, width=8, batch_size=32, train_limit=N_TRAIN, diagnostics=False)
SEEDS = (0, 2)


def synthetic() -> sweep.Arrays:
    """More training images than the train limit: the sweep must use only the first ones."""
    rng = np.random.default_rng(1)
    images = lambda n: rng.integers(0, 256, (n, 784), np.uint8)  # noqa: E731
    labels = lambda n: rng.integers(0, 10, n).astype(np.int32)  # noqa: E731
    return sweep.Arrays(images(2 * N_TRAIN), labels(2 * N_TRAIN), images(N_VAL), labels(N_VAL))


def member(tree, i: int):
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[i], tree)


def assert_trees_equal(a, b) -> None:
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for (path, x), y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("stage_output", ["fresh", "keep"])
def test_every_stage_starts_each_seed_as_the_single_run(stage_output):
    """Stage by stage, the vmapped start of the members is bit for bit setup_stage of each seed's
    run given that member's trained weights: the carry-over, freezing and key rules are the runner's."""
    config = CONFIG.replace(stage_output=stage_output)
    table = stages_lib.run_table(config)
    phases = sweep.build_phases(config, devices=jax.local_devices()[:1])
    assert [p.stage for p in phases] == [1, 2, 3] and [p.epochs for p in phases] == [2, 2, 2]
    program = phases[0].program
    data = sweep.limit_train(synthetic(), N_TRAIN)
    arrays = program.replicate(data)
    hp = program.shard(sweep.SweepSpec(config, seeds=SEEDS).members())
    states = None
    for phase, stage in zip(phases, table.stages):
        previous = None if states is None else jax.device_get(states)
        states = phase.start(states, hp)
        for i, seed in enumerate(SEEDS):
            prev = None if previous is None else member(previous, i)
            single = runner.setup_stage(config.replace(seed=seed), table, stage, prev).state
            assert_trees_equal(member(jax.device_get(states), i), single)
        frozen = [n for n in table.frozen_layer_names(stage) if n in states.params]
        before = jax.device_get(states.params)
        for _ in range(phase.epochs):
            states, _ = phase.program.epoch(states, *arrays)
        after = jax.device_get(states.params)
        assert all(np.array_equal(before[n]["kernel"], after[n]["kernel"]) for n in frozen)
        assert not np.array_equal(before["output"]["kernel"], after["output"]["kernel"])


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_seed_k_of_a_staged_sweep_is_the_staged_run(tmp_path, norm):
    """The whole staged sweep (chunks of one and of two members) against runner.train_and_evaluate
    of seed 2 on the first N_TRAIN images: every epoch of every stage. With BatchNorm, stage 2's
    frozen norm layers normalise with their moving statistics in both."""
    config = CONFIG.replace(norm=norm)
    data = synthetic()
    spec = sweep.SweepSpec(config, seeds=SEEDS)
    results = [sweep.run_sweep(spec, data, chunk=c, devices=jax.local_devices()[:1]) for c in (1, 2)]
    run = runner.train_and_evaluate(config.replace(seed=SEEDS[1]), tmp_path / "run", data)
    assert [r["stage"] for r in run.history] == [1, 1, 2, 2, 3, 3]
    single = {m: np.asarray([r[m] for r in run.history], np.float32)[None] for m in sweep.METRICS}
    for res in results:
        assert res.history["loss"].shape == (2, 6)
        assert_histories_close({m: res.history[m][1:] for m in sweep.METRICS}, single, N_VAL, N_TRAIN)
    assert not np.allclose(results[0].history["loss"][0], results[0].history["loss"][1])  # seeds differ


def test_staged_sweeps_vary_seeds_only():
    with pytest.raises(ConfigError, match="varies the seeds only"):
        sweep.validate_spec(sweep.SweepSpec(CONFIG, lr=(0.1, 0.01)))
    sweep.validate_spec(sweep.SweepSpec(CONFIG, lr=(CONFIG.lr,), seeds=(0, 1)))
    with pytest.raises(ValueError, match="6 epochs"):
        sweep.build_phases(CONFIG, epochs=3)


def test_staged_cli_sweep_has_stage_columns_and_is_the_run(tmp_path, fashion_mnist_dir):
    """experiments.sweep --method freeze against experiments.run --method freeze --seed 1."""
    common = ["--method", "freeze", "--stages", STAGES, "--width", "8", "--train-limit", "256",
              "--data-dir", str(fashion_mnist_dir)]
    proc = sweep_cli(*common, "--seeds", "2", "--workers", "0", "--out", str(tmp_path / "sw"))
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "sw" / "metrics.csv").read_text().splitlines()
    assert ",seed,epoch,stage,stage_epoch,loss," in lines[0] and len(lines) == 1 + 2 * 6
    assert lines[1].split(",")[2] == "2"  # depth: the stage table's
    run = subprocess.run([sys.executable, "-m", "experiments.run", *common, "--seed", "1", "--no-diagnostics",
                          "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    members, history = read_metrics(tmp_path / "sw")
    i = int(np.flatnonzero(members["seed"] == 1)[0])
    single = {m: np.asarray([r[m] for r in rows])[None] for m in sweep.METRICS}
    assert_histories_close({m: history[m][i:i + 1] for m in sweep.METRICS}, single, 10000, 256)
