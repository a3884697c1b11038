"""Ring-lattice initialisers (seeds 002-004, DST.md "Initialisers"): bipartite small world ("bsw"), bipartite
receptive field ("brf") and the dendritic network model ("dnm") on feed-forward and recurrent layers: exact
link totals, hand-computed lattices, statistical checks with tolerances from the distributions (fixed seeds),
coverage at non-integer aspect ratios, dendritic blocks, determinism, Dale's law, parameter validation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from cortexnet.connectivity import (
    Connectivity,
    LayerSpec,
    check_topology_params,
    make_connectivity,
    rounded_count,
)
from cortexnet.connectivity.lattice import apportion, dnm_plan, spread, uniform_subset
from cortexnet.layers import constraint_violations, sparse_weights
from cortexnet.models import CortexRNNConfig, build_model

NAMES = ("bsw", "brf", "dnm")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(name: str, spec: LayerSpec, seed: int = 0, **params) -> Connectivity:
    return make_connectivity(name, spec, generator=gen(seed), **params)


def assert_valid_csr(c: Connectivity) -> None:
    """Columns in range, strictly increasing within every row (so no duplicates)."""
    assert c.col.numel() == 0 or (int(c.col.min()) >= 0 and int(c.col.max()) < c.n_in)
    rows = c.rows()
    same_row = rows[1:] == rows[:-1]
    assert bool((c.col[1:][same_row] > c.col[:-1][same_row]).all())


def ring_distance(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    d = (a - b).abs()
    return torch.minimum(d, n - d)


# -- exact link totals -------------------------------------------------------------------------------------
VARIANTS = [
    ("bsw", {}),
    ("bsw", {"beta": 0.0}),
    ("bsw", {"beta": 1.0}),
    ("brf", {}),
    ("brf", {"degree": "uniform"}),
    ("brf", {"r": 1.0}),
    ("dnm", {}),
    ("dnm", {"degree_distribution": "spatial_gaussian", "synaptic_distribution": "spatial_gaussian"}),
    ("dnm", {"synapses": 3, "window": 0.8}),
]


@pytest.mark.parametrize(("name", "params"), VARIANTS)
@pytest.mark.parametrize(
    ("n_out", "n_in", "recurrent", "self_conn"),
    [(12, 30, False, False), (30, 12, False, False), (17, 17, False, False), (25, 25, True, False),
     (25, 25, True, True)],
)  # fmt: skip
def test_exact_link_totals_on_feed_forward_and_recurrent_layers(
    name, params, n_out, n_in, recurrent, self_conn
):
    for p in (0.15, 0.37):
        spec = LayerSpec(n_out, n_in, recurrent=recurrent, self_connections=self_conn, density=p)
        c = build(name, spec, **params)
        possible = n_out * n_in - (n_out if recurrent and not self_conn else 0)
        assert c.shape == (n_out, n_in) and c.nnz == rounded_count(p, possible)
        assert_valid_csr(c)
        if recurrent and not self_conn:
            assert not bool(c.diagonal_present().any())
    # The self_connections argument overrides the layer description's; p overrides its density.
    spec = LayerSpec(n_out, n_in, recurrent=recurrent, self_connections=True, density=0.9)
    c = build(name, spec, p=0.2, self_connections=False, **params)
    possible = n_out * n_in - (n_out if recurrent else 0)
    assert c.nnz == rounded_count(0.2, possible)
    assert not recurrent or not bool(c.diagonal_present().any())


def test_self_connections_appear_when_allowed():
    # The lattice and the nearest-neighbour limit of BRF put the node itself first (ring distance 0).
    spec = LayerSpec(30, 30, recurrent=True, self_connections=True, density=0.1)
    assert bool(build("bsw", spec, beta=0.0).diagonal_present().sum() == 30)
    assert bool(build("brf", spec, r=0.001).diagonal_present().sum() == 30)


# -- BSW ---------------------------------------------------------------------------------------------------
def test_bsw_beta0_is_the_hand_computed_lattice():
    # Recurrent, N = 5, p = 0.35: round(0.35 * 20) = 7 links, degrees spread(7, 5) = [1, 1, 2, 1, 2]; node i
    # takes its nearest ring neighbours in the order i-1, i+1, i-2, ...
    spec = LayerSpec(5, 5, recurrent=True, density=0.35)
    assert spread(7, 5).tolist() == [1, 1, 2, 1, 2]
    expected = torch.tensor([
        [0, 0, 0, 0, 1],  # node 0 <- 4
        [1, 0, 0, 0, 0],  # node 1 <- 0
        [0, 1, 0, 1, 0],  # node 2 <- 1, 3
        [0, 0, 1, 0, 0],  # node 3 <- 2
        [1, 0, 0, 1, 0],  # node 4 <- 3, 0
    ], dtype=torch.bool)  # fmt: skip
    assert torch.equal(make_connectivity("bsw", spec, generator=None, beta=0.0).to_dense(), expected)
    # With self-connections the node itself is nearest: N = 4, p = 0.5 -> 8 links, 2 each: {i, i - 1}.
    spec = LayerSpec(4, 4, recurrent=True, self_connections=True, density=0.5)
    expected = torch.tensor([[1, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(make_connectivity("bsw", spec, generator=None, beta=0.0).to_dense(), expected)
    # Feed-forward 3 x 6, p = 0.5: the 6 inputs (larger side) get windows of the 3 outputs, degrees
    # spread(9, 6) = [1, 2, 1, 2, 1, 2] from round(j/2 - (d - 1)/2): {0}, {0,1}, {1}, {1,2}, {2}, {2,0}.
    spec = LayerSpec(3, 6, recurrent=False, density=0.5)
    expected = torch.tensor([[1, 1, 0, 0, 0, 1], [0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(make_connectivity("bsw", spec, generator=None, beta=0.0).to_dense(), expected)
    # ... and its transpose orientation gives the transposed lattice (the outputs are now the larger side).
    spec = LayerSpec(6, 3, recurrent=False, density=0.5)
    assert torch.equal(make_connectivity("bsw", spec, generator=None, beta=0.0).to_dense(), expected.T)


def test_bsw_rewires_about_beta_of_the_lattice():
    spec = LayerSpec(300, 300, recurrent=True, density=0.05)
    lattice = make_connectivity("bsw", spec, generator=None, beta=0.0).to_dense()
    n = int(lattice.sum())
    for beta in (0.1, 0.25, 0.5):
        kept = int((build("bsw", spec, seed=3, beta=beta).to_dense() & lattice).sum())
        # Kept lattice links: Binomial(n, 1 - beta) survivors, plus the ~beta n re-placed links that land back
        # on one of the ~beta n removed positions among the possible - (1 - beta) n free ones.
        free = 300 * 299 - n * (1 - beta)
        mean = n * (1 - beta) + (beta * n) ** 2 / free
        assert abs(kept - mean) < 5 * math.sqrt(n * beta * (1 - beta)) + 5, (beta, kept, mean)


def test_bsw_beta1_in_degrees_follow_the_exact_count_erdos_renyi_law():
    # beta = 1 places round(p * possible) links uniformly: each in-degree is hypergeometric (population
    # N (N - 1) pairs, N - 1 of them into the node, T drawn). Chi-square goodness of fit on binned degrees.
    n, p = 1500, 0.02
    spec = LayerSpec(n, n, recurrent=True, density=p)
    total = rounded_count(p, n * (n - 1))
    law = stats.hypergeom(n * (n - 1), n - 1, total)
    edges = np.concatenate(([-1], np.arange(int(law.ppf(0.01)), int(law.ppf(0.99)) + 1, 3), [n]))
    expected = np.diff(law.cdf(edges)) * n

    def pvalue(conn: Connectivity) -> float:
        observed = np.histogram(conn.crow.diff().numpy(), bins=edges + 0.5)[0]
        return stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue

    assert pvalue(build("bsw", spec, seed=5, beta=1.0)) > 1e-3
    assert pvalue(make_connectivity("er", spec, generator=gen(6), exact=True)) > 1e-3
    # The test has power: the lattice's (near-constant) and half-rewired degrees are rejected.
    assert pvalue(build("bsw", spec, seed=5, beta=0.0)) < 1e-6
    assert pvalue(build("bsw", spec, seed=5, beta=0.5)) < 1e-6
    # KS on the in-degrees against exact-count ER's (two-sample; discrete, hence conservative).
    er = make_connectivity("er", spec, generator=gen(7), exact=True).crow.diff().numpy()
    assert stats.ks_2samp(build("bsw", spec, seed=8, beta=1.0).crow.diff().numpy(), er).pvalue > 1e-3


def test_uniform_subset_is_uniform_and_exact():
    g = gen(0)
    counts = torch.zeros(10, dtype=torch.int64)
    for m in (3, 7):  # 7 > 10 / 2 goes through the complement
        for _ in range(2000):
            s = uniform_subset(10, m, g)
            assert s.numel() == m and bool((s.diff() > 0).all())
            counts += torch.bincount(s, minlength=10)
        # Each element is in the subset with probability m / 10.
        assert stats.chisquare(counts.numpy()).pvalue > 1e-3
        counts.zero_()
    big = uniform_subset(3 * 2**24 + 5, 1000, g)  # several blocks
    assert big.numel() == 1000 and bool((big.diff() > 0).all()) and int(big.max()) < 3 * 2**24 + 5


# -- BRF ---------------------------------------------------------------------------------------------------
def test_brf_mean_ring_distance_grows_with_r_and_r1_is_uniform():
    n, p = 400, 0.05
    spec = LayerSpec(n, n, recurrent=True, density=p)
    means, ses = [], []
    for r in (0.1, 0.3, 0.6, 1.0):
        c = build("brf", spec, seed=1, r=r)
        d = ring_distance(c.rows(), c.col, n).double()
        means.append(float(d.mean()))
        ses.append(float(d.std()) / math.sqrt(d.numel()))
    for k in range(len(means) - 1):
        assert means[k] + 5 * (ses[k] + ses[k + 1]) < means[k + 1], means
    # r = 1: every other node equally likely. Distances 1..199 have two nodes each, 200 one.
    dist = np.arange(1, n // 2 + 1)
    mult = np.where(dist == n // 2, 1, 2)
    assert abs(means[-1] - float((dist * mult).sum() / (n - 1))) < 5 * ses[-1]
    c = build("brf", spec, seed=2, r=1.0)
    d = ring_distance(c.rows(), c.col, n).numpy()
    edges = np.linspace(0.5, n // 2 + 0.5, 11)
    expected = np.histogram(dist, bins=edges, weights=mult)[0] / (n - 1) * d.size
    assert stats.chisquare(np.histogram(d, bins=edges)[0], expected).pvalue > 1e-3


def test_brf_small_r_takes_the_nearest_neighbours():
    n = 101
    spec = LayerSpec(n, n, recurrent=True, density=0.07)  # 700 links: degrees 6 or 7
    c = build("brf", spec, seed=0, r=1e-4)
    deg = c.crow.diff()
    d = ring_distance(c.rows(), c.col, n)
    per_row_max = torch.zeros(n, dtype=torch.int64).scatter_reduce_(0, c.rows(), d, "amax")
    assert torch.equal(per_row_max, (deg + 1) // 2)  # d = 2q (+1): all at distance <= q, (one at q + 1)
    # the odd one out is on either side at random
    rows = c.rows()
    far = d == (deg[rows] + 1) // 2
    odd = (deg[rows] % 2 == 1) & far
    side = torch.remainder(c.col[odd] - rows[odd], n) == 1 + (deg[rows[odd]] - 1) // 2
    k = int(odd.sum())
    assert abs(int(side.sum()) - k / 2) < 4 * math.sqrt(k / 4)


def test_brf_uniform_degrees_spread_between_1_and_2k():
    n, p = 400, 0.05
    spec = LayerSpec(n, n, recurrent=True, density=p)
    fixed = build("brf", spec, degree="fixed").crow.diff().double()
    uniform = build("brf", spec, seed=4, degree="uniform").crow.diff().double()
    k = rounded_count(p, n * (n - 1)) / n
    assert float(fixed.max() - fixed.min()) <= 1
    assert int(uniform.min()) >= 1 and abs(float(uniform.mean()) - k) < 1e-9
    # ~ 1 + U(0, 2 (K - 1)): SD (2K - 2) / sqrt(12); the SD's standard error ~ 2 % here, the random
    # normalisation another ~3 %: 15 % tolerance.
    assert abs(float(uniform.std()) / ((2 * k - 2) / math.sqrt(12)) - 1) < 0.15
    assert stats.kstest((uniform.numpy() - 1) / (2 * k - 2), "uniform").pvalue > 1e-3


@pytest.mark.parametrize(("n_out", "n_in"), [(7, 20), (20, 7), (13, 31), (31, 13)])
def test_every_node_covered_at_non_integer_aspect_ratios(n_out, n_in):
    # Float ring centres (i * n_large / n_small): the authors' integer stride n_large // n_small would put the
    # 7 centres of a 7 x 20 layer at 0, 2, ..., 12 and leave inputs 15-17 uncovered by nearest neighbours.
    spec = LayerSpec(n_out, n_in, recurrent=False, density=0.2)
    for c in (build("brf", spec, r=0.01), make_connectivity("bsw", spec, generator=None, beta=0.0)):
        dense = c.to_dense()
        assert bool(dense.any(dim=0).all()) and bool(dense.any(dim=1).all())
    # Nearest neighbours on the smaller side's ring: every link of sampling node i lies within K/2 + 1 of
    # its centre i * n_large / n_small.
    c = build("brf", spec, r=0.001)
    small_rows = n_out <= n_in
    i, j = (c.rows(), c.col) if small_rows else (c.col, c.rows())
    n_small, n_large = min(n_out, n_in), max(n_out, n_in)
    centre = i.double() * n_large / n_small
    d = torch.remainder(j.double() - centre, n_large)
    d = torch.minimum(d, n_large - d)
    k = c.nnz / n_small
    assert float(d.max()) <= k / 2 + 1


# -- DNM ---------------------------------------------------------------------------------------------------
def runs(slots: list[int]) -> list[int]:
    """Lengths of the maximal runs of consecutive integers in a sorted list."""
    out, prev = [], None
    for s in slots:
        if prev is not None and s == prev + 1:
            out[-1] += 1
        else:
            out.append(1)
        prev = s
    return out


def window_slots_of_rows(c: Connectivity, spec: LayerSpec, w: int) -> list[list[int]]:
    """Per row, the window slot (0 .. w-1, or >= w when outside) of every link, sorted: feed-forward window
    centred on i * n_in / n_out on the input ring; recurrent the other nodes, floor(w/2) before i."""
    out = []
    for i in range(c.n_out):
        cols = c.col[c.crow[i] : c.crow[i + 1]]
        if spec.recurrent:
            m = spec.n_in - 1
            pos = cols - (cols > i).to(torch.int64)  # the other nodes, contiguous around i
            first = i - w // 2
        else:
            m = spec.n_in
            pos = cols
            first = math.floor(i * spec.n_in / spec.n_out - (w - 1) / 2 + 0.5)
        out.append(sorted(torch.remainder(pos - first, m).tolist()))
    return out


@pytest.mark.parametrize("recurrent", [False, True])
def test_dnm_branches_are_consecutive_blocks_inside_the_window(recurrent):
    spec = LayerSpec(120, 120, recurrent=True, density=0.1) if recurrent else LayerSpec(40, 200, density=0.1)
    c = build("dnm", spec, seed=2)
    deg = c.crow.diff()
    k = c.nnz / spec.n_out
    assert int(deg.max() - deg.min()) <= 1  # fixed synaptic distribution: ⌊K⌋ or ⌈K⌉ links
    b = 4  # default branches
    w = min(spec.n_in - (1 if recurrent else 0), 2 * (int(deg.max()) + b - 1))  # the documented auto window
    assert dnm_plan(spec)[2] == w
    for i, slots in enumerate(window_slots_of_rows(c, spec, w)):
        assert max(slots) < w, i  # inside the receptive window
        sizes = runs(slots)
        assert len(sizes) == b, (i, slots)  # separate branches: a free slot between consecutive blocks
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == int(
            deg[i]
        )  # synapses per branch ⌊K/B⌋ or ⌈K/B⌉
    assert k > b


def test_dnm_gaps_are_uniform_compositions():
    # The W - K - (B - 1) free slots are split among the B + 1 gaps uniformly at random: every gap has mean
    # G / (B + 1) and variance G (G + B + 1) B / ((B + 1)^2 (B + 2)).
    spec = LayerSpec(400, 400, density=0.05)  # K = 20, B = 4, W = 46, G = 23
    c = build("dnm", spec, seed=9)
    w = dnm_plan(spec)[2]
    b, k = 4, 20
    g_free = w - k - (b - 1)
    gaps = []
    for slots in window_slots_of_rows(c, spec, w):
        starts = [s for s in slots if s - 1 not in slots]
        ends = [s for s in slots if s + 1 not in slots]
        gaps.append([starts[0]] + [starts[q + 1] - ends[q] - 2 for q in range(b - 1)] + [w - 1 - ends[-1]])
    gaps = np.array(gaps, dtype=np.float64)
    assert bool((gaps >= 0).all()) and bool((gaps.sum(axis=1) == g_free).all())
    mean = g_free / (b + 1)
    sd = math.sqrt(g_free * (g_free + b + 1) * b / ((b + 1) ** 2 * (b + 2)))
    assert np.all(np.abs(gaps.mean(axis=0) - mean) < 5 * sd / math.sqrt(len(gaps))), gaps.mean(axis=0)


def test_dnm_spatial_gaussian_distributions():
    spec = LayerSpec(60, 300, density=0.1)
    total = rounded_count(0.1, 60 * 300)
    branches, links, w = dnm_plan(spec, branches=5, degree_distribution="spatial_gaussian")
    assert int(branches.sum()) == 60 * 5 and int(branches.min()) >= 1
    assert int(branches[28:32].min()) > int(branches[:3].max())  # centre neurons grow more branches
    c = build("dnm", spec, branches=5, degree_distribution="spatial_gaussian")
    assert c.nnz == total
    per_row = [len(runs(s)) for s in window_slots_of_rows(c, spec, w)]
    assert per_row == branches.tolist()
    _, links, _ = dnm_plan(spec, synaptic_distribution="spatial_gaussian")
    c = build("dnm", spec, synaptic_distribution="spatial_gaussian")
    assert c.nnz == total and torch.equal(c.crow.diff(), links)
    assert int(links[28:32].min()) > 2 * int(links[:3].max())  # longer branches at the centre
    # synapses instead of branches: branches = round(K / synapses)
    assert dnm_plan(spec, synapses=10)[0].tolist() == [3] * 60


def test_apportion_meets_bounds_and_total():
    w = torch.tensor([1.0, 2.0, 3.0, 100.0])
    x = apportion(20, w, torch.ones(4, dtype=torch.int64), torch.full((4,), 8, dtype=torch.int64))
    assert x.tolist() == [2, 4, 6, 8]  # the heavy one capped at 8, the other 12 in proportion 1 : 2 : 3


# -- determinism and models --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_same_generator_state_gives_the_same_mask(name):
    for spec in (LayerSpec(50, 50, recurrent=True, density=0.1), LayerSpec(20, 70, density=0.1)):
        a, b = build(name, spec, seed=11), build(name, spec, seed=11)
        assert a.equals(b)
        assert not a.equals(build(name, spec, seed=12))


@pytest.mark.parametrize("name", NAMES)
def test_dale_holds_on_a_recurrent_cortex_rnn_after_adam_steps(name):
    cfg = CortexRNNConfig(n_nodes=60, p=0.1, dale=True, topology=name, connectivity_seed=1)
    model = build_model("cortex_rnn", cfg, 4, 3)
    rec = next(iter(sparse_weights(model).values()))
    assert rec.connectivity().equals(make_connectivity(name, cfg.layer_spec(), generator=gen(1)))
    x, y = torch.rand(8, 5, 4), torch.arange(8) % 3
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert constraint_violations(model)["total"] == 0
    assert not bool(rec.connectivity().diagonal_present().any())


# -- validation --------------------------------------------------------------------------------------------
WIDE = LayerSpec(40, 200, density=0.1)


@pytest.mark.parametrize(
    ("name", "params", "spec", "match"),
    [
        ("bsw", {"beta": 1.5}, None, r"bsw beta must be in \[0, 1\], got 1.5"),
        ("bsw", {"beta": "x"}, None, "beta must be a number"),
        ("bsw", {"p": -0.1}, None, r"p must be in \[0, 1\], got -0.1"),
        ("bsw", {}, LayerSpec(12, 16), "needs a connection probability.*p=\\.\\.\\."),
        ("brf", {"r": 0.0}, None, r"brf r must be in \(0, 1\], got 0.0 \(r -> 0: nearest"),
        ("brf", {"r": 1.2}, None, r"brf r must be in \(0, 1\]"),
        ("brf", {"degree": "normal"}, None, r"brf degree must be one of \('fixed', 'uniform'\), got 'norm"),
        ("brf", {}, LayerSpec(12, 16), "needs a connection probability"),
        ("dnm", {"branches": 0}, None, "dnm branches must be an integer >= 1, got 0"),
        ("dnm", {"branches": 2, "synapses": 3}, None, "branches or synapses, not both"),
        ("dnm", {"window": 0.0}, None, r"dnm window must be in \(0, 1\], got 0.0"),
        ("dnm", {"degree_distribution": "uniform"}, None, "dnm degree_distribution must be one of"),
        ("dnm", {"sigma": 0.0}, None, "dnm sigma .* must be > 0, got 0.0"),
        ("dnm", {"window": 0.02}, WIDE, "window = 0.02 holds 4 of 200 .*raise window"),
        ("dnm", {"branches": 30}, WIDE, "need 1200 links .*gives 800 .*lower branches"),
        ("dnm", {"branches": 4}, LayerSpec(40, 200, density=0.01), r"p = 0.01 gives 80 links .*raise p"),
    ],
)  # fmt: skip
def test_bad_parameters_are_rejected_with_the_fix(name, params, spec, match):
    with pytest.raises(ValueError, match=match):
        check_topology_params(name, params, spec=spec)


def test_good_parameters_pass_and_models_validate():
    spec = LayerSpec(40, 200, density=0.1)
    for name, params in VARIANTS:
        check_topology_params(name, params, spec=spec)
        check_topology_params(name, params)
    for name in NAMES:
        CortexRNNConfig(n_nodes=30, p=0.1, topology=name).validate()
    with pytest.raises(ValueError, match="must not repeat"):
        CortexRNNConfig(n_nodes=30, p=0.1, topology="bsw", topology_params={"p": 0.2}).validate()
    with pytest.raises(ValueError, match="bsw beta"):
        CortexRNNConfig(n_nodes=30, p=0.1, topology="bsw", topology_params={"beta": -1.0}).validate()
