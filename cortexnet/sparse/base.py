"""SparseWeight: the active synapses of one weight matrix, with interchangeable compute backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from cortexnet.connectivity import Connectivity
from cortexnet.registry import Registry

#: Backends by name: ``factory(connectivity, *, dale=..., column_sign=..., **options) -> SparseWeight``
#: ("masked_dense", "csr", and "auto", a factory returning one of them).
BACKENDS: Registry = Registry("sparse backend")

DaleMode = Literal["none", "clip", "abs"]
DALE_MODES: tuple[str, ...] = ("none", "clip", "abs")


class SparseWeight(nn.Module, ABC):
    """Stores one ``(n_out, n_in)`` weight restricted to a :class:`Connectivity` and multiplies by it.

    Sign constraints (Dale's law, Fruengel & Oberlaender 2025) act on columns (presynaptic units):

    * ``dale="clip"`` — the paper's rule: after every optimiser step :meth:`apply_constraints_` sets every
      active weight whose sign disagrees with its column's sign to exactly zero (it may regrow later);
    * ``dale="abs"`` — reparametrisation W_eff = |V| · sign(column): the sign can never be wrong, but a value
      at exactly zero has zero gradient and stays there (so it does not combine usefully with sparse-to-dense);
    * ``dale="none"`` — unconstrained.

    Backends differ only in storage and kernels; all expose the same functions and gradients (invariant 5).
    Rewiring (a later issue) changes the active set through :meth:`set_connectivity_` without changing the
    parameter's shape, so an optimiser keeps working; optimiser state at changed synapses is reset by the
    rewiring step.
    """

    backend: ClassVar[str] = ""

    def __init__(
        self, connectivity: Connectivity, *, dale: DaleMode = "none", column_sign: Tensor | None = None
    ):
        super().__init__()
        if dale not in DALE_MODES:
            raise ValueError(f"dale mode must be one of {DALE_MODES}, got {dale!r}")
        if dale != "none":
            if column_sign is None or column_sign.shape != (connectivity.n_in,):
                raise ValueError(
                    f"dale={dale!r} needs column_sign of shape ({connectivity.n_in},), got "
                    f"{None if column_sign is None else tuple(column_sign.shape)}"
                )
            if not bool(((column_sign == 1) | (column_sign == -1)).all()):
                raise ValueError("column_sign must contain only +1 (excitatory) and -1 (inhibitory)")
        self.n_out, self.n_in = connectivity.shape
        self.dale: str = dale
        sign = column_sign if column_sign is not None else torch.ones(self.n_in)
        self.register_buffer("column_sign", sign.to(torch.float32).clone())

    # -- interface every backend implements -------------------------------------------------------------
    @abstractmethod
    def linear(self, x: Tensor) -> Tensor:
        """``x Wᵀ``: ``(..., n_in) -> (..., n_out)``."""
        ...

    @abstractmethod
    def to_dense(self) -> Tensor:
        """Detached effective dense weight ``(n_out, n_in)`` (zeros off the mask, Dale signs applied)."""
        ...

    @abstractmethod
    def connectivity(self) -> Connectivity:
        """The current active synapse set (CPU, CSR index form)."""
        ...

    @abstractmethod
    def active_values(self) -> Tensor:
        """Effective weights of the active synapses ``(nnz,)`` in connectivity order (row-major, columns
        ascending, as :meth:`connectivity`), Dale signs applied: a detached copy on the weight's device, O(nnz)
        memory (no dense matrix is built)."""
        ...

    @abstractmethod
    def active_grads(self) -> Tensor | None:
        """Gradient of the stored parameter at the active synapses ``(nnz,)`` in connectivity order (a detached
        copy; for ``dale="abs"`` the gradient of the magnitude), or None before any backward pass."""
        ...

    @abstractmethod
    def load_dense_(self, weight: Tensor) -> None:
        """Set the active synapses' effective weights from a dense ``(n_out, n_in)`` tensor (off-mask
        entries ignored). For ``dale="abs"`` the stored magnitude is ``|weight|``."""
        ...

    @abstractmethod
    def set_values_(self, rows: Tensor, cols: Tensor, values: Tensor) -> None:
        """Set the effective weights at active positions ``(rows[k], cols[k])`` to ``values[k]`` (int64/float
        ``(K,)``) and every other weight to zero. Positions outside the active set raise ``ValueError``."""
        ...

    @abstractmethod
    def apply_constraints_(self) -> None:
        """Re-impose the mask and the Dale sign rule on the stored parameter (call after every update)."""
        ...

    # -- provided ---------------------------------------------------------------------------------------
    def recurrent(self, drive: Tensor, activation: str) -> Tensor:
        """Run h_t = act(drive_t + h_{t-1} Wᵀ), h_{-1} = 0, over a whole sequence.

        Args:
            drive: ``(T, B, N)`` input drive (x_t W_inᵀ + b), time-major.
            activation: ``"relu"`` or ``"tanh"``.
        Returns:
            ``(T, B, N)`` hidden states. This generic version loops over :meth:`linear`; backends override it
            with a fused whole-sequence kernel.
        """
        from cortexnet.sparse.functional import activate_

        if self.n_out != self.n_in:
            raise ValueError(f"recurrent weights must be square, got {self.n_out} x {self.n_in}")
        states = []
        h = torch.zeros_like(drive[0])
        for t in range(drive.shape[0]):
            pre = drive[t] if t == 0 else drive[t] + self.linear(h)
            h = activate_(pre.clone(), activation)
            states.append(h)
        return torch.stack(states)

    def set_connectivity_(self, connectivity: Connectivity, optimizer: torch.optim.Optimizer | None = None):
        """Replace the active set (same shape, same synapse count for compressed backends) for rewiring,
        keeping the parameter object so an optimiser keeps working. Weights of removed synapses vanish, new
        synapses start at exactly zero; pass ``optimizer`` to reset its per-element state at every changed
        synapse (and, for compressed storage, move it along with the values)."""
        raise NotImplementedError(f"backend {self.backend!r} does not support rewiring")

    # -- checkpoints: any backend's state_dict loads into any other ---------------------------------------
    def _prepare_load(self, state_dict: dict, prefix: str) -> None:
        """Hook: adapt storage (e.g. its synapse count) to the incoming state before it is copied."""

    def _after_load(self) -> None:
        """Hook: refresh derived structures after a state_dict was loaded."""

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        from cortexnet.sparse.checkpoint import convert_layout_

        convert_layout_(state_dict, prefix, self.backend, n_in=self.n_in)
        self._prepare_load(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._after_load()

    @property
    def nnz(self) -> int:
        """Number of active synapses."""
        return self.connectivity().nnz

    def sign_violations(self) -> int:
        """Active weights whose sign disagrees with their column's Dale sign (0 when Dale holds)."""
        w = self.to_dense()
        return int(((w * self.column_sign) < 0).sum())

    def extra_repr(self) -> str:
        return f"backend={self.backend}, shape=({self.n_out}, {self.n_in}), dale={self.dale}"


def make_sparse_weight(
    backend: str,
    connectivity: Connectivity,
    *,
    dale: DaleMode = "none",
    column_sign: Tensor | None = None,
    **options,
) -> SparseWeight:
    """Build a :class:`SparseWeight` with the backend registered as ``backend`` (all weights zero).

    ``backend`` is ``"masked_dense"``, ``"csr"`` or ``"auto"`` (picks one of them, see
    :func:`cortexnet.sparse.auto.choose_backend`). ``options`` go to the backend (e.g. ``batch_hint`` and
    ``device`` for ``"auto"``, ``panel_cols`` for ``"csr"``).
    """
    return BACKENDS.get(backend)(connectivity, dale=dale, column_sign=column_sign, **options)
