"""Masked-dense backend: a dense (n_out, n_in) parameter kept at zero off a boolean mask (the reference)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from cortexnet.connectivity import Connectivity
from cortexnet.sparse import gemm
from cortexnet.sparse.base import BACKENDS, DaleMode, SparseWeight
from cortexnet.sparse.constraints import ensure_constrained
from cortexnet.sparse.functional import DenseRecurrence, check_activation, leak_operands


@BACKENDS.register("masked_dense")
class MaskedDenseWeight(SparseWeight):
    """Reference backend: ``weight`` is a dense ``(n_out, n_in)`` parameter, ``mask`` a bool buffer.

    Memory is O(n_out · n_in) (5 bytes per possible synapse plus optimiser state), so it is the right choice
    only at high density or small N. Off-mask entries are exactly zero and receive exactly zero gradient
    (masking happens inside the backward, so no stale optimiser state can accumulate there).
    """

    backend = "masked_dense"

    def __init__(
        self, connectivity: Connectivity, *, dale: DaleMode = "none", column_sign: Tensor | None = None
    ):
        super().__init__(connectivity, dale=dale, column_sign=column_sign)
        self.weight = nn.Parameter(torch.zeros(self.n_out, self.n_in))
        self.register_buffer("mask", connectivity.to_dense())

    def _effective(self) -> Tensor:
        """Effective weight under autograd; the stored parameter is already zero off the mask."""
        if self.dale == "abs":
            return self.weight.abs() * self.column_sign
        return self.weight

    def linear(self, x: Tensor) -> Tensor:
        ensure_constrained(self)
        # Masking under autograd keeps the off-mask gradient exactly zero; masked_fill (not ``weight * mask``)
        # because a product with a bool mask casts it to a float copy of the whole matrix, forward and back.
        weight, mask = self._operands()
        return gemm.linear(x, weight.masked_fill(~mask, 0.0))  # x (W ⊙ M)ᵀ

    def recurrent(
        self, drive: Tensor, activation: str, *, alpha: Tensor | None = None, h0: Tensor | None = None
    ) -> Tensor:
        ensure_constrained(self)
        check_activation(activation)
        if self.n_out != self.n_in:
            raise ValueError(f"recurrent weights must be square, got {self.n_out} x {self.n_in}")
        weight, mask = self._operands()
        return DenseRecurrence.apply(
            drive.contiguous(), weight, mask, activation, *leak_operands(drive, alpha, h0, self.n_in)
        )

    def to_dense(self) -> Tensor:
        with torch.no_grad():
            return (self._effective() * self.mask).detach().clone()

    def connectivity(self) -> Connectivity:
        return Connectivity.from_dense(self.mask)

    @torch.no_grad()
    def active_values(self) -> Tensor:
        # Boolean indexing walks the mask row-major: connectivity order, nnz values, no dense temporary.
        v = self.weight[self.mask]
        if self.dale == "abs":
            v = v.abs() * self.column_sign.expand(self.n_out, -1)[self.mask]
        return v

    def active_grads(self) -> Tensor | None:
        g = self.weight.grad
        return None if g is None else g.detach()[self.mask]

    @torch.no_grad()
    def load_dense_(self, weight: Tensor) -> None:
        if weight.shape != (self.n_out, self.n_in):
            raise ValueError(f"weight has shape {tuple(weight.shape)}, expected {(self.n_out, self.n_in)}")
        w = weight.to(self.weight)
        self.weight.copy_(w.abs() if self.dale == "abs" else w)
        self.apply_constraints_()

    @torch.no_grad()
    def set_values_(self, rows: Tensor, cols: Tensor, values: Tensor) -> None:
        if not bool(self.mask[rows, cols].all()):
            raise ValueError("set_values_ got positions outside the active synapse set")
        self.weight.zero_()
        v = values.to(self.weight)
        self.weight[rows.to(self.weight.device), cols.to(self.weight.device)] = (
            v.abs() if self.dale == "abs" else v
        )
        self.apply_constraints_()

    @torch.no_grad()
    def apply_constraints_(self) -> None:
        self.weight.masked_fill_(~self.mask, 0.0)  # not mul_: no float cast of the bool mask
        if self.dale == "clip":
            # The paper's rule on the parameter the forward pass uses: a weight whose sign would reverse is
            # set to zero instead (the authors' notebook clamped a recomputed copy, so it never held).
            self.weight.masked_fill_(self.weight * self.column_sign < 0, 0.0)
        elif self.dale == "abs":
            self.weight.abs_()

    # -- hooks of SparseWeight's mutation, probe and check methods ------------------------------------------
    def _parameter(self) -> nn.Parameter:
        return self.weight

    def _active_index(self) -> tuple[Tensor, Tensor]:
        rows, cols = self.mask.nonzero(as_tuple=True)  # row-major: connectivity order
        return rows, cols

    def _gather_active(self, storage: Tensor) -> Tensor:
        return storage[self.mask]  # boolean indexing walks row-major: connectivity order

    def _storage_from_active(self, active: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        out = torch.zeros(self.n_out, self.n_in, dtype=active.dtype, device=active.device)
        out[rows, cols] = active
        return out

    def _set_structure_(self, connectivity: Connectivity, rows: Tensor, cols: Tensor) -> None:
        self.mask.zero_()
        self.mask[rows.to(self.mask.device), cols.to(self.mask.device)] = True

    def _active_value_chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        yield self.active_values(), self.column_sign.to(self.weight.dtype).expand(self.n_out, -1)[self.mask]

    def _off_mask_count(self) -> int:
        return int(torch.count_nonzero(self.weight.detach()[~self.mask]))

    def _is_active(self, rows: Tensor, cols: Tensor) -> Tensor:
        return self.mask[rows.to(self.mask.device), cols.to(self.mask.device)]

    def _operands(self) -> tuple[Tensor, Tensor]:
        """Effective dense weight under autograd and the mask its gradient is restricted to; inside
        :meth:`probe_gradients` the candidates (the probe's zero leaf) are added and the mask is the union."""
        eff = self._effective()
        probe = self._probe
        if probe is None:
            return eff, self.mask
        if probe.structure is None:
            union = self.mask.clone()
            union[probe.rows, probe.cols] = True
            probe.structure = union
        cand = torch.zeros_like(eff).index_put((probe.rows, probe.cols), probe.values.to(eff.dtype))
        return eff * self.mask + cand, probe.structure
