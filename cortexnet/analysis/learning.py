"""Learning curves: learning delay and seed statistics (Fruengel & Oberlaender 2025, Fig. 6B-C)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def learning_delay(
    history: Sequence[dict[str, Any]], *, chance: float, margin: float = 0.05, metric: str = "test_acc"
) -> int | None:
    """Epochs of training before accuracy first exceeds chance by ``margin`` (the paper's learning delay).

    Definition: let e* be the first evaluation point (epoch 0 = before training, fractional points allowed)
    whose ``metric`` exceeds ``chance + margin``. The delay is the number of whole epochs completed before the
    epoch in which that happened: ``max(ceil(e*) - 1, 0)``. A network above threshold after its first epoch has
    delay 0 (the paper's sparse networks); one still at chance after 20 epochs and above it after 21 has 20.

    Args:
        history: evaluation records with keys ``"epoch"`` and ``metric`` (as written by :func:`~cortexnet.training.fit`).
        chance: chance accuracy in [0, 1] (1 / n_classes for balanced classes).
        margin: absolute accuracy above chance that counts as learning, ≥ 0 (default 0.05 = 5 points).
        metric: history key to test (default ``"test_acc"``, the paper's curves).

    Returns:
        The delay in epochs, or None when the threshold was never exceeded (censored: report "> last epoch").
    """
    if not 0.0 <= chance <= 1.0:
        raise ValueError(f"chance must be in [0, 1], got {chance}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    for rec in sorted(history, key=lambda r: r["epoch"]):
        value = rec.get(metric)
        if value is not None and value > chance + margin:
            return max(math.ceil(rec["epoch"]) - 1, 0)
    return None


@dataclass(frozen=True)
class MeanSD:
    """Mean and sample standard deviation (ddof = 1) over seeds, ignoring None. With a single value the SD is
    None (JSON null, printed "n/a"): one seed says nothing about the spread."""

    mean: float | None
    sd: float | None
    n: int

    @staticmethod
    def of(values: Iterable[float | None]) -> MeanSD:
        vals = np.array([v for v in values if v is not None], dtype=np.float64)
        if vals.size == 0:
            return MeanSD(None, None, 0)
        sd = float(vals.std(ddof=1)) if vals.size > 1 else None
        return MeanSD(float(vals.mean()), sd, int(vals.size))

    def format(self, scale: float = 1.0, digits: int = 1) -> str:
        """``"mean ± sd"`` (scaled, e.g. 100 for percent); ``"mean ± n/a"`` for one value, ``"n/a"`` for none."""
        if self.mean is None:
            return "n/a"
        spread = "n/a" if self.sd is None else f"{self.sd * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {spread}"


def epoch_curve(
    history: Sequence[dict[str, Any]], metric: str = "test_acc"
) -> tuple[list[float], list[float]]:
    """``(epochs, values)`` of a metric over evaluation points that have it."""
    pts = [(r["epoch"], r[metric]) for r in history if r.get(metric) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def summarize_run(
    history: Sequence[dict[str, Any]], *, chance: float, margin: float = 0.05
) -> dict[str, Any]:
    """Per-run summary: test accuracy per whole epoch, the best test accuracy and its epoch, the test accuracy
    at the best validation epoch (when a validation split exists), the final accuracy, the learning delay."""
    whole = [r for r in history if float(r["epoch"]).is_integer()]
    acc = {int(r["epoch"]): r["test_acc"] for r in whole}
    best_epoch = max(acc, key=lambda e: (acc[e], -e))
    out: dict[str, Any] = {
        "test_acc_per_epoch": [acc[e] for e in sorted(acc)],
        "best_test_acc": acc[best_epoch],
        "best_test_epoch": best_epoch,
        "final_test_acc": acc[max(acc)],
        "epochs": max(acc),
        "learning_delay": learning_delay(history, chance=chance, margin=margin),
    }
    vals = [r for r in whole if r.get("val_acc") is not None]
    if vals:
        best_val = max(vals, key=lambda r: (r["val_acc"], -r["epoch"]))
        out["test_acc_at_best_val"] = best_val["test_acc"]
        out["best_val_epoch"] = int(best_val["epoch"])
    return out


def aggregate_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± SD over seeds of :func:`summarize_run` outputs (learning delay: censored runs counted apart)."""
    out: dict[str, Any] = {"n_seeds": len(runs)}
    for key in ("best_test_acc", "final_test_acc", "test_acc_at_best_val"):
        ms = MeanSD.of(r.get(key) for r in runs)
        out[key] = {"mean": ms.mean, "sd": ms.sd, "n": ms.n}
    delays = [r["learning_delay"] for r in runs]
    ms = MeanSD.of(delays)
    out["learning_delay"] = {
        "mean": ms.mean,
        "sd": ms.sd,
        "n": ms.n,
        "never_learned": sum(d is None for d in delays),
    }
    length = min(len(r["test_acc_per_epoch"]) for r in runs)
    per_epoch = [MeanSD.of(r["test_acc_per_epoch"][e] for r in runs) for e in range(length)]
    out["test_acc_per_epoch"] = {"mean": [m.mean for m in per_epoch], "sd": [m.sd for m in per_epoch]}
    return out
