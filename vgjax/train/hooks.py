"""The hook interface of training: one base class whose methods are all no-ops.

:func:`vgjax.run.runner.run` calls, on every hook it is given:

1. ``replay(history)`` once, when resuming, with the history rows kept from before;
2. per stage, ``on_stage_start(state, engine, stage, epochs_before)`` before its first epoch
   (with the restored state when resuming inside that stage);
3. ``on_epoch_end(record, state, engine)`` after every epoch; returning True asks to stop;
4. ``finalize(state) -> (state, info)`` once at the end: it may replace the final state
   (restore-best) and ``info`` is added to summary.json.

:func:`vgjax.train.engine.fit` calls only ``on_epoch_end``. Early stopping and the best-epoch checkpoint
(:mod:`vgjax.run.callbacks`) and the histograms (:mod:`vgjax.train.diagnostics`) are hooks; a plain function
``f(record, state, engine) -> stop?`` becomes one through :func:`as_hook`.
"""

from __future__ import annotations

from typing import Any, Callable


class Hook:
    """A training hook; override the methods needed (see the module docstring for the order)."""

    def replay(self, history: list[dict]) -> None:
        """Rebuild what the hook tracks from the history kept when a run resumes."""

    def on_stage_start(self, state: Any, engine: Any, stage: Any, epochs_before: int) -> None:
        """Before a stage's first epoch; ``epochs_before``: global epochs of the earlier stages."""

    def on_epoch_end(self, record: dict, state: Any, engine: Any) -> bool | None:
        """After every epoch, with its history row; return True to stop training."""
        return False

    def finalize(self, state: Any) -> tuple[Any, dict]:
        """At the end of the run: the state to return and what to add to summary.json."""
        return state, {}


class EpochFunction(Hook):
    """A function ``f(record, state, engine) -> stop?`` called after every epoch."""

    def __init__(self, fn: Callable[[dict, Any, Any], Any]):
        self.fn = fn

    def on_epoch_end(self, record: dict, state: Any, engine: Any) -> bool:
        return bool(self.fn(record, state, engine))


def as_hook(hook: Hook | Callable) -> Hook:
    """``hook`` itself if it is a :class:`Hook`, else the function wrapped as one."""
    return hook if isinstance(hook, Hook) else EpochFunction(hook)
