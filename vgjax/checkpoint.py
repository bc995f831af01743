"""Orbax checkpoints of a whole ``TrainState``: synchronous saves, exact restores.

Saves are synchronous (``enable_async_checkpointing=False``): the next stage of a staged run, or
a resumed run, reads what was just written, and a run that is killed never leaves a checkpoint
that looks complete but is not (orbax commits a step directory atomically). SIGINT and SIGTERM
that arrive during a save are held back until the save is done, then delivered: an interrupted
run stops cleanly between two checkpoints instead of inside orbax's writer.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _abstract(tree: Any) -> Any:
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT / SIGTERM back for the duration of the block, then deliver the first one."""
    sigs = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None]
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in sigs}
    if any(h is None for h in old.values()):  # a handler installed outside Python: leave it
        yield
        return
    pending: list[int] = []
    for s in sigs:
        signal.signal(s, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if pending:
            signal.raise_signal(pending[0])


class Checkpoints:
    """A directory of numbered checkpoints (the number is a global epoch counter)."""

    def __init__(self, directory: str | Path, max_to_keep: int | None = 2, create: bool = True):
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                               enable_async_checkpointing=False, create=create)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any) -> None:
        with signals_deferred():
            if step in self._manager.all_steps():  # e.g. the restored-best state at the last epoch
                self._manager.delete(step)
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
            self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, step: int, like: Any) -> Any:
        """The state saved at ``step``, with the structure (and dtypes) of ``like``."""
        return self._manager.restore(step, args=ocp.args.StandardRestore(_abstract(like)))

    def close(self) -> None:
        with signals_deferred():
            self._manager.close()

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
