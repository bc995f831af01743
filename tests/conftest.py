"""Shared test data: the synthetic data set (:func:`synthetic`), and where the real-data tests find
Fashion-MNIST: as the library does, and never silently skipped.

The directory is looked for in this order (no download):

1. ``pytest --data-dir DIR`` -- authoritative, like the CLIs' ``--data-dir``;
2. ``vgjax.data``'s own search: ``VGJAX_DATA_DIR`` (authoritative), Debian's
   ``/usr/share/datasets/fashion-mnist``, the user cache ``$XDG_CACHE_HOME/vgjax/fashion-mnist``;
3. when nothing was given explicitly: ``shared/data/fashion_mnist`` beside the checkout (this
   project's development layout).

The session header says which directory the real-data tests use, or why there is none. Without
data those tests are skipped -- except in CI (``CI`` set to true/1/yes, as CI services do), where a
missing or damaged data set is a failure.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from vgjax import data
from vgjax.train.engine import DeviceData

CHECKOUT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion_mnist"


def pytest_addoption(parser):
    parser.addoption("--data-dir", default=None, metavar="DIR",
                     help="Fashion-MNIST directory for the real-data tests (default: VGJAX_DATA_DIR, "
                          "Debian's package, the user cache, then ../shared/data/fashion_mnist)")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _find(directory, for_tfds: bool) -> Path:
    """vgjax.data's search (``directory`` None: the standard places), without a download."""
    return data._search(directory, download=False, for_tfds=for_tfds)[0]


def synthetic(n: int = 64, n_test: int = 40, seed: int = 0) -> DeviceData:
    """Random images and labels on the device: the small data set of the engine and run tests."""
    rng = np.random.default_rng(seed)
    return DeviceData.from_numpy(rng.integers(0, 256, (n, 784), np.uint8), rng.integers(0, 10, n),
                                 rng.integers(0, 256, (n_test, 784), np.uint8), rng.integers(0, 10, n_test))


@functools.lru_cache(maxsize=None)
def find_fashion_mnist(given: str | None = None, for_tfds: bool = False) -> tuple[Path | None, str]:
    """(directory or None, how it was found or why none was).

    ``for_tfds``: a directory holding the official .gz files, as ``load(source="tfds")`` searches
    (it passes over Debian's re-gzipped copies).
    """
    if given:
        try:
            return _find(given, for_tfds), "given as pytest --data-dir"
        except data.DataError as e:
            return None, str(e)
    explicit = bool(os.environ.get("VGJAX_DATA_DIR"))
    try:
        found = _find(None, for_tfds)
        return found, "VGJAX_DATA_DIR" if explicit else "vgjax.data's search (Debian package or user cache)"
    except data.DataError as e:
        problem = str(e)
    if not explicit and CHECKOUT_SHARED.is_dir():
        try:
            return _find(CHECKOUT_SHARED, for_tfds), "the checkout's ../shared copy"
        except data.DataError as e:
            problem += f" | also {e}"
    return None, problem


def fashion_mnist_dir_or_skip(config, for_tfds: bool = False) -> Path:
    """The data directory; else skip (a failure in CI) with the search's explanation."""
    found, how = find_fashion_mnist(config.getoption("--data-dir"), for_tfds)
    if found is None:
        message = f"real Fashion-MNIST not found: {how}"
        if in_ci():
            pytest.fail(f"{message} (CI: a missing data set is a failure, not a skip)", pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def fashion_mnist_dir(pytestconfig) -> Path:
    """The real Fashion-MNIST directory for the real-data tests (see the module docstring)."""
    return fashion_mnist_dir_or_skip(pytestconfig)


def pytest_report_header(config):
    found, how = find_fashion_mnist(config.getoption("--data-dir"))
    if found is not None:
        return f"fashion-mnist: {found} ({how})"
    return (f"fashion-mnist: NOT FOUND -- the real-data tests will be "
            f"{'FAILED (CI)' if in_ci() else 'skipped'}: {how}")
