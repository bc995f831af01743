"""Figures of the experiments' outputs: a sweep's curves and pivot, the theory check's profiles,
chi and trainability, the optimizer quadratic's paths.

Each is drawn from the numbers the experiment wrote (or returns), with matplotlib's object API on
the Agg canvas (:mod:`vgjax.report.plots`' figure helpers: Figure objects, no pyplot state) and written
atomically.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vgjax.optim import scratch
from vgjax.analysis import theory
from vgjax.report.plots import new_figure, run_colors, save_figure
from vgjax.files import atomic_write_bytes
from vgjax.sweep.settings import legend_columns, pivot, value_text
from vgjax.analysis.theory_check import ACTIVATIONS, CHI_ACTIVATIONS, critical


def _canvas_figure(**kw) -> Figure:
    """A Figure on the Agg canvas, without a layout engine (the caller lays it out)."""
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


# ----------------------------------------------------------------------------- a sweep

def plot_curves(path: Path, settings: list[dict], members: dict, curves, ylabel: str, title: str) -> None:
    """Mean curve per setting with a ±std band over seeds, saved atomically."""
    varying = legend_columns(settings)
    n = len(settings)
    fig = _canvas_figure(figsize=(10, 5) if n > 6 else (8, 5))
    ax = fig.subplots()
    # distinct colours while tab20 has enough, a gradient beyond
    colors = run_colors(n) if n <= 20 else [colormaps["viridis"](i / (n - 1)) for i in range(n)]
    epochs = np.arange(1, curves.shape[1] + 1)
    for i, s in enumerate(settings):
        rows = curves[members["setting"] == i]
        with warnings.catch_warnings():  # an epoch where every seed diverged: NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(rows, 0), np.nanstd(rows, 0)
        color = colors[i]
        label = ", ".join(str(s[k]) if k == "method" else f"{k}={s[k]}" for k in varying) or s["method"]
        ax.plot(epochs, mean, marker="o" if len(epochs) < 15 else None, color=color,
                label=f"{label} (n={len(rows)})")
        ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if n > 6:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


# file, metric, y label, title of the two curve figures of a sweep
CURVE_FIGURES = (("sweep_val_accuracy.png", "val_accuracy", "validation accuracy",
                  "validation accuracy: mean ± std over seeds"),
                 ("sweep_loss.png", "loss", "training loss", "training loss: mean ± std over seeds"))


def draw_curves(out: Path, settings: list[dict], members: dict, history: dict) -> None:
    for name, metric, ylabel, title in CURVE_FIGURES:
        plot_curves(out / name, settings, members, history[metric], ylabel, title)


def plot_pivot(settings: list[dict], axis: str, path: Path, others: list[str] = ()) -> Path:
    """Final validation accuracy (mean ± std over seeds) against one swept axis, a line per row."""
    rows, values, cells = pivot(settings, axis, others)
    numeric = all(isinstance(v, (int, float)) for v in values)
    fig, axes = new_figure(1, 1, size=(8.0, 4.6))
    ax = axes[0, 0]
    for r, c in zip(rows, run_colors(len(rows))):
        have = [v for v in values if (r, v) in cells]
        x = have if numeric else [values.index(v) for v in have]
        m = [cells[(r, v)]["final_val_accuracy"]["mean"] for v in have]
        e = [cells[(r, v)]["final_val_accuracy"]["std"] for v in have]
        ax.errorbar(x, [math.nan if v is None else v for v in m], yerr=[0 if v is None else v for v in e],
                    marker="o", capsize=3, lw=1.4, color=c, label=r, ls="--" if r.startswith("baseline") else "-")
    if numeric:
        if all(v > 0 for v in values) and max(values) / min(values) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(values, [value_text(v) for v in values])
    else:
        ax.set_xticks(range(len(values)), [value_text(v) for v in values])
    ax.axhline(0.1, color="0.6", ls=":", lw=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(axis)
    ax.set_ylabel("final validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"final validation accuracy vs {axis} (mean ± std over seeds)")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- the theory check

def save_tight(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG (dpi 110, cropped to its contents) atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _chi_line(ax, act: str, x: np.ndarray, width: int, chi: dict | None) -> None:
    """chi* against init std on ``ax`` (log), from the chi curves when given, over ``x``'s range."""
    if chi is not None and act in chi.get("chi", {}):
        sx, sy = np.asarray(chi["stds"]), np.asarray(chi["chi"][act], float)
    else:
        sx = np.geomspace(min(x.min(), 0.01) , max(x.max(), 20.0), 41)
        sy = np.array([theory.chi_star(theory.activation(act), s, width) for s in sx])
    keep = (sx >= x.min() / 1.5) & (sx <= x.max() * 1.5)
    ax.plot(sx[keep], sy[keep], "-", color="C3", lw=1, label="chi* (theory)")


def plot_trainability(train: dict, path: Path, chi: dict | None = None) -> None:
    """One panel per activation: val accuracy (left) and chi* (right, log) against init std (log)."""
    acts = train["settings"]["activations"]
    width = train["settings"]["width"]
    fig = _canvas_figure(figsize=(5.2 * len(acts), 3.9))
    axes = fig.subplots(1, len(acts), squeeze=False)
    for ax, act in zip(axes[0], acts):
        rows = [r for r in train["rows"] if r["activation"] == act]
        x = np.array([r["init_std"] for r in rows])
        m, e = np.array([r["val_acc_mean"] for r in rows]), np.array([r["val_acc_std"] for r in rows])
        ax.errorbar(x, m, yerr=e, fmt="o-", color="C0", capsize=3, ms=4, label="val accuracy (mean +- std)")
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.axhline(0.1, color="C0", lw=0.6, ls=":")
        ax.set_xlabel("init std of the kernels")
        ax.set_ylabel("val accuracy after the budget", color="C0")
        ax2 = ax.twinx()
        _chi_line(ax2, act, x, width, chi)
        ax2.plot(x, [r["chi"] for r in rows], "s", color="C3", ms=3)
        ax2.set_yscale("log")
        ax2.axhline(1.0, color="C3", lw=0.6, ls=":")
        ax2.set_ylabel("chi at the fixed point (log)", color="C3")
        for c in critical(act, width):
            ax.axvline(c, color="gray", ls="--", lw=0.9)
            ax.annotate(f"critical {c:.3g}", (c, 0.02), fontsize=7, rotation=90, xytext=(3, 0),
                        textcoords="offset points", color="gray")
        ax.set_title(f"{act}: {train['settings']['depth']} x {width}, SGD {train['settings']['lr']}", fontsize=10)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    s = train["settings"]
    fig.suptitle(f"trainability vs init std: {s['epochs']} epoch(s) on {s['train_limit']} images, "
                 f"{len(s['seeds'])} seed(s)", fontsize=10)
    fig.tight_layout()
    save_tight(fig, path)


def plot_profiles(results: list[dict], path: Path) -> None:
    """Predicted and measured kernel-gradient norm per layer, a panel per case."""
    labels = list(dict.fromkeys(r["label"] for r in results))
    fig = _canvas_figure(figsize=(3.1 * len(labels), 2.8 * len(ACTIVATIONS)))
    axes = fig.subplots(len(ACTIVATIONS), len(labels), squeeze=False)
    for r in results:
        ax = axes[ACTIVATIONS.index(r["activation"]), labels.index(r["label"])]
        x = np.arange(1, len(r["layers"]) + 1)
        m = np.asarray(r["meas_seeds"])
        ax.semilogy(x, r["pred_norm"], "-", color="C0", label="predicted")
        ax.semilogy(x, r["pred_plain"], ":", color="C0", alpha=0.6, label="per-example part only")
        ax.semilogy(np.repeat(x[None], m.shape[0], 0).ravel(), m.ravel(), ".", color="C1", alpha=0.25, ms=3)
        ax.semilogy(x, r["meas_rms"], "o", color="C1", ms=4, label="measured (RMS of seeds)")
        ax.set_title(r["case"] + ("" if r["within_band"] else f"  (x{r['worst_factor']:.1f})"), fontsize=9,
                     color="black" if r["within_band"] else "red")
        ax.set_xticks(x, [n.replace("hidden_", "") .replace("output", "out") for n in r["layers"]], fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("kernel-gradient norm per layer at initialisation (first minibatch of 32)", fontsize=10)
    fig.tight_layout()
    save_tight(fig, path)


def plot_chi(chi: dict, results: list[dict], path: Path, train: dict | None) -> None:
    """chi at the fixed point against init std per activation, critical stds dashed."""
    fig = _canvas_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, act in enumerate(CHI_ACTIVATIONS):
        ax.loglog(chi["stds"], chi["chi"][act], color=f"C{i}", label=act + (" (beta 0.05)" if "_" in act else ""))
        for s in chi["critical"][act]:
            ax.axvline(s, color=f"C{i}", ls="--", lw=0.8)
            ax.annotate(f"{s:.3g}", (s, 1.0), color=f"C{i}", fontsize=7, rotation=90,
                        xytext=(2, 4), textcoords="offset points")
        for r in results:  # the data's own layers: geometric mean of the hidden layers' chi
            if r["activation"] == act:
                ax.plot(r["stds"][1], np.exp(np.mean(np.log(r["chi"][:-1]))),
                        "x" if r["init"] == "random_normal" else "+", color=f"C{i}", ms=8)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xlabel("init std of the hidden kernels (He: 0.125, Glorot: 0.088)")
    ax.set_ylabel("chi = s^2 n E[phi'(h)^2] at the fixed point q*")
    ax.text(0.98, 0.02, "x, +: the cases' hidden layers with the data's q (geometric mean)\n"
            "dashed: critical std (chi = 1)", transform=ax.transAxes, fontsize=7, ha="right")
    ax.set_title(f"vanishing (chi < 1) vs exploding (chi > 1), width {chi['width']}", fontsize=10)
    if train is not None:
        ax.text(0.02, 0.02, "measured trainability vs std: trainability.png", transform=ax.transAxes, fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_tight(fig, path)


# ----------------------------------------------------------------------------- the optimizer quadratic

def contour_png(results: dict[str, dict], labels: dict[str, str]) -> bytes:
    """PNG bytes of f(w) = 0.1·w1² + 2·w2²'s contours with each optimizer's path (``labels``: legend
    text per optimizer)."""
    pts = np.concatenate([r["points"] for r in results.values()])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.15 * (hi - lo) + 0.1
    g1, g2 = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 300),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], 300))
    fig = _canvas_figure(figsize=(8, 5.5), dpi=110)
    ax = fig.add_subplot()
    levels = np.geomspace(1e-3, max(scratch.quadratic(pts).max(), 1.0) * 1.5, 18)
    ax.contour(g1, g2, scratch.quadratic(np.stack([g1, g2], axis=-1)), levels=levels,
               colors="0.7", linewidths=0.7)
    for name, r in results.items():
        ax.plot(*r["points"].T, marker="o", markersize=3, linewidth=1.2, label=labels[name])
    ax.plot(*scratch.QUADRATIC_START, "k*", markersize=12, label="start (−5, −2)")
    ax.plot(0, 0, "kx", markersize=9, label="minimum (0, 0)")
    ax.set(xlabel="w1", ylabel="w2", title="f(w) = 0.1·w1² + 2·w2²: the docs/study.md §5 optimizers")
    ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
