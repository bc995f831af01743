"""The frozen ``Config`` that names everything a run depends on.

Defaults are the study's seed protocol (docs/study.md §3): 7 hidden sigmoid layers of 128 units, kernels
Normal(0, 0.05), zero biases, softmax cross-entropy, plain SGD with learning rate 0.01, batch
size 32 (Keras' default), 300 epochs, pixels scaled to [0, 1], the test set as validation, seed 0.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from vgjax import inits, layers

NORMS = ("none", "batchnorm", "standardize", "standardize_feature")
INIT_DRAWS = ("shared", "independent")
BIAS_INITS = ("zeros", "torch")
STAGE_OUTPUTS = ("fresh", "keep")
# ``output_init`` names an initializer, or this value: "the hidden layers' initializer"
OUTPUT_INIT_HIDDEN = "hidden"

# Configs written before the fidelity fields existed describe the earlier models: output layer
# initialised like the hidden ones, independent draws per layer, zero biases, the output layer
# kept between stages, and optax's Adam. Reading such a config.json gives back those models.
LEGACY_VALUES = {"output_init": OUTPUT_INIT_HIDDEN, "init_draw": "independent", "bias_init": "zeros",
                 "stage_output": "keep"}
LEGACY_OPTIMIZERS = {"adam": "adam_optax"}


class ConfigError(ValueError):
    """A configuration value a user gave is invalid (reported as one line, exit status 2)."""


@dataclasses.dataclass(frozen=True)
class Config:
    method: str = "baseline_7"
    # model
    depth: int = 7
    width: int = 128
    activation: str = "sigmoid"
    beta: float = 0.05  # for sigmoid_beta / sigmoid_modgrad
    init: str = "random_normal"
    init_std: float = 0.05
    init_scale: float = 1.0
    # Keras' original: one initializer object for every hidden layer, whose unseeded draw repeats
    # (docs/study.md "The models"); "independent" draws every layer with its own key
    init_draw: str = "shared"
    # the output Dense(10) keeps Keras' default Glorot-uniform kernel; "hidden" = like the hidden layers
    output_init: str = "glorot_uniform"
    # "zeros" (Keras) or "torch": PyTorch's nn.Linear default Uniform(+-1/sqrt(fan_in))
    bias_init: str = "zeros"
    norm: str = "none"
    norm_eps: float = 1e-6  # Standardize
    bn_momentum: float = 0.99  # Keras defaults
    bn_eps: float = 1e-3
    skips: tuple[tuple[int, int], ...] = ()
    dropout: float = 0.0
    # optimisation
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # for momentum / nesterov
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-7  # Keras' Adam / RMSProp epsilon
    rho: float = 0.9  # RMSProp decay
    weight_decay: float = 0.0  # adamw
    l1: float = 0.0  # kernel regularisers, added to the training loss
    l2: float = 0.0
    regularize_bias: bool = False
    # protocol
    batch_size: int = 32
    epochs: int = 300
    seed: int = 0
    train_limit: int | None = None
    eval_batch_size: int = 2000
    # staged training ("freeze"): compact table string, see vgjax.stages
    stages: str | None = None
    epochs_scale: float = 1.0
    # every stage builds a new model with a freshly initialised output layer (the original);
    # "keep" carries the output layer over from stage to stage
    stage_output: str = "fresh"
    # diagnostics (vgjax.diagnostics)
    diagnostics: bool = True
    checkpoint_every: int = 10  # epochs between in-run checkpoints (0: only at the end)
    init_from: str | None = None  # run directory whose saved model initialises this run

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["skips"] = [list(p) for p in self.skips]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        d = dict(d)
        if "init_draw" not in d:  # written before the fidelity fields: the earlier models
            d = {**LEGACY_VALUES, **d}
            if d.get("optimizer") in LEGACY_OPTIMIZERS:
                d["optimizer"] = LEGACY_OPTIMIZERS[d["optimizer"]]
        if "skips" in d:
            d["skips"] = tuple(tuple(int(i) for i in p) for p in d["skips"])
        return cls(**d)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate_skips(skips: tuple[tuple[int, int], ...], depth: int) -> None:
    """Skip paths (a, b): the output of hidden layer a is added to the output of hidden layer b."""
    seen = set()
    for pair in skips:
        _check(len(pair) == 2, f"skip path {pair!r} must be a pair of hidden-layer indices")
        a, b = pair
        _check(1 <= a < b <= depth, f"skip path {a}->{b} needs 1 <= from < to <= depth ({depth})")
        _check((a, b) not in seen, f"skip path {a}->{b} is given twice")
        seen.add((a, b))


def validate(c: Config) -> None:
    _check(c.depth >= 0, f"depth must be >= 0, got {c.depth}")
    _check(c.width >= 1, f"width must be >= 1, got {c.width}")
    _check(c.activation in layers.ACTIVATIONS,
           f"unknown activation {c.activation!r}; choose from {', '.join(layers.ACTIVATIONS)}")
    _check(c.init in inits.initializer_names(),
           f"unknown initializer {c.init!r}; choose from {', '.join(inits.initializer_names())}")
    _check(c.init_std > 0, f"init std must be > 0, got {c.init_std}")
    _check(c.init_draw in INIT_DRAWS, f"unknown init draw {c.init_draw!r}; choose from {', '.join(INIT_DRAWS)}")
    _check(c.output_init == OUTPUT_INIT_HIDDEN or c.output_init in inits.initializer_names(),
           f"unknown output initializer {c.output_init!r}; choose from {OUTPUT_INIT_HIDDEN}, "
           f"{', '.join(inits.initializer_names())}")
    _check(c.bias_init in BIAS_INITS, f"unknown bias init {c.bias_init!r}; choose from {', '.join(BIAS_INITS)}")
    _check(c.stage_output in STAGE_OUTPUTS,
           f"unknown stage output policy {c.stage_output!r}; choose from {', '.join(STAGE_OUTPUTS)}")
    _check(c.norm in NORMS, f"unknown norm {c.norm!r}; choose from {', '.join(NORMS)}")
    validate_skips(c.skips, c.depth)
    _check(0.0 <= c.dropout < 1.0, f"dropout rate must be in [0, 1), got {c.dropout}")
    from vgjax import optim  # the registry imports this module

    _check(c.optimizer in optim.optimizer_names(),
           f"unknown optimizer {c.optimizer!r}; choose from {', '.join(optim.optimizer_names())}")
    _check(c.lr > 0, f"learning rate must be > 0, got {c.lr}")
    _check(c.batch_size >= 1, f"batch size must be >= 1, got {c.batch_size}")
    _check(c.epochs >= 1, f"epochs must be >= 1, got {c.epochs}")
    _check(c.train_limit is None or c.train_limit >= 1, f"train limit must be >= 1, got {c.train_limit}")
    _check(c.l1 >= 0 and c.l2 >= 0, "regularisation strengths must be >= 0")
    _check(c.epochs_scale > 0, f"epochs scale must be > 0, got {c.epochs_scale}")
    _check(c.eval_batch_size >= 1, "eval batch size must be >= 1")
    _check(c.checkpoint_every >= 0, "checkpoint interval must be >= 0")
