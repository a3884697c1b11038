"""Splitting a loaded dataset: the validation split and the limited-data subset, both seeded and reproducible."""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .sequences import IGNORE_INDEX

if TYPE_CHECKING:
    import torch
    from torch.utils.data import TensorDataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceData:
    """What a registered dataset loader returns: the training pool and the test set, before any further split.

    Build one from plain arrays with :meth:`from_arrays` (it converts and validates); the constructor itself only
    checks shapes and label ranges.

    Attributes:
        train_x: ``(n_train, T, F)`` float32 tensor, the training pool (validation and subsets are drawn from it).
        train_y: ``(n_train,)`` int64 array of class indices in ``[0, n_classes)`` — or, for a task scored at
            every step, per-step targets ``(n_train, T)`` (T as in ``train_x``) holding class indices where a step
            is scored and :data:`~cortexnet.data.sequences.IGNORE_INDEX` where it is not.
        test_x: ``(n_test, T, F)`` float32 tensor; never used for validation.
        test_y: ``(n_test,)`` int64 array, or ``(n_test, T)`` like ``train_y`` (both the same kind).
        n_classes: number of classes.
        description: one line: the source, the train/test split rule and its seed.
        class_names: human-readable class names, ``n_classes`` of them (or empty).
        train_groups: optional ``(n_train,)`` int64 group id per training example (e.g. the subject); when given,
            the validation split takes whole groups so that no group is on both sides.
        metadata: JSON-serialisable facts worth saving beside results (subjects per split, class counts, ...).
    """

    train_x: torch.Tensor
    train_y: np.ndarray
    test_x: torch.Tensor
    test_y: np.ndarray
    n_classes: int
    description: str
    class_names: tuple[str, ...] = ()
    train_groups: np.ndarray | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
            per_step = y.ndim == 2 and x.ndim == 3 and y.shape[1] == x.shape[1]
            if x.ndim != 3 or not (y.ndim == 1 or per_step) or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{part} data must be x (n, T, F) and y (n,) or per-step y (n, T) with the same n and T, got "
                    f"x {tuple(x.shape)} and y {tuple(y.shape)}"
                )
            scored = y[y != IGNORE_INDEX] if per_step else y
            if scored.size and (scored.min() < 0 or scored.max() >= self.n_classes):
                extra = f" (or {IGNORE_INDEX} at steps not scored)" if per_step else ""
                raise ValueError(
                    f"{part} labels must lie in [0, {self.n_classes}){extra}, found [{scored.min()}, "
                    f"{scored.max()}]"
                )
        if self.train_y.ndim != self.test_y.ndim:
            raise ValueError(
                f"train and test labels must be of the same kind, got train y {self.train_y.shape} and test y "
                f"{self.test_y.shape}; give both one label per sample (n,) or both per-step targets (n, T)"
            )
        if tuple(self.train_x.shape[1:]) != tuple(self.test_x.shape[1:]):
            raise ValueError(
                f"train and test sequences differ in shape: {tuple(self.train_x.shape[1:])} vs "
                f"{tuple(self.test_x.shape[1:])}"
            )
        if self.class_names and len(self.class_names) != self.n_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.n_classes} classes")
        if self.train_groups is not None and self.train_groups.shape != self.train_y.shape:
            raise ValueError(
                f"train_groups must have shape {self.train_y.shape}, got {self.train_groups.shape}"
            )

    @classmethod
    def from_arrays(
        cls,
        train_x: Any,
        train_y: Any,
        test_x: Any,
        test_y: Any,
        *,
        n_classes: int | None = None,
        description: str = "arrays given to SourceData.from_arrays",
        class_names: Sequence[str] = (),
        train_groups: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SourceData:
        """A source from plain arrays (NumPy arrays, tensors or nested lists), converted and checked.

        Args:
            train_x, test_x: ``(n, T, F)`` sequences (n samples, T steps, F inputs per step) of any floating
                dtype, converted to float32 CPU tensors; ``(n, T)`` is taken as F = 1 (one input per step; logged
                and noted in ``description``). Values must be finite.
            train_y, test_y: ``(n,)`` class indices of any integer dtype (stored as int64) in ``[0, n_classes)``.
            n_classes: number of classes; None infers ``max label + 1`` over train and test.
            description: one line saying where the data came from and how train/test were split.
            class_names: ``n_classes`` names, or empty.
            train_groups: optional ``(n_train,)`` integer group per training sample (e.g. the subject): a
                validation split then takes whole groups.
            metadata: JSON-serialisable facts to keep beside results.

        Raises:
            ValueError / TypeError naming the bad value, what is allowed and how to fix it.
        """
        x_tr, flat_tr = _as_sequences(train_x, "train_x")
        x_te, flat_te = _as_sequences(test_x, "test_x")
        y_tr = _as_labels(train_y, "train_y", len(x_tr))
        y_te = _as_labels(test_y, "test_y", len(x_te))
        if tuple(x_tr.shape[1:]) != tuple(x_te.shape[1:]):
            raise ValueError(
                f"train_x and test_x must have the same (T, F) per sample, got {tuple(x_tr.shape[1:])} and "
                f"{tuple(x_te.shape[1:])}; encode both sets the same way"
            )
        top = int(max(y_tr.max(), y_te.max()))
        if n_classes is None:
            n_classes = top + 1
            if n_classes < 2:
                raise ValueError(
                    f"every label is {top}: a classifier needs at least 2 classes; check the labels, or pass "
                    "n_classes explicitly"
                )
        elif isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}; or None to infer it")
        n_classes = int(n_classes)
        for part, y in (("train_y", y_tr), ("test_y", y_te)):
            if int(y.max()) >= n_classes:
                raise ValueError(
                    f"{part} has label {int(y.max())} but n_classes={n_classes}: labels must lie in "
                    f"[0, {n_classes}); pass n_classes={top + 1} (or more), or n_classes=None to infer it"
                )
        empty = sorted(set(range(n_classes)) - set(np.unique(y_tr).tolist()))
        if empty:
            logger.warning("classes %s have no training examples (n_classes=%d)", empty, n_classes)
        if isinstance(class_names, str) or not isinstance(class_names, (Sequence, np.ndarray)):
            raise TypeError(f"class_names must be a sequence of strings, got {type(class_names).__name__}")
        names = tuple(str(c) for c in class_names)
        if names and len(names) != n_classes:
            raise ValueError(
                f"{len(names)} class_names for n_classes={n_classes}; give one name per class, or none"
            )
        groups = None
        if train_groups is not None:
            groups = _as_labels(train_groups, "train_groups", len(x_tr), negative_ok=True)
        if not isinstance(description, str) or not description.strip():
            raise ValueError(
                "description must be a non-empty string (where the data came from, how it was split)"
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping (dict) or None, got {type(metadata).__name__}")
        if flat_tr or flat_te:
            logger.info("SourceData.from_arrays: x given as (n, T), taken as (n, T, 1): one input per step")
            description = f"{description} (x given as (n, T): 1 input per step)"
        return cls(
            train_x=x_tr,
            train_y=y_tr,
            test_x=x_te,
            test_y=y_te,
            n_classes=n_classes,
            description=description,
            class_names=names,
            train_groups=groups,
            metadata=dict(metadata or {}),
        )


def _to_numpy_or_tensor(a: Any, name: str) -> Any:
    import torch

    if torch.is_tensor(a):
        return a.detach().cpu()
    arr = np.asarray(a)
    if arr.dtype == object:
        raise TypeError(
            f"{name} must be a numeric array, got an object array (ragged lists or mixed types?); give equally "
            "long sequences as one numeric array"
        )
    return arr


def _as_sequences(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """``x`` as a float32 CPU tensor ``(n, T, F)`` and whether it was given as ``(n, T)`` (made ``(n, T, 1)``)."""
    import torch

    a = _to_numpy_or_tensor(x, name)
    t = a if torch.is_tensor(a) else None
    dtype = a.dtype
    floating = t.is_floating_point() if t is not None else np.issubdtype(dtype, np.floating)
    if not floating:
        raise TypeError(
            f"{name} must hold floating-point values (any float dtype; stored as float32), got {dtype}; convert "
            "it, e.g. x.astype(numpy.float32) / 255 for 8-bit images"
        )
    shape = tuple(a.shape)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{name} must be (n, T, F) sequences (n samples, T steps, F inputs per step) or (n, T) for one input "
            f"per step, got shape {shape}; images go row by row: (n, H, W), or (n, H, W * C) for colour"
        )
    if min(shape) < 1:
        raise ValueError(f"{name} must have at least one sample, step and input, got shape {shape}")
    if t is None:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    t = t.to(torch.float32).contiguous()
    flat = t.dim() == 2
    if flat:
        t = t.unsqueeze(-1)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = int(bad.reshape(len(t), -1).any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite values (NaN or inf), the first in sample {first} (or out "
            "of float32 range); remove or impute them before training"
        )
    return t, flat


def _as_labels(y: Any, name: str, n: int, *, negative_ok: bool = False) -> np.ndarray:
    """``y`` as an int64 array ``(n,)`` of integer values (non-negative unless ``negative_ok``)."""
    import torch

    a = _to_numpy_or_tensor(y, name)
    arr = a.numpy() if torch.is_tensor(a) else a
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer class indices (any integer dtype), got {arr.dtype}; convert it, e.g. "
            "y.astype(numpy.int64), or numpy.unique(y, return_inverse=True)[1] for arbitrary labels"
        )
    if arr.ndim != 1:
        fix = "y.argmax(axis=1) for one-hot labels" if arr.ndim == 2 and arr.shape[1] > 1 else "y.ravel()"
        raise ValueError(f"{name} must be one label per sample (n,), got shape {tuple(arr.shape)}; use {fix}")
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries for {n} samples in x; give one label per sample")
    if not negative_ok and int(arr.min()) < 0:
        raise ValueError(
            f"{name} has label {int(arr.min())}: class indices must lie in [0, n_classes); map labels to 0..K-1, "
            "e.g. numpy.unique(y, return_inverse=True)[1]"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset ready for training: train / validation / test as ``TensorDataset``s of ``(x, y)``.

    ``x`` is float32 ``(n, T, F)`` (batch-first: n sequences of T steps with F inputs each), ``y`` int64 ``(n,)``
    class indices in ``[0, n_classes)`` — or, for tasks scored step by step (``neurogym``), int64 ``(n, T)``
    per-step targets with :data:`~cortexnet.data.sequences.IGNORE_INDEX` where a step is not scored (the loss mask
    is ``y != IGNORE_INDEX``). ``val`` is ``None`` when no validation split was asked for. The test set
    is the dataset's fixed test set and is never used for validation.

    ``description`` is one line (source, split rules and seeds, sizes) meant to be saved beside results;
    ``class_names`` and ``metadata`` (JSON-serialisable: class counts, subjects per split, ...) add detail.
    """

    name: str
    train: TensorDataset
    val: TensorDataset | None
    test: TensorDataset
    n_steps: int
    n_inputs: int
    n_classes: int
    description: str
    class_names: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def chance_level(splits: DatasetSplits) -> float:
    """Chance accuracy ``1 / n_classes`` — the accuracy of guessing uniformly at random.

    This is the chance level for *balanced* classes. On an imbalanced test set (Sleep-EDF: N2 dominates) always
    predicting the majority class scores higher; compare against the class counts in ``splits.metadata`` too.
    For per-step targets it is ``1 / (classes that occur at scored steps)``: a task scored on its decision
    period never asks for the fixation class, so guessing among the choices is chance there.
    """
    if splits.metadata.get("class_counts_of", "").startswith("scored steps"):
        counts = splits.metadata["class_counts"]["train"]
        present = sum(1 for c in (counts.values() if isinstance(counts, dict) else counts) if c > 0)
        return 1.0 / max(present, 1)
    return 1.0 / splits.n_classes


def validate_split_args(val_fraction: float, n_per_class: int | None, seed: int) -> None:
    """Check the arguments shared by every dataset (before any I/O); raise ``ValueError``/``TypeError``."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise TypeError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if not (0.0 <= float(val_fraction) < 1.0):  # also rejects NaN
        raise ValueError(
            f"val_fraction must lie in [0, 1), got {val_fraction!r}; use 0 for no validation set, 0.1 for 10 %"
        )
    if n_per_class is not None and (
        isinstance(n_per_class, bool) or not isinstance(n_per_class, numbers.Integral) or n_per_class < 1
    ):
        raise ValueError(
            f"n_per_class must be an integer >= 1 (examples per class) or None for all data, got {n_per_class!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def stratified_take(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..len(y)-1`` into ``(rest, taken)`` with ``taken`` ≈ ``fraction`` of every class.

    The total taken is ``round(fraction · n)``; it is shared out over the classes in proportion to their sizes
    (largest-remainder rounding, ties to the lower class index), and each class's members are drawn with ``rng``.
    Both outputs are sorted int64 index arrays ``(n_rest,)``, ``(n_taken,)``.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    quotas = fraction * counts
    take = np.floor(quotas).astype(np.int64)
    remainder = _round_half_up(fraction * len(y)) - int(take.sum())
    order = np.argsort(-(quotas - take), kind="stable")
    take[order[:remainder]] += 1
    taken = []
    for cls, k in zip(classes, take, strict=True):
        members = np.flatnonzero(y == cls)
        taken.append(rng.permutation(members)[:k])
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(len(y)), taken_idx, assume_unique=True)
    return rest.astype(np.int64), taken_idx.astype(np.int64)


def _grouped_take(
    groups: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Split indices by whole groups: ``round(fraction · n_groups)`` groups (at least one) are taken."""
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError(
            f"a validation split by group (subject) needs at least 2 groups in the training pool, found "
            f"{len(unique)}; pass val_fraction=0 or select more subjects"
        )
    n_take = min(max(1, _round_half_up(fraction * len(unique))), len(unique) - 1)
    chosen = np.sort(rng.permutation(unique)[:n_take])
    mask = np.isin(groups, chosen)
    return np.flatnonzero(~mask), np.flatnonzero(mask), [int(g) for g in chosen]


def make_splits(
    name: str, source: SourceData, *, val_fraction: float = 0.0, n_per_class: int | None = None, seed: int = 0
) -> DatasetSplits:
    """Draw the validation split and the limited-data subset from ``source``'s training pool.

    1. Validation (if ``val_fraction > 0``): stratified by class, ``round(val_fraction · n_train)`` examples drawn
       with ``seed`` from the training pool — or, when ``source.train_groups`` is given, whole groups (subjects),
       ``round(val_fraction · n_groups)`` of them (at least one), so no group is in both train and validation.
    2. Subset (if ``n_per_class`` is given): ``n_per_class`` examples of every class drawn with ``seed`` from what
       remains of the training pool; a class with fewer examples is an error.

    With per-step targets ``(n, T)`` a sequence has no single class: the validation split draws
    ``round(val_fraction · n_train)`` whole sequences uniformly (unstratified) with ``seed``, ``n_per_class`` is
    an error, and ``metadata["class_counts"]`` counts scored steps, not sequences.

    The test set is passed through untouched. Same ``source`` and ``seed`` → identical splits.
    """
    validate_split_args(val_fraction, n_per_class, seed)
    import torch
    from torch.utils.data import TensorDataset

    y = np.asarray(source.train_y, dtype=np.int64)
    per_step = y.ndim == 2
    if per_step and n_per_class is not None:
        raise ValueError(
            f"n_per_class={n_per_class} needs one class per sample, but {name!r} has per-step targets "
            f"{tuple(y.shape)}; pass n_per_class=None and choose the number of sequences with the dataset's "
            "options instead (neurogym: n_trials)"
        )
    n = len(y)
    # independent streams, so that changing n_per_class never changes which examples are in validation
    rng_val = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    rng_subset = np.random.default_rng(np.random.SeedSequence([seed, 2]))

    val_idx = None
    pool = np.arange(n)
    notes = []
    metadata: dict[str, Any] = dict(source.metadata)
    if val_fraction > 0:
        if source.train_groups is not None:
            pool, val_idx, val_groups = _grouped_take(np.asarray(source.train_groups), val_fraction, rng_val)
            metadata["val_groups"] = val_groups
            notes.append(
                f"val: {len(val_groups)} whole group(s) {val_groups} of the training pool (seed {seed})"
            )
        elif per_step:
            val_idx = np.sort(rng_val.permutation(n)[: _round_half_up(val_fraction * n)]).astype(np.int64)
            pool = np.setdiff1d(np.arange(n), val_idx, assume_unique=True).astype(np.int64)
            notes.append(f"val: {val_fraction:g} of the training sequences, unstratified (seed {seed})")
        else:
            pool, val_idx = stratified_take(y, val_fraction, rng_val)
            notes.append(f"val: {val_fraction:g} of the training pool, stratified (seed {seed})")
        if len(val_idx) == 0:
            raise ValueError(
                f"val_fraction={val_fraction} of {n} training examples rounds to an empty validation set; "
                f"use val_fraction=0 for none or at least {1 / n:.3g}"
            )
    if n_per_class is not None:
        chosen = []
        for cls in range(source.n_classes):
            members = pool[y[pool] == cls]
            if len(members) < n_per_class:
                label = f"{cls} ({source.class_names[cls]})" if source.class_names else str(cls)
                after, or_val = (
                    (" left after the validation split", " or lower val_fraction")
                    if val_idx is not None
                    else ("", "")
                )
                raise ValueError(
                    f"n_per_class={n_per_class} but class {label} has only {len(members)} training examples"
                    f"{after}; lower n_per_class to at most {len(members)}{or_val}"
                )
            chosen.append(rng_subset.permutation(members)[:n_per_class])
        pool = np.sort(np.concatenate(chosen))
        notes.append(f"subset: {n_per_class} per class from the rest (seed {seed})")

    def dataset(x: torch.Tensor, labels: np.ndarray, idx: np.ndarray | None) -> TensorDataset:
        if idx is None:
            return TensorDataset(x, torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)))
        index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        return TensorDataset(x[index], torch.from_numpy(np.ascontiguousarray(labels[idx], dtype=np.int64)))

    whole_pool = val_idx is None and n_per_class is None
    train = dataset(source.train_x, y, None if whole_pool else pool)
    val = None if val_idx is None else dataset(source.train_x, y, val_idx)
    test = dataset(source.test_x, np.asarray(source.test_y, dtype=np.int64), None)
    sizes = f"sizes train/val/test = {len(train)}/{0 if val is None else len(val)}/{len(test)}"
    description = "; ".join([source.description, *notes, sizes])

    def counts(ds: TensorDataset | None) -> list[int] | None:
        if ds is None:
            return None
        labels = ds.tensors[1].numpy()
        return np.bincount(labels[labels != IGNORE_INDEX], minlength=source.n_classes).tolist()

    metadata["class_counts"] = {"train": counts(train), "val": counts(val), "test": counts(test)}
    if per_step:
        metadata["class_counts_of"] = "scored steps (per-step targets)"
    _, t, f = source.train_x.shape
    return DatasetSplits(
        name=name,
        train=train,
        val=val,
        test=test,
        n_steps=int(t),
        n_inputs=int(f),
        n_classes=int(source.n_classes),
        description=description,
        class_names=tuple(source.class_names),
        metadata=metadata,
    )
