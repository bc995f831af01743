"""What a run directory lets a run do, decided from its files before anything is written: start it
('new'), replace it (``--overwrite``), continue it (``--resume``: 'resume', or 'restart' when it
stopped before its first checkpoint) or nothing ('done'); a directory that allows none of these is
:class:`Refused`, with the one line to show (docs/guide/runs.md, "Run directories you can trust").
The command line turns a refusal into its error line and exit status."""

from __future__ import annotations

import json
from pathlib import Path

from vgjax import owned
from vgjax.config import Config
from vgjax.faults import one_line
from vgjax.files import read_json
from vgjax.run import lock as runlock
from vgjax.run.rundir import MARKER_NAME, RUN_ENTRIES, RunDir
from vgjax.train.stages import run_table


class Refused(Exception):
    """The run may not use its directory; ``diverged``: because the run there diverged."""

    def __init__(self, message: str, diverged: bool = False):
        super().__init__(message)
        self.diverged = diverged


def inspect(path: Path, config, resume: bool, overwrite: bool) -> str:
    """What to do with ``path``, deciding from its files only (nothing is written):
    'new', 'overwrite', 'resume', 'restart' (resume of a run stopped before its first checkpoint)
    or 'done' (resume of a complete run). Every refusal raises :class:`Refused`."""
    if path.exists() and not path.is_dir():
        raise Refused(f"--out {path} is a file, not a directory")
    holder = runlock.live_holder(path) if path.is_dir() else None
    if holder:
        raise Refused(f"{path} is in use by a live run ({holder}); wait for it to end or stop it, or use another --out")
    rd = RunDir(path)
    present = [n for n in rd.run_files() if n != MARKER_NAME] if path.is_dir() else []
    if not present:
        if resume:
            why = "no such directory" if not path.exists() else "no run files in it"
            raise Refused(f"--resume: {path} holds no run to resume ({why}); run without --resume to start one")
        return "new"
    _refuse_others_files(path, rd, present)
    status = rd.status()
    if status in ("diverged", "finished", "stopped"):
        return _ended_run_action(path, rd, status, resume, overwrite)
    if overwrite:
        return "overwrite"
    if not resume:
        raise Refused(f"{path} holds an unfinished run; use --resume to continue it or --overwrite to start over")
    _refuse_other_settings(path, rd, config)
    return _resume_or_restart(path, rd, config)


def _refuse_others_files(path: Path, rd: RunDir, present: list[str]) -> None:
    """Refused when the run files in ``path`` are not a vgjax run's, or someone else's
    files are where the run writes (e.g. error.log)."""
    if not rd.is_vgjax_run():
        raise Refused(f"{path} holds {', '.join(present)} but is not a vgjax run (no {MARKER_NAME} marker or "
                 f"{owned.MANIFEST} says a run wrote them): nothing there is replaced; choose another --out")
    problem = owned.write_problem(path, "run", RUN_ENTRIES, "experiments.run")
    if problem:
        raise Refused(problem)


def _ended_run_action(path: Path, rd: RunDir, status: str, resume: bool, overwrite: bool) -> str:
    """'overwrite' or 'done' for a run that ended (diverged, finished or stopped), else Refused."""
    if status == "diverged":
        if resume:
            epoch = (read_json(rd.summary_path) or {}).get("diverged_epoch", "?")
            raise Refused(f"{path} holds a run that diverged at epoch {epoch}: there is nothing to resume; start over "
                     f"with --overwrite (e.g. with a smaller --lr)", diverged=True)
        if not overwrite:
            raise Refused(f"{path} holds a diverged run; use --overwrite to replace it or --out for another directory")
        return "overwrite"
    if resume:
        return "done"
    if not overwrite:
        raise Refused(f"{path} holds a finished run; use --overwrite to replace it or --out for another directory")
    return "overwrite"


def _refuse_other_settings(path: Path, rd: RunDir, config) -> None:
    """Refused when the unfinished run in ``path`` was started with other settings than ``config``."""
    try:
        saved = Config.from_dict(read_json(rd.config_path)).to_dict()
    except Exception as e:  # missing, damaged, or not a config any more
        raise Refused(f"cannot resume {path}: its config.json cannot be used ({one_line(e)}); start over with --overwrite")
    now = config.to_dict()
    changed = [k for k in now if saved.get(k) != now[k]]
    if changed:
        what = "; ".join(f"{k} {json.dumps(saved.get(k))} -> {json.dumps(now[k])}" for k in changed[:4])
        raise Refused(f"cannot resume {path}: it was started with other settings ({what}); resume with the same "
                 f"flags and inputs, or start over with --overwrite")


def _resume_or_restart(path: Path, rd: RunDir, config) -> str:
    """'resume' from a checkpoint, 'restart' when the run stopped before its first one; Refused when
    a checkpoint it saved is missing."""
    ckdir = rd.checkpoint_dir
    if ckdir.is_dir() and any(p.name.isdigit() for p in ckdir.iterdir()):
        return "resume"
    rows = rd.history()
    table = run_table(config)
    saved_at = [r["epoch"] for r in rows
                if isinstance(r.get("epoch"), int) and table.saves_checkpoint(r["epoch"], config.checkpoint_every)]
    if saved_at:
        raise Refused(f"cannot resume {path}: {ckdir} holds no checkpoint, though one was saved at epoch {saved_at[-1]}; "
                 f"start over with --overwrite")
    return "restart"
