"""Your own data: ``npz:PATH`` names a ``.npz`` file of arrays, loaded like any registered dataset.

Save the arrays with NumPy::

    numpy.savez("mine.npz", train_x=..., train_y=..., test_x=..., test_y=...)   # optional: class_names,
                                                                               # n_classes, train_groups

and pass ``--dataset npz:mine.npz`` to any experiment, or ``load_dataset("npz:mine.npz", val_fraction=...,
n_per_class=..., seed=...)``. ``train_x`` / ``test_x`` are ``(n, T, F)`` (or ``(n, T)``: one input per step) of
any float dtype, labels integer class indices; see :meth:`SourceData.from_arrays` for the checks. A relative
PATH is taken from the current folder (an absolute one is safer: the probe command reloads it by name). The
file is read with ``allow_pickle=False``: it is never unpickled, so it cannot run code.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .remote import file_digest
from .sources import DATASETS, DatasetLoader, no_options
from .splits import SourceData

logger = logging.getLogger(__name__)

NPZ_PREFIX = "npz:"
REQUIRED_KEYS = ("train_x", "train_y", "test_x", "test_y")
OPTIONAL_KEYS = ("class_names", "n_classes", "train_groups")

_SAVE_HINT = "numpy.savez(PATH, train_x=..., train_y=..., test_x=..., test_y=...)"
#: what reading a damaged .npz raises besides OSError/ValueError/EOFError: a truncated archive or a bad CRC-32
#: (BadZipFile), a damaged deflate stream from numpy.savez_compressed (zlib.error), a flipped compression method
#: (NotImplementedError) or "encrypted" flag (RuntimeError)
_DAMAGED = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def npz_path(name: str) -> Path:
    """The file an ``npz:PATH`` name points to (``~`` expanded; relative to the current folder)."""
    if not isinstance(name, str) or not name.startswith(NPZ_PREFIX) or not name[len(NPZ_PREFIX) :].strip():
        raise ValueError(
            f"dataset {name!r}: npz datasets are named npz:PATH, e.g. npz:/data/mine.npz (a file written by "
            f"{_SAVE_HINT})"
        )
    return Path(name[len(NPZ_PREFIX) :]).expanduser()


def load_npz_source(path: str | Path) -> SourceData:
    """Read a ``.npz`` file of ``train_x, train_y, test_x, test_y`` (optional ``class_names``, ``n_classes``,
    ``train_groups``) into a :class:`SourceData` (x float32 ``(n, T, F)``, y int64 ``(n,)``).

    Raises ``DataError`` naming the file for a missing or unreadable file, missing keys, pickled (object) arrays,
    or arrays that fail :meth:`SourceData.from_arrays`'s checks.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        where = "" if path.is_absolute() else f" (from the current folder: {path.absolute()})"
        raise DataError(
            f"npz dataset file {path} {what}{where}; fix the path, or write the file with "
            f"{_SAVE_HINT.replace('PATH', repr(str(path)))}"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except _DAMAGED as exc:
        raise DataError(
            f"cannot read {path} as a .npz archive ({type(exc).__name__}: {exc}); it is damaged or not an .npz "
            f"file: write it again with {_SAVE_HINT}"
        ) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path} holds a single array (a .npy file), not a .npz archive of named arrays; write it with "
            f"{_SAVE_HINT}"
        )
    with archive:
        keys = set(archive.files)
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        if missing:
            raise DataError(
                f"{path} lacks the array(s) {missing} (it has {sorted(keys) or 'none'}); an npz dataset needs "
                f"{list(REQUIRED_KEYS)}, optionally {list(OPTIONAL_KEYS)}: write it with {_SAVE_HINT}"
            )
        extra = sorted(keys - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
        if extra:
            logger.warning(
                "%s: ignoring array(s) %s (known: %s)", path, extra, [*REQUIRED_KEYS, *OPTIONAL_KEYS]
            )
        arrays: dict[str, Any] = {}
        for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS):
            if key not in keys:
                continue
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "pickle" not in str(exc).lower():  # a damaged .npy header, not an object array
                    raise DataError(
                        f"array {key!r} in {path} is corrupt ({exc}); write the file again with {_SAVE_HINT}"
                    ) from exc
                # object arrays need pickle, which is never allowed here
                raise DataError(
                    f"array {key!r} in {path} cannot be read without unpickling ({exc}); save plain numeric "
                    "arrays, and class names as strings: class_names=numpy.array(names, dtype=str)"
                ) from exc
            except _DAMAGED as exc:
                raise DataError(
                    f"array {key!r} in {path} is corrupt or truncated ({type(exc).__name__}: {exc}); write the "
                    f"file again with {_SAVE_HINT}"
                ) from exc
    n_classes = arrays.get("n_classes")
    if n_classes is not None:
        if n_classes.ndim != 0 or not np.issubdtype(n_classes.dtype, np.integer):
            raise DataError(
                f"n_classes in {path} must be one integer (numpy.savez(..., n_classes=10)), got "
                f"{n_classes.dtype} of shape {n_classes.shape}"
            )
        n_classes = int(n_classes)
    names = arrays.get("class_names", ())
    if isinstance(names, np.ndarray) and (names.ndim != 1 or names.dtype.kind not in "US"):
        raise DataError(
            f"class_names in {path} must be a 1-D array of strings (numpy.array(names, dtype=str)), got "
            f"{names.dtype} of shape {names.shape}"
        )
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    digest = file_digest(path)
    try:
        return SourceData.from_arrays(
            arrays["train_x"],
            arrays["train_y"],
            arrays["test_x"],
            arrays["test_y"],
            n_classes=n_classes,
            class_names=names,
            train_groups=arrays.get("train_groups"),
            description=f"arrays from {path.absolute()} (npz, sha256 {digest[:16]}); train/test as saved",
            metadata={"file": str(path.absolute()), "sha256": digest},
        )
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: {exc}") from exc


def npz_loader(name: str) -> DatasetLoader:
    """The :class:`DatasetLoader` of an ``npz:PATH`` name (no I/O until it is loaded; nothing to download)."""
    path = npz_path(name)

    def load(root: Path, download: bool, options: Mapping[str, Any]) -> SourceData:
        if download:
            logger.info("%s: a local file, nothing to download", name)
        return load_npz_source(path)

    return DatasetLoader(
        name=name,
        summary=f"your arrays in {path} (npz)",
        load=load,
        fetch=None,
        parse_options=no_options(name),
    )


DATASETS.add_resolver(NPZ_PREFIX, npz_loader, pattern="npz:PATH")
