"""The optimizer exercise's PyTorch network and optimizers, as the original code builds them (test-only).

docs/study.md §5: ``nn.Linear`` layers 784 → 128 (×5, sigmoid) → 10, ``nn.CrossEntropyLoss`` (mean
over the batch), pixels ``ToTensor`` scales to [0, 1], batch 512 from a shuffling ``DataLoader``
(its last batch partial), trained with ``torch.optim`` or ADOPT's reference implementation
(package ``torch-adopt``, module ``adopt``). tests/test_torch_parity.py copies vgjax's initial
parameters in, feeds both the same batches and compares. Layer names follow vgjax: ``hidden_i``,
``output``; ``nn.Linear`` keeps its weight as (out, in), vgjax's kernel is (in, out).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)  # one core, like the rest of the test suite's CPU work


class Net(nn.Module):
    def __init__(self, depth: int = 5, width: int = 128):
        super().__init__()
        sizes = [784] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.output = nn.Linear(width, 10)

    def forward(self, x):
        for layer in self.hidden:
            x = torch.sigmoid(layer(x))
        return self.output(x)

    def layers(self) -> dict[str, nn.Linear]:
        return {**{f"hidden_{i}": l for i, l in enumerate(self.hidden, start=1)}, "output": self.output}


MOMENTUM = 0.9  # torch's default is 0 (plain SGD); 0.9 is the value vgjax documents (docs/results.md)


def optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """The optimizer the original code would construct for a vgjax optimizer name: only the
    learning rate given, every other hyper-parameter PyTorch's (or ADOPT's) own default, so a vgjax
    method whose defaults drift from them fails the parity test."""
    if name == "torch_sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "torch_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    if name == "torch_rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "torch_adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adopt_ref":
        from adopt import ADOPT  # the reference implementation (pip install torch-adopt)

        return ADOPT(params, lr=lr)
    raise ValueError(f"no torch reference for optimizer {name!r}")


def set_from_vgjax(net: Net, params: dict) -> None:
    with torch.no_grad():
        for name, layer in net.layers().items():
            layer.weight.copy_(torch.from_numpy(np.asarray(params[name]["kernel"]).T.copy()))
            layer.bias.copy_(torch.from_numpy(np.asarray(params[name]["bias"]).copy()))


def get_params(net: Net) -> dict:
    """The network's parameters in vgjax's layout."""
    return {name: {"kernel": layer.weight.detach().numpy().T.copy(), "bias": layer.bias.detach().numpy().copy()}
            for name, layer in net.layers().items()}


def train_batches(net: Net, opt: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray, batches) -> list[float]:
    """One ``opt.step()`` per index batch, in order: the per-step losses (CrossEntropyLoss, mean)."""
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y, np.int64))
    losses = []
    for b in batches:
        b = torch.from_numpy(np.asarray(b, np.int64))
        opt.zero_grad()
        loss = loss_fn(net(xt[b]), yt[b])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
