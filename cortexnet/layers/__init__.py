"""Layers: modules owning parameters and masks (recurrent E/I layer, sparse linear, patch embedding)."""

from torch import nn

from cortexnet.layers.patch import PatchEmbedding, rows_to_images
from cortexnet.layers.recurrent import REC_INIT_SCALE, RecurrentLayer
from cortexnet.layers.sparse_linear import SPARSE_LINEAR_INITS, SparseLinear


def apply_constraints(module: nn.Module) -> None:
    """Enforce every constraint (masks, Dale's law) of every submodule that has one, in place.

    The trainer calls this after every optimiser step; any module with an ``apply_constraints_`` method
    takes part, so new layer types plug in without touching the trainer.
    """
    for m in module.modules():
        fn = getattr(m, "apply_constraints_", None)
        if fn is not None:
            fn()


__all__ = [
    "REC_INIT_SCALE",
    "SPARSE_LINEAR_INITS",
    "PatchEmbedding",
    "RecurrentLayer",
    "SparseLinear",
    "apply_constraints",
    "rows_to_images",
]
