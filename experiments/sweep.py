"""python -m experiments.sweep --method baseline_7 --init-std 0.05,0.5,1,2,5,10 --seeds 8

Trains every (setting, seed) of a sweep -- the continuous values (init std, learning rate, beta)
vmapped as one compiled program, the discrete ones (methods, depth, width, activation, optimizer,
batch size) one program after another -- and writes to ``runs/sweeps/<name>/`` (or ``--out DIR``): config.json (first),
metrics.csv (per member and epoch), summary.json and summary.csv (per setting), and the figures
sweep_val_accuracy.png and sweep_loss.png. Every finished chunk is kept in chunks/ as it
completes, until those files are written, so that ``--resume`` continues an interrupted sweep. A staged method (freeze) runs
every stage as one program over the seeds. Seed k of a sweep is ``experiments.run --seed k``.
Several processes (of this machine or of many hosts): :mod:`experiments.sweep_hosts`.

Exit status: 0 done (diverged members are results: see the summary), 2 usage or data error, 4 a
process of a multi-process sweep lost, 130 interrupted (finished chunks kept for --resume in both).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from experiments import cli, faults, sweep_hosts
from experiments.run import list_methods
from vgjax import runtime
from vgjax.config import ConfigError
from vgjax.config import fields as config_fields
from vgjax.files import atomic_write_json
from vgjax.sweep.settings import DISCRETE, group_label, summary_table

sweep, sweep_files, callbacks, displays = map(cli.lazy, (  # loaded on first use
    "vgjax.sweep", "vgjax.sweep.files", "vgjax.run.callbacks", "experiments.progress"))

# Config fields swept, set by the sweep's own flags, or meaningless in a sweep; every other model,
# optimizer and protocol field has a single-valued flag
NOT_FIXED = (*DISCRETE, "init_std", "lr", "beta", "seed", "epochs", "train_limit")


# ----------------------------------------------------------------------------- arguments

def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.sweep", description=__doc__.split("\n\n")[1])
    p.add_argument("--method", "--methods", dest="method", type=cli.name_list, default=["baseline_7"],
                   help="method(s) to sweep, comma-separated (see experiments.run --list)")
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    p.add_argument("--init-std", type=cli.float_list, default=None, help="kernel init stds, e.g. 0.05,1,10")
    p.add_argument("--lr", type=cli.float_list, default=None, help="learning rates")
    p.add_argument("--beta", type=cli.float_list, default=None, help="beta of sigmoid_beta / sigmoid_modgrad")
    p.add_argument("--batch-size", type=cli.int_list, default=None, help="batch sizes (one program each)")
    p.add_argument("--depth", type=cli.int_list, default=None, help="numbers of hidden layers (one program each)")
    p.add_argument("--width", type=cli.int_list, default=None, help="units per hidden layer (one program each)")
    p.add_argument("--activation", type=cli.name_list, default=None, help="hidden activations (one program each)")
    p.add_argument("--optimizer", type=cli.name_list, default=None, help="optimizers (one program each)")
    p.add_argument("--init-draw", type=cli.name_list, default=None,
                   help="hidden kernels: shared (the original Keras), independent (one program each)")
    p.add_argument("--output-init", type=cli.name_list, default=None,
                   help="output layer initializers, e.g. glorot_uniform,hidden (one program each)")
    p.add_argument("--bias-init", type=cli.name_list, default=None, help="biases: zeros, torch (one program each)")
    p.add_argument("--seeds", type=int, default=4, help="seeds 0 .. N-1 per setting")
    p.add_argument("--epochs", type=int, default=None, help="epochs [default: the method's, 300]")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--chunk", type=int, default=None,
                   help="members per compiled chunk [default: from a memory estimate]")
    p.add_argument("--workers", type=int, default=None,
                   help="CPU worker processes [default: one per usable core on a CPU; on an "
                        "accelerator the sweep is vmapped in this process]; 0: vmap in this process")
    p.add_argument("--threads", type=int, default=1, help="CPU cores per worker (or for this process)")
    p.add_argument("--name", default=None, help="sweep name [default: from the method and swept axes]")
    p.add_argument("--out", default=None, help="output directory [default: runs/sweeps/<name>]")
    p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--data-source", choices=("idx", "tfds"), default="idx", help="where the arrays come from")
    p.add_argument("--tensorboard", action="store_true", help="also write <out>/tensorboard/: one run per member")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep directory")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in the output directory "
                   "(the same flags): its finished chunks are kept, the others trained")
    cli.add_config_flags(p, groups=("model", "optimizer", "protocol"), exclude=NOT_FIXED,
                         note="the method's; one value for the whole sweep")
    sweep_hosts.add_flags(p)
    return p


def check_args(args: argparse.Namespace) -> None:
    for flag, value, low in (("--seeds", args.seeds, 1), ("--epochs", args.epochs, 1),
                             ("--train-limit", args.train_limit, 1), ("--chunk", args.chunk, 1),
                             ("--workers", args.workers, 0), ("--threads", args.threads, 1)):
        if value is not None and value < low:
            cli.fail(f"{flag} must be >= {low}, got {value}")
    if args.tensorboard and not callbacks.tensorboard_available():
        cli.fail(callbacks.TENSORBOARD_MISSING)


def sweep_name(args: argparse.Namespace) -> str:
    swept = [flag for flag in (*DISCRETE, "init_std", "lr", "beta") if len(getattr(args, flag) or ()) > 1]
    return "-".join(["+".join(args.method), *swept, f"{args.seeds}seeds"])


def build_specs(args: argparse.Namespace) -> list:
    """One SweepSpec per combination of method and discrete values; a bad value is a usage error."""
    fixed = cli.config_overrides(args, [f.name for f in config_fields() if f.name not in NOT_FIXED])
    try:
        return sweep.build_specs(args.method, {k: getattr(args, k) for k in DISCRETE}, init_std=args.init_std,
                                 lr=args.lr, beta=args.beta, seeds=args.seeds, epochs=args.epochs,
                                 train_limit=args.train_limit, fixed=fixed)
    except ConfigError as e:
        cli.fail(str(e))


def common_epochs(specs: list) -> int:
    """The epochs every program trains (a staged one: its stage table's); they must agree."""
    try:
        return sweep.common_epochs([s.config for s in specs])
    except ConfigError as e:
        cli.fail(str(e))


def train_programs(specs: list, arrays, epochs: int, store: sweep.ChunkStore, workers: int,
                   args: argparse.Namespace, writer: bool = True) -> list:
    """Every program of the sweep, its finished chunks taken from ``store`` and new ones saved there."""
    done = []
    for pi, spec in enumerate(specs):
        finished, damaged = store.load(pi, spec.members(), epochs)
        for name in damaged:
            print(f"chunk {name} is damaged; it is trained again", file=sys.stderr)
        done.append(finished)
    total = sum(len(s.seeds) * len(s.settings()) for s in specs) * epochs
    shown = displays.SweepProgress if writer else sweep.hosts.SilentProgress
    progress = shown(total - epochs * sum(b - a for d in done for a, b in d))
    results = []
    try:
        for pi, spec in enumerate(specs):
            progress.start_group(group_label(spec.config, [s.config for s in specs]))
            members = spec.members()
            save = lambda a, b, h, pi=pi, m=members: store.save(pi, m, a, b, h)  # noqa: E731
            results.append(sweep.run_sweep(spec, arrays, epochs, chunk=args.chunk, workers=workers,
                                           threads=args.threads, on_epoch=progress, done=done[pi], on_chunk=save))
    finally:
        progress.close()
    return results


def open_store(out: Path, args, record: dict, specs: list, epochs: int, several: bool, writer: bool) -> tuple:
    """The chunk store and the worker processes (on --resume: the plan's); a new sweep's files."""
    store = sweep.ChunkStore(out)
    if several:  # every process trains vmapped over the global mesh; process 0 has the files
        store, workers = sweep.hosts.SharedStore(store), 0
    else:  # a resumed sweep plans its chunks as before: the same worker processes
        planned = store.read_plan().get("workers") if args.resume and args.workers is None else args.workers
        workers = sweep.choose_workers(planned, args.threads)
    if not args.resume:
        sweep_hosts.settle(sweep.prepare_out_dir(out) if writer else None, several)
        if writer:
            atomic_write_json(out / "config.json", record)
        store.write_plan({"workers": workers, "epochs": epochs,
                          "programs": [{"method": s.config.method, "members": len(s.seeds) * len(s.settings())}
                                       for s in specs]})
    return store, workers


def finish(out: Path, results: list, epochs: int, wall_s: float, workers: int, processes: int, args) -> None:
    """The sweep's files and its table (``processes``: of a multi-process sweep, else 0)."""
    runs, several = sweep_files.run_records(results), {"processes": processes} if processes else {}
    per_setting = sweep_files.write_outputs(out, results, {"runs": runs, "epochs": epochs, "wall_time_s": wall_s, **several,
                                               "device": runtime.device_description(results[0].spec.config.precision)})
    print(summary_table(per_setting))
    if args.tensorboard:
        print(f"tensorboard: {callbacks.write_sweep_tensorboard(out)}")
    chunks = ", ".join(f"{r['chunk_size']} ({r['chunk_source']})" for r in runs)
    mode = f"{workers} worker processes" if workers else f"vmapped on {results[0].n_devices} device(s)"
    mode += f" of {processes} processes" if processes else ""
    print(f"{len(per_setting)} settings x {args.seeds} seeds, {mode}, chunk {chunks}; files in {out}")


@faults.one_line_write_errors("the chunks finished so far are kept: make room, then run the same command with --resume")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        list_methods()
        return 0
    check_args(args)
    sweep_hosts.check(args)
    specs = build_specs(args)
    epochs = common_epochs(specs)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / (args.name or sweep_name(args))
    sweep_cfg = {"methods": args.method, **{k: getattr(args, k) for k in DISCRETE},
                 "init_std": args.init_std, "lr": args.lr, "beta": args.beta, "seeds": list(range(args.seeds)),
                 "epochs": epochs, "train_limit": args.train_limit, "chunk": args.chunk,
                 **({"data_source": args.data_source} if args.data_source != "idx" else {})}  # earlier sweeps resume
    record = {"sweep": sweep_cfg, "configs": [s.config.to_dict() for s in specs]}
    several = sweep_hosts.is_member(args)
    if args.processes:  # the launcher: the processes it starts do the rest
        sweep_hosts.settle(sweep.sweep_dir_problem(out, record, args.resume, args.overwrite), False)
        return sweep_hosts.launch(sys.argv[1:] if argv is None else argv, args.processes)
    if args.workers == 0 or several:
        runtime.pin_cpu_threads(args.threads)  # before the backend starts: this process trains
    cli.sigterm_as_interrupt()
    writer = sweep_hosts.join(args, record) if several else True
    sweep_hosts.settle(sweep.sweep_dir_problem(out, record, args.resume, args.overwrite) if writer else None, several)
    arrays = sweep_hosts.load_data(args) if several else cli.load_data(args.data_dir, args.data_source)
    lock, problem = sweep.lock_dir(out) if writer else (None, None)  # process 0 holds a multi-process sweep's
    try:
        if writer and problem is None:  # again, now that the directory is ours
            problem = sweep.sweep_dir_problem(out, record, args.resume, args.overwrite)
        sweep_hosts.settle(problem, several)
        return _sweep(out, args, record, specs, epochs, arrays, several, writer)
    finally:
        if lock is not None:
            lock.release()


def _sweep(out: Path, args, record: dict, specs: list, epochs: int, arrays, several: bool, writer: bool) -> int:
    """Train the sweep into its checked and locked directory; the exit status."""
    store, workers = open_store(out, args, record, specs, epochs, several, writer)
    t0 = time.perf_counter()
    try:
        with sweep_hosts.on_lost_contact(out, writer):
            results = train_programs(specs, arrays, epochs, store, workers, args, writer)
    except KeyboardInterrupt:
        if writer:
            device = runtime.device_description(specs[0].config.precision)
            atomic_write_json(out / "summary.json", {"status": "interrupted", "device": device})
            print(f"interrupted; finished chunks are kept: continue with --resume --out {out}", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    if writer:
        finish(out, results, epochs, time.perf_counter() - t0, workers, sweep_hosts.count(several), args)
    store.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
