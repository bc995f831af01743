"""The multi-seed suite (``python -m experiments.suite --seeds N``): every method of the study ×
N seeds × its protocol, as few compiled programs as :mod:`vgjax.sweep.groups` allows, one program
after another (docs/design.md, "The multi-seed suite").

Layout of the output directory::

    seeds_suite.json        what was asked (methods, seeds, every config, the programs); first
    <program>/              one sweep directory per program (vgjax.sweep.files: metrics.csv,
                            summary.json, figures), its finished chunks kept until it is written
    summary.csv, report.md  one row per method: final and best val accuracy over the seeds
                            (mean ± std, min–max), left the plateau, diverged

A finished program's directory is skipped by ``--resume``; an unfinished one continues from its
finished chunks (:class:`vgjax.sweep.ChunkStore`), so a resumed suite ends with the files of an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

from vgjax import owned, runtime, sweep
from vgjax.config import Config
from vgjax.train.stages import planned_epochs
from vgjax.files import atomic_write_json, atomic_write_text, read_json
from vgjax.sweep.groups import group_methods, group_name, grouped_spec
from vgjax.sweep.files import flatten, run_records, write_csv, write_outputs
from vgjax.report.sweep import mean_std

SUITE_FILE = "seeds_suite.json"


@dataclasses.dataclass(frozen=True)
class Program:
    name: str  # its directory under the suite's
    methods: tuple[str, ...]
    spec: sweep.SweepSpec

    @property
    def epochs(self) -> int:
        return planned_epochs(self.spec.config)

    @property
    def members(self) -> int:
        return len(self.spec.settings()) * len(self.spec.seeds)

    @property
    def steps(self) -> int:
        """Training steps per epoch."""
        return -(-(self.spec.config.train_limit or 60000) // self.spec.config.batch_size)

    @property
    def cost(self) -> int:
        """Member-steps: members × epochs × steps per epoch (the progress bar's unit)."""
        return self.members * self.epochs * self.steps


def plan_programs(configs: dict[str, Config], seeds: Sequence[int], group: bool = True) -> list[Program]:
    """The suite's programs: grouped methods (``group``) or one program per method."""
    groups = group_methods(configs) if group else [[m] for m in configs]
    programs = []
    for methods in groups:
        spec = grouped_spec(configs, methods, tuple(seeds))
        sweep.validate_spec(spec)
        programs.append(Program(group_name(methods), tuple(methods), spec))
    return programs


def record(programs: list[Program], configs: dict[str, Config], seeds: Sequence[int]) -> dict:
    """What ``seeds_suite.json`` holds; a resumed suite must ask for exactly this again."""
    return {"methods": list(configs), "seeds": list(seeds),
            "programs": [{"name": p.name, "methods": list(p.methods), "epochs": p.epochs, "members": p.members}
                         for p in programs],
            "configs": {m: c.to_dict() for m, c in configs.items()}}


def finished_chunks(out: Path, program: Program, warn=print) -> dict:
    """The program's intact chunks kept in ``out/<name>/chunks`` (a damaged one is named to ``warn``)."""
    done, damaged = sweep.ChunkStore(out / program.name).load(0, program.spec.members(), program.epochs)
    for name in damaged:
        warn(f"chunk {program.name}/{name} is damaged; it is trained again")
    return done


def remaining_cost(program: Program, done: dict) -> int:
    """The program's cost less that of its finished chunks ``done``."""
    return program.cost * (program.members - sum(b - a for a, b in done)) // program.members


def train_program(program: Program, out: Path, arrays: Any, done: dict, *, workers: int, threads: int = 1,
                  chunk: int | None = None, progress: Any = None) -> list[dict]:
    """Train one program (its finished chunks ``done`` reused, new ones kept in
    ``out/<name>/chunks``) and write its sweep directory; returns its per-setting summary."""
    path = out / program.name
    owned.claim(path, "sweep", sweep.store.sweep_entries())  # a sweep directory like experiments.sweep's
    store = sweep.ChunkStore(path)
    members = program.spec.members()
    if not (path / "config.json").exists():
        atomic_write_json(path / "config.json", {"sweep": {"methods": list(program.methods), "seeds":
                                                           list(program.spec.seeds), "epochs": program.epochs},
                                                 "configs": [program.spec.config.to_dict()]})
    save = lambda a, b, h: store.save(0, members, a, b, h)  # noqa: E731
    t0 = time.perf_counter()
    result = sweep.run_sweep(program.spec, arrays, chunk=chunk, workers=workers, threads=threads,
                             on_epoch=progress, done=done, on_chunk=save)
    info = {"runs": run_records([result]), "epochs": program.epochs, "wall_time_s": time.perf_counter() - t0,
            "device": runtime.device_description(program.spec.config.precision)}
    settings = write_outputs(path, [result], info)
    store.remove()
    return settings


# ----------------------------------------------------------------------------- the suite's table

def method_rows(out: Path, programs: list[Program]) -> list[dict]:
    """One row per method from the programs' summaries, in the suite's method order."""
    by_method = {}
    for p in programs:
        summary = read_json(out / p.name / "summary.json")
        for s in summary["settings"]:
            by_method[s["method"]] = {"program": p.name, "program_wall_time_s": summary["wall_time_s"],
                                      "epochs": summary["epochs"], **s}
    return [by_method[m] for p in programs for m in p.methods]


def _spread(d: dict, digits: int = 3) -> str:
    return "–" if d["min"] is None else f"{d['min']:.{digits}f}–{d['max']:.{digits}f}"


def _left(row: dict) -> str:
    lp = row["left_plateau"]
    n = round(lp["fraction"] * row["seeds"])
    return f"{n}/{row['seeds']}" + ("" if lp["epoch_median"] is None else f" (median epoch {lp['epoch_median']:g})")


def method_table(rows: list[dict]) -> list[str]:
    """The markdown table of :func:`method_rows`: one row per method."""
    lines = ["| method | program | final val acc | per-seed range | best val acc | left plateau (> 0.2) "
             "| diverged |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['program']} | {mean_std(r['final_val_accuracy'])} | "
                     f"{_spread(r['final_val_accuracy'])} | {mean_std(r['best_val_accuracy'])} | {_left(r)} | "
                     f"{r['diverged']['count']}/{r['seeds']} |")
    return lines


def report_text(rows: list[dict], info: dict) -> str:
    """report.md: the budget and device, then one row per method."""
    walls = {r["program"]: r["program_wall_time_s"] for r in rows}
    lines = ["# The study over many seeds", "",
             f"Generated by `{info['command']}` (vgjax.sweep.seeds); every number below is read from the "
             "programs' summary.json files beside this report.", "",
             f"- seeds: {info['seeds']} per method (0–{info['seeds'] - 1}); epochs: each method's protocol "
             f"({', '.join(sorted({str(r['epochs']) for r in rows}))}); training images: {info['train_images']}",
             f"- device: {runtime.device_text(info['device'])}; {info['mode']}",
             f"- programs: {len(walls)} for {len(rows)} methods; training time {sum(walls.values()):.0f} s "
             "(the programs' wall times added)", "",
             *method_table(rows)]
    lines += ["", "Mean ± sample std (ddof 1) over the seeds; the range is the lowest and highest seed. "
              "Left plateau: seeds whose val accuracy exceeded 0.2 (chance 0.1) at some epoch, and the median "
              "of those first epochs. A program of several methods trains them vmapped together; each "
              "program's directory holds its per-epoch metrics (metrics.csv) and curve figures.", ""]
    return "\n".join(lines)


def write_suite_report(out: Path, programs: list[Program], info: dict) -> Path:
    rows = method_rows(out, programs)
    write_csv(out / "summary.csv", [flatten({k: v for k, v in r.items() if k != "setting"}) for r in rows])
    atomic_write_text(out / "report.md", report_text(rows, info))
    return out / "report.md"
