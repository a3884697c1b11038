"""What rewiring criteria measure on a weight: gradients at inactive positions and Hebbian co-activity.

* :class:`GradientProbe` — returned by :meth:`SparseWeight.probe_gradients` (RigL's grow criterion).
* :class:`ActivityAccumulator` — per-node activity statistics over a rewiring period, for the Hebbian
  criterion (G2GNet): cosine similarity of a post- and a pre-neuron's activation vectors over all samples of
  the period (not an average of per-batch cosines), without an ``n_out x n_in`` matrix.

Backend-independent: imports torch and the sparse kernels only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from cortexnet.sparse._csr_index import Panels, build_panels, default_panel_cols, k_chunks, sddmm_acc_

if TYPE_CHECKING:
    from cortexnet.connectivity import Connectivity


class GradientProbe:
    """Candidate positions of one :meth:`SparseWeight.probe_gradients` block and their gradient.

    Attributes:
        rows, cols: int64 ``(K,)`` candidate positions (on the weight's device).
        values: float ``(K,)`` the zero leaf tensor the forward pass uses at the candidates.
        structure: backend cache of the temporary union structure (None outside the block).
    """

    def __init__(self, rows: Tensor, cols: Tensor, values: Tensor) -> None:
        self.rows = rows
        self.cols = cols
        self.values = values
        self.structure: Any = None

    @property
    def grad(self) -> Tensor:
        """float ``(K,)``: dL/dW_eff at the candidates, accumulated over every backward pass in the block."""
        g = self.values.grad
        if g is None:
            if self.values.numel() == 0:
                return torch.zeros_like(self.values.detach())
            raise RuntimeError(
                "probe.grad: no gradient reached the candidates; run the forward pass and loss.backward() "
                "inside the `with weight.probe_gradients(rows, cols) as probe:` block"
            )
        return g.detach().clone()


class ActivityAccumulator:
    """Accumulates ``score(i, j) = <post_i, pre_j> / (||post_i|| ||pre_j||)`` over a rewiring period.

    ``post_i`` is post-neuron i's activation over all samples since :meth:`reset` (all batches and time steps
    concatenated), ``pre_j`` pre-neuron j's. Sums of squares per node are kept in float64 (``n_in + n_out``).
    The cross term is kept in one of two ways (``positions``):

    * ``None`` — **samples**: the period's activations are stored in chunks of ``chunk_samples`` rows; any
      position can be scored (:meth:`scores`) and :meth:`topk` ranks all positions. Memory:
      ``samples · (n_in + n_out) · itemsize(dtype)`` (e.g. a 1000-iteration period at batch 64 of a
      784 -> 1000 layer, float32: 457 MB): for feed-forward layers of moderate size and period.
    * ``(rows, cols)`` int ``(K,)`` — **tracked**: the cross term is accumulated only at those positions (e.g.
      the active set plus candidates drawn when the period starts). Memory ``O(n_in + n_out + K)``; each
      :meth:`update` costs one sampled product at K positions (like a csr weight gradient). Only tracked
      positions can be scored. For large recurrent layers.

    Nodes with zero activity give score 0 (not NaN). :meth:`state_dict` / :meth:`load_state_dict` let a resumed
    run continue identically.

    Args:
        n_in, n_out: pre- and post-synaptic node counts (the weight is ``(n_out, n_in)``).
        positions: tracked positions, or None for the samples mode.
        dtype: dtype of stored activations / of the tracked cross term (float32 default; float64 is exact).
        device: where the statistics live (default: the device of the first :meth:`update`).
        chunk_samples: rows per stored chunk (samples mode).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        positions: tuple[Tensor, Tensor] | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        chunk_samples: int = 4096,
    ) -> None:
        if n_in < 1 or n_out < 1:
            raise ValueError(f"ActivityAccumulator needs n_in, n_out >= 1, got n_in={n_in}, n_out={n_out}")
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
        if not dtype.is_floating_point:
            raise ValueError(f"ActivityAccumulator dtype must be floating point, got {dtype}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else None
        self.chunk_samples = int(chunk_samples)
        self._tracked_keys: Tensor | None = None
        if positions is not None:
            self._tracked_keys = self._unique_keys(*positions, "positions")[0]
        self.reset()

    # -- accumulation -----------------------------------------------------------------------------------
    @property
    def tracked_keys(self) -> Tensor | None:
        """Tracked mode: the sorted flat positions ``row * n_in + col`` (int64) it scores; None in samples mode."""
        return self._tracked_keys

    @property
    def tracked(self) -> bool:
        """Whether the cross term is accumulated only at fixed positions (tracked mode)."""
        return self._tracked_keys is not None

    def reset(self, positions: tuple[Tensor, Tensor] | None = None) -> None:
        """Start a new period (after a rewiring update). ``positions`` (tracked mode only) replaces the
        tracked positions; None keeps them."""
        if positions is not None:
            if not self.tracked:
                raise ValueError("reset(positions=...) needs a tracked accumulator; build it with positions=")
            self._tracked_keys = self._unique_keys(*positions, "positions")[0]
        self.samples = 0
        self._ssq_pre: Tensor | None = None
        self._ssq_post: Tensor | None = None
        self._chunks: list[tuple[Tensor, Tensor]] = []
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._panels: Panels | None = None
        self._cross: Tensor | None = None  # tracked mode: (K,) in panel order of self._panels

    @torch.no_grad()
    def update(self, pre: Tensor, post: Tensor) -> None:
        """Add samples: ``pre`` ``(..., n_in)`` and ``post`` ``(..., n_out)`` with the same leading shape (for a
        recurrent layer pre = h_{t-1}, post = h_t with time flattened into the leading dims)."""
        if (
            pre.shape[-1:] != (self.n_in,)
            or post.shape[-1:] != (self.n_out,)
            or pre.shape[:-1] != post.shape[:-1]
        ):
            raise ValueError(
                f"update needs pre (..., {self.n_in}) and post (..., {self.n_out}) with equal leading dims, got "
                f"{tuple(pre.shape)} and {tuple(post.shape)}"
            )
        if self.device is None:
            self.device = pre.device
        pre = pre.detach().reshape(-1, self.n_in).to(self.device, self.dtype)
        post = post.detach().reshape(-1, self.n_out).to(self.device, self.dtype)
        if pre.shape[0] == 0:
            return
        self._init_sums()
        self._ssq_pre += torch.sum(pre * pre, 0, dtype=torch.float64)
        self._ssq_post += torch.sum(post * post, 0, dtype=torch.float64)
        self.samples += pre.shape[0]
        if self.tracked:
            panels = self._tracked_panels()
            if self._cross is None:
                self._cross = torch.zeros(self._tracked_keys.numel(), dtype=self.dtype, device=self.device)
            _sddmm(self._cross, panels, post, pre)
        else:
            self._pending.append((pre.clone(), post.clone()))
            self._fold_pending()

    # -- queries ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Cosine scores ``(K,)`` (accumulator dtype) at positions ``(rows[k], cols[k])`` (int ``(K,)``);
        0 where a node had no activity. Tracked mode: every position must be tracked."""
        keys, inverse = self._unique_keys(rows, cols, "scores")
        if self.tracked:
            sorted_keys = self._tracked_keys
            pos = torch.searchsorted(sorted_keys, keys).clamp(max=max(sorted_keys.numel() - 1, 0))
            found = (
                sorted_keys[pos] == keys if sorted_keys.numel() else torch.zeros_like(keys, dtype=torch.bool)
            )
            if not bool(found.all()):
                bad = int(keys[~found][0])
                raise ValueError(
                    f"scores got position ({bad // self.n_in}, {bad % self.n_in}), which this tracked "
                    "accumulator does not track; reset(positions=...) with every position you will score"
                )
            cross = self._tracked_cross().index_select(0, pos)
        else:
            cross = self._samples_cross(keys)
        return self._normalise(cross, keys)[inverse]

    @torch.no_grad()
    def topk(self, k: int, exclude: Connectivity | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The ``k`` highest-scoring positions not in ``exclude`` (e.g. the active set), samples mode only.

        Scores are formed in row blocks of at most ~4M entries (no ``n_out x n_in`` matrix kept; cost
        ``samples · n_out · n_in``). Returns int64 ``rows``, ``cols`` and ``scores``, each ``(k,)``, scores
        descending (ties in the order ``torch.topk`` picks).
        """
        if self.tracked:
            raise ValueError("topk ranks all positions and needs a samples-mode accumulator (positions=None)")
        free = self.n_out * self.n_in - (exclude.nnz if exclude is not None else 0)
        if not 0 <= k <= free:
            raise ValueError(f"topk k must be in [0, {free}] (positions not excluded), got {k}")
        if exclude is not None and exclude.shape != (self.n_out, self.n_in):
            raise ValueError(f"topk exclude has shape {exclude.shape}, expected {(self.n_out, self.n_in)}")
        dev = self.device or torch.device("cpu")
        chunks = self._all_chunks()
        best_s = torch.empty(0, dtype=self.dtype, device=dev)
        best_k = torch.empty(0, dtype=torch.int64, device=dev)
        block = max(1, (1 << 22) // self.n_in)
        ex_rows = exclude.rows().to(dev) if exclude is not None else None
        for r0 in range(0, self.n_out, block):
            r1 = min(self.n_out, r0 + block)
            cross = torch.zeros(r1 - r0, self.n_in, dtype=self.dtype, device=dev)
            for pre, post in chunks:
                cross.addmm_(post[:, r0:r1].t(), pre)
            rows = torch.arange(r0, r1, device=dev).repeat_interleave(self.n_in)
            keys = rows * self.n_in + torch.arange(self.n_in, device=dev).repeat(r1 - r0)
            s = self._normalise(cross.reshape(-1), keys)
            if exclude is not None:
                a, b = int(exclude.crow[r0]), int(exclude.crow[r1])
                s[(ex_rows[a:b] - r0) * self.n_in + exclude.col[a:b].to(dev)] = -math.inf
            take = min(k, s.numel())
            top_s, top_i = torch.topk(s, take)
            best_s, order = torch.topk(torch.cat([best_s, top_s]), min(k, best_s.numel() + take))
            best_k = torch.cat([best_k, keys[top_i]])[order]
        return best_k // self.n_in, best_k % self.n_in, best_s

    @property
    def nbytes(self) -> int:
        """Bytes held by the statistics (stored activations or tracked cross term, plus the norms)."""
        tensors: list[Tensor] = [t for pair in self._chunks + self._pending for t in pair]
        tensors += [
            t for t in (self._ssq_pre, self._ssq_post, self._cross, self._tracked_keys) if t is not None
        ]
        return sum(t.numel() * t.element_size() for t in tensors)

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the period identically (tensors on the accumulator's device)."""
        state: dict[str, Any] = {
            "n_in": self.n_in,
            "n_out": self.n_out,
            "dtype": str(self.dtype).removeprefix("torch."),
            "chunk_samples": self.chunk_samples,
            "samples": self.samples,
            "ssq_pre": None if self._ssq_pre is None else self._ssq_pre.clone(),
            "ssq_post": None if self._ssq_post is None else self._ssq_post.clone(),
        }
        if self.tracked:
            state["tracked_keys"] = self._tracked_keys.clone()
            state["cross"] = None if self._cross is None else self._tracked_cross().clone()
        else:
            pairs = self._chunks + self._pending
            state["pre"] = torch.cat([p for p, _ in pairs]) if pairs else None
            state["post"] = torch.cat([q for _, q in pairs]) if pairs else None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (same ``n_in``, ``n_out``, ``dtype`` and mode; tracked positions are
        taken from the state)."""
        mine = (self.n_in, self.n_out, str(self.dtype).removeprefix("torch."), self.tracked)
        theirs = (state["n_in"], state["n_out"], state["dtype"], "tracked_keys" in state)
        if mine != theirs:
            raise ValueError(
                f"ActivityAccumulator state is for (n_in, n_out, dtype, tracked) = {theirs}, this one is {mine}; "
                "build the accumulator with the saved configuration"
            )
        if self.tracked:
            self._tracked_keys = state["tracked_keys"].to(torch.int64)
        self.reset()
        self.chunk_samples = int(state["chunk_samples"])
        self.samples = int(state["samples"])
        if state["ssq_pre"] is None:
            return
        if self.device is None:
            self.device = state["ssq_pre"].device
        dev = self.device
        self._ssq_pre = state["ssq_pre"].to(dev, torch.float64).clone()
        self._ssq_post = state["ssq_post"].to(dev, torch.float64).clone()
        if self.tracked:
            self._tracked_keys = self._tracked_keys.to(dev)
            if state["cross"] is not None:
                canonical = state["cross"].to(dev, self.dtype)
                panels = self._tracked_panels()
                self._cross = canonical if panels.perm is None else canonical.index_select(0, panels.perm)
        elif state["pre"] is not None:
            self._pending = [
                (state["pre"].to(dev, self.dtype).clone(), state["post"].to(dev, self.dtype).clone())
            ]
            self._fold_pending()

    # -- internals --------------------------------------------------------------------------------------
    def _init_sums(self) -> None:
        if self._ssq_pre is None:
            self._ssq_pre = torch.zeros(self.n_in, dtype=torch.float64, device=self.device)
            self._ssq_post = torch.zeros(self.n_out, dtype=torch.float64, device=self.device)
        if self._tracked_keys is not None:
            self._tracked_keys = self._tracked_keys.to(self.device)

    def _fold_pending(self) -> None:
        """Move pending rows into full chunks of exactly ``chunk_samples`` rows (boundaries depend only on the
        sample count, so a reloaded accumulator sums in the same order)."""
        rows = sum(p.shape[0] for p, _ in self._pending)
        if rows < self.chunk_samples:
            return
        pre = torch.cat([p for p, _ in self._pending])
        post = torch.cat([q for _, q in self._pending])
        full = rows // self.chunk_samples * self.chunk_samples
        for a in range(0, full, self.chunk_samples):
            self._chunks.append(
                (pre[a : a + self.chunk_samples].clone(), post[a : a + self.chunk_samples].clone())
            )
        self._pending = [(pre[full:].clone(), post[full:].clone())] if full < rows else []

    def _all_chunks(self) -> list[tuple[Tensor, Tensor]]:
        if not self._pending:
            return list(self._chunks)
        tail = (torch.cat([p for p, _ in self._pending]), torch.cat([q for _, q in self._pending]))
        return [*self._chunks, tail]

    def _unique_keys(self, rows: Tensor, cols: Tensor, what: str) -> tuple[Tensor, Tensor]:
        """Sorted unique row-major keys of int ``(K,)`` positions and the inverse map ``(K,)``."""
        if (
            rows.dim() != 1
            or rows.shape != cols.shape
            or rows.is_floating_point()
            or cols.is_floating_point()
        ):
            raise ValueError(
                f"{what} needs integer rows and cols of equal shape (K,), got {rows.dtype} {tuple(rows.shape)} "
                f"and {cols.dtype} {tuple(cols.shape)}"
            )
        for name, idx, size in (("row", rows, self.n_out), ("col", cols, self.n_in)):
            bad = (idx < 0) | (idx >= size)
            if bool(bad.any()):
                raise ValueError(f"{what} got {name} index {int(idx[bad][0])} outside [0, {size})")
        dev = self.device if self.device is not None else rows.device
        keys = rows.to(dev, torch.int64) * self.n_in + cols.to(dev, torch.int64)
        uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        return uniq, inverse

    def _panels_for(self, keys: Tensor) -> Panels:
        """Column panels of the sorted unique positions ``keys`` on the accumulator's device."""
        keys = keys.cpu()
        rows, cols = keys // self.n_in, keys % self.n_in
        crow = torch.zeros(self.n_out + 1, dtype=torch.int64)
        crow[1:] = torch.bincount(rows, minlength=self.n_out).cumsum(0)
        dev = self.device or torch.device("cpu")
        panel = default_panel_cols(self.n_out, self.n_in, keys.numel(), dev)
        return build_panels(crow, cols, self.n_out, self.n_in, panel, dev, transpose=False)

    def _tracked_panels(self) -> Panels:
        if self._panels is None:
            self._panels = self._panels_for(self._tracked_keys)
        return self._panels

    def _tracked_cross(self) -> Tensor:
        """Tracked cross term in sorted-key order ``(K,)``."""
        if self._cross is None:
            return torch.zeros(self._tracked_keys.numel(), dtype=self.dtype, device=self._tracked_keys.device)
        return self._tracked_panels().scatter(self._cross)

    def _samples_cross(self, keys: Tensor) -> Tensor:
        """<post_i, pre_j> at sorted unique positions ``keys`` from the stored chunks ``(K,)``."""
        dev = self.device or keys.device
        acc = torch.zeros(keys.numel(), dtype=self.dtype, device=dev)
        if keys.numel() == 0 or self.samples == 0:
            return acc
        panels = self._panels_for(keys)
        for pre, post in self._all_chunks():
            _sddmm(acc, panels, post, pre)
        return panels.scatter(acc)

    def _normalise(self, cross: Tensor, keys: Tensor) -> Tensor:
        """``cross / (||post_i|| ||pre_j||)`` at ``keys``; 0 where either norm is 0."""
        if self._ssq_pre is None:
            return torch.zeros(keys.numel(), dtype=self.dtype, device=cross.device)
        rows, cols = keys // self.n_in, keys % self.n_in
        denom = (self._ssq_post.index_select(0, rows) * self._ssq_pre.index_select(0, cols)).sqrt()
        safe = torch.where(denom > 0, denom, torch.ones_like(denom))
        return torch.where(denom > 0, cross.to(torch.float64) / safe, 0.0).to(self.dtype)


def _sddmm(acc: Tensor, panels: Panels, post: Tensor, pre: Tensor) -> None:
    """``acc[e] += Σ_s post[s, row_e] · pre[s, col_e]`` over samples in chunks (``acc`` in panel order)."""
    for s0, s1 in k_chunks(pre.shape[0], 1):
        g = post[s0:s1].t().contiguous()
        x = pre[s0:s1].t().contiguous()
        sddmm_acc_(acc, panels, g, x)
