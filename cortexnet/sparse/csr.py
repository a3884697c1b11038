"""Compressed sparse (CSR) backend: the stored synapses' values are the only parameter.

Memory and time scale with the number of synapses, not with N²: at N = 10,000, p = 0.1 the weight, its
gradient and Adam's two moments take 160 MB instead of 1.6 GB for a dense N x N parameter, and N = 100,000 at
p = 0.01 (1e8 synapses) trains (forward, backward, Adam) in 6 GB (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from cortexnet.connectivity import Connectivity
from cortexnet.sparse._csr_index import CSRIndex, build_index
from cortexnet.sparse.base import BACKENDS, DaleMode, SparseWeight
from cortexnet.sparse.constraints import ensure_constrained
from cortexnet.sparse.csr_functional import CSRLinear, CSRRecurrence
from cortexnet.sparse.functional import check_activation, leak_operands

_INT32_MAX = 2**31 - 1
_CONSTRAINT_CHUNK = 1 << 24


@BACKENDS.register("csr")
class CSRWeight(SparseWeight):
    """Compressed sparse backend: ``values`` ``(nnz,)`` is the only parameter; the index is fixed data.

    Storage (state_dict keys): ``values`` (float, canonical CSR order: row-major, columns ascending within a
    row, exactly the order of :class:`Connectivity`), ``crow`` (int64 ``(n_out + 1,)``) and ``col`` (int32
    ``(nnz,)``) — the connectivity travels with every checkpoint, so a rewired network reloads exactly — and
    ``column_sign``. Derived kernel structures (column panels of W and a pre-computed transpose with its value
    permutation, :mod:`cortexnet.sparse._csr_index`) are rebuilt, not saved: on first use on a device, after
    :meth:`set_connectivity_` and after loading a state_dict. Rewiring (:meth:`set_connectivity_`) conserves
    nnz, so ``values`` keeps its shape; kept synapses may move to another position of ``values`` and their
    optimiser state moves with them.

    Dale's law acts as in :class:`MaskedDenseWeight` (``"clip"``: wrong-sign values set to exactly zero by
    :meth:`apply_constraints_`; ``"abs"``: effective weight ``|values| · column_sign``). Gradients exist only
    for stored synapses; there is no off-mask entry that could drift.

    Args:
        connectivity: the synapse set (its nnz fixes the parameter's shape).
        dale, column_sign: see :class:`SparseWeight`.
        panel_cols: column-panel width of the kernels (default: chosen per device, see ``_csr_index``).
    """

    backend = "csr"

    def __init__(
        self,
        connectivity: Connectivity,
        *,
        dale: DaleMode = "none",
        column_sign: Tensor | None = None,
        panel_cols: int | None = None,
    ):
        super().__init__(connectivity, dale=dale, column_sign=column_sign)
        if panel_cols is not None and panel_cols < 1:
            raise ValueError(f"panel_cols must be >= 1 (or None for the default), got {panel_cols}")
        self.panel_cols = panel_cols
        self.register_buffer("crow", connectivity.crow.to(torch.int64).clone())
        self.register_buffer("col", connectivity.col.to(self._col_dtype()).clone())
        self.values = nn.Parameter(torch.zeros(connectivity.nnz))
        self._index: CSRIndex | None = None
        self._index_key: tuple | None = None
        self._structure_version = 0

    # -- index ------------------------------------------------------------------------------------------
    def _col_dtype(self) -> torch.dtype:
        return torch.int32 if self.n_in <= _INT32_MAX else torch.int64

    def index(self) -> CSRIndex:
        """The kernel structures for the current connectivity on the parameter's device (built on demand)."""
        key = (self.values.device, self._structure_version, self.panel_cols)
        if self._index is None or self._index_key != key:
            self._index = None  # free the old one first (large at 1e8 synapses)
            self._index = build_index(
                self.crow, self.col, self.n_out, self.n_in, self.values.device, self.panel_cols
            )
            self._index_key = key
        return self._index

    def __getstate__(self):  # pickling / deepcopy: the kernel structures are a cache, rebuilt on demand
        state = dict(super().__getstate__())
        state["_index"] = None
        state["_index_key"] = None
        return state

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .double(), ...: rebuild the index lazily
        self._index = None
        self._index_key = None
        return super()._apply(fn, *args, **kwargs)

    def _rows(self) -> Tensor:
        return torch.repeat_interleave(
            torch.arange(self.n_out, device=self.crow.device), self.crow.diff(), output_size=self.nnz
        )

    def _synapse_sign(self) -> Tensor:
        """Dale sign of every stored synapse (its column's sign), ``(nnz,)``, values' dtype."""
        return self.column_sign.to(self.values.dtype).index_select(0, self.col)

    def _effective(self) -> Tensor:
        """Effective values under autograd (canonical order)."""
        if self.dale == "abs":
            return self.values.abs() * self._synapse_sign()
        return self.values

    # -- interface --------------------------------------------------------------------------------------
    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def linear(self, x: Tensor) -> Tensor:
        ensure_constrained(self)
        if x.shape[-1] != self.n_in:
            raise ValueError(f"input has {x.shape[-1]} features, expected {self.n_in}")
        lead = x.shape[:-1]
        values, index = self._operands()
        y = CSRLinear.apply(x.reshape(-1, self.n_in), values, index)
        return y.reshape(*lead, self.n_out)

    def recurrent(
        self, drive: Tensor, activation: str, *, alpha: Tensor | None = None, h0: Tensor | None = None
    ) -> Tensor:
        ensure_constrained(self)
        check_activation(activation)
        if self.n_out != self.n_in:
            raise ValueError(f"recurrent weights must be square, got {self.n_out} x {self.n_in}")
        if drive.dim() != 3 or drive.shape[-1] != self.n_in:
            raise ValueError(f"drive must be (T, B, {self.n_in}), got {tuple(drive.shape)}")
        values, index = self._operands()
        return CSRRecurrence.apply(
            drive, values, index, activation, *leak_operands(drive, alpha, h0, self.n_in)
        )

    def to_dense(self) -> Tensor:
        with torch.no_grad():
            dense = torch.zeros(self.n_out, self.n_in, dtype=self.values.dtype, device=self.values.device)
            dense[self._rows(), self.col.to(torch.int64)] = self._effective()
        return dense

    def connectivity(self) -> Connectivity:
        return Connectivity(self.n_out, self.n_in, self.crow.cpu().clone(), self.col.cpu().to(torch.int64))

    @torch.no_grad()
    def active_values(self) -> Tensor:
        return self._effective().clone()  # stored in connectivity order already; a copy, never a live view

    def active_grads(self) -> Tensor | None:
        g = self.values.grad
        return None if g is None else g.detach().clone()

    @torch.no_grad()
    def load_dense_(self, weight: Tensor) -> None:
        if weight.shape != (self.n_out, self.n_in):
            raise ValueError(f"weight has shape {tuple(weight.shape)}, expected {(self.n_out, self.n_in)}")
        w = weight.to(self.values.device)[self._rows(), self.col.to(torch.int64)].to(self.values.dtype)
        self.values.copy_(w.abs() if self.dale == "abs" else w)
        self.apply_constraints_()

    @torch.no_grad()
    def set_values_(self, rows: Tensor, cols: Tensor, values: Tensor) -> None:
        dev = self.values.device
        v = values.to(device=dev, dtype=self.values.dtype)
        if self._is_canonical(
            rows, cols
        ):  # the stored synapses in canonical order (the usual init): no search
            self.values.copy_(v.abs() if self.dale == "abs" else v)
            self.apply_constraints_()
            return
        pos, found = self._search(rows.to(dev), cols.to(dev))
        if not bool(found.all()):
            raise ValueError("set_values_ got positions outside the active synapse set")
        self.values.zero_()
        self.values[pos] = v.abs() if self.dale == "abs" else v
        self.apply_constraints_()

    def _is_canonical(self, rows: Tensor, cols: Tensor) -> bool:
        """Whether ``(rows, cols)`` lists exactly the stored synapses in canonical order (cheap in memory)."""
        if rows.numel() != self.nnz or cols.numel() != self.nnz:
            return False
        dev = self.values.device
        if not torch.equal(cols.to(dev, self.col.dtype), self.col):
            return False
        rows = rows.to(dev)
        if self.nnz > 1 and not bool((rows[1:] >= rows[:-1]).all()):
            return False
        if self.nnz and (int(rows.min()) < 0 or int(rows.max()) >= self.n_out):
            return False
        return torch.equal(torch.bincount(rows.to(torch.int64), minlength=self.n_out), self.crow.diff())

    @torch.no_grad()
    def apply_constraints_(self) -> None:
        if self.dale == "clip":
            # The paper's rule on the parameter the forward pass uses: a weight whose sign would reverse is set
            # to zero instead. In chunks: temporaries stay small at 1e8 synapses.
            sign = self.column_sign.to(self.values.dtype)
            for a in range(0, self.nnz, _CONSTRAINT_CHUNK):
                v = self.values[a : a + _CONSTRAINT_CHUNK]
                v.mul_(v * sign.index_select(0, self.col[a : a + _CONSTRAINT_CHUNK]) >= 0)
        elif self.dale == "abs":
            self.values.abs_()

    # -- hooks of SparseWeight's mutation, probe and check methods ------------------------------------------
    def _parameter(self) -> nn.Parameter:
        return self.values

    def _active_index(self) -> tuple[Tensor, Tensor]:
        return self._rows(), self.col.to(torch.int64)

    def _gather_active(self, storage: Tensor) -> Tensor:
        return storage  # stored in connectivity order

    def _storage_from_active(self, active: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        return active

    def _set_structure_(self, connectivity: Connectivity, rows: Tensor, cols: Tensor) -> None:
        self.crow.copy_(connectivity.crow.to(self.crow.device, torch.int64))
        cols = cols.to(self.col.device, self._col_dtype())
        if cols.shape == self.col.shape:
            self.col.copy_(cols)
        else:  # a new synapse count (gradual pruning, CHTss): the buffer is replaced
            self.col = cols.clone()
        self._structure_version += 1  # the kernel index is rebuilt on next use

    def _active_value_chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        sign = self.column_sign.to(self.values.dtype)
        for a in range(0, self.nnz, _CONSTRAINT_CHUNK):
            v = self.values[a : a + _CONSTRAINT_CHUNK]
            s = sign.index_select(0, self.col[a : a + _CONSTRAINT_CHUNK])
            yield (v.abs() * s if self.dale == "abs" else v), s

    def _operands(self) -> tuple[Tensor, CSRIndex]:
        """Effective values under autograd and their kernel index: the stored synapses, or inside
        :meth:`probe_gradients` the union with the candidates (candidates at the probe's zero leaf)."""
        eff = self._effective()
        probe = self._probe
        if probe is None:
            return eff, self.index()
        if probe.structure is None:
            probe.structure = self._union_structure(probe.rows, probe.cols)
        perm, index = probe.structure
        return torch.cat([eff, probe.values.to(eff.dtype)]).index_select(0, perm), index

    @torch.no_grad()
    def _union_structure(self, rows: Tensor, cols: Tensor) -> tuple[Tensor, CSRIndex]:
        """Merge candidates ``(K,)`` (inactive, distinct) into the stored synapses: ``perm`` (int64
        ``(nnz + K,)``, union position -> index into ``cat([values, candidates])``) and the union's index."""
        dev, nnz, k = self.values.device, self.nnz, rows.numel()
        old = self._keys(self._rows(), self.col)
        ck, order = torch.sort(self._keys(rows, cols))
        cand_pos = torch.searchsorted(old, ck) + torch.arange(k, device=dev)
        act_pos = torch.arange(nnz, device=dev) + torch.searchsorted(ck, old)
        perm = torch.empty(nnz + k, dtype=torch.int64, device=dev)
        perm[act_pos] = torch.arange(nnz, device=dev)
        perm[cand_pos] = nnz + order
        col = torch.empty(nnz + k, dtype=self.col.dtype, device=dev)
        col[act_pos] = self.col
        col[cand_pos] = cols[order].to(self.col.dtype)
        counts = self.crow.diff() + torch.bincount(rows, minlength=self.n_out).to(self.crow.device)
        crow = torch.zeros(self.n_out + 1, dtype=torch.int64, device=self.crow.device)
        crow[1:] = counts.cumsum(0)
        return perm, build_index(crow, col, self.n_out, self.n_in, dev, self.panel_cols)

    # -- checkpoints ------------------------------------------------------------------------------------
    def _own_state_keys(self) -> tuple[str, ...]:
        return ("values", "crow", "col")

    def _prepare_load(self, state_dict: dict, prefix: str) -> None:
        """Resize storage to a checkpoint's synapse count (same Parameter object) before it is copied in."""
        v = state_dict.get(prefix + "values")
        if v is not None and v.shape != self.values.shape and v.dim() == 1:
            self.values.data = torch.zeros(v.shape, dtype=self.values.dtype, device=self.values.device)
            self.col = torch.zeros(v.shape, dtype=self.col.dtype, device=self.col.device)

    def _after_load(self) -> None:
        self._structure_version += 1
