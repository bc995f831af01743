"""Fashion-MNIST: find → verify → load (provisional minimal loader; replaced by the full one)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
FILES = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
         "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
SHA256 = {"train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
          "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
          "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
          "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}


class DataError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class FashionMNIST:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _candidates(data_dir):
    if data_dir is not None:
        return [Path(data_dir)]
    if os.environ.get("VGJAX_DATA_DIR"):
        return [Path(os.environ["VGJAX_DATA_DIR"])]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vgjax" / "fashion-mnist"
    return [Path("/usr/share/datasets/fashion-mnist"), cache]


def _read(path: Path, key: str) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: corrupt or truncated gzip ({e})") from None
    if hashlib.sha256(raw).hexdigest() != SHA256[key]:
        raise DataError(f"{path}: checksum mismatch")
    off = 16 if "images" in key else 8
    arr = np.frombuffer(raw, np.uint8, offset=off)
    return arr.reshape(-1, 784) if "images" in key else arr.astype(np.int32)


def find_data_dir(data_dir=None, *, download=True) -> Path:
    places = _candidates(data_dir)
    for p in places:
        if all((p / f).exists() for f in FILES.values()):
            return p
    raise DataError(f"Fashion-MNIST not found in {', '.join(map(str, places))}; install it with "
                    f"'apt-get install dataset-fashion-mnist' or give --data-dir DIR")


def load(data_dir=None, source="idx", *, download=True) -> FashionMNIST:
    d = find_data_dir(data_dir, download=download)
    arrs = {k: _read(d / f, k) for k, f in FILES.items()}
    return FashionMNIST(arrs["train_images"], arrs["train_labels"], arrs["test_images"], arrs["test_labels"], str(d))
