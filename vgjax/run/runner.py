"""A whole run into its run directory: stages, checkpoints, resume, history, summary.

A plain run is a single stage that trains every layer; "train some layers" (``config.stages``)
is a table of stages (:mod:`vgjax.train.stages`). Epochs are counted globally across stages: the
checkpoint number is the number of finished epochs, so ``resume`` finds the stage and epoch to
continue from, restores the exact state, truncates the history to match, and carries on. Every
key is derived from the seed, the stage and the epoch (:mod:`vgjax.train.keys`), so a resumed run ends
bit-for-bit where an uninterrupted one would (CPU).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

from vgjax.run import callbacks
from vgjax.train import diagnostics, stage_start
from vgjax.report import plots
from vgjax.train import stages as stages_lib
from vgjax.run.checkpoint import CheckpointDamaged, Checkpoints
from vgjax.config import Config
from vgjax.train.hooks import Hook, as_hook
from vgjax.run.rundir import RunDir, best_epoch
from vgjax.files import read_json
from vgjax.train.engine import DeviceData, Engine, TrainState, fit

# A run's hooks: vgjax.train.hooks.Hook instances, or plain functions f(record, state, engine) -> stop?
EpochHook = Hook | Callable[[dict, TrainState, Engine], "bool | None"]


@dataclasses.dataclass
class RunResult:
    status: str  # finished | diverged | stopped
    history: list[dict]
    state: TrainState
    summary: dict


@dataclasses.dataclass
class StageSetup:
    stage: stages_lib.Stage
    engine: Engine
    state: TrainState


def setup_stage(config: Config, table: stages_lib.StageTable, stage: stages_lib.Stage,
                previous: TrainState | None, diagnostics: Callable | None = None) -> StageSetup:
    """Model, optimizer (fresh state) and train state of one stage, carrying trained layers over
    (:mod:`vgjax.train.stage_start`, which the sweeps vmap).

    The first stage of a run with ``config.init_from`` starts from that run's saved model (every
    layer whose name and shape match; the others are freshly initialised).
    """
    if previous is None and config.init_from and stage.index == 1:
        previous = load_saved_state(config.init_from)[2]
    parts = stage_start.stage_parts(config, table, stage, diagnostics)
    fresh = stage_start.fresh_variables(parts.engine.model, config.seed, parts.key_stage)
    state = stage_start.start_member(parts, config.seed, fresh, stage_start.carried(previous))
    return StageSetup(stage, parts.engine, state)


def saved_model_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot serve as a saved model (``--init-from``), or None if it can."""
    rd = RunDir(path)
    if not rd.exists():
        return "not a run directory (no config.json)"
    try:
        Config.from_dict(read_json(rd.config_path))
    except (ValueError, TypeError, OSError) as e:
        return f"its config.json cannot be used: {e}"
    return None if rd.has_checkpoint() else "it holds no checkpoint"


def load_saved_state(path: str | Path, which: str = "best") -> tuple[Config, Engine, TrainState, dict]:
    """A finished (or interrupted) run's model: its best checkpoint if it kept one, else the latest.

    Returns the run's config, an engine for the stage the checkpoint belongs to, the restored
    state and a description of what was loaded.
    """
    rd = RunDir(path)
    if not rd.exists():
        raise FileNotFoundError(f"{path} is not a run directory (no config.json)")
    config = Config.from_dict(read_json(rd.config_path)).replace(init_from=None)
    table = stages_lib.run_table(config)
    if which == "best" and rd.best_path.exists():
        directory, step = rd.best_dir, int(read_json(rd.best_path)["epoch"])
    else:
        directory = rd.checkpoint_dir
        if not directory.is_dir():
            raise FileNotFoundError(f"{path} holds no checkpoint")
        with Checkpoints(directory, create=False) as ck:
            step = ck.latest_step()
        if step is None:
            raise FileNotFoundError(f"{path} holds no checkpoint")
    setup = setup_stage(config, table, table.stage_at(step), None)
    with Checkpoints(directory, create=False) as ck:
        state = ck.restore(step, like=setup.state)
    return config, setup.engine, state, {"checkpoint": str(directory), "epoch": step}


def _summarise(config: Config, table: stages_lib.StageTable, history: list[dict], status: str,
               wall: float, extra: dict) -> dict:
    summary = {"method": config.method, "status": status, "epochs_planned": table.total_epochs,
               "epochs_run": len(history), "wall_time_s": wall, "precision": config.precision, **extra}
    if history:
        last = history[-1]
        summary["final"] = {k: last[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        summary["best_val_accuracy"], summary["best_epoch"] = best_epoch(history, "val_accuracy")
        summary["mean_epoch_time_s"] = sum(r["epoch_time_s"] for r in history) / len(history)
    if config.stages is not None:
        summary["stage_table"] = table.to_dict()
        summary["stages"] = []
        for st, (first, last_epoch) in zip(table.stages, table.boundaries()):
            rows = [r for r in history if first <= r["epoch"] <= last_epoch]
            entry = {"stage": st.index, "stacked": list(st.stacked), "frozen": list(st.frozen),
                     "epochs": st.epochs, "epochs_run": len(rows)}
            if rows:
                entry.update({k: rows[-1][k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")})
            summary["stages"].append(entry)
    return summary


class ResumeError(RuntimeError):
    """No checkpoint of a run restores, so it cannot be resumed (nothing was changed)."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _restore_newest(config: Config, table: stages_lib.StageTable, ckpt: Checkpoints,
                    diagnostics: Callable | None) -> tuple[int, int, StageSetup | None]:
    """The newest checkpoint that restores: (finished global epochs, index into table.stages of
    its stage, that stage's setup holding the restored state); (0, 0, None) when there is none.

    A checkpoint that does not restore (damaged files) is skipped with a warning; if none of
    several restores, ResumeError. Nothing on disk is changed here."""
    failed: list[tuple[int, str]] = []
    for step in sorted(ckpt.steps(), reverse=True):
        try:
            stage = table.stage_at(step)
            si = table.stages.index(stage)
            setup = setup_stage(config, table, stage, None, diagnostics)
            setup.state = ckpt.restore(step, like=setup.state)
        except CheckpointDamaged as e:  # its files are not the ones saved: orbax is not asked
            failed.append((step, str(e)))
            continue
        except Exception as e:  # older checkpoints without a manifest: orbax raises many kinds
            failed.append((step, f"checkpoint {step} in {ckpt.directory} does not restore ({_one_line(e)})"))
            continue
        if failed:
            skipped = ", ".join(str(s) for s, _ in failed)
            warnings.warn(f"{failed[0][1]}; resuming from checkpoint {step}, the newest that restores"
                          + (f" (skipped {skipped})" if len(failed) > 1 else ""), stacklevel=2)
        return step, si, setup
    if failed:
        raise ResumeError(f"no checkpoint restores (tried {', '.join(str(s) for s, _ in failed)}; {failed[0][1]})")
    return 0, 0, None


class _StageEpochs(Hook):
    """Inside one stage's fit: numbers each epoch globally, appends its history row, calls the
    run's hooks and saves the checkpoints (stage end, every ``checkpoint_every``, on a stop)."""

    def __init__(self, config: Config, table: stages_lib.StageTable, run_dir: RunDir, ckpt: Checkpoints,
                 history: list[dict], hooks: list[Hook], stage: stages_lib.Stage, offset: int):
        self.config, self.table, self.run_dir, self.ckpt, self.history = config, table, run_dir, ckpt, history
        self.hooks, self.stage, self.offset = hooks, stage, offset

    def on_epoch_end(self, rec: dict, state: TrainState, engine: Engine) -> bool:
        local = rec["epoch"]
        rec["epoch"] = self.offset + local
        if self.config.stages is not None:
            rec["stage"], rec["stage_epoch"] = self.stage.index, local
        self.run_dir.append_history(rec)
        self.history.append(rec)
        stop = False
        for hook in self.hooks:
            stop = bool(hook.on_epoch_end(rec, state, engine)) or stop
        if stop or self.table.saves_checkpoint(rec["epoch"], self.config.checkpoint_every):
            self.ckpt.save(rec["epoch"], state)
        return stop


def _train_stages(config: Config, table: stages_lib.StageTable, run_dir: RunDir, data: DeviceData,
                  ckpt: Checkpoints, history: list[dict], hooks: list[Hook], first_stage: int,
                  restored: StageSetup | None, diagnostics: Callable | None,
                  extra: dict) -> tuple[TrainState, str]:
    """Train the stages from ``table.stages[first_stage]`` on (continuing ``restored`` if given);
    returns the last state and the run's status. A divergence is noted in ``extra``."""
    state: TrainState | None = None
    for si in range(first_stage, len(table.stages)):
        stage = table.stages[si]
        if si == first_stage and restored is not None:
            setup = restored
        else:
            setup = setup_stage(config, table, stage, state, diagnostics)
        state = setup.state
        offset = table.epochs_before(stage)
        for hook in hooks:
            hook.on_stage_start(state, setup.engine, stage, offset)
        epochs = _StageEpochs(config, table, run_dir, ckpt, history, hooks, stage, offset)
        result = fit(setup.engine, state, data, stage.epochs, hooks=[epochs])
        state = result.state
        ckpt.wait()  # a stage boundary: its last checkpoint is complete before the next stage
        if result.status != "finished":
            if result.diverged_epoch is not None:
                extra["diverged_epoch"] = history[-1]["epoch"]
                extra["diverged_stage"] = stage.index
            return state, result.status
    return state, "finished"


def run(config: Config, run_dir: RunDir, data: DeviceData, *, resume: bool = False,
        hooks: Iterable[EpochHook] = (), diagnostics: Callable | None = None,
        summary_extra: dict | None = None) -> RunResult:
    """Train ``config`` into ``run_dir`` (which must already hold config.json)."""
    table = stages_lib.run_table(config)
    hooks = [as_hook(h) for h in hooks]
    t_start = time.perf_counter()
    extra = dict(summary_extra or {})
    try:
        with Checkpoints(run_dir.checkpoint_dir, asynchronous=config.async_checkpoints) as ckpt:
            # restore first: the history is cut back only once there is a state to continue from
            done, first_stage, restored = (_restore_newest(config, table, ckpt, diagnostics) if resume
                                           else (0, 0, None))
            run_dir.write_summary({"method": config.method, "status": "running", **extra})
            history = run_dir.truncate_history(done)
            for hook in hooks:
                hook.replay(history)
            state, status = _train_stages(config, table, run_dir, data, ckpt, history, hooks, first_stage,
                                          restored, diagnostics, extra)
            for hook in hooks:
                # a restored-best state is returned, not checkpointed: checkpoints/ keeps the
                # last epoch (what --resume continues from) and best/ holds the best one
                state, info = hook.finalize(state)
                extra.update(info)
    finally:  # every way out (Ctrl-C, SIGTERM, an error): hooks' asynchronous saves complete
        for hook in hooks:
            if callable(getattr(hook, "wait_for_saves", None)):
                hook.wait_for_saves()
    wall = time.perf_counter() - t_start
    run_dir.write_csv(history)
    summary = _summarise(config, table, history, status, wall, extra)
    run_dir.write_summary(summary)
    return RunResult(status, history, state, summary)


def train_and_evaluate(config: Config, workdir: str | Path, arrays, *, hooks: Iterable[EpochHook] = (),
                       resume: bool = False, summary_extra: dict | None = None) -> RunResult:
    """Train ``config`` on Fashion-MNIST ``arrays`` (from :func:`vgjax.data.load`) into ``workdir``.

    The Python entry point behind ``python -m experiments.run`` (which adds the progress display
    and the one-line error handling): writes config.json, history, summary and checkpoints, adds
    the config's best-model checkpoint and early stopping (:func:`vgjax.run.callbacks.hooks_for`) and,
    when ``config.diagnostics`` is on, the per-layer diagnostics, and draws the run's figures at the end.
    """
    run_dir = RunDir(workdir)
    if not (resume and run_dir.exists()):
        run_dir.clear()
        run_dir.create(config.to_dict())
    else:
        run_dir.mark()  # a run from before the marker existed
    data = DeviceData.from_numpy(arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test,
                                 config.train_limit)
    probe_x, probe_y = diagnostics.probe_batch(arrays)
    diag_fn, diag_hooks = diagnostics.hooks_for(config, run_dir, probe_x, probe_y,
                                                stages_lib.run_table(config).total_epochs)
    extra = {"data_source": getattr(arrays, "source", None), **(summary_extra or {})}
    result = run(config, run_dir, data, resume=resume, hooks=[*hooks, *callbacks.hooks_for(config, run_dir, (probe_x, probe_y)), *diag_hooks],
                 diagnostics=diag_fn, summary_extra=extra)
    try:
        plots.plot_run(run_dir.path)
    except Exception as e:  # the run's files are complete; a figure must not turn it into a failure
        warnings.warn(f"figures of {run_dir.path} not drawn: {type(e).__name__}: {e}", stacklevel=2)
    return result
