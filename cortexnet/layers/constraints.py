"""Constraints that hold in any training loop: the mask and Dale's law after every optimiser step.

Mechanism (ARCHITECTURE.md invariants 1-2, "Constraints outside fit"):

1. **After every optimiser step.** Every sparse weight built by a cortexnet layer is registered here. One
   process-wide ``torch.optim`` step post-hook re-imposes the constraints of every registered weight whose
   parameter the stepping optimiser holds, right after ``optimizer.step()`` — in :func:`cortexnet.training.fit`,
   a hand-written ``loss.backward(); opt.step()`` loop, PyTorch Lightning, or anything else that steps a
   ``torch.optim.Optimizer``. Nothing has to be called or installed. Cost: one O(nnz) pass per weight per step
   (masked dense: O(n_out · n_in)), as the trainer always paid.
2. **Before every forward.** The layers also compare the parameter's version counter with the one recorded at
   the last projection and re-impose the constraints when it moved (an optimiser that bypasses
   ``Optimizer.step`` hooks, a manual ``with torch.no_grad(): w += ...``, ``load_state_dict``), so a forward
   pass never uses a weight that breaks them.

:func:`observe_projection` lets analyses see the values an optimiser step produced *before* the projection
(e.g. how many weights Dale's rule zeroed); :func:`constraint_violations` counts what breaks the constraints,
in O(nnz) on compressed backends.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from cortexnet.sparse import SparseWeight

#: id(parameter) -> (weak ref to the parameter, weak ref to its SparseWeight): registering never keeps a model
#: alive, and an entry goes away with its parameter. (Keyed by id: tensors compare element-wise, so they cannot
#: be weak dictionary keys.)
_OWNERS: dict[int, tuple[weakref.ref, weakref.ref]] = {}
#: Callbacks ``fn(weight)`` run just before a weight's constraints are re-imposed after an optimiser step.
_OBSERVERS: dict[int, Callable[[SparseWeight], None]] = {}
_ids = itertools.count()
_VERSION_ATTR = "_constrained_version"


def weight_parameter(weight: SparseWeight) -> nn.Parameter:
    """The one trainable parameter of a sparse weight (``values`` on csr, ``weight`` on masked dense)."""
    params = list(weight.parameters(recurse=False))
    if len(params) != 1:
        raise TypeError(f"{type(weight).__name__} holds {len(params)} parameters; a sparse weight has one")
    return params[0]


def register_constrained(weight: SparseWeight) -> SparseWeight:
    """Enrol ``weight`` in the after-step projection (idempotent; the layers call it). Returns ``weight``."""
    param = weight_parameter(weight)
    key = id(param)
    entry = _OWNERS.get(key)
    if entry is None or entry[0]() is not param or entry[1]() is not weight:
        _OWNERS[key] = (weakref.ref(param, lambda _r, k=key: _OWNERS.pop(k, None)), weakref.ref(weight))
    return weight


def _owner(param: torch.Tensor) -> SparseWeight | None:
    entry = _OWNERS.get(id(param))
    if entry is None or entry[0]() is not param:
        return None
    return entry[1]()


def project_(weight: SparseWeight) -> None:
    """Re-impose ``weight``'s mask and sign rule now and record its parameter's version."""
    weight.apply_constraints_()
    setattr(weight, _VERSION_ATTR, weight_parameter(weight)._version)


def ensure_constrained(weight: SparseWeight) -> None:
    """Re-impose the constraints if the parameter changed since the last projection (O(1) otherwise). Called
    by the layers before every forward pass."""
    param = weight_parameter(weight)
    if getattr(weight, _VERSION_ATTR, None) != param._version:
        register_constrained(weight)
        with torch.no_grad():
            project_(weight)


def apply_constraints(module: nn.Module) -> None:
    """Enforce every constraint (masks, Dale's law) of every submodule that has one, in place, now.

    Sparse weights are projected (and their version recorded); any other module with an
    ``apply_constraints_`` method takes part too, so new layer types plug in without touching the trainer.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, SparseWeight):
                project_(m)
            else:
                fn = getattr(m, "apply_constraints_", None)
                if fn is not None:
                    fn()


def observe_projection(fn: Callable[[SparseWeight], None]) -> Any:
    """Call ``fn(weight)`` right before each registered weight is projected after an optimiser step (its
    values then are what the optimiser produced). Returns a handle with ``remove()``."""
    key = next(_ids)
    _OBSERVERS[key] = fn

    class _Handle:
        def remove(self) -> None:
            _OBSERVERS.pop(key, None)

    return _Handle()


def _after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    with torch.no_grad():
        for group in optimizer.param_groups:
            for param in group["params"]:
                weight = _owner(param)
                if weight is None:
                    continue
                for observe in list(_OBSERVERS.values()):
                    observe(weight)
                project_(weight)


#: Installed once per process when cortexnet.layers is imported (kept: removing it breaks invariants 1-2).
AFTER_STEP_HOOK = register_optimizer_step_post_hook(_after_step)


def sparse_weights(model: nn.Module) -> dict[str, SparseWeight]:
    """Every :class:`~cortexnet.sparse.SparseWeight` of ``model`` by module name, in module order, e.g.
    ``{"recurrent.rec": ...}`` (CortexRNN), ``{"connections.sparse": ...}`` (feed-forward control),
    ``{"layers.0.sparse": ..., "layers.1.sparse": ...}`` (G2GNet). Analyses, counts and rewiring address
    weights by these names."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SparseWeight)}


def constraint_violations(model: nn.Module) -> dict[str, Any]:
    """What breaks the constraints in ``model`` now, without re-imposing them.

    Returns ``{"wrong_sign": int, "off_mask": int, "non_finite": int, "total": int, "per_weight": {name:
    {"wrong_sign", "off_mask", "non_finite"}}}``: active weights whose sign disagrees with their presynaptic
    unit's Dale sign, stored non-zeros outside the mask, NaN/inf among active weights; ``total`` is 0 when
    every constraint holds. O(nnz) per compressed weight; no dense N x N matrix.
    """
    per = {name: dict(w.constraint_violations()) for name, w in sparse_weights(model).items()}
    out: dict[str, Any] = {k: sum(v.get(k, 0) for v in per.values()) for k in VIOLATION_KINDS}
    out["total"] = sum(out[k] for k in VIOLATION_KINDS)
    out["per_weight"] = per
    return out


#: The kinds :func:`constraint_violations` counts.
VIOLATION_KINDS: tuple[str, ...] = ("wrong_sign", "off_mask", "non_finite")
