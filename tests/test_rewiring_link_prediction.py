"""Cannistraci-Hebb link prediction (cortexnet.rewiring.link_prediction) against explicit path enumeration.

The references below enumerate L3 paths and build each candidate's local community in plain Python from the
written definitions (DST.md, "Cannistraci-Hebb link prediction"), without any of the module's algebra.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cortexnet.connectivity.base import Connectivity
from cortexnet.rewiring import link_prediction
from cortexnet.rewiring.link_prediction import RULES, ch_scores, iter_ch_scores

PATH_RULES = ("ch3_l3", "ch2_l3")
NODE_RULES = ("ch3_l3n", "ch2_l3n")


def bipartite_reference(mask: np.ndarray) -> dict[str, np.ndarray]:
    """All four scores by enumeration on the undirected bipartite graph of ``mask`` (out-node ``i`` is graph
    node ``i``, in-node ``j`` is graph node ``n_out + j``), using only the generic graph definitions."""
    n_out, n_in = mask.shape
    nbrs: list[set[int]] = [set() for _ in range(n_out + n_in)]
    for i, j in zip(*np.nonzero(mask), strict=True):
        nbrs[int(i)].add(n_out + int(j))
        nbrs[n_out + int(j)].add(int(i))
    out = {rule: np.zeros((n_out, n_in)) for rule in RULES}
    for i in range(n_out):
        for j in range(n_in):
            u, v = i, n_out + j
            if v in nbrs[u]:
                continue
            # Simple paths u - z1 - z2 - v.
            paths = [
                (z1, z2) for z1 in nbrs[u] for z2 in nbrs[z1] if z2 in nbrs[v] and len({u, z1, z2, v}) == 4
            ]
            lc = {z for path in paths for z in path}
            di = {z: len(nbrs[z] & lc) for z in lc}
            de = {z: len(nbrs[z]) - di[z] - (u in nbrs[z]) - (v in nbrs[z]) for z in lc}
            for z1, z2 in paths:
                base = 1.0 / math.sqrt((1 + de[z1]) * (1 + de[z2]))
                out["ch3_l3"][i, j] += base
                out["ch2_l3"][i, j] += base * math.sqrt((1 + di[z1]) * (1 + di[z2]))
            for z in lc:  # each LC node once
                out["ch3_l3n"][i, j] += 1.0 / (1 + de[z])
                out["ch2_l3n"][i, j] += (1 + di[z]) / (1 + de[z])
    return out


def directed_reference(w: np.ndarray, *, self_connections: bool = True) -> dict[str, np.ndarray]:
    """The recurrent definition written in directed terms (``w[i, j]``: ``j → i``): for the missing ``j → i``
    the L3 paths are the pairs ``(a, b)`` with ``a → i``, ``a → b``, ``j → b``; ``a`` is a presynaptic and
    ``b`` a postsynaptic member of the local community (a node may be both)."""
    n = w.shape[0]
    pre_of = [set(np.nonzero(w[i])[0].tolist()) for i in range(n)]  # x with x → i
    post_of = [set(np.nonzero(w[:, x])[0].tolist()) for x in range(n)]  # y with x → y
    out = {rule: np.zeros((n, n)) for rule in RULES}
    for i in range(n):
        for j in range(n):
            if w[i, j] or (i == j and not self_connections):
                continue
            paths = [(a, b) for a in pre_of[i] for b in post_of[a] if b in post_of[j]]
            lc_pre = {a for a, _ in paths}
            lc_post = {b for _, b in paths}
            di_a = {a: len(post_of[a] & lc_post) for a in lc_pre}
            de_a = {a: len(post_of[a]) - di_a[a] - 1 for a in lc_pre}  # minus the link a → i
            di_b = {b: len(pre_of[b] & lc_pre) for b in lc_post}
            de_b = {b: len(pre_of[b]) - di_b[b] - 1 for b in lc_post}  # minus the link j → b
            for a, b in paths:
                base = 1.0 / math.sqrt((1 + de_a[a]) * (1 + de_b[b]))
                out["ch3_l3"][i, j] += base
                out["ch2_l3"][i, j] += base * math.sqrt((1 + di_a[a]) * (1 + di_b[b]))
            for di, de in ((di_a, de_a), (di_b, de_b)):
                for z in di:
                    out["ch3_l3n"][i, j] += 1.0 / (1 + de[z])
                    out["ch2_l3n"][i, j] += (1 + di[z]) / (1 + de[z])
    return out


def random_mask(n_out: int, n_in: int, p: float, seed: int, *, diagonal: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_out, n_in)) < p
    if not diagonal:
        np.fill_diagonal(mask, False)
    return mask


def conn_of(mask: np.ndarray) -> Connectivity:
    return Connectivity.from_dense(torch.from_numpy(np.asarray(mask, dtype=bool)))


def scores64(mask: np.ndarray, rule: str, **kw) -> np.ndarray:
    return ch_scores(conn_of(mask), rule, dtype=torch.float64, **kw).numpy()


# -- against the references -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dense", "sparse"])
@pytest.mark.parametrize("shape,seed", [((12, 9), 0), ((12, 9), 1), ((12, 9), 2), ((9, 12), 3), ((7, 15), 4)])
def test_bipartite_scores_equal_path_enumeration(shape, seed, method):
    mask = random_mask(*shape, 0.3, seed)
    ref = bipartite_reference(mask)
    assert ref["ch3_l3"].max() > 0  # the graphs do have L3 paths
    for rule in PATH_RULES:
        np.testing.assert_allclose(scores64(mask, rule, method=method), ref[rule], rtol=0, atol=1e-9)
    # The node-based matrix form is exact (each LC node once, di/de from neighbourhood overlaps): equal up to
    # float64 rounding of the summation order.
    for rule in NODE_RULES:
        np.testing.assert_allclose(scores64(mask, rule, method=method), ref[rule], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", ["dense", "sparse"])
@pytest.mark.parametrize("seed,self_loops", [(10, False), (11, False), (12, True), (13, True)])
def test_recurrent_scores_equal_directed_definition(seed, self_loops, method):
    mask = random_mask(10, 10, 0.3, seed, diagonal=self_loops)
    for allow in (True, False):
        ref = directed_reference(mask, self_connections=allow)
        for rule in RULES:
            got = scores64(mask, rule, method=method, self_connections=allow)
            np.testing.assert_allclose(got, ref[rule], rtol=1e-13, atol=1e-9)
        if not allow:
            assert np.all(np.diag(scores64(mask, "ch2_l3n", self_connections=False)) == 0)
    # The directed definition is the bipartite one on the post/pre double cover.
    ref_bip = bipartite_reference(mask)
    for rule in RULES:
        np.testing.assert_allclose(directed_reference(mask)[rule], ref_bip[rule], rtol=1e-13, atol=1e-13)


def test_diagonal_candidates_are_scored_when_self_connections_allowed():
    mask = random_mask(10, 10, 0.35, 5, diagonal=False)
    with_diag = scores64(mask, "ch3_l3", self_connections=True)
    without = scores64(mask, "ch3_l3", self_connections=False)
    off = ~np.eye(10, dtype=bool)
    assert np.diag(with_diag).max() > 0
    assert np.all(np.diag(without) == 0)
    np.testing.assert_array_equal(with_diag[off], without[off])


# -- hand-computed examples -------------------------------------------------------------------------------


def test_hand_computed_single_l3_path():
    # out0 - in0; out1 - in0, in1, in2; out2 - in2. Candidate (out0, in1) has the single L3 path
    # out0 - in0 - out1 - in1, so LC = {in0, out1}.
    #   in0:  deg 2 (out0, out1), di = 1 (out1), de = 2 - 1 - [in0~out0] 1 - [in0~in1] 0 = 0
    #   out1: deg 3 (in0, in1, in2), di = 1 (in0), de = 3 - 1 - [out1~out0] 0 - [out1~in1] 1 = 1 (in2)
    # CH3-L3  = 1 / sqrt((1+0)(1+1))              = 1/sqrt(2)
    # CH2-L3  = sqrt((1+1)(1+1)) / sqrt((1+0)(1+1)) = sqrt(2)
    # CH3-L3n = 1/(1+0) + 1/(1+1)                  = 1.5
    # CH2-L3n = (1+1)/(1+0) + (1+1)/(1+1)          = 3
    mask = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 1]], dtype=bool)
    expected = {"ch3_l3": 1 / math.sqrt(2), "ch2_l3": math.sqrt(2), "ch3_l3n": 1.5, "ch2_l3n": 3.0}
    for rule, value in expected.items():
        s = scores64(mask, rule)
        assert s[0, 1] == pytest.approx(value, abs=1e-12)
        # (out0, in2) mirrors it: path out0 - in0 - out1 - in2, and in1 is now the external link of out1.
        assert s[0, 2] == pytest.approx(value, abs=1e-12)


def test_hand_computed_node_rules_count_a_shared_node_once():
    # out0 - in0; out1 - in0, in1; out2 - in0, in1. Candidate (out0, in1): two paths out0 - in0 - out1 - in1
    # and out0 - in0 - out2 - in1 share in0. LC = {in0, out1, out2}:
    #   in0: deg 3, di 2 (out1, out2), de = 3 - 2 - 1 = 0;  out1, out2: deg 2, di 1 (in0), de = 2 - 1 - 1 = 0
    # CH3-L3 = 1 + 1 = 2, CH2-L3 = 2 sqrt((1+2)(1+1)) = 2 sqrt(6)
    # CH3-L3n = 1 + 1 + 1 = 3 (in0 once), CH2-L3n = 3 + 2 + 2 = 7
    mask = np.array([[1, 0], [1, 1], [1, 1]], dtype=bool)
    expected = {"ch3_l3": 2.0, "ch2_l3": 2 * math.sqrt(6), "ch3_l3n": 3.0, "ch2_l3n": 7.0}
    for rule, value in expected.items():
        assert scores64(mask, rule)[0, 1] == pytest.approx(value, abs=1e-12)


def test_hand_computed_recurrent_example():
    # Nodes 0..3, W[i, j]: j → i. Links 1 → 0, 1 → 2, 1 → 3, 3 → 2. For the missing 3 → 0 the only L3 path is
    # (a, b) = (1, 2): 1 → 0, 1 → 2 and 3 → 2. LC_pre = {1}, LC_post = {2}:
    #   a = 1: out-degree 3 (0, 2, 3), di = 1 (→ 2), de = 3 - 1 - 1 (→ 0) = 1 (→ 3)
    #   b = 2: in-degree 2 (1, 3), di = 1 (1 →), de = 2 - 1 - 1 (3 →) = 0
    # CH3-L3 = 1/sqrt(2 * 1), CH2-L3 = sqrt(2 * 2) / sqrt(2) = sqrt(2), CH3-L3n = 1/2 + 1, CH2-L3n = 2/2 + 2/1
    w = np.zeros((4, 4), dtype=bool)
    for pre, post in [(1, 0), (1, 2), (1, 3), (3, 2)]:
        w[post, pre] = True
    expected = {"ch3_l3": 1 / math.sqrt(2), "ch2_l3": math.sqrt(2), "ch3_l3n": 1.5, "ch2_l3n": 3.0}
    for rule, value in expected.items():
        assert scores64(w, rule, self_connections=False)[0, 3] == pytest.approx(value, abs=1e-12)


# -- structure, chunking, methods -------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
def test_active_positions_are_exactly_zero_and_scores_finite_nonnegative(rule):
    mask = random_mask(30, 20, 0.25, 7)
    s = ch_scores(conn_of(mask), rule)
    assert torch.all(s[torch.from_numpy(mask)] == 0)
    assert torch.isfinite(s).all() and (s >= 0).all()
    assert (s > 0).any()


@pytest.mark.parametrize("rule", RULES)
def test_chunked_iteration_and_row_blocks_equal_one_shot(rule):
    mask = random_mask(23, 17, 0.2, 8)
    conn = conn_of(mask)
    full = ch_scores(conn, rule, dtype=torch.float64)
    for chunk in (1, 4, 100):
        starts, blocks = zip(*iter_ch_scores(conn, rule, chunk_rows=chunk, dtype=torch.float64), strict=True)
        assert list(starts) == list(range(0, 23, chunk))
        torch.testing.assert_close(torch.cat(blocks), full, rtol=1e-13, atol=1e-13)
    # Any order, repeats allowed; with rows given only the in-side weights those rows touch are computed.
    rows = torch.tensor([5, 0, 22, 5, 13])
    for method in ("dense", "sparse"):
        block = ch_scores(conn, rule, rows=rows, dtype=torch.float64, method=method, chunk_rows=2)
        torch.testing.assert_close(block, full[rows], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method,fill", [("dense", 0.25), ("sparse", 0.0), ("sparse", 2.0)])
def test_tiny_internal_budgets_split_every_product_and_change_nothing(method, fill, monkeypatch):
    # With budgets this small the in-side weights are built one row (dense: one symmetric block) at a time
    # and the path rules run one (row, in-neighbour) pair per product; fill 0 / 2 force the sparse method's
    # DD blocks and in-side weights to be held always dense / never dense. None of it may change a score.
    monkeypatch.setattr(link_prediction, "BLOCK_ELEMENTS", 40)
    monkeypatch.setattr(link_prediction, "PAIR_BUDGET", 30)
    monkeypatch.setattr(link_prediction, "DENSE_FILL", fill)
    for shape, seed in (((12, 9), 14), ((9, 13), 15), ((11, 11), 16)):
        mask = random_mask(*shape, 0.3, seed)
        ref = bipartite_reference(mask)
        for rule in RULES:
            np.testing.assert_allclose(scores64(mask, rule, method=method), ref[rule], rtol=1e-13, atol=1e-9)
            rows = torch.tensor([4, 1, 4])
            got = scores64(mask, rule, method=method, rows=rows)
            np.testing.assert_allclose(got, ref[rule][rows.numpy()], rtol=1e-13, atol=1e-9)


@pytest.mark.parametrize("rule", RULES)
def test_dense_and_sparse_methods_agree_on_a_larger_layer(rule):
    mask = random_mask(70, 50, 0.08, 9)
    dense = scores64(mask, rule, method="dense")
    sparse = scores64(mask, rule, method="sparse")
    np.testing.assert_allclose(dense, sparse, rtol=1e-12, atol=1e-12)
    assert (dense > 0).sum() > 100


@pytest.mark.parametrize("rule", RULES)
def test_scores_of_the_transposed_layer_are_the_transpose(rule):
    # The CH scores are symmetric in the two seed nodes, and Mᵀ is the same bipartite graph with the sides
    # swapped.
    mask = random_mask(14, 11, 0.3, 10)
    np.testing.assert_allclose(scores64(mask.T, rule), scores64(mask, rule).T, rtol=1e-13, atol=1e-13)


def test_path_and_node_rules_differ_and_ch2_weights_internal_links():
    mask = random_mask(12, 9, 0.3, 0)
    s = {rule: scores64(mask, rule) for rule in RULES}
    assert not np.allclose(s["ch3_l3"], s["ch3_l3n"])
    # Every CH2 factor (1 + di) >= 2 on an LC node, so CH2 >= 2 CH3 node-based and >= 2 CH3 path-based.
    assert np.all(s["ch2_l3n"] >= 2 * s["ch3_l3n"] - 1e-12)
    assert np.all(s["ch2_l3"] >= 2 * s["ch3_l3"] - 1e-12)
    # Same support: a candidate has a positive score iff it has an L3 path.
    support = s["ch3_l3"] > 0
    for rule in RULES:
        np.testing.assert_array_equal(s[rule] > 0, support)


@pytest.mark.parametrize("method", ["dense", "sparse"])
@pytest.mark.parametrize("rule", RULES)
def test_empty_rows_isolated_nodes_empty_and_full_layers(rule, method):
    mask = random_mask(10, 8, 0.4, 11)
    mask[3, :] = False  # an out-node without inputs
    mask[:, 5] = False  # an in-node without outputs
    s = scores64(mask, rule, method=method)
    assert np.isfinite(s).all()
    # An isolated node has no L3 path to anything.
    assert np.all(s[3] == 0) and np.all(s[:, 5] == 0)
    np.testing.assert_allclose(s, bipartite_reference(mask)[rule], rtol=1e-13, atol=1e-12)
    assert np.all(scores64(np.zeros((6, 4), dtype=bool), rule, method=method) == 0)
    assert np.all(scores64(np.ones((6, 4), dtype=bool), rule, method=method) == 0)  # no candidate left
    # N(b) ⊆ N(i) makes deg(b) - DD[i, b] = 0 (the clamped denominator): no NaN, the reference holds.
    nested = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1]], dtype=bool)
    got = scores64(nested, rule, method=method)
    np.testing.assert_allclose(got, bipartite_reference(nested)[rule], rtol=1e-13, atol=1e-12)


def test_dtype_shape_and_determinism():
    conn = conn_of(random_mask(12, 9, 0.3, 12))
    s32 = ch_scores(conn, "ch2_l3n")
    assert s32.dtype == torch.float32 and s32.shape == (12, 9)
    s64 = ch_scores(conn, "ch2_l3n", dtype=torch.float64)
    assert s64.dtype == torch.float64
    torch.testing.assert_close(s32.double(), s64, rtol=1e-6, atol=1e-6)
    block = ch_scores(conn, "ch3_l3", rows=torch.tensor([2, 7]))
    assert block.shape == (2, 9) and block.dtype == torch.float32
    assert ch_scores(conn, "ch3_l3", rows=torch.zeros(0, dtype=torch.int64)).shape == (0, 9)
    assert torch.equal(ch_scores(conn, "ch3_l3"), ch_scores(conn, "ch3_l3"))  # nothing random inside


def test_bad_arguments_raise_value_error_naming_the_choices():
    conn = conn_of(random_mask(6, 5, 0.4, 13))
    with pytest.raises(ValueError) as info:
        ch_scores(conn, "ch3-l3")
    assert all(rule in str(info.value) for rule in RULES)
    with pytest.raises(ValueError, match="ch2_l3n"):
        iter_ch_scores(conn, "cn")  # validated at the call, before iteration
    with pytest.raises(ValueError, match="sparse"):
        ch_scores(conn, "ch3_l3", method="gpu")
    with pytest.raises(ValueError, match="square"):
        ch_scores(conn, "ch3_l3", self_connections=False)
    with pytest.raises(ValueError, match="rows"):
        ch_scores(conn, "ch3_l3", rows=torch.tensor([6]))
    with pytest.raises(ValueError, match="chunk_rows"):
        iter_ch_scores(conn, "ch3_l3", chunk_rows=0)
    with pytest.raises(ValueError, match="dtype"):
        ch_scores(conn, "ch3_l3", dtype=torch.float16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rule", RULES)
def test_cuda_dense_method_matches_the_cpu(rule):
    mask = random_mask(40, 40, 0.2, 17, diagonal=False)
    conn = conn_of(mask)
    cpu = ch_scores(conn, rule, dtype=torch.float64, self_connections=False)
    gpu = ch_scores(conn, rule, dtype=torch.float64, self_connections=False, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-12, atol=1e-12)
    rows = torch.tensor([3, 1, 3])
    part = ch_scores(conn, rule, rows=rows, dtype=torch.float64, self_connections=False, device="cuda")
    torch.testing.assert_close(part.cpu(), cpu[rows], rtol=1e-12, atol=1e-12)
    blocks = iter_ch_scores(
        conn, rule, chunk_rows=7, dtype=torch.float64, self_connections=False, device="cuda"
    )
    torch.testing.assert_close(torch.cat([b.cpu() for _, b in blocks]), cpu, rtol=1e-12, atol=1e-12)
