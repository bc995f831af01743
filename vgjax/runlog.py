"""The run directory: config.json, history.jsonl / history.csv, summary.json.

Every file that must never look complete while half-written is written to a temporary file and
renamed into place. ``history.jsonl`` is appended and flushed once per epoch, so an interrupted
run keeps every finished epoch; before a row is appended, a torn last line (a write cut short by
kill -9) is dropped, so a torn line can only ever be the last one, and readers skip a damaged
line with a warning instead of dropping the rows after it. Everything is written as strict JSON:
NaN and infinities (a diverged run) become ``null``, and read back as NaN in history rows.

A directory written by a run holds the marker file ``.vgjax-run``: only such a directory (or one
whose config.json is a vgjax config, from before the marker existed) is ever cleared or resumed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


MARKER_NAME = ".vgjax-run"
RUN_FILES = ("config.json", "history.jsonl", "history.csv", "summary.json")
RUN_FOLDERS = ("checkpoints", "best", "histograms", "figures")


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(strict(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file; a damaged one raises json.JSONDecodeError whose message names the file."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        err = json.JSONDecodeError(f"{path} is not UTF-8 text", "", 0)
        err.args = (f"{path} is not UTF-8 text ({e.reason} at byte {e.start})",)
        raise err from None
    except json.JSONDecodeError as e:
        raise json.JSONDecodeError(f"{path} is not valid JSON ({e.msg})", e.doc, e.pos) from None


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

    config_path = property(lambda self: self.path / "config.json")
    history_path = property(lambda self: self.path / "history.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")

    marker_path = property(lambda self: self.path / MARKER_NAME)

    def exists(self) -> bool:
        return self.config_path.exists()

    def is_vgjax_run(self) -> bool:
        """Marked as a run (or, from before the marker, its config.json is a vgjax config)."""
        if self.marker_path.is_file():
            return True
        try:
            from vgjax.config import Config

            Config.from_dict(read_json(self.config_path))
        except Exception:  # missing, unreadable or someone else's config.json
            return False
        return True

    def run_files(self) -> list[str]:
        """The names of the files and folders a run writes that exist here."""
        return [n for n in (MARKER_NAME, *RUN_FILES, *RUN_FOLDERS) if (self.path / n).exists()]

    def status(self) -> str | None:
        if not self.summary_path.exists():
            return None
        try:
            summary = read_json(self.summary_path)
        except (OSError, json.JSONDecodeError):
            return None
        return summary.get("status") if isinstance(summary, dict) else None

    def is_finished(self) -> bool:
        return self.status() in ("finished", "diverged", "stopped")

    def clear(self) -> None:
        """Remove what an earlier run left here (files and folders a run writes, nothing else)."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def mark(self) -> None:
        """Write the marker that says this directory is a vgjax run."""
        if not self.marker_path.is_file():
            atomic_write_json(self.marker_path, {"vgjax_run": 1, "created": time.strftime("%Y-%m-%d %H:%M:%S")})

    def create(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
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
        atomic_write_text(self.path / "history.csv", history_csv(self.history() if rows is None else rows))

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)
