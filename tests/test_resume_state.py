"""Resume restores the whole train state -- Adam's moments and step count included -- inside a
stage and at a stage boundary, and then ends bit for bit where the uninterrupted run ends.

Fast: a 2-stage Adam run of 4 epochs on 48 synthetic images (3 steps an epoch), interrupted by a
hook that asks to stop after epoch k (the run checkpoints the epoch it stops at), then resumed.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.test_stage_boundaries import assert_tree_equal, np_tree
from tests.conftest import synthetic
from vgjax.config import Config
from vgjax.train.hooks import Hook
from vgjax.run.rundir import RunDir
from vgjax.run.runner import run

pytestmark = pytest.mark.fast

CFG = Config(stages="1-1 | 1:2 | 1+2:2", optimizer="adam", lr=0.01, width=8, batch_size=16,
             checkpoint_every=0, diagnostics=False)
STEPS_PER_EPOCH = 3  # 48 images at batch 16




def adam_states(opt_state):
    """The Adam count/moments inside an optimizer state, whatever wraps them."""
    found = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: hasattr(x, "mu") and hasattr(x, "nu"))
             if hasattr(s, "mu")]
    assert found, f"no Adam state in {type(opt_state)}"
    return found


class Recorder(Hook):
    """Records the state at every stage start and epoch end; stops after ``stop_after``."""

    def __init__(self, stop_after=None):
        self.stop_after, self.starts, self.ends = stop_after, [], {}

    def on_stage_start(self, state, engine, stage, offset):
        self.starts.append((stage.index, offset, np_tree(state), np_tree(engine.tx.init(state.params))))

    def on_epoch_end(self, rec, state, engine):
        self.ends[rec["epoch"]] = np_tree(state)
        return rec["epoch"] == self.stop_after


def train(path, *, resume=False, stop_after=None):
    rd = RunDir(path)
    if not resume:
        rd.create(CFG.to_dict())
    rec = Recorder(stop_after)
    result = run(CFG, rd, synthetic(n=48), resume=resume, hooks=[rec])
    return result, rec


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    result, rec = train(tmp_path_factory.mktemp("whole") / "run")
    assert result.status == "finished" and sorted(rec.ends) == [1, 2, 3, 4]
    return result, rec


@pytest.mark.parametrize("stop_after, where", [(1, "inside stage 1"), (2, "at the stage 1 -> 2 boundary"),
                                               (3, "inside stage 2")])
def test_resume_restores_the_optimizer_state_and_ends_bit_for_bit(tmp_path, uninterrupted, stop_after, where):
    whole, ref = uninterrupted
    first, _ = train(tmp_path / "run", stop_after=stop_after)
    assert first.status == "stopped", where
    resumed, rec = train(tmp_path / "run", resume=True)
    assert resumed.status == "finished", where

    # the first stage start of the resumed run is the restored checkpoint: the whole state
    stage, offset, restored, fresh_opt = rec.starts[0]
    saved = ref.ends[stop_after]
    assert_tree_equal(restored.params, saved.params, f"{where}: restored params")
    assert_tree_equal(restored.opt_state, saved.opt_state, f"{where}: restored optimizer state")
    assert int(restored.epoch) == int(saved.epoch)
    (adam,) = adam_states(restored.opt_state)
    epochs_into_stage = stop_after - offset
    assert int(adam.count) == STEPS_PER_EPOCH * epochs_into_stage, f"{where}: Adam step count"
    assert all(np.any(m != 0) for m in jax.tree_util.tree_leaves(adam.mu)), f"{where}: Adam first moment"
    assert all(np.any(v != 0) for v in jax.tree_util.tree_leaves(adam.nu)), f"{where}: Adam second moment"
    # ... which is not what a new optimizer would start from
    assert int(adam_states(fresh_opt)[0].count) == 0

    # every later stage start equals the uninterrupted run's (fresh optimizer state included)
    later = {s: (st, fo) for s, _, st, fo in rec.starts[1:]}
    for s, _, st, fo in ref.starts:
        if s in later:
            assert_tree_equal(later[s][0], st, f"{where}: stage {s} start")
            assert_tree_equal(later[s][0].opt_state, fo, f"{where}: stage {s} starts a fresh optimizer")

    # and the resumed run ends where the uninterrupted one does, bit for bit
    assert_tree_equal(np_tree(resumed.state), np_tree(whole.state), f"{where}: final state")
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in h]
    assert strip(resumed.history) == strip(whole.history)
