"""python -m experiments.run --method NAME [overrides]

Trains one method of the study into ``runs/<method>-seed<seed>/`` (or ``--out DIR``). Exit status:
0 done (finished or stopped early on purpose), 1 an internal error (its traceback is saved in the
run's ``error.log``), 2 usage, data or run-directory error, 3 the run diverged (its loss NaN/Inf or above
100 × ln 10: vgjax.train.engine.DIVERGED_LOSS), 130
interrupted (resume with ``--resume``).

Every flag and input is checked before anything is written or deleted; the run directory is
locked while the run lives (docs/guide/runs.md, "Run directories you can trust").
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path

from experiments import cli
from vgjax.run.rundir import RunDir
from vgjax.train.hooks import Hook
from vgjax.methods import METHODS

# loaded when first used, after the arguments are parsed (cli.lazy: --help answers without jax)
run_args, run_dir_mod = cli.lazy("experiments.run_args"), cli.lazy("experiments.run_dir")
callbacks, runlock, runner = cli.lazy("vgjax.run.callbacks"), cli.lazy("vgjax.run.lock"), cli.lazy("vgjax.run.runner")
runtime, stages = cli.lazy("vgjax.runtime"), cli.lazy("vgjax.train.stages")
train_lib = cli.lazy("vgjax.train.engine")

def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m experiments.run", description=__doc__.split("\n\n")[1])
    p.add_argument("--method", default="baseline_7", help="method to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    p.add_argument("--out", default=None, help="run directory [default: runs/<method>-seed<seed>]")
    p.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST IDX files")
    p.add_argument("--data-source", choices=("idx", "tfds"), default="idx", help="where the arrays come from")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run (only ever a vgjax run)")
    p.add_argument("--threads", type=cli.threads_count, default=1,
                   help="CPU cores for XLA (1 is fastest for these small matrices; 0: all)")
    cli.add_config_flags(p)  # one flag per Config field, by group
    return p


def list_methods() -> None:
    width = max(len(n) for n in METHODS)
    for m in METHODS.values():
        print(f"{m.name:<{width}}  {m.description}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        list_methods()
        return 0
    cli.one_line_warnings()
    # a repeated Ctrl-C (or SIGTERM) only repeats the first: its clean-up runs to the end
    with cli.interrupts_once() as interrupts:
        state = {"interrupts": interrupts, "prepared": None}
        try:
            return _main(args, state)
        except KeyboardInterrupt:
            interrupts.raised = True
            if state["prepared"] is None:  # before the run directory was touched
                print("interrupted before the run started; nothing was written", file=sys.stderr)
            else:  # while the run directory was being prepared: no epoch ran
                again = ("run the same command with --resume (it starts from epoch 1)"
                         if RunDir(state["prepared"]).exists() else "run the same command again")
                print(f"interrupted before the first epoch; {state['prepared']} holds no epoch yet: {again}",
                      file=sys.stderr)
            return cli.EXIT_INTERRUPTED


def _main(args, state: dict | None = None) -> int:
    state = {} if state is None else state
    runtime.pin_cpu_threads(args.threads)
    if args.resume and args.overwrite:
        cli.fail("--resume and --overwrite exclude each other")
    config = run_args.config_from_args(args)
    if config.tensorboard and not callbacks.tensorboard_available():
        cli.fail(callbacks.TENSORBOARD_MISSING)
    if args.out is not None and not args.out.strip():
        cli.fail("--out is empty: give a run directory")
    out = Path(args.out) if args.out else Path("runs") / f"{config.method}-seed{config.seed}"
    if config.init_from is not None and Path(config.init_from) == out.resolve():
        cli.fail(f"--init-from {args.init_from} is the run directory itself: give another --out")
    action = run_dir_mod.inspect_run_dir(out, config, args.resume, args.overwrite)
    if action == "done":
        print(f"{out} holds a finished run: nothing to resume")
        return 0
    arrays = cli.load_data(args.data_dir, args.data_source)
    n_train = len(arrays.x_train)
    if config.train_limit is not None and config.train_limit > n_train:
        cli.fail(f"--train-limit {config.train_limit} is more than the {n_train} training images")
    if config.init_from is not None:
        run_args.check_init_from(config)
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
        action = run_dir_mod.inspect_run_dir(out, config, args.resume, args.overwrite)  # again, now that it is ours
        if action == "done":
            print(f"{out} holds a finished run: nothing to resume")
            return 0
        if action == "restart":
            print(f"note: {out} has no checkpoint yet (it stopped before its first one): it starts again "
                  f"from epoch 1", file=sys.stderr)
        state["prepared"] = out
        run_dir = run_dir_mod.prepare_run_dir(out, action, config)
        return train(config, run_dir, arrays, resume=action == "resume", interrupts=state.get("interrupts"))
    finally:
        lock.release()


class _InterruptCheck(Hook):
    """At every epoch's end: an interrupt whose KeyboardInterrupt was swallowed is raised again."""

    def __init__(self, interrupts: cli.InterruptOnce):
        self.interrupts = interrupts

    def on_epoch_end(self, *_args) -> None:
        self.interrupts.check()


def _record(run_dir, summary: dict) -> bool:
    """Write summary.json; False when it cannot be written (a full disk)."""
    try:
        run_dir.write_summary(summary)
        return True
    except OSError:
        return False


def train(config, run_dir, arrays, resume: bool = False, interrupts: cli.InterruptOnce | None = None) -> int:
    """Train into the prepared ``run_dir``, with progress; the exit status of the run."""
    if interrupts is None:
        cli.sigterm_as_interrupt()
    table = stages.run_table(config)
    done = len(run_dir.history()) if resume else 0
    progress = cli.EpochPrinter(config.method, table.total_epochs, done=done,
                                every=1 if table.total_epochs <= 50 else 10)
    hooks = [progress] if interrupts is None else [progress, _InterruptCheck(interrupts)]
    try:
        result = runner.train_and_evaluate(config, run_dir.path, arrays, resume=resume, hooks=hooks,
                                           summary_extra={"device": runtime.device_description(config.precision)})
    except KeyboardInterrupt:
        if interrupts is not None:
            interrupts.raised = True
        progress.close()
        return _interrupted(config, run_dir)
    except runner.ResumeError as e:  # nothing was changed: history and summary are as they were
        progress.close()
        cli.fail(f"cannot resume {run_dir.path}: {e}; start over with --overwrite")
    except Exception as e:  # a bug: keep the traceback in the run directory, not on the screen
        progress.close()
        return _failed(config, run_dir, e)
    progress.close()
    return _finished(config, run_dir, result)


def _interrupted(config, run_dir) -> int:
    """What an interrupted run records and says; its exit status."""
    if run_dir.is_finished():  # interrupted while drawing figures: the run itself is complete
        print(f"interrupted while drawing the figures: the run is complete, its figures are not drawn "
              f"(none half-drawn); draw them with python -m experiments.plot {run_dir.path}", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    epochs = len(run_dir.history())
    saved = _record(run_dir, {"method": config.method, "status": "interrupted", "epochs_run": epochs})
    print(f"interrupted after {epochs} epochs; continue with --resume"
          + ("" if saved else f" (summary.json could not be written: {run_dir.path} is not writable)"),
          file=sys.stderr)
    return cli.EXIT_INTERRUPTED


def _failed(config, run_dir, e: Exception) -> int:
    """A run that raised ``e`` (called while it is handled): its traceback in error.log, its summary
    failed, one line on the screen (a full disk says what to do); exit status 1."""
    log = run_dir.error_log_path
    epochs = len(run_dir.history())
    try:
        log.write_text(traceback.format_exc())
        logged = True
    except OSError:
        logged = False
    _record(run_dir, {"method": config.method, "status": "failed", "error": cli.one_line(e), "epochs_run": epochs})
    if cli.no_space(e) or isinstance(e, OSError):
        print(f"error: {config.method}: {cli.write_failure(e)}; {epochs} finished epochs are kept in "
              f"{run_dir.path}: make room, then continue with --resume", file=sys.stderr)
        return 1
    where = f"the traceback is in {log}" if logged else f"{log} could not be written"
    print(f"error: {config.method} failed with an internal error ({cli.one_line(e)}); {where}", file=sys.stderr)
    return 1


def _finished(config, run_dir, result) -> int:
    """The line of a run that ended (finished, stopped or diverged); its exit status."""
    s = result.summary
    if result.status == "diverged":
        last = run_dir.history()[-1] if run_dir.history() else {}
        loss = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "val_loss") if isinstance(last.get(k), float))
        print(f"error: {config.method} diverged at epoch {s['diverged_epoch']} ({loss or 'loss NaN/Inf'}: NaN/Inf "
              f"or above {train_lib.DIVERGED_LOSS:.0f}, e.g. a too large --lr); see {run_dir.summary_path}",
              file=sys.stderr)
        return cli.EXIT_DIVERGED
    final = s["final"]
    print(f"{config.method}: {result.status} after {s['epochs_run']} epochs — "
          f"val_accuracy {final['val_accuracy']:.4f} (best {s['best_val_accuracy']:.4f} at epoch "
          f"{s['best_epoch']}), loss {final['loss']:.4f}; files in {run_dir.path}")
    return 0


if __name__ == "__main__":
    # outside main()'s own handling (argument parsing, the way out after it), Ctrl-C and SIGTERM
    # are ignored: a repeated Ctrl-C cannot interrupt the exit with a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = main()
    if code == cli.EXIT_INTERRUPTED:  # leave at once: no interpreter teardown under XLA's threads
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
