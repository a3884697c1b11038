"""Datasets as batch-first sequences ``(n, T, F)``: row-encoded images, Sleep EEG, hashed downloads, data root.

Nothing here downloads unless asked (``download=True``, or ``python -m cortexnet.data.download <name>``), and
nothing is ever silently replaced by another dataset. See ``datasets/README.md`` for the on-disk layout.
"""

from .api import download_dataset, get_loader, load_dataset, sequence_cost
from .encoding import images_to_row_sequences
from .errors import DataError
from .root import resolve_data_root
from .sources import DATASETS, DatasetLoader
from .splits import DatasetSplits, SourceData, chance_level

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetLoader",
    "DatasetSplits",
    "SourceData",
    "chance_level",
    "download_dataset",
    "get_loader",
    "images_to_row_sequences",
    "load_dataset",
    "resolve_data_root",
    "sequence_cost",
]
