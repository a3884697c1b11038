"""The cortex-like recurrent network of Fruengel & Oberlaender 2025 (Front. Neural Circuits 19:1528309)."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cortexnet.config import check_fields
from cortexnet.connectivity import Connectivity, LayerSpec, build_connectivity, check_topology_params
from cortexnet.layers import INIT_STATES, RecurrentLayer
from cortexnet.models.registry import MODELS
from cortexnet.sparse import ACTIVATIONS, BACKENDS

#: Readouts: logits of the last step (the paper) or of every step.
READOUTS = ("last", "all")

#: Generator arguments CortexRNNConfig sets from its own fields (not repeatable in ``topology_params``).
_RNN_FIXED_PARAMS: frozenset[str] = frozenset({"p", "self_connections", "exact"})


@dataclass(frozen=True)
class CortexRNNConfig:
    """Everything that defines a cortex-like RNN; saved in every checkpoint so it can be rebuilt exactly.

    Attributes:
        n_nodes: N, hidden (recurrent) nodes, ≥ 1 (paper: 500 ... 24,000; headline 10,000 and 20,000).
        p: recurrent connection probability in (0, 1] (paper: 0.1 sparse vs 1.0 dense).
        activation: "relu" (paper default) or "tanh".
        dale: Dale's law on (each node excitatory or inhibitory).
        inhibitory_fraction: fraction of inhibitory nodes in [0, 1] (paper 0.115; 0.5 balanced control).
        inhibitory_scale: initial inhibitory magnitude multiplier, > 0 (paper control: 10).
        dale_mode: "clip" (paper: wrong-sign weights zeroed after every step) or "abs" (|W|·sign).
        sparse_to_dense: initialise with the p-mask but let every weight train (paper Fig. S5B).
        self_connections: allow the diagonal of W_rec (default False: the paper's density excludes it).
        exact_edges: exactly round(p·N(N-1)) synapses instead of independent Bernoulli(p) draws (default).
        topology: connectivity generator name (registry ``cortexnet.connectivity.TOPOLOGIES``), e.g. "er",
            "full", "g2g" (a recurrent group-to-group cortex).
        topology_params: further keyword arguments of that generator, e.g. ``{"p_inter": 0.05, "groups": 8,
            "grouping": "random"}`` for "g2g". ``p``, ``self_connections`` and ``exact_edges`` above reach every
            generator through the layer description (:class:`~cortexnet.connectivity.LayerSpec`: ``density``,
            ``self_connections``, ``exact``), so they are not repeated here.
        backend: sparse-weight backend name (registry ``cortexnet.sparse.BACKENDS``); default ``"auto"`` (masked
            dense below 65,536 possible synapses, otherwise by size, density and the runner's hints).
        connectivity_seed: seed of the mask and of the E/I assignment.
        weight_seed: seed of the weight initialisation (independent of the mask; the recurrent noise and random
            initial states draw from a stream derived from it).
        dt: integration step Δt (ms), > 0. With ``tau`` it sets the leak α = Δt/τ of continuous-time rate
            units (Song, Yang & Wang 2016); Δt = τ (the default 1 = 1) is the paper's discrete network.
        tau: membrane time constant τ (ms) of every node, or of the excitatory ones when ``tau_inhibitory`` is
            given; τ >= Δt.
        tau_inhibitory: τ (ms) of the inhibitory nodes (Dale only), >= Δt; None: ``tau``.
        noise_std: σ of the recurrent noise (continuous-time units; per step sqrt(2/α) σ inside the
            activation), >= 0; on in training.
        noise_at_eval: keep the recurrent noise on at evaluation.
        init_state: h_{-1}: "zero" (paper), "learned" (a trained vector) or "random" (per sequence).
        init_state_std: σ₀ of the random initial state (h_{-1} = act(σ₀ ξ)), > 0.
        balanced: balanced E/I initialisation (Dale only): each node's inhibitory input weights scaled so that
            its initial E and I inputs cancel (supersedes ``inhibitory_scale``).
        readout: "last" (paper: logits of the last step, one label per sequence) or "all" (logits at every
            step, ``(B, T, C)``, for tasks scored per step, e.g. a response period).
    """

    n_nodes: int = 10_000
    p: float = 0.1
    activation: str = "relu"
    dale: bool = False
    inhibitory_fraction: float = 0.115
    inhibitory_scale: float = 1.0
    dale_mode: str = "clip"
    sparse_to_dense: bool = False
    self_connections: bool = False
    exact_edges: bool = False
    topology: str = "er"
    topology_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    backend: str = "auto"
    connectivity_seed: int = 0
    weight_seed: int = 0
    dt: float = 1.0
    tau: float = 1.0
    tau_inhibitory: float | None = None
    noise_std: float = 0.0
    noise_at_eval: bool = False
    init_state: str = "zero"
    init_state_std: float = 0.1
    balanced: bool = False
    readout: str = "last"

    def validate(self) -> CortexRNNConfig:
        """Raise ``ValueError`` naming the bad field, its allowed range and the fix; return self."""
        check_fields(self)  # types, integral ints, finite floats: before any range check
        if self.n_nodes < 1:
            raise ValueError(f"n_nodes must be >= 1, got {self.n_nodes}")
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"connection probability p must be in (0, 1], got {self.p}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not 0.0 <= self.inhibitory_fraction <= 1.0:
            raise ValueError(f"inhibitory fraction must be in [0, 1], got {self.inhibitory_fraction}")
        if not self.inhibitory_scale > 0:
            raise ValueError(f"inhibitory scale must be > 0, got {self.inhibitory_scale}")
        if self.dale_mode not in ("clip", "abs"):
            raise ValueError(f"dale_mode must be 'clip' or 'abs', got {self.dale_mode!r}")
        if self.sparse_to_dense and self.dale and self.dale_mode == "abs":
            raise ValueError("sparse_to_dense needs dale_mode='clip': with |W|·sign, zero weights never grow")
        check_topology_params(
            self.topology, self.topology_params, fixed=_RNN_FIXED_PARAMS, spec=self.layer_spec()
        )
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0 (ms), got {self.dt}")
        for name, tau in (("tau", self.tau), ("tau_inhibitory", self.tau_inhibitory)):
            if tau is not None and not tau >= self.dt:
                raise ValueError(
                    f"{name} must be >= dt = {self.dt:g} (alpha = dt / tau in (0, 1]), got {tau}"
                )
        if self.tau_inhibitory is not None and not self.dale:
            raise ValueError(
                "tau_inhibitory needs Dale's law (inhibitory nodes); set dale or drop tau_inhibitory"
            )
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")
        if self.init_state not in INIT_STATES:
            raise ValueError(f"init_state must be one of {', '.join(INIT_STATES)}, got {self.init_state!r}")
        if not self.init_state_std > 0:
            raise ValueError(f"init_state_std must be > 0, got {self.init_state_std}")
        if self.balanced and not self.dale:
            raise ValueError("balanced initialisation needs Dale's law (dale=True)")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        return self

    def alpha(self, inhibitory: Tensor | None = None) -> float | Tensor:
        """The leak α = Δt/τ: a number, or per node ``(N,)`` when inhibitory nodes have their own τ."""
        if self.tau_inhibitory is None or inhibitory is None:
            return self.dt / self.tau
        return torch.where(inhibitory, self.dt / self.tau_inhibitory, self.dt / self.tau)

    def layer_spec(self) -> LayerSpec:
        """The description of the recurrent weight its topology generator receives."""
        return LayerSpec(self.n_nodes, self.n_nodes, recurrent=True, density=self.p,
                         self_connections=self.self_connections, exact=self.exact_edges,
                         name="recurrent.rec")  # fmt: skip

    def memory_layout(self, n_inputs: int, n_classes: int) -> Any:
        """What :class:`CortexRNN` allocates, without building it (:class:`cortexnet.models.memory.ModelLayout`):
        the recurrent weight ``recurrent.rec`` (N × N; its expected count from the topology, or every allowed
        pair with ``sparse_to_dense``), W_in ``(N, F)``, the bias, a learned h0, the readout, the bool E/I and
        (leaky) α buffers; one recurrent stage over the data's T steps (not fixed here: ``n_steps`` is None) and
        the readout of the last step or of every step."""
        from cortexnet.connectivity import rounded_count
        from cortexnet.models.memory import ModelLayout, Stage, linear_params, sparse_weight_layout

        self.validate()
        n = self.n_nodes
        rec = sparse_weight_layout(
            "recurrent.rec", self.layer_spec(), self.topology, self.topology_params,
            dale=self.dale_mode if self.dale else "none", backend=self.backend,
            trainable_full=self.sparse_to_dense,
        )  # fmt: skip
        n_inh = rounded_count(self.inhibitory_fraction, n) if self.dale else 0
        alphas = {self.dt / self.tau} if n_inh < n else set()
        if n_inh:
            alphas.add(self.dt / (self.tau_inhibitory if self.tau_inhibitory is not None else self.tau))
        leaky = alphas != {1.0}  # RecurrentLayer: a leak only where some α differs from 1
        learned = (("recurrent.h0", n),) if self.init_state == "learned" else ()
        per_step = self.readout == "all"
        return ModelLayout(
            model="cortex_rnn",
            weights=(rec,),
            dense=(
                ("recurrent.weight_in", n * n_inputs),
                ("recurrent.bias", n),
                *learned,
                *linear_params("readout", n, n_classes),
            ),
            buffers=(("recurrent.inhibitory", n), *((("recurrent.alpha", 4 * n),) if leaky else ())),
            stages=(
                Stage(
                    "recurrent", n_inputs, n, weight="recurrent.rec", leaky=leaky, noise=self.noise_std > 0
                ),
                Stage("dense", n, n_classes, per_step=per_step),
            ),
            n_steps=None,
            n_inputs=n_inputs,
            n_classes=n_classes,
        )


class CortexRNN(nn.Module):
    """Dense input weights → one large sparse (optionally Dale) recurrent layer → linear readout of the last
    step (Fruengel & Oberlaender 2025, Fig. 1), or of every step for tasks scored per step.

    Input ``(B, T, F)`` (images row by row, EEG one sample per step, a cognitive task's observations); output
    logits ``(B, n_classes)`` or ``(B, T, n_classes)``. Optionally leaky units (τ, Δt), recurrent noise, a
    learned or random initial state and a balanced E/I initialisation (see :class:`CortexRNNConfig`).
    """

    def __init__(self, config: CortexRNNConfig, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        config.validate()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.config = config
        self.n_inputs, self.n_classes = n_inputs, n_classes
        g_conn = torch.Generator().manual_seed(config.connectivity_seed)
        g_weight = torch.Generator().manual_seed(config.weight_seed)
        n = config.n_nodes
        sparse, inhibitory = build_connectivity(
            config.topology,
            config.topology_params,
            config.layer_spec(),
            generator=g_conn,
            inhibitory_fraction=config.inhibitory_fraction if config.dale else None,
        )
        trainable = (
            Connectivity.full(n, n, self_connections=config.self_connections)
            if config.sparse_to_dense
            else sparse
        )
        self.recurrent = RecurrentLayer(
            n_inputs,
            trainable,
            activation=config.activation,
            inhibitory=inhibitory,
            dale_mode=config.dale_mode,  # type: ignore[arg-type]
            inhibitory_scale=config.inhibitory_scale,
            init_connectivity=sparse,
            backend=config.backend,
            generator=g_weight,
            alpha=config.alpha(inhibitory),
            noise_std=config.noise_std,
            noise_at_eval=config.noise_at_eval,
            init_state=config.init_state,
            init_state_std=config.init_state_std,
            noise_seed=int(np.random.SeedSequence([config.weight_seed, 15]).generate_state(1)[0]),
            balanced=config.balanced,
        )
        self.readout = nn.Linear(n, n_classes)
        # nn.Linear's default init, but drawn from the weight generator so that seeds fully determine it.
        bound = 1.0 / n**0.5
        with torch.no_grad():
            self.readout.weight.copy_(torch.rand(n_classes, n, generator=g_weight) * 2 * bound - bound)
            self.readout.bias.copy_(torch.rand(n_classes, generator=g_weight) * 2 * bound - bound)

    def forward(self, x: Tensor) -> Tensor:
        """x ``(B, T, F)`` → logits ``(B, n_classes)`` (readout "last"), or ``(B, T, n_classes)`` at every step
        (readout "all")."""
        if getattr(self.config, "readout", "last") == "all":
            return self.readout(self.recurrent(x, return_states=True)[1])
        return self.readout(self.recurrent(x))

    def hidden(self, x: Tensor, *, all_steps: bool = False) -> Tensor:
        """Hidden activations: last step ``(B, N)``, or all steps ``(B, T, N)`` when ``all_steps``."""
        if all_steps:
            return self.recurrent(x, return_states=True)[1]
        return self.recurrent(x)

    def describe(self) -> dict:
        """Plain-data summary: config, synapse count, realised density, inhibitory count."""
        conn = self.recurrent.rec.connectivity()  # the model's one sparse weight ("recurrent.rec")
        return {
            **asdict(self.config),
            "n_inputs": self.n_inputs,
            "n_classes": self.n_classes,
            "synapses": conn.nnz,
            "density": conn.density(exclude_diagonal=not self.config.self_connections),
            "n_inhibitory": int(self.recurrent.inhibitory.sum()),
        }


@MODELS.register("cortex_rnn")
def build_cortex_rnn(config: CortexRNNConfig, n_inputs: int, n_classes: int) -> CortexRNN:
    """Factory for :class:`CortexRNN` (registry name ``"cortex_rnn"``)."""
    return CortexRNN(config, n_inputs, n_classes)
