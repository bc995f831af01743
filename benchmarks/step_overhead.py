"""The per-step cost of training at batch 32, and what lowers it (docs/design.md, "The
launch-bound step").

    python benchmarks/step_overhead.py [--points 1x1,1x4,8x1,8x8] [--epochs 3] [--train-limit N]
                                       [--method baseline_7] [--xla-flags FLAGS ...] [--json FILE]

At batch 32 one step of the study's nets is a few small matrix products: on a GPU the time of a
step is the time to launch its kernels, not to compute them. Each point ``MxU`` times the sweep
program (:class:`vgjax.sweep.SweepProgram`) of ``--method`` vmapped over M members, with the
epoch's scan unrolled U steps per loop iteration (``Engine.unroll``): the median epoch time over
``--epochs`` epochs after a warm-up epoch that compiles, in µs per step and per member-step, and
its ratio to the first point. Every point's metrics are compared with the first point's members
(the unroll changes the loop, not the steps). ``--xla-flags`` repeats the first point in a
subprocess per flag set (e.g. ``--xla_gpu_enable_command_buffer=`` turns XLA's command buffers
off) to show what they do. Random uint8 images of Fashion-MNIST's shape stand in for the data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_points(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in p.split("x")) for p in text.split(",")]


def measure(method: str, members: int, unroll: int, epochs: int, train_limit: int) -> dict:
    import jax
    import numpy as np

    from benchmarks.sweep_speed import random_arrays
    from vgjax import sweep
    from vgjax.methods import get_config

    config = get_config(method, diagnostics=False)
    program = sweep.SweepProgram.build(config, jax.local_devices()[:1])
    program = dataclasses.replace(program, engine=dataclasses.replace(program.engine, unroll=unroll))
    arrays = program.replicate(random_arrays(train_limit, 2000))
    spec = sweep.SweepSpec(config, seeds=tuple(range(members)))
    states = program.init(program.shard(spec.members()))
    times, metrics = [], None
    for e in range(epochs + 1):
        t0 = time.perf_counter()
        states, metrics = program.epoch(states, *arrays)
        metrics = jax.device_get(metrics)
        if e:
            times.append(time.perf_counter() - t0)
    steps = -(-train_limit // config.batch_size)
    epoch_s = statistics.median(times)
    return {"members": members, "unroll": unroll, "epoch_s": epoch_s, "step_us": 1e6 * epoch_s / steps,
            "member_step_us": 1e6 * epoch_s / steps / members, "steps": steps,
            "loss": np.asarray(metrics["loss"]).tolist(), "val_loss": np.asarray(metrics["val_loss"]).tolist()}


def subprocess_point(args, flags: str) -> dict | None:
    m, u = parse_points(args.points)[0]
    cmd = [sys.executable, __file__, "--points", f"{m}x{u}", "--epochs", str(args.epochs), "--method",
           args.method, "--train-limit", str(args.train_limit), "--child"]
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        print(f"XLA_FLAGS {flags!r}: failed: {r.stderr.strip().splitlines()[-1:]}")
        return None
    return {**json.loads(r.stdout.strip().splitlines()[-1]), "xla_flags": flags}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--points", default="1x1,1x4,8x1,8x8", help="MxU: M members, scan unrolled U steps")
    p.add_argument("--method", default="baseline_7")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-limit", type=int, default=60000)
    p.add_argument("--xla-flags", action="append", default=[], help="repeat the first point with these XLA_FLAGS")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        m, u = parse_points(args.points)[0]
        print(json.dumps(measure(args.method, m, u, args.epochs, args.train_limit)))
        return
    from vgjax.runtime import device_description, device_text

    rows = [measure(args.method, m, u, args.epochs, args.train_limit) for m, u in parse_points(args.points)]
    rows += [r for r in (subprocess_point(args, f) for f in args.xla_flags) if r]
    base = rows[0]
    print(f"{args.method}, batch 32, {base['steps']} steps per epoch; {device_text(device_description())}")
    print(f"{'members':>7} {'unroll':>6} {'xla flags':<36} {'epoch s':>8} {'µs/step':>8} {'µs/member-step':>14} "
          f"{'vs first':>8} {'max rel diff':>12}")
    for r in rows:
        k = min(len(r["loss"]), len(base["loss"]))
        diff = max(abs(a - b) / abs(b) for key in ("loss", "val_loss") for a, b in zip(r[key][:k], base[key][:k]))
        r["max_rel_diff_vs_first"] = diff
        print(f"{r['members']:>7} {r['unroll']:>6} {r.get('xla_flags', ''):<36} {r['epoch_s']:>8.3f} "
              f"{r['step_us']:>8.1f} {r['member_step_us']:>14.2f} {base['step_us'] / r['step_us']:>7.2f}x "
              f"{diff:>12.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_description("highest"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
