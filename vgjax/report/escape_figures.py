"""Figures of the plateau-escape study (docs/escape.md): the fraction of seeds escaped by epoch
(a panel per batch size, colour = depth, line style = init std) and the escape against the
mean-field prediction at initialisation.

Drawn from the rows :mod:`vgjax.analysis.escape` computes, with matplotlib's object API on the Agg canvas
(:func:`vgjax.report.plots.new_figure`: Figure objects, no pyplot state), written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from vgjax.report.plots import new_figure, save_figure

LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _palette(values: list) -> dict:
    cmap = colormaps["viridis"]
    return {v: cmap(i / max(len(values) - 1, 1) * 0.9) for i, v in enumerate(values)}


def _styles(values: list) -> dict:
    return {v: LINE_STYLES[i % len(LINE_STYLES)] for i, v in enumerate(values)}


def plot_escape_curves(table: list[dict], curves: list[dict], path: Path) -> Path:
    """Fraction of seeds escaped by each epoch, one step curve per setting, a panel per batch size."""
    batches = sorted({t["batch_size"] for t in table})
    depths, stds = sorted({t["depth"] for t in table}), sorted({t["init_std"] for t in table})
    color, style = _palette(depths), _styles(stds)
    fig, axes = new_figure(len(batches), 1, size=(4.6 * len(batches) + 1.6, 3.8), sharey=True)
    by_setting: dict = {}
    for c in curves:
        by_setting.setdefault(c["setting"], []).append((c["epoch"], c["fraction"]))
    for ax, b in zip(axes[0], batches):
        for t in (t for t in table if t["batch_size"] == b):
            e, f = np.array(sorted(by_setting[t["setting"]])).T
            ax.step(np.concatenate([[0], e]), np.concatenate([[0], f]), where="post", lw=1.5,
                    color=color[t["depth"]], ls=style[t["init_std"]])
        ax.set_title(f"batch size {b}")
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("fraction of seeds escaped")
    handles = ([Line2D([], [], color=color[d], lw=2, label=f"depth {d}") for d in depths]
               + [Line2D([], [], color="0.3", ls=style[s], label=f"init std {s:g}") for s in stds])
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.suptitle("left the chance plateau (val accuracy above the threshold from then on)")
    return save_figure(fig, path)


def plot_escape_vs_prediction(table: list[dict], predicted: list[dict], path: Path) -> Path:
    """Escape probability (95 % interval) and escape time against the predicted first-layer /
    output gradient ratio at initialisation: colour = batch size, marker = depth."""
    batches, depths = sorted({t["batch_size"] for t in table}), sorted({t["depth"] for t in table})
    color = {b: f"C{i}" for i, b in enumerate(batches)}
    marker = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(depths)}
    fig, axes = new_figure(2, 1, size=(11.5, 4.2))
    left, right = axes[0]
    for t, p in zip(table, predicted):
        x = 10.0 ** p["log10_grad_ratio"]
        kw = {"color": color[t["batch_size"]], "marker": marker[t["depth"]], "ms": 6}
        left.errorbar([x], [t["probability"]], yerr=[[t["probability"] - t["ci_low"]], [t["ci_high"] - t["probability"]]],
                      capsize=2, lw=0.8, **kw)
        censored = t["survival_median"] is None
        y = t["epochs"] + 1 if censored else t["survival_median"]
        right.plot([x], [y], ls="none", mfc="none" if censored else kw["color"], **kw)
    epochs = table[0]["epochs"]
    right.set_ylim(0, (epochs + 1) * 1.08)
    right.axhline(epochs + 1, color="0.6", ls=":", lw=1)
    right.annotate(f"no median by epoch {epochs}", (0.02, epochs + 1), xycoords=("axes fraction", "data"),
                   fontsize=7, color="0.4", va="bottom")
    for ax, ylabel in ((left, "P(escape) with 95 % interval"), (right, "escape time (survival median, epoch)")):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("predicted |grad layer 1| / |grad output| at init")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    left.set_ylim(-0.03, 1.03)
    handles = ([Line2D([], [], color=color[b], lw=0, marker="o", label=f"batch {b}") for b in batches]
               + [Line2D([], [], color="0.3", lw=0, marker=marker[d], label=f"depth {d}") for d in depths])
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.suptitle("plateau escape against the mean-field prediction at initialisation")
    return save_figure(fig, path)


def plot_step_law(rows: list[dict], law: dict, boot: dict, path: Path, outcomes: list[dict] | None = None) -> Path:
    """Measured steps to escape against the predicted gradient ratio (log–log): colour = batch
    size, marker = depth; a setting that never escaped is an open triangle at its step budget (a
    lower bound); the fitted law with the 95 % band of its seed bootstrap; ``outcomes`` (the dated
    predictions' runs) as crosses at their measured steps × lr / 0.01 (the steps at lr 0.01 that the
    invariance of steps × lr makes of them)."""
    batches, depths = sorted({r["batch_size"] for r in rows}), sorted({r["depth"] for r in rows})
    color = {b: f"C{i}" for i, b in enumerate(batches)}
    marker = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(depths)}
    fig, axes = new_figure(1, 1, size=(7.6, 5.0))
    ax = axes[0, 0]
    for r in rows:
        x = 10.0 ** r["log10_grad_ratio"]
        if r["escape_steps"] is not None:
            ax.plot([x], [r["escape_steps"]], ls="none", marker=marker[r["depth"]], color=color[r["batch_size"]], ms=6)
        else:
            ax.plot([x], [r["budget_steps"]], ls="none", marker="^", mfc="none", color=color[r["batch_size"]], ms=8)
            ax.annotate("", (x, r["budget_steps"] * 3), (x, r["budget_steps"]),
                        arrowprops={"arrowstyle": "->", "color": color[r["batch_size"]], "lw": 0.8})
    xs = np.array([r["log10_grad_ratio"] for r in rows])
    grid = np.linspace(xs.min() - 0.3, xs.max() + 0.3, 60)
    lines = np.asarray(boot["a_draws"])[:, None] * grid + np.asarray(boot["b_draws"])[:, None]
    lo, hi = np.percentile(lines, [2.5, 97.5], axis=0)
    ax.fill_between(10.0 ** grid, 10.0 ** lo, 10.0 ** hi, color="0.5", alpha=0.25, lw=0)
    ax.plot(10.0 ** grid, 10.0 ** (law["a"] * grid + law["b"]), color="0.2", lw=1.2)
    for o in outcomes or []:
        if o.get("measured_steps") is not None:
            ax.plot([10.0 ** o["log10_grad_ratio"]], [o["measured_steps"] * o["lr"] / 0.01], ls="none", marker="x",
                    color="k", ms=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted |grad layer 1| / |grad output| at init")
    ax.set_ylabel("SGD steps to escape (survival median)")
    ax.grid(alpha=0.3, which="both")
    handles = ([Line2D([], [], color=color[b], lw=0, marker="o", label=f"batch {b}") for b in batches]
               + [Line2D([], [], color="0.3", lw=0, marker=marker[d], label=f"depth {d}") for d in depths]
               + [Line2D([], [], color="0.3", lw=0, marker="^", mfc="none", label="never: step budget"),
                  Line2D([], [], color="0.2", lw=1.2,
                         label=f"log10 s = {law['a']:.2f} log10 r + {law['b']:.2f}")]
               + ([Line2D([], [], color="k", lw=0, marker="x", label="dated prediction's run (× lr/0.01)")]
                  if any(o.get("measured_steps") is not None for o in outcomes or []) else []))
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    fig.suptitle("plateau escape in SGD steps against the mean-field prediction")
    return save_figure(fig, path)
