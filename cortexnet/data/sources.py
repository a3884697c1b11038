"""The dataset registry: each name maps to a ``DatasetLoader`` (how to load it, how to fetch it, its options)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortexnet.registry import Registry

from .splits import SourceData

LoadFn = Callable[[Path, bool, Mapping[str, Any]], SourceData]
FetchFn = Callable[[Path, Sequence[str] | None, Mapping[str, Any]], list[Path]]
OptionsFn = Callable[[Mapping[str, Any] | None], dict[str, Any]]


@dataclass(frozen=True)
class DatasetLoader:
    """How one registered dataset is loaded and fetched.

    Attributes:
        name: the registry name (also the folder under the data root).
        summary: one line for ``--help`` texts: what the dataset is and its shape.
        load: ``load(root, download, options) -> SourceData``; reads ``<root>/<name>/``, downloading first only
            when ``download`` is true.
        fetch: ``fetch(root, base_urls, options) -> list[Path]`` downloads and verifies the files (``base_urls``
            overrides the built-in mirrors); ``None`` for data that needs no download.
        parse_options: validates dataset-specific options and fills defaults, without I/O; raises ``ValueError``
            naming the bad key or value and the allowed ones.
    """

    name: str
    summary: str
    load: LoadFn
    fetch: FetchFn | None
    parse_options: OptionsFn


def no_options(name: str) -> OptionsFn:
    """An options parser for datasets that take none: anything but ``None`` or ``{}`` is an error."""

    def parse(options: Mapping[str, Any] | None) -> dict[str, Any]:
        if options:
            raise ValueError(f"dataset {name!r} takes no options, got {dict(options)!r}; pass options=None")
        return {}

    return parse


DATASETS: Registry[DatasetLoader] = Registry("dataset")
