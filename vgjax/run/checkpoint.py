"""Orbax checkpoints of a whole ``TrainState``: asynchronous saves, exact restores.

A save (asynchronous by default, ``Checkpoints(asynchronous=False)`` for synchronous ones) copies
the state on the device, hands the copy to orbax, which fetches it to the host and writes its
files in the background, and returns: training goes on while the files are written (the copy
keeps the next epoch from overwriting, through buffer donation, what is being saved). A helper
thread waits for orbax to commit the step directory (atomically) and only then writes the step's
manifest and runs the save's ``then`` (e.g. best.json). :meth:`Checkpoints.wait` waits for the
save in flight; every other method does so first (a restore reads only complete checkpoints), the
runner does at stage boundaries, and :meth:`Checkpoints.close` (at the end of a run, and on every
way out of it, Ctrl-C and SIGTERM included) does too. SIGINT and SIGTERM that arrive during a
save's synchronous part or a wait are held back until it is done, then delivered: an interrupted
run stops cleanly between two checkpoints instead of inside orbax's writer. Measured cost:
docs/guide/accelerators.md, "Speed" (``benchmarks/checkpoint_overhead.py``).

Every saved step also gets ``vgjax_manifest.json`` (size and sha256 of each of its files),
checked before orbax is asked to restore it: a damaged checkpoint (a truncated or altered file)
is reported as :class:`CheckpointDamaged` without starting orbax's reads, and never restores
silently wrong numbers; so is a step without a manifest beside steps that have one (a save or a
deletion cut short by kill -9). Checkpoints from before manifests existed are restored unchecked.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from vgjax.files import atomic_write_json, signals_deferred


def _abstract(tree: Any) -> Any:
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


MANIFEST = "vgjax_manifest.json"


class CheckpointDamaged(ValueError):
    """A checkpoint's files are not the ones that were saved."""


def _file_digests(step_dir: Path) -> dict[str, list]:
    out = {}
    for p in sorted(step_dir.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(step_dir).as_posix()] = [p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()]
    return out


def write_manifest(step_dir: Path) -> None:
    atomic_write_json(step_dir / MANIFEST, {"files": _file_digests(step_dir)})


def verify(step_dir: Path, required: bool = False) -> None:
    """Raise CheckpointDamaged unless ``step_dir`` holds the files its manifest lists. Without a
    manifest: unchecked, or (``required``) CheckpointDamaged, as a save or a deletion cut short."""
    manifest = step_dir / MANIFEST
    if not manifest.is_file():
        if required:
            raise CheckpointDamaged(f"checkpoint {step_dir} is incomplete (no {MANIFEST}: its save or "
                                    f"deletion was cut short)")
        return  # saved before manifests existed
    try:
        expected = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointDamaged(f"checkpoint {step_dir} is damaged: its {MANIFEST} is unreadable") from None
    found = _file_digests(step_dir)
    for name, (size, digest) in expected.items():
        if name not in found:
            raise CheckpointDamaged(f"checkpoint {step_dir} is damaged: {name} is missing")
        if found[name][0] != size:
            raise CheckpointDamaged(f"checkpoint {step_dir} is damaged: {name} has {found[name][0]} bytes, "
                                    f"{size} were saved")
        if found[name][1] != digest:
            raise CheckpointDamaged(f"checkpoint {step_dir} is damaged: {name} differs from what was saved")


def _device_copy(tree: Any) -> Any:
    """Fresh device buffers of every array leaf (the originals may be donated to the next epoch)."""
    return jax.tree_util.tree_map(lambda x: x.copy() if isinstance(x, jax.Array) else x, tree)


class Checkpoints:
    """A directory of numbered checkpoints (the number is a global epoch counter)."""

    def __init__(self, directory: str | Path, max_to_keep: int | None = 2, create: bool = True,
                 asynchronous: bool = True):
        self.directory = Path(directory).resolve()
        self.asynchronous = asynchronous
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                               enable_async_checkpointing=asynchronous, create=create)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._finisher: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, step: int, state: Any, then: Callable[[], None] | None = None) -> None:
        """Save ``state`` as ``step``; ``then()`` runs once the step and its manifest are complete
        (in a helper thread when asynchronous). Returns before the files are written when
        asynchronous."""
        with signals_deferred():
            self.wait()
            if step in self._manager.all_steps():  # e.g. the restored-best state at the last epoch
                self._manager.delete(step)
            if self.asynchronous:
                state = _device_copy(state)
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
            if not self.asynchronous:
                self._finish(step, then)
                self._raise_error()
                return
            self._finisher = threading.Thread(target=self._finish, args=(step, then), daemon=False,
                                              name=f"vgjax-checkpoint-{step}")
            self._finisher.start()

    def _finish(self, step: int, then: Callable[[], None] | None) -> None:
        try:
            self._manager.wait_until_finished()
            write_manifest(self.directory / str(step))
            if then is not None:
                then()
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread by wait()
            self._error = e

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self) -> None:
        """Block until the save in flight (if any) is complete, manifest and ``then`` included;
        raises what went wrong in it."""
        with signals_deferred():
            if self._finisher is not None:
                self._finisher.join()
                self._finisher = None
            self._raise_error()

    def latest_step(self) -> int | None:
        self.wait()
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        self.wait()
        return list(self._manager.all_steps())

    def restore(self, step: int, like: Any) -> Any:
        """The state saved at ``step``, with the structure (and dtypes) of ``like``; CheckpointDamaged
        if its files are not the ones saved."""
        self.wait()
        # once this directory has manifests, a step without one was cut short
        has_manifests = any((d / MANIFEST).is_file() for d in self.directory.iterdir() if d.name.isdigit())
        verify(self.directory / str(step), required=has_manifests)
        return self._manager.restore(step, args=ocp.args.StandardRestore(_abstract(like)))

    def close(self) -> None:
        """Wait for the save in flight, then release orbax's manager."""
        with signals_deferred():
            try:
                self.wait()
            finally:
                self._manager.close()

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
