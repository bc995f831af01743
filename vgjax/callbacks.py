"""Per-epoch hooks of the training toolbox (docs/study.md §6): early stopping and best-model checkpoints.

Both are hooks (:class:`vgjax.hooks.Hook`): :func:`vgjax.runner.run` calls ``on_epoch_end``
after every epoch (True asks to stop), ``replay`` on resume and ``finalize`` at the end, which may
replace the final state (restore-best) and adds its ``info`` to summary.json.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax

from vgjax.checkpoint import Checkpoints, signals_deferred
from vgjax.hooks import Hook
from vgjax.runlog import BEST_FILE, atomic_write_json


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
    """Keep one orbax checkpoint: the state with the best ``monitor`` so far (``<run>/best``)."""

    def __init__(self, directory: str | Path, monitor: str = "val_accuracy", mode: str = "auto"):
        self.directory = Path(directory)
        self.track = _Monitor(monitor, mode)
        self.record: dict | None = None

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
            with signals_deferred():  # the checkpoint and best.json change together
                with Checkpoints(self.directory, max_to_keep=1) as ck:
                    ck.save(record["epoch"], state)
                atomic_write_json(self.directory / BEST_FILE,
                                  {"monitor": self.track.monitor, "mode": self.track.mode,
                                   "epoch": record["epoch"], "stage": record.get("stage"), "record": self.record})
        return False

    def finalize(self, state):
        return state, {"best_checkpoint": {"monitor": self.track.monitor, "epoch": self.track.best_epoch,
                                           "value": self.track.best, "path": str(self.directory)}}


def hooks_for(config, run_dir) -> list[Hook]:
    """The config's bookkeeping hooks: the best-model checkpoint (``config.best_checkpoint``, in
    the run directory's ``best/``) and early stopping (``config.early_stop``)."""
    hooks: list[Hook] = []
    if config.best_checkpoint:
        hooks.append(BestCheckpoint(run_dir.best_dir, monitor=config.monitor, mode=config.mode))
    if config.early_stop:
        hooks.append(EarlyStopping(config.early_stop, patience=config.patience, min_delta=config.min_delta,
                                   mode=config.mode, restore_best=config.restore_best))
    return hooks
