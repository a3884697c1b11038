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

Each has ``perm`` (panel position -> canonical index, gathers canonical values into panel order; ``None`` when
it is the identity) and ``fwd`` also ``iperm`` (canonical index -> panel position, gathers a panel-order
gradient back into canonical order). Index tensors are int32 when they fit (half the memory traffic of int64:
the products read one index per synapse and step).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

_INT32_MAX = 2**31 - 1

#: Rows of the stacked (K = T·B) operands per value-gradient call: the L2-resident slice of a column panel is
#: ``panel x k_chunk`` floats. Measured optimum on the 2-core EPYC: 128-256 (see benchmarks/README.md).
SDDMM_K_CHUNK = 128
#: Column panel width on CPU: h-slices of ``panel x B`` floats stay in L2 for B <= 256.
CPU_PANEL_COLS = 1024
#: Fewest stored synapses per row per panel before panels get wider (per-row loop overhead dominates below).
MIN_ROW_NNZ_PER_PANEL = 48


def default_panel_cols(n_out: int, n_in: int, nnz: int, device: torch.device) -> int:
    """Column-panel width for a weight on ``device``: one panel on CUDA; on CPU ~1024 columns, widened at low
    density so that each row of a panel still holds ~48 synapses on average."""
    if device.type != "cpu" or nnz == 0:
        return max(n_in, 1)
    density = nnz / (n_out * n_in)
    width = max(CPU_PANEL_COLS, math.ceil(MIN_ROW_NNZ_PER_PANEL / density))
    # Balanced panels: same count, widths differing by at most one 64-column block.
    n_panels = max(1, round(n_in / width))
    return min(n_in, math.ceil(n_in / n_panels / 64) * 64)


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

    def gather(self, values: Tensor) -> Tensor:
        """Canonical-order values ``(nnz,)`` -> panel order."""
        return values if self.perm is None else values.index_select(0, self.perm)

    def matrices(self, panel_values: Tensor) -> list[tuple[int, int, Tensor]]:
        """``(c0, c1, csr)`` per non-empty panel, viewing ``panel_values`` (panel order)."""
        out = []
        for p, (c0, c1, e0, e1) in enumerate(self.bounds):
            if e1 > e0:
                csr = make_csr(self.crow[p], self.col[e0:e1], panel_values[e0:e1], (self.n_out, c1 - c0))
                out.append((c0, c1, csr))
        return out


def build_panels(
    rows: Tensor, cols: Tensor, n_out: int, n_in: int, panel: int, device: torch.device
) -> Panels:
    """Column panels of the matrix whose synapses, in canonical order, are ``(rows[e], cols[e])``.

    ``rows``/``cols`` are int64 on CPU; any order that is sorted by row (stably) within each panel works —
    canonical CSR order for W, or for Wᵀ the canonical order read as (col, row) pairs. The result lives on
    ``device``.
    """
    nnz = int(rows.numel())
    panel = max(1, min(panel, max(n_in, 1)))
    n_panels = max(1, math.ceil(n_in / panel))
    itype = _index_dtype(max(nnz, n_in, n_out))
    if n_panels == 1:
        key = rows
    else:
        key = torch.div(cols, panel, rounding_mode="floor") * n_out + rows
    # Already in (panel, row, col) order? (W with one panel in canonical order.)
    identity = bool((key[1:] >= key[:-1]).all()) if nnz > 1 else True
    if identity:
        sorted_key, order = key, None
    else:
        sorted_key, order = torch.sort(key, stable=True)
        del key
    counts = torch.bincount(sorted_key, minlength=n_panels * n_out).view(n_panels, n_out)
    del sorted_key
    crow = torch.zeros(n_panels, n_out + 1, dtype=torch.int64)
    crow[:, 1:] = counts.cumsum(1)
    per_panel = crow[:, -1].tolist()
    bounds, e0 = [], 0
    for p in range(n_panels):
        c0, c1 = p * panel, min(n_in, (p + 1) * panel)
        bounds.append((c0, c1, e0, e0 + per_panel[p]))
        e0 += per_panel[p]
    local = cols if order is None else cols.index_select(0, order)
    if n_panels > 1:
        local = local - torch.div(local, panel, rounding_mode="floor") * panel
    return Panels(
        n_out=n_out,
        n_in=n_in,
        bounds=bounds,
        crow=crow.to(device=device, dtype=itype),
        col=local.to(device=device, dtype=itype),
        perm=None if order is None else order.to(device=device, dtype=itype),
    )


@dataclass
class CSRIndex:
    """Everything the kernels need for one connectivity on one device (see module docstring)."""

    n_out: int
    n_in: int
    nnz: int
    fwd: Panels
    bwd: Panels
    iperm: Tensor | None  # canonical index -> fwd panel position (None: identity)

    def to_canonical(self, fwd_order_values: Tensor) -> Tensor:
        """A ``fwd``-panel-order vector (e.g. the value gradient) -> canonical order."""
        return fwd_order_values if self.iperm is None else fwd_order_values.index_select(0, self.iperm)


def build_index(
    crow: Tensor, col: Tensor, n_out: int, n_in: int, device: torch.device, panel_cols: int | None = None
) -> CSRIndex:
    """Build the forward and transposed panel structures of a canonical CSR ``(crow, col)``."""
    crow = crow.detach().to("cpu", torch.int64)
    col = col.detach().to("cpu", torch.int64)
    nnz = int(col.numel())
    rows = torch.repeat_interleave(torch.arange(n_out, dtype=torch.int64), crow.diff())
    p_fwd = panel_cols or default_panel_cols(n_out, n_in, nnz, device)
    p_bwd = panel_cols or default_panel_cols(n_in, n_out, nnz, device)
    fwd = build_panels(rows, col, n_out, n_in, p_fwd, device)
    # Wᵀ: its rows are W's columns; canonical order read as (col, row) is sorted by row of Wᵀ only after a
    # stable sort, which build_panels does (key = panel(row of W) * n_in + col of W).
    bwd = build_panels(col, rows, n_in, n_out, p_bwd, device)
    del rows
    iperm = None
    if fwd.perm is not None:
        inv = torch.empty(nnz, dtype=torch.int64)
        inv[fwd.perm.to("cpu", torch.int64)] = torch.arange(nnz, dtype=torch.int64)
        iperm = inv.to(device=device, dtype=fwd.perm.dtype)
    return CSRIndex(n_out=n_out, n_in=n_in, nnz=nnz, fwd=fwd, bwd=bwd, iperm=iperm)


# -- kernels ----------------------------------------------------------------------------------------------
def spmm_(out: Tensor, mats: list[tuple[int, int, Tensor]], x: Tensor) -> Tensor:
    """``out += W @ x`` in place, W given as column panels; ``x`` is ``(n_in, K)`` contiguous, ``out``
    ``(n_out, K)`` contiguous."""
    for c0, c1, csr in mats:
        torch.addmm(out, csr, x[c0:c1], out=out)
    return out


def spmm(mats: list[tuple[int, int, Tensor]], x: Tensor, n_out: int) -> Tensor:
    """``W @ x`` for column panels ``mats``: ``(n_in, K) -> (n_out, K)``."""
    out = torch.zeros(n_out, x.shape[1], dtype=x.dtype, device=x.device)
    return spmm_(out, mats, x)


def sddmm_acc_(acc: Tensor, panels: Panels, g: Tensor, x: Tensor) -> Tensor:
    """Accumulate the sampled product ``acc[e] += Σ_k g[row_e, k] · x[col_e, k]`` over stored synapses only.

    ``acc`` is ``(nnz,)`` in ``panels`` order; ``g`` ``(n_out, K)`` and ``x`` ``(n_in, K)`` contiguous. This is
    ``(g xᵀ) ∘ mask`` without the dense ``n_out x n_in`` product (``torch.sparse.sampled_addmm``, which works on
    CPU and CUDA). Callers chunk K (``SDDMM_K_CHUNK``) so that a panel's slice of ``x`` stays in cache.
    """
    for p, (c0, c1, e0, e1) in enumerate(panels.bounds):
        if e1 == e0:
            continue
        target = make_csr(panels.crow[p], panels.col[e0:e1], acc[e0:e1], (panels.n_out, c1 - c0))
        torch.sparse.sampled_addmm(target, g, x[c0:c1].t(), out=target)
    return acc


def k_chunks(k_total: int, row_block: int, target: int = SDDMM_K_CHUNK) -> list[tuple[int, int]]:
    """Split ``k_total`` rows into chunks of about ``target`` rows, in whole blocks of ``row_block``."""
    per = max(1, round(target / max(row_block, 1))) * row_block
    return [(k0, min(k_total, k0 + per)) for k0 in range(0, k_total, per)]
