"""The course's figures against vgjax's protocols (``python -m experiments.course``): which protocol
did the course use?

:data:`FIGURES` are the course's own figures for this study (the quiz), measured by vgjax over several
seeds at every batch size of :data:`BATCHES` and both pixel scalings (``scaled``, x / 255, and
``raw``, 0-255 as the course's hint code leaves them). :func:`epoch1_sweeps` and :func:`long_sweeps`
are the ``experiments.sweep`` arguments of the two training parts; :func:`collect` turns the sweep
directories (and benchmarks/course_keras.py's ``keras_*.csv``) into ``figures.csv`` rows, one per
figure, protocol and framework; :func:`escape_rows` the escape sweep's depth-3, 5 and 7 rows into
``original_table.csv``; :func:`report` is ``report.md`` with its :func:`verdict`. "Inside the spread"
is ``|course - mean| <= 2 std + 0.002`` (std over seeds, ddof 1; the floor lets runs at chance agree).
Pure functions of saved files; nothing here prints.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np

from vgjax.files import atomic_write_text

BATCHES = (32, 64, 128, 256, 512)
PIXELS = ("scaled", "raw")
FLOOR = 0.002
SPREAD = 2.0
STAGE_1 = "2-2-2-1 | 1:100"  # the default table's first run alone: sub-model 1 (2 layers), 100 epochs
FIGURES_CSV = "figures.csv"
ESCAPE_SWEEP = Path("docs/results/escape/sweep")  # the H200 escape sweep: batch 128 and 512, 16 seeds, 300 epochs
ESCAPE_CSV = "original_table.csv"
ESCAPE_COLUMNS = ("depth", "batch_size", "init_std", "seeds", "epoch", "loss_mean", "loss_std", "accuracy_mean",
                  "accuracy_std", "val_accuracy_mean", "val_accuracy_std")
# the original's §3 table (docs/study.md, "The models"): what it observed after 300 epochs
ORIGINAL_TABLE = {3: "learns: train loss from above 2.25 to about 0.3, train accuracy near 0.9",
                  5: "barely learns: loss 2.325 → about 2.305", 7: "does not learn: train accuracy about 0.10"}
COLUMNS = ("figure", "framework", "batch_size", "pixels", "epoch", "planned_epoch", "seeds", "mean", "std")


@dataclasses.dataclass(frozen=True)
class Figure:
    key: str
    exercise: str
    quantity: str
    method: str
    metric: str
    epoch: int  # the course's epoch (within the stage for a staged run)
    value: float
    part: str  # epoch1 | long


FIGURES = (
    Figure("std1", "1a std 1.0", "train loss at epoch 300", "weight_std_1", "loss", 300, 0.6084, "long"),
    Figure("adam", "3 Adam", "val_accuracy at epoch 1", "adam", "val_accuracy", 1, 0.1971, "epoch1"),
    Figure("batchnorm", "4a BatchNorm", "train loss at epoch 1", "batchnorm", "loss", 1, 1.7638, "epoch1"),
    Figure("skip", "5 skip paths", "train loss at epoch 1", "skip", "loss", 1, 2.2641, "epoch1"),
    Figure("staged", "6 staged, run 1", "train loss at epoch 100", "freeze", "loss", 100, 0.3807, "long"),
)
BY_KEY = {f.key: f for f in FIGURES}
BY_METHOD = {f.method: f for f in FIGURES}


def protocol_label(batch_size: int, pixels: str) -> str:
    return f"batch {batch_size}, {'x / 255' if pixels == 'scaled' else 'raw 0-255'}"


def inside(value: float, mean: float, std: float) -> bool:
    return abs(value - mean) <= SPREAD * (0.0 if math.isnan(std) else std) + FLOOR


# ----------------------------------------------------------------------------- train

def epoch1_sweeps(seeds: int) -> list[tuple[str, list[str]]]:
    """(directory name, ``experiments.sweep`` arguments) of the cheap epoch-1 figures (Adam, BatchNorm,
    skip paths): one sweep per pixel scaling over the batch sizes and seeds, 1 epoch each."""
    methods = ",".join(f.method for f in FIGURES if f.part == "epoch1")
    return [(f"epoch1_{px}", ["--method", methods, "--batch-size", ",".join(map(str, BATCHES)), "--pixels", px,
                              "--epochs", "1", "--seeds", str(seeds)]) for px in PIXELS]


def long_sweeps(candidates: list[tuple[int, str]], seeds: int, std1_epochs: int) -> list[tuple[str, list[str]]]:
    """(directory name, ``experiments.sweep`` arguments) of the expensive figures for each candidate
    protocol: the staged run first (100 epochs of a 2-layer net, the cheaper of the two), then std 1.0."""
    out = []
    for b, px in candidates:
        out.append((f"long_staged1_b{b}_{px}", ["--method", "freeze", "--stages", STAGE_1, "--batch-size", str(b),
                                                "--pixels", px, "--seeds", str(seeds)]))
        out.append((f"long_std1_b{b}_{px}", ["--method", "weight_std_1", "--batch-size", str(b), "--pixels", px,
                                             "--epochs", str(std1_epochs), "--seeds", str(seeds)]))
    return out


# ----------------------------------------------------------------------------- collect

def _sweep_rows(path: Path) -> list[dict]:
    """figures.csv rows of one sweep directory: per figure of its methods and batch size."""
    config = json.loads((path / "config.json").read_text())
    pixels = {c.get("pixels", "scaled") for c in config["configs"]}
    if len(pixels) != 1:
        raise ValueError(f"{path}: a sweep of one pixel scaling was expected")
    with open(path / "metrics.csv", newline="") as f:
        metrics = list(csv.DictReader(f))
    values: dict[tuple, dict[int, dict[int, float]]] = {}
    for r in metrics:
        fig = BY_METHOD.get(r["method"])
        if fig is None:
            continue
        epoch = int(r.get("stage_epoch") or r["epoch"])
        if r.get("stage") not in (None, "", "1"):
            continue
        values.setdefault((fig.key, int(r["batch_size"])), {}).setdefault(epoch, {})[int(r["seed"])] = float(r[fig.metric])
    (px,) = pixels
    rows = []
    for (key, b), by_epoch in sorted(values.items()):
        fig = BY_KEY[key]
        epoch = fig.epoch if fig.epoch in by_epoch else max(by_epoch)  # a cut run: its last epoch, labelled
        rows.append(summary_row(key, "vgjax", b, px, epoch, fig.epoch, list(by_epoch[epoch].values())))
    return rows


def summary_row(key: str, framework: str, batch_size: int, pixels: str, epoch: int, planned: int,
                values: list[float]) -> dict:
    a = np.asarray(values, np.float64)
    std = float(a.std(ddof=1)) if len(a) > 1 else float("nan")
    return {"figure": key, "framework": framework, "batch_size": batch_size, "pixels": pixels, "epoch": epoch,
            "planned_epoch": planned, "seeds": len(a), "mean": f"{a.mean():.6f}", "std": f"{std:.6f}"}


def _keras_rows(path: Path) -> list[dict]:
    """figures.csv rows of benchmarks/course_keras.py's per-seed CSV (figure, batch_size, pixels, seed, value)."""
    with open(path, newline="") as f:
        per_seed = list(csv.DictReader(f))
    groups: dict[tuple, list[float]] = {}
    for r in per_seed:
        groups.setdefault((r["figure"], int(r["batch_size"]), r["pixels"]), []).append(float(r["value"]))
    return [summary_row(k, "keras", b, px, BY_KEY[k].epoch, BY_KEY[k].epoch, v) for (k, b, px), v in sorted(groups.items())]


def collect(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.iterdir()):
        if path.is_dir() and (path / "metrics.csv").exists():
            rows += _sweep_rows(path)
        elif path.name.startswith("keras_") and path.suffix == ".csv":
            rows += _keras_rows(path)
    order = {f.key: i for i, f in enumerate(FIGURES)}
    rows.sort(key=lambda r: (order[r["figure"]], r["framework"] != "vgjax", r["pixels"], int(r["batch_size"])))
    return rows


def escape_rows(path: Path) -> list[dict]:
    """The original's §3 models (depth 3, 5, 7 at init std 0.05) in the escape sweep ``path``
    (its finished programs' chunks): loss, accuracy and val_accuracy at its last epoch, per batch size."""
    from vgjax.sweep.files import finished_part

    settings, members, history, _ = finished_part(path, json.loads((path / "config.json").read_text()))
    rows = []
    for i, st in enumerate(settings):
        if st["depth"] not in ORIGINAL_TABLE or st["init_std"] != 0.05:
            continue
        m = members["setting"] == i
        row = {"depth": st["depth"], "batch_size": st["batch_size"], "init_std": st["init_std"],
               "seeds": int(m.sum()), "epoch": history["loss"].shape[1]}
        for k in ("loss", "accuracy", "val_accuracy"):
            v = history[k][m, -1].astype(np.float64)
            row[f"{k}_mean"], row[f"{k}_std"] = f"{v.mean():.6f}", f"{v.std(ddof=1):.6f}"
        rows.append(row)
    return sorted(rows, key=lambda r: (r["batch_size"], r["depth"]))


def rows_csv(rows: list[dict], columns=COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_rows(path: Path, rows: list[dict], columns=COLUMNS) -> None:
    atomic_write_text(path, rows_csv(rows, columns))


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{**r, "batch_size": int(r["batch_size"]), "epoch": int(r["epoch"]),
                 "planned_epoch": int(r["planned_epoch"]), "seeds": int(r["seeds"]), "mean": float(r["mean"]),
                 "std": float(r["std"])} for r in csv.DictReader(f)]


# ----------------------------------------------------------------------------- verdict

def fits(row: dict) -> bool:
    """The course's value is inside the seed spread of this row (at the course's own epoch)."""
    return row["epoch"] == row["planned_epoch"] and inside(BY_KEY[row["figure"]].value, row["mean"], row["std"])


def protocols_of(rows: list[dict], framework: str = "vgjax") -> list[tuple[int, str]]:
    return sorted({(r["batch_size"], r["pixels"]) for r in rows if r["framework"] == framework},
                  key=lambda p: (PIXELS.index(p[1]), p[0]))


def table(rows: list[dict], framework: str = "vgjax") -> dict[tuple[int, str], dict[str, dict]]:
    """{protocol: {figure: row}} of one framework."""
    out: dict = {}
    for r in rows:
        if r["framework"] == framework:
            out.setdefault((r["batch_size"], r["pixels"]), {})[r["figure"]] = r
    return out


def candidate_protocols(rows: list[dict]) -> list[tuple[int, str]]:
    """The vgjax protocols inside the spread of the most epoch-1 figures: of every one when some
    protocol is; none when no protocol fits any."""
    cheap = [f.key for f in FIGURES if f.part == "epoch1"]
    t = table(rows)
    count = {p: sum(k in t[p] and fits(t[p][k]) for k in cheap) for p in protocols_of(rows)}
    best = max(count.values(), default=0)
    return [p for p, n in count.items() if n == best] if best else []


def verdict(rows: list[dict]) -> list[str]:
    """The verdict in sentences: the protocols that fit every course figure measured for them
    (all five measured), else which protocols fit which figure."""
    t = table(rows)
    complete = [p for p in protocols_of(rows) if all(f.key in t[p] for f in FIGURES)]
    full = [p for p in complete if all(fits(t[p][f.key]) for f in FIGURES)]
    lines = []
    if full:
        names = "; ".join(protocol_label(*p) for p in full)
        lines.append(f"**The course's protocol: {names}.** Every one of the {len(FIGURES)} course figures lies "
                     "inside this protocol's seed spread" + (", and inside no other protocol's for all of them."
                                                            if len(full) == 1 else "."))
    else:
        lines.append("**No protocol fits every course figure**" + ("" if complete else
                     " (none was measured for all of them)") + "; by figure:")
    for f in FIGURES:
        measured = [p for p in protocols_of(rows) if f.key in t[p]]
        ok = [p for p in measured if fits(t[p][f.key])]
        shown = "; ".join(protocol_label(*p) for p in ok) if ok else "none"
        lines.append(f"- {f.exercise} ({f.quantity} = {f.value}): inside the spread of {shown} "
                     f"({len(ok)} of the {len(measured)} protocols measured).")
    cheap = [f for f in FIGURES if f.part == "epoch1"]
    best = candidate_protocols(rows)
    if best:
        n = sum(fits(t[best[0]][f.key]) for f in cheap if f.key in t[best[0]])
        names = "; ".join(protocol_label(*p) for p in best)
        lines += ["", f"The epoch-1 figures together ({', '.join(f.exercise for f in cheap)}): {n} of the "
                      f"{len(cheap)} inside the spread of {names}, no other protocol measured does as well."]
    return lines


# ----------------------------------------------------------------------------- report

def _cell(row: dict | None) -> str:
    if row is None:
        return "–"
    std = "–" if math.isnan(row["std"]) else f"{row['std']:.4f}"
    cut = "" if row["epoch"] == row["planned_epoch"] else f" (epoch {row['epoch']}, cut)"
    mark = "✓" if fits(row) else "✗"
    return f"{row['mean']:.4f} ± {std} {mark}{cut}"


def escape_section(escape: list[dict]) -> list[str]:
    """The original's §3 table beside the escape sweep's depth-3, 5 and 7 rows."""
    if not escape:
        return []
    lines = ["", "## The original's §3 table against the escape sweep", "",
             f"From `{ESCAPE_SWEEP}` (`python -m experiments.escape`, x / 255, init std 0.05, all 60,000 "
             "training images; its report: docs/results/escape/report.md). Cells: mean ± std over its seeds "
             "at its last epoch.", "",
             "| model | the original observed (300 epochs) | batch | seeds | epoch | train loss | train accuracy "
             "| val accuracy |", "|---|---|---|---|---|---|---|---|"]
    for r in escape:
        cells = [f"{float(r[k + '_mean']):.4f} ± {float(r[k + '_std']):.4f}" for k in ("loss", "accuracy",
                                                                                    "val_accuracy")]
        lines.append(f"| {r['depth']} layers | {ORIGINAL_TABLE[int(r['depth'])]} | {r['batch_size']} | {r['seeds']} "
                     f"| {r['epoch']} | " + " | ".join(cells) + " |")
    return lines


def read_escape(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def report(rows: list[dict], escape: list[dict] | None = None) -> str:
    seeds = sorted({r["seeds"] for r in rows})
    lines = ["# The course's figures against vgjax's protocols", "",
             "Generated by `python -m experiments.course report` from `figures.csv` (itself from the sweeps' "
             "metrics.csv by `collect`; the commands are in docs/results.md, \"The course's protocol\"). "
             f"Cells: mean ± std over seeds (sample std) at the course's epoch, all 60,000 training images, the "
             f"test set as validation; ✓ when the course's value is inside the seed spread "
             f"(|course − mean| ≤ {SPREAD:g} std + {FLOOR}), ✗ when not; – not measured. "
             f"Seeds per cell: {', '.join(map(str, seeds))} (the table below gives each).", "",
             "## Verdict", "", *verdict(rows), "", "## vgjax (seeds 0 .. N−1 of `experiments.sweep`)", ""]
    head = "| protocol | " + " | ".join(f"{f.exercise}: {f.quantity} (course {f.value})" for f in FIGURES) + " |"
    for framework in ("vgjax", "keras"):
        t = table(rows, framework)
        if not t:
            continue
        if framework == "keras":
            lines += ["", "## The original Keras code (benchmarks/course_keras.py, Keras' own seeds)", ""]
        lines += [head, "|" + "---|" * (len(FIGURES) + 1)]
        for p in protocols_of(rows, framework):
            lines.append(f"| {protocol_label(*p)} | " + " | ".join(_cell(t[p].get(f.key)) for f in FIGURES) + " |")
    lines += ["", "## Seeds and epochs of every cell", "", "| figure | framework | protocol | seeds | epoch |",
              "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {BY_KEY[r['figure']].exercise} | {r['framework']} | {protocol_label(r['batch_size'], r['pixels'])}"
                     f" | {r['seeds']} | {r['epoch']} of {r['planned_epoch']} |")
    lines += escape_section(escape or [])
    return "\n".join(lines) + "\n"


def write_report(out: Path) -> Path:
    """``out/report.md`` from ``out``'s figures.csv and original_table.csv (when there); its path."""
    path = out / "report.md"
    atomic_write_text(path, report(read_rows(out / FIGURES_CSV), read_escape(out / ESCAPE_CSV)))
    return path
