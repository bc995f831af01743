"""The report of a directory of runs (``python -m experiments.report RUNS_DIR``).

Writes ``RUNS_DIR/report.md`` and the comparison figures (``RUNS_DIR/figures/``) from the run
directories under ``RUNS_DIR``: one table row per method, computed from its ``history.jsonl``,
and one paragraph per method comparing it with ``baseline_7``, generated from the same numbers.
When ``RUNS_DIR`` was written by ``experiments.suite``, the report also states the suite's wall
time, the sum of its methods' wall times and the ratio of the two (the parallel speed-up).
A sweep directory's report is :mod:`vgjax.report.sweep`'s.

Table columns: status; epochs run; final and best validation accuracy; final training loss; the
first epoch at which validation accuracy reached 0.8 (or "never"); the first-layer gradient norm
at epoch 1 relative to the last (output) layer's (``grad_norm/hidden_1 / grad_norm/output``, both
the mean over epoch 1's steps); wall time (the run's summary, else the sum of its epoch times).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

from vgjax.config import fields as config_fields
from vgjax.run.jobs import SUITE_FILE, previous_entries
from vgjax.methods import METHODS, get_config
from vgjax.report.plots import load_run, plot_comparison
from vgjax.run.rundir import FIGURES_DIR, best_epoch, find_run_dirs
from vgjax.files import atomic_write_text, read_json
from vgjax.runtime import device_text
from vgjax.sweep import describe
from vgjax.report.sweep import mean_std

TARGET_ACCURACY = 0.8
REFERENCE = "baseline_7"


@dataclasses.dataclass
class Row:
    method: str
    path: Path
    description: str
    status: str
    epochs_run: int
    epochs_planned: int | None
    final_val_accuracy: float
    best_val_accuracy: float
    best_epoch: int | None
    final_loss: float
    reached_epoch: int | None  # first epoch with val_accuracy >= TARGET_ACCURACY
    grad_first_e1: float | None  # grad_norm/hidden_1 at epoch 1
    grad_output_e1: float | None  # grad_norm/output at epoch 1
    wall_time_s: float | None
    epoch_time_s: float | None  # median seconds per epoch, from the history
    diverged_epoch: int | None = None
    hidden_layers_e1: int | None = None  # hidden layers present at epoch 1 (fewer in staged runs)
    depth: int | None = None
    seed: int | None = None
    device: str = "?"  # the recorded device, in words

    overrides: dict = dataclasses.field(default_factory=dict)  # config values that differ from the method's

    @property
    def grad_ratio_e1(self) -> float | None:
        """None when missing or not finite (a run that diverged in epoch 1)."""
        if not (_finite(self.grad_first_e1) and _finite(self.grad_output_e1)) or not self.grad_output_e1:
            return None
        return self.grad_first_e1 / self.grad_output_e1


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# Config fields that set the budget or bookkeeping rather than the method itself.
BUDGET_FIELDS = {"method", "epochs", "train_limit", "epochs_scale", "eval_batch_size", "seed",
                 *(f.name for f in config_fields("bookkeeping"))}


def method_overrides(config: dict) -> dict:
    """Config values of a run that differ from its named method's (budget fields aside)."""
    method = config.get("method")
    if method not in METHODS:
        return {}
    try:
        default = get_config(method).to_dict()
    except Exception:  # noqa: BLE001 - an old config must not break the report
        return {}
    return {k: v for k, v in config.items() if k not in BUDGET_FIELDS and k in default and default[k] != v}


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def row_for(run_dir: str | Path, suite_entry: dict | None = None) -> Row:
    """The report row of one run, computed from its history (summary only for status/wall time)."""
    run = load_run(run_dir)
    h = run.history
    method = run.method
    val = [r.get("val_accuracy", math.nan) for r in h]
    best, best_epoch_ = best_epoch(h, "val_accuracy")
    reached = next((r["epoch"] for r in h if _finite(r.get("val_accuracy")) and r["val_accuracy"] >= TARGET_ACCURACY),
                   None)
    e1 = next((r for r in h if r["epoch"] == 1), None)
    status = run.summary.get("status") or (suite_entry or {}).get("status") or ("running" if h else "empty")
    wall = run.summary.get("wall_time_s")
    if wall is None and suite_entry:
        wall = suite_entry.get("wall_time_s")
    if wall is None and h:
        wall = sum(r.get("epoch_time_s", 0.0) for r in h)
    desc = METHODS[method].description if method in METHODS else ""
    return Row(method=method, path=run.path, description=desc, status=status, epochs_run=len(h),
               epochs_planned=run.summary.get("epochs_planned"),
               final_val_accuracy=val[-1] if h else math.nan, best_val_accuracy=best, best_epoch=best_epoch_,
               final_loss=h[-1].get("loss", math.nan) if h else math.nan, reached_epoch=reached,
               grad_first_e1=e1.get("grad_norm/hidden_1") if e1 else None,
               grad_output_e1=e1.get("grad_norm/output") if e1 else None,
               wall_time_s=wall,
               epoch_time_s=statistics.median(r["epoch_time_s"] for r in h) if h and all("epoch_time_s" in r for r in h) else None,
               diverged_epoch=run.summary.get("diverged_epoch"),
               hidden_layers_e1=sum(1 for k in e1 if k.startswith("grad_norm/hidden_")) if e1 else None,
               depth=run.config.get("depth"), seed=run.config.get("seed"),
               device=device_text(run.summary.get("device")), overrides=method_overrides(run.config))


def _order_key(row: "Row"):
    known = list(METHODS)
    return (known.index(row.method) if row.method in known else len(known), row.method, row.path.name)


def collect(runs_dir: str | Path) -> list[Row]:
    """Rows of every run directory under ``runs_dir`` that recorded at least one epoch, in method order."""
    runs_dir = Path(runs_dir)
    suite = previous_entries(runs_dir)
    rows = [row_for(p, suite.get(p.name)) for p in find_run_dirs(runs_dir)]
    return sorted((r for r in rows if r.epochs_run > 0), key=_order_key)


# ----------------------------------------------------------------------------------------------
# formatting


def fmt(x, spec: str = ".4f", none: str = "–") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return none
    return format(x, spec)


def fmt_ratio(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.2g}×"


def fmt_time(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def reached_text(row: Row) -> str:
    return "never" if row.reached_epoch is None else str(row.reached_epoch)


def run_label(row: Row, rows: list[Row]) -> str:
    """The method, with the seed when ``rows`` hold several runs of that method."""
    return row.method if sum(r.method == row.method for r in rows) == 1 else f"{row.method} (seed {row.seed})"


def seed_order(seed) -> tuple:
    """Sort key: integer seeds in order, anything else (a missing seed) after them."""
    return (not isinstance(seed, int), seed if isinstance(seed, int) else 0)


def table_markdown(rows: list[Row]) -> str:
    head = ("| method | status | epochs | final val acc | best val acc (epoch) | final train loss | "
            f"val acc ≥ {TARGET_ACCURACY} at epoch | ‖∇W₁‖ / ‖∇W_out‖ at epoch 1 | s/epoch (median) | wall time |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        epochs = str(r.epochs_run)
        if r.epochs_planned and r.epochs_planned != r.epochs_run:
            epochs += f"/{r.epochs_planned}"
        lines.append(f"| {run_label(r, rows)} | {r.status} | {epochs} | {fmt(r.final_val_accuracy)} | "
                     f"{fmt(r.best_val_accuracy)} ({r.best_epoch if r.best_epoch is not None else '–'}) | "
                     f"{fmt(r.final_loss)} | {reached_text(r)} | {fmt_ratio(r.grad_ratio_e1)} | "
                     f"{fmt(r.epoch_time_s, '.2f')} | {fmt_time(r.wall_time_s)} |")
    return "\n".join(lines)


def _mean_std(values: list[float]) -> str:
    """Mean ± sample std (ddof 1) of the finite values, as the sweep reports write it."""
    return mean_std(describe(values))


def seed_groups(rows: list[Row]) -> list[list[Row]]:
    """Runs of one method with the same settings and budget but different seeds (2 or more)."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        key = (r.method, tuple(sorted((k, repr(v)) for k, v in r.overrides.items())), r.epochs_run)
        groups.setdefault(key, []).append(r)
    return [g for g in groups.values() if len({r.seed for r in g}) > 1]


def seeds_markdown(rows: list[Row]) -> list[str]:
    """Mean ± sample std over seeds for every group of seed repeats (nothing if there is none)."""
    groups = seed_groups(rows)
    if not groups:
        return []
    out = ["## Over seeds", "",
           "Runs of the same method, settings and budget that differ only in the seed: mean ± sample std "
           "(ddof 1) over the seeds.", "",
           f"| method | epochs | seeds | final val acc | best val acc | final train loss | "
           f"reached {TARGET_ACCURACY} (median epoch) |", "|" + "---|" * 7]
    for g in groups:
        reached = sorted(r.reached_epoch for r in g if r.reached_epoch is not None)
        when = f" ({statistics.median(reached):g})" if reached else ""
        seeds = ",".join(str(s) for s in sorted((r.seed for r in g), key=seed_order))
        out.append(f"| {g[0].method} | {g[0].epochs_run} | {seeds} | "
                   f"{_mean_std([r.final_val_accuracy for r in g])} | {_mean_std([r.best_val_accuracy for r in g])} | "
                   f"{_mean_std([r.final_loss for r in g])} | {len(reached)}/{len(g)}{when} |")
    return out + [""]


def _reach_phrase(row: Row) -> str:
    if row.reached_epoch is None:
        return f"never reached {TARGET_ACCURACY} validation accuracy in its {plural(row.epochs_run, 'epoch')}"
    return f"reached {TARGET_ACCURACY} validation accuracy at epoch {row.reached_epoch}"


def paragraph(row: Row, ref: Row | None) -> str:
    """A short comparison of ``row`` with the reference (baseline_7), generated from the numbers."""
    name = f"**{row.method}**" + (f" ({row.description})" if row.description else "")
    if row.overrides:
        name += " with " + ", ".join(f"{k}={v}" for k, v in sorted(row.overrides.items()))
    parts = []
    if row.status == "diverged":
        at = f" at epoch {row.diverged_epoch}" if row.diverged_epoch is not None else ""
        parts.append(f"It diverged (loss NaN/Inf){at}.")
    elif row.status not in ("finished", "stopped"):
        parts.append(f"Its run is {row.status} after {row.epochs_run} epochs.")
    if ref is None:
        parts.append(f"It {_reach_phrase(row)}; best validation accuracy {fmt(row.best_val_accuracy)}, "
                     f"final train loss {fmt(row.final_loss)}.")
        if row.grad_ratio_e1 is not None:
            parts.append(f"Its first-layer gradient at epoch 1 was {fmt_ratio(row.grad_ratio_e1)} the output layer's.")
        parts.append(f"({REFERENCE} is not among these runs, so there is nothing to compare with.)")
        return f"{name}. " + " ".join(parts)
    # reaching the target
    if row.reached_epoch is not None and ref.reached_epoch is None:
        parts.append(f"It reached {TARGET_ACCURACY} validation accuracy at epoch {row.reached_epoch} while "
                     f"{REFERENCE} never did in its {plural(ref.epochs_run, 'epoch')}.")
    elif row.reached_epoch is not None:
        faster = ("earlier than" if row.reached_epoch < ref.reached_epoch else
                  "later than" if row.reached_epoch > ref.reached_epoch else "at the same epoch as")
        parts.append(f"It reached {TARGET_ACCURACY} validation accuracy at epoch {row.reached_epoch}, {faster} "
                     f"{REFERENCE} (epoch {ref.reached_epoch}).")
    elif ref.reached_epoch is not None:
        parts.append(f"It never reached {TARGET_ACCURACY} validation accuracy in {plural(row.epochs_run, 'epoch')}, "
                     f"while "
                     f"{REFERENCE} did at epoch {ref.reached_epoch}.")
    else:
        parts.append(f"Neither it ({plural(row.epochs_run, 'epoch')}) nor {REFERENCE} "
                     f"({plural(ref.epochs_run, 'epoch')}) reached "
                     f"{TARGET_ACCURACY} validation accuracy.")
    # accuracy and loss
    diff = row.best_val_accuracy - ref.best_val_accuracy
    if math.isfinite(diff):
        verdict = ("better than" if diff > 0.02 else "worse than" if diff < -0.02 else "about the same as")
        parts.append(f"Its best validation accuracy, {fmt(row.best_val_accuracy)}, is {verdict} {REFERENCE}'s "
                     f"{fmt(ref.best_val_accuracy)} ({diff:+.3f}); final train loss {fmt(row.final_loss)} vs "
                     f"{fmt(ref.final_loss)}.")
    # gradient flow
    if row.grad_ratio_e1 is not None and ref.grad_ratio_e1 is not None:
        factor = row.grad_ratio_e1 / ref.grad_ratio_e1 if ref.grad_ratio_e1 else math.inf
        flow = (f"{factor:.2g} times {REFERENCE}'s" if factor >= 1 else f"1/{1 / factor:.2g} of {REFERENCE}'s") \
            if math.isfinite(factor) and factor > 0 else "not comparable"
        parts.append(f"Its first-layer gradient at epoch 1 was {fmt_ratio(row.grad_ratio_e1)} the output layer's, "
                     f"vs {fmt_ratio(ref.grad_ratio_e1)} for {REFERENCE} (relative gradient flow {flow}).")
        if row.hidden_layers_e1 is not None and row.depth and row.hidden_layers_e1 < row.depth:
            parts.append(f"At epoch 1 only {row.hidden_layers_e1} of its {row.depth} hidden layers were stacked "
                         f"(staged training), so the gradient had fewer layers to pass through.")
    if row.epochs_run != ref.epochs_run:
        parts.append(f"(Budgets differ: {row.epochs_run} vs {plural(ref.epochs_run, 'epoch')}.)")
    return f"{name}. " + " ".join(parts)


def _setting_line(rows: list[Row]) -> str:
    seeds: dict[str, set] = {}
    for r in rows:
        c = read_json(r.path / "config.json")
        limit = c.get("train_limit") or "all 60000"
        seeds.setdefault(f"batch {c.get('batch_size')}, train_limit {limit}", set()).add(c.get("seed"))
    def listed(v: set) -> str:
        return f"seed{'s' if len(v) > 1 else ''} " + ", ".join(str(x) for x in sorted(v, key=seed_order))

    return "; ".join(f"{k}, {listed(v)}" for k, v in sorted(seeds.items()))


def stage_rows(run_dir: Path) -> list[dict]:
    """Per stage of a staged run: its last epoch's metrics, from the history's ``stage`` column."""
    run = load_run(run_dir)
    table = run.summary.get("stage_table") or {}
    last: dict[int, dict] = {}
    for r in run.history:
        if "stage" in r:
            last[int(r["stage"])] = r
    out = []
    for i, st in enumerate(table.get("stages", []), start=1):
        if i in last:
            out.append({"stage": i, "stacked": st["stacked"], "frozen": st["frozen"], **last[i]})
    return out


def stages_markdown(rows: list[Row]) -> list[str]:
    out = []
    for row in rows:
        stages = stage_rows(row.path)
        if not stages:
            continue
        out += [f"## Staged runs: {run_label(row, rows)}", "",
                "| run | stacked sub-models | frozen | epochs (global) | loss | accuracy | val_loss | val_accuracy |",
                "|---|---|---|---|---|---|---|---|"]
        for st in stages:
            join = lambda ks: "+".join(str(k) for k in ks) or "–"
            out.append(f"| {st['stage']} | {join(st['stacked'])} | {join(st['frozen'])} | {st['epoch']} | "
                       f"{fmt(st['loss'])} | {fmt(st['accuracy'])} | {fmt(st['val_loss'])} | {fmt(st['val_accuracy'])} |")
        out.append("")
    return out


def suite_timing(runs_dir: Path, rows: list[Row]) -> str | None:
    """The suite's wall time against the sum of its methods' (from suite.json), or None."""
    try:
        suite = read_json(runs_dir / SUITE_FILE)
    except (OSError, ValueError):
        return None
    ran = [m for m in suite.get("methods", {}).values() if m.get("action") != "skip" and m.get("wall_time_s")]
    wall = suite.get("wall_time_s")
    if not ran or not wall:
        return None
    total = sum(m["wall_time_s"] for m in ran)
    mode = "one after another" if suite.get("sequential") else f"{suite.get('workers')} parallel workers"
    text = (f"**Suite timing** (`suite.json`): {plural(len(ran), 'method')} run as {mode} "
            f"({suite.get('threads_per_run')} thread each) took {fmt_time(wall)} of wall time; the methods' own "
            f"wall times add up to {fmt_time(total)}")
    if not suite.get("sequential"):
        text += (f", so the workers ran them {total / wall:.2f}× faster than one after another would have "
                 f"(if each method kept the speed it had beside the others)")
    return text + f"; device: {', '.join(sorted({r.device for r in rows})) or '?'}."


def render(rows: list[Row], figures: list[Path], runs_dir: Path) -> str:
    ref = next((r for r in rows if r.method == REFERENCE), None)
    out = ["# Vanishing gradients: results", "",
           f"Generated by `python -m experiments.report {runs_dir}` from the run histories in this "
           f"directory ({plural(len(rows), 'run')}; {_setting_line(rows)}). Validation = the 10,000 test images.", "",
           table_markdown(rows), ""]
    timing = suite_timing(runs_dir, rows)
    if timing:
        out += [timing, ""]
    out += [f"The gradient column is the mean L2 norm of the first hidden layer's kernel gradient over the "
            f"steps of epoch 1, divided by the output layer's: the fraction of the gradient signal that "
            f"reaches the input end of the network (small = vanishing).", ""]
    out += seeds_markdown(rows)
    out += stages_markdown(rows)
    if figures:
        out += ["## Figures", ""] + [f"![{p.stem}]({p.relative_to(runs_dir).as_posix()})" for p in figures] + [""]
    out += [f"## Each method against {REFERENCE}", ""]
    for r in rows:
        if r.method == REFERENCE:
            continue
        out += [paragraph(r, ref), ""]
    if ref is not None:
        out += [f"For reference, **{REFERENCE}** {_reach_phrase(ref)}; best validation accuracy "
                f"{fmt(ref.best_val_accuracy)}, final train loss {fmt(ref.final_loss)}, first-layer gradient at "
                f"epoch 1 {fmt_ratio(ref.grad_ratio_e1)} the output layer's.", ""]
    return "\n".join(out)


def write_report(runs_dir: str | Path, figures: bool = True) -> Path:
    """Write ``runs_dir/report.md`` (and the comparison figures); returns the report's path."""
    runs_dir = Path(runs_dir)
    rows = collect(runs_dir)
    if not rows and (runs_dir / "config.json").exists():
        raise FileNotFoundError(f"{runs_dir} is a single run directory: give the folder that holds run "
                                f"directories (e.g. {runs_dir.parent}), or redraw its figures with "
                                f"python -m experiments.plot {runs_dir}")
    if not rows:
        raise FileNotFoundError(f"{runs_dir} holds no run with a recorded epoch")
    figs = plot_comparison([r.path for r in rows], runs_dir / FIGURES_DIR) if figures else []
    path = runs_dir / "report.md"
    atomic_write_text(path, render(rows, figs, runs_dir) + "\n")
    return path
