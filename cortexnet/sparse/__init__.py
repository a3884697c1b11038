"""Sparse weights: store only active synapses and multiply by them, with backends chosen by name.

Backends (registry :data:`BACKENDS`): ``"masked_dense"`` (reference: dense parameter kept zero off a mask),
``"csr"`` (compressed: the synapses' values are the only parameter) and ``"auto"`` (picks one of them from
measured crossovers). Checkpoints of any backend load into any other. What rewiring needs, on every backend:
``set_connectivity_`` (mutation), ``probe_gradients`` (RigL), ``constraint_violations`` and
:class:`ActivityAccumulator` (Hebbian).
"""

from cortexnet.sparse import auto as _auto  # noqa: F401  (registers "auto")
from cortexnet.sparse import csr as _csr  # noqa: F401  (registers "csr")
from cortexnet.sparse import masked_dense as _masked_dense  # noqa: F401  (registers "masked_dense")
from cortexnet.sparse.auto import backend_hints, choose_backend, crossover_density
from cortexnet.sparse.base import BACKENDS, DALE_MODES, DaleMode, SparseWeight, make_sparse_weight
from cortexnet.sparse.checkpoint import convert_state_dict
from cortexnet.sparse.constraints import ensure_constrained, observe_projection, project_
from cortexnet.sparse.csr import CSRWeight
from cortexnet.sparse.csr_functional import CSRLinear, CSRRecurrence
from cortexnet.sparse.functional import ACTIVATIONS, DenseRecurrence, check_activation
from cortexnet.sparse.masked_dense import MaskedDenseWeight
from cortexnet.sparse.probes import ActivityAccumulator, GradientProbe

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "DALE_MODES",
    "ActivityAccumulator",
    "CSRLinear",
    "CSRRecurrence",
    "CSRWeight",
    "DaleMode",
    "DenseRecurrence",
    "GradientProbe",
    "MaskedDenseWeight",
    "SparseWeight",
    "backend_hints",
    "check_activation",
    "choose_backend",
    "convert_state_dict",
    "crossover_density",
    "ensure_constrained",
    "make_sparse_weight",
    "observe_projection",
    "project_",
]
