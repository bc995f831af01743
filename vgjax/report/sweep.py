"""The multi-seed report of a sweep directory (``python -m experiments.report SWEEP_DIR``).

Reads what ``python -m experiments.sweep`` wrote (``config.json`` and ``summary.json``) and writes
``SWEEP_DIR/report.md``: one table row per setting (mean ± sample std over the seeds of the final
and best validation accuracy and of the final training loss, how many seeds left the 0.10 chance
plateau and when, diverged seeds), a generated verdict per setting, and -- when the sweep has
several values of one discrete axis, such as ``--batch-size 32,64,128,256,512`` -- a pivot table
of final validation accuracy over that axis, a sentence per method saying at which values it
learns, and the figure ``final_val_accuracy_vs_<axis>.png``.

Nothing is typed by hand: every number comes from ``summary.json``; the sweep's curve figures
(``sweep_val_accuracy.png``, ``sweep_loss.png``) are redrawn from its ``metrics.csv``.
"""

from __future__ import annotations

from pathlib import Path

from vgjax.report.figures import draw_curves, plot_pivot
from vgjax.files import atomic_write_text, read_json
from vgjax.runtime import device_text
from vgjax.sweep.files import read_metrics
from vgjax.sweep.settings import pivot, value_text

# A setting "learns" when most seeds left the plateau and the mean final accuracy is well above
# chance; "chance" when no seed left it; anything else is "partly" (some seeds escaped).
LEARNS_ACCURACY = 0.5
LEARNS_FRACTION = 0.5
PIVOT_FIGURE = "final_val_accuracy_vs_{axis}.png"  # the pivot figure beside report.md, per swept axis
PIVOT_AXES = ("batch_size", "depth", "width", "activation", "optimizer", "init_draw", "output_init", "bias_init",
              "init_std", "lr", "beta")


def is_sweep_dir(path: str | Path) -> bool:
    """A directory written by experiments.sweep (its config.json has a "sweep" entry)."""
    path = Path(path)
    try:
        return (path / "config.json").is_file() and "sweep" in read_json(path / "config.json")
    except (OSError, ValueError):
        return False


def load_sweep(path: str | Path) -> tuple[dict, dict]:
    """(config, summary) of a finished sweep; ValueError naming the problem otherwise."""
    path = Path(path)
    if not (path / "summary.json").exists():
        raise ValueError(f"{path}: the sweep has no summary.json (still running, or it failed)")
    summary = read_json(path / "summary.json")
    if summary.get("status") != "finished" or not summary.get("settings"):
        raise ValueError(f"{path}: the sweep did not finish (status {summary.get('status')!r}); run it again")
    return read_json(path / "config.json"), summary


# ----------------------------------------------------------------------------- formatting

def mean_std(d: dict | None, spec: str = ".3f") -> str:
    if not d or d.get("mean") is None:
        return "–"
    return f"{format(d['mean'], spec)} ± {format(d['std'], spec)}"


def swept_axes(config: dict) -> list[str]:
    """The axes the sweep was asked to vary (given with several values); a method's own depth,
    batch size, ... differ between methods but are not axes."""
    return [k for k in PIVOT_AXES if len(config["sweep"].get(k) or ()) > 1]


def verdict(s: dict) -> str:
    """learns / partly / chance, from the plateau exits and the mean final accuracy."""
    frac = s["left_plateau"]["fraction"]
    mean = s["final_val_accuracy"]["mean"]
    if frac == 0:
        return "chance"
    if frac >= LEARNS_FRACTION and mean is not None and mean >= LEARNS_ACCURACY:
        return "learns"
    return "partly"


def plateau_text(s: dict) -> str:
    lp = s["left_plateau"]
    left = round(lp["fraction"] * s["seeds"])
    when = f" (median epoch {lp['epoch_median']:g})" if lp.get("epoch_median") is not None else ""
    return f"{left}/{s['seeds']}{when}"


# ----------------------------------------------------------------------------- tables

def settings_table(summary: dict, cols: list[str]) -> str:
    settings = summary["settings"]
    head = (["method"] + cols + ["seeds", "final val acc", "best val acc", "final train loss",
                                 "left the 0.10 plateau", "diverged", "verdict"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in settings:
        cells = ([s["method"]] + [value_text(s[c]) for c in cols]
                 + [str(s["seeds"]), mean_std(s["final_val_accuracy"]), mean_std(s["best_val_accuracy"]),
                    mean_std(s["final_loss"]), plateau_text(s), f"{s['diverged']['count']}/{s['seeds']}",
                    verdict(s)])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pivot_axis(config: dict) -> str | None:
    """The axis to pivot on: the first swept axis of PIVOT_AXES."""
    return next(iter(swept_axes(config)), None)


def pivot_table(settings: list[dict], axis: str, others: list[str] = ()) -> str:
    rows, values, cells = pivot(settings, axis, others)
    head = ["setting"] + [f"{axis} {value_text(v)}" for v in values]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r] + [mean_std(cells[(r, v)]["final_val_accuracy"]) if (r, v) in cells
                                               else "–" for v in values]) + " |")
    return "\n".join(lines)


def _ranges(values: list, picked: list) -> str:
    """'32–128 and 512' for the picked values, runs of neighbours in ``values`` joined by a dash."""
    runs, cur = [], []
    for v in values:
        if v in picked:
            cur.append(v)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    parts = [value_text(r[0]) if len(r) == 1 else f"{value_text(r[0])}–{value_text(r[-1])}" for r in runs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def axis_sentences(settings: list[dict], axis: str, epochs: int, others: list[str] = ()) -> list[str]:
    """Per row of the pivot: at which axis values it learns, partly learns, or stays at chance."""
    rows, values, cells = pivot(settings, axis, others)
    out = []
    for r in rows:
        have = [v for v in values if (r, v) in cells]
        by = {k: [v for v in have if verdict(cells[(r, v)]) == k] for k in ("learns", "partly", "chance")}
        if len({verdict(cells[(r, v)]) for v in have}) == 1:
            what = {"learns": "learns", "partly": "partly learns", "chance": "stays at chance"}[verdict(cells[(r, have[0])])]
            out.append(f"- **{r}** {what} at every {axis} tried (in {epochs} epochs): the verdict does not "
                       f"depend on it.")
            continue
        parts = [f"{phrase} at {axis} {_ranges(have, by[k])}"
                 for k, phrase in (("learns", "learns"), ("partly", "partly learns"), ("chance", "stays at chance"))
                 if by[k]]
        out.append(f"- **{r}** " + "; ".join(parts) + f" (in {epochs} epochs): **depends on {axis}**.")
    return out


# ----------------------------------------------------------------------------- the report

def _command(config: dict) -> str:
    sw = config["sweep"]
    parts = ["python -m experiments.sweep", "--method " + ",".join(sw["methods"])]
    for key in PIVOT_AXES:
        if sw.get(key):
            parts.append(f"--{key.replace('_', '-')} " + ",".join(value_text(v) for v in sw[key]))
    parts.append(f"--seeds {len(sw['seeds'])}")
    parts.append(f"--epochs {sw['epochs']}")
    if sw.get("train_limit"):
        parts.append(f"--train-limit {sw['train_limit']}")
    return " ".join(parts)


def render(path: Path, config: dict, summary: dict, figure: Path | None) -> str:
    settings = summary["settings"]
    epochs = summary.get("epochs", config["sweep"]["epochs"])
    train = config["sweep"].get("train_limit") or "all 60,000"
    wall = summary.get("wall_time_s")
    out = [f"# Sweep {path.name}: mean ± std over seeds", "",
           f"Generated by `python -m experiments.report {path}` from `summary.json` (written by "
           f"`{_command(config)}`). {len(settings)} settings × {len(config['sweep']['seeds'])} seeds "
           f"({summary['members']} trained networks), {epochs} epochs each, {train} training images, "
           f"validation = the 10,000 test images; device: {device_text(summary.get('device'))}"
           + (f"; wall time {wall / 60:.1f} min." if wall else "."), "",
           f"Mean ± sample std (ddof 1) over the seeds. *Left the plateau*: seeds whose validation accuracy "
           f"exceeded 0.2 at some epoch (chance is 0.1), with the median epoch at which they did. "
           f"*Verdict*: **learns** when at least {LEARNS_FRACTION:.0%} of the seeds left the plateau and the "
           f"mean final accuracy is ≥ {LEARNS_ACCURACY}, **chance** when no seed left it, **partly** "
           f"otherwise.", "",
           settings_table(summary, swept_axes(config)), ""]
    axis, others = pivot_axis(config), swept_axes(config)
    if axis is not None:
        out += [f"## Final validation accuracy by {axis}", "", pivot_table(settings, axis, others), ""]
        out += axis_sentences(settings, axis, epochs, others) + [""]
        if figure is not None:
            out += [f"![final validation accuracy vs {axis}]({figure.relative_to(path).as_posix()})", ""]
    for name in ("sweep_val_accuracy.png", "sweep_loss.png"):
        if (path / name).exists():
            out += [f"![{name[:-4]}]({name})", ""]
    return "\n".join(out)


def write_sweep_report(path: str | Path, figures: bool = True) -> Path:
    """Write ``path/report.md`` (and the pivot figure); returns the report's path."""
    path = Path(path)
    config, summary = load_sweep(path)
    axis = pivot_axis(config)
    figure = None
    if figures and axis is not None:
        figure = plot_pivot(summary["settings"], axis, path / PIVOT_FIGURE.format(axis=axis),
                            swept_axes(config))
    if figures and (path / "metrics.csv").exists():  # the sweep's curves, redrawn from its files
        draw_curves(path, summary["settings"], *read_metrics(path))
    report = path / "report.md"
    atomic_write_text(report, render(path, config, summary, figure) + "\n")
    return report
