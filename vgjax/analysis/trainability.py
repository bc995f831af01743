"""The trainability map (docs/escape.md "Trainability map"): which (depth, init std) of an MLP
leaves the chance plateau within a small budget, against the mean-field depth scale.

Theory (vgjax.analysis.theory, Schoenholz et al. 2017): at the fixed point q* of the forward map, the
backward gain per layer is chi*(std), critical at chi* = 1; the correlation depth scale is
xi_c = 1 / |ln chi_c|, chi_c the slope of the correlation map at its stable fixed point c* (= chi*
in the ordered phase, where c* = 1), infinite at the critical std, and a network is predicted
trainable up to about ``DEPTH_FACTOR`` · xi_c layers. Measured: a member is trainable when its validation accuracy at the last epoch exceeds
``THRESHOLD``; a setting is trainable when at least half its seeds are. Pure numpy on a sweep's
member × epoch arrays; the report (markdown, csv, figure) is generated from the committed sweeps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vgjax.analysis import grids, theory
from vgjax.run.rundir import history_csv
from vgjax.files import atomic_write_text
from vgjax.runtime import device_text
from vgjax.sweep.settings import value_text

THRESHOLD = 0.2  # twice chance: off the plateau
DEPTH_FACTOR = 6.0  # Schoenholz et al. 2017: trainable up to ~6 xi
WIDTH = 128
# the map's budget (vgjax.analysis.grids)
STDS, GRID, BETA, SEEDS, EPOCHS, TRAIN_LIMIT, BATCH, LR = (
    grids.MAP_STDS, grids.MAP_GRID, grids.MAP_BETA, grids.MAP_SEEDS, grids.MAP_EPOCHS, grids.MAP_TRAIN_LIMIT,
    grids.MAP_BATCH, grids.MAP_LR)


def correlation_chi(act: theory.Act, std: float, width: int = WIDTH, iters: int = 400) -> tuple[float, float]:
    """(c*, chi_c): the stable fixed point c* = K*/q* of the correlation map of two inputs at the
    forward fixed point q* (iterated from K = 0), and chi_c = s² n E[phi'(u) phi'(u')] there — the
    slope that sets the correlation depth scale (Schoenholz et al. 2017). In the ordered phase
    c* = 1 and chi_c = chi*; in the chaotic phase c* < 1 and chi_c < 1 although chi* > 1."""
    s2n = std * std * width
    q = min(max(theory.fixed_point_q(act, s2n), 1e-24), 1e16)
    k = 0.0
    for _ in range(iters):
        nk = min(float(s2n * theory.pair_moments(act, q, q, k)[0][0]), q)
        done = abs(nk - k) <= 1e-12 * q
        k = nk
        if done:
            break
    return k / q, float(s2n * theory.pair_moments(act, q, q, k)[1][0])


def depth_scale(activation: str, std: float, beta: float = BETA, width: int = WIDTH) -> float:
    """xi_c = 1 / |ln chi_c(std)| (inf at chi_c = 1)."""
    chi = correlation_chi(theory.activation(activation, beta), std, width)[1]
    return math.inf if chi == 1.0 else 1.0 / abs(math.log(chi))


def overlay(activation: str, stds, beta: float = BETA, width: int = WIDTH) -> dict:
    """The theory drawn over the map, per std: chi* (the gradient's gain at q*), c* and chi_c, the
    depth scale xi_c = 1/|ln chi_c| and the predicted trainable depth DEPTH_FACTOR · xi_c; and the
    critical stds (chi* = 1)."""
    act = theory.activation(activation, beta)
    chi = [theory.chi_star(act, s, width) for s in stds]
    corr = [correlation_chi(act, s, width) for s in stds]
    chi_c = [c for _, c in corr]
    xi = [math.inf if c == 1.0 else 1.0 / abs(math.log(c)) for c in chi_c]
    return {"activation": activation, "beta": beta if activation.startswith("sigmoid_") else None,
            "stds": list(stds), "chi_star": chi, "c_star": [c for c, _ in corr], "chi_c": chi_c, "xi": xi,
            "predicted_depth": [DEPTH_FACTOR * x for x in xi],
            "critical_stds": theory.critical_stds(activation, width, beta)}


def map_rows(settings: list[dict], members: dict, val_accuracy: np.ndarray, threshold: float = THRESHOLD) -> list[dict]:
    """Per setting: seeds, trainable seeds (last-epoch val accuracy > threshold), the mean of that
    accuracy, and trainable (at least half the seeds)."""
    last = np.asarray(val_accuracy, float)[:, -1]
    out = []
    for i, s in enumerate(settings):
        v = last[np.asarray(members["setting"]) == i]
        k = int(np.sum(v > threshold))  # NaN (diverged) is not above
        out.append({"activation": s.get("activation") or "sigmoid", "beta": s.get("beta"), "depth": int(s["depth"]),
                    "init_std": float(s["init_std"]), "seeds": int(v.size), "trainable_seeds": k,
                    "mean_val_accuracy": float(np.nanmean(v)) if np.isfinite(v).any() else math.nan,
                    "trainable": 2 * k >= v.size and v.size > 0})
    return out


def measured_depth(rows: list[dict], std: float) -> int:
    """The largest depth of the grid up to which every depth is trainable at ``std`` (0: none)."""
    best = 0
    for r in sorted((r for r in rows if math.isclose(r["init_std"], std)), key=lambda r: r["depth"]):
        if not r["trainable"]:
            break
        best = r["depth"]
    return best


def comparison(rows: list[dict], over: dict) -> list[dict]:
    """Per std: measured trainable depth against the predicted DEPTH_FACTOR · xi (capped at the
    grid's largest depth for the agreement check): agree when both are on the same side of every
    depth of the grid."""
    depths = sorted({r["depth"] for r in rows})
    out = []
    for s, chi, c, chi_c, xi, pred in zip(over["stds"], over["chi_star"], over["c_star"], over["chi_c"], over["xi"],
                                          over["predicted_depth"]):
        m = measured_depth(rows, s)
        predicted_grid = max([d for d in depths if d <= pred], default=0)
        out.append({"init_std": s, "chi_star": chi, "c_star": c, "chi_c": chi_c, "xi": xi, "predicted_depth": pred,
                    "predicted_grid_depth": predicted_grid, "measured_depth": m, "agree": predicted_grid == m})
    return out


def _depth(v: float) -> str:
    return "∞" if math.isinf(v) else f"{v:.1f}"


def markdown(per_act: list[tuple[dict, list[dict], list[dict]]], budget: str, command: str) -> list[str]:
    out = ["# Trainability map", "", f"Generated by `{command}` from the sweeps committed beside it. {budget}", "",
           f"Trainable: last-epoch validation accuracy above {THRESHOLD:g} (off the chance plateau) for at least half "
           f"the seeds. Theory (`vgjax.analysis.theory`, width {WIDTH}): χ* (the gradient's gain per layer at the forward "
           f"fixed point; the critical std is χ* = 1), c* and χ_c (the correlation map's stable fixed point and its "
           f"slope there; c* = 1 and χ_c = χ* in the ordered phase), depth scale ξ = 1/|ln χ_c|, predicted "
           f"trainable depth {DEPTH_FACTOR:g}ξ (Schoenholz et al. 2017). A χ* > 1 with c* = 0 and no finite forward "
           f"fixed point (the unbounded β-sigmoid at large std) is an exploding signal: ξ is then its growth scale. \"Measured depth\": "
           f"the largest depth of the grid up to which every depth is trainable; \"predicted (grid)\": the largest "
           f"depth of the grid ≤ {DEPTH_FACTOR:g}ξ.", "", "![trainability map](trainability.png)", ""]
    for over, rows, comp in per_act:
        name = over["activation"] + (f" (β = {value_text(over['beta'])})" if over["beta"] is not None else "")
        crit = ", ".join(f"{c:.3f}" for c in over["critical_stds"]) or "none"
        agree = sum(c["agree"] for c in comp)
        out += [f"## {name}", "", f"Critical init std (χ* = 1): {crit}. Measured and predicted trainable depth agree "
                f"(on the grid) at {agree} of {len(comp)} init stds.", "",
                "| init std | χ* | c* | χ_c | ξ | predicted depth 6ξ | predicted (grid) | measured depth | trainable seeds per depth |",
                "|---|---|---|---|---|---|---|---|---|"]
        depths = sorted({r["depth"] for r in rows})
        for c in comp:
            cells = []
            for d in depths:
                r = next(r for r in rows if r["depth"] == d and math.isclose(r["init_std"], c["init_std"]))
                cells.append(f"{d}: {r['trainable_seeds']}/{r['seeds']}")
            out.append(f"| {value_text(c['init_std'])} | {c['chi_star']:.3g} | {c['c_star']:.3f} | {c['chi_c']:.3g} | "
                       f"{_depth(c['xi'])} | "
                       f"{_depth(c['predicted_depth'])} | {c['predicted_grid_depth']} | {c['measured_depth']} | "
                       f"{', '.join(cells)} |")
        out.append("")
    return out


def plot(per_act, path: Path) -> Path:
    from vgjax.report.plots import new_figure, save_figure

    fig, axes = new_figure(len(per_act), 1, size=(4.4 * len(per_act) + 0.6, 3.9), sharey=True)
    top = max(r["depth"] for _, rows, _ in per_act for r in rows) + 2
    for ax, (over, rows, comp) in zip(axes[0], per_act):
        for r in rows:
            frac = r["trainable_seeds"] / max(r["seeds"], 1)
            ax.scatter([r["init_std"]], [r["depth"]], s=60, c=[[1 - frac, 0.2 + 0.6 * frac, 0.3]], marker="s")
        fine = np.geomspace(min(over["stds"]), max(over["stds"]), 60)
        pred = [DEPTH_FACTOR * depth_scale(over["activation"], s, over["beta"] or BETA) for s in fine]
        ax.plot(fine, np.minimum(pred, 1e3), color="k", lw=1.2, label="predicted 6ξ_c")
        ax.plot([c["init_std"] for c in comp], [c["measured_depth"] for c in comp], color="C0", lw=1.2,
                marker="o", ms=3, label="measured trainable depth")
        for c in over["critical_stds"]:
            ax.axvline(c, color="0.4", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(0, top)
        ax.set_xlabel("init std")
        name = over["activation"] + (f", β = {value_text(over['beta'])}" if over["beta"] is not None else "")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("depth (hidden layers)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle("trainable (green) / not (red) within the budget; dashed: critical std (χ* = 1)")
    return save_figure(fig, path)


def write_report(sweep_dirs: list[Path], out: Path, command: str, figures: bool = True) -> Path:
    """report.md, trainability.csv and trainability.png in ``out`` from the finished sweeps."""
    from vgjax.analysis.escape import load_escape_sweep

    per_act, csv_rows, budget = [], [], ""
    for d in sweep_dirs:
        config, summary, members, history, _ = load_escape_sweep(Path(d))
        rows = map_rows(summary["settings"], members, history["val_accuracy"])
        sw = config["sweep"]
        act = rows[0]["activation"]
        beta = rows[0]["beta"] if act.startswith("sigmoid_") else None
        over = overlay(act, sorted({r["init_std"] for r in rows}), beta if beta is not None else BETA)
        comp = comparison(rows, over)
        per_act.append((over, rows, comp))
        csv_rows += [{**r, "predicted_depth": next(c["predicted_depth"] for c in comp
                                                   if math.isclose(c["init_std"], r["init_std"]))} for r in rows]
        budget = (f"Budget per activation: {len(sw['seeds'])} seeds × {sw['epochs']} epochs, the first "
                  f"{sw.get('train_limit') or 60000:,} training images, SGD lr {value_text(sw['lr'][0]) if sw.get('lr') else 0.01}, "
                  f"batch {sw['batch_size'][0] if sw.get('batch_size') else 'default'}; validation = the 10,000 test images. "
                  f"Device: {device_text(summary.get('device'))}.")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "trainability.csv", history_csv(csv_rows))
    if figures:
        plot(per_act, out / "trainability.png")
    atomic_write_text(out / "report.md", "\n".join(markdown(per_act, budget, command)) + "\n")
    return out / "report.md"
