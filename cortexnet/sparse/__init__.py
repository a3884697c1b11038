"""Sparse weights: store only active synapses and multiply by them, with backends chosen by name."""

from cortexnet.sparse import masked_dense as _masked_dense  # noqa: F401  (registers "masked_dense")
from cortexnet.sparse.base import BACKENDS, DALE_MODES, DaleMode, SparseWeight, make_sparse_weight
from cortexnet.sparse.functional import ACTIVATIONS, DenseRecurrence, check_activation
from cortexnet.sparse.masked_dense import MaskedDenseWeight

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "DALE_MODES",
    "DaleMode",
    "DenseRecurrence",
    "MaskedDenseWeight",
    "SparseWeight",
    "check_activation",
    "make_sparse_weight",
]
