"""Group-to-group (ensemble-to-ensemble) connectivity of G2GNet (Konstantaropoulos, Smyrnakis & Papadopouli,
"Neuro-inspired Ensemble-to-Ensemble Communication Primitives for Sparse and Efficient ANNs", seed 000).

The neurons of each layer are partitioned into G groups; a neuron of group k connects to every neuron of group k
of the next layer with the *intra-pathway* probability p and to every neuron of any other group with the
*inter-pathway* probability p' (the paper: p' << p). With balanced groups the expected density is

    p / G + p' (G - 1) / G                                     (paper, §III-A; p = 1, p' = 0.15, G = 8: 0.25625)

Grouping strategies (paper §III-B, Fig. 3), for a layer of n neurons numbered l = 0 ... n-1:

* ``"index"``: consecutive blocks, group(l) = floor(l · G / n) (blocks of n / G when G divides n; otherwise
  sizes differ by at most one);
* ``"interleaved"``: group(l) = l mod G;
* ``"random"``: a uniformly random balanced assignment (the index assignment, randomly permuted);
* ``"mixer"`` (the paper's proposal): ``"index"`` in even-numbered layers, ``"interleaved"`` in odd ones. Layer
  numbers count from 0 = the input of the first G2G matrix (in G2GNet: the concatenated patch embeddings).

The paper (§IV-A): "The input image is divided into 16 patches, and a convolutional layer with 32 output channels
is applied to each patch independently. The resulting patch embeddings are concatenated and passed through the
G2GNet. Given this configuration, each group in the first hidden layer corresponds to two input patches." The
code realises it as follows: :class:`cortexnet.layers.PatchEmbedding` is patch-major (feature
``patch · 32 + channel``), so with mixer grouping the embedding (layer 0, ``"index"``) has G = 8 consecutive
groups of 512 / 8 = 64 features = two whole patches each (group k: patches 2k and 2k + 1); the intra-pathway
(p = 1) block of the first G2G matrix joins embedding group k to group k of the first hidden layer (layer 1,
``"interleaved"``: neurons l with l mod 8 = k), which therefore corresponds to those two patches.

The definition needs p' < p (intra-pathway denser than inter-pathway; the paper: p' << p): ``p_inter > p`` is
rejected. ``p_inter == p`` is allowed: it is an Erdős–Rényi matrix of density p (the groups then make no
difference), a useful end point of a p' sweep (p = p' = 1 is dense).

Besides the paper's feed-forward layers (any shapes, N_i != N_{i+1} included), the same generator builds a
*recurrent* group-to-group matrix: one grouping of one node set used for both pre- and postsynaptic sides,
without self-connections by default (as ``"er"``). **A square matrix is recurrent unless ``recurrent=False`` is
passed** (the registry's convention, shared with ``"er"``: a square matrix is one node set, which is how
:class:`cortexnet.models.CortexRNN` calls every generator); a square *feed-forward* layer must pass
``recurrent=False`` (as :class:`~cortexnet.models.FeedForwardNet` and :class:`~cortexnet.models.G2GNet` do),
or it gets one grouping on both sides (no mixer alternation) and, without ``self_connections``, no diagonal.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cortexnet.connectivity.base import TOPOLOGIES, Connectivity, LayerSpec, rounded_count

#: Grouping strategies accepted by :func:`group_assignment` (and the ``grouping`` option of ``"g2g"``).
GROUPINGS: tuple[str, ...] = ("index", "interleaved", "random", "mixer")

#: Rows processed per chunk: bounds the (chunk x n_in) temporaries (keys, classes, sort order) to ~100 MB.
_CHUNK_ELEMENTS = 4_000_000


def group_assignment(
    n: int, groups: int, grouping: str, *, layer: int = 0, generator: torch.Generator | None = None
) -> Tensor:
    """Group of every neuron of one layer (paper §III-B).

    Args:
        n: neurons in the layer, ≥ 1.
        groups: G, number of groups, in [1, n].
        grouping: ``"index"``, ``"interleaved"``, ``"random"`` or ``"mixer"`` (see the module docstring).
        layer: the layer's number, ≥ 0 (only ``"mixer"`` looks at it: even → index, odd → interleaved).
        generator: explicit CPU generator, required by ``"random"`` only.

    Returns:
        int64 ``(n,)`` group ids in ``[0, groups)``; every group has floor(n/G) or ceil(n/G) members.
    """
    if n < 1:
        raise ValueError(f"layer size must be >= 1, got {n}")
    if not 1 <= groups <= n:
        raise ValueError(f"number of groups must be in [1, {n}] for a layer of {n} neurons, got {groups}")
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    if layer < 0:
        raise ValueError(f"layer number must be >= 0, got {layer}")
    idx = torch.arange(n, dtype=torch.int64)
    if grouping == "mixer":
        grouping = "index" if layer % 2 == 0 else "interleaved"
    if grouping == "interleaved":
        return idx % groups
    blocks = idx * groups // n  # floor(l G / n): balanced consecutive blocks
    if grouping == "index":
        return blocks
    if generator is None:
        raise ValueError(
            "grouping='random' needs an explicit torch.Generator (generator=torch.Generator().manual_seed(s))"
        )
    return blocks[torch.randperm(n, generator=generator)]


def resolve_groups(
    n_out: int,
    n_in: int,
    *,
    groups: int,
    grouping: str,
    layer: int = 0,
    recurrent: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``(out_groups, in_groups)`` that ``"g2g"`` uses when none are given explicitly.

    Feed-forward: the inputs are layer ``layer`` and the outputs layer ``layer + 1`` (so ``"mixer"`` alternates
    across the matrix). Recurrent: one assignment of the single node set (numbered ``layer``) on both sides.
    With ``"random"`` grouping the input side is drawn first, then the output side, from ``generator``.
    """
    in_groups = group_assignment(n_in, groups, grouping, layer=layer, generator=generator)
    if recurrent:
        if n_out != n_in:
            raise ValueError(f"a recurrent matrix must be square, got {n_out} x {n_in}")
        return in_groups, in_groups
    out_groups = group_assignment(n_out, groups, grouping, layer=layer + 1, generator=generator)
    return out_groups, in_groups


def _check_groups(name: str, g: Tensor, n: int) -> Tensor:
    if g.shape != (n,) or g.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name} must be an integer tensor of shape ({n},), got {g.dtype} {tuple(g.shape)}")
    if n and int(g.min()) < 0:
        raise ValueError(f"{name} must hold group ids >= 0, found {int(g.min())}")
    return g.to(torch.int64).cpu()


def pathway_pair_counts(
    out_groups: Tensor, in_groups: Tensor, *, exclude_diagonal: bool = False
) -> tuple[int, int]:
    """``(intra, inter)``: how many ordered (post, pre) pairs lie in same-group (intra-pathway) blocks and in
    different-group (inter-pathway) blocks. ``exclude_diagonal`` (square matrices of one node set) removes the
    n self-pairs, which are always intra-pathway."""
    n_out, n_in = out_groups.numel(), in_groups.numel()
    n_groups = int(max(out_groups.max(), in_groups.max())) + 1 if n_out and n_in else 0
    a = torch.bincount(out_groups, minlength=n_groups)
    b = torch.bincount(in_groups, minlength=n_groups)
    intra = int((a * b).sum())
    inter = n_out * n_in - intra
    if exclude_diagonal:
        if n_out != n_in or not torch.equal(out_groups, in_groups):
            raise ValueError("exclude_diagonal needs one node set: square, with out_groups == in_groups")
        intra -= n_out
    return intra, inter


def check_pathway_probabilities(p: float, p_inter: float) -> None:
    """Raise ``ValueError`` unless p' <= p: the G2G definition connects same-group pairs more densely than pairs
    of different groups (paper: p' << p). p' = p is accepted (Erdős–Rényi at density p)."""
    if p_inter > p:
        raise ValueError(
            f"inter-pathway probability p_inter = {p_inter} exceeds the intra-pathway probability p = {p}; "
            f"G2G needs p_inter <= p (intra-pathway denser): lower p_inter or raise p (paper: p = 1, p' = 0.15)"
        )


def g2g_expected_density(p: float, p_inter: float, groups: int) -> float:
    """The paper's active fraction p / G + p' (G - 1) / G (exact for G equal-sized groups on both sides)."""
    if groups < 1:
        raise ValueError(f"number of groups must be >= 1, got {groups}")
    return p / groups + p_inter * (groups - 1) / groups


def g2g_edge_count(
    out_groups: Tensor,
    in_groups: Tensor,
    *,
    p: float,
    p_inter: float,
    exact: bool,
    exclude_diagonal: bool = False,
) -> float | int:
    """Edges of a G2G matrix with these groups: the expectation p·intra + p'·inter (``exact=False``), or the
    exact count round(p·intra) + round(p'·inter) that ``exact=True`` places (halves rounded up, on the
    decimal value of p and p', :func:`~cortexnet.connectivity.base.rounded_count`)."""
    intra, inter = pathway_pair_counts(out_groups, in_groups, exclude_diagonal=exclude_diagonal)
    if exact:
        return rounded_count(p, intra) + rounded_count(p_inter, inter)
    return p * intra + p_inter * inter


def group_to_group(
    n_out: int,
    n_in: int,
    *,
    generator: torch.Generator | None,
    p: float = 1.0,
    p_inter: float = 0.15,
    groups: int = 8,
    grouping: str = "mixer",
    layer: int = 0,
    out_groups: Tensor | None = None,
    in_groups: Tensor | None = None,
    recurrent: bool | None = None,
    self_connections: bool = False,
    exact: bool = False,
) -> Connectivity:
    """G2G connectivity (G2GNet, seed 000, §III-A): same-group pairs connected with probability ``p``, pairs of
    different groups with ``p_inter``.

    Args:
        n_out, n_in: matrix shape (rows = postsynaptic layer i+1, columns = presynaptic layer i); any sizes.
        generator: explicit CPU ``torch.Generator``; same state → bit-identical mask.
        p: intra-pathway probability in [0, 1] (paper default 1).
        p_inter: inter-pathway probability p' in [0, p] (paper default 0.15; Fig. 4A sweeps it). p' > p is
            rejected (the G2G definition has intra denser than inter); p' = p is Erdős–Rényi at density p.
        groups: G per layer (paper default 8); ignored when both ``out_groups`` and ``in_groups`` are given.
        grouping: ``"index"``, ``"interleaved"``, ``"random"`` or ``"mixer"`` (paper default, see module doc).
        layer: number of the presynaptic layer (mixer parity); the postsynaptic layer is ``layer + 1``.
        out_groups, in_groups: explicit int64 group ids ``(n_out,)`` / ``(n_in,)``, overriding ``groups`` and
            ``grouping`` (a model building several matrices passes each layer's one assignment to both matrices
            that touch it, which "random" grouping needs). Ids need not be balanced; equal ids mean "same group".
        recurrent: the matrix connects one node set to itself: one grouping on both sides, and no self-connections
            unless ``self_connections``. Default None means **True for every square matrix** (as ``"er"`` treats
            square matrices, and as :class:`~cortexnet.models.CortexRNN` relies on) and False otherwise. A
            square feed-forward layer (N_i = N_{i+1}) MUST pass ``recurrent=False``: the default would give it
            one grouping on both sides instead of the mixer's alternation (and drop the diagonal).
        self_connections: allow the diagonal of a recurrent matrix (default False, as ``"er"``).
        exact: False (default) draws every pair independently (Bernoulli, the paper's model). True places exactly
            round(p · intra) intra-pathway and round(p' · inter) inter-pathway edges, each set uniform among the
            subsets of that size (row counts from multivariate hypergeometric draws, columns without
            replacement per row): the count then equals :func:`g2g_edge_count` ``(exact=True)``.

    Returns:
        :class:`Connectivity` ``(n_out, n_in)``. Memory: O(nnz) int64 plus a bounded chunk buffer.
    """
    if n_out < 1 or n_in < 1:
        raise ValueError(f"layer sizes must be >= 1, got n_out={n_out}, n_in={n_in}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"intra-pathway probability p must be in [0, 1], got {p}")
    if not 0.0 <= p_inter <= 1.0:
        raise ValueError(f"inter-pathway probability p_inter must be in [0, 1], got {p_inter}")
    check_pathway_probabilities(p, p_inter)
    if generator is None:
        raise ValueError(
            "group_to_group needs an explicit torch.Generator (generator=torch.Generator().manual_seed(s))"
        )
    if recurrent is None:
        recurrent = n_out == n_in
    if recurrent and n_out != n_in:
        raise ValueError(f"recurrent=True needs a square matrix, got {n_out} x {n_in}; pass recurrent=False")
    if out_groups is None and in_groups is None:
        out_g, in_g = resolve_groups(
            n_out,
            n_in,
            groups=groups,
            grouping=grouping,
            layer=layer,
            recurrent=recurrent,
            generator=generator,
        )
    else:
        if recurrent:
            out_groups = in_groups if out_groups is None else out_groups
            in_groups = out_groups if in_groups is None else in_groups
        if out_groups is None or in_groups is None:
            raise ValueError("pass both out_groups and in_groups for a feed-forward matrix (or neither)")
        out_g = _check_groups("out_groups", out_groups, n_out)
        in_g = _check_groups("in_groups", in_groups, n_in)
        if recurrent and not torch.equal(out_g, in_g):
            raise ValueError("a recurrent matrix has one node set: out_groups must equal in_groups")
    drop_diag = recurrent and not self_connections

    # Per pair, a "class": 0 intra-pathway, 1 inter-pathway, 2 excluded (the diagonal). Bernoulli: a pair is
    # chosen when its uniform key is below its class's probability. Exact: rows get their quota of each class
    # from a multivariate hypergeometric draw, then take the quota's smallest keys within that class.
    quotas = None
    if exact:
        n_groups = int(max(out_g.max(), in_g.max())) + 1
        same_per_row = torch.bincount(in_g, minlength=n_groups)[out_g]  # intra pairs of each row
        intra_row = same_per_row - (1 if drop_diag else 0)
        inter_row = n_in - same_per_row
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        quotas = []
        for per_row, prob in ((intra_row, p), (inter_row, p_inter)):
            total = rounded_count(prob, int(per_row.sum()))
            quotas.append(
                torch.from_numpy(
                    rng.multivariate_hypergeometric(per_row.numpy(), total, method="marginals")
                ).to(torch.int64)
            )
    chunk = max(1, _CHUNK_ELEMENTS // n_in)
    cols: list[Tensor] = []
    counts: list[Tensor] = []
    for start in range(0, n_out, chunk):
        stop = min(n_out, start + chunk)
        keys = torch.rand(stop - start, n_in, generator=generator)
        inter = out_g[start:stop, None] != in_g[None, :]
        if drop_diag:
            rows = torch.arange(start, stop)
            diag = torch.zeros_like(inter)
            diag[rows - start, rows] = True
        if quotas is None:
            selected = keys < torch.where(inter, torch.tensor(p_inter), torch.tensor(p))
            if drop_diag:
                selected &= ~diag
        else:
            # Sort once by (class, key): the intra pairs come first, then the inter pairs, then the diagonal.
            # float64 so that the class offset does not round the float32 keys into extra ties.
            cls = inter.to(torch.float64)
            if drop_diag:
                cls[diag] = 2.0
            order = (keys.to(torch.float64) + 2.0 * cls).argsort(dim=1)
            ranks = torch.empty_like(order)
            ranks.scatter_(1, order, torch.arange(n_in).expand_as(order).contiguous())
            q_intra = quotas[0][start:stop, None]
            n_intra = intra_row[start:stop, None]
            q_inter = quotas[1][start:stop, None]
            # Ranks [0, n_intra) are the row's intra pairs, [n_intra, n_intra + inter pairs) its inter pairs;
            # the diagonal sorts last and is never reached, since each quota is at most its class's size.
            selected = (ranks < q_intra) | ((ranks >= n_intra) & (ranks < n_intra + q_inter))
        counts.append(selected.sum(dim=1, dtype=torch.int64))
        cols.append(selected.nonzero(as_tuple=True)[1].to(torch.int64))
    crow = torch.zeros(n_out + 1, dtype=torch.int64)
    crow[1:] = torch.cat(counts).cumsum(0)
    return Connectivity(n_out, n_in, crow, torch.cat(cols))


@TOPOLOGIES.register("g2g")
def g2g(
    spec: LayerSpec,
    /,
    *,
    generator: torch.Generator | None,
    p: float | None = None,
    p_inter: float = 0.15,
    groups: int = 8,
    grouping: str = "mixer",
    layer: int | None = None,
    out_groups: Tensor | None = None,
    in_groups: Tensor | None = None,
    recurrent: bool | None = None,
    self_connections: bool | None = None,
    exact: bool | None = None,
) -> Connectivity:
    """Registered ``"g2g"``: :func:`group_to_group` on ``spec``.

    Defaults from the layer description: ``p`` (intra-pathway) ← ``spec.density`` (else 1, the paper's),
    ``recurrent`` ← ``spec.recurrent``, ``self_connections`` ← ``spec.self_connections``, ``exact`` ←
    ``spec.exact``, and the node-layer number ``layer`` (mixer parity) ← ``spec.index``. Without explicit
    groups, each node layer's assignment is computed once per model build and shared (``spec.shared``) by
    the two weights that touch it, so ``"random"`` grouping is one grouping per node layer, as G2GNet needs.
    """
    p = (spec.density if spec.density is not None else 1.0) if p is None else p
    recurrent = spec.recurrent if recurrent is None else recurrent
    # Group ids may come as lists (TOML, --topology-params): tensors from here on.
    out_groups = None if out_groups is None else torch.as_tensor(out_groups)
    in_groups = None if in_groups is None else torch.as_tensor(in_groups)
    number = spec.index if layer is None else layer
    if out_groups is None and in_groups is None:
        cache = spec.shared.setdefault("g2g_groups", {})

        def assignment(node_layer: int, n: int) -> Tensor:
            key = (node_layer, n, groups, grouping)
            if key not in cache:
                cache[key] = group_assignment(n, groups, grouping, layer=node_layer, generator=generator)
            return cache[key]

        if not cache and not recurrent and layer is None and grouping == "random":
            # First G2G weight of a model build: draw every node layer's random assignment now, in layer order,
            # so that it is one per node layer and the draws precede all masks (G2GNet's order). Node layers
            # narrower than G cannot be grouped (no G2G matrix can touch them) and are skipped.
            widths = [spec.shapes[0][1], *(shape[0] for shape in spec.shapes)]
            for k, n in enumerate(widths):
                if groups <= n:
                    assignment(k, n)
        in_groups = assignment(number, spec.n_in)
        out_groups = in_groups if recurrent else assignment(number + 1, spec.n_out)
    return group_to_group(
        spec.n_out,
        spec.n_in,
        generator=generator,
        p=p,
        p_inter=p_inter,
        groups=groups,
        grouping=grouping,
        layer=number,
        out_groups=out_groups,
        in_groups=in_groups,
        recurrent=recurrent,
        self_connections=spec.self_connections if self_connections is None else self_connections,
        exact=spec.exact if exact is None else exact,
    )


def _check_g2g_params(spec: LayerSpec | None = None, **kwargs: Any) -> None:
    """``check_params`` hook of the registered ``"g2g"`` (see
    :func:`cortexnet.connectivity.check_topology_params`): probabilities in [0, 1] with p' <= p, a known
    grouping, and, with a layer description, 1 <= G <= the width of every node layer it groups."""
    defaults = inspect.signature(g2g).parameters
    p = kwargs.get("p")
    if p is None:
        p = spec.density if spec is not None and spec.density is not None else 1.0
    p_inter = kwargs.get("p_inter", defaults["p_inter"].default)
    for label, value in (("p", p), ("p_inter", p_inter)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"g2g {label} must be in [0, 1], got {value}")
    check_pathway_probabilities(p, p_inter)
    grouping = kwargs.get("grouping", defaults["grouping"].default)
    if grouping not in GROUPINGS:
        raise ValueError(f"g2g grouping must be one of {GROUPINGS}, got {grouping!r}")
    groups = kwargs.get("groups", defaults["groups"].default)
    for key in ("out_groups", "in_groups"):
        value = kwargs.get(key)
        if value is not None:
            try:
                ids = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"g2g {key} must be a list of integer group ids, got {value!r}") from None
            if ids.is_floating_point() or ids.dim() != 1:
                raise ValueError(f"g2g {key} must be a flat list of integer group ids, got {value!r}")
    explicit = kwargs.get("out_groups") is not None or kwargs.get("in_groups") is not None
    if not explicit:
        widths = [spec.n_out, spec.n_in] if spec is not None else []
        narrowest = min(widths) if widths else None
        if groups < 1 or (narrowest is not None and groups > narrowest):
            upper = narrowest if narrowest is not None else "the layer width"
            raise ValueError(
                f"g2g groups must be in [1, {upper}] (every node layer needs a member of each group), got {groups}"
            )


g2g.check_params = _check_g2g_params  # type: ignore[attr-defined]
