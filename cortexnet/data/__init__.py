"""Datasets as batch-first sequences ``(n, T, F)``: row-encoded images, Sleep EEG, NeuroGym cognitive tasks (labels
per step, ``IGNORE_INDEX`` where not scored), hashed downloads, data root.

Nothing here downloads unless asked (``download=True``, or ``python -m cortexnet.data.download <name>``), and
nothing is ever silently replaced by another dataset. Your own data: ``npz:PATH`` (arrays saved with
``numpy.savez``), ``SourceData.from_arrays`` + ``make_splits`` in Python, or a package declaring an entry point
in the group ``cortexnet.datasets``. See ``datasets/README.md`` for the on-disk layout and bringing your own data.
"""

from .api import download_dataset, get_loader, is_known_dataset, known_datasets, load_dataset, sequence_cost
from .arrays import load_npz_source
from .encoding import images_to_row_sequences
from .errors import DataError
from .root import resolve_data_root
from .sequences import IGNORE_INDEX
from .sources import DATASETS, ENTRY_POINT_GROUP, DatasetLoader, no_options
from .splits import DatasetSplits, SourceData, chance_level, make_splits

#: Lazily imported (they need torch; ``python -m cortexnet.data.download`` must not pay for it).
_LAZY = {"Batches", "batches", "model_device", "model_dtype"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import batching

        return getattr(batching, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "ENTRY_POINT_GROUP",
    "IGNORE_INDEX",
    "Batches",
    "DataError",
    "DatasetLoader",
    "DatasetSplits",
    "SourceData",
    "batches",
    "chance_level",
    "download_dataset",
    "get_loader",
    "images_to_row_sequences",
    "is_known_dataset",
    "known_datasets",
    "load_dataset",
    "load_npz_source",
    "make_splits",
    "model_device",
    "model_dtype",
    "no_options",
    "resolve_data_root",
    "sequence_cost",
]
