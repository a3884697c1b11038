"""Fixed sample subsets of any data source, in fixed batches: what the analysis probes read.

A probe that measures "the first n inputs", "a seeded random subset of n" or "every input, in batches of b"
must see exactly the same samples in exactly the same batches whether it was handed a ``TensorDataset``, a
map-style ``Dataset`` holding the same samples, or a ``DataLoader`` over it (``shuffle=False``) — otherwise
batch-dependent arithmetic (float32 sums, dropout masks drawn per batch) gives other numbers. These helpers
address samples by their *position*: the index in a dataset, or the rank in a loader's iteration order. A
loader is read in its own order (with its own batch size, workers and collate function) and its batches are
re-cut to the probe's batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .batching import Batches, batches, model_device, model_dtype


def probe_source(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int,
    device: torch.device | str | None = None,
    what: str = "dataset",
) -> tuple[Batches, torch.device]:
    """``data`` (``TensorDataset``, map-style ``Dataset`` of ``(x (T, F), y)`` or ``DataLoader``) as
    :class:`~cortexnet.data.batching.Batches` of ``(x (B, T, F), y (B,))`` in ``model``'s dtype, and the device
    to compute on: ``device`` when given, else the model's (:func:`~cortexnet.data.batching.model_device`)."""
    source = batches(data, batch_size=batch_size, dtype=model_dtype(model), what=what)
    if source.n_samples is None:
        raise ValueError(
            f"{what}: the probes address samples by position and need a sized dataset or DataLoader; this "
            "loader (over an IterableDataset) has no length: pass the dataset itself or a map-style one"
        )
    return source, model_device(model) if device is None else torch.device(device)


def first_input(source: Batches) -> Tensor:
    """The first sample of ``source`` as a batch ``(1, T, F)`` (converted to the source's dtype)."""
    if source.n_samples == 0:
        raise ValueError(f"{source.what} is empty: the probes need at least one sample")
    if source.is_loader:
        x, _ = next(iter(source.epoch()))
        return x[:1]
    x, _ = next(iter(source.epoch([torch.arange(1)])))
    return x


def select_batches(source: Batches, order: Tensor | None, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x (b, T, F), y (b,))`` for the samples at positions ``order`` (int64 ``(k,)``, distinct, in
    that order; None: every sample in order), ``batch_size`` at a time (the last batch may be smaller).

    Batches are identical for a ``TensorDataset``, a map-style ``Dataset`` with the same samples and a
    ``DataLoader`` over them that keeps their order: a loader is read once, in its own order; only the selected
    samples are kept (all of them in memory only when ``order`` is not ascending). A loader that yields another
    number of samples than its dataset holds (``drop_last=True``, a subset sampler) is a ``ValueError``, since
    positions would then mean nothing.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    n = source.n_samples
    if order is not None:
        order = torch.as_tensor(order, dtype=torch.int64).reshape(-1)
        if order.numel() and (int(order.min()) < 0 or int(order.max()) >= n):
            raise ValueError(
                f"sample positions must lie in [0, {n}) for {source.what} of {n} samples, got "
                f"[{int(order.min())}, {int(order.max())}]"
            )
    if not source.is_loader:
        index = torch.arange(n) if order is None else order
        yield from source.epoch(list(index.split(batch_size)))
        return
    yield from _loader_batches(source, order, batch_size)


def _loader_batches(
    source: Batches, order: Tensor | None, batch_size: int
) -> Iterator[tuple[Tensor, Tensor]]:
    n = source.n_samples
    k = n if order is None else len(order)
    rank = torch.arange(n) if order is None else torch.full((n,), -1, dtype=torch.int64)
    if order is not None:
        rank[order] = torch.arange(k)
    ascending = order is None or bool((order[1:] > order[:-1]).all())
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    ranks: list[Tensor] = []
    buffered = 0
    offset = 0
    for x, y in source.epoch():
        b = len(x)
        if offset + b > n:
            _count_error(source, f"more than {n}")
        r = rank[offset : offset + b]
        offset += b
        keep = r >= 0
        if not bool(keep.any()):
            continue
        if bool(keep.all()):
            xs.append(x)
            ys.append(y)
        else:
            xs.append(x[keep.to(x.device)])
            ys.append(y[keep.to(y.device)])
        if not ascending:
            ranks.append(r[keep])
        buffered += int(keep.sum())
        while ascending and buffered >= batch_size:
            x_all, y_all = torch.cat(xs), torch.cat(ys)
            yield x_all[:batch_size], y_all[:batch_size]
            xs, ys = [x_all[batch_size:]], [y_all[batch_size:]]
            buffered -= batch_size
    if offset != n:
        _count_error(source, str(offset))
    if not xs:
        return
    x_all, y_all = torch.cat(xs), torch.cat(ys)
    if not ascending:
        perm = torch.cat(ranks).argsort()
        x_all, y_all = x_all[perm.to(x_all.device)], y_all[perm.to(y_all.device)]
    for start in range(0, len(x_all), batch_size):
        yield x_all[start : start + batch_size], y_all[start : start + batch_size]


def _count_error(source: Batches, got: str) -> None:
    raise ValueError(
        f"{source.what}: the DataLoader yielded {got} samples but its dataset holds {source.n_samples}; the "
        "probes address samples by position and need each one exactly once: use drop_last=False and the default "
        "sampler (shuffle=False), or pass the dataset itself"
    )
