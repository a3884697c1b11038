"""G2G connectivity (G2GNet, seed 000): group assignments per strategy, block densities within binomial
tolerance, the expected-density formula against realised masks, exact counts, recurrent G2G, determinism."""

import math

import pytest
import torch

from cortexnet.connectivity import TOPOLOGIES, make_connectivity
from cortexnet.connectivity.g2g import (
    check_pathway_probabilities,
    g2g_edge_count,
    g2g_expected_density,
    group_assignment,
    group_to_group,
    pathway_pair_counts,
    resolve_groups,
)
from cortexnet.layers import RecurrentLayer, apply_constraints
from cortexnet.models import (
    CortexRNN,
    CortexRNNConfig,
    FeedForwardConfig,
    FeedForwardNet,
    G2GNet,
    G2GNetConfig,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- group assignments, checked by hand ---------------------------------------------------------------------
def test_index_interleaved_and_mixer_on_the_papers_16_neurons_4_groups():
    # Paper Fig. 3: N = 16, G = 4.
    index = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    inter = [0, 1, 2, 3] * 4
    assert group_assignment(16, 4, "index").tolist() == index
    assert group_assignment(16, 4, "interleaved").tolist() == inter
    # Mixer: even layers by index, odd layers interleaved (l mod G).
    assert group_assignment(16, 4, "mixer", layer=0).tolist() == index
    assert group_assignment(16, 4, "mixer", layer=1).tolist() == inter
    assert group_assignment(16, 4, "mixer", layer=2).tolist() == index
    assert group_assignment(16, 4, "mixer", layer=5).tolist() == inter


def test_uneven_sizes_give_balanced_groups():
    # floor(l * 4 / 10) for l = 0..9
    assert group_assignment(10, 4, "index").tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert group_assignment(10, 4, "interleaved").tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert group_assignment(5, 5, "index").tolist() == [0, 1, 2, 3, 4]
    assert group_assignment(7, 1, "mixer", layer=1).tolist() == [0] * 7


def test_random_grouping_is_a_seeded_balanced_permutation():
    a = group_assignment(1000, 8, "random", generator=gen(1))
    assert torch.bincount(a).tolist() == [125] * 8
    assert torch.equal(a, group_assignment(1000, 8, "random", generator=gen(1)))
    assert not torch.equal(a, group_assignment(1000, 8, "random", generator=gen(2)))
    assert not torch.equal(a, group_assignment(1000, 8, "index"))
    uneven = group_assignment(10, 4, "random", generator=gen(0))
    assert sorted(torch.bincount(uneven).tolist()) == [2, 2, 3, 3]


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"n": 0, "groups": 1, "grouping": "index"}, "layer size"),
        ({"n": 10, "groups": 0, "grouping": "index"}, "[1, 10]"),
        ({"n": 10, "groups": 11, "grouping": "index"}, "[1, 10]"),
        ({"n": 10, "groups": 2, "grouping": "blocks"}, "grouping must be one of"),
        ({"n": 10, "groups": 2, "grouping": "random"}, "explicit torch.Generator"),
        ({"n": 10, "groups": 2, "grouping": "mixer", "layer": -1}, "layer number"),
    ],
)
def test_group_assignment_errors_name_the_value_and_range(kwargs, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        group_assignment(**kwargs)


# -- mask statistics ----------------------------------------------------------------------------------------
def _block_check(mask, out_g, in_g, p, p_inter, n_sd=4.5):
    """Every (out group, in group) block's density within n_sd binomial SDs of p (same group) or p'."""
    for a in out_g.unique().tolist():
        for b in in_g.unique().tolist():
            block = mask[out_g == a][:, in_g == b]
            q = p if a == b else p_inter
            sd = math.sqrt(q * (1 - q) / block.numel())
            assert abs(block.float().mean().item() - q) <= n_sd * sd + 1e-12, (a, b, q)


@pytest.mark.parametrize("grouping", ["index", "interleaved", "random", "mixer"])
def test_block_densities_on_a_rectangular_layer(grouping):
    n_out, n_in, p, p_inter = 400, 320, 0.8, 0.1
    conn = make_connectivity(
        "g2g", n_out, n_in, generator=gen(3), p=p, p_inter=p_inter, groups=4, grouping=grouping, layer=0
    )
    # The generator draws the groups first: replay them with the same seed.
    out_g, in_g = resolve_groups(n_out, n_in, groups=4, grouping=grouping, generator=gen(3))
    _block_check(conn.to_dense(), out_g, in_g, p, p_inter)


def test_expected_density_formula_against_the_realised_mask():
    # Paper defaults: p = 1, p' = 0.15, G = 8 -> 1/8 + 0.15 * 7/8 = 0.25625.
    assert g2g_expected_density(1.0, 0.15, 8) == pytest.approx(0.25625)
    # The paper's example p' = 0.05 gives 0.16875 (it rounds this to "15 %", i.e. "85 % sparsity").
    assert g2g_expected_density(1.0, 0.05, 8) == pytest.approx(0.16875)
    n = 1024
    conn = make_connectivity("g2g", n, n, generator=gen(0), recurrent=False)  # Bernoulli
    expected = g2g_expected_density(1.0, 0.15, 8) * n * n
    out_g, in_g = resolve_groups(n, n, groups=8, grouping="mixer")
    assert g2g_edge_count(out_g, in_g, p=1.0, p_inter=0.15, exact=False) == pytest.approx(expected)
    intra, inter = pathway_pair_counts(out_g, in_g)
    assert (intra, inter) == (n * n // 8, n * n * 7 // 8)
    sd = math.sqrt(0.15 * 0.85 * inter)  # only inter-pathway pairs are random at p = 1
    assert abs(conn.nnz - expected) < 4 * sd
    assert conn.density() == pytest.approx(0.25625, abs=4 * sd / (n * n))


def test_exact_mode_places_exactly_the_rounded_count_of_each_pathway_class():
    n_out, n_in, p, p_inter = 96, 80, 0.7, 0.13
    conn = group_to_group(
        n_out, n_in, generator=gen(5), p=p, p_inter=p_inter, groups=6, grouping="random", exact=True
    )
    out_g, in_g = resolve_groups(n_out, n_in, groups=6, grouping="random", generator=gen(5))
    mask = conn.to_dense()
    same = out_g[:, None] == in_g[None, :]
    intra, inter = pathway_pair_counts(out_g, in_g)
    assert int(mask[same].sum()) == math.floor(p * intra + 0.5)
    assert int(mask[~same].sum()) == math.floor(p_inter * inter + 0.5)
    assert conn.nnz == g2g_edge_count(out_g, in_g, p=p, p_inter=p_inter, exact=True)
    _block_check(mask, out_g, in_g, p, p_inter)


@pytest.mark.parametrize("grouping,out_strategy", [("index", "index"), ("mixer", "interleaved")])
def test_p_one_and_p_inter_zero_give_exactly_the_block_structure(grouping, out_strategy):
    # Inputs are layer 0 (index under both strategies); outputs layer 1 (mixer: interleaved).
    out_g, in_g = group_assignment(12, 4, out_strategy), group_assignment(8, 4, "index")
    for exact in (False, True):
        conn = group_to_group(
            12, 8, generator=gen(), p=1.0, p_inter=0.0, groups=4, grouping=grouping, exact=exact
        )
        assert torch.equal(conn.to_dense(), out_g[:, None] == in_g[None, :])


def test_explicit_unbalanced_groups():
    out_g = torch.tensor([0, 0, 0, 0, 0, 1])
    in_g = torch.tensor([1, 0, 2])  # group 2 has no partner: it connects only through p'
    conn = group_to_group(6, 3, generator=gen(), p=1.0, p_inter=0.0, out_groups=out_g, in_groups=in_g)
    assert torch.equal(conn.to_dense(), out_g[:, None] == in_g[None, :])
    assert pathway_pair_counts(out_g, in_g) == (6, 12)


# -- recurrent G2G ------------------------------------------------------------------------------------------
def test_square_defaults_to_recurrent_one_grouping_no_self_connections():
    n = 40
    conn = make_connectivity("g2g", n, n, generator=gen(), p=1.0, p_inter=0.0, groups=4)
    g = group_assignment(n, 4, "index")  # mixer, layer 0: index blocks on both sides
    expected = (g[:, None] == g[None, :]) & ~torch.eye(n, dtype=torch.bool)
    assert torch.equal(conn.to_dense(), expected)
    assert not conn.diagonal_present().any()
    with_diag = make_connectivity(
        "g2g", n, n, generator=gen(), p=1.0, p_inter=0.0, groups=4, self_connections=True
    )
    assert torch.equal(with_diag.to_dense(), g[:, None] == g[None, :])
    # A square feed-forward layer: mixer alternates (interleaved outputs, index inputs), diagonal allowed.
    ff = make_connectivity("g2g", n, n, generator=gen(), p=1.0, p_inter=0.0, groups=4, recurrent=False)
    gi = group_assignment(n, 4, "interleaved")
    assert torch.equal(ff.to_dense(), gi[:, None] == g[None, :])


def test_recurrent_exact_count_excludes_the_diagonal():
    n, p, p_inter = 60, 0.5, 0.1
    conn = make_connectivity("g2g", n, n, generator=gen(2), p=p, p_inter=p_inter, groups=3, exact=True)
    g = group_assignment(n, 3, "index")
    intra, inter = pathway_pair_counts(g, g, exclude_diagonal=True)
    assert intra == 3 * 20 * 20 - n
    assert conn.nnz == math.floor(p * intra + 0.5) + math.floor(p_inter * inter + 0.5)
    assert not conn.diagonal_present().any()


def test_recurrent_layer_trains_on_a_g2g_matrix_keeping_its_mask():
    n = 48
    conn = make_connectivity("g2g", n, n, generator=gen(), p=0.5, p_inter=0.05, groups=4, grouping="random")
    layer = RecurrentLayer(5, conn, generator=gen(1))
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    mask = conn.to_dense()
    for _ in range(3):
        loss = layer(torch.randn(4, 6, 5)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        apply_constraints(layer)
    w = layer.rec.to_dense()
    assert torch.all(w[~mask] == 0) and (w[mask] != 0).float().mean() > 0.9


# -- determinism, registry, errors --------------------------------------------------------------------------
def test_same_seed_same_mask_other_seed_other_mask():
    kw = {"p": 0.6, "p_inter": 0.2, "groups": 4, "grouping": "random"}
    a = make_connectivity("g2g", 50, 30, generator=gen(7), **kw)
    assert a.equals(make_connectivity("g2g", 50, 30, generator=gen(7), **kw))
    assert not a.equals(make_connectivity("g2g", 50, 30, generator=gen(8), **kw))
    assert "g2g" in TOPOLOGIES


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"p": 1.5}, r"intra-pathway probability p must be in \[0, 1\]"),
        ({"p_inter": -0.1}, r"p_inter must be in \[0, 1\]"),
        ({"generator": None}, "explicit torch.Generator"),
        ({"recurrent": True}, "square"),
        ({"groups": 40}, r"\[1, 20\]"),
        ({"out_groups": torch.zeros(30, dtype=torch.int64)}, "both out_groups and in_groups"),
        (
            {
                "out_groups": torch.zeros(29, dtype=torch.int64),
                "in_groups": torch.zeros(20, dtype=torch.int64),
            },
            "shape",
        ),
    ],
)
def test_errors_name_the_bad_value(kwargs, msg):
    args = {"generator": gen(), **kwargs}
    with pytest.raises(ValueError, match=msg):
        group_to_group(30, 20, **args)


def test_cortex_rnn_builds_a_recurrent_g2g_cortex_by_topology_name():
    # CortexRNNConfig passes p, self_connections and exact: p is the intra-pathway probability; p', G and the
    # grouping keep the generator's defaults (0.15, 8, mixer = index blocks for one node set).
    model = CortexRNN(CortexRNNConfig(n_nodes=64, p=1.0, topology="g2g", exact_edges=True), 8, 10)
    conn = model.recurrent.rec.connectivity()
    g = group_assignment(64, 8, "index")
    same = (g[:, None] == g[None, :]) & ~torch.eye(64, dtype=torch.bool)
    mask = conn.to_dense()
    assert mask[same].all() and not conn.diagonal_present().any()
    assert int(mask[g[:, None] != g[None, :]].sum()) == math.floor(0.15 * 64 * 56 + 0.5)
    assert model(torch.rand(3, 8, 8)).shape == (3, 10)


# -- p' <= p, square default, the paper's patch correspondence ----------------------------------------------
def test_inter_denser_than_intra_is_rejected_naming_both_values():
    with pytest.raises(ValueError, match=r"p_inter = 0\.15 exceeds the intra-pathway probability p = 0\.1"):
        group_to_group(30, 20, generator=gen(), p=0.1, p_inter=0.15)
    with pytest.raises(ValueError, match=r"lower p_inter or raise p"):
        check_pathway_probabilities(0.5, 0.6)
    # p' = p is accepted: Erdős–Rényi at density p, whatever the groups.
    conn = group_to_group(40, 50, generator=gen(), p=0.3, p_inter=0.3, groups=5, exact=True)
    assert conn.nnz == round(0.3 * 40 * 50)


def test_square_default_is_recurrent_and_every_feed_forward_caller_passes_recurrent_false():
    # The documented default: a square matrix without recurrent= is one node set (as "er"; CortexRNN relies on it).
    kw = {"p": 1.0, "p_inter": 0.0, "groups": 4}
    default = make_connectivity("g2g", 32, 32, generator=gen(), **kw)
    assert default.equals(make_connectivity("g2g", 32, 32, generator=gen(), recurrent=True, **kw))
    # Square feed-forward layers of the models get the mixer's alternation, not the recurrent default.
    ff = FeedForwardNet(
        FeedForwardConfig(n_nodes=64, n_steps=2, p=1.0, topology="g2g", topology_params={"p_inter": 0.0}),
        3,
        2,
    )
    expected = make_connectivity("g2g", 32, 32, generator=gen(), p=1.0, p_inter=0.0, recurrent=False)
    assert ff.connections.connectivity().equals(expected)
    assert ff.connections.connectivity().diagonal_present().any()  # two layers: (i, i) is a real pair
    net = G2GNet(G2GNetConfig(image_channels=1, image_height=8, image_width=8, patch_channels=4,
                              hidden=(64, 64), p_inter=0.0, groups=4), 8, 10)  # fmt: skip
    g_in = torch.arange(64) % 4  # hidden 1: interleaved (layer 1); hidden 2: index (layer 2)
    g_out = torch.arange(64) // 16
    assert torch.equal(net.layers[1].connectivity().to_dense(), g_out[:, None] == g_in[None, :])


def test_each_first_hidden_group_corresponds_to_two_input_patches_at_the_papers_defaults():
    cfg = G2GNetConfig(p_inter=0.0, hidden=(64,))  # 16 patches x 32 channels, G = 8, mixer; p' = 0 isolates p
    m0 = G2GNet(cfg, 3 * 32, 10).layers[0].connectivity().to_dense()  # (64, 512)
    patch_of_feature = torch.arange(512) // 32  # patch-major embedding
    for k in range(8):
        rows = m0[torch.arange(64) % 8 == k]  # group k of the first hidden layer (interleaved)
        patches = patch_of_feature[rows.any(0)].unique().tolist()
        assert patches == [2 * k, 2 * k + 1] and bool(rows[:, patch_of_feature // 2 == k].all())


def test_every_model_checks_g2g_topology_params_before_building():
    from cortexnet.models import CortexRNNConfig, FeedForwardConfig

    with pytest.raises(ValueError, match="p_inter"):
        CortexRNNConfig(n_nodes=40, p=0.1, topology="g2g").validate()  # p' = 0.15 > p
    CortexRNNConfig(n_nodes=40, p=0.1, topology="g2g", topology_params={"p_inter": 0.01}).validate()
    with pytest.raises(ValueError, match="takes no"):
        FeedForwardConfig(n_nodes=40, n_steps=2, topology="g2g", topology_params={"n_in": 3}).validate()
    with pytest.raises(ValueError, match="must not repeat"):
        CortexRNNConfig(n_nodes=40, topology="g2g", topology_params={"exact": True}).validate()
