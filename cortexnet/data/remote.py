"""Hashed downloads of fixed files (via pooch) and verification of the local copies."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .root import fetch_command

logger = logging.getLogger(__name__)

_HTTP_TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    """One canonical file: its name, sha256 (hex) and size in bytes (``None``: not checked separately)."""

    name: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class RemoteSource:
    """Where a dataset's files come from: mirrors (base URLs ending in ``/``, tried in order) and the files."""

    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: The canonical files of every downloadable image dataset (values from DATA.md). Tests replace entries with
#: fixture hashes; users never need to touch it.
REMOTE_FILES: dict[str, RemoteSource] = {
    "mnist": RemoteSource(
        _MNIST_MIRRORS,
        (
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9912422,
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28881,
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1648877,
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4542,
            ),
        ),
    ),
    "fashion-mnist": RemoteSource(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        (
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26421880,
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29515,
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4422102,
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5148,
            ),
        ),
    ),
    "cifar10": RemoteSource(
        ("https://www.cs.toronto.edu/~kriz/",),
        (
            RemoteFile(
                "cifar-10-python.tar.gz",
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                170498071,
            ),
        ),
    ),
    "cifar100": RemoteSource(
        ("https://www.cs.toronto.edu/~kriz/",),
        (
            RemoteFile(
                "cifar-100-python.tar.gz",
                "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                169001437,
            ),
        ),
    ),
}

# (path, algorithm) -> ((size, mtime_ns, ctime_ns, inode), hex digest) of files hashed in this process.
# Re-hashing a 170 MB tarball on every load costs about a second; any write to the file changes its ctime
# (which, unlike the mtime, user code cannot set back), so a tampered or truncated file is hashed again.
_DIGESTS: dict[tuple[str, str], tuple[tuple[int, int, int, int], str]] = {}


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def file_digest(path: Path, algorithm: str = "sha256", chunk_bytes: int = 1 << 20) -> str:
    """The hex digest (``hashlib`` algorithm name) of a file, read in 1 MiB chunks, remembered for this
    process while the file's size, mtime, ctime and inode stay the same."""
    key = _stat_key(path)
    seen = _DIGESTS.get((str(path), algorithm))
    if seen is not None and seen[0] == key:
        return seen[1]
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    _DIGESTS[(str(path), algorithm)] = (key, digest.hexdigest())
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file (:func:`file_digest`)."""
    return file_digest(path, "sha256")


def check_file(path: Path, sha256: str, size: int | None = None) -> str | None:
    """Why ``path`` is not the expected file (``None`` when it is): missing, wrong size, or wrong sha256."""
    try:
        actual_size = _stat_key(path)[0]
    except FileNotFoundError:
        return "missing"
    if size is not None and actual_size != size:
        return f"size {actual_size} bytes, expected {size}"
    actual = sha256_of(path)
    if actual != sha256.lower():
        return f"sha256 {actual}, expected {sha256.lower()}"
    return None


def mark_verified(path: Path, sha256: str) -> None:
    """Record that ``path`` was just verified to have ``sha256`` (e.g. by pooch after a download)."""
    _DIGESTS[(str(path), "sha256")] = (_stat_key(path), sha256.lower())


def _progressbar() -> bool:
    # pooch draws a tqdm bar; only worth it when someone watches a terminal
    return sys.stderr.isatty()


def retrieve(url: str, sha256: str | None, dest: Path) -> Path:
    """Download ``url`` to ``dest`` through pooch, hash-checked when ``sha256`` is given.

    pooch streams into a temporary file beside ``dest`` and renames it only after the hash matched, so an
    interrupted or mismatching download never leaves a file at ``dest``. Raises pooch's / requests' exceptions
    (``ValueError`` on a hash mismatch, ``requests.RequestException`` on network and HTTP errors).
    """
    import pooch

    dest.parent.mkdir(parents=True, exist_ok=True)
    downloader = pooch.HTTPDownloader(progressbar=_progressbar(), timeout=_HTTP_TIMEOUT_S)
    known_hash = None if sha256 is None else f"sha256:{sha256.lower()}"
    path = pooch.retrieve(
        url, known_hash=known_hash, fname=dest.name, path=dest.parent, downloader=downloader
    )
    return Path(path)


def describe_failure(url: str, exc: BaseException, hash_name: str = "sha256") -> str:
    """One clause saying why fetching ``url`` failed, in words a user can act on; only a connection failure is
    described as "no network, or the server is unreachable"."""
    import requests

    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        return f"{url}: the download did not match the expected {hash_name} and was deleted ({exc})"
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return f"{url}: HTTP error {status}"
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        detail = " ".join(str(exc).split())[-160:]  # the OS reason ("Connection refused", ...) comes last
        return f"{url}: cannot connect (no network, or the server is unreachable): {detail}"
    return f"{url}: {type(exc).__name__}: {exc}"


def download_files(name: str, root: Path, base_urls: Sequence[str] | None = None) -> list[Path]:
    """Fetch every file of dataset ``name`` into ``<root>/<name>/``, trying each mirror in order.

    Files already present with the right hash are kept without touching the network. Raises ``DataError`` when a
    file cannot be fetched from any mirror (offline, HTTP error, hash mismatch); nothing unverified is left at the
    file's final path.
    """
    import requests

    source = REMOTE_FILES[name]
    mirrors = tuple(base_urls) if base_urls is not None else source.mirrors
    if not mirrors:
        raise ValueError(
            f"base_urls for {name!r} is empty; pass at least one base URL or None for the defaults"
        )
    folder = root / name
    paths = []
    for remote in source.files:
        dest = folder / remote.name
        if dest.exists() and check_file(dest, remote.sha256, remote.size) is None:
            paths.append(dest)
            continue
        failures = []
        for base in mirrors:
            url = base if base.endswith("/") else base + "/"
            url += remote.name
            try:
                logger.info("downloading %s to %s", url, dest)
                retrieve(url, remote.sha256, dest)
            except (ValueError, requests.RequestException, OSError) as exc:
                failures.append(describe_failure(url, exc))
                logger.warning("download failed: %s", failures[-1])
                continue
            mark_verified(dest, remote.sha256)
            paths.append(dest)
            break
        else:
            raise DataError(
                f"download of {name} file {remote.name} failed from every mirror ({'; '.join(failures)}); "
                f"nothing was saved at {dest}. Check the network connection and retry with: "
                f"{fetch_command(name, root)}"
            )
    return paths


def require_files(name: str, root: Path, download: bool) -> dict[str, Path]:
    """The verified local files of dataset ``name`` (file name → path), downloading first only if ``download``.

    Raises ``DataError`` naming the missing or failing paths and the command that fetches them.
    """
    source = REMOTE_FILES[name]
    if download:
        download_files(name, root)
    folder = root / name
    missing, bad = [], []
    for remote in source.files:
        path = folder / remote.name
        reason = check_file(path, remote.sha256, remote.size)
        if reason == "missing":
            missing.append(str(path))
        elif reason is not None:
            bad.append(f"{path} ({reason})")
    problems = []
    if missing:
        problems.append(f"{len(missing)} file(s) not found: {', '.join(missing)}")
    if bad:
        problems.append(
            f"file(s) failed verification: {', '.join(bad)} (corrupt, incomplete or not the canonical file; "
            "delete it)"
        )
    if problems:
        raise DataError(
            f"{name}: {'; '.join(problems)}. Fetch the dataset with: {fetch_command(name, root)} "
            "(or pass download=True / --download)"
        )
    return {remote.name: folder / remote.name for remote in source.files}
