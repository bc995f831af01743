"""Where a training step's time goes: a ``jax.profiler`` trace of a few epochs of the sweep program,
summarised as kernels (device ops) per step and their times (docs/design.md, "The launch-bound
step").

    python benchmarks/step_profile.py [--method baseline_7] [--members 1,128] [--multi] [--steps 20]
                                      [--out DIR] [--json FILE]

For every member count: the program (``SweepProgram`` of ``--method``, or with ``--multi`` the
one program of the study's batch-32 methods, :mod:`vgjax.sweep.multi`) trains one epoch of
``--steps`` steps to compile, then one traced epoch. From the trace's Perfetto JSON: per
process (on a GPU the device's streams, on a CPU the host's XLA threads) the events per step, the
busy time per step (the sum of event durations; on a device, the kernels' time) and the
epoch's wall time per step; and the most expensive op names. Random images stand in for the data.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STUDY = ("baseline_3", "baseline_5", "baseline_7", "weight_std_1", "weight_std_10", "relu", "tanh", "adam",
         "batchnorm", "custom_norm", "skip", "sigmoid_beta", "sigmoid_modgrad")


def program_and_members(method: str, members: int, multi: bool):
    import jax

    from vgjax import sweep
    from vgjax.methods import get_config
    from vgjax.sweep.multi import MultiProgram, MultiSpec

    device = jax.local_devices()[:1]
    if multi:
        configs = {m: get_config(m, diagnostics=False) for m in STUDY}
        spec = MultiSpec.of(configs, tuple(range(-(-members // len(STUDY)))))
        hp = {k: v[:members] for k, v in spec.members().items()}
        return MultiProgram.of(spec, device), hp
    config = get_config(method, diagnostics=False)
    return sweep.SweepProgram.build(config, device), sweep.SweepSpec(config, seeds=tuple(range(members))).members()


def trace_file(log_dir: Path) -> Path:
    found = sorted(log_dir.rglob("*.trace.json.gz")) + sorted(log_dir.rglob("perfetto_trace.json.gz"))
    if not found:
        raise SystemExit(f"no trace written under {log_dir}")
    return found[0]


def summarise(path: Path, steps: int, top: int = 12) -> dict:
    trace = json.loads(gzip.open(path).read())
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    per = collections.defaultdict(lambda: {"events": 0, "busy_us": 0.0, "ops": collections.Counter()})
    for e in events:
        if e.get("ph") != "X" or str(e.get("name", "")).startswith("$"):  # "$...": Python's own frames
            continue
        p = per[names.get(e["pid"], str(e["pid"]))]
        p["events"] += 1
        p["busy_us"] += float(e.get("dur", 0))
        p["ops"][e.get("name", "?")] += float(e.get("dur", 0))
    return {name: {"events_per_step": p["events"] / steps, "busy_us_per_step": p["busy_us"] / steps,
                   "top_ops_us_per_step": [(n, t / steps) for n, t in p["ops"].most_common(top)]}
            for name, p in per.items()}


def profile(method: str, members: int, multi: bool, steps: int, out: Path) -> dict:
    import jax

    from benchmarks.sweep_speed import random_arrays

    program, hp = program_and_members(method, members, multi)
    batch = program.config.batch_size
    arrays = program.replicate(random_arrays(steps * batch, 2 * batch))
    states = program.init(program.shard(hp))
    states, metrics = program.epoch(states, *arrays)  # compiles
    jax.block_until_ready(metrics)
    log_dir = out / f"{'multi' if multi else method}-{members}"
    with jax.profiler.trace(str(log_dir), create_perfetto_trace=True):
        t0 = time.perf_counter()
        states, metrics = program.epoch(states, *arrays)
        jax.block_until_ready(metrics)
        wall = time.perf_counter() - t0
    return {"program": "multi" if multi else method, "members": members, "steps": steps,
            "wall_us_per_step": 1e6 * wall / steps, "processes": summarise(trace_file(log_dir), steps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="baseline_7")
    p.add_argument("--members", default="1,128")
    p.add_argument("--multi", action="store_true", help="also the one program of the study's batch-32 methods")
    p.add_argument("--steps", type=int, default=20, help="training steps of the traced epoch")
    p.add_argument("--out", default=None, help="keep the traces here (default: a temporary directory)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from vgjax.runtime import device_description, device_text

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="step_profile-"))
    rows = []
    for multi in (False, True) if args.multi else (False,):
        for m in (int(v) for v in args.members.split(",")):
            rows.append(profile(args.method, m, multi, args.steps, out))
    print(f"one traced epoch of {args.steps} steps, batch 32; {device_text(device_description())}")
    for r in rows:
        print(f"\n## {r['program']}, {r['members']} member(s): {r['wall_us_per_step']:.1f} µs per step (wall)")
        for name, s in sorted(r["processes"].items(), key=lambda kv: -kv[1]["busy_us_per_step"])[:4]:
            print(f"  {name}: {s['events_per_step']:.1f} events per step, {s['busy_us_per_step']:.1f} µs busy per step")
            for op, t in s["top_ops_us_per_step"][:8]:
                print(f"      {t:9.2f} µs  {op[:90]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_description("highest"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
