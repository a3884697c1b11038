"""Batches of ``(x (B, T, F), y (B,))`` from any source: a ``TensorDataset``, any map-style ``Dataset`` of
``(x (T, F), y)`` samples, or a ``DataLoader`` — the one way training, evaluation and the analysis probes read data.

Labels are one class index per sequence, ``(n,)`` (batches ``(B,)``), or per-step targets ``(n, T)`` (batches
``(B, T)``; a dataset's samples ``(T,)``) with T equal to the inputs' number of steps and
:data:`~cortexnet.data.sequences.IGNORE_INDEX` (-100) at steps that are not scored.

* ``TensorDataset``: batches are index sets into its tensors (the fast path; a seeded ``generator`` shuffles with
  ``torch.randperm``, so a run's data order is fixed by one seed and survives a resume bit-exactly);
* map-style ``Dataset`` (``__getitem__`` + ``__len__``): the same index sets, samples collated with
  ``torch.utils.data.default_collate`` — so a ``Dataset`` holding the same samples as a ``TensorDataset`` gives
  exactly the same batches;
* ``DataLoader``: used as given (its own batch size, sampler, workers and shuffling); ``generator`` is ignored.

Inputs of a floating dtype other than the model's are converted to it (once up front for tensors, per batch for
datasets and loaders) with one log line; integer inputs and wrong shapes are errors that name the expected
``(B, T, F)``, raised before any training step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, default_collate

log = logging.getLogger(__name__)


class Batches:
    """A re-iterable source of ``(x, y)`` batches with a known number of samples.

    Build with :func:`batches`; iterate once per epoch with :meth:`epoch`. ``n_samples`` is the number of
    samples (``len(loader.dataset)`` for a loader), ``batch_size`` the batch size (a loader's own, or None when
    it has none).
    """

    def __init__(
        self,
        data: Any,
        *,
        batch_size: int,
        dtype: torch.dtype,
        n_features: int | None,
        what: str,
    ) -> None:
        if isinstance(data, IterableDataset):
            raise TypeError(
                f"{what}: an IterableDataset has no length or indices; wrap it in a DataLoader "
                "(DataLoader(dataset, batch_size=...)) or pass a map-style Dataset"
            )
        self.what = what
        self.dtype = dtype
        self.is_loader = isinstance(data, DataLoader)
        self._converted_logged = False
        if isinstance(data, TensorDataset):
            x, y = data.tensors[:2]
            x = self._convert(x)
            self._tensors: tuple[Tensor, Tensor] | None = (x, y)
            self._dataset = None
            self.n_samples: int | None = len(y)
            self._check_first(n_features)  # before the labels become int64: float labels are an error
            self._tensors = (x, _labels(y))
        elif self.is_loader:
            self._tensors = None
            self._dataset = data
            try:
                self.n_samples = len(data.dataset)  # type: ignore[arg-type]
            except TypeError:  # a loader over an IterableDataset: its length is known only afterwards
                self.n_samples = None
        elif isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
            self._tensors = None
            self._dataset = data
            self.n_samples = len(data)
        else:
            raise TypeError(
                f"{what} must be a TensorDataset, a map-style Dataset of (x (T, F), y) or a DataLoader, "
                f"got {type(data).__name__}"
            )
        self.batch_size = data.batch_size if self.is_loader else batch_size
        if not self.is_loader and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch size must be an integer >= 1, got {batch_size!r}")
        self.n_features = n_features
        # A loader's first batch is checked when it comes (reading one ahead would cost a pass and a draw
        # of its sampler's random state); tensors (above) and datasets are checked now.
        if not self.is_loader and self._tensors is None:
            self._check_first(n_features)
        self._checked = not self.is_loader

    # -- checks -------------------------------------------------------------------------------------------
    def _convert(self, x: Tensor) -> Tensor:
        if not torch.is_tensor(x):
            x = torch.as_tensor(x)
        if not x.is_floating_point():
            raise TypeError(
                f"{self.what}: inputs must be floating point (B, T, F) sequences, got {x.dtype}; convert them "
                "(e.g. x.float() / 255 for images)"
            )
        if x.dtype != self.dtype:
            if not self._converted_logged:
                log.info(
                    "%s: converting inputs from %s to %s (the model's dtype)", self.what, x.dtype, self.dtype
                )
                self._converted_logged = True
            x = x.to(self.dtype)
        return x

    def _check_first(self, n_features: int | None, batch: Any = None) -> None:
        """Fail at the start, not deep inside a kernel, when the samples are not ``(T, F)`` sequences."""
        if self.n_samples == 0:
            return
        if self._tensors is not None:
            shape = tuple(self._tensors[0].shape)
            y = self._tensors[1]
        else:
            sample = batch if self.is_loader else self._dataset[0]  # type: ignore[index]
            if not isinstance(sample, (tuple, list)) or len(sample) < 2:
                raise TypeError(
                    f"{self.what}: samples must be (x, y) pairs (tuples or lists), got {type(sample).__name__}"
                )
            x0, y = sample[0], sample[1]
            x0 = torch.as_tensor(x0)
            # A loader yields batches (B, T, F); a dataset yields samples (T, F).
            shape = tuple(x0.shape) if self.is_loader else (1, *x0.shape)
            y = torch.as_tensor(y)
        expected = f"(B, T, {n_features})" if n_features is not None else "(B, T, F)"
        if len(shape) != 3 or (n_features is not None and shape[-1] != n_features):
            got = shape if self._tensors is not None or self.is_loader else shape[1:]
            unit = "batches" if self._tensors is not None or self.is_loader else "samples (T, F) forming"
            raise ValueError(
                f"{self.what}: expected {unit} {expected} sequences (batch, steps, features), got shape {got}; "
                "reshape the inputs (images row by row: (n, H, W·C))"
            )
        if self.is_loader and not _label_shape_ok(y, shape):
            raise ValueError(
                f"{self.what}: labels must be a batch of class indices (B,) or of per-step targets (B, T) with "
                f"T = the inputs' {shape[1]} steps, got shape {tuple(y.shape)}"
            )
        if self._tensors is None and not self.is_loader and y.dim() > 0 and tuple(y.shape) != (shape[1],):
            raise ValueError(
                f"{self.what}: a sample's label must be a class index (a scalar) or per-step targets (T,) with "
                f"T = the inputs' {shape[1]} steps, got shape {tuple(y.shape)}"
            )
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise TypeError(f"{self.what}: labels must be integer class indices, got {y.dtype}")
        if self._tensors is not None and not _label_shape_ok(y, shape):
            raise ValueError(
                f"{self.what}: labels must be class indices of shape (n,) or per-step targets (n, T) with T = "
                f"the inputs' {shape[1]} steps, got {tuple(y.shape)} (one-hot or (n, 1) labels: use y.argmax(1) "
                "or y.view(-1))"
            )

    # -- iteration -----------------------------------------------------------------------------------------
    def index_batches(self, generator: torch.Generator | None) -> list[Tensor] | None:
        """The index sets of one epoch (a permutation from ``generator``, or in order without it); None for a
        loader (its own order)."""
        if self.is_loader:
            return None
        order = (
            torch.randperm(self.n_samples, generator=generator)
            if generator is not None
            else torch.arange(self.n_samples)
        )
        return list(order.split(self.batch_size))

    def n_batches(self) -> int | None:
        """Batches per epoch (None for a loader without a length, e.g. over an IterableDataset)."""
        if self.is_loader:
            try:
                return len(self._dataset)  # type: ignore[arg-type]
            except TypeError:
                return None
        return -(-self.n_samples // self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        """The loader's generator state (what its shuffling draws next), for a bit-exact resume."""
        g = getattr(self._dataset, "generator", None) if self.is_loader else None
        return {"loader_generator": g.get_state() if g is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (no-op when either side has no loader generator)."""
        g = getattr(self._dataset, "generator", None) if self.is_loader else None
        saved = state.get("loader_generator")
        if g is not None and saved is not None:
            g.set_state(saved.cpu())

    def epoch(self, index_batches: list[Tensor] | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x (B, T, F), y (B,) or (B, T))`` for one epoch: over ``index_batches`` (from
        :meth:`index_batches`), or in order when None; a loader yields its own batches."""
        if self.is_loader:
            for batch in self._dataset:  # type: ignore[union-attr]
                if not self._checked:
                    self._check_first(self.n_features, batch)
                    self._checked = True
                yield self._convert(batch[0]), _labels(batch[1])
            return
        if index_batches is None:
            index_batches = self.index_batches(None)
        for idx in index_batches:  # type: ignore[union-attr]
            if self._tensors is not None:
                x, y = self._tensors
                yield x[idx], y[idx]
            else:
                samples = [self._dataset[int(i)] for i in idx]  # type: ignore[index]
                xb, yb = default_collate([(s[0], s[1]) for s in samples])
                yield self._convert(torch.as_tensor(xb)), _labels(yb)


def _label_shape_ok(y: Tensor, x_shape: tuple[int, ...]) -> bool:
    """Whether labels ``y`` fit inputs of shape ``x_shape`` ``(n, T, F)``: ``(n,)`` or per-step ``(n, T)``."""
    if y.dim() == 1:
        return True
    return y.dim() == 2 and len(x_shape) == 3 and tuple(y.shape) == tuple(x_shape[:2])


def _labels(y: Any) -> Tensor:
    """Class indices as int64 (cross-entropy's dtype), whatever integer type the data came in: ``(B,)``, or
    per-step targets ``(B, T)`` (:data:`~cortexnet.data.sequences.IGNORE_INDEX` kept as is)."""
    y = torch.as_tensor(y)
    return y if y.dtype == torch.int64 else y.long()


def batches(
    data: Any,
    *,
    batch_size: int = 100,
    dtype: torch.dtype = torch.float32,
    n_features: int | None = None,
    what: str = "dataset",
) -> Batches:
    """Wrap ``data`` (``TensorDataset``, map-style ``Dataset`` of ``(x (T, F), y)``, or ``DataLoader``) as
    :class:`Batches` of ``(x (B, T, F) in dtype, y (B,) int64)`` — or ``y (B, T) int64`` for per-step targets.

    Checks the first sample: inputs must be floating point and 3-D per batch (with ``n_features`` features per
    step when given), labels integer, of shape ``(n,)`` or ``(n, T)`` (a dataset's sample: a scalar or ``(T,)``;
    a loader's batch: ``(B,)`` or ``(B, T)``). Raises ``TypeError``/``ValueError`` naming ``what`` and the
    expected shape.
    """
    return Batches(data, batch_size=batch_size, dtype=dtype, n_features=n_features, what=what)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s first floating parameter (float32 when it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU when it has none)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
