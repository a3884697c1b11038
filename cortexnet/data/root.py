"""Where datasets live on disk: the data root and the command that fills it."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

ENV_VAR = "CORTEXNET_DATA"

# cortexnet/data/root.py -> the folder holding the ``cortexnet`` package (a checkout, or site-packages).
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent


def checkout_datasets_dir() -> Path | None:
    """The checkout's ``datasets/`` folder when cortexnet runs from a source checkout, else ``None``.

    A checkout is recognised by a ``datasets/`` folder *and* a ``pyproject.toml`` next to the ``cortexnet``
    package; an installed copy in site-packages has neither, so its data goes to the user cache instead.
    """
    candidate = _PACKAGE_PARENT / "datasets"
    if candidate.is_dir() and (_PACKAGE_PARENT / "pyproject.toml").is_file():
        return candidate
    return None


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder under which every dataset lives, as ``<root>/<dataset name>/...``.

    Resolution order: the explicit ``root`` argument → the ``CORTEXNET_DATA`` environment variable (when set and
    non-empty) → the checkout's ``datasets/`` folder when running from a source checkout → the per-user cache
    (``pooch.os_cache("cortexnet")``, e.g. ``~/.cache/cortexnet`` on Linux).

    Only looks at the file system (two ``stat`` calls); creates nothing. The returned path is absolute and may not
    exist yet.
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}")
        if str(root) == "":
            raise ValueError(
                "root is an empty string; pass a folder path, or None to use the default data root"
            )
        return Path(os.path.abspath(Path(root).expanduser()))
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(os.path.abspath(Path(env).expanduser()))
    checkout = checkout_datasets_dir()
    if checkout is not None:
        return checkout
    import pooch  # lazy: pooch is only needed for this fallback and for downloads

    return Path(os.path.abspath(pooch.os_cache("cortexnet")))


def fetch_command(name: str, root: Path, extra: Sequence[str] = ()) -> str:
    """The exact shell command that downloads dataset ``name`` into ``root`` (quoted for copy-paste)."""
    args = ["python", "-m", "cortexnet.data.download", name, "--root", str(root), *extra]
    return " ".join(shlex.quote(a) for a in args)
