"""The optimizer quadratic of docs/study.md §5, first part: f(w) = 0.1·w1² + 2·w2² from (−5, −2)
with the four from-scratch optimizers (one update per epoch).

:func:`compute` runs them (the maths lives in :mod:`vgjax.optim.scratch`), :func:`detail_table` and :func:`summary_table`
hold every intermediate quantity of the first epochs and the final points, :func:`save` writes
``trajectories.csv``, ``trajectories.json`` and ``optimizers_quadratic.png``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from rich import box
from rich.table import Table

from vgjax.optim import scratch
from vgjax.report.figures import contour_png
from vgjax.files import atomic_write_bytes

DETAIL_EPOCHS = 2

TITLES = {
    "scratch_gd": "Gradient descent",
    "scratch_momentum": "GD + momentum",
    "scratch_rmsprop": "RMSProp",
    "scratch_adam": "Adam",
}
SYMBOLS = {"learning_rate": "α", "beta": "β", "gamma": "γ", "b1": "β1", "b2": "β2", "eps": "ε"}
# quantity in a vgjax.optim.scratch record -> (row label, how it is computed)
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


# --------------------------------------------------------------------------- computing

def compute(epochs: int) -> dict[str, dict]:
    """Per optimizer: the study's hyper-parameters, the numpy trajectory and the optax form's deviation."""
    results = {}
    for name, hp in scratch.STUDY_HPARAMS.items():
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

def legend_labels(results: dict[str, dict]) -> dict[str, str]:
    """The figure's legend text per optimizer: its title and hyper-parameters."""
    return {name: f"{TITLES[name]} ({hp_text(r['hparams'])})" for name, r in results.items()}


def save(out: Path, results: dict[str, dict], epochs: int) -> None:
    """The three output files, each written atomically."""
    atomic_write_bytes(out / "trajectories.csv", trajectories_csv(results).encode())
    text = json.dumps(trajectories_json(results, epochs), indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(out / "trajectories.json", text.encode())
    atomic_write_bytes(out / "optimizers_quadratic.png", contour_png(results, legend_labels(results)))
