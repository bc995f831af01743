"""vgjax: vanishing gradients in deep MLPs on Fashion-MNIST, reproduced with JAX, Flax and optax.

Folders by role (docs/design.md, "Layout"): ``nn`` (layers, initialisers, the MLP), ``optim``
(registry, PyTorch and from-scratch forms), ``train`` (keys, the scanned engine, hooks, stages,
diagnostics), ``run`` (whole runs into run directories), ``sweep`` (many members as one vmapped
program), ``analysis`` (theory, escape, trainability), ``report`` (figures and reports from files).
At the top: ``config`` (the frozen Config), ``methods`` (the study's named configs), ``data``
(find/verify/load), ``owned`` (what a command may overwrite), ``faults``, ``runtime``.
"""

__version__ = "0.1.0"
