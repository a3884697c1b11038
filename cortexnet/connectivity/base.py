"""Connectivity as plain data: a boolean adjacency stored in CSR index form, and E/I identities."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cortexnet.registry import Registry

#: Topology generators by name. Each is ``fn(layer: LayerSpec, *, generator, **params) -> Connectivity`` (the
#: topology contract, see :class:`LayerSpec`); ``params`` are the generator's own keyword-only parameters.
TOPOLOGIES: Registry = Registry("topology")


class FromData:
    """The value of a topology parameter that comes from data and is filled in before the model is built.

    A generator lists such parameters in its ``data_params`` attribute (``{name: what it is}``: CSTI's
    ``activity``, SNIP's ``saliency``). Configuration checks accept :data:`FROM_DATA` in their place (the
    experiments validate every option before loading data, then wire the values: see
    ``cortexnet.experiments.common.wire_data_params``); building with it is an error naming the wiring.
    """

    _instance: FromData | None = None

    def __new__(cls) -> FromData:  # one instance, so identity checks survive pickling and copies
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> str:
        return "FROM_DATA"

    def __deepcopy__(self, memo: dict) -> FromData:
        return self

    def __repr__(self) -> str:
        return "FROM_DATA"


#: The placeholder of a data-derived topology parameter (see :class:`FromData`).
FROM_DATA = FromData()


def data_params(name: str) -> dict[str, str]:
    """The data-derived parameters of the registered topology ``name`` (``{parameter: description}``)."""
    return dict(getattr(TOPOLOGIES.get(name), "data_params", {}))


def refuse_from_data(name: str, param: str, value: Any) -> None:
    """Raise ``ValueError`` when a data-derived parameter reaches a generator still as :data:`FROM_DATA`."""
    if value is FROM_DATA:
        raise ValueError(
            f"topology {name!r} parameter {param} is still FROM_DATA: it is filled from the training data before "
            "the build (cortexnet.experiments.common.wire_data_params); pass the real value"
        )


@dataclass(frozen=True, eq=False)
class LayerSpec:
    """What a topology generator is told about the weight it wires (the topology contract).

    A model builds one ``LayerSpec`` per sparse weight and calls ``TOPOLOGIES.get(name)(layer, generator=g,
    **params)``; it never special-cases a topology by name, so every registered generator reaches every layer
    of every model. Generators use what they need and ignore the rest.

    Attributes:
        n_out, n_in: the weight's shape (rows = postsynaptic units, columns = presynaptic units).
        recurrent: True when the weight connects one node set to itself (square; W[i, j] from node j to node
            i): the diagonal are self-connections, and "one grouping", "one ring" etc. apply to both sides.
        index: position of this weight among the model's sparse weights, from 0 (also the number of its
            presynaptic node layer: weight ``index`` joins node layer ``index`` to ``index + 1``).
        shapes: ``(n_out, n_in)`` of every sparse weight of the model, in order (for layer-wise budgets such as
            ERK); defaults to this weight's shape alone.
        density: the model's connection probability for this weight (e.g. ``CortexRNNConfig.p``), the default
            of generators that take a density; None when the model has none.
        self_connections: recurrent weights only: the diagonal may be present (the paper's density excludes it).
        exact: the model asks for exact rounded edge counts instead of independent draws, where it applies.
        inhibitory: bool ``(n_in,)`` E/I identities of the presynaptic units, for generators that declare
            ``uses_identities = True`` (otherwise None: the model draws the identities after the mask, which
            keeps the masks of existing seeds unchanged).
        positions_in, positions_out: optional float ``(n_in, d)`` / ``(n_out, d)`` node coordinates (arbitrary
            units), when the model has them (recurrent: the same tensor on both sides).
        shared: a dict shared by the generator calls of one model build, for state that spans layers (e.g.
            one random group assignment per node layer, used by both weights that touch it).
        name: the weight's name in the model (as :func:`cortexnet.layers.sparse_weights` reports it).
    """

    n_out: int
    n_in: int
    recurrent: bool = False
    index: int = 0
    shapes: tuple[tuple[int, int], ...] = ()
    density: float | None = None
    self_connections: bool = False
    exact: bool = False
    inhibitory: Tensor | None = None
    positions_in: Tensor | None = None
    positions_out: Tensor | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.n_out < 1 or self.n_in < 1:
            raise ValueError(f"layer sizes must be >= 1, got n_out={self.n_out}, n_in={self.n_in}")
        if self.recurrent and self.n_out != self.n_in:
            raise ValueError(f"a recurrent layer must be square, got {self.n_out} x {self.n_in}")
        if not self.shapes:
            object.__setattr__(self, "shapes", ((self.n_out, self.n_in),))
        if not 0 <= self.index < len(self.shapes):
            raise ValueError(f"layer index must be in [0, {len(self.shapes)}), got {self.index}")
        if tuple(self.shapes[self.index]) != (self.n_out, self.n_in):
            raise ValueError(
                f"shapes[{self.index}] = {tuple(self.shapes[self.index])} is not this layer's shape "
                f"{(self.n_out, self.n_in)}"
            )
        if self.inhibitory is not None and self.inhibitory.shape != (self.n_in,):
            raise ValueError(
                f"inhibitory must have shape ({self.n_in},) (one per presynaptic unit), got "
                f"{tuple(self.inhibitory.shape)}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_out, n_in)``."""
        return (self.n_out, self.n_in)

    @property
    def depth(self) -> int:
        """Number of sparse weights in the model."""
        return len(self.shapes)

    @staticmethod
    def of(n_out: int, n_in: int, **fields: Any) -> LayerSpec:
        """A one-weight description; a square matrix is recurrent unless ``recurrent=False`` is given (the
        registry's convention for plain ``make_connectivity(name, n_out, n_in)`` calls)."""
        fields.setdefault("recurrent", n_out == n_in)
        return LayerSpec(n_out, n_in, **fields)


@dataclass(frozen=True, eq=False)
class Connectivity:
    """Who connects to whom in one weight matrix, as data (no parameters, no device logic).

    Entry ``(i, j)`` is the synapse from presynaptic unit ``j`` (input/column) to postsynaptic unit ``i``
    (output/row), matching ``W[i, j]`` in ``y = x Wᵀ``. Stored in CSR index form so that N = 100,000 nodes at
    p = 0.01 (1e8 synapses) costs 0.8 GB of int64 column indices rather than a 10 GB dense boolean mask.

    Attributes:
        n_out: number of rows (postsynaptic units).
        n_in: number of columns (presynaptic units).
        crow: int64 ``(n_out + 1,)`` row pointers; row ``i``'s columns are ``col[crow[i]:crow[i+1]]``.
        col: int64 ``(nnz,)`` column indices, sorted within each row, no duplicates.
    """

    n_out: int
    n_in: int
    crow: Tensor
    col: Tensor

    def __post_init__(self) -> None:
        if self.crow.dtype != torch.int64 or self.col.dtype != torch.int64:
            raise TypeError("Connectivity.crow and .col must be int64 tensors")
        if self.crow.shape != (self.n_out + 1,):
            raise ValueError(f"crow has shape {tuple(self.crow.shape)}, expected ({self.n_out + 1},)")
        if int(self.crow[0]) != 0 or int(self.crow[-1]) != self.col.numel():
            raise ValueError("crow must start at 0 and end at nnz")
        self._check_indices()

    def _check_indices(self) -> None:
        """Row pointers non-decreasing, columns in [0, n_in) and strictly increasing within each row (sorted,
        no duplicate synapse): O(nnz), so a corrupted mask (a checkpoint, a third-party generator) is refused
        before a kernel reads out of bounds or counts a synapse twice."""
        if self.n_out < 0 or self.n_in < 0:
            raise ValueError(f"Connectivity shape must be non-negative, got ({self.n_out}, {self.n_in})")
        if bool((self.crow.diff() < 0).any()):
            raise ValueError(
                "Connectivity.crow must be non-decreasing (row i's synapses are col[crow[i]:crow[i+1]])"
            )
        nnz = self.col.numel()
        if nnz == 0:
            return
        lo, hi = int(self.col.min()), int(self.col.max())
        if lo < 0 or hi >= self.n_in:
            bad = lo if lo < 0 else hi
            raise ValueError(f"Connectivity column index {bad} outside [0, {self.n_in}): the mask is corrupt")
        not_up = self.col[1:] <= self.col[:-1]
        starts = self.crow[1:-1]
        not_up[starts[(starts > 0) & (starts < nnz)] - 1] = False  # the step into a new row may go down
        if bool(not_up.any()):
            raise ValueError(
                "Connectivity columns must be strictly increasing within each row (sorted, no duplicate synapse)"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_out, n_in)``."""
        return (self.n_out, self.n_in)

    @property
    def nnz(self) -> int:
        """Number of synapses (edges)."""
        return int(self.col.numel())

    def density(self, *, exclude_diagonal: bool | None = None) -> float:
        """Edges over possible edges. For square matrices the paper's D = E / (N (N - 1)) by default
        (``exclude_diagonal=None`` excludes the diagonal exactly when no self-connection is present)."""
        possible = self.n_out * self.n_in
        if exclude_diagonal is None:
            exclude_diagonal = self.n_out == self.n_in and not bool(self.diagonal_present().any())
        if exclude_diagonal:
            possible -= min(self.n_out, self.n_in)
        return self.nnz / possible if possible else 0.0

    def rows(self) -> Tensor:
        """int64 ``(nnz,)`` row index of every synapse (COO rows, in CSR order)."""
        counts = self.crow.diff()
        return torch.repeat_interleave(torch.arange(self.n_out, dtype=torch.int64), counts)

    def diagonal_present(self) -> Tensor:
        """bool ``(nnz,)``: which synapses are self-connections (row == column)."""
        return self.rows() == self.col

    def to_dense(self) -> Tensor:
        """bool ``(n_out, n_in)`` mask. Costs n_out * n_in bytes: avoid at very large N."""
        mask = torch.zeros(self.n_out, self.n_in, dtype=torch.bool)
        mask[self.rows(), self.col] = True
        return mask

    @staticmethod
    def from_dense(mask: Tensor) -> Connectivity:
        """From a 2-D boolean (or 0/1) mask ``(n_out, n_in)``."""
        if mask.dim() != 2:
            raise ValueError(f"mask must be 2-D, got shape {tuple(mask.shape)}")
        mask = mask.to(torch.bool).cpu()
        counts = mask.sum(dim=1, dtype=torch.int64)
        crow = torch.zeros(mask.shape[0] + 1, dtype=torch.int64)
        crow[1:] = counts.cumsum(0)
        col = mask.nonzero(as_tuple=True)[1].to(torch.int64)
        return Connectivity(mask.shape[0], mask.shape[1], crow, col)

    @staticmethod
    def full(n_out: int, n_in: int, *, self_connections: bool = True) -> Connectivity:
        """All-to-all connectivity (optionally without the diagonal when square), built directly in index
        form: O(nnz) int64 and no dense mask (the p = 1 and sparse-to-dense cases at N = 20,000+)."""
        drop_diag = not self_connections and n_out == n_in
        per_row = n_in - 1 if drop_diag else n_in
        crow = torch.arange(n_out + 1, dtype=torch.int64) * per_row
        if not drop_diag:
            return Connectivity(n_out, n_in, crow, torch.arange(n_in, dtype=torch.int64).repeat(n_out))
        col = torch.empty(n_out * per_row, dtype=torch.int64)
        base = torch.arange(per_row, dtype=torch.int64)
        chunk = max(1, 4_000_000 // max(per_row, 1))
        for start in range(0, n_out, chunk):
            rows = torch.arange(start, min(n_out, start + chunk), dtype=torch.int64)
            # Row i skips column i: columns >= i shift up by one.
            block = base + (base >= rows[:, None])
            col[start * per_row : (start + rows.numel()) * per_row] = block.reshape(-1)
        return Connectivity(n_out, n_in, crow, col)

    def equals(self, other: Connectivity) -> bool:
        """Same shape and exactly the same synapses."""
        return (
            self.shape == other.shape
            and torch.equal(self.crow, other.crow)
            and torch.equal(self.col, other.col)
        )


def resolve_density(spec: LayerSpec | None, p: float | None, name: str) -> float:
    """``p``, else the layer description's density: what a generator with a density parameter places. Raises
    ``ValueError`` naming the fix when neither is given or the value lies outside [0, 1]."""
    if p is None and spec is not None:
        p = spec.density
    if p is None:
        raise ValueError(
            f"topology {name!r} needs a connection probability: set topology_params p=... in [0, 1] (the model "
            "supplies none)"
        )
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} connection probability p must be in [0, 1], got {p}")
    return float(p)


def check_density(spec: LayerSpec | None, p: float | None, name: str) -> float | None:
    """What a ``check_params`` hook validates: :func:`resolve_density`, or None when neither ``p`` nor a layer
    description is known yet (a hook called without a layer checks only what it is given)."""
    if spec is None and p is None:
        return None
    return resolve_density(spec, p, name)


def drops_diagonal(spec: LayerSpec, self_connections: bool | None) -> bool:
    """True when the diagonal is excluded: a recurrent weight without self-connections (``self_connections``,
    default ``spec.self_connections``). A feed-forward weight has no self-connections to exclude."""
    allow = spec.self_connections if self_connections is None else self_connections
    return spec.recurrent and not allow


def possible_links(n_out: int, n_in: int, drop_diag: bool) -> int:
    """``n_out · n_in``, less the ``n`` diagonal pairs when they are excluded (square, one node set)."""
    return n_out * n_in - (min(n_out, n_in) if drop_diag else 0)


def need_generator(name: str, generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or ``ValueError`` when a random topology was called without one."""
    if generator is None:
        raise ValueError(
            f"topology {name!r} is random: pass an explicit torch.Generator "
            "(generator=torch.Generator().manual_seed(s))"
        )
    return generator


def numpy_rng(generator: torch.Generator | None, name: str) -> np.random.Generator:
    """A NumPy generator seeded by one draw from the explicit torch ``generator`` (same state → same stream)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=need_generator(name, generator)))
    return np.random.default_rng(seed)


def connectivity_from_keys(keys: np.ndarray | Tensor, n_out: int, n_in: int) -> Connectivity:
    """A :class:`Connectivity` from sorted unique int64 keys ``row · n_in + col`` (CSR order), NumPy or CPU torch."""
    keys = keys.numpy() if isinstance(keys, Tensor) else keys
    rows = keys // n_in
    crow = np.zeros(n_out + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_out), out=crow[1:])
    rows *= n_in
    np.subtract(keys, rows, out=rows)  # rows now holds the columns (no second E-sized temporary)
    return Connectivity(n_out, n_in, torch.from_numpy(crow), torch.from_numpy(rows))


def merge_disjoint(a: Tensor, b: Tensor) -> Tensor:
    """Sorted union of two sorted, disjoint int64 CPU tensors: numpy's stable sort (timsort) merges the two runs
    in linear time."""
    out = torch.cat([a, b])
    out.numpy().sort(kind="stable")
    return out


def spread(total: int, n: int) -> Tensor:
    """int64 ``(n,)``: ``total`` split as evenly as possible, ``floor((k+1)·total/n) - floor(k·total/n)``
    (each ⌊total/n⌋ or ⌈total/n⌉, the larger ones evenly spaced, deterministic)."""
    edges = torch.arange(n + 1, dtype=torch.int64) * total // n
    return edges.diff()


def row_top_k(scores: Tensor, counts: Tensor, *, largest: bool) -> Tensor:
    """The columns of the ``counts[i]`` best ``scores`` of every row of ``(rows, n_cols)``, ascending within a
    row and concatenated row by row (CSR order): int64 ``(counts.sum(),)``."""
    k = int(counts.max()) if counts.numel() else 0
    if k == 0:
        return torch.zeros(0, dtype=torch.int64)
    picked = scores.topk(k, dim=1, largest=largest).indices
    valid = torch.arange(k)[None, :] < counts[:, None]
    # Unused slots sort last (n_cols is past every column), then drop out.
    return torch.where(valid, picked, scores.shape[1]).sort(dim=1).values[valid]


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves upwards (Python's ``round`` rounds halves to even)."""
    return math.floor(x + 0.5)


def rounded_count(fraction: float, n: int) -> int:
    """``round(fraction · n)``, halves upwards, computed on the decimal value of ``fraction`` as written
    (``repr``): in binary floating point ``0.145 * 100`` is 14.499999999999998 and would round to 14."""
    return math.floor(Decimal(repr(float(fraction))) * n + Decimal("0.5"))


def assign_inhibitory(n: int, fraction: float, *, generator: torch.Generator) -> Tensor:
    """Choose exactly ``round(fraction * n)`` inhibitory nodes, drawn without replacement.

    Fruengel & Oberlaender 2025 use 11.5 % inhibitory nodes (0.5 as the balanced control). The authors'
    notebook drew indices *with* replacement (10.9 % unique instead of 11.5 %); this does not.

    Args:
        n: number of nodes, ≥ 1.
        fraction: inhibitory fraction in [0, 1]; the count is rounded half up (:func:`rounded_count`).
        generator: explicit source of randomness (CPU ``torch.Generator``).

    Returns:
        bool ``(n,)``: True for inhibitory nodes.
    """
    if n < 1:
        raise ValueError(f"number of nodes must be >= 1, got {n}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"inhibitory fraction must be in [0, 1], got {fraction}")
    n_inh = rounded_count(fraction, n)
    inhibitory = torch.zeros(n, dtype=torch.bool)
    inhibitory[torch.randperm(n, generator=generator)[:n_inh]] = True
    return inhibitory


def dale_signs(inhibitory: Tensor) -> Tensor:
    """float32 ``(n,)``: +1 for excitatory, -1 for inhibitory presynaptic nodes (column signs of W_rec)."""
    return 1.0 - 2.0 * inhibitory.to(torch.float32)
