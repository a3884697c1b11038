"""Compressed sparse (CSR) backend: the stored synapses' values are the only parameter.

Memory and time scale with the number of synapses, not with N²: at N = 10,000, p = 0.1 the weight, its
gradient and Adam's two moments take 160 MB instead of 1.6 GB for a dense N x N parameter, and N = 100,000 at
p = 0.01 (1e8 synapses) trains (forward, backward, Adam) in 6 GB (benchmarks/README.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cortexnet.connectivity import Connectivity
from cortexnet.sparse._csr_index import CSRIndex, build_index
from cortexnet.sparse.base import BACKENDS, DaleMode, SparseWeight
from cortexnet.sparse.csr_functional import CSRLinear, CSRRecurrence
from cortexnet.sparse.functional import check_activation

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
    :meth:`set_connectivity_` and after loading a state_dict.

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

    def _keys(self, rows: Tensor, cols: Tensor) -> Tensor:
        return rows.to(torch.int64) * self.n_in + cols.to(torch.int64)

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
        if x.shape[-1] != self.n_in:
            raise ValueError(f"input has {x.shape[-1]} features, expected {self.n_in}")
        lead = x.shape[:-1]
        y = CSRLinear.apply(x.reshape(-1, self.n_in), self._effective(), self.index())
        return y.reshape(*lead, self.n_out)

    def recurrent(self, drive: Tensor, activation: str) -> Tensor:
        check_activation(activation)
        if self.n_out != self.n_in:
            raise ValueError(f"recurrent weights must be square, got {self.n_out} x {self.n_in}")
        if drive.dim() != 3 or drive.shape[-1] != self.n_in:
            raise ValueError(f"drive must be (T, B, {self.n_in}), got {tuple(drive.shape)}")
        return CSRRecurrence.apply(drive, self._effective(), self.index(), activation)

    def to_dense(self) -> Tensor:
        with torch.no_grad():
            dense = torch.zeros(self.n_out, self.n_in, dtype=self.values.dtype, device=self.values.device)
            dense[self._rows(), self.col.to(torch.int64)] = self._effective()
        return dense

    def connectivity(self) -> Connectivity:
        return Connectivity(self.n_out, self.n_in, self.crow.cpu().clone(), self.col.cpu().to(torch.int64))

    def sign_violations(self) -> int:
        with torch.no_grad():
            return int(((self._effective() * self._synapse_sign()) < 0).sum())

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
        canon = self._keys(self._rows(), self.col)
        keys = self._keys(rows.to(dev), cols.to(dev))
        pos = torch.searchsorted(canon, keys)
        if canon.numel() == 0:
            found = torch.zeros_like(keys, dtype=torch.bool)
        else:
            found = (pos < canon.numel()) & (canon[pos.clamp(max=canon.numel() - 1)] == keys)
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

    @torch.no_grad()
    def set_connectivity_(
        self, connectivity: Connectivity, optimizer: torch.optim.Optimizer | None = None
    ) -> Tensor:
        """Replace the synapse set (rewiring) keeping nnz, hence the parameter's shape and identity.

        Synapses present before and after keep their values (they may move to another position of
        ``values``); new synapses start at exactly zero. Any optimiser holding ``values`` keeps working; its
        per-element state is **not** position-stable, so pass ``optimizer`` to have every state tensor of
        ``values``'s shape (Adam's moments, SGD's momentum, ...) permuted along with the values and reset to
        zero at new synapses (ARCHITECTURE.md, invariant 3). Scalar state (Adam's ``step``) is left alone.

        Returns:
            int64 ``(nnz,)``: for each new position, the old position it was taken from, or -1 for a new
            synapse (to remap any other per-synapse state the caller keeps).
        """
        if connectivity.shape != (self.n_out, self.n_in):
            raise ValueError(f"connectivity shape {connectivity.shape} != {(self.n_out, self.n_in)}")
        if connectivity.nnz != self.nnz:
            raise ValueError(
                f"rewiring must conserve the synapse count: got {connectivity.nnz}, layer has {self.nnz} "
                "(build a new weight to change it)"
            )
        dev = self.values.device
        old = self._keys(self._rows(), self.col)
        crow = connectivity.crow.to(dev, torch.int64)
        col = connectivity.col.to(dev, self._col_dtype())
        rows = torch.repeat_interleave(
            torch.arange(self.n_out, device=dev), crow.diff(), output_size=self.nnz
        )
        new = self._keys(rows, col)
        pos = torch.searchsorted(old, new).clamp(max=max(self.nnz - 1, 0))
        found = old[pos] == new if self.nnz else torch.zeros(0, dtype=torch.bool, device=dev)
        source = torch.where(found, pos, torch.full_like(pos, -1))
        self.values.copy_(torch.where(found, self.values[pos], 0))
        if optimizer is not None:
            for state in _param_states(optimizer, self.values):
                state.copy_(torch.where(found, state[pos], 0))
        self.crow.copy_(crow)
        self.col.copy_(col)
        self._structure_version += 1
        self.apply_constraints_()
        return source

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


def _param_states(optimizer: torch.optim.Optimizer, param: Tensor) -> list[Tensor]:
    """The optimiser's per-element state tensors of ``param`` (same shape), e.g. Adam's two moments."""
    state = optimizer.state.get(param, {})
    return [v for v in state.values() if isinstance(v, Tensor) and v.shape == param.shape and v.dim() > 0]
