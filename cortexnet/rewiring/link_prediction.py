"""Cannistraci-Hebb (CH) link prediction on the graph of one sparse layer: the regrowth scores of CHT / CHTs.

The scores follow the local-community paradigm of Muscoloni & Cannistraci (CH network automata, "CH3-L3"),
as used for dynamic sparse training by CHT (Zhang et al., ICLR 2024, "Epitopological learning and
Cannistraci-Hebb network shape intelligence brain-inspired theory for ultra-sparse advantage in deep
learning") and CHTs (Zhang et al. 2024, "Brain-Inspired Sparse Training in MLP and Transformers with Network
Science Modeling via Cannistraci-Hebb Soft Rule", seed 003; the node-based matrix form comes from its 2025
sequel, seed 002). See ``design/DST.md``, section "Cannistraci-Hebb link prediction (CHT)".

**The graph.** A weight ``W`` of shape ``(n_out, n_in)`` with mask ``M`` (``M[i, j] = 1``: a synapse from
input/pre node ``j`` to output/post node ``i``) is scored on its bipartite graph of ``n_out + n_in`` nodes: an
edge joins out-node ``i`` and in-node ``j`` when ``M[i, j] = 1``. A candidate is a missing link ``(i, j)``. Its
L3 paths are ``i - a - b - j`` with ``a`` an in-node and ``b`` an out-node, i.e. ``M[i, a] = M[b, a] = M[b, j] =
1`` (such paths are automatically simple: ``b != i`` and ``a != j`` because ``M[i, j] = 0``). The local
community ``LC(i, j)`` is the set of all intermediate nodes of these paths. For ``z`` in LC, ``di(z)`` is the
number of neighbours of ``z`` inside LC and ``de(z) = deg(z) - di(z) - [z ~ i] - [z ~ j]`` its number of
external links. On the bipartite graph these reduce to overlaps of neighbourhoods (why the matrix form is
exact):

* out-node ``b`` in LC: ``di(b) = DD[i, b]`` with ``DD = M Mᵀ`` (every common in-neighbour ``a`` of ``i`` and
  ``b`` lies on the path ``i - a - b - j``, and no other in-neighbour of ``b`` is in LC), ``[b ~ i] = 0``,
  ``[b ~ j] = 1``, so ``1 + de(b) = deg(b) - DD[i, b]``, where ``deg(b)`` = row sum of ``M``;
* in-node ``a`` in LC: ``di(a) = TT[a, j]`` with ``TT = Mᵀ M``, ``[a ~ i] = 1``, ``[a ~ j] = 0``, so
  ``1 + de(a) = deg(a) - TT[a, j]``, where ``deg(a)`` = column sum of ``M``;
* ``b`` is in LC iff ``M[b, j] = 1`` and ``DD[i, b] > 0``; ``a`` is in LC iff ``M[i, a] = 1`` and
  ``TT[a, j] > 0``.

**The rules** (``RULES``):

* ``"ch3_l3"`` (path-based): ``Σ_paths 1 / sqrt((1 + de(a)) (1 + de(b)))``;
* ``"ch2_l3"`` (path-based): ``Σ_paths sqrt((1 + di(a)) (1 + di(b))) / sqrt((1 + de(a)) (1 + de(b)))``;
* ``"ch3_l3n"`` (node-based, each LC node counted once): ``Σ_{z ∈ LC} 1 / (1 + de(z))``;
* ``"ch2_l3n"`` (node-based): ``Σ_{z ∈ LC} (1 + di(z)) / (1 + de(z))`` (what the authors' Transformer and LLM
  runs use).

The node-based scores equal ``S = A M + M C`` at the missing links, with ``A[i, b] = [DD > 0] w(DD[i, b],
deg(b))`` and ``C[a, j] = [TT > 0] w(TT[a, j], deg(a))``, ``w(x, d) = (1 + x)^{[CH2]} / (d - x)`` (DST.md's
``S = A @ M + (B @ Mᵀ)ᵀ`` with ``B = Cᵀ``; ``d - x`` is DST.md's ``1 + eDT``). This is exact, not an
approximation. The path-based scores factor in the same way: each path term is ``g(i, b) f(a, j)`` with
``g = sqrt(w(DD[i, b], deg(b)))`` and ``f = sqrt(w(TT[a, j], deg(a)))``, so ``S[i, j] = Σ_a M[i, a] f(a, j)
Σ_b M[b, a] g(i, b) M[b, j]``, evaluated exactly (no path is dropped or counted twice): ``"dense"`` groups the
sum by the in-node ``a`` (one small product ``g[N(a) ∩ rows, N(a)] @ M[N(a), :]`` per ``a``), ``"sparse"``
forms the (i, a) × j sums as a sparse product and enumerates the L3 paths in effect.

**Recurrent layers** (square ``W_rec``, ``W[i, j]``: ``j → i``, one directed graph of N nodes): the score is
the bipartite score of the same square mask, i.e. the directed graph is scored on its *post/pre double
cover*: every node appears once as a postsynaptic copy (its in-links, degree = in-degree = row sum) and once
as a presynaptic copy (its out-links, degree = out-degree = column sum). For the missing link ``j → i`` the L3
paths are the node pairs ``(a, b)`` with ``a → i``, ``a → b`` and ``j → b``: ``a`` is an input of ``i`` that
shares the target ``b`` with ``j`` ("``j`` projects where ``i``'s inputs project, so ``j`` should project to
``i``"). In directed terms, ``LC_pre = {a}``, ``LC_post = {b}``, ``di(a) = #{b ∈ LC_post : a → b}``,
``de(a) = outdeg(a) - di(a) - 1`` (the ``1`` is ``a → i``), ``di(b) = #{a ∈ LC_pre : a → b}``, ``de(b) =
indeg(b) - di(b) - 1`` (the ``1`` is ``j → b``). A node may be both an ``a`` and a ``b`` (its two copies are
different nodes of the cover), and self-connections, where present, are ordinary links of the cover
(``a = i`` uses ``i → i``; ``b = j`` uses ``j → j``). This is *not* the count of directed 3-paths ``j → x → y →
i``; it is the only definition under which a recurrent layer and a feed-forward layer with the same mask get
the same scores. Diagonal candidates ``(i, i)`` are scored like any other unless ``self_connections=False``,
which sets them to 0 (the caller's ``not drops_diagonal(spec)``).

**Output conventions.** Scores are returned dense per block of output rows, ``(rows, n_in)``; active links
(and, with ``self_connections=False``, the diagonal) are exactly 0, and candidates without any L3 path are
exactly 0 too (an isolated node or empty row gives a zero row, never NaN). Telling "inactive with score 0"
from "active" (DST.md: rank active links as -inf) and breaking ties is the caller's job: nothing here is
random. Scores that are equal in exact arithmetic can differ in the last bits when their sums run in a
different order, so a caller that wants random tie-breaking should not rely on bitwise equality.

**Methods and cost** (N nodes per side, d the mean degree, p = d / N):

* ``"dense"`` (``torch``, any device): dense float GEMMs on row blocks, which a 2-core CPU runs 20-35 times
  faster per multiply-add than scipy's or torch's sparse kernels. Node rules: 3.5 N³ multiply-adds (TT, once,
  using its symmetry: 0.5; DD, A M and M C per block: 1 each). Path rules: 1.5 N³ (TT, DD) plus N² d² in
  small batched products (``bmm``) plus gathers of nnz · n_in elements per row block.
* ``"sparse"`` (``scipy.sparse``, CPU): sparse DD and TT, O(N d²); node rules then O(N² d) in sparse ×
  dense products once DD and TT fill in (``N p² >~ 0.3``); path rules O(N d³) (the L3 path count) in sparse
  × sparse products.
* ``"auto"`` (default): ``"dense"`` from density ``DENSE_FROM["node"]`` = 0.05 (node rules) or
  ``DENSE_FROM["path"]`` = 0.015 (path rules) up, on small layers, and on any device other than the CPU;
  ``"sparse"`` otherwise.

Memory (elements of the output dtype; ``c`` rows per block): ``"dense"`` holds the mask (``n_out · n_in``),
the in-side weights ``C`` or ``f`` (``n_in²``; with ``rows`` given to :func:`ch_scores`, only the rows of
the in-nodes the block touches) and per block about ``c · (2 n_out + 3 n_in)``; the path rules add at most
``PAIR_BUDGET`` per batched product. ``"sparse"`` holds ``M`` and ``Mᵀ`` in CSR, ``C`` or ``f`` in CSR or,
once a quarter full (``DENSE_FILL``), dense, and per block the products plus the dense ``(c, n_in)`` result.
The default block (``BLOCK_ELEMENTS // max(n_out, n_in)`` rows) keeps the per-block part near
``5 · BLOCK_ELEMENTS`` (≈ 350 MB in float32).

Measured on the 2-core development CPU while two other CPU-bound processes shared it (so roughly half of an
idle machine; float32, ``iter_ch_scores``, ``self_connections=False``):

* 10,000 × 10,000 recurrent layer, p = 0.1 (10⁷ links), ``"dense"``: one full CH2-L3n pass 115 s, CH3-L3n
  114 s (TT 23-25 s, then 13-17 s per block of 1,677 rows), peak RSS 1.65 GB. Not measured on a GPU: with
  ``device="cuda"`` the same 3.5 · 10¹² multiply-adds are about 0.1 s of FP32 arithmetic on a current GPU.
* 10,000 × 10,000, p = 0.01, CH2-L3n, ``"sparse"``: 24 s, peak RSS 2.1 GB.
* CH3-L3 / CH2-L3 (path), 2,000 × 2,000, p = 0.1 (N d³ = 1.6 · 10¹⁰ path terms), ``"dense"``: 22-33 s,
  0.6 GB; 1,000 × 1,000, p = 0.1: 3.5 s. At 10,000 × 10,000, p = 0.01 one pass costs several minutes
  (``"sparse"``: 72 s for the first 1,677 rows); at p = 0.1 (N² d² = 10¹⁴) it is out of reach on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from cortexnet.connectivity.base import Connectivity

#: The rule names: path-based ``ch3_l3`` and ``ch2_l3``, node-based ``ch3_l3n`` and ``ch2_l3n``.
RULES: tuple[str, ...] = ("ch3_l3", "ch2_l3", "ch3_l3n", "ch2_l3n")
#: The computation methods (see the module docstring).
METHODS: tuple[str, ...] = ("auto", "dense", "sparse")
#: ``"auto"`` picks ``"dense"`` from this mask density up, for the node and the path rules (crossovers measured
#: on a 2-core CPU at N = 4,000), or when the dense mask has at most ``SMALL_LAYER`` elements.
DENSE_FROM: dict[str, float] = {"node": 0.05, "path": 0.015}
SMALL_LAYER: int = 1 << 20
#: Default block size in elements: ``chunk_rows`` defaults to ``BLOCK_ELEMENTS // max(n_out, n_in)``.
BLOCK_ELEMENTS: int = 1 << 24
#: Path rules: at most this many elements in one (pairs × nodes) product of a block.
PAIR_BUDGET: int = 1 << 25
#: ``"sparse"``: a DD block or the in-side weights are held dense from this stored fraction up.
DENSE_FILL: float = 0.25

_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _check(conn: Connectivity, rule: str, method: str, self_connections: bool, dtype: torch.dtype) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown Cannistraci-Hebb rule {rule!r}; allowed rules: {', '.join(RULES)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed methods: {', '.join(METHODS)}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not self_connections and conn.n_out != conn.n_in:
        raise ValueError(
            f"self_connections=False excludes the diagonal of a square (recurrent) layer; this layer is "
            f"{conn.n_out} x {conn.n_in}"
        )


def _weight(overlap: Tensor | np.ndarray, degree: Tensor | np.ndarray, *, ch2: bool, path: bool):
    """Per-LC-node factor ``w = (1 + di)^{[CH2]} / (1 + de)`` from the neighbourhood overlap ``di`` and the
    node's degree (``1 + de = degree - overlap``, see the module docstring); ``sqrt(w)`` for path rules (each
    path takes one factor per intermediate node). Zero where the overlap is 0 (node not in LC).

    ``degree - overlap`` is 0 only for a node whose whole neighbourhood is shared (``b = i`` itself, or
    ``N(b) ⊆ N(i)``); such a node reaches only active positions (every ``j ~ b`` then has ``j ~ i``), which are
    zeroed afterwards, so clamping the denominator to 1 (DST.md's ``max(·, 0)`` on ``eDT``) changes no
    candidate's score and keeps every intermediate finite. Works on torch tensors and numpy arrays alike.
    """
    if isinstance(overlap, Tensor):
        w = (degree - overlap).clamp_(min=1.0).reciprocal_()
        if ch2:
            w.mul_(overlap + 1.0)
        w.masked_fill_(overlap == 0, 0.0)
        return w.sqrt_() if path else w
    w = 1.0 / np.maximum(degree - overlap, 1.0)
    if ch2:
        w *= overlap + 1.0
    w[overlap == 0] = 0.0
    return np.sqrt(w, out=w) if path else w


@dataclass
class _Plan:
    """What one scoring pass shares across its row blocks: the mask in the method's form, the degrees and the
    in-side weight matrix (``C`` for node rules, ``f`` for path rules), full or computed per block."""

    conn: Connectivity
    rule: str
    dtype: torch.dtype
    dense: bool
    self_connections: bool
    full_in_weights: bool
    device: torch.device
    path: bool = field(init=False)
    ch2: bool = field(init=False)

    def __post_init__(self) -> None:
        self.path = not self.rule.endswith("n")
        self.ch2 = self.rule.startswith("ch2")
        c = self.conn
        self.np_dtype = _DTYPES[self.dtype]
        if self.dense:
            # The mask in the compute dtype: 0/1 products are exact integer counts (below 2^24 in float32).
            self.M = c.to_dense().to(device=self.device, dtype=self.dtype)
            self.deg_out = self.M.sum(dim=1)  # degree of out-node b (its fan-in)
            self.deg_in = self.M.sum(dim=0)  # degree of in-node a (its fan-out)
            if self.path:
                # Column structure (CSC) of the mask: the out-neighbours N(a) of every in-node a, rows sorted.
                order = torch.sort(c.col, stable=True).indices
                self.col_rows = c.rows()[order].to(self.device)
                self.col_ptr = torch.zeros(c.n_in + 1, dtype=torch.int64)
                self.col_ptr[1:] = torch.bincount(c.col, minlength=c.n_in).cumsum(0)
                self.col_ptr = self.col_ptr.to(self.device)
        else:
            data = np.ones(c.nnz, dtype=self.np_dtype)
            self.Msp = sp.csr_matrix((data, c.col.numpy(), c.crow.numpy()), shape=c.shape)
            self.Mt = self.Msp.T.tocsr()
            self.deg_out = np.diff(self.Msp.indptr).astype(self.np_dtype)
            self.deg_in = np.diff(self.Mt.indptr).astype(self.np_dtype)
        self.in_w = self._in_weight_rows(None) if self.full_in_weights else None

    # -- the in-side factor: C[a, j] = w(TT[a, j], deg(a)) (node) or f[a, j] = sqrt(w) (path) -------------

    def _in_weight_rows(self, a_idx: np.ndarray | None):
        """Rows ``a_idx`` (all when None) of the in-side weight matrix: dense tensor ``(len, n_in)`` or CSR."""
        n_in = self.conn.n_in
        kw = {"ch2": self.ch2, "path": self.path}
        if not self.dense:
            mt = self.Mt if a_idx is None else self.Mt[a_idx]
            tt = (mt @ self.Msp).tocsr()  # sparse TT rows: only overlapping pairs are stored
            row_of = np.repeat(np.arange(tt.shape[0]), np.diff(tt.indptr))
            deg = self.deg_in[row_of] if a_idx is None else self.deg_in[a_idx[row_of]]
            tt.data = _weight(tt.data, deg, **kw).astype(self.np_dtype, copy=False)
            return _dense_if_full(tt)
        M, deg = self.M, self.deg_in
        step = max(1, BLOCK_ELEMENTS // max(self.conn.n_out, n_in, 1))
        if a_idx is None:
            # All of TT = Mᵀ M, which is symmetric: compute the blocks on and above the diagonal only (half the
            # multiply-adds) and fill C[a, j] and C[j, a] from the same TT[a, j], each with its own degree.
            out = torch.empty(n_in, n_in, dtype=self.dtype, device=self.device)
            for s in range(0, n_in, step):
                e = min(n_in, s + step)
                tt = M[:, s:e].T @ M[:, s:]  # TT[s:e, s:]
                out[s:e, s:] = _weight(tt, deg[s:e, None], **kw)
                out[s:, s:e] = _weight(tt.T, deg[s:, None], **kw)
            return out
        idx = torch.from_numpy(a_idx).to(self.device)
        out = torch.empty(idx.numel(), n_in, dtype=self.dtype, device=self.device)
        for s in range(0, idx.numel(), step):
            rows = idx[s : s + step]
            tt = M.index_select(1, rows).T @ M  # TT[a, :] for a in rows
            out[s : s + rows.numel()] = _weight(tt, deg[rows, None], **kw)
        return out

    def _in_weights_for(self, a_needed: np.ndarray):
        """The in-side weight rows for in-nodes ``a_needed`` (sorted, unique) and a map from in-node to row."""
        lookup = np.full(self.conn.n_in, -1, dtype=np.int64)
        lookup[a_needed] = np.arange(a_needed.size)
        return self._in_weight_rows(a_needed), lookup

    # -- one block of output rows -------------------------------------------------------------------------

    def block(self, rows: Tensor) -> Tensor:
        """Scores ``(len(rows), n_in)`` in ``self.dtype`` on ``self.device`` for the int64 CPU ``rows``."""
        uniq, inverse = torch.unique(rows, return_inverse=True)  # sorted; the iterator's rows already are
        scores = self._sorted_block(uniq)
        return scores if torch.equal(uniq, rows) else scores[inverse.to(scores.device)]

    def _sorted_block(self, rows: Tensor) -> Tensor:
        if self.dense:
            Mi = self.M.index_select(0, rows.to(self.device))  # (c, n_in)
            scores = self._dense_path(rows, Mi) if self.path else self._dense_node(rows, Mi)
            scores.masked_fill_(Mi != 0, 0.0)  # active links are not candidates
        else:
            rows_np = rows.numpy()
            out = self._sparse_path(rows_np) if self.path else self._sparse_node(rows_np)
            scores = torch.from_numpy(np.ascontiguousarray(out, dtype=self.np_dtype))
            local, cols = self._row_cols(rows)
            scores[local, cols] = 0.0
            scores = scores.to(self.device)
        if not self.self_connections:
            scores[torch.arange(rows.numel(), device=scores.device), rows.to(scores.device)] = 0.0
        return scores

    def _row_cols(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """The active links of ``rows`` as (position in ``rows``, column) int64 pairs."""
        c = self.conn
        starts = c.crow[rows]
        counts = c.crow[rows + 1] - starts
        local = torch.repeat_interleave(torch.arange(rows.numel()), counts)
        within = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        return local, c.col[torch.repeat_interleave(starts, counts) + within]

    def _needed_in_nodes(self, rows: Tensor) -> np.ndarray:
        """Sorted in-nodes adjacent to ``rows``: the rows of the in-side weights a block touches."""
        return torch.unique(self._row_cols(rows)[1]).numpy()

    def _dense_node(self, rows: Tensor, Mi: Tensor) -> Tensor:
        M = self.M
        # A[i, b] = w(DD[i, b], deg(b)): the out-side LC nodes b, each counted once.
        A = _weight(Mi @ M.T, self.deg_out, ch2=self.ch2, path=False)  # (c, n_out)
        scores = A @ M  # Σ_b A[i, b] M[b, j]
        del A
        if self.in_w is not None:
            return scores.addmm_(Mi, self.in_w)  # + Σ_a M[i, a] C[a, j]
        a_needed = self._needed_in_nodes(rows)
        C = self._in_weight_rows(a_needed)
        return scores.addmm_(Mi.index_select(1, torch.from_numpy(a_needed).to(self.device)), C)

    def _dense_path(self, rows: Tensor, Mi: Tensor) -> Tensor:
        # Grouped by the in-node a of the paths i - a - b - j: the rows i and the out-nodes b that a touches are
        # both its out-neighbours N(a), so the contribution of a is one small product
        #   S[R, :] += (g[R, N(a)] @ M[N(a), :]) * f(a, :),   R = N(a) ∩ rows,
        # d² N multiply-adds per (i, a) pair, N² d² for a layer (N³ d if all pairs were stacked into one dense
        # product). b = i is included: g(i, i) M[i, j] lands on active links only, which are zeroed. The
        # in-nodes are batched (bmm) in groups, padded to the group's largest N(a) and R. Gathering M[N(a), :]
        # costs nnz · n_in per block whatever its size, so path rules favour large blocks.
        M, device, n_in = self.M, self.device, self.conn.n_in
        g = _weight(Mi @ M.T, self.deg_out, ch2=self.ch2, path=True)  # g(i, b), (c, n_out)
        local = torch.full((self.conn.n_out,), -1, dtype=torch.int64, device=device)
        local[rows.to(device)] = torch.arange(rows.numel(), device=device)
        a_needed = self._needed_in_nodes(rows)  # only in-nodes adjacent to a row of the block contribute
        f = self.in_w if self.in_w is not None else self._in_weight_rows(a_needed)
        a_t = torch.from_numpy(a_needed).to(device)
        f_row = a_t if self.in_w is not None else torch.arange(a_t.numel(), device=device)
        starts, counts = self.col_ptr[a_t], self.col_ptr[a_t + 1] - self.col_ptr[a_t]
        # Group in-nodes with similar |R| (block rows they touch) to keep the padding of the bmm small.
        by_rows = torch.argsort(Mi.sum(dim=0)[a_t], stable=True)
        scores = torch.zeros(rows.numel(), n_in, dtype=self.dtype, device=device)
        if a_t.numel() == 0:
            return scores
        d_max = int(counts.max())
        group = max(1, PAIR_BUDGET // (2 * d_max * n_in + d_max * d_max))
        for s in range(0, a_t.numel(), group):
            sel = by_rows[s : s + group]
            cnt, width = counts[sel], int(counts[sel].max())
            k = torch.arange(width, device=device)
            valid_b = k[None, :] < cnt[:, None]  # (n_a, width)
            b = self.col_rows[(starts[sel, None] + k[None, :]).clamp_(max=self.col_rows.numel() - 1)]
            b = torch.where(valid_b, b, 0)
            r = torch.where(valid_b, local[b], -1)  # block-local row of each out-neighbour, -1 if none
            # Move the out-neighbours that are rows of this block to the front: R, padded to r_max.
            r = r.gather(1, torch.sort((r < 0).to(torch.int8), dim=1, stable=True).indices)
            r_max = int((r >= 0).sum(dim=1).max())
            r = r[:, :r_max]
            valid_r = r >= 0
            r = r.clamp(min=0)
            gs = g[r[:, :, None], b[:, None, :]]  # (n_a, r_max, width)
            gs.mul_(valid_r[:, :, None] & valid_b[:, None, :])  # padding contributes exactly 0
            part = torch.bmm(gs, M.index_select(0, b.reshape(-1)).view(sel.numel(), width, n_in))
            part.mul_(f.index_select(0, f_row[sel])[:, None, :])  # times f(a, j)
            scores.index_add_(0, r.reshape(-1), part.view(-1, n_in))  # padded rows add zeros
        return scores

    def _sparse_node(self, rows_np: np.ndarray) -> np.ndarray:
        Mi = self.Msp[rows_np]
        dd = (Mi @ self.Mt).tocsr()  # stored entries are exactly DD > 0
        dd.data = _weight(dd.data, self.deg_out[dd.indices], ch2=self.ch2, path=False).astype(
            self.np_dtype, copy=False
        )
        A = _dense_if_full(dd)
        # Σ_b A[i, b] M[b, j]; with a dense A as (Mᵀ Aᵀ)ᵀ, so that scipy runs sparse × dense.
        scores = _array(self.Mt @ A.T).T if isinstance(A, np.ndarray) else _array(A @ self.Msp)
        del A, dd
        if self.in_w is not None:
            return scores + _array(Mi @ self.in_w)  # + Σ_a M[i, a] C[a, j]
        a_needed = self._needed_in_nodes(torch.from_numpy(rows_np))
        return scores + _array(Mi[:, a_needed] @ self._in_weight_rows(a_needed))

    def _sparse_path(self, rows_np: np.ndarray) -> np.ndarray:
        n_out, n_in = self.conn.n_out, self.conn.n_in
        Mi = self.Msp[rows_np]
        g = _weight((Mi @ self.Mt).toarray(), self.deg_out[None, :], ch2=self.ch2, path=True)  # (c, n_out)
        pi = np.repeat(np.arange(len(rows_np)), np.diff(Mi.indptr))
        pa = Mi.indices.astype(np.int64)
        if self.in_w is not None:
            f, f_row = self.in_w, pa
        else:
            f, lookup = self._in_weights_for(self._needed_in_nodes(torch.from_numpy(rows_np)))
            f_row = lookup[pa]
        flat = np.zeros(len(rows_np) * n_in, dtype=np.float64)
        step = max(1, PAIR_BUDGET // max(n_out + n_in, 1) // 4)  # a stored entry costs ~4 dense ones
        for s in range(0, pi.size, step):
            ps, as_, fs = pi[s : s + step], pa[s : s + step], f_row[s : s + step]
            Q = self.Mt[as_]  # row (i, a) holds the b with M[b, a] = 1
            q_row = np.repeat(np.arange(as_.size), np.diff(Q.indptr))
            Q.data = Q.data * g[ps[q_row], Q.indices]  # times g(i, b)
            T = (Q @ self.Msp).tocsr()  # Σ_b over the paths i - a - b - j, (P, n_in); O(d³) per pair row
            t_row = np.repeat(np.arange(as_.size), np.diff(T.indptr))
            if isinstance(f, np.ndarray):
                vals = T.data * f[fs[t_row], T.indices]  # times f(a, j)
            else:
                X = T.multiply(f[fs]).tocsr()  # T's pattern lies inside f's, so nothing is lost
                t_row, T, vals = np.repeat(np.arange(as_.size), np.diff(X.indptr)), X, X.data
            flat += np.bincount(ps[t_row] * n_in + T.indices, weights=vals, minlength=flat.size)
        return flat.reshape(len(rows_np), n_in)


def _dense_if_full(x: sp.csr_matrix):
    """``x`` as a dense array when at least ``DENSE_FILL`` of it is stored: scipy's sparse × dense product is
    several times faster than sparse × sparse once the sparse factor is that full (DD, TT at N p² >~ 0.3)."""
    size = x.shape[0] * x.shape[1]
    return x.toarray() if size and x.nnz >= DENSE_FILL * size else x


def _array(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _plan(
    conn: Connectivity,
    rule: str,
    method: str,
    self_connections: bool,
    dtype: torch.dtype,
    device: torch.device | str | None,
    full: bool,
) -> _Plan:
    _check(conn, rule, method, self_connections, dtype)
    device = torch.device("cpu") if device is None else torch.device(device)
    if method == "auto":
        # Off the CPU dense GEMMs win at any density that fits in memory.
        small = conn.n_out * conn.n_in <= SMALL_LAYER or device.type != "cpu"
        threshold = DENSE_FROM["node" if rule.endswith("n") else "path"]
        method = "dense" if small or conn.density(exclude_diagonal=False) >= threshold else "sparse"
    return _Plan(conn, rule, dtype, method == "dense", self_connections, full, device)


def _default_chunk(conn: Connectivity, chunk_rows: int | None) -> int:
    if chunk_rows is None:
        return max(1, BLOCK_ELEMENTS // max(conn.n_out, conn.n_in, 1))
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return int(chunk_rows)


def ch_scores(
    conn: Connectivity,
    rule: str,
    *,
    rows: Tensor | None = None,
    self_connections: bool = True,
    dtype: torch.dtype = torch.float32,
    method: str = "auto",
    chunk_rows: int | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Cannistraci-Hebb scores of the missing links of one layer, for a block of output rows.

    Args:
        conn: the layer's mask, ``(n_out, n_in)``; ``W[i, j]`` is the link from in-node ``j`` to out-node ``i``
            (for a square recurrent layer: ``j → i``; see the module docstring for the definition used there).
        rule: one of :data:`RULES`: ``"ch3_l3"``, ``"ch2_l3"`` (path-based), ``"ch3_l3n"``, ``"ch2_l3n"``
            (node-based).
        rows: int64 ``(r,)`` output rows to score (any order, repeats allowed); None scores all ``n_out``.
            With ``rows`` given, only the in-side weights those rows touch are computed, so a small block is
            cheap; to score a whole layer use :func:`iter_ch_scores` (or ``rows=None``), which computes them
            once.
        self_connections: False sets the diagonal ``(i, i)`` to 0 (a recurrent layer without
            self-connections; square layers only). True scores it like any other position, which is also
            right for a feed-forward layer, whose diagonal means nothing special.
        dtype: ``torch.float32`` or ``torch.float64`` (use float64 when exact comparisons matter).
        method: ``"auto"``, ``"dense"`` or ``"sparse"`` (module docstring: cost and memory).
        chunk_rows: rows per internal block (memory bound); default ``BLOCK_ELEMENTS // max(n_out, n_in)``.
        device: where ``"dense"`` computes (e.g. ``"cuda"``: the GEMMs that dominate a CPU pass take a
            fraction of a second there) and where the result is returned; default CPU. ``"sparse"`` always
            computes on the CPU. ``"auto"`` picks ``"dense"`` on any device other than the CPU.

    Returns:
        ``dtype`` ``(r, n_in)`` on ``device`` (``r = n_out`` when ``rows`` is None): score of link ``(rows[k], j)`` at
        ``[k, j]``; exactly 0 at active links, at the diagonal when ``self_connections=False``, and at missing
        links without an L3 path. Deterministic.

    Raises:
        ValueError: unknown ``rule`` (the message lists the allowed rules) or ``method``, a dtype other than
            float32/float64, ``self_connections=False`` on a non-square layer, ``rows`` out of range.
    """
    if rows is None:
        plan = _plan(conn, rule, method, self_connections, dtype, device, full=True)
        blocks = [block for _, block in _iterate(plan, _default_chunk(conn, chunk_rows))]
        return torch.cat(blocks) if blocks else torch.zeros(0, conn.n_in, dtype=dtype, device=plan.device)
    rows = torch.as_tensor(rows, dtype=torch.int64).reshape(-1)
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= conn.n_out):
        raise ValueError(f"rows must lie in [0, {conn.n_out}), got [{int(rows.min())}, {int(rows.max())}]")
    rows = rows.cpu()
    step = _default_chunk(conn, chunk_rows)
    plan = _plan(conn, rule, method, self_connections, dtype, device, full=False)
    blocks = [plan.block(rows[s : s + step]) for s in range(0, rows.numel(), step)]
    return torch.cat(blocks) if blocks else torch.zeros(0, conn.n_in, dtype=dtype, device=plan.device)


def _iterate(plan: _Plan, step: int) -> Iterator[tuple[int, Tensor]]:
    for start in range(0, plan.conn.n_out, step):
        rows = torch.arange(start, min(plan.conn.n_out, start + step), dtype=torch.int64)
        yield start, plan.block(rows)


def iter_ch_scores(
    conn: Connectivity,
    rule: str,
    *,
    chunk_rows: int | None = None,
    self_connections: bool = True,
    dtype: torch.dtype = torch.float32,
    method: str = "auto",
    device: torch.device | str | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """Cannistraci-Hebb scores of a whole layer, one block of consecutive output rows at a time.

    Yields ``(row_start, block)`` with ``block`` = ``dtype`` ``(rows_in_block, n_in)``, the scores of output
    rows ``row_start, row_start + 1, ...`` exactly as :func:`ch_scores` computes them (same arguments), so a
    caller can keep a running top-k over a 10,000 × 10,000 layer without holding the whole score matrix. The
    in-side weights (``n_in²`` entries, or ``nnz(Mᵀ M)`` with ``method="sparse"``) are computed once, when
    the first block is requested. Arguments are validated at the call, before iteration starts.

    Args:
        conn, rule, self_connections, dtype, method, device: as in :func:`ch_scores`.
        chunk_rows: rows per block (the last may be shorter); default ``BLOCK_ELEMENTS // max(n_out, n_in)``.
    """
    _check(conn, rule, method, self_connections, dtype)
    step = _default_chunk(conn, chunk_rows)

    def generate() -> Iterator[tuple[int, Tensor]]:
        yield from _iterate(_plan(conn, rule, method, self_connections, dtype, device, full=True), step)

    return generate()
