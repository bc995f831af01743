"""The MLP family of the study: depth, width, activation, initialiser, normalisation, skip paths.

Layer names are stable so that diagnostics and freezing can address them:
``hidden_1`` … ``hidden_<depth>`` (Dense), ``norm_1`` … (BatchNorm, placed *before* each hidden
Dense), ``output`` (the final Dense(10) producing logits).

Skip paths ``(a, b)`` add the output of hidden layer ``a`` to the output of hidden layer ``b``;
the sum feeds the next layer (or the output layer). "The output of a layer" is the value leaving
it, including any skip sum that ends there. The study's remedy 5 is ``skips=((1, 3), (4, 7))``.

Initialisation follows the original Keras models (docs/study.md, "The models"): the hidden
kernels come from ``kernel_init``, by default one shared draw repeated in every hidden layer
(``init_draw="shared"``); the output layer has its own initializer (``output_init``, Keras'
Glorot-uniform by default; ``None`` = the hidden layers' initializer); biases are zero, or
PyTorch's ``nn.Linear`` default (``bias_init="torch"``) for the PyTorch network of the optimizer
exercise.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgjax.nn import inits, layers
from vgjax.config import OUTPUT_INIT_HIDDEN, Config, validate_skips

NUM_CLASSES = 10
INPUT_DIM = 784


class MLP(nn.Module):
    depth: int = 7
    width: int = 128
    activation: str = "sigmoid"
    beta: float = 0.05
    kernel_init: Callable = nn.initializers.normal(stddev=0.05)
    output_init: Callable | None = None  # None: the hidden layers' initializer
    init_draw: str = "independent"  # or "shared": one draw repeated in every hidden layer
    bias_init: str = "zeros"  # or "torch"
    norm: str = "none"
    norm_eps: float = 1e-6
    bn_momentum: float = 0.99
    bn_eps: float = 1e-3
    skips: tuple[tuple[int, int], ...] = ()
    dropout: float = 0.0
    num_classes: int = NUM_CLASSES

    def _initializers(self) -> tuple[Callable, Callable]:
        """(hidden kernel initializer, output kernel initializer) for this call."""
        hidden = self.kernel_init
        if self.init_draw == "shared" and self.is_initializing():
            # "shared_init", when given, makes the draw independent of the params key (staged
            # runs: every stage's model repeats the sub-models' one initializer)
            key = self.make_rng("shared_init" if self.has_rng("shared_init") else "params")
            hidden = inits.shared_draw(self.kernel_init, key)
        return hidden, hidden if self.output_init is None else self.output_init

    def _dense(self, h: jax.Array, features: int, kernel_init: Callable, name: str) -> jax.Array:
        bias_init = inits.torch_bias(h.shape[-1]) if self.bias_init == "torch" else nn.initializers.zeros
        return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, name=name)(h)

    def _normalise(self, h: jax.Array, i: int, train: bool, mask: jax.Array | None,
                   frozen: tuple[str, ...] = ()) -> jax.Array:
        if self.norm == "batchnorm":
            name = f"norm_{i}"
            bn = nn.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_eps, name=name)
            # a frozen BatchNorm layer runs in inference mode even in training, as Keras 3's
            # BatchNormalization with trainable=False: its moving statistics, which do not move
            inference = not train or name in frozen
            return bn(h, use_running_average=inference, mask=None if mask is None else mask[:, None])
        if self.norm in ("standardize", "standardize_feature"):
            std = layers.Standardize(per_feature=self.norm == "standardize_feature",
                                     eps=self.norm_eps, name=f"norm_{i}")
            return std(h, mask=mask)
        return h

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None,
                 beta: jax.Array | float | None = None, frozen: tuple[str, ...] = ()) -> jax.Array:
        """Logits for a batch ``x`` of float inputs in [0, 1].

        ``mask`` marks the valid rows of a padded batch (normalisation statistics ignore the
        rest); ``beta`` overrides the module's beta with a traced value (used by sweeps);
        ``frozen`` names the BatchNorm layers (``norm_i``) of frozen sub-models, which use their
        moving statistics also when ``train`` (staged training, docs/study.md §4.6).
        """
        validate_skips(self.skips, self.depth)
        act = layers.get_activation(self.activation)
        beta = self.beta if beta is None else beta
        hidden_init, output_init = self._initializers()
        incoming = {}
        for a, b in self.skips:
            incoming.setdefault(b, []).append(a)
        outputs: dict[int, jax.Array] = {}
        h = x
        for i in range(1, self.depth + 1):
            h = self._normalise(h, i, train, mask, frozen)
            h = self._dense(h, self.width, hidden_init, f"hidden_{i}")
            h = act(h, beta)
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train, name=f"dropout_{i}")(h)
            for a in incoming.get(i, ()):
                h = h + outputs[a]
                self.sow("intermediates", f"skip_sum_{i}", h)
            self.sow("intermediates", f"hidden_{i}_out", h)
            outputs[i] = h
        return self._dense(h, self.num_classes, output_init, "output")


def layer_names(depth: int) -> list[str]:
    """Dense layers from input to output: hidden_1 … hidden_<depth>, output."""
    return [f"hidden_{i}" for i in range(1, depth + 1)] + ["output"]


def build_model(config: Config, kernel_init: Callable | None = None) -> MLP:
    """The MLP a config describes. ``kernel_init`` overrides the config's named hidden initialiser.

    A named output initializer takes Keras' default arguments (std 0.05, scale 1).
    """
    if kernel_init is None:
        kernel_init = inits.make_initializer(config.init, config.init_std, config.init_scale)
    output_init = None if config.output_init == OUTPUT_INIT_HIDDEN else inits.make_initializer(config.output_init)
    return MLP(depth=config.depth, width=config.width, activation=config.activation,
               beta=config.beta, kernel_init=kernel_init, output_init=output_init,
               init_draw=config.init_draw, bias_init=config.bias_init, norm=config.norm,
               norm_eps=config.norm_eps, bn_momentum=config.bn_momentum, bn_eps=config.bn_eps,
               skips=tuple(config.skips), dropout=config.dropout)


def init_variables(model: MLP, key: jax.Array, shared_key: jax.Array | None = None) -> dict:
    """Parameters (and BatchNorm statistics) for a model on 784-pixel inputs.

    ``shared_key`` fixes the shared hidden-kernel draw (``init_draw="shared"``) independently of
    ``key``; without it the draw comes from ``key``.
    """
    rngs = {"params": key} if shared_key is None else {"params": key, "shared_init": shared_key}
    return model.init(rngs, jnp.zeros((1, INPUT_DIM), jnp.float32), train=False)


def count_params(params) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
