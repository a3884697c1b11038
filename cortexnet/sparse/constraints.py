"""Constraints that hold in any training loop: the mask and Dale's law after every optimiser step.

Mechanism (ARCHITECTURE.md invariants 1-2, "Constraints outside fit"):

1. **After every optimiser step.** Every sparse weight enrols itself on first use. One process-wide
   ``torch.optim`` step post-hook (installed when :mod:`cortexnet.sparse` is imported) re-imposes the
   constraints of every enrolled weight whose parameter the stepping optimiser holds, right after
   ``optimizer.step()`` — in :func:`cortexnet.training.fit`, a hand-written ``loss.backward(); opt.step()``
   loop, PyTorch Lightning, or anything else that steps a ``torch.optim.Optimizer``. Nothing has to be called
   or installed. Cost: one O(nnz) pass per weight per step (masked dense: O(n_out · n_in)).
2. **Before every product.** :meth:`~cortexnet.sparse.SparseWeight.linear` and ``recurrent`` compare the
   parameter's version counter with the one recorded at the last projection and re-impose the constraints
   when it moved (an optimiser that bypasses ``Optimizer.step`` hooks, ``with torch.no_grad(): w += ...``,
   ``load_state_dict``). Changes autograd cannot see — writes through ``param.data`` — bypass the counter:
   call :func:`cortexnet.layers.apply_constraints` after them. Tensors swapped in by
   ``torch.func.functional_call`` (not the weight's own parameter) are never modified.

:func:`observe_projection` lets analyses see the values an optimiser step produced *before* the projection
(e.g. how many weights Dale's rule zeroed).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

if TYPE_CHECKING:
    from cortexnet.sparse.base import SparseWeight

#: id(parameter) -> (weak ref to the parameter, weak ref to its SparseWeight): enrolling never keeps a model
#: alive, and an entry goes away with its parameter. (Keyed by id: tensors compare element-wise, so they cannot
#: be weak dictionary keys.)
_OWNERS: dict[int, tuple[weakref.ref, weakref.ref]] = {}
#: Callbacks ``fn(weight)`` run just before a weight's constraints are re-imposed after an optimiser step.
_OBSERVERS: dict[int, Callable[[SparseWeight], None]] = {}
_ids = itertools.count()
_VERSION_ATTR = "_constrained_version"


def _enrol(weight: SparseWeight, param: nn.Parameter) -> None:
    key = id(param)
    entry = _OWNERS.get(key)
    if entry is None or entry[0]() is not param or entry[1]() is not weight:
        _OWNERS[key] = (weakref.ref(param, lambda _r, k=key: _OWNERS.pop(k, None)), weakref.ref(weight))


def _owner(param: torch.Tensor) -> SparseWeight | None:
    entry = _OWNERS.get(id(param))
    if entry is None or entry[0]() is not param:
        return None
    return entry[1]()


def project_(weight: SparseWeight) -> None:
    """Re-impose ``weight``'s mask and sign rule now (in place, no autograd) and record its version."""
    param = weight._parameter()
    with torch.no_grad():
        weight.apply_constraints_()
    setattr(weight, _VERSION_ATTR, param._version)
    if isinstance(param, nn.Parameter):
        _enrol(weight, param)


@torch.compiler.disable  # a per-step changing integer would make torch.compile recompile every step
def ensure_constrained(weight: SparseWeight) -> None:
    """Enrol ``weight`` and re-impose its constraints if its parameter changed since the last projection
    (O(1) otherwise). Called by every backend before it multiplies."""
    param = weight._parameter()
    if not isinstance(param, nn.Parameter) or not param.is_leaf:
        return  # a tensor swapped in from outside (torch.func.functional_call): never modify it
    if getattr(weight, _VERSION_ATTR, None) != param._version:
        project_(weight)
    else:
        _enrol(weight, param)


def observe_projection(fn: Callable[[SparseWeight], None]) -> Any:
    """Call ``fn(weight)`` right before each enrolled weight is projected after an optimiser step (its values
    then are what the optimiser produced). Returns a handle with ``remove()``."""
    key = next(_ids)
    _OBSERVERS[key] = fn

    class _Handle:
        def remove(self) -> None:
            _OBSERVERS.pop(key, None)

    return _Handle()


def _after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    for group in optimizer.param_groups:
        for param in group["params"]:
            weight = _owner(param)
            if weight is None:
                continue
            for observe in list(_OBSERVERS.values()):
                observe(weight)
            project_(weight)


#: Installed once per process (kept: removing it breaks invariants 1-2 in every loop but fit's).
AFTER_STEP_HOOK = register_optimizer_step_post_hook(_after_step)
