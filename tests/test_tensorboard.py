"""TensorBoard as its users expect (vgjax.run.callbacks.TensorBoard, write_sweep_tensorboard): training
and validation on one chart, per-layer weight and gradient histograms, the config as text and
hparams, a sweep's members as runs. A fake writer records the calls (tensorboardX is optional)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from vgjax.run import callbacks
from vgjax.config import Config, ConfigError
from vgjax.data import Arrays
from vgjax.train.diagnostics import kernels
from vgjax.run.rundir import RunDir
from vgjax.run.runner import run, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]


class Writer:
    made: list = []

    def __init__(self, logdir, purge_step=None):
        self.logdir, self.purge_step = Path(logdir), purge_step
        self.scalars, self.histograms, self.texts, self.hparams, self.closed = {}, {}, [], None, False
        Writer.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars[(tag, step)] = value

    def add_histogram(self, tag, values, step):
        self.histograms[(tag, step)] = np.array(values)

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def add_hparams(self, hparams, metrics, name=None):
        self.hparams = (hparams, metrics, name)

    def flush(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def writer(monkeypatch):
    Writer.made = []
    monkeypatch.setattr(callbacks, "tensorboard_writer", Writer)
    monkeypatch.setattr(callbacks, "tensorboard_available", lambda: True)
    return Writer


def arrays(n=64, n_test=40):
    rng = np.random.default_rng(0)
    return Arrays(rng.integers(0, 256, (n, 784), np.uint8), rng.integers(0, 10, n).astype(np.int32),
                  rng.integers(0, 256, (n_test, 784), np.uint8), rng.integers(0, 10, n_test).astype(np.int32))


def train(tmp_path, **changes):
    cfg = Config(depth=2, width=8, batch_size=16, epochs=2, tensorboard=True, best_checkpoint=False, **changes)
    result = train_and_evaluate(cfg, tmp_path / "run", arrays())
    (w,) = Writer.made
    return cfg, result, w


def test_a_run_puts_train_and_val_on_one_chart_with_histograms_and_its_config(tmp_path, writer):
    cfg, result, w = train(tmp_path)
    assert w.logdir == tmp_path / "run" / "tensorboard" and w.closed
    for rec in result.history:
        e = rec["epoch"]
        for column, tag in (("loss", "loss/train"), ("val_loss", "loss/val"),
                            ("accuracy", "accuracy/train"), ("val_accuracy", "accuracy/val")):
            assert w.scalars[(tag, e)] == rec[column]
        assert w.scalars[("grad_norm/hidden_1", e)] == rec["grad_norm/hidden_1"]
        assert {t for t, s in w.histograms if s == e} == {f"{kind}/{layer}" for kind in ("weights", "gradients")
                                                         for layer in ("hidden_1", "hidden_2", "output")}
    assert not any(tag in ("val_loss", "loss", "val_accuracy") for tag, _ in w.scalars)
    last = result.history[-1]["epoch"]
    for layer, kernel in kernels(result.state.params).items():  # the weights at the epoch's end
        np.testing.assert_array_equal(w.histograms[(f"weights/{layer}", last)], np.asarray(kernel))
    saved = np.load(tmp_path / "run" / "histograms" / f"epoch_{last:04d}.npz")  # the histogram hook's own gradient
    for layer in ("hidden_1", "hidden_2", "output"):
        norm = np.linalg.norm(w.histograms[(f"gradients/{layer}", last)])
        np.testing.assert_allclose(norm, saved[f"{layer}__grad_norm"], rtol=1e-6)
    ((tag, text, step),) = w.texts
    assert tag == "config" and step == 0 and "| depth | 2 |" in text and "| optimizer | sgd |" in text
    hparams, metrics, name = w.hparams
    assert name == "hparams" and hparams["depth"] == 2 and hparams["skips"] == "[]"
    assert metrics["hparam/val_accuracy"] == result.history[-1]["val_accuracy"]


def test_without_diagnostics_the_weights_only(tmp_path, writer):
    _, result, w = train(tmp_path, diagnostics=False)
    assert {t.split("/")[0] for t, _ in w.histograms} == {"weights"}


def test_a_sweeps_members_are_runs_with_the_runs_tags(tmp_path, writer):
    out = tmp_path / "sweep"
    out.mkdir()
    shutil.copy(ROOT / "docs" / "results" / "init_std" / "metrics.csv", out / "metrics.csv")
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    directory = callbacks.write_sweep_tensorboard(out)
    members = {(int(r["setting"]), int(r["seed"])) for r in rows}
    assert directory == out / "tensorboard" and len(Writer.made) == len(members)
    by_dir = {w.logdir.relative_to(directory).as_posix(): w for w in Writer.made}
    r = next(r for r in rows if r["setting"] == "1" and r["seed"] == "2" and r["epoch"] == "3")
    w = by_dir[f"01_init_std={r['init_std']}/seed2"]
    assert w.scalars[("loss/val", 3)] == float(r["val_loss"]) and w.scalars[("accuracy/train", 3)] == float(r["accuracy"])
    assert w.closed and "| init_std | " + r["init_std"] + " |" in w.texts[0][1]


def test_a_sweep_with_tensorboard_but_no_package_is_one_line(monkeypatch, capsys):
    from experiments import sweep as sweep_cli
    monkeypatch.setattr(callbacks, "tensorboard_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        sweep_cli.main(["--method", "baseline_3", "--seeds", "1", "--tensorboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "vgjax[tensorboard]" in err[0]


def test_the_tensorboard_hook_writes_every_history_number_per_epoch(tmp_path):
    Writer.made = []
    cfg = Config(depth=2, width=8, batch_size=16, epochs=2, diagnostics=False, best_checkpoint=False)
    rd = RunDir(tmp_path / "r")
    rd.create(cfg.to_dict())
    tb = callbacks.TensorBoard(rd.path / "tensorboard", writer=Writer)
    result = run(cfg, rd, arrays(n=32, n_test=16), hooks=[tb])
    (writer,) = Writer.made
    assert writer.closed and writer.purge_step is None and writer.logdir == rd.path / "tensorboard"
    got = writer.scalars
    for rec in result.history:
        for tag in ("loss", "accuracy", "val_loss", "val_accuracy", "grad_norm/hidden_1", "grad_norm/hidden_2"):
            assert got[(callbacks.tensorboard_tag(tag), rec["epoch"])] == rec[tag]
    assert not any(tag == "epoch" for tag, _ in writer.scalars)
    assert result.summary["tensorboard"] == str(rd.path / "tensorboard")
    # a resumed run tells TensorBoard to drop what came after the epoch it resumes from
    tb2 = callbacks.TensorBoard(rd.path / "tensorboard", writer=Writer)
    tb2.replay(result.history[:1])
    tb2.on_epoch_end({"epoch": 2, "loss": 1.0}, None)
    assert Writer.made[-1].purge_step == 2


def test_tensorboard_without_its_package_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "tensorboard_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'vgjax\[tensorboard\]'"):
        callbacks.hooks_for(Config(tensorboard=True), RunDir(tmp_path))
