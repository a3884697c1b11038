"""Removal and growth criteria of dynamic sparse training, registered by name (DST.md "Criteria", "CHT", "CHTs").

A **removal** criterion ``fn(layer, n, *, generator, soft) -> Tensor`` returns the int64 indices (into the
active synapses in connectivity order) of the ``n`` links to remove. A **growth** criterion
``fn(layer, kept, n, *, generator, soft) -> Tensor`` returns ``n`` distinct flat positions ``row * n_in + col``
among the positions inactive in ``kept`` (the connectivity after removal; a just-removed link may be regrown,
as in RigL and the CHT code), never the diagonal of a recurrent layer without self-connections.

Rigid selection takes the top scores with ties broken uniformly at random; soft selection samples without
replacement ∝ score^T (removal: the *survivors* are sampled, CHTs) or ∝ score (growth: exponent 1,
"CH3-L3-soft"). When fewer candidates than needed score above zero, the rest is drawn uniformly among the
remaining candidates (DST.md: the only way isolated neurons reconnect).

Nothing here builds an ``n_out × n_in`` tensor for removal. Growth scores that rank every inactive position
(gradient, Hebbian, Cannistraci-Hebb) hold one float32 score per position and select with the exact streaming
top-k of :func:`cortexnet.connectivity.saliency.select_top_scores`: about 16 bytes per position at the peak for
rigid growth (1.6 GB for a 10,000 × 10,000 layer), about 36 for soft growth (its Gumbel keys are float64).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cortexnet.connectivity import Connectivity
from cortexnet.connectivity.saliency import select_top_scores
from cortexnet.registry import Registry
from cortexnet.rewiring.link_prediction import RULES as CH_RULES
from cortexnet.rewiring.link_prediction import iter_ch_scores
from cortexnet.rewiring.sampling import sample_proportional, top_k_random_ties
from cortexnet.sparse import ActivityAccumulator, SparseWeight

REMOVAL: Registry = Registry("removal criterion")
GROWTH: Registry = Registry("growth criterion")


@dataclass
class LayerView:
    """What a criterion sees of one sparse weight at an update.

    Attributes:
        name: the weight's name (:func:`cortexnet.layers.sparse_weights`).
        weight: the :class:`~cortexnet.sparse.SparseWeight`.
        connectivity: its active set before the update.
        values: float ``(nnz,)`` effective weights of the active synapses (connectivity order).
        self_connections: whether the diagonal may hold links (False only for a recurrent layer without).
        temperature: T of soft removal at this update.
        activity: the Hebbian statistics of the period since the last update (None when not recorded).
        gradient: ``gradient(rows, cols) -> (K,)`` dL/dW_eff at inactive positions on the current batch (None
            when no batch is available).
    """

    name: str
    weight: SparseWeight
    connectivity: Connectivity
    values: Tensor
    self_connections: bool
    temperature: float = 1.0
    activity: ActivityAccumulator | None = None
    gradient: Callable[[Tensor, Tensor], Tensor] | None = None


# ------------------------------------------------------------------------------------------------- removal


def _remove_by_score(
    score: Tensor, n: int, *, generator: torch.Generator, soft: bool, temperature: float
) -> Tensor:
    """Indices of the ``n`` links to remove: the lowest scores (rigid), or the complement of the nnz - n
    survivors sampled ∝ score^T (soft, CHTs: sampling the removals would drop the strongest links)."""
    score = score.detach().double().cpu()
    if not soft:
        return top_k_random_ties(-score, n, generator=generator)
    survivors = sample_proportional(
        score.clamp_min(0), score.numel() - n, temperature=temperature, generator=generator
    )
    removed = torch.ones(score.numel(), dtype=torch.bool)
    removed[survivors] = False
    return removed.nonzero().squeeze(1)


@REMOVAL.register("magnitude")
def remove_magnitude(layer: LayerView, n: int, *, generator: torch.Generator, soft: bool = False) -> Tensor:
    """Smallest |w| (SET, RigL; soft: CHTs' "WM" removal, survivors ∝ |w|^T)."""
    return _remove_by_score(
        layer.values.abs(), n, generator=generator, soft=soft, temperature=layer.temperature
    )


@REMOVAL.register("set")
def remove_set(layer: LayerView, n: int, *, generator: torch.Generator, soft: bool = False) -> Tensor:
    """Original SET: the smallest positive and the largest (closest to zero) negative weights, separately —
    ``n`` split between the two signs in proportion to their counts (zeros count as positive)."""
    if soft:
        raise ValueError("removal 'set' is rigid (SET has no soft variant); use magnitude with soft removal")
    v = layer.values.detach().double().cpu()
    pos = (v >= 0).nonzero().squeeze(1)
    neg = (v < 0).nonzero().squeeze(1)
    n_neg = round(n * neg.numel() / max(v.numel(), 1))
    n_neg = min(n_neg, neg.numel())
    n_pos = n - n_neg
    if n_pos > pos.numel():
        n_pos, n_neg = pos.numel(), n - pos.numel()
    out = [pos[top_k_random_ties(-v[pos], n_pos, generator=generator)]]
    out.append(neg[top_k_random_ties(v[neg], n_neg, generator=generator)])  # largest negative = nearest 0
    return torch.cat(out)


@REMOVAL.register("random")
def remove_random(layer: LayerView, n: int, *, generator: torch.Generator, soft: bool = False) -> Tensor:
    """Uniformly at random (the random baseline)."""
    return torch.randperm(layer.connectivity.nnz, generator=generator)[:n]


@REMOVAL.register("ri")
def remove_relative_importance(
    layer: LayerView, n: int, *, generator: torch.Generator, soft: bool = False
) -> Tensor:
    """Lowest relative importance RI_ij = |w_ij| / Σ_i |w_ij| + |w_ij| / Σ_j |w_ij| (CHTs), plus 1e-12 so that a
    node's last link keeps a positive score."""
    conn = layer.connectivity
    a = layer.values.detach().abs().double().cpu()
    rows, cols = conn.rows(), conn.col
    row_sum = torch.zeros(conn.n_out, dtype=torch.float64).index_add_(0, rows, a)
    col_sum = torch.zeros(conn.n_in, dtype=torch.float64).index_add_(0, cols, a)
    ri = a / row_sum[rows].clamp_min(1e-300) + a / col_sum[cols].clamp_min(1e-300) + 1e-12
    return _remove_by_score(ri, n, generator=generator, soft=soft, temperature=layer.temperature)


@REMOVAL.register("hebbian")
def remove_hebbian(layer: LayerView, n: int, *, generator: torch.Generator, soft: bool = False) -> Tensor:
    """Lowest cosine of post/pre activity over the period since the last update (G2GNet, seed 000)."""
    acc = _need_activity(layer, "hebbian removal")
    conn = layer.connectivity
    score = acc.scores(conn.rows(), conn.col)
    return _remove_by_score(score, n, generator=generator, soft=soft, temperature=layer.temperature)


# -------------------------------------------------------------------------------------------------- growth


def _candidate_blocks(kept: Connectivity, self_connections: bool, block_rows: int):
    """``(row_start, bool (rows, n_in))`` blocks: True where a link may grow (inactive, not a barred diagonal)."""
    for r0 in range(0, kept.n_out, block_rows):
        r1 = min(kept.n_out, r0 + block_rows)
        free = torch.ones(r1 - r0, kept.n_in, dtype=torch.bool)
        a, b = int(kept.crow[r0]), int(kept.crow[r1])
        free[_local_rows(kept, r0, r1), kept.col[a:b]] = False
        if not self_connections:
            rows = torch.arange(r0, r1)
            rows = rows[rows < kept.n_in]
            free[rows - r0, rows] = False
        yield r0, free


def _local_rows(conn: Connectivity, r0: int, r1: int) -> Tensor:
    counts = conn.crow[r0 + 1 : r1 + 1] - conn.crow[r0:r1]
    return torch.repeat_interleave(torch.arange(r1 - r0), counts)


def _block_rows(n_in: int) -> int:
    return max(1, 4_000_000 // max(n_in, 1))


def _n_free(kept: Connectivity, self_connections: bool) -> int:
    diag = 0 if self_connections else min(kept.n_out, kept.n_in) - int(kept.diagonal_present().sum())
    return kept.n_out * kept.n_in - kept.nnz - diag


def _select_scored(
    kept: Connectivity,
    n: int,
    score_block: Callable[[int, Tensor], Tensor],
    *,
    self_connections: bool,
    generator: torch.Generator,
    soft: bool,
    block_rows: int | None = None,
) -> Tensor:
    """``n`` flat positions by a per-position score (>= 0) computed block by block (``block_rows`` rows at a
    time): rigid exact top-k with random ties (zeros tie, so too few positive scores fill uniformly), or soft
    ∝ score."""
    n_free = _n_free(kept, self_connections)
    if n > n_free:
        raise ValueError(f"cannot grow {n} links: only {n_free} positions are free; lower the density")
    scores = torch.empty(kept.n_out, kept.n_in, dtype=torch.float32)
    for r0, free in _candidate_blocks(kept, self_connections, block_rows or _block_rows(kept.n_in)):
        s = score_block(r0, free).float().cpu().clamp_min(0)
        scores[r0 : r0 + free.shape[0]] = torch.where(free, s, -torch.inf)
    if not soft:
        (conn,) = select_top_scores({"": (scores, False)}, n, generator=generator).values()
        return conn.rows() * kept.n_in + conn.col
    flat = scores.view(-1)
    return sample_proportional(flat.double(), n, temperature=1.0, generator=generator)


@GROWTH.register("random")
def grow_random(
    layer: LayerView, kept: Connectivity, n: int, *, generator: torch.Generator, soft: bool = False
) -> Tensor:
    """Uniformly at random among the free positions, an exact count (SET; not Bernoulli)."""
    n_free = _n_free(kept, layer.self_connections)
    if n > n_free:
        raise ValueError(f"cannot grow {n} links: only {n_free} positions are free; lower the density")
    if n == 0:
        return torch.empty(0, dtype=torch.int64)
    taken = kept.rows() * kept.n_in + kept.col  # sorted: connectivity order is row-major
    chosen = torch.empty(0, dtype=torch.int64)
    total = kept.n_out * kept.n_in
    # Rejection: i.i.d. uniform draws, kept if free and new; the accepted set is exchangeable, so a random
    # subset of it is a uniform subset of the free positions.
    while chosen.numel() < n:
        need = n - chosen.numel()
        draw = torch.randint(0, total, (int(need * total / n_free) + 16,), generator=generator)
        draw = draw[torch.randperm(draw.numel(), generator=generator)]
        if taken.numel():
            pos = torch.searchsorted(taken, draw).clamp_max(taken.numel() - 1)
            free = taken[pos] != draw
        else:
            free = torch.ones_like(draw, dtype=torch.bool)
        if not layer.self_connections:
            free &= (draw // kept.n_in) != (draw % kept.n_in)
        fresh = draw[free]
        fresh = fresh[~torch.isin(fresh, chosen)]
        # First occurrences only, in draw (random) order.
        uniq, inverse = torch.unique(fresh, return_inverse=True)
        first = torch.full((uniq.numel(),), fresh.numel(), dtype=torch.int64).scatter_reduce_(
            0, inverse, torch.arange(fresh.numel()), reduce="amin"
        )
        chosen = torch.cat([chosen, fresh[first.sort().values][:need]])
    return chosen


#: Free positions probed per forward/backward pass of gradient growth: bounds the probe's union structure
#: (~160 bytes per position on csr) to ~1.3 GB; a 10,000 x 10,000 layer at p = 0.1 takes 12 passes.
GRADIENT_PROBE_POSITIONS = 8_000_000


@GROWTH.register("gradient")
def grow_gradient(
    layer: LayerView, kept: Connectivity, n: int, *, generator: torch.Generator, soft: bool = False
) -> Tensor:
    """Largest |∂L/∂W_eff| at the free positions on the current batch (RigL, Evci et al. 2020), asked of
    ``layer.gradient`` for :data:`GRADIENT_PROBE_POSITIONS` positions at a time (the Rewirer answers from one
    dense pass, or for very large weights probes each block: ``SparseWeight.probe_gradients``)."""
    if layer.gradient is None:
        raise ValueError("gradient growth needs the current batch; call Rewirer.step(batch=(x, y))")
    block_rows = max(1, GRADIENT_PROBE_POSITIONS // max(kept.n_in, 1))

    def block(r0: int, free: Tensor) -> Tensor:
        r, c = free.nonzero(as_tuple=True)
        out = torch.zeros(free.shape, dtype=torch.float32)
        out[r, c] = layer.gradient(r + r0, c).abs().float().cpu()
        return out

    return _select_scored(kept, n, block, self_connections=layer.self_connections, generator=generator, soft=soft,
                          block_rows=block_rows)  # fmt: skip


@GROWTH.register("hebbian")
def grow_hebbian(
    layer: LayerView, kept: Connectivity, n: int, *, generator: torch.Generator, soft: bool = False
) -> Tensor:
    """Highest cosine of post/pre activity over the period since the last update (G2GNet, seed 000)."""
    acc = _need_activity(layer, "hebbian growth")
    if acc.tracked:  # the period's statistics exist at its tracked positions only: grow among the free ones
        keys = acc.tracked_keys.cpu()
        kept_keys = kept.rows() * kept.n_in + kept.col
        rows, cols = keys // kept.n_in, keys % kept.n_in
        eligible = ~torch.isin(keys, kept_keys)
        if not layer.self_connections:
            eligible &= rows != cols
        rows, cols = rows[eligible], cols[eligible]
        if rows.numel() < n:
            raise ValueError(
                f"hebbian growth needs {n} candidates but the period tracked {rows.numel()} free positions; "
                "raise hebbian_candidates"
            )
        score = acc.scores(rows, cols).double().cpu().clamp_min(0)
        pick = (
            sample_proportional(score, n, generator=generator)
            if soft
            else top_k_random_ties(score, n, generator=generator)
        )
        return rows[pick] * kept.n_in + cols[pick]

    def block(r0: int, free: Tensor) -> Tensor:
        r = torch.arange(r0, r0 + free.shape[0]).repeat_interleave(kept.n_in)
        c = torch.arange(kept.n_in).repeat(free.shape[0])
        return acc.scores(r, c).reshape(free.shape)

    return _select_scored(
        kept, n, block, self_connections=layer.self_connections, generator=generator, soft=soft
    )


def _ch_growth(rule: str):
    def grow(
        layer: LayerView, kept: Connectivity, n: int, *, generator: torch.Generator, soft: bool = False
    ) -> Tensor:
        blocks = iter_ch_scores(
            kept, rule, self_connections=layer.self_connections, chunk_rows=_block_rows(kept.n_in)
        )
        scores = dict(blocks)
        return _select_scored(kept, n, lambda r0, free: scores.pop(r0), self_connections=layer.self_connections,
                              generator=generator, soft=soft)  # fmt: skip

    grow.__name__ = f"grow_{rule}"
    grow.__doc__ = (
        f"Cannistraci-Hebb link prediction {rule} on the layer's graph after removal "
        "(cortexnet.rewiring.link_prediction; recurrent layers: its directed-graph definition)."
    )
    return grow


for _rule in CH_RULES:
    GROWTH.register(_rule)(_ch_growth(_rule))


def _need_activity(layer: LayerView, what: str) -> ActivityAccumulator:
    if layer.activity is None:
        raise ValueError(f"{what} needs the activity recorded since the last update (Rewirer records it)")
    return layer.activity


def check_criteria(removal: str, growth: str, **_: Any) -> None:
    """Raise ``ValueError`` naming a removal or growth criterion that is not registered, and the known ones."""
    if removal not in REMOVAL:
        raise ValueError(f"unknown removal criterion {removal!r}; known: {', '.join(REMOVAL.names())}")
    if growth not in GROWTH:
        raise ValueError(f"unknown growth criterion {growth!r}; known: {', '.join(GROWTH.names())}")
