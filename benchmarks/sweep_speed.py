"""Wall time of N seeds trained as one vmapped program vs N sequential runs (vs P processes).

    python benchmarks/sweep_speed.py [--n 1,4,16,64] [--epochs 2] [--train-limit 4096] [--depth 7]
                                     [--processes 2] [--proc-chunk 1] [--threads 1]

Random uint8 images of Fashion-MNIST's shape stand in for the data (speed does not depend on pixel
values). For every N, the seconds for all N members to finish one epoch (training + validation
on ``--val-limit`` images), median over ``--epochs`` timed epochs after a warm-up epoch that
compiles:

- vmap: the sweep program (``vgjax.sweep.SweepProgram``) on all N seeds at once, this process;
- sequential: N single runs one after another, each its jitted ``Engine.epoch`` and
  ``Engine.evaluate`` (compiled once, as ``vgjax.train.engine.fit`` does), this process;
- processes (CPU only, ``--processes P``): the N seeds split over P worker processes pinned to
  one core each, each running its share through the sweep program in chunks of ``--proc-chunk``
  (what ``experiments.sweep`` does on a CPU).

The ratios are sequential / vmap and sequential / processes (> 1: faster than sequential).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def random_arrays(n: int, n_val: int):
    import numpy as np

    from vgjax.sweep import Arrays

    rng = np.random.default_rng(0)
    return Arrays(rng.integers(0, 256, (n, 784), np.uint8), rng.integers(0, 10, n).astype(np.int32),
                  rng.integers(0, 256, (n_val, 784), np.uint8), rng.integers(0, 10, n_val).astype(np.int32))


def make_config(args):
    from vgjax.config import Config

    return Config(depth=args.depth, width=args.width, batch_size=args.batch_size, diagnostics=False)


def timed(epoch_fn, epochs: int) -> float:
    """Median seconds of ``epoch_fn()`` (which blocks until done) after one warm-up call."""
    epoch_fn()
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        epoch_fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def chunked_epoch(config, arrays, seeds: list[int], chunk: int):
    """A function running one epoch of every chunk of ``seeds`` through the sweep program."""
    import jax

    from vgjax.sweep import SweepProgram, SweepSpec, pad_members

    program = SweepProgram.build(config)
    members = SweepSpec(config, seeds=tuple(seeds)).members()
    data = program.replicate(arrays)
    size = min(chunk, len(seeds))
    states = [program.init(program.shard(pad_members({k: v[i:i + size] for k, v in members.items()}, size)))
              for i in range(0, len(seeds), size)]

    def run():
        for i, st in enumerate(states):
            states[i], m = program.epoch(st, *data)
        jax.block_until_ready(m)

    return run


def sequential_epoch(config, arrays, seeds: list[int]):
    """A function running one epoch (train + evaluate) of N single runs, one after another."""
    import jax

    from vgjax.nn.models import build_model
    from vgjax.optim.registry import make_optimizer
    from vgjax.train.engine import DeviceData, create_train_state, make_engine

    model, tx = build_model(config), make_optimizer(config)
    engine = make_engine(config, model, tx)
    data = DeviceData.from_numpy(*arrays)
    epoch, evaluate = jax.jit(engine.epoch, donate_argnums=(0,)), jax.jit(engine.evaluate)
    states = [create_train_state(model, tx, jax.random.PRNGKey(k)) for k in seeds]

    def run():
        for i, st in enumerate(states):
            states[i], _ = epoch(st, data.x_train, data.y_train)
            val = evaluate(states[i], data.x_test, data.y_test)
        jax.block_until_ready(val)

    return run


def _proc_worker(barrier, core: int, config, arrays, seeds: list[int], chunk: int, epochs: int) -> None:
    from vgjax import runtime

    runtime.pin_cpu_threads(1, cores=[core])
    run = chunked_epoch(config, arrays, seeds, chunk)
    run()  # warm-up: compile
    for _ in range(epochs):
        barrier.wait()
        run()
        barrier.wait()


def processes_epoch(config, arrays, n: int, procs: int, chunk: int, epochs: int, cores: list[int]) -> float:
    """Median epoch wall time of n seeds split over ``procs`` single-core worker processes."""
    import numpy as np

    ctx = multiprocessing.get_context("spawn")
    groups = [g.tolist() for g in np.array_split(np.arange(n), min(procs, n))]
    barrier = ctx.Barrier(len(groups) + 1)
    workers = [ctx.Process(target=_proc_worker, daemon=True,
                           args=(barrier, cores[w % len(cores)], config, arrays, g, chunk, epochs))
               for w, g in enumerate(groups)]
    for w in workers:
        w.start()
    times = []
    try:
        for _ in range(epochs):
            barrier.wait(timeout=3600)  # the first wait includes the workers' start and compile
            t = time.perf_counter()
            barrier.wait(timeout=3600)
            times.append(time.perf_counter() - t)
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.terminate()
    return statistics.median(times)


def device_line(cores: list[int]) -> str:
    from vgjax import runtime

    info = runtime.device_description()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    return (f"device: {info['platform']} ({info['device_kind']}) x{info['device_count']}, jax "
            f"{info['jax_version']}, cpu '{cpu}', usable cores {cores} (this process on "
            f"{info['cpu_affinity']}), "
            f"load average {os.getloadavg()[0]:.2f}")


def _fmt(seconds: float | None, width: int = 9) -> str:
    return f"{'-':>{width}}" if seconds is None else f"{seconds:>{width}.3f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{'-':>9}" if a is None or b is None else f"{a / b:>9.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", default="1,4,16,64", help="comma-separated numbers of seeds")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (median reported)")
    p.add_argument("--train-limit", type=int, default=4096, help="training images per epoch")
    p.add_argument("--val-limit", type=int, default=1000, help="validation images per epoch")
    p.add_argument("--depth", type=int, default=7)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="CPU cores for this process' XLA (0: all)")
    p.add_argument("--processes", type=int, default=None,
                   help="worker processes for the third column (default: usable cores on CPU, 0 elsewhere)")
    p.add_argument("--modes", default="vmap,seq,proc", help="columns to measure: vmap, seq, proc")
    p.add_argument("--proc-chunk", type=int, default=None,
                   help="members per vmapped chunk in each worker (default: vgjax.sweep.CPU_CHUNK)")
    args = p.parse_args()
    ns = [int(v) for v in args.n.split(",")]
    cores = sorted(os.sched_getaffinity(0))
    from vgjax import runtime

    runtime.pin_cpu_threads(args.threads)
    import jax

    from vgjax.sweep import CPU_CHUNK

    cpu = jax.default_backend() == "cpu"
    procs = (len(cores) if cpu else 0) if args.processes is None else args.processes
    chunk = args.proc_chunk or CPU_CHUNK
    config, arrays = make_config(args), random_arrays(args.train_limit, args.val_limit)
    print(device_line(cores))
    print(f"model: {args.depth} hidden x {args.width}, batch {args.batch_size}, {args.train_limit} train + "
          f"{args.val_limit} val images per epoch; median of {args.epochs} timed epochs after a warm-up")
    modes = set(args.modes.split(","))
    if not procs:
        modes.discard("proc")
    print(f"\n{'N':>4} {'vmap s':>9} {'seq s':>9} {'seq/vmap':>9} {f'{procs} proc s':>10} {'seq/proc':>9}"
          f"  (seconds per epoch, all N members; proc: chunks of {chunk})")
    for n in ns:
        seeds = list(range(n))
        runs = {"vmap": lambda: timed(chunked_epoch(config, arrays, seeds, n), args.epochs),
                "seq": lambda: timed(sequential_epoch(config, arrays, seeds), args.epochs),
                "proc": lambda: processes_epoch(config, arrays, n, procs, chunk, args.epochs, cores)}
        t = {mode: run() if mode in modes else None for mode, run in runs.items()}
        print(f"{n:>4} {_fmt(t['vmap'])} {_fmt(t['seq'])} {_ratio(t['seq'], t['vmap'])} {_fmt(t['proc'], 10)} "
              f"{_ratio(t['seq'], t['proc'])}", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
