"""Optimizers: the registry over optax and layer freezing (``registry``), PyTorch's forms operation for
operation (``torch_forms``), the from-scratch forms of docs/study.md §5 (``scratch``)."""
