"""Layer-wise density budgets: Erdős–Rényi-Kernel (ERK) densities of RigL for multi-layer models.

RigL (Evci et al. 2020) and ``../shared/design/DST.md`` ("Initialisers", ERK): a model with an overall
density p spends its links unevenly across its sparse weights: layer l (``n_out × n_in``, dense) gets density

    d_l = ε · (n_in + n_out) / (n_in · n_out)                 (Erdős–Rényi; the "kernel" factor is for convs)

with one ε for the model, chosen so that the total number of links equals ``round(p · Σ_l possible_l)``. Small
layers get higher densities; a layer whose ``d_l`` would exceed 1 is made dense (density 1) and ε recomputed
for the others with the rest of the budget (RigL's loop; the excess goes to the layers that can take it),
until no density exceeds 1. ``dense_first`` keeps the first weight dense from the start (RigL's baselines keep
the first layer dense), its links counted in the budget. Then every layer is an exact-count Erdős–Rényi mask
at its density (:func:`cortexnet.connectivity.er.erdos_renyi` with ``exact=True``).

Exact: the model total, for models with at most one recurrent weight without self-connections (every model
here): a layer description tells only its own weight's recurrence, so each call excludes only its own diagonal.
The per-layer counts ``d_l · possible_l`` are not integers in general, so they are
apportioned by largest remainders (Hamilton): each layer gets ``⌊d_l · possible_l⌋`` links, and the remaining
links go one each to the layers with the largest fractional parts (ties: the earlier layer), so the counts
add up to ``round(p · Σ possible)`` exactly (:func:`erk_counts`) and each differs from ``d_l · possible_l``
by less than one link. A model with one sparse weight gets density p: ERK is then plain exact ER.

"possible": ``n_out · n_in`` for every shape of ``spec.shapes``; the weight being built excludes its diagonal
when it is a recurrent weight without self-connections (no other weight's recurrence is known to a layer
description: cortexnet's models with a recurrent sparse weight have just that one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from cortexnet.connectivity.base import (
    TOPOLOGIES,
    Connectivity,
    LayerSpec,
    check_density,
    drops_diagonal,
    possible_links,
    resolve_density,
    rounded_count,
)
from cortexnet.connectivity.er import erdos_renyi


def _check_shapes(shapes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    shapes = [(int(a), int(b)) for a, b in shapes]
    if not shapes:
        raise ValueError("erk needs at least one layer shape")
    for n_out, n_in in shapes:
        if n_out < 1 or n_in < 1:
            raise ValueError(f"layer shapes must have sizes >= 1, got {(n_out, n_in)}")
    return shapes


def _erk_solve(
    shapes: list[tuple[int, int]], budget: int, possible: list[int], dense_first: bool, density: float
) -> tuple[list[float], set[int]]:
    """Densities (dense layers at 1.0) spending exactly ``budget`` links, and the set of dense layers."""
    dense = {0} if dense_first else set()
    raw = [(n_in + n_out) / (n_in * n_out) for n_out, n_in in shapes]
    while True:
        remaining = budget - sum(possible[i] for i in dense)
        if remaining < 0:
            first = possible[0]
            raise ValueError(
                f"erk: the dense layer(s) {sorted(dense)} alone need {budget - remaining} links, more than the "
                f"budget round(p · Σ possible) = {budget} at p = {density} (dense_first keeps the first layer of "
                f"{first} links dense): raise p to >= {first / sum(possible):.4g} or set dense_first=False"
            )
        sparse = [i for i in range(len(shapes)) if i not in dense]
        if not sparse:
            return [1.0] * len(shapes), dense
        weight = sum(raw[i] * possible[i] for i in sparse)
        if weight == 0:  # only layers without allowed pairs (a 1 x 1 recurrent weight) are left
            return [1.0 if i in dense else 0.0 for i in range(len(shapes))], dense
        eps = remaining / weight
        over = [i for i in sparse if eps * raw[i] > 1.0]
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))], dense
        dense.update(over)


def erk_densities(
    shapes: Sequence[tuple[int, int]],
    density: float,
    *,
    dense_first: bool = False,
    possible: Sequence[int] | None = None,
) -> list[float]:
    """RigL's ERK density of every layer (module docstring).

    Args:
        shapes: ``(n_out, n_in)`` of every sparse weight, in order (``LayerSpec.shapes``).
        density: the model's overall density p in [0, 1].
        dense_first: keep the first layer dense (density 1, counted in the budget).
        possible: the possible links of every layer (default ``n_out · n_in``; less n for a recurrent weight
            without self-connections).

    Returns:
        densities ``d_l`` in [0, 1] with ``Σ d_l · possible_l = round(p · Σ possible_l)`` (up to float rounding;
        :func:`erk_counts` gives the exact integer counts).
    """
    shapes = _check_shapes(shapes)
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"erk density must be in [0, 1], got {density}")
    sizes = [a * b for a, b in shapes] if possible is None else [int(x) for x in possible]
    budget = rounded_count(density, sum(sizes))
    return _erk_solve(shapes, budget, sizes, dense_first, density)[0]


def erk_counts(
    shapes: Sequence[tuple[int, int]],
    density: float,
    *,
    dense_first: bool = False,
    possible: Sequence[int] | None = None,
) -> list[int]:
    """Exact link counts of the ERK layers: ``possible_l`` for dense layers, the largest-remainder
    apportionment of ``d_l · possible_l`` for the others; they add up to ``round(p · Σ possible_l)``."""
    shapes = _check_shapes(shapes)
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"erk density must be in [0, 1], got {density}")
    sizes = [a * b for a, b in shapes] if possible is None else [int(x) for x in possible]
    budget = rounded_count(density, sum(sizes))
    densities, dense = _erk_solve(shapes, budget, sizes, dense_first, density)
    counts = [
        sizes[i] if i in dense else min(sizes[i], math.floor(densities[i] * sizes[i]))
        for i in range(len(shapes))
    ]
    left = budget - sum(counts)
    sparse = sorted(
        (i for i in range(len(shapes)) if i not in dense),
        key=lambda i: (-(densities[i] * sizes[i] - counts[i]), i),
    )
    for i in sparse:  # largest remainders first; a full layer is skipped
        if left <= 0:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
            left -= 1
    if left != 0:  # pragma: no cover - floating point far off (cannot happen for sizes < 2**52)
        raise RuntimeError(f"erk apportionment left {left} links unplaced")
    return counts


@TOPOLOGIES.register("erk")
def erk(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    dense_first: bool = False,
    self_connections: bool | None = None,
) -> Connectivity:
    """Registered ``"erk"``: this weight's share of an ERK budget over all of ``spec.shapes``, as exact-count ER.

    Args:
        spec: the weight's description; ``spec.shapes`` and ``spec.index`` place it in the model.
        generator: explicit CPU ``torch.Generator``; same state → bit-identical mask.
        p: the model's overall density (default ``spec.density``): the model's total is
            ``round(p · Σ possible)`` over all its sparse weights (built with the same p and options).
        dense_first: keep the first weight (``spec.index == 0``) dense, as RigL's baselines do.
        self_connections: recurrent weights: allow the diagonal (default ``spec.self_connections``); without,
            this weight's possible pairs exclude the diagonal and none is placed.

    Measured once (peak RSS of the whole process, ~0.2 GB of it torch): N = 20,000, p = 0.1 recurrent (one
    weight, so exact ER, 39,998,000 links): 30.0 s, 1.12 GB peak on the 2-core dev box (shared). That is
    :func:`~cortexnet.connectivity.er.erdos_renyi`'s chunked exact draw, whose time is O(n_out · n_in) at any
    density (73 s at N = 20,000 even for p = 0.0005 on the loaded box). A 1568 × 1568 layer at 1 %: 0.3 s.
    """
    p = resolve_density(spec, p, "erk")
    drop_diag = drops_diagonal(spec, self_connections)
    sizes = [a * b for a, b in spec.shapes]
    sizes[spec.index] = possible_links(spec.n_out, spec.n_in, drop_diag)
    count = erk_counts(spec.shapes, p, dense_first=dense_first, possible=sizes)[spec.index]
    density = count / sizes[spec.index] if sizes[spec.index] else 0.0
    conn = erdos_renyi(
        spec.n_out, spec.n_in, p=density, generator=generator, self_connections=not drop_diag, exact=True
    )
    if conn.nnz != count:  # pragma: no cover - rounded_count of count / possible is count
        raise RuntimeError(f"erk placed {conn.nnz} links instead of {count}")
    return conn


def _check_erk_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of ``"erk"``: a density in [0, 1] (``p`` or the layer's) that the dense layers fit
    in (``dense_first``)."""
    p = check_density(spec, kwargs.get("p"), "erk")
    if spec is not None:
        sizes = [a * b for a, b in spec.shapes]
        sizes[spec.index] = possible_links(
            spec.n_out, spec.n_in, drops_diagonal(spec, kwargs.get("self_connections"))
        )
        erk_counts(spec.shapes, p, dense_first=kwargs.get("dense_first", False), possible=sizes)


erk.check_params = _check_erk_params  # type: ignore[attr-defined]
