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

#: id(parameter) -> its SparseWeight, held weakly (enrolling never keeps a model alive, and no weak reference to
#: a tensor is taken: ``torch.utils.swap_tensors`` refuses tensors that have one). A lookup checks that the
#: weight's parameter still is that object, so a reused id never matches.
_OWNERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
#: Callbacks ``fn(weight)`` run just before a weight's constraints are re-imposed after an optimiser step.
_OBSERVERS: dict[int, Callable[[SparseWeight], None]] = {}
_ids = itertools.count()
VERSION_ATTR = "_constrained_version"


def enrol(weight: SparseWeight, param: torch.Tensor | None = None) -> None:
    """Enrol ``weight`` (its current parameter, or ``param``) in the after-step projection. The backends do it
    when the parameter is registered, after ``.to()``-style conversions and after unpickling / deepcopy."""
    param = weight._parameter() if param is None else param
    if isinstance(param, nn.Parameter):
        _OWNERS[id(param)] = weight


def _owner(param: torch.Tensor) -> SparseWeight | None:
    weight = _OWNERS.get(id(param))
    if weight is None or weight._parameter() is not param:
        return None
    return weight


def record_projection(weight: SparseWeight) -> None:
    """Note that ``weight``'s constraints hold for its parameter's current version (every backend's
    ``apply_constraints_`` ends with it), so the next product does not project again."""
    setattr(weight, VERSION_ATTR, weight._parameter()._version)


def project_(weight: SparseWeight) -> None:
    """Re-impose ``weight``'s mask and sign rule now (in place, no autograd) and record its version."""
    with torch.no_grad():
        weight.apply_constraints_()
    record_projection(weight)


@torch.compiler.disable  # a per-step changing integer would make torch.compile recompile every step
def ensure_constrained(weight: SparseWeight) -> None:
    """Re-impose ``weight``'s constraints if its own parameter changed since the last projection (O(1)
    otherwise). Called by every backend before it multiplies. A tensor swapped in from outside (e.g. by
    ``torch.func.functional_call``, even an ``nn.Parameter``) is never modified."""
    param = weight._parameter()
    if _owner(param) is not weight or not param.is_leaf:
        return
    if getattr(weight, VERSION_ATTR, None) != param._version:
        project_(weight)


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
