"""vgjax: vanishing gradients in deep MLPs on Fashion-MNIST, reproduced with JAX, Flax and optax.

Modules: ``data`` (find/verify/load), ``models`` and ``layers`` (the MLP family), ``inits``,
``optim`` (optimizers, freezing), ``scratch`` (docs/study.md §5 optimizers), ``keys`` (every random
key from the seed), ``train`` (the scanned engine), ``stages`` (train some layers), ``runner``
(whole runs: ``train_and_evaluate``), ``hooks`` and ``callbacks``, ``checkpoint``, ``runlog`` (the
run directory), ``diagnostics``, ``plots``, ``sweep``, ``pool`` and ``jobs`` (child processes),
``theory``.
"""

__version__ = "0.1.0"
