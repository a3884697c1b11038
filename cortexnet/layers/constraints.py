"""Model-level views of the constraints (the mechanism itself is :mod:`cortexnet.sparse.constraints`: every
sparse weight is re-projected inside every optimiser step and before any product after a change).

* :func:`sparse_weights` — every sparse weight of a model by name, the address analyses and rewiring use
  (:func:`select_weight` picks one);
* :func:`constraint_violations` — what breaks the mask or Dale's law now, O(nnz) per compressed weight;
* :func:`apply_constraints` — re-impose everything now (needed only after writes through ``param.data``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cortexnet.layers.recurrent import RecurrentLayer
from cortexnet.sparse import SparseWeight, project_

#: The kinds :func:`constraint_violations` counts.
VIOLATION_KINDS: tuple[str, ...] = ("wrong_sign", "off_mask", "non_finite")


def sparse_weights(model: nn.Module) -> dict[str, SparseWeight]:
    """Every :class:`~cortexnet.sparse.SparseWeight` of ``model`` by module name, in module order, e.g.
    ``{"recurrent.rec": ...}`` (CortexRNN), ``{"connections.sparse": ...}`` (feed-forward control),
    ``{"layers.0.sparse": ..., "layers.1.sparse": ...}`` (G2GNet). Analyses, counts and rewiring address
    weights by these names."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SparseWeight)}


def select_weight(model: nn.Module, name: str | None = None) -> tuple[str, SparseWeight]:
    """``(name, weight)`` of one sparse weight of ``model`` by its name in
    :func:`cortexnet.layers.sparse_weights` (e.g. ``"recurrent.rec"``, ``"layers.1.sparse"``). ``name=None``
    picks the model's only sparse weight, or its only recurrent one. Raises ``ValueError`` listing the names."""
    weights = sparse_weights(model)
    if name is not None:
        if name not in weights:
            raise ValueError(
                f"{type(model).__name__} has no sparse weight {name!r}; it has {', '.join(weights) or 'none'}"
            )
        return name, weights[name]
    if len(weights) == 1:
        return next(iter(weights.items()))
    recurrent = [n for n, m in model.named_modules() if isinstance(m, RecurrentLayer)]
    found = [(n, w) for n, w in weights.items() if n.rpartition(".")[0] in recurrent]
    if len(found) == 1:
        return found[0]
    raise ValueError(
        f"{type(model).__name__} has {len(weights)} sparse weights ({', '.join(weights) or 'none'}); "
        "pass weight=NAME to choose one"
    )


def apply_constraints(module: nn.Module) -> None:
    """Enforce every constraint (masks, Dale's law) of every submodule that has one, in place, now.

    Sparse weights are projected (and their version recorded); any other module with an
    ``apply_constraints_`` method takes part too, so new layer types plug in.
    """
    for m in module.modules():
        if isinstance(m, SparseWeight):
            project_(m)
        else:
            fn = getattr(m, "apply_constraints_", None)
            if fn is not None:
                fn()


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
