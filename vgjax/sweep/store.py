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

from vgjax import owned
from vgjax.run import lock as runlock
from vgjax.files import atomic_write_bytes, atomic_write_json, read_json
from vgjax.sweep.grid import METRICS, Members

CHUNKS_DIR = "chunks"
PLAN_FILE = "plan.json"
CONFIG_FILE = "config.json"
CURVE_FILES = ("sweep_val_accuracy.png", "sweep_loss.png")  # vgjax.report.figures.CURVE_FIGURES' files


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


def sweep_entries() -> tuple[str, ...]:
    """Every entry a sweep writes in its directory (vgjax.owned's manifest lists them)."""
    return (CONFIG_FILE, "metrics.csv", "summary.json", "summary.csv", CHUNKS_DIR, *CURVE_FILES)


def out_dir_problem(path: Path, overwrite: bool) -> str | None:
    """Why a new sweep cannot be written to ``path`` (None: it can). Only a sweep's own entries
    are ever replaced (vgjax.owned): a run directory or anyone's folder is refused, also with
    --overwrite."""
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a sweep directory; choose another --out"
    entries = owned.present(path)
    if not entries:
        return None
    if owned.owners(path).get(CONFIG_FILE) != "sweep":
        what = "a vgjax run" if owned.owners(path).get(CONFIG_FILE) == "run" else "not a sweep directory"
        return (f"{path} holds {', '.join(entries[:4])}{' ...' if len(entries) > 4 else ''} and is {what} "
                f"(no {owned.MANIFEST} says experiments.sweep wrote it): nothing there is replaced; "
                f"choose another --out")
    if not overwrite:
        return (f"{path} already holds a sweep; use --resume to continue it, --overwrite to replace it "
                f"or --out for another directory")
    return owned.write_problem(path, "sweep", sweep_entries(), "experiments.sweep")


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
    holder = runlock.live_holder(path) if path.is_dir() else None
    if holder:
        return (f"{path} is in use by a live sweep ({holder}); wait for it to end or stop it, or use "
                f"another --out")
    return resume_problem(path, record) if resume else out_dir_problem(path, overwrite)


def prepare_out_dir(path: Path) -> str | None:
    """The directory of a new sweep: an old sweep's entries there removed (only those: --overwrite
    was checked) and the new ones claimed (vgjax.owned); the reason when it cannot be made."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        owned.remove(path, "sweep")
        owned.claim(path, "sweep", sweep_entries())
    except OSError as e:
        return f"cannot create the output directory {path}: {e.strerror}"
    except ValueError as e:  # a foreign file appeared since the check
        return str(e)
    return None


def lock_dir(path: Path) -> tuple[runlock.RunLock | None, str | None]:
    """The sweep directory's lock (the directory is created), or why it cannot be had: a sweep
    directory is written by one live process at a time, like a run directory (vgjax.run.lock)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        return runlock.RunLock(path).acquire(), None
    except runlock.LockedError as e:
        return None, f"{path} is in use by a live sweep ({e}); wait for it to end or stop it, or use another --out"
    except OSError as e:
        return None, f"cannot create or lock the output directory {path}: {e.strerror}"
