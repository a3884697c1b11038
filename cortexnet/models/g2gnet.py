"""G2GNet (Konstantaropoulos, Smyrnakis & Papadopouli, "Neuro-inspired Ensemble-to-Ensemble Communication
Primitives for Sparse and Efficient ANNs", seed 000) and the baselines of its Table I.

Architecture (§IV-A): the image is cut into 16 patches, one convolution with 32 output channels is applied to each
patch independently, the patch embeddings are concatenated and passed through three hidden layers of 1024 ReLU
units whose weight matrices have group-to-group (G2G) connectivity (p = 1, p' = 0.15, G = 8, mixer grouping); a
linear classifier gives the logits. Trained with Adam, lr 1e-3, 20 epochs.

Baselines (Table I), all the same model class with another ``connectivity``:

* ``"full"`` with the same widths — "Fully-Connected v2";
* ``"full"`` with the width from :func:`matched_fc_width` — "Fully-Connected v1", same number of parameters;
* ``"er"`` — Erdős–Rényi sparse layers with, layer by layer, the same number of edges as the G2G layers.

Parameter counting (Table I: G2GNet and ER 806,100, FC v1 806,400, FC v2 3,150,000). Those numbers are the
weights of three 1024 × 1024 hidden matrices and nothing else: 3 · 1024² = 3,145,728 ≈ 3.15 M (FC v2) and
3 · 1024² · (1/8 + 0.15 · 7/8) = 806,092.8 ≈ 806,100 (G2G: the expected active weights, masked-off weights not
counted); conv, biases and classifier are excluded, and a 1024-wide input to the first G2G matrix is implied.
The text's front end (16 patches × 32 channels) is 512 wide, so with the stated defaults the same convention
gives 0.25625 · (512 · 1024 + 2 · 1024²) = 671,744.0 — see :func:`g2gnet_parameter_budget`, whose
``"hidden_synapses"`` is the Table I convention and ``"total"`` counts every trainable value that exists
(active weights only). ``patch_channels=64`` (16 × 64 = 1024) reproduces the Table I count.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, replace
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
    rounded_count,
)
from cortexnet.connectivity.g2g import (
    GROUPINGS,
    check_pathway_probabilities,
    g2g_edge_count,
    group_assignment,
)
from cortexnet.layers import SPARSE_LINEAR_INITS, PatchEmbedding, SparseLinear, rows_to_images
from cortexnet.models.registry import MODELS
from cortexnet.sparse import ACTIVATIONS, BACKENDS

#: Hidden-layer connectivities of :class:`G2GNet`.
G2G_CONNECTIVITIES: tuple[str, ...] = ("g2g", "er", "full")


def image_geometry_from_rows(
    n_steps: int, n_inputs: int, channels: int | None = None
) -> tuple[int, int, int]:
    """``(C, H, W)`` of images that cortexnet's row encoding turned into ``(T, F)`` sequences.

    Rows are time steps, so H = T; a step holds C channel-blocked rows of W pixels, so F = C · W (MNIST-like
    grey images: C = 1, T × F = H × W; CIFAR: 32 steps × 96 = 3 · 32 inputs). ``channels=None`` assumes square
    images (W = H) and infers C = F / T.

    Raises ``ValueError`` when the sequence cannot be an image of that kind (e.g. EEG, F = 1 per step).
    """
    if n_steps < 1 or n_inputs < 1:
        raise ValueError(f"sequence shape must be positive, got T={n_steps}, F={n_inputs}")
    if channels is None:
        if n_inputs % n_steps:
            raise ValueError(
                f"cannot read {n_steps} steps x {n_inputs} inputs as square images (F must be a multiple of T); "
                "G2GNet needs an image dataset, or pass the channel count explicitly"
            )
        channels = n_inputs // n_steps
    if channels < 1 or n_inputs % channels:
        raise ValueError(f"{channels} channels do not divide the {n_inputs} inputs per step")
    return channels, n_steps, n_inputs // channels


@dataclass(frozen=True)
class G2GNetConfig:
    """Everything that defines a G2GNet (or a Table I baseline); saved in every checkpoint.

    Attributes:
        image_channels, image_height, image_width: C, H, W of the images (see :func:`image_geometry_from_rows`);
            the model reads ``(B, T = H, F = C · W)`` row sequences. Default: CIFAR-10 (3, 32, 32).
        patches_per_side: g; the image is cut into g × g patches (paper: 16 patches, g = 4); g divides H and W.
        patch_channels: output channels of the per-patch convolution (paper: 32); the embedding is g² times wider.
        hidden: hidden layer widths (paper: three layers of 1024).
        activation: hidden activation, "relu" (paper) or "tanh".
        connectivity: hidden weight matrices: "g2g" (G2GNet), "er" (Erdős–Rényi), "full" (dense baselines).
        p: intra-pathway probability in [0, 1] (paper: 1).
        p_inter: inter-pathway probability p' in [0, p] (paper: 0.15; Fig. 4A sweeps it); p' > p is rejected (the
            G2G definition: intra-pathway denser), p' = p is Erdős–Rényi at density p.
        groups: G per layer, in [1, narrowest layer] (paper: 8).
        grouping: "mixer" (paper), "index", "interleaved" or "random"; layer 0 is the embedding.
        er_density: "er" only — connection probability of every hidden matrix; None (default) matches the G2G
            matrices built from (p, p_inter, groups, grouping) edge count for edge count, layer by layer.
        exact_edges: place exactly the rounded expected number of edges per pathway class (G2G) or per matrix
            (ER), so that G2G and matched ER have identical counts (default True); False: Bernoulli per pair.
        topology: None (default): the hidden matrices follow ``connectivity`` and the fields above. Otherwise any
            registered topology (:data:`cortexnet.connectivity.TOPOLOGIES`) for every hidden matrix, with
            ``topology_params`` (e.g. ``"er"`` with ``{"p": 0.25}``); ``connectivity``, ``p``, ``p_inter``,
            ``groups``, ``grouping`` and ``er_density`` then do not apply. Each matrix gets a feed-forward layer
            description (index i joins layer i to i + 1, ``exact = exact_edges``).
        topology_params: keyword parameters of ``topology`` for every hidden matrix.
        layer_topologies: per-matrix overrides, empty or one dict per hidden matrix: ``{"topology": name,
            **params}`` replaces that matrix's topology and parameters, ``{**params}`` (no "topology") updates
            its parameters; ``{}`` keeps it.
        init: hidden-weight initialisation, one of :data:`cortexnet.layers.SPARSE_LINEAR_INITS`.
        backend: sparse-weight backend name (registry ``cortexnet.sparse.BACKENDS``); default ``"auto"``
            (masked dense for small layers, < 65,536 possible synapses; otherwise decided from the size, density
            and the training runner's batch-size / device hints, see :mod:`cortexnet.sparse.auto`).
        connectivity_seed: seed of the masks (and of random grouping).
        weight_seed: seed of every initial weight.
    """

    image_channels: int = 3
    image_height: int = 32
    image_width: int = 32
    patches_per_side: int = 4
    patch_channels: int = 32
    hidden: tuple[int, ...] = (1024, 1024, 1024)
    activation: str = "relu"
    connectivity: str = "g2g"
    p: float = 1.0
    p_inter: float = 0.15
    groups: int = 8
    grouping: str = "mixer"
    er_density: float | None = None
    exact_edges: bool = True
    topology: str | None = None
    topology_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    layer_topologies: tuple[dict[str, Any], ...] = ()
    init: str = "dense_fan_in"
    backend: str = "auto"
    connectivity_seed: int = 0
    weight_seed: int = 0

    def __post_init__(self) -> None:
        # Saved configs come back from JSON with lists.
        object.__setattr__(self, "hidden", tuple(self.hidden))  # values checked in validate (2.5 is no width)
        object.__setattr__(self, "layer_topologies", tuple(dict(d) for d in self.layer_topologies))

    @property
    def embed_width(self) -> int:
        """Width of the concatenated patch embeddings: g² · patch_channels."""
        return self.patches_per_side**2 * self.patch_channels

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths from the embedding (layer 0) to the last hidden layer."""
        return (self.embed_width, *self.hidden)

    def validate(self) -> G2GNetConfig:
        """Raise ``ValueError`` naming the bad field, its allowed range and the fix; return self."""
        check_fields(self)  # types, integral ints, finite floats: before any range check
        if min(self.image_channels, self.image_height, self.image_width) < 1:
            raise ValueError(
                f"image geometry must be positive, got C={self.image_channels}, H={self.image_height}, "
                f"W={self.image_width}"
            )
        g = self.patches_per_side
        if g < 1 or self.image_height % g or self.image_width % g:
            raise ValueError(
                f"patches_per_side must be >= 1 and divide the image height {self.image_height} and width "
                f"{self.image_width}, got {g}"
            )
        if self.patch_channels < 1:
            raise ValueError(f"patch_channels must be >= 1, got {self.patch_channels}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden needs at least one layer width, each >= 1, got {list(self.hidden)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.topology is None:  # the Table I wiring's fields apply only without a topology
            self._validate_table1()
        self._validate_topologies()
        if self.init not in SPARSE_LINEAR_INITS:
            raise ValueError(f"init must be one of {SPARSE_LINEAR_INITS}, got {self.init!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        return self

    def _validate_table1(self) -> None:
        """The fields of the Table I wiring (``connectivity``, p, p', G, grouping, er_density)."""
        if self.connectivity not in G2G_CONNECTIVITIES:
            raise ValueError(f"connectivity must be one of {G2G_CONNECTIVITIES}, got {self.connectivity!r}")
        for name in ("p", "p_inter"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.connectivity == "g2g" or (self.connectivity == "er" and self.er_density is None):
            check_pathway_probabilities(
                self.p, self.p_inter
            )  # p and p' define these masks (or their density)
        if self.connectivity != "full" and not 1 <= self.groups <= min(self.widths):
            raise ValueError(
                f"groups must be in [1, {min(self.widths)}] (the narrowest layer), got {self.groups}"
            )
        if self.grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {GROUPINGS}, got {self.grouping!r}")
        if self.er_density is not None and not 0.0 < self.er_density <= 1.0:
            raise ValueError(f"er_density must be in (0, 1] or None (match G2G), got {self.er_density}")

    def _validate_topologies(self) -> None:
        check_layer_overrides(self.layer_topologies, len(self.hidden), "hidden matrix")
        if self.topology is not None and self.topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {self.topology!r}; known: {', '.join(TOPOLOGIES.names())}")
        if self.topology is None and not self.layer_topologies:
            return
        for i, ((name, params), spec) in enumerate(
            zip(self.layer_topology_specs(), self.layer_specs(), strict=True)
        ):
            try:
                check_topology_params(name, params, fixed=("recurrent",), spec=spec)
            except ValueError as exc:
                raise ValueError(f"hidden matrix {i}: {exc}") from None

    def layer_topology_specs(
        self, counts: list[float | int] | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """``(topology name, parameters)`` of every hidden matrix, overrides applied. Without ``topology`` the
        Table I kinds: ``"g2g"`` (p, p', G, grouping), ``"full"``, and ``"er"`` at ``er_density`` or, edge
        count for edge count, at the G2G matrices' ``counts`` (computed when not given)."""
        n = len(self.hidden)
        if self.topology is not None:
            specs = [(self.topology, dict(self.topology_params)) for _ in range(n)]
        elif self.connectivity == "g2g":
            g2g = {"p": self.p, "p_inter": self.p_inter, "groups": self.groups, "grouping": self.grouping}
            specs = [("g2g", dict(g2g)) for _ in range(n)]
        elif self.connectivity == "full":
            specs = [("full", {}) for _ in range(n)]
        else:
            widths = self.widths
            if self.er_density is None and counts is None:
                # Random grouping only permutes balanced group sizes, which is all the counts depend on.
                counts = _g2g_counts(self, self.layer_groups(torch.Generator().manual_seed(0)))
            specs = [
                (
                    "er",
                    {
                        "p": self.er_density
                        if self.er_density is not None
                        else counts[i] / (widths[i + 1] * widths[i])
                    },
                )
                for i in range(n)
            ]
        return apply_layer_overrides(specs, self.layer_topologies)

    def layer_specs(self) -> list[LayerSpec]:
        """The layer description of every hidden matrix (one ``shared`` dict for the whole model)."""
        widths, shared = self.widths, {}
        shapes = tuple((widths[i + 1], widths[i]) for i in range(len(self.hidden)))
        return [
            LayerSpec(*shape, recurrent=False, index=i, shapes=shapes, exact=self.exact_edges, shared=shared,
                      name=f"layers.{i}.sparse")
            for i, shape in enumerate(shapes)
        ]  # fmt: skip

    def uses_table1_masks(self) -> bool:
        """Whether the hidden matrices are the Table I kinds of ``connectivity`` (no topology, no override)."""
        return self.topology is None and not self.layer_topologies

    def memory_layout(self, n_inputs: int, n_classes: int) -> Any:
        """What :class:`G2GNet` allocates, without building it (:class:`cortexnet.models.memory.ModelLayout`):
        the patch convolution, one sparse ``layers.{i}.sparse`` per hidden matrix (expected counts from each
        matrix's topology: the Table I kinds through :meth:`layer_topology_specs`, whose edge-matched ER reads
        the G2G counts without drawing a mask) with its bias and bool E/I buffer, and the classifier;
        T = ``image_height``."""
        from cortexnet.models.memory import ModelLayout, Stage, linear_params, sparse_weight_layout

        self.validate()
        if n_inputs != self.image_channels * self.image_width:
            raise ValueError(
                f"n_inputs {n_inputs} per step does not match images of C={self.image_channels} x "
                f"W={self.image_width} (F = C·W)"
            )
        specs = self.layer_specs()
        weights = tuple(
            sparse_weight_layout(spec.name, spec, name, params, dale="none", backend=self.backend)
            for (name, params), spec in zip(self.layer_topology_specs(), specs, strict=True)
        )
        g = self.patches_per_side
        ph, pw = self.image_height // g, self.image_width // g
        n_last = self.hidden[-1]
        pixels = self.image_channels * self.image_height * self.image_width
        return ModelLayout(
            model="g2gnet",
            weights=weights,
            dense=(
                ("embed.conv.weight", self.patch_channels * self.image_channels * ph * pw),
                ("embed.conv.bias", self.patch_channels),
                *((f"layers.{i}.bias", s.n_out) for i, s in enumerate(specs)),
                *linear_params("readout", n_last, n_classes),
            ),
            buffers=tuple((f"layers.{i}.inhibitory", s.n_in) for i, s in enumerate(specs)),
            stages=(
                Stage("patch", pixels, self.embed_width, input_grad=False),
                *(Stage("sparse", s.n_in, s.n_out, weight=s.name, activation=True) for s in specs),
                Stage("dense", n_last, n_classes),
            ),
            n_steps=self.image_height,
            n_inputs=n_inputs,
            n_classes=n_classes,
        )

    def layer_groups(self, generator: torch.Generator) -> list[Tensor]:
        """Group ids of every layer (embedding first), one assignment per layer shared by the two matrices
        that touch it; ``"random"`` grouping draws them from ``generator`` in layer order."""
        return [
            group_assignment(n, self.groups, self.grouping, layer=i, generator=generator)
            for i, n in enumerate(self.widths)
        ]


def _g2g_counts(config: G2GNetConfig, groups: list[Tensor]) -> list[float | int]:
    """Edges of each G2G hidden matrix (exact count, or the expectation when not ``exact_edges``)."""
    return [
        g2g_edge_count(groups[i + 1], groups[i], p=config.p, p_inter=config.p_inter, exact=config.exact_edges)
        for i in range(len(config.hidden))
    ]


def g2gnet_parameter_budget(config: G2GNetConfig, n_classes: int) -> dict[str, Any]:
    """Parameter counts of a G2GNet configuration, computed without building it.

    Returns a dict of ``embedding`` (conv weights + biases), ``hidden_synapses`` (active hidden weights — the
    convention of the paper's Table I), ``hidden_synapses_per_layer``, ``hidden_possible`` (n_out · n_in summed),
    ``hidden_bias``, ``classifier``, ``total`` (every trainable value that exists; masked-off weights excluded)
    and ``density`` (hidden_synapses / hidden_possible). Counts are exact integers with ``exact_edges``, and
    expectations (floats) for Bernoulli G2G / ER masks. A built model reports the same numbers in
    :meth:`G2GNet.parameter_counts` (exactly so with ``exact_edges``).
    """
    config.validate()
    widths = config.widths
    ph, pw = config.image_height // config.patches_per_side, config.image_width // config.patches_per_side
    possible = [widths[i + 1] * widths[i] for i in range(len(config.hidden))]
    if not config.uses_table1_masks():
        # Any other topology: the realised counts of the masks this configuration builds (its seed).
        synapses: list[float | int] = [c.nnz for c in hidden_connectivities(config)]
    elif config.connectivity == "full":
        synapses = list(possible)
    elif config.connectivity == "er" and config.er_density is not None:
        synapses = [
            rounded_count(config.er_density, m) if config.exact_edges else config.er_density * m
            for m in possible
        ]
    else:
        # Random grouping only permutes balanced group sizes, which is all the counts depend on.
        synapses = _g2g_counts(config, config.layer_groups(torch.Generator().manual_seed(0)))
    out: dict[str, Any] = {
        "embedding": config.image_channels * ph * pw * config.patch_channels + config.patch_channels,
        "hidden_synapses": sum(synapses),
        "hidden_synapses_per_layer": synapses,
        "hidden_possible": sum(possible),
        "hidden_bias": sum(config.hidden),
        "classifier": config.hidden[-1] * n_classes + n_classes,
    }
    out["total"] = out["embedding"] + out["hidden_synapses"] + out["hidden_bias"] + out["classifier"]
    out["density"] = out["hidden_synapses"] / out["hidden_possible"]
    return out


def matched_fc_width(config: G2GNetConfig, n_classes: int) -> int:
    """Width w for "Fully-Connected v1" (Table I): dense hidden layers all of width w whose *total* trainable
    parameter count (embedding, weights, biases, classifier) is closest to ``config``'s (ties: the narrower).
    Matching totals rather than hidden weights only is the fair reading of "same number of parameters"."""
    target = g2gnet_parameter_budget(config, n_classes)["total"]
    best, best_gap = 1, math.inf
    for w in range(1, max(config.hidden) + 1):
        fc = replace(config, connectivity="full", hidden=(w,) * len(config.hidden))
        gap = abs(g2gnet_parameter_budget(fc, n_classes)["total"] - target)
        if gap < best_gap:
            best, best_gap = w, gap
    return best


def hidden_connectivities(
    config: G2GNetConfig, generator: torch.Generator | None = None
) -> list[Connectivity]:
    """The masks of every hidden matrix, drawn in order from ``generator`` (default: a fresh one seeded with
    ``connectivity_seed``): each matrix's (topology, parameters) from :meth:`G2GNetConfig.layer_topology_specs`
    and its :class:`~cortexnet.connectivity.LayerSpec`; no topology is special-cased by name."""
    g = generator if generator is not None else torch.Generator().manual_seed(config.connectivity_seed)
    counts = None
    if config.uses_table1_masks() and config.connectivity == "er" and config.er_density is None:
        # The edge-matched ER baseline counts the edges of the G2G grouping drawn from this generator, as
        # the G2G model does (so "random" grouping consumes the same draws and seeds keep their masks).
        counts = _g2g_counts(config, config.layer_groups(g))
    specs = config.layer_topology_specs(counts)
    return [
        make_connectivity(name, spec, generator=g, **params)
        for (name, params), spec in zip(specs, config.layer_specs(), strict=True)
    ]


class G2GNet(nn.Module):
    """Patch embedding → hidden layers with G2G / ER / dense connectivity (ReLU) → linear classifier.

    Input ``(B, T, F)`` row sequences of images, T = H and F = C · W channel-blocked (cortexnet's encoding; see
    :func:`cortexnet.layers.rows_to_images`); output logits ``(B, n_classes)``. There is no activation between
    the patch convolution and the first hidden matrix (the paper passes the concatenated embeddings on as they
    are). Modules: ``embed`` (:class:`PatchEmbedding`), ``layers`` (one :class:`SparseLinear` per hidden layer)
    and ``readout`` (the linear classifier, a dense ``nn.Linear`` with its default initialisation drawn from the
    weight seed).
    """

    def __init__(self, config: G2GNetConfig, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        config.validate()
        if n_inputs != config.image_channels * config.image_width:
            raise ValueError(
                f"n_inputs {n_inputs} per step does not match images of C={config.image_channels} x "
                f"W={config.image_width} (F = C·W); set image_channels/height/width from the dataset "
                "(image_geometry_from_rows)"
            )
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.config = config
        self.n_inputs, self.n_classes = n_inputs, n_classes
        g_conn = torch.Generator().manual_seed(config.connectivity_seed)
        g_weight = torch.Generator().manual_seed(config.weight_seed)
        self.embed = PatchEmbedding(
            config.image_channels,
            config.image_height,
            config.image_width,
            patches_per_side=config.patches_per_side,
            out_channels=config.patch_channels,
            generator=g_weight,
        )
        self.layers = nn.ModuleList(
            SparseLinear(conn, init=config.init, backend=config.backend, generator=g_weight)  # type: ignore[arg-type]
            for conn in hidden_connectivities(config, g_conn)
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
        h = self.features(x)
        return self.readout(h)

    def hidden(self, x: Tensor, *, all_steps: bool = False) -> Tensor:
        """What the readout (the paper's linear classifier) sees: the last hidden layer's activations
        ``(B, hidden[-1])`` for row sequences x ``(B, T, F)`` — the interface of the representation analyses.
        ``all_steps`` does not apply: G2GNet reads the whole image at once."""
        if all_steps:
            raise ValueError("G2GNet has no time steps: call hidden(x) without all_steps")
        return self.features(x)

    def features(self, x: Tensor) -> Tensor:
        """Last hidden layer's activations ``(B, hidden[-1])`` for row sequences x ``(B, T, F)``."""
        c = self.config
        if x.dim() != 3 or tuple(x.shape[1:]) != (c.image_height, self.n_inputs):
            raise ValueError(
                f"input must be (B, {c.image_height}, {self.n_inputs}) row sequences, got {tuple(x.shape)}"
            )
        h = self.embed(rows_to_images(x, c.image_channels))
        for layer in self.layers:
            h = self._act(layer(h))
        return h

    def parameter_counts(self) -> dict[str, Any]:
        """The realised counts, keyed as :func:`g2gnet_parameter_budget` (which they equal exactly when
        ``exact_edges``), plus ``stored``: what the parameters allocate (masked dense stores every position)."""
        per_layer = [layer.nnz for layer in self.layers]
        out: dict[str, Any] = {
            "embedding": self.embed.parameter_count(),
            "hidden_synapses": sum(per_layer),
            "hidden_synapses_per_layer": per_layer,
            "hidden_possible": sum(layer.in_features * layer.out_features for layer in self.layers),
            "hidden_bias": sum(layer.out_features for layer in self.layers),
            "classifier": self.readout.weight.numel() + self.readout.bias.numel(),
        }
        out["total"] = out["embedding"] + out["hidden_synapses"] + out["hidden_bias"] + out["classifier"]
        out["density"] = out["hidden_synapses"] / out["hidden_possible"]
        out["stored"] = sum(p.numel() for p in self.parameters())
        return out

    def describe(self) -> dict:
        """Plain-data summary: config, input/classes and the parameter counts."""
        return {
            **asdict(self.config),
            "n_inputs": self.n_inputs,
            "n_classes": self.n_classes,
            "parameters": self.parameter_counts(),
        }


@MODELS.register("g2gnet")
def build_g2gnet(config: G2GNetConfig, n_inputs: int, n_classes: int) -> G2GNet:
    """Factory for :class:`G2GNet` (registry name ``"g2gnet"``)."""
    return G2GNet(config, n_inputs, n_classes)
