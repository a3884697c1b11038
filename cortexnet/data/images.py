"""Image datasets as row sequences: scikit-learn digits (embedded), MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100."""

from __future__ import annotations

import gzip
import io
import logging
import pickle
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .encoding import images_to_row_sequences
from .errors import DataError
from .remote import download_files, require_files
from .sources import DATASETS, DatasetLoader, no_options
from .splits import SourceData, stratified_take

logger = logging.getLogger(__name__)

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------- digits
def load_digits_source() -> SourceData:
    """scikit-learn's embedded digits (1,797 real 8 × 8 images, 10 classes) with a fixed stratified test split.

    The test split (20 %, stratified, seed 0) does not depend on any user seed, so every run on digits is scored
    on the same 359 images. Sequences: 8 steps × 8 inputs, value/16 in [0, 1].
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images)  # (1797, 8, 8) float64 in 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_take(
        labels, DIGITS_TEST_FRACTION, np.random.default_rng(DIGITS_SPLIT_SEED)
    )
    x = images_to_row_sequences(images, max_value=16.0)
    import torch

    return SourceData(
        train_x=x[torch.from_numpy(train_idx)],
        train_y=labels[train_idx],
        test_x=x[torch.from_numpy(test_idx)],
        test_y=labels[test_idx],
        n_classes=10,
        class_names=MNIST_CLASSES,
        description=(
            f"scikit-learn digits (embedded, {len(labels)} images, 8 steps x 8 inputs, value/16); fixed "
            f"stratified train/test split, test {DIGITS_TEST_FRACTION:.0%} (seed {DIGITS_SPLIT_SEED}, independent "
            f"of the run seed)"
        ),
    )


# ------------------------------------------------------------------------------------------------------ IDX
def read_idx_gz(path: Path, *, expected_ndim: int) -> np.ndarray:
    """Read a gzip-compressed IDX file (the MNIST format) into a uint8 array.

    Format: magic ``00 00 08 ndim`` (``08`` = unsigned byte), ``ndim`` big-endian uint32 sizes, then the data in
    C order. Images come back as ``(N, rows, cols)``, labels as ``(N,)``. A file that is not gzip, is truncated,
    has another magic or rank, or whose length disagrees with its header raises ``DataError`` naming the file.
    """
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot decompress IDX file {path}: {exc}; the file is corrupt or truncated"
        ) from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(
            f"{path} is not an unsigned-byte IDX file: magic {raw[:4].hex() or '(empty)'}, expected 000008xx"
        )
    ndim = raw[3]
    if ndim != expected_ndim:
        raise DataError(f"IDX file {path} has {ndim} dimensions, expected {expected_ndim}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"IDX file {path} ends inside its header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header_len != expected:
        raise DataError(
            f"IDX file {path} holds {len(raw) - header_len} data bytes but its header {dims} says {expected}; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _read_idx_split(folder: Path, prefix: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = read_idx_gz(images_path, expected_ndim=3)
    labels = read_idx_gz(labels_path, expected_ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path} holds images of {images.shape[1:]} pixels, expected (28, 28)")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() >= n_classes:
        raise DataError(f"{labels_path} contains label {labels.max()}, expected 0..{n_classes - 1}")
    return images, labels.astype(np.int64)


def _idx_loader(name: str, title: str, class_names: tuple[str, ...]) -> DatasetLoader:
    def load(root: Path, download: bool, options: Mapping[str, Any]) -> SourceData:
        require_files(name, root, download)  # verifies every file's sha256 first
        folder = root / name
        train_images, train_labels = _read_idx_split(folder, "train", len(class_names))
        test_images, test_labels = _read_idx_split(folder, "t10k", len(class_names))
        return SourceData(
            train_x=images_to_row_sequences(train_images),
            train_y=train_labels,
            test_x=images_to_row_sequences(test_images),
            test_y=test_labels,
            n_classes=len(class_names),
            class_names=class_names,
            description=(
                f"{title} from the canonical IDX files in {folder} (sha256-verified; 28 steps x 28 inputs, "
                f"pixel/255); the official train/test split"
            ),
        )

    def fetch(root: Path, base_urls: Sequence[str] | None, options: Mapping[str, Any]) -> list[Path]:
        return download_files(name, root, base_urls)

    return DatasetLoader(
        name=name,
        summary=f"{title}: 28 steps x 28 inputs in [0, 1], 10 classes (download)",
        load=load,
        fetch=fetch,
        parse_options=no_options(name),
    )


# ---------------------------------------------------------------------------------------------------- CIFAR
# Only what a CIFAR batch pickle needs: numpy arrays (NumPy 1 and 2 module names) and the codec that Python 3
# writers use for bytes. Anything else (os.system, ...) is refused even after the tarball's hash has matched.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a CIFAR batch")
        if module == "numpy.core.multiarray" and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            module = "numpy._core.multiarray"  # NumPy 2 moved it; the old name only warns
        return super().find_class(module, name)


def _unpickle_batch(data: bytes, member: str, tarball: Path) -> dict[str, Any]:
    try:
        obj = _BatchUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # any failure inside a pickle means the member is unusable
        raise DataError(f"cannot unpickle member {member} of {tarball}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"member {member} of {tarball} holds a {type(obj).__name__}, expected a dict")
    return obj


def read_cifar_tarball(
    tarball: Path,
    members: Sequence[str],
    label_key: str,
    n_classes: int,
    meta: tuple[str, str] | None = None,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[str, ...]]:
    """Read CIFAR batches straight from a ``.tar.gz`` (no extraction), in one sequential pass.

    The caller must have verified the tarball's sha256 first (pickles can execute code; a restricted unpickler
    adds a second line of defence). Returns, per member in order, images ``(N, 3, 32, 32)`` uint8 (channel-first:
    the flat 3072 values are 1024 R, 1024 G, 1024 B, row-major) and labels ``(N,)`` int64 taken from
    ``label_key`` (``labels`` for CIFAR-10, ``fine_labels`` for CIFAR-100); and the class names read from the
    optional ``meta = (member, key)`` (class indices as strings when absent).
    """
    wanted = set(members) | ({meta[0]} if meta else set())
    raw: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            # one sequential pass: seeking back in a gzip stream would decompress it from the start again
            for info in tar:
                if info.name in wanted and info.isfile():
                    fh = tar.extractfile(info)
                    if fh is not None:
                        raw[info.name] = fh.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read tarball {tarball}: {exc}; the file is corrupt or truncated") from exc
    missing = [m for m in members if m not in raw]
    if missing:
        raise DataError(
            f"tarball {tarball} lacks member(s) {', '.join(missing)}; it is not the expected archive"
        )
    out = []
    for member in members:
        batch = _unpickle_batch(raw.pop(member), member, tarball)
        try:
            data = np.asarray(batch["data"], dtype=np.uint8)
            labels = np.asarray(batch[label_key], dtype=np.int64)
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"member {member} of {tarball} lacks usable 'data'/{label_key!r}: {exc}") from exc
        if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != len(data):
            raise DataError(
                f"member {member} of {tarball}: data {data.shape} and labels {labels.shape}, expected (N, 3072) "
                "and (N,)"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise DataError(f"member {member} of {tarball}: labels outside 0..{n_classes - 1}")
        out.append((data.reshape(-1, 3, 32, 32), labels))
    names: tuple[str, ...] = tuple(str(i) for i in range(n_classes))
    if meta and meta[0] in raw:
        found = _unpickle_batch(raw[meta[0]], meta[0], tarball).get(meta[1])
        if isinstance(found, list) and len(found) == n_classes:
            names = tuple(str(n) for n in found)
    return out, names


def _cifar_loader(
    name: str,
    title: str,
    tarball_name: str,
    train: Sequence[str],
    test: str,
    label_key: str,
    n_classes: int,
    meta: tuple[str, str],
) -> DatasetLoader:
    def load(root: Path, download: bool, options: Mapping[str, Any]) -> SourceData:
        # require_files verifies the sha256 *before* anything in the tarball is unpickled
        tarball = require_files(name, root, download)[tarball_name]
        batches, class_names = read_cifar_tarball(tarball, [*train, test], label_key, n_classes, meta)
        train_images = np.concatenate([b[0] for b in batches[:-1]])
        train_labels = np.concatenate([b[1] for b in batches[:-1]])
        test_images, test_labels = batches[-1]
        return SourceData(
            train_x=images_to_row_sequences(train_images, scaling="symmetric"),
            train_y=train_labels,
            test_x=images_to_row_sequences(test_images, scaling="symmetric"),
            test_y=test_labels,
            n_classes=n_classes,
            class_names=class_names,
            description=(
                f"{title} from {tarball} (sha256-verified; 32 steps x 96 inputs, per step the R, G, B rows, "
                f"(v/255-0.5)/0.5 in [-1, 1]; labels {label_key!r}); the official train/test split"
            ),
        )

    def fetch(root: Path, base_urls: Sequence[str] | None, options: Mapping[str, Any]) -> list[Path]:
        return download_files(name, root, base_urls)

    return DatasetLoader(
        name=name,
        summary=f"{title}: 32 steps x 96 inputs (R,G,B rows) in [-1, 1], {n_classes} classes (download)",
        load=load,
        fetch=fetch,
        parse_options=no_options(name),
    )


def _digits_load(root: Path, download: bool, options: Mapping[str, Any]) -> SourceData:
    return load_digits_source()


DATASETS.register("digits")(
    DatasetLoader(
        name="digits",
        summary="scikit-learn digits (embedded, no download): 8 steps x 8 inputs in [0, 1], 10 classes",
        load=_digits_load,
        fetch=None,
        parse_options=no_options("digits"),
    )
)
DATASETS.register("mnist")(_idx_loader("mnist", "MNIST", MNIST_CLASSES))
DATASETS.register("fashion-mnist")(_idx_loader("fashion-mnist", "Fashion-MNIST", FASHION_MNIST_CLASSES))
DATASETS.register("cifar10")(
    _cifar_loader(
        "cifar10",
        "CIFAR-10",
        "cifar-10-python.tar.gz",
        [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)],
        "cifar-10-batches-py/test_batch",
        "labels",
        10,
        ("cifar-10-batches-py/batches.meta", "label_names"),
    )
)
DATASETS.register("cifar100")(
    _cifar_loader(
        "cifar100",
        "CIFAR-100",
        "cifar-100-python.tar.gz",
        ["cifar-100-python/train"],
        "cifar-100-python/test",
        "fine_labels",
        100,
        ("cifar-100-python/meta", "fine_label_names"),
    )
)
