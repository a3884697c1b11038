"""Erdős–Rényi connectivity: every allowed ordered pair connected with probability p."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from cortexnet.connectivity.base import TOPOLOGIES, Connectivity, LayerSpec, resolve_density, rounded_count

#: Rows processed per chunk: bounds the temporary (chunk x n_in) random block to ~64 MB of float32.
_CHUNK_ELEMENTS = 16_000_000


def _check(n_out: int, n_in: int, p: float) -> None:
    if n_out < 1 or n_in < 1:
        raise ValueError(f"layer sizes must be >= 1, got n_out={n_out}, n_in={n_in}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"connection probability p must be in [0, 1], got {p}")


def erdos_renyi(
    n_out: int,
    n_in: int,
    *,
    p: float,
    generator: torch.Generator | None,
    self_connections: bool = False,
    exact: bool = False,
) -> Connectivity:
    """Random (Erdős–Rényi) connectivity, as in Fruengel & Oberlaender 2025 ("every ordered pair of hidden
    nodes is connected with probability p").

    Args:
        n_out, n_in: matrix shape (rows = postsynaptic, columns = presynaptic). Recurrent: n_out == n_in == N.
        p: connection probability in [0, 1] (= density D = E / (N (N - 1)) without self-connections).
        generator: explicit CPU ``torch.Generator``; same state → bit-identical mask.
        self_connections: allow the diagonal (square matrices only). Default False: the paper's density formula
            excludes self-connections (the authors' notebook included them).
        exact: default False draws each allowed pair independently (Bernoulli(p), the paper's model: the
            edge count varies by ~sqrt(E)). True places exactly ``round(p * possible)`` edges, uniformly among
            all subsets of that size (row counts from a multivariate hypergeometric draw, then columns
            without replacement per row).

    Returns:
        :class:`Connectivity` of shape ``(n_out, n_in)``. Memory: O(nnz) int64 plus a bounded chunk buffer;
        no N x N array is ever created.
    """
    _check(n_out, n_in, p)
    if generator is None:
        raise ValueError(
            "erdos_renyi needs an explicit torch.Generator (generator=torch.Generator().manual_seed(s))"
        )
    square = n_out == n_in
    drop_diag = square and not self_connections
    per_row = n_in - 1 if drop_diag else n_in
    row_counts = None
    if exact:
        total = rounded_count(p, per_row * n_out)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        # Exact count, uniform over edge sets: the per-row counts of a uniform k-subset are multivariate
        # hypergeometric; "marginals" handles 1e8-sized populations without enumerating them.
        row_counts = torch.from_numpy(
            rng.multivariate_hypergeometric(np.full(n_out, per_row), total, method="marginals")
        ).to(torch.int64)
    chunk = max(1, _CHUNK_ELEMENTS // max(n_in, 1))
    # One preallocated int64 column array (the result itself), filled chunk by chunk: holding the chunks and
    # their concatenation at once would double the peak (~6.4 GB extra at N = 20,000, p = 1). For Bernoulli
    # draws the capacity is the mean + 10 SD (+1 per row); the rare overflow grows it.
    if row_counts is not None:
        capacity = int(row_counts.sum())
    else:
        mean = p * per_row * n_out
        capacity = min(per_row * n_out, int(mean + 10.0 * math.sqrt(mean * (1.0 - p)) + n_out))
    col = torch.empty(capacity, dtype=torch.int64)
    crow = torch.zeros(n_out + 1, dtype=torch.int64)
    filled = 0
    for start in range(0, n_out, chunk):
        stop = min(n_out, start + chunk)
        keys = torch.rand(stop - start, n_in, generator=generator)
        if drop_diag:
            # Diagonal keys set above every possible draw: never selected.
            idx = torch.arange(start, stop)
            keys[idx - start, idx] = 2.0
        if row_counts is None:
            selected = keys < p
        else:
            # Take the k_i smallest keys of row i; rank by sort order so ties cannot change the count.
            order = keys.argsort(dim=1)
            ranks = torch.empty_like(order)
            ranks.scatter_(1, order, torch.arange(n_in).expand_as(order).contiguous())
            selected = ranks < row_counts[start:stop, None]
        del keys
        crow[start + 1 : stop + 1] = selected.sum(dim=1, dtype=torch.int64)
        chunk_cols = selected.nonzero(as_tuple=True)[1]
        if filled + chunk_cols.numel() > col.numel():  # pragma: no cover - beyond 10 SD
            grown = torch.empty(max(filled + chunk_cols.numel(), 2 * col.numel()), dtype=torch.int64)
            grown[:filled] = col[:filled]
            col = grown
        col[filled : filled + chunk_cols.numel()] = chunk_cols
        filled += chunk_cols.numel()
    crow.cumsum_(0)
    if filled < col.numel():
        # A view, not a copy: a copy would double the peak again; the spare capacity is <= 10 SD + N entries.
        col = col[:filled]
    return Connectivity(n_out, n_in, crow, col)


@TOPOLOGIES.register("er")
def er(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    self_connections: bool | None = None,
    exact: bool | None = None,
) -> Connectivity:
    """Registered ``"er"``: :func:`erdos_renyi` on ``spec`` (Fruengel & Oberlaender 2025's random wiring).

    ``p`` defaults to ``spec.density``, ``exact`` to ``spec.exact``; the diagonal is excluded only on a
    recurrent layer without ``self_connections`` (default ``spec.self_connections``): a feed-forward layer has
    no self-connections to exclude.
    """
    p = spec.density if p is None else p
    if p is None:
        raise ValueError("topology 'er' needs a connection probability: pass topology_params p=... in [0, 1]")
    allow_diag = spec.self_connections if self_connections is None else self_connections
    return erdos_renyi(
        spec.n_out,
        spec.n_in,
        p=p,
        generator=generator,
        self_connections=allow_diag or not spec.recurrent,
        exact=spec.exact if exact is None else exact,
    )


def _check_er_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of the registered ``"er"``: a connection probability in [0, 1], from ``p`` or the
    layer description's density (without a description, only a given ``p`` is checked)."""
    if spec is not None or kwargs.get("p") is not None:
        resolve_density(spec, kwargs.get("p"), "er")


er.check_params = _check_er_params  # type: ignore[attr-defined]


@TOPOLOGIES.register("full")
def full(
    spec: LayerSpec, /, *, generator: torch.Generator | None = None, self_connections: bool | None = None
) -> Connectivity:
    """All-to-all connectivity (p = 1); the diagonal of a recurrent layer is excluded unless
    ``self_connections`` (default ``spec.self_connections``). ``spec.density`` is ignored."""
    allow_diag = spec.self_connections if self_connections is None else self_connections
    return Connectivity.full(spec.n_out, spec.n_in, self_connections=allow_diag or not spec.recurrent)
