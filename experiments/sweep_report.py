"""The multi-seed report of a sweep directory (``python -m experiments.report SWEEP_DIR``).

Reads what :mod:`experiments.sweep` wrote (``config.json`` and ``summary.json``) and writes
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

import math
from pathlib import Path

# A setting "learns" when most seeds left the plateau and the mean final accuracy is well above
# chance; "chance" when no seed left it; anything else is "partly" (some seeds escaped).
LEARNS_ACCURACY = 0.5
LEARNS_FRACTION = 0.5
PIVOT_AXES = ("batch_size", "depth", "width", "activation", "optimizer", "init_draw", "output_init", "bias_init",
              "init_std", "lr", "beta")


def is_sweep_dir(path: str | Path) -> bool:
    """A directory written by experiments.sweep (its config.json has a "sweep" entry)."""
    from vgjax.runlog import read_json

    path = Path(path)
    try:
        return (path / "config.json").is_file() and "sweep" in read_json(path / "config.json")
    except (OSError, ValueError):
        return False


def load_sweep(path: str | Path) -> tuple[dict, dict]:
    """(config, summary) of a finished sweep; ValueError naming the problem otherwise."""
    from vgjax.runlog import read_json

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


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def setting_label(s: dict, columns: list[str]) -> str:
    return " ".join([s["method"]] + [f"{k}={_value(s[k])}" for k in columns if k != "method"])


# ----------------------------------------------------------------------------- tables

def settings_table(summary: dict, cols: list[str]) -> str:
    settings = summary["settings"]
    head = (["method"] + cols + ["seeds", "final val acc", "best val acc", "final train loss",
                                 "left the 0.10 plateau", "diverged", "verdict"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in settings:
        cells = ([s["method"]] + [_value(s[c]) for c in cols]
                 + [str(s["seeds"]), mean_std(s["final_val_accuracy"]), mean_std(s["best_val_accuracy"]),
                    mean_std(s["final_loss"]), plateau_text(s), f"{s['diverged']['count']}/{s['seeds']}",
                    verdict(s)])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pivot_axis(config: dict) -> str | None:
    """The axis to pivot on: the first swept axis of PIVOT_AXES."""
    return next(iter(swept_axes(config)), None)


def pivot(settings: list[dict], axis: str, others: list[str] = ()) -> tuple[list[str], list, dict]:
    """Row labels (method and the ``others`` axes), the axis values, and {(row, value): setting}."""
    rows, values, cells = [], [], {}
    for s in settings:
        row = setting_label(s, [c for c in others if c != axis])
        if row not in rows:
            rows.append(row)
        if s[axis] not in values:
            values.append(s[axis])
        cells[(row, s[axis])] = s
    try:
        values.sort()
    except TypeError:
        pass
    return rows, values, cells


def pivot_table(settings: list[dict], axis: str, others: list[str] = ()) -> str:
    rows, values, cells = pivot(settings, axis, others)
    head = ["setting"] + [f"{axis} {_value(v)}" for v in values]
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
    parts = [_value(r[0]) if len(r) == 1 else f"{_value(r[0])}–{_value(r[-1])}" for r in runs]
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


# ----------------------------------------------------------------------------- figure

def plot_pivot(settings: list[dict], axis: str, path: Path, others: list[str] = ()) -> Path:
    from vgjax.plots import _figure, _run_colors, save_figure

    rows, values, cells = pivot(settings, axis, others)
    numeric = all(isinstance(v, (int, float)) for v in values)
    fig, axes = _figure(1, 1, size=(8.0, 4.6))
    ax = axes[0, 0]
    for r, c in zip(rows, _run_colors(len(rows))):
        have = [v for v in values if (r, v) in cells]
        x = have if numeric else [values.index(v) for v in have]
        m = [cells[(r, v)]["final_val_accuracy"]["mean"] for v in have]
        e = [cells[(r, v)]["final_val_accuracy"]["std"] for v in have]
        ax.errorbar(x, [math.nan if v is None else v for v in m], yerr=[0 if v is None else v for v in e],
                    marker="o", capsize=3, lw=1.4, color=c, label=r, ls="--" if r.startswith("baseline") else "-")
    if numeric:
        if all(v > 0 for v in values) and max(values) / min(values) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(values, [_value(v) for v in values])
    else:
        ax.set_xticks(range(len(values)), [_value(v) for v in values])
    ax.axhline(0.1, color="0.6", ls=":", lw=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(axis)
    ax.set_ylabel("final validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"final validation accuracy vs {axis} (mean ± std over seeds)")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- the report

def _command(config: dict) -> str:
    sw = config["sweep"]
    parts = ["python -m experiments.sweep", "--method " + ",".join(sw["methods"])]
    for key in PIVOT_AXES:
        if sw.get(key):
            parts.append(f"--{key.replace('_', '-')} " + ",".join(_value(v) for v in sw[key]))
    parts.append(f"--seeds {len(sw['seeds'])}")
    parts.append(f"--epochs {sw['epochs']}")
    if sw.get("train_limit"):
        parts.append(f"--train-limit {sw['train_limit']}")
    return " ".join(parts)


def render(path: Path, config: dict, summary: dict, figure: Path | None) -> str:
    from vgjax.runtime import device_text

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


def read_metrics(path: Path) -> tuple[dict, dict]:
    """Members ({"setting", "seed"} arrays) and histories (member × epoch) from metrics.csv."""
    import csv

    import numpy as np

    from vgjax.sweep import METRICS

    with open(path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = sorted({(int(r["setting"]), int(r["seed"])) for r in rows})
    index = {k: i for i, k in enumerate(keys)}
    epochs = max(int(r["epoch"]) for r in rows)
    history = {m: np.full((len(keys), epochs), np.nan) for m in METRICS}
    for r in rows:
        i, e = index[(int(r["setting"]), int(r["seed"]))], int(r["epoch"]) - 1
        for m in METRICS:
            history[m][i, e] = float(r[m])
    members = {"setting": np.array([k[0] for k in keys]), "seed": np.array([k[1] for k in keys])}
    return members, history


def write_sweep_report(path: str | Path, figures: bool = True) -> Path:
    """Write ``path/report.md`` (and the pivot figure); returns the report's path."""
    from vgjax.runlog import atomic_write_text

    path = Path(path)
    config, summary = load_sweep(path)
    axis = pivot_axis(config)
    figure = None
    if figures and axis is not None:
        figure = plot_pivot(summary["settings"], axis, path / f"final_val_accuracy_vs_{axis}.png",
                            swept_axes(config))
    if figures and (path / "metrics.csv").exists():  # the sweep's curves, redrawn from its files
        from experiments.sweep import draw_curves

        draw_curves(path, summary["settings"], *read_metrics(path))
    report = path / "report.md"
    atomic_write_text(report, render(path, config, summary, figure) + "\n")
    return report
