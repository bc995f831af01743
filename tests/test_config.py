"""The Config: its own module with no vgjax dependencies, one vocabulary of registry names, and
one flag per field on every command line, so that every field can be set and is recorded."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from experiments import run as run_cli
from experiments import run_args
from experiments import sweep as sweep_cli
from vgjax import config as C
from vgjax.nn import inits, layers
from vgjax.optim import registry as optim
from vgjax.config import Config, ConfigError

pytestmark = pytest.mark.fast

# a valid value other than the default, as typed on the command line and as the Config holds it
NON_DEFAULT = {
    "depth": ("3", 3), "width": ("64", 64), "activation": ("tanh", "tanh"), "beta": ("0.5", 0.5),
    "init": ("he_normal", "he_normal"), "init_std": ("0.1", 0.1), "init_scale": ("2", 2.0),
    "init_draw": ("independent", "independent"), "output_init": ("hidden", "hidden"), "bias_init": ("torch", "torch"),
    "norm": ("batchnorm", "batchnorm"), "norm_eps": ("1e-5", 1e-5), "bn_momentum": ("0.9", 0.9),
    "bn_eps": ("1e-5", 1e-5), "skips": ("1-3", ((1, 3),)), "dropout": ("0.2", 0.2), "optimizer": ("adamw", "adamw"),
    "lr": ("0.1", 0.1), "momentum": ("0.5", 0.5), "b1": ("0.8", 0.8), "b2": ("0.99", 0.99), "eps": ("1e-8", 1e-8),
    "rho": ("0.95", 0.95), "weight_decay": ("0.01", 0.01), "l1": ("1e-4", 1e-4), "l2": ("1e-3", 1e-3),
    "regularize_bias": (None, True), "batch_size": ("64", 64), "epochs": ("7", 7), "seed": ("5", 5),
    "train_limit": ("1000", 1000), "eval_batch_size": ("500", 500), "stages": ("1-1 | 1:2 | 1+2:3", "1-1 | 1:2 | 1+2:3"),
    "epochs_scale": ("0.5", 0.5), "stage_output": ("keep", "keep"), "diagnostics": (None, False),
    "checkpoint_every": ("3", 3), "best_checkpoint": (None, False), "monitor": ("val_loss", "val_loss"),
    "mode": ("min", "min"), "early_stop": ("val_loss", "val_loss"), "patience": ("2", 2), "min_delta": ("0.01", 0.01),
    "restore_best": (None, True), "precision": ("default", "default"), "async_checkpoints": (None, False),
    "unroll": ("4", 4), "pixels": ("raw", "raw"), "protocol": ("torch", "torch"),
    "tensorboard": (None, True),
}
NOT_A_FLAG = {"method": "--method names the method", "init_from": "needs a saved run (tests/test_toolbox.py)"}


def test_config_imports_nothing_else_of_vgjax_nor_jax():
    code = ("import sys; from vgjax.config import Config; Config(); "
            "print(sorted(m for m in sys.modules if m.startswith(('vgjax', 'jax', 'optax', 'flax'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['vgjax', 'vgjax.config']"


def test_the_registries_offer_exactly_the_configs_names():
    assert list(layers.ACTIVATIONS) == C.NAMES["activation"]
    assert list(inits._FACTORIES) == C.NAMES["initializer"]
    assert list(optim._FACTORIES) == C.NAMES["optimizer"]


def test_a_registered_optimizer_becomes_a_valid_config_value():
    assert "mine" not in C.NAMES["optimizer"]
    with pytest.raises(ConfigError, match="unknown optimizer 'mine'") as e:
        Config(optimizer="mine")
    assert e.value.field == "optimizer"
    try:
        optim.register_optimizer("mine", lambda c, lr: optim.optax.sgd(lr))
        assert Config(optimizer="mine").optimizer == "mine"
    finally:
        C.NAMES["optimizer"].remove("mine")
        optim._FACTORIES.pop("mine")


def test_every_field_has_a_group_and_a_help_line():
    for f in C.fields():
        assert f.metadata["group"] in C.GROUPS and f.metadata["help"], f.name
    assert set(NON_DEFAULT) | set(NOT_A_FLAG) == {f.name for f in C.fields()}


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_every_field_is_reachable_from_experiments_run_and_recorded(name):
    typed, value = NON_DEFAULT[name]
    flag = [run_cli.cli.config_flag(name)] + ([] if typed is None else [typed])
    method = "freeze" if name == "epochs_scale" else "baseline_3"
    config = run_args.config_from_args(run_cli.build_parser().parse_args(["--method", method, *flag]))
    assert getattr(config, name) == value != getattr(Config(), name)
    assert Config.from_dict(config.to_dict()) == config  # what config.json holds reads back


def test_a_config_json_from_before_the_bookkeeping_fields_reads_back_with_their_defaults():
    new = {"best_checkpoint", "monitor", "mode", "early_stop", "patience", "min_delta", "restore_best"}
    old = {k: v for k, v in Config().to_dict().items() if k not in new}
    back = Config.from_dict(old)
    assert (back.best_checkpoint, back.monitor, back.early_stop, back.patience) == (True, "val_accuracy", None, 5)


def test_the_sweep_takes_every_other_model_and_optimizer_field_as_one_value():
    args = sweep_cli.build_parser().parse_args(["--method", "baseline_3", "--optimizer", "momentum",
                                                "--momentum", "0.5", "--weight-decay", "0.1", "--seeds", "1"])
    (spec,) = sweep_cli.build_specs(args)
    assert (spec.config.momentum, spec.config.weight_decay, spec.config.optimizer) == (0.5, 0.1, "momentum")


def test_a_config_error_names_the_field_at_fault():
    for changes, field in (({"patience": -1}, "patience"), ({"monitor": "acc"}, "monitor"),
                           ({"seed": 2 ** 32}, "seed"), ({"skips": ((3, 1),)}, "skips")):
        with pytest.raises(ConfigError) as e:
            Config(**changes)
        assert e.value.field == field
    assert dataclasses.replace(Config(), seed=2 ** 32 - 1).seed == 2 ** 32 - 1


def test_run_sweep_and_suite_share_one_vocabulary():
    """--method(s), --out, --resume and --overwrite mean the same on every command that trains."""
    from experiments import suite as suite_cli

    run = run_cli.build_parser().parse_args(["--method", "relu", "--out", "o", "--resume"])
    sweep = sweep_cli.build_parser().parse_args(["--methods", "relu,tanh", "--out", "o", "--resume"])
    suite = suite_cli.build_parser().parse_args(["--method", "relu,tanh", "--out", "o", "--overwrite"])
    assert (run.method, run.out, run.resume) == ("relu", "o", True)
    assert (sweep.method, sweep.out, sweep.resume) == (["relu", "tanh"], "o", True)
    assert (suite.methods, suite.runs_dir, suite.overwrite) == ("relu,tanh", "o", True)
    for parser in (run_cli.build_parser(), sweep_cli.build_parser(), suite_cli.build_parser()):
        flags = {s for a in parser._actions for s in a.option_strings}
        assert {"--method", "--out", "--resume", "--overwrite"} <= flags
