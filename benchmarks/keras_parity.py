"""vgjax against the original Keras code, each with seeds of its own: metrics of epochs 1 and 5.

    python benchmarks/keras_parity.py [--seeds 5] [--epochs 5] [--methods a,b] [--out DIR]

For every model and remedy of the study (docs/study.md "The models" and "The remedies"), N
seeds of vgjax (its own initialisation and shuffling, ``experiments.run``'s engine) and N seeds of
the original Keras code (``keras.Model.fit``, batch 32, pixels ``x / 255``, the test set as
validation data) train on the full data. The Keras side gets a new order every epoch from
:func:`keras_epoch_orders`: with a global seed set, ``fit(shuffle=True)`` repeats its first
epoch's order in every epoch (its per-epoch iterator re-creates the seeded shuffle), which lowers
BatchNorm's training-mode loss (docs/results.md, "Parity with Keras"). The table gives mean ± std of loss, accuracy,
val_loss and val_accuracy at epochs 1 and the last, and a verdict per row:

    within spread  |mean_vgjax - mean_keras| <= 2 * sqrt((std_vgjax^2 + std_keras^2) / 2) + 0.002

(two pooled standard deviations: the spread one seed has around its mean; the 0.002 floor lets
runs that sit at chance, std 0, agree). Writes ``report.md`` and ``metrics.json`` to ``--out``
(default docs/results/keras_parity). Needs TensorFlow (the ``tfds`` extra installs it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

METHODS = ["baseline_3", "baseline_5", "baseline_7", "weight_std_1", "weight_std_10", "relu", "tanh",
           "adam", "batchnorm", "custom_norm", "skip"]
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
FLOOR = 0.002


def vgjax_histories(method: str, seeds: list[int], epochs: int, arrays) -> list[list[dict]]:
    from vgjax.train import keys
    from vgjax.methods import get_config
    from vgjax.nn.models import build_model
    from vgjax.optim.registry import make_optimizer
    from vgjax.train.engine import DeviceData, create_train_state, fit, make_engine

    data = DeviceData.from_numpy(arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test)
    out = []
    for seed in seeds:
        config = get_config(method, seed=seed, epochs=epochs)
        model, tx = build_model(config), make_optimizer(config)
        state = create_train_state(model, tx, keys.seed_key(seed))
        out.append(fit(make_engine(config, model, tx), state, data, epochs).history)
    return out


def keras_epoch_orders(seed: int, n: int, epochs: int) -> list[np.ndarray]:
    """The Keras side's example order of every epoch: a new permutation each epoch, from the seed."""
    rng = np.random.default_rng(1000 + seed)
    return [rng.permutation(n) for _ in range(epochs)]


def keras_histories(method: str, seeds: list[int], epochs: int, arrays, batch_size: int | None = None,
                    pixels: str = "scaled") -> list[list[dict]]:
    """The original Keras code's histories; ``batch_size`` (default: the method's) and ``pixels``
    ("scaled": x / 255, "raw": 0-255) as vgjax's Config fields."""
    from vgjax.methods import get_config
    from tests import keras_reference as kr

    divisor = 255.0 if pixels == "scaled" else 1.0
    x, xt = arrays.x_train / divisor, arrays.x_test / divisor  # as the original: float64, cast by Keras
    out = []
    for seed in seeds:
        config = get_config(method, batch_size=batch_size, pixels=pixels)
        kr.seed(1000 + seed)  # Keras' own initialisation
        model = kr.compile_model(kr.build(config), config)
        hist = []
        for perm in keras_epoch_orders(seed, len(x), epochs):
            h = model.fit(x[perm], arrays.y_train[perm], batch_size=config.batch_size, epochs=1, shuffle=False,
                          validation_data=(xt, arrays.y_test), verbose=0).history
            hist.append({m: float(h[m][0]) for m in METRICS})
        out.append(hist)
    return out


def stats(histories: list[list[dict]], epoch: int, metric: str) -> tuple[float, float]:
    values = np.array([h[epoch - 1][metric] for h in histories], np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def within(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) <= 2 * math.sqrt((a[1] ** 2 + b[1] ** 2) / 2) + FLOOR


def report(results: dict, epochs_shown: list[int], n_seeds: int, device: str, wall: float,
           reused: bool = False) -> str:
    command = f"python benchmarks/keras_parity.py --seeds {n_seeds} --epochs {max(epochs_shown)}"
    how = (f"`{command} --reuse-vgjax` on {device} in {wall / 60:.1f} min (Keras side; the vgjax side is the "
           "previous run's, kept in metrics.json)") if reused else f"`{command}` on {device} in {wall / 60:.1f} min"
    lines = [f"# vgjax against the original Keras code ({n_seeds} seeds each)", "",
             f"Generated by {how}. Each side uses its own initialisation and a new shuffle every epoch; batch 32, "
             "full data, the test set as validation. Cells: mean ± std over seeds, vgjax / Keras. "
             f"Verdict: *within spread* when |Δmean| ≤ 2 pooled std + {FLOOR} for every metric of the row.", ""]
    head = "| method | epoch | " + " | ".join(METRICS) + " | verdict |"
    lines += [head, "|" + "---|" * (len(METRICS) + 3)]
    for method, (vg, ke) in results.items():
        for epoch in epochs_shown:
            cells, ok = [], True
            for m in METRICS:
                a, b = stats(vg, epoch, m), stats(ke, epoch, m)
                ok = ok and within(a, b)
                cells.append(f"{a[0]:.3f} ± {a[1]:.3f} / {b[0]:.3f} ± {b[1]:.3f}")
            lines.append(f"| {method} | {epoch} | " + " | ".join(cells) + f" | {'within spread' if ok else '**differs**'} |")
    return "\n".join(lines) + "\n"


def regenerate(out: Path) -> str:
    """report.md of ``out`` again from its metrics.json (no training)."""
    saved = json.loads((out / "metrics.json").read_text())
    results = {m: (r["vgjax"], r["keras"]) for m, r in saved["runs"].items()}
    text = report(results, sorted({1, saved["epochs"]}), saved["seeds"], saved["device"], saved["wall_time_s"],
                  saved.get("vgjax_reused", False))
    (out / "report.md").write_text(text)
    return text


def previous_vgjax(out: Path, args) -> dict:
    """The vgjax histories of ``out``'s metrics.json, when its seeds and epochs are the ones asked for."""
    saved = json.loads((out / "metrics.json").read_text())
    if (saved["seeds"], saved["epochs"]) != (args.seeds, args.epochs):
        sys.exit(f"error: --reuse-vgjax: {out}/metrics.json has {saved['seeds']} seeds x {saved['epochs']} epochs")
    return {m: r["vgjax"] for m, r in saved["runs"].items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "keras_parity"))
    p.add_argument("--report-only", action="store_true", help="rewrite report.md of --out from its metrics.json")
    p.add_argument("--reuse-vgjax", action="store_true",
                   help="take the vgjax side from --out's metrics.json (same seeds and epochs); train only Keras")
    args = p.parse_args(argv)
    if args.report_only:
        print(regenerate(Path(args.out)))
        return 0
    from vgjax import data, runtime
    from vgjax.run import rundir as runlog
    from vgjax import files

    runtime.pin_cpu_threads(1)  # one core for each framework's kernels: both sides alike
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    arrays = data.load()
    seeds = list(range(args.seeds))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = runtime.device_text(runtime.device_description())
    previous = previous_vgjax(out, args) if args.reuse_vgjax else {}
    results, raw, t0 = {}, {}, time.perf_counter()
    for method in args.methods.split(","):
        t = time.perf_counter()
        vg = previous[method] if method in previous else vgjax_histories(method, seeds, args.epochs, arrays)
        ke = keras_histories(method, seeds, args.epochs, arrays)
        results[method], raw[method] = (vg, ke), {"vgjax": vg, "keras": ke}
        print(f"{method}: {time.perf_counter() - t:.0f} s", flush=True)
        wall = time.perf_counter() - t0
        text = report(results, sorted({1, args.epochs}), args.seeds, device, wall, bool(previous))
        files.atomic_write_json(out / "metrics.json", {"seeds": args.seeds, "epochs": args.epochs,
                                                        "wall_time_s": wall, "device": device, "runs": raw,
                                                        "vgjax_reused": bool(previous)})
        files.atomic_write_text(out / "report.md", text)  # after every method: a partial run keeps its rows
    print(report(results, sorted({1, args.epochs}), args.seeds, device, time.perf_counter() - t0, bool(previous)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
