"""What a command may delete or overwrite: only what it can show it wrote (docs/design.md,
"What a command may delete").

Every directory a vgjax command writes holds a manifest, ``.vgjax-owned.json``: the entries
(files and folders directly in the directory) the command writes, each with the kind of command
that wrote it (``run``, ``sweep``, ``suite``, ``seeds-suite``, ``report``). An entry is recorded
(:func:`claim`) before it is first written. The rule, the same for every command:

- a command may write an entry only when it is absent or the manifest lists it as written by a
  command of the same kind (:func:`write_problem`); anything else there is foreign and is never
  overwritten: the command refuses with one line before any work;
- ``--overwrite`` removes exactly the entries the manifest lists for that kind (a listed folder
  whole, :func:`remove`); every other file in the directory stays where it is;
- a directory without a manifest is no command's: nothing in it is replaced or removed.

Run directories from before the manifest hold only the marker ``.vgjax-run``: its run entries
(config.json, history, summary, the run's folders) count as the run's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

from vgjax.files import atomic_write_text

MANIFEST = ".vgjax-owned.json"
RUN_MARKER = ".vgjax-run"  # a run directory's marker (vgjax.run.rundir.MARKER_NAME)
LOCK_NAME = ".vgjax-lock"  # vgjax.run.lock.LOCK_NAME: the lock is its own, never an entry
# the entries of a run directory (vgjax.run.rundir's names), for a marked run without a manifest
RUN_ENTRIES = ("config.json", "history.jsonl", "history.csv", "summary.json", "error.log", "checkpoints", "best",
               "histograms", "figures", "tensorboard")


def _bookkeeping(name: str) -> bool:
    """The manifest, the run marker and the lock files: never entries of anyone."""
    return name in (MANIFEST, RUN_MARKER) or name.startswith(LOCK_NAME)


def _plain(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or _bookkeeping(name):
        raise ValueError(f"{name!r} is not the name of an entry directly in a directory")
    return name


def owners(path: str | Path) -> dict[str, str]:
    """Entry name -> the kind of command that wrote it, from the manifest ({} without one)."""
    path = Path(path)
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        entries = data["entries"] if isinstance(data, dict) else None
        if isinstance(entries, dict):
            return {str(k): str(v) for k, v in entries.items() if isinstance(k, str) and "/" not in k
                    and k not in (".", "..") and not _bookkeeping(k)}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if (path / RUN_MARKER).is_file():  # a run from before the manifest
        return {n: "run" for n in RUN_ENTRIES}
    return {}


def present(path: str | Path) -> list[str]:
    """The entries in ``path`` (its bookkeeping files left out), by name."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if not _bookkeeping(p.name))


def foreign(path: str | Path, kind: str, names: Iterable[str] | None = None) -> list[str]:
    """The entries present in ``path`` (among ``names``, when given) not written by ``kind``."""
    path, own = Path(path), owners(path)
    wanted = None if names is None else set(names)
    return [n for n in present(path) if own.get(n) != kind and (wanted is None or n in wanted)]


def write_problem(path: str | Path, kind: str, names: Iterable[str], what: str) -> str | None:
    """Why the command ``what`` (of ``kind``) may not write the entries ``names`` in ``path``
    (it would replace files it did not write), or None when it may."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a directory"
    clash = foreign(path, kind, names)
    if not clash:
        return None
    shown = ", ".join(clash[:4]) + (f" and {len(clash) - 4} more" if len(clash) > 4 else "")
    return (f"{path} holds {shown}, not written by {what} (no {MANIFEST} lists them): nothing there is "
            f"replaced; choose another --out or move them away")


def _save(path: Path, entries: dict[str, str]) -> None:
    atomic_write_text(path / MANIFEST, json.dumps(
        {"entries": dict(sorted(entries.items())),
         "rule": "vgjax removes or replaces only the entries listed here (docs/design.md, 'What a command may delete')"},
        indent=2) + "\n")


def claim(path: str | Path, kind: str, names: Iterable[str]) -> None:
    """Record ``names`` as written by ``kind`` in ``path`` (created if needed), before they are
    written. A name present already and not ``kind``'s is refused (ValueError): check
    :func:`write_problem` first."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names = [_plain(n) for n in names]
    clash = foreign(path, kind, names)
    if clash:
        raise ValueError(f"{path}: {', '.join(clash)} not written by a vgjax {kind}")
    own = owners(path)
    if (path / MANIFEST).exists() or any(n not in own for n in names):
        _save(path, {**own, **{n: kind for n in names}})


def remove(path: str | Path, kind: str, names: Iterable[str] | None = None) -> list[str]:
    """Remove the entries (among ``names``, when given) the manifest lists as ``kind``'s; the
    names removed. Everything else stays, the manifest keeps the other kinds' entries."""
    path = Path(path)
    own = owners(path)
    wanted = None if names is None else set(names)
    gone = [n for n, k in own.items() if k == kind and (wanted is None or n in wanted)]
    for name in gone:
        p = path / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    if (path / MANIFEST).exists():
        _save(path, {n: k for n, k in own.items() if n not in gone})
    return gone
