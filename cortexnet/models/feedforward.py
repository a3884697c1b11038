"""The feed-forward control of Fruengel & Oberlaender 2025 (Front. Neural Circuits 19:1528309, Fig. 3A, S3).

"Hidden layer nodes were split into two hidden layers. Nodes in the first layer could be connected to nodes in
the second hidden layer by a feedforward connection, with the number of such connections determined randomly by
the connection probability. To feedforward networks, the whole image was provided at once as input (flattened
to a 1D vector) ... and for the Sleep-EDF dataset, the whole EEG sequence was passed at once." (Methods)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cortexnet.config import check_fields
from cortexnet.connectivity import LayerSpec, build_connectivity, check_topology_params
from cortexnet.layers import REC_INIT_SCALE, SparseLinear
from cortexnet.models.registry import MODELS
from cortexnet.sparse import ACTIVATIONS, BACKENDS

#: Initialisations of the hidden-to-hidden weights (see :class:`FeedForwardConfig`).
FF_HIDDEN_INITS: tuple[str, ...] = ("paper", "dense_fan_in", "sparse_fan_in")
#: Generator arguments the model sets itself (config fields, or fixed: the two layers are different nodes).
_FF_FIXED_PARAMS: frozenset[str] = frozenset({"p", "exact", "self_connections", "recurrent", "generator"})


@dataclass(frozen=True)
class FeedForwardConfig:
    """Everything that defines the two-hidden-layer feed-forward control; saved in every checkpoint.

    Attributes:
        n_nodes: total hidden nodes N ≥ 2, split into two layers of ceil(N/2) and floor(N/2) nodes, so that
            the control has as many hidden nodes as the recurrent network it is compared with.
        n_steps: T, steps of the input sequences ``(B, T, F)``; the model reads the whole sequence at once as
            one vector of T·F inputs (MNIST: 28 × 28 = 784). Checked against the input in ``forward``.
        p: connection probability between the two hidden layers, in (0, 1] (paper: 0.1 vs 1.0).
        activation: "relu" (paper default) or "tanh".
        hidden_init: "paper" — hidden-to-hidden weights U(±0.001), as the paper's recurrent weights (the paper
            repeated "the same training" for this control); "dense_fan_in" — ``nn.Linear``'s default as if dense;
            "sparse_fan_in" — U(±1/sqrt(actual fan-in)).
        dale: Dale's law on the first hidden layer's nodes (the presynaptic side of the sparse weights).
        inhibitory_fraction: fraction of inhibitory first-layer nodes in [0, 1] (paper 0.115).
        dale_mode: "clip" (paper) or "abs".
        exact_edges: exactly round(p · N1 · N2) synapses instead of independent Bernoulli(p) draws (default).
        topology: connectivity of the hidden-to-hidden weights, any registered topology
            (:data:`cortexnet.connectivity.TOPOLOGIES`): "er" (the paper), "g2g" (group-to-group: ``p`` is the
            *intra-pathway* probability; p', G and the grouping come from ``topology_params``, else the
            generator's defaults p' = 0.15, G = 8, mixer), "full", ... The generator gets a feed-forward layer
            description (``recurrent=False``: the two layers are different nodes, so a square matrix has no
            diagonal to exclude) with ``density = p`` and ``exact = exact_edges``.
        topology_params: further keyword arguments of that generator, e.g. ``{"p_inter": 0.05, "groups": 4}``
            for "g2g" (needs p_inter <= p: with p = 0.1 the default p' = 0.15 is rejected). Checked against the
            generator's signature; must not repeat ``p``, ``exact``, ``self_connections`` or ``recurrent``.
        backend: sparse-weight backend name (registry ``cortexnet.sparse.BACKENDS``); default ``"auto"``
            (masked dense below 65,536 possible synapses, otherwise by size, density and the runner's hints).
        connectivity_seed: seed of the mask and of the E/I assignment.
        weight_seed: seed of the weight initialisation (independent of the mask).
    """

    n_nodes: int = 10_000
    n_steps: int = 28
    p: float = 0.1
    activation: str = "relu"
    hidden_init: str = "paper"
    dale: bool = False
    inhibitory_fraction: float = 0.115
    dale_mode: str = "clip"
    exact_edges: bool = False
    topology: str = "er"
    topology_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    backend: str = "auto"
    connectivity_seed: int = 0
    weight_seed: int = 0

    def validate(self) -> FeedForwardConfig:
        """Raise ``ValueError`` naming the bad field, its allowed range and the fix; return self."""
        check_fields(self)  # types, integral ints, finite floats: before any range check
        if self.n_nodes < 2:
            raise ValueError(f"n_nodes must be >= 2 (two hidden layers), got {self.n_nodes}")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1 (the input sequence length T), got {self.n_steps}")
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"connection probability p must be in (0, 1], got {self.p}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.hidden_init not in FF_HIDDEN_INITS:
            raise ValueError(f"hidden_init must be one of {FF_HIDDEN_INITS}, got {self.hidden_init!r}")
        if not 0.0 <= self.inhibitory_fraction <= 1.0:
            raise ValueError(f"inhibitory fraction must be in [0, 1], got {self.inhibitory_fraction}")
        if self.dale_mode not in ("clip", "abs"):
            raise ValueError(f"dale_mode must be 'clip' or 'abs', got {self.dale_mode!r}")
        try:
            check_topology_params(
                self.topology, self.topology_params, fixed=_FF_FIXED_PARAMS, spec=self.layer_spec()
            )
        except ValueError as exc:
            raise ValueError(
                f"{exc} (FeedForwardConfig: p and exact_edges are config fields, self_connections=True and "
                "recurrent=False are fixed for two distinct layers; G2G's p' is topology_params={'p_inter': ...})"
            ) from None
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        return self

    def layer_spec(self) -> LayerSpec:
        """The description of the hidden-to-hidden weight its topology generator receives."""
        n1, n2 = self.layer_sizes
        return LayerSpec(
            n2, n1, recurrent=False, density=self.p, exact=self.exact_edges, name="connections.sparse"
        )

    @property
    def layer_sizes(self) -> tuple[int, int]:
        """(N1, N2) = (ceil(N/2), floor(N/2))."""
        return (self.n_nodes - self.n_nodes // 2, self.n_nodes // 2)

    def memory_layout(self, n_inputs: int, n_classes: int) -> Any:
        """What :class:`FeedForwardNet` allocates, without building it
        (:class:`cortexnet.models.memory.ModelLayout`): the dense input layer (T·F → N1), the sparse
        ``connections.sparse`` (N2 × N1, expected count from the topology) with its bias and bool E/I buffer,
        and the readout; T = ``n_steps``."""
        from cortexnet.models.memory import ModelLayout, Stage, linear_params, sparse_weight_layout

        self.validate()
        n1, n2 = self.layer_sizes
        flat = self.n_steps * n_inputs
        hidden = sparse_weight_layout(
            "connections.sparse", self.layer_spec(), self.topology, self.topology_params,
            dale=self.dale_mode if self.dale else "none", backend=self.backend,
        )  # fmt: skip
        return ModelLayout(
            model="feedforward",
            weights=(hidden,),
            dense=(
                *linear_params("input", flat, n1),
                ("connections.bias", n2),
                *linear_params("readout", n2, n_classes),
            ),
            buffers=(("connections.inhibitory", n1),),
            stages=(
                Stage("dense", flat, n1, activation=True, input_grad=False),
                Stage("sparse", n1, n2, weight="connections.sparse", activation=True),
                Stage("dense", n2, n_classes),
            ),
            n_steps=self.n_steps,
            n_inputs=n_inputs,
            n_classes=n_classes,
        )


class FeedForwardNet(nn.Module):
    """Flattened input (T·F) → dense → hidden layer 1 (N1) → sparse p → hidden layer 2 (N2) → linear readout.

    Input ``(B, T, F)`` — the same tensors the recurrent model reads step by step — is flattened row-major into
    ``(B, T·F)``; output logits ``(B, n_classes)``. The input and readout layers are dense with
    ``nn.Linear``'s default initialisation drawn from the weight seed (the paper: the input layer is fully
    connected, the readout linear); only the hidden-to-hidden matrix ``connections`` is sparse (a
    :class:`SparseLinear`).
    """

    def __init__(self, config: FeedForwardConfig, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        config.validate()
        if n_inputs < 1:
            raise ValueError(f"n_inputs (features per step) must be >= 1, got {n_inputs}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.config = config
        self.n_inputs, self.n_classes = n_inputs, n_classes
        self.n_flat = config.n_steps * n_inputs
        n1, n2 = config.layer_sizes
        g_conn = torch.Generator().manual_seed(config.connectivity_seed)
        g_weight = torch.Generator().manual_seed(config.weight_seed)
        conn, inhibitory = build_connectivity(
            config.topology,
            config.topology_params,
            config.layer_spec(),
            generator=g_conn,
            inhibitory_fraction=config.inhibitory_fraction if config.dale else None,
        )
        self.input = _dense(self.n_flat, n1, g_weight)
        self.connections = SparseLinear(
            conn,
            inhibitory=inhibitory,
            dale_mode=config.dale_mode,  # type: ignore[arg-type]
            init="uniform" if config.hidden_init == "paper" else config.hidden_init,  # type: ignore[arg-type]
            init_scale=REC_INIT_SCALE,
            backend=config.backend,
            generator=g_weight,
        )
        self.readout = _dense(n2, n_classes, g_weight)
        self._act = torch.relu if config.activation == "relu" else torch.tanh

    def forward(self, x: Tensor) -> Tensor:
        """x ``(B, T, F)`` → logits ``(B, n_classes)``."""
        return self.readout(self.hidden_activations(x)[1])

    def hidden(self, x: Tensor, *, all_steps: bool = False) -> Tensor:
        """What the readout sees: the second hidden layer's activations ``(B, N2)`` for x ``(B, T, F)`` (the
        interface of the representation analyses, as ``CortexRNN.hidden``). ``all_steps`` does not apply: the
        feed-forward control reads the whole sequence at once."""
        if all_steps:
            raise ValueError("the feed-forward control has no time steps: call hidden(x) without all_steps")
        return self.hidden_activations(x)[1]

    def hidden_activations(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Activations of both hidden layers, ``(B, N1)`` and ``(B, N2)``, for x ``(B, T, F)``."""
        if x.dim() != 3 or x.shape[1] * x.shape[2] != self.n_flat or x.shape[2] != self.n_inputs:
            raise ValueError(
                f"input must be (B, {self.config.n_steps}, {self.n_inputs}), got {tuple(x.shape)}; the model "
                "was built for that sequence shape (FeedForwardConfig.n_steps, n_inputs)"
            )
        h1 = self._act(self.input(x.reshape(x.shape[0], self.n_flat)))
        return h1, self._act(self.connections(h1))

    def parameter_counts(self) -> dict[str, int]:
        """Trainable values by part, counting only active synapses of the sparse matrix:
        ``input`` (weights + biases), ``hidden_synapses`` (active hidden-to-hidden weights),
        ``hidden_bias``, ``readout``, ``total``, and ``stored`` (what the backend allocates: masked dense keeps
        all N1·N2 positions)."""
        counts = {
            "input": self.input.weight.numel() + self.input.bias.numel(),
            "hidden_synapses": self.connections.nnz,
            "hidden_bias": self.connections.out_features,
            "readout": self.readout.weight.numel() + self.readout.bias.numel(),
        }
        counts["total"] = sum(counts.values())
        counts["stored"] = sum(p.numel() for p in self.parameters())
        return counts

    def describe(self) -> dict:
        """Plain-data summary: config, layer sizes, synapse count, realised density, parameter counts."""
        conn = self.connections.connectivity()
        return {
            **asdict(self.config),
            "n_inputs": self.n_inputs,
            "n_classes": self.n_classes,
            "layer_sizes": list(self.config.layer_sizes),
            "synapses": conn.nnz,
            "density": conn.nnz / (conn.n_out * conn.n_in),
            "n_inhibitory": int(self.connections.inhibitory.sum()),
            "parameters": self.parameter_counts(),
        }


def _dense(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with its default initialisation U(±1/sqrt(n_in)) drawn from ``generator``."""
    layer = nn.Linear(n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.copy_((torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound)
        layer.bias.copy_((torch.rand(n_out, generator=generator) * 2 - 1) * bound)
    return layer


@MODELS.register("feedforward")
def build_feedforward(config: FeedForwardConfig, n_inputs: int, n_classes: int) -> FeedForwardNet:
    """Factory for :class:`FeedForwardNet` (registry name ``"feedforward"``)."""
    return FeedForwardNet(config, n_inputs, n_classes)
