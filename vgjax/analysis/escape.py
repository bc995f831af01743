"""The plateau-escape study (docs/escape.md): when, and how often, a deep sigmoid MLP leaves the
chance plateau, read from a sweep's ``metrics.csv``.

Pure numpy on member × epoch arrays: the escape epoch of every member (:func:`escape_epochs`,
docs/escape.md "Definition"), the fraction of seeds escaped by each epoch (:func:`fraction_escaped`),
the per-setting table with Wilson intervals (:func:`escape_table`, :func:`wilson`), the robustness
of the table to the definition (:func:`robustness`, docs/escape.md "Robustness"), the mean-field
prediction at initialisation per setting and its rank correlation with the measured escape
(:func:`theory_rows`, :func:`theory_comparison`, docs/escape.md "Theory"), and the CPU/GPU time per
member-epoch from the sweep's own ``summary.json``; and the report of a sweep directory
(:func:`write_escape_report`: report.md, escape.csv, curves.csv and the figures of
:mod:`vgjax.report.escape_figures`), every number generated from the sweep's files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from vgjax.report import escape_figures
from vgjax.analysis import theory
from vgjax.analysis.grids import FULL_EPOCHS, FULL_GRID, FULL_SEEDS  # noqa: F401 (the study's budget)
from vgjax.methods import get_config
from vgjax.run.rundir import history_csv
from vgjax.files import atomic_write_text, read_json
from vgjax.runtime import device_text
from vgjax.sweep.stats import PLATEAU_ACCURACY, first_epoch, summarize
from vgjax.sweep.files import finished_part, read_metrics
from vgjax.report.sweep import _command as sweep_command
from vgjax.report.sweep import load_sweep
from vgjax.sweep.settings import DISCRETE, value_text

THRESHOLD = PLATEAU_ACCURACY  # 0.2, twice chance (0.1): the reference definition
THRESHOLDS = (0.15, 0.2, 0.3)  # the robustness check
RULES = {"staying": True, "first crossing": False}
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
COLUMNS = ("method", "depth", "batch_size", "init_std")  # the columns a setting is shown by


# ----------------------------------------------------------------------------- definitions

def escape_epochs(val_accuracy: np.ndarray, threshold: float = THRESHOLD, staying: bool = True) -> np.ndarray:
    """Per member (rows of ``val_accuracy``, member × epoch), the 1-based escape epoch; 0: never.

    ``staying``: the first epoch e whose validation accuracy exceeds ``threshold`` at e *and at
    every later epoch recorded*; otherwise the first epoch that exceeds it (plain first crossing).
    NaN (a diverged epoch) is never above the threshold.
    """
    above = np.asarray(val_accuracy, float) > threshold
    if not staying:
        return first_epoch(above)
    stays = np.flip(np.logical_and.accumulate(np.flip(above, -1), -1), -1)  # above from e to the end
    return first_epoch(stays)


def fell_back(val_accuracy: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Per member: it crossed ``threshold`` and was below it again at a later epoch."""
    first = escape_epochs(val_accuracy, threshold, staying=False)
    return (first > 0) & (escape_epochs(val_accuracy, threshold, staying=True) != first)


def fraction_escaped(epochs: np.ndarray, n_epochs: int) -> np.ndarray:
    """The fraction of members (escape epochs, 0: never) escaped by each epoch 1 .. ``n_epochs``.

    Every member is followed for the same ``n_epochs`` (censored together at the last one), so
    this empirical fraction is the Kaplan-Meier estimate of 1 - survival.
    """
    e = np.asarray(epochs)[:, None]
    if e.size == 0:
        return np.full(n_epochs, np.nan)
    return ((e > 0) & (e <= np.arange(1, n_epochs + 1))).mean(0)


def survival_median(epochs: np.ndarray, n_epochs: int) -> int | None:
    """The first epoch by which at least half the members escaped; None if that never happened."""
    frac = fraction_escaped(epochs, n_epochs)
    reached = np.flatnonzero(frac >= 0.5)
    return int(reached[0] + 1) if reached.size else None


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion k / n (95 % for the default z)."""
    if n <= 0:
        return math.nan, math.nan
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(escaped: int, seeds: int) -> str:
    """never / some / all of the seeds escaped."""
    return "never" if escaped == 0 else "all" if escaped == seeds else "some"


# ----------------------------------------------------------------------------- tables

def _rows_of(members: dict, i: int) -> np.ndarray:
    return np.flatnonzero(np.asarray(members["setting"]) == i)


def escape_table(settings: list[dict], members: dict, val_accuracy: np.ndarray,
                 threshold: float = THRESHOLD, staying: bool = True) -> list[dict]:
    """One row per setting: seeds, escaped, probability with its 95 % Wilson interval, the median
    escape epoch among the seeds that escaped and the survival median over all seeds."""
    n_epochs = val_accuracy.shape[1]
    ep = escape_epochs(val_accuracy, threshold, staying)
    out = []
    for i, s in enumerate(settings):
        e = ep[_rows_of(members, i)]
        k, n = int((e > 0).sum()), int(e.size)
        lo, hi = wilson(k, n)
        out.append({"setting": i, **{c: s[c] for c in COLUMNS}, "seeds": n, "escaped": k,
                    "probability": k / n if n else math.nan, "ci_low": lo, "ci_high": hi,
                    "median_epoch_escaped": float(np.median(e[e > 0])) if k else None,
                    "survival_median": survival_median(e, n_epochs), "epochs": n_epochs,
                    "verdict": verdict(k, n)})
    return out


def curve_rows(settings: list[dict], members: dict, val_accuracy: np.ndarray,
               threshold: float = THRESHOLD, staying: bool = True) -> list[dict]:
    """curves.csv: per setting and epoch, the seeds escaped by then and their fraction."""
    n_epochs = val_accuracy.shape[1]
    ep = escape_epochs(val_accuracy, threshold, staying)
    out = []
    for i, s in enumerate(settings):
        e = ep[_rows_of(members, i)]
        frac = fraction_escaped(e, n_epochs)
        out += [{"setting": i, **{c: s[c] for c in COLUMNS}, "epoch": t + 1, "seeds": int(e.size),
                 "escaped": int(round(frac[t] * e.size)), "fraction": float(frac[t])} for t in range(n_epochs)]
    return out


def robustness(settings: list[dict], members: dict, val_accuracy: np.ndarray) -> list[dict]:
    """Every (threshold, rule) variant against the reference (0.2, staying): how many settings
    change their escaped count or verdict, the largest change of probability, the median shift of
    the median escape epoch, and how many members crossed the threshold and fell back below it."""
    ref = escape_table(settings, members, val_accuracy)
    out = []
    for threshold in THRESHOLDS:
        back = int(fell_back(val_accuracy, threshold).sum())
        for rule, staying in RULES.items():
            tab = escape_table(settings, members, val_accuracy, threshold, staying)
            shifts = [t["median_epoch_escaped"] - r["median_epoch_escaped"] for t, r in zip(tab, ref)
                      if t["median_epoch_escaped"] is not None and r["median_epoch_escaped"] is not None]
            out.append({"threshold": threshold, "rule": rule,
                        "reference": threshold == THRESHOLD and staying,
                        "escaped_members": sum(t["escaped"] for t in tab),
                        "settings_changed": sum(t["escaped"] != r["escaped"] for t, r in zip(tab, ref)),
                        "verdicts_changed": sum(t["verdict"] != r["verdict"] for t, r in zip(tab, ref)),
                        "max_probability_change": max((abs(t["probability"] - r["probability"])
                                                       for t, r in zip(tab, ref)), default=0.0),
                        "median_epoch_shift": float(np.median(shifts)) if shifts else None,
                        "fell_back": back})
    return out


# ----------------------------------------------------------------------------- theory

def net_of(setting: dict) -> theory.Net:
    """The mean-field description of a setting's network (its method, discrete values, init std)."""
    config = get_config(setting["method"], **{k: setting[k] for k in DISCRETE if k in setting},
                        init_std=setting["init_std"], beta=setting.get("beta"))
    return theory.Net.from_config(config)


def theory_rows(settings: list[dict], x_u8: np.ndarray, y: np.ndarray, per_class: int = 3) -> list[dict]:
    """Per setting, the prediction at initialisation (vgjax.analysis.theory, docs/escape.md "Theory"):
    chi of every hidden layer (mean over a class-stratified data sample), log10 of their product
    (the backward gain from the last hidden layer to the first), and log10 of the predicted
    kernel-gradient norm of the first layer over the output layer's at the setting's batch size."""
    idx = theory.stratified_sample(y, per_class, seed=0)
    xs, labels = x_u8[idx].astype(np.float64) / 255.0, y[idx]
    priors = {int(k): float(np.mean(y == k)) for k in np.unique(y)}
    profiles: dict = {}
    out = []
    for s in settings:
        net = net_of(s)
        if net not in profiles:  # the batch size enters the norm, not the profile
            profiles[net] = theory.predict_profile(net, xs, labels, int(s["batch_size"]), priors)
        prof = profiles[net]
        chi = prof.chi[:-1]
        out.append({"chi": [float(c) for c in chi], "log10_chi_product": float(np.sum(np.log10(chi))),
                    "log10_grad_ratio": float(np.log10(prof.ratio_to_output(int(s["batch_size"]))[0]))})
    return out


def spearman(x, y) -> tuple[float | None, float | None]:
    """Spearman's rank correlation and its two-sided p-value; (None, None) when undefined (fewer
    than 3 points, or a constant variable)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    r = stats.spearmanr(x, y)
    return float(r.statistic), float(r.pvalue)


def censored_time(row: dict) -> int:
    """The survival median, a setting where fewer than half escaped counted as epochs + 1 (after
    every escape seen: a valid rank, not a time)."""
    return row["survival_median"] if row["survival_median"] is not None else row["epochs"] + 1


def theory_comparison(table: list[dict], predicted: list[dict]) -> list[dict]:
    """Rank correlations of each predictor with the escape probability and the escape time, over
    all settings and within each batch size."""
    groups = [("all", list(range(len(table))))]
    batches = sorted({t["batch_size"] for t in table})
    for b in batches if len(batches) > 1 else ():
        groups.append((f"batch {b}", [i for i, t in enumerate(table) if t["batch_size"] == b]))
    out = []
    for name, idx in groups:
        row = {"group": name, "settings": len(idx)}
        for key in ("log10_grad_ratio", "log10_chi_product"):
            x = [predicted[i][key] for i in idx]
            row[f"{key}:probability"] = spearman(x, [table[i]["probability"] for i in idx])
            row[f"{key}:time"] = spearman(x, [censored_time(table[i]) for i in idx])
        out.append(row)
    return out


# ----------------------------------------------------------------------------- timing

def member_epoch_seconds(summary: dict) -> list[dict]:
    """Per program of the sweep (summary.json "runs"): wall seconds per member-epoch after the
    first chunk's first (compiling) epoch, ``(wall - first) / (members × epochs - chunk)``; None
    when nothing follows it. With worker processes this is the whole machine's throughput."""
    epochs = int(summary["epochs"])
    out = []
    for r in summary.get("runs", []):
        wall, first = r.get("wall_time_s"), r.get("first_epoch_s")
        rest = r["members"] * epochs - min(r.get("chunk_size") or r["members"], r["members"])
        per = (wall - first) / rest if rest > 0 and wall is not None and first is not None else None
        out.append({"depth": r.get("depth"), "batch_size": r.get("batch_size"), "members": r["members"],
                    "workers": r.get("workers"), "first_epoch_s": first, "seconds_per_member_epoch": per})
    return out


# ----------------------------------------------------------------------------- the report

def _f(v, spec: str = ".2f") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _rho(pair) -> str:
    rho, p = pair
    return "undefined" if rho is None else f"{rho:+.2f} (p {p:.2g})"


def train_command(config: dict, sweep_dir) -> str:
    """The command that trains this sweep again: experiments.escape's when it is an escape grid
    (baseline_7 over depth, batch size and init std), else experiments.sweep's."""
    sw = config["sweep"]
    others = [k for k in ("width", "activation", "optimizer", "init_draw", "output_init", "bias_init", "lr", "beta")
              if sw.get(k)]
    if sw.get("methods") != ["baseline_7"] or others:
        return f"{sweep_command(config)} --out {sweep_dir}"
    parts = ["python -m experiments.escape train"]
    for key in ("depth", "batch_size", "init_std"):
        if sw.get(key):
            parts.append(f"--{key.replace('_', '-')} " + ",".join(value_text(v) for v in sw[key]))
    parts += [f"--seeds {len(sw['seeds'])}", f"--epochs {sw['epochs']}"]
    if sw.get("train_limit"):
        parts.append(f"--train-limit {sw['train_limit']}")
    return " ".join(parts + [f"--out {sweep_dir}"])


def header(ctx: dict) -> list[str]:
    config, summary, table = ctx["config"], ctx["summary"], ctx["table"]
    sw = config["sweep"]
    axes = ", ".join(f"{k.replace('_', ' ')} {{{', '.join(value_text(v) for v in sw[k])}}}"
                     for k in ("depth", "batch_size", "init_std") if sw.get(k))
    wall = summary.get("wall_time_s")
    full = (all(sw.get(k) == v for k, v in FULL_GRID.items()) and len(sw["seeds"]) >= FULL_SEEDS
            and ctx["epochs"] >= FULL_EPOCHS and not sw.get("train_limit"))
    budget = "" if full else (f" **This is a reduced budget**: the study's is {math.prod(len(v) for v in FULL_GRID.values())} "
                              f"settings × {FULL_SEEDS} seeds × {FULL_EPOCHS} epochs on all training images "
                              f"(docs/escape.md); read the numbers below for this budget only.")
    return [f"# Plateau escape: {ctx['sweep_dir']}", "",
            f"Generated by `{ctx['command']}` from the sweep trained by `{train_command(config, ctx['sweep_dir'])}` "
            f"(its `config.json`, `summary.json` and `metrics.csv`); docs/escape.md explains the study.", "",
            f"**Budget**: {len(table)} settings ({axes or 'the methods own values'}) × {len(sw['seeds'])} seeds "
            f"= {summary['members']} trained networks, {ctx['epochs']} epochs each, "
            f"{sw.get('train_limit') or 'all 60,000'} training images; validation = the 10,000 test images. "
            f"**Device**: {device_text(summary.get('device'))}"
            + (f"; sweep wall time {wall / 60:.1f} min." if wall else ".") + budget, ""] + missing_text(ctx)


def missing_text(ctx: dict) -> list[str]:
    missing = ctx.get("missing") or []
    if not missing:
        return []
    return [f"**The sweep was interrupted**: this report covers the programs that finished (every member has "
            f"an intact chunk in `chunks/`); not trained: {'; '.join(missing)}. The budget above counts the "
            f"finished programs only.", ""]


def definition_text(ctx: dict) -> list[str]:
    back = {r["threshold"]: r["fell_back"] for r in ctx["robust"]}
    return ["## Definition", "",
            f"A seed has **left the chance plateau** (chance is 0.1) at the first epoch e whose validation "
            f"accuracy exceeds {THRESHOLD:g} at e and at every later epoch of the run (*staying*), not at its "
            f"first crossing: a seed can cross and fall back to chance (in this sweep {back[THRESHOLD]} of "
            f"{ctx['members']} seeds crossed {THRESHOLD:g} and were below it again at a later epoch). "
            f"Every seed is followed for the same {ctx['epochs']} "
            f"epochs, so the fraction escaped by each epoch is the Kaplan-Meier estimate (no seed is censored "
            f"earlier); a seed that crosses only in the last epoch counts as escaped there. The interval is "
            f"the 95 % Wilson score interval of escaped / seeds.", ""]


def escape_markdown(table: list[dict]) -> list[str]:
    methods = len({t["method"] for t in table}) > 1
    head = (["method"] if methods else []) + ["depth", "batch", "init std", "seeds", "escaped",
                                               f"P(escape by epoch {table[0]['epochs']}) [95 % CI]",
                                               "median escape epoch (escaped seeds)", "survival median", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in table:
        cells = ([t["method"]] if methods else []) + [
            str(t["depth"]), str(t["batch_size"]), value_text(t["init_std"]), str(t["seeds"]), str(t["escaped"]),
            f"{t['probability']:.2f} [{t['ci_low']:.2f}, {t['ci_high']:.2f}]",
            _f(t["median_epoch_escaped"], "g"), _f(t["survival_median"], "d"), t["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def robustness_markdown(robust: list[dict], n_settings: int) -> list[str]:
    head = ["threshold", "rule", "escaped seeds", "settings whose escaped count changes",
            "settings whose verdict changes", "largest change of probability",
            "median shift of the median escape epoch", "seeds that crossed and fell back"]
    lines = ["## Robustness of the definition", "",
             f"The table recomputed for thresholds {', '.join(f'{t:g}' for t in THRESHOLDS)} and for the plain "
             f"first crossing, each against the reference ({THRESHOLD:g}, staying), over the {n_settings} settings. "
             f"Verdict: never / some / all seeds escaped.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in robust:
        name = f"**{r['threshold']:g}**" if r["reference"] else f"{r['threshold']:g}"
        lines.append("| " + " | ".join([name, r["rule"], str(r["escaped_members"]), str(r["settings_changed"]),
                                        str(r["verdicts_changed"]), f"{r['max_probability_change']:.2f}",
                                        _f(r["median_epoch_shift"], "+g"), str(r["fell_back"])]) + " |")
    others = [r for r in robust if not r["reference"]]
    changed = sum(r["verdicts_changed"] for r in others)
    worst = max(others, key=lambda r: r["max_probability_change"])
    lines += ["", f"Over the {len(others)} other variants, {changed} (setting, variant) verdicts differ from the "
                  f"reference; the largest change of an escape probability is {worst['max_probability_change']:.2f} "
                  f"({worst['threshold']:g}, {worst['rule']}).", ""]
    return lines


def strength(rho: float) -> str:
    return "strong" if abs(rho) >= 0.7 else "moderate" if abs(rho) >= 0.4 else "weak"


def theory_answer(comparison: list[dict]) -> str:
    """The plain answer to "does chi predict the escape time?", from the rank correlation of the
    predicted gradient ratio with the escape time over all settings."""
    rho, p = comparison[0]["log10_grad_ratio:time"]
    if rho is None:
        return ("**Cannot tell at this budget**: the escape time (or the prediction) does not vary over the "
                "settings, so no rank correlation exists.")
    expected = rho < 0  # less vanishing (a larger ratio) should escape earlier
    direction = "in the direction the theory expects (less vanishing, earlier escape)" if expected else \
        "against the direction the theory expects"
    if expected and abs(rho) >= 0.7 and p < 0.05:
        answer = "**Yes**, the prediction at initialisation ranks the escape time well"
    elif expected and abs(rho) >= 0.4:
        answer = "**Partly**: the prediction at initialisation ranks the escape time only roughly"
    else:
        answer = "**No**, the prediction at initialisation does not rank the escape time"
    return (f"{answer}: Spearman ρ = {rho:+.2f} (p {p:.2g}) over {comparison[0]['settings']} settings, a "
            f"{strength(rho)} relation {direction}.")


def batch_spread(table: list[dict]) -> tuple[int, int]:
    """(depth, init std) pairs whose verdict differs between batch sizes, of those with several."""
    by: dict = {}
    for t in table:
        by.setdefault((t["method"], t["depth"], t["init_std"]), []).append(t["verdict"])
    several = [v for v in by.values() if len(v) > 1]
    return sum(len(set(v)) > 1 for v in several), len(several)


def theory_markdown(ctx: dict) -> list[str]:
    table, predicted, comparison = ctx["table"], ctx["predicted"], ctx["comparison"]
    out = ["## Does χ predict the escape?", ""]
    if predicted is None:
        return out + ["Not computed (`--no-theory`).", ""]
    out += [f"Per setting, `vgjax.analysis.theory` predicts at initialisation (mean field, {ctx['per_class']} examples "
            f"per class of the training data): χ of every hidden layer, their product ∏χ (the backward gain of "
            f"the squared error signal from the last hidden layer to the first) and the kernel-gradient norm of "
            f"the first layer over the output layer's at the setting's batch size (the ratio `experiments.theory` "
            f"checks against measurements). Escape time: the survival median (a setting where fewer than half "
            f"the seeds escaped ranks after every escape seen). Spearman rank correlations, two-sided p:", "",
            "| settings | n | ρ(grad ratio, P(escape)) | ρ(grad ratio, time) | ρ(∏χ, P(escape)) | ρ(∏χ, time) |",
            "|---|---|---|---|---|---|"]
    for c in comparison:
        out.append(f"| {c['group']} | {c['settings']} | {_rho(c['log10_grad_ratio:probability'])} | "
                   f"{_rho(c['log10_grad_ratio:time'])} | {_rho(c['log10_chi_product:probability'])} | "
                   f"{_rho(c['log10_chi_product:time'])} |")
    differ, pairs = batch_spread(table)
    spread = (f"The verdict (never / some / all escaped) differs between batch sizes at {differ} of the {pairs} "
              f"(depth, init std) pairs: that part of the escape is outside the theory." if pairs else
              "This sweep has one batch size, so it cannot show how much the batch matters.")
    out += ["", theory_answer(comparison), "",
            f"Batch size is not in χ: ∏χ is the same at every batch size of a (depth, init std), and the "
            f"gradient ratio depends on the batch only through the minibatch-noise term. {spread}", "",
            "| depth | init std | mean χ (hidden layers) | log10 ∏χ | log10 grad ratio (batch: value) |",
            "|---|---|---|---|---|"]
    seen: dict = {}
    for t, p in zip(table, predicted):
        seen.setdefault((t["depth"], t["init_std"]), [p, []])[1].append(f"{t['batch_size']}: {p['log10_grad_ratio']:.2f}")
    for (depth, std), (p, ratios) in seen.items():
        out.append(f"| {depth} | {value_text(std)} | {np.mean(p['chi']):.3f} | {p['log10_chi_product']:.2f} | "
                   f"{', '.join(ratios)} |")
    if ctx["figures"]:
        out += ["", "![escape vs the prediction](escape_vs_chi.png)"]
    return out + [""]


def timing_markdown(summary: dict) -> list[str]:
    rows = member_epoch_seconds(summary)
    if not rows:
        return ["## Time per member-epoch", "", "Not recorded: an interrupted sweep keeps its members' metrics "
                "(its chunks), not the programs' wall times.", ""]
    out = ["## Time per member-epoch", "",
           f"From the sweep's `summary.json` on {device_text(summary.get('device'))}: wall seconds per member-epoch "
           f"after the first chunk's first (compiling) epoch (with worker processes: the whole machine's "
           f"throughput; after a `--resume`: the chunks trained by the last process only).", "",
           "| depth | batch | members | workers | first epoch (s) | s per member-epoch |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['depth']} | {r['batch_size']} | {r['members']} | {r['workers']} | "
                   f"{_f(r['first_epoch_s'], '.1f')} | {_f(r['seconds_per_member_epoch'], '.3f')} |")
    return out + [""]


def render(ctx: dict) -> str:
    lines = header(ctx) + definition_text(ctx) + ["## Escape probability per setting", ""]
    lines += escape_markdown(ctx["table"]) + [""]
    if ctx["figures"]:
        lines += ["![fraction of seeds escaped by epoch](escape_curves.png)", "",
                  "Fraction of seeds escaped by each epoch (`curves.csv`): a panel per batch size, colour = depth, "
                  "line style = init std.", ""]
    lines += robustness_markdown(ctx["robust"], len(ctx["table"])) + theory_markdown(ctx)
    lines += steps_markdown(ctx, ctx["figures"])
    return "\n".join(lines + timing_markdown(ctx["summary"]))


def csv_rows(table: list[dict], predicted: list[dict] | None) -> list[dict]:
    """escape.csv: the table with the predictions (empty without them) and the escape in steps."""
    out = []
    for i, t in enumerate(table):
        spe = steps_per_epoch(t["batch_size"])
        out.append({**{k: v for k, v in t.items()},
                    "log10_chi_product": None if predicted is None else predicted[i]["log10_chi_product"],
                    "log10_grad_ratio": None if predicted is None else predicted[i]["log10_grad_ratio"],
                    "steps_per_epoch": spe,
                    "survival_median_steps": None if t["survival_median"] is None else t["survival_median"] * spe})
    return out


def load_escape_sweep(sweep_dir: Path) -> tuple[dict, dict, dict, dict, list[str]]:
    """(config, summary, members, history, programs not finished) of a finished sweep, or of the
    finished programs of an interrupted one (its chunks; the summary then computed from them)."""
    try:
        config, summary = load_sweep(sweep_dir)
    except ValueError as e:
        try:
            config, summary = read_json(sweep_dir / "config.json"), read_json(sweep_dir / "summary.json")
        except (OSError, ValueError):
            raise e from None
        if not isinstance(summary, dict) or summary.get("status") != "interrupted" or "sweep" not in config:
            raise
        settings, members, history, missing = finished_part(sweep_dir, config)
        summary = {**summary, "settings": summarize(settings, members, history), "members": len(members["seed"]),
                   "epochs": int(config["sweep"]["epochs"]), "runs": []}
        return config, summary, members, history, missing
    members, history = read_metrics(sweep_dir)
    return config, summary, members, history, []


def write_escape_report(sweep_dir, out, arrays=None, per_class: int = 3, figures: bool = True,
                        command: str | None = None) -> Path:
    """report.md, escape.csv, curves.csv, escape_curves.png and escape_vs_chi.png in ``out`` from the
    finished sweep in ``sweep_dir``; ``arrays`` (the data, for the theory's sample) None: no theory.
    ValueError or FileNotFoundError naming the problem when the sweep cannot be read."""
    sweep_dir, out = Path(sweep_dir), Path(out)
    config, summary, members, history, missing = load_escape_sweep(sweep_dir)
    settings, val = summary["settings"], history["val_accuracy"]
    if sorted(set(members["setting"].tolist())) != list(range(len(settings))):
        raise ValueError(f"{sweep_dir}: metrics.csv and summary.json do not hold the same settings")
    table = escape_table(settings, members, val)
    predicted = None if arrays is None else theory_rows(settings, np.asarray(arrays.x_train),
                                                        np.asarray(arrays.y_train), per_class)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "escape.csv", history_csv(csv_rows(table, predicted)))
    curves = curve_rows(settings, members, val)
    atomic_write_text(out / "curves.csv", history_csv(curves))
    steps = None if predicted is None else steps_context(settings, members, val, predicted, out)
    if figures:
        escape_figures.plot_escape_curves(table, curves, out / "escape_curves.png")
        if predicted is not None:
            escape_figures.plot_escape_vs_prediction(table, predicted, out / "escape_vs_chi.png")
        if steps is not None and steps["law"] is not None:
            outs = [r for _, rows in steps["predictions"] for r in rows]
            escape_figures.plot_step_law(steps["rows"], steps["law"], steps["boot"], out / "escape_steps.png", outs)
    ctx = {"config": config, "summary": summary, "table": table, "predicted": predicted, "figures": figures,
           "comparison": None if predicted is None else theory_comparison(table, predicted),
           "robust": robustness(settings, members, val), "sweep_dir": sweep_dir, "epochs": val.shape[1],
           "members": len(members["seed"]), "per_class": per_class, "missing": missing, "steps": steps,
           "command": command or f"python -m experiments.escape report {sweep_dir} --out {out}"}
    atomic_write_text(out / "report.md", render(ctx) + "\n")
    return out / "report.md"


# ----------------------------------------------------------------------------- escape in SGD steps
# docs/escape.md "Escape in SGD steps": the survival median counted in optimizer steps, the law
# log10(steps) = a log10(predicted ratio) + b over the escaped settings, its bootstrap over seeds,
# the baselines it is ranked against, and the predictions it makes for settings not yet run.

TRAIN_IMAGES = 60000  # Fashion-MNIST's training split: an epoch is ceil(60000 / batch) steps
BASE_LR = 0.01  # baseline_7's SGD learning rate (vgjax.config), the lr the law is fitted at
BOOTSTRAP_DRAWS, BOOTSTRAP_SEED = 2000, 0


def steps_per_epoch(batch_size: int, train_images: int = TRAIN_IMAGES) -> int:
    """SGD steps of one epoch: the last, partial batch is a step too."""
    return math.ceil(int(train_images) / int(batch_size))


def fit_law(x, y) -> dict:
    """Least squares y = a x + b: slope a, intercept b, R², n and the residual std."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3 or np.ptp(x) == 0:
        raise ValueError(f"a line needs 3 or more points with distinct x, got {x.size}")
    a, b = np.polyfit(x, y, 1)
    resid = y - (a * x + b)
    ss = float(np.sum((y - y.mean()) ** 2))
    return {"a": float(a), "b": float(b), "r2": 1.0 - float(np.sum(resid ** 2)) / ss if ss > 0 else math.nan,
            "n": int(x.size), "resid_std": float(np.std(resid, ddof=2)) if x.size > 2 else math.nan}


def textbook_log10(depth: int, init_std: float, width: int = 128) -> float:
    """log10 of the textbook bound (max sigmoid' · std · sqrt(width))^depth = (0.25 std sqrt(width))^depth."""
    return depth * math.log10(0.25 * init_std * math.sqrt(width))


def step_rows(settings: list[dict], members: dict, val_accuracy: np.ndarray, predicted: list[dict],
              train_images: int = TRAIN_IMAGES) -> list[dict]:
    """Per setting: steps per epoch, the escape time in steps (the survival median × steps per
    epoch; None when fewer than half the seeds escaped), the step budget of the run, and the three
    predictors (log10 of the gradient ratio, of ∏χ and of the textbook bound)."""
    table = escape_table(settings, members, val_accuracy)
    out = []
    for t, s, p in zip(table, settings, predicted):
        spe = steps_per_epoch(t["batch_size"], train_images)
        med = t["survival_median"]
        out.append({**{c: t[c] for c in COLUMNS}, "lr": float(s.get("lr") or BASE_LR), "seeds": t["seeds"],
                    "escaped": t["escaped"], "steps_per_epoch": spe, "epochs": t["epochs"],
                    "survival_median": med, "escape_steps": None if med is None else med * spe,
                    "budget_steps": t["epochs"] * spe, "log10_grad_ratio": p["log10_grad_ratio"],
                    "log10_chi_product": p["log10_chi_product"],
                    "log10_textbook": textbook_log10(t["depth"], t["init_std"], int(s.get("width") or 128))})
    return out


def law_of(rows: list[dict]) -> dict:
    """The step law fitted over the settings that escaped (a survival median exists)."""
    esc = [r for r in rows if r["escape_steps"] is not None]
    return fit_law([r["log10_grad_ratio"] for r in esc], [math.log10(r["escape_steps"]) for r in esc])


def median_of_resamples(epochs: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Survival medians of resampled seeds: ``epochs`` (escape epochs, 0 never), ``draws`` (B × n
    indices into them); the ceil(n/2)-th smallest escape epoch, 0 where fewer than half escaped."""
    e = np.where(epochs > 0, epochs, np.iinfo(np.int64).max).astype(np.int64)[draws]
    k = math.ceil(draws.shape[1] / 2) - 1
    med = np.sort(e, axis=1)[:, k]
    return np.where(med == np.iinfo(np.int64).max, 0, med)


def bootstrap_law(settings: list[dict], members: dict, val_accuracy: np.ndarray, rows: list[dict],
                  draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> dict:
    """The law's uncertainty: resample the seeds of every setting (with replacement, within the
    setting), recompute each survival median in steps, refit over the settings whose resampled
    median exists; percentile 95 % intervals of a and b. Deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    ep = escape_epochs(val_accuracy)
    meds = []
    for i, r in enumerate(rows):
        e = ep[_rows_of(members, i)]
        meds.append(median_of_resamples(e, rng.integers(0, e.size, size=(draws, e.size))) * r["steps_per_epoch"])
    meds = np.array(meds, float)  # settings × draws
    x = np.array([r["log10_grad_ratio"] for r in rows])
    a, b = [], []
    for j in range(draws):
        ok = meds[:, j] > 0
        if ok.sum() >= 3 and np.ptp(x[ok]) > 0:
            sa, sb = np.polyfit(x[ok], np.log10(meds[ok, j]), 1)
            a.append(sa)
            b.append(sb)
    a, b = np.array(a), np.array(b)
    return {"draws": draws, "fits": int(a.size), "seed": seed,
            "a_ci": (float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))),
            "b_ci": (float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))),
            "a_draws": a, "b_draws": b}


def censored_steps(rows: list[dict]) -> list[float]:
    """Escape time in steps for ranking: a setting that did not escape ranks after every escape seen."""
    last = max((r["escape_steps"] for r in rows if r["escape_steps"] is not None), default=0)
    return [r["escape_steps"] if r["escape_steps"] is not None else last + 1 + r["budget_steps"] for r in rows]


PREDICTORS = (("log10_grad_ratio", "mean-field gradient ratio (layer 1 / output)"),
              ("log10_chi_product", "∏χ (mean field)"),
              ("log10_textbook", "textbook bound (0.25·std·√width)^depth"))


def baselines(rows: list[dict]) -> list[dict]:
    """Each predictor against the escape time: Spearman ρ with the time in steps and in epochs
    (censored settings last, docs/escape.md) over all settings, and the R² of its own log–log line
    in steps over the escaped settings."""
    steps = censored_steps(rows)
    epochs = [r["survival_median"] if r["survival_median"] is not None else r["epochs"] + 1 for r in rows]
    esc = [r for r in rows if r["escape_steps"] is not None]
    out = []
    for key, name in PREDICTORS:
        x = [r[key] for r in rows]
        fit = fit_law([r[key] for r in esc], [math.log10(r["escape_steps"]) for r in esc]) if len(esc) >= 3 else None
        out.append({"predictor": key, "name": name, "rho_steps": spearman(x, steps),
                    "rho_epochs": spearman(x, epochs), "r2_steps": None if fit is None else fit["r2"]})
    return out


def predict_steps(law: dict, log10_ratio: float, lr: float = BASE_LR) -> float:
    """Steps to escape the law predicts at ``lr``: 10^(a x + b) × BASE_LR / lr (steps × lr is
    invariant while the updates are small: SGD follows the gradient flow in time lr × steps)."""
    return 10.0 ** (law["a"] * log10_ratio + law["b"]) * BASE_LR / lr


def censored_check(rows: list[dict], law: dict) -> list[dict]:
    """The settings that did not escape: the law's predicted steps against the run's step budget."""
    out = []
    for r in rows:
        if r["escape_steps"] is None:
            pred = predict_steps(law, r["log10_grad_ratio"], r["lr"])
            out.append({**r, "predicted_steps": pred, "beyond_budget": pred > r["budget_steps"]})
    return out


# ----------------------------------------------------------------------------- dated predictions
# Settings absent from the committed H200 grid (batch 32; depth 7 at batch 512) and learning-rate
# checks cheap enough for a CPU (batch 512, a larger lr brings the predicted escape within tens of
# epochs), each (batch size, depths, init stds, lrs).
PREDICTION_GRID = ((32, (5, 6, 7), (0.05, 0.1), (0.01,)),
                   (512, (7,), (0.05, 0.1, 0.2), (0.01,)),
                   (512, (4,), (0.05,), (0.1,)),
                   (512, (5,), (0.1,), (0.1,)),
                   (512, (6,), (0.1,), (0.3,)),
                   (512, (7,), (0.2,), (0.1,)))
PREDICTION_EPOCHS = FULL_EPOCHS  # "not in 300 epochs" beyond it
HIT_DECADES = 2  # a hit: |log10 measured - log10 predicted| <= HIT_DECADES x the fit's residual std
PREDICTION_FIELDS = ("made", "depth", "batch_size", "init_std", "lr", "log10_grad_ratio", "steps_per_epoch",
                     "predicted_steps", "band_low_steps", "band_high_steps", "hit_within_decades",
                     "predicted_epoch", "prediction")


def prediction_settings(grid=PREDICTION_GRID) -> list[dict]:
    return [{"method": "baseline_7", "depth": d, "batch_size": b, "init_std": s, "lr": lr}
            for b, depths, stds, lrs in grid for d in depths for s in stds for lr in lrs]


def predictions(law: dict, boot: dict, settings: list[dict], predicted: list[dict], made: str) -> list[dict]:
    """One row per setting: the law's steps to escape at its lr, the 95 % band of the bootstrapped
    line, the hit tolerance (decades), the epoch it falls in and the verdict: "escape by epoch N"
    or "not in 300 epochs"."""
    a, b = np.asarray(boot["a_draws"]), np.asarray(boot["b_draws"])
    out = []
    for s, p in zip(settings, predicted):
        x, lr = p["log10_grad_ratio"], float(s["lr"])
        steps = predict_steps(law, x, lr)
        lo, hi = np.percentile(a * x + b, [2.5, 97.5]) + math.log10(BASE_LR / lr)
        spe = steps_per_epoch(s["batch_size"])
        epoch = math.ceil(steps / spe)
        out.append({"made": made, "depth": s["depth"], "batch_size": s["batch_size"], "init_std": s["init_std"],
                    "lr": lr, "log10_grad_ratio": x, "steps_per_epoch": spe, "predicted_steps": round(steps),
                    "band_low_steps": round(10.0 ** lo), "band_high_steps": round(10.0 ** hi),
                    "hit_within_decades": round(HIT_DECADES * law["resid_std"], 3), "predicted_epoch": epoch,
                    "prediction": f"escape by epoch {epoch}" if epoch <= PREDICTION_EPOCHS
                    else f"not in {PREDICTION_EPOCHS} epochs"})
    return out


def read_predictions(path) -> list[dict]:
    """A predictions_*.csv file as written by :func:`predictions` (ValueError when its columns differ)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or tuple(rows[0]) != PREDICTION_FIELDS:
        raise ValueError(f"{path}: not a predictions file (columns {', '.join(PREDICTION_FIELDS)})")
    ints = ("depth", "batch_size", "steps_per_epoch", "predicted_steps", "band_low_steps", "band_high_steps",
            "predicted_epoch")
    floats = ("init_std", "lr", "log10_grad_ratio", "hit_within_decades")
    return [{k: int(v) if k in ints else float(v) if k in floats else v for k, v in r.items()} for r in rows]


def outcomes(preds: list[dict], checks: list[tuple[str, list[dict], dict, np.ndarray]]) -> list[dict]:
    """Each prediction against the check runs (name, settings, members, val accuracy) that trained
    its setting: measured steps to escape (survival median × steps per epoch) within the run's
    epochs, and the verdict hit / miss / not run. A prediction of "not in 300 epochs" checked by a
    shorter run is a hit while nothing escaped, a miss once half the seeds did."""
    out = []
    for p in preds:
        found = None
        for name, settings, members, val in checks:
            for i, s in enumerate(settings):
                if (s["depth"], s["batch_size"]) == (p["depth"], p["batch_size"]) and \
                        math.isclose(s["init_std"], p["init_std"]) and math.isclose(float(s.get("lr") or BASE_LR), p["lr"]):
                    t = escape_table([s], {"setting": np.zeros(len(_rows_of(members, i)), int)},
                                     val[_rows_of(members, i)])[0]
                    found = (name, t)
        row = {**p, "run": None, "seeds": None, "escaped": None, "run_epochs": None, "measured_epoch": None,
               "measured_steps": None, "error_decades": None, "outcome": "not run"}
        if found:
            name, t = found
            med = t["survival_median"]
            row.update(run=name, seeds=t["seeds"], escaped=t["escaped"], run_epochs=t["epochs"], measured_epoch=med,
                       measured_steps=None if med is None else med * p["steps_per_epoch"])
            if med is not None:
                row["error_decades"] = math.log10(row["measured_steps"] / p["predicted_steps"])
                row["outcome"] = "hit" if abs(row["error_decades"]) <= p["hit_within_decades"] else "miss"
            elif p["predicted_epoch"] > t["epochs"]:
                row["outcome"] = "hit (no escape, as predicted)" if p["predicted_epoch"] > PREDICTION_EPOCHS \
                    else "consistent (run shorter than the predicted escape)"
            else:
                row["outcome"] = "miss (no median escape within the run)"
        out.append(row)
    return out


def fitted_law(sweep_dir, arrays, per_class: int = 3) -> tuple[dict, dict]:
    """(law, bootstrap) of a sweep directory: the step law over its escaped settings."""
    config, summary, members, history, _ = load_escape_sweep(Path(sweep_dir))
    settings, val = summary["settings"], history["val_accuracy"]
    predicted = theory_rows(settings, np.asarray(arrays.x_train), np.asarray(arrays.y_train), per_class)
    rows = step_rows(settings, members, val, predicted)
    return law_of(rows), bootstrap_law(settings, members, val, rows)


# ----------------------------------------------------------------------------- the report's step part

CHECK_GLOB = "check_*"  # beside the report: check_<date>/<run>/ sweeps of the dated predictions


def load_checks(out: Path) -> list[tuple[str, list[dict], dict, np.ndarray]]:
    """The finished check sweeps committed beside the report (``check_*/<run>/``)."""
    checks = []
    for d in sorted(out.glob(f"{CHECK_GLOB}/*")):
        if (d / "config.json").is_file():
            _, summary, members, history, _ = load_escape_sweep(d)
            checks.append((f"{d.parent.name}/{d.name}", summary["settings"], members, history["val_accuracy"]))
    return checks


def steps_context(settings, members, val, predicted, out: Path) -> dict:
    rows = step_rows(settings, members, val, predicted)
    esc = [r for r in rows if r["escape_steps"] is not None]
    if len(esc) < 3:
        return {"rows": rows, "law": None}
    law = law_of(rows)
    ctx = {"rows": rows, "law": law, "boot": bootstrap_law(settings, members, val, rows),
           "baselines": baselines(rows), "censored": censored_check(rows, law), "predictions": []}
    checks = load_checks(out)
    for path in sorted(out.glob("predictions_*.csv")):
        ctx["predictions"].append((path.name, outcomes(read_predictions(path), checks)))
    return ctx


def _steps_text(v) -> str:
    return "–" if v is None else f"{v:,.0f}"


def steps_markdown(ctx: dict, figures: bool) -> list[str]:
    st = ctx.get("steps")
    out = ["## Escape in SGD steps", ""]
    if st is None:
        return out + ["Not computed (`--no-theory`: the law needs the prediction).", ""]
    if st["law"] is None:
        return out + ["Fewer than 3 settings escaped: no line can be fitted.", ""]
    rows, law, boot = st["rows"], st["law"], st["boot"]
    spe = sorted({(r["batch_size"], r["steps_per_epoch"]) for r in rows})
    out += [f"Time counted in optimizer steps: an epoch is ceil(60,000 / batch) steps "
            f"({', '.join(f'{s} at batch {b}' for b, s in spe)}), and the escape time is the survival median "
            f"× steps per epoch. Over the {law['n']} settings that escaped (at least half the seeds), least squares "
            f"on log10(steps) against log10(predicted gradient ratio):", "",
            f"**log10(steps to escape) = {law['a']:.3f} · log10(ratio) + {law['b']:.3f}**, R² = {law['r2']:.3f}, "
            f"residual std {law['resid_std']:.3f} decades (n = {law['n']} settings, {rows[0]['seeds']} seeds and "
            f"{rows[0]['epochs']} epochs each).", "",
            f"Bootstrap over seeds ({boot['draws']} draws, numpy seed {boot['seed']}: every setting's seeds "
            f"resampled with replacement, its survival median recomputed, the line refitted over the settings whose "
            f"median exists; {boot['fits']} fits): slope a 95 % interval [{boot['a_ci'][0]:.3f}, {boot['a_ci'][1]:.3f}], "
            f"intercept b [{boot['b_ci'][0]:.3f}, {boot['b_ci'][1]:.3f}]. The survival median is an order statistic "
            f"of 16 integer epochs, so the resampled medians are discrete and the interval need not be centred on "
            f"the point estimate; it measures seed noise only, not the scatter of the settings about the line "
            f"(the residual std).", "",
            "| predictor | ρ(predictor, time in steps) | ρ(predictor, time in epochs) | R² of its log–log line in steps |",
            "|---|---|---|---|"]
    for b in st["baselines"]:
        out.append(f"| {b['name']} | {_rho(b['rho_steps'])} | {_rho(b['rho_epochs'])} | {_f(b['r2_steps'], '.3f')} |")
    out += ["", f"Spearman ρ over all {len(rows)} settings (a setting that did not escape ranks after every escape "
                f"seen); the textbook bound is (max σ' · std · √width)^depth = (0.25 · std · √128)^depth, which "
                f"ignores the input scale, the fixed point of the forward signal and the output layer.", ""]
    cens = st["censored"]
    if cens:
        beyond = sum(c["beyond_budget"] for c in cens)
        out += [f"The {len(cens)} settings where fewer than half the seeds escaped, against the law: "
                f"{beyond} of {len(cens)} have a predicted escape beyond their step budget.", "",
                "| depth | batch | init std | seeds escaped | step budget | law's steps to escape |", "|---|---|---|---|---|---|"]
        for c in cens:
            out.append(f"| {c['depth']} | {c['batch_size']} | {value_text(c['init_std'])} | {c['escaped']}/{c['seeds']} | "
                       f"{_steps_text(c['budget_steps'])} | {_steps_text(c['predicted_steps'])} |")
        out.append("")
    if figures:
        out += ["![steps to escape against the prediction](escape_steps.png)", "",
                "Measured steps (survival median) against the predicted ratio, log–log: the fitted line and the "
                "95 % band of its bootstrap; open triangles: settings without a median escape, drawn at their "
                "step budget (a lower bound).", ""]
    for name, rows_p in st["predictions"]:
        out += predictions_markdown(name, rows_p)
    return out


def predictions_markdown(name: str, rows: list[dict]) -> list[str]:
    made = rows[0]["made"]
    hits = sum(r["outcome"].startswith("hit") for r in rows)
    run = sum(r["outcome"] != "not run" for r in rows)
    out = [f"### Predictions made on {made}, before the run (`{name}`)", "",
           f"Written by `python -m experiments.escape predict SWEEP --made {made} --out {name}` from the law above "
           f"and committed before any of its settings was trained. The law at another learning rate: steps × lr is "
           f"invariant (docs/escape.md). A hit: the measured steps within ±{rows[0]['hit_within_decades']:g} decades "
           f"(twice the fit's residual std) of the prediction; for \"not in 300 epochs\", no median escape in the run. "
           f"{run} of {len(rows)} predictions run so far, {hits} hits.", "",
           "| depth | batch | init std | lr | predicted steps [band] | prediction | run | seeds escaped / run epochs "
           "| measured epoch | measured steps | error (decades) | outcome |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['depth']} | {r['batch_size']} | {value_text(r['init_std'])} | {value_text(r['lr'])} | "
                   f"{_steps_text(r['predicted_steps'])} [{_steps_text(r['band_low_steps'])}, "
                   f"{_steps_text(r['band_high_steps'])}] | {r['prediction']} | {r['run'] or '–'} | "
                   + (f"{r['escaped']}/{r['seeds']} in {r['run_epochs']}" if r["run"] else "–") + " | "
                   f"{_f(r['measured_epoch'], 'd')} | {_steps_text(r['measured_steps'])} | "
                   f"{_f(r['error_decades'], '+.2f')} | {r['outcome']} |")
    return out + [""]
