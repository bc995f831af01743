"""The run directory: config.json, history.jsonl / history.csv, summary.json, and its folders.

:class:`RunDir` is the one place that names a run directory's files and folders, for writing
and for reading.

Every file that must never look complete while half-written is written to a temporary file and
renamed into place. ``history.jsonl`` is appended and flushed once per epoch, so an interrupted
run keeps every finished epoch; before a row is appended, a torn last line (a write cut short by
kill -9) is dropped, so a torn line can only ever be the last one, and readers skip a damaged
line with a warning instead of dropping the rows after it. Everything is written as strict JSON:
NaN and infinities (a diverged run) become ``null``, and read back as NaN in history rows.

A directory written by a run holds the marker file ``.vgjax-run`` and the manifest of
:mod:`vgjax.owned` listing the run's entries: only such a directory is ever cleared or resumed, and
clearing it removes the listed entries only (a config.json that merely parses as a Config is not
enough: it may be anyone's).
"""

from __future__ import annotations

import csv
import io
import json
import os
import math
import time
import warnings
from pathlib import Path
from typing import Iterable

from vgjax import owned
from vgjax.files import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, strict


# The names inside a run directory: written and read only through RunDir below.
MARKER_NAME = ".vgjax-run"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.jsonl"
HISTORY_CSV_FILE = "history.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"  # the best epoch's checkpoint (BestCheckpoint) and BEST_FILE
BEST_FILE = "best.json"
HISTOGRAMS_DIR = "histograms"
FIGURES_DIR = "figures"
ERROR_LOG_FILE = "error.log"  # the traceback of a run that failed (not among RUN_FILES: clear() leaves it)
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, HISTORY_CSV_FILE, SUMMARY_FILE)
TENSORBOARD_DIR = "tensorboard"  # --tensorboard scalars
RUN_FOLDERS = (CHECKPOINTS_DIR, BEST_DIR, HISTOGRAMS_DIR, FIGURES_DIR, TENSORBOARD_DIR)
RUN_ENTRIES = (*RUN_FILES, ERROR_LOG_FILE, *RUN_FOLDERS)  # everything a run may write (vgjax.owned's manifest)
DONE_STATUSES = ("finished", "diverged", "stopped")  # summary statuses of a run that has ended
INT_COLUMNS = ("epoch", "stage", "stage_epoch")  # history counters: ints in history.jsonl and when read back


def _row_line(row: dict) -> bytes:
    return (json.dumps(strict(row), allow_nan=False) + "\n").encode()


def read_history(path: str | Path) -> list[dict]:
    """Rows of a history.jsonl. A damaged line (a torn last line after kill -9, or an edit) is
    skipped with a warning naming it; the rows after it are kept. ``null`` values read as NaN."""
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            torn = i == len(lines)  # no newline after it: a write cut short
            warnings.warn(f"{path} line {i} is {'torn (an unfinished write)' if torn else 'damaged'}; "
                          f"skipped it", stacklevel=2)
            continue
        rows.append({k: (math.nan if v is None else v) for k, v in row.items()})
    return rows


def number(v) -> float:
    """A history value as a float: NaN for None, '' and anything unreadable."""
    if v is None or v == "":
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def read_history_csv(path: str | Path) -> list[dict]:
    """Rows of a history.csv: counters as ints, everything else as floats (NaN where unreadable)."""
    with open(path, newline="") as f:
        return [{k: (int(float(v)) if k in INT_COLUMNS else number(v)) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)]


def best_epoch(history: Iterable[dict], monitor: str = "val_accuracy",
               mode: str = "max") -> tuple[float, int | None]:
    """(best value, its epoch) of one history column: the largest (``mode="max"``) or smallest.

    Only finite values count: an epoch whose value is NaN (a diverged epoch, or ``null`` in
    history.jsonl), infinite or missing is never the best. Ties go to the earliest epoch. With no
    finite value at all: ``(nan, None)``. Every committed summary.json was written by this rule.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be max or min, got {mode!r}")
    best, epoch = math.nan, None
    for row in history:
        value = row.get(monitor)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if epoch is None or (value > best if mode == "max" else value < best):
            best, epoch = value, row["epoch"]
    return best, epoch


def history_csv(rows: Iterable[dict]) -> str:
    rows = list(rows)
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


class RunDir:
    """Files of one run. ``status`` in summary.json: running | finished | diverged | stopped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / CONFIG_FILE)
    history_path = property(lambda self: self.path / HISTORY_FILE)
    history_csv_path = property(lambda self: self.path / HISTORY_CSV_FILE)
    summary_path = property(lambda self: self.path / SUMMARY_FILE)
    checkpoint_dir = property(lambda self: self.path / CHECKPOINTS_DIR)
    best_dir = property(lambda self: self.path / BEST_DIR)
    best_path = property(lambda self: self.path / BEST_DIR / BEST_FILE)
    histogram_dir = property(lambda self: self.path / HISTOGRAMS_DIR)
    figures_dir = property(lambda self: self.path / FIGURES_DIR)
    error_log_path = property(lambda self: self.path / ERROR_LOG_FILE)

    marker_path = property(lambda self: self.path / MARKER_NAME)

    def histogram_path(self, epoch: int) -> Path:
        """The weight and gradient histograms written at global epoch ``epoch``."""
        return self.histogram_dir / f"epoch_{epoch:04d}.npz"

    def histogram_files(self) -> list[Path]:
        """The histogram files present, in epoch order."""
        return sorted(self.histogram_dir.glob("epoch_*.npz"))

    def has_checkpoint(self) -> bool:
        """A best-epoch checkpoint or a numbered checkpoint is present."""
        ckpt = self.checkpoint_dir
        return self.best_path.exists() or (ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir()))

    def read_config(self) -> dict:
        return read_json(self.config_path)

    def read_summary(self) -> dict:
        """summary.json, or {} when there is none yet."""
        return read_json(self.summary_path) if self.summary_path.exists() else {}

    def read_rows(self) -> list[dict]:
        """The history: history.jsonl, else (a copied run without it) history.csv."""
        rows = self.history()
        if not rows and self.history_csv_path.exists():
            rows = read_history_csv(self.history_csv_path)
        return rows

    def exists(self) -> bool:
        return self.config_path.exists()

    def is_vgjax_run(self) -> bool:
        """Its config.json was written by a run (the manifest, or the marker of an older run, says so)."""
        return owned.owners(self.path).get(CONFIG_FILE) == "run"

    def run_files(self) -> list[str]:
        """The names of the files and folders a run writes that exist here."""
        return [n for n in (MARKER_NAME, *RUN_ENTRIES) if (self.path / n).exists()]

    def status(self) -> str | None:
        if not self.summary_path.exists():
            return None
        try:
            summary = read_json(self.summary_path)
        except (OSError, json.JSONDecodeError):
            return None
        return summary.get("status") if isinstance(summary, dict) else None

    def is_finished(self) -> bool:
        return self.status() in DONE_STATUSES

    def clear(self) -> None:
        """Remove what an earlier run left here: the entries the manifest lists as a run's, nothing else."""
        owned.remove(self.path, "run")

    def mark(self) -> None:
        """Write the marker that says this directory is a vgjax run."""
        if not self.marker_path.is_file():
            atomic_write_json(self.marker_path, {"vgjax_run": 1, "created": time.strftime("%Y-%m-%d %H:%M:%S")})

    def create(self, config: dict) -> None:
        owned.claim(self.path, "run", RUN_ENTRIES)
        self.mark()
        atomic_write_json(self.config_path, config)

    def history(self) -> list[dict]:
        return read_history(self.history_path)

    def truncate_history(self, epochs: int) -> list[dict]:
        """Keep the rows of the first ``epochs`` epochs (resume from a checkpoint); returns them."""
        rows, last = [], 0
        for r in self.history():
            epoch = r.get("epoch")
            if isinstance(epoch, int) and last < epoch <= epochs:  # in order, once each
                rows.append(r)
                last = epoch
        atomic_write_bytes(self.history_path, b"".join(_row_line(r) for r in rows))
        return rows

    def append_history(self, row: dict) -> None:
        """Append one row; a torn last line left by an interrupted write is dropped first."""
        with open(self.history_path, "ab+") as f:
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    f.seek(0)
                    f.truncate(f.read().rfind(b"\n") + 1)
            f.write(_row_line(row))
            f.flush()

    def write_csv(self, rows: list[dict] | None = None) -> None:
        atomic_write_text(self.history_csv_path, history_csv(self.history() if rows is None else rows))

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)


def find_run_dirs(root: str | Path) -> list[Path]:
    """Run directories directly under ``root`` (those holding a config.json), by name."""
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and RunDir(p).exists())


