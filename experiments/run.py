"""python -m experiments.run --method NAME [overrides]

Trains one method of the study into ``runs/<method>-seed<seed>/`` (or ``--out DIR``). Exit status:
0 done (finished or stopped early on purpose), 1 an internal error (its traceback is saved in the
run's ``error.log``), 2 usage, data or run-directory error, 3 the run diverged (NaN/Inf loss), 130
interrupted (resume with ``--resume``).

Every flag and input is checked before anything is written or deleted; the run directory is
locked while the run lives (see README, "Run directories you can trust").
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from pathlib import Path

from experiments import cli
from vgjax.methods import METHODS, get_config

MAX_EPOCHS = 1_000_000  # more than any run could train: a larger number is a typo

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
        typ = cli.finite_float if typ is float else typ
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, type=typ, default=None,
                       help=f"{help_} [default: the method's]")
    p.add_argument("--skips", default=None, help="skip paths as from-to pairs, e.g. 1-3,4-7")
    p.add_argument("--init-from", default=None, metavar="RUN_DIR",
                   help="start from the saved model of another run (its best checkpoint, else its latest)")
    p.add_argument("--early-stop", default=None, metavar="METRIC",
                   help="stop when METRIC (e.g. val_loss, val_accuracy) stops improving")
    p.add_argument("--patience", type=int, default=5, help="epochs without improvement before stopping")
    p.add_argument("--min-delta", type=cli.finite_float, default=0.0, help="smallest change that counts as improvement")
    p.add_argument("--restore-best", action="store_true", help="after early stopping, keep the best epoch's weights")
    p.add_argument("--monitor", default="val_accuracy", help="metric of the best-model checkpoint")
    p.add_argument("--mode", choices=("auto", "min", "max"), default="auto",
                   help="whether the monitored metrics improve upward or downward")
    p.add_argument("--no-best-checkpoint", action="store_true", help="do not keep a best-model checkpoint")
    p.add_argument("--no-diagnostics", action="store_true", help="skip per-layer diagnostics")
    p.add_argument("--out", default=None, help="run directory [default: runs/<method>-seed<seed>]")
    p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--data-source", choices=("idx", "tfds"), default="idx", help="where the arrays come from")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run (only ever a vgjax run)")
    p.add_argument("--threads", type=cli.threads_count, default=1,
                   help="CPU cores for XLA (1 is fastest for these small matrices; 0: all)")
    return p


def list_methods() -> None:
    width = max(len(n) for n in METHODS)
    for m in METHODS.values():
        print(f"{m.name:<{width}}  {m.description}")


def stages_content(spec: str) -> str:
    """A JSON stage-table file as the equivalent compact table string, so that config.json records
    the table itself (what the run depends on), not a path whose file may change. Strict: the
    file must be UTF-8 JSON with whole numbers only and no unknown keys."""
    from vgjax import stages

    if not spec.endswith(".json"):
        return spec
    try:
        data = Path(spec).read_bytes()
    except OSError as e:
        cli.fail(f"--stages {spec}: cannot read the stage table ({e.strerror})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        cli.fail(f"--stages {spec}: the stage table is not UTF-8 text (byte {e.start})")

    def finite(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ValueError(f"the number {token} is out of range")
        return value

    def constant(token: str):
        raise ValueError(f"{token} is not a number")

    try:
        d = json.loads(text, parse_float=finite, parse_constant=constant)
    except json.JSONDecodeError as e:
        cli.fail(f"--stages {spec}: the stage table is not valid JSON ({e.msg}, line {e.lineno})")
    except ValueError as e:
        cli.fail(f"--stages {spec}: {e}")

    def whole_list(v, where: str) -> None:
        if not isinstance(v, list):
            cli.fail(f"--stages {spec}: {where} must be a list of whole numbers, got {json.dumps(v)}")
        for i, x in enumerate(v):
            whole(x, f"{where}[{i}]")

    def whole(v, where: str) -> None:
        if type(v) is not int:
            cli.fail(f"--stages {spec}: {where} must be a whole number, got {json.dumps(v)}")

    if not isinstance(d, dict) or set(d) != {"sizes", "stages"}:
        cli.fail(f"--stages {spec}: a JSON stage table is an object with exactly the keys 'sizes' and 'stages'")
    whole_list(d["sizes"], "sizes")
    if not isinstance(d["stages"], list):
        cli.fail(f"--stages {spec}: 'stages' must be a list of stages")
    for i, st in enumerate(d["stages"]):
        where = f"stages[{i}]"
        if not isinstance(st, dict) or not {"stacked", "epochs"} <= set(st) <= {"stacked", "frozen", "epochs"}:
            cli.fail(f"--stages {spec}: {where} must be an object with 'stacked', 'epochs' and optionally 'frozen'")
        whole_list(st["stacked"], f"{where}.stacked")
        whole_list(st.get("frozen", []), f"{where}.frozen")
        whole(st["epochs"], f"{where}.epochs")
    table = stages.from_dict(d)  # ConfigError for what the table means
    return compact_table(table)


def compact_table(table) -> str:
    """A stage table as the compact string ``sizes | stacked:epochs[:frozen] | ...``."""
    join = lambda ks: "+".join(str(k) for k in ks)  # noqa: E731
    entries = [f"{join(s.stacked)}:{s.epochs}" + (f":{join(s.frozen)}" if s.frozen else "") for s in table.stages]
    return " | ".join(["-".join(str(n) for n in table.sizes), *entries])


def config_from_args(args):
    from vgjax import stages

    overrides = {dest: getattr(args, dest) for dest in OVERRIDES}
    if args.skips is not None:
        overrides["skips"] = parse_skips(args.skips)
    if args.no_diagnostics:
        overrides["diagnostics"] = False
    method = METHODS.get(args.method)
    if method is None:
        return get_config(args.method)  # ConfigError: unknown method
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        cli.fail(f"--seed {args.seed}: give a whole number from 0 to {2 ** 32 - 1} (larger ones repeat smaller ones)")
    staged = args.stages is not None or "stages" in method.changes
    if staged:
        if args.epochs is not None:
            cli.fail("--epochs does not apply to staged training: its table sets every stage's epochs "
                     "(scale them with --epochs-scale)")
        if args.stages is not None:
            overrides["stages"] = stages_content(args.stages)
        table = stages.load_table(overrides["stages"] or method.changes["stages"])
        if args.depth is not None and args.depth != table.depth:
            cli.fail(f"--depth {args.depth} does not match the stage table, which stacks {table.depth} hidden "
                     f"layers ({'-'.join(str(n) for n in table.sizes)}): the table sets the depth")
        overrides["depth"] = table.depth
        if overrides.get("skips") or method.changes.get("skips"):
            cli.fail("skip paths (--skips) cannot be combined with staged training (--stages): the early "
                     "stages stack fewer layers than the paths join")
    elif args.epochs_scale is not None:
        cli.fail("--epochs-scale applies to staged training only (--stages or --method freeze); use --epochs")
    if args.init_from is not None:
        from vgjax.runner import saved_model_problem

        problem = saved_model_problem(args.init_from)
        if problem:
            cli.fail(f"--init-from {args.init_from}: {problem}")
        overrides["init_from"] = str(Path(args.init_from).resolve())
    config = get_config(args.method, **overrides)
    from vgjax.runner import stage_table

    total = stage_table(config).total_epochs  # validates the table
    if total > MAX_EPOCHS:
        cli.fail(f"the run would train {total:.3g} epochs (more than {MAX_EPOCHS:,}); check --epochs / --epochs-scale")
    return config


def check_init_from(config) -> None:
    """--init-from: the saved model loads, and every layer it shares with this run has its shape."""
    import jax

    from vgjax.models import build_model, init_variables
    from vgjax.runner import load_saved_state, stage_table

    try:
        _, _, state, _ = load_saved_state(config.init_from)
    except Exception as e:  # a damaged run: config, checkpoint files (orbax raises many kinds)
        cli.fail(f"--init-from {config.init_from}: its saved model does not load ({cli.one_line(e)})")
    table = stage_table(config)
    model = build_model(config.replace(depth=table.stage_depth(table.stages[0]), init_from=None))
    fresh = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))["params"]
    shape = lambda tree: [tuple(x.shape) for x in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    shared = [n for n in state.params if n in fresh]
    bad = [n for n in shared if shape(state.params[n]) != shape(fresh[n])]
    if bad:
        kernel = lambda tree: "×".join(str(d) for d in tree["kernel"].shape) if "kernel" in tree else "?"  # noqa
        cli.fail(f"--init-from {config.init_from}: its layer {bad[0]} is {kernel(state.params[bad[0]])}, this run's "
                 f"is {kernel(fresh[bad[0]])} ({len(bad)} layer(s) differ): use the same --width and model")
    if not shared:
        cli.fail(f"--init-from {config.init_from}: none of its layers is in this run's model")


def validate_toolbox(args) -> None:
    known = {"loss", "accuracy", "val_loss", "val_accuracy", "reg_loss"}
    for flag, metric in (("--monitor", args.monitor), ("--early-stop", args.early_stop)):
        if metric is not None and metric not in known:
            cli.fail(f"{flag} {metric!r}: choose from {', '.join(sorted(known))}")
    if args.patience < 0:
        cli.fail("--patience must be >= 0")
    if args.resume and args.overwrite:
        cli.fail("--resume and --overwrite exclude each other")


def _checkpoint_epochs(config, table, epochs) -> list[int]:
    """Of ``epochs``, those at which the run saves a checkpoint."""
    ends = {last for _, last in table.boundaries()}
    every = config.checkpoint_every
    return [e for e in epochs if e in ends or (every and e % every == 0)]


def inspect_run_dir(path: Path, config, resume: bool, overwrite: bool) -> str:
    """What to do with ``path``, deciding from its files only (nothing is written):
    'new', 'overwrite', 'resume', 'restart' (resume of a run stopped before its first checkpoint)
    or 'done' (resume of a complete run). Every refusal is one line and exit 2 (3: diverged)."""
    from vgjax import runlock
    from vgjax.config import Config
    from vgjax.runlog import MARKER_NAME, RunDir, read_json
    from vgjax.runner import stage_table

    if path.exists() and not path.is_dir():
        cli.fail(f"--out {path} is a file, not a directory")
    holder = runlock.live_holder(path) if path.is_dir() else None
    if holder:
        cli.fail(f"{path} is in use by a live run ({holder}); wait for it to end or stop it, or use another --out")
    rd = RunDir(path)
    present = [n for n in rd.run_files() if n != MARKER_NAME] if path.is_dir() else []
    if not present:
        if resume:
            why = "no such directory" if not path.exists() else "no run files in it"
            cli.fail(f"--resume: {path} holds no run to resume ({why}); run without --resume to start one")
        return "new"
    if not rd.is_vgjax_run():
        cli.fail(f"{path} holds {', '.join(present)} but is not a vgjax run (no {MARKER_NAME} marker, no vgjax "
                 f"config.json): nothing there is replaced; choose another --out")
    status = rd.status()
    if status == "diverged":
        if resume:
            epoch = (read_json(rd.summary_path) or {}).get("diverged_epoch", "?")
            cli.fail(f"{path} holds a run that diverged at epoch {epoch}: there is nothing to resume; start over "
                     f"with --overwrite (e.g. with a smaller --lr)", cli.EXIT_DIVERGED)
        if not overwrite:
            cli.fail(f"{path} holds a diverged run; use --overwrite to replace it or --out for another directory")
        return "overwrite"
    if status in ("finished", "stopped"):
        if resume:
            return "done"
        if not overwrite:
            cli.fail(f"{path} holds a finished run; use --overwrite to replace it or --out for another directory")
        return "overwrite"
    if overwrite:
        return "overwrite"
    if not resume:
        cli.fail(f"{path} holds an unfinished run; use --resume to continue it or --overwrite to start over")
    try:
        saved = Config.from_dict(read_json(rd.config_path)).to_dict()
    except Exception as e:  # missing, damaged, or not a config any more
        cli.fail(f"cannot resume {path}: its config.json cannot be used ({cli.one_line(e)}); start over with --overwrite")
    now = config.to_dict()
    changed = [k for k in now if saved.get(k) != now[k]]
    if changed:
        what = "; ".join(f"{k} {json.dumps(saved.get(k))} -> {json.dumps(now[k])}" for k in changed[:4])
        cli.fail(f"cannot resume {path}: it was started with other settings ({what}); resume with the same "
                 f"flags and inputs, or start over with --overwrite")
    ckdir = rd.checkpoint_dir
    if ckdir.is_dir() and any(p.name.isdigit() for p in ckdir.iterdir()):
        return "resume"
    rows = rd.history()
    table = stage_table(config)
    saved_at = _checkpoint_epochs(config, table, [r["epoch"] for r in rows if isinstance(r.get("epoch"), int)])
    if saved_at:
        cli.fail(f"cannot resume {path}: {ckdir} holds no checkpoint, though one was saved at epoch {saved_at[-1]}; "
                 f"start over with --overwrite")
    return "restart"


def prepare_run_dir(path: Path, action: str, config):
    """Carry out ``action`` (from :func:`inspect_run_dir`) on the locked directory."""
    from vgjax.runlog import RunDir

    run_dir = RunDir(path)
    try:
        if action in ("new", "overwrite"):
            run_dir.clear()  # only what a run writes: other files in the directory stay
            run_dir.create(config.to_dict())
        else:
            run_dir.mark()
    except OSError as e:
        cli.fail(f"cannot write the run directory {path}: {e.strerror}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        list_methods()
        return 0
    cli.one_line_warnings()
    cli.sigterm_as_interrupt()
    try:
        return _main(args)
    except KeyboardInterrupt:  # before the run started: nothing was written
        print("interrupted before the run started; nothing was written", file=sys.stderr)
        return cli.EXIT_INTERRUPTED


def _main(args) -> int:
    from vgjax import runlock, runtime
    from vgjax.config import ConfigError

    runtime.pin_cpu_threads(args.threads)
    validate_toolbox(args)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        cli.fail(str(e))
    if args.out is not None and not args.out.strip():
        cli.fail("--out is empty: give a run directory")
    out = Path(args.out) if args.out else Path("runs") / f"{config.method}-seed{config.seed}"
    if config.init_from is not None and Path(config.init_from) == out.resolve():
        cli.fail(f"--init-from {args.init_from} is the run directory itself: give another --out")
    action = inspect_run_dir(out, config, args.resume, args.overwrite)
    if action == "done":
        print(f"{out} holds a finished run: nothing to resume")
        return 0
    arrays = cli.load_data(args.data_dir, args.data_source)
    n_train = len(arrays.x_train)
    if config.train_limit is not None and config.train_limit > n_train:
        cli.fail(f"--train-limit {config.train_limit} is more than the {n_train} training images")
    if config.init_from is not None:
        check_init_from(config)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        cli.fail(f"cannot create the run directory {out}: {e.strerror}")
    lock = runlock.RunLock(out)
    try:
        lock.acquire()
    except runlock.LockedError as e:
        cli.fail(f"{out} is in use by a live run ({e}); wait for it to end or stop it, or use another --out")
    except OSError as e:
        cli.fail(f"cannot lock the run directory {out}: {e.strerror}")
    try:
        if lock.took_over:
            print(f"note: {out}: took over the lock of a run that no longer runs "
                  f"({runlock.describe(lock.took_over)})", file=sys.stderr)
        action = inspect_run_dir(out, config, args.resume, args.overwrite)  # again, now that it is ours
        if action == "done":
            print(f"{out} holds a finished run: nothing to resume")
            return 0
        if action == "restart":
            print(f"note: {out} has no checkpoint yet (it stopped before its first one): it starts again "
                  f"from epoch 1", file=sys.stderr)
        run_dir = prepare_run_dir(out, action, config)
        return train(config, run_dir, arrays, resume=action == "resume", hooks=toolbox_hooks(args, run_dir))
    finally:
        lock.release()


def toolbox_hooks(args, run_dir) -> list:
    """Best-model checkpoint (on unless --no-best-checkpoint) and early stopping (flags checked
    by :func:`validate_toolbox`)."""
    from vgjax.callbacks import BestCheckpoint, EarlyStopping

    hooks = []
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
    except runner.ResumeError as e:  # nothing was changed: history and summary are as they were
        progress.close()
        cli.fail(f"cannot resume {run_dir.path}: {e}; start over with --overwrite")
    except Exception as e:  # a bug: keep the traceback in the run directory, not on the screen
        progress.close()
        log = run_dir.path / "error.log"
        try:
            log.write_text(traceback.format_exc())
            run_dir.write_summary({"method": config.method, "status": "failed", "error": cli.one_line(e),
                                   "epochs_run": len(run_dir.history())})
        except OSError:
            pass
        print(f"error: {config.method} failed with an internal error ({cli.one_line(e)}); the traceback is in "
              f"{log}", file=sys.stderr)
        return 1
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
    code = main()
    if code == cli.EXIT_INTERRUPTED:  # leave at once: no interpreter teardown under XLA's threads
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
