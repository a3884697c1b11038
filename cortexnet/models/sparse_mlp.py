"""Static sparse MLP: the network of the DNM / CHTs MLP experiments (seeds 002, 003, 004; REFERENCE.md §3).

The whole input sequence is flattened into one vector (T·F; MNIST 28 × 28 = 784), passed through hidden ReLU
layers (default 1568, 1568, 1568) whose weight matrices are sparse, wired by any registered topology
(:data:`cortexnet.connectivity.TOPOLOGIES`: ``"er"``, ``"bsw"``, ``"bsf"``, ``"brf"``, ``"dnm"``,
``"ramanujan"``, ``"erk"``, ... and ``"full"`` for the fully connected baseline), and a dense linear classifier
gives the logits. Every weight from the input to the last hidden layer is sparse (CHTs: "DST on all but the last
layer"); the masks are static here (no pruning or regrowth). Initial weights are scaled by the fan-in the mask
actually gives (``SparseLinear(init="sparse_fan_in")``): row i ~ U(±1/sqrt(k_i)), k_i its active inputs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cortexnet.config import check_fields
from cortexnet.connectivity import (
    TOPOLOGIES,
    Connectivity,
    LayerSpec,
    apply_layer_overrides,
    check_layer_overrides,
    check_topology_params,
    make_connectivity,
)
from cortexnet.layers import SPARSE_LINEAR_INITS, SparseLinear
from cortexnet.models.registry import MODELS
from cortexnet.sparse import ACTIVATIONS, BACKENDS


@dataclass(frozen=True)
class SparseMLPConfig:
    """Everything that defines a static sparse MLP; saved in every checkpoint.

    Attributes:
        n_steps: T, steps of the input sequences ``(B, T, F)``; the model reads the whole sequence at once as
            one vector of T·F inputs (MNIST: 28 × 28 = 784). Checked against the input in ``forward``.
        hidden: hidden layer widths (REFERENCE.md §3: 1568, 1568, 1568).
        density: the model's connection probability in (0, 1], given to every sparse matrix as
            ``LayerSpec.density`` (the default of every generator that takes a density; ``"erk"`` reads it as
            the model's overall density). Default 0.01 = 99 % sparsity. ``"full"`` ignores it.
        activation: hidden activation, "relu" (default) or "tanh".
        exact_edges: ``LayerSpec.exact``: exact rounded link totals where a generator offers the choice (ER:
            exactly round(density · possible) per matrix); default True.
        topology: registered topology of every sparse matrix (default ``"er"``; ``"full"``: the FC baseline).
        topology_params: keyword parameters of ``topology`` for every sparse matrix (e.g. ``{"beta": 0.5}``
            for ``"bsw"``); ``p`` here overrides ``density``.
        layer_topologies: per-matrix overrides, empty or one dict per sparse matrix (index i joins layer i to
            i + 1, layer 0 the input): ``{"topology": name, **params}`` replaces that matrix's topology and
            parameters, ``{**params}`` updates its parameters, ``{}`` keeps it (as :class:`G2GNetConfig`).
        init: sparse-weight initialisation, one of :data:`cortexnet.layers.SPARSE_LINEAR_INITS` (default
            ``"sparse_fan_in"``: scaled by the mask's actual fan-in).
        backend: sparse-weight backend name (registry ``cortexnet.sparse.BACKENDS``); default ``"auto"``.
        connectivity_seed: seed of the masks (drawn in matrix order from one generator).
        weight_seed: seed of every initial weight (sparse matrices, then the classifier).
    """

    n_steps: int = 28
    hidden: tuple[int, ...] = (1568, 1568, 1568)
    density: float = 0.01
    activation: str = "relu"
    exact_edges: bool = True
    topology: str = "er"
    topology_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    layer_topologies: tuple[dict[str, Any], ...] = ()
    init: str = "sparse_fan_in"
    backend: str = "auto"
    connectivity_seed: int = 0
    weight_seed: int = 0

    def __post_init__(self) -> None:
        # Saved configs come back from JSON with lists.
        object.__setattr__(self, "hidden", tuple(self.hidden))  # values checked in validate (2.5 is no width)
        object.__setattr__(self, "layer_topologies", tuple(dict(d) for d in self.layer_topologies))

    def validate(self, n_inputs: int | None = None) -> SparseMLPConfig:
        """Raise ``ValueError`` naming the bad field, its allowed range and the fix; return self. With
        ``n_inputs`` (features per step F) the topology parameters are also checked against the layer shapes
        (input width T·F); without, only what needs no shape (names, keys, types, value ranges)."""
        check_fields(self)  # types, integral ints, finite floats: before any range check
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1 (the input sequence length T), got {self.n_steps}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden needs at least one layer width, each >= 1, got {list(self.hidden)}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"density (connection probability) must be in (0, 1], got {self.density}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.init not in SPARSE_LINEAR_INITS:
            raise ValueError(f"init must be one of {SPARSE_LINEAR_INITS}, got {self.init!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        check_layer_overrides(self.layer_topologies, len(self.hidden))
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {self.topology!r}; known: {', '.join(TOPOLOGIES.names())}")
        specs = self.layer_specs(n_inputs) if n_inputs is not None else [None] * len(self.hidden)
        for i, ((name, params), spec) in enumerate(zip(self.layer_topology_specs(), specs, strict=True)):
            try:
                # Without shapes the model's density still reaches the generator's checks (as p).
                given = {} if spec is not None or "p" in params else {"p": self.density}
                check_topology_params(name, params, fixed=("recurrent",), given=given, spec=spec)
            except ValueError as exc:
                raise ValueError(f"sparse matrix {i}: {exc}") from None
        return self

    def widths(self, n_inputs: int) -> tuple[int, ...]:
        """Layer widths from the flattened input (T·F, layer 0) to the last hidden layer."""
        return (self.n_steps * n_inputs, *self.hidden)

    def layer_topology_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """``(topology name, parameters)`` of every sparse matrix, per-matrix overrides applied."""
        return apply_layer_overrides(
            [(self.topology, self.topology_params) for _ in self.hidden], self.layer_topologies
        )

    def layer_specs(self, n_inputs: int) -> list[LayerSpec]:
        """The layer description of every sparse matrix for ``n_inputs`` features per step (one ``shared``
        dict for the whole model; ``density`` the model's, ``exact`` = ``exact_edges``)."""
        widths, shared = self.widths(n_inputs), {}
        shapes = tuple((widths[i + 1], widths[i]) for i in range(len(self.hidden)))
        return [
            LayerSpec(*shape, recurrent=False, index=i, shapes=shapes, density=self.density,
                      exact=self.exact_edges, shared=shared, name=f"layers.{i}.sparse")
            for i, shape in enumerate(shapes)
        ]  # fmt: skip

    def memory_layout(self, n_inputs: int, n_classes: int) -> Any:
        """What :class:`SparseMLP` allocates, without building it (:class:`cortexnet.models.memory.ModelLayout`):
        one sparse ``layers.{i}.sparse`` per hidden layer (expected counts from each matrix's topology, per-matrix
        overrides applied) with its bias and bool E/I buffer, and the dense classifier; T = ``n_steps``."""
        from cortexnet.models.memory import ModelLayout, Stage, linear_params, sparse_weight_layout

        self.validate(n_inputs)
        specs = self.layer_specs(n_inputs)
        weights = tuple(
            sparse_weight_layout(spec.name, spec, name, params, dale="none", backend=self.backend)
            for (name, params), spec in zip(self.layer_topology_specs(), specs, strict=True)
        )
        n_last = self.hidden[-1]
        return ModelLayout(
            model="sparse_mlp",
            weights=weights,
            dense=(
                *((f"layers.{i}.bias", s.n_out) for i, s in enumerate(specs)),
                *linear_params("readout", n_last, n_classes),
            ),
            buffers=tuple((f"layers.{i}.inhibitory", s.n_in) for i, s in enumerate(specs)),
            stages=(
                *(
                    Stage("sparse", s.n_in, s.n_out, weight=s.name, activation=True, input_grad=i > 0)
                    for i, s in enumerate(specs)
                ),
                Stage("dense", n_last, n_classes),
            ),
            n_steps=self.n_steps,
            n_inputs=n_inputs,
            n_classes=n_classes,
        )


def sparse_mlp_connectivities(
    config: SparseMLPConfig, n_inputs: int, generator: torch.Generator | None = None
) -> list[Connectivity]:
    """The masks of every sparse matrix, drawn in order from ``generator`` (default: a fresh one seeded with
    ``connectivity_seed``) through ``make_connectivity``; no topology is special-cased by name."""
    g = generator if generator is not None else torch.Generator().manual_seed(config.connectivity_seed)
    return [
        make_connectivity(name, spec, generator=g, **params)
        for (name, params), spec in zip(config.layer_topology_specs(), config.layer_specs(n_inputs), strict=True)
    ]  # fmt: skip


class SparseMLP(nn.Module):
    """Flattened input (T·F) → sparse hidden layers (ReLU) → dense linear classifier.

    Input ``(B, T, F)`` is flattened row-major into ``(B, T·F)`` (as :class:`FeedForwardNet`); output logits
    ``(B, n_classes)``. Modules: ``layers`` (one :class:`SparseLinear` per hidden layer, input → hidden[0] →
    ... → hidden[-1]) and ``readout`` (``nn.Linear`` with its default initialisation U(±1/sqrt(n_in)) drawn
    from the weight seed).
    """

    def __init__(self, config: SparseMLPConfig, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        if n_inputs < 1:
            raise ValueError(f"n_inputs (features per step) must be >= 1, got {n_inputs}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        config.validate(n_inputs)
        self.config = config
        self.n_inputs, self.n_classes = n_inputs, n_classes
        self.n_flat = config.n_steps * n_inputs
        g_conn = torch.Generator().manual_seed(config.connectivity_seed)
        g_weight = torch.Generator().manual_seed(config.weight_seed)
        self.layers = nn.ModuleList(
            SparseLinear(conn, init=config.init, backend=config.backend, generator=g_weight)  # type: ignore[arg-type]
            for conn in sparse_mlp_connectivities(config, n_inputs, g_conn)
        )
        n_last = config.hidden[-1]
        self.readout = nn.Linear(n_last, n_classes)
        bound = 1.0 / math.sqrt(n_last)
        with torch.no_grad():
            self.readout.weight.copy_((torch.rand(n_classes, n_last, generator=g_weight) * 2 - 1) * bound)
            self.readout.bias.copy_((torch.rand(n_classes, generator=g_weight) * 2 - 1) * bound)
        self._act = torch.relu if config.activation == "relu" else torch.tanh

    def forward(self, x: Tensor) -> Tensor:
        """x ``(B, T, F)`` → logits ``(B, n_classes)``."""
        return self.readout(self.hidden(x))

    def hidden(self, x: Tensor, *, all_steps: bool = False) -> Tensor:
        """What the readout sees: the last hidden layer's activations ``(B, hidden[-1])`` for x ``(B, T, F)``
        (the interface of the representation analyses). ``all_steps`` does not apply: the MLP reads the whole
        sequence at once."""
        if all_steps:
            raise ValueError("the sparse MLP has no time steps: call hidden(x) without all_steps")
        if x.dim() != 3 or x.shape[1] != self.config.n_steps or x.shape[2] != self.n_inputs:
            raise ValueError(
                f"input must be (B, {self.config.n_steps}, {self.n_inputs}), got {tuple(x.shape)}; the model "
                "was built for that sequence shape (SparseMLPConfig.n_steps, n_inputs)"
            )
        h = x.reshape(x.shape[0], self.n_flat)
        for layer in self.layers:
            h = self._act(layer(h))
        return h

    def parameter_counts(self) -> dict[str, Any]:
        """Trainable values by part, counting only active synapses: ``hidden_synapses`` (all sparse
        matrices) and ``hidden_synapses_per_layer``, ``hidden_possible`` (n_out · n_in summed),
        ``hidden_bias``, ``classifier`` (weights + biases), ``total``, ``density`` (synapses / possible) and
        ``stored`` (what the parameters allocate: masked dense keeps every position)."""
        per_layer = [layer.nnz for layer in self.layers]
        out: dict[str, Any] = {
            "hidden_synapses": sum(per_layer),
            "hidden_synapses_per_layer": per_layer,
            "hidden_possible": sum(layer.in_features * layer.out_features for layer in self.layers),
            "hidden_bias": sum(layer.out_features for layer in self.layers),
            "classifier": self.readout.weight.numel() + self.readout.bias.numel(),
        }
        out["total"] = out["hidden_synapses"] + out["hidden_bias"] + out["classifier"]
        out["density"] = out["hidden_synapses"] / out["hidden_possible"]
        out["stored"] = sum(p.numel() for p in self.parameters())
        return out

    def describe(self) -> dict:
        """Plain-data summary: config, input/classes, layer widths and the parameter counts."""
        return {
            **asdict(self.config),
            "n_inputs": self.n_inputs,
            "n_classes": self.n_classes,
            "widths": list(self.config.widths(self.n_inputs)),
            "parameters": self.parameter_counts(),
        }


@MODELS.register("sparse_mlp")
def build_sparse_mlp(config: SparseMLPConfig, n_inputs: int, n_classes: int) -> SparseMLP:
    """Factory for :class:`SparseMLP` (registry name ``"sparse_mlp"``)."""
    return SparseMLP(config, n_inputs, n_classes)
