"""Network percolation (cortexnet.rewiring.percolation) against brute-force references.

Feed-forward: the one-backward-one-forward-sweep result against "remove dead neurons until nothing changes".
Recurrent: the distance rule against an explicit simulation of information flow through time (one signal per
input time t0, boolean vectors over T steps) and against the structural gradient of a positive linear RNN.
"""

from __future__ import annotations

import pytest
import torch

from cortexnet.connectivity import Connectivity
from cortexnet.rewiring.percolation import (
    hop_distances,
    keep_links,
    percolate_chain,
    percolate_recurrent,
)


def _random_mask(n_out: int, n_in: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n_out, n_in, generator=g) < p


def _conn(n: int, edges: list[tuple[int, int]]) -> Connectivity:
    """Square connectivity from (i, j) pairs, W[i, j]: j -> i."""
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i, j in edges:
        mask[i, j] = True
    return Connectivity.from_dense(mask)


def _random_sparse(n: int, p: float, seed: int) -> Connectivity:
    """About p·n² distinct links drawn as flat indices: no n x n dense tensor."""
    g = torch.Generator().manual_seed(seed)
    m = round(p * n * n)
    flat = torch.unique(torch.randint(0, n * n, (m,), generator=g))  # sorted: rows, then columns ascending
    rows, col = flat // n, flat % n
    crow = torch.zeros(n + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    return Connectivity(n, n, crow, col)


# ---------------------------------------------------------------------------------------------------------
# references


def _chain_reference(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Iterate CHT's c1 + c2 until nothing changes: remove every link of a hidden neuron that has no input
    link or no output link, over and over."""
    masks = [m.clone() for m in masks]
    changed = True
    while changed:
        changed = False
        for h in range(1, len(masks)):  # hidden node layer h: rows of masks[h-1], columns of masks[h]
            dead = ~masks[h - 1].any(dim=1) | ~masks[h].any(dim=0)
            if masks[h - 1][dead].any() or masks[h][:, dead].any():
                masks[h - 1][dead] = False
                masks[h][:, dead] = False
                changed = True
    return masks


def _flow_reference(
    mask: torch.Tensor, steps: int, s: torch.Tensor, r: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit information flow through time on a dense mask (A[i, j]: j -> i).

    influence[t]: nodes whose state h_t reaches the readout at T - 1 (backwards through the steps). For
    every input time t0 the input signal enters S at t0 and spreads one hop per step; synapse j -> i is used
    at step t iff the signal is at j at t - 1 and i at step t influences the readout. A node is used iff
    the signal is at it at a time t at which it influences the readout.
    """
    influence = [torch.zeros_like(r)] * steps
    influence[steps - 1] = r.clone()
    for t in range(steps - 1, 0, -1):
        influence[t - 1] = (mask & influence[t][:, None]).any(dim=0)
    used = torch.zeros_like(mask)
    node_used = torch.zeros_like(s)
    for t0 in range(steps):
        signal = s.clone()  # at time t0
        node_used |= signal & influence[t0]
        for t in range(t0 + 1, steps):
            used |= mask & influence[t][:, None] & signal[None, :]
            signal = (mask & signal[None, :]).any(dim=1)
            node_used |= signal & influence[t]
    return used, node_used


def _gradient_reference(
    mask: torch.Tensor, steps: int, s: torch.Tensor, r: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The synapses and nodes the readout actually depends on, from autograd: a linear RNN with positive
    weights and inputs (so nothing cancels) h_t = gain ⊙ (x_t·S + h_{t-1} W_recᵀ), output sum(h_{T-1}[R]).
    A synapse is used iff d out / d W[i, j] != 0, a node iff d out / d gain[k] != 0."""
    n = mask.shape[0]
    w = ((0.5 + 0.5 * torch.rand(n, n, generator=g, dtype=torch.float64)) * mask).requires_grad_(True)
    gain = torch.ones(n, dtype=torch.float64, requires_grad=True)
    h = torch.zeros(n, dtype=torch.float64)
    for _ in range(steps):
        x = (0.5 + torch.rand(n, generator=g, dtype=torch.float64)) * s
        h = gain * (x + h @ w.T)
    out = h[r].sum()
    if not out.requires_grad:  # empty readout
        return torch.zeros_like(mask), torch.zeros_like(s)
    dw, dgain = torch.autograd.grad(out, [w, gain], allow_unused=True)
    return (dw != 0) & mask, dgain != 0


def _random_case(seed: int) -> tuple[torch.Tensor, int, torch.Tensor | None, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 10, (1,), generator=g))
    p = float(torch.rand(1, generator=g)) * 0.5
    mask = _random_mask(n, n, p, g)
    steps = int(torch.randint(1, n + 4, (1,), generator=g))  # includes T = 1 and T > N
    s = torch.rand(n, generator=g) < 0.4 if seed % 4 else None
    r = torch.rand(n, generator=g) < 0.4 if seed % 3 else None
    return mask, steps, s, r


# ---------------------------------------------------------------------------------------------------------
# feed-forward chains


def test_chain_matches_iterated_removal_on_random_chains():
    for seed in range(100):
        g = torch.Generator().manual_seed(seed)
        depth = int(torch.randint(1, 5, (1,), generator=g))
        sizes = [int(v) for v in torch.randint(1, 7, (depth + 1,), generator=g)]
        p = 0.1 + 0.5 * float(torch.rand(1, generator=g))
        masks = [_random_mask(sizes[k + 1], sizes[k], p, g) for k in range(depth)]
        layers = [Connectivity.from_dense(m) for m in masks]
        result = percolate_chain(layers)
        expected = _chain_reference(masks)
        for k, (conn, keep, kept, ref) in enumerate(
            zip(layers, result.keep, result.connectivities, expected, strict=True)
        ):
            assert keep.shape == (conn.nnz,) and keep.dtype == torch.bool
            assert torch.equal(keep, ref[conn.rows(), conn.col]), (seed, k)
            assert torch.equal(kept.to_dense(), ref), (seed, k)
            assert kept.nnz + result.removed[k] == conn.nnz
        # Hidden neurons alive iff they keep a link; interface nodes always alive.
        assert result.alive[0].all() and result.alive[-1].all()
        for h in range(1, depth):
            assert torch.equal(result.alive[h], expected[h - 1].any(dim=1)), (seed, h)
            assert torch.equal(result.dead[h - 1], ~result.alive[h])


def test_chain_backward_cascade_hand_made():
    # x0 x1 -> a0 a1 a2 -> b0 b1 b2 -> y.
    # W0: a0<-x0, a1<-x0, a1<-x1, a2<-x1.  W1: b0<-a0, b1<-a1, b2<-a1, b2<-a2.  W2: y<-b0, y<-b1.
    # b2 has no output link: dead, so b2<-a1 and b2<-a2 go. Then a2 has no output link left: dead, so a2<-x1
    # goes. a1 keeps b1<-a1 and stays. CSR orders: W0 rows a0:[x0] a1:[x0,x1] a2:[x1] -> keep T T T F;
    # W1 rows b0:[a0] b1:[a1] b2:[a1,a2] -> keep T T F F; W2 row y:[b0,b1] -> keep T T.
    w0 = Connectivity.from_dense(torch.tensor([[1, 0], [1, 1], [0, 1]]))
    w1 = Connectivity.from_dense(torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 1]]))
    w2 = Connectivity.from_dense(torch.tensor([[1, 1, 0]]))
    result = percolate_chain([w0, w1, w2])
    assert result.keep[0].tolist() == [True, True, True, False]
    assert result.keep[1].tolist() == [True, True, False, False]
    assert result.keep[2].tolist() == [True, True]
    assert result.alive[1].tolist() == [True, True, False]
    assert result.alive[2].tolist() == [True, True, False]
    assert result.removed == [1, 2, 0]


def test_chain_forward_cascade_hand_made():
    # x0 -> a0 a1 -> b0 b1 -> y.  W0: a1<-x0 (a0 gets no input).  W1: b0<-a0, b1<-a1.  W2: y<-b0, y<-b1.
    # a0 has no input link: dead, so b0<-a0 goes; then b0 has no input: dead, so y<-b0 goes.
    w0 = Connectivity.from_dense(torch.tensor([[0], [1]]))
    w1 = Connectivity.from_dense(torch.tensor([[1, 0], [0, 1]]))
    w2 = Connectivity.from_dense(torch.tensor([[1, 1]]))
    result = percolate_chain([w0, w1, w2])
    assert result.keep[0].tolist() == [True]
    assert result.keep[1].tolist() == [False, True]
    assert result.keep[2].tolist() == [False, True]
    assert result.dead[0].tolist() == [True, False] and result.dead[1].tolist() == [True, False]


def test_chain_interface_nodes_never_dead():
    # An input with no link and an output with no link are not percolated, and one layer has no hidden
    # neuron, so nothing is removed.
    w = Connectivity.from_dense(torch.tensor([[1, 0, 0], [0, 0, 0]]))
    result = percolate_chain([w])
    assert result.keep[0].tolist() == [True]
    assert result.alive[0].all() and result.alive[1].all() and result.dead == []


def test_chain_fully_connected_unchanged_and_idempotent():
    layers = [Connectivity.full(5, 4), Connectivity.full(6, 5), Connectivity.full(3, 6)]
    result = percolate_chain(layers)
    assert all(k.all() for k in result.keep)
    assert all(c.equals(w) for c, w in zip(result.connectivities, layers, strict=True))
    g = torch.Generator().manual_seed(0)
    sparse = [Connectivity.from_dense(_random_mask(o, i, 0.3, g)) for o, i in [(6, 5), (6, 6), (2, 6)]]
    once = percolate_chain(sparse).connectivities
    twice = percolate_chain(once)
    assert all(k.all() for k in twice.keep)


def test_chain_empty_layer_kills_all_hidden():
    layers = [Connectivity.full(3, 2), Connectivity.from_dense(torch.zeros(4, 3)), Connectivity.full(2, 4)]
    result = percolate_chain(layers)
    assert [c.nnz for c in result.connectivities] == [0, 0, 0]
    assert result.removed == [6, 0, 8]
    assert all(d.all() for d in result.dead)


def test_chain_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        percolate_chain([])
    with pytest.raises(ValueError, match="n_in"):
        percolate_chain([Connectivity.full(3, 2), Connectivity.full(2, 4)])


# ---------------------------------------------------------------------------------------------------------
# recurrent layers


def test_recurrent_matches_flow_simulation_on_random_graphs():
    for seed in range(200):
        mask, steps, s, r = _random_case(seed)
        n = mask.shape[0]
        conn = Connectivity.from_dense(mask)
        result = percolate_recurrent(conn, steps, receives_input=s, read_out=r)
        ones = torch.ones(n, dtype=torch.bool)
        used, node_used = _flow_reference(mask, steps, ones if s is None else s, ones if r is None else r)
        assert torch.equal(result.keep, used[conn.rows(), conn.col]), seed
        assert torch.equal(result.connectivity.to_dense(), used), seed
        assert torch.equal(result.useful, node_used), seed
        assert result.connectivity.nnz + result.removed == conn.nnz
        if steps == 1:  # h_{-1} = 0: no recurrent synapse is ever used
            assert result.connectivity.nnz == 0


def test_recurrent_matches_gradient_of_positive_linear_rnn():
    for seed in range(80):
        mask, steps, s, r = _random_case(seed)
        n = mask.shape[0]
        ones = torch.ones(n, dtype=torch.bool)
        s = ones if s is None else s
        r = ones if r is None else r
        conn = Connectivity.from_dense(mask)
        result = percolate_recurrent(conn, steps, receives_input=s, read_out=r)
        used, node_used = _gradient_reference(mask, steps, s, r, torch.Generator().manual_seed(seed))
        assert torch.equal(result.connectivity.to_dense(), used), seed
        assert torch.equal(result.useful, node_used), seed


def test_recurrent_is_idempotent_and_consistent():
    for seed in range(60):
        mask, steps, s, r = _random_case(seed)
        result = percolate_recurrent(Connectivity.from_dense(mask), steps, receives_input=s, read_out=r)
        again = percolate_recurrent(result.connectivity, steps, receives_input=s, read_out=r)
        assert again.keep.all(), seed
        assert torch.equal(again.useful, result.useful), seed
        # Both endpoints of a useful synapse are useful nodes.
        kept = result.connectivity
        assert result.useful[kept.col].all() and result.useful[kept.rows()].all()


def test_recurrent_hand_made_shortcut_and_self_loop():
    # Chain 0 -> 1 -> 2 -> 3, self-loop 1 -> 1, shortcut 0 -> 2; input only at 0, readout only at 3.
    # dist_from_input = [0, 1, 1, 2]; dist_to_readout = [2, 2, 1, 0] (0 -> 2 -> 3).
    # Links in CSR order (row i: j -> i): 0->1, 1->1, 0->2, 1->2, 2->3. Rule d_in(j) + 1 + d_out(i) <= T-1:
    #   0->1: 0+1+2=3   1->1: 1+1+2=4 (the loop does not shorten anything)   0->2: 0+1+1=2   1->2: 1+1+1=3
    #   2->3: 1+1+0=2.   Nodes d_in + d_out: [2, 3, 2, 2].
    conn = _conn(4, [(1, 0), (2, 1), (3, 2), (1, 1), (2, 0)])
    s = torch.tensor([True, False, False, False])
    r = torch.tensor([False, False, False, True])
    expected = {
        1: ([False] * 5, [False] * 4),
        2: ([False] * 5, [False] * 4),
        3: ([False, False, True, False, True], [True, False, True, True]),
        4: ([True, False, True, True, True], [True] * 4),
        5: ([True] * 5, [True] * 4),
    }
    for steps, (keep, useful) in expected.items():
        result = percolate_recurrent(conn, steps, receives_input=s, read_out=r)
        assert result.keep.tolist() == keep, steps
        assert result.useful.tolist() == useful, steps
    result = percolate_recurrent(conn, 3, receives_input=s, read_out=r)
    assert result.dist_from_input.tolist() == [0, 1, 1, 2]
    assert result.dist_to_readout.tolist() == [2, 2, 1, 0]


def test_recurrent_local_pass_is_not_enough():
    # 0 <-> 1 is a cycle: both nodes have an input and an output link, so a local degree test keeps them,
    # but nothing from them ever reaches the readout {3}; 2 -> 3 is useful from T = 2 on.
    conn = _conn(4, [(1, 0), (0, 1), (3, 2)])
    r = torch.tensor([False, False, False, True])
    result = percolate_recurrent(conn, 10, read_out=r)
    assert result.keep.tolist() == [False, False, True]  # CSR order: 1->0, 0->1, 2->3
    assert result.useful.tolist() == [False, False, True, True]
    assert result.dist_to_readout.tolist() == [-1, -1, 1, 0]


def test_recurrent_defaults_keep_everything_from_two_steps():
    g = torch.Generator().manual_seed(3)
    conn = Connectivity.from_dense(_random_mask(12, 12, 0.3, g))
    assert percolate_recurrent(conn, 2).keep.all()
    one = percolate_recurrent(conn, 1)
    assert not one.keep.any() and one.useful.all()  # T = 1: every node is read out, no synapse is used


def test_recurrent_fully_connected_unchanged():
    # Full graph: d_in, d_out <= 1 for any non-empty S, R, so every synapse has d_in + 1 + d_out <= 3.
    conn = Connectivity.full(7, 7)
    g = torch.Generator().manual_seed(1)
    for steps in (4, 5, 30):
        s = torch.rand(7, generator=g) < 0.5
        r = torch.rand(7, generator=g) < 0.5
        s[0] = r[1] = True
        result = percolate_recurrent(conn, steps, receives_input=s, read_out=r)
        assert result.keep.all() and result.useful.all()
        assert result.connectivity.equals(conn)


def test_recurrent_empty_connectivity():
    empty = Connectivity.from_dense(torch.zeros(5, 5, dtype=torch.bool))
    s = torch.tensor([True, True, False, False, True])
    r = torch.tensor([True, False, True, False, True])
    result = percolate_recurrent(empty, 6, receives_input=s, read_out=r)
    assert result.keep.shape == (0,) and result.connectivity.nnz == 0 and result.removed == 0
    assert result.useful.tolist() == (s & r).tolist()


def test_recurrent_large_sparse_smoke():
    n = 20_000
    conn = _random_sparse(n, 0.001, seed=0)  # about 4·10^5 links
    g = torch.Generator().manual_seed(0)
    s = torch.rand(n, generator=g) < 0.5
    r = torch.zeros(n, dtype=torch.bool)
    r[:50] = True
    result = percolate_recurrent(conn, 28, receives_input=s, read_out=r)  # O(T nnz): no N x N anywhere
    assert result.connectivity.nnz + result.removed == conn.nnz
    # Mean degree 20: everything is within a few hops of S and of R, so at T = 28 every synapse is useful.
    assert result.removed == 0 and result.useful.all()
    # With T = 3 a synapse j -> i survives iff d_in(j) + d_out(i) <= 1 (both reached within the 2 hops).
    short = percolate_recurrent(conn, 3, receives_input=s, read_out=r)
    d_in, d_out = short.dist_from_input[conn.col], short.dist_to_readout[conn.rows()]
    assert torch.equal(short.keep, (d_in >= 0) & (d_out >= 0) & (d_in + d_out <= 1))
    assert 0 < short.removed < conn.nnz


def test_recurrent_rejects_bad_input():
    conn = Connectivity.full(3, 3)
    with pytest.raises(ValueError, match="square"):
        percolate_recurrent(Connectivity.full(3, 4), 2)
    with pytest.raises(ValueError, match="steps"):
        percolate_recurrent(conn, 0)
    with pytest.raises(ValueError, match="shape"):
        percolate_recurrent(conn, 2, read_out=torch.ones(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        percolate_recurrent(conn, 2, receives_input=torch.ones(3))


# ---------------------------------------------------------------------------------------------------------
# helpers


def test_hop_distances_match_dense_bfs():
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        n = int(torch.randint(1, 12, (1,), generator=g))
        mask = _random_mask(n, n, 0.25, g)
        src = torch.rand(n, generator=g) < 0.3
        conn = Connectivity.from_dense(mask)
        for reverse in (False, True):
            adj = mask.T if reverse else mask  # adj[i, j]: one hop from j to i in the walk direction
            expected = torch.full((n,), -1, dtype=torch.int64)
            reached = src.clone()
            expected[reached] = 0
            for level in range(1, n + 1):
                reached = reached | (adj & reached[None, :]).any(dim=1)
                expected[reached & (expected < 0)] = level
            assert torch.equal(hop_distances(conn, src, reverse=reverse), expected), (seed, reverse)
            capped = expected.clone()
            capped[capped > 2] = -1
            assert torch.equal(hop_distances(conn, src, reverse=reverse, max_hops=2), capped)


def test_keep_links_preserves_order_and_validity():
    g = torch.Generator().manual_seed(5)
    mask = _random_mask(7, 9, 0.4, g)
    conn = Connectivity.from_dense(mask)
    keep = torch.rand(conn.nnz, generator=g) < 0.5
    sub = keep_links(conn, keep)
    dense = torch.zeros_like(mask)
    dense[conn.rows()[keep], conn.col[keep]] = True
    assert sub.equals(Connectivity.from_dense(dense))
    with pytest.raises(ValueError, match="shape"):
        keep_links(conn, keep[:-1])
