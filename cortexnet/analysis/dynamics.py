"""Why dense Dale networks stall (Fruengel & Oberlaender 2025, Fig. 6C/E, Fig. S5A): gradient magnitudes and
sign changes of the recurrent weights during training (as training callbacks), E/I balance, delay vs size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cortexnet.analysis.learning import MeanSD, learning_delay
from cortexnet.data.samples import probe_source, select_batches
from cortexnet.layers import select_weight
from cortexnet.sparse import SparseWeight
from cortexnet.training import Callback

#: log10 |gradient| histogram bin edges: 1e-14 ... 1 in quarter decades. Values outside are not dropped:
#: :func:`gradient_histogram` counts exact zeros, underflow (0 < |g| < 1e-14), overflow (|g| > 1) and
#: non-finite values separately.
GRAD_BIN_EDGES = np.linspace(-14.0, 0.0, 57)


def gradient_histogram(abs_values: np.ndarray) -> dict[str, Any]:
    """Histogram of log10 |g| on :data:`GRAD_BIN_EDGES` that accounts for every value.

    Returns ``{"counts": (56,) int64 array, "zeros": exact zeros, "underflow": 0 < |g| < 1e-14,
    "overflow": |g| > 1 (and +inf), "nonfinite": NaN}``; the five parts sum to ``abs_values.size``. The last bin
    includes |g| = 1 (NumPy's closed right edge).
    """
    a = np.abs(np.asarray(abs_values, dtype=np.float64)).reshape(-1)
    nan = np.isnan(a)
    zero = a == 0
    lo, hi = 10.0 ** GRAD_BIN_EDGES[0], 10.0 ** GRAD_BIN_EDGES[-1]
    under = (a > 0) & (a < lo)
    over = a > hi
    inside = ~(nan | zero | under | over)
    counts = np.histogram(np.log10(a[inside]), bins=GRAD_BIN_EDGES)[0].astype(np.int64)
    return {"counts": counts, "zeros": int(zero.sum()), "underflow": int(under.sum()),
            "overflow": int(over.sum()), "nonfinite": int(nan.sum())}  # fmt: skip


@dataclass(frozen=True)
class EILayer:
    """The layer of a model that carries excitatory/inhibitory identities (Dale's law).

    Attributes:
        name: its module path in the model (``"recurrent"`` for CortexRNN, ``"connections"`` for the Dale
            feed-forward control).
        module: the layer (a :class:`~cortexnet.layers.RecurrentLayer` or :class:`~cortexnet.layers.SparseLinear`).
        weight: its sign-constrained :class:`SparseWeight`; column j holds presynaptic node j's weights.
        inhibitory: bool ``(n_in,)`` identities of the presynaptic nodes (CPU).
        labels_representation: whether those nodes are the ones ``model.hidden`` returns (true for the recurrent
            layer, whose pre- and postsynaptic nodes are the same; false for the feed-forward control, whose
            identities belong to the first hidden layer while ``hidden`` is the second).
    """

    name: str
    module: nn.Module
    weight: SparseWeight
    inhibitory: Tensor
    labels_representation: bool


def ei_layer(model: nn.Module) -> EILayer | None:
    """Find the layer carrying E/I identities: a module with ``dale`` true, a bool ``inhibitory`` buffer and a
    :class:`SparseWeight` child (RecurrentLayer ``.rec``, SparseLinear ``.sparse``). None when the model has no
    Dale layer; ``ValueError`` when several do (the analyses would not know which one to use)."""
    found = []
    for name, m in model.named_modules():
        inh = getattr(m, "inhibitory", None)
        if getattr(m, "dale", None) is not True or not isinstance(inh, Tensor) or inh.dtype != torch.bool:
            continue
        sw = next((c for c in m.children() if isinstance(c, SparseWeight)), None)
        if sw is None or inh.shape != (sw.n_in,):
            continue
        rec = isinstance(getattr(m, "rec", None), SparseWeight) and sw.n_out == sw.n_in
        found.append(EILayer(name, m, sw, inh.detach().cpu(), rec))
    if len(found) > 1:
        raise ValueError(f"several layers carry E/I identities ({', '.join(f.name for f in found)})")
    return found[0] if found else None


class _ActiveView:
    """Per-synapse effective values and gradients of a SparseWeight in connectivity order, as CPU float32
    copies, through the backend-independent :meth:`SparseWeight.active_values` / :meth:`~SparseWeight.active_grads`
    (O(nnz), never a dense matrix)."""

    def __init__(self, sw: SparseWeight) -> None:
        self.sw = sw

    def values(self) -> Tensor:
        """Effective weights ``(nnz,)`` (Dale signs applied), CPU float32."""
        return self.sw.active_values().float().cpu()

    def grads(self) -> Tensor | None:
        """Gradients of the stored parameter at the active synapses ``(nnz,)``, or None before backward."""
        g = self.sw.active_grads()
        return None if g is None else g.float().cpu()


class GradientRecorder(Callback):
    """Records |∂L/∂W| at the active synapses of one sparse weight every ``every`` optimiser steps (paper
    Fig. 6E: the recurrent weight). ``weight`` names it (:func:`cortexnet.layers.sparse_weights`; default: the
    model's only sparse weight, or its recurrent one: see :func:`cortexnet.layers.select_weight`).

    Per epoch it keeps summary statistics (mean, median of per-step means, max, fraction exactly zero) and a
    histogram of log10 |g| on :data:`GRAD_BIN_EDGES` with explicit ``log10_hist_zeros`` (exact zeros),
    ``log10_hist_underflow`` (0 < |g| < 1e-14), ``log10_hist_overflow`` (|g| > 1) and ``log10_hist_nonfinite``
    counts, so that every recorded value is counted somewhere (``values_recorded`` in all). ``epochs`` is a list
    of dicts, one per epoch, saved in checkpoints so a resumed run continues the record.
    """

    def __init__(self, every: int = 1, *, weight: str | None = None) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.weight = weight
        self.epochs: list[dict[str, Any]] = []
        self._view: _ActiveView | None = None
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self._means: list[float] = []
        self._max = 0.0
        self._count = 0
        self._hist = {"counts": np.zeros(len(GRAD_BIN_EDGES) - 1, dtype=np.int64), "zeros": 0,
                      "underflow": 0, "overflow": 0, "nonfinite": 0}  # fmt: skip

    def on_train_begin(self, model: nn.Module, state: Any) -> None:
        self._view = _ActiveView(select_weight(model, self.weight)[1])

    def on_after_backward(self, model: nn.Module, state: Any) -> None:
        if state.step % self.every:
            return
        g = self._view.grads() if self._view else None
        if g is None:
            return
        a = g.abs().double().numpy()
        self._means.append(float(a.mean()) if a.size else 0.0)
        self._max = max(self._max, float(a.max()) if a.size else 0.0)
        self._count += int(a.size)
        for key, value in gradient_histogram(a).items():
            self._hist[key] = self._hist[key] + value

    def on_epoch_end(self, model: nn.Module, state: Any) -> None:
        means = np.array(self._means) if self._means else np.array([np.nan])
        h = self._hist
        self.epochs.append({
            "epoch": state.epoch,
            "steps_recorded": len(self._means),
            "values_recorded": self._count,
            "mean_abs_grad": float(np.mean(means)),
            "median_step_mean_abs_grad": float(np.median(means)),
            "max_abs_grad": self._max,
            "fraction_zero": h["zeros"] / self._count if self._count else None,
            "log10_hist_counts": h["counts"].tolist(),
            "log10_hist_zeros": h["zeros"],
            "log10_hist_underflow": h["underflow"],
            "log10_hist_overflow": h["overflow"],
            "log10_hist_nonfinite": h["nonfinite"],
        })  # fmt: skip
        self._reset_epoch()

    def state_dict(self) -> dict:
        # "partial": the epoch in progress (a checkpoint within an epoch resumes its record exactly).
        partial = {"means": list(self._means), "max": self._max, "count": self._count,
                   "hist": {k: v.tolist() if isinstance(v, np.ndarray) else int(v) for k, v in self._hist.items()}}  # fmt: skip
        return {"epochs": self.epochs, "partial": partial}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state.get("epochs", []))
        partial = state.get("partial")
        self._reset_epoch()
        if partial:
            self._means, self._max, self._count = list(partial["means"]), partial["max"], partial["count"]
            for key, value in partial["hist"].items():
                self._hist[key] = np.asarray(value, dtype=np.int64) if key == "counts" else value


_GROUPS = ("positive", "negative", "zero")
_STEP_KEYS = ("pos_to_neg", "neg_to_pos", "to_zero", "from_zero", "zeroed_by_projection")


class SignTracker(Callback):
    """Counts weights that change sign, become zero or grow from zero, split by each synapse's sign at
    initialisation (paper Fig. S5A: negative weights grow, positive ones turn negative), per epoch, for one
    sparse weight named ``weight`` (default: the recurrent one, see :func:`cortexnet.layers.select_weight`).

    Two views per epoch record (``epochs[k]``):

    * epoch-end snapshots — ``{init_sign: {"pos_to_neg", "neg_to_pos", "to_zero", "from_zero", "n"}}`` for
      init_sign in "positive", "negative", "zero": the sign at the end of the epoch against the end of the
      previous one (net changes; a weight zeroed and regrown within the epoch is not counted here);
    * per optimiser step — ``"per_step": {init_sign: {...}}`` with the same transitions summed over every step
      of the epoch (events: one weight can count several times), plus ``"zeroed_by_projection"``: active weights
      the constraint projection set to zero in a step (the optimiser had moved them off zero to the wrong sign
      — Dale's "clip" rule — including weights that were already zero and were pushed the wrong way again), and
      ``"weights_zeroed"``: distinct weights zeroed by the projection at least once in the epoch; ``"steps"``
      counts the steps seen.

    The pre-projection values come from :func:`cortexnet.layers.observe_projection`, held only between this
    callback's ``on_after_backward`` and ``on_step_end`` (i.e. around ``optimizer.step()``, inside which the
    constraints are re-imposed). If no projection ran in between (a custom optimiser that bypasses
    ``Optimizer.step`` hooks) ``zeroed_by_projection`` and ``weights_zeroed`` are None.
    Cost per step: two O(nnz) gathers of the weights and a few boolean passes; no dense N x N matrix.
    """

    def __init__(self, *, weight: str | None = None) -> None:
        self.weight = weight
        self.epochs: list[dict[str, Any]] = []
        self._init: Tensor | None = None
        self._prev: Tensor | None = None
        self._view: _ActiveView | None = None
        self._last: Tensor | None = None
        self._pre: Tensor | None = None
        self._handle = None
        self._resumed_partial = False
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self._steps = 0
        self._hook_missed = False
        self._step_counts = {g: dict.fromkeys(_STEP_KEYS, 0) for g in _GROUPS}
        self._zeroed: Tensor | None = None

    def on_train_begin(self, model: nn.Module, state: Any) -> None:
        self._view = _ActiveView(select_weight(model, self.weight)[1])
        now = self._view.values()
        if self._init is None:
            self._init = now
            self._prev = now.clone()
        self._last = now
        if not self._resumed_partial:  # a resume within an epoch continues the epoch's counts
            self._reset_epoch()
        self._resumed_partial = False

    def on_after_backward(self, model: nn.Module, state: Any) -> None:
        from cortexnet.layers import observe_projection

        self._remove_hook()
        self._pre = None
        weight = self._view.sw

        def before_projection(w) -> None:
            if w is weight:
                self._pre = self._view.values()

        self._handle = observe_projection(before_projection)

    def _remove_hook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def on_train_end(self, model: nn.Module, state: Any) -> None:
        # The step hook is process-wide: never leave it behind when training stops between backward and step.
        self._remove_hook()

    def on_step_end(self, model: nn.Module, state: Any) -> None:
        self._remove_hook()
        after = self._view.values()
        before = self._last if self._last is not None else after
        self.count_step(before, self._pre, after)
        self._last, self._pre = after, None

    def count_step(self, before: Tensor, pre: Tensor | None, after: Tensor) -> None:
        """Add one optimiser step: effective weights ``before`` the step, after the step but ``pre`` the
        constraint projection (None if unknown), and ``after`` it, all ``(nnz,)`` in the same synapse order."""
        self._steps += 1
        for name, counts in sign_changes(self._init, before, after).items():
            for key in _STEP_KEYS[:4]:
                self._step_counts[name][key] += counts[key]
        if pre is None:
            self._hook_missed = True
            return
        zeroed = (pre != 0) & (after == 0)
        self._zeroed = zeroed if self._zeroed is None else self._zeroed | zeroed
        for name, sel in _init_groups(self._init):
            self._step_counts[name]["zeroed_by_projection"] += int((zeroed & sel).sum())

    def on_epoch_end(self, model: nn.Module, state: Any) -> None:
        now = self._view.values()
        per_step: dict[str, Any] = {}
        for name, sel in _init_groups(self._init):
            c = dict(self._step_counts[name])
            if self._hook_missed:
                c["zeroed_by_projection"] = None
                c["weights_zeroed"] = None
            else:
                c["weights_zeroed"] = int((self._zeroed & sel).sum()) if self._zeroed is not None else 0
            per_step[name] = c
        self.epochs.append({"epoch": state.epoch, **sign_changes(self._init, self._prev, now),
                            "per_step": per_step, "steps": self._steps})  # fmt: skip
        self._prev = now
        self._reset_epoch()

    def state_dict(self) -> dict:
        # "partial": the epoch in progress (a checkpoint within an epoch resumes its counts exactly).
        partial = {"steps": self._steps, "hook_missed": self._hook_missed, "zeroed": self._zeroed,
                   "step_counts": {g: dict(c) for g, c in self._step_counts.items()}}  # fmt: skip
        return {"epochs": self.epochs, "init": self._init, "prev": self._prev, "partial": partial}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state.get("epochs", []))
        self._init, self._prev = state.get("init"), state.get("prev")
        self._reset_epoch()
        partial = state.get("partial")
        if partial:
            self._steps, self._hook_missed, self._zeroed = (
                partial["steps"],
                partial["hook_missed"],
                partial["zeroed"],
            )
            self._step_counts = {g: dict(c) for g, c in partial["step_counts"].items()}
        self._resumed_partial = bool(partial)


def _init_groups(init: Tensor):
    return (("positive", init > 0), ("negative", init < 0), ("zero", init == 0))


def sign_changes(init: Tensor, before: Tensor, after: Tensor) -> dict[str, dict[str, int]]:
    """Sign transitions ``before -> after`` of the same synapses ``(nnz,)``, grouped by sign in ``init``."""
    out = {}
    for name, sel in _init_groups(init):
        b, a = before[sel], after[sel]
        out[name] = {
            "n": int(sel.sum()),
            "pos_to_neg": int(((b > 0) & (a < 0)).sum()),
            "neg_to_pos": int(((b < 0) & (a > 0)).sum()),
            "to_zero": int(((b != 0) & (a == 0)).sum()),
            "from_zero": int(((b == 0) & (a != 0)).sum()),
        }
    return out


@dataclass(frozen=True)
class EIBalance:
    """Excitatory and inhibitory input per node (``(N,)`` arrays; summaries over nodes) of the Dale layer.

    Structural: Σ of incoming weights from excitatory (``struct_exc`` ≥ 0) and inhibitory (``struct_inh`` ≤ 0)
    nodes. Functional: the input W h_pre, split by presynaptic population and averaged over inputs
    (``func_exc``, ``func_inh``); ``func_net`` = their sum. h_pre is the recurrent state feeding the last step
    (recurrent layer) or the presynaptic layer's output (feed-forward Dale layer). ``layer`` names the module.
    """

    struct_exc: np.ndarray
    struct_inh: np.ndarray
    func_exc: np.ndarray
    func_inh: np.ndarray
    layer: str = "recurrent"

    @property
    def func_net(self) -> np.ndarray:
        return self.func_exc + self.func_inh

    def summary(self) -> dict[str, Any]:
        """Means over nodes, and the fraction of nodes whose net input is excitatory."""
        return {
            "layer": self.layer,
            "struct_exc_mean": float(self.struct_exc.mean()),
            "struct_inh_mean": float(self.struct_inh.mean()),
            "func_exc_mean": float(self.func_exc.mean()),
            "func_inh_mean": float(self.func_inh.mean()),
            "func_net_mean": float(self.func_net.mean()),
            "fraction_net_excitatory": float((self.func_net > 0).mean()),
        }


@torch.no_grad()
def ei_balance(
    model: nn.Module,
    dataset: Any,
    *,
    max_samples: int = 1000,
    batch_size: int = 250,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> EIBalance:
    """Net excitatory vs inhibitory input per node of a Dale network (the paper's E/I-imbalance explanation of
    the learning delay) on up to ``max_samples`` seeded inputs of ``dataset``.

    ``dataset``: ``(x (T, F), y)`` samples as a ``TensorDataset``, a map-style ``Dataset`` or a ``DataLoader``
    (whose positions are ranks in its iteration order); the same seeded positions, in the same batches, are
    used for each. ``device``: where to compute (default: the model's device). Returns ``(N,)`` arrays.

    Works on whichever layer carries the E/I identities (:func:`ei_layer`): the recurrent layer of a
    CortexRNN (presynaptic activity: the hidden state at step T-1 feeding step T) or the sparse layer of the
    Dale feed-forward control (presynaptic activity: the first hidden layer's output, captured on its way in).
    """
    info = ei_layer(model)
    if info is None:
        raise ValueError(
            "E/I balance needs a Dale network (excitatory/inhibitory identities); this one has none"
        )
    source, device = probe_source(model, dataset, batch_size=batch_size, device=device)
    rec = info.weight
    inh = info.inhibitory.to(device)
    exc_f, inh_f = (~inh).float(), inh.float()
    struct_exc = rec.linear(exc_f[None])[0]
    struct_inh = rec.linear(inh_f[None])[0]
    n_all = source.n_samples
    if n_all == 0 or max_samples < 1:
        raise ValueError(
            f"E/I balance needs at least one input, got a dataset of {n_all} and max_samples={max_samples}"
        )
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n_all, generator=g)[: min(max_samples, n_all)]
    sum_e = torch.zeros(rec.n_out, device=device, dtype=torch.float64)
    sum_i = torch.zeros_like(sum_e)
    was_training = model.training
    model.eval()
    captured: list[Tensor] = []
    handle = None
    if not info.labels_representation:
        handle = info.module.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        for xb, _ in select_batches(source, idx, batch_size):
            xb = xb.to(device)
            if info.labels_representation and xb.shape[1] < 2:
                raise ValueError("functional E/I balance needs sequences of at least 2 steps")
            if info.labels_representation:
                pre = model.hidden(xb, all_steps=True)[:, -2]  # presynaptic activity feeding the last step
            else:
                captured.clear()
                model.hidden(xb)
                if len(captured) != 1:
                    raise RuntimeError(f"layer {info.name!r} ran {len(captured)} times in one forward pass")
                pre = captured[0]
            sum_e += rec.linear(pre * exc_f).sum(0).double()
            sum_i += rec.linear(pre * inh_f).sum(0).double()
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    n = len(idx)
    as_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    return EIBalance(as_np(struct_exc), as_np(struct_inh), as_np(sum_e / n), as_np(sum_i / n), info.name)


def delay_vs_size(
    runs: Sequence[tuple[int, Sequence[dict[str, Any]]]], *, chance: float, margin: float = 0.05
) -> dict[int, dict[str, Any]]:
    """Learning delay (see :func:`~cortexnet.analysis.learning.learning_delay`) against network size
    (paper Fig. 6C) from ``(n_nodes, history)`` pairs; per size: mean ± SD over runs and how many never learned."""
    by_size: dict[int, list[int | None]] = {}
    for n, hist in runs:
        by_size.setdefault(int(n), []).append(learning_delay(hist, chance=chance, margin=margin))
    out = {}
    for n in sorted(by_size):
        ms = MeanSD.of(by_size[n])
        out[n] = {"mean": ms.mean, "sd": ms.sd, "n": len(by_size[n]), "never_learned": by_size[n].count(None)}
    return out
