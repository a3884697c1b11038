"""SNIP: connection sensitivity of a dense twin, exact streaming top-k with random ties, wired from data."""

import dataclasses
import math

import pytest
import torch
from scipy import stats

from cortexnet.connectivity import FROM_DATA, LayerSpec, make_connectivity
from cortexnet.connectivity.saliency import candidate_count, select_top_scores
from cortexnet.data import load_dataset
from cortexnet.experiments.common import wire_data_params
from cortexnet.layers import constraint_violations, sparse_weights
from cortexnet.layers.saliency import connection_sensitivity
from cortexnet.models import CortexRNNConfig, SparseMLPConfig, build_model
from cortexnet.models.saliency import dense_twin_config, snip_saliency


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_keeps_exactly_the_largest_scores_and_never_a_non_candidate():
    s = torch.rand(50, 40, generator=gen(1))
    s[:3] = -torch.inf  # not candidates
    for p in (0.05, 0.5, 0.9):
        conn = make_connectivity("snip", LayerSpec(50, 40), generator=gen(), p=p, saliency=s)
        mask = conn.to_dense()
        assert conn.nnz == round(p * 2000)
        assert not mask[:3].any()
        assert s[mask].min() >= s[~mask & (s >= 0)].max()
    # More links than candidates: refused, naming the count.
    with pytest.raises(ValueError, match="1880 candidate positions"):
        make_connectivity("snip", LayerSpec(50, 40), generator=gen(), p=0.95, saliency=s)


def test_recurrent_excludes_the_diagonal_and_hand_made_ranking():
    # Scores 1..16 on a 4 x 4 recurrent weight; p = 0.25 of the 12 off-diagonal positions keeps 3 links:
    # the largest off-diagonal scores 15 (3, 2), 14 (3, 1), 13 (3, 0) — 16 is the diagonal (3, 3).
    s = torch.arange(1, 17, dtype=torch.float32).reshape(4, 4)
    conn = make_connectivity("snip", LayerSpec(4, 4, recurrent=True), generator=gen(), p=0.25, saliency=s)
    assert conn.to_dense().nonzero().tolist() == [[3, 0], [3, 1], [3, 2]]
    with_diag = make_connectivity(
        "snip", LayerSpec(4, 4, recurrent=True), generator=gen(), p=0.2, saliency=s, self_connections=True
    )
    assert with_diag.to_dense().nonzero().tolist() == [[3, 1], [3, 2], [3, 3]]  # round(0.2 * 16) = 3


def test_ties_at_the_threshold_are_broken_uniformly():
    # Six equal scores, one link: each position should win 1/6 of the time (chi-square, reject at 1e-3).
    s = torch.ones(2, 3)
    hits = torch.zeros(6)
    for seed in range(600):  # 100 expected per position
        (conn,) = select_top_scores({"w": (s, False)}, 1, generator=gen(seed)).values()
        hits[conn.rows() * 3 + conn.col] += 1
    assert stats.chisquare(hits.numpy()).pvalue > 1e-3
    # Above the tie everything is taken: one clear winner plus one of the five tied zeros.
    s = torch.zeros(2, 3)
    s[1, 2] = 5.0
    (conn,) = select_top_scores({"w": (s, False)}, 2, generator=gen(3)).values()
    assert conn.to_dense()[1, 2] and conn.nnz == 2


def test_global_scope_is_one_top_k_over_all_weights_and_equals_brute_force():
    g = gen(5)
    sal = {"a": torch.rand(20, 10, generator=g), "b": torch.rand(10, 20, generator=g) * 1.5}
    shared: dict = {}
    conns = {
        name: make_connectivity(
            "snip", LayerSpec(*s.shape, name=name, shared=shared), generator=gen(), p=0.2, saliency=sal
        )
        for name, s in sal.items()
    }
    k = round(0.2 * 400)
    assert sum(c.nnz for c in conns.values()) == k
    threshold = torch.cat([s.reshape(-1) for s in sal.values()]).topk(k).values[-1]
    for name, s in sal.items():
        assert torch.equal(conns[name].to_dense(), s >= threshold)  # distinct values: the set is exact
    # The layer scope keeps each weight's own budget instead.
    per_layer = make_connectivity(
        "snip", LayerSpec(20, 10, name="a"), generator=gen(), p=0.2, saliency=sal, scope="layer"
    )
    assert per_layer.nnz == round(0.2 * 200)


def test_sparse_scores_equal_dense_and_more_than_two_to_the_24_candidates():
    s = torch.rand(30, 20, generator=gen(2))
    s[s < 0.5] = 0.0
    dense = make_connectivity("snip", LayerSpec(30, 20), generator=gen(7), p=0.7, saliency=s)
    sparse = make_connectivity("snip", LayerSpec(30, 20), generator=gen(7), p=0.7, saliency=s.to_sparse())
    assert dense.equals(sparse)  # unstored entries score 0, ties drawn the same way
    # 5000 x 4000 = 2e7 candidates (> 2^24, where torch.multinomial gives up): exact count, the top kept.
    big = torch.zeros(5000, 4000)
    big[1234, 567] = 3.0
    big[4999, 3999] = 2.0
    conn = make_connectivity("snip", LayerSpec(5000, 4000), generator=gen(), p=5e-7, saliency=big)
    assert conn.nnz == 10 and conn.to_dense()[1234, 567] and conn.to_dense()[4999, 3999]
    assert candidate_count(big) == 2e7 > 2**24


def test_same_seed_same_mask_and_errors_name_the_fix():
    s = torch.zeros(10, 10)
    a = make_connectivity("snip", LayerSpec(10, 10), generator=gen(4), p=0.3, saliency=s)
    b = make_connectivity("snip", LayerSpec(10, 10), generator=gen(4), p=0.3, saliency=s)
    assert a.equals(b)
    with pytest.raises(ValueError, match="snip needs saliency"):
        make_connectivity("snip", LayerSpec(10, 10), generator=gen(), p=0.3)
    with pytest.raises(ValueError, match=r"shape \(10, 9\), the weight is \(10, 10\)"):
        make_connectivity("snip", LayerSpec(10, 10), generator=gen(), p=0.3, saliency=torch.rand(10, 9))
    bad = torch.rand(10, 10)
    bad[0, 0] = -1.0
    with pytest.raises(ValueError, match="1 NaN, negative or \\+inf"):
        make_connectivity("snip", LayerSpec(10, 10), generator=gen(), p=0.3, saliency=bad)
    with pytest.raises(ValueError, match="no scores for weight 'x'"):
        make_connectivity("snip", LayerSpec(10, 10, name="x"), generator=gen(), p=0.3, saliency={"y": s})
    with pytest.raises(ValueError, match="scope must be one of"):
        make_connectivity("snip", LayerSpec(10, 10), generator=gen(), p=0.3, saliency=s, scope="row")
    with pytest.raises(ValueError, match="still FROM_DATA"):
        make_connectivity("snip", LayerSpec(10, 10), generator=gen(), p=0.3, saliency=FROM_DATA)


def test_connection_sensitivity_matches_a_float64_hand_written_mlp():
    config = SparseMLPConfig(n_steps=2, hidden=(6, 5), density=1.0, topology="full", backend="masked_dense")
    model = build_model("sparse_mlp", config, 3, 4)
    x, y = torch.rand(7, 2, 3, generator=gen(1)), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    scores = connection_sensitivity(model, x, y)
    assert all(p.grad is None for p in model.parameters())  # the model's gradients are left as they were
    ws = [layer.sparse.to_dense().double().requires_grad_() for layer in model.layers]
    h = x.reshape(7, 6).double()
    for w, layer in zip(ws, model.layers, strict=True):
        h = torch.relu(h @ w.t() + layer.bias.double())
    logits = h @ model.readout.weight.double().t() + model.readout.bias.double()
    torch.nn.functional.cross_entropy(logits, y).backward()
    for i, w in enumerate(ws):
        torch.testing.assert_close(
            scores[f"layers.{i}.sparse"].double(), (w.grad * w).abs(), rtol=1e-4, atol=1e-7
        )


def test_dale_parametrisation_does_not_change_the_scores_and_the_twin_has_no_diagonal():
    base = CortexRNNConfig(n_nodes=12, p=0.3, dale=True, topology="er", backend="masked_dense")
    x, y = torch.rand(6, 5, 3, generator=gen(2)), torch.arange(6) % 3
    clip = snip_saliency("cortex_rnn", base, 3, 3, x, y)["recurrent.rec"]
    absd = snip_saliency("cortex_rnn", dataclasses.replace(base, dale_mode="abs"), 3, 3, x, y)[
        "recurrent.rec"
    ]
    torch.testing.assert_close(clip, absd)  # |dL/dm * m| = |dL/dw * w| with w = sign * m
    assert torch.isinf(clip.diagonal()).all() and torch.isfinite(clip.fill_diagonal_(0)).all()
    assert dense_twin_config(base).topology == "full"


def test_wired_from_data_on_every_model_dale_holds_and_csti_is_refused_on_a_recurrent_layer():
    splits = load_dataset("digits", n_per_class=10, seed=0)
    rnn = CortexRNNConfig(
        n_nodes=30, p=0.2, dale=True, topology="snip", topology_params={"saliency": FROM_DATA}
    )
    wired = wire_data_params("cortex_rnn", rnn, splits, seed=0, batch_size=16)
    again = wire_data_params("cortex_rnn", rnn, splits, seed=0, batch_size=16)
    scores = wired.topology_params["saliency"]
    assert set(scores) == {"recurrent.rec"} and torch.equal(
        scores["recurrent.rec"], again.topology_params["saliency"]["recurrent.rec"]
    )
    model = build_model("cortex_rnn", wired, splits.n_inputs, splits.n_classes)
    assert model.recurrent.rec.nnz == round(0.2 * 30 * 29)
    assert constraint_violations(model)["total"] == 0
    # Only the weights SNIP wires are in its dict (a per-matrix override), so its global top-k spans them.
    mlp = SparseMLPConfig(n_steps=8, hidden=(20, 20), density=0.2, topology="er",
                          layer_topologies=({}, {"topology": "snip", "saliency": FROM_DATA}))  # fmt: skip
    wired_mlp = wire_data_params("sparse_mlp", mlp, splits, seed=0, batch_size=16)
    assert set(wired_mlp.layer_topologies[1]["saliency"]) == {"layers.1.sparse"}
    built = build_model("sparse_mlp", wired_mlp, splits.n_inputs, splits.n_classes)
    assert [w.nnz for w in sparse_weights(built).values()] == [round(0.2 * 64 * 20), round(0.2 * 400)]
    csti = dataclasses.replace(rnn, topology="csti", topology_params={"activity": FROM_DATA})
    with pytest.raises(ValueError, match="hidden nodes of a recurrent layer"):
        wire_data_params("cortex_rnn", csti, splits, seed=0, batch_size=16)
    with torch.no_grad():
        assert math.isfinite(float(model(splits.test.tensors[0][:2]).sum()))
