"""Methods as few compiled programs as possible: methods whose configs differ only in values a
sweep member carries as arrays (the init std of ``f(key) * std`` kernels, the learning rate, the
beta of the β-activations) are one program, each method a setting of it (docs/design.md,
"The multi-seed suite").

The grouped program computes what the methods' separate programs compute: the std multiplies
the std-1 kernels exactly as the initializer does, the learning rate is read from the optimizer
state instead of a constant, beta from the train state. On a CPU, seed ``k`` of every method in
the group is ``experiments.run --method M --seed k`` bit for bit (tests/test_suite_seeds.py, two
members per chunk; :func:`vgjax.train.engine.pairwise_sum` keeps the loss sums' order). In a chunk of
four members one validation loss in 32 was seen to differ in its last bit: XLA's CPU code for a
larger vmapped batch, not the grouping (docs/design.md, "The multi-seed suite").
"""

from __future__ import annotations

from vgjax.config import Config
from vgjax.sweep.grid import AXES, BETA_ACTIVATIONS, STD_SCALED_INITS, SweepSpec

GROUP_SEPARATOR = "+"


def _shared(config: Config) -> Config:
    """``config`` with what a member carries as an array set to a common value."""
    changes = {"method": "", "lr": 1.0}
    if config.init in STD_SCALED_INITS:
        changes["init_std"] = 1.0
    if config.activation in BETA_ACTIVATIONS:
        changes["beta"] = 1.0
    return config.replace(**changes)


def group_methods(configs: dict[str, Config]) -> list[list[str]]:
    """The methods in groups that one program trains, in the given order (a group where its
    first method is); a staged config is always alone (its seeds are its only axis)."""
    groups: dict[object, list[str]] = {}
    for method, config in configs.items():
        key = method if config.stages is not None else _shared(config)
        groups.setdefault(key, []).append(method)
    return list(groups.values())


def group_name(methods: list[str]) -> str:
    return GROUP_SEPARATOR.join(methods)


def grouped_spec(configs: dict[str, Config], methods: list[str], seeds: tuple[int, ...]) -> SweepSpec:
    """One program for ``methods`` (a group of :func:`group_methods`): every method a setting
    with its own init std, learning rate and beta."""
    first = configs[methods[0]]
    if len(methods) == 1:
        return SweepSpec(first, seeds=seeds)
    points = tuple((m, *(float(getattr(configs[m], a)) for a in AXES)) for m in methods)
    return SweepSpec(first.replace(method=group_name(methods)), seeds=seeds, points=points)
