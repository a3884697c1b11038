"""SNIP: keep the links with the largest connection sensitivity |g ⊙ w| at initialisation (Lee et al., ICLR 2019).

DST.md ("SNIP"): score every possible link of a *dense* network at initialisation by |∂L/∂w · w| on one batch
of training data and keep the global top-k over all layers. The generator needs those scores, and gets them
as a parameter: ``saliency``, the per-weight score tensors (:func:`cortexnet.models.saliency.snip_saliency`
computes them on a dense twin of the model). The scores are part of the model's configuration, so a checkpoint
rebuilds exactly the same mask without the data.

* ``saliency``: one float ``(n_out, n_in)`` tensor for this weight, or a dict ``{weight name: tensor}`` with
  every weight of the model that SNIP wires (the names of :func:`cortexnet.layers.sparse_weights`, e.g.
  ``"layers.0.sparse"``; ``LayerSpec.name`` picks this weight's). Dense or sparse COO; entries are >= 0 at
  the candidate positions and ``-inf`` where no link can be (e.g. the diagonal of a recurrent twin without
  self-connections); entries a sparse tensor does not store score 0.
* ``scope="global"`` (SNIP's rule): one budget E = round(p · candidates) over all weights of the dict (a single
  tensor: this weight alone), the links go to the E largest scores wherever they are, so layers get different
  densities (a layer can end up empty: SNIP's layer collapse, which the experiments refuse). ``"layer"``: every
  weight keeps its own top round(p · possible) (the density a model gives each layer is kept).

Ties at the threshold (e.g. the zero scores of dead ReLU units) are broken uniformly at random with
``generator``: exact, not by index order. The selection streams over the scores in chunks with an exact radix
select on the float32 bit patterns (two histogram passes, one selection pass): memory O(chunk + nnz) beyond
the saliency itself, whatever the number of candidates.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
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
    numpy_rng,
    possible_links,
    refuse_from_data,
    resolve_density,
    rounded_count,
)

SCOPES = ("global", "layer")

#: Scores per chunk of the streaming passes (float32: 32 MB).
_CHUNK = 8_000_000
_HI_BINS = 1 << 15  # finite non-negative float32 bit patterns are < 0x7F800000: their top 16 bits < 2^15
_LO_BINS = 1 << 16


@TOPOLOGIES.register("snip")
def snip(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    saliency: Tensor | dict[str, Tensor] | None = None,
    scope: str = "global",
    self_connections: bool | None = None,
) -> Connectivity:
    """SNIP's connection-sensitivity mask (module docstring; Lee et al. 2019; DST.md "SNIP").

    Args:
        spec: the layer description (``spec.name`` picks this weight's scores from a dict).
        generator: explicit CPU ``torch.Generator`` (random tie-breaking); same state → same mask.
        p: connection probability in [0, 1]: the overall density of the weights SNIP wires (``"global"``) or
            this weight's (``"layer"``); default ``spec.density``.
        saliency: the scores (required): float ``(n_out, n_in)`` for this weight or ``{name: tensor}``.
        scope: ``"global"`` (SNIP: one top-k over every weight of the dict) or ``"layer"``.
        self_connections: recurrent layers: allow the diagonal (default ``spec.self_connections``).

    Returns:
        the mask; ``"layer"``: exactly round(p · possible) links; ``"global"``: this weight's share of
        round(p · Σ candidates).
    """
    p = resolve_density(spec, p, "snip")
    refuse_from_data("snip", "saliency", saliency)
    _check_snip_params(spec, p=p, saliency=saliency, scope=scope)
    generator = need_generator("snip", generator)
    drop = drops_diagonal(spec, self_connections)
    if not isinstance(saliency, Mapping) or scope == "layer":
        own = saliency[spec.name] if isinstance(saliency, Mapping) else saliency
        scores = {"": (own, drop)}
        budget = rounded_count(p, possible_links(spec.n_out, spec.n_in, drop))
        return select_top_scores(scores, budget, generator=generator)[""]
    # One selection for the whole model, computed at the first SNIP weight of the build and shared by the
    # others through LayerSpec.shared (the order of the build fixes the generator's draws).
    key = ("snip", id(saliency), p, drop)
    cache = spec.shared.setdefault(key, {})
    if not cache:
        # Only this weight's own diagonal is known to be excluded; the others mark theirs with -inf.
        scores = {name: (s, drop and name == spec.name) for name, s in saliency.items()}
        candidates = sum(candidate_count(s, d) for s, d in scores.values())
        cache.update(select_top_scores(scores, rounded_count(p, candidates), generator=generator))
    return cache[spec.name]


def candidate_count(score: Tensor, drop_diagonal: bool = False) -> int:
    """Positions of ``score`` ``(n_out, n_in)`` that can hold a link: finite entries (not ``-inf``), the
    diagonal excluded when ``drop_diagonal``."""
    return sum(int((chunk >= 0).sum()) for _, chunk in _score_chunks(score, drop_diagonal))


def select_top_scores(
    scores: Mapping[str, tuple[Tensor, bool]], k: int, *, generator: torch.Generator
) -> dict[str, Connectivity]:
    """The ``k`` largest entries over several score matrices, ties at the threshold broken uniformly at random.

    Args:
        scores: ``{name: (score, drop_diagonal)}``: float ``(n_out, n_in)`` scores (dense or sparse COO), >= 0
            at candidates, ``-inf`` elsewhere; ``drop_diagonal`` excludes the diagonal as well.
        k: links to place in total, 0 <= k <= the number of candidates.
        generator: CPU generator of the tie-break.

    Returns:
        ``{name: Connectivity}``: each matrix's selected positions. Exact: every selected score >= every
        unselected candidate's, and among candidates tied at the threshold every subset of the needed size is
        equally likely. Scores are compared in float32.
    """
    hist_hi = {name: torch.zeros(_HI_BINS, dtype=torch.int64) for name in scores}
    for name, (s, drop) in scores.items():
        for _, chunk in _score_chunks(s, drop):
            # Bin 0 collects the non-candidates (negative bit patterns: -inf), bin b + 1 the top 16 bits b.
            top = (_bits(chunk) >> 16).clamp_min_(-1) + 1
            hist_hi[name] += torch.bincount(top, minlength=_HI_BINS + 1)[1:]
    total_hi = sum(hist_hi.values())
    n_candidates = int(total_hi.sum())
    if not 0 <= k <= n_candidates:
        raise ValueError(
            f"cannot keep {k} links: there are {n_candidates} candidate positions (finite scores); lower p"
        )
    if k == 0:
        return {name: _empty(s) for name, (s, _) in scores.items()}
    # Radix select, top 16 bits then low 16 bits: the k-th largest bit pattern (monotone in the value).
    hi = _kth_bin(total_hi, k)
    above_hi = int(total_hi[hi + 1 :].sum())
    hist_lo = {name: torch.zeros(_LO_BINS, dtype=torch.int64) for name in scores}
    for name, (s, drop) in scores.items():
        if int(hist_hi[name][hi]) == 0:
            continue
        for _, chunk in _score_chunks(s, drop):
            bits = _bits(chunk)
            # Positions outside bin hi land in the extra last bin (no boolean indexing: it is the slow part).
            low = torch.where((bits >> 16) == hi, bits & 0xFFFF, _LO_BINS)
            hist_lo[name] += torch.bincount(low, minlength=_LO_BINS + 1)[:_LO_BINS]
    total_lo = sum(hist_lo.values())
    lo = _kth_bin(total_lo, k - above_hi)
    threshold = (hi << 16) | lo
    above = {name: int(hist_hi[name][hi + 1 :].sum()) + int(hist_lo[name][lo + 1 :].sum()) for name in scores}
    tied = [int(hist_lo[name][lo]) for name in scores]
    # The ties to take, shared among the matrices as a uniform draw of positions would share them.
    needed = k - sum(above.values())
    rng = numpy_rng(generator, "snip")
    share = (
        rng.multivariate_hypergeometric(np.array(tied, dtype=np.int64), needed) if needed else [0] * len(tied)
    )
    out = {}
    for (name, (s, drop)), n_tied, take in zip(scores.items(), tied, share, strict=True):
        ranks = torch.from_numpy(np.sort(rng.choice(n_tied, size=int(take), replace=False)).astype(np.int64))
        out[name] = _select(s, drop, threshold, ranks, above[name] + int(take))
    return out


def _select(score: Tensor, drop: bool, threshold: int, tie_ranks: Tensor, count: int) -> Connectivity:
    """The ``count`` positions with bit pattern > threshold, plus the tied ones whose rank (flat order) is in
    ``tie_ranks``; written chunk by chunk (whole rows) into the result, so memory is O(count + chunk)."""
    n_out, n_in = score.shape
    col = torch.empty(count, dtype=torch.int64)
    row_counts = torch.zeros(n_out, dtype=torch.int64)
    seen = filled = 0
    for start, chunk in _score_chunks(score, drop):
        bits = _bits(chunk)
        eq = (bits == threshold).nonzero().squeeze(1)
        lo, hi = torch.searchsorted(tie_ranks, torch.tensor([seen, seen + eq.numel()]))
        seen += eq.numel()
        keep = bits > threshold
        keep[eq[tie_ranks[lo:hi] - (seen - eq.numel())]] = True
        pos = keep.nonzero().squeeze(1)  # ascending: row-major order, no sort needed
        col[filled : filled + pos.numel()] = pos % n_in
        first_row = start // n_in
        row_counts[first_row : first_row + chunk.numel() // n_in] = torch.bincount(
            pos // n_in, minlength=chunk.numel() // n_in
        )
        filled += pos.numel()
    crow = torch.zeros(n_out + 1, dtype=torch.int64)
    crow[1:] = row_counts.cumsum(0)
    return Connectivity(n_out, n_in, crow, col)


def _bits(chunk: Tensor) -> Tensor:
    """int32 float32 bit patterns, monotone in the value for candidates (>= 0); non-candidates (-inf) are
    negative."""
    return (chunk + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0 (a negative bit pattern otherwise)


def _kth_bin(hist: Tensor, k: int) -> int:
    """The bin holding the k-th largest value (1-based) of a histogram."""
    from_top = hist.flip(0).cumsum(0)
    return hist.numel() - 1 - int(torch.searchsorted(from_top, torch.tensor(k)))


def _score_chunks(score: Tensor, drop_diagonal: bool) -> Iterator[tuple[int, Tensor]]:
    """``(flat start, float32 (≤ _CHUNK,) scores)`` over the row-major positions of ``score``; a sparse COO
    tensor's unstored entries are 0; the diagonal is ``-inf`` when ``drop_diagonal``."""
    n_out, n_in = score.shape
    numel = n_out * n_in
    if score.is_sparse:
        s = score.coalesce()
        idx = s.indices()
        flat_keys = (idx[0] * n_in + idx[1]).cpu()  # sorted: coalesce orders the indices row-major
        values = s.values().detach().to(device="cpu", dtype=torch.float32)
    else:
        flat = score.detach().reshape(-1)
    step = max(n_in, _CHUNK // n_in * n_in)  # whole rows per chunk
    for start in range(0, numel, step):
        stop = min(numel, start + step)
        if score.is_sparse:
            chunk = torch.zeros(stop - start, dtype=torch.float32)
            a, b = torch.searchsorted(flat_keys, torch.tensor([start, stop])).tolist()
            chunk[flat_keys[a:b] - start] = values[a:b]
        else:
            chunk = flat[start:stop].to(device="cpu", dtype=torch.float32, copy=True)
        if drop_diagonal:
            rows = torch.arange(start // n_in, stop // n_in)
            rows = rows[rows < n_in]
            chunk[rows * n_in + rows - start] = -torch.inf
        yield start, chunk


def _empty(score: Tensor) -> Connectivity:
    n_out, n_in = score.shape
    return Connectivity(
        n_out, n_in, torch.zeros(n_out + 1, dtype=torch.int64), torch.empty(0, dtype=torch.int64)
    )


def _check_snip_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of ``"snip"``: a density, a scope, and scores of this weight's shape."""
    check_density(spec, kwargs.get("p"), "snip")
    scope = kwargs.get("scope", "global")
    if scope not in SCOPES:
        raise ValueError(f"snip scope must be one of {SCOPES}, got {scope!r}")
    saliency = kwargs.get("saliency")
    if saliency is FROM_DATA:  # wired from data before the build (FromData)
        return
    if saliency is None:
        raise ValueError(
            "snip needs saliency=|g * w| scores at initialisation (cortexnet.models.saliency.snip_saliency "
            "computes them on a dense twin of the model and a batch of training data); it has no data of its own"
        )
    tensors = dict(saliency) if isinstance(saliency, Mapping) else {"": saliency}
    if not tensors:
        raise ValueError("snip saliency is an empty dict: give {weight name: (n_out, n_in) scores}")
    for name, s in tensors.items():
        what = f"snip saliency[{name!r}]" if name else "snip saliency"
        if not isinstance(s, Tensor) or s.dim() != 2 or not s.is_floating_point():
            got = f"{s.dtype} {tuple(s.shape)}" if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(f"{what} must be a 2-D float tensor (n_out, n_in), got {got}")
        # In chunks: three boolean masks of a 20,000 x 20,000 score matrix would take 1.2 GB.
        n_bad = sum(
            int((torch.isnan(c) | ((c < 0) & (c != -torch.inf)) | (c == torch.inf)).sum())
            for _, c in _score_chunks(s, False)
        )
        if n_bad:
            raise ValueError(
                f"{what} has {n_bad} NaN, negative or +inf entries; scores are >= 0 at candidates and -inf "
                "where no link can be"
            )
    if spec is None:
        return
    if isinstance(saliency, Mapping) and spec.name not in tensors:
        raise ValueError(
            f"snip saliency has no scores for weight {spec.name!r}; it has {sorted(tensors)} (keys are the "
            "names of cortexnet.layers.sparse_weights)"
        )
    own = tensors[spec.name] if isinstance(saliency, Mapping) else saliency
    if tuple(own.shape) != (spec.n_out, spec.n_in):
        raise ValueError(
            f"snip saliency for {spec.name or 'this weight'} has shape {tuple(own.shape)}, the weight is "
            f"{(spec.n_out, spec.n_in)}: compute it on a twin of the same model"
        )


snip.check_params = _check_snip_params  # type: ignore[attr-defined]
snip.data_params = {  # type: ignore[attr-defined]
    "saliency": "|g * w| of a dense twin of the model at initialisation, on one batch of training data"
}
