"""SparseLinear: a feed-forward layer y = x Wᵀ + b whose W is restricted to any registered topology."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from cortexnet.connectivity import Connectivity, LayerSpec, dale_signs, make_connectivity
from cortexnet.sparse import DaleMode, SparseWeight, make_sparse_weight

#: Initialisations of :class:`SparseLinear` (see its docstring).
SPARSE_LINEAR_INITS: tuple[str, ...] = ("dense_fan_in", "sparse_fan_in", "uniform")
SparseLinearInit = Literal["dense_fan_in", "sparse_fan_in", "uniform"]


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W ``(n_out, n_in)`` a :class:`~cortexnet.sparse.SparseWeight` on ``connectivity``.

    The feed-forward counterpart of :class:`~cortexnet.layers.RecurrentLayer`, with the same invariants
    (ARCHITECTURE.md 1, 2, 5): weights outside the mask are exactly zero and get no gradient; with Dale's law
    every active weight of column j (presynaptic input j) has input j's sign after every optimiser step, in any
    training loop (:mod:`cortexnet.sparse.constraints`; ``dale_mode="clip"`` zeroes a weight whose sign would
    flip, Fruengel & Oberlaender 2025); any backend computes the same function.

    Used for the hidden-to-hidden weights of the feed-forward control of Fruengel & Oberlaender 2025 (ER at
    probability p) and for the G2G / ER / dense hidden layers of G2GNet (seed 000).

    Initialisation (drawn from ``generator``, values only on active synapses):

    * ``"dense_fan_in"`` (default): ``nn.Linear``'s default as if the layer were dense, W, b ~ U(±1/sqrt(n_in))
      — what masking an ``nn.Linear`` gives (the usual masked-MLP baseline);
    * ``"sparse_fan_in"``: row i's weights and bias ~ U(±1/sqrt(k_i)) with k_i its number of active inputs
      (≥ 1), so the pre-activation scale does not shrink with density;
    * ``"uniform"``: W ~ U(±init_scale), b as ``"dense_fan_in"`` (Fruengel & Oberlaender 2025 initialise
      hidden-to-hidden weights U(±0.001)).

    With Dale's law the magnitudes are |U(0, bound)| and the sign is the presynaptic input's.

    Args:
        connectivity: the active synapse set ``(n_out, n_in)`` (any topology of
            :data:`cortexnet.connectivity.TOPOLOGIES`).
        bias: add a learnable bias ``(n_out,)``.
        inhibitory: bool ``(n_in,)``, the inputs that are inhibitory (Dale's law on the inputs), or None.
        dale_mode: ``"clip"`` (paper) or ``"abs"`` (|W|·sign), used only with ``inhibitory``.
        init: one of :data:`SPARSE_LINEAR_INITS`.
        init_scale: half-width of the ``"uniform"`` initialisation, > 0.
        backend: sparse-weight backend name (default ``"auto"``: masked dense below 65,536 possible synapses,
            otherwise by size, density and :func:`cortexnet.sparse.backend_hints`; ``"masked_dense"``, ``"csr"``, ...).
        backend_options: extra keyword arguments for the backend (e.g. ``{"batch_hint": 100}`` for ``"auto"``).
        generator: explicit CPU generator for the initial values.
    """

    def __init__(
        self,
        connectivity: Connectivity,
        *,
        bias: bool = True,
        inhibitory: Tensor | None = None,
        dale_mode: DaleMode = "clip",
        init: SparseLinearInit = "dense_fan_in",
        init_scale: float = 1e-3,
        backend: str = "auto",
        backend_options: dict[str, Any] | None = None,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        n_out, n_in = connectivity.shape
        if init not in SPARSE_LINEAR_INITS:
            raise ValueError(f"init must be one of {SPARSE_LINEAR_INITS}, got {init!r}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        dale = inhibitory is not None
        if dale and (inhibitory.shape != (n_in,) or inhibitory.dtype != torch.bool):
            raise ValueError(
                f"inhibitory must be a bool tensor of shape ({n_in},) (one entry per input), got "
                f"{inhibitory.dtype} {tuple(inhibitory.shape)}"
            )
        if dale and dale_mode not in ("clip", "abs"):
            raise ValueError(f"dale_mode must be 'clip' or 'abs', got {dale_mode!r}")
        self.in_features, self.out_features = n_in, n_out
        self.dale = dale
        self.init = init
        self.register_buffer(
            "inhibitory", inhibitory.clone() if dale else torch.zeros(n_in, dtype=torch.bool), persistent=True
        )
        self.sparse: SparseWeight = make_sparse_weight(
            backend,
            connectivity,
            dale=dale_mode if dale else "none",
            column_sign=dale_signs(self.inhibitory) if dale else None,
            **(backend_options or {}),
        )
        self.bias = nn.Parameter(torch.empty(n_out)) if bias else None
        self._init_values(connectivity, init, init_scale, generator)

    @classmethod
    def from_topology(
        cls,
        in_features: int,
        out_features: int,
        topology: str = "er",
        topology_params: dict[str, Any] | None = None,
        *,
        connectivity_generator: torch.Generator,
        generator: torch.Generator,
        density: float | None = None,
        inhibitory: Tensor | None = None,
        **kwargs: Any,
    ) -> SparseLinear:
        """A feed-forward ``SparseLinear`` ``(in_features → out_features)`` wired by the registered topology
        ``topology`` (any name of :data:`cortexnet.connectivity.TOPOLOGIES`) with ``topology_params``, e.g.
        ``SparseLinear.from_topology(784, 256, "er", {"p": 0.1}, connectivity_generator=g1, generator=g2)``.
        ``density`` is the layer description's default density; ``kwargs`` go to the constructor."""
        spec = LayerSpec(out_features, in_features, recurrent=False, density=density, inhibitory=inhibitory)
        conn = make_connectivity(topology, spec, generator=connectivity_generator, **(topology_params or {}))
        return cls(conn, inhibitory=inhibitory, generator=generator, **kwargs)

    @torch.no_grad()
    def _init_values(
        self, conn: Connectivity, init: str, init_scale: float, generator: torch.Generator
    ) -> None:
        rows, cols = conn.rows(), conn.col
        dense_bound = 1.0 / math.sqrt(self.in_features)
        if init == "sparse_fan_in":
            fan_in = conn.crow.diff().clamp(min=1).to(torch.float64)
            row_bound = (1.0 / fan_in.sqrt()).to(torch.float32)
        else:
            row_bound = torch.full((self.out_features,), dense_bound)
        bound = torch.full((conn.nnz,), init_scale) if init == "uniform" else row_bound[rows]
        u = torch.rand(conn.nnz, generator=generator)
        if self.dale:
            values = u * bound * dale_signs(self.inhibitory)[cols]
        else:
            values = (u * 2 - 1) * bound
        self.sparse.set_values_(rows, cols, values)
        if self.bias is not None:
            b = torch.rand(self.out_features, generator=generator) * 2 - 1
            self.bias.copy_(b * row_bound)

    def forward(self, x: Tensor) -> Tensor:
        """x ``(..., n_in)`` → ``(..., n_out)``."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features, expected {self.in_features}")
        y = self.sparse.linear(x)
        return y + self.bias if self.bias is not None else y

    @property
    def nnz(self) -> int:
        """Active synapses (trainable weights that can be non-zero)."""
        return self.sparse.nnz

    def connectivity(self) -> Connectivity:
        """The current active synapse set (CPU, CSR index form)."""
        return self.sparse.connectivity()

    def to_dense(self) -> Tensor:
        """Detached effective weight ``(n_out, n_in)``: zeros off the mask, Dale signs applied."""
        return self.sparse.to_dense()

    def parameter_count(self) -> int:
        """Trainable values that exist in the model's function: active weights plus biases (masked-off
        positions do not count, whatever the backend stores)."""
        return self.nnz + (self.out_features if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}, "
            f"bias={self.bias is not None}, dale={self.dale}, init={self.init}"
        )
