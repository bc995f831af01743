"""python -m experiments.sweep --method baseline_7 --init-std 0.05,0.5,1,2,5,10 --seeds 8

Trains every (setting, seed) of a sweep -- the continuous values (init std, learning rate, beta)
vmapped as one compiled program, the discrete ones (methods, depth, width, activation, optimizer,
batch size) one program after another -- and writes to ``runs/sweeps/<name>/`` (or ``--out DIR``): config.json (first),
metrics.csv (per member and epoch), summary.json and summary.csv (per setting), and the figures
sweep_val_accuracy.png and sweep_loss.png. Seed k of a sweep is ``experiments.run --seed k``.

Exit status: 0 done (diverged members are results: see the summary), 2 usage or data error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from experiments import cli
from experiments.run import list_methods
from vgjax import runtime, sweep
from vgjax.config import ConfigError
from vgjax.config import fields as config_fields
from vgjax.methods import get_config
from vgjax.runlog import atomic_write_json
from vgjax.sweep_files import run_records, write_outputs
from vgjax.sweep_settings import DISCRETE, SETTING_COLUMNS, label_of

# Config fields swept, set by the sweep's own flags, or meaningless in a sweep; every other model,
# optimizer and protocol field has a single-valued flag
NOT_FIXED = (*DISCRETE, "init_std", "lr", "beta", "seed", "epochs", "train_limit", "stages", "epochs_scale",
             "stage_output")


# ----------------------------------------------------------------------------- arguments



def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.sweep", description=__doc__.split("\n\n")[1])
    p.add_argument("--method", type=cli.name_list, default=["baseline_7"],
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
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep directory")
    cli.add_config_flags(p, groups=("model", "optimizer", "protocol"), exclude=NOT_FIXED,
                         note="the method's; one value for the whole sweep")
    return p


def check_args(args: argparse.Namespace) -> None:
    for flag, value, low in (("--seeds", args.seeds, 1), ("--epochs", args.epochs, 1),
                             ("--train-limit", args.train_limit, 1), ("--chunk", args.chunk, 1),
                             ("--workers", args.workers, 0), ("--threads", args.threads, 1)):
        if value is not None and value < low:
            cli.fail(f"{flag} must be >= {low}, got {value}")


def sweep_name(args: argparse.Namespace) -> str:
    swept = [flag for flag in (*DISCRETE, "init_std", "lr", "beta") if len(getattr(args, flag) or ()) > 1]
    return "-".join(["+".join(args.method), *swept, f"{args.seeds}seeds"])


def build_specs(args: argparse.Namespace) -> list:
    """One SweepSpec per combination of method and discrete values; a bad value is a usage error."""
    specs = []
    fixed = cli.config_overrides(args, [f.name for f in config_fields() if f.name not in NOT_FIXED])
    try:
        lists = [getattr(args, k) or [None] for k in DISCRETE]
        for method, *values in itertools.product(args.method, *lists):
            config = get_config(method, epochs=args.epochs, train_limit=args.train_limit, diagnostics=False,
                                **fixed, **dict(zip(DISCRETE, values)))
            spec = sweep.SweepSpec(config, tuple(args.init_std or ()), tuple(args.lr or ()), tuple(args.beta or ()),
                             tuple(range(args.seeds)))
            sweep.validate_spec(spec)
            specs.append(spec)
    except ConfigError as e:
        cli.fail(str(e))
    return specs


def check_out_dir(path: Path, overwrite: bool) -> None:
    """Fail early (before any work) when the output directory cannot be used."""
    if (path / "config.json").exists():
        if not overwrite:
            cli.fail(f"{path} already holds a sweep; use --overwrite to replace it or --out for another directory")
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        cli.fail(f"{path} exists and is not a sweep directory; choose another --out")


def prepare_out_dir(path: Path) -> None:
    """An empty output directory (an old sweep there is removed: --overwrite was checked)."""
    if (path / "config.json").exists():
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        cli.fail(f"cannot create the output directory {path}: {e.strerror}")


# ----------------------------------------------------------------------------- progress

class SweepProgress:
    """A rich progress bar over member-epochs on a terminal, a throttled plain line otherwise."""

    def __init__(self, total: int, every_s: float = 10.0):
        self.console = Console(stderr=True)
        self.total, self.done, self.every_s = total, 0, every_s
        self.label, self.last = "", 0.0
        self._progress = None
        if self.console.is_terminal:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                      TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[info]}"),
                                      TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self._task = self._progress.add_task("sweep", total=total, info="")
            self._progress.start()

    def start_group(self, label: str) -> None:
        self.label = label

    def __call__(self, p) -> None:
        self.done += p.stop - p.start
        val = p.metrics["val_accuracy"]
        bad = int(np.sum(~np.isfinite(p.metrics["loss"])))
        where = f"{self.label} chunk {p.chunk}/{p.chunks}" + (f" worker {p.worker}" if p.worker else "")
        info = (f"members {p.start}-{p.stop - 1} epoch {p.epoch}/{p.epochs} val_acc mean {np.mean(val):.3f} "
                f"max {np.max(val):.3f}" + (f" diverged {bad}" if bad else ""))
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, description=where, info=info)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s or p.epoch == p.epochs:
            self.last = now
            print(f"{where}: {info} ({100 * self.done / self.total:.0f}% of the sweep)", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


# ----------------------------------------------------------------------------- outputs

def print_table(per_setting: list[dict]) -> None:
    varying = [k for k in SETTING_COLUMNS if len({s[k] for s in per_setting}) > 1] or ["method"]
    print(f"{'setting':<32} {'final val_acc':>17} {'best val_acc':>17} {'left plateau':>12} {'diverged':>8}")
    for s in per_setting:
        f, b, lp = s["final_val_accuracy"], s["best_val_accuracy"], s["left_plateau"]
        fmt = lambda d: "-" if d["mean"] is None else f"{d['mean']:.4f} ± {d['std']:.4f}"  # noqa: E731
        print(f"{label_of(s, varying):<32} {fmt(f):>17} {fmt(b):>17} "
              f"{lp['fraction']:>12.2f} {s['diverged']['count']:>4}/{s['seeds']}")


# ----------------------------------------------------------------------------- main

def group_label(config, specs: list) -> str:
    """The method and the discrete values that differ between the sweep's programs."""
    varying = [k for k in DISCRETE if len({getattr(s.config, k) for s in specs}) > 1]
    return " ".join([config.method, *(f"{k}={getattr(config, k)}" for k in varying)])


def choose_workers(requested: int | None, threads: int) -> int:
    """0 (vmap here) on accelerators; on a CPU, one single-threaded worker per usable core."""
    if jax.default_backend() != "cpu":
        return 0
    if requested is not None:
        return requested
    return max(1, runtime.usable_cores() // threads)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        list_methods()
        return 0
    check_args(args)
    specs = build_specs(args)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / (args.name or sweep_name(args))
    if args.workers == 0:
        runtime.pin_cpu_threads(args.threads)  # before the backend starts: this process trains
    cli.sigterm_as_interrupt()
    check_out_dir(out, args.overwrite)
    arrays = cli.load_data(args.data_dir, "idx")
    prepare_out_dir(out)
    sweep_cfg = {"methods": args.method, **{k: getattr(args, k) for k in DISCRETE},
                 "init_std": args.init_std, "lr": args.lr, "beta": args.beta, "seeds": list(range(args.seeds)),
                 "epochs": specs[0].config.epochs, "train_limit": args.train_limit, "chunk": args.chunk}
    atomic_write_json(out / "config.json", {"sweep": sweep_cfg, "configs": [s.config.to_dict() for s in specs]})
    workers = choose_workers(args.workers, args.threads)
    epochs = specs[0].config.epochs
    total = sum(len(s.seeds) * len(s.settings()) for s in specs) * epochs
    progress = SweepProgress(total)
    results, t0 = [], time.perf_counter()
    try:
        for spec in specs:
            progress.start_group(group_label(spec.config, specs))
            data = sweep.Arrays.of(arrays, spec.config.train_limit)
            results.append(sweep.run_sweep(spec, data, epochs, chunk=args.chunk, workers=workers,
                                           threads=args.threads, on_epoch=progress))
    except KeyboardInterrupt:
        progress.close()
        atomic_write_json(out / "summary.json", {"status": "interrupted"})
        print("interrupted; the sweep must be started again", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    progress.close()
    runs = run_records(results)
    per_setting = write_outputs(out, results, {"runs": runs, "epochs": epochs,
                                               "wall_time_s": time.perf_counter() - t0,
                                               "device": runtime.device_description()})
    print_table(per_setting)
    chunks = ", ".join(f"{r['chunk_size']} ({r['chunk_source']})" for r in runs)
    mode = f"{workers} worker processes" if workers else f"vmapped on {results[0].n_devices} device(s)"
    print(f"{len(per_setting)} settings x {args.seeds} seeds, {mode}, chunk {chunks}; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
