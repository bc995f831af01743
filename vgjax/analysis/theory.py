"""Mean-field signal propagation at initialisation: predict the vanishing before training.

Notation. Dense layers l = 1 .. L+1 (L hidden layers, l = L+1 is the output layer):
``h_l = a_{l-1} W_l``, ``a_l = phi(h_l)``, ``a_0 = x`` (pixels in [0, 1]); the kernel ``W_l`` has
shape ``(n_{l-1}, n_l)`` and i.i.d. zero-mean entries of variance ``s_l^2``; biases are zero.

Forward (one example, and a pair of examples):

    q_1(x) = s_1^2 |x|^2            q_{l+1} = s_{l+1}^2 n_l E[phi(h)^2],         h ~ N(0, q_l)
    K_1(x,x') = s_1^2 x.x'          K_{l+1} = s_{l+1}^2 n_l E[phi(u) phi(u')],  (u,u') ~ N(0, K_l)

(``E[phi^2]`` is the second moment, not the variance: sigmoid's non-zero mean enters q.)

Backward (gradient-independence assumption): ``delta_l = phi'(h_l) * (W_{l+1} delta_{l+1})``,

    E|delta_l|^2 = chi_l E|delta_{l+1}|^2,   chi_l = s_{l+1}^2 n_l E[phi'(h_l)^2]
    Delta_l(x,x') = E[delta_l(x).delta_l(x')] = s_{l+1}^2 n_l E[phi'(u)phi'(u')] Delta_{l+1}(x,x')

``n_l`` is the width of layer l, the fan-in of ``W_{l+1}``. chi < 1 vanishes, chi > 1 explodes.

Output. Given the last activations, the logits ``z_k`` are exactly Gaussian, i.i.d. over the 10
classes, with covariance ``K_{L+1}`` over examples; ``delta_{L+1} = softmax(z) - onehot(y)``, so

    Delta_{L+1}(x,x') = E[p(z).p(z')] - 2/10 + [y = y']        (E[p_k] = 1/10 by class symmetry)

with ``E[p(z).p(z')]`` by quasi-Monte Carlo on fixed (seeded, scrambled Sobol) normal draws.

The measured quantity. ``kernel_grad_norms`` reports ``|G_l|`` for the gradient of the *mean*
loss over a batch of B examples, ``G_l = (1/B) sum_b a_{l-1}(x_b) delta_l(x_b)^T``. For i.i.d.
examples

    E|G_l|^2 = O_l + (D_l - O_l) / B,
    D_l = E_x [A_{l-1}(x,x) Delta_l(x,x)]                (the per-example gradient: noise)
    O_l = E_{x != x'} [A_{l-1}(x,x') Delta_l(x,x')]      (= |E_x g_l(x)|^2, the mean gradient)

with ``A_{l-1}(x,x') = a_{l-1}(x).a_{l-1}(x') = K_l(x,x') / s_l^2``. Fashion-MNIST's examples are
strongly correlated (all pixels >= 0, a large mean image), so ``O_l`` is *not* negligible: it
dominates wherever the logits are large and coherent across examples (ReLU, large std), and
carries the class structure of the data in layer 1. ``D_l`` needs only per-example 1-d
integrals; ``O_l`` needs the pair kernels, computed on a class-stratified sample of examples
whose pairs are weighted so that the average is unbiased for i.i.d. pairs.

Numerics. One-dimensional Gaussian expectations use a composite Gauss-Legendre rule in
standardised units with breakpoints both on the Gaussian's scale (0, +-0.5 sd, ..., +-10 sd) and
on the activation's scale (h = 0 where the kinks are, +-1/8 ... +-64): accurate (~1e-12) from
q = 1e-8 to q = 1e8, where Gauss-Hermite fails (a saturating activation of a very wide
Gaussian is a step at the Gauss-Hermite nodes' scale). Pair expectations integrate the first
variable with that rule and the second conditionally on it (Gauss-Hermite when the conditional
spread is small and the activation smooth, the composite rule otherwise). ReLU, leaky ReLU and
linear use closed forms (arc-cosine kernels).
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from scipy import optimize, special
from scipy.stats import norm, qmc

INPUT_DIM = 784
NUM_CLASSES = 10
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_GELU_K = math.sqrt(2.0 / math.pi)
_TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2] (jax's default)


# --------------------------------------------------------------------------------------------
# Activations in float64 numpy, mirroring vgjax.nn.layers.ACTIVATIONS


def _sig(h):
    return special.expit(h)


def _dsig(h):
    return special.expit(h) * special.expit(-h)


def _sech2(h):
    e = np.exp(-2.0 * np.abs(h))
    return 4.0 * e / (1.0 + e) ** 2


def _gelu(h):
    return 0.5 * h * (1.0 + np.tanh(_GELU_K * (h + 0.044715 * h ** 3)))


def _dgelu(h):
    inner = _GELU_K * (h + 0.044715 * h ** 3)
    return 0.5 * (1.0 + np.tanh(inner)) + 0.5 * h * _sech2(inner) * _GELU_K * (1.0 + 3 * 0.044715 * h ** 2)


@dataclasses.dataclass(frozen=True)
class Act:
    """An activation for the theory: ``phi`` (forward), ``dphi`` (the factor the backward pass
    multiplies by — for ``sigmoid_modgrad`` that is sigma' + beta, not the derivative of phi).

    ``linear_relu = (a, b)`` marks ``phi = a h + b relu(h)`` (closed forms); ``kinks`` are the
    points where phi or dphi is not smooth (breakpoints of the quadrature).
    """

    name: str
    phi: Callable[[np.ndarray], np.ndarray]
    dphi: Callable[[np.ndarray], np.ndarray]
    smooth: bool = True
    linear_relu: tuple[float, float] | None = None


ACTIVATION_NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "linear", "elu", "selu", "gelu", "swish",
                    "sigmoid_beta", "sigmoid_modgrad")


def activation(name: str, beta: float = 0.05) -> Act:
    """The theory's version of a registry activation (``beta`` for the two sigmoid variants)."""
    b = float(beta)
    table = {
        "sigmoid": Act("sigmoid", _sig, _dsig),
        "tanh": Act("tanh", np.tanh, _sech2),
        "relu": Act("relu", lambda h: np.maximum(h, 0.0), lambda h: (h > 0).astype(float),
                    smooth=False, linear_relu=(0.0, 1.0)),
        "leaky_relu": Act("leaky_relu", lambda h: np.where(h >= 0, h, 0.01 * h),
                          lambda h: np.where(h >= 0, 1.0, 0.01), smooth=False, linear_relu=(0.01, 0.99)),
        "linear": Act("linear", lambda h: h, np.ones_like, linear_relu=(1.0, 0.0)),
        "elu": Act("elu", lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0.0))),
                   lambda h: np.where(h > 0, 1.0, np.exp(np.minimum(h, 0.0))), smooth=False),
        "selu": Act("selu", lambda h: _SELU_SCALE * np.where(h > 0, h, _SELU_ALPHA * np.expm1(np.minimum(h, 0.0))),
                    lambda h: _SELU_SCALE * np.where(h > 0, 1.0, _SELU_ALPHA * np.exp(np.minimum(h, 0.0))),
                    smooth=False),
        "gelu": Act("gelu", _gelu, _dgelu),
        "swish": Act("swish", lambda h: h * _sig(h), lambda h: _sig(h) + h * _dsig(h)),
        "sigmoid_beta": Act("sigmoid_beta", lambda h: _sig(h) + b * h, lambda h: _dsig(h) + b),
        "sigmoid_modgrad": Act("sigmoid_modgrad", _sig, lambda h: _dsig(h) + b),
    }
    if name not in table:
        raise ValueError(f"no theory for activation {name!r}; choose from {', '.join(table)}")
    return table[name]


# --------------------------------------------------------------------------------------------
# Gaussian quadrature

# Gaussian-scale breakpoints (standard deviations) and activation-scale breakpoints (in h).
_T_FINE = np.array([-10, -9, -8, -7, -6, -5, -4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0,
                    0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9, 10], float)
_H_FINE = np.array([0.0] + [s * 2.0 ** k for k in range(-3, 7) for s in (-1, 1)])
_T_PAIR = np.array([-9, -6.5, -4.5, -3, -2, -1, 0, 1, 2, 3, 4.5, 6.5, 9], float)
_H_PAIR = np.array([0.0, -0.5, 0.5, -1.5, 1.5, -4, 4, -12, 12, -36, 36])
_GL_FINE, _GL_PAIR = 10, 6
# Gauss-Hermite (24 nodes) only where the Gaussian is narrow against the activation's features
# (sd <= 0.5: error < 1e-9 for tanh, the fastest-varying activation here).
_GH_N, _GH_SD = 24, 0.5
_KINK_STEPS = np.array([-4, -2, -1, -0.5, -0.25, 0.25, 0.5, 1, 2, 4], float)


@lru_cache(maxsize=None)
def _legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


@lru_cache(maxsize=None)
def _hermite(n: int):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / math.sqrt(2 * math.pi)


def gauss_rule(mean, sd, fine: bool = True, extra=None) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``E[f(X)] ~ sum w f(x)``, ``X ~ N(mean, sd^2)``, for broadcast arrays.

    Composite Gauss-Legendre in standardised units over [-10, 10] sd (9 sd for the coarser
    ``fine=False`` rule used inside pair integrals), split at multiples of the sd and at the
    activation-scale points h = 0, +-2^k, and at the optional ``extra`` points (h units, shape
    ``(..., k)`` broadcasting against mean); ``sd = 0`` gives f(mean). Output shape
    ``broadcast(mean, sd).shape + (K,)``.
    """
    t_edges, h_edges, n = (_T_FINE, _H_FINE, _GL_FINE) if fine else (_T_PAIR, _H_PAIR, _GL_PAIR)
    mean, sd = np.broadcast_arrays(np.asarray(mean, float), np.asarray(sd, float))
    tmax = t_edges[-1]
    if extra is not None:
        extra = np.asarray(extra, float)
        h_edges = np.concatenate([np.broadcast_to(h_edges, mean.shape + h_edges.shape),
                                  np.broadcast_to(extra, mean.shape + extra.shape[-1:])], -1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ft = (h_edges - mean[..., None]) / sd[..., None]
    ft = np.clip(np.nan_to_num(ft, nan=tmax, posinf=tmax, neginf=-tmax), -tmax, tmax)
    edges = np.sort(np.concatenate([np.broadcast_to(t_edges, mean.shape + t_edges.shape), ft], -1), -1)
    lo, hi = edges[..., :-1], edges[..., 1:]
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    x, w = _legendre(n)
    t = (mid[..., None] + half[..., None] * x).reshape(mean.shape + (-1,))
    wt = (half[..., None] * w).reshape(mean.shape + (-1,)) * np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    return mean[..., None] + sd[..., None] * t, wt


def expect(f: Callable[[np.ndarray], np.ndarray], q, mean=0.0) -> np.ndarray:
    """``E[f(h)]``, ``h ~ N(mean, q)``, elementwise over the broadcast of ``q`` and ``mean``."""
    x, w = gauss_rule(mean, np.sqrt(np.maximum(np.asarray(q, float), 0.0)))
    return np.sum(w * f(x), -1)


def moments(act: Act, q) -> tuple[np.ndarray, np.ndarray]:
    """``(E[phi(h)^2], E[dphi(h)^2])`` for ``h ~ N(0, q)``."""
    q = np.asarray(q, float)
    if act.linear_relu is not None:
        a, b = act.linear_relu
        return (a * a + a * b + b * b / 2) * q, np.full_like(q, a * a + a * b + b * b / 2)
    x, w = gauss_rule(0.0, np.sqrt(np.maximum(q, 0.0)))
    return np.sum(w * act.phi(x) ** 2, -1), np.sum(w * act.dphi(x) ** 2, -1)


def pair_moments(act: Act, q1, q2, c, chunk: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """``(E[phi(u)phi(u')], E[dphi(u)dphi(u')])`` for ``(u, u') ~ N(0, [[q1, c], [c, q2]])``."""
    q1, q2, c = (np.atleast_1d(np.asarray(v, float)) for v in (q1, q2, c))
    q1, q2, c = np.broadcast_arrays(q1, q2, c)
    rho = np.clip(c / np.sqrt(np.maximum(q1 * q2, 1e-300)), -1.0, 1.0)
    if act.linear_relu is not None:
        a, b = act.linear_relu
        theta = np.arccos(rho)
        relu2 = np.sqrt(q1 * q2) / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
        return (a * a * c + a * b * c + b * b * relu2,
                a * a + a * b + b * b * (np.pi - theta) / (2 * np.pi))
    out_f, out_d = np.empty(q1.shape), np.empty(q1.shape)
    small = act.smooth & (np.maximum(q1, q2) <= _GH_SD ** 2)
    idx_small = np.flatnonzero(small)
    if idx_small.size:  # smooth activation of a narrow Gaussian: 2-d Gauss-Hermite, whitened
        z, w = _hermite(_GH_N)
        s1, s2 = np.sqrt(q1[idx_small]), np.sqrt(q2[idx_small])
        r = rho[idx_small]
        u = s1[:, None, None] * z[None, :, None]
        v = s2[:, None, None] * (r[:, None, None] * z[None, :, None]
                                 + np.sqrt(1 - r * r)[:, None, None] * z[None, None, :])
        ww = w[:, None] * w[None, :]
        out_f[idx_small] = np.einsum("pij,ij->p", act.phi(u) * act.phi(v), ww)
        out_d[idx_small] = np.einsum("pij,ij->p", act.dphi(u) * act.dphi(v), ww)
    rest = np.flatnonzero(~small)
    for k in range(0, rest.size, chunk):
        i = rest[k:k + chunk]
        slope = np.where(q1[i] > 0, c[i] / np.maximum(q1[i], 1e-300), 0.0)
        tau = np.sqrt(np.maximum(q2[i] - slope * c[i], 0.0))
        extra = None
        if not act.smooth:  # E[dphi(u')|u] jumps from one side of the kink to the other over
            # |u| ~ tau/|slope|: resolve that in the outer rule too
            with np.errstate(divide="ignore", invalid="ignore"):
                width = tau / np.abs(slope)
            extra = np.nan_to_num(width[:, None] * _KINK_STEPS, nan=np.inf)
        u, wu = gauss_rule(0.0, np.sqrt(q1[i]), fine=False, extra=extra)  # (P, No)
        m = slope[:, None] * u
        narrow = act.smooth & (tau <= _GH_SD)
        ef, ed = np.empty(u.shape), np.empty(u.shape)  # inner E[phi(u')|u], E[dphi(u')|u]
        if narrow.any():
            z, w = _hermite(_GH_N)
            v = m[narrow][..., None] + tau[narrow][:, None, None] * z
            ef[narrow], ed[narrow] = act.phi(v) @ w, act.dphi(v) @ w
        if (~narrow).any():
            v, wv = gauss_rule(m[~narrow], tau[~narrow][:, None], fine=False)  # (P', No, Ni)
            ef[~narrow] = np.sum(wv * act.phi(v), -1)
            ed[~narrow] = np.sum(wv * act.dphi(v), -1)
        out_f[i] = np.sum(wu * act.phi(u) * ef, -1)
        out_d[i] = np.sum(wu * act.dphi(u) * ed, -1)
    return out_f, out_d


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy error at the output


@lru_cache(maxsize=8)
def _normal_draws(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two (10, n) blocks of standard normals from a scrambled Sobol sequence (fixed seed)."""
    u = qmc.Sobol(2 * NUM_CLASSES, scramble=True, seed=seed).random(n)
    z = norm.ppf(np.clip(u, 1e-12, 1 - 1e-12)).T
    return np.ascontiguousarray(z[:NUM_CLASSES]), np.ascontiguousarray(z[NUM_CLASSES:])


def _softmax0(z):
    """Softmax over the first axis (the 10 classes)."""
    e = np.exp(z - z.max(0))
    return e / e.sum(0)


def softmax_sq(Q, draws: int = 1 << 15, seed: int = 0) -> np.ndarray:
    """``E|softmax(z)|^2`` for ``z ~ N(0, Q I_10)`` (quasi-Monte Carlo, fixed seed), elementwise."""
    Q = np.atleast_1d(np.asarray(Q, float))
    e, _ = _normal_draws(draws, seed)
    return np.array([np.mean(np.sum(_softmax0(math.sqrt(max(qq, 0.0)) * e) ** 2, 0)) for qq in Q])


def softmax_cross(Q1, Q2, C, draws: int = 1 << 12, seed: int = 1, chunk: int = 32) -> np.ndarray:
    """``E[softmax(z).softmax(z')]``, ``(z_k, z'_k)`` i.i.d. over classes ~ N(0, [[Q1, C], [C, Q2]])
    (quasi-Monte Carlo on fixed draws shared by all pairs)."""
    Q1, Q2, C = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float)) for v in (Q1, Q2, C)))
    e, f = _normal_draws(draws, seed)
    rho = np.clip(C / np.sqrt(np.maximum(Q1 * Q2, 1e-300)), -1, 1)
    out = np.empty(Q1.shape)
    for k in range(0, Q1.size, chunk):
        s = slice(k, k + chunk)
        s1, s2, r = np.sqrt(Q1[s])[:, None], np.sqrt(Q2[s])[:, None], rho[s][:, None]
        p = _softmax0(s1 * e[:, None, :])  # (10, chunk, draws)
        pp = _softmax0(s2 * (r * e[:, None, :] + np.sqrt(1 - r * r) * f[:, None, :]))
        out[s] = np.mean(np.sum(p * pp, 0), -1)
    return out


# --------------------------------------------------------------------------------------------
# Initialisers -> per-layer std


def layer_fans(depth: int, width: int | Sequence[int], input_dim: int = INPUT_DIM,
               num_classes: int = NUM_CLASSES) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every Dense kernel, input to output."""
    widths = [width] * depth if isinstance(width, int) else list(width)
    if len(widths) != depth:
        raise ValueError(f"{len(widths)} widths for {depth} hidden layers")
    dims = [input_dim] + widths + [num_classes]
    return list(zip(dims[:-1], dims[1:]))


def equivalent_std(init: str, fan_in: int, fan_out: int, std: float = 0.05, scale: float = 1.0) -> float:
    """The std of i.i.d. zero-mean entries that a named initialiser (vgjax.nn.inits) amounts to."""
    table = {
        "random_normal": std,
        "truncated_normal": std * _TRUNC_STD,
        "random_uniform": scale / math.sqrt(3.0),
        "glorot_normal": math.sqrt(2.0 * scale / (fan_in + fan_out)),
        "glorot_uniform": math.sqrt(2.0 * scale / (fan_in + fan_out)),
        "he_normal": math.sqrt(2.0 * scale / fan_in),
        "he_uniform": math.sqrt(2.0 * scale / fan_in),
        "lecun_normal": math.sqrt(scale / fan_in),
        "lecun_uniform": math.sqrt(scale / fan_in),
        # not i.i.d., but every entry has this variance and the mean field treats it the same
        "orthogonal": scale / math.sqrt(max(fan_in, fan_out)),
    }
    if init not in table:
        raise ValueError(f"initializer {init!r} is not i.i.d. zero-mean random: the mean-field "
                         f"theory does not apply (choose from {', '.join(table)})")
    return float(table[init])


def layer_stds(init: str, depth: int, width: int | Sequence[int] = 128, std: float = 0.05,
               scale: float = 1.0) -> list[float]:
    return [equivalent_std(init, fi, fo, std, scale) for fi, fo in layer_fans(depth, width)]


@dataclasses.dataclass(frozen=True)
class Net:
    """What the theory needs of a plain MLP: activation, per-layer kernel std, widths."""

    activation: str
    stds: tuple[float, ...]  # one per Dense layer, input to output (depth + 1)
    widths: tuple[int, ...]  # hidden widths (depth)
    beta: float = 0.05

    @property
    def depth(self) -> int:
        return len(self.widths)

    @property
    def act(self) -> Act:
        return activation(self.activation, self.beta)

    @property
    def layer_names(self) -> list[str]:
        return [f"hidden_{i}" for i in range(1, self.depth + 1)] + ["output"]

    @classmethod
    def make(cls, activation: str, depth: int = 7, width: int = 128, init: str = "random_normal",
             std: float = 0.05, scale: float = 1.0, beta: float = 0.05) -> "Net":
        return cls(activation, tuple(layer_stds(init, depth, width, std, scale)),
                   tuple([width] * depth), beta)

    @classmethod
    def from_config(cls, config) -> "Net":
        if config.norm != "none" or config.skips or config.dropout:
            raise ValueError("the mean-field theory here covers plain MLPs (no normalisation, "
                             "skip paths or dropout)")
        net = cls.make(config.activation, config.depth, config.width, config.init,
                       config.init_std, config.init_scale, config.beta)
        if config.output_init == "hidden":  # vgjax.config.OUTPUT_INIT_HIDDEN (this module imports no jax)
            return net
        # the output layer has its own initializer (Keras' Glorot-uniform by default), with
        # Keras' default arguments as vgjax.nn.models.build_model gives it
        fan_in, fan_out = layer_fans(config.depth, config.width)[-1]
        out_std = equivalent_std(config.output_init, fan_in, fan_out, 0.05, 1.0)
        return dataclasses.replace(net, stds=net.stds[:-1] + (out_std,))


# --------------------------------------------------------------------------------------------
# The data-free recursion (one "typical" example with a given q_1)


@dataclasses.dataclass
class Recursion:
    q: np.ndarray  # q_l, pre-activation second moment of layers 1..L+1 (the last: logits)
    chi: np.ndarray  # chi_l of hidden layers 1..L
    act_sq: np.ndarray  # E|a_{l-1}|^2 for layers 1..L+1 (|x|^2 first)
    delta_sq: np.ndarray  # E|delta_l|^2 for layers 1..L+1
    per_example: np.ndarray  # sqrt(E|a_{l-1}|^2 E|delta_l|^2): one example's gradient norm


def recursion(net: Net, x_sq: float) -> Recursion:
    """q_l, chi_l and the per-example gradient profile for one input with ``|x|^2 = x_sq``."""
    act = net.act
    L = net.depth
    q = np.empty(L + 1)
    chi = np.empty(L)
    act_sq = np.empty(L + 1)
    act_sq[0] = x_sq
    q[0] = net.stds[0] ** 2 * x_sq
    dsq = np.empty(L)
    for l in range(L):
        phi2, dphi2 = moments(act, q[l])
        act_sq[l + 1] = net.widths[l] * phi2
        q[l + 1] = net.stds[l + 1] ** 2 * act_sq[l + 1]
        chi[l] = net.stds[l + 1] ** 2 * net.widths[l] * dphi2
        dsq[l] = dphi2
    delta = np.empty(L + 1)
    delta[L] = 0.8 + softmax_sq(q[L])[0]
    for l in range(L - 1, -1, -1):
        delta[l] = chi[l] * delta[l + 1]
    return Recursion(q, chi, act_sq, delta, np.sqrt(act_sq * delta))


# --------------------------------------------------------------------------------------------
# The prediction with the data: per-example and mean-gradient parts


def stratified_sample(y: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` examples of every class (fixed seed)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    return np.concatenate([np.sort(rng.choice(np.flatnonzero(y == k), per_class, replace=False))
                           for k in classes])


def _pair_weights(labels: np.ndarray, priors: dict) -> tuple[np.ndarray, np.ndarray]:
    """Weights making sum_b w_b f(b) and sum_{b<c} W_bc f(b,c) unbiased for E_x f and E_{x!=x'} f
    under i.i.d. sampling with class ``priors``, for a sample stratified by class."""
    counts = {k: int(np.sum(labels == k)) for k in np.unique(labels)}
    n_k = np.array([counts[k] for k in labels], float)
    p_k = np.array([priors[k] for k in labels], float)
    diag = p_k / n_k
    same = labels[:, None] == labels[None, :]
    with np.errstate(divide="ignore"):
        off = np.where(same, p_k[:, None] * p_k[None, :] / (n_k[:, None] * np.maximum(n_k[None, :] - 1, 1)),
                       p_k[:, None] * p_k[None, :] / (n_k[:, None] * n_k[None, :]))
    iu = np.triu_indices(len(labels), 1)
    return diag / diag.sum(), 2 * off[iu] / (2 * off[iu]).sum()


@dataclasses.dataclass
class Profile:
    """Predicted per-layer kernel-gradient norms at initialisation (layers input to output)."""

    layers: list[str]
    q: np.ndarray  # mean over examples of q_l (layer l's pre-activation second moment)
    chi: np.ndarray  # mean over examples of chi_l (hidden layers; nan for the output)
    per_example: np.ndarray  # D_l = E|g_l(x)|^2
    mean_grad: np.ndarray  # O_l = |E_x g_l(x)|^2
    batch_size: int

    def norm(self, batch_size: int | None = None) -> np.ndarray:
        """sqrt(E|G_l|^2) for a batch of ``batch_size`` i.i.d. examples."""
        B = self.batch_size if batch_size is None else batch_size
        return np.sqrt(np.maximum(self.mean_grad + (self.per_example - self.mean_grad) / B, 0.0))

    def ratio_to_output(self, batch_size: int | None = None) -> np.ndarray:
        n = self.norm(batch_size)
        return n / n[-1]

    def to_dict(self) -> dict:
        return {"layers": self.layers, "q": self.q.tolist(), "chi": self.chi.tolist(),
                "per_example_sq": self.per_example.tolist(), "mean_grad_sq": self.mean_grad.tolist(),
                "batch_size": self.batch_size, "norm": self.norm().tolist()}


def predict_profile(net: Net, x: np.ndarray, labels: np.ndarray, batch_size: int = 32,
                    priors: dict | None = None) -> Profile:
    """Predicted ``sqrt(E|G_l|^2)`` per layer for minibatches of ``batch_size`` i.i.d. examples.

    ``x`` (N, 784) float pixels in [0, 1] and ``labels`` are a sample of the data stratified by
    class (see :func:`stratified_sample`); ``priors`` are the class frequencies of the full data
    (uniform if not given). Cost: N(N-1)/2 pair integrals per layer.
    """
    x = np.asarray(x, float)
    labels = np.asarray(labels)
    N = x.shape[0]
    if priors is None:
        priors = {k: 1.0 / NUM_CLASSES for k in range(NUM_CLASSES)}
    w_diag, w_off = _pair_weights(labels, priors)
    iu = np.triu_indices(N, 1)
    act = net.act
    L = net.depth
    gram = x @ x.T
    # forward: kernels over the sample; A[l] = a_{l}(x).a_{l}(x'), K[l] = s^2 A[l-1]
    A_diag, A_off = [np.diag(gram).copy()], [gram[iu]]
    B_diag, B_off = [], []  # E[dphi dphi] per hidden layer
    q_mean, chi_mean = [], []
    for l in range(L + 1):
        s2 = net.stds[l] ** 2
        kd, ko = s2 * A_diag[l], s2 * A_off[l]
        q_mean.append(float(np.sum(w_diag * kd)))
        if l == L:
            break
        phi2, dphi2 = moments(act, kd)
        qi, qj = kd[iu[0]], kd[iu[1]]
        pf, pd = pair_moments(act, qi, qj, ko)
        n = net.widths[l]
        A_diag.append(n * phi2)
        A_off.append(n * pf)
        B_diag.append(dphi2)
        B_off.append(pd)
        chi_mean.append(float(np.sum(w_diag * net.stds[l + 1] ** 2 * n * dphi2)))
    # output error kernel
    Qd, Qo = net.stds[L] ** 2 * A_diag[L], net.stds[L] ** 2 * A_off[L]
    same = (labels[iu[0]] == labels[iu[1]]).astype(float)
    D_diag = 0.8 + softmax_sq(Qd)
    D_off = softmax_cross(Qd[iu[0]], Qd[iu[1]], Qo) - 0.2 + same
    per_ex, mean_g = np.empty(L + 1), np.empty(L + 1)
    for l in range(L, -1, -1):  # layer l+1 in 1-based naming: kernel W_{l+1}, input a_l
        per_ex[l] = np.sum(w_diag * A_diag[l] * D_diag)
        mean_g[l] = np.sum(w_off * A_off[l] * D_off)
        if l > 0:
            f = net.stds[l] ** 2 * net.widths[l - 1]
            D_diag = f * B_diag[l - 1] * D_diag
            D_off = f * B_off[l - 1] * D_off
    return Profile(net.layer_names, np.array(q_mean), np.array(chi_mean + [np.nan]), per_ex, mean_g,
                   batch_size)


# --------------------------------------------------------------------------------------------
# Fixed point of q and the critical init std (hidden layers of equal width)


def fixed_point_q(act: Act, sigma_w2: float) -> float:
    """The stable non-zero fixed point q* of ``q -> sigma_w2 E[phi(h)^2]``.

    Without one, 0 if the map contracts at large q (the signal dies), else inf (it grows without
    bound: the relu-like regime, where chi no longer depends on q). Where two stable fixed points
    exist the larger is returned.
    """
    if act.linear_relu is not None:
        a, b = act.linear_relu
        return 0.0 if sigma_w2 * (a * a + a * b + b * b / 2) < 1 else math.inf
    t = np.linspace(-40, 40, 161)
    g = np.log(np.maximum(sigma_w2 * moments(act, np.exp(t))[0], 1e-300)) - t
    crossings = np.flatnonzero((g[:-1] > 0) & (g[1:] <= 0))
    if crossings.size == 0:
        return 0.0 if g[-1] < 0 else math.inf
    i = crossings[-1]
    f = lambda tt: math.log(max(sigma_w2 * float(moments(act, math.exp(tt))[0]), 1e-300)) - tt
    return math.exp(optimize.brentq(f, t[i], t[i + 1], xtol=1e-12))


def chi_star(act: Act, std: float, width: int = 128) -> float:
    """chi at the fixed point q* of a deep stack of width-``width`` layers with kernel std ``std``."""
    s2n = std * std * width
    q = fixed_point_q(act, s2n)
    # q* = 0: the limit q -> 0+ (averages the two sides of a kink); q* = inf: a huge q
    q = min(max(q, 1e-24), 1e16)
    return float(s2n * moments(act, q)[1])


def critical_stds(activation_name: str, width: int = 128, beta: float = 0.05,
                  lo: float = 1e-3, hi: float = 1e2) -> list[float]:
    """Init stds where chi(q*) = 1 (the edge of chaos), found by root finding on a log grid."""
    act = activation(activation_name, beta)
    if act.linear_relu is not None:
        a, b = act.linear_relu
        return [1.0 / math.sqrt(width * (a * a + a * b + b * b / 2))]
    ls = np.linspace(math.log(lo), math.log(hi), 121)
    g = np.array([math.log(chi_star(act, math.exp(v), width)) for v in ls])
    roots = []
    for i in np.flatnonzero(np.sign(g[:-1]) != np.sign(g[1:])):
        f = lambda v: math.log(chi_star(act, math.exp(v), width))
        roots.append(math.exp(optimize.brentq(f, ls[i], ls[i + 1], xtol=1e-10)))
    return roots
