"""Graph initialisers bsf (bipartite scale-free), ramanujan (spectral gap) and erk (RigL layer densities):
exact totals, degree statistics, spectral bound, budgets, determinism, Dale on a recurrent cortex, validation."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cortexnet.connectivity import (
    Connectivity,
    LayerSpec,
    check_topology_params,
    erdos_renyi,
    make_connectivity,
    rounded_count,
)
from cortexnet.connectivity import spectral as spectral_mod
from cortexnet.connectivity.budget import erk_counts, erk_densities
from cortexnet.connectivity.scale_free import near_regular_assignment
from cortexnet.connectivity.spectral import ramanujan_bound, second_singular_value, spectral_gap_check
from cortexnet.layers import constraint_violations, sparse_weights
from cortexnet.models import CortexRNNConfig, G2GNetConfig, build_model

NAMES = ("bsf", "ramanujan", "erk")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_csr_sorted_unique(c: Connectivity) -> None:
    keys = c.rows() * c.n_in + c.col
    assert bool((keys[1:] > keys[:-1]).all())  # rows in order, columns strictly increasing: no duplicates
    assert int(c.col.min()) >= 0 and int(c.col.max()) < c.n_in


def degrees(c: Connectivity) -> tuple[np.ndarray, np.ndarray]:
    """(row degrees, column degrees)."""
    return c.crow.diff().numpy(), np.bincount(c.col.numpy(), minlength=c.n_in)


def tail_exponent(x: np.ndarray, x_min: int) -> tuple[float, int]:
    """Discrete power-law MLE (Clauset, Shalizi & Newman 2009, eq. 3.7) of the tail x >= x_min, and its size."""
    tail = x[x >= x_min].astype(np.float64)
    return 1.0 + tail.size / float(np.log(tail / (x_min - 0.5)).sum()), tail.size


# ------------------------------------------------------------------------------------------ exact totals


CASES = [
    # (n_out, n_in, recurrent, self_connections, p)
    (30, 70, False, None, 0.1),
    (70, 30, False, None, 0.1),
    (23, 23, False, None, 0.37),  # square feed-forward: the diagonal is an ordinary pair
    (50, 50, True, False, 0.13),
    (50, 50, True, True, 0.13),
    (40, 40, True, False, 0.9),
    (40, 40, True, False, 1.0),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_out,n_in,recurrent,self_conn,p", CASES)
def test_exact_link_totals_and_no_diagonal_unless_allowed(name, n_out, n_in, recurrent, self_conn, p):
    spec = LayerSpec(n_out, n_in, recurrent=recurrent)
    params = {"p": p} if self_conn is None else {"p": p, "self_connections": self_conn}
    c = make_connectivity(name, spec, generator=gen(1), **params)
    drop = recurrent and not self_conn
    possible = n_out * n_in - (n_out if drop else 0)
    assert c.shape == (n_out, n_in)
    assert c.nnz == rounded_count(p, possible)
    assert_csr_sorted_unique(c)
    if drop:
        assert not bool(c.diagonal_present().any())


@pytest.mark.parametrize("name", NAMES)
def test_density_defaults_to_the_layer_description_and_self_connections_to_the_spec(name):
    spec = LayerSpec(60, 60, recurrent=True, density=0.05, self_connections=True)
    c = make_connectivity(name, spec, generator=gen(2))
    assert c.nnz == rounded_count(0.05, 3600)
    no_diag = make_connectivity(name, spec, generator=gen(2), self_connections=False)
    assert no_diag.nnz == rounded_count(0.05, 3540) and not bool(no_diag.diagonal_present().any())
    with pytest.raises(ValueError, match="needs a connection probability"):
        make_connectivity(name, LayerSpec(10, 12), generator=gen())


@pytest.mark.parametrize("name", NAMES)
def test_same_generator_state_is_bit_identical_and_another_seed_differs(name):
    for spec in (
        LayerSpec(80, 120, recurrent=False, density=0.06),
        LayerSpec(90, 90, recurrent=True, density=0.06),
    ):
        a = make_connectivity(name, spec, generator=gen(5))
        b = make_connectivity(name, spec, generator=gen(5))
        c = make_connectivity(name, spec, generator=gen(6))
        assert a.equals(b) and not a.equals(c)
    opts = {
        "bsf": {"equal_partition": True},
        "ramanujan": {"check_spectrum": True},
        "erk": {"dense_first": False},
    }
    spec = LayerSpec(80, 120, recurrent=False, density=0.06)
    assert make_connectivity(name, spec, generator=gen(5), **opts[name]).equals(
        make_connectivity(name, spec, generator=gen(5), **opts[name])
    )


def test_large_layers_build_in_index_form():
    # N = 20,000 at p = 0.0005 (2e5 links): a dense mask would be 400 MB; the index form is 1.6 MB. (erk is
    # exact ER here, whose chunked draw costs O(N²) time at any p: left out for speed.)
    for name in ("bsf", "ramanujan"):
        c = make_connectivity(
            name, LayerSpec(20_000, 20_000, recurrent=True, density=0.0005), generator=gen()
        )
        assert c.nnz == rounded_count(0.0005, 20_000 * 19_999) and c.col.numel() == c.nnz
        assert not bool(c.diagonal_present().any())


# ------------------------------------------------------------------------------------------------- bsf


def test_bsf_degrees_are_heavy_tailed_with_a_ba_exponent_and_er_is_not():
    # 2000 x 2000 at p = 0.005: E = 20,000 on n = 4000 BA nodes, m = 5 links per new node. BA's degree law is
    # P(k) ~ k^-3 (Barabási-Albert; the seed's BSF fit: 2.76). Tail k >= 3m = 15: ~500 nodes, so the MLE's
    # standard error (alpha - 1) / sqrt(n_tail) is ~0.09: [2.5, 3.5] is > 5 SE around 3. ER's binomial(2000,
    # 0.005) degrees (mean 10) have a thin tail: their "exponent" at the same k_min is ~10 (> 6 holds by > 20 SE).
    for seed in range(3):
        c = make_connectivity("bsf", LayerSpec(2000, 2000, recurrent=False), generator=gen(seed), p=0.005)
        rows, cols = degrees(c)
        deg = np.concatenate([rows, cols])
        alpha, n_tail = tail_exponent(deg, 15)
        assert 2.5 <= alpha <= 3.5 and n_tail > 300, (alpha, n_tail)
        assert deg.max() > 15 * deg.mean()  # hubs
        er = erdos_renyi(2000, 2000, p=0.005, generator=gen(seed), exact=True)
        er_deg = np.concatenate(degrees(er))
        assert tail_exponent(er_deg, 15)[0] > 6.0
        assert er_deg.max() < 3 * er_deg.mean()


def test_bsf_recurrent_is_a_directed_ba_graph_heavy_tailed_both_ways():
    # N = 3000, p = 0.002: E = 17,994, m = 6. Total degree (in + out) tail k >= 18: ~370 nodes, SE ~0.1.
    c = make_connectivity("bsf", LayerSpec(3000, 3000, recurrent=True), generator=gen(4), p=0.002)
    assert not bool(c.diagonal_present().any())
    in_deg, out_deg = degrees(c)
    alpha, n_tail = tail_exponent(in_deg + out_deg, 18)
    assert 2.5 <= alpha <= 3.5 and n_tail > 250, (alpha, n_tail)
    assert in_deg.max() > 10 * in_deg.mean() and out_deg.max() > 10 * out_deg.mean()
    # Random orientation of each BA link: in - out of a node of degree k is ~ binomial noise of SD sqrt(k), so
    # the hubs are hubs both ways (Pearson, dominated by the hubs; ~0 for independent in/out draws).
    assert np.corrcoef(in_deg, out_deg)[0, 1] > 0.8
    total = in_deg + out_deg
    assert np.quantile(np.abs(in_deg - out_deg) / np.sqrt(total), 0.95) < 2.5  # N(0, 1): 1.96


@pytest.mark.parametrize("recurrent", [False, True])
def test_bsf_equal_partition_equalises_the_inputs_and_keeps_the_output_degrees(recurrent):
    n_out, n_in = (300, 300) if recurrent else (300, 500)
    spec = LayerSpec(n_out, n_in, recurrent=recurrent, index=0)
    plain = make_connectivity("bsf", spec, generator=gen(3), p=0.02)
    equal = make_connectivity("bsf", spec, generator=gen(3), p=0.02, equal_partition=True)
    assert equal.nnz == plain.nnz
    rows, cols = degrees(equal)
    assert np.array_equal(rows, degrees(plain)[0])  # output (row) degrees: the BSF draw's, still heavy-tailed
    assert rows.max() > 5 * rows.mean()
    assert cols.max() - cols.min() <= 1 and cols.min() == equal.nnz // n_in  # input degrees: equal (±1)
    assert degrees(plain)[1].max() - degrees(plain)[1].min() > 5
    assert_csr_sorted_unique(equal)
    if recurrent:
        assert not bool(equal.diagonal_present().any())
    # Only the first weight: a middle weight ignores it.
    later = LayerSpec(n_out, n_in, recurrent=False, index=1, shapes=((n_in, 7), (n_out, n_in)))
    assert make_connectivity("bsf", later, generator=gen(3), p=0.02, equal_partition=True).equals(
        make_connectivity("bsf", later, generator=gen(3), p=0.02)
    )


def test_near_regular_assignment_exact_degrees_even_for_nearly_complete_rows():
    rng = np.random.default_rng(0)
    for n, row_deg in ((24, [23, 22, 20, *([9] * 21)]), (5, [4, 4, 4, 4, 4]), (7, [6, 1, 0, 6, 3, 2, 5])):
        keys = near_regular_assignment(np.array(row_deg), n, rng, drop_diag=True)
        c = Connectivity(n, n, torch.cat([torch.zeros(1, dtype=torch.int64), torch.tensor(row_deg).cumsum(0)]),
                         torch.from_numpy(keys % n))  # fmt: skip
        rows, cols = degrees(c)
        assert rows.tolist() == row_deg and cols.max() - cols.min() <= 1
        assert not bool(c.diagonal_present().any()) and len(np.unique(keys)) == keys.size


def _chain(mode: str, seed: int) -> list[Connectivity]:
    shapes, shared = ((200, 300), (150, 200), (100, 150)), {}
    return [
        make_connectivity("bsf", LayerSpec(*s, recurrent=False, index=i, shapes=shapes, shared=shared),
                          generator=gen(seed), p=0.05, resort=mode)
        for i, s in enumerate(shapes)
    ]  # fmt: skip


def test_bsf_resort_aligns_the_hubs_of_consecutive_weights():
    # Node layer 1 (200 nodes): in-degree in weight 0 (its rows) vs out-degree in weight 1 (its columns).
    # Independent draws: Spearman ~ N(0, 1/199), |r| < 0.3 at > 4 SD; "rigid" sorts one by the other.
    corr = {}
    for mode in ("none", "rigid", "weighted"):
        corr[mode] = []
        for seed in range(4):
            w0, w1, _ = _chain(mode, seed)
            prev, cols = degrees(w0)[0], degrees(w1)[1]
            corr[mode].append(spearmanr(prev, cols)[0])
            plain = _chain("none", seed)[1]
            assert np.array_equal(degrees(w1)[0], degrees(plain)[0])  # rows untouched
            assert sorted(cols) == sorted(degrees(plain)[1])  # same column degrees, relabelled
            if mode == "rigid":
                higher = prev[:, None] > prev[None, :]  # node a has the larger previous in-degree than node b
                assert bool(np.all((cols[:, None] >= cols[None, :])[higher]))
    assert max(abs(r) for r in corr["none"]) < 0.3
    assert min(corr["rigid"]) > 0.95
    assert np.mean(corr["weighted"]) > 0.2 and np.mean(corr["weighted"]) > np.mean(corr["none"]) + 0.15


# ------------------------------------------------------------------------------------------- ramanujan


def test_ramanujan_is_exactly_biregular_when_the_degrees_divide_and_meets_the_bound():
    # 200 x 400 at p = 0.02: E = 1600, c = 8 per row, d = 4 per column.
    c = make_connectivity("ramanujan", LayerSpec(200, 400, recurrent=False), generator=gen(), p=0.02)
    rows, cols = degrees(c)
    assert set(rows.tolist()) == {8} and set(cols.tolist()) == {4}
    lam2, bound = spectral_gap_check(c)
    assert bound == pytest.approx(math.sqrt(7) + math.sqrt(3))
    assert lam2 <= bound
    assert second_singular_value(c) < math.sqrt(8 * 4) - 1  # a real gap below σ1 = sqrt(c d)


@pytest.mark.parametrize("shape,recurrent,p", [((150, 410), False, 0.03), ((410, 150), False, 0.03),
                                              ((300, 300), True, 0.02)])  # fmt: skip
def test_ramanujan_near_biregular_degrees_and_bound(shape, recurrent, p):
    c = make_connectivity("ramanujan", LayerSpec(*shape, recurrent=recurrent), generator=gen(7), p=p)
    rows, cols = degrees(c)
    assert rows.max() - rows.min() <= 1 and cols.max() - cols.min() <= 1
    assert rows.min() == c.nnz // shape[0] and cols.min() == c.nnz // shape[1]
    lam2, bound = spectral_gap_check(c)
    assert lam2 <= bound
    if recurrent:
        assert not bool(c.diagonal_present().any())


def _block_diagonal(n_block: int, c: int, seed: int = 0) -> Connectivity:
    """Two disjoint c-regular n_block x n_block blocks: disconnected, so λ2 = λ1 = c."""
    rng = np.random.default_rng(seed)
    keys = [near_regular_assignment(np.full(n_block, c), n_block, rng) for _ in range(2)]
    rows = np.concatenate([keys[0] // n_block, keys[1] // n_block + n_block])
    cols = np.concatenate([keys[0] % n_block, keys[1] % n_block + n_block])
    mask = torch.zeros(2 * n_block, 2 * n_block, dtype=torch.bool)
    mask[torch.from_numpy(rows), torch.from_numpy(cols)] = True
    return Connectivity.from_dense(mask)


def test_an_injected_block_diagonal_graph_fails_the_bound_and_ramanujan_rejects_it(monkeypatch):
    bad = _block_diagonal(100, 6)
    lam2, bound = spectral_gap_check(bad)
    assert lam2 == pytest.approx(6.0) and bound == pytest.approx(2 * math.sqrt(5)) and lam2 > bound
    # The generator redraws and finally raises naming the values when every draw is bad.
    monkeypatch.setattr(spectral_mod, "random_near_biregular", lambda *a, **k: bad)
    spec = LayerSpec(200, 200, recurrent=False)
    with pytest.raises(ValueError, match=r"no draw of 3 met the bound .* = 4\.4721 \(c = 6\.000, d = 6\.000"):
        make_connectivity("ramanujan", spec, generator=gen(), p=0.03, max_tries=3)
    assert make_connectivity("ramanujan", spec, generator=gen(), p=0.03, check_spectrum=False) is bad
    # Skipped by default above the size threshold.
    monkeypatch.setattr(spectral_mod, "SPECTRUM_AUTO_MAX_LINKS", 1000)
    assert make_connectivity("ramanujan", spec, generator=gen(), p=0.03) is bad


def test_sparse_svds_path_matches_a_dense_svd():
    # 600 x 600 = 360,000 possible pairs: above the dense threshold, so svds on a sparse copy.
    c = make_connectivity("ramanujan", LayerSpec(600, 600, recurrent=True), generator=gen(2), p=0.01)
    dense = np.linalg.svd(c.to_dense().numpy().astype(np.float64), compute_uv=False)[1]
    assert second_singular_value(c) == pytest.approx(dense, rel=1e-8)
    assert ramanujan_bound(4, 4) == pytest.approx(2 * math.sqrt(3))


# ------------------------------------------------------------------------------------------------- erk


def test_erk_densities_by_hand():
    shapes = [(4, 4), (2, 8), (8, 2)]  # raw (n_in + n_out)/(n_in n_out) = 1/2, 5/8, 5/8; 16 pairs each
    # p = 0.5: budget 24 = eps (8 + 10 + 10) -> eps = 6/7 -> 3/7, 15/28, 15/28.
    assert erk_densities(shapes, 0.5) == pytest.approx([3 / 7, 15 / 28, 15 / 28])
    # Counts 6.857, 8.571, 8.571 -> floors 6, 8, 8, the 2 left to the largest remainders (layer 0, then the
    # earlier of the tied layers 1 and 2).
    assert erk_counts(shapes, 0.5) == [7, 9, 8]
    # dense_first: the first layer takes 16 of the 24; eps = 8 / 20 -> 0.25 each.
    assert erk_densities(shapes, 0.5, dense_first=True) == pytest.approx([1.0, 0.25, 0.25])
    assert erk_counts(shapes, 0.5, dense_first=True) == [16, 4, 4]
    # Capping: raw 0.2, 1.1, 1.1 with 100, 10, 10 pairs; p = 0.5 -> eps = 60/42 pushes layers 1, 2 over 1:
    # they become dense (20 links), the other 40 go to layer 0 -> 0.4.
    capped = [(10, 10), (1, 10), (10, 1)]
    assert erk_densities(capped, 0.5) == pytest.approx([0.4, 1.0, 1.0])
    assert erk_counts(capped, 0.5) == [40, 10, 10]
    with pytest.raises(ValueError, match="dense_first"):
        erk_densities(capped, 0.1, dense_first=True)  # the dense first layer (100) exceeds the budget (12)
    assert erk_densities([(30, 40)], 0.125) == pytest.approx([0.125])  # one weight: plain ER
    assert erk_densities([(30, 40)], 0.123) == pytest.approx(
        [148 / 1200]
    )  # the rounded budget, spent exactly


def test_erk_total_is_conserved_on_the_paper_mlp_and_follows_the_raw_ratio():
    shapes = [(1568, 784), (1568, 1568), (1568, 1568), (10, 1568)]
    total = sum(a * b for a, b in shapes)
    for p in (0.01, 0.05, 0.3):
        dens = erk_densities(shapes, p)
        counts = erk_counts(shapes, p)
        assert sum(counts) == rounded_count(p, total)
        assert all(0 <= d <= 1 for d in dens)
        assert all(abs(n - d * a * b) < 1 for n, d, (a, b) in zip(counts, dens, shapes, strict=True))
        sparse = [i for i, d in enumerate(dens) if d < 1]
        raw = [(a + b) / (a * b) for a, b in shapes]
        ratio = [dens[i] / raw[i] for i in sparse]
        assert max(ratio) == pytest.approx(min(ratio))  # one eps for every layer that is not capped
    assert erk_densities(shapes, 0.3)[3] == 1.0  # the 10-unit readout caps first


def test_erk_on_one_weight_is_exact_er_with_the_same_generator():
    spec = LayerSpec(70, 70, recurrent=True, density=0.1)
    assert make_connectivity("erk", spec, generator=gen(9)).equals(
        erdos_renyi(70, 70, p=0.1, generator=gen(9), exact=True)
    )


def test_erk_generator_spends_the_model_budget_exactly():
    shapes = ((40, 64), (40, 40), (12, 40))
    shared: dict = {}
    conns = [
        make_connectivity("erk", LayerSpec(*s, recurrent=False, index=i, shapes=shapes, shared=shared),
                          generator=gen(i), p=0.2)
        for i, s in enumerate(shapes)
    ]  # fmt: skip
    assert [c.nnz for c in conns] == erk_counts(shapes, 0.2)
    assert sum(c.nnz for c in conns) == rounded_count(0.2, sum(a * b for a, b in shapes))
    # Through a model: G2GNet's hidden matrices.
    cfg = G2GNetConfig(image_channels=1, image_height=8, image_width=8, patches_per_side=2, patch_channels=4,
                       hidden=(24, 16), topology="erk", topology_params={"p": 0.3})  # fmt: skip
    model = build_model("g2gnet", cfg, 8, 3)
    weights = list(sparse_weights(model).values())
    possible = sum(w.nnz for w in weights)
    shapes = [(24, 16), (16, 24)]
    assert possible == rounded_count(0.3, sum(a * b for a, b in shapes))
    assert [w.nnz for w in weights] == erk_counts(shapes, 0.3)


# ---------------------------------------------------------------------------------- models and validation


@pytest.mark.parametrize("name", NAMES)
def test_dale_signs_hold_on_a_recurrent_cortex_after_adam_steps(name):
    cfg = CortexRNNConfig(n_nodes=60, p=0.15, dale=True, topology=name, connectivity_seed=2)
    model = build_model("cortex_rnn", cfg, 3, 2)
    rec = model.recurrent.rec.connectivity()
    assert rec.nnz == rounded_count(0.15, 60 * 59) and not bool(rec.diagonal_present().any())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.rand(8, 5, 3, generator=gen(1)), torch.randint(0, 2, (8,), generator=gen(2))
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert constraint_violations(model)["total"] == 0


def test_bad_parameters_are_rejected_naming_the_value_and_the_fix():
    spec = LayerSpec(100, 100, recurrent=True, density=0.1)
    cases = [
        (
            "bsf",
            {"resort": "sideways"},
            r"resort must be one of \('none', 'rigid', 'weighted'\), got 'sideways'",
        ),
        ("bsf", {"p": 1.5}, r"must be in \[0, 1\], got 1.5"),
        ("bsf", {"equal_partition": "yes"}, "equal_partition must be true or false"),
        ("ramanujan", {"max_tries": 0}, "max_tries must be >= 1, got 0"),
        (
            "ramanujan",
            {"p": 0.01},
            r"mean degrees .* >= 2 .* c = 0.990.* use p >= 0.0202 or check_spectrum=False",
        ),
        ("ramanujan", {"check_spectrum": "auto"}, "check_spectrum must be true or false or none"),
        ("erk", {"p": -0.1}, r"\[0, 1\], got -0.1"),
        ("erk", {"dense_first": 1}, "dense_first must be true or false"),
    ]
    for name, params, match in cases:
        with pytest.raises(ValueError, match=match):
            check_topology_params(name, params, spec=spec)
    # Valid ones pass; a degree-1 Ramanujan layer is fine when the check is off.
    check_topology_params("ramanujan", {"p": 0.01, "check_spectrum": False}, spec=spec)
    check_topology_params("bsf", {"resort": "weighted", "equal_partition": True}, spec=spec)
    for name in NAMES:
        with pytest.raises(ValueError, match="needs a connection probability"):
            check_topology_params(name, {}, spec=LayerSpec(10, 12))
    chain = LayerSpec(10, 10, recurrent=False, index=0, shapes=((10, 10), (1, 10), (10, 1)))
    with pytest.raises(ValueError, match=r"raise p to >= 0.8333 or set dense_first=False"):
        check_topology_params("erk", {"p": 0.1, "dense_first": True}, spec=chain)
    # Through a model's validation.
    with pytest.raises(ValueError, match="resort must be one of"):
        CortexRNNConfig(n_nodes=50, topology="bsf", topology_params={"resort": "x"}).validate()
