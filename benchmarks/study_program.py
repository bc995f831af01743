"""The whole study × N seeds end to end on the device present: the one-program path (the methods
that can share a program as one vmapped program, :mod:`vgjax.sweep.multi`) against today's
programs one after another (``experiments.suite --seeds``, :mod:`vgjax.sweep.seeds`), measured in
the same run (docs/design.md, "Methods as data").

    python benchmarks/study_program.py [--seeds 8] [--epochs 300] [--train-limit N] [--methods a,b,...]
                                       [--include-optimizers] [--repeat 1] [--chunk C] [--json FILE]

Both paths train every method × seed for its protocol (``--epochs E``; the staged schedule's
epochs scaled alike, as ``experiments.suite --epochs E`` does) in this process, on one device;
methods the one program cannot hold (the staged schedule, the optimizer exercise's batch 512)
are the same separate programs in both paths. Each path is timed end to end (compilation,
initialisation, every epoch and its host sync); ``--repeat R`` alternates the two paths R
times and reports medians. Printed: seconds per path, per member-epoch (weighted by steps per
epoch), and the ratio baseline / one program, for the shared part alone and for the whole
study; also whether the two paths' final validation accuracies agree per member.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROTOCOL_EPOCHS = 300


def study_configs(methods: list[str], epochs: int, train_limit: int | None) -> dict:
    from vgjax.methods import get_config

    configs = {}
    for m in methods:
        c = get_config(m, diagnostics=False, train_limit=train_limit)
        configs[m] = (c.replace(epochs_scale=epochs / PROTOCOL_EPOCHS) if c.stages is not None else c.replace(epochs=epochs))
    return configs


def split(configs: dict) -> tuple[dict, dict]:
    """(the methods one program holds: those that share baseline_7's program or the first
    method's, every other method)."""
    from vgjax.config import ConfigError
    from vgjax.sweep.multi import union_layout

    shared, rest = {}, {}
    for m, c in configs.items():
        try:
            union_layout({**shared, m: c})
            shared[m] = c
        except ConfigError:
            rest[m] = c
    return shared, rest


def steps(c) -> int:
    return -(-(c.train_limit or 60000) // c.batch_size)


def member_epochs(configs: dict, seeds: int) -> float:
    """Member-epochs in units of a batch-32 epoch (steps-weighted)."""
    from vgjax.train.stages import planned_epochs

    return sum(seeds * planned_epochs(c) * steps(c) for c in configs.values()) / max(
        steps(c.replace(batch_size=32)) for c in configs.values())


def run_programs(configs: dict, seeds: tuple[int, ...], arrays, chunk, device) -> tuple[float, dict]:
    """Today's path: the suite's programs one after another; (seconds, method -> final val acc per seed)."""
    from vgjax.sweep import seeds as seed_suite
    from vgjax import sweep

    t0 = _clock()
    final = {}
    for p in seed_suite.plan_programs(configs, seeds):
        res = sweep.run_sweep(p.spec, arrays, chunk=chunk, devices=[device])
        settings = p.spec.settings()
        for i in range(len(res.members["seed"])):
            method = settings[res.members["setting"][i]].get("method", p.methods[0])
            final.setdefault(method, []).append(float(res.history["val_accuracy"][i, -1]))
    return _since(t0), final


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since ``t0``: on a shared machine the process' CPU time is the steadier."""
    t = _clock()
    return t[0] - t0[0], t[1] - t0[1]


def run_one_program(shared: dict, seeds: tuple[int, ...], arrays, chunk, device) -> tuple[float, dict]:
    from vgjax.sweep.multi import MultiSpec, run_multi

    t0 = _clock()
    spec = MultiSpec.of(shared, seeds)
    epochs = next(iter(shared.values())).epochs
    members, history = run_multi(spec, arrays, epochs, chunk=chunk, devices=[device])
    final = {}
    for i, s in enumerate(members["setting"]):
        final.setdefault(spec.methods[s], []).append(float(history["val_accuracy"][i, -1]))
    return _since(t0), final


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--epochs", type=int, default=PROTOCOL_EPOCHS)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--methods", default=None, help="comma-separated (default: the suite's, experiments.suite)")
    p.add_argument("--include-optimizers", action="store_true", help="also the optimizer exercise's methods")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--chunk", type=int, default=None, help="members per chunk in both paths (default: the plan's)")
    p.add_argument("--paths", choices=("both", "one", "programs"), default="both",
                   help="one: only the one-program path (+ the others), e.g. the full protocol where today's "
                        "path does not fit the time; programs: only today's")
    p.add_argument("--threads", type=int, default=1, help="CPU cores (on a CPU; 0: XLA's default, every core)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.seeds < 1 or args.epochs < 1 or args.repeat < 1:
        p.error("--seeds, --epochs and --repeat must be >= 1")
    from vgjax.runtime import pin_cpu_threads

    pinned = pin_cpu_threads(args.threads)

    import jax

    from vgjax.methods import default_methods
    from vgjax import data, sweep
    from vgjax.config import ConfigError
    from vgjax.methods import METHODS
    from vgjax.runtime import device_description, device_text

    methods = args.methods.split(",") if args.methods else default_methods(args.include_optimizers)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown methods: {', '.join(unknown)}")
    try:
        configs = study_configs(methods, args.epochs, args.train_limit)
    except ConfigError as e:
        p.error(str(e))
    shared, rest = split(configs)
    seeds = tuple(range(args.seeds))
    a = data.load()
    arrays = sweep.Arrays(a.x_train, a.y_train, a.x_test, a.y_test)
    device = jax.local_devices()[0]
    times = {"programs_shared": [], "programs_rest": [], "one_program": []}
    agree = None
    nan = (float("nan"), float("nan"))
    for _ in range(args.repeat):
        t_shared, f_programs = (run_programs(shared, seeds, arrays, args.chunk, device) if args.paths != "one"
                                else (nan, {}))
        t_rest, _ = run_programs(rest, seeds, arrays, args.chunk, device) if rest else ((0.0, 0.0), {})
        t_one, f_one = (run_one_program(shared, seeds, arrays, args.chunk, device) if args.paths != "programs"
                        else (nan, {}))
        times["programs_shared"].append(t_shared)
        times["programs_rest"].append(t_rest)
        times["one_program"].append(t_one)
        diffs = [abs(x - y) for m in shared for x, y in zip(f_programs.get(m, []), f_one.get(m, []))]
        agree = (sum(d == 0 for d in diffs), len(diffs), max(diffs, default=float("nan")))
    med = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in times.items()}
    me_shared, me_all = member_epochs(shared, args.seeds), member_epochs(configs, args.seeds)
    add = lambda a, b: [x + y for x, y in zip(a, b)]  # noqa: E731
    base_all, one_all = add(med["programs_shared"], med["programs_rest"]), add(med["one_program"], med["programs_rest"])
    n_shared, n_rest = len(sweep_programs(shared, seeds)), len(sweep_programs(rest, seeds))
    print(f"The study × {args.seeds} seeds, {args.epochs} epochs (staged schedule scaled alike), "
          f"{args.train_limit or 60000} training images; {device_text(device_description())}"
          f"{f', pinned to core {pinned}' if pinned else ''}; median of {args.repeat} "
          f"run{'s' if args.repeat > 1 else ''}, end to end (compilation included)")
    print(f"one program: {len(shared)} methods ({', '.join(shared)}); "
          f"separate in both paths: {', '.join(rest) or 'none'}")
    print(f"{'path':<46} {'wall s':>8} {'CPU s':>8} {'member-epochs':>13} {'ms/member-epoch':>15} "
          f"{'baseline/this (wall, CPU)':>26}")
    rows = [(f"shared methods, {n_shared} programs one after another", med["programs_shared"], me_shared),
            ("shared methods, one program", med["one_program"], me_shared),
            (f"whole study, today's {n_shared + n_rest} programs", base_all, me_all),
            (f"whole study, one program + {n_rest} others", one_all, me_all)]
    for i, (name, (wall, cpu), me) in enumerate(rows):
        base = rows[i - i % 2][1]
        print(f"{name:<46} {wall:>8.1f} {cpu:>8.1f} {me:>13.0f} {1e3 * wall / me:>15.2f} "
              f"{base[0] / wall:>12.2f}x {base[1] / cpu:>12.2f}x")
    print(f"final val accuracy, one program vs programs: {agree[0]} of {agree[1]} members equal, "
          f"max |difference| {agree[2]:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_description("highest"), "args": vars(args),
                                               "shared": list(shared), "rest": list(rest), "times_s": times,
                                               "member_epochs": {"shared": me_shared, "all": me_all},
                                               "final_val_accuracy_equal": agree}, indent=1))


def sweep_programs(configs: dict, seeds) -> list:
    from vgjax.sweep import seeds as seed_suite

    return seed_suite.plan_programs(configs, seeds) if configs else []


if __name__ == "__main__":
    main()
