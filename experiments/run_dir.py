"""The run directory of ``experiments.run`` on the command line: what ``--out`` lets the run do is
decided by :mod:`vgjax.run.decide` before anything is written, and every refusal is one line
(docs/guide/runs.md, "Run directories you can trust"); then the directory is locked and prepared."""

from __future__ import annotations

from pathlib import Path

from experiments import cli
from vgjax.run import decide
from vgjax.run import lock as runlock
from vgjax.run.rundir import RunDir


def inspect_run_dir(path: Path, config, resume: bool, overwrite: bool) -> str:
    """:func:`vgjax.run.decide.inspect`, a refusal as one line (exit 2; 3 for a diverged run)."""
    try:
        return decide.inspect(path, config, resume, overwrite)
    except decide.Refused as e:
        cli.fail(str(e), cli.EXIT_DIVERGED if e.diverged else cli.EXIT_USAGE)


def prepare_run_dir(path: Path, action: str, config):
    """Carry out ``action`` (from :func:`inspect_run_dir`) on the locked directory."""
    run_dir = RunDir(path)
    try:
        if action in ("new", "overwrite"):
            run_dir.clear()  # only what a run writes: other files in the directory stay
            run_dir.create(config.to_dict())
        else:
            run_dir.mark()
    except OSError as e:
        cli.fail(f"cannot write the run directory {path}: {e.strerror}")
    return run_dir


def refuse_if_live(path: Path, what: str) -> None:
    """One line (exit 2) when a live command holds ``path``'s lock (vgjax.run.lock); reads only."""
    holder = runlock.live_holder(path) if path.is_dir() else None
    if holder:
        cli.fail(f"{path} is in use by a live {what} ({holder}); wait for it to end or stop it, or use another --out")


def lock_dir(path: Path, what: str) -> runlock.RunLock:
    """``path`` created and locked for this process (release it when done), else one line (exit 2)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        return runlock.RunLock(path).acquire()
    except runlock.LockedError as e:
        cli.fail(f"{path} is in use by a live {what} ({e}); wait for it to end or stop it, or use another --out")
    except OSError as e:
        cli.fail(f"cannot create or lock the output directory {path}: {e.strerror or cli.one_line(e)}")
