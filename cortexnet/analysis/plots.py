"""Figures (matplotlib, headless Agg backend): written as PNG files atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from cortexnet.io import atomic_write_bytes


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)  # headless: no display needed
    import matplotlib.pyplot as plt

    return plt, plt.subplots(*args, **kwargs)


def _save(plt, fig, path: str | os.PathLike) -> None:
    """Lay out, render to PNG in memory and write atomically (a figure on disk is complete or absent)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_accuracy_curves(
    path: str | os.PathLike,
    panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]]],
    *,
    chance: float | None = None,
    title: str = "",
) -> None:
    """Test accuracy against epoch: one panel per key of ``panels``, one line per curve label.

    Args:
        path: PNG file to write (atomically).
        panels: ``{panel_title: {curve_label: (epochs, mean_accuracy, sd_accuracy)}}``, accuracies in [0, 1];
            the SD is drawn as a shaded band (over seeds).
        chance: draw a dashed chance line at this accuracy.
        title: figure title.
    """
    plt, (fig, axes) = _figure(
        1, max(1, len(panels)), figsize=(5.0 * max(1, len(panels)), 4.0), squeeze=False
    )
    for ax, (panel, curves) in zip(axes[0], panels.items(), strict=False):
        for label, (epochs, mean, sd) in curves.items():
            pct = [100 * m for m in mean]
            (line,) = ax.plot(epochs, pct, marker="o", ms=3, label=label)
            lo = [
                100 * (m - (s or 0.0)) for m, s in zip(mean, sd, strict=True)
            ]  # SD None (one seed): no band
            hi = [100 * (m + (s or 0.0)) for m, s in zip(mean, sd, strict=True)]
            ax.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        if chance is not None:
            ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    _save(plt, fig, path)


def _histograms_on(ax, samples, *, xlabel, title, bins, log_y, note) -> None:
    import numpy as np

    for label, vals in samples.items():
        arr = np.asarray(vals, dtype=float)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            ax.hist(
                arr,
                bins=bins,
                density=True,
                histtype="stepfilled",
                alpha=0.4,
                label=f"{label} (n={arr.size})",
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    if note:
        ax.text(0.98, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize="small")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def plot_histograms(
    path: str | os.PathLike,
    samples: dict[str, Sequence[float]],
    *,
    xlabel: str,
    title: str = "",
    bins: int | Sequence[float] = 50,
    log_y: bool = False,
    note: str = "",
) -> None:
    """Overlaid, density-normalised histograms, one per label (e.g. one per network); PNG written atomically."""
    plt, (fig, ax) = _figure(figsize=(6.0, 4.0))
    _histograms_on(ax, samples, xlabel=xlabel, title=title, bins=bins, log_y=log_y, note=note)
    _save(plt, fig, path)


def plot_histogram_panels(
    path: str | os.PathLike,
    panels: dict[str, dict[str, Sequence[float]]],
    *,
    xlabel: str,
    title: str = "",
    bins: int | Sequence[float] = 50,
) -> None:
    """Side-by-side panels ``{panel_title: {label: values}}`` of overlaid histograms, each with its own x range
    (e.g. E/I balance at initialisation and after training, whose scales differ by orders of magnitude)."""
    n = max(1, len(panels))
    plt, (fig, axes) = _figure(1, n, figsize=(5.5 * n, 4.0), squeeze=False)
    for ax, (panel, samples) in zip(axes[0], panels.items(), strict=False):
        _histograms_on(ax, samples, xlabel=xlabel, title=panel, bins=bins, log_y=False, note="")
    if title:
        fig.suptitle(title)
    _save(plt, fig, path)


def plot_curves(
    path: str | os.PathLike,
    curves: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    scale: float = 1.0,
) -> None:
    """One line per label with a ±SD band: ``{label: (x, mean, sd)}``, values multiplied by ``scale``."""
    plt, (fig, ax) = _figure(figsize=(6.0, 4.0))
    for label, (x, mean, sd) in curves.items():
        m = [scale * v for v in mean]
        (line,) = ax.plot(x, m, marker="o", ms=3, label=label)
        lo = [scale * (a - (b or 0.0)) for a, b in zip(mean, sd, strict=True)]  # SD None (one seed): no band
        hi = [scale * (a + (b or 0.0)) for a, b in zip(mean, sd, strict=True)]
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(plt, fig, path)
