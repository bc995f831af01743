"""How many members one compiled chunk holds: a memory estimate per member against the device's
free memory (or a conservative budget where a device reports none), capped on a CPU, where
vmapping more than a few members is slower per member than running them one after another
(docs/design.md, "Sweeps").
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vgjax.nn.models import INPUT_DIM, NUM_CLASSES
from vgjax.sweep.grid import AXES, Members
from vgjax.sweep.program import SweepProgram

DEFAULT_BUDGET_BYTES = 1 << 30  # memory for one chunk where the device reports none (CPU)
MEMORY_FRACTION = 0.5  # share of a device's free memory one chunk may use
CPU_CHUNK = 4  # members per chunk and CPU device at most


def _tree_bytes(tree: Any) -> int:
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


def member_bytes(program: SweepProgram, n_train: int = 60000) -> int:
    """A generous estimate of one member's device memory during an epoch.

    Train state four times (in, out, gradients, updates), the activations of one training
    minibatch forward and backward, the evaluation batch's activations, and the per-step
    metrics the scan keeps. (The data are shared by all members and not counted.)
    """
    c = program.config
    hp = {"seed": jnp.int32(0), **{a: jnp.float32(1.0) for a in AXES}}
    state = _tree_bytes(jax.eval_shape(program.init_member, hp))
    units = INPUT_DIM + c.depth * c.width + NUM_CLASSES
    train = 3 * 4 * c.batch_size * units
    evaluate = 2 * 4 * c.evaluation_batch_size() * (units - INPUT_DIM)
    steps = math.ceil(n_train / c.batch_size)
    return 4 * state + train + evaluate + 4 * steps * (c.depth + 5)


def memory_budget(devices: Sequence[jax.Device]) -> tuple[int, str]:
    """Bytes one chunk may use over ``devices``, and where that number came from."""
    try:
        stats = devices[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics raise or return None
        stats = None
    if stats and "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        return int(MEMORY_FRACTION * free) * len(devices), "device memory_stats"
    return DEFAULT_BUDGET_BYTES, "default budget (device reports no memory statistics)"


def chunk_size(n_members: int, n_devices: int, limit: int, balance: bool = True) -> int:
    """Members per chunk, a multiple of the device count: at most ``limit`` (rounded up to a
    multiple), and with ``balance`` as even over the chunks as that number of chunks allows."""
    size = min(max(limit, 1), n_members)
    if balance:
        size = math.ceil(n_members / math.ceil(n_members / size))
    return math.ceil(size / n_devices) * n_devices


def auto_chunk_limit(program: SweepProgram, n_train: int = 60000) -> tuple[int, str]:
    """Members per chunk that fit the memory budget (on a CPU also at most ``CPU_CHUNK``)."""
    devices = list(program.mesh.devices.flat)
    budget, source = memory_budget(devices)
    per = member_bytes(program, n_train)
    limit = max(1, budget // per)
    why = f"{source}: {budget / 2**20:.0f} MiB / {per / 2**20:.1f} MiB per member"
    if devices[0].platform == "cpu" and limit > CPU_CHUNK * len(devices):
        limit, why = CPU_CHUNK * len(devices), f"CPU cap of {CPU_CHUNK} members per device ({why})"
    return limit, why


def pad_members(hp: Members, size: int) -> Members:
    """Repeat the last member until there are ``size`` (padding is computed, then dropped)."""
    n = len(hp["seed"])
    return {k: np.concatenate([v, np.repeat(v[-1:], size - n)]) for k, v in hp.items()}


def chunk_plan(program: SweepProgram, n: int, chunk: int | None, n_train: int) -> tuple[int, str]:
    """A forced ``chunk`` is taken as given (rounded up to the device count); the automatic
    limit is balanced over the chunks it needs."""
    if chunk:
        return chunk_size(n, program.n_devices, chunk, balance=False), "forced (--chunk)"
    limit, source = auto_chunk_limit(program, n_train)
    return chunk_size(n, program.n_devices, limit), source
