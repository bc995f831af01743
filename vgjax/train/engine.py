"""The training engine: a train state, one jitted epoch as a ``lax.scan``, evaluation, ``fit``.

Data sits on the device as uint8 for the whole run; each epoch shuffles with a key folded from
the run key and the epoch number (:mod:`vgjax.train.keys`), scans over minibatches and scales pixels per batch (``Config.pixels``: to [0, 1], or raw 0-255).
The last minibatch of an epoch may be partial (Keras semantics): it is padded to full size and
masked, so its loss, gradient and BatchNorm statistics count only the real rows.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Iterable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vgjax.train import keys
from vgjax.config import PIXEL_DIVISORS, Config
from vgjax.data import Arrays
from vgjax.train.hooks import Hook
from vgjax.nn.models import MLP, init_variables

PyTree = Any


@flax.struct.dataclass
class TrainState:
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    key: jax.Array  # the run's base key: shuffling and dropout keys are folded from it
    epoch: jax.Array  # number of finished epochs
    hparams: dict  # traced hyper-parameters of the forward pass (e.g. {"beta": ...})


def create_train_state(model: MLP, tx: optax.GradientTransformation, key: jax.Array,
                       variables: dict | None = None) -> TrainState:
    """A fresh state; the init key and the run key are split from ``key`` (:mod:`vgjax.train.keys`)."""
    init_key, run_key = keys.init_and_run_keys(key)
    if variables is None:
        variables = init_variables(model, init_key)
    params = variables["params"]
    return TrainState(params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), key=run_key, epoch=jnp.zeros((), jnp.int32),
                      hparams={"beta": jnp.asarray(model.beta, jnp.float32)})


def scale_pixels(x_u8: jax.Array, pixels: str = "scaled") -> jax.Array:
    """uint8 pixels as the model's float32 inputs: ``x / 255`` ("scaled") or 0-255 ("raw")."""
    x = x_u8.astype(jnp.float32)
    return x if pixels == "raw" else x / PIXEL_DIVISORS[pixels]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def pairwise_sum(x: jax.Array, axis: int = 0) -> jax.Array:
    """The sum along ``axis`` as an explicit tree of elementwise additions (the axis padded with
    zeros to a power of two, then halved): the same additions in the same order whether or not the
    function is vmapped, where ``jnp.sum``'s reduction is vectorised differently under ``vmap``.
    So a sweep member's metrics are its single run's bit for bit on a CPU (docs/design.md, "Sweeps")."""
    x = jnp.moveaxis(x, axis, 0)
    n = x.shape[0]
    size = 1 << max(n - 1, 0).bit_length()
    if size > n:
        x = jnp.concatenate([x, jnp.zeros((size - n, *x.shape[1:]), x.dtype)])
    while x.shape[0] > 1:
        half = x.shape[0] // 2
        x = x[:half] + x[half:]
    return x[0]


def kernel_penalty(params: PyTree, l1: float, l2: float, include_bias: bool = False) -> jax.Array:
    """Keras-style regulariser: l1 * sum|W| + l2 * sum W^2 over kernels (and biases if asked)."""
    total = jnp.zeros((), jnp.float32)
    if l1 == 0 and l2 == 0:
        return total
    for layer in params.values():
        for name, w in layer.items():
            if name == "kernel" or (include_bias and name == "bias"):
                if l1:
                    total = total + l1 * jnp.sum(jnp.abs(w))
                if l2:
                    total = total + l2 * jnp.sum(jnp.square(w))
    return total


def kernel_grad_norms(grads: PyTree) -> dict[str, jax.Array]:
    """L2 norm of every Dense layer's kernel gradient, by layer name."""
    return {name: jnp.linalg.norm(g["kernel"]) for name, g in grads.items() if "kernel" in g}


def _batches(n: int, batch_size: int, perm: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Indices (steps, batch) padded to full batches, and the mask of real rows."""
    steps = math.ceil(n / batch_size)
    pad = steps * batch_size - n
    idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]) if pad else perm
    mask = jnp.arange(steps * batch_size) < n
    return idx.reshape(steps, batch_size), mask.reshape(steps, batch_size)


@dataclasses.dataclass(frozen=True)
class Engine:
    """The pure functions of one model + optimizer + protocol: ``epoch`` and ``evaluate``."""

    model: MLP
    tx: optax.GradientTransformation
    batch_size: int
    eval_batch_size: int = 2000
    l1: float = 0.0
    l2: float = 0.0
    regularize_bias: bool = False
    # BatchNorm layers of frozen sub-models (staged training): in training they normalise with
    # their moving statistics, which do not move (Keras 3's BatchNormalization, trainable=False)
    frozen_stats: tuple[str, ...] = ()
    # extra per-epoch diagnostics: f(engine, state_before, state_after, step_outputs) -> dict
    diagnostics: Callable | None = None
    # every matrix product of epoch and evaluate (Config.precision): set while they are traced,
    # so it reaches the compiled program wherever they are jitted or vmapped
    precision: str = "highest"
    # training steps per iteration of the epoch's scan (lax.scan's unroll): fewer loop iterations
    # for the device to launch; the same steps in the same order (benchmarks/step_overhead.py)
    unroll: int = 1
    # the inputs' pixel values (Config.pixels): "scaled" x / 255, or "raw" 0-255
    pixels: str = "scaled"

    def inputs(self, x_u8: jax.Array) -> jax.Array:
        """uint8 pixels as this engine's model inputs (:func:`scale_pixels`)."""
        return scale_pixels(x_u8, self.pixels)

    @property
    def uses_batch_stats(self) -> bool:
        return self.model.norm == "batchnorm"

    def apply(self, params, batch_stats, hparams, x, *, train: bool, mask=None, dropout_key=None):
        """The model's forward pass (logits, batch statistics), at the engine's matmul precision:
        every forward pass (and so its gradient) of training, evaluation and diagnostics."""
        with jax.default_matmul_precision(self.precision):
            return self._apply(params, batch_stats, hparams, x, train=train, mask=mask, dropout_key=dropout_key)

    def _apply(self, params, batch_stats, hparams, x, *, train: bool, mask=None, dropout_key=None):
        variables = {"params": params}
        if self.uses_batch_stats:
            variables["batch_stats"] = batch_stats
        rngs = {"dropout": dropout_key} if dropout_key is not None else None
        if train and self.uses_batch_stats:
            logits, updates = self.model.apply(variables, x, train=True, mask=mask,
                                               beta=hparams["beta"], rngs=rngs,
                                               mutable=["batch_stats"], frozen=self.frozen_stats)
            return logits, updates["batch_stats"]
        logits = self.model.apply(variables, x, train=train, mask=mask, beta=hparams["beta"],
                                  rngs=rngs)
        return logits, batch_stats

    def loss(self, params, batch_stats, hparams, x, y, mask, dropout_key):
        """Training objective: masked mean cross-entropy + kernel penalty."""
        logits, new_stats = self.apply(params, batch_stats, hparams, x, train=True, mask=mask,
                                       dropout_key=dropout_key)
        w = mask.astype(jnp.float32)
        count = jnp.maximum(jnp.sum(w), 1.0)
        data_loss = pairwise_sum(w * cross_entropy(logits, y)) / count
        reg = kernel_penalty(params, self.l1, self.l2, self.regularize_bias)
        correct = jnp.sum(mask & (jnp.argmax(logits, -1) == y), dtype=jnp.int32)  # exact in any order
        return data_loss + reg, (data_loss, reg, correct, new_stats)

    def train_step(self, state: TrainState, x_u8, y, idx, mask, dropout_key):
        xb, yb = self.inputs(x_u8[idx]), y[idx]
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)
        (_, (data_loss, reg, correct, stats)), grads = grad_fn(
            state.params, state.batch_stats, state.hparams, xb, yb, mask, dropout_key)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if self.frozen_stats:
            stats = {k: state.batch_stats[k] if k in self.frozen_stats else v for k, v in stats.items()}
        count = jnp.sum(mask.astype(jnp.float32))
        out = {"loss_sum": data_loss * count, "reg_loss": reg, "correct": correct,
               "count": jnp.sum(mask, dtype=jnp.int32), "weight": count,
               "grad_norm": kernel_grad_norms(grads)}
        return state.replace(params=params, opt_state=opt_state, batch_stats=stats), out

    def epoch(self, state: TrainState, x_u8: jax.Array, y: jax.Array):
        """One pass over the training set; returns the new state and the epoch's metrics."""
        with jax.default_matmul_precision(self.precision):
            return self._epoch(state, x_u8, y)

    def _epoch(self, state: TrainState, x_u8: jax.Array, y: jax.Array):
        n = x_u8.shape[0]
        epoch_key = keys.epoch_key(state.key, state.epoch)
        perm = jax.random.permutation(keys.shuffle_key(epoch_key), n)
        idx, mask = _batches(n, self.batch_size, perm)
        steps = idx.shape[0]

        def body(st, inp):
            i, b_idx, b_mask = inp
            return self.train_step(st, x_u8, y, b_idx, b_mask, keys.dropout_key(epoch_key, i))

        new_state, out = jax.lax.scan(body, state, (jnp.arange(steps), idx, mask), unroll=self.unroll)
        new_state = new_state.replace(epoch=state.epoch + 1)
        total = jnp.sum(out["weight"])
        correct, count = jnp.sum(out["correct"]), jnp.sum(out["count"])  # int32: exact in every layout
        metrics = {
            "loss": pairwise_sum(out["loss_sum"]) / total,
            "accuracy": correct / count,  # on the device; fit() and sweeps divide on the host (exact_ratios)
            "correct": correct, "count": count, "loss_total": pairwise_sum(out["loss_sum"]), "loss_weight": total,
            "reg_loss": jnp.mean(out["reg_loss"]),
            "grad_norm": jax.tree_util.tree_map(jnp.mean, out["grad_norm"]),
        }
        if self.diagnostics is not None:
            metrics.update(self.diagnostics(self, state, new_state, out))
        return new_state, metrics

    def evaluate(self, state: TrainState, x_u8: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        """Loss and accuracy on a whole set, in large batches, in inference mode."""
        with jax.default_matmul_precision(self.precision):
            return self._evaluate(state, x_u8, y)

    def _evaluate(self, state: TrainState, x_u8: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        n = x_u8.shape[0]
        bs = min(self.eval_batch_size, n)
        idx, mask = _batches(n, bs, jnp.arange(n))

        def body(_, inp):
            b_idx, b_mask = inp
            logits, _ = self.apply(state.params, state.batch_stats, state.hparams,
                                   self.inputs(x_u8[b_idx]), train=False, mask=b_mask)
            w = b_mask.astype(jnp.float32)
            return None, (pairwise_sum(w * cross_entropy(logits, y[b_idx])),
                          jnp.sum(b_mask & (jnp.argmax(logits, -1) == y[b_idx]), dtype=jnp.int32))

        _, (loss_sum, correct) = jax.lax.scan(body, None, (idx, mask))
        correct = jnp.sum(correct)
        loss_total = pairwise_sum(loss_sum)
        return {"loss": loss_total / n, "accuracy": correct / n, "correct": correct,
                "count": jnp.asarray(n, jnp.int32), "loss_total": loss_total, "loss_weight": jnp.asarray(n, jnp.float32)}


# (metric, numerator, denominator): the epoch's and evaluation's ratios, divided on the host
RATIOS = (("accuracy", "correct", "count"), ("loss", "loss_total", "loss_weight"))


def exact_ratios(metrics: dict, prefix: str = "") -> dict:
    """Host-side metrics (after ``jax.device_get``) with ``<prefix>accuracy`` and ``<prefix>loss``
    divided here from their sums (``correct`` / ``count``: int32 counts; ``loss_total`` /
    ``loss_weight``), which are dropped: a float64 division rounded once to float32, so the
    ratios are the same bit for bit whatever the device, the vmap width, the chunk layout or the
    processes (the device's float32 division is not: it may multiply by a reciprocal)."""
    out, drop = dict(metrics), set()
    for name, num, den in RATIOS:
        if prefix + num in metrics:
            out[prefix + name] = np.float32(np.asarray(metrics[prefix + num], np.float64)
                                            / np.asarray(metrics[prefix + den], np.float64))
            drop |= {prefix + num, prefix + den}
    return {k: v for k, v in out.items() if k not in drop}


def make_engine(config: Config, model: MLP, tx: optax.GradientTransformation,
                diagnostics: Callable | None = None, frozen_stats: tuple[str, ...] = ()) -> Engine:
    return Engine(model=model, tx=tx, batch_size=config.batch_size,
                  eval_batch_size=config.evaluation_batch_size(), l1=config.l1, l2=config.l2,
                  regularize_bias=config.regularize_bias, frozen_stats=tuple(frozen_stats),
                  diagnostics=diagnostics, precision=config.precision, unroll=config.unroll,
                  pixels=config.pixels)


@dataclasses.dataclass(frozen=True, eq=False)
class DeviceData(Arrays):
    """The four arrays (:class:`vgjax.data.Arrays`) on the device: uint8 images, int32 labels."""

    @classmethod
    def from_numpy(cls, x_train, y_train, x_test, y_test, train_limit: int | None = None):
        if train_limit is not None:
            x_train, y_train = x_train[:train_limit], y_train[:train_limit]
        put = jax.device_put
        return cls(put(np.asarray(x_train, np.uint8)), put(np.asarray(y_train, np.int32)),
                   put(np.asarray(x_test, np.uint8)), put(np.asarray(y_test, np.int32)))


def _flatten(prefix: str, tree: dict) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in tree.items()}


def epoch_record(epoch: int, train_metrics: dict, val_metrics: dict, seconds: float) -> dict:
    """One history row: scalars and per-layer values flattened as ``grad_norm/hidden_1`` …"""
    rec: dict[str, Any] = {"epoch": epoch}
    for k, v in train_metrics.items():
        if isinstance(v, dict):
            rec.update(_flatten(k, v))
        else:
            rec[k] = float(v)
    rec["val_loss"] = float(val_metrics["loss"])
    rec["val_accuracy"] = float(val_metrics["accuracy"])
    rec["epoch_time_s"] = seconds
    return rec


@dataclasses.dataclass
class FitResult:
    state: TrainState
    history: list[dict]
    status: str  # "finished" | "diverged" | "stopped"
    diverged_epoch: int | None = None


# A run has diverged once its training or validation loss is NaN/Inf or above this bound: 100
# times the cross-entropy of a uniform guess over the 10 classes (ln 10 = 2.30). A model at 230
# nats per image is far past chance: its loss has exploded (e.g. --lr 1e6 takes it to a million),
# though it stays finite. Single runs (fit) and sweeps (vgjax.sweep.stats) use this one rule.
DIVERGED_LOSS = 100 * math.log(10)


def diverged(loss, val_loss):
    """Whether a loss pair is past :data:`DIVERGED_LOSS` or not finite (numbers or numpy arrays)."""
    loss, val_loss = np.asarray(loss, np.float64), np.asarray(val_loss, np.float64)
    with np.errstate(invalid="ignore"):
        return ~(np.isfinite(loss) & np.isfinite(val_loss)) | (loss > DIVERGED_LOSS) | (val_loss > DIVERGED_LOSS)


def is_finite_record(rec: dict) -> bool:
    """Whether the epoch's record has not diverged (:func:`diverged`)."""
    return not bool(diverged(rec["loss"], rec["val_loss"]))


def fit(engine: Engine, state: TrainState, data: DeviceData, epochs: int,
        hooks: Iterable[Hook] = ()) -> FitResult:
    """Train until ``state.epoch == epochs``; one host sync per epoch.

    Every hook's ``on_epoch_end(record, state, engine)`` runs after every epoch. Stops early when
    the loss becomes NaN/Inf or exceeds :data:`DIVERGED_LOSS` (status "diverged") or a hook returns True (status "stopped").
    """
    epoch_fn = jax.jit(engine.epoch, donate_argnums=(0,))
    eval_fn = jax.jit(engine.evaluate)
    hooks = list(hooks)
    history: list[dict] = []
    while int(state.epoch) < epochs:
        t0 = time.perf_counter()
        state, metrics = epoch_fn(state, data.x_train, data.y_train)
        val = eval_fn(state, data.x_test, data.y_test)
        metrics, val = (exact_ratios(m) for m in jax.device_get((metrics, val)))
        rec = epoch_record(int(state.epoch), metrics, val, time.perf_counter() - t0)
        history.append(rec)
        if not is_finite_record(rec):
            for hook in hooks:
                hook.on_epoch_end(rec, state, engine)
            return FitResult(state, history, "diverged", rec["epoch"])
        stop = False
        for hook in hooks:
            stop = bool(hook.on_epoch_end(rec, state, engine)) or stop
        if stop:
            return FitResult(state, history, "stopped")
    return FitResult(state, history, "finished")
