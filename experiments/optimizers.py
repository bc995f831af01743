"""python -m experiments.optimizers [--out DIR] [--epochs 30]

docs/study.md §5, first part: minimise f(w) = 0.1·w1² + 2·w2² from (−5, −2) with the four from-scratch
optimizers (gradient descent, momentum, RMSProp, Adam; one update per epoch). Prints every
intermediate quantity of epochs 1 and 2, then the final point of each optimizer, and writes
``trajectories.csv``, ``trajectories.json`` and ``optimizers_quadratic.png`` into ``--out``
(default ``runs/optimizers_quadratic/``). Exit status 0 done, 2 usage error or unwritable output.
The maths lives in :mod:`vgjax.scratch`; this module only computes, prints and saves.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from experiments import cli
from vgjax.runlog import atomic_write_bytes

DEFAULT_OUT = Path("runs") / "optimizers_quadratic"
DETAIL_EPOCHS = 2

TITLES = {
    "scratch_gd": "Gradient descent",
    "scratch_momentum": "GD + momentum",
    "scratch_rmsprop": "RMSProp",
    "scratch_adam": "Adam",
}
SYMBOLS = {"learning_rate": "α", "beta": "β", "gamma": "γ", "b1": "β1", "b2": "β2", "eps": "ε"}
# quantity in a vgjax.scratch record -> (row label, how it is computed)
QUANTITIES = {
    "W": ("W", "point before the step"),
    "dW": ("dW", "∇f(W) = (0.2·w1, 4·w2)"),
    "V": ("V", "β·V + (1−β)·dW"),
    "S": ("S", "γ·S + (1−γ)·dW²"),
    "V_hat": ("V̂", "V / (1 − β1^t)"),
    "S_hat": ("Ŝ", "S / (1 − β2^t)"),
}
UPDATES = {
    "scratch_gd": "W − α·dW",
    "scratch_momentum": "W − α·V",
    "scratch_rmsprop": "W − α·dW / √(S + ε)",
    "scratch_adam": "W − α·V̂ / (√Ŝ + ε)",
}
ADAM_FORMULAS = {"V": "β1·V + (1−β1)·dW", "S": "β2·S + (1−β2)·dW²"}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> cli.Parser:
    parser = cli.Parser(prog="python -m experiments.optimizers",
                        description="docs/study.md §5: four from-scratch optimizers on f(w) = 0.1·w1² + 2·w2².")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--epochs", type=positive_int, default=30, help="updates per optimizer")
    return parser


# --------------------------------------------------------------------------- computing

def compute(epochs: int) -> dict[str, dict]:
    """Per optimizer: the study's hyper-parameters, the numpy trajectory and the optax form's deviation."""
    from vgjax import scratch

    results = {}
    for name, hp in scratch.SPEC_HPARAMS.items():
        ref = scratch.numpy_trajectory(name, scratch.quadratic_grad, scratch.QUADRATIC_START, epochs, **hp)
        ox = scratch.optax_trajectory(scratch.OPTIMIZERS[name](**hp), scratch.quadratic_grad,
                                      scratch.QUADRATIC_START, epochs)
        results[name] = {"hparams": dict(hp), "points": ref.points, "f": scratch.quadratic(ref.points),
                         "records": ref.records, "optax_max_abs_diff": float(np.max(np.abs(ox - ref.points)))}
    return results


# --------------------------------------------------------------------------- printing

def fmt(x: float) -> str:
    return f"{x:.7g}"


def hp_text(hp: dict[str, float]) -> str:
    return ", ".join(f"{SYMBOLS.get(k, k)}={v:g}" for k, v in hp.items())


def formula(name: str, key: str) -> str:
    if name == "scratch_adam" and key in ADAM_FORMULAS:
        return ADAM_FORMULAS[key]
    return QUANTITIES[key][1]


def detail_table(name: str, result: dict, epochs: int):
    """A rich table of every quantity of the first ``epochs`` updates of one optimizer."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"{name} · {TITLES[name]} ({hp_text(result['hparams'])})",
                  box=box.SIMPLE_HEAD, title_justify="left")
    for header, justify in [("epoch", "right"), ("quantity", "left"), ("computed as", "left"),
                            ("w1", "right"), ("w2", "right")]:
        table.add_column(header, justify=justify)
    for record in result["records"][:epochs]:
        t = record["t"]
        for key in QUANTITIES:
            if key in record:
                label = QUANTITIES[key][0]
                table.add_row(str(t) if key == "W" else "", label, formula(name, key), *map(fmt, record[key]))
        table.add_row("", "W new", UPDATES[name], *map(fmt, record["W_new"]))
        table.add_row("", "f(W new)", "0.1·w1² + 2·w2²", fmt(result["f"][t]), "", end_section=True)
    return table


def summary_table(results: dict[str, dict], epochs: int):
    from rich import box
    from rich.table import Table

    first = next(iter(results.values()))
    start, f0 = ", ".join(map(fmt, first["points"][0])), fmt(first["f"][0])
    table = Table(title=f"After {epochs} epoch{'' if epochs == 1 else 's'} from W = ({start}), f(W) = {f0}",
                  box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("optimizer", no_wrap=True)
    for header in ["w1", "w2", "f(W)", "optax gap"]:
        table.add_column(header, justify="right")
    for name, r in results.items():
        table.add_row(name, *map(fmt, r["points"][-1]), fmt(r["f"][-1]), f"{r['optax_max_abs_diff']:.1e}")
    return table


def report(results: dict[str, dict], epochs: int) -> None:
    """Print the epoch-by-epoch tables and the final points to stdout (plain text off a terminal)."""
    from rich.console import Console

    console = Console(highlight=False)
    for name, result in results.items():
        console.print(detail_table(name, result, min(epochs, DETAIL_EPOCHS)))
    console.print(summary_table(results, epochs))
    console.print("optax gap: largest |difference| between the float64 numpy reference and the "
                  "float32 optax transform over the whole trajectory.")


# --------------------------------------------------------------------------- saving

def trajectories_csv(results: dict[str, dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["optimizer", "epoch", "w1", "w2", "f"])
    for name, r in results.items():
        for epoch, (w, f) in enumerate(zip(r["points"], r["f"])):
            writer.writerow([name, epoch, repr(float(w[0])), repr(float(w[1])), repr(float(f))])
    return buf.getvalue()


def trajectories_json(results: dict[str, dict], epochs: int) -> dict:
    def plain(record: dict) -> dict:
        return {k: v if k == "t" else np.asarray(v).tolist() for k, v in record.items()}

    return {
        "problem": {"f": "0.1*w1**2 + 2*w2**2", "start": [-5.0, -2.0], "epochs": epochs},
        "optimizers": {
            name: {"hyperparameters": r["hparams"], "points": r["points"].tolist(), "f": r["f"].tolist(),
                   "final": r["points"][-1].tolist(), "final_f": float(r["f"][-1]),
                   "optax_max_abs_diff": r["optax_max_abs_diff"], "steps": [plain(x) for x in r["records"]]}
            for name, r in results.items()
        },
    }


def contour_png(results: dict[str, dict]) -> bytes:
    """PNG bytes of f's contours with the four paths (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vgjax import scratch

    pts = np.concatenate([r["points"] for r in results.values()])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.15 * (hi - lo) + 0.1
    g1, g2 = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 300),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], 300))
    fig = Figure(figsize=(8, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    levels = np.geomspace(1e-3, max(scratch.quadratic(pts).max(), 1.0) * 1.5, 18)
    ax.contour(g1, g2, scratch.quadratic(np.stack([g1, g2], axis=-1)), levels=levels,
               colors="0.7", linewidths=0.7)
    for name, r in results.items():
        ax.plot(*r["points"].T, marker="o", markersize=3, linewidth=1.2,
                label=f"{TITLES[name]} ({hp_text(r['hparams'])})")
    ax.plot(*scratch.QUADRATIC_START, "k*", markersize=12, label="start (−5, −2)")
    ax.plot(0, 0, "kx", markersize=9, label="minimum (0, 0)")
    ax.set(xlabel="w1", ylabel="w2", title="f(w) = 0.1·w1² + 2·w2²: the docs/study.md §5 optimizers")
    ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save(out: Path, results: dict[str, dict], epochs: int) -> None:
    """The three output files, each written atomically."""
    atomic_write_bytes(out / "trajectories.csv", trajectories_csv(results).encode())
    text = json.dumps(trajectories_json(results, epochs), indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(out / "trajectories.json", text.encode())
    atomic_write_bytes(out / "optimizers_quadratic.png", contour_png(results))


def prepare_out(out: Path) -> None:
    """Create ``out`` or end with one line (exit 2) if it cannot hold files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe, name = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(probe)
        os.unlink(name)
    except OSError as e:
        cli.fail(f"cannot write to the output directory {out}: {e.strerror or e}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # a non-UTF-8 terminal gets '?' for α, √, ·
        sys.stdout.reconfigure(errors="replace")
    prepare_out(args.out)
    results = compute(args.epochs)
    report(results, args.epochs)
    try:
        save(args.out, results, args.epochs)
    except OSError as e:
        cli.fail(f"cannot write to the output directory {args.out}: {e.strerror or e}")
    print(f"wrote trajectories.csv, trajectories.json and optimizers_quadratic.png to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
