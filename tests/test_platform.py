"""GPU/TPU without CPU assumptions: pinning only on a CPU backend, the suite in one process on an
accelerator, the matmul precision in the compiled program, asynchronous checkpoints, TensorBoard.

No accelerator is needed: the platform is injected (monkeypatch), and the precision is read from
the lowered program rather than from results (identical on a CPU).
"""

import json
import os
import re
import struct
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import suite
from experiments.progress import JobsProgress
from tests.conftest import synthetic
from vgjax.run import callbacks, jobs
from vgjax import runtime
from vgjax.run.checkpoint import MANIFEST, Checkpoints
from vgjax.config import Config, ConfigError
from vgjax.train.hooks import Hook
from vgjax.run.rundir import RunDir
from vgjax.run.runner import run, setup_stage
from vgjax.train.stages import run_table


# ---------------------------------------------------------------------------------------------
# pinning and the platform


@pytest.fixture
def affinity_calls(monkeypatch):
    """Record sched_setaffinity instead of changing this test process' cores."""
    calls = []
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this OS")
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: calls.append(set(cores)))
    return calls


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_no_pinning_on_an_accelerator(affinity_calls, monkeypatch, platform):
    assert runtime.pin_cpu_threads(1, platform=platform) is None
    monkeypatch.setattr(runtime, "configured_platform", lambda: platform)
    assert runtime.pin_cpu_threads(1) is None and runtime.pin_cpu_threads(2, cores=[0, 1]) is None
    assert affinity_calls == []


def test_pinning_on_a_cpu(affinity_calls, monkeypatch):
    monkeypatch.setattr(runtime, "configured_platform", lambda: "cpu")
    first = sorted(os.sched_getaffinity(0))[0]
    assert runtime.pin_cpu_threads(1, cores=[first]) == [first]
    assert runtime.pin_cpu_threads(0) is None  # 0: XLA's default, every core
    assert affinity_calls == [{first}]


def test_the_platform_comes_from_the_configuration_without_a_backend(monkeypatch):
    from jax._src import xla_bridge

    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    before = jax.config.jax_platforms
    try:
        for setting, kind in [("cuda,cpu", "gpu"), ("tpu", "tpu"), ("rocm", "gpu"), ("cpu", "cpu")]:
            jax.config.update("jax_platforms", setting)
            assert runtime.configured_platform() == kind
        jax.config.update("jax_platforms", None)  # unset: the installed plugins decide
        monkeypatch.setattr(runtime, "installed_plugins", lambda: ["xla_cuda12"])
        assert runtime.configured_platform() == "gpu"
        monkeypatch.setattr(runtime, "installed_plugins", lambda: ["tpu"])
        assert runtime.configured_platform() == "tpu"
        monkeypatch.setattr(runtime, "installed_plugins", lambda: [])
        assert runtime.configured_platform() == "cpu"
    finally:
        jax.config.update("jax_platforms", before)


def test_without_affinity_or_file_locks_the_process_code_falls_back(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    assert runtime.cpu_affinity() is None
    assert runtime.usable_cores() == (os.cpu_count() or 1)
    assert runtime.pin_cpu_threads(1, platform="cpu") is None
    assert runtime.device_description("default")["cpu_affinity"] is None
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl raises ImportError (Windows)
    assert runtime._claim_free_cores([5, 6, 7], 2) == [5, 6]


# ---------------------------------------------------------------------------------------------
# the suite on an accelerator


def test_the_suite_plans_one_in_process_worker_on_an_accelerator(monkeypatch):
    assert jobs.plan_workers(4, False, "gpu") == (1, True)
    assert jobs.plan_workers(None, False, "tpu") == (1, True)
    assert jobs.plan_workers(3, False, "cpu") == (3, False)
    assert jobs.plan_workers(3, True, "cpu") == (1, False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 6)
    assert jobs.plan_workers(None, False, "cpu") == (6, False)


def test_on_a_gpu_the_suite_runs_its_methods_here_one_after_another(tmp_path, monkeypatch, fashion_mnist_dir):
    monkeypatch.setattr(runtime, "configured_platform", lambda: "gpu")
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: pytest.fail("a child process was started"))
    from experiments import run as run_cli

    order = []
    real_main = run_cli.main
    monkeypatch.setattr(run_cli, "main", lambda argv: order.append(argv[argv.index("--method") + 1]) or real_main(argv))
    runs = tmp_path / "runs"
    code = suite.main(["--methods", "baseline_3,relu", "--workers", "4", "--runs-dir", str(runs), "--in-order",
                       "--epochs", "1", "--train-limit", "128", "--data-dir", str(fashion_mnist_dir), "--no-report",
                       "--no-diagnostics", "--", "--depth", "1", "--width", "8", "--no-best-checkpoint",
                       "--threads", "0"])
    assert code == 0
    record = json.loads((runs / "suite.json").read_text())
    assert record["workers"] == 1 and record["in_process"] is True
    assert order == ["baseline_3", "relu"]
    for m in order:
        assert record["methods"][m]["status"] == "finished" and record["methods"][m]["exit_code"] == 0
        log = (runs / "logs" / f"{m}.log").read_text()
        assert "in the suite's process" in log and f"{m}: finished after 1 epochs" in log


def test_an_interrupted_in_process_run_stops_the_suite(tmp_path):
    calls = []

    def fake_run(argv):
        calls.append(argv)
        return jobs.EXIT_INTERRUPTED

    todo = [jobs.Job(m, tmp_path / m, [sys.executable, "-m", "experiments.run", "--method", m], "run",
                     tmp_path / f"{m}.log", (0, 130), call=fake_run) for m in ("a", "b")]
    assert jobs.run_jobs(todo, 1, 0.0, JobsProgress(todo, live=False), tmp_path) is False
    assert calls == [["--method", "a"]]  # b never started
    assert todo[0].exit_code == 130 and todo[1].status == "queued"


# ---------------------------------------------------------------------------------------------
# precision


def lowered_precisions(config: Config) -> set[str]:
    table = run_table(config)
    setup = setup_stage(config, table, table.stages[0], None)
    x, y = jnp.zeros((32, 784), jnp.uint8), jnp.zeros((32,), jnp.int32)
    found = set()
    for fn in (setup.engine.epoch, setup.engine.evaluate):
        text = jax.jit(fn).lower(setup.state, x, y).as_text()
        dots = text.count("dot_general")
        marks = re.findall(r"dot_general.*precision = \[(\w+), (\w+)\]", text)
        assert dots > 0 and len(marks) == dots  # every matrix product carries the setting
        found |= {p for pair in marks for p in pair}
    return found


def test_the_precision_reaches_every_matrix_product_of_training_and_evaluation():
    assert lowered_precisions(Config(depth=2, width=8)) == {"HIGHEST"}
    assert lowered_precisions(Config(depth=2, width=8, precision="default")) == {"DEFAULT"}


def test_precision_is_checked_recorded_and_defaults_for_old_configs(tmp_path):
    with pytest.raises(ConfigError, match="unknown precision 'tf32'"):
        Config(precision="tf32")
    old = Config().to_dict()
    del old["precision"]
    assert Config.from_dict(old).precision == "highest"
    cfg = Config(depth=1, width=8, batch_size=16, epochs=1, precision="default", diagnostics=False,
                 best_checkpoint=False)
    rd = RunDir(tmp_path / "r")
    rd.create(cfg.to_dict())
    run(cfg, rd, synthetic(n=32, n_test=16))
    assert json.loads(rd.config_path.read_text())["precision"] == "default"
    assert json.loads(rd.summary_path.read_text())["precision"] == "default"
    assert runtime.device_description("default")["precision"] == "default"


# ---------------------------------------------------------------------------------------------
# asynchronous checkpoints


def small_state():
    cfg = Config(depth=1, width=8, batch_size=16, epochs=3)
    table = run_table(cfg)
    return setup_stage(cfg, table, table.stages[0], None)


def test_an_async_save_is_the_state_at_save_time_even_when_its_buffers_are_donated(tmp_path):
    setup, data = small_state(), synthetic(n=32, n_test=16)
    epoch = jax.jit(setup.engine.epoch, donate_argnums=(0,))
    state, _ = epoch(setup.state, data.x_train, data.y_train)
    expected = jax.device_get(state)
    done = []
    with Checkpoints(tmp_path / "ck") as ck:
        ck.save(1, state, then=lambda: done.append((tmp_path / "ck" / "1" / MANIFEST).is_file()))
        state, _ = epoch(state, data.x_train, data.y_train)  # donates the saved state's buffers
        ck.wait()
        assert done == [True]  # then() ran after the manifest was written
        restored = ck.restore(1, like=setup.state)
    jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(restored), expected)


class Interrupt(Hook):
    def __init__(self, at: int):
        self.at = at

    def on_epoch_end(self, record, state, engine=None):
        if record["epoch"] == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_run_leaves_its_async_saves_complete(tmp_path):
    cfg = Config(depth=1, width=8, batch_size=16, epochs=5, checkpoint_every=1, diagnostics=False, lr=0.5)
    rd = RunDir(tmp_path / "r")
    rd.create(cfg.to_dict())
    best = callbacks.BestCheckpoint(rd.best_dir, monitor="loss")  # training loss: improves every epoch here
    with pytest.raises(KeyboardInterrupt):
        run(cfg, rd, synthetic(n=64, n_test=16), hooks=[best, Interrupt(3)])
    steps = sorted(int(d.name) for d in rd.checkpoint_dir.iterdir() if d.name.isdigit())
    assert steps == [1, 2] and all((rd.checkpoint_dir / str(s) / MANIFEST).is_file() for s in steps)
    saved = json.loads((rd.best_dir / "best.json").read_text())
    assert saved["epoch"] == 3 and (rd.best_dir / "3" / MANIFEST).is_file()


# ---------------------------------------------------------------------------------------------
# TensorBoard


def read_events(path):
    """The scalar (tag, value, step) of a TensorBoard event file (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    out, raw = [], path.read_bytes()
    while raw:
        (n,) = struct.unpack("<Q", raw[:8])
        event = event_pb2.Event.FromString(raw[12:12 + n])
        raw = raw[12 + n + 4:]
        out += [(v.tag, v.simple_value, event.step) for v in event.summary.value]
    return out


def test_the_real_tensorboardx_writer(tmp_path):
    pytest.importorskip("tensorboardX")
    tb = callbacks.TensorBoard(tmp_path / "tb")
    tb.replay([])
    tb.on_epoch_end({"epoch": 1, "loss": 0.5, "grad_norm/hidden_1": 0.25}, None)
    tb.on_epoch_end({"epoch": 2, "loss": 0.25, "grad_norm/hidden_1": 0.125}, None)
    tb.wait_for_saves()
    (events,) = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert read_events(events) == [("loss/train", 0.5, 1), ("grad_norm/hidden_1", 0.25, 1),
                                   ("loss/train", 0.25, 2), ("grad_norm/hidden_1", 0.125, 2)]


def test_the_histograms_probe_gradient_gets_the_precision_too():
    from vgjax.train.diagnostics import probe_kernel_grads

    for precision, mark in (("highest", "HIGHEST"), ("default", "DEFAULT")):
        setup = small_state_with(precision)
        x, y = jnp.zeros((8, 784), jnp.uint8), jnp.zeros((8,), jnp.int32)
        text = jax.jit(lambda st, a, b: probe_kernel_grads(setup.engine, st, a, b)).lower(setup.state, x, y).as_text()
        marks = re.findall(r"dot_general.*precision = \[(\w+), (\w+)\]", text)
        assert marks and len(marks) == text.count("dot_general") and {p for m in marks for p in m} == {mark}


def small_state_with(precision: str):
    cfg = Config(depth=1, width=8, precision=precision)
    table = run_table(cfg)
    return setup_stage(cfg, table, table.stages[0], None)
