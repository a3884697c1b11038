"""What a model will allocate, described from its configuration alone (nothing is built or drawn).

Every registered model's config class has a ``memory_layout(n_inputs, n_classes) -> ModelLayout`` hook beside
the model (``CortexRNNConfig.memory_layout``, ...); :func:`model_layout` reaches it by registry name. A layout
lists

* every sparse weight (:class:`SparseWeightLayout`): its name as :func:`cortexnet.layers.sparse_weights`
  gives it, shape, the expected number of stored synapses (:func:`expected_links`: exact, an expectation, or
  a bound — ``count`` says which), the topology that draws it, Dale mode and configured backend;
* the dense parameters (input weights, readouts, biases, convolutions) and the buffers outside the sparse
  weights (E/I identities);
* the forward pass as :class:`Stage` s in order (what the activation / BPTT term of
  :func:`cortexnet.training.memory.estimate_training_memory` walks), and the sequence length T when the
  configuration fixes it.

The byte formulas of the backends, optimisers and autograd live with training
(:mod:`cortexnet.training.memory`): a layout states facts about the model, not about where it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from cortexnet.connectivity import TOPOLOGIES, LayerSpec, rounded_count
from cortexnet.connectivity.base import drops_diagonal, possible_links
from cortexnet.connectivity.budget import erk_counts
from cortexnet.models.registry import MODEL_CONFIGS, MODELS

#: How a synapse count is known (``SparseWeightLayout.count``).
COUNT_KINDS: tuple[str, ...] = ("exact", "expected", "density", "dense bound")

#: Stage kinds of :class:`Stage`.
STAGE_KINDS: tuple[str, ...] = ("dense", "sparse", "recurrent", "patch")


@dataclass(frozen=True)
class SparseWeightLayout:
    """One sparse weight of a model, described before it exists.

    Attributes:
        name: its name in :func:`cortexnet.layers.sparse_weights` (e.g. ``"recurrent.rec"``).
        n_out, n_in: shape (rows postsynaptic).
        synapses: stored (trainable) synapses: exact, or the expectation of a Bernoulli draw (see ``count``).
        count: how ``synapses`` is known — ``"exact"`` (the generator places exactly this many),
            ``"expected"`` (mean of independent draws; the realised count differs by ~sqrt),
            ``"density"`` (a topology without a known count: round(density · possible), an estimate) or
            ``"dense bound"`` (no density either: every possible pair, an upper bound).
        topology: the registered generator that draws the mask.
        drawn: synapses of the drawn mask (differs from ``synapses`` only for sparse-to-dense training, where
            the drawn mask initialises a fully connected trainable set).
        exact_draw: the generator was asked for an exact count (ER/G2G then sort per row: a larger build peak).
        recurrent: a recurrent (square, one node set) weight, run by the whole-sequence recurrence.
        dale: ``"none"``, ``"clip"`` or ``"abs"`` (the sparse weight's Dale mode).
        backend: the configured backend name (``"auto"``, ``"masked_dense"``, ``"csr"``, ...).
    """

    name: str
    n_out: int
    n_in: int
    synapses: float
    count: str
    topology: str
    drawn: float
    exact_draw: bool
    recurrent: bool
    dale: str
    backend: str

    @property
    def possible(self) -> int:
        """n_out · n_in: what a dense store of this weight holds."""
        return self.n_out * self.n_in


@dataclass(frozen=True)
class Stage:
    """One step of the forward pass, in order, per sample.

    Attributes:
        kind: ``"dense"`` (``nn.Linear``), ``"sparse"`` (:class:`~cortexnet.layers.SparseLinear`),
            ``"recurrent"`` (:class:`~cortexnet.layers.RecurrentLayer`: ``n_in`` = F inputs per step,
            ``n_out`` = N nodes, over T steps) or ``"patch"`` (:class:`~cortexnet.layers.PatchEmbedding`:
            ``n_in`` = C·H·W pixels, ``n_out`` = embedding width).
        n_in, n_out: features per sample (per step for ``"recurrent"``).
        weight: the :class:`SparseWeightLayout` name for ``"sparse"`` / ``"recurrent"``.
        activation: an element-wise activation follows (its output is kept for the backward pass).
        input_grad: the stage's input carries a gradient (False for the first layer after the data).
        leaky: ``"recurrent"`` only: α ≠ 1 (the kernels then keep the rates beside the states).
        noise: ``"recurrent"`` only: recurrent noise is drawn in training (a noise tensor and a new drive).
        per_step: ``"dense"`` only: applied at every step of the previous stage's ``(B, T, n_in)`` states (a
            per-step readout, scored against ``(B, T)`` targets); its input is then a copy of the states.
    """

    kind: str
    n_in: int
    n_out: int
    weight: str | None = None
    activation: bool = False
    input_grad: bool = True
    leaky: bool = False
    noise: bool = False
    per_step: bool = False


@dataclass(frozen=True)
class ModelLayout:
    """Everything :mod:`cortexnet.training.memory` needs to know about a model, from its configuration.

    Attributes:
        model: registry name.
        weights: the sparse weights, in build order.
        dense: ``(name, numel)`` of every dense float parameter (one entry per ``nn.Parameter``).
        buffers: ``(name, bytes)`` of the buffers outside the sparse weights (e.g. bool E/I identities).
        stages: the forward pass (:class:`Stage`), in order.
        n_steps: the sequence length T the configuration fixes (feed-forward models flatten (T, F)), or None
            when the model takes any T (the recurrent network: T comes from the data).
        n_inputs, n_classes: F per step and the classes the layout was made for.
    """

    model: str
    weights: tuple[SparseWeightLayout, ...]
    dense: tuple[tuple[str, int], ...]
    buffers: tuple[tuple[str, int], ...]
    stages: tuple[Stage, ...]
    n_steps: int | None
    n_inputs: int
    n_classes: int

    def weight(self, name: str) -> SparseWeightLayout:
        """The sparse weight called ``name`` (``KeyError`` listing the names otherwise)."""
        for w in self.weights:
            if w.name == name:
                return w
        raise KeyError(f"no sparse weight {name!r}; this layout has {[w.name for w in self.weights]}")


def model_layout(name: str, config: Any, n_inputs: int, n_classes: int) -> ModelLayout:
    """The :class:`ModelLayout` of the registered model ``name`` with ``config`` (its dataclass, or a plain dict
    of its fields) for ``n_inputs`` features per step and ``n_classes`` classes, without building anything.

    Calls the config class's ``memory_layout(n_inputs, n_classes)`` hook. Raises ``KeyError`` for an
    unregistered name and ``NotImplementedError`` for a registered model whose config class has no hook.
    """
    MODELS.get(name)  # KeyError listing the known models
    cls = MODEL_CONFIGS.get(name)
    if isinstance(config, Mapping):
        if cls is None:
            raise NotImplementedError(
                f"model {name!r} has no config class in MODEL_CONFIGS to read a dict into"
            )
        config = cls(**config)
    hook = getattr(config, "memory_layout", None)
    if hook is None:
        raise NotImplementedError(
            f"model {name!r} ({type(config).__name__}) cannot describe its memory: add a "
            "memory_layout(n_inputs, n_classes) -> ModelLayout method to its config class "
            "(cortexnet.models.memory)"
        )
    return hook(n_inputs, n_classes)


# -- expected synapse counts of the registered topologies ------------------------------------------------------
def _density(spec: LayerSpec, params: Mapping[str, Any]) -> float | None:
    p = params.get("p")
    return float(p) if p is not None else spec.density


def _possible(spec: LayerSpec, params: Mapping[str, Any]) -> int:
    return possible_links(spec.n_out, spec.n_in, drops_diagonal(spec, params.get("self_connections")))


def _exact_or_expected(p: float, possible: int, exact: bool) -> tuple[float, str]:
    return (float(rounded_count(p, possible)), "exact") if exact else (p * possible, "expected")


def _er_links(spec: LayerSpec, params: Mapping[str, Any]) -> tuple[float, str]:
    # ``er``, er.py:128-139: p ← spec.density; Bernoulli(p) per allowed pair, or exactly round(p · possible).
    p = _density(spec, params)
    exact = params.get("exact")
    return _exact_or_expected(float(p), _possible(spec, params), spec.exact if exact is None else bool(exact))


def _full_links(spec: LayerSpec, params: Mapping[str, Any]) -> tuple[float, str]:
    return float(_possible(spec, params)), "exact"  # ``full``, er.py:153-160


def _erk_links(spec: LayerSpec, params: Mapping[str, Any]) -> tuple[float, str]:
    # ``erk``, budget.py:176-180: this weight's share of the model's ERK budget (exact integer counts).
    sizes = [a * b for a, b in spec.shapes]
    sizes[spec.index] = _possible(spec, params)
    p = float(_density(spec, params))
    counts = erk_counts(spec.shapes, p, dense_first=bool(params.get("dense_first", False)), possible=sizes)
    return float(counts[spec.index]), "exact"


def group_sizes(n: int, groups: int, grouping: str, layer: int = 0) -> list[int]:
    """Members of each group of :func:`cortexnet.connectivity.g2g.group_assignment`, in O(G) (no ``(n,)``
    tensor): ``"index"`` blocks floor(l·G/n) hold ceil((g+1)·n/G) - ceil(g·n/G), ``"interleaved"`` l mod G
    holds ceil((n - g)/G); ``"mixer"`` alternates them by layer parity; ``"random"`` permutes the index blocks'
    members, so its sizes are the index ones."""
    if grouping == "mixer":
        grouping = "index" if layer % 2 == 0 else "interleaved"
    if grouping == "interleaved":
        return [(n - g + groups - 1) // groups for g in range(groups)]
    return [-(-(g + 1) * n // groups) + (-(g * n) // groups) for g in range(groups)]


def _g2g_links(spec: LayerSpec, params: Mapping[str, Any]) -> tuple[float, str]:
    # ``g2g``, g2g.py:347-386, with g2g_edge_count / pathway_pair_counts: p·intra + p'·inter pairs of its groups (or
    # round(p·intra) + round(p'·inter) with exact), intra = Σ_g |out_g|·|in_g|, less n without the diagonal.
    p = params.get("p")
    p = (spec.density if spec.density is not None else 1.0) if p is None else float(p)
    p_inter = float(params.get("p_inter", 0.15))
    recurrent = spec.recurrent if params.get("recurrent") is None else bool(params["recurrent"])
    exact = spec.exact if params.get("exact") is None else bool(params["exact"])
    out_g, in_g = params.get("out_groups"), params.get("in_groups")
    if out_g is None and in_g is None:
        groups, grouping = int(params.get("groups", 8)), str(params.get("grouping", "mixer"))
        number = spec.index if params.get("layer") is None else int(params["layer"])
        b = group_sizes(spec.n_in, groups, grouping, number)
        a = b if recurrent else group_sizes(spec.n_out, groups, grouping, number + 1)
    else:
        out_t = torch.as_tensor(out_g if out_g is not None else in_g).to(torch.int64)
        in_t = torch.as_tensor(in_g if in_g is not None else out_g).to(torch.int64)
        n_groups = int(max(out_t.max(), in_t.max())) + 1
        a = torch.bincount(out_t, minlength=n_groups).tolist()
        b = torch.bincount(in_t, minlength=n_groups).tolist()
    intra = sum(x * y for x, y in zip(a, b, strict=True))
    inter = spec.n_out * spec.n_in - intra
    self_conn = (
        spec.self_connections if params.get("self_connections") is None else params["self_connections"]
    )
    if recurrent and not self_conn:
        intra -= spec.n_out
    if exact:
        return float(rounded_count(p, intra) + rounded_count(p_inter, inter)), "exact"
    return p * intra + p_inter * inter, "expected"


def _rounded_density_links(spec: LayerSpec, params: Mapping[str, Any]) -> tuple[float, str]:
    # lattice.py:75, 362, 451, 584 (bsw, brf, dnm); scale_free.py:415, 467 (bsf); spectral.py:118 (ramanujan);
    # correlation.py:92 (csti); saliency.py:91 (snip, "layer" scope): exactly round(p · possible) links.
    return float(rounded_count(float(_density(spec, params)), _possible(spec, params))), "exact"


def _snip_links(spec: LayerSpec, params: Mapping[str, Any]) -> tuple[float, str]:
    count, kind = _rounded_density_links(spec, params)
    # "global" scope (saliency.py:93-102): this weight's share of one model-wide top-k, known only from the
    # scores; round(p · possible) is then the even share, an estimate.
    return count, kind if params.get("scope", "global") == "layer" else "density"


#: Link counts of the built-in topologies (their docstrings and the lines cited in each function). A
#: generator may declare its own as an attribute ``expected_links(spec, **params) -> (count, kind)``, which
#: wins (the same seam as ``check_params``); these belong with the generators and can move there.
_LINKS: dict[str, Callable[[LayerSpec, Mapping[str, Any]], tuple[float, str]]] = {
    "er": _er_links,
    "full": _full_links,
    "erk": _erk_links,
    "g2g": _g2g_links,
    "bsw": _rounded_density_links,
    "brf": _rounded_density_links,
    "dnm": _rounded_density_links,
    "bsf": _rounded_density_links,
    "ramanujan": _rounded_density_links,
    "csti": _rounded_density_links,
    "snip": _snip_links,
}


def expected_links(topology: str, params: Mapping[str, Any], spec: LayerSpec) -> tuple[float, str]:
    """``(synapses, kind)`` the registered ``topology`` with ``params`` places on the weight ``spec``, without
    drawing it; ``kind`` is one of :data:`COUNT_KINDS` (see :class:`SparseWeightLayout`).

    Known analytically: ``er`` (p · possible, or round(p · possible) with ``exact``), ``full``, ``erk``
    (its exact share), ``g2g`` (p · intra + p' · inter pairs of its groups, or their rounded counts),
    ``bsw``, ``brf``, ``dnm``, ``bsf``, ``ramanujan``, ``csti`` and ``snip`` with ``scope="layer"``
    (exactly round(p · possible)). ``snip`` with its default ``"global"`` scope, and any other (third-party)
    topology, falls back to round(density · possible) from ``p`` or ``spec.density`` — an estimate, kind
    ``"density"`` — or, with no density at all, to every possible pair: an upper bound, kind ``"dense bound"``.
    "possible" excludes the diagonal of a recurrent weight without self-connections.
    """
    gen = TOPOLOGIES.get(topology)
    own = getattr(gen, "expected_links", None)
    if own is not None:
        count, kind = own(spec, **params)
        return float(count), str(kind)
    rule = _LINKS.get(topology)
    if rule is not None:
        return rule(spec, params)
    p = _density(spec, params)
    if p is None:
        return float(_possible(spec, params)), "dense bound"
    return float(rounded_count(float(p), _possible(spec, params))), "density"


def sparse_weight_layout(
    name: str,
    spec: LayerSpec,
    topology: str,
    params: Mapping[str, Any],
    *,
    dale: str,
    backend: str,
    trainable_full: bool = False,
) -> SparseWeightLayout:
    """The :class:`SparseWeightLayout` of the weight a model wires with ``make_connectivity(topology, spec,
    **params)``. ``trainable_full``: the trainable set is every allowed pair and the drawn mask only
    initialises it (CortexRNN's sparse-to-dense)."""
    drawn, kind = expected_links(topology, params, spec)
    exact = params.get("exact")
    exact_draw = (spec.exact if exact is None else bool(exact)) or topology == "erk"
    synapses = drawn
    if trainable_full:
        synapses, kind = float(possible_links(spec.n_out, spec.n_in, drops_diagonal(spec, None))), "exact"
    return SparseWeightLayout(
        name=name,
        n_out=spec.n_out,
        n_in=spec.n_in,
        synapses=synapses,
        count=kind,
        topology=topology,
        drawn=drawn,
        exact_draw=exact_draw,
        recurrent=spec.recurrent,
        dale=dale,
        backend=backend,
    )


def linear_params(name: str, n_in: int, n_out: int, *, bias: bool = True) -> list[tuple[str, int]]:
    """``(name, numel)`` of an ``nn.Linear(n_in, n_out)``'s weight and bias."""
    out = [(f"{name}.weight", n_out * n_in)]
    return [*out, (f"{name}.bias", n_out)] if bias else out
