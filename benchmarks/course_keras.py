"""The original Keras code at one protocol for the course's epoch-1 figures (docs/results/course).

    python benchmarks/course_keras.py --batch-size 512 --pixels raw [--seeds 4] [--out DIR]

Trains the original models of exercises 3 (Adam), 4a (BatchNorm) and 5 (skip paths) with
``keras.Model.fit`` (benchmarks/keras_parity.py's ``keras_histories``: Keras' own initialisation
from seed 1000 + k, a new shuffle every epoch) for one epoch, N seeds, and writes the course
figure of each (val_accuracy for Adam, the training loss for the others) per seed to
``DIR/keras_b<batch>_<pixels>.csv``, which ``python -m experiments.course collect`` reads. Needs
TensorFlow (test-only dependency, the ``tfds`` extra).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vgjax.analysis.course import FIGURES  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--pixels", choices=("scaled", "raw"), required=True)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "course"))
    args = p.parse_args(argv)
    from vgjax import data, runtime

    runtime.pin_cpu_threads(1)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from benchmarks.keras_parity import keras_histories

    arrays = data.load()
    rows, t0 = [], time.perf_counter()
    for fig in (f for f in FIGURES if f.part == "epoch1"):
        hists = keras_histories(fig.method, list(range(args.seeds)), 1, arrays, args.batch_size, args.pixels)
        for seed, h in enumerate(hists):
            rows.append({"figure": fig.key, "batch_size": args.batch_size, "pixels": args.pixels, "seed": seed,
                         "value": f"{h[0][fig.metric]:.6f}"})
        print(f"{fig.method}: {[r['value'] for r in rows if r['figure'] == fig.key]} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    out = Path(args.out) / f"keras_b{args.batch_size}_{args.pixels}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out)  # complete or absent
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
