"""cortexnet.rewiring.sampling: exact distributions of Gumbel-top-k, proportional sampling and random-tie top-k.

Goodness of fit: each distributional test draws N samples from a fixed seed and compares the observed counts
with the exact probabilities by scipy.stats.chisquare; the test fails when p < 1e-3 (ALPHA). Every cell's
expected count is checked to be >= 5 so the chi-square approximation holds. The seeds are fixed, so the tests
are deterministic; one power check shows the test does reject a wrong temperature.
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, chisquare

from cortexnet.rewiring.sampling import gumbel_top_k, sample_proportional, top_k_random_ties

ALPHA = 1e-3
INF = math.inf
SCORES = [1.0, 2.0, 3.0, 1.5, 2.5]  # five items; at T = 3 the smallest probability is 1 / 55


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _probs(scores: list[float], temperature: float) -> np.ndarray:
    w = np.asarray(scores, dtype=np.float64) ** temperature
    return w / w.sum()


def _ordered_pair_probs(p: np.ndarray) -> dict[tuple[int, int], float]:
    """P(first draw i, second draw j) = p_i * p_j / (1 - p_i): sequential sampling without replacement."""
    return {(i, j): p[i] * p[j] / (1.0 - p[i]) for i, j in itertools.permutations(range(len(p)), 2)}


def _pvalue(counts: dict, probs: dict) -> float:
    keys = sorted(probs)
    n = sum(counts.values())
    assert set(counts) <= set(keys), f"impossible outcomes drawn: {set(counts) - set(keys)}"
    f_exp = np.array([probs[key] for key in keys]) * n
    assert f_exp.min() >= 5, f"expected count {f_exp.min():.1f} < 5: use more samples"
    f_obs = np.array([counts.get(key, 0) for key in keys], dtype=np.float64)
    return float(chisquare(f_obs, f_exp * (f_obs.sum() / f_exp.sum())).pvalue)


def _count(samples) -> dict:
    out: dict = {}
    for s in samples:
        out[s] = out.get(s, 0) + 1
    return out


# ----------------------------------------------------------------------------------------- distributions


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_gumbel_top_k_first_pick_is_proportional(temperature):
    p = _probs(SCORES, temperature)
    log_w = torch.tensor(SCORES).log() * temperature
    g = _gen(1)
    counts = _count(int(gumbel_top_k(log_w, 1, generator=g)[0]) for _ in range(3000))
    assert _pvalue(counts, dict(enumerate(p))) >= ALPHA


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_gumbel_top_k_ordered_pairs_are_sequential_sampling(temperature):
    # k = 2: result[0] is the first draw (∝ p), result[1] the second (∝ p among the rest): 20 ordered pairs.
    p = _probs(SCORES, temperature)
    log_w = torch.tensor(SCORES).log() * temperature
    g = _gen(2)
    draws = [tuple(gumbel_top_k(log_w, 2, generator=g).tolist()) for _ in range(6000)]
    pairs = _ordered_pair_probs(p)
    assert _pvalue(_count(draws), pairs) >= ALPHA
    assert _pvalue(_count(d[0] for d in draws), dict(enumerate(p))) >= ALPHA
    if temperature == 3.0:
        # Power: the same samples are far from the T = 1 pair probabilities.
        assert _pvalue(_count(draws), _ordered_pair_probs(_probs(SCORES, 1.0))) < ALPHA


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_sample_proportional_inclusion_matches_enumeration(temperature):
    # An ineligible (-inf) sixth entry must never be drawn; the five others are sampled ∝ score^T.
    p = _probs(SCORES, temperature)
    scores = torch.tensor([*SCORES, -INF])
    g = _gen(3)
    draws = [
        sample_proportional(scores, 2, temperature=temperature, generator=g).tolist() for _ in range(5000)
    ]
    assert all(5 not in d and len(set(d)) == 2 for d in draws)
    ordered = _ordered_pair_probs(p)
    unordered: dict[tuple[int, int], float] = {}
    for (i, j), q in ordered.items():
        unordered[(min(i, j), max(i, j))] = unordered.get((min(i, j), max(i, j)), 0.0) + q
    assert _pvalue(_count(tuple(sorted(d)) for d in draws), unordered) >= ALPHA
    assert _pvalue(_count(d[0] for d in draws), dict(enumerate(p))) >= ALPHA
    # Inclusion probability of each item, P(i in S) = sum over the ordered pairs containing i.
    for i in range(5):
        inclusion = sum(q for pair, q in ordered.items() if i in pair)
        hits = sum(i in d for d in draws)
        assert binomtest(hits, len(draws), inclusion).pvalue >= ALPHA, (i, hits / len(draws), inclusion)


def test_sample_proportional_zero_temperature_is_uniform_over_positives():
    g = _gen(4)
    scores = torch.tensor([0.0, 1.0, 100.0, -INF])
    counts = _count(int(sample_proportional(scores, 1, temperature=0.0, generator=g)[0]) for _ in range(2000))
    assert _pvalue(counts, {1: 0.5, 2: 0.5}) >= ALPHA


def test_gumbel_top_k_large_log_weights_keep_their_ratios():
    # |max| > 1e6 takes the shifted path; exp(1e7 + log 2) : exp(1e7) = 2 : 1.
    log_w = torch.tensor([1e7, 1e7, 1e7 + math.log(2.0)], dtype=torch.float64)
    g = _gen(5)
    counts = _count(int(gumbel_top_k(log_w, 1, generator=g)[0]) for _ in range(2000))
    assert _pvalue(counts, {0: 0.25, 1: 0.25, 2: 0.5}) >= ALPHA


def test_sample_proportional_fill_rule_takes_all_positives_then_uniform_zeros():
    # Two positives, three zeros, one ineligible; k = 4: both positives (first, in draw order), then two of
    # the three zeros uniformly at random.
    scores = torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0, -INF])
    g = _gen(6)
    draws = [sample_proportional(scores, 4, temperature=3.0, generator=g).tolist() for _ in range(1200)]
    assert all(set(d[:2]) == {0, 1} and 5 not in d and len(set(d)) == 4 for d in draws)
    fills = _count(tuple(sorted(d[2:])) for d in draws)
    assert _pvalue(fills, {pair: 1 / 3 for pair in itertools.combinations([2, 3, 4], 2)}) >= ALPHA
    # No positive at all: a uniform draw among the zeros.
    only_zeros = torch.tensor([0.0, -INF, 0.0, 0.0])
    assert set(sample_proportional(only_zeros, 3, generator=g).tolist()) == {0, 2, 3}


def test_top_k_random_ties_breaks_boundary_ties_uniformly():
    scores = torch.tensor([5.0, 3.0, 3.0, 3.0, 3.0, 1.0, -INF])
    g = _gen(7)
    two = [top_k_random_ties(scores, 2, generator=g).tolist() for _ in range(2000)]
    assert all(0 in d for d in two)
    assert _pvalue(_count(next(i for i in d if i != 0) for d in two), {i: 0.25 for i in range(1, 5)}) >= ALPHA
    three = [top_k_random_ties(scores, 3, generator=g).tolist() for _ in range(2000)]
    assert all(0 in d and len(set(d)) == 3 for d in three)
    pairs = _count(tuple(sorted(i for i in d if i != 0)) for d in three)
    assert _pvalue(pairs, {pair: 1 / 6 for pair in itertools.combinations(range(1, 5), 2)}) >= ALPHA


def test_top_k_random_ties_fills_with_zeros_uniformly():
    # With non-negative scores the zero ties are the random fill of DST.md.
    scores = torch.tensor([2.0, 0.0, 0.0, 0.0, -INF])
    g = _gen(8)
    draws = [top_k_random_ties(scores, 3, generator=g).tolist() for _ in range(900)]
    assert all(0 in d and 4 not in d for d in draws)
    pairs = _count(tuple(sorted(i for i in d if i != 0)) for d in draws)
    assert _pvalue(pairs, {pair: 1 / 3 for pair in itertools.combinations([1, 2, 3], 2)}) >= ALPHA


# ------------------------------------------------------------------------------------- exactness, -inf


def test_top_k_random_ties_is_an_exact_top_k():
    g = _gen(9)
    for trial in range(50):
        n = 200
        # Integer-valued scores: heavy ties, plus some -inf.
        scores = torch.randint(0, 6, (n,), generator=g).float()
        scores[torch.rand(n, generator=g) < 0.2] = -INF
        n_finite = int(torch.isfinite(scores).sum())
        k = int(torch.randint(0, n_finite + 1, (1,), generator=g))
        idx = top_k_random_ties(scores, k, generator=g)
        assert idx.dtype == torch.long and idx.numel() == k and idx.unique().numel() == k
        if k == 0:
            continue
        chosen = scores[idx]
        v = torch.sort(scores, descending=True).values[
            k - 1
        ]  # the reference boundary (small n: sort is fine)
        assert torch.isfinite(chosen).all(), trial
        assert (chosen >= v).all()
        assert int((scores > v).sum()) == int((chosen > v).sum())  # every entry above the boundary is taken


@pytest.mark.parametrize("fn", ["gumbel", "proportional", "ties"])
def test_minus_inf_never_chosen(fn):
    g = _gen(10)
    for _ in range(100):
        n = int(torch.randint(1, 40, (1,), generator=g))
        scores = torch.rand(n, generator=g) * (torch.rand(n, generator=g) < 0.7)  # some exact zeros
        scores[torch.rand(n, generator=g) < 0.4] = -INF
        n_eligible = int((scores > -INF).sum())
        k = n_eligible if n_eligible <= 3 else int(torch.randint(0, n_eligible + 1, (1,), generator=g))
        if fn == "gumbel":
            # log-weights: zeros are then weight-1 entries; only -inf is ineligible.
            idx = gumbel_top_k(scores, k, generator=g)
        elif fn == "proportional":
            idx = sample_proportional(scores, k, temperature=2.0, generator=g)
        else:
            idx = top_k_random_ties(scores, k, generator=g)
        assert idx.numel() == k and idx.unique().numel() == k
        assert (scores[idx] > -INF).all()
        if k == n_eligible:
            assert set(idx.tolist()) == set((scores > -INF).nonzero().view(-1).tolist())


def test_k_zero_returns_empty_long():
    g = _gen()
    x = torch.tensor([1.0, 2.0, -INF])
    for out in (
        gumbel_top_k(x, 0, generator=g),
        sample_proportional(x, 0, generator=g),
        top_k_random_ties(x, 0, generator=g),
        gumbel_top_k(torch.full((3,), -INF), 0, generator=g),
        top_k_random_ties(torch.empty(0), 0, generator=g),
    ):
        assert out.dtype == torch.long and out.numel() == 0


def test_same_seed_same_choice_different_seed_different():
    x = torch.rand(1000, generator=_gen(11))
    x[::7] = 0.0
    ties = torch.randint(0, 3, (1000,), generator=_gen(12)).float()
    calls = [
        lambda g: gumbel_top_k(x.log(), 50, generator=g),
        lambda g: sample_proportional(x, 900, temperature=3.0, generator=g),
        lambda g: top_k_random_ties(ties, 400, generator=g),
    ]
    for call in calls:
        a, b, c = call(_gen(42)), call(_gen(42)), call(_gen(43))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_integer_scores_work_for_top_k():
    g = _gen()
    idx = top_k_random_ties(torch.tensor([3, 1, 3, 2]), 2, generator=g)
    assert sorted(idx.tolist()) == [0, 2]


# ------------------------------------------------------------------------------------------- big inputs


@pytest.fixture(scope="module")
def big_mostly_ineligible():
    """2^24 + 10 entries (more than torch.multinomial accepts), all -inf except 100 random positions."""
    n = 2**24 + 10
    pos = torch.tensor(random.Random(13).sample(range(n), 100))  # (randperm(n) alone takes seconds)
    x = torch.full((n,), -INF)
    x[pos] = 0.0
    return x, pos


def test_gumbel_top_k_beyond_2_pow_24_entries(big_mostly_ineligible):
    x, pos = big_mostly_ineligible
    idx = gumbel_top_k(x, 50, generator=_gen(14))
    assert idx.numel() == 50 and idx.unique().numel() == 50
    assert torch.isin(idx, pos).all()


def test_sample_proportional_and_ties_beyond_2_pow_24_entries(big_mostly_ineligible):
    x, pos = big_mostly_ineligible
    scores = x.clone()
    scores[pos[:5]] = 1.0  # 5 positives, 95 zeros, the rest -inf
    idx = sample_proportional(scores, 8, generator=_gen(15))
    assert set(idx[:5].tolist()) == set(pos[:5].tolist())
    assert torch.isin(idx[5:], pos[5:]).all() and idx.unique().numel() == 8
    idx = top_k_random_ties(scores, 8, generator=_gen(16))
    assert set(pos[:5].tolist()) <= set(idx.tolist())
    assert torch.isin(idx, pos).all() and idx.unique().numel() == 8


# ----------------------------------------------------------------------------------------------- errors


def test_k_errors_name_the_value():
    g = _gen()
    x = torch.tensor([1.0, 0.0, -INF, 2.0])
    with pytest.raises(ValueError, match=r"k must be >= 0, got -1"):
        gumbel_top_k(x, -1, generator=g)
    with pytest.raises(ValueError, match=r"k=4 exceeds the number of finite \(eligible\) entries \(3\)"):
        gumbel_top_k(x, 4, generator=g)
    with pytest.raises(ValueError, match=r"k=9 exceeds .* \(3\)"):
        gumbel_top_k(x, 9, generator=g)
    with pytest.raises(ValueError, match=r"k=4 exceeds the number of eligible \(score >= 0\) entries \(3\)"):
        sample_proportional(x, 4, generator=g)
    with pytest.raises(ValueError, match=r"k=4 exceeds the number of eligible \(not -inf\) entries \(3\)"):
        top_k_random_ties(x, 4, generator=g)
    with pytest.raises(ValueError, match=r"k=1 exceeds .* \(0\)"):
        sample_proportional(torch.full((3,), -INF), 1, generator=g)
    with pytest.raises(ValueError, match=r"k must be >= 0"):
        top_k_random_ties(x, -2, generator=g)
    for bad_k in (1.5, True):
        with pytest.raises(TypeError, match="k must be an integer"):
            top_k_random_ties(x, bad_k, generator=g)


def test_value_errors_name_the_value():
    g = _gen()
    with pytest.raises(ValueError, match=r"log_weights must not contain NaN; found nan at index 1"):
        gumbel_top_k(torch.tensor([0.0, math.nan]), 1, generator=g)
    with pytest.raises(ValueError, match=r"log_weights must not contain \+inf.*index 0"):
        gumbel_top_k(torch.tensor([INF, 0.0]), 1, generator=g)
    with pytest.raises(ValueError, match=r"scores must not contain negative values.*found -0.5 at index 2"):
        sample_proportional(torch.tensor([1.0, -INF, -0.5]), 1, generator=g)
    with pytest.raises(ValueError, match=r"scores must not contain NaN"):
        sample_proportional(torch.tensor([1.0, math.nan]), 1, generator=g)
    with pytest.raises(ValueError, match=r"scores must not contain \+inf"):
        sample_proportional(torch.tensor([1.0, INF]), 1, generator=g)
    with pytest.raises(ValueError, match=r"scores must not contain NaN; found nan at index 0"):
        top_k_random_ties(torch.tensor([math.nan, 1.0]), 1, generator=g)
    for t in (-1.0, math.nan, INF):
        with pytest.raises(ValueError, match=r"temperature must be finite and >= 0, got"):
            sample_proportional(torch.tensor([1.0]), 1, temperature=t, generator=g)
    with pytest.raises(ValueError, match=r"must be 1-D .* got shape \(2, 2\)"):
        top_k_random_ties(torch.ones(2, 2), 1, generator=g)
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        gumbel_top_k([0.0, 1.0], 1, generator=g)


def test_top_k_random_ties_ranks_plus_inf_first():
    idx = top_k_random_ties(torch.tensor([1.0, INF, 2.0]), 1, generator=_gen())
    assert idx.tolist() == [1]


# ----------------------------------------------------------------------------------------------- device


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_with_cuda_scores_matches_cpu():
    x = torch.rand(10_000, generator=_gen(17))
    x[::3] = 0.0
    for fn, args in (
        (gumbel_top_k, (x.log(), 100)),
        (sample_proportional, (x, 100)),
        (top_k_random_ties, ((x * 4).floor(), 500)),
    ):
        cpu = fn(*args, generator=_gen(18))
        cuda = fn(args[0].cuda(), args[1], generator=_gen(18))
        assert cuda.device.type == "cuda"
        # Same noise (drawn on the CPU generator) gives the same set of choices on both devices.
        assert set(cpu.tolist()) == set(cuda.cpu().tolist())
