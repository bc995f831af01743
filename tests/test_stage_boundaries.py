"""What crosses a stage boundary of "train some layers", variable by variable.

Stage 1 trains a 2-layer stack with BatchNorm for one epoch, so every variable -- kernels, biases,
BatchNorm scale and bias, BatchNorm running mean and variance -- holds a trained value that differs
from its initial one. ``vgjax.run.runner.setup_stage`` then builds stage 2 (one more sub-model, the
first frozen) and stage 3 (all trainable) from it, and each variable is checked: carried over bit
for bit, or freshly initialised, and the optimizer state fresh.

The output layer's policy is a parameter of these tests (``OUTPUT_POLICIES``): ``fresh`` (drawn
anew for every stage, the original's new model per run and the default) or ``kept`` (carried from
the previous stage, ``stage_output="keep"``). Only the assertions in ``check_output_layer`` depend
on it.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.conftest import synthetic
from vgjax.config import Config
from vgjax.run.runner import setup_stage
from vgjax.train.stages import run_table

pytestmark = pytest.mark.fast

BASE = Config(stages="2-1 | 1:1 | 1+2:1:1 | 1+2:1", norm="batchnorm", optimizer="adam", lr=0.05,
              width=16, batch_size=16, checkpoint_every=0, diagnostics=False)

# policy -> how a config asks for it
OUTPUT_POLICIES = {"fresh": lambda c: c, "kept": lambda c: c.replace(stage_output="keep")}

STAGE1 = ("hidden_1", "hidden_2", "norm_1", "norm_2")  # the layers stage 1 trains
NEW_IN_STAGE2 = ("hidden_3", "norm_3")


def np_tree(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def assert_tree_equal(a, b, what):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b), what
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y, err_msg=f"{what} {jax.tree_util.keystr(path)}")


def assert_every_leaf_differs(a, b, what):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        assert not np.array_equal(x, y), f"{what} {jax.tree_util.keystr(path)} did not change"


def check_output_layer(policy, got, previous, fresh):
    """The output layer at a stage start, under ``policy``."""
    if policy == "kept":
        assert_tree_equal(got, previous, "output layer (kept policy)")
    elif policy == "fresh":
        assert_tree_equal(got, fresh, "output layer (fresh policy)")
        assert not np.array_equal(got["kernel"], previous["kernel"])
    else:
        raise AssertionError(f"unknown output policy {policy!r}")


@pytest.fixture(scope="module", params=sorted(OUTPUT_POLICIES))
def stages3(request):
    """Stage 1 trained one epoch; stage 2 set up from it and trained one epoch; stage 3 set up."""
    cfg = OUTPUT_POLICIES[request.param](BASE)
    table = run_table(cfg)
    data = synthetic(n=48)
    s1 = setup_stage(cfg, table, table.stages[0], None)
    end1, _ = jax.jit(s1.engine.epoch)(s1.state, data.x_train, data.y_train)
    s2 = setup_stage(cfg, table, table.stages[1], end1)
    end2, _ = jax.jit(s2.engine.epoch)(s2.state, data.x_train, data.y_train)
    s3 = setup_stage(cfg, table, table.stages[2], end2)
    fresh2 = setup_stage(cfg, table, table.stages[1], None)  # what stage 2 starts from without history
    fresh3 = setup_stage(cfg, table, table.stages[2], None)
    return dict(policy=request.param, cfg=cfg, s1=s1, end1=np_tree(end1), s2=s2, end2=np_tree(end2),
                s3=s3, fresh2=fresh2, fresh3=fresh3)


def test_stage_one_changed_every_variable(stages3):
    """Otherwise the carry-over checks below could not tell carried from freshly initialised."""
    s1, end1 = stages3["s1"], stages3["end1"]
    assert_every_leaf_differs(end1.params, np_tree(s1.state.params), "stage 1 param")
    assert set(end1.batch_stats) == {"norm_1", "norm_2"}
    assert_every_leaf_differs(end1.batch_stats, np_tree(s1.state.batch_stats), "stage 1 batch stat")


def test_trained_layers_carry_over_bit_for_bit_with_batchnorm_statistics(stages3):
    end1, start2 = stages3["end1"], np_tree(stages3["s2"].state)
    for name in STAGE1:
        assert_tree_equal(start2.params[name], end1.params[name], f"stage 2 start, params {name}")
    for name in ("norm_1", "norm_2"):  # running mean and variance
        assert_tree_equal(start2.batch_stats[name], end1.batch_stats[name], f"stage 2 start, batch_stats {name}")


def test_new_layers_start_from_their_initialisation(stages3):
    start2, fresh2 = np_tree(stages3["s2"].state), np_tree(stages3["fresh2"].state)
    for name in NEW_IN_STAGE2:
        assert_tree_equal(start2.params[name], fresh2.params[name], f"stage 2 new params {name}")
    assert_tree_equal(start2.batch_stats["norm_3"], fresh2.batch_stats["norm_3"], "stage 2 new stats norm_3")
    np.testing.assert_array_equal(start2.batch_stats["norm_3"]["mean"], 0.0)
    np.testing.assert_array_equal(start2.batch_stats["norm_3"]["var"], 1.0)


def test_output_layer_follows_the_stage_output_policy(stages3):
    policy = stages3["policy"]
    check_output_layer(policy, np_tree(stages3["s2"].state.params["output"]), stages3["end1"].params["output"],
                       np_tree(stages3["fresh2"].state.params["output"]))
    check_output_layer(policy, np_tree(stages3["s3"].state.params["output"]), stages3["end2"].params["output"],
                       np_tree(stages3["fresh3"].state.params["output"]))


def test_frozen_layers_and_their_statistics_do_not_move_the_rest_does(stages3):
    start2, end2 = np_tree(stages3["s2"].state), stages3["end2"]
    for name in ("hidden_1", "hidden_2", "norm_1", "norm_2"):
        assert_tree_equal(end2.params[name], start2.params[name], f"frozen params {name}")
    for name in ("norm_1", "norm_2"):
        assert_tree_equal(end2.batch_stats[name], start2.batch_stats[name], f"frozen stats {name}")
    assert_every_leaf_differs(end2.params["hidden_3"], start2.params["hidden_3"], "trainable hidden_3")
    assert_every_leaf_differs(end2.params["norm_3"], start2.params["norm_3"], "trainable norm_3")
    assert_every_leaf_differs(end2.batch_stats["norm_3"], start2.batch_stats["norm_3"], "trainable stats norm_3")
    assert_every_leaf_differs(end2.params["output"], start2.params["output"], "output layer")


def test_the_unfrozen_stage_carries_everything_and_starts_a_fresh_optimizer_state(stages3):
    end2, s3 = stages3["end2"], stages3["s3"]
    start3 = np_tree(s3.state)
    for name in STAGE1 + NEW_IN_STAGE2:
        assert_tree_equal(start3.params[name], end2.params[name], f"stage 3 start, params {name}")
    for name in ("norm_1", "norm_2", "norm_3"):
        assert_tree_equal(start3.batch_stats[name], end2.batch_stats[name], f"stage 3 start, batch_stats {name}")
    assert s3.engine.frozen_stats == ()
    # every stage starts its own optimizer: Adam's count and moments are those of a new state
    assert_tree_equal(start3.opt_state, np_tree(s3.engine.tx.init(s3.state.params)), "stage 3 opt_state")
    assert_tree_equal(np_tree(stages3["s2"].state.opt_state),
                      np_tree(stages3["s2"].engine.tx.init(stages3["s2"].state.params)), "stage 2 opt_state")
