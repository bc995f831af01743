"""Seconds per training epoch of the 3-, 5- and 7-layer models, against the machine's matmul peak.

    python benchmarks/epoch_speed.py [--epochs 5] [--threads 1] [--depths 3,5,7] [--batch-sizes 32,512]

Times whole scanned epochs of the real engine (60,000 examples of Fashion-MNIST's shape; the
numbers do not depend on pixel values, so random uint8 images stand in), reports the median over
``--epochs`` timed epochs after one warm-up (compile) epoch, the achieved GFLOP/s of the matrix
products, and the ratio to a large float32 matmul's GFLOP/s measured in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def training_flops(depth: int, width: int, n: int) -> float:
    """Multiply-add FLOPs of one epoch: forward, weight gradients, input gradients (not layer 1)."""
    dims = [784] + [width] * depth + [10]
    per_layer = [2 * a * b for a, b in zip(dims[:-1], dims[1:])]
    return n * (2 * sum(per_layer) + sum(per_layer[1:]))


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times) / 1e9


def time_epochs(depth: int, batch_size: int, epochs: int, n: int = 60000, diagnostics: bool = False) -> float:
    import jax
    import numpy as np

    from vgjax.config import Config
    from vgjax.nn.models import build_model
    from vgjax.optim.registry import make_optimizer
    from vgjax.train.engine import DeviceData, create_train_state, make_engine

    cfg = Config(depth=depth, batch_size=batch_size, diagnostics=diagnostics)
    model, tx = build_model(cfg), make_optimizer(cfg)
    diag = None
    if diagnostics:
        from vgjax.train import diagnostics as diag_lib

        diag = diag_lib.make_epoch_diagnostics(cfg)
    engine = make_engine(cfg, model, tx, diagnostics=diag)
    rng = np.random.default_rng(0)
    data = DeviceData.from_numpy(rng.integers(0, 256, (n, 784), np.uint8), rng.integers(0, 10, n),
                                 rng.integers(0, 256, (10000, 784), np.uint8), rng.integers(0, 10, 10000))
    state = create_train_state(model, tx, jax.random.PRNGKey(0))
    epoch = jax.jit(engine.epoch, donate_argnums=(0,))
    state, m = epoch(state, data.x_train, data.y_train)
    jax.block_until_ready(m)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        state, m = epoch(state, data.x_train, data.y_train)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per setting (median reported)")
    p.add_argument("--threads", type=int, default=1, help="CPU cores for XLA (0: all)")
    p.add_argument("--depths", default="3,5,7")
    p.add_argument("--batch-sizes", default="32,512")
    p.add_argument("--diagnostics", action="store_true", help="also time epochs with diagnostics on")
    args = p.parse_args()
    from vgjax import runtime

    runtime.pin_cpu_threads(args.threads)
    info = runtime.device_description()
    peak = matmul_peak()
    print(f"device: {info['platform']} ({info['device_kind']}), jax {info['jax_version']}, "
          f"cpu affinity {info['cpu_affinity']}")
    print(f"matmul peak (2048x2048 float32, same process): {peak:.1f} GFLOP/s\n")
    header = f"{'depth':>5} {'batch':>5} {'s/epoch':>8} {'GFLOP/s':>8} {'% peak':>7}"
    if args.diagnostics:
        header += f" {'s/epoch+diag':>13} {'diag cost':>9}"
    print(header)
    for depth in [int(d) for d in args.depths.split(",")]:
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            t = time_epochs(depth, bs, args.epochs)
            gflops = training_flops(depth, 128, 60000) / t / 1e9
            line = f"{depth:>5} {bs:>5} {t:>8.3f} {gflops:>8.2f} {100 * gflops / peak:>6.1f}%"
            if args.diagnostics:
                td = time_epochs(depth, bs, args.epochs, diagnostics=True)
                line += f" {td:>13.3f} {100 * (td / t - 1):>8.1f}%"
            print(line, flush=True)


if __name__ == "__main__":
    main()
