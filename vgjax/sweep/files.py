"""The files of a sweep directory after training: ``metrics.csv`` (per member and epoch),
``summary.json`` and ``summary.csv`` (per setting) and the two curve figures; and
``metrics.csv`` read back (:func:`read_metrics`) for the reports.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from vgjax import sweep
from vgjax.config import Config
from vgjax.report.figures import draw_curves
from vgjax.run.rundir import history_csv
from vgjax.files import atomic_write_json, atomic_write_text
from vgjax.train.stages import run_table
from vgjax.sweep.settings import DISCRETE


def stage_rows(results: list) -> np.ndarray | None:
    """Per member and epoch (stage, epoch within it) when any program is staged, else None
    (a plain program's epochs are stage 1)."""
    if not any(r.spec.config.stages is not None for r in results):
        return None
    return np.concatenate([np.broadcast_to(sweep.stage_columns(r.spec.config), (len(r.members["seed"]),
                                           r.history["loss"].shape[1], 2)) for r in results])


def discrete_values(config) -> dict:
    """The discrete values of a program as its settings show them (a staged program's depth is
    its stage table's)."""
    values = {k: getattr(config, k) for k in DISCRETE}
    if config.stages is not None:
        values["depth"] = run_table(config).depth
    return values


def combine(results: list) -> tuple[list[dict], dict, dict]:
    """Settings (with the method and discrete values), members and history of several sweeps as one."""
    settings, members, history = [], {"setting": [], "seed": []}, {m: [] for m in sweep.METRICS}
    for r in results:
        c = r.spec.config
        members["setting"].append(r.members["setting"] + len(settings))
        members["seed"].append(r.members["seed"])
        settings += [{"method": c.method, **discrete_values(c), **s} for s in r.spec.settings()]
        for m in sweep.METRICS:
            history[m].append(r.history[m])
    return (settings, {k: np.concatenate(v) for k, v in members.items()},
            {k: np.concatenate(v) for k, v in history.items()})


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "_"))
        elif isinstance(v, list):
            out[key] = " ".join(map(str, v))
        else:
            out[key] = v
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, history_csv(rows))


def run_records(results: list) -> list[dict]:
    """Per program of the sweep: its method and discrete values, members, chunking and timing."""
    return [{"method": r.spec.config.method, **discrete_values(r.spec.config),
             "members": int(len(r.members["seed"])), "chunk_size": r.chunk_size, "chunk_source": r.chunk_source,
             "workers": r.workers, "devices": r.n_devices, "wall_time_s": r.wall_time_s,
             "first_epoch_s": r.first_epoch_s} for r in results]


def write_outputs(out: Path, results: list, run_info: dict) -> list[dict]:
    """metrics.csv, summary.json, summary.csv and the two figures; returns the per-setting summary."""
    settings, members, history = combine(results)
    write_csv(out / "metrics.csv", sweep.metric_rows(settings, members, history, stage_rows(results)))
    per_setting = sweep.summarize(settings, members, history)
    summary = {"status": "finished", "members": int(len(members["seed"])), "settings": per_setting,
               "diverged_members": int((sweep.diverged_epochs(history) > 0).sum()),
               "left_plateau_definition": f"first epoch whose val accuracy > {sweep.PLATEAU_ACCURACY} "
                                          f"(chance is 0.1); fraction over seeds, epoch mean/median over "
                                          f"the seeds that left",
               "std_definition": "sample std over seeds (ddof 1)", **run_info}
    write_csv(out / "summary.csv", [flatten(s) for s in per_setting])
    draw_curves(out, settings, members, history)
    atomic_write_json(out / "summary.json", summary)  # last: its status "finished" means every file is there
    return per_setting


def read_metrics(path: Path) -> tuple[dict, dict]:
    """Members ({"setting", "seed"} arrays) and histories (member × epoch) from metrics.csv.

    ValueError naming the file when it is not whole: a torn last line (the file is written
    atomically and ends with a newline, so a copy or a disk cut short shows), a row that lacks a
    value or holds one that is not a number, a member without every epoch."""
    file = Path(path) / "metrics.csv"
    with open(file, "rb") as f:
        raw = f.read()
    if raw and not raw.endswith(b"\n"):
        raise ValueError(f"{file} is torn: its last line is cut short (a copy or a write that did not "
                         f"finish); write it again (experiments.sweep --resume) or restore it")
    try:
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{file} cannot be read as CSV ({e})") from None
    if not rows:
        raise ValueError(f"{file} holds no rows")
    parsed = []
    for line, r in enumerate(rows, start=2):
        try:
            key = (int(r["setting"]), int(r["seed"]), int(r["epoch"]))
            parsed.append((key, {m: float(r[m]) for m in sweep.METRICS}))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{file}, line {line}: not a whole row of setting, seed, epoch and "
                             f"{', '.join(sweep.METRICS)}") from None
    keys = sorted({k[:2] for k, _ in parsed})
    index = {k: i for i, k in enumerate(keys)}
    epochs = max(k[2] for k, _ in parsed)
    if len({k for k, _ in parsed}) != len(keys) * epochs or min(k[2] for k, _ in parsed) < 1:
        raise ValueError(f"{file} is incomplete: {len(keys)} members x {epochs} epochs need "
                         f"{len(keys) * epochs} rows, one each, it holds {len(parsed)}")
    history = {m: np.full((len(keys), epochs), np.nan) for m in sweep.METRICS}
    for (setting, seed, epoch), values in parsed:
        for m in sweep.METRICS:
            history[m][index[(setting, seed)], epoch - 1] = values[m]
    members = {"setting": np.array([k[0] for k in keys]), "seed": np.array([k[1] for k in keys])}
    return members, history


# ----------------------------------------------------------------------------- an interrupted sweep

def sweep_specs(config: dict) -> list:
    """The SweepSpecs of a sweep directory's config.json, in program order."""
    sw = config["sweep"]
    return [sweep.SweepSpec(Config.from_dict(c), tuple(sw.get("init_std") or ()), tuple(sw.get("lr") or ()),
                            tuple(sw.get("beta") or ()), tuple(sw["seeds"])) for c in config["configs"]]


def finished_part(path: Path, config: dict) -> tuple[list[dict], dict, dict, list[str]]:
    """What an interrupted sweep finished: the settings of its programs whose every member has an
    intact chunk (renumbered from 0), their members and histories, and a label per program that
    did not finish. ValueError when no program finished."""
    store, epochs = sweep.ChunkStore(path), int(config["sweep"]["epochs"])
    settings, members, history, missing = [], {"setting": [], "seed": []}, {m: [] for m in sweep.METRICS}, []
    for pi, spec in enumerate(sweep_specs(config)):
        own, c = spec.members(), spec.config
        done, _ = store.load(pi, own, epochs)
        covered = sorted(done)
        if not covered or [a for a, _ in covered] != [0, *(b for _, b in covered[:-1])] \
                or covered[-1][1] != len(own["seed"]):
            missing.append(" ".join(f"{k}={v}" for k, v in discrete_values(c).items()
                                    if len(config["sweep"].get(k) or ()) > 1) or c.method)
            continue
        members["setting"].append(own["setting"] + len(settings))
        members["seed"].append(own["seed"])
        settings += [{"method": c.method, **discrete_values(c), **s} for s in spec.settings()]
        for m in sweep.METRICS:
            history[m].append(np.concatenate([done[r][m] for r in covered]))
    if not settings:
        raise ValueError(f"{path}: no program of the interrupted sweep has finished")
    return (settings, {k: np.concatenate(v) for k, v in members.items()},
            {k: np.concatenate(v) for k, v in history.items()}, missing)
