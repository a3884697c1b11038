"""Index structures and kernels of the compressed sparse (CSR) backend.

The canonical storage of a sparse weight is CSR order: synapse ``e`` is ``(row[e], col[e])``, rows ascending,
columns ascending within a row (the order of :class:`~cortexnet.connectivity.Connectivity`). The kernels use
*column panels* of that matrix instead (PERFORMANCE.md, lesson 2): the matrix is cut into blocks of ``panel``
consecutive columns, each block stored as its own int32 CSR matrix, so that the slice of the dense operand a
block touches stays in the L2 cache. On this 2-core EPYC that made the forward product ~2x and the
value-gradient product ~1.5-2x faster than one whole-matrix call (benchmarks/README.md). On CUDA one panel is
used (cuSPARSE does its own tiling).

Three structures per weight, built once per connectivity (and per device type) and cached by the backend:

* ``fwd``: column panels of W — for ``W @ X`` and for the value gradient ``(G Xᵀ) ∘ mask``;
* ``bwd``: column panels of Wᵀ (a pre-computed transpose; passing the CSC view is ~50x slower) — for
  ``Wᵀ @ G``.

Each has ``perm`` (panel position -> canonical index: gathers canonical values into panel order, and scatters
a panel-order gradient back; ``None`` when it is the identity). Index tensors are int32 when they fit (half the memory traffic of int64:
the products read one index per synapse and step).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cortexnet.sparse import native

_INT32_MAX = 2**31 - 1

#: Rows of the stacked (K = T·B) operands per value-gradient call: the L2-resident slice of a column panel is
#: ``panel x k_chunk`` floats. Measured on the 2-core EPYC (panel 512, N = 10,000, p = 0.1): 64-128 best,
#: 256-512 ~10-20 % slower, one call over all K = 864 rows ~2x slower.
SDDMM_K_CHUNK = 128
#: Column panel width on CPU: h-slices of ``panel x B`` floats stay in L2 (1 MB here) for B <= 256; 256-1024
#: measured equally good at B = 32, 512 best at B = 256 (single-thread CPU time, N = 10,000, p = 0.1).
CPU_PANEL_COLS = 512
#: The same for the compiled kernels (cortexnet.sparse.native): a panel's slice of a K = 32 chunk of the dense
#: operand, 192 x 32 floats = 24 KB, stays in L1. At N = 10,000, p = 0.1, B = 32 on the 2-core dev CPU
#: (Zen 3): value gradient 300 ms at 192 columns, 295-320 at 128, 400-530 at 512; the products 8.8 ms at 192,
#: ~10 at 128 and 512, ~14 at 64.
NATIVE_PANEL_COLS = 192
#: Fewest stored synapses per row per panel before panels get wider (per-row loop overhead dominates below;
#: at N = 10,000, p = 0.01 panels of 1,000 columns (10 per row) were still as fast as any wider).
MIN_ROW_NNZ_PER_PANEL = 10


def default_panel_cols(n_out: int, n_in: int, nnz: int, device: torch.device) -> int:
    """Column-panel width for a weight on ``device``: one panel on CUDA; on CPU ~512 columns for PyTorch's
    kernels and ~192 for the compiled ones, widened at low density so that each row of a panel still holds ~10
    synapses on average."""
    if device.type != "cpu" or nnz == 0:
        return max(n_in, 1)
    compiled = native.csr_kernel() != "torch" and native.native_available()
    density = nnz / (n_out * n_in)
    width = max(NATIVE_PANEL_COLS if compiled else CPU_PANEL_COLS, math.ceil(MIN_ROW_NNZ_PER_PANEL / density))
    # Balanced panels: same count, widths differing by at most one 16-column block.
    n_panels = max(1, round(n_in / width))
    return min(n_in, math.ceil(n_in / n_panels / 16) * 16)


def make_csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A sparse CSR tensor viewing the given index/value tensors (no copy, no invariant check)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _index_dtype(n: int) -> torch.dtype:
    return torch.int32 if n <= _INT32_MAX else torch.int64


@dataclass
class Panels:
    """Column panels of one sparse matrix of shape ``(n_out, n_in)`` (panel order = (panel, row, col)).

    Attributes:
        n_out, n_in: matrix shape.
        bounds: per panel ``(c0, c1, e0, e1)``: columns ``[c0, c1)``, panel-order synapses ``[e0, e1)``.
        crow: ``(n_panels, n_out + 1)`` row pointers, local to each panel's synapse slice.
        col: ``(nnz,)`` column indices local to the panel (``col - c0``), panel order.
        perm: ``(nnz,)`` canonical index of each panel position, or None (identity).
    """

    n_out: int
    n_in: int
    bounds: list[tuple[int, int, int, int]]
    crow: Tensor
    col: Tensor
    perm: Tensor | None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def bounds_tensor(self) -> Tensor:
        """``bounds`` as a (n_panels, 4) int64 CPU tensor (what the compiled kernels read)."""
        if "bounds" not in self._cache:
            self._cache["bounds"] = torch.tensor(self.bounds, dtype=torch.int64).reshape(-1, 4)
        return self._cache["bounds"]

    def row_splits(self, parts: int) -> Tensor:
        """Row bounds ``(parts + 1,)`` int64 splitting the rows into ``parts`` runs of about equal synapse
        counts over all panels (one run per thread of the compiled kernels; degree-skewed graphs stay balanced).
        """
        key = ("splits", parts)
        if key not in self._cache:
            counts = (self.crow[:, 1:] - self.crow[:, :-1]).to("cpu", torch.int64)
            cum = (counts.sum(0) + 1).cumsum(0)  # synapses per row over all panels, +1 for the row's overhead
            targets = torch.arange(1, parts, dtype=torch.float64) * (float(cum[-1]) / parts)
            inner = torch.searchsorted(cum.to(torch.float64), targets)
            self._cache[key] = torch.cat([torch.tensor([0]), inner, torch.tensor([self.n_out])])
        return self._cache[key]

    def bind(self, panel_values: Tensor) -> PanelMatrix:
        """The matrix these panels index with ``panel_values`` (panel order): what :func:`spmm_` takes."""
        return PanelMatrix(self, panel_values)

    def gather(self, values: Tensor) -> Tensor:
        """Canonical-order values ``(nnz,)`` -> panel order."""
        if self.perm is None:
            return values
        if native_for(values) and not (torch.is_grad_enabled() and values.requires_grad):
            return native.permute(values, self.perm, scatter=False)
        return values.index_select(0, self.perm)

    def scatter(self, panel_values: Tensor) -> Tensor:
        """Panel-order values ``(nnz,)`` -> canonical order (the inverse of :meth:`gather`)."""
        if self.perm is None:
            return panel_values
        if native_for(panel_values) and not (torch.is_grad_enabled() and panel_values.requires_grad):
            return native.permute(panel_values, self.perm, scatter=True)
        out = torch.empty_like(panel_values)
        for a in range(0, panel_values.numel(), _CHUNK):  # int64 index only per chunk (memory)
            b = min(panel_values.numel(), a + _CHUNK)
            out.index_copy_(0, self.perm[a:b].to(torch.int64), panel_values[a:b])
        return out

    def matrices(self, panel_values: Tensor) -> list[tuple[int, int, Tensor]]:
        """``(c0, c1, csr)`` per non-empty panel, viewing ``panel_values`` (panel order)."""
        out = []
        for p, (c0, c1, e0, e1) in enumerate(self.bounds):
            if e1 > e0:
                csr = make_csr(self.crow[p], self.col[e0:e1], panel_values[e0:e1], (self.n_out, c1 - c0))
                out.append((c0, c1, csr))
        return out


@dataclass
class PanelMatrix:
    """A sparse matrix as column panels plus its values in panel order (``values`` (nnz,))."""

    panels: Panels
    values: Tensor

    @functools.cached_property
    def mats(self) -> list[tuple[int, int, Tensor]]:
        """The panels as PyTorch CSR tensors (the PyTorch-kernel path), built once per matrix."""
        return self.panels.matrices(self.values)


#: Synapses per chunk of the index build (bounds its temporaries to ~100 MB at any nnz).
_CHUNK = 1 << 22


def build_panels(
    crow: Tensor, col: Tensor, n_out: int, n_in: int, panel: int, device: torch.device, *, transpose: bool
) -> Panels:
    """Column panels of W (``transpose=False``) or of Wᵀ (``transpose=True``) from W's canonical CSR.

    A stable counting sort of the synapses by (panel, row of the matrix, col), done in chunks so that the
    temporaries stay ~100 MB even at 1e8 synapses (N = 100,000, p = 0.01); only the results are full size.
    Within a (panel, row) group synapses keep canonical order, i.e. columns ascending (W) or W's rows
    ascending (Wᵀ). The result lives on ``device``.
    """
    nnz = int(col.numel())
    rows_m, cols_m = (n_in, n_out) if transpose else (n_out, n_in)  # shape of the matrix being paneled
    panel = max(1, min(panel, max(cols_m, 1)))
    n_panels = max(1, math.ceil(cols_m / panel))
    itype = _index_dtype(max(nnz, rows_m, cols_m, n_panels * rows_m))
    n_keys = n_panels * rows_m

    ktype = torch.int32 if n_keys <= _INT32_MAX else torch.int64

    def chunk_keys(a: int, b: int) -> tuple[Tensor, Tensor]:
        """(key, local column) of canonical synapses [a, b)."""
        c = col[a:b].to(ktype)
        r0 = int(torch.searchsorted(crow, torch.tensor([a]), right=True)) - 1
        r1 = int(torch.searchsorted(crow, torch.tensor([b - 1]), right=True)) - 1
        per_row = crow[r0 : r1 + 2].clamp(a, b).diff()
        r = torch.repeat_interleave(torch.arange(r0, r1 + 1, dtype=ktype), per_row, output_size=b - a)
        mr, mc = (c, r) if transpose else (r, c)  # row / column in the paneled matrix
        pan = torch.div(mc, panel, rounding_mode="floor")
        return pan * rows_m + mr, mc - pan * panel

    identity = not transpose and n_panels == 1
    counts = torch.zeros(n_keys, dtype=torch.int64)
    for a in range(0, nnz, _CHUNK):
        key, _ = chunk_keys(a, min(nnz, a + _CHUNK))
        counts += torch.bincount(key.long(), minlength=n_keys)
    starts = torch.zeros(n_keys + 1, dtype=torch.int64)
    starts[1:] = counts.cumsum(0)
    perm = None if identity else torch.empty(nnz, dtype=itype)
    local = torch.empty(nnz, dtype=itype)
    running = starts[:-1].clone()
    for a in range(0, nnz, _CHUNK):
        b = min(nnz, a + _CHUNK)
        key, lc = chunk_keys(a, b)
        if identity:
            local[a:b] = lc.to(itype)
            continue
        if transpose:
            skey, order = torch.sort(key, stable=True)
        else:  # W's (panel, row) groups are already contiguous runs in canonical order: no sort needed
            skey, order = key, None
        uniq, inverse, cnt = torch.unique_consecutive(skey, return_inverse=True, return_counts=True)
        first = torch.zeros_like(cnt)
        first[1:] = cnt.cumsum(0)[:-1]
        dest = running[skey.long()] + (torch.arange(b - a) - first[inverse])  # position of each
        src = torch.arange(a, b, dtype=itype) if order is None else (order + a).to(itype)
        perm[dest] = src
        local[dest] = (lc if order is None else lc[order]).to(itype)
        running[uniq.long()] += cnt
    crow_p = counts.view(n_panels, rows_m).cumsum(1)
    crow_p = torch.cat([torch.zeros(n_panels, 1, dtype=torch.int64), crow_p], dim=1)
    bounds = []
    for p in range(n_panels):
        c0, c1 = p * panel, min(cols_m, (p + 1) * panel)
        bounds.append((c0, c1, int(starts[p * rows_m]), int(starts[(p + 1) * rows_m])))
    return Panels(
        n_out=rows_m,
        n_in=cols_m,
        bounds=bounds,
        crow=crow_p.to(device=device, dtype=itype),
        col=local.to(device),
        perm=None if perm is None else perm.to(device),
    )


@dataclass
class CSRIndex:
    """Everything the kernels need for one connectivity on one device (see module docstring)."""

    n_out: int
    n_in: int
    nnz: int
    fwd: Panels
    bwd: Panels

    def to_canonical(self, fwd_order_values: Tensor) -> Tensor:
        """A ``fwd``-panel-order vector (e.g. the value gradient) -> canonical order."""
        return self.fwd.scatter(fwd_order_values)


def build_index(
    crow: Tensor, col: Tensor, n_out: int, n_in: int, device: torch.device, panel_cols: int | None = None
) -> CSRIndex:
    """Build the forward and transposed panel structures of a canonical CSR ``(crow, col)``."""
    crow = crow.detach().to("cpu", torch.int64)
    col = col.detach().to("cpu")
    nnz = int(col.numel())
    p_fwd = panel_cols or default_panel_cols(n_out, n_in, nnz, device)
    p_bwd = panel_cols or default_panel_cols(n_in, n_out, nnz, device)
    fwd = build_panels(crow, col, n_out, n_in, p_fwd, device, transpose=False)
    bwd = build_panels(crow, col, n_out, n_in, p_bwd, device, transpose=True)
    return CSRIndex(n_out=n_out, n_in=n_in, nnz=nnz, fwd=fwd, bwd=bwd)


# -- kernels ----------------------------------------------------------------------------------------------
# Each product runs the compiled kernels (cortexnet.sparse.native) where they are built and the tensors are CPU
# float32/float64 of one dtype, else PyTorch's sparse kernels over the panels' CSR tensors.
def native_for(*tensors: Tensor) -> bool:
    """Whether the compiled kernels serve products of these tensors (CPU, one float dtype, kernels built)."""
    return len({t.dtype for t in tensors}) == 1 and native.uses_native(*tensors)


def spmm_(out: Tensor, w: PanelMatrix, x: Tensor) -> Tensor:
    """``out += W @ x`` in place, W given as column panels; ``x`` is ``(n_in, K)`` contiguous, ``out``
    ``(n_out, K)`` contiguous."""
    if native_for(out, w.values, x):
        p = w.panels
        return native.spmm_(out, p.bounds_tensor(), p.crow, p.col, w.values, x, p.row_splits)
    for c0, c1, csr in w.mats:
        torch.addmm(out, csr, x[c0:c1], out=out)
    return out


def spmm(w: PanelMatrix, x: Tensor, n_out: int) -> Tensor:
    """``W @ x`` for column panels ``w``: ``(n_in, K) -> (n_out, K)``."""
    out = torch.zeros(n_out, x.shape[1], dtype=x.dtype, device=x.device)
    return spmm_(out, w, x)


def sddmm_acc_(acc: Tensor, panels: Panels, g: Tensor, x: Tensor) -> Tensor:
    """Accumulate the sampled product ``acc[e] += Σ_s Σ_k g[s, row_e, k] · x[s, col_e, k]`` over stored
    synapses only.

    ``acc`` is ``(nnz,)`` in ``panels`` order; ``g`` ``(n_out, K)`` and ``x`` ``(n_in, K)``, or ``(S, n_out, K)``
    and ``(S, n_in, K)`` summed over the S steps too (the recurrence's ``g_t`` and ``h_{t-1}``, read in place by
    the compiled kernels). This is ``(g xᵀ) ∘ mask`` without the dense ``n_out x n_in`` product; PyTorch's path
    (``torch.sparse.sampled_addmm``, CPU and CUDA) stacks the steps into chunks of about ``SDDMM_K_CHUNK``
    columns so that a panel's slice of ``x`` stays in cache.
    """
    if native_for(acc, g, x):
        g3, x3 = (g, x) if g.dim() == 3 else (g.unsqueeze(0), x.unsqueeze(0))
        return native.sddmm_acc_(
            acc, panels.bounds_tensor(), panels.crow, panels.col, g3, x3, panels.row_splits
        )
    if g.dim() == 3:
        steps, k = g.shape[0], g.shape[2]
        for s0, s1 in k_chunks(steps, 1, target=max(1, round(SDDMM_K_CHUNK / max(k, 1)))):
            gs = g[s0:s1].permute(1, 0, 2).reshape(g.shape[1], -1)
            xs = x[s0:s1].permute(1, 0, 2).reshape(x.shape[1], -1)
            _sampled_addmm_(acc, panels, gs, xs)
        return acc
    k = g.shape[1]
    for k0, k1 in k_chunks(k, 1):
        if k0 == 0 and k1 == k:
            _sampled_addmm_(acc, panels, g, x)
        else:
            _sampled_addmm_(acc, panels, g[:, k0:k1].contiguous(), x[:, k0:k1].contiguous())
    return acc


def _sampled_addmm_(acc: Tensor, panels: Panels, g: Tensor, x: Tensor) -> None:
    for p, (c0, c1, e0, e1) in enumerate(panels.bounds):
        if e1 == e0:
            continue
        target = make_csr(panels.crow[p], panels.col[e0:e1], acc[e0:e1], (panels.n_out, c1 - c0))
        torch.sparse.sampled_addmm(target, g, x[c0:c1].t(), out=target)


def k_chunks(k_total: int, row_block: int, target: int = SDDMM_K_CHUNK) -> list[tuple[int, int]]:
    """Split ``k_total`` rows into chunks of about ``target`` rows, in whole blocks of ``row_block``."""
    per = max(1, round(target / max(row_block, 1))) * row_block
    return [(k0, min(k_total, k0 + per)) for k0 in range(0, k_total, per)]
