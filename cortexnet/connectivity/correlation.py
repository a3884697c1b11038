"""CSTI: correlated sparse topological initialisation — links where the presynaptic features correlate most.

DST.md ("CSTI"): keep the links with the largest |Pearson correlation| between input features; the authors
compute the 784 × 784 |corr| of the MNIST pixels and tile it to every sparse layer of the MLP. The generator
needs data, and gets it as a parameter: ``activity``, float ``(n_samples, F)`` samples of the features (for a
model's first layer, the flattened training inputs; :func:`input_activity` draws them). The sample is part of
the model's configuration, so a checkpoint rebuilds exactly the same mask without the dataset.

Scores: synapse (i ← j) of an ``(n_out, n_in)`` weight scores ``|r(f_i, f_j)|`` with ``f_i = i mod F`` and
``f_j = j mod F`` (the authors' tiling; for a first layer F = n_in, so column j is feature j and row i is "the
neuron of feature i mod F"). Every row takes its ⌊E/n_out⌋ or ⌈E/n_out⌉ best-scoring inputs (ties broken at
random), so the total is exactly E = round(p · possible) and no neuron is left without inputs — a per-row
reading of "the largest |r|" (a global top-k would starve the rows of constant features, e.g. MNIST's border
pixels). Features that never vary correlate with nothing (score 0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cortexnet.connectivity.base import (
    FROM_DATA,
    TOPOLOGIES,
    Connectivity,
    LayerSpec,
    check_density,
    drops_diagonal,
    need_generator,
    possible_links,
    refuse_from_data,
    resolve_density,
    rounded_count,
    row_top_k,
    spread,
)

#: Rows scored per chunk: bounds the (chunk x n_in) float64 score block to ~64 MB.
_CHUNK_ELEMENTS = 8_000_000


def abs_correlation(activity: Tensor) -> Tensor:
    """float64 ``(F, F)`` |Pearson r| of the columns of ``activity`` ``(n_samples, F)``; constant columns get 0
    (no correlation), the diagonal 1 where a feature varies."""
    a = torch.as_tensor(activity, dtype=torch.float64)
    a = a - a.mean(dim=0, keepdim=True)
    norm = a.norm(dim=0)
    varies = norm > 0
    a = torch.where(varies, a / norm.clamp_min(1e-300), torch.zeros_like(a))
    return (a.t() @ a).abs().clamp_max(1.0)


def input_activity(x: Tensor, *, samples: int = 2000, generator: torch.Generator) -> Tensor:
    """float32 ``(min(samples, n), T·F)``: a seeded subset of row sequences ``x`` ``(n, T, F)``, flattened as a
    feed-forward model reads them — the ``activity`` a first layer's ``csti`` takes."""
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator)[: min(samples, n)].sort().values
    return x[idx].reshape(len(idx), -1).to(torch.float32).contiguous()


@TOPOLOGIES.register("csti")
def csti(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    activity: Tensor | None = None,
    self_connections: bool | None = None,
) -> Connectivity:
    """Correlated sparse topological initialisation (module docstring; DST.md "CSTI").

    Args:
        spec: the layer description.
        generator: explicit CPU ``torch.Generator`` (random tie-breaking); same state → same mask.
        p: connection probability in [0, 1]; default ``spec.density``.
        activity: float ``(n_samples >= 2, F)`` samples of the presynaptic features (required). F = n_in for a
            first layer; fewer features are tiled over the inputs, more are truncated (index mod F on both
            sides, the authors' tiling of the input |corr| onto every layer).
        self_connections: recurrent layers: allow the diagonal (default ``spec.self_connections``).

    Memory O(nnz + F² + chunk · n_in); exact total round(p · possible).
    """
    p = resolve_density(spec, p, "csti")
    refuse_from_data("csti", "activity", activity)
    _check_csti_params(spec, p=p, activity=activity)
    generator = need_generator("csti", generator)
    drop = drops_diagonal(spec, self_connections)
    n_out, n_in = spec.n_out, spec.n_in
    total = rounded_count(p, possible_links(n_out, n_in, drop))
    corr = abs_correlation(activity)
    n_feat = corr.shape[0]
    degrees = spread(total, n_out)  # ⌊E/n⌋ or ⌈E/n⌉ per row: the exact total
    col_feat = torch.arange(n_in) % n_feat
    crow = torch.zeros(n_out + 1, dtype=torch.int64)
    crow[1:] = degrees.cumsum(0)
    col = torch.empty(total, dtype=torch.int64)
    chunk = max(1, _CHUNK_ELEMENTS // n_in)
    for r0 in range(0, n_out, chunk):
        r1 = min(n_out, r0 + chunk)
        rows = torch.arange(r0, r1)
        scores = corr[(rows % n_feat)[:, None], col_feat[None, :]]
        # Random tie-break below any real score difference of float64 correlations of this size.
        scores += torch.rand(scores.shape, generator=generator, dtype=torch.float64) * 1e-9
        if drop:
            scores[rows - r0, rows] = -torch.inf
        col[int(crow[r0]) : int(crow[r1])] = row_top_k(scores, degrees[r0:r1], largest=True)
    return Connectivity(n_out, n_in, crow, col)


def _check_csti_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of ``"csti"``: a density, and a 2-D float ``activity`` sample."""
    check_density(spec, kwargs.get("p"), "csti")
    activity = kwargs.get("activity")
    if activity is FROM_DATA:  # wired from data before the build (FromData)
        return
    if activity is None:
        raise ValueError(
            "csti needs activity=(n_samples, F) samples of the presynaptic features (e.g. the flattened "
            "training inputs: cortexnet.connectivity.correlation.input_activity); it has no data of its own"
        )
    try:
        a = torch.as_tensor(activity)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"csti activity must be a 2-D array of numbers, got {type(activity).__name__}"
        ) from None
    if a.dim() != 2 or a.shape[0] < 2 or a.shape[1] < 1 or not a.is_floating_point():
        raise ValueError(
            f"csti activity must be a float (n_samples >= 2, F) array, got {a.dtype} {tuple(a.shape)}"
        )


csti.check_params = _check_csti_params  # type: ignore[attr-defined]
csti.data_params = {  # type: ignore[attr-defined]
    "activity": "a seeded sample of the flattened training inputs (the presynaptic features of a first layer)"
}
