"""vgjax.data: find → verify → load Fashion-MNIST, its error messages, the download cache, tfds.

Every test runs isolated (no VGJAX_DATA_DIR, a temporary cache, no Debian dir, a mirror URL on a
closed localhost port), so nothing touches the network or the user's cache. Real data come from
the directory tests/conftest.py finds (as the library finds it; skipped without it, failed in CI);
damaged files are tiny synthetic datasets that the checks are pointed at.
"""

from __future__ import annotations

import gzip
import hashlib
import contextlib
import http.server
import io
import shutil
import socket
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import fashion_mnist_dir_or_skip
from vgjax import data

REAL_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FIX_HINTS = ("apt-get install dataset-fashion-mnist", "--data-dir DIR", "VGJAX_DATA_DIR")

needs_debian = pytest.mark.skipif(not REAL_DEBIAN.is_dir(),
                                  reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No explicit dir, a private cache, no Debian dir, and a mirror that refuses connections."""
    monkeypatch.delenv("VGJAX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("VGJAX_DATA_URL", f"http://127.0.0.1:{closed_port()}/")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "xdg-cache" / "vgjax" / "fashion-mnist"


# ----------------------------------------------------------------------------------------------
# Synthetic data


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return b"".join(v.to_bytes(4, "big") for v in (2051, n, rows, cols)) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()


@pytest.fixture
def fake(monkeypatch) -> dict[str, bytes]:
    """A tiny Fashion-MNIST (6 train, 4 test) that vgjax.data is told to accept: key -> IDX bytes."""
    rng = np.random.default_rng(0)
    counts = {"train": 6, "test": 4}
    monkeypatch.setattr(data, "COUNTS", counts)
    payloads = {}
    for key in data.FILES:
        split, kind = key.split("_")
        n = counts[split]
        payload = (idx_images(rng.integers(0, 256, (n, 28, 28))) if kind == "images"
                   else idx_labels(rng.integers(0, 10, n)))
        payloads[key] = payload
        monkeypatch.setitem(data.SHA256, key, hashlib.sha256(payload).hexdigest())
        monkeypatch.setitem(data.GZIP_SHA256, key, hashlib.sha256(gz(payload)).hexdigest())
    return payloads


def gz(payload: bytes) -> bytes:
    return gzip.compress(payload, mtime=0)


def write_files(directory: Path, payloads: dict[str, bytes], *, compress: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, payload in payloads.items():
        name = data.FILES[key] if compress else data.FILES[key].removesuffix(".gz")
        (directory / name).write_bytes(gz(payload) if compress else payload)
    return directory


def assert_one_clear_line(message: str, *fragments: str) -> None:
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


# ----------------------------------------------------------------------------------------------
# The real files


def real_files(directory: Path) -> dict[str, Path]:
    """The four files of the real data set, by their official .gz names (gzipped or not)."""
    out = {}
    for name in data.FILES.values():
        path = directory / name
        out[name] = path if path.exists() else directory / name.removesuffix(".gz")
    return out


def gz_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw if raw[:2] == b"\x1f\x8b" else gz(raw)


@pytest.fixture(scope="module")
def real(fashion_mnist_dir) -> data.FashionMNIST:
    return data.load(fashion_mnist_dir)


def test_real_files_verified_and_loaded(real):
    assert real.x_train.shape == (60000, 784) and real.x_test.shape == (10000, 784)
    assert real.x_train.dtype == real.x_test.dtype == np.uint8
    assert real.y_train.dtype == real.y_test.dtype == np.int32
    assert np.bincount(real.y_train).tolist() == [6000] * 10
    assert np.bincount(real.y_test).tolist() == [1000] * 10
    assert real.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert real.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert Path(real.source).is_dir()
    assert len(data.CLASS_NAMES) == 10 and data.CLASS_NAMES[9] == "Ankle boot"
    assert not real.x_train.flags.writeable and not real.y_train.flags.writeable


def test_real_files_found_by_env_and_in_the_cache(fashion_mnist_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("VGJAX_DATA_DIR", str(fashion_mnist_dir))
    assert data.find_data_dir() == fashion_mnist_dir
    monkeypatch.delenv("VGJAX_DATA_DIR")
    cache = cache_dir(tmp_path)
    cache.mkdir(parents=True)
    for name, path in real_files(fashion_mnist_dir).items():
        (cache / path.name).symlink_to(path)
    assert data.find_data_dir(download=False) == cache


@needs_debian
def test_debian_regzipped_copies_accepted(real, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", REAL_DEBIAN)
    debian = data.load(download=False)
    assert debian.source == str(REAL_DEBIAN)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(debian, field), getattr(real, field))


# ----------------------------------------------------------------------------------------------
# Finding, with synthetic files


def test_uncompressed_idx_names_accepted(fake, tmp_path):
    d = data.load(write_files(tmp_path / "raw", fake, compress=False))
    assert d.x_train.shape == (6, 784) and d.y_test.shape == (4,)
    assert d.x_test.tobytes() == fake["test_images"][16:] and d.y_train.dtype == np.int32


@pytest.mark.fast
@pytest.mark.parametrize("compress", [True, False])
def test_loaded_arrays_are_the_files_payloads(fake, tmp_path, compress):
    """Every image row and every label is the file's own, in the file's order."""
    d = data.load(write_files(tmp_path / "d", fake, compress=compress))
    for split, n in (("train", 6), ("test", 4)):
        images = np.frombuffer(fake[f"{split}_images"][16:], np.uint8).reshape(n, 784)
        labels = np.frombuffer(fake[f"{split}_labels"][8:], np.uint8).astype(np.int32)
        np.testing.assert_array_equal(getattr(d, f"x_{split}"), images)
        np.testing.assert_array_equal(getattr(d, f"y_{split}"), labels)


def test_search_order(fake, monkeypatch, tmp_path):
    arg, env, debian, cache = (write_files(p, fake) for p in
                               (tmp_path / "arg", tmp_path / "env", tmp_path / "debian", cache_dir(tmp_path)))
    monkeypatch.setattr(data, "DEBIAN_DIR", debian)
    monkeypatch.setenv("VGJAX_DATA_DIR", str(env))
    assert data.find_data_dir(arg) == arg
    assert data.find_data_dir() == env
    monkeypatch.delenv("VGJAX_DATA_DIR")
    assert data.find_data_dir() == debian
    shutil.rmtree(debian)
    assert data.load().source == str(cache)


@pytest.mark.parametrize("via_env", [False, True])
def test_explicit_dir_is_authoritative(fake, monkeypatch, tmp_path, via_env):
    write_files(cache_dir(tmp_path), fake)  # valid data elsewhere must not be used
    missing = tmp_path / "typo"
    if via_env:
        monkeypatch.setenv("VGJAX_DATA_DIR", str(missing))
    with pytest.raises(data.DataError) as e:
        data.load(None if via_env else missing)
    assert_one_clear_line(str(e.value), str(missing), "does not exist", "VGJAX_DATA_DIR" if via_env
                          else "--data-dir", "Searched only this directory", *FIX_HINTS)
    assert str(cache_dir(tmp_path)) not in str(e.value)


def test_nothing_found_lists_every_place(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load(download=False)
    assert_one_clear_line(str(e.value), str(tmp_path / "no-debian"), str(cache_dir(tmp_path)),
                          "download: not tried", *FIX_HINTS)


def test_missing_file_is_named(fake, tmp_path):
    d = write_files(tmp_path / "d", fake)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError) as e:
        data.load(d)
    assert_one_clear_line(str(e.value), str(d), *FIX_HINTS,
                          "missing t10k-labels-idx1-ubyte.gz (or uncompressed t10k-labels-idx1-ubyte)")


# ----------------------------------------------------------------------------------------------
# Verifying: each damaged file gives a DataError saying what is wrong with which file


def _cut(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _flip_middle(raw: bytes) -> bytes:
    i = len(raw) // 2
    return raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]


def _with_count(raw: bytes, n: int) -> bytes:
    return raw[:4] + n.to_bytes(4, "big") + raw[8:]


def _shifted_labels(payloads: dict[str, bytes]) -> bytes:
    """A valid IDX label file of the right length whose labels differ from the expected ones."""
    return idx_labels((np.frombuffer(payloads["test_labels"][8:], np.uint8) + 1) % 10)


DAMAGE = {  # case: (file key, the stored file made from the fake payloads, expected message part)
    "truncated gzip": ("train_images", lambda p: _cut(gz(p["train_images"])), "corrupt/truncated gzip"),
    "corrupt gzip": ("train_images", lambda p: _flip_middle(gz(p["train_images"])), "corrupt gzip"),
    "not gzip": ("train_labels", lambda p: b"<html>Not Found</html>", "not a gzip file"),
    "empty": ("train_labels", lambda p: b"", "not a gzip file (is empty)"),
    "wrong magic": ("train_images", lambda p: gz(p["train_labels"]),
                    "not an IDX image file (magic number 2049, that of an IDX label file; expected 2051)"),
    "labels magic": ("test_labels", lambda p: gz(p["test_images"]),
                     "not an IDX label file (magic number 2051"),
    "wrong size": ("test_images", lambda p: gz(idx_images(np.zeros((4, 32, 32)))),
                   "images of 32x32 pixels, expected 28x28"),
    "truncated IDX": ("test_images", lambda p: gz(p["test_images"][:-5]),
                      "the header announces 4 images (3136 bytes) but 3131 bytes follow"),
    "wrong count": ("test_labels", lambda p: gz(_with_count(idx_labels(np.zeros(5)), 5)),
                    "holds 5 labels, expected 4"),
    "wrong content": ("test_labels", lambda p: gz(_shifted_labels(p)), "checksum mismatch"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_file_gives_clear_error(fake, tmp_path, case):
    key, make, expected = DAMAGE[case]
    d = write_files(tmp_path / "d", fake)
    (d / data.FILES[key]).write_bytes(make(fake))
    with pytest.raises(data.DataError) as e:
        data.load(d)
    assert_one_clear_line(str(e.value), f"{d / data.FILES[key]}: {expected}", *FIX_HINTS)


def test_damaged_uncompressed_file(fake, tmp_path):
    d = write_files(tmp_path / "d", fake, compress=False)
    (d / "train-labels-idx1-ubyte").write_bytes(fake["train_labels"][:-1])
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte: the header announces 6 labels"):
        data.load(d)


def test_library_prints_nothing(fake, tmp_path, capfd):
    data.load(write_files(tmp_path / "d", fake))
    with pytest.raises(data.DataError):
        data.load(tmp_path / "missing")
    assert capfd.readouterr().out == ""


# ----------------------------------------------------------------------------------------------
# Downloading into the cache, from a localhost mirror


@pytest.fixture
def mirror(monkeypatch):
    """A threaded HTTP server on 127.0.0.1 serving ``state.files`` (name -> bytes).

    Names in ``state.broken`` announce their full length but send only half, then hang up.
    """
    state = types.SimpleNamespace(files={}, broken=set(), requests=[])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.lstrip("/")
            state.requests.append(name)
            if name not in state.files:
                self.send_error(404)
                return
            body = state.files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(_cut(body) if name in state.broken else body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("VGJAX_DATA_URL", f"http://127.0.0.1:{server.server_port}")
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_lands_verified_in_the_cache(fashion_mnist_dir, mirror, tmp_path):
    mirror.files = {name: gz_bytes(path) for name, path in real_files(fashion_mnist_dir).items()}
    d = data.load()
    cache = cache_dir(tmp_path)
    assert d.source == str(cache) and d.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert sorted(p.name for p in cache.iterdir()) == sorted(data.FILES.values())
    assert data.find_data_dir(download=False) == cache


def test_download_fetches_only_what_the_cache_lacks(fake, mirror, tmp_path):
    mirror.files = {data.FILES[k]: gz(p) for k, p in fake.items()}
    cache = write_files(cache_dir(tmp_path), fake)
    (cache / data.FILES["train_labels"]).write_bytes(b"garbage")
    (cache / data.FILES["test_images"]).unlink()
    assert data.load().source == str(cache)
    assert sorted(mirror.requests) == sorted([data.FILES["train_labels"], data.FILES["test_images"]])


@pytest.mark.parametrize("fault", ["corrupt content", "connection cut", "not on the mirror"])
def test_failed_download_leaves_no_file_in_the_cache(fake, mirror, tmp_path, fault):
    mirror.files = {data.FILES[k]: gz(p) for k, p in fake.items()}
    bad = data.FILES["train_images"]
    if fault == "corrupt content":
        mirror.files[bad] = _flip_middle(mirror.files[bad])
    elif fault == "connection cut":
        mirror.broken.add(bad)
    else:
        del mirror.files[bad]
    with pytest.raises(data.DataError) as e:
        data.load()
    expected = {"corrupt content": "corrupt gzip", "connection cut": "download broke off",
                "not on the mirror": "download failed (HTTP 404"}[fault]
    assert_one_clear_line(str(e.value), f"train-images-idx3-ubyte.gz: {expected}",
                          "download from http://127.0.0.1:", *FIX_HINTS)
    left = sorted(p.name for p in cache_dir(tmp_path).iterdir())
    assert left == sorted(n for n in data.FILES.values() if n != bad)  # the good ones, verified; no temp file


def test_unreachable_mirror_is_reported_once(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load()
    message = str(e.value)
    assert_one_clear_line(message, "no network?", str(tmp_path / "no-debian"), str(cache_dir(tmp_path)),
                          *FIX_HINTS)
    assert message.count("no network?") == 1
    assert not any(cache_dir(tmp_path).iterdir())


def test_download_disabled_asks_nothing(fake, mirror):
    mirror.files = {data.FILES[k]: gz(p) for k, p in fake.items()}
    with pytest.raises(data.DataError, match="download: not tried"):
        data.load(download=False)
    assert mirror.requests == []


# ----------------------------------------------------------------------------------------------
# tensorflow-datasets


def regzip(payloads: dict[str, bytes], directory: Path) -> Path:
    """The same IDX data under other gzip bytes, like Debian's copies."""
    directory.mkdir(parents=True)
    for key, payload in payloads.items():
        (directory / data.FILES[key]).write_bytes(gzip.compress(payload, mtime=12345))
    return directory


def test_tfds_refuses_regzipped_copies_before_building(fake, tmp_path):
    d = regzip(fake, tmp_path / "regzipped")
    with pytest.raises(data.DataError) as e:
        data.load(d, source="tfds")
    assert_one_clear_line(str(e.value), "--data-source idx", "--data-dir DIR",
                          f"{d / data.FILES['train_images']}: valid Fashion-MNIST data, "
                          "but not byte for byte the official gzip file")


def test_tfds_search_passes_over_regzipped_copies(fake, monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_DIR", regzip(fake, tmp_path / "debian"))
    built_from = []
    monkeypatch.setattr(data, "load_tfds", lambda manual_dir, *args: built_from.append(manual_dir))
    with pytest.raises(data.DataError, match=r"debian \(Debian package .*\): .*not byte for byte"):
        data.load(source="tfds", download=False)
    assert data.find_data_dir() == data.DEBIAN_DIR  # fine for the IDX source
    write_files(cache_dir(tmp_path), fake)
    data.load(source="tfds", download=False)
    assert built_from == [cache_dir(tmp_path)]


def test_tfds_missing_package_is_a_data_error(fake, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(data.DataError, match=r"pip install 'vgjax\[tfds\]'"):
        data.load_tfds(write_files(tmp_path / "d", fake), tmp_path / "tfds")


def pairs(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The rows (image bytes + label byte) sorted: equal iff the same multiset of pairs."""
    rows = np.ascontiguousarray(np.concatenate([images, labels[:, None].astype(np.uint8)], axis=1))
    return np.sort(rows.view(np.dtype((np.void, rows.shape[1]))).ravel())


@pytest.fixture(scope="module")
def via_tfds(tmp_path_factory, pytestconfig) -> tuple[data.FashionMNIST, str]:
    """Built once per module (~15 s) from the official files into a temporary tfds dir; with its stdout."""
    pytest.importorskip("tensorflow_datasets")
    official = fashion_mnist_dir_or_skip(pytestconfig, for_tfds=True)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        dataset = data.load_tfds(official, tmp_path_factory.mktemp("tfds"))
    return dataset, out.getvalue()


@pytest.mark.tfds
def test_tfds_and_idx_sources_agree(real, via_tfds):
    tf_data, stdout = via_tfds
    assert stdout == ""
    assert tf_data.source.startswith("tfds:")
    assert tf_data.x_train.shape == (60000, 784) and tf_data.x_train.dtype == np.uint8
    assert tf_data.y_train.dtype == np.int32 and tf_data.x_test.shape == (10000, 784)
    assert not np.array_equal(tf_data.y_train, real.y_train)  # tfds' own order, as documented
    for split in ("train", "test"):
        ours = pairs(getattr(real, f"x_{split}"), getattr(real, f"y_{split}"))
        theirs = pairs(getattr(tf_data, f"x_{split}"), getattr(tf_data, f"y_{split}"))
        np.testing.assert_array_equal(ours, theirs)
