"""The shuffle and the dropout keys of every epoch, replayed by hand from the documented rule.

``vgjax.train.keys`` documents: the run key is the second half of
``jax.random.split(PRNGKey(seed))`` (``create_train_state``); epoch e (0-based, the number of
finished epochs) uses ``epoch_key = fold_in(run_key, e)``; its permutation is
``permutation(fold_in(epoch_key, 0), n)``, cut into minibatches in order, the last one padded with
row 0 and masked; step i's dropout key is ``fold_in(fold_in(epoch_key, 1), i)``.

The determinism, resume and sweep-equals-run tests compare the engine with itself, so a shuffle
that ignored the epoch would pass them; these tests compare it with the rule, and check that the
permutations of different epochs differ.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import synthetic
from vgjax.config import Config
from vgjax.nn.models import build_model
from vgjax.optim.registry import make_optimizer
from vgjax.train.engine import Engine, create_train_state, make_engine

pytestmark = pytest.mark.fast

N, BATCH, SEED, EPOCHS = 50, 16, 3, 3


@dataclasses.dataclass(frozen=True)
class SpyEngine(Engine):
    """The engine, with every step's row indices, mask and dropout key added to its outputs."""

    def train_step(self, state, x_u8, y, idx, mask, dropout_key):
        state, out = super().train_step(state, x_u8, y, idx, mask, dropout_key)
        return state, {**out, "idx": idx, "mask": mask, "dropout_key": jax.random.key_data(dropout_key)
                       if jnp.issubdtype(dropout_key.dtype, jax.dtypes.prng_key) else dropout_key}


def spy_epochs(seed=SEED, epochs=EPOCHS):
    cfg = Config(depth=2, width=8, batch_size=BATCH, dropout=0.1)
    model, tx = build_model(cfg), make_optimizer(cfg)
    engine = make_engine(cfg, model, tx)
    fields = {f.name: getattr(engine, f.name) for f in dataclasses.fields(engine)}
    fields["diagnostics"] = lambda eng, before, after, out: {k: out[k] for k in ("idx", "mask", "dropout_key")}
    spy = SpyEngine(**fields)
    data = synthetic(n=N)
    state = create_train_state(model, tx, jax.random.PRNGKey(seed))
    epoch = jax.jit(spy.epoch)
    seen = []
    for e in range(epochs):
        assert int(state.epoch) == e
        state, metrics = epoch(state, data.x_train, data.y_train)
        seen.append({k: np.asarray(metrics[k]) for k in ("idx", "mask", "dropout_key")})
    assert int(state.epoch) == epochs
    return seen


def by_hand(e, seed=SEED):
    """Indices, mask and dropout keys of epoch e, from the documented rule."""
    _, run_key = jax.random.split(jax.random.PRNGKey(seed))
    epoch_key = jax.random.fold_in(run_key, e)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(epoch_key, 0), N))
    steps = math.ceil(N / BATCH)
    idx = np.zeros(steps * BATCH, perm.dtype)
    idx[:N] = perm
    mask = np.arange(steps * BATCH) < N
    keys = np.stack([np.asarray(jax.random.fold_in(jax.random.fold_in(epoch_key, 1), i)) for i in range(steps)])
    return perm, idx.reshape(steps, BATCH), mask.reshape(steps, BATCH), keys


@pytest.fixture(scope="module")
def seen():
    return spy_epochs()


def test_every_epoch_uses_the_documented_permutation_and_dropout_keys(seen):
    for e, got in enumerate(seen):
        perm, idx, mask, keys = by_hand(e)
        np.testing.assert_array_equal(got["idx"], idx, err_msg=f"epoch {e} minibatch rows")
        np.testing.assert_array_equal(got["mask"], mask, err_msg=f"epoch {e} mask")
        np.testing.assert_array_equal(got["dropout_key"], keys, err_msg=f"epoch {e} dropout keys")
        assert sorted(got["idx"][got["mask"]].tolist()) == list(range(N))  # every row once per epoch


def test_the_permutation_changes_from_epoch_to_epoch(seen):
    orders = [tuple(s["idx"][s["mask"]].tolist()) for s in seen]
    assert len(set(orders)) == EPOCHS, "two epochs shuffled identically"
    assert all(o != tuple(range(N)) for o in orders), "an epoch was not shuffled"
    keys = np.concatenate([s["dropout_key"] for s in seen])
    assert len({k.tobytes() for k in keys}) == len(keys), "two steps share a dropout key"


def test_another_seed_shuffles_differently():
    other = spy_epochs(seed=SEED + 1, epochs=1)[0]
    mine = by_hand(0)[1]
    assert not np.array_equal(other["idx"], mine)
    np.testing.assert_array_equal(other["idx"], by_hand(0, seed=SEED + 1)[1])
