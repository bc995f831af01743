"""Figures of the study, drawn from SAVED FILES only (no training code here).

A run directory holds ``config.json``, ``history.jsonl`` (or ``history.csv``), ``summary.json``
and, with diagnostics on, ``histograms/epoch_XXXX.npz`` (:mod:`vgjax.train.diagnostics`). From those:

- ``curves.png``: train/val loss and accuracy per epoch (stage boundaries of staged runs dashed);
- ``grad_flow_heatmap.png``: layer x epoch heat map of ``grad_norm/<layer>`` (log colour scale);
- ``grad_flow_layers.png``: gradient norm per layer (input to output) at a few epochs, log scale;
- ``layer_diagnostics.png``: update/weight ratio, weight std, saturation and first-step gradient
  norm per layer over the epochs (when the history has them);
- ``weight_histograms.png``: kernel entries per layer at the saved epochs;
- ``grad_histograms.png``: log10|kernel gradient| per layer at the saved epochs, all layers on one
  axis (vanishing shows as the early layers' mass sliding to the left).

Across runs (:func:`plot_comparison`): ``compare_val_accuracy.png`` and
``compare_first_layer_grad.png``. Explanatory figures (:func:`plot_explainers`):
``normal_densities.png`` (Normal(0, std) for std 0.05, 1, 10) and ``activations.png`` (sigmoid,
tanh, ReLU and their derivatives; the chain-rule bound 0.25^k).

Every drawing function returns a :class:`Plot`: the PNG's path and the arrays it drew (so tests
and notebooks can check the figure against the files it came from). Matplotlib is used through
its object API with the Agg canvas (no pyplot, no global backend state); PNGs are written
atomically.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vgjax.run.rundir import FIGURES_DIR, RunDir, number
from vgjax.files import atomic_write_bytes, signals_deferred

DPI = 110


@dataclasses.dataclass
class Plot:
    path: Path
    data: dict[str, Any]


@dataclasses.dataclass
class RunFiles:
    """What a run directory holds, read once."""

    path: Path
    config: dict
    history: list[dict]
    summary: dict

    @property
    def method(self) -> str:
        return str(self.config.get("method") or self.summary.get("method") or self.path.name)

    @property
    def epochs(self) -> np.ndarray:
        return np.array([r["epoch"] for r in self.history], float)

    def column(self, key: str) -> np.ndarray:
        """One history column as floats (NaN where an epoch lacks it)."""
        return np.array([number(r.get(key)) for r in self.history], float)

    def layers(self, metric: str = "grad_norm") -> list[str]:
        """Layers that have ``metric/<layer>`` columns, input to output."""
        found = {k.split("/", 1)[1] for r in self.history for k in r if k.startswith(metric + "/")}
        return layer_order(found)

    def histogram_files(self) -> list[Path]:
        return RunDir(self.path).histogram_files()

    def stage_starts(self) -> list[tuple[int, int]]:
        """(stage number, first epoch) of every stage after the first (staged runs only)."""
        out, prev = [], None
        for r in self.history:
            s = r.get("stage")
            if s is not None and prev is not None and s != prev:
                out.append((int(s), int(r["epoch"])))
            prev = s if s is not None else prev
        return out


def layer_order(names: Iterable[str]) -> list[str]:
    """hidden_1 … hidden_n, then output, then anything else alphabetically."""
    def key(n: str):
        m = re.fullmatch(r"hidden_(\d+)", n)
        if m:
            return (0, int(m.group(1)), n)
        return (1, 0, n) if n == "output" else (2, 0, n)
    return sorted(set(names), key=key)


def short_layer(name: str) -> str:
    m = re.fullmatch(r"hidden_(\d+)", name)
    return f"h{m.group(1)}" if m else ("out" if name == "output" else name)


def load_run(run_dir: str | Path) -> RunFiles:
    """Read a run directory (history.jsonl, else history.csv)."""
    rd = RunDir(run_dir)
    if not rd.exists():
        raise FileNotFoundError(f"{rd.path} is not a run directory (no config.json)")
    return RunFiles(rd.path, rd.read_config(), rd.read_rows(), rd.read_summary())


# ----------------------------------------------------------------------------------------------
# figure plumbing


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] | None = None, **kw):
    fig = Figure(figsize=size or (5.2 * ncols, 3.8 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _out(run: RunFiles, out_dir: str | Path | None) -> Path:
    return Path(out_dir) if out_dir is not None else run.path / FIGURES_DIR


def _epoch_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _mark_stages(ax, run: RunFiles) -> list[int]:
    starts = run.stage_starts()
    for stage, epoch in starts:
        ax.axvline(epoch - 0.5, color="0.4", ls="--", lw=0.8)
        ax.text(epoch - 0.5, 1.0, f" stage {stage}", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", ha="left", color="0.3")
    return [e for _, e in starts]


def _layer_colors(n: int):
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1) * 0.9) for i in range(n)]


def _title(run: RunFiles, what: str) -> str:
    bits = [run.method, what]
    status = run.summary.get("status")
    if status and status != "finished":
        bits.append(f"({status})")
    return " — ".join(bits[:2]) + (f" {bits[2]}" if len(bits) > 2 else "")


# ----------------------------------------------------------------------------------------------
# one run


def plot_curves(run: RunFiles, out_dir: str | Path | None = None) -> Plot:
    """Train/val loss and accuracy per epoch; dashed lines where a new stage starts."""
    fig, axes = new_figure(2, 1)
    ep = run.epochs
    data: dict[str, Any] = {"epoch": ep}
    for ax, (metric, label) in zip(axes[0], (("loss", "loss"), ("accuracy", "accuracy"))):
        for key, name, style in ((metric, "train", "-"), (f"val_{metric}", "validation (test set)", "-")):
            y = run.column(key)
            data[key] = y
            ax.plot(ep, y, style, marker="o" if len(ep) <= 30 else None, ms=3, label=name)
        if metric == "accuracy":
            ax.axhline(0.1, color="0.6", ls=":", lw=1, label="chance (0.1)")
            ax.set_ylim(0, 1)
        _epoch_axis(ax)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        data["stage_starts"] = _mark_stages(ax, run)
        ax.legend(fontsize=8)
    fig.suptitle(_title(run, "training curves"))
    return Plot(save_figure(fig, _out(run, out_dir) / "curves.png"), data)


def grad_matrix(run: RunFiles, metric: str = "grad_norm") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(layers input->output, epochs, matrix[layer, epoch]) of ``metric/<layer>`` (NaN if absent)."""
    layers = run.layers(metric)
    mat = np.array([run.column(f"{metric}/{name}") for name in layers], float).reshape(len(layers), -1)
    return layers, run.epochs, mat


def plot_grad_heatmap(run: RunFiles, out_dir: str | Path | None = None, metric: str = "grad_norm") -> Plot:
    """Layer x epoch heat map of the per-layer gradient norm, log colour scale, input at the bottom."""
    layers, ep, mat = grad_matrix(run, metric)
    fig, axes = new_figure(1, 1, size=(8.5, 0.45 * len(layers) + 2.2))
    ax = axes[0, 0]
    positive = mat[np.isfinite(mat) & (mat > 0)]
    if positive.size:
        norm = LogNorm(vmin=float(positive.min()), vmax=float(positive.max()))
        masked = np.ma.masked_invalid(np.where(mat > 0, mat, np.nan))
        x_edges = np.concatenate([ep - 0.5, [ep[-1] + 0.5]]) if len(ep) else np.array([0.0, 1.0])
        cmap = colormaps["magma"].with_extremes(bad="0.85")  # grey: layer absent (staged runs)
        mesh = ax.pcolormesh(x_edges, np.arange(len(layers) + 1), masked, norm=norm, cmap=cmap, shading="flat")
        cb = fig.colorbar(mesh, ax=ax)
        cb.set_label(f"{metric}: L2 norm of the kernel gradient" if metric.startswith("grad") else metric)
    ax.set_yticks(np.arange(len(layers)) + 0.5, [short_layer(n) for n in layers])
    ax.set_ylabel("layer (input at the bottom)")
    _epoch_axis(ax)
    _mark_stages(ax, run)
    ax.set_title(_title(run, "gradient flow per layer"))
    return Plot(save_figure(fig, _out(run, out_dir) / "grad_flow_heatmap.png"),
                {"layers": layers, "epoch": ep, "matrix": mat})


def profile_epochs(epochs: Sequence[float], wanted: Sequence[int] | None = None) -> list[int]:
    """Epochs for the per-layer profile: ``wanted`` that exist, else 1, 10, the middle and the last."""
    have = [int(e) for e in epochs]
    if not have:
        return []
    if wanted is None:
        wanted = [have[0], 10, have[len(have) // 2], have[-1]]
    return sorted({e for e in wanted if e in have})


def plot_grad_profile(run: RunFiles, out_dir: str | Path | None = None,
                      epochs: Sequence[int] | None = None, metric: str = "grad_norm") -> Plot:
    """Gradient norm per layer (x: layer index, input to output) at chosen epochs, log y."""
    layers, ep, mat = grad_matrix(run, metric)
    chosen = profile_epochs(ep, epochs)
    fig, axes = new_figure(1, 1, size=(7.0, 4.2))
    ax = axes[0, 0]
    x = np.arange(1, len(layers) + 1)
    colors = _layer_colors(len(chosen))
    lines = {}
    for c, e in zip(colors, chosen):
        y = mat[:, list(ep).index(e)]
        lines[e] = y
        ax.plot(x, y, marker="o", color=c, label=f"epoch {e}")
    ax.set_yscale("log")
    ax.set_xticks(x, [short_layer(n) for n in layers])
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("gradient L2 norm (mean over the epoch)")
    ax.grid(alpha=0.3, which="both")
    if chosen:
        ax.legend(fontsize=8)
    ax.set_title(_title(run, "gradient norm by layer"))
    return Plot(save_figure(fig, _out(run, out_dir) / "grad_flow_layers.png"),
                {"layers": layers, "x": x, "epochs": chosen, "lines": lines})


DIAGNOSTIC_PANELS = (("update_ratio", "‖ΔW‖ / ‖W‖ over the epoch", True),
                     ("grad_norm_first", "gradient norm, first step of the epoch", True),
                     ("weight_std", "kernel std", False),
                     ("saturation", "saturated (σ/tanh) or dead (ReLU) fraction", False))


def plot_layer_diagnostics(run: RunFiles, out_dir: str | Path | None = None) -> Plot | None:
    """Per-layer diagnostics over the epochs (only the ones the history holds); None if none."""
    panels = [p for p in DIAGNOSTIC_PANELS if run.layers(p[0])]
    if not panels:
        return None
    ncols = 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(ncols, nrows)
    data: dict[str, Any] = {"epoch": run.epochs}
    for ax, (metric, label, log) in zip(axes.ravel(), panels):
        layers = run.layers(metric)
        data[metric] = {}
        for c, name in zip(_layer_colors(len(layers)), layers):
            y = run.column(f"{metric}/{name}")
            data[metric][name] = y
            ax.plot(run.epochs, y, color=c, label=short_layer(name), marker="o" if len(y) <= 30 else None, ms=2)
        if log and np.any(np.isfinite(np.concatenate(list(data[metric].values()))) &
                          (np.concatenate(list(data[metric].values())) > 0)):
            ax.set_yscale("log")
        if metric == "saturation":
            ax.set_ylim(-0.02, 1.02)
        _epoch_axis(ax)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        _mark_stages(ax, run)
        ax.legend(fontsize=7, ncol=2)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(_title(run, "per-layer diagnostics"))
    return Plot(save_figure(fig, _out(run, out_dir) / "layer_diagnostics.png"), data)


def read_histogram_files(paths: Iterable[Path]) -> list[dict]:
    from vgjax.train.diagnostics import load_histograms  # here: vgjax.train.diagnostics imports jax, the figures need not

    return [load_histograms(p) for p in paths]


def plot_weight_histograms(run: RunFiles, out_dir: str | Path | None = None) -> Plot | None:
    """Kernel-entry histograms, one panel per layer, one line per saved epoch; None if none saved."""
    hists = read_histogram_files(run.histogram_files())
    if not hists:
        return None
    layers = layer_order({n for h in hists for n in h["layers"]})
    ncols = min(4, len(layers))
    nrows = math.ceil(len(layers) / ncols)
    fig, axes = new_figure(ncols, nrows, size=(3.6 * ncols, 2.8 * nrows))
    colors = _layer_colors(len(hists))
    data: dict[str, Any] = {}
    for ax, name in zip(axes.ravel(), layers):
        data[name] = {}
        for c, h in zip(colors, hists):
            if name not in h:
                continue
            counts, edges = h[name]["weight_counts"], h[name]["weight_edges"]
            data[name][h["epoch"]] = (counts, edges)
            ax.stairs(counts, edges, color=c, label=f"epoch {h['epoch']}")
        ax.set_title(short_layer(name), fontsize=9)
        ax.set_xlabel("kernel entry", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(layers):]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(_title(run, "weight distributions per layer"))
    return Plot(save_figure(fig, _out(run, out_dir) / "weight_histograms.png"), data)


def plot_grad_histograms(run: RunFiles, out_dir: str | Path | None = None) -> Plot | None:
    """log10|kernel gradient| of every layer on one axis, one panel per saved epoch."""
    hists = read_histogram_files(run.histogram_files())
    if not hists:
        return None
    ncols = min(4, len(hists))
    nrows = math.ceil(len(hists) / ncols)
    fig, axes = new_figure(ncols, nrows, size=(3.9 * ncols, 3.0 * nrows), sharey=True)
    data: dict[str, Any] = {}
    for ax, h in zip(axes.ravel(), hists):
        layers = layer_order(h["layers"])
        edges = h["grad_log10_edges"]
        data[h["epoch"]] = {}
        for c, name in zip(_layer_colors(len(layers)), layers):
            counts = h[name]["grad_log10_counts"]
            frac = counts / max(counts.sum() + int(h[name]["grad_zero"]), 1)
            data[h["epoch"]][name] = frac
            ax.stairs(frac, edges, color=c, label=short_layer(name))
        ax.set_title(f"epoch {h['epoch']}", fontsize=9)
        ax.set_xlabel("log10 |∂L/∂W| (probe batch)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(hists):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("fraction of kernel entries", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.suptitle(_title(run, "gradient distributions per layer"))
    return Plot(save_figure(fig, _out(run, out_dir) / "grad_histograms.png"), data)


DRAWING_DIR = ".figures-drawing"  # a run's figures while they are drawn (then moved to figures/)


def draw_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Plot]:
    """Every figure of one run (into ``<run_dir>/figures`` unless ``out_dir``).

    A run's own figures are drawn into ``<run_dir>/.figures-drawing`` and moved into figures/
    only once every one is drawn: an interrupted drawing (Ctrl-C, a full disk) adds none of them
    (figures from an earlier drawing stay as they were)."""
    run = load_run(run_dir)
    if not run.history:
        return []
    if out_dir is not None:
        return _draw_all(run, out_dir)
    staging, final = run.path / DRAWING_DIR, run.path / FIGURES_DIR
    shutil.rmtree(staging, ignore_errors=True)  # left by a drawing cut short (kill -9)
    try:
        plots = _draw_all(run, staging)
        final.mkdir(parents=True, exist_ok=True)
        with signals_deferred():  # a Ctrl-C waits until every figure has moved
            for p in plots:
                os.replace(p.path, final / p.path.name)
                p.path = final / p.path.name
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return plots


def _draw_all(run: RunFiles, out_dir: str | Path) -> list[Plot]:
    plots = [plot_curves(run, out_dir)]
    if run.layers("grad_norm"):
        plots += [plot_grad_heatmap(run, out_dir), plot_grad_profile(run, out_dir)]
    for fn in (plot_layer_diagnostics, plot_weight_histograms, plot_grad_histograms):
        p = fn(run, out_dir)
        if p is not None:
            plots.append(p)
    return plots


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw one run's figures from its files; returns the PNG paths (``<run_dir>/figures/*.png``)."""
    return [p.path for p in draw_run(run_dir, out_dir)]


# ----------------------------------------------------------------------------------------------
# across runs


def _labels(runs: Sequence[RunFiles]) -> list[str]:
    methods = [r.method for r in runs]
    return [m if methods.count(m) == 1 else f"{m} ({r.path.name})" for m, r in zip(methods, runs)]


def run_colors(n: int):
    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def draw_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Plot]:
    """Validation accuracy of every run on one axis; first-layer gradient norm on one axis."""
    runs = [r for r in (load_run(d) for d in run_dirs) if r.history]
    out_dir = Path(out_dir)
    if not runs:
        return []
    labels, colors = _labels(runs), run_colors(len(runs))
    plots = []
    specs = (("val_accuracy", "validation accuracy", False, "compare_val_accuracy.png"),
             ("grad_norm/hidden_1", "first-layer (hidden_1) gradient norm", True, "compare_first_layer_grad.png"))
    for key, ylabel, log, fname in specs:
        fig, axes = new_figure(1, 1, size=(9.0, 5.0))
        ax = axes[0, 0]
        data = {}
        for run, label, c in zip(runs, labels, colors):
            y = run.column(key)
            data[label] = (run.epochs, y)
            ls = "--" if run.method.startswith("baseline") else "-"
            # a short series gets a marker per epoch: one epoch alone is a point, not a line
            ax.plot(run.epochs, y, ls, color=c, label=label, lw=1.4, marker="o" if len(y) <= 30 else None, ms=4)
        if log:
            ax.set_yscale("log")
        else:
            ax.axhline(0.1, color="0.6", ls=":", lw=1)
            ax.set_ylim(0, 1)
        _epoch_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.set_title(f"{ylabel} of every method")
        plots.append(Plot(save_figure(fig, out_dir / fname), data))
    return plots


def plot_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    return [p.path for p in draw_comparison(run_dirs, out_dir)]


# ----------------------------------------------------------------------------------------------
# explanatory figures


def normal_pdf(x: np.ndarray, std: float) -> np.ndarray:
    return np.exp(-0.5 * (x / std) ** 2) / (std * math.sqrt(2 * math.pi))


def draw_explainers(out_dir: str | Path) -> list[Plot]:
    """Normal(0, std) densities for std 0.05, 1, 10 (docs/study.md §7) and the activations' derivatives."""
    out_dir = Path(out_dir)
    return [draw_densities(out_dir / "normal_densities.png"), draw_activations(out_dir / "activations.png")]


def draw_densities(path: Path) -> Plot:
    """The initial-weight densities Normal(0, std), std 0.05, 1, 10: one panel each and all on one axis."""
    stds = (0.05, 1.0, 10.0)
    fig, axes = new_figure(4, 1, size=(17, 3.8))
    data: dict[str, Any] = {}
    for ax, s, c in zip(axes[0], stds, ("C0", "C1", "C3")):
        x = np.linspace(-4 * s, 4 * s, 401)
        y = normal_pdf(x, s)
        data[s] = (x, y)
        ax.plot(x, y, color=c)
        ax.fill_between(x, y, where=np.abs(x) <= s, color=c, alpha=0.25, label="±1 std (68%)")
        ax.set_title(f"Normal(0, {s:g})  peak density {normal_pdf(np.zeros(1), s)[0]:.3g}", fontsize=9)
        ax.set_xlabel("initial weight")
        ax.legend(fontsize=7)
    ax = axes[0, 3]
    x = np.linspace(-30, 30, 2001)
    for s, c in zip(stds, ("C0", "C1", "C3")):
        ax.plot(x, normal_pdf(x, s), color=c, label=f"std {s:g}")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 20)
    ax.set_title("all three on one axis (log density)", fontsize=9)
    ax.set_xlabel("initial weight")
    ax.legend(fontsize=7)
    fig.suptitle("Kernel initialisations of the study: small weights shrink signals and gradients; "
                 "large ones saturate sigmoids or explode", fontsize=10)
    return Plot(save_figure(fig, path), data)


def draw_activations(path: Path) -> Plot:
    """Sigmoid, tanh, ReLU, sigmoid + 0.05 z and their derivatives; the chain-rule bound 0.25^k."""
    z = np.linspace(-6, 6, 1201)
    sig = 1 / (1 + np.exp(-z))
    acts = {"sigmoid": (sig, sig * (1 - sig)), "tanh": (np.tanh(z), 1 - np.tanh(z) ** 2),
            "relu": (np.maximum(z, 0), (z > 0).astype(float)),
            "sigmoid + 0.05 z": (sig + 0.05 * z, sig * (1 - sig) + 0.05)}
    fig, axes = new_figure(3, 1, size=(15, 4.0))
    for name, (f, d) in acts.items():
        ls = ":" if "0.05" in name else "-"
        axes[0, 0].plot(z, f, ls, label=name)
        axes[0, 1].plot(z, d, ls, label=f"{name}: max {d.max():.2g}")
    axes[0, 0].set_ylim(-1.5, 3)
    axes[0, 0].set_title("hidden activations", fontsize=9)
    axes[0, 1].axhline(0.25, color="0.5", lw=0.8, ls="--")
    axes[0, 1].axhline(1.0, color="0.5", lw=0.8, ls="--")
    axes[0, 1].set_title("their derivatives: sigmoid's is at most 0.25, tanh's and ReLU's 1", fontsize=9)
    for ax in axes[0, :2]:
        ax.set_xlabel("pre-activation z")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    k = np.arange(1, 11)
    ax = axes[0, 2]
    ax.semilogy(k, 0.25 ** k, "o-", label="sigmoid: 0.25^k")
    ax.semilogy(k, np.ones_like(k, float), "s-", label="tanh / ReLU: 1^k")
    ax.annotate(f"0.25^7 ≈ {0.25 ** 7:.1e}", (7, 0.25 ** 7), textcoords="offset points", xytext=(8, 8), fontsize=8)
    ax.set_xlabel("layers the gradient passes through (k)")
    ax.set_ylabel("largest possible activation-derivative factor")
    ax.set_title("chain rule: the bound on the product of derivatives", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return Plot(save_figure(fig, path),
                {"z": z, **{n: v for n, v in acts.items()}, "chain_k": k, "chain_sigmoid": 0.25 ** k})


def plot_explainers(out_dir: str | Path) -> list[Path]:
    """Write ``normal_densities.png`` and ``activations.png`` into ``out_dir``."""
    return [p.path for p in draw_explainers(out_dir)]


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG from its header; raises ValueError if it is not a PNG."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")

