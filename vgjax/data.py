"""Fashion-MNIST: find → verify → load.

The four standard IDX files (gzipped or not) are looked for, in order, in

1. the directory given as ``data_dir`` (the CLIs' ``--data-dir``), else
2. the directory in the environment variable ``VGJAX_DATA_DIR``, else
3. Debian's ``/usr/share/datasets/fashion-mnist/`` (package ``dataset-fashion-mnist``),
4. the user cache ``$XDG_CACHE_HOME/vgjax/fashion-mnist/`` (default ``~/.cache/...``),
5. a download from the official mirror into that cache (base URL overridable with
   ``VGJAX_DATA_URL``; skipped with ``download=False``).

A directory given by 1 or 2 is authoritative: if it does not hold valid files, that is the error,
and no other place is tried. Every file is checked by a strict parse of its IDX header and the
sha256 of its *decompressed* bytes, so re-gzipped copies such as Debian's are accepted. Whatever is
wrong with the files ends as one :class:`DataError` whose message names the file, what was
expected, every place searched, and how to fix it. A download goes to a temporary file in the cache
that is verified before it is renamed into place, so the cache never holds a half-written file.
Nothing is printed.

``source="tfds"`` builds the same data with tensorflow-datasets' ``fashion_mnist`` builder,
offline, from the official ``.gz`` files (see :func:`load_tfds`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                "Sneaker", "Bag", "Ankle boot")
FILES: dict[str, str] = {"train_images": "train-images-idx3-ubyte.gz",
                         "train_labels": "train-labels-idx1-ubyte.gz",
                         "test_images": "t10k-images-idx3-ubyte.gz",
                         "test_labels": "t10k-labels-idx1-ubyte.gz"}
#: sha256 of the decompressed IDX bytes (what ``zcat`` prints); see shared/data/fashion_mnist/SOURCE.md.
SHA256: dict[str, str] = {
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}
#: sha256 of the official .gz files themselves (what tensorflow-datasets checks).
GZIP_SHA256: dict[str, str] = {
    "train_images": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train_labels": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "test_images": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "test_labels": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"}
COUNTS: dict[str, int] = {"train": 60000, "test": 10000}

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DOWNLOAD_TIMEOUT_S = 15.0

_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049
_SIDE = 28
_FILE_LIST = ", ".join(FILES.values())
_FIX_IDX = ("To fix: install the Debian package ('apt-get install dataset-fashion-mnist'), or put the four "
            f"official files ({_FILE_LIST}; gzipped or not) in a directory and pass it with --data-dir DIR "
            "(or set VGJAX_DATA_DIR=DIR).")
_FIX_TFDS = ("To fix: tensorflow-datasets needs the four official gzip files byte for byte "
             f"({_FILE_LIST}); pass a directory holding them with --data-dir DIR (or set "
             "VGJAX_DATA_DIR=DIR), or use --data-source idx, which also accepts Debian's copies "
             "('apt-get install dataset-fashion-mnist').")


class DataError(Exception):
    """Fashion-MNIST could not be found or is not valid; ``str(e)`` is one user-facing line."""


@dataclasses.dataclass(frozen=True, eq=False)
class Arrays:
    """The four arrays every part of the library trains on: uint8 images flattened to 784 pixels
    (0-255) and int32 labels, as numpy arrays on the host or jax arrays on a device
    (:class:`vgjax.train.engine.DeviceData`). Unpacks as ``x_train, y_train, x_test, y_test``."""

    x_train: Any  # (n_train, 784) uint8
    y_train: Any  # (n_train,) int32
    x_test: Any  # (n_test, 784) uint8
    y_test: Any  # (n_test,) int32

    def __iter__(self) -> Iterator[Any]:
        return iter((self.x_train, self.y_train, self.x_test, self.y_test))

    @classmethod
    def of(cls, data: Any, train_limit: int | None = None) -> "Arrays":
        """Host copies of any object with the four attributes (on a device or not), keeping the
        first ``train_limit`` training examples (all when None)."""
        return cls(np.asarray(data.x_train[:train_limit], np.uint8), np.asarray(data.y_train[:train_limit], np.int32),
                   np.asarray(data.x_test, np.uint8), np.asarray(data.y_test, np.int32))


@dataclasses.dataclass(frozen=True, eq=False)
class FashionMNIST(Arrays):
    """The dataset as read-only numpy arrays (60000 training, 10000 test examples), and where it
    came from."""

    source: str = ""  # a directory, or "tfds:<dir>"


class _BadFile(Exception):
    """What is wrong with one file (internal; becomes part of a DataError message)."""


class _NoNetwork(_BadFile):
    """The mirror could not be reached."""


@dataclasses.dataclass(frozen=True)
class _Place:
    path: Path
    why: str  # why it was searched, e.g. "given by VGJAX_DATA_DIR"

    def report(self, problems: dict[str, str]) -> str:
        return f"{self.path} ({self.why}): " + "; ".join(problems.values())


# Per directory: the verified arrays by key (None for tfds), and the problems by key.
_Checked = tuple[dict[str, "np.ndarray | None"], dict[str, str]]


# ----------------------------------------------------------------------------------------------
# Public API


def find_data_dir(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The first directory, in the search order above, that holds the four valid files."""
    return _search(data_dir, download=download, for_tfds=False)[0]


def load(data_dir: str | os.PathLike | None = None, source: str = "idx", *,
         download: bool = True) -> FashionMNIST:
    """Find, verify and load Fashion-MNIST; ``source`` is ``"idx"`` (the files) or ``"tfds"``."""
    if source == "idx":
        directory, arrays = _search(data_dir, download=download, for_tfds=False)
        return FashionMNIST(arrays["train_images"], arrays["train_labels"], arrays["test_images"],
                            arrays["test_labels"], source=str(directory))
    if source == "tfds":
        directory, _ = _search(data_dir, download=download, for_tfds=True)
        return load_tfds(directory)
    raise ValueError(f"unknown data source {source!r}; expected 'idx' or 'tfds'")


def load_tfds(manual_dir: str | os.PathLike, tfds_data_dir: str | os.PathLike | None = None) -> FashionMNIST:
    """Fashion-MNIST through tensorflow-datasets, built offline from the official ``.gz`` files.

    ``manual_dir`` must hold the four official gzip files: tfds checks their sha256, so re-gzipped
    copies such as Debian's are refused (checked here first, with a clear message). The prepared
    dataset goes to ``tfds_data_dir`` (default ``$XDG_CACHE_HOME/vgjax/tensorflow_datasets``); the
    first build takes ~15 s. The examples come in tfds' own shuffled order, not the IDX order:
    compare with :func:`load` as sets of (image, label) pairs.
    """
    place = _Place(Path(manual_dir).expanduser(), "manual_dir for tensorflow-datasets")
    problems = _check_dir(place.path, for_tfds=True)[1]
    if problems:
        raise DataError(f"Fashion-MNIST not usable: {place.report(problems)}. {_FIX_TFDS}")
    tfds = _import_tfds()
    data_dir = Path(tfds_data_dir).expanduser() if tfds_data_dir else _cache_root() / "tensorflow_datasets"
    try:
        builder = tfds.builder("fashion_mnist", data_dir=str(data_dir))
        config = tfds.download.DownloadConfig(manual_dir=str(place.path))
        with contextlib.redirect_stdout(sys.stderr):  # tfds prints its progress messages
            builder.download_and_prepare(download_config=config)
        train, test = (tfds.as_numpy(builder.as_dataset(split=s, batch_size=-1)) for s in ("train", "test"))
    except ImportError as e:  # tfds imports tensorflow lazily
        raise DataError(f"tensorflow-datasets needs a missing package ({e}); "
                        "install it with: pip install 'vgjax[tfds]'") from None
    except OSError as e:
        raise DataError(f"tensorflow-datasets could not build fashion_mnist in {data_dir} from "
                        f"{place.path}: {e}") from None
    return FashionMNIST(*_from_tfds(train), *_from_tfds(test), source=f"tfds:{data_dir}")


# ----------------------------------------------------------------------------------------------
# Search


def _search(data_dir: str | os.PathLike | None, *, download: bool,
            for_tfds: bool) -> tuple[Path, dict[str, np.ndarray | None]]:
    """The directory found and its verified arrays (None for tfds), or a DataError."""
    fix = _FIX_TFDS if for_tfds else _FIX_IDX
    explicit = _explicit_place(data_dir)
    if explicit is not None:
        arrays, problems = _check_dir(explicit.path, for_tfds=for_tfds)
        if problems:
            raise DataError(f"Fashion-MNIST not usable: {explicit.report(problems)}. Searched only this "
                            "directory, because it was given explicitly (without one, the standard places "
                            f"are searched). {fix}")
        return explicit.path, arrays

    debian = _Place(DEBIAN_DIR, "Debian package dataset-fashion-mnist")
    cache = _Place(_cache_root() / "fashion-mnist", "user cache")
    arrays, problems = _check_dir(debian.path, for_tfds=for_tfds)
    if not problems:
        return debian.path, arrays
    searched = [debian.report(problems)]
    arrays, problems = _check_dir(cache.path, for_tfds=for_tfds)
    if not problems:
        return cache.path, arrays
    searched.append(cache.report(problems))
    if download:  # into the cache, what it lacks or holds damaged
        arrays, problems = _download_missing(cache.path, arrays, problems, for_tfds=for_tfds)
        if not problems:
            return cache.path, arrays
        searched.append(f"download from {_base_url()} into {cache.path}: " + "; ".join(problems.values()))
    else:
        searched.append("download: not tried (disabled)")
    raise DataError("Fashion-MNIST not found. Searched: " + " | ".join(searched) + f". {fix}")


def _explicit_place(data_dir: str | os.PathLike | None) -> _Place | None:
    if data_dir is not None and str(data_dir):
        return _Place(Path(data_dir).expanduser(), "given as --data-dir / data_dir")
    if env := os.environ.get("VGJAX_DATA_DIR"):
        return _Place(Path(env).expanduser(), "given by VGJAX_DATA_DIR")
    return None


def _cache_root() -> Path:
    """``$XDG_CACHE_HOME/vgjax`` (read at call time), default ``~/.cache/vgjax``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "vgjax"


def _base_url() -> str:
    url = os.environ.get("VGJAX_DATA_URL") or DEFAULT_URL
    return url if url.endswith("/") else url + "/"


# ----------------------------------------------------------------------------------------------
# Checking a directory


def _check_dir(directory: Path, *, for_tfds: bool) -> _Checked:
    """Verify the four files in ``directory``; problem key "dir" means the directory itself."""
    try:
        if not directory.is_dir():
            return {}, {"dir": "not a directory" if directory.exists() else "directory does not exist"}
        paths = {key: _locate(directory, key, gz_only=for_tfds) for key in FILES}
    except OSError as e:
        return {}, {"dir": f"cannot access ({e.strerror or e})"}
    arrays: dict[str, np.ndarray | None] = {}
    problems: dict[str, str] = {}
    for key, path in paths.items():
        if path is None:
            problems[key] = f"missing {_expected_names(key, gz_only=for_tfds)}"
            continue
        try:
            arrays[key] = _check_file(path, key, for_tfds=for_tfds)
        except _BadFile as e:
            problems[key] = f"{path}: {e}"
    return arrays, problems


def _locate(directory: Path, key: str, *, gz_only: bool) -> Path | None:
    """``directory/<name>.gz``, else (unless ``gz_only``) the uncompressed name, else None."""
    names = [FILES[key]] if gz_only else [FILES[key], FILES[key].removesuffix(".gz")]
    return next((directory / name for name in names if (directory / name).is_file()), None)


def _expected_names(key: str, *, gz_only: bool) -> str:
    return FILES[key] if gz_only else f"{FILES[key]} (or uncompressed {FILES[key].removesuffix('.gz')})"


# ----------------------------------------------------------------------------------------------
# Checking one file (each raises _BadFile with the reason)


def _check_file(path: Path, key: str, *, for_tfds: bool) -> np.ndarray | None:
    if for_tfds:
        _check_official_gzip(path, key)
        return None
    return _read_verified(path, key)


def _read_verified(path: Path, key: str) -> np.ndarray:
    """The read-only array in ``path``, after a strict IDX parse and the sha256 of its IDX bytes."""
    raw = _idx_bytes(path)
    array = _parse_idx(raw, key)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[key]:
        raise _BadFile(f"checksum mismatch: its IDX data has sha256 {digest}, expected {SHA256[key]} "
                       f"(the official {FILES[key].removesuffix('.gz')}); the file is damaged or not the "
                       "original Fashion-MNIST")
    array.setflags(write=False)
    return array


def _idx_bytes(path: Path) -> bytes:
    """The IDX bytes in ``path``, decompressed if it is gzip (recognised by content, not name)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _BadFile(f"cannot read ({e.strerror or e})") from None
    if data[:2] != b"\x1f\x8b":
        if path.name.endswith(".gz"):
            start = f"starts with bytes {data[:4].hex()}" if data else "is empty"
            raise _BadFile(f"not a gzip file ({start}), expected a gzipped IDX file")
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise _BadFile("corrupt/truncated gzip: the compressed data ends early "
                       "(an incomplete download or copy?)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise _BadFile(f"corrupt gzip ({e})") from None


def _parse_idx(raw: bytes, key: str) -> np.ndarray:
    """Strict IDX parse (magic, dims, exact payload length): uint8 (n, 784) or int32 (n,)."""
    split, kind = key.split("_")
    magic, header = (_IMAGE_MAGIC, 16) if kind == "images" else (_LABEL_MAGIC, 8)
    what = "an IDX image file" if kind == "images" else "an IDX label file"
    if len(raw) < 4:
        raise _BadFile(f"not {what}: only {len(raw)} bytes")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        known = {_IMAGE_MAGIC: ", that of an IDX image file", _LABEL_MAGIC: ", that of an IDX label file"}
        raise _BadFile(f"not {what} (magic number {found}{known.get(found, '')}; expected {magic})")
    if len(raw) < header:
        raise _BadFile(f"truncated IDX header: {len(raw)} bytes, expected {header}")
    dims = [int.from_bytes(raw[i:i + 4], "big") for i in range(0, header, 4)]
    n = dims[1]
    if kind == "images" and dims[2:] != [_SIDE, _SIDE]:
        raise _BadFile(f"images of {dims[2]}x{dims[3]} pixels, expected {_SIDE}x{_SIDE}")
    payload = n * _SIDE * _SIDE if kind == "images" else n
    if len(raw) - header != payload:
        raise _BadFile(f"the header announces {n} {kind} ({payload} bytes) but {len(raw) - header} bytes "
                       "follow (truncated or padded IDX data)")
    if n != COUNTS[split]:
        raise _BadFile(f"holds {n} {kind}, expected {COUNTS[split]} (the {split} set)")
    array = np.frombuffer(raw, np.uint8, offset=header)
    return array.reshape(n, _SIDE * _SIDE) if kind == "images" else array.astype(np.int32)


def _check_official_gzip(path: Path, key: str) -> None:
    """Accept only the official gzip bytes (as tfds does); say precisely why a file differs."""
    try:
        digest = _sha256_file(path)
    except OSError as e:
        raise _BadFile(f"cannot read ({e.strerror or e})") from None
    if digest != GZIP_SHA256[key]:
        _read_verified(path, key)  # raises the precise reason if the content itself is wrong
        raise _BadFile("valid Fashion-MNIST data, but not byte for byte the official gzip file "
                       "(a re-gzipped copy such as Debian's?)")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Download into the cache


def _download_missing(cache: Path, arrays: dict, problems: dict[str, str], *, for_tfds: bool) -> _Checked:
    """Download what the cache lacks or holds damaged; the cache's check result afterwards."""
    arrays, still_bad = dict(arrays), {}
    for key in (FILES if "dir" in problems else [k for k in FILES if k in problems]):
        url = _base_url() + FILES[key]
        try:
            arrays[key] = _download_verified(url, cache, key, for_tfds=for_tfds)
        except _NoNetwork as e:
            return arrays, {key: f"{url}: {e}"}  # don't wait for the same timeout again
        except _BadFile as e:
            still_bad[key] = f"{url}: {e}"
    return arrays, still_bad


def _download_verified(url: str, cache: Path, key: str, *, for_tfds: bool) -> np.ndarray | None:
    """Fetch ``url`` to a temporary file in ``cache``, verify it, then rename it into place."""
    tmp: str | None = None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=FILES[key] + ".", suffix=".part", dir=cache)
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out)
        array = _check_file(Path(tmp), key, for_tfds=for_tfds)
        os.replace(tmp, cache / FILES[key])
        tmp = None
        return array
    except OSError as e:  # from the cache side: not writable, disk full, ...
        raise _BadFile(f"cannot write to the cache ({e.strerror or e})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fetch(url: str, out: BinaryIO) -> None:
    """Copy ``url`` into ``out``; network trouble becomes _NoNetwork / _BadFile, disk trouble OSError."""
    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise _BadFile(f"download failed (HTTP {e.code} {e.reason})") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # refused, timeout, no DNS
        raise _NoNetwork(f"download failed, no network? ({getattr(e, 'reason', e)})") from None
    received = 0
    with response:
        while True:
            try:
                block = response.read(1 << 20)
            except (OSError, http.client.HTTPException) as e:
                raise _BadFile(f"download broke off after {received} bytes ({e!r})") from None
            if not block:
                break
            out.write(block)
            received += len(block)
        missing = getattr(response, "length", None)  # of the announced Content-Length
    if missing:
        raise _BadFile(f"download broke off after {received} bytes, {missing} bytes short")


# ----------------------------------------------------------------------------------------------
# tensorflow-datasets


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"--data-source tfds needs tensorflow-datasets ({e}); "
                        "install it with: pip install 'vgjax[tfds]'") from None
    return tfds


def _from_tfds(split: dict) -> tuple[np.ndarray, np.ndarray]:
    """tfds' {"image": (n, 28, 28, 1), "label": (n,)} as read-only (n, 784) uint8 and (n,) int32."""
    images = np.ascontiguousarray(split["image"], dtype=np.uint8).reshape(-1, _SIDE * _SIDE)
    labels = np.asarray(split["label"], dtype=np.int32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels
