"""Seconds per epoch spent outside the jitted epoch with synchronous vs asynchronous checkpoints.

    python benchmarks/checkpoint_overhead.py [--epochs 12] [--repeats 2] [--depth 7] [--threads 1]

A run (``vgjax.run.runner.run``) that saves a checkpoint every epoch (``checkpoint_every=1``) and a
best-model checkpoint every epoch too (monitoring the training loss, which falls every epoch
here), on random images of Fashion-MNIST's shape (``--train-limit`` of them: the checkpoint cost
does not depend on the data). Per epoch k, the time outside the jitted epoch is the wall time
between the ends of epochs k and k+1 minus epoch k+1's own ``epoch_time_s`` (its jitted epoch,
evaluation and metrics fetch): the history row, the checkpoint saves and the hooks. Reported:
its median over the epochs (the first left out), the median ``epoch_time_s`` (a background
writer may slow the epoch it overlaps) and their sum, for no checkpoints, synchronous and
asynchronous saves, each mode run ``--repeats`` times, interleaved, in one process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = {"none": dict(checkpoint_every=0, best_checkpoint=False),
         "sync": dict(checkpoint_every=1, best_checkpoint=True, async_checkpoints=False),
         "async": dict(checkpoint_every=1, best_checkpoint=True, async_checkpoints=True)}


def one_run(config, data, workdir: Path) -> tuple[list[float], list[float]]:
    """(seconds outside the jitted epoch, epoch_time_s) per epoch after the first of one run."""
    from vgjax.run import callbacks
    from vgjax.train.hooks import Hook
    from vgjax.run.rundir import RunDir
    from vgjax.run.runner import run

    ends: list[float] = []

    class Clock(Hook):
        def on_epoch_end(self, record, state, engine=None):
            ends.append(time.perf_counter())

    rd = RunDir(workdir)
    rd.create(config.to_dict())
    result = run(config, rd, data, hooks=[Clock(), *callbacks.hooks_for(config, rd)])
    times = [r["epoch_time_s"] for r in result.history]
    outside = [ends[k + 1] - ends[k] - times[k + 1] for k in range(1, len(ends) - 1)]
    return outside, times[2:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--depth", type=int, default=7)
    p.add_argument("--train-limit", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1, help="CPU cores for XLA (0: all)")
    args = p.parse_args()
    from vgjax import runtime

    runtime.pin_cpu_threads(args.threads)
    import numpy as np

    from vgjax.config import Config
    from vgjax.train.engine import DeviceData

    rng = np.random.default_rng(0)
    n = args.train_limit
    data = DeviceData.from_numpy(rng.integers(0, 256, (n, 784), np.uint8), rng.integers(0, 10, n),
                                 rng.integers(0, 256, (2000, 784), np.uint8), rng.integers(0, 10, 2000))
    base = Config(depth=args.depth, epochs=args.epochs, lr=0.05, monitor="loss", diagnostics=False)
    outside: dict[str, list[float]] = {m: [] for m in MODES}
    inside: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode, changes in MODES.items():
                o, i = one_run(base.replace(**changes), data, Path(tmp) / f"{mode}-{r}")
                outside[mode] += o
                inside[mode] += i
    print(f"device: {runtime.device_text(runtime.device_description())}; depth {args.depth}, width 128, "
          f"{n} images, {args.epochs} epochs x {args.repeats} runs per mode, a checkpoint and a best "
          f"checkpoint every epoch")
    print(f"{'mode':<6} {'outside s/epoch':>16} {'epoch_time_s':>13} {'sum':>8}")
    med = {m: (statistics.median(outside[m]), statistics.median(inside[m])) for m in MODES}
    for m, (o, i) in med.items():
        print(f"{m:<6} {o:>16.4f} {i:>13.4f} {o + i:>8.4f}")
    so, ao = med["sync"][0] - med["none"][0], med["async"][0] - med["none"][0]
    print(f"checkpoint cost outside the epoch (minus no checkpoints): sync {so:.4f} s, async {ao:.4f} s "
          f"(async/sync {ao / so:.2f}); whole epoch async/sync {sum(med['async']) / sum(med['sync']):.2f}")


if __name__ == "__main__":
    main()
