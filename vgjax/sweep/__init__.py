"""Sweeps: many seeds and hyper-parameters trained as one compiled, vmapped program.

The public names of the sweep, by job (docs/design.md, "Sweeps"):

- :mod:`vgjax.sweep.grid`: :class:`SweepSpec` (a config, its seeds and continuous values),
  :func:`validate_spec` and :func:`build_specs`;
- :mod:`vgjax.sweep.program`: :class:`SweepProgram`, the per-member functions vmapped and jitted;
- :mod:`vgjax.sweep.phases`: a member's training as compiled phases (one per stage of a staged sweep);
- :mod:`vgjax.sweep.plan`: members per chunk from the device memory;
- :mod:`vgjax.sweep.workers`: :func:`run_sweep`, in this process or in worker processes;
- :mod:`vgjax.sweep.store`: finished chunks kept on disk, and the checks of a resumed sweep;
- :mod:`vgjax.sweep.stats`: :func:`summarize`, :func:`metric_rows` and the per-member epochs;
- :mod:`vgjax.sweep.hosts`: a sweep over several processes or hosts (JAX's multi-controller runtime).

Seed ``k`` of a sweep is the single run ``python -m experiments.run --seed k``.

The names below are loaded on first use (PEP 562), so that importing one submodule (the sweep's
files, say) does not load jax.
"""

from __future__ import annotations

import importlib

_NAMES = {  # public name -> "module:attribute" ("module:" for a submodule)
    'Arrays': 'vgjax.data:Arrays',
    'AXES': 'vgjax.sweep.grid:AXES',
    'BETA_ACTIVATIONS': 'vgjax.sweep.grid:BETA_ACTIVATIONS',
    'METRICS': 'vgjax.sweep.grid:METRICS',
    'STD_SCALED_INITS': 'vgjax.sweep.grid:STD_SCALED_INITS',
    'Members': 'vgjax.sweep.grid:Members',
    'SweepSpec': 'vgjax.sweep.grid:SweepSpec',
    'take': 'vgjax.sweep.grid:take',
    'validate_spec': 'vgjax.sweep.grid:validate_spec',
    'build_specs': 'vgjax.sweep.grid:build_specs',
    'Phase': 'vgjax.sweep.phases:Phase',
    'build_phases': 'vgjax.sweep.phases:build_phases',
    'common_epochs': 'vgjax.sweep.phases:common_epochs',
    'stage_columns': 'vgjax.sweep.phases:stage_columns',
    'CPU_CHUNK': 'vgjax.sweep.plan:CPU_CHUNK',
    'DEFAULT_BUDGET_BYTES': 'vgjax.sweep.plan:DEFAULT_BUDGET_BYTES',
    'MEMORY_FRACTION': 'vgjax.sweep.plan:MEMORY_FRACTION',
    'auto_chunk_limit': 'vgjax.sweep.plan:auto_chunk_limit',
    'chunk_plan': 'vgjax.sweep.plan:chunk_plan',
    'chunk_size': 'vgjax.sweep.plan:chunk_size',
    'member_bytes': 'vgjax.sweep.plan:member_bytes',
    'memory_budget': 'vgjax.sweep.plan:memory_budget',
    'pad_members': 'vgjax.sweep.plan:pad_members',
    'MEMBER_AXIS': 'vgjax.sweep.program:MEMBER_AXIS',
    'SweepProgram': 'vgjax.sweep.program:SweepProgram',
    'scale_kernels': 'vgjax.sweep.program:scale_kernels',
    'sweep_optimizer': 'vgjax.sweep.program:sweep_optimizer',
    'PLATEAU_ACCURACY': 'vgjax.sweep.stats:PLATEAU_ACCURACY',
    'describe': 'vgjax.sweep.stats:describe',
    'diverged_epochs': 'vgjax.sweep.stats:diverged_epochs',
    'first_epoch': 'vgjax.sweep.stats:first_epoch',
    'metric_rows': 'vgjax.sweep.stats:metric_rows',
    'plateau_exit_epochs': 'vgjax.sweep.stats:plateau_exit_epochs',
    'summarize': 'vgjax.sweep.stats:summarize',
    'ChunkStore': 'vgjax.sweep.store:ChunkStore',
    'is_finished': 'vgjax.sweep.store:is_finished',
    'lock_dir': 'vgjax.sweep.store:lock_dir',
    'out_dir_problem': 'vgjax.sweep.store:out_dir_problem',
    'prepare_out_dir': 'vgjax.sweep.store:prepare_out_dir',
    'resume_problem': 'vgjax.sweep.store:resume_problem',
    'sweep_dir_problem': 'vgjax.sweep.store:sweep_dir_problem',
    'hosts': 'vgjax.sweep.hosts:',
    'ChunkFn': 'vgjax.sweep.workers:ChunkFn',
    'EpochProgress': 'vgjax.sweep.workers:EpochProgress',
    'ProgressFn': 'vgjax.sweep.workers:ProgressFn',
    'SweepResult': 'vgjax.sweep.workers:SweepResult',
    'WorkerError': 'vgjax.sweep.workers:WorkerError',
    'choose_workers': 'vgjax.sweep.workers:choose_workers',
    'limit_train': 'vgjax.sweep.workers:limit_train',
    'run_sweep': 'vgjax.sweep.workers:run_sweep',
    'train_chunks': 'vgjax.sweep.workers:train_chunks',
    'files': 'vgjax.sweep.files:',
    'grid': 'vgjax.sweep.grid:',
    'groups': 'vgjax.sweep.groups:',
    'multi': 'vgjax.sweep.multi:',
    'phases': 'vgjax.sweep.phases:',
    'plan': 'vgjax.sweep.plan:',
    'program': 'vgjax.sweep.program:',
    'seeds': 'vgjax.sweep.seeds:',
    'settings': 'vgjax.sweep.settings:',
    'stats': 'vgjax.sweep.stats:',
    'store': 'vgjax.sweep.store:',
    'workers': 'vgjax.sweep.workers:',
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'vgjax.sweep' has no attribute {name!r}")
    module, _, attr = _NAMES[name].partition(":")
    value = importlib.import_module(module)
    value = getattr(value, attr) if attr else value
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
