"""The sparse excitatory/inhibitory recurrent layer (Fruengel & Oberlaender 2025)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from cortexnet.connectivity import Connectivity, dale_signs
from cortexnet.sparse import DaleMode, check_activation, make_sparse_weight
from cortexnet.sparse.functional import activate_

#: The paper's recurrent initialisation: U(-0.001, 0.001); with Dale's law magnitudes U(0, 0.001).
REC_INIT_SCALE = 1e-3


#: Initial states h_{-1}: zero (the paper), a learned vector, or random per sequence.
INIT_STATES = ("zero", "learned", "random")


class NoiseSource(nn.Module):
    """A seeded Gaussian source on the device of its use whose state travels in the ``state_dict`` (extra
    state), so a resumed run draws the same noise as an uninterrupted one and a probe can replay it."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = int(seed)
        self._gen: torch.Generator | None = None
        self._saved: Tensor | None = None  # a loaded state, applied when the generator is (re)made
        self._saved_device = "cpu"

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            gen = torch.Generator(device=device)
            if self._saved is not None and self._saved_device == device.type:
                gen.set_state(self._saved)
            else:
                gen.manual_seed(self.seed)
            self._gen = gen
        return self._gen

    def normal(self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Standard normal draws of ``shape``."""
        return torch.randn(shape, generator=self._generator(device), dtype=dtype, device=device)

    def get_extra_state(self) -> dict[str, Any]:
        if self._gen is None:
            state, device = self._saved, self._saved_device
        else:
            state, device = self._gen.get_state(), self._gen.device.type
        return {"seed": self.seed, "state": state, "device": device}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self._saved, self._saved_device = state.get("state"), state.get("device", "cpu")
        self._gen = None


def _balance_rows(values: Tensor, rows: Tensor, inhibitory: Tensor, n: int) -> Tensor:
    """Scale each row's inhibitory values so that the row sums to zero (where it has both kinds of input).

    ``values`` (nnz,) signed weights, ``rows`` (nnz,) their postsynaptic node, ``inhibitory`` (nnz,) bool
    (presynaptic node inhibitory). Rows with only excitatory or only inhibitory inputs are left as they are.
    """
    exc = torch.zeros(n, dtype=values.dtype).index_add_(0, rows, torch.where(inhibitory, 0.0, values))
    inh = torch.zeros(n, dtype=values.dtype).index_add_(0, rows, torch.where(inhibitory, -values, 0.0))
    factor = torch.where((exc > 0) & (inh > 0), exc / inh.clamp_min(torch.finfo(values.dtype).tiny), 1.0)
    return torch.where(inhibitory, values * factor[rows], values)


class RecurrentLayer(nn.Module):
    """h_t = (1 - α) h_{t-1} + α act(x_t W_inᵀ + h_{t-1} W_recᵀ + b + ε_t) over sequences ``(B, T, F)``.

    With the defaults (α = 1, no noise, h_{-1} = 0) this is the paper's discrete network h_t = act(x_t W_inᵀ
    + h_{t-1} W_recᵀ + b), computed by exactly the same operations. α = Δt/τ (per node, e.g. separate τ for
    excitatory and inhibitory nodes) makes it the Euler discretisation of a leaky continuous-time rate network
    τ dh/dt = -h + act(W h + W_in x + b + noise) (Song, Yang & Wang 2016; PsychRNN); ε_t ~ N(0, 2σ²/α) is the
    discretised recurrent noise of standard deviation σ (on in training; at evaluation only with
    ``noise_at_eval``).

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
        alpha: leak factor Δt/τ in (0, 1], a number or ``(N,)`` per node (default 1: no leak).
        noise_std: σ of the recurrent noise, >= 0 (default 0: none).
        noise_at_eval: keep the noise on in eval mode.
        init_state: ``"zero"`` (default), ``"learned"`` (a trained vector h_{-1} ``(N,)``, initially zero) or
            ``"random"`` (h_{-1} = act(σ₀ ξ) per sequence, ξ standard normal).
        init_state_std: σ₀ of the random initial state, > 0.
        noise_seed: seed of the noise and random-initial-state draws (their state is checkpointed).
        balanced: balanced E/I initialisation (Dale only): every node's inhibitory input weights are scaled so
            that its initial excitatory and inhibitory input weights cancel exactly (row sums of W_rec zero), as
            in balanced-network Dale RNNs; ``inhibitory_scale`` is then superseded. The paper's Fig. S5C
            control (10x inhibitory weights at 11.5 % inhibitory nodes, n_E / n_I ≈ 7.7) is one unnormalised
            instance of the same idea.
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
        alpha: float | Tensor = 1.0,
        noise_std: float = 0.0,
        noise_at_eval: bool = False,
        init_state: str = "zero",
        init_state_std: float = 0.1,
        noise_seed: int = 0,
        balanced: bool = False,
    ) -> None:
        super().__init__()
        n = connectivity.n_out
        if connectivity.n_in != n:
            raise ValueError(f"recurrent connectivity must be square, got {connectivity.shape}")
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
        if not inhibitory_scale > 0:
            raise ValueError(f"inhibitory_scale must be > 0, got {inhibitory_scale}")
        alpha_t = torch.as_tensor(alpha, dtype=torch.float32).expand(n).clone()
        if not bool(((alpha_t > 0) & (alpha_t <= 1)).all()):
            raise ValueError(f"alpha (dt / tau) must be in (0, 1] for every node, got {alpha}; use tau >= dt")
        if not (math.isfinite(noise_std) and noise_std >= 0):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
        if init_state not in INIT_STATES:
            raise ValueError(f"init_state must be one of {INIT_STATES}, got {init_state!r}")
        if init_state == "random" and not (math.isfinite(init_state_std) and init_state_std > 0):
            raise ValueError(f"init_state_std must be > 0 for a random initial state, got {init_state_std}")
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
        if balanced and not dale:
            raise ValueError(
                "balanced initialisation needs Dale's law (inhibitory identities); pass inhibitory"
            )
        self._init_weights(init_connectivity or connectivity, inhibitory_scale, generator, balanced)
        self._state_hooks: dict[int, Any] = {}
        # Leak, noise and initial state exist only when asked for: the paper's network keeps its exact
        # parameters, buffers and state_dict keys (old checkpoints load unchanged).
        self.leaky = not bool((alpha_t == 1).all())
        if self.leaky:
            self.register_buffer("alpha", alpha_t)
        self.noise_std, self.noise_at_eval = float(noise_std), bool(noise_at_eval)
        self.init_state, self.init_state_std = init_state, float(init_state_std)
        if init_state == "learned":
            self.h0 = nn.Parameter(torch.zeros(n))
        if self.noise_std > 0 or init_state == "random":
            self.noise = NoiseSource(noise_seed)

    @torch.no_grad()
    def _init_weights(
        self, init_conn: Connectivity, inhibitory_scale: float, generator: torch.Generator, balanced: bool
    ) -> None:
        k = 1.0 / math.sqrt(self.n_nodes)
        self.weight_in.copy_(torch.rand(self.weight_in.shape, generator=generator) * 2 * k - k)
        b = torch.rand(2, self.n_nodes, generator=generator) * 2 * k - k
        self.bias.copy_(b.sum(0))
        # One draw per synapse (O(nnz) memory, no N x N temporary).
        cols = init_conn.col
        u = torch.rand(init_conn.nnz, generator=generator)
        if self.dale:
            inh = self.inhibitory[cols]
            values = u * REC_INIT_SCALE * torch.where(inh, -inhibitory_scale, 1.0)
            if balanced:
                values = _balance_rows(values, init_conn.rows(), inh, self.n_nodes)
        else:
            values = (u * 2 - 1) * REC_INIT_SCALE
        self.rec.set_values_(init_conn.rows(), cols, values)

    def forward(self, x: Tensor, *, return_states: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Args: x ``(B, T, F)``. Returns the last state ``(B, N)``, and all states ``(B, T, N)`` if asked."""
        if x.dim() != 3 or x.shape[-1] != self.n_inputs:
            raise ValueError(f"input must be (B, T, {self.n_inputs}), got {tuple(x.shape)}")
        # One GEMM for the input drive of all steps, time-major for the recurrence.
        drive = torch.addmm(self.bias, x.transpose(0, 1).reshape(-1, self.n_inputs), self.weight_in.t())
        drive = drive.view(x.shape[1], x.shape[0], self.n_nodes)
        # getattr: modules pickled before leak, noise and initial states existed are the paper's network.
        alpha = self.alpha.to(drive.dtype) if getattr(self, "leaky", False) else None
        if getattr(self, "noise_std", 0.0) > 0 and (self.training or self.noise_at_eval):
            # Euler-Maruyama: noise of std σ in continuous time is sqrt(2/α) σ per step inside act().
            scale = self.noise_std * ((2.0 / alpha).sqrt() if alpha is not None else math.sqrt(2.0))
            drive = drive + scale * self.noise.normal(
                tuple(drive.shape), dtype=drive.dtype, device=drive.device
            )
        states = self.rec.recurrent(drive, self.activation, alpha=alpha, h0=self._initial_state(drive))
        for hook in list(getattr(self, "_state_hooks", {}).values()):
            hook(self, states)
        last = states[-1]
        if return_states:
            return last, states.transpose(0, 1)
        return last

    def _initial_state(self, drive: Tensor) -> Tensor | None:
        """h_{-1} ``(B, N)`` for a time-major drive ``(T, B, N)``, or None for zero."""
        mode = getattr(self, "init_state", "zero")
        if mode == "zero":
            return None
        batch = drive.shape[1]
        if mode == "learned":
            return self.h0.to(drive.dtype).expand(batch, -1)
        xi = self.noise.normal((batch, self.n_nodes), dtype=drive.dtype, device=drive.device)
        return activate_(xi.mul_(self.init_state_std), self.activation)

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
