"""Per-epoch hooks of the training toolbox (docs/study.md §6): early stopping, best-model
checkpoints, and TensorBoard scalars (optional: the ``tensorboard`` extra).

They are hooks (:class:`vgjax.hooks.Hook`): :func:`vgjax.runner.run` calls ``on_epoch_end``
after every epoch (True asks to stop), ``replay`` on resume and ``finalize`` at the end, which may
replace the final state (restore-best) and adds its ``info`` to summary.json.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import jax

from vgjax.checkpoint import Checkpoints
from vgjax.config import ConfigError
from vgjax.hooks import Hook
from vgjax.runlog import BEST_FILE, INT_COLUMNS, TENSORBOARD_DIR, atomic_write_json


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
    :func:`vgjax.runner.run` calls it on every way out of a run, :meth:`finalize` does too.
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


class TensorBoard(Hook):
    """Every history row's numbers as TensorBoard scalars in ``directory``, the step being the
    global epoch: loss, accuracy, val_loss, val_accuracy, reg_loss, epoch_time_s and the per-layer
    values (``grad_norm/hidden_1`` …). history.jsonl stays the record; this is a view of it.

    A fresh run starts an empty directory; a resumed one tells TensorBoard to drop what was written
    after the epoch it resumes from (``purge_step``). ``writer`` builds the writer (a test's fake).
    """

    def __init__(self, directory: str | Path, writer: Callable[..., Any] = tensorboard_writer):
        self.directory, self._make_writer = Path(directory), writer
        self._writer: Any = None
        self._purge_step: int | None = None

    def replay(self, history: list[dict]) -> None:
        if history:
            self._purge_step = int(history[-1]["epoch"]) + 1
        else:  # a fresh start: no curves of an earlier run in this directory
            shutil.rmtree(self.directory, ignore_errors=True)

    def on_epoch_end(self, record: dict, state, engine=None) -> bool:
        if self._writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._writer = self._make_writer(self.directory, purge_step=self._purge_step)
        for tag, value in record.items():
            if tag not in INT_COLUMNS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(tag, float(value), int(record["epoch"]))
        self._writer.flush()
        return False

    def wait_for_saves(self) -> None:
        """Close the writer (its events are on disk); idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def finalize(self, state):
        self.wait_for_saves()
        return state, {"tensorboard": str(self.directory)}


def hooks_for(config, run_dir) -> list[Hook]:
    """The config's bookkeeping hooks: the best-model checkpoint (``config.best_checkpoint``, in
    the run directory's ``best/``), early stopping (``config.early_stop``) and TensorBoard scalars
    (``config.tensorboard``, in ``tensorboard/``; ConfigError without tensorboardX)."""
    hooks: list[Hook] = []
    if config.tensorboard:
        if not tensorboard_available():
            raise ConfigError(TENSORBOARD_MISSING, "tensorboard")
        hooks.append(TensorBoard(run_dir.path / TENSORBOARD_DIR))
    if config.best_checkpoint:
        hooks.append(BestCheckpoint(run_dir.best_dir, monitor=config.monitor, mode=config.mode,
                                    asynchronous=config.async_checkpoints))
    if config.early_stop:
        hooks.append(EarlyStopping(config.early_stop, patience=config.patience, min_delta=config.min_delta,
                                   mode=config.mode, restore_best=config.restore_best))
    return hooks
