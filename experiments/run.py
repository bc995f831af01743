"""python -m experiments.run --method NAME [overrides]

Trains one method of the study into ``runs/<method>/`` (or ``--out DIR``). Exit status: 0 done
(finished or stopped early on purpose), 2 usage or data error, 3 the run diverged (NaN/Inf loss),
130 interrupted (resume with ``--resume``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments import cli
from experiments.configs import METHODS, get_config

# Flags that map one-to-one onto Config fields (dest -> help).
OVERRIDES = {
    "epochs": (int, "epochs (300 in the seed protocol)"),
    "batch_size": (int, "minibatch size (32, Keras' default)"),
    "lr": (float, "learning rate"),
    "optimizer": (str, "optimizer: sgd, momentum, nesterov, rmsprop, adam, adamw, adopt, adagrad, scratch_*"),
    "momentum": (float, "momentum for --optimizer momentum/nesterov"),
    "depth": (int, "number of hidden layers"),
    "width": (int, "units per hidden layer"),
    "activation": (str, "hidden activation: sigmoid, tanh, relu, leaky_relu, elu, selu, gelu, swish, "
                        "sigmoid_beta, sigmoid_modgrad, linear"),
    "beta": (float, "beta of sigmoid_beta / sigmoid_modgrad"),
    "init": (str, "kernel initializer (random_normal, glorot_uniform, he_normal, ...)"),
    "init_std": (float, "std of random_normal / truncated_normal kernels"),
    "init_scale": (float, "scale / bound / constant of the other initializers"),
    "init_draw": (str, "hidden kernels: shared (one draw repeated, the original Keras) or independent"),
    "output_init": (str, "output layer's kernel initializer (glorot_uniform, Keras' default; "
                         "'hidden': like the hidden layers)"),
    "bias_init": (str, "biases: zeros (Keras) or torch (PyTorch's Uniform(+-1/sqrt(fan_in)))"),
    "stage_output": (str, "staged training: fresh (a new output layer every stage, the original) or keep"),
    "norm": (str, "normalisation before each hidden Dense: none, batchnorm, standardize, standardize_feature"),
    "dropout": (float, "dropout rate after each hidden activation"),
    "l1": (float, "L1 kernel regularisation strength"),
    "l2": (float, "L2 kernel regularisation strength"),
    "seed": (int, "random seed"),
    "train_limit": (int, "use only the first N training images (quick runs)"),
    "stages": (str, "stage table for staged training: 'default', a compact string or a .json file"),
    "epochs_scale": (float, "multiply every stage's epochs (quick staged runs)"),
    "checkpoint_every": (int, "epochs between checkpoints (0: only at stage ends)"),
}


def parse_skips(text: str) -> tuple[tuple[int, int], ...]:
    """'1-3,4-7' -> ((1, 3), (4, 7)); '' or 'none' -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(tuple(int(i) for i in p.split("-")) for p in text.split(","))  # type: ignore[misc]
    except ValueError:
        cli.fail(f"--skips {text!r} must look like 1-3,4-7")


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.run", description=__doc__.split("\n\n")[1])
    p.add_argument("--method", default="baseline_7", help="method to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    for dest, (typ, help_) in OVERRIDES.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, type=typ, default=None,
                       help=f"{help_} [default: the method's]")
    p.add_argument("--skips", default=None, help="skip paths as from-to pairs, e.g. 1-3,4-7")
    p.add_argument("--init-from", default=None, metavar="RUN_DIR",
                   help="start from the saved model of another run (its best checkpoint, else its latest)")
    p.add_argument("--early-stop", default=None, metavar="METRIC",
                   help="stop when METRIC (e.g. val_loss, val_accuracy) stops improving")
    p.add_argument("--patience", type=int, default=5, help="epochs without improvement before stopping")
    p.add_argument("--min-delta", type=float, default=0.0, help="smallest change that counts as improvement")
    p.add_argument("--restore-best", action="store_true", help="after early stopping, keep the best epoch's weights")
    p.add_argument("--monitor", default="val_accuracy", help="metric of the best-model checkpoint")
    p.add_argument("--mode", choices=("auto", "min", "max"), default="auto",
                   help="whether the monitored metrics improve upward or downward")
    p.add_argument("--no-best-checkpoint", action="store_true", help="do not keep a best-model checkpoint")
    p.add_argument("--no-diagnostics", action="store_true", help="skip per-layer diagnostics")
    p.add_argument("--out", default=None, help="run directory [default: runs/<method>]")
    p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--data-source", choices=("idx", "tfds"), default="idx", help="where the arrays come from")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU cores for XLA (1 is fastest for these small matrices; 0: all)")
    return p


def list_methods() -> None:
    width = max(len(n) for n in METHODS)
    for m in METHODS.values():
        print(f"{m.name:<{width}}  {m.description}")


def config_from_args(args):
    overrides = {dest: getattr(args, dest) for dest in OVERRIDES}
    if args.skips is not None:
        overrides["skips"] = parse_skips(args.skips)
    if args.no_diagnostics:
        overrides["diagnostics"] = False
    staged = args.stages is not None or "stages" in METHODS.get(args.method, METHODS["baseline_7"]).changes
    if staged and args.epochs is not None:
        cli.fail("--epochs does not apply to staged training: its table sets every stage's epochs "
                 "(scale them with --epochs-scale)")
    if args.init_from is not None:
        from vgjax.runner import saved_model_problem

        problem = saved_model_problem(args.init_from)
        if problem:
            cli.fail(f"--init-from {args.init_from}: {problem}")
        overrides["init_from"] = str(Path(args.init_from).resolve())
    return get_config(args.method, **overrides)


def prepare_run_dir(path: Path, config, resume: bool, overwrite: bool):
    from vgjax.runlog import RunDir, read_json

    run_dir = RunDir(path)
    if run_dir.exists():
        if resume and run_dir.is_finished():
            return None  # nothing left to do
        if resume:
            saved = read_json(run_dir.config_path)
            if saved != config.to_dict():
                cli.fail(f"{path} was started with a different config; resume with the same flags "
                         f"or use --overwrite")
            return run_dir
        if run_dir.is_finished() and not overwrite:
            cli.fail(f"{path} holds a finished run; use --overwrite to replace it or --out for another directory")
        if not run_dir.is_finished() and not overwrite:
            cli.fail(f"{path} holds an unfinished run; use --resume to continue it or --overwrite to start over")
        try:
            run_dir.clear()  # only what a run writes: other files in the directory stay
        except OSError as e:
            cli.fail(f"cannot clear the run directory {path}: {e.strerror}")
    try:
        run_dir.create(config.to_dict())
    except OSError as e:
        cli.fail(f"cannot write the run directory {path}: {e.strerror}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        list_methods()
        return 0
    from vgjax import runtime
    from vgjax.config import ConfigError

    runtime.pin_cpu_threads(args.threads)
    try:
        config = config_from_args(args)
        if config.stages is not None:
            from vgjax.runner import stage_table

            stage_table(config)  # validate the table before touching the disk
    except ConfigError as e:
        cli.fail(str(e))
    out = Path(args.out) if args.out else Path("runs") / config.method
    arrays = cli.load_data(args.data_dir, args.data_source)
    run_dir = prepare_run_dir(out, config, args.resume, args.overwrite)
    if run_dir is None:
        print(f"{out} holds a finished run: nothing to resume")
        return 0
    return train(config, run_dir, arrays, resume=args.resume, hooks=toolbox_hooks(args, run_dir))


def toolbox_hooks(args, run_dir) -> list:
    """Best-model checkpoint (on unless --no-best-checkpoint) and early stopping."""
    from vgjax.callbacks import BestCheckpoint, EarlyStopping

    known = {"loss", "accuracy", "val_loss", "val_accuracy", "reg_loss"}
    hooks = []
    for flag, metric in (("--monitor", args.monitor), ("--early-stop", args.early_stop)):
        if metric is not None and metric not in known:
            cli.fail(f"{flag} {metric!r}: choose from {', '.join(sorted(known))}")
    if args.patience < 0:
        cli.fail("--patience must be >= 0")
    if not args.no_best_checkpoint:
        hooks.append(BestCheckpoint(run_dir.path / "best", monitor=args.monitor, mode=args.mode))
    if args.early_stop:
        hooks.append(EarlyStopping(args.early_stop, patience=args.patience, min_delta=args.min_delta,
                                   mode=args.mode, restore_best=args.restore_best))
    return hooks


def train(config, run_dir, arrays, resume: bool = False, hooks: list = ()) -> int:
    from vgjax import runner, runtime

    cli.sigterm_as_interrupt()
    table = runner.stage_table(config)
    done = len(run_dir.history()) if resume else 0
    progress = cli.EpochPrinter(config.method, table.total_epochs, done=done,
                                every=1 if table.total_epochs <= 50 else 10)
    try:
        result = runner.train_and_evaluate(config, run_dir.path, arrays, resume=resume,
                                           hooks=[progress, *hooks],
                                           summary_extra={"device": runtime.device_description()})
    except KeyboardInterrupt:
        progress.close()
        if run_dir.is_finished():  # interrupted while drawing figures: the run itself is complete
            return 0
        summary = {"method": config.method, "status": "interrupted", "epochs_run": len(run_dir.history())}
        run_dir.write_summary(summary)
        print(f"interrupted after {summary['epochs_run']} epochs; continue with --resume", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    progress.close()
    s = result.summary
    if result.status == "diverged":
        print(f"error: {config.method} diverged at epoch {s['diverged_epoch']} (loss NaN/Inf); "
              f"see {run_dir.summary_path}", file=sys.stderr)
        return cli.EXIT_DIVERGED
    final = s["final"]
    print(f"{config.method}: {result.status} after {s['epochs_run']} epochs — "
          f"val_accuracy {final['val_accuracy']:.4f} (best {s['best_val_accuracy']:.4f} at epoch "
          f"{s['best_epoch']}), loss {final['loss']:.4f}; files in {run_dir.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
