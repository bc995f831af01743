"""Every random key of a run, derived from its seed: the one place that says how.

- A run's key is ``PRNGKey(seed)``; a stage of a staged run folds its 1-based stage number into
  it (:func:`stage_key`).
- That key splits into an *init key* (the model's variables) and a *run key* (stored in the train
  state; everything drawn during training comes from it) (:func:`init_and_run_keys`).
- Epoch ``e`` (0-based: the number of finished epochs) uses ``epoch_key = fold_in(run_key, e)``;
  its permutation of the training set uses ``fold_in(epoch_key, 0)`` (:func:`shuffle_key`), and
  step ``i`` of that epoch draws dropout from ``fold_in(fold_in(epoch_key, 1), i)``
  (:func:`dropout_key`).
- Staged runs draw the hidden kernels shared by every stage's model from the seed alone
  (:func:`shared_init_key`): the init key of the unstaged run of that seed.

A sweep member of seed ``k`` uses exactly these keys, so it is the single run of seed ``k``.
"""

from __future__ import annotations

import jax

SHUFFLE_STREAM = 0  # folded into the epoch key for the permutation
DROPOUT_STREAM = 1  # folded into the epoch key, then the step number, for dropout


def seed_key(seed) -> jax.Array:
    """The key of a run with ``seed`` (an int, or a traced int32 in a vmapped sweep)."""
    return jax.random.PRNGKey(seed)


def stage_key(seed: int, stage: int | None = None) -> jax.Array:
    """The key a stage's train state is created from: the seed's key, with the 1-based stage
    number folded in for a staged run (``stage`` None: an unstaged run)."""
    key = seed_key(seed)
    return key if stage is None else jax.random.fold_in(key, stage)


def init_and_run_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(init key, run key) of a train state created from ``key``."""
    init_key, run_key = jax.random.split(key)
    return init_key, run_key


def init_key(key: jax.Array) -> jax.Array:
    """The key the model's variables are initialised from, for a state created from ``key``."""
    return init_and_run_keys(key)[0]


def run_key(key: jax.Array) -> jax.Array:
    """The run key of a state created from ``key`` (shuffling and dropout derive from it)."""
    return init_and_run_keys(key)[1]


def shared_init_key(seed: int) -> jax.Array:
    """The key of the hidden kernels shared by every stage of a staged run: the seed's init key."""
    return init_key(seed_key(seed))


def epoch_key(run_key: jax.Array, epoch) -> jax.Array:
    """The key of epoch ``epoch`` (0-based: the number of finished epochs)."""
    return jax.random.fold_in(run_key, epoch)


def shuffle_key(epoch_key: jax.Array) -> jax.Array:
    """The key of an epoch's permutation of the training set."""
    return jax.random.fold_in(epoch_key, SHUFFLE_STREAM)


def dropout_key(epoch_key: jax.Array, step) -> jax.Array:
    """The dropout key of step ``step`` (0-based) of an epoch."""
    return jax.random.fold_in(jax.random.fold_in(epoch_key, DROPOUT_STREAM), step)
