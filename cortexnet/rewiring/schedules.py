"""When to rewire and how much: update timing, ζ (drop fraction), CHTs temperature, CHTss sparsity, early stop.

Everything here is pure: small frozen dataclasses evaluated as ``schedule(step)`` (or ``schedule(c)`` for the
CHTss update count), plus the stateful :class:`TopologicalEarlyStop`, whose state is a plain dict for
checkpoints. Formulas and readings are from DST.md ("The common loop", "CHTs"); each class names its source.

Step counting (used by every schedule that takes ``step``): ``step`` is the number of optimiser steps taken so
far, so it is 0 before training and 1 right after the first ``optimizer.step()``. The DST update that follows
optimiser step ``step`` happens iff ``step % delta_t == 0`` and ``0 < step <= t_end``: updates at ΔT, 2ΔT, ...,
and exactly ``t_end // delta_t`` of them in a run (75 for T_end = 7500, ΔT = 100). The end is inclusive so that
this count is T_end / ΔT, which is the reading that reproduces the CHTss numbers of DST.md (see
:class:`SigmoidSparsity`). ``step`` and ``t_end`` count optimiser steps, not micro-batches: rescale them under
gradient accumulation.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from cortexnet.registry import Registry

__all__ = [
    "TEMPERATURE_SCHEDULES",
    "ZETA_SCHEDULES",
    "ConstantTemperature",
    "ConstantZeta",
    "CosineZeta",
    "DeltaTemperature",
    "LinearTemperature",
    "SigmoidSparsity",
    "StepSchedule",
    "TopologicalEarlyStop",
    "UpdateTiming",
    "drop_count",
    "is_update_step",
    "make_temperature_schedule",
    "make_zeta_schedule",
    "overlap",
    "update_count",
]

#: ζ schedules by name: ``ZETA_SCHEDULES.get(name)(**params)`` is a :class:`StepSchedule` giving ζ_t.
ZETA_SCHEDULES: Registry = Registry("zeta schedule")
#: CHTs soft-removal temperature schedules by name: ``TEMPERATURE_SCHEDULES.get(name)(**params)`` gives T(t).
TEMPERATURE_SCHEDULES: Registry = Registry("temperature schedule")

# Relative slack for floor() of products such as 0.29 * 100 = 28.999999999999996 (must give 29, not 28).
_FLOOR_RTOL = 1e-9


class StepSchedule(Protocol):
    """Anything evaluated as ``schedule(step) -> float`` with ``step`` counted as in the module docstring."""

    def __call__(self, step: int) -> float: ...


# ---------------------------------------------------------------------------------------------- validation


def _int(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _real(
    value: Any, name: str, *, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False
) -> float:
    """``value`` as a float inside the interval [lo, hi] (ends open as asked); errors name value and range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    lo_ok = value > lo if lo_open else value >= lo
    hi_ok = value < hi if hi_open else value <= hi
    if math.isnan(value) or not (lo_ok and hi_ok):
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return value


def _progress(step: int, t_end: int) -> float:
    """min(step, t_end) / t_end: the training progress a schedule sees (held at 1 past t_end)."""
    step = _int(step, "step", minimum=0)
    return min(step, t_end) / t_end


# --------------------------------------------------------------------------------------------- update timing


def is_update_step(step: int, delta_t: int, t_end: int) -> bool:
    """Whether a DST update follows optimiser step ``step``: ``step % delta_t == 0 and 0 < step <= t_end``.

    ``step`` counts optimiser steps taken (1 after the first); see the module docstring for why the end is
    inclusive. SET (Mocanu et al. 2018), RigL (Evci et al. 2020: ΔT = 100, T_end = 0.75 of training), CHTs.
    """
    step = _int(step, "step", minimum=0)
    delta_t = _int(delta_t, "delta_t", minimum=1)
    t_end = _int(t_end, "t_end", minimum=0)
    return 0 < step <= t_end and step % delta_t == 0


def update_count(step: int, delta_t: int, t_end: int) -> int:
    """Number of DST updates performed up to and including optimiser step ``step``: ``min(step, t_end) // delta_t``.

    The c-th update (c from 1) is the one at step ``c * delta_t``; this is the ``c`` that
    :class:`SigmoidSparsity` takes.
    """
    step = _int(step, "step", minimum=0)
    delta_t = _int(delta_t, "delta_t", minimum=1)
    t_end = _int(t_end, "t_end", minimum=0)
    return min(step, t_end) // delta_t


@dataclass(frozen=True)
class UpdateTiming:
    """ΔT and T_end together: ``timing(step)`` is :func:`is_update_step`, ``timing.count(step)`` :func:`update_count`.

    Attributes:
        delta_t: rewire every ``delta_t`` optimiser steps (RigL: 100; CHTs MLP: one epoch), >= 1.
        t_end: last optimiser step at which rewiring may happen (typically 0.75 of all steps), >= 0.
    """

    delta_t: int
    t_end: int

    def __post_init__(self) -> None:
        _int(self.delta_t, "delta_t", minimum=1)
        _int(self.t_end, "t_end", minimum=0)

    @classmethod
    def from_total_steps(cls, total_steps: int, delta_t: int, end_fraction: float = 0.75) -> UpdateTiming:
        """T_end = floor(end_fraction * total_steps) (RigL and CHTs stop rewiring at 0.75 of training)."""
        total_steps = _int(total_steps, "total_steps", minimum=0)
        end_fraction = _real(end_fraction, "end_fraction", lo=0.0, hi=1.0)
        return cls(delta_t=delta_t, t_end=math.floor(end_fraction * total_steps + _FLOOR_RTOL * total_steps))

    def __call__(self, step: int) -> bool:
        return is_update_step(step, self.delta_t, self.t_end)

    def count(self, step: int) -> int:
        return update_count(step, self.delta_t, self.t_end)


# ----------------------------------------------------------------------------------------------- ζ schedules


def drop_count(zeta: float, nnz: int) -> int:
    """n = floor(ζ · nnz): the number of active links an update drops (and regrows) in a layer (DST.md).

    A relative slack of 1e-9 absorbs float products that land just below an integer (0.29 * 100 is
    28.999999999999996 in floating point and must drop 29 links).
    """
    zeta = _real(zeta, "zeta", lo=0.0, hi=1.0)
    nnz = _int(nnz, "nnz", minimum=0)
    x = zeta * nnz
    return min(nnz, math.floor(x + _FLOOR_RTOL * max(1.0, x)))


@ZETA_SCHEDULES.register("constant")
@dataclass(frozen=True)
class ConstantZeta:
    """ζ_t = ζ at every step (SET, Mocanu et al. 2018: ζ = 0.3; also the CHTs MLP recipe).

    Attributes:
        zeta: fraction of a layer's active links dropped per update, in [0, 1].
    """

    zeta: float = 0.3

    def __post_init__(self) -> None:
        _real(self.zeta, "zeta", lo=0.0, hi=1.0)

    def __call__(self, step: int) -> float:
        _int(step, "step", minimum=0)
        return float(self.zeta)

    def n_drop(self, step: int, nnz: int) -> int:
        """floor(ζ_t · nnz), see :func:`drop_count`."""
        return drop_count(self(step), nnz)


@ZETA_SCHEDULES.register("cosine")
@dataclass(frozen=True)
class CosineZeta:
    """ζ_t = ζ0 / 2 · (1 + cos(π · min(t, T_end) / T_end)) (RigL, Evci et al. 2020: ζ0 = 0.3, ΔT = 100).

    ζ0 at t = 0, ζ0 / 2 at T_end / 2, 0 at and after T_end (rewiring has stopped there anyway).

    Attributes:
        zeta0: initial drop fraction, in [0, 1].
        t_end: T_end in optimiser steps, >= 1.
    """

    zeta0: float = 0.3
    t_end: int = 1

    def __post_init__(self) -> None:
        _real(self.zeta0, "zeta0", lo=0.0, hi=1.0)
        _int(self.t_end, "t_end", minimum=1)

    def __call__(self, step: int) -> float:
        return self.zeta0 / 2.0 * (1.0 + math.cos(math.pi * _progress(step, self.t_end)))

    def n_drop(self, step: int, nnz: int) -> int:
        """floor(ζ_t · nnz), see :func:`drop_count`."""
        return drop_count(self(step), nnz)


def make_zeta_schedule(name: str, **params: Any) -> ConstantZeta | CosineZeta:
    """The ζ schedule registered as ``name`` ("constant", "cosine"), built with ``params``."""
    return ZETA_SCHEDULES.get(name)(**params)


# ------------------------------------------------------------------------------------ temperature schedules


def _temperature(value: Any, name: str) -> float:
    return _real(value, name, lo=0.0, hi=math.inf, hi_open=True)


@TEMPERATURE_SCHEDULES.register("constant")
@dataclass(frozen=True)
class ConstantTemperature:
    """T(t) = value (the CHTs LLM code's default: no annealing, T = 1).

    Attributes:
        value: the temperature, finite and >= 0 (0: uniform among positive scores).
    """

    value: float = 1.0

    def __post_init__(self) -> None:
        _temperature(self.value, "value")

    def __call__(self, step: int) -> float:
        _int(step, "step", minimum=0)
        return float(self.value)


@TEMPERATURE_SCHEDULES.register("linear")
@dataclass(frozen=True)
class LinearTemperature:
    """T(t) = start + (end − start) · min(t, T_end) / T_end (the CHTs MLP code: 1 + 2 t / T_end, 1 → 3).

    Attributes:
        start: T at t = 0, finite and >= 0.
        end: T at and after T_end, finite and >= 0.
        t_end: T_end in optimiser steps, >= 1.
    """

    start: float = 1.0
    end: float = 3.0
    t_end: int = 1

    def __post_init__(self) -> None:
        _temperature(self.start, "start")
        _temperature(self.end, "end")
        _int(self.t_end, "t_end", minimum=1)

    def __call__(self, step: int) -> float:
        return self.start + (self.end - self.start) * _progress(step, self.t_end)


@TEMPERATURE_SCHEDULES.register("delta")
@dataclass(frozen=True)
class DeltaTemperature:
    """T(t) = δ_t / (1 − δ_t), δ_t = δ_start + (δ_end − δ_start) · min(t, T_end) / T_end (CHTs, seed 003, eq. 2).

    The seed raises δ linearly from 0.5 to 0.75, i.e. T from 1 to 3 like :class:`LinearTemperature`, but convex
    in t: T = 0.625 / 0.375 = 1.667 at mid-training instead of 2. δ = 0 is uniform sampling, δ → 1 rigid.

    Attributes:
        delta_start: δ at t = 0, in [0, 1).
        delta_end: δ at and after T_end, in [0, 1).
        t_end: T_end in optimiser steps, >= 1.
    """

    delta_start: float = 0.5
    delta_end: float = 0.75
    t_end: int = 1

    def __post_init__(self) -> None:
        _real(self.delta_start, "delta_start", lo=0.0, hi=1.0, hi_open=True)
        _real(self.delta_end, "delta_end", lo=0.0, hi=1.0, hi_open=True)
        _int(self.t_end, "t_end", minimum=1)

    @classmethod
    def from_temperatures(cls, start: float, end: float, t_end: int) -> DeltaTemperature:
        """The δ schedule with end-point temperatures ``start`` and ``end`` (δ = T / (1 + T))."""
        start, end = _temperature(start, "start"), _temperature(end, "end")
        return cls(delta_start=start / (1.0 + start), delta_end=end / (1.0 + end), t_end=t_end)

    def delta(self, step: int) -> float:
        """δ_t."""
        return self.delta_start + (self.delta_end - self.delta_start) * _progress(step, self.t_end)

    def __call__(self, step: int) -> float:
        d = self.delta(step)
        return d / (1.0 - d)


def make_temperature_schedule(
    name: str, **params: Any
) -> ConstantTemperature | LinearTemperature | DeltaTemperature:
    """The temperature schedule registered as ``name`` ("constant", "linear", "delta"), built with ``params``."""
    return TEMPERATURE_SCHEDULES.get(name)(**params)


# ------------------------------------------------------------------------------------- CHTss sparsity decay


def _sigmoid(x: float) -> float:
    # Written for both signs so that exp never overflows.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class SigmoidSparsity:
    """CHTss sparsity after the c-th DST update: a sigmoid from s0 to s1 over ``total`` updates (seed 002).

    With mid = total / 2, k = 6 / mid, a0 = σ(−k · mid), a1 = σ(k · (total − mid)) (DST.md, "CHTs"):

        s(c) = s0 + (s1 − s0) · ((σ(k · (c − mid)) − 0.5) / (a1 − a0) + 0.5),

    so s(0) = s0 and s(total) = s1 exactly; ``c`` is clamped to [0, total]. ``total`` = pruning_T_end / ΔT.

    Reading that reproduces the authors' numbers: ``c`` is :func:`update_count` (the c-th update happens at step
    c · ΔT; the sparsity reached *after* it is s(c)). Their script stops DST at T_end = 7500 with
    pruning_T_end = 8000, so the last update is c = 7500 / ΔT = 0.9375 · total and the final sparsity is
    s(0.9375 · total) = 0.898896 for s0 = 0.5, s1 = 0.90 (0.948757 for 0.95), for every ΔT that divides both
    7500 and 8000 (s depends on c / total only). Stopping one update earlier (updates only while step < T_end)
    would give 0.898558 / 0.948378 instead.

    Attributes:
        s0: sparsity before the first update, in [0, 1].
        s1: target sparsity, reached at c = total, in [0, 1] (s1 < s0 would be a density increase).
        total: number of DST updates of the decay (may be fractional when ΔT does not divide), > 0.
    """

    s0: float
    s1: float
    total: float

    def __post_init__(self) -> None:
        _real(self.s0, "s0", lo=0.0, hi=1.0)
        _real(self.s1, "s1", lo=0.0, hi=1.0)
        _real(self.total, "total", lo=0.0, hi=math.inf, lo_open=True, hi_open=True)

    @classmethod
    def from_steps(cls, s0: float, s1: float, pruning_t_end: int, delta_t: int) -> SigmoidSparsity:
        """total = pruning_t_end / delta_t (both in optimiser steps)."""
        pruning_t_end = _int(pruning_t_end, "pruning_t_end", minimum=1)
        delta_t = _int(delta_t, "delta_t", minimum=1)
        return cls(s0=s0, s1=s1, total=pruning_t_end / delta_t)

    def __call__(self, c: float) -> float:
        c = _real(c, "c", lo=0.0, hi=math.inf, hi_open=True)
        if c >= self.total:
            return float(self.s1)  # exactly, not up to rounding of the formula
        if c == 0:
            return float(self.s0)
        mid = self.total / 2.0
        k = 6.0 / mid
        a0, a1 = _sigmoid(-k * mid), _sigmoid(k * (self.total - mid))
        return self.s0 + (self.s1 - self.s0) * ((_sigmoid(k * (c - mid)) - 0.5) / (a1 - a0) + 0.5)

    def target_links(self, c: float, possible: int) -> int:
        """Active links of a layer after update c: round((1 − s(c)) · possible), halves rounded up.

        Args:
            possible: number of positions the layer can hold (n_out · n_in, or fewer when positions are
                excluded, e.g. the diagonal of a recurrent weight).
        """
        possible = _int(possible, "possible", minimum=0)
        x = (1.0 - self(c)) * possible
        return min(possible, math.floor(x + 0.5))

    def links_to_remove(self, c: int, possible: int, active: int | None = None) -> int:
        """Net number of links update ``c`` (>= 1) must remove so that the layer holds ``target_links(c)``.

        Computed from the target count, never by accumulating per-update decrements, so the link count follows
        round((1 − s(c)) · possible) exactly at every update, whatever the rounding: ``active − target_links(c)``,
        with ``active`` defaulting to ``target_links(c − 1)`` (what the previous update left). The update drops
        its ζ share plus this number and regrows only the ζ share. Negative means a net growth (s1 < s0).
        """
        c = _int(c, "c", minimum=1)
        target = self.target_links(c, possible)
        if active is None:
            active = self.target_links(c - 1, possible)
        active = _int(active, "active", minimum=0)
        return active - target


# -------------------------------------------------------------------------------- topological early stop


def _key_tensor(keys: Tensor | Iterable[Any], name: str) -> Tensor | set[Any]:
    if isinstance(keys, Tensor):
        if keys.is_floating_point() or keys.is_complex():
            raise TypeError(f"{name} must hold integer keys (flat link indices), got dtype {keys.dtype}")
        return keys.reshape(-1).unique()
    return set(keys)


def overlap(removed_keys: Tensor | Iterable[Any], regrown_keys: Tensor | Iterable[Any]) -> float:
    """|removed ∩ regrown| / |regrown|: the fraction of the links regrown by an update that it had just removed.

    The seed's epitopological local minimum (CHTs, seed 003: |O_t| / |A*_t| with A*_t the regrown set). Keys
    are link identities: integer tensors of flat indices (any shape, on any device) or iterables of hashables
    (e.g. ``(i, j)`` tuples); both sides must use the same kind. Duplicates count once. An update that regrows
    nothing has overlap 0.0 (no link was re-predicted), so it never triggers the early stop by itself.
    """
    removed, regrown = _key_tensor(removed_keys, "removed_keys"), _key_tensor(regrown_keys, "regrown_keys")
    if isinstance(removed, Tensor) != isinstance(regrown, Tensor):
        raise TypeError("removed_keys and regrown_keys must both be tensors or both be iterables of keys")
    if isinstance(regrown, Tensor):
        assert isinstance(removed, Tensor)
        if regrown.numel() == 0:
            return 0.0
        hits = torch.isin(regrown, removed.to(regrown.device))
        return int(hits.sum()) / regrown.numel()
    assert isinstance(removed, set)
    if not regrown:
        return 0.0
    return len(regrown & removed) / len(regrown)


@dataclass
class TopologicalEarlyStop:
    """Freeze a layer's topology once an update's removed/regrown :func:`overlap` exceeds ``threshold`` (CHT).

    DST.md: "freeze a layer once the overlap between removed and regrown sets exceeds 0.9" (strictly greater;
    the seed writes ≥ θ with θ close to 1). A frozen layer stays frozen. Optional: CHTs' soft rule is meant to
    avoid the need for it. The state (``state_dict``) goes into checkpoints so a resumed run freezes the same
    layers.

    Attributes:
        threshold: the overlap above which a layer freezes, in [0, 1].
        frozen: names of the frozen layers.
    """

    threshold: float = 0.9
    frozen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.threshold = _real(self.threshold, "threshold", lo=0.0, hi=1.0)

    def should_freeze(self, overlap_value: float) -> bool:
        """Whether this overlap freezes a layer (overlap_value > threshold)."""
        return _real(overlap_value, "overlap_value", lo=0.0, hi=1.0) > self.threshold

    def update(
        self, layer: str, removed_keys: Tensor | Iterable[Any], regrown_keys: Tensor | Iterable[Any]
    ) -> bool:
        """Record one update of ``layer``; returns whether the layer is frozen afterwards."""
        if layer not in self.frozen and self.should_freeze(overlap(removed_keys, regrown_keys)):
            self.frozen.add(layer)
        return layer in self.frozen

    def is_frozen(self, layer: str) -> bool:
        return layer in self.frozen

    def state_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "frozen": sorted(self.frozen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.threshold = _real(state["threshold"], "threshold", lo=0.0, hi=1.0)
        self.frozen = set(state["frozen"])
