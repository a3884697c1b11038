"""Layers: modules owning parameters and masks (recurrent E/I layer, sparse linear, patch embedding)."""

from cortexnet.layers.activity import ActivityRecording, record_activity
from cortexnet.layers.constraints import (
    apply_constraints,
    constraint_violations,
    select_weight,
    sparse_weights,
)
from cortexnet.layers.patch import PatchEmbedding, rows_to_images
from cortexnet.layers.recurrent import INIT_STATES, REC_INIT_SCALE, RecurrentLayer
from cortexnet.layers.sparse_linear import SPARSE_LINEAR_INITS, SparseLinear
from cortexnet.sparse import observe_projection

__all__ = [
    "INIT_STATES",
    "REC_INIT_SCALE",
    "SPARSE_LINEAR_INITS",
    "ActivityRecording",
    "PatchEmbedding",
    "RecurrentLayer",
    "SparseLinear",
    "apply_constraints",
    "constraint_violations",
    "observe_projection",
    "record_activity",
    "rows_to_images",
    "select_weight",
    "sparse_weights",
]
