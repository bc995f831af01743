"""Staged training: the table, carry-over, freezing through optax.partition, checkpoints, resume."""

import json

import jax
import numpy as np
import pytest

from vgjax.train import stages
from vgjax.run.checkpoint import Checkpoints
from vgjax.config import Config, ConfigError
from vgjax.train.hooks import Hook
from vgjax.nn.models import build_model, init_variables
from vgjax.optim.registry import freeze_labels
from vgjax.run.rundir import RunDir
from vgjax.run.runner import run, setup_stage
from vgjax.train.stages import run_table

from tests.conftest import synthetic


def test_default_table_is_the_spec_schedule():
    t = stages.load_table("default")
    assert t.sizes == (2, 2, 2, 1) and t.depth == 7
    assert [(s.stacked, s.frozen, s.epochs) for s in t.stages] == [
        ((1,), (), 100), ((1, 2), (1,), 100), ((1, 2), (), 100), ((1, 2, 3), (1, 2), 100),
        ((1, 2, 3), (), 100), ((1, 2, 3, 4), (1, 2, 3), 100), ((1, 2, 3, 4), (), 300)]
    assert t.layers_of(3) == (5, 6) and t.layers_of(4) == (7,)
    assert t.frozen_layer_names(t.stages[3]) == ("hidden_1", "norm_1", "hidden_2", "norm_2",
                                                 "hidden_3", "norm_3", "hidden_4", "norm_4")
    assert stages.default_schedule((2, 2, 2, 1)) == t  # the sizes-only shorthand builds the same


def test_other_splits_and_json_tables(tmp_path):
    t = stages.load_table("3-2-2")
    assert t.depth == 7 and len(t.stages) == 5 and t.stages[-1].epochs == 300
    path = tmp_path / "t.json"
    path.write_text(json.dumps(t.to_dict()))
    assert stages.load_table(str(path)) == t
    assert stages.load_table("default").scaled(0.01).total_epochs == 9  # ceil(1) x6 + ceil(3)


@pytest.mark.parametrize("spec, message", [
    ("2-2 | 1:10 | 1+3:10", "only 2"),
    ("2-2 | 1:10 | 1+2:10:3", "only 2"),
    ("2-2-2 | 1:10 | 1+2+3:10:2+3+1", "freezes every stacked"),
    ("2-2 | 1:10 | 1:10:2", "does not stack"),
    ("2-2 | 1:0", "at least one epoch"),
    ("2-2 | 2:10", "prefix"),
    ("2-0-1", "at least one layer"),
    ("2-x", "must look like"),
    ("2-2 | 1", "stacked:epochs"),
    ("2-2 | 1:ten", "not a whole number"),
    ("missing.json", "cannot read"),
])
def test_malformed_tables_are_rejected(spec, message):
    with pytest.raises(ConfigError, match=message):
        stages.load_table(spec)


def test_label_tree_matches_parameter_tree_for_every_stage_with_batchnorm():
    cfg = Config(stages="default", norm="batchnorm", epochs_scale=0.01)
    table = run_table(cfg)
    for stage in table.stages:
        params = init_variables(build_model(cfg.replace(depth=table.stage_depth(stage))),
                                jax.random.PRNGKey(0))["params"]
        frozen = [n for n in table.frozen_layer_names(stage) if n in params]
        labels = freeze_labels(params, frozen)
        assert jax.tree_util.tree_structure(labels) == jax.tree_util.tree_structure(params)
        frozen_layers = {i for k in stage.frozen for i in table.layers_of(k)}
        for name, sub in labels.items():
            want = "frozen" if name.split("_")[0] in ("hidden", "norm") and int(name.split("_")[1]) in frozen_layers else "train"
            assert set(jax.tree_util.tree_leaves(sub)) == {want}, name


def _collect_states():
    states = []

    class Collect(Hook):
        def on_stage_start(self, state, engine, stage, before):
            states.append(("start", stage.index, jax.tree_util.tree_map(np.asarray, (state.params, state.batch_stats))))

        def on_epoch_end(self, rec, state, engine):
            if rec["stage_epoch"] == engine_epochs[rec["stage"]]:
                states.append(("end", rec["stage"], jax.tree_util.tree_map(np.asarray, (state.params, state.batch_stats))))

    engine_epochs = {}
    return states, Collect(), engine_epochs


@pytest.mark.parametrize("norm, optimizer, stage_output", [("none", "momentum", "fresh"),
                                                          ("batchnorm", "adam", "fresh"),
                                                          ("batchnorm", "adam", "keep")])
def test_frozen_layers_stay_bit_identical_and_the_rest_move(tmp_path, norm, optimizer, stage_output):
    cfg = Config(stages="2-1 | 1:2 | 1+2:2:1 | 1+2:2", norm=norm, optimizer=optimizer, lr=0.05,
                 batch_size=16, l2=1e-3, checkpoint_every=0, stage_output=stage_output)
    states, hook, epochs = _collect_states()
    epochs.update({s.index: s.epochs for s in run_table(cfg).stages})
    rd = RunDir(tmp_path / "run")
    rd.create(cfg.to_dict())
    result = run(cfg, rd, synthetic(n=96), hooks=[hook])
    assert result.status == "finished" and len(result.history) == 6
    by = {(kind, i): s for kind, i, s in states}
    p1_end, s1_end = by[("end", 1)]
    p2_start, s2_start = by[("start", 2)]
    p2_end, s2_end = by[("end", 2)]
    p3_end, _ = by[("end", 3)]
    # carry-over: stage 2 starts from stage 1's hidden layers (and BatchNorm statistics)
    for name in ("hidden_1", "hidden_2") + (("norm_1", "norm_2") if norm == "batchnorm" else ()):
        jax.tree_util.tree_map(np.testing.assert_array_equal, p2_start[name], p1_end[name])
        if norm == "batchnorm":
            jax.tree_util.tree_map(np.testing.assert_array_equal, s2_start[name.replace("hidden", "norm")],
                                   s1_end[name.replace("hidden", "norm")])
    # the output layer: a new Keras Dense(10) every stage (Glorot-uniform kernel, zero bias), or kept
    p3_start, _ = by[("start", 3)]
    if stage_output == "keep":
        jax.tree_util.tree_map(np.testing.assert_array_equal, p2_start["output"], p1_end["output"])
        jax.tree_util.tree_map(np.testing.assert_array_equal, p3_start["output"], p2_end["output"])
    else:
        for start, end_before in ((p2_start, p1_end), (p3_start, p2_end)):
            assert not np.array_equal(start["output"]["kernel"], end_before["output"]["kernel"])
            assert np.all(start["output"]["bias"] == 0)
            assert np.abs(start["output"]["kernel"]).max() <= np.sqrt(6 / (128 + 10))
        # each stage draws its own output layer
        assert not np.array_equal(p2_start["output"]["kernel"], p3_start["output"]["kernel"])
        assert not np.array_equal(p2_start["output"]["kernel"], by[("start", 1)][0]["output"]["kernel"])
    # frozen during stage 2 (with L2 regularisation on): bit-for-bit unchanged
    for name in ("hidden_1", "hidden_2") + (("norm_1", "norm_2") if norm == "batchnorm" else ()):
        jax.tree_util.tree_map(np.testing.assert_array_equal, p2_end[name], p2_start[name])
        if norm == "batchnorm":
            jax.tree_util.tree_map(np.testing.assert_array_equal, s2_end[name.replace("hidden", "norm")],
                                   s2_start[name.replace("hidden", "norm")])
    # the trainable ones moved
    for name in ("hidden_3", "output"):
        assert not np.array_equal(p2_end[name]["kernel"], p2_start[name]["kernel"])
    # unfrozen in stage 3: they move again
    assert not np.array_equal(p3_end["hidden_1"]["kernel"], p2_end["hidden_1"]["kernel"])
    summary = json.loads(rd.summary_path.read_text())
    assert [s["stage"] for s in summary["stages"]] == [1, 2, 3]
    assert summary["stages"][1]["frozen"] == [1]
    assert [r["stage"] for r in rd.history()] == [1, 1, 2, 2, 3, 3]


def test_stage_checkpoint_restores_the_exact_state(tmp_path):
    cfg = Config(stages="1-1 | 1:1 | 1+2:1:1", optimizer="adam", norm="batchnorm", batch_size=16)
    table = run_table(cfg)
    setup = setup_stage(cfg, table, table.stages[1], None)
    with Checkpoints(tmp_path / "ck") as ck:
        ck.save(5, setup.state)
        fresh = setup_stage(cfg.replace(seed=1), table, table.stages[1], None).state
        restored = ck.restore(5, like=fresh)
    jax.tree_util.tree_map(np.testing.assert_array_equal, restored, setup.state)
    assert type(restored) is type(setup.state)


def test_output_layer_is_reinitialised_only_when_its_shape_changes():
    fresh = {"hidden_1": {"kernel": np.zeros((784, 64))}, "output": {"kernel": np.zeros((64, 10))}}
    prev_same = {"hidden_1": {"kernel": np.ones((784, 64))}, "output": {"kernel": np.ones((64, 10))}}
    prev_other = {"hidden_1": {"kernel": np.ones((784, 64))}, "output": {"kernel": np.ones((32, 10))}}
    assert stages.carry_over(fresh, prev_same)["output"]["kernel"].sum() == 640
    assert stages.carry_over(fresh, prev_other)["output"]["kernel"].sum() == 0
    assert stages.carry_over(fresh, prev_other)["hidden_1"]["kernel"].sum() == 784 * 64
    # the original's policy: a new output layer every stage, hidden layers carried
    new_output = stages.carry_over(fresh, prev_same, keep_output=False)
    assert new_output["output"]["kernel"].sum() == 0 and new_output["hidden_1"]["kernel"].sum() == 784 * 64


def test_every_stage_draws_its_new_hidden_layers_from_the_runs_one_shared_draw():
    """The original builds its sub-models once with one initializer object, whose draw repeats: the
    hidden layers a stage adds start as hidden_2 of the first stage (and as hidden_1's first 128
    rows), not from a draw of the stage's own key. The carried layers are shifted by 1 before each
    stage, so a fresh layer is told apart from a carried one."""
    cfg = Config(stages="default", epochs_scale=0.01, seed=3)
    table = run_table(cfg)
    first = setup_stage(cfg, table, table.stages[0], None).state
    draw = np.asarray(first.params["hidden_2"]["kernel"])
    np.testing.assert_array_equal(np.asarray(first.params["hidden_1"]["kernel"])[:128], draw)
    other_seed = setup_stage(cfg.replace(seed=4), table, table.stages[0], None).state
    assert not np.array_equal(np.asarray(other_seed.params["hidden_2"]["kernel"]), draw)
    previous, checked = first, set()
    for stage in table.stages[1:]:
        shifted = previous.replace(params={n: jax.tree_util.tree_map(lambda a: a + 1.0, p)
                                           for n, p in previous.params.items()})
        state = setup_stage(cfg, table, stage, shifted).state
        for name, p in state.params.items():
            if name == "output":
                continue
            kernel = np.asarray(p["kernel"])
            if name in previous.params:  # carried over
                np.testing.assert_array_equal(kernel, np.asarray(previous.params[name]["kernel"]) + 1.0)
            else:
                np.testing.assert_array_equal(kernel, draw, err_msg=f"stage {stage.index} {name}")
                checked.add(name)
        previous = state
    assert checked == {f"hidden_{i}" for i in range(3, 8)}


def test_a_json_table_file_reads_as_its_compact_text_and_a_bad_one_names_itself(tmp_path):
    from vgjax.train import stages as stages_mod
    good = tmp_path / "t.json"
    good.write_text('{"sizes": [2, 1], "stages": [{"stacked": [1], "epochs": 3}, {"stacked": [1, 2], "epochs": 2, "frozen": [1]}]}')
    assert stages_mod.table_file_text(str(good)) == "2-1 | 1:3 | 1+2:2:1"
    assert stages_mod.table_file_text("2 | 1:3") == "2 | 1:3"  # a compact table is returned as it is
    bad = tmp_path / "b.json"
    bad.write_text('{"sizes": [2.5], "stages": []}')
    with pytest.raises(stages_mod.TableFileError, match=r"b\.json: sizes\[0\] must be a whole number"):
        stages_mod.table_file_text(str(bad))
