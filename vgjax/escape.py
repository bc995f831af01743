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
:mod:`vgjax.escape_figures`), every number generated from the sweep's files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from vgjax import escape_figures, theory
from vgjax.methods import get_config
from vgjax.runlog import atomic_write_text, history_csv, read_json
from vgjax.runtime import device_text
from vgjax.sweep.stats import PLATEAU_ACCURACY, first_epoch, summarize
from vgjax.sweep_files import finished_part, read_metrics
from vgjax.sweep_report import _command as sweep_command
from vgjax.sweep_report import load_sweep
from vgjax.sweep_settings import DISCRETE, value_text

THRESHOLD = PLATEAU_ACCURACY  # 0.2, twice chance (0.1): the reference definition
THRESHOLDS = (0.15, 0.2, 0.3)  # the robustness check
RULES = {"staying": True, "first crossing": False}
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
COLUMNS = ("method", "depth", "batch_size", "init_std")  # the columns a setting is shown by
# the study's budget (issue #19, docs/escape.md "Commands"): experiments.escape's defaults
FULL_GRID = {"depth": [3, 4, 5, 6, 7], "batch_size": [32, 128, 512], "init_std": [0.05, 0.1, 0.2]}
FULL_SEEDS, FULL_EPOCHS = 16, 300


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
    """Per setting, the prediction at initialisation (vgjax.theory, docs/escape.md "Theory"):
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
    out += [f"Per setting, `vgjax.theory` predicts at initialisation (mean field, {ctx['per_class']} examples "
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
    return "\n".join(lines + timing_markdown(ctx["summary"]))


def csv_rows(table: list[dict], predicted: list[dict] | None) -> list[dict]:
    """escape.csv: the table with the predictions (empty without them)."""
    return [{**{k: v for k, v in t.items()},
             "log10_chi_product": None if predicted is None else predicted[i]["log10_chi_product"],
             "log10_grad_ratio": None if predicted is None else predicted[i]["log10_grad_ratio"]}
            for i, t in enumerate(table)]


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
    if figures:
        escape_figures.plot_escape_curves(table, curves, out / "escape_curves.png")
        if predicted is not None:
            escape_figures.plot_escape_vs_prediction(table, predicted, out / "escape_vs_chi.png")
    ctx = {"config": config, "summary": summary, "table": table, "predicted": predicted, "figures": figures,
           "comparison": None if predicted is None else theory_comparison(table, predicted),
           "robust": robustness(settings, members, val), "sweep_dir": sweep_dir, "epochs": val.shape[1],
           "members": len(members["seed"]), "per_class": per_class, "missing": missing,
           "command": command or f"python -m experiments.escape report {sweep_dir} --out {out}"}
    atomic_write_text(out / "report.md", render(ctx) + "\n")
    return out / "report.md"
