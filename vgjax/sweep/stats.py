"""Sweep statistics: per member the divergence and plateau-exit epochs, per setting the mean,
std, min and max over seeds, and the long table of every member's metrics per epoch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vgjax.sweep.grid import METRICS, Members
from vgjax.train.engine import diverged

PLATEAU_ACCURACY = 0.2  # chance is 0.1: a member has left the plateau once val accuracy > 0.2


def first_epoch(mask: np.ndarray) -> np.ndarray:
    """1-based index of the first true entry along the last axis (epochs); 0 where there is none."""
    return np.where(mask.any(-1), mask.argmax(-1) + 1, 0)


def diverged_epochs(history: dict[str, np.ndarray]) -> np.ndarray:
    """Per member, the first epoch whose train or validation loss is NaN/Inf or has exploded
    past :data:`vgjax.train.engine.DIVERGED_LOSS` (0: never): the rule of single runs."""
    return first_epoch(diverged(history["loss"], history["val_loss"]))


def plateau_exit_epochs(history: dict[str, np.ndarray], threshold: float = PLATEAU_ACCURACY) -> np.ndarray:
    """Per member, the first epoch whose val accuracy exceeds ``threshold`` (0: never left)."""
    return first_epoch(history["val_accuracy"] > threshold)


def _num(x: Any) -> float | None:
    """A summary statistic as a float of 7 significant digits (float32 precision); None if NaN/Inf."""
    x = float(x)
    return float(f"{x:.7g}") if math.isfinite(x) else None


def describe(values: np.ndarray) -> dict[str, float | None]:
    """Mean, sample std (ddof 1; 0 for one value), min and max, ignoring NaN (None if all NaN)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": _num(v.mean()), "std": _num(v.std(ddof=1) if v.size > 1 else 0.0),
            "min": _num(v.min()), "max": _num(v.max())}


def summarize(settings: list[dict], members: Members, history: dict[str, np.ndarray],
              threshold: float = PLATEAU_ACCURACY) -> list[dict]:
    """Per setting: final and best val accuracy over seeds, the plateau exit, divergence."""
    left, diverged = plateau_exit_epochs(history, threshold), diverged_epochs(history)
    val = history["val_accuracy"]
    out = []
    for i, setting in enumerate(settings):
        rows = np.flatnonzero(members["setting"] == i)
        exits = left[rows][left[rows] > 0]
        bad = rows[diverged[rows] > 0]
        out.append({
            "setting": i, **setting, "seeds": int(rows.size),
            "final_val_accuracy": describe(val[rows, -1]),
            "best_val_accuracy": describe(np.nanmax(val[rows], axis=1)),
            "final_loss": describe(history["loss"][rows, -1]),
            "left_plateau": {"threshold": threshold, "fraction": float(exits.size / max(rows.size, 1)),
                             "epoch_mean": _num(exits.mean()) if exits.size else None,
                             "epoch_median": _num(np.median(exits)) if exits.size else None},
            "diverged": {"count": int(bad.size), "seeds": [int(s) for s in members["seed"][bad]],
                         "epochs": [int(e) for e in diverged[bad]]},
        })
    return out


def _f32(x: Any) -> float:
    """The shortest decimal that round-trips to the same float32 (0.1, not 0.10000000149)."""
    return float(str(np.float32(x)))


def metric_rows(settings: list[dict], members: Members, history: dict[str, np.ndarray],
                stages: np.ndarray | None = None) -> list[dict]:
    """One row per (member, epoch): setting columns, seed, epoch, with ``stages`` (member ×
    epoch × (stage, epoch within it), for staged sweeps) the stage columns, the four metrics."""
    rows = []
    epochs = history["loss"].shape[1]
    for i in range(len(members["seed"])):
        base = {"setting": int(members["setting"][i]), **settings[members["setting"][i]],
                "seed": int(members["seed"][i])}
        for e in range(epochs):
            where = {} if stages is None else {"stage": int(stages[i, e, 0]), "stage_epoch": int(stages[i, e, 1])}
            rows.append({**base, "epoch": e + 1, **where, **{m: _f32(history[m][i, e]) for m in METRICS}})
    return rows
