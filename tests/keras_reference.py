"""The original study's Keras models, written as the original code builds them (test-only reference).

docs/study.md ("The models", "Framework semantics") describes the original: one
``RandomNormal`` object passed to every hidden ``Dense(128)``, a final ``Dense(10)`` with Keras'
defaults, the loss on logits, Keras' SGD or Adam, ``fit``'s minibatches. The parity tests
(tests/test_keras_parity.py) and the parity benchmark (benchmarks/keras_parity.py) build these
models, copy vgjax's parameters in or out by layer name, and compare.

Layer names follow vgjax: ``hidden_i``, ``norm_i``, ``output``.
"""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain float32 kernels, no oneDNN rewrites

import numpy as np  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

WIDTH = 128
INPUT_DIM = 784


class Standardize(keras.layers.Layer):
    """The original's custom normalisation layer: (x - mean) / std of the whole input tensor
    (with vgjax's epsilon under the root, 1e-6, against a constant input)."""

    def __init__(self, eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps

    def call(self, x):
        mean = tf.reduce_mean(x)
        var = tf.reduce_mean(tf.square(x - mean))
        return (x - mean) * tf.math.rsqrt(var + self.eps)


def hidden_block(config, i: int, init, h):
    """Remedy 4's normalisation (before the Dense) and hidden Dense i, as the original stacks them."""
    if config.norm == "batchnorm":
        h = keras.layers.BatchNormalization(name=f"norm_{i}")(h)  # momentum 0.99, epsilon 1e-3
    elif config.norm == "standardize":
        h = Standardize(config.norm_eps, name=f"norm_{i}")(h)
    return keras.layers.Dense(WIDTH, activation=config.activation, kernel_initializer=init, name=f"hidden_{i}")(h)


def build(config) -> keras.Model:
    """The Keras model of a vgjax config of the study (docs/study.md §3–§4)."""
    init = keras.initializers.RandomNormal(mean=0.0, stddev=config.init_std)  # one object, every layer
    inputs = keras.Input((INPUT_DIM,))
    h, outputs = inputs, {}
    ends = {b: a for a, b in config.skips}
    for i in range(1, config.depth + 1):
        h = hidden_block(config, i, init, h)
        if i in ends:
            h = keras.layers.Add(name=f"skip_{ends[i]}_{i}")([h, outputs[ends[i]]])
        outputs[i] = h
    logits = keras.layers.Dense(10, name="output")(h)  # Keras' defaults: Glorot-uniform, zero bias
    return keras.Model(inputs, logits)


def submodels(sizes, init_std: float = 0.05, norm: str = "none") -> list[keras.Sequential]:
    """Remedy 6's sub-models, built once with one shared initializer object; with
    ``norm="batchnorm"`` a BatchNormalization layer before every hidden Dense, inside its sub-model
    (so freezing a sub-model freezes its BatchNorm layers too)."""
    init = keras.initializers.RandomNormal(mean=0.0, stddev=init_std)
    out, first = [], 1
    for k, n in enumerate(sizes, start=1):
        layers = []
        for i in range(first, first + n):
            if norm == "batchnorm":
                layers.append(keras.layers.BatchNormalization(name=f"norm_{i}"))
            layers.append(keras.layers.Dense(WIDTH, activation="sigmoid", kernel_initializer=init,
                                             name=f"hidden_{i}"))
        out.append(keras.Sequential(layers, name=f"sub_{k}"))
        first += n
    return out


def staged(subs: list[keras.Sequential], stacked, frozen) -> keras.Model:
    """One training run of remedy 6: a new model of the stacked sub-models and a new Dense(10)."""
    inputs = keras.Input((INPUT_DIM,))
    h = inputs
    for k in stacked:
        subs[k - 1].trainable = k not in frozen
        h = subs[k - 1](h)
    return keras.Model(inputs, keras.layers.Dense(10, name="output")(h))


def optimizer(config):
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.lr)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.lr, beta_1=config.b1, beta_2=config.b2,
                                     epsilon=config.eps)
    raise ValueError(f"no Keras reference for optimizer {config.optimizer!r}")


def compile_model(model: keras.Model, config) -> keras.Model:
    model.compile(optimizer=optimizer(config),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def dense_layers(model: keras.Model) -> dict:
    """Every named layer of the model, sub-models included: {name: layer}."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Sequential):
            out.update(dense_layers(layer))
        elif layer.weights:
            out[layer.name] = layer
    return out


def set_from_vgjax(model: keras.Model, params: dict, batch_stats: dict | None = None) -> None:
    """Copy vgjax's parameters (and BatchNorm statistics) into the Keras model by layer name."""
    for name, layer in dense_layers(model).items():
        p = params[name]
        if isinstance(layer, keras.layers.BatchNormalization):
            s = batch_stats[name]
            layer.set_weights([np.asarray(p["scale"]), np.asarray(p["bias"]), np.asarray(s["mean"]),
                               np.asarray(s["var"])])
        else:
            layer.set_weights([np.asarray(p["kernel"]), np.asarray(p["bias"])])


def get_weights(model: keras.Model) -> tuple[dict, dict]:
    """(params, batch_stats) of the Keras model in vgjax's layout."""
    params, stats = {}, {}
    for name, layer in dense_layers(model).items():
        w = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            params[name] = {"scale": w[0], "bias": w[1]}
            stats[name] = {"mean": w[2], "var": w[3]}
        else:
            params[name] = {"kernel": w[0], "bias": w[1]}
    return params, stats


def train_batches(model: keras.Model, x: np.ndarray, y: np.ndarray, batches) -> list[float]:
    """``train_on_batch`` over the given index batches, in order: the per-step losses."""
    x = x.astype(keras.config.floatx())
    return [float(model.train_on_batch(x[b], y[b], return_dict=True)["loss"]) for b in batches]


@contextlib.contextmanager
def floatx(dtype: str):
    """Build and train Keras models in ``dtype`` inside the block."""
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)  # layers take the global policy, cached once created
    try:
        yield
    finally:
        keras.config.set_floatx(old)
        keras.config.set_dtype_policy(old_policy)


def seed(value: int) -> None:
    keras.utils.set_random_seed(value)
