"""Sweeps: many seeds and hyper-parameters trained as one compiled, vmapped program.

The public names of the sweep, by job (docs/design.md, "Sweeps"):

- :mod:`vgjax.sweep.grid`: :class:`SweepSpec` (a config, its seeds and continuous values) and
  :func:`validate_spec`;
- :mod:`vgjax.sweep.program`: :class:`SweepProgram`, the per-member functions vmapped and jitted;
- :mod:`vgjax.sweep.phases`: a member's training as compiled phases (one per stage of a staged sweep);
- :mod:`vgjax.sweep.plan`: members per chunk from the device memory;
- :mod:`vgjax.sweep.workers`: :func:`run_sweep`, in this process or in worker processes;
- :mod:`vgjax.sweep.progress`: the progress display;
- :mod:`vgjax.sweep.store`: finished chunks kept on disk, and the checks of a resumed sweep;
- :mod:`vgjax.sweep.stats`: :func:`summarize`, :func:`metric_rows` and the per-member epochs;
- :mod:`vgjax.sweep.hosts`: a sweep over several processes or hosts (JAX's multi-controller runtime).

Seed ``k`` of a sweep is the single run ``python -m experiments.run --seed k``.
"""

from vgjax.data import Arrays
from vgjax.sweep.grid import (AXES, BETA_ACTIVATIONS, METRICS, STD_SCALED_INITS, Members, SweepSpec, take,
                              validate_spec)
from vgjax.sweep.phases import Phase, build_phases, is_staged, planned_epochs, stage_columns
from vgjax.sweep.plan import (CPU_CHUNK, DEFAULT_BUDGET_BYTES, MEMORY_FRACTION, auto_chunk_limit, chunk_plan,
                              chunk_size, member_bytes, memory_budget, pad_members)
from vgjax.sweep.program import MEMBER_AXIS, SweepProgram, scale_kernels, sweep_optimizer
from vgjax.sweep.stats import (PLATEAU_ACCURACY, describe, diverged_epochs, first_epoch, metric_rows,
                               plateau_exit_epochs, summarize)
from vgjax.sweep.progress import SweepProgress
from vgjax.sweep.store import (ChunkStore, is_finished, lock_dir, out_dir_problem, prepare_out_dir, resume_problem,
                               sweep_dir_problem)
from vgjax.sweep import hosts
from vgjax.sweep.workers import (ChunkFn, EpochProgress, ProgressFn, SweepResult, WorkerError, limit_train, run_sweep,
                                 train_chunks)

__all__ = [
    "AXES", "BETA_ACTIVATIONS", "CPU_CHUNK", "ChunkFn", "ChunkStore", "SweepProgress", "is_finished", "lock_dir", "out_dir_problem", "prepare_out_dir",
    "resume_problem", "sweep_dir_problem", "Phase", "build_phases", "is_staged", "limit_train",
    "planned_epochs", "stage_columns", "DEFAULT_BUDGET_BYTES", "MEMBER_AXIS", "MEMORY_FRACTION", "METRICS",
    "PLATEAU_ACCURACY", "STD_SCALED_INITS", "Arrays", "EpochProgress", "Members", "ProgressFn", "SweepProgram",
    "SweepResult", "SweepSpec", "WorkerError", "auto_chunk_limit", "chunk_plan", "chunk_size", "describe",
    "diverged_epochs", "first_epoch", "member_bytes", "memory_budget", "metric_rows", "pad_members",
    "plateau_exit_epochs", "run_sweep", "scale_kernels", "summarize", "sweep_optimizer", "take", "train_chunks",
    "validate_spec", "hosts",
]
