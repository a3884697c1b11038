"""The dataset registry: each name maps to a ``DatasetLoader`` (how to load it, how to fetch it, its options).

Three kinds of names reach it:

* the built-in datasets, registered when :mod:`cortexnet.data` is imported;
* datasets of installed third-party packages, declared as entry points of the group ``cortexnet.datasets``
  (``[project.entry-points."cortexnet.datasets"] mydata = "pkg.module:loader"``, where the object is a
  :class:`DatasetLoader` or a zero-argument callable returning one). They are discovered lazily — the first
  time a name is not found among the registered ones, or the names are listed — and registered once; a plugin
  that fails to load is logged and reported (naming it) only when it is asked for, so it never breaks the others;
* pattern names such as ``npz:PATH`` (your own arrays in a ``.npz`` file), resolved on demand by a prefix
  resolver (:meth:`DatasetRegistry.add_resolver`).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortexnet.registry import Registry

from .errors import DataError
from .splits import SourceData

logger = logging.getLogger(__name__)

LoadFn = Callable[[Path, bool, Mapping[str, Any]], SourceData]
FetchFn = Callable[[Path, Sequence[str] | None, Mapping[str, Any]], list[Path]]
OptionsFn = Callable[[Mapping[str, Any] | None], dict[str, Any]]

#: The entry-point group third-party packages declare their datasets in.
ENTRY_POINT_GROUP = "cortexnet.datasets"


def no_options(name: str) -> OptionsFn:
    """An options parser for datasets that take none: anything but ``None`` or ``{}`` is an error."""

    def parse(options: Mapping[str, Any] | None) -> dict[str, Any]:
        if options:
            raise ValueError(f"dataset {name!r} takes no options, got {dict(options)!r}; pass options=None")
        return {}

    return parse


@dataclass(frozen=True)
class DatasetLoader:
    """How one registered dataset is loaded and fetched.

    Attributes:
        name: the registry name (also the folder under the data root).
        summary: one line for ``--help`` texts: what the dataset is and its shape.
        load: ``load(root, download, options) -> SourceData``; reads ``<root>/<name>/``, downloading first only
            when ``download`` is true. :meth:`SourceData.from_arrays` builds the result from plain arrays.
        fetch: ``fetch(root, base_urls, options) -> list[Path]`` downloads and verifies the files (``base_urls``
            overrides the built-in mirrors); ``None`` (the default) for data that needs no download.
        parse_options: validates dataset-specific options and fills defaults, without I/O; raises ``ValueError``
            naming the bad key or value and the allowed ones. Default: the dataset takes no options.
    """

    name: str
    summary: str
    load: LoadFn
    fetch: FetchFn | None = None
    parse_options: OptionsFn = None  # type: ignore[assignment]  # filled in by __post_init__

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a dataset name must be a non-empty string, got {self.name!r}")
        if self.parse_options is None:
            object.__setattr__(self, "parse_options", no_options(self.name))
        for attr in ("load", "parse_options"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"DatasetLoader {self.name!r}: {attr} must be callable")
        if self.fetch is not None and not callable(self.fetch):
            raise TypeError(f"DatasetLoader {self.name!r}: fetch must be callable or None")


def _plugin_loader(ep: Any) -> DatasetLoader:
    """The :class:`DatasetLoader` an entry point names (the object itself, or what calling it returns)."""
    obj = ep.load()
    loader = obj if isinstance(obj, DatasetLoader) else obj() if callable(obj) else obj
    if not isinstance(loader, DatasetLoader):
        raise TypeError(
            f"it must name a cortexnet.data.DatasetLoader or a zero-argument callable returning one, got "
            f"{type(loader).__name__}"
        )
    if loader.name != ep.name:
        raise ValueError(
            f"the entry point is called {ep.name!r} but its DatasetLoader is named {loader.name!r}; make the two "
            "names equal"
        )
    return loader


def _entry_point_origin(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    where = (
        f" from the distribution {dist.name!r}" if dist is not None and getattr(dist, "name", None) else ""
    )
    return f"{ep.name} = {ep.value}{where}"


class DatasetRegistry(Registry[DatasetLoader]):
    """The registry of datasets: registered names, installed plugins (discovered once, lazily) and pattern names
    resolved by prefix (``npz:PATH``).

    ``name in DATASETS`` is true for every name :meth:`get` can resolve, including a plugin that failed to load
    (:meth:`get` then raises a ``DataError`` that names it and says why) and any ``npz:PATH`` (whether the file
    exists is checked when it is loaded).
    """

    def __init__(self, kind: str = "dataset") -> None:
        super().__init__(kind)
        self._resolvers: dict[str, Callable[[str], DatasetLoader]] = {}
        self._resolver_help: dict[str, str] = {}
        self._plugins_loaded = False
        self._plugin_errors: dict[str, str] = {}

    # -- pattern names -------------------------------------------------------------------------------------
    def add_resolver(self, prefix: str, resolve: Callable[[str], DatasetLoader], *, pattern: str) -> None:
        """Resolve names starting with ``prefix`` (e.g. ``"npz:"``) with ``resolve(name) -> DatasetLoader``;
        ``pattern`` (e.g. ``"npz:PATH"``) is how error messages list it."""
        if prefix in self._resolvers:
            raise ValueError(f"a {self.kind} resolver for {prefix!r} is already registered")
        self._resolvers[prefix] = resolve
        self._resolver_help[prefix] = pattern

    def patterns(self) -> list[str]:
        """The pattern names accepted besides the registered ones, e.g. ``["npz:PATH"]``."""
        return [self._resolver_help[p] for p in sorted(self._resolvers)]

    def _resolver_for(self, name: object) -> Callable[[str], DatasetLoader] | None:
        if not isinstance(name, str):
            return None
        for prefix, resolve in self._resolvers.items():
            if name.startswith(prefix):
                return resolve
        return None

    # -- plugins -------------------------------------------------------------------------------------------
    def load_plugins(self) -> dict[str, str]:
        """Discover and register the datasets of the entry-point group :data:`ENTRY_POINT_GROUP` (once per
        process); returns ``{plugin name: error message}`` for those that failed to load."""
        if not self._plugins_loaded:
            self._plugins_loaded = True
            self._discover()
        return dict(self._plugin_errors)

    def _discover(self) -> None:
        try:
            eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken installation must not break the built-in datasets
            logger.warning("cannot list the %r entry points: %s", ENTRY_POINT_GROUP, exc)
            return
        seen: dict[str, str] = {}
        for ep in eps:
            name = ep.name
            if seen.get(name) == ep.value:  # the same distribution found twice on sys.path
                continue
            seen[name] = ep.value
            origin = _entry_point_origin(ep)
            try:
                if name in self._items:
                    raise ValueError(
                        f"the name {name!r} is already taken by another dataset; rename the plugin"
                    )
                if self._resolver_for(name) is not None or any(c in name for c in "/\\:"):
                    raise ValueError(
                        f"the name {name!r} is not usable as a dataset name (it contains / \\ or :)"
                    )
                loader = _plugin_loader(ep)
            except Exception as exc:
                message = (
                    f"dataset plugin {name!r} ({origin}) failed to load: {type(exc).__name__}: {exc}; fix or "
                    "uninstall the package that provides it"
                )
                logger.warning("%s", message)
                if name not in self._items:
                    self._plugin_errors[name] = message
                continue
            self._plugin_errors.pop(name, None)
            self.register(name)(loader)
            logger.debug("registered dataset plugin %s", origin)

    # -- lookup --------------------------------------------------------------------------------------------
    def get(self, name: str) -> DatasetLoader:
        """The loader of ``name``: registered, resolved by prefix, or an installed plugin.

        Raises ``KeyError`` for an unknown name (listing the known ones), ``DataError`` for a plugin that failed to
        load, ``ValueError`` for a malformed pattern name (e.g. ``npz:`` without a path)."""
        if name in self._items:
            return self._items[name]
        resolve = self._resolver_for(name)
        if resolve is not None:
            return resolve(name)
        errors = self.load_plugins()
        if name in self._items:
            return self._items[name]
        if name in errors:
            raise DataError(errors[name])
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.known()) or '(none)'}")

    def names(self) -> list[str]:
        """Registered names (built-in and plugins that loaded), sorted."""
        self.load_plugins()
        return super().names()

    def known(self) -> list[str]:
        """Every name that :meth:`get` accepts: registered names and plugins (also those that failed to load),
        sorted, then the patterns (``npz:PATH``)."""
        errors = self.load_plugins()
        return sorted({*self._items, *errors}) + self.patterns()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._items:
            return True
        resolve = self._resolver_for(name)
        if resolve is not None:
            try:
                resolve(name)  # resolvers do no I/O: this only checks the name's form
            except ValueError:
                return False
            return True
        errors = self.load_plugins()
        return name in self._items or name in errors


DATASETS: DatasetRegistry = DatasetRegistry("dataset")
