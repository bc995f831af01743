"""The run directory: config.json, history.jsonl / history.csv, summary.json.

Every file that must never look complete while half-written is written to a temporary file and
renamed into place. ``history.jsonl`` is appended and flushed once per epoch, so an interrupted
run keeps every finished epoch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
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


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_history(path: str | Path) -> list[dict]:
    """Rows of a history.jsonl; a torn last line (killed mid-write) is ignored."""
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
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

    def exists(self) -> bool:
        return self.config_path.exists()

    def status(self) -> str | None:
        if not self.summary_path.exists():
            return None
        try:
            return read_json(self.summary_path).get("status")
        except (OSError, json.JSONDecodeError):
            return None

    def is_finished(self) -> bool:
        return self.status() in ("finished", "diverged", "stopped")

    def clear(self) -> None:
        """Remove what an earlier run left here (files and folders a run writes, nothing else)."""
        for name in ("config.json", "history.jsonl", "history.csv", "summary.json"):
            (self.path / name).unlink(missing_ok=True)
        for name in ("checkpoints", "best", "histograms", "figures"):
            shutil.rmtree(self.path / name, ignore_errors=True)

    def create(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_path, config)

    def history(self) -> list[dict]:
        return read_history(self.history_path)

    def truncate_history(self, n_rows: int) -> list[dict]:
        """Keep the first ``n_rows`` rows (resume from a checkpoint); returns them."""
        rows = self.history()[:n_rows]
        atomic_write_text(self.history_path, "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def append_history(self, row: dict) -> None:
        with open(self.history_path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def write_csv(self, rows: list[dict] | None = None) -> None:
        atomic_write_text(self.path / "history.csv", history_csv(self.history() if rows is None else rows))

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)
