"""Per-epoch hooks of the training toolbox (docs/study.md §6): early stopping, best-model
checkpoints, and TensorBoard (optional: the ``tensorboard`` extra).

They are hooks (:class:`vgjax.train.hooks.Hook`): :func:`vgjax.run.runner.run` calls ``on_epoch_end``
after every epoch (True asks to stop), ``replay`` on resume and ``finalize`` at the end, which may
replace the final state (restore-best) and adds its ``info`` to summary.json.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from vgjax.run.checkpoint import Checkpoints
from vgjax.config import ConfigError
from vgjax.train.diagnostics import kernels, probe_kernel_grads
from vgjax.train.hooks import Hook
from vgjax.run.rundir import BEST_FILE, INT_COLUMNS, TENSORBOARD_DIR
from vgjax.files import atomic_write_json


def _mode_for(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor else "min"


class _Monitor:
    """Tracks the best value of one history column (Keras semantics for min_delta)."""

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0):
        self.monitor, self.mode, self.min_delta = monitor, _mode_for(monitor, mode), abs(min_delta)
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be min, max or auto, got {mode!r}")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None

    def value(self, record: dict) -> float:
        if self.monitor not in record:
            raise KeyError(f"cannot monitor {self.monitor!r}: not in the history ({', '.join(record)})")
        return float(record[self.monitor])

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Hook):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = False):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.track = _Monitor(monitor, mode, min_delta)
        self.patience, self.restore_best = patience, restore_best
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_state = None

    def on_epoch_end(self, record: dict, state, engine=None) -> bool:
        value = self.track.value(record)
        if self.track.improved(value):
            self.track.best, self.track.best_epoch, self.wait = value, record["epoch"], 0
            if self.restore_best:
                self.best_state = jax.device_get(state)  # host copy: the device buffers get donated
            return False
        self.wait += 1
        if self.wait >= self.patience:  # Keras: stop after `patience` epochs without improvement
            self.stopped_epoch = record["epoch"]
            return True
        return False

    def on_stage_start(self, state, engine, stage, epochs_before: int) -> None:
        """Each stage of a staged run is its own fit (as in Keras): counters start afresh."""
        if getattr(stage, "index", 1) > 1 and int(state.epoch) == 0:
            self.track = _Monitor(self.track.monitor, self.track.mode, self.track.min_delta)
            self.wait, self.stopped_epoch, self.best_state = 0, None, None

    def replay(self, history: list[dict]) -> None:
        """Rebuild the counters from the history of a resumed run (weights of an earlier best
        epoch are not recoverable this way: restore-best then considers the epochs after resume)."""
        for rec in history:
            value = self.track.value(rec)
            if self.track.improved(value):
                self.track.best, self.track.best_epoch, self.wait = value, rec["epoch"], 0
            else:
                self.wait += 1

    def finalize(self, state):
        info = {"early_stopping": {"monitor": self.track.monitor, "mode": self.track.mode,
                                   "patience": self.patience, "min_delta": self.track.min_delta,
                                   "stopped_epoch": self.stopped_epoch, "best_epoch": self.track.best_epoch,
                                   "best_value": self.track.best,
                                   "restored_best": bool(self.restore_best and self.stopped_epoch
                                                         and self.best_state is not None)}}
        if info["early_stopping"]["restored_best"]:
            state = jax.device_put(self.best_state)
        return state, info


class BestCheckpoint(Hook):
    """Keep one orbax checkpoint: the state with the best ``monitor`` so far (``<run>/best``).

    Saves are asynchronous unless ``asynchronous=False``: best.json is rewritten once the new
    checkpoint is complete (the two change together). :meth:`wait_for_saves` waits for the save in flight;
    :func:`vgjax.run.runner.run` calls it on every way out of a run, :meth:`finalize` does too.
    """

    def __init__(self, directory: str | Path, monitor: str = "val_accuracy", mode: str = "auto",
                 asynchronous: bool = True):
        self.directory = Path(directory)
        self.track = _Monitor(monitor, mode)
        self.record: dict | None = None
        self.asynchronous = asynchronous
        self._ckpt: Checkpoints | None = None

    def replay(self, history: list[dict]) -> None:
        """On resume: the best so far is the best of the kept history (its checkpoint is on disk)."""
        for rec in history:
            value = self.track.value(rec)
            if self.track.improved(value):
                self.track.best, self.track.best_epoch, self.record = value, rec["epoch"], dict(rec)

    def on_epoch_end(self, record: dict, state, engine=None) -> bool:
        value = self.track.value(record)
        if self.track.improved(value):
            self.track.best, self.track.best_epoch = value, record["epoch"]
            self.record = dict(record)
            best = {"monitor": self.track.monitor, "mode": self.track.mode, "epoch": record["epoch"],
                    "stage": record.get("stage"), "record": self.record}
            if self._ckpt is None:
                self._ckpt = Checkpoints(self.directory, max_to_keep=1, asynchronous=self.asynchronous)
            self._ckpt.save(record["epoch"], state, then=lambda: atomic_write_json(self.directory / BEST_FILE, best))
        return False

    def wait_for_saves(self) -> None:
        """Wait for the save in flight (and its best.json), release the manager; idempotent."""
        ckpt, self._ckpt = self._ckpt, None
        if ckpt is not None:
            ckpt.close()

    def finalize(self, state):
        self.wait_for_saves()
        return state, {"best_checkpoint": {"monitor": self.track.monitor, "epoch": self.track.best_epoch,
                                           "value": self.track.best, "path": str(self.directory)}}


TENSORBOARD_MISSING = ("--tensorboard needs tensorboardX, which is not installed: pip install "
                       "'vgjax[tensorboard]' (or pip install tensorboardX)")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboardX") is not None


def tensorboard_writer(logdir: Path, purge_step: int | None = None) -> Any:
    """tensorboardX's SummaryWriter into ``logdir``: add_scalar(tag, value, step), flush(), close()."""
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(logdir), purge_step=purge_step)


# history columns -> TensorBoard tags: training and validation of a metric on one chart
TENSORBOARD_TAGS = {"loss": "loss/train", "val_loss": "loss/val", "reg_loss": "loss/regularisation",
                    "accuracy": "accuracy/train", "val_accuracy": "accuracy/val", "epoch_time_s": "time/epoch_s"}


def tensorboard_tag(column: str) -> str:
    """The TensorBoard tag of a history column (per-layer columns keep theirs: grad_norm/hidden_1)."""
    return TENSORBOARD_TAGS.get(column, column)


def hparams_of(config: dict) -> dict:
    """A config as TensorBoard hparams: numbers, strings and booleans (anything else as its text)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config.items()}


def config_markdown(config: dict) -> str:
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in config.items())


class TensorBoard(Hook):
    """A run as TensorBoard shows it best, in ``directory``, the step being the global epoch:

    * every history number as a scalar, training and validation on one chart (``loss/train`` and
      ``loss/val``, ``accuracy/train`` and ``accuracy/val``; :data:`TENSORBOARD_TAGS`), the
      per-layer values under their own names (``grad_norm/hidden_1`` ...);
    * per-layer histograms every epoch: ``weights/<layer>`` (the kernels), and with a ``probe``
      batch (``(x_u8, y)``; the runner passes the diagnostics' probe when diagnostics are on)
      ``gradients/<layer>``, the kernel gradient of the probe batch's loss;
    * the ``config`` (a dict) as text at step 0 and, at the end, as hparams next to the final
      metrics (``hparam/val_accuracy`` ...), so ``--logdir runs`` compares runs by their settings.

    history.jsonl stays the record; this is a view of it. A fresh run starts an empty directory; a
    resumed one tells TensorBoard to drop what was written after the epoch it resumes from
    (``purge_step``). ``writer`` builds the writer (a test's fake).
    """

    def __init__(self, directory: str | Path, writer: Callable[..., Any] | None = None,
                 config: dict | None = None, probe: tuple | None = None):
        self.directory, self._make_writer = Path(directory), writer or tensorboard_writer
        self.config, self.probe = config, probe
        self._writer: Any = None
        self._purge_step: int | None = None
        self._last: dict = {}
        self._grad_fns: dict[int, tuple] = {}

    def replay(self, history: list[dict]) -> None:
        if history:
            self._purge_step = int(history[-1]["epoch"]) + 1
            self._last = history[-1]
        else:  # a fresh start: no curves of an earlier run in this directory
            shutil.rmtree(self.directory, ignore_errors=True)

    def _open(self) -> Any:
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._writer = self._make_writer(self.directory, purge_step=self._purge_step)
            if self.config is not None and self._purge_step is None:
                self._writer.add_text("config", config_markdown(self.config), 0)
        return self._writer

    def _gradients(self, state, engine) -> dict:
        if id(engine) not in self._grad_fns:  # one compiled gradient per engine (stage); kept alive
            self._grad_fns[id(engine)] = (engine, jax.jit(lambda st, x, y: probe_kernel_grads(engine, st, x, y)))
        return self._grad_fns[id(engine)][1](state, *self.probe)

    def histograms(self, record: dict, state, engine) -> None:
        step, writer = int(record["epoch"]), self._open()
        for name, kernel in jax.device_get(kernels(state.params)).items():
            writer.add_histogram(f"weights/{name}", np.asarray(kernel), step)
        if self.probe is not None and engine is not None:
            for name, grad in jax.device_get(self._gradients(state, engine)).items():
                writer.add_histogram(f"gradients/{name}", np.asarray(grad), step)

    def on_epoch_end(self, record: dict, state, engine=None) -> bool:
        writer = self._open()
        for column, value in record.items():
            if column not in INT_COLUMNS and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(tensorboard_tag(column), float(value), int(record["epoch"]))
        if getattr(state, "params", None) is not None:
            self.histograms(record, state, engine)
        writer.flush()
        self._last = record
        return False

    def wait_for_saves(self) -> None:
        """Close the writer (its events are on disk); idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def finalize(self, state):
        if self.config is not None and self._last:
            metrics = {f"hparam/{k}": float(self._last[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                       if isinstance(self._last.get(k), (int, float)) and math.isfinite(self._last[k])}
            self._open().add_hparams(hparams_of(self.config), metrics, name="hparams")
        self.wait_for_saves()
        return state, {"tensorboard": str(self.directory)}


def write_sweep_tensorboard(out: str | Path, writer: Callable[..., Any] | None = None) -> Path:
    """A finished sweep's metrics.csv as TensorBoard runs in ``out/tensorboard/``: one writer per
    member, ``<setting>_<what varies>/seed<k>`` (``00_init_std=0.05/seed0``), so TensorBoard's run
    filter picks a setting's seeds or one seed of every setting; the tags are the runs' (loss/train,
    loss/val, accuracy/train, accuracy/val) and each member's settings are its text at step 0.
    Written from the file, after the sweep: a view of metrics.csv, rewritten on every call."""
    out = Path(out)
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0])
    settings = columns[columns.index("setting") + 1:columns.index("seed")]
    varying = [c for c in settings if len({r[c] for r in rows}) > 1] or ["method"]
    directory = out / TENSORBOARD_DIR
    shutil.rmtree(directory, ignore_errors=True)
    members: dict[tuple, list[dict]] = {}
    for r in rows:
        members.setdefault((int(r["setting"]), int(r["seed"])), []).append(r)
    for (setting, seed), history in sorted(members.items()):
        label = ",".join(f"{c}={history[0][c]}" for c in varying).replace("/", "_")
        logdir = directory / f"{setting:02d}_{label}" / f"seed{seed}"
        logdir.mkdir(parents=True, exist_ok=True)
        w = (writer or tensorboard_writer)(logdir, purge_step=None)
        w.add_text("config", config_markdown({c: history[0][c] for c in (*settings, "seed")}), 0)
        for r in history:
            for column in columns[columns.index("epoch") + 1:]:
                if r[column] not in ("", None) and column not in INT_COLUMNS:
                    w.add_scalar(tensorboard_tag(column), float(r[column]), int(r["epoch"]))
        w.close()
    return directory


def hooks_for(config, run_dir, probe: tuple | None = None) -> list[Hook]:
    """The config's bookkeeping hooks: the best-model checkpoint (``config.best_checkpoint``, in
    the run directory's ``best/``), early stopping (``config.early_stop``) and TensorBoard
    (``config.tensorboard``, in ``tensorboard/``; ConfigError without tensorboardX; gradient
    histograms of the ``probe`` batch when diagnostics are on)."""
    hooks: list[Hook] = []
    if config.tensorboard:
        if not tensorboard_available():
            raise ConfigError(TENSORBOARD_MISSING, "tensorboard")
        hooks.append(TensorBoard(run_dir.path / TENSORBOARD_DIR, config=config.to_dict(),
                                 probe=probe if config.diagnostics else None))
    if config.best_checkpoint:
        hooks.append(BestCheckpoint(run_dir.best_dir, monitor=config.monitor, mode=config.mode,
                                    asynchronous=config.async_checkpoints))
    if config.early_stop:
        hooks.append(EarlyStopping(config.early_stop, patience=config.patience, min_delta=config.min_delta,
                                   mode=config.mode, restore_best=config.restore_best))
    return hooks
