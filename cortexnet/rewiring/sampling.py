"""Exact selection of k items from a 1-D score vector: sampled (Gumbel-top-k) or rigid top-k with random ties.

The rewiring criteria reduce every prune or grow decision to "pick k entries of a flat score vector" (DST.md,
"The common loop"); this module is that step and nothing else. Conventions shared by all three functions:

- Input is one 1-D tensor (callers flatten a layer with ``view(-1)`` and index back with the flat indices).
- A score (or log-weight) of ``-inf`` marks an ineligible entry (an active link when growing, an inactive one
  when pruning). It is never chosen: DST.md forbids clamping such entries to 1e-12 or 0, where they would tie
  with eligible ones and leak density.
- Every random draw comes from the explicit ``generator``. The noise is drawn on the generator's device and then
  moved to the scores' device, so a CPU generator works with CUDA scores and a seed gives the same choice on
  every device whose generator is the same.
- The result is an int64 tensor of ``k`` distinct flat indices on the scores' device.
- ``k`` larger than the number of eligible entries is an error, never a silent shorter result (the caller
  decides what to do when a layer has too few candidates).
- Memory is O(n) and nothing is sorted in full (DST.md pitfall 6); ``torch.multinomial`` is not used because it
  refuses more than 2^24 categories, which a 10,000 x 10,000 layer already exceeds (DST.md, CHTs).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cortexnet.rewiring.schedules import _int

__all__ = ["gumbel_top_k", "sample_proportional", "top_k_random_ties"]


def _as_1d(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D (flatten with view(-1)), got shape {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be a real number tensor, got dtype {x.dtype}")
    return x


def _check_k(k: int) -> int:
    """k as a non-negative int (its upper bound, the eligible count, is checked by each function)."""
    return _int(k, "k", minimum=0)


def _too_few(k: int, n_eligible: int, what: str) -> ValueError:
    return ValueError(
        f"k={k} exceeds the number of {what} entries ({n_eligible}); allowed 0 <= k <= {n_eligible}"
    )


def _first_bad(x: Tensor, bad: Tensor, name: str, why: str) -> None:
    """Raise ValueError naming the first flagged entry (index and value), if any is flagged."""
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name} must not contain {why}; found {x[i].item()!r} at index {i} ({int(bad.sum())} such)"
        )


def _check_max(x: Tensor, name: str, *, allow_posinf: bool) -> float:
    """x.max() as a float: one cheap reduction that also detects NaN (max propagates it) and +inf."""
    if not x.is_floating_point():
        return float(x.max()) if x.numel() else -math.inf
    m = float(x.max()) if x.numel() else -math.inf
    if math.isnan(m):
        _first_bad(x, torch.isnan(x), name, "NaN")
    if m == math.inf and not allow_posinf:
        _first_bad(x, x == math.inf, name, "+inf (use finite values; -inf marks ineligible entries)")
    return m


def _uniform(n: int, *, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Drawn on the generator's device (a CPU generator cannot fill a CUDA tensor), then moved.
    u = torch.rand(n, generator=generator, device=generator.device, dtype=dtype)
    return u.to(device)


def _gumbel(n: int, *, generator: torch.Generator, device: torch.device) -> Tensor:
    """float64 standard Gumbel noise -log(-log U), always finite (in place: one n-element allocation).

    float64 whatever the scores: float32 uniforms have 24 bits, so among 2^24 equal weights the largest noise
    values would collide and torch.topk would break those ties by index, not at random. torch.rand draws U in
    [0, 1): U = 0 would give -inf noise, making an eligible entry tie with the ineligible -inf ones, so U is
    clamped to the smallest normal float (noise >= -6.6); U < 1 keeps the upper end finite (<= 36.8).
    """
    u = _uniform(n, generator=generator, dtype=torch.float64, device=device)
    return u.clamp_(min=torch.finfo(torch.float64).tiny).log_().neg_().log_().neg_()


def _gumbel_keys(log_weights: Tensor, m: float, *, generator: torch.Generator) -> Tensor:
    """float64 keys log_w - m + Gumbel noise (m = max log-weight; -inf stays -inf, finite stays finite)."""
    keys = _gumbel(log_weights.numel(), generator=generator, device=log_weights.device)
    if abs(m) > 1e6:
        # Shift first: noise added to a huge log-weight would lose its resolution even in float64.
        keys += log_weights.to(torch.float64) - m
    else:
        keys += log_weights  # (no shift needed: float64 resolves O(1) noise next to |log_w| <= 1e6)
    return keys


def gumbel_top_k(log_weights: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """Sample ``k`` distinct indices without replacement, with probability proportional to ``exp(log_weights)``.

    Gumbel-top-k: ``topk(log_w + G, k)`` with i.i.d. standard Gumbel ``G``, which is exactly sequential sampling
    without replacement (each draw ∝ the weights of the items not yet drawn). The indices are returned in draw
    order: ``result[0]`` is distributed as a single proportional draw, ``result[1]`` as the second draw, etc.
    Used for CHTs soft removal and soft regrowth (Zhang et al. 2024, seed 003; DST.md "CHTs").

    Args:
        log_weights: ``(n,)`` float log-weights; ``-inf`` entries are ineligible and never chosen. NaN and
            ``+inf`` are errors (an infinite weight has no proportional probability). Any size, also beyond
            2^24 entries. Memory O(n): 8 bytes of float64 keys per entry (plus a float64 shifted copy of the
            input when its largest value exceeds 1e6 in magnitude).
        k: number of draws, ``0 <= k <=`` number of finite entries.
        generator: the source of every random draw (may live on another device than ``log_weights``).

    Returns:
        ``(k,)`` int64 indices on ``log_weights.device``, in draw order.
    """
    lw = _as_1d(log_weights, "log_weights")
    k = _check_k(k)
    m = _check_max(lw, "log_weights", allow_posinf=False)
    if k > lw.numel() or (k > 0 and m == -math.inf):
        raise _too_few(k, int(torch.count_nonzero(lw > -math.inf)), "finite (eligible)")
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=lw.device)
    keys = _gumbel_keys(lw, m, generator=generator)
    vals, idx = torch.topk(keys, k, sorted=True)
    # Finite log-weights have finite keys, so a -inf among the k largest means fewer than k were eligible.
    if float(vals[-1]) == -math.inf:
        n_eligible = int(torch.count_nonzero(lw > -math.inf))
        if n_eligible < k:
            raise _too_few(k, n_eligible, "finite (eligible)")
        raise ValueError("the finite log_weights span more than the float64 range; shift or clip them")
    return idx


def sample_proportional(
    scores: Tensor, k: int, *, temperature: float = 1.0, generator: torch.Generator
) -> Tensor:
    """Sample ``k`` distinct indices without replacement with probability proportional to ``score ** temperature``.

    The CHTs soft rule (Zhang et al. 2024, seed 003; DST.md "CHTs"): survivors of removal are sampled
    ∝ score^T, regrowth candidates ∝ CH score (T = 1). Computed in log space as Gumbel-top-k over
    ``T * log(score)`` (:func:`gumbel_top_k`).

    Rules:
        - ``score > 0``: weight ``score ** T``. ``T = 0`` gives every positive score weight 1 (uniform among
          them, the seed's δ = 0; the limit T → 0+).
        - ``score == 0``: weight 0, i.e. never drawn while a positive score is left. It is still eligible: when
          fewer than ``k`` scores are positive, **all** positive entries are taken and the remaining
          ``k - n_positive`` are drawn uniformly at random without replacement among the zero-score entries
          (the random fill of DST.md, the only way isolated neurons reconnect; the authors' MLP code instead adds
          1e-5 to every candidate, which we do not).
        - ``score == -inf``: ineligible, never chosen.
        - negative finite scores, NaN and ``+inf`` are errors (the message names the first offending value).

    Args:
        scores: ``(n,)`` non-negative scores or ``-inf``.
        k: ``0 <= k <=`` number of eligible (non ``-inf``) entries.
        temperature: ``T >= 0``, finite.
        generator: the source of every random draw.

    Returns:
        ``(k,)`` int64 indices on ``scores.device`` in draw order (with the fill rule: the positives first, in
        proportional draw order, then the uniformly drawn zero-score fills).
    """
    s = _as_1d(scores, "scores")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a real number, got {temperature!r}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")
    k = _check_k(k)
    if not s.is_floating_point():
        s = s.to(torch.float32)
    m = _check_max(s, "scores", allow_posinf=False)
    # Two passes (no boolean masks) find a negative finite score; the slow search for it runs only on error.
    if float(s.nan_to_num(neginf=0.0).min()) < 0:
        _first_bad(
            s, (s < 0) & (s > -math.inf), "scores", "negative values (only scores >= 0 or -inf are allowed)"
        )
    if k > s.numel():
        raise _too_few(k, int(torch.count_nonzero(s > -math.inf)), "eligible (score >= 0)")
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=s.device)
    # log w = T log s for s > 0; s = 0 (log -inf) and s = -inf (log NaN) both get weight 0 here; the T = 0 case
    # (0 * log 0 = NaN) too. No boolean masks: this runs on layers of 10^8 entries.
    log_w = s.log().mul_(float(temperature)).nan_to_num_(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
    m_log = math.log(m) * float(temperature) if m > 0 else -math.inf
    if m_log > -math.inf:
        keys = _gumbel_keys(log_w, m_log, generator=generator)
        del log_w
        vals, idx = torch.topk(keys, k, sorted=True)
        del keys
        # Positive scores have finite keys and come first, so the finite keys among the k largest are exactly
        # min(k, n_positive) of them.
        if float(vals[-1]) > -math.inf:
            return idx
        taken = idx[vals > -math.inf]
    else:
        del log_w
        taken = torch.empty(0, dtype=torch.long, device=s.device)
    # Random fill: fewer than k positive scores; the rest uniformly among the zero-score entries.
    need = k - taken.numel()
    zero_w = torch.zeros_like(s).masked_fill_(s != 0, -math.inf)
    keys = _gumbel_keys(zero_w, 0.0, generator=generator)
    del zero_w
    vals, fill = torch.topk(keys, need, sorted=True)
    if float(vals[-1]) == -math.inf:
        raise _too_few(k, taken.numel() + int(torch.count_nonzero(s == 0)), "eligible (score >= 0)")
    return torch.cat([taken, fill])


def top_k_random_ties(scores: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """The ``k`` largest scores (rigid top-k), with ties at the boundary value broken uniformly at random.

    Exact: every entry strictly above the k-th largest value ``v`` is selected, and the remaining places are
    filled by a uniformly random subset (without replacement) of the entries equal to ``v``, not by index order
    as ``torch.topk`` would. This matters for CH scores, which tie massively at high sparsity (DST.md, CHT), and
    for RigL / SET magnitude ranking (Evci et al. 2020; Mocanu et al. 2018).

    With non-negative scores this *is* the random-fill rule of :func:`sample_proportional`: when fewer than
    ``k`` scores are positive, all positives are taken and the zeros, all tied at the boundary value 0, fill
    the rest uniformly at random.

    Args:
        scores: ``(n,)`` real scores; ``-inf`` entries are ineligible and never chosen, NaN is an error,
            ``+inf`` ranks first.
        k: ``0 <= k <=`` number of eligible (non ``-inf``) entries; more is a ValueError.
        generator: the source of the tie-breaking draws.

    Returns:
        ``(k,)`` int64 indices on ``scores.device``, as a set: the order is unspecified (the entries above the
        boundary first, in ``torch.topk`` order, then the tied ones in random order).
    """
    s = _as_1d(scores, "scores")
    k = _check_k(k)
    _check_max(s, "scores", allow_posinf=True)
    if k > s.numel():
        raise _too_few(k, int(torch.count_nonzero(s > -math.inf)), "eligible (not -inf)")
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=s.device)
    # topk(k) without sorting finds the boundary value v, the k-th largest score.
    vals, idx = torch.topk(s, k, sorted=False)
    v = vals.min()
    if s.is_floating_point() and float(v) == -math.inf:
        raise _too_few(k, int(torch.count_nonzero(s > -math.inf)), "eligible (not -inf)")
    above = idx[vals > v]
    need = k - above.numel()
    tied = (s == v).nonzero().view(-1)
    # A uniformly random subset of `need` tied entries: the `need` largest of i.i.d. uniform keys (float64:
    # with millions of ties, 24-bit float32 uniforms would collide and fall back to index order).
    r = _uniform(tied.numel(), generator=generator, dtype=torch.float64, device=s.device)
    chosen = tied[torch.topk(r, need, sorted=True).indices]
    return torch.cat([above, chosen])
