"""python -m experiments.theory [--out DIR] [--seeds 8] [--quick]

Predicts the per-layer kernel-gradient norms at initialisation from the mean-field theory
(vgjax.theory) and measures them with the project's own ``kernel_grad_norms`` on the first
minibatch of each seed's run, for sigmoid, tanh and relu at init std 0.05, 0.5, 1, 10 and at the
He / Glorot scales; plus chi at the fixed point versus init std, with the critical std marked.

Writes to ``--out`` (default runs/theory/): theory.csv (one row per case and layer),
theory.json (everything, with the cases outside the factor-1.5 band and why), profiles.png,
chi_vs_std.png. Every file is written atomically. Exit status: 0 done, 2 usage or data error.
"""

from __future__ import annotations

import dataclasses
import io
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments import cli

ACTIVATIONS = ("sigmoid", "tanh", "relu")
CHI_ACTIVATIONS = ACTIVATIONS + ("sigmoid_beta", "sigmoid_modgrad")  # beta 0.05
STD_CASES = (0.05, 0.5, 1.0, 10.0)
NAMED_CASES = ("he_normal", "glorot_uniform")
BAND = 1.5  # acceptance: predicted and measured agree within this factor on every layer
NOTE = 1.2  # gaps above this get a reason in theory.json even inside the band
# the acceptance set of issue 11 (std 0.5 and 10 are reported too, outside the criterion)
ACCEPTANCE = {"0.05", "1.0", "he_normal", "glorot_uniform"}


@dataclasses.dataclass(frozen=True)
class Case:
    activation: str
    init: str  # "random_normal" with ``std``, or a named initializer
    std: float = 0.05

    @property
    def label(self) -> str:
        return str(self.std) if self.init == "random_normal" else self.init

    @property
    def name(self) -> str:
        return f"{self.activation}/{self.label}"


def cases() -> list[Case]:
    out = []
    for act in ACTIVATIONS:
        out += [Case(act, "random_normal", s) for s in STD_CASES]
        out += [Case(act, name) for name in NAMED_CASES]
    return out


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.theory", description=__doc__.split("\n\n")[1])
    p.add_argument("--out", default="runs/theory", help="output directory")
    p.add_argument("--seeds", type=int, default=8, help="measurement seeds (one first minibatch each)")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size (the protocol's 32)")
    p.add_argument("--per-class", type=int, default=None,
                   help="examples per class in the theory's data sample (default 6; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smaller data sample for the theory (~4x faster)")
    p.add_argument("--depth", type=int, default=7, help="hidden layers")
    p.add_argument("--width", type=int, default=128, help="units per hidden layer")
    p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--data-source", choices=("idx", "tfds"), default="idx", help="where the arrays come from")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for JAX (0: all)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    return p


def check_args(args) -> None:
    if args.seeds < 1:
        cli.fail(f"--seeds must be >= 1, got {args.seeds}")
    if args.batch_size < 1:
        cli.fail(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.per_class is None:
        args.per_class = 3 if args.quick else 6
    if args.per_class < 2:
        cli.fail(f"--per-class must be >= 2, got {args.per_class}")
    if args.depth < 1 or args.width < 1:
        cli.fail("--depth and --width must be >= 1")


# --------------------------------------------------------------------------------------------
# Why a case falls outside the band (the regimes diagnosed in issue 11)


def diagnose(case: Case, q: np.ndarray, seeds: np.ndarray, layers: list[str], width: int) -> str:
    """A plain-words reason for a measured/predicted gap, from the regime the case is in.

    ``q``: predicted q per layer; ``seeds``: measured norms (seeds, layers).
    """
    ratio_tail = np.median(seeds, 0) / np.sqrt(np.mean(seeds ** 2, 0))
    worst = int(np.argmin(ratio_tail))
    if case.activation in ("sigmoid", "tanh") and np.max(q[1:]) > 1e3:
        qh = float(np.exp(np.mean(np.log(q[1:-1]))))
        active = width * math.erf(1 / math.sqrt(2 * qh))
        return (f"saturated units: hidden q ~ {qh:.2g}, so on average only {active:.1f} of {width} units "
                f"per layer have |h| < 1, where phi' is not ~0; the backward signal of a typical seed "
                f"passes through a handful of units, the per-seed norms are heavy-tailed (median/RMS "
                f"over the seeds at {layers[worst]}: {ratio_tail[worst]:.2f}) and the mean square that "
                f"the theory predicts is carried by rare seeds, which a few seeds cannot pin down "
                f"(tanh/10 with 256 seeds: layer-1 RMS/prediction 0.65, median/prediction 0.10, "
                f"RMS of blocks of 8 seeds from 0.10 to 2.8 times the prediction)")
    if case.activation in ("relu", "leaky_relu", "elu", "selu", "gelu", "swish"):
        return ("finite width: the products of random matrices align the back-propagated errors of "
                "different examples more than the infinite-width kernel says, so the mean-gradient "
                "part is under-predicted in the early layers; the gap shrinks with width (relu/1.0, "
                "layer-1 prediction/measurement 0.67 at width 32, 0.80 at 128, 0.93 at 512)")
    return (f"finite-width correction to the kernels (median/RMS over the seeds at {layers[worst]}: "
            f"{ratio_tail[worst]:.2f})")


# --------------------------------------------------------------------------------------------


def run_cases(args, x_u8, y, log) -> list[dict]:
    from vgjax import theory
    from vgjax.config import Config

    idx = theory.stratified_sample(y, args.per_class, seed=0)
    xs = x_u8[idx].astype(np.float64) / 255.0
    priors = {int(k): float(np.mean(y == k)) for k in np.unique(y)}
    results = []
    for case in cases():
        t0 = time.perf_counter()
        config = Config(method=f"theory_{case.activation}_{case.label}", activation=case.activation,
                        init=case.init, init_std=case.std, depth=args.depth, width=args.width,
                        batch_size=args.batch_size)
        net = theory.Net.from_config(config)
        prof = theory.predict_profile(net, xs, y[idx], args.batch_size, priors)
        t1 = time.perf_counter()
        meas = theory.measure_profile(config, x_u8, y, range(args.seeds), args.batch_size)
        t2 = time.perf_counter()
        layers = prof.layers
        m = np.stack([meas[k] for k in layers], 1)  # (seeds, layers)
        pred = prof.norm()
        rms = np.sqrt(np.mean(m ** 2, 0))
        ratio = rms / pred
        worst = float(np.max(np.maximum(ratio, 1 / ratio)))
        rec = {
            "case": case.name, "activation": case.activation, "init": case.init, "label": case.label,
            "stds": list(net.stds), "layers": layers, "q": prof.q.tolist(), "chi": prof.chi.tolist(),
            "pred_norm": pred.tolist(), "pred_mean_grad": np.sqrt(prof.mean_grad).tolist(),
            "pred_per_example": np.sqrt(prof.per_example).tolist(),
            "pred_plain": np.sqrt(prof.per_example / args.batch_size).tolist(),
            "meas_rms": rms.tolist(), "meas_mean": m.mean(0).tolist(), "meas_std": m.std(0).tolist(),
            "meas_seeds": m.tolist(), "ratio": ratio.tolist(), "worst_factor": worst,
            "pred_ratio_to_output": (pred / pred[-1]).tolist(),
            "meas_ratio_to_output": (rms / rms[-1]).tolist(),
            "within_band": worst <= BAND, "acceptance_case": case.label in ACCEPTANCE,
            "seconds_theory": t1 - t0, "seconds_measure": t2 - t1,
        }
        if worst > NOTE:
            rec["reason"] = diagnose(case, prof.q, m, layers, args.width)
        results.append(rec)
        log(f"{case.name:24s} worst factor {worst:5.2f}  layer-1/output pred {pred[0] / pred[-1]:.3g} "
            f"meas {rms[0] / rms[-1]:.3g}   ({t1 - t0:.1f}s theory, {t2 - t1:.1f}s measure)")
    return results


def chi_curves(width: int) -> dict:
    from vgjax import theory

    stds = np.exp(np.linspace(math.log(0.01), math.log(20.0), 61))
    critical = {name: theory.critical_stds(name, width) for name in theory.ACTIVATION_NAMES}
    out = {"stds": stds.tolist(), "width": width, "chi": {}, "q_star": {}, "critical_all": critical,
           "critical": {act: critical[act] for act in CHI_ACTIVATIONS},
           "q_star_note": "null: no finite fixed point (the signal grows without bound)"}
    for act in CHI_ACTIVATIONS:
        a = theory.activation(act)
        out["chi"][act] = [theory.chi_star(a, s, width) for s in stds]
        out["q_star"][act] = [theory.fixed_point_q(a, s * s * width) for s in stds]
    return out


def finite(obj):
    """JSON-safe: non-finite floats (chi of the output layer, q* = inf) become null."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def trainability(args) -> tuple[dict | None, str]:
    """Hook for the trainability-vs-init-std part of issue 11: (result or None, status line).

    To wire in (vgjax/sweep.py): per activation in ACTIVATIONS, ``spec = sweep.SweepSpec(
    Config(activation=act, train_limit=..., epochs=...), init_std=tuple(np.geomspace(0.01, 20, 13)), seeds=(0, 1, 2))``,
    ``res = sweep.run_sweep(spec, data)``, then the final ``res.history["val_accuracy"][:, -1]``
    averaged per setting (members are setting-major) gives accuracy vs std; return
    ``{"stds": [...], "accuracy": {act: [...]}}`` and :func:`plot_chi` overlays it on chi(std).
    """
    try:
        from vgjax import sweep  # noqa: F401
    except ImportError:
        return None, "pending: needs vgjax/sweep.py (hook: experiments.theory.trainability)"
    return None, "pending: vgjax.sweep is available; wire it in experiments.theory.trainability"


# --------------------------------------------------------------------------------------------
# Output


def table_text(results: list[dict]) -> str:
    layers = results[0]["layers"]
    short = [n.replace("hidden_", "h") for n in layers]
    head = f"{'case':22s} " + " ".join(f"{s:>6s}" for s in short) + "   worst  L1/out pred   meas"
    lines = ["measured (RMS over seeds) / predicted kernel-gradient norm, per layer", head]
    for r in results:
        flag = "" if r["within_band"] else "  <-- outside 1.5x"
        lines.append(f"{r['case']:22s} " + " ".join(f"{v:6.2f}" for v in r["ratio"])
                     + f"   {r['worst_factor']:5.2f}  {r['pred_ratio_to_output'][0]:9.3g} "
                     f"{r['meas_ratio_to_output'][0]:9.3g}{flag}")
    return "\n".join(lines)


def print_table(results: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(table_text(results))
        return
    layers = results[0]["layers"]
    t = Table(title="measured (RMS over seeds) / predicted kernel-gradient norm at init")
    t.add_column("case")
    for n in layers:
        t.add_column(n.replace("hidden_", "h"), justify="right")
    t.add_column("worst", justify="right")
    t.add_column("L1/out pred", justify="right")
    t.add_column("L1/out meas", justify="right")
    for r in results:
        style = None if r["within_band"] else "red"
        t.add_row(r["case"], *[f"{v:.2f}" for v in r["ratio"]], f"{r['worst_factor']:.2f}",
                  f"{r['pred_ratio_to_output'][0]:.3g}", f"{r['meas_ratio_to_output'][0]:.3g}",
                  style=style)
    Console(width=140).print(t)


def csv_text(results: list[dict]) -> str:
    cols = ["case", "activation", "init", "layer", "std", "q", "chi", "pred_norm", "pred_mean_grad",
            "pred_per_example", "meas_rms", "meas_mean", "meas_std", "ratio", "pred_ratio_to_output",
            "meas_ratio_to_output", "within_band"]
    buf = io.StringIO()
    buf.write(",".join(cols) + "\n")
    for r in results:
        for i, layer in enumerate(r["layers"]):
            row = [r["case"], r["activation"], r["init"], layer, r["stds"][i], r["q"][i], r["chi"][i],
                   r["pred_norm"][i], r["pred_mean_grad"][i], r["pred_per_example"][i], r["meas_rms"][i],
                   r["meas_mean"][i], r["meas_std"][i], r["ratio"][i], r["pred_ratio_to_output"][i],
                   r["meas_ratio_to_output"][i], r["within_band"]]
            buf.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row) + "\n")
    return buf.getvalue()


def _atomic_savefig(fig, path: Path) -> None:
    from vgjax.runlog import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_profiles(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in results))
    fig, axes = plt.subplots(len(ACTIVATIONS), len(labels), figsize=(3.1 * len(labels), 2.8 * len(ACTIVATIONS)),
                             squeeze=False)
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
    _atomic_savefig(fig, path)
    plt.close(fig)


def plot_chi(chi: dict, results: list[dict], path: Path, train: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
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
        ax.text(0.02, 0.02, "trainability overlay: see theory.json", transform=ax.transAxes, fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _atomic_savefig(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    from vgjax import runtime
    from vgjax.runlog import atomic_write_json, atomic_write_text

    runtime.pin_cpu_threads(args.threads or None)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".probe")
        probe.close()
    except OSError as e:
        cli.fail(f"cannot write to the output directory {out}: {e.strerror}")
    arrays = cli.load_data(args.data_dir, args.data_source)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        results = run_cases(args, np.asarray(arrays.x_train), np.asarray(arrays.y_train), log)
        t1 = time.perf_counter()
        chi = chi_curves(args.width)
        train, train_status = trainability(args)
    except KeyboardInterrupt:
        cli.fail("interrupted; nothing written", cli.EXIT_INTERRUPTED)
    t2 = time.perf_counter()
    outside = [{"case": r["case"], "worst_factor": r["worst_factor"], "acceptance_case": r["acceptance_case"],
                "ratio": r["ratio"], "reason": r["reason"]} for r in results if not r["within_band"]]
    summary = {
        "settings": {"seeds": args.seeds, "batch_size": args.batch_size, "per_class": args.per_class,
                     "depth": args.depth, "width": args.width, "measured": "RMS over seeds of kernel_grad_norms "
                     "on each seed's first minibatch at initialisation", "band": BAND},
        "cases": results, "chi_vs_std": chi, "outside_band": outside,
        "acceptance_met": all(r["within_band"] for r in results if r["acceptance_case"]),
        "trainability": train if train is not None else train_status,
        "runtime_s": {"cases": t1 - t0, "chi_curves": t2 - t1},
    }
    atomic_write_json(out / "theory.json", finite(summary))
    atomic_write_text(out / "theory.csv", csv_text(results))
    if not args.no_plots:
        plot_profiles(results, out / "profiles.png")
        plot_chi(chi, results, out / "chi_vs_std.png", train)
    print_table(results)
    print("critical init std (chi = 1 at q*, width %d): " % args.width
          + ", ".join(f"{a} {', '.join(f'{s:.4g}' for s in c) or 'none'}" for a, c in chi["critical_all"].items()))
    for o in outside:
        print(f"outside {BAND}x: {o['case']} (worst x{o['worst_factor']:.2f}, measured/predicted per layer "
              f"{' '.join(f'{v:.2f}' for v in o['ratio'])}): {o['reason']}")
    print(f"acceptance cases within {BAND}x: {'yes' if summary['acceptance_met'] else 'NO'}; "
          f"runtime {t2 - t0:.0f}s; written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
