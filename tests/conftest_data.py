"""Fixture writers for the data-layer tests: tiny files in the exact on-disk formats, built in ``tmp_path``.

Plain functions (imported by ``tests/test_data*.py``), so that other tests can build the same fixtures.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of a uint8 array: magic 00 00 08 ndim, big-endian uint32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: byte-identical output for identical input, so hashes are stable across runs
    path.write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return path


def write_mnist_like(folder: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    """Write the four MNIST IDX-gz files with random 28x28 images and labels cycling 0..9 into ``folder``.

    Returns ``{"train": (images, labels), "t10k": (images, labels)}``.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx_gz(folder / IDX_FILES[split][0], images)
        write_idx_gz(folder / IDX_FILES[split][1], labels)
        out[split] = (images, labels)
    return out


def remote_source_for(folder: Path, names: list[str], mirrors: tuple[str, ...] = ("http://127.0.0.1:1/",)):
    """A ``RemoteSource`` whose hashes are those of the fixture files in ``folder``."""
    from cortexnet.data.remote import RemoteFile, RemoteSource

    files = tuple(RemoteFile(n, sha256_file(folder / n), (folder / n).stat().st_size) for n in names)
    return RemoteSource(mirrors, files)


def _py2_style_pickle(obj) -> bytes:
    """Protocol-2 pickle naming numpy's module as NumPy 1 / Python 2 writers did (like the real CIFAR files)."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_cifar10_tarball(path: Path, n_per_batch: int = 2, seed: int = 0) -> dict:
    """A ``cifar-10-python.tar.gz`` with 5 training batches and a test batch of ``n_per_batch`` images each."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for k, name in enumerate(names):
            data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
            labels = [int((k * n_per_batch + j) % 10) for j in range(n_per_batch)]
            batches[name] = (data, labels)
            payload = {
                "batch_label": name,
                "labels": labels,
                "data": data,
                "filenames": ["x.png"] * n_per_batch,
            }
            _add_member(tar, f"cifar-10-batches-py/{name}", _py2_style_pickle(payload))
        meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
        _add_member(tar, "cifar-10-batches-py/batches.meta", _py2_style_pickle(meta))
    return batches


def write_cifar100_tarball(path: Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict:
    """A ``cifar-100-python.tar.gz`` whose fine and coarse labels differ (fine = 10 * coarse + 7)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, n in (("train", n_train), ("test", n_test)):
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            coarse = [int(j % 10) for j in range(n)]
            fine = [10 * c + 7 for c in coarse]
            out[name] = (data, fine, coarse)
            payload = {"data": data, "fine_labels": fine, "coarse_labels": coarse, "filenames": ["x"] * n}
            _add_member(tar, f"cifar-100-python/{name}", _py2_style_pickle(payload))
        meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": ["c"] * 20}
        _add_member(tar, "cifar-100-python/meta", _py2_style_pickle(meta))
    return out
