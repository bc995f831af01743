"""The run directory of ``experiments.run``: what ``--out`` holds decides what the run may do
(start, replace with ``--overwrite``, continue with ``--resume``), decided from its files
before anything is written; every refusal is one line (docs/guide/runs.md, "Run directories you can trust")."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import cli
from vgjax import owned
from vgjax.run import lock as runlock
from vgjax.config import Config
from vgjax.run.rundir import MARKER_NAME, RUN_ENTRIES, RunDir
from vgjax.files import read_json
from vgjax.train.stages import run_table


def inspect_run_dir(path: Path, config, resume: bool, overwrite: bool) -> str:
    """What to do with ``path``, deciding from its files only (nothing is written):
    'new', 'overwrite', 'resume', 'restart' (resume of a run stopped before its first checkpoint)
    or 'done' (resume of a complete run). Every refusal is one line and exit 2 (3: diverged)."""
    if path.exists() and not path.is_dir():
        cli.fail(f"--out {path} is a file, not a directory")
    holder = runlock.live_holder(path) if path.is_dir() else None
    if holder:
        cli.fail(f"{path} is in use by a live run ({holder}); wait for it to end or stop it, or use another --out")
    rd = RunDir(path)
    present = [n for n in rd.run_files() if n != MARKER_NAME] if path.is_dir() else []
    if not present:
        if resume:
            why = "no such directory" if not path.exists() else "no run files in it"
            cli.fail(f"--resume: {path} holds no run to resume ({why}); run without --resume to start one")
        return "new"
    _refuse_others_files(path, rd, present)
    status = rd.status()
    if status in ("diverged", "finished", "stopped"):
        return _ended_run_action(path, rd, status, resume, overwrite)
    if overwrite:
        return "overwrite"
    if not resume:
        cli.fail(f"{path} holds an unfinished run; use --resume to continue it or --overwrite to start over")
    _refuse_other_settings(path, rd, config)
    return _resume_or_restart(path, rd, config)


def _refuse_others_files(path: Path, rd: RunDir, present: list[str]) -> None:
    """One line (exit 2) when the run files in ``path`` are not a vgjax run's, or someone else's
    files are where the run writes (e.g. error.log)."""
    if not rd.is_vgjax_run():
        cli.fail(f"{path} holds {', '.join(present)} but is not a vgjax run (no {MARKER_NAME} marker or "
                 f"{owned.MANIFEST} says a run wrote them): nothing there is replaced; choose another --out")
    problem = owned.write_problem(path, "run", RUN_ENTRIES, "experiments.run")
    if problem:
        cli.fail(problem)


def _ended_run_action(path: Path, rd: RunDir, status: str, resume: bool, overwrite: bool) -> str:
    """'overwrite' or 'done' for a run that ended (diverged, finished or stopped), else one line."""
    if status == "diverged":
        if resume:
            epoch = (read_json(rd.summary_path) or {}).get("diverged_epoch", "?")
            cli.fail(f"{path} holds a run that diverged at epoch {epoch}: there is nothing to resume; start over "
                     f"with --overwrite (e.g. with a smaller --lr)", cli.EXIT_DIVERGED)
        if not overwrite:
            cli.fail(f"{path} holds a diverged run; use --overwrite to replace it or --out for another directory")
        return "overwrite"
    if resume:
        return "done"
    if not overwrite:
        cli.fail(f"{path} holds a finished run; use --overwrite to replace it or --out for another directory")
    return "overwrite"


def _refuse_other_settings(path: Path, rd: RunDir, config) -> None:
    """One line (exit 2) when the unfinished run in ``path`` was started with other settings than ``config``."""
    try:
        saved = Config.from_dict(read_json(rd.config_path)).to_dict()
    except Exception as e:  # missing, damaged, or not a config any more
        cli.fail(f"cannot resume {path}: its config.json cannot be used ({cli.one_line(e)}); start over with --overwrite")
    now = config.to_dict()
    changed = [k for k in now if saved.get(k) != now[k]]
    if changed:
        what = "; ".join(f"{k} {json.dumps(saved.get(k))} -> {json.dumps(now[k])}" for k in changed[:4])
        cli.fail(f"cannot resume {path}: it was started with other settings ({what}); resume with the same "
                 f"flags and inputs, or start over with --overwrite")


def _resume_or_restart(path: Path, rd: RunDir, config) -> str:
    """'resume' from a checkpoint, 'restart' when the run stopped before its first one; one line when
    a checkpoint it saved is missing."""
    ckdir = rd.checkpoint_dir
    if ckdir.is_dir() and any(p.name.isdigit() for p in ckdir.iterdir()):
        return "resume"
    rows = rd.history()
    table = run_table(config)
    saved_at = [r["epoch"] for r in rows
                if isinstance(r.get("epoch"), int) and table.saves_checkpoint(r["epoch"], config.checkpoint_every)]
    if saved_at:
        cli.fail(f"cannot resume {path}: {ckdir} holds no checkpoint, though one was saved at epoch {saved_at[-1]}; "
                 f"start over with --overwrite")
    return "restart"


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
