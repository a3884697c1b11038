"""The Rewirer: one explicit dynamic-sparse-training step, called after the optimiser step and the constraints.

DST.md "The common loop": every ΔT optimiser steps while step <= T_end, each sparse weight drops
n = floor(ζ_t · nnz) active links by a removal criterion and grows as many inactive ones by a growth criterion
(:mod:`cortexnet.rewiring.criteria`), so its synapse count is conserved exactly — or, with CHTss's sigmoid
sparsity schedule, follows round((1 - s(c)) · possible) exactly. Every change goes through
``SparseWeight.set_connectivity_`` (values and optimiser state of kept synapses move with them; added and
removed ones start at zero state); a link removed and regrown in the same update is restarted too
(``reset_synapses_``). Dale's law holds afterwards: a grown synapse takes its presynaptic node's sign.

Works on feed-forward and recurrent weights alike (for a recurrent weight the criteria are defined on the
directed node graph) in any training loop::

    rewirer = Rewirer(model, optimizer, rewiring_config("rigl"), total_steps=epochs * len(loader))
    for x, y in loader:
        loss = F.cross_entropy(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()
        rewirer.step(batch=(x, y))         # after the step: the constraints already hold

``state_dict()`` / ``load_state_dict()`` carry the step count, the random state, the Hebbian statistics and
the early-stop state, so a resumed run rewires identically. Each update logs one line per weight (links
removed, regrown, overlap, seconds) and appends it to :attr:`Rewirer.history`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cortexnet.config import check_fields
from cortexnet.connectivity import Connectivity
from cortexnet.connectivity.base import connectivity_from_keys, merge_disjoint
from cortexnet.layers import record_activity, sparse_weights
from cortexnet.rewiring.criteria import GROWTH, REMOVAL, LayerView, check_criteria
from cortexnet.rewiring.percolation import keep_links, percolate_chain, percolate_recurrent
from cortexnet.rewiring.schedules import (
    SigmoidSparsity,
    TopologicalEarlyStop,
    UpdateTiming,
    make_temperature_schedule,
    make_zeta_schedule,
)
from cortexnet.sparse import make_sparse_weight

log = logging.getLogger(__name__)

GROW_VALUES = ("zero", "keep", "random")
#: Weights of at most this many positions take RigL's gradient from one dense pass (2 GB of float32 for the
#: weight and as much for its gradient at the limit); larger ones are probed in blocks.
DENSE_GRADIENT_MAX_ELEMENTS = 250_000_000
#: Magnitude of a grown synapse with ``dale="abs"`` and ``grow_value="zero"``: an exact zero never grows there.
ABS_GROW_MAGNITUDE = 1e-6


@dataclass(frozen=True)
class RewiringConfig:
    """Everything that defines a rewiring run (saved with the run; see :data:`PRESETS` for the papers' rules).

    Attributes:
        removal, growth: registered criteria (:data:`~cortexnet.rewiring.criteria.REMOVAL`, ``GROWTH``).
        soft_removal: survivors sampled ∝ score^T (CHTs) instead of the rigid lowest scores.
        soft_growth: candidates sampled ∝ score instead of the rigid top scores.
        zeta: fraction of each weight's active links replaced per update (ζ; cosine: ζ0), in [0, 1].
        zeta_schedule: "constant" (SET) or "cosine" (RigL).
        delta_t: optimiser steps between updates (ΔT), >= 1.
        end_fraction: T_end as a fraction of all optimiser steps (RigL, CHTs: 0.75), in [0, 1].
        temperature: soft-removal T schedule, "constant", "linear" or "delta"; ``temperature_start`` /
            ``temperature_end`` its end points (CHTs MLP code: linear 1 -> 3).
        grow_value: value of a grown link: "zero" (RigL; the default), "keep" (a link regrown where it was
            just removed keeps its value, new ones 0: the RigL/CHT code), "random" (normal with the SD of the
            weight's active values, Dale-signed: SET's re-initialisation).
        sparsity_end: CHTss: each weight's sparsity follows a sigmoid from ``sparsity_start`` (None: the
            weight's sparsity when the rewirer is built) to this target over the updates until
            ``pruning_end_fraction`` of training (None: ``end_fraction``; the authors' script: 8000 / 10000
            steps with DST stopping at 7500, so the target is not quite reached: 0.8989 for 0.90). None (the
            default): the synapse count is conserved.
        percolation: network percolation after removal (DST.md): the links of dead hidden neurons of a
            feed-forward chain (the model's feed-forward sparse weights in module order: CHT's "chain
            removal"), and the recurrent links that cannot carry input to the readout within the sequence;
            as many links are regrown.
        early_stop: topological early stop: freeze a weight once the overlap of removed and regrown links
            exceeds this (e.g. 0.9); None: never.
        hebbian_candidates: Hebbian rules on large layers: record the activity statistics only at the active
            links plus this many free positions per weight, drawn at random when a period starts, and grow among
            them (the accumulator's tracked mode: O(nnz + K) memory and a sampled product per training step).
            None (default): every position can be scored (the period's activity is stored: samples · (n_in +
            n_out) floats, 7 GB per 100 steps of a 10,000-node recurrent layer at B = 32, T = 28).
        weights: names of the sparse weights to rewire (:func:`cortexnet.layers.sparse_weights`); empty: all.
        seed: seed of the rewiring's random choices.
    """

    removal: str = "magnitude"
    growth: str = "random"
    soft_removal: bool = False
    soft_growth: bool = False
    zeta: float = 0.3
    zeta_schedule: str = "constant"
    delta_t: int = 100
    end_fraction: float = 0.75
    temperature: str = "constant"
    temperature_start: float = 1.0
    temperature_end: float = 3.0
    grow_value: str = "zero"
    sparsity_start: float | None = None
    sparsity_end: float | None = None
    pruning_end_fraction: float | None = None
    percolation: bool = False
    early_stop: float | None = None
    hebbian_candidates: int | None = None
    weights: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        weights = (self.weights,) if isinstance(self.weights, str) else self.weights
        object.__setattr__(self, "weights", tuple(weights))

    def validate(self) -> RewiringConfig:
        """Raise ``ValueError`` naming the bad field, its allowed range and the fix; return self."""
        check_fields(self)  # types, integral ints, finite floats: before any range check
        check_criteria(self.removal, self.growth)
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(
                f"rewiring zeta (fraction replaced per update) must be in [0, 1], got {self.zeta}"
            )
        if self.zeta_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"rewiring zeta_schedule must be 'constant' or 'cosine', got {self.zeta_schedule!r}"
            )
        if not (isinstance(self.delta_t, int) and self.delta_t >= 1):
            raise ValueError(
                f"rewiring delta_t (steps between updates) must be an integer >= 1, got {self.delta_t}"
            )
        if not 0.0 <= self.end_fraction <= 1.0:
            raise ValueError(f"rewiring end_fraction must be in [0, 1], got {self.end_fraction}")
        self.temperature_schedule(1)
        if self.grow_value not in GROW_VALUES:
            raise ValueError(f"rewiring grow_value must be one of {GROW_VALUES}, got {self.grow_value!r}")
        if self.sparsity_start is not None and self.sparsity_end is None:
            raise ValueError("rewiring sparsity_start needs sparsity_end (the CHTss target sparsity)")
        if self.pruning_end_fraction is not None and not 0.0 < self.pruning_end_fraction <= 1.0:
            raise ValueError(
                f"rewiring pruning_end_fraction must be in (0, 1], got {self.pruning_end_fraction}"
            )
        for name in ("sparsity_start", "sparsity_end"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v < 1.0:
                raise ValueError(f"rewiring {name} must be a sparsity in [0, 1), got {v}")
        if self.hebbian_candidates is not None and not (
            isinstance(self.hebbian_candidates, int) and self.hebbian_candidates >= 1
        ):
            raise ValueError(
                f"rewiring hebbian_candidates must be an integer >= 1 (or none), got {self.hebbian_candidates!r}"
            )
        if self.early_stop is not None and not 0.0 < self.early_stop <= 1.0:
            raise ValueError(
                f"rewiring early_stop (overlap threshold) must be in (0, 1], got {self.early_stop}"
            )
        if self.removal == "set" and self.soft_removal:
            raise ValueError("removal 'set' is rigid; use removal=magnitude with soft_removal")
        return self

    def temperature_schedule(self, t_end: int) -> Any:
        """The soft-removal temperature schedule over ``t_end`` optimiser steps."""
        from cortexnet.rewiring.schedules import DeltaTemperature

        t_end = max(t_end, 1)
        if self.temperature == "constant":
            return make_temperature_schedule("constant", value=self.temperature_start)
        if self.temperature == "linear":
            return make_temperature_schedule(
                "linear", start=self.temperature_start, end=self.temperature_end, t_end=t_end
            )
        if self.temperature == "delta":  # the seed's δ/(1-δ) with δ linear between the same end points
            return DeltaTemperature.from_temperatures(self.temperature_start, self.temperature_end, t_end)
        raise ValueError(
            f"rewiring temperature must be 'constant', 'linear' or 'delta', got {self.temperature!r}"
        )

    def uses_activity(self) -> bool:
        return "hebbian" in (self.removal, self.growth)


#: The papers' rules by name (DST.md): every field not named keeps its default.
PRESETS: dict[str, dict[str, Any]] = {
    "set": {"removal": "set", "growth": "random", "zeta": 0.3, "grow_value": "random"},
    "random": {"removal": "random", "growth": "random"},
    "rigl": {"removal": "magnitude", "growth": "gradient", "zeta": 0.3, "zeta_schedule": "cosine",
             "grow_value": "keep"},
    "hebbian": {"removal": "hebbian", "growth": "hebbian", "zeta": 0.025, "delta_t": 1000},
    "cht": {"removal": "magnitude", "growth": "ch3_l3", "grow_value": "keep"},
    "chts": {"removal": "magnitude", "growth": "ch2_l3n", "soft_removal": True, "soft_growth": True,
             "temperature": "linear", "temperature_start": 1.0, "temperature_end": 3.0},
    "chtss": {"removal": "magnitude", "growth": "ch2_l3n", "soft_removal": True, "soft_growth": True,
              "temperature": "linear", "temperature_start": 1.0, "temperature_end": 3.0,
              "sparsity_end": 0.9},
}  # fmt: skip


def rewiring_config(rule: str, **params: Any) -> RewiringConfig:
    """A preset by name (:data:`PRESETS`: set, random, rigl, hebbian, cht, chts, chtss) or ``"custom"`` (the
    defaults), updated with ``params``; validated. Unknown names or fields raise ``ValueError``."""
    if rule != "custom" and rule not in PRESETS:
        raise ValueError(f"unknown rewiring rule {rule!r}; known: {', '.join([*PRESETS, 'custom'])}")
    known = {f.name for f in dataclasses.fields(RewiringConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"rewiring takes no {unknown}; settable: {sorted(known)}")
    return RewiringConfig(**{**PRESETS.get(rule, {}), **params}).validate()


@dataclass
class _Weight:
    name: str
    weight: Any
    recurrent: bool
    self_connections: bool
    possible: int
    recording: Any = None
    frozen: bool = field(default=False)


class Rewirer:
    """Rewires the sparse weights of ``model`` every ΔT optimiser steps (module docstring).

    Args:
        model: any module holding sparse weights (feed-forward and recurrent, Dale or not).
        optimizer: the optimiser of its parameters (its per-synapse state is moved and reset).
        config: the :class:`RewiringConfig` (e.g. ``rewiring_config("rigl")``).
        total_steps: optimiser steps of the whole training (T_end = end_fraction · total_steps).
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, config: RewiringConfig, *, total_steps: int
    ) -> None:
        config.validate()
        self.model, self.optimizer, self.config = model, optimizer, config
        self.timing = UpdateTiming.from_total_steps(total_steps, config.delta_t, config.end_fraction)
        t_end = max(self.timing.t_end, 1)
        self.zeta = (
            make_zeta_schedule("constant", zeta=config.zeta)
            if config.zeta_schedule == "constant"
            else make_zeta_schedule("cosine", zeta0=config.zeta, t_end=t_end)
        )
        self.temperature = config.temperature_schedule(t_end)
        pruning_fraction = (
            config.pruning_end_fraction if config.pruning_end_fraction is not None else config.end_fraction
        )
        pruning_end = math.floor(pruning_fraction * total_steps * (1 + 1e-9))  # 0.7 * 700 is 489.99...
        self.sparsity: dict[str, SigmoidSparsity] = {}
        if self.timing.count(self.timing.t_end) == 0:
            log.warning(
                "rewiring is configured but will never run: delta_t = %d steps exceeds T_end = %d (%g of %d "
                "steps); lower delta_t or raise end_fraction", config.delta_t, self.timing.t_end,
                config.end_fraction, total_steps,
            )  # fmt: skip
        self.early = TopologicalEarlyStop(config.early_stop) if config.early_stop is not None else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step_count = 0
        self.history: list[dict[str, Any]] = []
        weights = sparse_weights(model)
        names = list(config.weights) or list(weights)
        missing = [n for n in names if n not in weights]
        if missing:
            raise ValueError(
                f"rewiring weights {missing} do not exist; the model's sparse weights: {list(weights)}"
            )
        self.weights: list[_Weight] = []
        self._n_model_feedforward = sum(not _is_recurrent(model, name, w) for name, w in weights.items())
        for name in names:
            w = weights[name]
            conn = w.connectivity()
            recurrent = _is_recurrent(model, name, w)
            self_conn = (
                not recurrent
                or bool(conn.diagonal_present().any())
                or bool(getattr(getattr(model, "config", None), "self_connections", False))
            )
            possible = w.n_out * w.n_in - (0 if self_conn else min(w.n_out, w.n_in))
            entry = _Weight(name, w, recurrent, self_conn, possible)
            if config.sparsity_end is not None:
                s0 = config.sparsity_start if config.sparsity_start is not None else 1 - conn.nnz / possible
                s0 = min(max(s0, 0.0), 1.0)
                if config.pruning_end_fraction is None:  # the decay ends at the last update: s1 is reached
                    total = max(self.timing.count(self.timing.t_end), 1)
                    self.sparsity[name] = SigmoidSparsity(s0, config.sparsity_end, total)
                else:  # the authors' script: decay over pruning_T_end, DST may stop before it
                    self.sparsity[name] = SigmoidSparsity.from_steps(
                        s0, config.sparsity_end, max(pruning_end, 1), config.delta_t
                    )
            if config.uses_activity():
                positions = self._tracked_positions(entry) if config.hebbian_candidates is not None else None
                entry.recording = record_activity(model, name, positions=positions)
            self.weights.append(entry)

    # -- the step ----------------------------------------------------------------------------------------
    def step(self, batch: tuple[Tensor, Tensor] | None = None) -> list[dict[str, Any]]:
        """Count one optimiser step; at an update step rewire every weight and return one log record per
        weight (else ``[]``). ``batch`` ``(x (B, T, F), y (B,))``: the current batch (gradient growth needs it;
        recurrent percolation reads T from it).

        An update removes links in every weight first, then percolates (feed-forward weights that form a chain,
        in module order, together: a dead neuron of one layer kills links of the next; recurrent weights each
        within the sequence), then grows the removed and percolated links back."""
        self.step_count += 1
        if not self.timing(self.step_count):
            return []
        # Frozen weights (topological early stop) lose no links themselves, but take part in percolation.
        plans = [self._remove(entry, batch) for entry in self.weights]
        if self.config.percolation:
            self._percolate(self.weights, plans, batch)
        updated = [
            (e, p) for e, p in zip(self.weights, plans, strict=True) if not e.frozen or p["n_grow"] > 0
        ]
        # Every weight chooses its new links on the network as it was before this update (RigL: one gradient of
        # the current network for all layers), then all changes are applied.
        for entry, plan in updated:
            plan["grown"] = self._choose_growth(entry, plan)
        records = [self._grow(entry, plan) for entry, plan in updated]
        # One new Hebbian period for every weight, after all updates (a gradient probe's passes are not in it),
        # and none after the last update or for a frozen weight: nothing will read them.
        for entry in self.weights:
            if entry.recording is not None:
                tracked = entry.recording.accumulator.tracked
                entry.recording.accumulator.reset(self._tracked_positions(entry) if tracked else None)
                if entry.frozen or self.step_count + self.config.delta_t > self.timing.t_end:
                    entry.recording.remove()
        self.history.extend(records)
        return records

    def _tracked_positions(self, entry: _Weight) -> tuple[Tensor, Tensor]:
        """The positions a tracked Hebbian period records: the active links and ``hebbian_candidates`` free
        positions drawn uniformly at random (fewer when fewer are free)."""
        conn = entry.weight.connectivity()
        n_free = entry.possible - conn.nnz
        k = min(int(self.config.hebbian_candidates or 0), n_free)
        view = LayerView(entry.name, entry.weight, conn, torch.empty(0), entry.self_connections)
        free = GROWTH.get("random")(view, conn, k, generator=self.generator)
        keys = torch.cat([conn.rows() * conn.n_in + conn.col, free])
        return keys // conn.n_in, keys % conn.n_in

    def _remove(self, entry: _Weight, batch: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """The removal half of an update: what goes, and how many links grow back."""
        t0 = time.perf_counter()
        cfg, w, step = self.config, entry.weight, self.step_count
        conn = w.connectivity()
        nnz = conn.nnz
        n_drop = 0 if entry.frozen else self.zeta.n_drop(step, nnz)
        n_remove, n_grow = n_drop, n_drop
        if entry.name in self.sparsity and not entry.frozen:
            schedule = self.sparsity[entry.name]
            delta = schedule.links_to_remove(self.timing.count(step), entry.possible, active=nnz)
            n_remove, n_grow = n_drop + max(delta, 0), n_drop + max(-delta, 0)
        n_remove = min(n_remove, nnz)
        view = LayerView(
            entry.name, w, conn, w.active_values().cpu(), entry.self_connections,
            temperature=float(self.temperature(step)),
            activity=entry.recording.accumulator if entry.recording is not None else None,
            gradient=self._gradient_probe(entry.name, w, batch) if batch is not None else None,
        )  # fmt: skip
        removed = REMOVAL.get(cfg.removal)(view, n_remove, generator=self.generator, soft=cfg.soft_removal)
        keep = torch.ones(nnz, dtype=torch.bool)
        keep[removed] = False
        plan = {"t0": t0, "view": view, "kept": keep_links(conn, keep), "n_grow": n_grow, "percolated": 0,
                "kept_index": keep.nonzero().squeeze(1)}  # fmt: skip
        plan["seconds"] = time.perf_counter() - t0
        return plan

    def _percolate(self, active: list[_Weight], plans: list[dict[str, Any]], batch: Any) -> None:
        """Network percolation after removal (DST.md): the links it removes are added to the regrowth."""
        chain = [i for i, e in enumerate(active) if not e.recurrent]
        shapes_chain = all(
            active[chain[k]].weight.n_in == active[chain[k - 1]].weight.n_out for k in range(1, len(chain))
        )
        # The rewired feed-forward weights must be all of the model's: a chain with a gap is not one.
        if len(chain) > 1 and shapes_chain and len(chain) == self._n_model_feedforward:
            perc = percolate_chain([plans[i]["kept"] for i in chain])
            for k, (i, kept, n) in enumerate(zip(chain, perc.connectivities, perc.removed, strict=True)):
                plans[i]["kept"], plans[i]["percolated"] = kept, n
                plans[i]["kept_index"] = plans[i]["kept_index"][perc.keep[k]]
                plans[i]["n_grow"] += n
        for i, entry in enumerate(active):
            if entry.recurrent and batch is not None:
                perc = percolate_recurrent(plans[i]["kept"], int(batch[0].shape[1]))
                plans[i]["kept"], plans[i]["percolated"] = perc.connectivity, perc.removed
                plans[i]["kept_index"] = plans[i]["kept_index"][perc.keep]
                plans[i]["n_grow"] += perc.removed

    def _choose_growth(self, entry: _Weight, plan: dict[str, Any]) -> Tensor:
        """The flat positions the growth criterion picks among the links free after removal (and percolation)."""
        t0 = time.perf_counter()
        if plan["n_grow"] == 0:  # e.g. cosine ζ at T_end: no scoring for nothing
            return torch.empty(0, dtype=torch.int64)
        cfg = self.config
        grown = GROWTH.get(cfg.growth)(
            plan["view"], plan["kept"], plan["n_grow"], generator=self.generator, soft=cfg.soft_growth
        )
        plan["seconds"] += time.perf_counter() - t0
        return grown

    def _grow(self, entry: _Weight, plan: dict[str, Any]) -> dict[str, Any]:
        """The growth half of an update: the new links, their values, the optimiser state, the log line."""
        t0 = time.perf_counter()
        cfg, w, step = self.config, entry.weight, self.step_count
        view, kept, percolated = plan["view"], plan["kept"], plan["percolated"]
        conn, grown = view.connectivity, plan["grown"].sort().values
        new = connectivity_from_keys(merge_disjoint(kept.rows() * kept.n_in + kept.col, grown), *conn.shape)
        # Old synapses by their index in the old connectivity order: the dropped ones (removed + percolated) are
        # those not kept; a grown position is either new or one of them (removed and regrown in this update).
        old_keys = conn.rows() * conn.n_in + conn.col
        dropped_mask = torch.ones(conn.nnz, dtype=torch.bool)
        dropped_mask[plan["kept_index"]] = False
        dropped_index = dropped_mask.nonzero().squeeze(1)
        dropped = old_keys[dropped_index]
        is_regrown = _in_sorted(dropped, grown)
        regrown_same = grown[is_regrown]
        added = grown[~is_regrown]  # ascending: the order set_connectivity_ takes new values in
        values = self._fresh(w, added % conn.n_in, view.values)
        w.set_connectivity_(new, self.optimizer, new_values=values)
        if regrown_same.numel():
            rows, cols = regrown_same // new.n_in, regrown_same % new.n_in
            old_vals = view.values[dropped_index[torch.searchsorted(dropped, regrown_same)]]
            restart = old_vals if cfg.grow_value == "keep" else self._fresh(w, cols, view.values)
            w.reset_synapses_(rows, cols, self.optimizer, values=restart)
        ov = regrown_same.numel() / grown.numel() if grown.numel() else 0.0  # schedules.overlap's definition
        if self.early is not None and self.early.update(entry.name, dropped, grown):
            entry.frozen = True
        record = {
            "step": step, "weight": entry.name, "removed": int(dropped.numel()),
            "percolated": percolated, "grown": int(grown.numel()), "nnz": new.nnz, "overlap": ov,
            "frozen": entry.frozen, "seconds": plan["seconds"] + time.perf_counter() - t0,
        }  # fmt: skip
        log.info("rewire step %d %s: removed %d (percolation %d), regrown %d, nnz %d, overlap %.3f, %.2f s",
                 step, entry.name, record["removed"], percolated, record["grown"], new.nnz, ov, record["seconds"])  # fmt: skip
        return record

    def _fresh(self, w: Any, cols: Tensor, active_values: Tensor) -> Tensor | None:
        """Effective values of grown synapses at presynaptic columns ``cols``: zero, or random (normal with the
        SD of the active values), Dale-signed; with ``dale="abs"`` a zero becomes a small magnitude."""
        n = cols.numel()
        sign = w.column_sign.cpu()[cols] if w.dale != "none" else torch.ones(n)
        if self.config.grow_value == "random":
            sd = float(active_values.std()) if active_values.numel() > 1 else 0.1
            v = torch.randn(n, generator=self.generator) * (sd if math.isfinite(sd) and sd > 0 else 0.1)
            return v.abs() * sign if w.dale != "none" else v
        if w.dale == "abs":
            return ABS_GROW_MAGNITUDE * sign
        return torch.zeros(n)

    def _gradient_probe(self, name: str, w: Any, batch: tuple[Tensor, Tensor]):
        """dL/dW_eff at positions on ``batch``, on the network as it is (the model's ``.grad`` is left as it was).

        Up to :data:`DENSE_GRADIENT_MAX_ELEMENTS` positions, from one dense gradient: the weight is swapped for
        a fully connected masked-dense copy of its effective values for one forward/backward pass (the same
        function; one GEMM-based pass instead of many sampled ones). Larger weights are probed at the
        positions asked for (``probe_gradients`` at inactive ones, the parameter's gradient at active ones)."""
        x, y = batch
        dense: dict[str, Tensor] = {}

        def with_saved_grads(compute):
            params = [p for p in self.model.parameters() if p.requires_grad]
            saved = [p.grad for p in params]
            for p in params:
                p.grad = None
            try:
                return compute()
            finally:
                for p, g in zip(params, saved, strict=True):
                    p.grad = g

        def dense_gradient() -> Tensor:
            owner_name, _, attr = name.rpartition(".")
            owner = self.model.get_submodule(owner_name) if owner_name else self.model
            dev = next(w.parameters()).device
            clone = make_sparse_weight("masked_dense", Connectivity.full(w.n_out, w.n_in)).to(dev)
            clone.load_dense_(
                w.to_dense()
            )  # effective (Dale-signed) values: dale="none" keeps them as they are
            setattr(owner, attr, clone)
            try:
                F.cross_entropy(self.model(x), y).backward()
                return clone.weight.grad.detach().float().cpu()
            finally:
                setattr(owner, attr, w)

        def gradient(rows: Tensor, cols: Tensor) -> Tensor:
            if w.n_out * w.n_in <= DENSE_GRADIENT_MAX_ELEMENTS:
                if "g" not in dense:
                    dense["g"] = with_saved_grads(dense_gradient)
                return dense["g"][rows.cpu(), cols.cpu()]
            return with_saved_grads(lambda: probed(rows, cols))

        def probed(rows: Tensor, cols: Tensor) -> Tensor:
            dev = next(w.parameters()).device
            rows, cols = rows.to(dev), cols.to(dev)
            index, found = w._search(rows, cols)
            index, found = index.cpu(), found.cpu()
            rows, cols = rows.cpu(), cols.cpu()
            out = torch.zeros(rows.numel(), dtype=torch.float32)
            with w.probe_gradients(rows[~found].to(dev), cols[~found].to(dev)) as probe:
                F.cross_entropy(self.model(x), y).backward()
                out[~found] = probe.grad.float().cpu()
            active = w.active_grads()
            if active is not None and bool(found.any()):
                g = active.float().cpu()[index[found]]
                # For dale="abs" the parameter is the magnitude: dL/dW_eff = dL/dm · sign.
                out[found] = g * (w.column_sign.cpu()[cols[found]] if w.dale == "abs" else 1.0)
            return out

        return gradient

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to rewire identically (the masks are in the model's state)."""
        return {
            "step_count": self.step_count,
            "generator": self.generator.get_state(),
            "history": list(self.history),
            "frozen": [e.name for e in self.weights if e.frozen],
            "early_stop": self.early.state_dict() if self.early is not None else None,
            "activity": {e.name: e.recording.accumulator.state_dict() for e in self.weights if e.recording},
            # CHTss's start sparsity is the weight's when the run began: a resumed rewirer must not re-read it.
            "sparsity": {k: dataclasses.asdict(v) for k, v in self.sparsity.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.generator.set_state(state["generator"])
        self.history = list(state.get("history", []))
        frozen = set(state.get("frozen", []))
        for e in self.weights:
            e.frozen = e.name in frozen
            if e.recording is not None and e.name in state.get("activity", {}):
                e.recording.accumulator.load_state_dict(state["activity"][e.name])
        if self.early is not None and state.get("early_stop") is not None:
            self.early.load_state_dict(state["early_stop"])
        for name, fields in state.get("sparsity", {}).items():
            if name in self.sparsity:
                self.sparsity[name] = SigmoidSparsity(**fields)
        if self.step_count + self.config.delta_t > self.timing.t_end:  # past the last update: stop recording
            for e in self.weights:
                if e.recording is not None:
                    e.recording.remove()

    def close(self) -> None:
        """Stop the activity recordings (hooks) this rewirer registered."""
        for e in self.weights:
            if e.recording is not None:
                e.recording.remove()


def _is_recurrent(model: nn.Module, name: str, weight: Any) -> bool:
    """Whether the sparse weight ``name`` is the recurrent weight of a recurrent layer (its owner's ``rec``)."""
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    return getattr(owner, "rec", None) is weight


def _in_sorted(sorted_keys: Tensor, keys: Tensor) -> Tensor:
    """bool: whether each of ``keys`` is in the ascending ``sorted_keys``."""
    if sorted_keys.numel() == 0:
        return torch.zeros(keys.shape, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp_max(sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys
