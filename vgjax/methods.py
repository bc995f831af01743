"""The method registry: one named config per method of the study (docs/study.md §3–§5, plus the toolbox remedies).

Every remedy changes one thing of ``baseline_7`` and keeps the seed protocol otherwise: a remedy
changes the hidden layers only, the output layer keeps Keras' default initialisation.
The optimizer exercise's network is PyTorch's (docs/study.md, "The optimizer exercise"): every
``nn.Linear`` weight Normal(0, 0.05) drawn independently, the output layer's included, and
PyTorch's default biases.
"""

from __future__ import annotations

import dataclasses

from vgjax.config import Config, ConfigError, apply_protocol


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    description: str
    changes: dict
    group: str = "remedy"  # baseline | remedy | staged | optimizers | optimizers_scratch | toolbox


STUDY_SKIPS = ((1, 3), (4, 7))

_METHODS = [
    Method("baseline_3", "Model 1: 3 hidden sigmoid layers (learns)", {"depth": 3}, "baseline"),
    Method("baseline_5", "Model 2: 5 hidden sigmoid layers (barely learns)", {"depth": 5}, "baseline"),
    Method("baseline_7", "Model 3: 7 hidden sigmoid layers (does not learn)", {"depth": 7}, "baseline"),
    Method("weight_std_1", "remedy 1a: kernel init Normal(0, 1.0)", {"init_std": 1.0}),
    Method("weight_std_10", "remedy 1b: kernel init Normal(0, 10.0)", {"init_std": 10.0}),
    Method("relu", "remedy 2: ReLU hidden activation", {"activation": "relu"}),
    Method("tanh", "remedy 2: tanh hidden activation", {"activation": "tanh"}),
    Method("adam", "remedy 3: Adam (lr 0.001, b1 0.9, b2 0.999, eps 1e-7) instead of SGD",
           {"optimizer": "adam", "lr": 0.001}),
    Method("batchnorm", "remedy 4a: BatchNorm before each hidden Dense", {"norm": "batchnorm"}),
    Method("custom_norm", "remedy 4b: (x - mean) / std of the whole tensor before each hidden Dense",
           {"norm": "standardize"}),
    Method("skip", "remedy 5: skip paths hidden 1 -> 3 and hidden 4 -> 7", {"skips": STUDY_SKIPS}),
    Method("freeze", "remedy 6: train some layers (staged 2-2-2-1 schedule with freezing)",
           {"stages": "default"}, "staged"),
    # a Keras initializer given by name is a new object per layer: independent draws
    Method("he_init", "toolbox remedy: ReLU with He-normal kernels",
           {"activation": "relu", "init": "he_normal", "init_draw": "independent"}, "toolbox"),
    Method("selu_lecun", "toolbox remedy: SELU with LeCun-normal kernels (self-normalising)",
           {"activation": "selu", "init": "lecun_normal", "init_draw": "independent"}, "toolbox"),
    Method("sigmoid_beta", "new remedy: activation sigmoid(z) + beta*z (beta 0.05)",
           {"activation": "sigmoid_beta"}),
    Method("sigmoid_modgrad", "new remedy: sigmoid forward, sigma'(z) + beta backward (beta 0.05)",
           {"activation": "sigmoid_modgrad"}),
]

# docs/study.md §5, second part: the 5-hidden-layer sigmoid net, batch 512, lr 0.01, five optimizers,
# trained as the original trains it, with torch.optim and ADOPT's reference implementation, each with
# its own defaults (vgjax.optim.torch_forms). Momentum 0.9: torch's default is 0 (plain SGD), 0.9 is the
# value of PyTorch's own examples; the exercise's beta 0.5 belongs to its damped from-scratch form
# (docs/results.md, "The optimizer exercise with PyTorch's optimizers").
_OPT_NET = {"depth": 5, "batch_size": 512, "lr": 0.01, "init_draw": "independent", "output_init": "hidden",
            "bias_init": "torch"}
_TORCH_OPTIMIZERS = [
    ("sgd", {"optimizer": "torch_sgd"}, "torch.optim.SGD"),
    ("momentum", {"optimizer": "torch_momentum", "momentum": 0.9}, "torch.optim.SGD, momentum 0.9"),
    ("rmsprop", {"optimizer": "torch_rmsprop", "rho": 0.99, "eps": 1e-8},
     "torch.optim.RMSprop (alpha 0.99, eps 1e-8 outside the root)"),
    ("adam", {"optimizer": "torch_adam", "b1": 0.9, "b2": 0.999, "eps": 1e-8},
     "torch.optim.Adam (0.9, 0.999, eps 1e-8)"),
    ("adopt", {"optimizer": "adopt_ref", "b1": 0.9, "b2": 0.9999, "eps": 1e-6},
     "ADOPT, reference implementation (0.9, 0.9999, eps 1e-6, clip t^0.25)"),
]
for _name, _changes, _desc in _TORCH_OPTIMIZERS:
    _METHODS.append(Method(f"optimizers_{_name}", f"docs/study.md §5 net (5 layers, batch 512): {_desc}",
                           {**_OPT_NET, **_changes}, "optimizers"))
# the earlier forms, kept as variants: the quadratic exercise's from-scratch optimizers and optax's
# ADOPT (b2 0.999), which trained the optimizers_* methods before (their run directories name them)
for _name, _opt, _desc in [("momentum", "scratch_momentum", "damped momentum (beta 0.5, docs/study.md §5 form)"),
                           ("rmsprop", "scratch_rmsprop", "RMSProp (gamma 0.9, eps 1e-6 in the root, §5 form)"),
                           ("adam", "scratch_adam", "Adam (0.9, 0.999, eps 1e-6, docs/study.md §5 form)"),
                           ("adopt", "adopt", "ADOPT (optax.contrib, b2 0.999)")]:
    _METHODS.append(Method(f"optimizers_{'optax' if _opt == 'adopt' else 'scratch'}_{_name}", f"docs/study.md §5 net (5 layers, batch 512): {_desc}",
                           {**_OPT_NET, "optimizer": _opt}, "optimizers_scratch"))

METHODS: dict[str, Method] = {m.name: m for m in _METHODS}


def method_names(group: str | None = None) -> list[str]:
    return [m.name for m in _METHODS if group is None or m.group == group]


def default_methods(include_optimizers: bool) -> list[str]:
    """The suite's methods: the baseline, remedy and staged groups (docs/study.md §3–§4), and with
    ``include_optimizers`` the §5 optimizer comparison."""
    groups = ["baseline", "remedy", "staged"] + (["optimizers"] if include_optimizers else [])
    return [m for g in groups for m in method_names(g)]


def get_config(method: str, **overrides) -> Config:
    """The config of a named method, with user overrides applied on top; an override ``protocol``
    sets its batch size and pixels (:func:`vgjax.config.apply_protocol`)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; run with --list to see the methods")
    values = {"method": method, **METHODS[method].changes}
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    return Config(**apply_protocol(values, given))
