"""Derived-array caches: atomic ``.npz`` writes, source fingerprints, and a JSON manifest beside them.

A cache is disposable: whatever is wrong with an entry (truncated, bytes flipped, not an ``.npz`` at all, no
``meta``, ``meta`` that is not a JSON object, arrays that disagree with ``meta``) makes it *absent*. The loaders
then rebuild it from the source files after a warning naming the file; no low-level exception ever reaches the
user, and no damaged entry is served or left to fail every later load.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def fingerprint(path: Path) -> dict[str, Any]:
    """Name, size, modification and status-change times and inode of a source file: a cache built from it is
    stale when any of them changes.

    Size and mtime alone miss a same-size replacement whose mtime was preserved (``cp -p``, ``rsync -a``,
    ``os.utime``); the ctime is set by the kernel on every write or metadata change and cannot be set back
    by user code, and a replacement by rename brings a new inode. Moving or copying the data root therefore
    rebuilds the caches once, which is the price of never trusting a replaced file.
    """
    st = os.stat(path)
    return {
        "name": path.name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
    }


def _atomic_replace(path: Path, write: Any, suffix: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name beside the target (same file system, so the rename is atomic); created with open(),
    # unlike mkstemp's 0600, so the umask decides who may read a shared data root
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"))
    try:
        write(tmp)
        os.replace(tmp, path)  # a reader sees the old file or the complete new one, never half of one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_npz(path: Path, meta: Mapping[str, Any], **arrays: np.ndarray) -> None:
    """Write ``arrays`` plus the JSON-serialisable ``meta`` to ``path`` atomically (temporary file + rename)."""

    def write(tmp: str) -> None:
        with open(tmp, "xb") as fh:
            np.savez(fh, meta=np.array(json.dumps(dict(meta), sort_keys=True)), **arrays)

    _atomic_replace(path, write, ".npz")


def warn_rebuild(path: Path, reason: str) -> None:
    """Log that cache file ``path`` cannot be used (``reason``) and will be rebuilt from its sources."""
    logger.warning("cache file %s is unusable (%s); it will be rebuilt from its source files", path, reason)


def _decode_meta(value: np.ndarray) -> dict[str, Any]:
    if value.ndim != 0 or value.dtype.kind != "U":
        raise ValueError(f"its 'meta' is a {value.dtype} array of shape {value.shape}, not a JSON string")
    meta = json.loads(str(value))
    if not isinstance(meta, dict):
        raise ValueError(f"its 'meta' is a JSON {type(meta).__name__}, not an object")
    return meta


def _open_npz(path: Path) -> Any:
    npz = np.load(path, allow_pickle=False)
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError("it holds a single array, not an .npz archive")
    return npz


def load_npz(path: Path, required: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` from a cache file written by ``save_npz``; ``None`` if absent or unusable.

    Unusable (logged as a warning naming the file, which the caller then rebuilds): not readable as an
    ``.npz`` archive (truncated, bytes flipped: every member's CRC-32 is checked as it is read, garbage, a
    folder), no ``meta`` array or one that is not a JSON object, or any of the ``required`` arrays missing.
    Whether the arrays agree with ``meta`` and with what the loader expects is the caller's check (then
    :func:`warn_rebuild`).
    """
    if not path.exists():
        return None
    try:
        with _open_npz(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if "meta" not in arrays:
            raise ValueError(f"no 'meta' array (it holds {sorted(arrays) or 'nothing'})")
        meta = _decode_meta(arrays.pop("meta"))
        missing = [k for k in required if k not in arrays]
        if missing:
            raise ValueError(f"no array(s) {missing} (it holds {sorted(arrays)})")
    # Any failure means the entry is unusable, and the kinds are many: zipfile.BadZipFile (truncated, bad
    # CRC-32), NotImplementedError (a flipped compression method), RuntimeError (a flipped "encrypted" flag),
    # EOFError, OSError, ValueError (npy header, pickled data refused), MemoryError (a flipped shape) ...
    except Exception as exc:
        warn_rebuild(path, f"{type(exc).__name__}: {exc}")
        return None
    return meta, arrays


def read_npz_meta(path: Path) -> dict[str, Any] | None:
    """Only the ``meta`` of a cache file written by ``save_npz`` (its arrays are not read); ``None`` when the
    file is absent or its ``meta`` is unreadable (not logged: the caller decides)."""
    try:
        with _open_npz(path) as npz:
            return _decode_meta(npz["meta"])
    except Exception:  # as in load_npz: any failure means the entry is unusable
        return None


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True)

    _atomic_replace(path, write, ".json")


def read_json_checked(path: Path) -> tuple[Any, str | None]:
    """``(content, None)`` for a readable JSON file; ``(None, None)`` when ``path`` is absent; ``(None, why)``
    when it exists but cannot be read or parsed (truncated, not UTF-8, not JSON, a folder). Not logged."""
    if not path.exists():
        return None, None
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError covers JSON and UTF-8 decoding errors
        return None, f"{type(exc).__name__}: {exc}"


def read_json(path: Path) -> Any | None:
    """The JSON content of ``path``, or ``None`` when absent or unreadable (logged)."""
    content, problem = read_json_checked(path)
    if problem is not None:
        logger.warning("ignoring unreadable JSON file %s (%s)", path, problem)
    return content


def read_manifest(path: Path) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
    """The entries (cache file name → metadata object) of the manifest at ``path``.

    ``(entries, None)`` when it is well formed; ``(None, None)`` when absent; ``(None, why)`` when damaged:
    unreadable, not JSON, no ``entries`` object, or an entry that is not an object. Not logged: a damaged
    manifest means the caches it governed must be re-validated, which only the caller can do.
    """
    content, problem = read_json_checked(path)
    if problem is not None:
        return None, problem
    if content is None:
        return None, None
    if not isinstance(content, dict) or not isinstance(content.get("entries"), dict):
        return None, "no 'entries' object"
    bad = [name for name, entry in content["entries"].items() if not isinstance(entry, dict)]
    if bad:
        return None, f"entry {bad[0]!r} is not an object"
    return dict(content["entries"]), None


def manifest_entries(path: Path) -> dict[str, Any]:
    """The entries (cache file name → metadata) of the manifest at ``path``; ``{}`` when absent or damaged."""
    entries, _ = read_manifest(path)
    return entries or {}


def update_manifest(path: Path, entries: Mapping[str, Any], remove: Sequence[str] = ()) -> None:
    """Merge ``entries`` (cache file name → metadata) into the manifest at ``path`` (created if needed) and drop
    the entries named in ``remove``. A damaged manifest is replaced by ``entries``."""
    current = manifest_entries(path)
    current.update(entries)
    for name in remove:
        current.pop(name, None)
    write_json(path, {"entries": current})
