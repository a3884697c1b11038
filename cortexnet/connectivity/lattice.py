"""Ring-lattice network-science initialisers: bipartite small-world (``"bsw"``), bipartite receptive field
(``"brf"``) and the dendritic network model (``"dnm"``), on feed-forward and recurrent layers.

Seeds 002 (BRF), 003 (BSW) and 004 (DNM); the definitions and the authors' pitfalls are those of
``shared/design/DST.md`` ("Initialisers"), followed where the authors' code differs. Every generator places
**exactly** ``round(p · possible)`` links (halves up, :func:`~cortexnet.connectivity.base.rounded_count`),
``possible = n_out · n_in`` less the ``n`` diagonal pairs on a recurrent layer without self-connections
(which then never gets a diagonal link), whatever ``spec.exact`` says. ``p`` defaults to the model's
connection probability ``spec.density``.

Geometry. Every node layer is a **ring**: node ``k`` of a layer of ``n`` sits at position ``k`` on a circle
of circumference ``n``; distances are ring distances ``min(|x - y|, n - |x - y|)``. Across a feed-forward
weight the two rings are aligned by scale: node ``i`` of a layer of ``n_a`` sits at the float position
``i · n_b / n_a`` of the other layer's ring (float centres: the authors' integer stride ``n_b // n_a``
leaves the end of the larger layer uncovered at non-integer aspect ratios). A recurrent layer is one ring
of ``N`` nodes, ``W[i, j]`` from node ``j`` to node ``i``; self-connections (distance 0) only if allowed.

Everything is built in index form: sorted int64 "allowed indices" (``row · per_row + column``, the
diagonal skipped when it is excluded) in row chunks of a few million entries, converted in place to
:class:`~cortexnet.connectivity.base.Connectivity`. No ``n_out × n_in`` tensor is ever created:
temporaries are row-chunk blocks of a few million entries (BRF scores every pair, one ``chunk × n`` block
at a time). Same ``torch.Generator`` state → bit-identical result (CPU; numpy only sorts and draws the
multivariate hypergeometric block counts, seeded from the generator).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cortexnet.connectivity.base import (
    TOPOLOGIES,
    Connectivity,
    LayerSpec,
    check_density,
    drops_diagonal,
    merge_disjoint,
    need_generator,
    numpy_rng,
    possible_links,
    resolve_density,
    rounded_count,
    row_top_k,
    spread,
)

#: Degree distributions of ``"brf"``.
BRF_DEGREES: tuple[str, ...] = ("fixed", "uniform")

#: Branch-count (degree) and synapses-per-branch (synaptic) distributions of ``"dnm"`` (seed 004: no uniform).
DNM_DISTRIBUTIONS: tuple[str, ...] = ("fixed", "spatial_gaussian")

#: Default number of dendritic branches per neuron of ``"dnm"`` when neither branches nor synapses is given.
DNM_DEFAULT_BRANCHES = 4

#: Elements per temporary block (links of a row chunk, or BRF scores of a row chunk): ~32 MB of int64.
_CHUNK = 4_000_000

#: Size of one block of the rank space sampled by :func:`uniform_subset` (bounds its temporaries).
_BLOCK = 1 << 24


# ----------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------


def link_total(spec: LayerSpec, p: float | None = None, self_connections: bool | None = None) -> int:
    """The exact number of links ``"bsw"``, ``"brf"`` and ``"dnm"`` place: ``round(p · possible)``."""
    drop = drops_diagonal(spec, self_connections)
    return rounded_count(resolve_density(spec, p, "lattice"), possible_links(spec.n_out, spec.n_in, drop))


def apportion(total: int, weights: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Integers ``x`` with ``lo <= x <= hi``, ``sum(x) == total`` and ``x`` proportional to ``weights`` as
    nearly as the bounds allow: ``x ≈ clamp(λ · w, lo, hi)`` with λ found by bisection, rounded by largest
    remainder (ties to the lower index). Deterministic. Needs ``sum(lo) <= total <= sum(hi)``."""
    w = weights.to(torch.float64).clamp_min(1e-300)
    lo, hi = lo.to(torch.int64), hi.to(torch.int64)
    if not int(lo.sum()) <= total <= int(hi.sum()):
        raise ValueError(
            f"cannot apportion {total} within bounds summing to [{int(lo.sum())}, {int(hi.sum())}]"
        )
    lo_f, hi_f = lo.to(torch.float64), hi.to(torch.float64)
    a, b = 0.0, float((hi_f / w).max()) + 1.0
    for _ in range(200):
        mid = 0.5 * (a + b)
        if float(torch.clamp(mid * w, lo_f, hi_f).sum()) < total:
            a = mid
        else:
            b = mid
    v = torch.clamp(b * w, lo_f, hi_f)
    x = torch.minimum(torch.maximum(v.floor().to(torch.int64), lo), hi)
    frac = v - x.to(torch.float64)
    while True:
        r = total - int(x.sum())
        if r == 0:
            return x
        # Entries that may move, best first: +1 by largest remainder, -1 by smallest (ties: lower index).
        room = x < hi if r > 0 else x > lo
        key = torch.where(room, -frac if r > 0 else frac, torch.inf)
        pick = torch.argsort(key, stable=True)[: min(abs(r), int(room.sum()))]
        x[pick] += 1 if r > 0 else -1
        frac[pick] = 0.0


def _unique_sorted(x: Tensor) -> Tensor:
    """Sorted distinct values of an int64 tensor (numpy's sort: several times faster than torch.unique)."""
    v = np.sort(x.numpy())
    if v.size:
        v = v[np.concatenate(([True], v[1:] != v[:-1]))]
    return torch.from_numpy(v)


def _distinct_sorted(size: int, m: int, generator: torch.Generator) -> Tensor:
    """``m`` distinct integers of ``[0, size)``, uniform among all such sets, sorted (int64). Rejection with
    de-duplication for ``m <= size / 2`` (uniform by exchangeability: the kept set's law is invariant under
    permutations of ``[0, size)``), else the complement of ``size - m`` drawn that way. O(m) memory."""
    if m <= 0:
        return torch.empty(0, dtype=torch.int64)
    if m >= size:
        return torch.arange(size, dtype=torch.int64)
    if 2 * m > size:
        mask = torch.ones(size, dtype=torch.bool)
        mask[_distinct_sorted(size, size - m, generator)] = False
        return mask.nonzero().flatten()
    # Expected draws for m distinct values: size · ln(size / (size - m)); 5 % and a constant of margin.
    draws = math.ceil(-size * math.log1p(-m / size) * 1.05) + 64
    have = _unique_sorted(torch.randint(0, size, (draws,), generator=generator, dtype=torch.int64))
    while have.numel() < m:
        free = size - have.numel()
        more = math.ceil((m - have.numel()) * size / free * 1.3) + 64
        fresh = torch.randint(0, size, (more,), generator=generator, dtype=torch.int64)
        have = _unique_sorted(torch.cat([have, fresh]))
    if have.numel() > m:
        have = torch.from_numpy(np.sort(have[torch.randperm(have.numel(), generator=generator)[:m]].numpy()))
    return have


def uniform_subset(size: int, m: int, generator: torch.Generator) -> Tensor:
    """``m`` distinct integers of ``[0, size)`` chosen uniformly among all such sets, sorted (int64), in
    memory bounded by blocks of 2^24: the per-block counts are multivariate hypergeometric (numpy, seeded from
    ``generator``), then each block is sampled on its own."""
    if size <= _BLOCK:
        return _distinct_sorted(size, m, generator)
    sizes = np.full(math.ceil(size / _BLOCK), _BLOCK, dtype=np.int64)
    sizes[-1] = size - _BLOCK * (sizes.size - 1)
    counts = numpy_rng(generator, "lattice").multivariate_hypergeometric(sizes, m, method="marginals")
    out = torch.empty(m, dtype=torch.int64)
    filled = 0
    for k, (n, c) in enumerate(zip(sizes.tolist(), counts.tolist(), strict=True)):
        out[filled : filled + c] = _distinct_sorted(n, c, generator) + k * _BLOCK
        filled += c
    return out


def _sample_free(blocked: Tensor, space: int, m: int, generator: torch.Generator) -> Tensor:
    """``m`` positions of ``[0, space)`` not in the sorted int64 ``blocked``, uniform among all such sets,
    sorted. The t-th free position is ``t + #{k : blocked[k] - k <= t}``."""
    ranks = uniform_subset(space - blocked.numel(), m, generator)
    shifted = blocked - torch.arange(blocked.numel(), dtype=torch.int64)
    # numpy's searchsorted is fast for sorted queries (each search starts from the previous result).
    ranks += torch.from_numpy(np.searchsorted(shifted.numpy(), ranks.numpy(), side="right"))
    return ranks


def _row_chunks(cost: Tensor, budget: int = _CHUNK) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed ``cost`` stays within ``budget`` (at least one row each)."""
    n = cost.numel()
    cum = torch.cumsum(cost.to(torch.int64), 0)
    out, start, done = [], 0, 0
    while start < n:
        stop = int(torch.searchsorted(cum, done + budget, right=True))
        stop = max(stop, start + 1)
        out.append((start, stop))
        done = int(cum[stop - 1])
        start = stop
    return out


def _ring_arcs(lo: Tensor, counts: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Arcs of a ring of ``m``: row ``k`` holds ``lo[k], lo[k] + 1, ..., lo[k] + counts[k] - 1`` (mod m,
    counts <= m). Returns ``(values, valid)``: ``(rows, max count)`` values sorted within each row, and
    which of them are real (``t < counts[k]``). A wrapped arc ``[s, m) ∪ [0, e)`` sorts to ``0 .. e-1,
    s .. m-1``."""
    t = torch.arange(int(counts.max()) if counts.numel() else 0, dtype=torch.int64)[None, :]
    start = torch.remainder(lo, m)[:, None]
    d = counts[:, None]
    end = start + d - m  # > 0: the arc wraps and its first `end` sorted values are 0 .. end - 1
    values = torch.where(end > 0, torch.where(t < end, t, t + m - d), start + t)
    return values, t < d


def _ring_blocks(lo: Tensor, slots: Tensor, counts: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Ring positions ``lo[k] + slots[k, t]`` (mod m) of increasing ``slots`` spanning fewer than ``m``
    (``(rows, max count)``, the first ``counts[k]`` real), sorted within each row: wrapped values come first,
    a rotation of the row. Returns ``(values, valid)``."""
    t = torch.arange(slots.shape[1], dtype=torch.int64)[None, :]
    valid = t < counts[:, None]
    raw = torch.remainder(lo, m)[:, None] + slots
    wrapped = (raw >= m) & valid
    raw = torch.where(raw >= m, raw - m, raw)
    k = counts.clamp_min(1)[:, None]
    shift = k - wrapped.sum(dim=1, keepdim=True)  # position of the first wrapped value in the row
    values = raw.gather(1, torch.remainder(t + shift, k).clamp_max(slots.shape[1] - 1))
    return values, valid


def _allowed(rows: Tensor, cols: Tensor, n_in: int, drop_diag: bool) -> Tensor:
    """Allowed index of each ``(row, col)``: ``row · per_row + col``, the diagonal skipped when dropped."""
    if drop_diag:
        return rows * (n_in - 1) + cols - (cols > rows).to(torch.int64)
    return rows * n_in + cols


def _to_connectivity(links: Tensor, n_out: int, n_in: int, drop_diag: bool) -> Connectivity:
    """Sorted allowed indices → :class:`Connectivity`, converted in place chunk by chunk (no second copy)."""
    per_row = n_in - 1 if drop_diag else n_in
    crow = torch.searchsorted(links, torch.arange(n_out + 1, dtype=torch.int64) * per_row)
    for s in range(0, links.numel(), _CHUNK):
        x = links[s : s + _CHUNK]
        rows = torch.div(x, per_row, rounding_mode="floor")
        cols = x - rows * per_row
        if drop_diag:
            cols += (cols >= rows).to(torch.int64)
        links[s : s + _CHUNK] = cols
    return Connectivity(n_out, n_in, crow, links)


def _check_unit(name: str, key: str, value: float, *, open_low: bool = False, fix: str = "") -> None:
    ok = (0.0 < value <= 1.0) if open_low else (0.0 <= value <= 1.0)
    if not ok:
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} {key} must be in {interval}, got {value}{fix}")


def _check_choice(name: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} {key} must be one of {choices}, got {value!r}")


# ----------------------------------------------------------------------------------------------------------
# BSW: bipartite small world
# ----------------------------------------------------------------------------------------------------------


def _window_starts(n_large: int, n_small: int, degrees: Tensor) -> Tensor:
    """round(j · n_small / n_large - (d_j - 1) / 2), halves up: the start of node j's window of d_j nodes,
    whose middle is on j's scaled position (exact integer arithmetic)."""
    j = torch.arange(n_large, dtype=torch.int64)
    return torch.div(2 * j * n_small - (degrees - 2) * n_large, 2 * n_large, rounding_mode="floor")


def ring_lattice(n_out: int, n_in: int, total: int, *, recurrent: bool, drop_diag: bool) -> Tensor:
    """The BSW lattice (β = 0) as sorted allowed indices (see module docstring), ``total`` links.

    Feed-forward: the nodes of the larger side each take a window of consecutive nodes (modulo the ring)
    of the smaller side, ``d_j`` of them from ``round(j · n_small / n_large - (d_j - 1) / 2)`` (halves up),
    with the degrees :func:`spread` (⌊K⌋ or ⌊K⌋ + 1, K = total / n_large) so that the total is exact
    (DST.md; its ``int(j · n_small / n_large - d_j / 2)`` puts a window half a node left of the node's
    position). Recurrent: node ``i`` takes its ``d_i`` nearest ring neighbours as inputs, alternately
    ``i - 1, i + 1, i - 2, i + 2, ...`` (itself first when self-connections are allowed): the arc from
    ``i - ⌈d'/2⌉`` to ``i + ⌊d'/2⌋``, d' = d_i less the self link."""
    # Each row's window is an arc of a ring of m "allowed columns" (for a recurrent layer without
    # self-connections the N - 1 other nodes: node j != i is allowed column j - (j > i), and the ring
    # neighbours i - a .. i - 1, i + 1 .. i + b are the contiguous allowed columns i - a .. i + b - 1).
    if recurrent:
        n_rows, m = n_out, n_out - (1 if drop_diag else 0)
    elif n_out >= n_in:
        n_rows, m = n_out, n_in
    else:
        n_rows, m = n_in, n_out  # built transposed: the inputs are the larger side
    degrees = spread(total, n_rows)
    if recurrent:
        has_self = (degrees > 0) & (not drop_diag)
        lo = torch.arange(n_rows, dtype=torch.int64) - (degrees - has_self.to(torch.int64) + 1) // 2
    else:
        lo = _window_starts(n_rows, m, degrees)
    out = torch.empty(total, dtype=torch.int64)
    filled = 0
    for r0, r1 in _row_chunks(degrees + 1):
        values, valid = _ring_arcs(lo[r0:r1], degrees[r0:r1], m)
        rows = torch.arange(r0, r1, dtype=torch.int64)[:, None]
        if recurrent or n_out >= n_in:
            values += rows * m  # allowed index = row · per_row + allowed column
        else:
            values = values * n_in + rows  # flat index of (output, input) = (column, row) of the transpose
        chunk = values[valid]
        out[filled : filled + chunk.numel()] = chunk
        filled += chunk.numel()
    if not recurrent and n_out < n_in:
        out.numpy().sort()
    return out


def _rewire(links: Tensor, space: int, beta: float, generator: torch.Generator) -> Tensor:
    """Remove each link with probability β (compacted in place), then place as many uniformly at random among
    the free allowed positions (any allowed pair not holding a kept link, so a removed link may return)."""
    filled = 0
    for s in range(0, links.numel(), _CHUNK):
        chunk = links[s : s + _CHUNK]
        kept = chunk[torch.rand(chunk.numel(), generator=generator) >= beta]
        links[filled : filled + kept.numel()] = kept
        filled += kept.numel()
    kept = links[:filled]
    added = _sample_free(kept, space, links.numel() - filled, generator)
    return merge_disjoint(kept, added)


@TOPOLOGIES.register("bsw")
def bsw(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    beta: float = 0.25,
    self_connections: bool | None = None,
) -> Connectivity:
    """Bipartite small-world (BSW, seed 003; DST.md): a ring lattice, each link then rewired with
    probability β.

    Feed-forward: the nodes of the **larger** side each get a window of consecutive nodes of the smaller
    side (modulo the ring), centred on their scaled position: node ``j`` takes ``d_j`` nodes from
    ``round(j · n_small / n_large - (d_j - 1) / 2)`` (DST.md's ``int(j · n_small / n_large - d_j / 2)``,
    centred: that one sits half a node to the left), ``d_j`` = ⌊K⌋ or ⌊K⌋ + 1 evenly spread (K = p ·
    n_small), so the lattice has exactly ``round(p · n_out · n_in)`` links and, when K >= 1, every node of
    both sides has one. **Recurrent** (one ring of N nodes): a directed Watts–Strogatz ring lattice: node
    ``i`` receives from its ``d_i`` nearest ring neighbours (``i - 1, i + 1, i - 2, i + 2, ...``; the node
    itself first, only with self-connections), ``d_i`` = ⌊K⌋ or ⌊K⌋ + 1 with K = p · (N - 1) (p · N with
    self-connections): in-degrees fixed, out-degrees within one of them.

    Rewiring: every lattice link is removed with probability ``beta`` and as many links are placed
    uniformly at random among the allowed pairs not holding a kept link (DST.md's BSW rule). Unlike the
    original Watts–Strogatz, which keeps the postsynaptic end, this lets the in-degrees change, so β = 1 is
    exactly Erdős–Rényi with the exact link total (a uniform ``round(p · possible)``-subset of the allowed
    pairs, as ``er`` with ``exact=True``, though not the same draws). β = 0 is the lattice (deterministic:
    ``generator`` may be None). The total is always exact; no duplicates; no diagonal on a recurrent layer
    without self-connections.

    Args:
        spec: the layer description.
        generator: explicit CPU ``torch.Generator`` (needed when β > 0); same state → bit-identical result.
        p: connection probability in [0, 1]; default ``spec.density`` (error if neither).
        beta: rewiring probability in [0, 1]. Default **0.25**, the value seed 003 finds best and the
            authors' LLM script uses; their MLP script silently defaults to 1.0, which is plain ER.
        self_connections: recurrent layers: allow the diagonal (default ``spec.self_connections``).

    Cost: O(nnz) memory (the links, one copy while merging, the ~β·nnz re-placed ones), O(nnz log nnz)
    time, no N × N array. N = 20,000, p = 0.1 recurrent (4e7 links, 320 MB of int64 columns): β = 0.25:
    4.3 s, 1.25 GB peak RSS; β = 1: 6.5 s, 1.3 GB; β = 0: 1.1 s, 0.86 GB on the 2-core dev box (peak RSS
    of the whole process, 0.23 GB of it Python + torch; times ~2.5x longer when the box is shared).
    """
    p = resolve_density(spec, p, "bsw")
    _check_unit("bsw", "beta", beta, fix=" (0 = ring lattice, 1 = Erdős–Rényi; seed 003: 0.25)")
    drop = drops_diagonal(spec, self_connections)
    space = possible_links(spec.n_out, spec.n_in, drops_diagonal(spec, self_connections))
    total = rounded_count(p, space)
    if total == 0:
        return _to_connectivity(torch.empty(0, dtype=torch.int64), spec.n_out, spec.n_in, drop)
    links = ring_lattice(spec.n_out, spec.n_in, total, recurrent=spec.recurrent, drop_diag=drop)
    if beta > 0.0:
        links = _rewire(links, space, beta, need_generator("bsw", generator))
    return _to_connectivity(links, spec.n_out, spec.n_in, drop)


def _check_bsw_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of ``"bsw"``: a density in [0, 1] (from p or the layer) and β in [0, 1]."""
    check_density(spec, kwargs.get("p"), "bsw")
    beta = kwargs.get("beta", 0.25)
    _check_unit("bsw", "beta", beta, fix=" (0 = ring lattice, 1 = Erdős–Rényi; seed 003: 0.25)")


bsw.check_params = _check_bsw_params  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------
# BRF: bipartite receptive field
# ----------------------------------------------------------------------------------------------------------


def brf_degrees(
    total: int, n_rows: int, cap: int, degree: str, generator: torch.Generator | None = None
) -> Tensor:
    """Links of each sampling row of ``"brf"``: ``"fixed"`` :func:`spread` (⌊K⌋ or ⌊K⌋ + 1), or ``"uniform"``:
    1 + a random share of the other ``total - n_rows`` links, proportional to U(0, 1) weights (rounded by
    largest remainder, at most ``cap``), so the degrees are roughly uniform on [1, 2K - 1] with mean K.
    Both sum to ``total`` exactly."""
    if degree == "fixed":
        return spread(total, n_rows)
    weights = torch.rand(n_rows, generator=need_generator("brf", generator), dtype=torch.float64)
    lo = torch.full((n_rows,), 1 if total >= n_rows else 0, dtype=torch.int64)
    return apportion(total, weights, lo, torch.full((n_rows,), cap, dtype=torch.int64))


@TOPOLOGIES.register("brf")
def brf(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    r: float = 0.3,
    degree: str = "fixed",
    self_connections: bool | None = None,
) -> Connectivity:
    """Bipartite receptive field (BRF, seed 002; DST.md): links fall off with ring distance from a node's
    centre, with the randomness parameter ``r``.

    Feed-forward: the nodes of the **smaller** side sample their links (the matrix is transposed to fit
    when n_out > n_in; on a square feed-forward layer the outputs sample). Node ``i`` of the sampling side
    has its centre at the float position ``c_i = i · n_other / n_sampling`` of the other ring (not the
    authors' integer stride, which leaves the end of the ring uncovered) and draws its ``d_i`` partners
    without replacement with probability ∝ ``(1 + ring_distance(j, c_i))^(-α)``, α = (1 - r) / r,
    sequentially (the law of successive weighted draws, via Efraimidis–Spirakis / Gumbel top-k keys, exact
    up to float32 ties of the keys). r = 1: uniform (Erdős–Rényi rows); r → 0: the ``d_i`` nearest nodes,
    distance ties broken at random. **Recurrent** (one ring of N nodes): the classic cortical model of a
    connection probability falling with distance: node ``i`` draws its ``d_i`` presynaptic partners among
    the other nodes with probability ∝ ``(1 + ring_distance(i, j))^(-α)`` (itself, distance 0, only with
    self-connections), so ``degree`` sets the in-degree distribution.

    Degrees (``degree``): ``"fixed"``: ⌊K⌋ or ⌊K⌋ + 1, evenly spread; ``"uniform"`` (the authors' code):
    1 + a random share of the remaining links, roughly uniform on [1, 2K - 1]; see :func:`brf_degrees`.
    Both give exactly ``round(p · possible)`` links. For α beyond 100 · n (r < ~0.01 / n) the weights are
    capped at α = 100 · n, where the draws are already nearest-first at every distance (ties at random).

    Args:
        spec: the layer description.
        generator: explicit CPU ``torch.Generator``; same state → bit-identical result.
        p: connection probability in [0, 1]; default ``spec.density`` (error if neither).
        r: randomness in (0, 1] (default 0.3, seed 002's LLaMA setting; DST.md: 0.25–0.3).
        degree: ``"fixed"`` (default) or ``"uniform"``.
        self_connections: recurrent layers: allow the diagonal (default ``spec.self_connections``).

    Cost: O(nnz) memory plus one ``chunk × n`` score block (~16–32 MB); time O(n_out · n_in) (every pair
    gets a score). N = 20,000, p = 0.1 recurrent (4e7 links, 320 MB of int64 columns), r = 0.3: fixed
    degrees 13.9 s, 0.79 GB peak RSS; uniform 11.2 s, 0.87 GB on the 2-core dev box (whole process, 0.23 GB
    of it Python + torch; ~2.5x longer when the box is shared).
    """
    p = resolve_density(spec, p, "brf")
    _check_unit("brf", "r", r, open_low=True, fix=" (r -> 0: nearest neighbours, r = 1: uniform)")
    _check_choice("brf", "degree", degree, BRF_DEGREES)
    generator = need_generator("brf", generator)
    drop = drops_diagonal(spec, self_connections)
    n_out, n_in = spec.n_out, spec.n_in
    possible = possible_links(n_out, n_in, drop)
    total = rounded_count(p, possible)
    if total == 0:
        return _to_connectivity(torch.empty(0, dtype=torch.int64), n_out, n_in, drop)
    if total == possible:  # every allowed pair: nothing to sample
        return Connectivity.full(n_out, n_in, self_connections=not drop)
    transposed = not spec.recurrent and n_out > n_in
    n_rows, n_cols = (n_in, n_out) if transposed else (n_out, n_in)
    degrees = brf_degrees(total, n_rows, n_cols - (1 if drop else 0), degree, generator)
    alpha = min((1.0 - r) / r, 100.0 * n_cols)
    # Keys (smallest win): E · (1 + dist)^α with E ~ Exp(1), i.e. Efraimidis–Spirakis / Gumbel top-k, exact
    # sequential weighted sampling without replacement. In float32 while the factor stays below e^80, float64
    # below e^700, and beyond that in logs (log E + α log(1 + dist)).
    span = alpha * math.log1p(n_cols / 2)
    dtype = torch.float32 if span <= 80 else torch.float64
    in_logs = span > 700

    def distance_term(dist: Tensor) -> Tensor:
        return (alpha * torch.log1p(dist) if in_logs else torch.pow(1.0 + dist, alpha)).to(dtype)

    cols_f = torch.arange(n_cols, dtype=torch.float64)
    if spec.recurrent:
        # Distance term of offset o = j - i (mod N), laid out twice so that row i is one contiguous window.
        table = distance_term(torch.minimum(cols_f, n_cols - cols_f))
        windows = torch.cat([table, table]).unfold(0, n_cols, 1)
    out = torch.empty(total, dtype=torch.int64)
    filled = 0
    chunk = max(1, _CHUNK // n_cols)
    for r0 in range(0, n_rows, chunk):
        r1 = min(n_rows, r0 + chunk)
        rows = torch.arange(r0, r1, dtype=torch.int64)
        if spec.recurrent:
            scores = windows[n_cols - rows]  # advanced indexing: a copy
        else:
            centre = rows.to(torch.float64) * (n_cols / n_rows)
            d = torch.remainder(cols_f[None, :] - centre[:, None], n_cols)
            scores = distance_term(torch.minimum(d, n_cols - d))
            del d
        # E = -log(1 - U) ~ Exp(1), finite for every U in [0, 1) (-log U is +inf at U = 0, which would tie
        # with the excluded diagonal's +inf and let topk pick the diagonal).
        noise = torch.rand(r1 - r0, n_cols, dtype=dtype, generator=generator).neg_().log1p_().neg_()
        if in_logs:
            scores += noise.log_()
        else:
            scores *= noise
        del noise
        if drop:
            scores[rows - r0, rows] = torch.inf
        counts = degrees[r0:r1]
        picked = row_top_k(scores, counts, largest=False)
        del scores
        rows_flat = rows.repeat_interleave(counts)
        out[filled : filled + picked.numel()] = (
            picked * n_in + rows_flat if transposed else _allowed(rows_flat, picked, n_in, drop)
        )
        filled += picked.numel()
    if transposed:
        out.numpy().sort(kind="stable")
    return _to_connectivity(out, n_out, n_in, drop)


def _check_brf_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of ``"brf"``: a density in [0, 1], r in (0, 1], a known degree distribution."""
    check_density(spec, kwargs.get("p"), "brf")
    r = kwargs.get("r", 0.3)
    _check_unit("brf", "r", r, open_low=True, fix=" (r -> 0: nearest neighbours, r = 1: uniform)")
    _check_choice("brf", "degree", kwargs.get("degree", "fixed"), BRF_DEGREES)


brf.check_params = _check_brf_params  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------
# DNM: dendritic network model
# ----------------------------------------------------------------------------------------------------------


def _gaussian_profile(n: int, sigma: float) -> Tensor:
    """exp(-(u - 1/2)^2 / (2 σ^2)) at u = (k + 1/2) / n: a bump over the node's position in its layer."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.exp(-((u - 0.5) ** 2) / (2.0 * sigma**2))


def _check_dnm_ranges(
    branches: int | None,
    synapses: int | None,
    window: float | None,
    degree_distribution: str,
    synaptic_distribution: str,
    sigma: float,
) -> None:
    for key, value in (
        ("degree_distribution", degree_distribution),
        ("synaptic_distribution", synaptic_distribution),
    ):
        _check_choice("dnm", key, value, DNM_DISTRIBUTIONS)
    if not sigma > 0:
        raise ValueError(
            f"dnm sigma (width of the spatial Gaussian, a fraction of the layer) must be > 0, got {sigma}"
        )
    if branches is not None and synapses is not None:
        raise ValueError(
            f"dnm takes branches or synapses, not both (got branches={branches}, synapses={synapses}): the "
            "density p fixes their product (branches x synapses ~ p x inputs); set one of them and p"
        )
    for key, value in (("branches", branches), ("synapses", synapses)):
        if value is not None and value < 1:
            raise ValueError(f"dnm {key} must be an integer >= 1, got {value}")
    if window is not None:
        _check_unit("dnm", "window", window, open_low=True, fix=" (a fraction of the presynaptic layer)")


def dnm_plan(
    spec: LayerSpec,
    *,
    p: float | None = None,
    branches: int | None = None,
    synapses: int | None = None,
    window: float | None = None,
    degree_distribution: str = "fixed",
    synaptic_distribution: str = "fixed",
    sigma: float = 0.25,
    self_connections: bool | None = None,
) -> tuple[Tensor, Tensor, int]:
    """``(branches_per_neuron, links_per_neuron, window_slots)`` of ``"dnm"`` on ``spec`` (cheap: O(n_out));
    raises ``ValueError`` naming the bad value, the range and the fix when the parameters cannot be met.

    See :func:`dnm`. Links per neuron sum to ``round(p · possible)`` exactly; each neuron's links fit its
    window with a gap between consecutive branches (``links + branches - 1 <= window_slots``)."""
    p = resolve_density(spec, p, "dnm")
    _check_dnm_ranges(branches, synapses, window, degree_distribution, synaptic_distribution, sigma)
    n_out = spec.n_out
    drop = drops_diagonal(spec, self_connections)
    slots = spec.n_in - (1 if drop else 0)
    total = rounded_count(p, possible_links(spec.n_out, spec.n_in, drops_diagonal(spec, self_connections)))
    mean_links = total / n_out
    if synapses is not None:
        branches = max(1, math.floor(mean_links / synapses + 0.5))
    elif branches is None:
        # Default: 4 branches, fewer where a neuron has fewer links than that, or too many for separate
        # branches (K + B - 1 <= inputs).
        widest = -(-total // n_out)
        branches = max(1, min(DNM_DEFAULT_BRANCHES, total // n_out, (slots + 1) // 2, slots + 1 - widest))
    n_branches = n_out * branches
    max_per_neuron = (slots + 1) // 2  # branches separated by a gap: b + (b - 1) <= slots
    if slots == 0:
        raise ValueError("dnm: this layer has no allowed pair (a single node without self-connections)")
    if total < n_branches or branches > max_per_neuron:
        fewer = max(1, min(total // n_out, max_per_neuron))
        p_min = min(
            1.0,
            n_out
            * min(branches, max_per_neuron)
            / possible_links(spec.n_out, spec.n_in, drops_diagonal(spec, self_connections)),
        )
        lower = f"lower branches (to at most {fewer}) or " if fewer < branches else ""
        raise ValueError(
            f"dnm: {n_out} neurons x {branches} branches need {n_branches} links (one synapse per branch "
            f"at least) and at most {max_per_neuron} branches fit {slots} inputs, but p = {p} gives {total} "
            f"links ({mean_links:.3g} per neuron): {lower}raise p (to at least {p_min:.3g})"
        )
    ones = torch.ones(n_out, dtype=torch.int64)
    if degree_distribution == "fixed":
        per_neuron = ones * branches
    else:
        per_neuron = apportion(n_branches, _gaussian_profile(n_out, sigma), ones, ones * max_per_neuron)
    # Links per neuron: its branches times the synaptic profile (1 or the Gaussian bump), at least one synapse
    # per branch, at most what its window holds beside the gaps.
    weight = per_neuron.to(torch.float64)
    if synaptic_distribution == "spatial_gaussian":
        weight = weight * _gaussian_profile(n_out, sigma)
    if window is None:
        cap = slots - per_neuron + 1
        if int(cap.sum()) < total:
            raise ValueError(
                f"dnm: p = {p} gives {total} links but {n_out} neurons with {branches} separate branches "
                f"(a free input between consecutive branches) hold at most {int(cap.sum())} among {slots} "
                "inputs: lower p or branches"
            )
    else:
        w_slots = max(1, rounded_count(window, slots))
        cap = w_slots - per_neuron + 1
        if bool((cap < per_neuron).any()) or int(cap.clamp_min(0).sum()) < total:
            need = -(-total // n_out) + int(per_neuron.max()) - 1
            raise ValueError(
                f"dnm window = {window} holds {w_slots} of {slots} inputs: too small for {total} links in "
                f"{n_branches} branches (a neuron's links + branches - 1 must fit its window, here about "
                f"{need} slots): raise window (to at least ~{min(1.0, need / slots):.3g}) or omit it (auto), "
                "or lower p"
            )

    def split(cap: Tensor) -> Tensor:
        if degree_distribution == "fixed" and synaptic_distribution == "fixed":
            links = spread(total, n_out)  # equal weights: the evenly spread split
            return apportion(total, weight, per_neuron, cap) if bool((links > cap).any()) else links
        return apportion(total, weight, per_neuron, cap)

    links = split(cap)
    if window is None:
        # Auto window: twice the widest neuron's extent (links + gaps), so the branches have room to move.
        w_slots = min(slots, 2 * int((links + per_neuron - 1).max()))
    if w_slots >= slots and bool((per_neuron >= 2).any()):
        # A window that is the whole ring closes on itself: B branches need B gaps there, not B - 1, or the
        # last block would touch the first.
        ring_cap = torch.where(per_neuron >= 2, slots - per_neuron, cap)
        if bool((ring_cap < per_neuron).any()) or int(ring_cap.clamp_min(0).sum()) < total:
            raise ValueError(
                f"dnm: p = {p} gives {total} links, but with the window the whole ring of {slots} inputs, "
                f"{n_out} neurons with {branches} separate branches (a free input between any two, around the "
                f"ring) hold at most {int(ring_cap.clamp_min(0).sum())}: lower p or branches"
            )
        if bool((links > ring_cap).any()):
            links = split(ring_cap)
    return per_neuron, links, w_slots


@TOPOLOGIES.register("dnm")
def dnm(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    branches: int | None = None,
    synapses: int | None = None,
    window: float | None = None,
    degree_distribution: str = "fixed",
    synaptic_distribution: str = "fixed",
    sigma: float = 0.25,
    self_connections: bool | None = None,
) -> Connectivity:
    """Dendritic network model (DNM, seed 004): every postsynaptic neuron connects through several
    dendritic branches, each a **consecutive block** of presynaptic nodes, all inside the neuron's
    receptive window.

    No public code exists (DST.md); this is our reading of the seed, with the density as the budget:

    * **Branches** per neuron B_i (the "degree distribution"): ``fixed``: exactly ``branches`` each;
      ``spatial_gaussian``: ∝ g(u_i), each >= 1, summing exactly to ``n_out · branches``.
    * **Links** per neuron K_i ∝ B_i · s_i, s_i = 1 (``fixed`` synaptic distribution) or g(u_i)
      (``spatial_gaussian``), rounded by largest remainder to the exact total (fixed/fixed: ⌊K⌋ or ⌊K⌋ + 1,
      evenly spread), at least one synapse per branch and at most what the window holds. A neuron's K_i
      links are split evenly over its B_i branches (sizes differ by at most one): synapses per branch are
      constant for a fixed synaptic distribution and follow g for spatial_gaussian.
    * g(u) = exp(-(u - 1/2)^2 / (2 σ^2)), u_i = (i + 1/2) / n_out: the "spatial Gaussian" is a bump over
      the neuron's position in its layer (centre neurons get more / longer branches; σ = ``sigma``, a
      fraction of the layer). Seed 004 names the distributions without defining them: this is our reading.
    * What is exact: the link total ``round(p · possible)``, always (configurations that cannot meet it are
      rejected with the fix); the branch counts (each ``branches``, or their sum); branch sizes within a
      neuron to one. The per-neuron profiles hold up to rounding (and the window's cap).
    * Pass ``branches`` (default 4; fewer when a neuron has fewer than 4 links, or too many links for 4
      separate branches among its inputs) *or* ``synapses`` (the mean per branch; then branches = round(K /
      synapses), at least 1): the density p fixes their product.
    * **Window**: W = ``round(window · n_slots)`` consecutive presynaptic nodes (``window`` a fraction of
      the layer; n_slots = n_in, or N - 1 on a recurrent layer without self-connections); default None:
      twice the widest neuron's extent, ``min(n_slots, 2 · max_i(K_i + B_i - 1))``. Feed-forward: centred on
      the neuron's scaled position ``i · n_in / n_out`` on the input ring (a window may wrap around the end
      of the ring, as the BSW/BRF rings do). **Recurrent**: the W ring neighbours around node ``i``
      (⌊W/2⌋ before it, the rest after; the node itself is a slot only with self-connections), so every
      node's branches take consecutive blocks of nodes near it on the ring; a block may straddle the node
      itself, skipping it.
    * **Placement**: the B_i blocks in order, with at least one free slot between consecutive blocks (so
      branches stay distinct); the remaining W - K_i - (B_i - 1) free slots are split among the B_i + 1 gaps
      uniformly at random (every arrangement equally likely). Hence K_i + B_i - 1 <= W.

    Args:
        spec: the layer description.
        generator: explicit CPU ``torch.Generator``; same state → bit-identical result.
        p: connection probability in [0, 1]; default ``spec.density`` (error if neither).
        branches: dendritic branches per neuron (the mean for spatial_gaussian), >= 1; default 4 (fewer
            where needed, above).
        synapses: mean synapses per branch, >= 1 (instead of ``branches``).
        window: receptive window as a fraction of the presynaptic layer, in (0, 1]; default None (auto).
        degree_distribution: branches per neuron, ``"fixed"`` or ``"spatial_gaussian"``.
        synaptic_distribution: synapses per branch, ``"fixed"`` or ``"spatial_gaussian"``.
        sigma: width of the spatial Gaussian, a fraction of the layer, > 0 (default 0.25).
        self_connections: recurrent layers: allow the diagonal (default ``spec.self_connections``).

    Cost: O(nnz) memory, O(nnz + n_out · W) time. N = 20,000, p = 0.1 recurrent (4e7 links, 320 MB of
    int64 columns), defaults (4 branches of 500, W = 4,006): 1.6 s, 0.85 GB peak RSS; spatial_gaussian
    branches: 2.5 s, 0.81 GB on the 2-core dev box (whole process, 0.23 GB of it Python + torch; ~2.5x
    longer when the box is shared).
    """
    per_neuron, links, w_slots = dnm_plan(
        spec, p=p, branches=branches, synapses=synapses, window=window,
        degree_distribution=degree_distribution, synaptic_distribution=synaptic_distribution, sigma=sigma,
        self_connections=self_connections,
    )  # fmt: skip
    generator = need_generator("dnm", generator)
    drop = drops_diagonal(spec, self_connections)
    n_out, n_in = spec.n_out, spec.n_in
    total = int(links.sum())
    # Free slots per neuron and the "stars and bars" count: B bars among (free + B) items. A window that is the
    # whole ring keeps its last slot free, so the last branch never touches the first around the ring.
    m_ring = n_in - (1 if drop else 0)
    placed = torch.where((per_neuron >= 2) & (w_slots >= m_ring), w_slots - 1, w_slots)
    items = placed - links - (per_neuron - 1) + per_neuron
    rows_all = torch.arange(n_out, dtype=torch.int64)
    if spec.recurrent:
        # Slots are allowed columns (the other nodes, contiguous around i: see ring_lattice); slot ⌊W/2⌋ is
        # the first node after i (or i itself with self-connections).
        m = n_in - (1 if drop else 0)
        first = rows_all - w_slots // 2
    else:
        # Window centred on i · n_in / n_out: slot (W - 1) / 2 at the centre, halves up (exact integers).
        m = n_in
        first = torch.div(2 * rows_all * n_in - (w_slots - 2) * n_out, 2 * n_out, rounding_mode="floor")
    out = torch.empty(total, dtype=torch.int64)
    filled = 0
    for r0, r1 in _row_chunks(links + items):
        b_cnt, k_cnt, m_cnt = per_neuron[r0:r1, None], links[r0:r1, None], items[r0:r1, None]
        c, m_max, b_max, k_max = r1 - r0, int(m_cnt.max()), int(b_cnt.max()), int(k_cnt.max())
        # Bars: B_i distinct positions of [0, M_i), uniform, sorted (the smallest B_i of M_i uniform keys).
        keys = torch.rand(c, m_max, generator=generator)
        keys[torch.arange(m_max)[None, :] >= m_cnt] = 2.0
        bars = keys.topk(b_max, dim=1, largest=False, sorted=True).indices
        del keys
        bars = torch.where(torch.arange(b_max)[None, :] < b_cnt, bars, m_max).sort(dim=1).values
        # Link t of a neuron (K links, B branches of ⌊K/B⌋ or ⌈K/B⌉: branch b holds t in [⌊bK/B⌋, ⌊(b+1)K/B⌋))
        # lies in branch ⌈(t+1)B/K⌉ - 1, whose block starts at slot bar_b + ⌊bK/B⌋: its slot is t + bar_b.
        t = torch.arange(k_max, dtype=torch.int64)[None, :]
        branch = ((t + 1) * b_cnt + k_cnt - 1) // k_cnt - 1
        slots = t + bars.gather(1, branch.clamp(0, b_max - 1))
        values, valid = _ring_blocks(first[r0:r1], slots, k_cnt[:, 0], m)
        values += torch.arange(r0, r1, dtype=torch.int64)[:, None] * m
        chunk = values[valid]
        out[filled : filled + chunk.numel()] = chunk
        filled += chunk.numel()
    return _to_connectivity(out, n_out, n_in, drop)


def _check_dnm_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of ``"dnm"``: value ranges, and with a layer description, that the density,
    branches and window can be met (:func:`dnm_plan`)."""
    p = check_density(spec, kwargs.get("p"), "dnm")
    keys = ("branches", "synapses", "window", "degree_distribution", "synaptic_distribution", "sigma")
    defaults = {"degree_distribution": "fixed", "synaptic_distribution": "fixed", "sigma": 0.25}
    params = {k: kwargs.get(k, defaults.get(k)) for k in keys}
    if spec is None:
        _check_dnm_ranges(**params)
    else:
        dnm_plan(spec, p=p, self_connections=kwargs.get("self_connections"), **params)


dnm.check_params = _check_dnm_params  # type: ignore[attr-defined]
