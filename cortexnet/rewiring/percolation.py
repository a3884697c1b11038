"""Network percolation: find the links that can no longer carry information and remove them.

After a rewiring step has pruned links (and before it regrows), some hidden neurons may be left with no input
link or no output link. Such a neuron cannot pass a signal forward (nor a gradient backward), so the links
that still touch it are wasted budget; removing them can strand further neurons. CHT calls the cleanup
"network percolation" (Zhang et al., ICLR 2024, "Epitopological learning and Cannistraci-Hebb network shape
intelligence brain-inspired theory for ultra-sparse advantage in deep learning"; Zhang et al. 2024, CHTs,
§3.2.2, seed ``003`` in ``shared/seeds/``): c1) remove the inactive neurons, c2) remove the incomplete paths
left attached to them. The caller adds the removed links to the regrowth count so the density is kept.

Two settings, two functions, both pure (a :class:`~cortexnet.connectivity.Connectivity` in, masks and a new
``Connectivity`` out) and O(nnz) in memory (no ``N x N`` dense tensor), so they run at N = 20,000 with 10^7
links:

* :func:`percolate_chain`: a feed-forward chain of layers. A link survives iff it lies on a complete path
  from an input node to an output node; one backward and one forward sweep compute exactly that.
* :func:`percolate_recurrent`: one recurrent weight unrolled over ``T`` steps. Here a local "has an input and
  an output link" test is wrong (a cycle has both and may never reach the readout in time, DST.md): a
  synapse is useful iff some walk input -> ... -> j -> i -> ... -> readout fits in the ``T - 1`` recurrent
  hops of the sequence, decided from two breadth-first hop distances.

Orientation everywhere: entry ``W[i, j]`` (row ``i``, column ``j``) is the synapse from presynaptic node ``j``
to postsynaptic node ``i``, as in ``y = x Wᵀ``; "j -> i" below means that synapse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from cortexnet.connectivity import Connectivity

__all__ = [
    "ChainPercolation",
    "RecurrentPercolation",
    "hop_distances",
    "keep_links",
    "percolate_chain",
    "percolate_recurrent",
]


def keep_links(conn: Connectivity, keep: Tensor) -> Connectivity:
    """The sub-connectivity of the links where ``keep`` is True.

    Args:
        conn: ``(n_out, n_in)`` connectivity with ``nnz`` links.
        keep: bool ``(nnz,)`` over ``conn``'s links in its CSR order (row by row, columns ascending).

    Returns:
        Same shape, only the kept links, in the same order (so rows stay sorted): O(nnz), no dense mask.
    """
    keep = _check_mask(keep, conn.nnz, "keep")
    # Kept links before each position (prefix count), read at the old row pointers: the new row pointers, with
    # no row index per link and no Python loop.
    before = torch.zeros(conn.nnz + 1, dtype=torch.int64)
    torch.cumsum(keep, 0, out=before[1:])
    return Connectivity(conn.n_out, conn.n_in, before[conn.crow], conn.col[keep])


def hop_distances(
    conn: Connectivity, sources: Tensor, *, reverse: bool = False, max_hops: int | None = None
) -> Tensor:
    """Shortest-path hop distances (breadth-first levels) from a node set through a square connectivity.

    Forward (``reverse=False``): ``d[k]`` is the least number of synapses on a directed walk ``s -> ... -> k``
    from some ``s`` in ``sources`` (following j -> i for ``W[i, j]``). Reverse: the least number on a walk
    ``k -> ... -> s`` *into* the set. Members of the set have distance 0; self-loops and cycles never shorten
    a shortest walk, and BFS levels are the shortest distances by construction (a node is labelled the first
    time the frontier reaches it and never relabelled).

    Each level is one sparse matrix-vector product (SciPy, over a float32 copy of the pattern: the count of
    frontier neighbours, tested > 0), so the cost is O(levels · nnz) time and O(nnz) memory, with levels <=
    min(max_hops, eccentricity of the set + 1).

    Args:
        conn: square ``(N, N)`` connectivity.
        sources: bool ``(N,)`` node set.
        reverse: distances *to* the set (against the synapse direction) instead of *from* it.
        max_hops: stop after this many levels; nodes farther away count as unreached. None: no limit.

    Returns:
        int64 ``(N,)``: the distance, or -1 where no walk (of at most ``max_hops`` synapses) exists.
    """
    n = _check_square(conn)
    sources = _check_mask(sources, n, "sources")
    if max_hops is not None and max_hops < 0:
        raise ValueError(f"max_hops must be >= 0, got {max_hops}")
    dist = torch.full((n,), -1, dtype=torch.int64)
    dist[sources] = 0
    if conn.nnz == 0:
        return dist
    # Forward: (A f)[i] counts the frontier nodes j with a synapse j -> i. Reverse: (Aᵀ f)[j] counts the
    # frontier nodes i that j projects to (SciPy multiplies by the transpose without building it).
    step = _pattern(conn).T if reverse else _pattern(conn)
    unseen = ~sources.numpy()
    frontier = sources.numpy().astype(np.float32)
    level = 0
    while frontier.any() and (max_hops is None or level < max_hops):
        level += 1
        # A node is labelled the first time it is reached: its BFS level, i.e. its shortest distance.
        new = ((step @ frontier) > 0) & unseen
        unseen &= ~new
        dist[torch.from_numpy(new)] = level
        frontier = new.astype(np.float32)
    return dist


def _pattern(conn: Connectivity) -> scipy.sparse.csr_matrix:
    """The links as a SciPy CSR matrix of float32 ones (O(nnz); SciPy may narrow the indices to int32)."""
    data = np.ones(conn.nnz, dtype=np.float32)
    return scipy.sparse.csr_matrix((data, conn.col.numpy(), conn.crow.numpy()), shape=conn.shape)


@dataclass(frozen=True, eq=False)
class ChainPercolation:
    """What :func:`percolate_chain` found.

    Attributes:
        keep: per layer ``l``, bool ``(layers[l].nnz,)`` over that layer's links in CSR order: True = keep.
        connectivities: per layer, the connectivity of the kept links.
        alive: per node layer ``0 .. L`` (inputs, hidden layers, outputs), bool ``(n_nodes,)``: True for
            input nodes, output nodes, and hidden neurons on a complete input-to-output path.
    """

    keep: list[Tensor]
    connectivities: list[Connectivity]
    alive: list[Tensor]

    @property
    def removed(self) -> list[int]:
        """Links removed, per layer."""
        return [int((~k).sum()) for k in self.keep]

    @property
    def dead(self) -> list[Tensor]:
        """Per hidden node layer ``1 .. L-1``, bool ``(n_nodes,)``: the neurons percolation removed."""
        return [~a for a in self.alive[1:-1]]


def percolate_chain(layers: Sequence[Connectivity]) -> ChainPercolation:
    """Network percolation of a feed-forward chain (CHT's c1 + c2 to their fixed point).

    Node layer 0 is the model's input, node layer ``L`` its output, the rest hidden; ``layers[l]`` is the
    ``(n_{l+1}, n_l)`` connectivity from node layer ``l`` to ``l + 1`` (``W[i, j]``: j in layer ``l`` ->
    i in layer ``l + 1``). A hidden neuron without an input link or without an output link is dead; its links
    go, which may leave more neurons dead, and so on until nothing changes. Input and output nodes are the
    model's interface and are never dead (a link is not removed for touching an input without other links or
    an output without other links; only hidden neurons percolate).

    The fixed point is computed directly: a link j -> i of layer ``l`` is kept iff ``j`` is reachable from
    some input node and ``i`` reaches some output node, i.e. iff the link lies on a complete input-to-output
    path. Why this equals iterated removal:

    * A link on a complete path is never removed: every hidden neuron on the path has its in- and out-link
      on the path, so (by induction over removal rounds) none of the path's neurons ever becomes dead.
    * At the fixed point every remaining link is on a complete path: each hidden neuron touched by a
      remaining link has a remaining in- and out-link (else it would be dead), so following out-links from
      the link's head reaches layer ``L`` and following in-links from its tail reaches layer 0 (the chain is
      layered, so these walks end).
    * Iterated removal only removes links not on complete paths (first point) and stops exactly when all
      remaining ones are (second point), so it stops at this set, whatever the removal order.

    One backward sweep (``to_output``, layer ``L - 1`` down to 1: a neuron reaches an output iff one of its
    out-links goes to a neuron that does) and one forward sweep (``from_input``, layer 1 up to ``L - 1``)
    compute both reachabilities in O(total nnz); no iteration to convergence is needed.

    Args:
        layers: ``L >= 1`` connectivities with ``layers[l].n_in == layers[l - 1].n_out``.

    Returns:
        The keep masks, the kept connectivities and the alive neurons (:class:`ChainPercolation`). With one
        layer there is no hidden neuron and nothing is removed.
    """
    if len(layers) == 0:
        raise ValueError("percolate_chain needs at least one layer")
    for k in range(1, len(layers)):
        if layers[k].n_in != layers[k - 1].n_out:
            raise ValueError(
                f"layers[{k}] has n_in={layers[k].n_in} but layers[{k - 1}] has n_out={layers[k - 1].n_out}"
            )
    sizes = [layers[0].n_in] + [w.n_out for w in layers]
    patterns = [_pattern(w) for w in layers]
    n_layers = len(layers)

    def spread(matrix: scipy.sparse.csr_matrix, active: Tensor) -> Tensor:
        # One boolean sparse matrix-vector product: which nodes have a link from/to an active node.
        return torch.from_numpy((matrix @ active.numpy().astype(np.float32)) > 0)

    # Backward sweep: to_output[L] = all outputs; a node of layer k reaches an output iff one of its out-links
    # (a column of layers[k]) goes to a node that reaches one.
    to_output: list[Tensor] = [torch.ones(sizes[-1], dtype=torch.bool)]
    for k in range(n_layers - 1, 0, -1):
        to_output.insert(0, spread(patterns[k].T, to_output[0]))
    to_output.insert(0, torch.ones(sizes[0], dtype=torch.bool))  # inputs: interface, never dead

    # Forward sweep: from_input[0] = all inputs; a node of layer k + 1 is reached iff one in-link (a row of
    # layers[k]) comes from a reached node. The output layer is appended as all alive (interface).
    from_input: list[Tensor] = [torch.ones(sizes[0], dtype=torch.bool)]
    for k in range(n_layers - 1):
        from_input.append(spread(patterns[k], from_input[k]))
    from_input.append(torch.ones(sizes[-1], dtype=torch.bool))

    # Link j -> i of layers[k] is kept iff from_input(j) and to_output(i): row flags expand per row (CSR).
    keep = [
        from_input[k][w.col] & torch.repeat_interleave(to_output[k + 1], w.crow.diff())
        for k, w in enumerate(layers)
    ]
    alive = [from_input[k] & to_output[k] for k in range(n_layers + 1)]
    return ChainPercolation(keep, [keep_links(w, m) for w, m in zip(layers, keep, strict=True)], alive)


@dataclass(frozen=True, eq=False)
class RecurrentPercolation:
    """What :func:`percolate_recurrent` found for one recurrent weight over ``steps`` time steps.

    Attributes:
        keep: bool ``(nnz,)`` over the weight's links in CSR order: True = useful synapse.
        connectivity: the ``(N, N)`` connectivity of the useful synapses.
        useful: bool ``(N,)``: nodes with ``dist_from_input + dist_to_readout <= steps - 1``.
        dist_from_input: int64 ``(N,)`` recurrent hops from the input set, -1 where it takes more than
            ``steps - 1`` hops or is impossible.
        dist_to_readout: int64 ``(N,)`` recurrent hops to the readout set, -1 likewise.
        steps: the sequence length ``T`` used.
    """

    keep: Tensor
    connectivity: Connectivity
    useful: Tensor
    dist_from_input: Tensor
    dist_to_readout: Tensor
    steps: int

    @property
    def dead(self) -> Tensor:
        """bool ``(N,)``: nodes that are not useful."""
        return ~self.useful

    @property
    def removed(self) -> int:
        """Number of synapses removed."""
        return int((~self.keep).sum())


def percolate_recurrent(
    w_rec: Connectivity,
    steps: int,
    *,
    receives_input: Tensor | None = None,
    read_out: Tensor | None = None,
) -> RecurrentPercolation:
    """Network percolation of a recurrent layer unrolled over ``steps`` time steps (exact, not local).

    The layer computes ``h_t = f(x_t W_inᵀ + h_{t-1} W_recᵀ + b)`` for ``t = 0 .. T-1`` with ``h_{-1} = 0``,
    an input ``x_t`` presented at every step, and a readout of ``h_{T-1}``. ``W_rec[i, j]`` is the synapse
    j -> i: it carries ``h_{t-1}[j]`` into ``h_t[i]``, one recurrent hop per step.

    Definitions (``T = steps``, ``S = receives_input``, ``R = read_out``):

    * ``dist_from_input(k)``: the least number of recurrent synapses on a directed walk from a node of ``S``
      to ``k`` (0 for ``k`` in ``S``), i.e. the BFS level of ``k`` from ``S``.
    * ``dist_to_readout(k)``: the least number of synapses on a walk from ``k`` to a node of ``R`` (0 in
      ``R``). Both are shortest-path hop counts: self-loops and cycles only lengthen walks, never shorten.
    * Synapse j -> i is *useful* iff ``dist_from_input(j) + 1 + dist_to_readout(i) <= T - 1``.
    * Node ``k`` is *useful* iff ``dist_from_input(k) + dist_to_readout(k) <= T - 1``; otherwise it is dead.

    Why the synapse rule is exact: j -> i is used at step ``t`` (``1 <= t <= T-1``) by a signal entering
    ``S`` at step ``t0 >= 0`` iff some walk of ``a = t - 1 - t0`` hops goes from ``S`` to ``j`` and some walk
    of ``b = T - 1 - t`` hops goes from ``i`` to ``R``. Because input arrives at every step, ``t0`` is free,
    so the synapse is used iff walks with ``a + 1 + b <= T - 1`` exist, and the shortest ones decide. The node
    rule is the same with the walk passing through ``k`` (at step ``t0 + dist_from_input(k)``). Consequences:

    * ``T = 1``: ``h_{-1} = 0``, no recurrent synapse is ever used; the useful nodes are ``S ∩ R``.
    * Defaults ``S = R = all``: every node is useful and, for ``T >= 2``, every synapse (nothing to do).
      With ``S = all`` and ``R`` a subset (a sparse readout) the rule degenerates to "can reach the readout
      in time": synapse j -> i useful iff ``dist_to_readout(i) <= T - 2``, node ``k`` iff
      ``dist_to_readout(k) <= T - 1``.
    * The endpoints of a useful synapse are useful nodes; the synapses of dead nodes are all removed.
    * One pass is the fixed point: every synapse on a shortest walk of a useful node is itself useful, so
      removing the useless ones changes no useful node's distances and a second call removes nothing.

    A local test ("has an in-link and an out-link") is wrong here: a cycle that never reaches ``R``, or
    reaches it only in more than ``T - 1`` hops, passes it. The distances are capped at ``T - 1`` levels, so
    the work is O(min(T, depth) · nnz) with O(nnz) memory: fine at N = 20,000 with 10^7+ links. Input links
    ``W_in`` to dead nodes of ``S``, and readout links from dead nodes of ``R``, are useless too: the caller
    can drop them with :attr:`RecurrentPercolation.dead`.

    Source: CHT network percolation (Zhang et al., ICLR 2024; CHTs §3.2.2, seed ``003``), extended here to
    recurrence through time (DST.md, "Network percolation").

    Args:
        w_rec: square ``(N, N)`` recurrent connectivity.
        steps: the sequence length ``T >= 1``.
        receives_input: bool ``(N,)``, the nodes that get the input directly (rows of ``W_in`` with a link);
            default all (``W_in`` dense).
        read_out: bool ``(N,)``, the nodes the readout reads at step ``T - 1``; default all (dense readout).

    Returns:
        The keep mask, kept connectivity, useful nodes and both distances (:class:`RecurrentPercolation`).
    """
    n = _check_square(w_rec)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    ones = torch.ones(n, dtype=torch.bool)
    s = ones if receives_input is None else _check_mask(receives_input, n, "receives_input")
    r = ones if read_out is None else _check_mask(read_out, n, "read_out")
    # Hops beyond T - 1 can never fit in the sequence: stop the BFS there (-1 = "too far or unreachable").
    d_in = hop_distances(w_rec, s, max_hops=steps - 1)
    d_out = hop_distances(w_rec, r, reverse=True, max_hops=steps - 1)
    # Unreached becomes T, which fails every "<= T - 1" test since distances are >= 0.
    far_in = torch.where(d_in < 0, steps, d_in)
    far_out = torch.where(d_out < 0, steps, d_out)
    useful = far_in + far_out <= steps - 1
    # Synapse j -> i at CSR position e: j = col[e], i = its row (row flags expanded per row).
    keep = far_in[w_rec.col] + 1 + torch.repeat_interleave(far_out, w_rec.crow.diff()) <= steps - 1
    return RecurrentPercolation(keep, keep_links(w_rec, keep), useful, d_in, d_out, steps)


def _check_square(conn: Connectivity) -> int:
    if conn.n_out != conn.n_in:
        raise ValueError(f"a recurrent connectivity must be square, got {conn.n_out} x {conn.n_in}")
    return conn.n_out


def _check_mask(mask: Tensor, n: int, name: str) -> Tensor:
    if not isinstance(mask, Tensor) or mask.shape != (n,):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a tensor of shape ({n},), got {shape}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {mask.dtype}")
    return mask.cpu()
