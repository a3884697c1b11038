"""Atomic result files (invariant 7: a result file is complete or absent) and provenance helpers."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, exclusive temporary file beside ``path`` (same file system, so the rename is atomic), created
    with mode 0666 so that the umask decides its permissions like any other file's (``mkstemp`` would
    make it 0600 and every result file private)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - a 32-bit random name collided
            continue


#: False on the ranks of a data-parallel run other than rank 0: every result file is written by rank 0 alone
#: (all ranks compute the same results), so the others' writes are skipped (:func:`disable_writes`).
_WRITES_ENABLED = True


def disable_writes() -> None:
    """Make every atomic write of this process a no-op (the non-zero ranks of a data-parallel run)."""
    global _WRITES_ENABLED
    _WRITES_ENABLED = False


def _atomic_write(path: Path, write) -> None:
    if not _WRITES_ENABLED:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    _atomic_write(Path(path), lambda fh: fh.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN/inf are written as null: JSON has no such values)."""
    atomic_write_bytes(path, (json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n").encode())


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Atomically (re)write a JSON-lines file, one record per line."""
    text = "".join(json.dumps(_finite(r)) + "\n" for r in records)
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` through a temporary file and an atomic rename (a killed run never leaves half a file)."""
    import torch

    _atomic_write(Path(path), lambda fh: torch.save(obj, fh))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of a JSON-lines file."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def git_revision(path: str | os.PathLike | None = None) -> str | None:
    """The git commit of the source tree cortexnet runs from (suffixed ``-dirty`` with local changes), or
    None when it is not a git checkout."""
    where = Path(path) if path else Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")
