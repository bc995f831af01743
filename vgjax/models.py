"""The MLP family of the study: depth, width, activation, initialiser, normalisation, skip paths.

Layer names are stable so that diagnostics and freezing can address them:
``hidden_1`` … ``hidden_<depth>`` (Dense), ``norm_1`` … (BatchNorm, placed *before* each hidden
Dense), ``output`` (the final Dense(10) producing logits).

Skip paths ``(a, b)`` add the output of hidden layer ``a`` to the output of hidden layer ``b``;
the sum feeds the next layer (or the output layer). "The output of a layer" is the value leaving
it, including any skip sum that ends there. SPEC §4.5 is ``skips=((1, 3), (4, 7))``.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgjax import inits, layers
from vgjax.config import Config, validate_skips

NUM_CLASSES = 10
INPUT_DIM = 784


class MLP(nn.Module):
    depth: int = 7
    width: int = 128
    activation: str = "sigmoid"
    beta: float = 0.05
    kernel_init: Callable = nn.initializers.normal(stddev=0.05)
    norm: str = "none"
    norm_eps: float = 1e-6
    bn_momentum: float = 0.99
    bn_eps: float = 1e-3
    skips: tuple[tuple[int, int], ...] = ()
    dropout: float = 0.0
    num_classes: int = NUM_CLASSES

    def _normalise(self, h: jax.Array, i: int, train: bool, mask: jax.Array | None) -> jax.Array:
        if self.norm == "batchnorm":
            bn = nn.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_eps, name=f"norm_{i}")
            return bn(h, use_running_average=not train, mask=None if mask is None else mask[:, None])
        if self.norm in ("standardize", "standardize_feature"):
            std = layers.Standardize(per_feature=self.norm == "standardize_feature",
                                     eps=self.norm_eps, name=f"norm_{i}")
            return std(h, mask=mask)
        return h

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None,
                 beta: jax.Array | float | None = None) -> jax.Array:
        """Logits for a batch ``x`` of float inputs in [0, 1].

        ``mask`` marks the valid rows of a padded batch (normalisation statistics ignore the
        rest); ``beta`` overrides the module's beta with a traced value (used by sweeps).
        """
        validate_skips(self.skips, self.depth)
        act = layers.get_activation(self.activation)
        beta = self.beta if beta is None else beta
        incoming = {}
        for a, b in self.skips:
            incoming.setdefault(b, []).append(a)
        outputs: dict[int, jax.Array] = {}
        h = x
        for i in range(1, self.depth + 1):
            h = self._normalise(h, i, train, mask)
            h = nn.Dense(self.width, kernel_init=self.kernel_init, name=f"hidden_{i}")(h)
            h = act(h, beta)
            if self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train, name=f"dropout_{i}")(h)
            for a in incoming.get(i, ()):
                h = h + outputs[a]
                self.sow("intermediates", f"skip_sum_{i}", h)
            self.sow("intermediates", f"hidden_{i}_out", h)
            outputs[i] = h
        return nn.Dense(self.num_classes, kernel_init=self.kernel_init, name="output")(h)


def layer_names(depth: int) -> list[str]:
    """Dense layers from input to output: hidden_1 … hidden_<depth>, output."""
    return [f"hidden_{i}" for i in range(1, depth + 1)] + ["output"]


def build_model(config: Config, kernel_init: Callable | None = None) -> MLP:
    """The MLP a config describes. ``kernel_init`` overrides the config's named initialiser."""
    if kernel_init is None:
        kernel_init = inits.make_initializer(config.init, config.init_std, config.init_scale)
    return MLP(depth=config.depth, width=config.width, activation=config.activation,
               beta=config.beta, kernel_init=kernel_init, norm=config.norm,
               norm_eps=config.norm_eps, bn_momentum=config.bn_momentum, bn_eps=config.bn_eps,
               skips=tuple(config.skips), dropout=config.dropout)


def init_variables(model: MLP, key: jax.Array) -> dict:
    """Parameters (and BatchNorm statistics) for a model on 784-pixel inputs."""
    return model.init({"params": key}, jnp.zeros((1, INPUT_DIM), jnp.float32), train=False)


def count_params(params) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
