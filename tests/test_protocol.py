"""The protocol options: pixel scaling (Config.pixels) and the named presets (Config.protocol)."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import run as run_cli
from experiments import run_args
from experiments import suite as suite_cli
from experiments import sweep as sweep_cli
from vgjax.train import keys
from vgjax.config import PROTOCOLS, Config, ConfigError
from vgjax.methods import get_config
from vgjax.nn.models import build_model
from vgjax.optim.registry import make_optimizer
from vgjax.train.engine import create_train_state, make_engine


def test_a_config_json_without_the_protocol_fields_reads_back_as_x_over_255():
    old = {k: v for k, v in Config(batch_size=512).to_dict().items() if k not in ("pixels", "protocol")}
    back = Config.from_dict(old)
    assert (back.pixels, back.protocol, back.batch_size) == ("scaled", None, 512)
    new = get_config("batchnorm", protocol="torch", pixels="scaled")
    assert Config.from_dict(new.to_dict()) == new and new.to_dict()["protocol"] == "torch"


def _logits_loss(x: np.ndarray, y: np.ndarray, params: dict) -> float:
    z = x @ np.asarray(params["output"]["kernel"], np.float64) + np.asarray(params["output"]["bias"], np.float64)
    z = z - z.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))


@pytest.mark.parametrize("pixels,divisor", [("raw", 1.0), ("scaled", 255.0)])
def test_the_model_sees_the_configs_pixel_values_in_training_and_evaluation(pixels, divisor):
    """A model with no hidden layer (logits = x W + b): the loss of the one training step of an
    epoch (at the initial weights) and the evaluation loss are the cross-entropy of x / divisor."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 784), dtype=np.uint8)
    x[:, 0] = 255
    y = rng.integers(0, 10, 64).astype(np.int32)
    config = Config(depth=0, pixels=pixels, batch_size=64, init_std=0.001, output_init="hidden")
    model, tx = build_model(config), make_optimizer(config)
    state = create_train_state(model, tx, keys.seed_key(0))
    engine = make_engine(config, model, tx)
    expected = _logits_loss(x.astype(np.float64) / divisor, y, jax.device_get(state.params))
    evaluated = float(engine.evaluate(state, jnp.asarray(x), jnp.asarray(y))["loss"])
    _, metrics = jax.jit(engine.epoch)(state, jnp.asarray(x), jnp.asarray(y))
    assert evaluated == pytest.approx(expected, rel=1e-4)
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(np.max(np.asarray(engine.inputs(jnp.asarray(x))))) == 255.0 / divisor


def test_a_preset_sets_batch_size_and_pixels_on_every_command():
    for name, values in PROTOCOLS.items():
        config = run_args.config_from_args(run_cli.build_parser().parse_args(["--method", "adam", "--protocol", name]))
        assert (config.batch_size, config.pixels, config.protocol) == (values["batch_size"], values["pixels"], name)
    args = sweep_cli.build_parser().parse_args(["--method", "optimizers_sgd", "--protocol", "keras", "--seeds", "1"])
    (spec,) = sweep_cli.build_specs(args)
    assert (spec.config.batch_size, spec.config.pixels, spec.config.protocol) == (32, "scaled", "keras")
    args = suite_cli.build_parser().parse_args(["--methods", "adam", "--protocol", "torch"])
    assert suite_cli.run_flags("adam", args) == ["--protocol", "torch"]
    # an explicit value equal to the preset's is no conflict
    assert get_config("baseline_3", protocol="torch", batch_size=512, pixels="scaled").batch_size == 512
    assert get_config("baseline_3", pixels="raw").pixels == "raw"


def test_a_config_that_contradicts_its_protocol_is_refused():
    with pytest.raises(ConfigError) as e:
        Config(protocol="torch", batch_size=32)
    assert e.value.field == "protocol"
    with pytest.raises(ConfigError, match="protocol torch sets batch_size 512, but batch_size 64") as e:
        get_config("baseline_3", protocol="torch", batch_size=64)
    assert e.value.field == "protocol"
    with pytest.raises(ConfigError, match="unknown protocol 'fast'"):
        get_config("baseline_3", protocol="fast")


@pytest.mark.parametrize("argv", [
    ["experiments.run", "--method", "adam", "--protocol", "torch", "--batch-size", "64"],
    ["experiments.run", "--method", "adam", "--protocol", "keras", "--pixels", "raw"],
    ["experiments.run", "--method", "adam", "--pixels", "half"],
    ["experiments.sweep", "--method", "adam", "--protocol", "torch", "--batch-size", "64,512", "--seeds", "1"],
])
def test_a_conflict_or_bad_value_is_one_line_and_exit_2(argv, tmp_path):
    r = subprocess.run([sys.executable, "-m", *argv, "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
