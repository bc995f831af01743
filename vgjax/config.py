"""The frozen ``Config`` that names everything a run depends on.

Defaults are the study's seed protocol (docs/study.md §3): 7 hidden sigmoid layers of 128 units, kernels
Normal(0, 0.05), zero biases, softmax cross-entropy, plain SGD with learning rate 0.01, batch
size 32 (Keras' default), 300 epochs, pixels scaled to [0, 1], the test set as validation, seed 0.

The fields come in four groups (:data:`GROUPS`): the model, the optimizer, the protocol and the
bookkeeping (diagnostics, checkpoints, early stopping). Each field carries its group and a help
line, from which every command line builds its flags, so every field can be set and is recorded
in ``config.json``. This module imports nothing else from vgjax: the names the registries offer
(activations, initializers, optimizers) are listed here and extended by their ``register_*``
functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

GROUPS = ("model", "optimizer", "protocol", "bookkeeping")
NORMS = ("none", "batchnorm", "standardize", "standardize_feature")
# normalisations whose output in evaluation depends on the evaluation batch (its own statistics)
BATCH_STAT_NORMS = ("standardize", "standardize_feature")
LARGE_EVAL_BATCH = 2000  # rows per evaluation batch of the other models
INIT_DRAWS = ("shared", "independent")
BIAS_INITS = ("zeros", "torch")
STAGE_OUTPUTS = ("fresh", "keep")
MODES = ("auto", "min", "max")
# matrix products: "highest" (float32, reproducible) or "default" (the platform's fast path:
# TF32 on GPUs, bfloat16 passes on TPUs); jax.default_matmul_precision names
PRECISIONS = ("highest", "default")
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "reg_loss")  # what a hook may monitor
# ``output_init`` names an initializer, or this value: "the hidden layers' initializer"
OUTPUT_INIT_HIDDEN = "hidden"
# pixel values the model sees: "scaled" x / 255 in [0, 1] (the original's ``x / 255``), or "raw"
# 0-255 as the course's hint code leaves them (``load_data()`` reshaped, not divided)
PIXELS = ("scaled", "raw")
PIXEL_DIVISORS = {"scaled": 255.0, "raw": 1.0}
# named protocols (``--protocol NAME``): the batch size and pixel scaling each sets together
PROTOCOLS: dict[str, dict[str, Any]] = {
    "keras": {"batch_size": 32, "pixels": "scaled"},  # the original Keras code: fit()'s default batch, x / 255
    "torch": {"batch_size": 512, "pixels": "scaled"},  # the optimizer exercise's PyTorch loader (docs/study.md §5)
    # the course's own figures (its quiz): the epoch-1 ones of Adam, BatchNorm and skip paths all lie
    # inside vgjax's seed spread at batch 512 with raw pixels, at no other protocol measured
    # (docs/results/course/report.md)
    "course": {"batch_size": 512, "pixels": "raw"},
}

# The names of vgjax.nn.layers.ACTIVATIONS, vgjax.nn.inits' and vgjax.optim.registry's registries (a test checks
# that they agree); register_initializer / register_optimizer add a user's names through register_name.
NAMES: dict[str, list[str]] = {
    "activation": ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "swish", "linear",
                   "sigmoid_beta", "sigmoid_modgrad"],
    "initializer": ["random_normal", "random_uniform", "truncated_normal", "glorot_normal", "glorot_uniform",
                    "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "orthogonal", "zeros", "ones",
                    "constant"],
    "optimizer": ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adam_optax", "adamw", "adopt", "adagrad",
                  "scratch_gd", "scratch_momentum", "scratch_rmsprop", "scratch_adam",
                  "torch_sgd", "torch_momentum", "torch_rmsprop", "torch_adam", "adopt_ref"],
}

# Configs written before the fidelity fields existed describe the earlier models: output layer
# initialised like the hidden ones, independent draws per layer, zero biases, the output layer
# kept between stages, and optax's Adam. Reading such a config.json gives back those models.
LEGACY_VALUES = {"output_init": OUTPUT_INIT_HIDDEN, "init_draw": "independent", "bias_init": "zeros",
                 "stage_output": "keep"}
LEGACY_OPTIMIZERS = {"adam": "adam_optax"}


class ConfigError(ValueError):
    """A configuration value a user gave is invalid (reported as one line, exit status 2).
    ``field`` names the Config field at fault, when there is one (a command line names its flag)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def register_name(kind: str, name: str) -> None:
    """Make ``name`` a valid value of the ``kind`` registry ("activation", "initializer", "optimizer")."""
    if name not in NAMES[kind]:
        NAMES[kind].append(name)


def apply_protocol(values: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``values["protocol"]``'s settings (:data:`PROTOCOLS`) put in: a protocol's
    batch size and pixels replace a method's own. ``given`` are the values a user set explicitly:
    one that disagrees with the protocol is a ConfigError (field "protocol")."""
    name = values.get("protocol")
    if name is None:
        return values
    _check_choice(name, tuple(PROTOCOLS), "protocol", "protocol")
    for field, value in PROTOCOLS[name].items():
        if field in given and given[field] is not None and given[field] != value:
            raise ConfigError(f"protocol {name} sets {field} {value}, but {field} {given[field]} is given as "
                              "well: drop one of them", "protocol")
    return {**values, **PROTOCOLS[name]}


def check_name(kind: str, name: str, field: str | None = None) -> None:
    """The one check of a registry name: ConfigError naming the choices."""
    if name not in NAMES[kind]:
        raise ConfigError(f"unknown {kind} {name!r}; choose from {', '.join(NAMES[kind])}", field)


def _f(default: Any, group: str, help: str, flag: str | None = "") -> Any:
    """A Config field: ``group`` of :data:`GROUPS`, a help line, and its flag ("" derives
    ``--field-name``; None: no flag of its own)."""
    return dataclasses.field(default=default, metadata={"group": group, "help": help, "flag": flag})


@dataclasses.dataclass(frozen=True)
class Config:
    method: str = _f("baseline_7", "protocol", "the method this config was made for", flag=None)
    # model
    depth: int = _f(7, "model", "number of hidden layers")
    width: int = _f(128, "model", "units per hidden layer")
    activation: str = _f("sigmoid", "model", "hidden activation: " + ", ".join(NAMES["activation"]))
    beta: float = _f(0.05, "model", "beta of sigmoid_beta / sigmoid_modgrad")
    init: str = _f("random_normal", "model", "kernel initializer (random_normal, glorot_uniform, he_normal, ...)")
    init_std: float = _f(0.05, "model", "std of random_normal / truncated_normal kernels")
    init_scale: float = _f(1.0, "model", "scale / bound / constant of the other initializers")
    # Keras' original: one initializer object for every hidden layer, whose unseeded draw repeats
    # (docs/study.md "The models"); "independent" draws every layer with its own key
    init_draw: str = _f("shared", "model", "hidden kernels: shared (one draw repeated, the original Keras) "
                        "or independent")
    output_init: str = _f("glorot_uniform", "model", "output layer's kernel initializer (glorot_uniform, Keras' "
                          "default; 'hidden': like the hidden layers)")
    bias_init: str = _f("zeros", "model", "biases: zeros (Keras) or torch (PyTorch's Uniform(+-1/sqrt(fan_in)))")
    norm: str = _f("none", "model", "normalisation before each hidden Dense: " + ", ".join(NORMS))
    norm_eps: float = _f(1e-6, "model", "epsilon of the standardize layers")
    bn_momentum: float = _f(0.99, "model", "BatchNorm momentum of the moving statistics (Keras' 0.99)")
    bn_eps: float = _f(1e-3, "model", "BatchNorm epsilon (Keras' 1e-3)")
    skips: tuple[tuple[int, int], ...] = _f((), "model", "skip paths as from-to pairs, e.g. 1-3,4-7")
    dropout: float = _f(0.0, "model", "dropout rate after each hidden activation")
    # optimisation
    optimizer: str = _f("sgd", "optimizer", "optimizer: " + ", ".join(NAMES["optimizer"]))
    lr: float = _f(0.01, "optimizer", "learning rate")
    momentum: float = _f(0.9, "optimizer", "momentum of --optimizer momentum / nesterov")
    b1: float = _f(0.9, "optimizer", "Adam-family first-moment decay")
    b2: float = _f(0.999, "optimizer", "Adam-family second-moment decay")
    eps: float = _f(1e-7, "optimizer", "epsilon of Adam / RMSProp / Adagrad (Keras' 1e-7)")
    rho: float = _f(0.9, "optimizer", "RMSProp decay")
    weight_decay: float = _f(0.0, "optimizer", "decoupled weight decay of --optimizer adamw")
    l1: float = _f(0.0, "optimizer", "L1 kernel regularisation strength (added to the training loss)")
    l2: float = _f(0.0, "optimizer", "L2 kernel regularisation strength (added to the training loss)")
    regularize_bias: bool = _f(False, "optimizer", "regularise the biases too")
    # protocol
    batch_size: int = _f(32, "protocol", "minibatch size (32, Keras' default)")
    epochs: int = _f(300, "protocol", "epochs (300 in the seed protocol)")
    seed: int = _f(0, "protocol", "random seed")
    train_limit: int | None = _f(None, "protocol", "use only the first N training images (quick runs)")
    pixels: str = _f("scaled", "protocol", "pixel values the model sees: scaled (x / 255, in [0, 1]) or raw "
                     "(0-255, as the course's hint code leaves them)")
    protocol: str | None = _f(None, "protocol", "a named protocol that sets the batch size and --pixels together: "
                              + "; ".join(f"{n}: batch {v['batch_size']}, pixels {v['pixels']}"
                                          for n, v in PROTOCOLS.items())
                              + ". --batch-size / --pixels given as well must agree with it (else an error)")
    # None: Keras' fit (validation_batch_size defaults to the fit batch size) where a layer uses the
    # batch's own statistics in evaluation, else 2000 rows (see Config.evaluation_batch_size)
    eval_batch_size: int | None = _f(None, "protocol", "rows per evaluation batch (when not given: the batch size with "
                                     "--norm standardize/standardize_feature, whose output depends on the batch "
                                     "(Keras evaluates validation data in batches of the fit batch size), else "
                                     "2000; then it only changes the summation order)")
    precision: str = _f("highest", "protocol", "precision of the matrix products: highest (float32, reproducible) "
                        "or default (the platform's fast path: TF32 on GPUs, bfloat16 passes on TPUs)")
    unroll: int = _f(1, "protocol", "training steps per loop iteration of the compiled epoch (lax.scan's "
                     "unroll: fewer launches on a GPU, the same steps; benchmarks/step_overhead.py)")
    # staged training ("freeze"): compact table string, see vgjax.train.stages
    stages: str | None = _f(None, "protocol", "stage table for staged training: 'default', a compact string "
                            "or a .json file")
    epochs_scale: float = _f(1.0, "protocol", "multiply every stage's epochs (quick staged runs)")
    # every stage builds a new model with a freshly initialised output layer (the original);
    # "keep" carries the output layer over from stage to stage
    stage_output: str = _f("fresh", "protocol", "staged training: fresh (a new output layer every stage, the "
                           "original) or keep")
    # bookkeeping: what is measured and kept, and when a run stops early
    diagnostics: bool = _f(True, "bookkeeping", "skip per-layer diagnostics", flag="--no-diagnostics")
    checkpoint_every: int = _f(10, "bookkeeping", "epochs between checkpoints (0: only at stage ends)")
    init_from: str | None = _f(None, "bookkeeping", "start from the saved model of another run (its best "
                               "checkpoint, else its latest)")
    best_checkpoint: bool = _f(True, "bookkeeping", "do not keep a best-model checkpoint", flag="--no-best-checkpoint")
    monitor: str = _f("val_accuracy", "bookkeeping", "metric of the best-model checkpoint")
    mode: str = _f("auto", "bookkeeping", "whether the monitored metrics improve upward (max) or downward (min)")
    early_stop: str | None = _f(None, "bookkeeping", "stop when this metric (e.g. val_loss, val_accuracy) stops "
                                "improving")
    patience: int = _f(5, "bookkeeping", "epochs without improvement before early stopping")
    min_delta: float = _f(0.0, "bookkeeping", "smallest change that counts as improvement")
    restore_best: bool = _f(False, "bookkeeping", "after early stopping, keep the best epoch's weights")
    async_checkpoints: bool = _f(True, "bookkeeping", "save checkpoints synchronously (training waits for each save)",
                                 flag="--sync-checkpoints")
    tensorboard: bool = _f(False, "bookkeeping", "also write TensorBoard scalars to <run>/tensorboard/ (needs the "
                           "tensorboard extra: pip install 'vgjax[tensorboard]')")

    def __post_init__(self) -> None:
        validate(self)

    def evaluation_batch_size(self) -> int:
        """Rows per evaluation batch: ``eval_batch_size``, or by default the training batch size
        where the model normalises with the batch's own statistics (:data:`BATCH_STAT_NORMS`; so the
        validation metrics are Keras' ``fit``'s, which evaluates in batches of the fit batch size),
        else 2000 (the metrics do not depend on it but for the summation order, and large batches
        evaluate faster)."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        return self.batch_size if self.norm in BATCH_STAT_NORMS else LARGE_EVAL_BATCH

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["skips"] = [list(p) for p in self.skips]
        return d

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


def fields(group: str | None = None) -> list[dataclasses.Field]:
    """Config's fields, in order; only those of ``group`` when given."""
    return [f for f in dataclasses.fields(Config) if group is None or f.metadata["group"] == group]


def parse_skips(text: str) -> tuple[tuple[int, int], ...]:
    """'1-3,4-7' -> ((1, 3), (4, 7)); '' or 'none' -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(tuple(int(i) for i in p.split("-")) for p in text.split(","))  # type: ignore[misc]
    except ValueError:
        raise ConfigError(f"skip paths {text!r} must look like 1-3,4-7", "skips") from None


def _check(cond: bool, msg: str, field: str | None = None) -> None:
    if not cond:
        raise ConfigError(msg, field)


def _check_choice(value: str, choices: tuple[str, ...], what: str, field: str) -> None:
    _check(value in choices, f"unknown {what} {value!r}; choose from {', '.join(choices)}", field)


def validate_skips(skips: tuple[tuple[int, int], ...], depth: int) -> None:
    """Skip paths (a, b): the output of hidden layer a is added to the output of hidden layer b."""
    seen = set()
    for pair in skips:
        _check(len(pair) == 2, f"skip path {pair!r} must be a pair of hidden-layer indices", "skips")
        a, b = pair
        _check(1 <= a < b <= depth, f"skip path {a}->{b} needs 1 <= from < to <= depth ({depth})", "skips")
        _check((a, b) not in seen, f"skip path {a}->{b} is given twice", "skips")
        seen.add((a, b))


def _validate_model(c: Config) -> None:
    _check(c.depth >= 0, f"depth must be >= 0, got {c.depth}", "depth")
    _check(c.width >= 1, f"width must be >= 1, got {c.width}", "width")
    check_name("activation", c.activation, "activation")
    check_name("initializer", c.init, "init")
    _check(c.init_std > 0, f"init std must be > 0, got {c.init_std}", "init_std")
    _check_choice(c.init_draw, INIT_DRAWS, "init draw", "init_draw")
    _check_choice(c.output_init, (OUTPUT_INIT_HIDDEN, *NAMES["initializer"]), "output initializer", "output_init")
    _check_choice(c.bias_init, BIAS_INITS, "bias init", "bias_init")
    _check_choice(c.norm, NORMS, "norm", "norm")
    validate_skips(c.skips, c.depth)
    _check(0.0 <= c.dropout < 1.0, f"dropout rate must be in [0, 1), got {c.dropout}", "dropout")
    _check(c.beta > 0, f"beta must be > 0, got {c.beta}", "beta")
    _check(c.norm_eps > 0, f"the standardize epsilon must be > 0, got {c.norm_eps}", "norm_eps")
    _check(0.0 <= c.bn_momentum <= 1.0, f"BatchNorm momentum must be in [0, 1], got {c.bn_momentum}", "bn_momentum")
    _check(c.bn_eps > 0, f"BatchNorm epsilon must be > 0, got {c.bn_eps}", "bn_eps")


def _validate_rest(c: Config) -> None:
    check_name("optimizer", c.optimizer, "optimizer")
    _check(c.lr > 0, f"learning rate must be > 0, got {c.lr}", "lr")
    # decay rates in [0, 1): at 1 the moments never move (Adam's bias correction divides by 0)
    for name, what in (("momentum", "momentum"), ("b1", "b1 (first-moment decay)"),
                       ("b2", "b2 (second-moment decay)"), ("rho", "rho (RMSProp decay)")):
        value = getattr(c, name)
        _check(0.0 <= value < 1.0, f"{what} must be in [0, 1), got {value}", name)
    _check(c.eps > 0, f"eps must be > 0, got {c.eps}", "eps")
    _check(c.weight_decay >= 0, f"weight decay must be >= 0, got {c.weight_decay}", "weight_decay")
    _check(c.l1 >= 0 and c.l2 >= 0, "regularisation strengths must be >= 0", "l1" if c.l1 < 0 else "l2")
    _check(c.batch_size >= 1, f"batch size must be >= 1, got {c.batch_size}", "batch_size")
    _check(c.epochs >= 1, f"epochs must be >= 1, got {c.epochs}", "epochs")
    _check(0 <= c.seed < 2 ** 32, f"give a whole number from 0 to {2 ** 32 - 1} (larger seeds repeat smaller "
           f"ones), got {c.seed}", "seed")
    _check_choice(c.pixels, PIXELS, "pixel scaling", "pixels")
    if c.protocol is not None:
        _check_choice(c.protocol, tuple(PROTOCOLS), "protocol", "protocol")
        for name, value in PROTOCOLS[c.protocol].items():
            _check(getattr(c, name) == value, f"protocol {c.protocol} sets {name} {value}, not "
                   f"{getattr(c, name)}", "protocol")
    _check(c.train_limit is None or c.train_limit >= 1, f"train limit must be >= 1, got {c.train_limit}",
           "train_limit")
    _check(c.epochs_scale > 0, f"epochs scale must be > 0, got {c.epochs_scale}", "epochs_scale")
    _check_choice(c.stage_output, STAGE_OUTPUTS, "stage output policy", "stage_output")
    _check(c.eval_batch_size is None or c.eval_batch_size >= 1, "eval batch size must be >= 1", "eval_batch_size")
    _check_choice(c.precision, PRECISIONS, "precision", "precision")
    _check(c.unroll >= 1, f"unroll must be >= 1, got {c.unroll}", "unroll")
    _check(c.checkpoint_every >= 0, "checkpoint interval must be >= 0", "checkpoint_every")
    _check_choice(c.monitor, METRICS, "monitored metric", "monitor")
    if c.early_stop is not None:
        _check_choice(c.early_stop, METRICS, "early-stopping metric", "early_stop")
    _check_choice(c.mode, MODES, "mode", "mode")
    _check(c.patience >= 0, f"patience must be >= 0, got {c.patience}", "patience")
    _check(c.min_delta >= 0, f"min delta must be >= 0 (a negative one counts a worse epoch as an improvement), "
           f"got {c.min_delta}", "min_delta")


def validate(c: Config) -> None:
    _validate_model(c)
    _validate_rest(c)
