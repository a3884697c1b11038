"""Ramanujan (spectral-gap) connectivity: a random (c, d)-biregular mask accepted when λ₂ <= √(c-1) + √(d-1).

``../shared/design/DST.md`` ("Initialisers"): "Ramanujan: random (c, d)-biregular bipartite mask, accept if
λ2 <= sqrt(c-1) + sqrt(d-1)". A weight ``[n_out, n_in]`` is the biadjacency matrix ``B`` of a bipartite graph;
every row (output unit) has degree c and every column (input unit) degree d, so ``n_out · c = n_in · d = E``.
The bipartite adjacency ``[[0, B], [Bᵀ, 0]]`` has eigenvalues ``±σ_k(B)``: the largest is ``σ₁ = √(c d)``
and λ₂ is the second largest singular value ``σ₂(B)``. A biregular graph is *Ramanujan* when
``σ₂ <= √(c-1) + √(d-1)`` (the bound random biregular graphs approach, Brito–Dumitriu–Harris 2022): as large a
spectral gap as a sparse graph can have — good expansion, so every input reaches every output in few steps.

Degrees. ``E = round(p · possible)`` links exactly. ``p · possible`` rarely makes both ``E / n_out`` and
``E / n_in`` integers, so the mask is *near*-biregular: every row has ``⌊E / n_out⌋`` or ``⌈E / n_out⌉`` links
(the ``⌈⌉`` rows drawn at random) and every column ``⌊E / n_in⌋`` or ``⌈E / n_in⌉``; it is exactly
(c, d)-biregular when ``n_out`` and ``n_in`` both divide E. The bound then uses the mean degrees
``c = E / n_out``, ``d = E / n_in`` (equal to the integer degrees in the exact case). Construction:
:func:`~cortexnet.connectivity.scale_free.near_regular_assignment` (rows in random order, per "level" a random
permutation of the columns: a random union of partial partitions of the columns).

**Recurrent weights** (one set of N nodes, ``W[i, j]`` from node j to node i): a directed graph whose in-degree
(row) and out-degree (column) are both ``⌊E / N⌋`` or ``⌈E / N⌉``, with no self-loops unless
``self_connections`` (possible = ``N (N - 1)``). Its spectral check is the same on ``A = W``'s pattern: ``A`` is
the biadjacency of the graph's bipartite double cover (N presynaptic copies → N postsynaptic copies), which is
(c, c)-biregular, so the test is ``σ₂(A) <= 2 √(c - 1)``, σ₂ the second largest *singular* value of A (for a
directed graph the eigenvalues of A are complex; the singular values measure expansion of the walk
pre → post).

The check never densifies a large layer: :func:`second_singular_value` uses
``scipy.sparse.linalg.svds(k=2)`` (ARPACK) on a sparse CSR copy (float64 values, int32 indices: 12 bytes per
link) above 250,000 possible pairs, a dense SVD only below. A draw that fails the bound is redrawn, up to
``max_tries`` draws, then ``ValueError`` names λ₂, the bound, c, d and the fixes. Degrees below 2 cannot pass (a
degree-1 side makes a union of stars, σ₂ = σ₁): rejected up front. ``check_spectrum=None`` (default) checks
layers of up to :data:`SPECTRUM_AUTO_MAX_LINKS` links and skips larger ones (logged); ``True`` always checks,
``False`` never.

Exact: the link total; row and column degrees within one of each other (exactly c and d when n_out and n_in
divide E); no repeated pair; no diagonal on a recurrent weight without self-connections; the bound, for every
accepted mask that was checked.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from cortexnet.connectivity.base import (
    TOPOLOGIES,
    Connectivity,
    LayerSpec,
    check_density,
    connectivity_from_keys,
    drops_diagonal,
    numpy_rng,
    possible_links,
    resolve_density,
    rounded_count,
)
from cortexnet.connectivity.scale_free import near_regular_assignment

log = logging.getLogger(__name__)

#: ``check_spectrum=None`` checks the bound on layers with at most this many links and skips larger ones.
SPECTRUM_AUTO_MAX_LINKS = 5_000_000

#: Below this many possible pairs the second singular value comes from a dense SVD (cheap, exact).
_DENSE_SVD_MAX_PAIRS = 250_000


def ramanujan_bound(c: float, d: float) -> float:
    """``√(c - 1) + √(d - 1)``: the largest λ₂ a (c, d)-biregular Ramanujan graph may have (c, d >= 1)."""
    if c < 1 or d < 1:
        raise ValueError(f"the Ramanujan bound needs degrees >= 1, got c = {c}, d = {d}")
    return math.sqrt(c - 1.0) + math.sqrt(d - 1.0)


def second_singular_value(conn: Connectivity) -> float:
    """σ₂ of the 0/1 matrix of ``conn`` (= λ₂ of its bipartite adjacency ``[[0, B], [Bᵀ, 0]]``).

    Large layers: ``scipy.sparse.linalg.svds(k=2)`` on a sparse copy (no dense n_out × n_in array); layers of at
    most 250,000 possible pairs: a dense SVD. A matrix with one row or column has σ₂ = 0.
    """
    if min(conn.shape) < 2 or conn.nnz == 0:
        return 0.0
    if conn.n_out * conn.n_in <= _DENSE_SVD_MAX_PAIRS:
        return float(np.linalg.svd(conn.to_dense().numpy().astype(np.float64), compute_uv=False)[1])
    import scipy.sparse
    import scipy.sparse.linalg

    idx = conn.col.numpy().astype(np.int32)
    ptr = conn.crow.numpy().astype(np.int64 if conn.nnz >= 2**31 else np.int32)
    matrix = scipy.sparse.csr_matrix((np.ones(conn.nnz), idx, ptr), shape=conn.shape)
    # A deterministic start vector: same mask → same value, bit for bit.
    v0 = np.random.default_rng(0).random(min(conn.shape))
    values = scipy.sparse.linalg.svds(matrix, k=2, v0=v0, return_singular_vectors=False)
    return float(np.sort(values)[0])


def spectral_gap_check(conn: Connectivity) -> tuple[float, float]:
    """``(λ₂, bound)`` of a (near-)biregular mask: λ₂ = :func:`second_singular_value`, bound =
    :func:`ramanujan_bound` at the largest degrees c = ⌈nnz / n_out⌉, d = ⌈nnz / n_in⌉ (the exact degrees when
    the mask is biregular). The mask is Ramanujan when
    ``λ₂ <= bound``. (For a recurrent weight the same test on its bipartite double cover.)"""
    c, d = _max_degrees(conn.nnz, conn.n_out, conn.n_in)
    return second_singular_value(conn), ramanujan_bound(c, d)


def _max_degrees(total: int, n_out: int, n_in: int) -> tuple[int, int]:
    """The largest row and column degrees of a near-biregular mask, ⌈total / n⌉: the degrees the bound is
    taken at. (At the mean degrees a ⌊c⌋/⌈c⌉ mix almost never meets it: 0 of 10 draws at c = 2.5 or 3.5;
    exactly biregular masks, integer c and d, are unaffected.)"""
    return -(-total // n_out), -(-total // n_in)


def _degrees(spec: LayerSpec, p: float, drop_diag: bool) -> tuple[int, float, float]:
    total = rounded_count(p, possible_links(spec.n_out, spec.n_in, drop_diag))
    return total, total / spec.n_out, total / spec.n_in


def _will_check(check_spectrum: bool | None, total: int) -> bool:
    return bool(check_spectrum) if check_spectrum is not None else total <= SPECTRUM_AUTO_MAX_LINKS


def random_near_biregular(
    n_out: int, n_in: int, total: int, rng: np.random.Generator, *, drop_diag: bool = False
) -> Connectivity:
    """A random mask with exactly ``total`` links, row degrees ``⌊total / n_out⌋`` or ``⌈⌉`` (random rows get
    the extra link) and column degrees ``⌊total / n_in⌋`` or ``⌈⌉``; no diagonal when ``drop_diag``."""
    base, extra = divmod(total, n_out)
    row_degrees = np.full(n_out, base, dtype=np.int64)
    if extra:
        row_degrees[rng.choice(n_out, size=extra, replace=False)] += 1
    keys = near_regular_assignment(row_degrees, n_in, rng, drop_diag=drop_diag)
    return connectivity_from_keys(keys, n_out, n_in)


@TOPOLOGIES.register("ramanujan")
def ramanujan(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    check_spectrum: bool | None = None,
    max_tries: int = 20,
    self_connections: bool | None = None,
) -> Connectivity:
    """Registered ``"ramanujan"``: a random near-(c, d)-biregular mask with λ₂ <= √(c-1) + √(d-1) (module doc).

    Args:
        spec: the weight's description (rows postsynaptic); recurrent → the directed in/out-regular graph.
        generator: explicit CPU ``torch.Generator``; same state → bit-identical mask.
        p: density (default ``spec.density``): exactly ``round(p · possible)`` links, possible = n_out · n_in,
            less n on a recurrent weight without self-connections (the diagonal is then never placed).
        check_spectrum: None (default): check the bound when the layer has at most
            :data:`SPECTRUM_AUTO_MAX_LINKS` (5,000,000) links, skip it above (logged); True / False: always /
            never. Checking needs mean degrees c, d >= 2.
        max_tries: draws before giving up (default 20; each failed draw is redrawn from the same generator).
        self_connections: recurrent weights: allow the diagonal (default ``spec.self_connections``).

    Raises:
        ValueError: no draw met the bound in ``max_tries`` (naming λ₂ of the best draw, the bound, c and d).

    Measured once (peak RSS of the whole process, ~0.2 GB of it torch): N = 20,000, p = 0.1 recurrent
    (39,998,000 links; the spectral check skipped by default at this size): 9.5 s, 1.17 GB peak on the 2-core
    dev box (shared); with ``check_spectrum=True``: 59.9 s, 1.51 GB (the svds). The check costs ~5 s at the
    auto limit (5e6 links); a 1568 × 1568 layer at 1 %: 0.005 s to build, 0.06 s per check.
    """
    p = resolve_density(spec, p, "ramanujan")
    _check_ramanujan_params(spec, p=p, check_spectrum=check_spectrum, max_tries=max_tries,
                            self_connections=self_connections)  # fmt: skip
    drop_diag = drops_diagonal(spec, self_connections)
    total, c, d = _degrees(spec, p, drop_diag)
    possible = possible_links(spec.n_out, spec.n_in, drop_diag)
    if total == possible:
        return Connectivity.full(spec.n_out, spec.n_in, self_connections=not drop_diag)
    if total == 0:  # nothing to place, nothing to check
        return Connectivity(spec.n_out, spec.n_in, torch.zeros(spec.n_out + 1, dtype=torch.int64),
                            torch.zeros(0, dtype=torch.int64))  # fmt: skip
    rng = numpy_rng(generator, "ramanujan")
    check = _will_check(check_spectrum, total)
    if not check and check_spectrum is None:
        log.info("ramanujan: %d links > %d, spectral check skipped (check_spectrum=True forces it)", total,
                 SPECTRUM_AUTO_MAX_LINKS)  # fmt: skip
    best = math.inf
    bound = ramanujan_bound(*_max_degrees(total, spec.n_out, spec.n_in)) if check else math.nan
    for _ in range(max_tries):
        conn = random_near_biregular(spec.n_out, spec.n_in, total, rng, drop_diag=drop_diag)
        if not check:
            return conn
        lam2 = second_singular_value(conn)
        if lam2 <= bound * (1.0 + 1e-9):  # relative slack of the iterative solver's precision
            return conn
        best = min(best, lam2)
    raise ValueError(
        f"ramanujan: no draw of {max_tries} met the bound λ2 <= sqrt(c-1) + sqrt(d-1) = {bound:.4f} (c = {c:.3f}, "
        f"d = {d:.3f}, {spec.n_out} x {spec.n_in}); smallest λ2 drawn {best:.4f}. Raise max_tries, raise p, or "
        "pass check_spectrum=False"
    )


def _check_ramanujan_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of ``"ramanujan"``: a density in [0, 1], ``max_tries >= 1``, and, when the bound
    will be checked on this layer, mean degrees c, d >= 2 (smaller degrees cannot meet it)."""
    p = check_density(spec, kwargs.get("p"), "ramanujan")
    max_tries = kwargs.get("max_tries", 20)
    if max_tries < 1:
        raise ValueError(f"ramanujan max_tries must be >= 1, got {max_tries}")
    if spec is None:
        return
    drop_diag = drops_diagonal(spec, kwargs.get("self_connections"))
    total, c, d = _degrees(spec, p, drop_diag)
    if total in (0, possible_links(spec.n_out, spec.n_in, drop_diag)):
        return  # empty or complete: nothing to check
    if _will_check(kwargs.get("check_spectrum"), total) and min(c, d) < 2:
        side = max(spec.n_out, spec.n_in) if spec.recurrent else min(spec.n_out, spec.n_in)
        p_min = 2.0 / (side - 1 if drop_diag else side)
        raise ValueError(
            f"ramanujan needs mean degrees c = E/n_out and d = E/n_in >= 2 for its spectral bound, got c = {c:.3f}, "
            f"d = {d:.3f} at p = {p} on {spec.n_out} x {spec.n_in} (degree-1 nodes make a union of stars, "
            f"λ2 = λ1): use p >= {p_min:.4g} or check_spectrum=False"
        )


ramanujan.check_params = _check_ramanujan_params  # type: ignore[attr-defined]
