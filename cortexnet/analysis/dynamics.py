"""Why dense Dale networks stall (Fruengel & Oberlaender 2025, Fig. 6C/E, Fig. S5A): gradient magnitudes and
sign changes of the recurrent weights during training (as training callbacks), E/I balance, delay vs size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from cortexnet.analysis.learning import MeanSD, learning_delay
from cortexnet.sparse import SparseWeight
from cortexnet.training import Callback

#: log10 |gradient| histogram bin edges: 1e-14 ... 1 in quarter decades (exact zeros are counted apart).
GRAD_BIN_EDGES = np.linspace(-14.0, 0.0, 57)


def recurrent_weight(model: nn.Module) -> SparseWeight:
    """The recurrent :class:`SparseWeight` of a cortexnet recurrent model (``model.recurrent.rec``)."""
    rec = getattr(getattr(model, "recurrent", None), "rec", None)
    if not isinstance(rec, SparseWeight):
        raise TypeError(f"{type(model).__name__} has no recurrent sparse weight (model.recurrent.rec)")
    return rec


class _ActiveView:
    """Reads per-synapse values and gradients of a SparseWeight in a fixed synapse order, for any backend:
    parameters shaped (n_out, n_in) are dense layouts (gathered at the active positions); parameters with
    one entry per synapse are compressed layouts. Index positions are cached (the synapse set is fixed unless
    rewired; call :meth:`refresh` after rewiring)."""

    def __init__(self, sw: SparseWeight) -> None:
        self.sw = sw
        self.refresh()

    def refresh(self) -> None:
        conn = self.sw.connectivity()
        self.nnz = conn.nnz
        self.rows, self.cols = conn.rows(), conn.col

    def values(self) -> Tensor:
        """Effective weights ``(nnz,)`` (Dale signs applied), CPU float32."""
        dense = self.sw.to_dense().cpu()
        return dense[self.rows, self.cols].float()

    def grads(self) -> Tensor | None:
        """Gradients of the stored parameter at the active synapses ``(nnz,)``, or None before backward."""
        for p in self.sw.parameters():
            if p.grad is None:
                continue
            g = p.grad.detach()
            if g.shape == (self.sw.n_out, self.sw.n_in):
                return g[self.rows.to(g.device), self.cols.to(g.device)].float().cpu()
            if g.numel() == self.nnz:
                return g.reshape(-1).float().cpu()
        return None


class GradientRecorder(Callback):
    """Records |∂L/∂W_rec| at the active recurrent synapses every ``every`` optimiser steps (paper Fig. 6E).

    Per epoch it keeps summary statistics (mean, median of per-step means, max, fraction exactly zero) and a
    histogram of log10 |g| on :data:`GRAD_BIN_EDGES`, not every value. ``epochs`` is a list of dicts, one per
    epoch, saved in checkpoints so a resumed run continues the record.
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.epochs: list[dict[str, Any]] = []
        self._view: _ActiveView | None = None
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self._means: list[float] = []
        self._max = 0.0
        self._zeros = 0
        self._count = 0
        self._hist = np.zeros(len(GRAD_BIN_EDGES) - 1, dtype=np.int64)

    def on_train_begin(self, model: nn.Module, state: Any) -> None:
        self._view = _ActiveView(recurrent_weight(model))

    def on_after_backward(self, model: nn.Module, state: Any) -> None:
        if state.step % self.every:
            return
        g = self._view.grads() if self._view else None
        if g is None:
            return
        a = g.abs().double().numpy()
        self._means.append(float(a.mean()) if a.size else 0.0)
        self._max = max(self._max, float(a.max()) if a.size else 0.0)
        nz = a[a > 0]
        self._zeros += int(a.size - nz.size)
        self._count += int(a.size)
        self._hist += np.histogram(np.log10(nz), bins=GRAD_BIN_EDGES)[0]

    def on_epoch_end(self, model: nn.Module, state: Any) -> None:
        means = np.array(self._means) if self._means else np.array([np.nan])
        self.epochs.append({
            "epoch": state.epoch,
            "steps_recorded": len(self._means),
            "mean_abs_grad": float(np.mean(means)),
            "median_step_mean_abs_grad": float(np.median(means)),
            "max_abs_grad": self._max,
            "fraction_zero": self._zeros / self._count if self._count else None,
            "log10_hist_counts": self._hist.tolist(),
        })  # fmt: skip
        self._reset_epoch()

    def state_dict(self) -> dict:
        return {"epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state.get("epochs", []))


class SignTracker(Callback):
    """Counts recurrent weights that change sign, become zero or grow from zero between epoch ends, split by
    each synapse's sign at initialisation (paper Fig. S5A: negative weights grow, positive ones turn negative).

    With Dale's law ("clip") no weight can change sign; what the projection does shows up as ``to_zero``.
    Comparisons are made between epoch-end snapshots (the sign a weight had at the end of each epoch), so a
    weight zeroed and regrown within one epoch is not counted. ``epochs`` holds, per epoch,
    ``{init_sign: {"pos_to_neg", "neg_to_pos", "to_zero", "from_zero", "n"}}`` for init_sign in
    "positive", "negative", "zero".
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self._init: Tensor | None = None
        self._prev: Tensor | None = None
        self._view: _ActiveView | None = None

    def on_train_begin(self, model: nn.Module, state: Any) -> None:
        self._view = _ActiveView(recurrent_weight(model))
        if self._init is None:
            self._init = self._view.values()
            self._prev = self._init.clone()

    def on_epoch_end(self, model: nn.Module, state: Any) -> None:
        now = self._view.values()
        self.epochs.append({"epoch": state.epoch, **sign_changes(self._init, self._prev, now)})
        self._prev = now

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "init": self._init, "prev": self._prev}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state.get("epochs", []))
        self._init, self._prev = state.get("init"), state.get("prev")


def sign_changes(init: Tensor, before: Tensor, after: Tensor) -> dict[str, dict[str, int]]:
    """Sign transitions ``before -> after`` of the same synapses ``(nnz,)``, grouped by sign in ``init``."""
    out = {}
    for name, sel in (("positive", init > 0), ("negative", init < 0), ("zero", init == 0)):
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
    """Excitatory and inhibitory input per node (``(N,)`` arrays; summaries over nodes).

    Structural: Σ of incoming weights from excitatory (``struct_exc`` ≥ 0) and inhibitory (``struct_inh`` ≤ 0)
    nodes. Functional: the recurrent input W h at the last step, split by presynaptic population and averaged
    over inputs (``func_exc``, ``func_inh``); ``func_net`` = their sum.
    """

    struct_exc: np.ndarray
    struct_inh: np.ndarray
    func_exc: np.ndarray
    func_inh: np.ndarray

    @property
    def func_net(self) -> np.ndarray:
        return self.func_exc + self.func_inh

    def summary(self) -> dict[str, float]:
        """Means over nodes, and the fraction of nodes whose net recurrent input is excitatory."""
        return {
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
    dataset: TensorDataset,
    *,
    max_samples: int = 1000,
    batch_size: int = 250,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> EIBalance:
    """Net excitatory vs inhibitory recurrent input per node of a Dale network (the paper's E/I-imbalance
    explanation of the learning delay) on up to ``max_samples`` seeded inputs of ``dataset``."""
    rec = recurrent_weight(model)
    inh = model.recurrent.inhibitory.to(device)
    if not model.recurrent.dale:
        raise ValueError(
            "E/I balance needs a Dale network (excitatory/inhibitory identities); this one has none"
        )
    exc_f, inh_f = (~inh).float(), inh.float()
    struct_exc = rec.linear(exc_f[None])[0]
    struct_inh = rec.linear(inh_f[None])[0]
    x_all = dataset.tensors[0]
    if x_all.shape[1] < 2:
        raise ValueError("functional E/I balance needs sequences of at least 2 steps")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x_all), generator=g)[: min(max_samples, len(x_all))]
    sum_e = torch.zeros(rec.n_out, device=device, dtype=torch.float64)
    sum_i = torch.zeros_like(sum_e)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(idx), batch_size):
            states = model.hidden(x_all[idx[start : start + batch_size]].to(device), all_steps=True)
            pre = states[:, -2]  # presynaptic activity feeding the last step
            sum_e += rec.linear(pre * exc_f).sum(0).double()
            sum_i += rec.linear(pre * inh_f).sum(0).double()
    finally:
        model.train(was_training)
    n = len(idx)
    as_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    return EIBalance(as_np(struct_exc), as_np(struct_inh), as_np(sum_e / n), as_np(sum_i / n))


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
