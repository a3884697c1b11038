"""Derived-array caches: atomic ``.npz`` writes, source fingerprints, and a JSON manifest beside them."""

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


def load_npz(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` from a cache file written by ``save_npz``; ``None`` if absent or unreadable."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError) as exc:
        logger.warning("ignoring unreadable cache file %s (%s); it will be rebuilt", path, exc)
        return None
    return meta, arrays


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True)

    _atomic_replace(path, write, ".json")


def read_json(path: Path) -> Any | None:
    """The JSON content of ``path``, or ``None`` when absent or unreadable (logged)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable JSON file %s (%s)", path, exc)
        return None


def manifest_entries(path: Path) -> dict[str, Any]:
    """The entries (cache file name → metadata) of the manifest at ``path``; ``{}`` when absent or unreadable."""
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("entries"), dict):
        return {}
    return dict(manifest["entries"])


def update_manifest(path: Path, entries: Mapping[str, Any], remove: Sequence[str] = ()) -> None:
    """Merge ``entries`` (cache file name → metadata) into the manifest at ``path`` (created if needed) and drop
    the entries named in ``remove``."""
    current = manifest_entries(path)
    current.update(entries)
    for name in remove:
        current.pop(name, None)
    write_json(path, {"entries": current})
