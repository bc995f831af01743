"""Per-layer diagnostics of vanishing gradients, computed inside the jitted epoch.

Two parts, both switched off by ``config.diagnostics = False``:

**Per-epoch scalars** (:func:`make_epoch_diagnostics`, plugged into ``Engine.diagnostics``). They
are computed inside the same jitted ``epoch`` from what the scan already produced and from one
forward pass of a small fixed *probe batch* — no extra pass over the training data. Per Dense
layer (``hidden_1`` … ``hidden_<depth>``, ``output``), history columns ``<name>/<layer>``:

- ``grad_norm`` (already in the engine): mean over the epoch's steps of the L2 norm of the layer's
  kernel gradient;
- ``grad_norm_first``: the same norm at the epoch's *first* step (the gradient of the first
  minibatch at the weights the epoch started from);
- ``update_ratio``: ``||W_after - W_before|| / ||W_before||`` of the kernel over the whole epoch
  (NaN if ``W_before`` is all zeros);
- ``weight_mean``, ``weight_std``: mean and standard deviation of the kernel's entries at the end
  of the epoch;
- ``saturation`` (hidden layers only): a fraction in [0, 1] measured on the probe batch at the end
  of the epoch, in inference mode (BatchNorm uses its running statistics, no dropout), from the
  layer's pre-activations ``z`` (the Dense output that enters the activation):

  * sigmoid family (``sigmoid``, ``sigmoid_beta``, ``sigmoid_modgrad``): the fraction of
    (example, unit) pairs whose logistic derivative is below 10% of its maximum,
    ``sigmoid'(z) / 0.25 < 0.1`` — equivalently ``|z| > 3.64``. For ``sigmoid_beta`` and
    ``sigmoid_modgrad`` this counts where the *sigmoid part* has saturated (their derivative
    stays >= beta there, which is the point of those remedies);
  * ``tanh``: the fraction of (example, unit) pairs with ``tanh'(z) = 1 - tanh(z)^2 < 0.1``
    (``|z| > 1.82``);
  * ReLU family (``relu``, ``leaky_relu``, ``elu``, ``selu``, ``gelu``, ``swish``): the fraction
    of *dead units*, i.e. units whose pre-activation is ``<= 0`` for every example of the probe
    batch (for ReLU: output exactly zero and no gradient for the whole batch);
  * ``linear``: 0 (its derivative is 1 everywhere).

**Histograms** (:class:`HistogramHook`): at a few epochs (default 0 = before training, 1, 10 and
the last planned epoch) the hook writes ``<run_dir>/histograms/epoch_XXXX.npz`` with, per layer,
bin counts and edges of the kernel's entries and of the kernel *gradient* of the probe batch's
mean training loss at that state (the training objective — cross-entropy plus any kernel penalty —
in training mode, as one optimizer step would see it), plus a histogram of ``log10|gradient|``
on edges shared by all layers so that the layers can be compared on one axis.

**The probe batch** is a fixed slice of the test set: its first 512 examples
(:func:`probe_batch`). It never changes during a run, so the saturation curves are comparable
from epoch to epoch.

Integration (what ``experiments.run`` / :func:`vgjax.run.runner.train_and_evaluate` call)::

    probe_x, probe_y = diagnostics.probe_batch(arrays)            # first 512 test examples
    diag_fn, diag_hooks = diagnostics.hooks_for(config, run_dir, probe_x, probe_y, total_epochs)
    runner.run(..., hooks=[*hooks, *diag_hooks], diagnostics=diag_fn)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from vgjax.train.hooks import Hook
from vgjax.run.rundir import RunDir
from vgjax.files import atomic_write_bytes

PROBE_SIZE = 512
SATURATION_THRESHOLD = 0.1  # derivative below this fraction of its maximum counts as saturated
DEFAULT_HISTOGRAM_EPOCHS = (0, 1, 10, -1)  # -1: the last planned epoch
HISTOGRAM_BINS = 64
LOG10_GRAD_EDGES = np.linspace(-14.0, 2.0, 65)  # shared edges of the log10|gradient| histograms

SIGMOID_FAMILY = ("sigmoid", "sigmoid_beta", "sigmoid_modgrad")
TANH_FAMILY = ("tanh",)
RELU_FAMILY = ("relu", "leaky_relu", "elu", "selu", "gelu", "swish")
NO_SATURATION = ("linear",)


# ----------------------------------------------------------------------------------------------
# pure helpers (jit-friendly)


def probe_batch(arrays, n: int = PROBE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The fixed probe batch: the first ``n`` test examples (uint8 images, int32 labels)."""
    return (np.asarray(arrays.x_test[:n], np.uint8), np.asarray(arrays.y_test[:n], np.int32))


def synthetic_probe(n: int = PROBE_SIZE, seed: int = 0) -> np.ndarray:
    """Random uint8 images standing in for the probe when none is given (benchmarks, tests)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)


def kernels(params: dict) -> dict:
    """Kernel of every Dense layer, by layer name (input to output order of the params dict)."""
    return {name: layer["kernel"] for name, layer in params.items() if "kernel" in layer}


def update_ratios(before: dict, after: dict) -> dict:
    """||W_after - W_before|| / ||W_before|| per Dense kernel (NaN when W_before is zero)."""
    out = {}
    for name, w0 in kernels(before).items():
        w1 = after[name]["kernel"]
        n0 = jnp.linalg.norm(w0)
        out[name] = jnp.where(n0 > 0, jnp.linalg.norm(w1 - w0) / jnp.where(n0 > 0, n0, 1.0), jnp.nan)
    return out


def weight_stats(params: dict) -> tuple[dict, dict]:
    """(mean, std) of every Dense kernel's entries."""
    ks = kernels(params)
    return ({n: jnp.mean(w) for n, w in ks.items()}, {n: jnp.std(w) for n, w in ks.items()})


def saturation_fraction(activation: str, z: jax.Array, threshold: float = SATURATION_THRESHOLD) -> jax.Array:
    """Saturation of one layer from its pre-activations ``z`` (probe examples x units).

    See the module docstring for the definition per activation family.
    """
    if activation in SIGMOID_FAMILY:
        s = jax.nn.sigmoid(z)
        return jnp.mean((s * (1.0 - s) / 0.25) < threshold)
    if activation in TANH_FAMILY:
        return jnp.mean((1.0 - jnp.tanh(z) ** 2) < threshold)
    if activation in RELU_FAMILY:
        return jnp.mean(jnp.all(z <= 0, axis=0))
    if activation in NO_SATURATION:
        return jnp.zeros((), jnp.float32)
    raise ValueError(f"no saturation measure for activation {activation!r}")


def _is_hidden_dense(module, method_name: str) -> bool:
    return method_name == "__call__" and isinstance(module.name, str) and module.name.startswith("hidden_")


def pre_activations(engine, state, x: jax.Array) -> dict:
    """Pre-activation ``z`` of every hidden layer on float inputs ``x`` (inference mode)."""
    variables = {"params": state.params}
    if engine.uses_batch_stats:
        variables["batch_stats"] = state.batch_stats
    _, inter = engine.model.apply(variables, x, train=False, beta=state.hparams["beta"],
                                  capture_intermediates=_is_hidden_dense, mutable=["intermediates"])
    found = inter.get("intermediates", {})  # none at depth 0
    return {name: found[name]["__call__"][0] for name in found if name.startswith("hidden_")
            and isinstance(found[name], dict) and "__call__" in found[name]}


def probe_saturation(engine, state, probe_x_u8, threshold: float = SATURATION_THRESHOLD) -> dict:
    """Saturation per hidden layer on the probe batch at ``state``."""
    zs = pre_activations(engine, state, engine.inputs(jnp.asarray(probe_x_u8)))
    return {name: saturation_fraction(engine.model.activation, z, threshold) for name, z in zs.items()}


def make_epoch_diagnostics(config, probe_x_u8: np.ndarray | None = None,
                           threshold: float = SATURATION_THRESHOLD) -> Callable:
    """The ``Engine.diagnostics`` function: ``f(engine, state_before, state_after, out) -> dict``.

    ``out`` are the scan's stacked per-step outputs (``out["grad_norm"][layer]`` has one value per
    step). ``probe_x_u8`` is the fixed probe batch (uint8, (n, 784)); ``None`` uses random images
    of the same shape (the cost is the same; the saturation values are then meaningless).
    The activation is read from the engine's model, so staged runs get each stage's layers.
    """
    del config  # everything needed is on the engine; kept in the signature for symmetry
    probe = synthetic_probe() if probe_x_u8 is None else np.asarray(probe_x_u8, np.uint8)
    if probe.ndim != 2 or probe.shape[1] != 784:
        raise ValueError(f"probe images must have shape (n, 784), got {probe.shape}")

    def diagnostics(engine, state_before, state_after, out) -> dict:
        means, stds = weight_stats(state_after.params)
        return {
            "grad_norm_first": {k: v[0] for k, v in out["grad_norm"].items()},
            "update_ratio": update_ratios(state_before.params, state_after.params),
            "weight_mean": means,
            "weight_std": stds,
            "saturation": probe_saturation(engine, state_after, probe, threshold),
        }

    return diagnostics


# ----------------------------------------------------------------------------------------------
# histograms


def probe_kernel_grads(engine, state, x_u8: jax.Array, y: jax.Array) -> dict:
    """Kernel gradient of the probe batch's mean training loss at ``state``, by layer."""
    x = engine.inputs(x_u8)
    mask = jnp.ones((x.shape[0],), bool)

    def objective(params):
        return engine.loss(params, state.batch_stats, state.hparams, x, y, mask, jax.random.PRNGKey(0))[0]

    return kernels(jax.grad(objective)(state.params))


def _symmetric_hist(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    values = values[np.isfinite(values)]
    m = float(np.max(np.abs(values))) if values.size else 0.0
    m = m if m > 0 else 1.0
    counts, edges = np.histogram(values, bins=bins, range=(-m, m))
    return counts.astype(np.int64), edges


def layer_histograms(weights: dict, grads: dict, bins: int = HISTOGRAM_BINS) -> dict[str, np.ndarray]:
    """The arrays of one histogram file (see :func:`save_histograms` for the keys)."""
    arrays: dict[str, np.ndarray] = {"layers": np.array(list(weights)), "grad_log10_edges": LOG10_GRAD_EDGES}
    for name, w in weights.items():
        w = np.asarray(w, np.float64).ravel()
        g = np.asarray(grads[name], np.float64).ravel()
        arrays[f"{name}__weight_counts"], arrays[f"{name}__weight_edges"] = _symmetric_hist(w, bins)
        arrays[f"{name}__grad_counts"], arrays[f"{name}__grad_edges"] = _symmetric_hist(g, bins)
        mag = np.abs(g[np.isfinite(g)])
        arrays[f"{name}__grad_zero"] = np.array(int(np.sum(mag == 0)))
        logs = np.clip(np.log10(mag[mag > 0]), LOG10_GRAD_EDGES[0], LOG10_GRAD_EDGES[-1])
        arrays[f"{name}__grad_log10_counts"] = np.histogram(logs, bins=LOG10_GRAD_EDGES)[0].astype(np.int64)
        arrays[f"{name}__weight_moments"] = np.array([w.mean(), w.std()]) if w.size else np.zeros(2)
        arrays[f"{name}__grad_norm"] = np.array(np.linalg.norm(g))
    return arrays


def save_histograms(path: str | Path, epoch: int, weights: dict, grads: dict,
                    bins: int = HISTOGRAM_BINS) -> Path:
    """Write one ``epoch_XXXX.npz`` atomically.

    Keys: ``epoch``; ``layers`` (names, input to output); ``grad_log10_edges`` (shared); and per
    layer ``<layer>__weight_counts`` / ``__weight_edges`` (kernel entries, ``bins`` bins on
    ±max|w|), ``<layer>__grad_counts`` / ``__grad_edges`` (kernel gradient, ±max|g|),
    ``<layer>__grad_log10_counts`` (log10|g| on the shared edges, clipped to their range),
    ``<layer>__grad_zero`` (exactly-zero gradient entries, not in the log histogram),
    ``<layer>__weight_moments`` (mean, std) and ``<layer>__grad_norm``.
    """
    arrays = layer_histograms(weights, grads, bins)
    arrays["epoch"] = np.array(int(epoch))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_histograms(path: str | Path) -> dict:
    """One histogram file as ``{"epoch", "layers", "edges_log10", layer: {...}}``."""
    with np.load(path) as f:
        layers = [str(n) for n in f["layers"]]
        out = {"epoch": int(f["epoch"]), "layers": layers, "grad_log10_edges": f["grad_log10_edges"]}
        for name in layers:
            out[name] = {key: f[f"{name}__{key}"] for key in
                         ("weight_counts", "weight_edges", "grad_counts", "grad_edges", "grad_log10_counts",
                          "grad_zero", "weight_moments", "grad_norm")}
    return out


def resolve_epochs(epochs: Iterable[int] | None, total_epochs: int) -> tuple[int, ...]:
    """Histogram epochs with -1 replaced by ``total_epochs``, dropping those beyond it."""
    epochs = DEFAULT_HISTOGRAM_EPOCHS if epochs is None else tuple(epochs)
    out = {total_epochs if e == -1 else int(e) for e in epochs}
    return tuple(sorted(e for e in out if 0 <= e <= total_epochs))


class HistogramHook(Hook):
    """Runner hook writing weight and gradient histograms at chosen epochs.

    ``epochs``: global epoch numbers (0 = before training; -1 = the last planned epoch); ``None``
    means (0, 1, 10, last). Epoch 0 is written from ``on_stage_start`` at the first stage's start
    of a fresh run only (not when resuming). Never asks to stop.
    """

    def __init__(self, run_dir, epochs: Iterable[int] | None, probe_x_u8, probe_y, total_epochs: int,
                 bins: int = HISTOGRAM_BINS):
        self.run_dir = Path(getattr(run_dir, "path", run_dir))
        self.epochs = resolve_epochs(epochs, total_epochs)
        self.total_epochs = total_epochs
        self.probe_x = np.asarray(probe_x_u8, np.uint8)
        self.probe_y = np.asarray(probe_y, np.int32)
        self.bins = bins
        self.written: list[Path] = []
        self._grad_fns: dict[int, tuple] = {}

    def _grads(self, engine, state) -> dict:
        key = id(engine)
        if key not in self._grad_fns:  # keep the engine alive so its id stays unique
            self._grad_fns[key] = (engine, jax.jit(lambda st, x, y: probe_kernel_grads(engine, st, x, y)))
        return self._grad_fns[key][1](state, jnp.asarray(self.probe_x), jnp.asarray(self.probe_y))

    def save(self, epoch: int, state, engine) -> Path:
        grads = jax.device_get(self._grads(engine, state))
        weights = jax.device_get(kernels(state.params))
        path = save_histograms(RunDir(self.run_dir).histogram_path(epoch), epoch, weights, grads, self.bins)
        self.written.append(path)
        return path

    def on_stage_start(self, state, engine, stage, epochs_before: int) -> None:
        fresh = epochs_before == 0 and int(state.epoch) == 0 and getattr(stage, "index", 1) == 1
        if fresh and 0 in self.epochs:
            self.save(0, state, engine)

    def on_epoch_end(self, record: dict, state, engine=None) -> bool:
        if engine is not None and record["epoch"] in self.epochs:
            self.save(int(record["epoch"]), state, engine)
        return False


def hooks_for(config, run_dir, probe_x_u8, probe_y, total_epochs: int,
              histogram_epochs: Iterable[int] | None = None) -> tuple[Callable | None, list]:
    """``(diagnostics_fn or None, [hooks])`` for a run; ``(None, [])`` when ``config.diagnostics`` is off.

    Pass ``diagnostics_fn`` as ``runner.run(..., diagnostics=...)`` and add the hooks to its
    ``hooks``. ``probe_x_u8, probe_y`` is the fixed probe batch (:func:`probe_batch`: the first
    512 test examples); ``total_epochs`` the run's planned global epochs (for "last").
    """
    if not config.diagnostics:
        return None, []
    return (make_epoch_diagnostics(config, probe_x_u8),
            [HistogramHook(run_dir, histogram_epochs, probe_x_u8, probe_y, total_epochs)])
