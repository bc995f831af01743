"""A sweep directory that survives an interruption: every finished chunk's metrics are kept in
``<out>/chunks/<program>-<first member>-<end member>.npz`` as it completes (written atomically,
with a digest of its arrays), beside ``chunks/plan.json`` (programs, members, epochs, worker
processes). A resumed sweep (``experiments.sweep --resume``) checks that its settings are the
saved ones, takes every intact chunk from there, and trains the others; a damaged chunk is
trained again. The chunks are planned as before, so the outputs are those of an uninterrupted
sweep.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np

from vgjax.runlog import atomic_write_bytes, atomic_write_json, read_json
from vgjax.sweep.grid import METRICS, Members

CHUNKS_DIR = "chunks"
PLAN_FILE = "plan.json"
CONFIG_FILE = "config.json"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode() + np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


class ChunkStore:
    """The finished chunks of one sweep directory."""

    def __init__(self, out: str | Path):
        self.dir = Path(out) / CHUNKS_DIR

    def path(self, program: int, start: int, stop: int) -> Path:
        return self.dir / f"{program}-{start}-{stop}.npz"

    def save(self, program: int, members: Members, start: int, stop: int, history: dict[str, np.ndarray]) -> None:
        """Members ``start:stop`` of program ``program`` finished with ``history`` (member × epoch)."""
        arrays = {"seed": np.asarray(members["seed"][start:stop], np.int64),
                  **{m: np.asarray(history[m], np.float32) for m in METRICS}}
        buf = io.BytesIO()
        np.savez(buf, digest=np.asarray(_digest(arrays)), **arrays)
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path(program, start, stop), buf.getvalue())

    def load(self, program: int, members: Members, epochs: int) -> tuple[dict[tuple[int, int], dict], list[str]]:
        """Program ``program``'s intact chunks by member range, and the names of damaged ones."""
        done, damaged = {}, []
        for path in sorted(self.dir.glob(f"{program}-*-*.npz")):
            try:
                start, stop = (int(t) for t in path.stem.split("-")[1:])
            except ValueError:
                continue
            arrays = _read_chunk(path, members["seed"][start:stop], stop - start, epochs)
            if arrays is None:
                damaged.append(path.name)
            else:
                done[(start, stop)] = arrays
        return done, damaged

    def write_plan(self, plan: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.dir / PLAN_FILE, plan)

    def remove(self) -> None:
        """Drop the chunks once the sweep's outputs are written (they hold the same numbers)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def read_plan(self) -> dict:
        try:
            plan = read_json(self.dir / PLAN_FILE)
        except (OSError, ValueError):
            return {}
        return plan if isinstance(plan, dict) else {}


def _read_chunk(path: Path, seeds: np.ndarray, n: int, epochs: int) -> dict[str, np.ndarray] | None:
    """The chunk's metrics if the file is whole and belongs to those members, else None."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("seed", *METRICS)}
            digest = str(f["digest"])
    except Exception:  # noqa: BLE001 - a truncated or foreign file raises many kinds
        return None
    if len(seeds) != n or n == 0 or digest != _digest(arrays) or not np.array_equal(arrays["seed"], seeds):
        return None
    if any(arrays[m].shape != (n, epochs) or arrays[m].dtype != np.float32 for m in METRICS):
        return None
    return {m: arrays[m] for m in METRICS}


def out_dir_problem(path: Path, overwrite: bool) -> str | None:
    """Why a new sweep cannot be written to ``path`` (None: it can)."""
    if (path / CONFIG_FILE).exists():
        if not overwrite:
            return (f"{path} already holds a sweep; use --resume to continue it, --overwrite to replace it "
                    f"or --out for another directory")
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        return f"{path} exists and is not a sweep directory; choose another --out"
    return None


def is_finished(path: Path) -> bool:
    """Whether ``path`` holds a finished sweep (its summary.json, written last, says so)."""
    try:
        return read_json(path / "summary.json").get("status") == "finished"
    except (OSError, ValueError, AttributeError):
        return False


def resume_problem(path: Path, record: dict) -> str | None:
    """Why the sweep in ``path`` cannot be resumed with the settings ``record`` (the config.json
    these flags write), or None when it can."""
    try:
        saved = read_json(path / CONFIG_FILE)
    except FileNotFoundError:
        return f"{path} holds no sweep to resume (no {CONFIG_FILE}); start it without --resume"
    except (OSError, ValueError) as e:
        return f"cannot resume {path}: its {CONFIG_FILE} cannot be read ({e})"
    given = json.loads(json.dumps(record))
    if saved == given:
        return f"{path} holds a finished sweep; there is nothing to resume" if is_finished(path) else None
    differ = sorted({f"sweep.{k}" for k in {*saved.get("sweep", {}), *given["sweep"]}
                     if saved.get("sweep", {}).get(k) != given["sweep"].get(k)}
                    | {f"config.{k}" for old, new in zip(saved.get("configs", []), given["configs"])
                       for k in {*old, *new} if old.get(k) != new.get(k)})
    if len(saved.get("configs", [])) != len(given["configs"]):
        differ.append("the number of programs")
    return (f"{path} holds a sweep of other settings (differs in {', '.join(differ[:6]) or 'its layout'}); "
            f"give the flags it was started with, or --overwrite to replace it")


def sweep_dir_problem(path: Path, record: dict, resume: bool, overwrite: bool) -> str | None:
    """Why ``path`` cannot hold the sweep of ``record`` as asked -- continued (``resume``), or new
    and replacing an old one there (``overwrite``) -- or None when it can (checked before any work)."""
    if resume and overwrite:
        return "--resume continues a sweep and --overwrite replaces it; give one of them"
    return resume_problem(path, record) if resume else out_dir_problem(path, overwrite)


def prepare_out_dir(path: Path) -> str | None:
    """An empty output directory (an old sweep there is removed: --overwrite was checked); the
    reason when it cannot be created."""
    if (path / CONFIG_FILE).exists():
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create the output directory {path}: {e.strerror}"
    return None
