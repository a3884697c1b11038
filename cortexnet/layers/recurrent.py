"""The sparse excitatory/inhibitory recurrent layer (Fruengel & Oberlaender 2025)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from cortexnet.connectivity import Connectivity, dale_signs
from cortexnet.sparse import DaleMode, check_activation, make_sparse_weight

#: The paper's recurrent initialisation: U(-0.001, 0.001); with Dale's law magnitudes U(0, 0.001).
REC_INIT_SCALE = 1e-3


class RecurrentLayer(nn.Module):
    """h_t = act(x_t W_inᵀ + h_{t-1} W_recᵀ + b), h_{-1} = 0, over sequences ``(B, T, F)``.

    W_in ``(N, F)`` is dense; W_rec ``(N, N)`` is a :class:`~cortexnet.sparse.SparseWeight` restricted to
    ``connectivity`` (W_rec[i, j] is the synapse from node j to node i: column j holds node j's outgoing
    weights, so Dale's sign belongs to columns).

    Initialisation (paper, Methods): W_rec ~ U(-0.001, 0.001) on existing synapses; with Dale's law the
    magnitudes are U(0, 0.001) and the sign is the presynaptic node's, inhibitory columns optionally scaled by
    ``inhibitory_scale`` (10 in the paper's Fig. S5C control). W_in and b follow PyTorch's ``nn.RNN`` defaults
    that the authors' code used: W_in ~ U(-1/sqrt(N), 1/sqrt(N)), and b is the sum of nn.RNN's two biases
    (b_ih + b_hh, each U(-1/sqrt(N), 1/sqrt(N))), folded into one parameter since only the sum matters.

    Args:
        n_inputs: F, input features per step.
        connectivity: square ``(N, N)`` trainable synapse set.
        activation: ``"relu"`` (paper default) or ``"tanh"``.
        inhibitory: bool ``(N,)`` inhibitory identities, or None for no Dale's law.
        dale_mode: ``"clip"`` (paper: wrong-sign weights set to zero after each step) or ``"abs"``.
        inhibitory_scale: multiplier of inhibitory initial magnitudes (Dale only), > 0.
        init_connectivity: synapses given non-zero initial weights (default: ``connectivity``). The paper's
            "sparse-to-dense" variant passes a sparse set here and a full ``connectivity``.
        backend: sparse-weight backend name (default ``"auto"``: masked dense below 65,536 possible synapses,
            otherwise by size, density and :func:`cortexnet.sparse.backend_hints`; ``"masked_dense"``, ``"csr"``,
            more in :mod:`cortexnet.sparse`).
        generator: explicit CPU generator for the weight initialisation.
    """

    def __init__(
        self,
        n_inputs: int,
        connectivity: Connectivity,
        *,
        activation: str = "relu",
        inhibitory: Tensor | None = None,
        dale_mode: DaleMode = "clip",
        inhibitory_scale: float = 1.0,
        init_connectivity: Connectivity | None = None,
        backend: str = "auto",
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        n = connectivity.n_out
        if connectivity.n_in != n:
            raise ValueError(f"recurrent connectivity must be square, got {connectivity.shape}")
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
        if not inhibitory_scale > 0:
            raise ValueError(f"inhibitory_scale must be > 0, got {inhibitory_scale}")
        self.activation = check_activation(activation)
        self.n_inputs, self.n_nodes = n_inputs, n
        dale = inhibitory is not None
        if dale and inhibitory.shape != (n,):
            raise ValueError(f"inhibitory must have shape ({n},), got {tuple(inhibitory.shape)}")
        self.register_buffer(
            "inhibitory", inhibitory.clone() if dale else torch.zeros(n, dtype=torch.bool), persistent=True
        )
        self.dale = dale
        self.weight_in = nn.Parameter(torch.empty(n, n_inputs))
        self.bias = nn.Parameter(torch.empty(n))
        self.rec = make_sparse_weight(
            backend,
            connectivity,
            dale=dale_mode if dale else "none",
            column_sign=dale_signs(self.inhibitory) if dale else None,
        )
        self._init_weights(init_connectivity or connectivity, inhibitory_scale, generator)
        self._state_hooks: dict[int, Any] = {}

    @torch.no_grad()
    def _init_weights(
        self, init_conn: Connectivity, inhibitory_scale: float, generator: torch.Generator
    ) -> None:
        k = 1.0 / math.sqrt(self.n_nodes)
        self.weight_in.copy_(torch.rand(self.weight_in.shape, generator=generator) * 2 * k - k)
        b = torch.rand(2, self.n_nodes, generator=generator) * 2 * k - k
        self.bias.copy_(b.sum(0))
        # One draw per synapse (O(nnz) memory, no N x N temporary).
        cols = init_conn.col
        u = torch.rand(init_conn.nnz, generator=generator)
        if self.dale:
            sign = torch.where(self.inhibitory[cols], -inhibitory_scale, 1.0)
            values = u * REC_INIT_SCALE * sign
        else:
            values = (u * 2 - 1) * REC_INIT_SCALE
        self.rec.set_values_(init_conn.rows(), cols, values)

    def forward(self, x: Tensor, *, return_states: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Args: x ``(B, T, F)``. Returns the last state ``(B, N)``, and all states ``(B, T, N)`` if asked."""
        if x.dim() != 3 or x.shape[-1] != self.n_inputs:
            raise ValueError(f"input must be (B, T, {self.n_inputs}), got {tuple(x.shape)}")
        # One GEMM for the input drive of all steps, time-major for the recurrence.
        drive = torch.addmm(self.bias, x.transpose(0, 1).reshape(-1, self.n_inputs), self.weight_in.t())
        states = self.rec.recurrent(drive.view(x.shape[1], x.shape[0], self.n_nodes), self.activation)
        for hook in list(getattr(self, "_state_hooks", {}).values()):
            hook(self, states)
        last = states[-1]
        if return_states:
            return last, states.transpose(0, 1)
        return last

    def register_state_hook(self, hook: Any) -> Any:
        """Call ``hook(layer, states)`` with every forward pass's hidden states ``(T, B, N)`` (time-major, as
        computed; detach before keeping them). Returns a handle with ``remove()``."""
        hooks = self.__dict__.setdefault("_state_hooks", {})  # (modules pickled before hooks existed)
        key = max(hooks, default=-1) + 1
        hooks[key] = hook

        class _Handle:
            def remove(self) -> None:
                hooks.pop(key, None)

        return _Handle()

    def extra_repr(self) -> str:
        n_inh = int(self.inhibitory.sum())
        return f"n_inputs={self.n_inputs}, n_nodes={self.n_nodes}, activation={self.activation}, inhibitory={n_inh}"
