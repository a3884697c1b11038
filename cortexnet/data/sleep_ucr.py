"""The UEA/UCR archive's univariate "Sleep" dataset (``sleep-ucr``): what the seed paper's code actually used.

178 steps × 1 input per sample, 5 classes, parsed straight from the archive's ``.ts`` files. Not to be confused
with raw PhysioNet Sleep-EDF (``sleep-edf``), a different and much longer workload.
"""

from __future__ import annotations

import io
import logging
import numbers
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache import fingerprint, load_npz, read_json_checked, save_npz, warn_rebuild, write_json
from .errors import DataError
from .remote import check_file, describe_failure, mark_verified, retrieve, sha256_of
from .root import fetch_command
from .sources import DATASETS, DatasetLoader
from .splits import SourceData

logger = logging.getLogger(__name__)

NAME = "sleep-ucr"
ARCHIVE_MIRRORS: tuple[str, ...] = ("https://www.timeseriesclassification.com/aeon-toolkit/",)
ARCHIVE_NAME = "Sleep.zip"
#: sha256 of Sleep.zip. Not pinned yet: no verified copy was at hand when this loader was written (no network).
#: Until it is, a download is verified by its content instead (series length, dimensions, classes, count); the
#: hash of every download is logged and recorded in ``manifest.json`` so that it can be pinned here.
ARCHIVE_SHA256: str | None = None
TRAIN_FILE = "Sleep_TRAIN.ts"
TEST_FILE = "Sleep_TEST.ts"
SERIES_LENGTH = 178
N_CLASSES = 5
#: byte size of Sleep.zip, checked before extraction when known (not pinned yet, like its hash)
ARCHIVE_BYTES: int | None = None
#: train + test series in the archive: the paper's 398,370 training + 170,730 test samples after its 70/30 split.
#: Checked at download, and on every load of files that have no usable download manifest (copied in by hand, or
#: the manifest is missing or damaged): without the manifest's hashes a file truncated at a line boundary still
#: parses, and only the count can tell.
EXPECTED_TOTAL = 569_100
#: series in Sleep_TRAIN.ts / Sleep_TEST.ts, checked (at download and on load) when known. Not pinned: DATA.md
#: gives only the total above; pin them from a verified copy (its manifest.json records ``n_series``).
EXPECTED_TRAIN: int | None = None
EXPECTED_TEST: int | None = None
MANIFEST_NAME = "manifest.json"
_CACHE_FORMAT = 2  # 2: meta records n_series and the shape of x, checked on every cache hit
_CHUNK_LINES = 20_000


@dataclass(frozen=True)
class TsData:
    """A parsed ``.ts`` file: ``x`` float32 ``(n, T, D)`` (D dimensions per step), string labels ``(n,)``, the
    declared class labels (``None`` when the header declares none) and the header (lower-case keys)."""

    x: np.ndarray
    labels: np.ndarray
    class_labels: tuple[str, ...] | None
    header: dict[str, str]


def read_ts(path: Path) -> TsData:
    """Parse a UCR/UEA ``.ts`` file (equal-length series, no time stamps).

    Format: ``@key value`` header lines up to ``@data``, ``#`` comments, then one series per line: the values of
    each dimension comma-separated, dimensions separated by ``:``, the class label after the last ``:``; ``?`` is a
    missing value (NaN). Raises ``DataError`` naming the file and line for anything malformed.
    """
    header: dict[str, str] = {}
    in_data = False
    bodies: list[str] = []
    labels: list[str] = []
    chunks: list[np.ndarray] = []
    n_dims: int | None = None
    first_data_line = 0

    def flush() -> None:
        if not bodies:
            return
        text = "\n".join(bodies).replace("?", "nan")
        try:
            chunks.append(np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float32, ndmin=2))
        except ValueError as exc:
            raise DataError(
                f"{path}: unreadable series near data line {first_data_line + sum(len(c) for c in chunks)}: "
                f"{exc}; the file is corrupt or its series differ in length"
            ) from exc
        bodies.clear()

    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, raw_line in enumerate(fh, 1):
                line = raw_line.strip()
                if not line or line.startswith("#"):
                    continue
                if not in_data:
                    if not line.startswith("@"):
                        raise DataError(f"{path}: line {lineno}: expected '@' header lines up to '@data'")
                    key, _, value = line[1:].partition(" ")
                    if key.lower() == "data":
                        in_data, first_data_line = True, lineno + 1
                    else:
                        header[key.lower()] = value.strip()
                    continue
                body, sep, label = line.rpartition(":")
                if not sep or not label.strip():
                    raise DataError(f"{path}: line {lineno}: no class label after a ':'")
                dims = body.count(":") + 1
                if n_dims is None:
                    n_dims = dims
                elif dims != n_dims:
                    raise DataError(f"{path}: line {lineno}: {dims} dimensions, earlier lines have {n_dims}")
                bodies.append(body.replace(":", ","))
                labels.append(label.strip())
                if len(bodies) >= _CHUNK_LINES:
                    flush()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text .ts file: {exc}") from exc
    flush()
    if header.get("timestamps", "false").lower() == "true":
        raise DataError(f"{path}: series with time stamps are not supported")
    if not in_data or not labels:
        raise DataError(f"{path}: no '@data' section with series; the file is truncated or not a .ts file")
    widths = {c.shape[1] for c in chunks}
    if len(widths) != 1:
        raise DataError(f"{path}: series differ in length ({sorted(widths)} values per line)")
    flat = np.concatenate(chunks)
    assert n_dims is not None
    if flat.shape[1] % n_dims:
        raise DataError(
            f"{path}: {flat.shape[1]} values per line do not split into {n_dims} equal dimensions"
        )
    x = flat.reshape(len(flat), n_dims, -1).transpose(0, 2, 1)  # (n, D, T) -> (n, T, D)
    declared = header.get("classlabel", "").split()
    class_labels = tuple(declared[1:]) if declared and declared[0].lower() == "true" else None
    return TsData(np.ascontiguousarray(x), np.asarray(labels), class_labels, header)


def _check_sleep(ts: TsData, path: Path, expected_total: int | None = None) -> None:
    """Raise ``DataError`` unless ``ts`` looks like the UCR Sleep data: 178 steps, 1 dimension, 5 classes."""
    _, t, d = ts.x.shape
    classes = ts.class_labels if ts.class_labels is not None else tuple(np.unique(ts.labels))
    if (t, d) != (SERIES_LENGTH, 1) or len(classes) != N_CLASSES:
        raise DataError(
            f"{path} is not the UCR 'Sleep' data: series of {t} steps x {d} dimension(s) with {len(classes)} "
            f"classes, expected {SERIES_LENGTH} x 1 with {N_CLASSES}"
        )
    unknown = sorted(set(ts.labels.tolist()) - set(classes))
    if unknown:
        raise DataError(f"{path}: labels {unknown[:5]} are not among the declared classes {list(classes)}")
    if expected_total is not None and len(ts.labels) != expected_total:
        raise DataError(f"{path}: {len(ts.labels)} series, expected {expected_total}")


def _cache_problem(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str | None:
    """Why a current (same format and source) cache entry of a ``.ts`` file cannot be what ``read_ts`` returned:
    ``x`` float32 ``(n, T, D)``, ``labels`` strings ``(n,)``, ``n`` and the shape as recorded in ``meta``, the
    declared classes ``None`` or a list of strings. ``None`` when it is consistent."""
    x, labels = arrays["x"], arrays["labels"]
    if x.dtype != np.float32 or x.ndim != 3:
        return f"x is {x.dtype} of shape {x.shape}, expected float32 (n, T, D)"
    if labels.dtype.kind != "U" or labels.ndim != 1:
        return f"labels are {labels.dtype} of shape {labels.shape}, expected strings (n,)"
    n = meta.get("n_series")
    if type(n) is not int or not (n == len(x) == len(labels)) or n == 0:
        return f"{len(x)} series and {len(labels)} labels, its meta says {n!r}"
    if meta.get("shape") != list(x.shape):
        return f"x has shape {list(x.shape)}, its meta says {meta.get('shape')!r}"
    declared = meta.get("class_labels")
    if declared is not None and (
        not isinstance(declared, list) or not declared or not all(isinstance(c, str) for c in declared)
    ):
        return f"its declared classes {declared!r} are not a list of labels"
    return None


def _read_cached(path: Path, cache_dir: Path) -> TsData:
    """``read_ts`` with an ``.npz`` cache keyed by the file's ``fingerprint`` (size, mtime, ctime, inode): parsing
    500 MB of text is slow. A cache entry that cannot be read or disagrees with its own meta is rebuilt (with a
    warning naming it), never served."""
    cache_path = cache_dir / f"{path.stem}.npz"
    source = fingerprint(path)
    cached = load_npz(cache_path, required=("x", "labels"))
    if cached is not None:
        meta, arrays = cached
        if meta.get("format") == _CACHE_FORMAT and meta.get("source") == source:
            problem = _cache_problem(meta, arrays)
            if problem is None:
                declared = meta.get("class_labels")
                return TsData(
                    arrays["x"], arrays["labels"], None if declared is None else tuple(declared), {}
                )
            warn_rebuild(cache_path, problem)
    ts = read_ts(path)
    meta = {
        "format": _CACHE_FORMAT,
        "source": source,
        "class_labels": None if ts.class_labels is None else list(ts.class_labels),
        "n_series": len(ts.labels),
        "shape": list(ts.x.shape),
    }
    try:
        save_npz(cache_path, meta, x=ts.x, labels=ts.labels.astype(str))
    except OSError as exc:  # a read-only data root still loads, only slower
        logger.warning(
            "cannot write cache %s (%s); the .ts file will be parsed again next time", cache_path, exc
        )
    return ts


def parse_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``sleep-ucr`` options (no I/O).

    - ``split``: ``"paper"`` (default) pools the archive's train and test series and re-splits them with
      ``sklearn.model_selection.train_test_split(test_size=test_fraction, random_state=split_seed)`` —
      unstratified, as the authors' code is understood to have done; ``"archive"`` keeps the archive's own split.
    - ``test_fraction``: in (0, 1), default 0.3 (``"paper"`` only).
    - ``split_seed``: non-negative int, default 123 (``"paper"`` only).
    """
    opts = dict(options or {})
    allowed = {"split", "test_fraction", "split_seed"}
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"unknown {NAME} option(s) {unknown}; allowed: {sorted(allowed)}")
    split = opts.get("split", "paper")
    if split not in ("paper", "archive"):
        raise ValueError(f"{NAME} option split must be 'paper' or 'archive', got {split!r}")
    if split == "archive" and ({"test_fraction", "split_seed"} & set(opts)):
        raise ValueError("test_fraction and split_seed apply to split='paper' only; drop them or use 'paper'")
    fraction = opts.get("test_fraction", 0.3)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
        raise ValueError(f"{NAME} option test_fraction must lie in (0, 1), got {fraction!r}")
    seed = opts.get("split_seed", 123)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{NAME} option split_seed must be a non-negative integer, got {seed!r}")
    return {"split": split, "test_fraction": float(fraction), "split_seed": int(seed)}


def _expected_counts() -> dict[str, int | None]:
    return {TRAIN_FILE: EXPECTED_TRAIN, TEST_FILE: EXPECTED_TEST}


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _manifest_schema_problem(content: Any) -> str | None:
    """Why ``content`` (parsed ``manifest.json``) is not a download manifest as ``fetch`` writes it: ``files``
    with an entry per ``.ts`` file holding its ``sha256`` (64 hex digits), ``size`` and ``n_series`` (integers).
    """
    if not isinstance(content, dict) or not isinstance(content.get("files"), dict):
        return "no 'files' object"
    for fname in (TRAIN_FILE, TEST_FILE):
        entry = content["files"].get(fname)
        if not isinstance(entry, dict):
            return f"no entry for {fname}"
        sha = entry.get("sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            return f"{fname}: sha256 {sha!r} is not 64 hex digits"
        for key, least in (("size", 0), ("n_series", 1)):
            value = entry.get(key)
            if type(value) is not int or value < least:
                return f"{fname}: {key} {value!r} is not an integer >= {least}"
    return None


def _read_manifest(folder: Path) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
    """The ``files`` entries of ``<folder>/manifest.json``: ``(files, None)`` when it is well formed, ``(None,
    None)`` when there is none, ``(None, why)`` when it is damaged (logged as a warning: it is then ignored and
    the content checked in full, exactly as without a manifest; it never turns the checks off)."""
    path = folder / MANIFEST_NAME
    content, problem = read_json_checked(path)
    if problem is None and content is not None:
        problem = _manifest_schema_problem(content)
    if problem is not None:
        logger.warning(
            "download manifest %s is damaged (%s); ignoring it and checking the .ts content in full instead "
            "(series count, length, classes); fetch again with %s to restore it",
            path, problem, fetch_command(NAME, folder.parent),
        )  # fmt: skip
        return None, problem
    if content is None:
        logger.info("%s has no download manifest; checking the .ts content in full", folder)
        return None, None
    return content["files"], None


def _manifest_problems(folder: Path, files: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """File name → why it fails its entry in the manifest's ``files`` (missing, size, sha256); ``{}`` when all
    pass."""
    problems = {}
    for fname in (TRAIN_FILE, TEST_FILE):
        entry = files[fname]
        reason = check_file(folder / fname, entry["sha256"], entry["size"])
        if reason is not None:
            problems[fname] = reason
    return problems


def _refetch_hint(root: Path, what: str = "it") -> str:
    return (
        f"delete {what} and fetch again with: {fetch_command(NAME, root)} (or pass download=True / --download, "
        f"which replaces {what})"
    )


def _verified_content(
    folder: Path, files: Mapping[str, Mapping[str, Any]] | None, damage: str | None
) -> dict[str, TsData]:
    """Parse (through the cache) and check both ``.ts`` files: 178 steps x 1 dimension, 5 classes, the pinned
    per-file counts; and, without a usable manifest (``files`` is ``None``; ``damage`` says why when it exists but
    is damaged), the archive's total count. Raises a one-line ``DataError`` naming the file, what was found and
    the fix."""
    root = folder.parent
    parsed = {}
    for fname in (TRAIN_FILE, TEST_FILE):
        path = folder / fname
        try:
            parsed[fname] = ts = _read_cached(path, folder / "cache")
            _check_sleep(ts, path, _expected_counts()[fname])
        except DataError as exc:
            raise DataError(f"{exc}; {_refetch_hint(root)}") from exc
    counts = {fname: len(ts.labels) for fname, ts in parsed.items()}
    if files is not None:
        recorded = {fname: files[fname]["n_series"] for fname in parsed}
        if recorded != counts:  # the hashes matched, so it is the manifest that is wrong
            damage = f"it records {recorded} series, the files it hashes hold {counts}"
            logger.warning(
                "download manifest %s is damaged (%s); checking the .ts content in full instead",
                folder / MANIFEST_NAME, damage,
            )  # fmt: skip
            files = None
    if files is None and sum(counts.values()) != EXPECTED_TOTAL:
        why = (
            f"there is no download manifest {folder / MANIFEST_NAME}"
            if damage is None
            else f"the download manifest {folder / MANIFEST_NAME} is damaged ({damage})"
        )
        raise DataError(
            f"{folder / TRAIN_FILE} and {folder / TEST_FILE} hold {counts[TRAIN_FILE]} + {counts[TEST_FILE]} = "
            f"{sum(counts.values())} series, expected {EXPECTED_TOTAL} in all (the UCR 'Sleep' archive): a file "
            f"is truncated or not the archive's ({why}, so only the content can be checked); "
            f"{_refetch_hint(root, 'them')}"
        )
    return parsed


def load(root: Path, download: bool, options: Mapping[str, Any]) -> SourceData:
    """Load ``<root>/sleep-ucr/Sleep_{TRAIN,TEST}.ts`` as ``(n, 178, 1)`` float32 sequences with 5 classes.

    Values are the archive's, unscaled. With ``download`` the archive is fetched first if a file is missing or
    fails its download manifest (the failing file is deleted first). The files are checked against their
    download manifest (size, sha256, series count); where there is none, or it is damaged (warned), their
    content is checked in full instead, the archive's total series count included (``EXPECTED_TOTAL``).
    """
    folder = root / NAME
    paths = [folder / TRAIN_FILE, folder / TEST_FILE]
    if download:
        fetch(root, None, options)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(
            f"{NAME}: file(s) not found: {', '.join(missing)}. Fetch them with: {fetch_command(NAME, root)} "
            "(or pass download=True / --download)"
        )
    files, damage = _read_manifest(folder)
    if files is not None:
        problems = _manifest_problems(folder, files)
        if problems:
            fname, reason = next(iter(problems.items()))
            raise DataError(
                f"{folder / fname} does not match its download manifest ({reason}); {_refetch_hint(root)}"
            )
    parsed = _verified_content(folder, files, damage)
    train, test = parsed[TRAIN_FILE], parsed[TEST_FILE]
    classes = train.class_labels or tuple(sorted(set(train.labels.tolist()) | set(test.labels.tolist())))
    if test.class_labels is not None and test.class_labels != classes:
        raise DataError(
            f"{paths[0]} and {paths[1]} declare different classes: {classes} vs {test.class_labels}"
        )
    index = {c: i for i, c in enumerate(classes)}
    y_train = np.array([index[c] for c in train.labels.tolist()], dtype=np.int64)
    y_test = np.array([index[c] for c in test.labels.tolist()], dtype=np.int64)
    x_train, x_test = train.x, test.x
    if options["split"] == "paper":
        from sklearn.model_selection import train_test_split

        x_pool = np.concatenate([x_train, x_test])
        y_pool = np.concatenate([y_train, y_test])
        train_idx, test_idx = train_test_split(
            np.arange(len(y_pool)), test_size=options["test_fraction"], random_state=options["split_seed"]
        )
        x_train, y_train, x_test, y_test = (
            x_pool[train_idx],
            y_pool[train_idx],
            x_pool[test_idx],
            y_pool[test_idx],
        )
        rule = (
            f"paper protocol: archive train+test pooled ({len(y_pool)}) and re-split "
            f"{1 - options['test_fraction']:.0%}/{options['test_fraction']:.0%} with sklearn train_test_split "
            f"(random_state={options['split_seed']}, unstratified)"
        )
    else:
        rule = "the archive's own train/test split"
    import torch

    return SourceData(
        train_x=torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
        train_y=y_train,
        test_x=torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
        test_y=y_test,
        n_classes=N_CLASSES,
        class_names=tuple(classes),
        description=(
            f"UEA/UCR 'Sleep' (.ts, {SERIES_LENGTH} steps x 1 input, {N_CLASSES} classes, raw values) from "
            f"{folder}; {rule}"
        ),
        metadata={"split": options["split"]},
    )


def fetch(root: Path, base_urls: Sequence[str] | None, options: Mapping[str, Any]) -> list[Path]:
    """Download ``Sleep.zip``, extract the two ``.ts`` files into ``<root>/sleep-ucr/`` and verify them.

    The archive's hash is not pinned (``ARCHIVE_SHA256 is None``), so the content is verified instead: both files
    parse, series are 178 steps × 1 dimension, 5 classes, and there are ``EXPECTED_TOTAL`` series in all (and,
    where known, ``ARCHIVE_BYTES`` bytes in the zip and ``EXPECTED_TRAIN`` / ``EXPECTED_TEST`` series per file).
    Nothing is left at the final paths unless every check passed; the zip is deleted after extraction and its
    sha256 is recorded in ``manifest.json``. Files already present that pass the manifest are kept; a file that
    fails it (changed, truncated) is deleted and the archive fetched again. Files present without a manifest
    (copied in by hand) are kept if their content passes in full; with a damaged manifest the archive is fetched
    again, which restores a verified copy and its manifest.
    """
    import requests

    folder = root / NAME
    paths = [folder / TRAIN_FILE, folder / TEST_FILE]
    if all(p.exists() for p in paths):
        files, damage = _read_manifest(folder)
        if files is not None:
            problems = _manifest_problems(folder, files)
            if not problems:
                return paths
            for fname, reason in problems.items():
                logger.warning(
                    "%s fails its download manifest (%s); deleting it and fetching again",
                    folder / fname,
                    reason,
                )
                (folder / fname).unlink(missing_ok=True)
        elif damage is not None:
            logger.warning("%s: fetching the archive again to replace the damaged download manifest", NAME)
        else:
            try:
                _verified_content(folder, None, None)
                return paths
            except DataError as exc:
                logger.warning("%s; fetching the archive again", exc)
    archive = folder / ARCHIVE_NAME
    mirrors = tuple(base_urls) if base_urls is not None else ARCHIVE_MIRRORS
    failures = []
    for base in mirrors:
        url = (base if base.endswith("/") else base + "/") + ARCHIVE_NAME
        try:
            logger.info("downloading %s to %s", url, archive)
            retrieve(url, ARCHIVE_SHA256, archive)
            break
        except (ValueError, requests.RequestException, OSError) as exc:
            failures.append(describe_failure(url, exc))
            logger.warning("download failed: %s", failures[-1])
    else:
        raise DataError(
            f"download of {NAME} ({ARCHIVE_NAME}) failed from every mirror ({'; '.join(failures)}); nothing was "
            f"saved in {folder}. Check the network connection and retry with: {fetch_command(NAME, root)}"
        )
    try:
        return _extract_and_verify(archive, folder, url)
    finally:
        archive.unlink(missing_ok=True)


def _extract_and_verify(archive: Path, folder: Path, url: str) -> list[Path]:
    size = archive.stat().st_size
    if ARCHIVE_BYTES is not None and size != ARCHIVE_BYTES:
        raise DataError(
            f"{archive} (from {url}) has {size} bytes, expected {ARCHIVE_BYTES}; incomplete or not the archive's "
            "Sleep.zip (deleted)"
        )
    archive_sha = sha256_of(archive)
    logger.info(
        "sha256 of %s: %s (pin it as cortexnet.data.sleep_ucr.ARCHIVE_SHA256)", archive.name, archive_sha
    )
    staged: dict[str, Path] = {}
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                members = {Path(m).name: m for m in zf.namelist()}
                for fname in (TRAIN_FILE, TEST_FILE):
                    if fname not in members:
                        raise DataError(
                            f"{archive} (from {url}) has no member {fname}; unverifiable download"
                        )
                    tmp = folder / f".{fname}.{os.getpid()}.part"
                    with zf.open(members[fname]) as src, open(tmp, "wb") as dst:
                        staged[fname] = tmp
                        while block := src.read(1 << 20):
                            dst.write(block)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"{archive} (from {url}) is not a readable zip archive: {exc}") from exc
        parsed = {fname: read_ts(tmp) for fname, tmp in staged.items()}
        for fname, ts in parsed.items():
            _check_sleep(ts, staged[fname], _expected_counts()[fname])
        total = sum(len(ts.labels) for ts in parsed.values())
        if total != EXPECTED_TOTAL:
            raise DataError(
                f"{archive} (from {url}) holds {total} series, expected {EXPECTED_TOTAL}; unverifiable download"
            )
        files = {}
        for fname, tmp in staged.items():
            files[fname] = {
                "sha256": sha256_of(tmp),
                "size": tmp.stat().st_size,
                "n_series": len(parsed[fname].labels),
            }
            os.replace(tmp, folder / fname)
            mark_verified(folder / fname, files[fname]["sha256"])  # load need not hash it again
        write_json(folder / MANIFEST_NAME, {"source": url, "archive_sha256": archive_sha, "files": files})
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return [folder / TRAIN_FILE, folder / TEST_FILE]


DATASETS.register(NAME)(
    DatasetLoader(
        name=NAME,
        summary="UEA/UCR 'Sleep' EEG (the paper's code): 178 steps x 1 input, 5 classes (download)",
        load=load,
        fetch=fetch,
        parse_options=parse_options,
    )
)
