"""The public entry points: ``load_dataset`` and ``download_dataset``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# imported for their registrations: npz:PATH; digits, mnist, fashion-mnist, cifar10, cifar100; neurogym (needs the
# optional package only when trials are generated); sleep-ucr; sleep-edf
from . import arrays as _arrays  # noqa: F401
from . import images as _images  # noqa: F401
from . import neurogym_tasks as _neurogym_tasks  # noqa: F401
from . import sleep_edf as _sleep_edf  # noqa: F401
from . import sleep_ucr as _sleep_ucr  # noqa: F401
from .root import resolve_data_root
from .sources import DATASETS, DatasetLoader
from .splits import DatasetSplits, SourceData, make_splits, validate_split_args

logger = logging.getLogger(__name__)


def get_loader(name: str) -> DatasetLoader:
    """The loader of ``name``: a built-in dataset, an installed plugin (entry-point group ``cortexnet.datasets``)
    or ``npz:PATH``.

    Raises ``ValueError`` for an unknown or malformed name (listing the known ones), ``DataError`` for a plugin
    that failed to load (naming it and why).
    """
    if isinstance(name, str):
        try:
            return DATASETS.get(name)
        except KeyError:
            pass
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(known_datasets())}")


def is_known_dataset(name: str) -> bool:
    """Whether ``load_dataset(name)`` can resolve ``name``: a built-in dataset, an installed plugin (one that
    failed to load counts, so that loading it reports why) or ``npz:PATH`` (the file is checked when loaded)."""
    return isinstance(name, str) and name in DATASETS


def known_datasets() -> list[str]:
    """The names ``load_dataset`` accepts, for messages and ``--help``: built-in and plugin names, sorted, then
    the patterns (``"npz:PATH"``)."""
    return DATASETS.known()


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    val_fraction: float = 0.0,
    n_per_class: int | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> DatasetSplits:
    """Load dataset ``name`` as row/time sequences, split into train / validation / test.

    Args:
        name: a registered name (``known_datasets()``): ``digits`` (embedded, no download), ``mnist``,
            ``fashion-mnist``, ``cifar10``, ``cifar100``, ``sleep-ucr``, ``sleep-edf``, ``neurogym`` (cognitive
            tasks generated with the optional package neurogym; per-step targets), a dataset of an installed
            plugin (entry-point group ``cortexnet.datasets``), or ``npz:PATH`` — your own arrays saved with
            ``numpy.savez(PATH, train_x=..., train_y=..., test_x=..., test_y=...)`` (see ``datasets/README.md``).
        root: data root (see ``resolve_data_root``); files live under ``<root>/<name>/`` (not used by ``npz:``).
        download: fetch missing files first, and replace present ones that fail verification (image datasets:
            sha256; ``sleep-ucr``: its download manifest, or without a usable one a full content check; ``sleep-edf``: the structural checks,
            plus SHA-1 with ``verify_checksums``). When false (the default) nothing touches the network and missing
            files raise ``DataError`` naming the path and the fetch command.
        val_fraction: fraction in [0, 1) of the *training* pool held out for validation, stratified by class
            (by whole subject for ``sleep-edf``, by ``train_groups`` for npz files that have them) and drawn with
            ``seed``; 0 (the default, as on the command line and in the paper) → ``val is None``. Never from
            test.
        n_per_class: limited-data subset — this many training examples per class, drawn with ``seed`` from what
            the validation split left; ``None`` keeps all.
        seed: seed of the validation draw and of the subset draw (the dataset's own train/test split has its own
            fixed seed, stated in ``description``).
        options: dataset-specific options (e.g. ``{"seq_len": 300, "subjects": [0, 1]}`` for ``sleep-edf``),
            validated by that dataset's loader before any I/O.

    Returns:
        ``DatasetSplits`` whose datasets hold x float32 ``(n, T, F)`` and y int64 ``(n,)`` — or per-step targets
        y int64 ``(n, T)`` with ``IGNORE_INDEX`` at unscored steps (``neurogym``).

    Raises:
        ValueError / TypeError: a bad argument (before any I/O), or ``n_per_class`` larger than a class.
        DataError: missing, corrupt or unverifiable data, or a failed download.
    """
    loader = get_loader(name)
    validate_split_args(val_fraction, n_per_class, seed)
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping (dict) or None, got {type(options).__name__}")
    parsed = loader.parse_options(options)
    data_root = resolve_data_root(root)
    if loader.fetch is None:
        logger.info("loading dataset %s (%s; nothing to download)", name, loader.summary)
    else:
        logger.info("loading dataset %s from %s (download=%s)", name, data_root / name, download)
    source = loader.load(data_root, download, parsed)
    if not isinstance(source, SourceData):
        raise TypeError(
            f"the loader of dataset {name!r} returned {type(source).__name__}, not a SourceData; build its result "
            "with SourceData.from_arrays(train_x, train_y, test_x, test_y, ...)"
        )
    splits = make_splits(name, source, val_fraction=val_fraction, n_per_class=n_per_class, seed=seed)
    logger.info("%s: %s", name, splits.description)
    return splits


def download_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    base_urls: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Download and verify the files of dataset ``name`` into ``<root>/<name>/``; return their paths.

    Files already present and verified are not fetched again. ``base_urls`` replaces the built-in mirrors (tried in
    order; e.g. a local mirror). ``options`` selects what to fetch where a dataset has parts (``sleep-edf``:
    ``subjects``, ``recordings``). ``digits`` is embedded and returns ``[]``.

    Raises ``DataError`` when the download fails (offline, HTTP error, hash mismatch — the bad file is deleted) or
    cannot be verified; ``ValueError`` for an unknown name or bad options.
    """
    loader = get_loader(name)
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping (dict) or None, got {type(options).__name__}")
    if isinstance(base_urls, str):
        base_urls = [base_urls]
    parsed = loader.parse_options(options)
    data_root = resolve_data_root(root)
    if loader.fetch is None:
        logger.info("%s needs no download", name)
        return []
    return loader.fetch(data_root, base_urls, parsed)


def sequence_cost(
    n_steps: int, n_nodes: int, n_samples: int, *, density: float = 1.0, batch_size: int = 100
) -> str:
    """One paragraph saying what a pass over a sequence dataset costs a recurrent network, before it starts.

    Counts: node updates per epoch = ``n_steps × n_nodes × n_samples``; recurrent multiply-adds per epoch (forward)
    = that × ``n_nodes × density`` (``density``: fraction of recurrent connections present); training costs about
    three times the forward pass; back-propagation through time keeps at least ``n_steps × n_nodes × batch_size``
    float32 hidden states (4 bytes each) per batch. Example: Sleep-EDF epochs at 100 Hz have 3,000 steps, so a
    10,000-node network does 3,000 × 10,000 = 3.0e7 node updates *per sample* (3.0e11 multiply-adds at full
    density); ``options={"seq_len": 300}`` cuts all of it tenfold.
    """
    for label, value in (("n_steps", n_steps), ("n_nodes", n_nodes), ("n_samples", n_samples),
                         ("batch_size", batch_size)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if not 0 < density <= 1:
        raise ValueError(f"density must lie in (0, 1], got {density!r}")
    updates = n_steps * n_nodes * n_samples
    macs = updates * n_nodes * density
    state_bytes = n_steps * n_nodes * min(batch_size, n_samples) * 4
    return (
        f"{n_steps} steps x {n_nodes:,} nodes x {n_samples:,} samples = {updates:.2e} node updates per epoch; "
        f"recurrent weights at density {density:g}: {macs:.2e} multiply-adds forward, about {3 * macs:.2e} to "
        f"train; back-propagation through time stores >= {state_bytes / 1e9:.2f} GB of hidden states per batch "
        f"of {min(batch_size, n_samples)}. Shorter sequences (e.g. sleep-edf options seq_len) cut all of these in "
        "proportion."
    )
