"""Figures fit for a paper (matplotlib, headless): every plot function writes a PNG and an SVG atomically
and returns the :class:`matplotlib.figure.Figure`, so that it can be restyled and saved again.

Conventions shared by every figure:

* curves are ``{label: (x, mean, sd)}`` or ``{label: (x, mean, sd, n)}``: ``n`` is how many runs (seeds) the
  mean and SD are over; the SD is drawn as a shaded band and the legend says so ("band: ± SD over 3 seeds";
  one seed: no band, "1 seed");
* a label is a string, or a pair ``(colour_label, style_label)`` for two-factor designs (e.g. density ×
  architecture): colour follows the first, line style the second, and the legend lists each factor once;
* labels and panel titles pass through :func:`display_name`, so code names (``fc_same_params``,
  ``feedforward``, ``p1``) appear as readable text;
* many panels are laid out in a grid of at most three per row (:func:`grid_shape`), and panels showing the
  same quantity share their y axis; epoch axes have integer ticks; accuracy plots can draw a dashed chance line;
* histograms of several series in one panel use one set of bin edges for all of them;
* p-values are printed with :func:`format_p` (``p < 1e-300`` rather than ``p = 0``).

Figures are built as plain :class:`~matplotlib.figure.Figure` objects (no pyplot state: nothing to close, no
display needed); in a notebook, ``display(fig)`` shows a returned figure.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cortexnet.io import atomic_write_bytes

#: Readable labels of the code names used by the experiments (models, architectures, topologies, rewiring
#: rules, probe states). :func:`display_name` also reads member labels such as ``p0.1-inh0.115-seed0``.
DISPLAY_NAMES: dict[str, str] = {
    # architectures and models
    "recurrent": "recurrent",
    "feedforward": "feed-forward",
    "feed_forward": "feed-forward",
    "cortex_rnn": "cortex RNN",
    "sparse_mlp": "sparse MLP",
    "mlp": "MLP",
    "g2gnet": "G2GNet",
    # G2GNet's Table I
    "g2g": "G2G",
    "fc_same_params": "FC, same parameters",
    "fc_same_width": "FC, same width",
    "er_same_edges": "ER, same edges",
    # topologies
    "full": "FC",
    "fc": "FC",
    "er": "ER",
    "erk": "ERK",
    "bsw": "BSW",
    "bsf": "BSF",
    "brf": "BRF",
    "dnm": "DNM",
    "csti": "CSTI",
    "snip": "SNIP",
    "ramanujan": "Ramanujan",
    # dynamic sparse training
    "static": "static",
    "dense": "dense",
    "sparse": "sparse",
    "sparse_to_dense": "sparse-to-dense",
    "set": "SET",
    "rigl": "RigL",
    "hebbian": "Hebbian",
    "cht": "CHT",
    "chts": "CHTs",
    "chtss": "CHTss",
    "random": "random",
    "magnitude": "magnitude",
    "gradient": "gradient",
    "ri": "RI",
    "ch2_l3": "CH2-L3",
    "ch2_l3n": "CH2-L3n",
    "ch3_l3": "CH3-L3",
    "ch3_l3n": "CH3-L3n",
    # probes
    "at_init": "at initialisation",
    "after_training": "after training",
    "daleon": "Dale on",
    "daleoff": "Dale off",
    # activations
    "relu": "ReLU",
    "tanh": "tanh",
}

_NUM = r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
_TOKENS: tuple[tuple[re.Pattern, Any], ...] = (
    (re.compile(rf"^pinter{_NUM}$"), lambda v: f"p' = {v}"),
    (re.compile(rf"^p{_NUM}$"), lambda v: f"p = {v}"),
    (re.compile(r"^n(\d+)$"), lambda v: f"N = {int(v):,}"),
    (re.compile(rf"^inh{_NUM}$"), lambda v: f"{100 * float(v):g} % inh."),
    (re.compile(r"^seed(\d+)$"), lambda v: f"seed {v}"),
)


def _token(code: str) -> str | None:
    if code in DISPLAY_NAMES:
        return DISPLAY_NAMES[code]
    for pattern, name in _TOKENS:
        m = pattern.match(code)
        if m:
            return name(m.group(1))
    if "+" in code:  # a removal+growth rewiring rule, e.g. magnitude+hebbian
        parts = [_token(p) for p in code.split("+")]
        if all(parts):
            return " + ".join(parts)  # type: ignore[arg-type]
    return None


def display_name(code: Any) -> str:
    """The readable label of a code name, for legends and titles.

    Known names come from :data:`DISPLAY_NAMES` (``fc_same_params`` → "FC, same parameters", ``feedforward``
    → "feed-forward", ``g2g`` → "G2G", ``sparse_to_dense`` → "sparse-to-dense", ``magnitude+hebbian`` →
    "magnitude + Hebbian"); parameter tokens are spelled out (``p1`` → "p = 1", ``pinter0.5`` → "p' = 0.5",
    ``n200`` → "N = 200", ``inh0.115`` → "11.5 % inh.", ``seed0`` → "seed 0"), and so are member labels made
    of them (``p0.1-inh0.115-seed0`` → "p = 0.1, 11.5 % inh., seed 0"; a trailing `` @init`` becomes
    " (at initialisation)"). Other text is returned unchanged (already readable), except that underscores
    become spaces. A pair (two-factor label) is joined with ", ".
    """
    if isinstance(code, tuple):
        return ", ".join(display_name(c) for c in code)
    text = str(code)
    suffix = ""
    if text.endswith(" @init"):
        text, suffix = text[: -len(" @init")], " (at initialisation)"
    prefix = ""
    m = re.match(r"^(\d+):(.+)$", text)  # "0:label", the representations probe's de-duplicated labels
    if m:
        prefix, text = f"{m.group(1)}: ", m.group(2)
    name = _token(text)
    if name is None and "-" in text:
        parts = [_token(t) for t in text.split("-")]
        if all(parts):
            name = ", ".join(parts)  # type: ignore[arg-type]
    if name is None:
        name = text.replace("_", " ")
    return prefix + name + suffix


def format_p(p: float | None) -> str:
    """A p-value as printed in a figure: ``"p = 1.2e-05"``; ``"p < 1e-300"`` where it underflowed (a p-value of
    exactly 0 is below what a float can hold, not zero); ``"p = n/a"`` for None or NaN."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "p = n/a"
    p = float(p)
    if p < 1e-300:
        return "p < 1e-300"
    return f"p = {p:.2g}"


def band_caption(counts: Sequence[int | None] | int | None, over: str = "seeds") -> str:
    """What a figure's shaded band means: ``"band: ± SD over 3 seeds"``; ``"1 seed"`` when every curve has one
    run (no band is drawn); ``"band: ± SD over 2–3 seeds"`` for mixed counts. ``over`` is the plural noun
    (``"seeds"``, ``"dropout draws"``). Empty when no count is known."""
    if isinstance(counts, int) or counts is None:
        counts = [counts]
    ns = sorted({int(n) for n in counts if n is not None})
    singular = over[:-1] if over.endswith("s") else over
    if not ns:
        return ""
    multi = [n for n in ns if n > 1]
    if not multi:
        return f"1 {singular}"
    span = f"{multi[0]}" if multi[0] == multi[-1] else f"{multi[0]}–{multi[-1]}"
    text = f"band: ± SD over {span} {over}"
    if ns[0] == 1:
        text += f" (1 {singular}: no band)"
    return text


def grid_shape(n_panels: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, columns) of a grid for ``n_panels`` panels, at most ``max_cols`` per row (5 → (2, 3))."""
    n = max(1, n_panels)
    cols = min(n, max(1, max_cols))
    return math.ceil(n / cols), cols


# ---------------------------------------------------------------------------------------------- internals

_LINESTYLES = ("-", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))  # "--" is kept for the chance line
_BAND_ALPHA = 0.2


def _colours(n: int) -> list:
    import matplotlib

    return list(matplotlib.colormaps["tab10" if n <= 10 else "tab20"].colors)


def _grid(
    n_panels: int, *, max_cols: int = 3, panel_size=(4.6, 3.5), sharey: bool = True, legend_rows: int = 0
):
    """A figure with ``n_panels`` axes in a grid (row-major; unused cells removed) and shared y when asked."""
    from matplotlib.figure import Figure

    rows, cols = grid_shape(n_panels, max_cols)
    height = panel_size[1] * rows + 0.25 * legend_rows + 0.4
    fig = Figure(figsize=(panel_size[0] * cols, height), layout="constrained")
    grid = fig.subplots(rows, cols, sharey=sharey, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[max(1, n_panels) :]:
        fig.delaxes(ax)
    axes = axes[: max(1, n_panels)]
    if sharey:  # label only the first column; the others show the same scale
        for i, ax in enumerate(axes):
            if i % cols:
                ax.tick_params(labelleft=False)
    return fig, axes, cols


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: str | os.PathLike, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Render ``fig`` once per format and write each file atomically (a figure on disk is complete or absent):
    ``path`` with its suffix replaced by each format (``accuracy.png`` → accuracy.png and accuracy.svg).
    SVGs are reproducible (fixed id salt, no date)."""
    import matplotlib

    path = Path(path)
    written = []
    for fmt in formats:
        buf = io.BytesIO()
        target = path.with_suffix(f".{fmt}")
        with matplotlib.rc_context({"svg.hashsalt": "cortexnet"}):
            fig.savefig(buf, format=fmt, dpi=150, metadata={"Date": None} if fmt in ("svg", "pdf") else None)
        atomic_write_bytes(target, buf.getvalue())
        written.append(target)
    return written


def _split(spec) -> tuple[list, list, list, list]:
    """(x, mean, sd, n) of a curve, n per point (None where unknown)."""
    if len(spec) == 4:
        x, mean, sd, n = spec
    elif len(spec) == 3:
        (x, mean, sd), n = spec, None
    else:
        raise ValueError(f"a curve is (x, mean, sd) or (x, mean, sd, n), got {len(spec)} items")
    x, mean = list(x), list(mean)
    sd = [None] * len(mean) if sd is None else list(sd)
    ns = [n] * len(mean) if n is None or isinstance(n, int | float) else list(n)
    if not (len(x) == len(mean) == len(sd) == len(ns)):
        raise ValueError(
            f"a curve's x, mean, sd (and n) need one value each, got {len(x)}, {len(mean)}, {len(sd)}, {len(ns)}"
        )
    return x, mean, sd, [None if v is None else int(v) for v in ns]


class _Styles:
    """Colours and line styles assigned by label across the whole figure (the same label, the same look)."""

    def __init__(self) -> None:
        self.colour: dict[Any, Any] = {}
        self.style: dict[Any, Any] = {}
        self.two_factor = False
        self._palette = _colours(10)

    def of(self, label) -> tuple[Any, Any]:
        if isinstance(label, tuple):
            if len(label) != 2:
                raise ValueError(f"a two-factor curve label is (colour_label, style_label), got {label!r}")
            self.two_factor = True
            c, s = label
        else:
            c, s = label, None
        if c not in self.colour:
            if len(self.colour) == len(self._palette) == 10:  # an 11th colour: switch to 20 distinct ones
                self._palette = _colours(20)
                self.colour = {k: self._palette[i] for i, k in enumerate(self.colour)}
            self.colour[c] = self._palette[len(self.colour) % len(self._palette)]
        if s is not None and s not in self.style:
            self.style[s] = _LINESTYLES[len(self.style) % len(_LINESTYLES)]
        return self.colour[c], self.style.get(s, "-")

    def legend_entries(self, labels) -> list[tuple[Any, str]]:
        """(handle, text) pairs for ``labels``: one per curve, or one per factor level for pairs."""
        from matplotlib.lines import Line2D

        out = []
        labels = list(labels)
        if not any(isinstance(lab, tuple) for lab in labels):
            for lab in labels:
                colour, style = self.of(lab)
                out.append(
                    (Line2D([], [], color=colour, linestyle=style, marker="o", ms=3), display_name(lab))
                )
            return out
        for lab in labels:  # assign before reading: the legend may be laid out before any curve is drawn
            self.of(lab)
        colours = list(dict.fromkeys(lab[0] for lab in labels))
        styles = list(dict.fromkeys(lab[1] for lab in labels))
        for c in colours:
            out.append((Line2D([], [], color=self.colour[c], linewidth=2.5), display_name(c)))
        for s in styles:
            out.append((Line2D([], [], color="0.2", linestyle=self.style[s]), display_name(s)))
        return out


def _draw_curves(ax, curves: Mapping, styles: _Styles, *, scale: float = 1.0, log_y: bool = False) -> list:
    """Lines with ±SD bands (where the SD is known and over more than one run); returns the run counts behind
    the drawn points (-1: an SD over an unknown number of runs), for the band caption."""
    counts = []
    for label, spec in curves.items():
        x, mean, sd, ns = _split(spec)
        colour, style = styles.of(label)
        pts = [(a, scale * m, None if s is None else scale * s, n)
               for a, m, s, n in zip(x, mean, sd, ns, strict=True) if m is not None]  # fmt: skip
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, linestyle=style, marker="o", ms=3,
                linewidth=1.5)  # fmt: skip
        # a band reaching zero or below would vanish on a log axis: clip it there at a tenth of the mean
        band = [(a, max(m - s, 0.1 * m) if log_y else m - s, m + s) for a, m, s, n in pts
                if s is not None and (n is None or n > 1)]  # fmt: skip
        if band:
            ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band], color=colour,
                            alpha=_BAND_ALPHA, linewidth=0)  # fmt: skip
        counts += [n if n is not None else (-1 if s is not None else None) for _, _, s, n in pts]
    return counts


def _extra_entries(counts: Sequence, over: str, *, seeds: int | None, chance: bool) -> list[tuple[Any, str]]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out = []
    if chance:
        out.append((Line2D([], [], color="0.4", linestyle="--", linewidth=1), "chance"))
    known = [seeds if c == -1 or c is None else c for c in counts]
    if any(c == -1 for c in counts) and seeds is None:
        out.append((Patch(color="0.5", alpha=_BAND_ALPHA + 0.1), "band: ± SD"))
        return out
    text = band_caption(known, over)
    if text.startswith("band"):
        out.append((Patch(color="0.5", alpha=_BAND_ALPHA + 0.1), text))
    elif text:
        out.append((Line2D([], [], linestyle="none"), text))
    return out


def _legend(target, entries: list[tuple[Any, str]], *, below: bool, **kwargs):
    if not entries:
        return None
    handles, texts = zip(*entries, strict=True)
    if below:  # as many columns as fit the figure's width (estimated from the longest text)
        width = target.get_figwidth() * 0.95
        per_entry = 0.55 + 0.068 * max(len(t) for t in texts)
        ncols = max(1, min(len(entries), int(width // per_entry)))
        return target.legend(handles, texts, loc="outside lower center", ncols=ncols, fontsize="small",
                             frameon=False, **kwargs)  # fmt: skip
    return target.legend(handles, texts, fontsize="small", **kwargs)


def _chance_line(ax, chance: float | None, scale: float) -> None:
    if chance is not None:
        ax.axhline(scale * chance, color="0.4", linestyle="--", linewidth=1, zorder=0.5)


# ----------------------------------------------------------------------------------------- curve figures


def plot_accuracy_curves(
    path: str | os.PathLike,
    panels: Mapping[str, Mapping[Any, Sequence]],
    *,
    chance: float | None = None,
    title: str = "",
    seeds: int | None = None,
    band_over: str = "seeds",
    max_cols: int = 3,
    formats: Sequence[str] = ("png", "svg"),
):
    """Test accuracy against epoch: one panel per key of ``panels`` (a grid, at most ``max_cols`` per row, all
    sharing one y axis), one line per curve, integer epoch ticks.

    Args:
        path: the figure file; written once per format of ``formats`` with the suffix replaced (``x.png`` →
            ``x.png`` and ``x.svg``), each atomically.
        panels: ``{panel_title: {curve_label: (epochs, mean, sd[, n])}}``, accuracies in [0, 1], ``n`` the
            number of seeds behind mean and SD (drawn as a ± SD band; no band for one seed). A curve label is a
            string or a pair ``(colour_label, style_label)`` (e.g. ``("p = 0.1", "recurrent")``: colour for
            density, line style for architecture). Labels and titles go through :func:`display_name`.
        chance: draw a dashed line labelled "chance" at this accuracy.
        title: figure title.
        seeds: the seed count of curves given without ``n``.
        band_over: what the band's SD is over (plural noun), for the legend.
        max_cols: panels per row at most.
        formats: file formats written (matplotlib names).

    Returns:
        The :class:`matplotlib.figure.Figure`, already written; restyle it and save it again as you like
        (``fig.savefig("x.pdf")``).
    """
    panels = dict(panels) or {"": {}}
    # One legend below the grid when every panel's curves are among those of its fullest panel (colours are
    # assigned per label over the whole figure); otherwise a legend in each panel.
    labels = [set(curves) for curves in panels.values()]
    fullest = max(labels, key=len)
    shared_legend = all(lab <= fullest for lab in labels)
    styles = _Styles()
    for curves in panels.values():  # colours in order of first appearance, identical in every panel
        for label in curves:
            styles.of(label)
    all_labels = list(dict.fromkeys(lab for curves in panels.values() for lab in curves))
    n_entries = len(styles.legend_entries(all_labels)) + 2
    fig, axes, cols = _grid(
        len(panels), max_cols=max_cols, legend_rows=math.ceil(n_entries / 4) if shared_legend else 0
    )
    counts: list = []
    for i, (ax, (panel, curves)) in enumerate(zip(axes, panels.items(), strict=True)):
        panel_counts = _draw_curves(ax, curves, styles, scale=100.0)
        counts += panel_counts
        _chance_line(ax, chance, 100.0)
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        if i % cols == 0:
            ax.set_ylabel("test accuracy (%)")
        ax.set_title(display_name(panel) if panel else "", fontsize="medium")
        ax.grid(alpha=0.3)
        if not shared_legend:
            entries = styles.legend_entries(curves) + _extra_entries(panel_counts, band_over, seeds=seeds,
                                                                     chance=chance is not None)  # fmt: skip
            _legend(ax, entries, below=False)
    if shared_legend:
        entries = styles.legend_entries(all_labels) + _extra_entries(counts, band_over, seeds=seeds,
                                                                     chance=chance is not None)  # fmt: skip
        _legend(fig, entries, below=True)
    if title:
        fig.suptitle(title)
    _save(fig, path, formats)
    return fig


def plot_curves(
    path: str | os.PathLike,
    curves: Mapping[Any, Sequence],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    scale: float = 1.0,
    chance: float | None = None,
    seeds: int | None = None,
    band_over: str = "seeds",
    integer_x: bool = False,
    integer_y: bool = False,
    log_x: bool = False,
    formats: Sequence[str] = ("png", "svg"),
):
    """One panel, one line per label with a ±SD band: ``{label: (x, mean, sd[, n])}`` (``n``: how many runs the
    SD is over; labels as in :func:`plot_accuracy_curves`), values multiplied by ``scale``.

    ``chance``: a dashed "chance" line at ``scale * chance`` (give it where y is an accuracy). ``integer_x``:
    integer x ticks (epochs, node counts); ``integer_y``: integer y ticks (epochs of learning delay);
    ``log_x``: logarithmic x axis. ``seeds`` and ``band_over``: the
    band's count and noun for curves without ``n``. Writes ``path`` once per format of ``formats`` (suffix
    replaced), atomically.

    Returns:
        The :class:`matplotlib.figure.Figure`, already written, to restyle and save again.
    """
    import matplotlib.ticker

    styles = _Styles()
    n_entries = len(styles.legend_entries(list(curves))) + 2
    fig, (ax,), _ = _grid(1, panel_size=(6.0, 4.0), legend_rows=math.ceil(n_entries / 4))
    counts = _draw_curves(ax, curves, styles, scale=scale)
    _chance_line(ax, chance, scale)
    if log_x:
        ax.set_xscale("log")
        xs = sorted({float(v) for spec in curves.values() for v in _split(spec)[0]})
        if 0 < len(xs) <= 10:  # label the values themselves, not only the decades
            ax.set_xticks(xs, labels=[f"{v:,.0f}" if integer_x else f"{v:g}" for v in xs])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if integer_x and not log_x:
        _integer_ticks(ax.xaxis)
    if (
        integer_y
    ):  # a span of at least two units, or every value the same (e.g. no delay) leaves no integer tick
        lo, hi = ax.get_ylim()
        ax.set_ylim(min(lo, -0.5), max(hi, min(lo, -0.5) + 2.5))
        _integer_ticks(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    entries = styles.legend_entries(list(curves)) + _extra_entries(counts, band_over, seeds=seeds,
                                                                   chance=chance is not None)  # fmt: skip
    _legend(fig, entries, below=True)
    if title:
        fig.suptitle(title)
    _save(fig, path, formats)
    return fig


# ------------------------------------------------------------------------------------------- histograms


def shared_bin_edges(samples: Mapping[Any, Sequence[float]] | Sequence, bins: int | Sequence[float] = 50):
    """One set of bin edges for every series: ``bins`` edges as given, or ``bins`` equal bins spanning the
    finite values of all series together; values on a regular lattice of at most ``bins`` steps (fractions of a
    small network's nodes) get one bin centred on each step instead. Returns a float64 array."""
    import numpy as np

    if not isinstance(bins, int):
        return np.asarray(bins, dtype=float)
    values = samples.values() if isinstance(samples, Mapping) else samples
    arrays = [np.asarray(v, dtype=float).reshape(-1) for v in values]
    pooled = np.concatenate(arrays) if arrays else np.zeros(0)
    pooled = pooled[np.isfinite(pooled)]
    if not pooled.size:
        return np.linspace(0.0, 1.0, bins + 1)
    unique = np.unique(pooled)
    if 1 < unique.size <= bins:  # values on a lattice (e.g. % of 20 nodes): one bin centred on each step
        step = float(np.min(np.diff(unique)))
        ratios = (unique - unique[0]) / step
        span = int(np.rint(ratios[-1]))
        if span <= bins and np.allclose(ratios, np.round(ratios), atol=1e-6):
            return unique[0] + step * (np.arange(span + 2) - 0.5)
    return np.histogram_bin_edges(pooled, bins=bins)


def _histograms_on(ax, samples, *, edges, stat: str, log_y: bool, styles: _Styles) -> None:
    import numpy as np

    for label, vals in samples.items():
        arr = np.asarray(vals, dtype=float).reshape(-1)
        arr = arr[np.isfinite(arr)]
        if not arr.size:
            continue
        colour, _ = styles.of(label)
        text = f"{display_name(label)} (n = {arr.size:,})"
        weights = None if stat != "fraction" else np.full(arr.size, 1.0 / arr.size)
        density = stat == "density"
        ax.hist(arr, bins=edges, weights=weights, density=density, histtype="bar", rwidth=1.0, alpha=0.35,
                color=colour, label=text)  # fmt: skip
        ax.hist(
            arr, bins=edges, weights=weights, density=density, histtype="step", color=colour, linewidth=1.2
        )
    ax.set_ylabel({"density": "density", "fraction": "fraction", "count": "count"}[stat])
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _check_stat(stat: str) -> None:
    if stat not in ("density", "fraction", "count"):
        raise ValueError(f"stat must be density, fraction or count, got {stat!r}")


def plot_histograms(
    path: str | os.PathLike,
    samples: Mapping[Any, Sequence[float]],
    *,
    xlabel: str,
    title: str = "",
    bins: int | Sequence[float] = 50,
    log_y: bool = False,
    note: str = "",
    stat: str = "density",
    formats: Sequence[str] = ("png", "svg"),
):
    """Overlaid histograms, one per label (e.g. one per network), all on one set of bin edges
    (:func:`shared_bin_edges`: ``bins`` edges, or that many equal bins over every series' finite values).

    ``stat``: "density" (each integrates to 1), "fraction" (each sums to 1) or "count". ``note`` (e.g. a KS test
    result, see :func:`format_p`) is printed under the title. Labels go through :func:`display_name`. Writes
    ``path`` once per format of ``formats`` (suffix replaced), atomically.

    Returns:
        The :class:`matplotlib.figure.Figure`, already written, to restyle and save again.
    """
    _check_stat(stat)
    styles = _Styles()
    fig, (ax,), _ = _grid(1, panel_size=(6.0, 4.0))
    _histograms_on(ax, samples, edges=shared_bin_edges(samples, bins), stat=stat, log_y=log_y, styles=styles)
    ax.set_xlabel(xlabel)
    if note:
        ax.set_title(note, fontsize="small")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path, formats)
    return fig


def plot_histogram_panels(
    path: str | os.PathLike,
    panels: Mapping[str, Mapping[Any, Sequence[float]]],
    *,
    xlabel: str,
    title: str = "",
    bins: int | Sequence[float] = 50,
    stat: str = "fraction",
    log_y: bool = False,
    max_cols: int = 3,
    formats: Sequence[str] = ("png", "svg"),
):
    """Panels ``{panel_title: {label: values}}`` of overlaid histograms in a grid (at most ``max_cols`` per
    row), each panel with its own x range (e.g. E/I balance at initialisation and after training, whose scales
    differ by orders of magnitude) and one set of bin edges shared by all its series; the y axis is shared.

    ``stat`` defaults to "fraction" (each series sums to 1), which stays comparable across panels of different
    x ranges when they have the same number of bins. Writes ``path`` once per format of ``formats`` (suffix
    replaced), atomically.

    Returns:
        The :class:`matplotlib.figure.Figure`, already written, to restyle and save again.
    """
    _check_stat(stat)
    panels = dict(panels) or {"": {}}
    styles = _Styles()
    fig, axes, cols = _grid(len(panels), max_cols=max_cols, panel_size=(5.0, 3.8))
    for i, (ax, (panel, samples)) in enumerate(zip(axes, panels.items(), strict=True)):
        _histograms_on(
            ax, samples, edges=shared_bin_edges(samples, bins), stat=stat, log_y=log_y, styles=styles
        )
        ax.set_xlabel(xlabel)
        ax.set_title(display_name(panel) if panel else "", fontsize="medium")
        if i % cols:
            ax.set_ylabel("")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path, formats)
    return fig


# ------------------------------------------------------------------------------------------- heat maps


def plot_heatmap(
    path: str | os.PathLike,
    panels: Mapping[str, Any],
    *,
    x: Sequence[str],
    y: Sequence[str],
    xlabel: str,
    ylabel: str,
    value_label: str,
    title: str = "",
    value_format: str = "{:.1f}",
    cmap: str = "viridis",
    max_cols: int = 3,
    formats: Sequence[str] = ("png", "svg"),
):
    """Heat maps ``{panel_title: values (len(y), len(x))}`` (e.g. accuracy over N × p, paper Fig. 2C) in a
    grid of at most ``max_cols`` per row, on one colour scale with one colour bar (``value_label``); each cell
    shows its value (``value_format``); NaN cells (not run, or no value) are grey and say "n/a". Rows follow
    ``y`` top to bottom, columns ``x`` left to right; panels share both axes. Titles go through
    :func:`display_name`. Writes ``path`` once per format of ``formats`` (suffix replaced), atomically.

    Returns:
        The :class:`matplotlib.figure.Figure`, already written, to restyle and save again.
    """
    import matplotlib
    import numpy as np

    arrays = {k: np.asarray(v, dtype=float) for k, v in panels.items()} or {
        "": np.full((len(y), len(x)), np.nan)
    }
    for name, a in arrays.items():
        if a.shape != (len(y), len(x)):
            raise ValueError(
                f"heat map {name!r} has shape {a.shape}, expected (len(y), len(x)) = {(len(y), len(x))}"
            )
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    colours = matplotlib.colormaps[cmap].with_extremes(bad="0.85")
    norm = matplotlib.colors.Normalize(vmin, vmax)
    fig, axes, cols = _grid(
        len(arrays), max_cols=max_cols, panel_size=(0.9 * len(x) + 2.2, 0.6 * len(y) + 1.6)
    )
    image = None
    for i, (ax, (name, a)) in enumerate(zip(axes, arrays.items(), strict=True)):
        image = ax.imshow(np.ma.masked_invalid(a), cmap=colours, norm=norm, aspect="auto")
        for r in range(a.shape[0]):
            for c in range(a.shape[1]):
                v = a[r, c]
                text = "n/a" if not np.isfinite(v) else value_format.format(v)
                dark = np.isfinite(v) and norm(v) < 0.5  # light text on the dark end of the colour map
                ax.text(
                    c, r, text, ha="center", va="center", fontsize="small", color="white" if dark else "black"
                )
        ax.set_xticks(range(len(x)), labels=list(x))
        ax.set_yticks(range(len(y)), labels=list(y))
        ax.set_xlabel(xlabel)
        if i % cols == 0:
            ax.set_ylabel(ylabel)
        ax.set_title(display_name(name) if name else "", fontsize="medium")
    fig.colorbar(image, ax=axes, label=value_label, shrink=0.9)
    if title:
        fig.suptitle(title)
    _save(fig, path, formats)
    return fig


# ------------------------------------------------------------------------------------- training dynamics

_GROUP_TITLES = {
    "positive": "initially positive (excitatory) synapses",
    "negative": "initially negative (inhibitory) synapses",
    "zero": "initially zero synapses",
}
_TRANSITIONS = (
    ("to_zero", "set to zero (net over the epoch)"),
    ("from_zero", "regrown from zero (net)"),
    ("weights_zeroed", "zeroed by the sign projection (≥ once)"),
    ("flipped", "changed sign (net)"),
)


def _mean_sd(rows: Sequence[Sequence[float | None]]) -> tuple[list, list]:
    import numpy as np

    length = min(len(r) for r in rows)
    mean, sd = [], []
    for e in range(length):
        vals = [r[e] for r in rows if r[e] is not None and np.isfinite(r[e])]
        mean.append(float(np.mean(vals)) if vals else None)
        sd.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else None)
    return mean, sd


def _transition(record: dict, group: str, key: str) -> float | None:
    g = record.get(group) or {}
    n = g.get("n") or 0
    if not n:
        return None
    if key == "weights_zeroed":
        v = (record.get("per_step") or {}).get(group, {}).get("weights_zeroed")
    elif key == "flipped":
        v = g.get("pos_to_neg", 0) + g.get("neg_to_pos", 0)
    else:
        v = g.get(key)
    return None if v is None else 100.0 * v / n


def plot_dynamics(
    path: str | os.PathLike,
    runs: Mapping[Any, Sequence[Mapping[str, Any]]],
    *,
    title: str = "",
    formats: Sequence[str] = ("png", "svg"),
):
    """Training dynamics of the recurrent weights (paper Fig. 6E and S5A) from what
    :class:`~cortexnet.analysis.GradientRecorder` and :class:`~cortexnet.analysis.SignTracker` record.

    Args:
        path: the figure file; written once per format of ``formats`` (suffix replaced), atomically.
        runs: ``{configuration_label: [record, ...]}``, one record per seed, each the content of a member's
            ``dynamics.json``: ``{"gradients": GradientRecorder.epochs, "sign_changes": SignTracker.epochs,
            "log10_hist_edges": the histogram's bin edges}`` (edges missing: :data:`GRAD_BIN_EDGES`).
        title: figure title.

    Layout: top row — mean |∂L/∂W| per epoch (log scale, mean ± SD over seeds) and the distribution of log10
    |∂L/∂W| in the first and the last recorded epoch (pooled over seeds, on the recorded bin edges; the share
    of exact zeros, which a log axis cannot show, is in the legend; shared y); bottom row — per group of
    synapses by sign at initialisation, the % of the group set to zero, regrown from zero, zeroed by the sign
    (Dale) projection at least once, and (when any did) changed sign, per epoch (shared y). Colour is the
    configuration, line style the transition.

    Returns:
        The :class:`matplotlib.figure.Figure`, already written, to restyle and save again.
    """
    import numpy as np
    from matplotlib.figure import Figure

    runs = {k: list(v) for k, v in runs.items() if v}
    if not runs:
        raise ValueError("plot_dynamics needs at least one configuration with a recorded run")
    styles = _Styles()
    for label in runs:
        styles.of(label)
    groups = [g for g in ("positive", "negative", "zero")
              if any((r.get("sign_changes") or [{}])[0].get(g, {}).get("n") for rs in runs.values() for r in rs)]  # fmt: skip
    fig = Figure(figsize=(14.0, 8.2), layout="constrained")
    grid = fig.subplots(2, 3, squeeze=False)
    n_epochs = min(len(r.get("gradients", [])) for rs in runs.values() for r in rs)
    which = [0, n_epochs - 1] if n_epochs > 1 else [0] if n_epochs else []
    hist_axes, sign_axes = [grid[0][1], grid[0][2]], list(grid[1])
    # panels of one quantity share y (set before drawing, so that the limits hold every panel's data)
    for shared in (hist_axes[: len(which)], sign_axes[: len(groups)]):
        for ax in shared[1:]:
            ax.sharey(shared[0])
            ax.tick_params(labelleft=False)
    # --- gradients
    ax = grid[0][0]
    counts = []
    for label, rs in runs.items():
        per_seed = [[e.get("mean_abs_grad") for e in r.get("gradients", [])] for r in rs]
        epochs = [e["epoch"] for e in min((r.get("gradients", []) for r in rs), key=len)]
        if not epochs:
            continue
        mean, sd = _mean_sd(per_seed)
        counts += _draw_curves(ax, {label: (epochs, mean, sd, len(rs))}, styles, log_y=True)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    _integer_ticks(ax.xaxis)
    ax.set_ylabel("mean |∂L/∂W| (recurrent)")
    ax.set_title("gradient magnitude", fontsize="medium")
    ax.grid(alpha=0.3)
    span: list[float] = []
    for ax, k in zip(hist_axes, which, strict=False):
        for label, rs in runs.items():
            first = rs[0]
            edges = first.get("log10_hist_edges")
            edges = np.asarray(_default_edges() if edges is None else edges, dtype=float)
            counts_k = np.sum(
                [np.asarray(r["gradients"][k]["log10_hist_counts"], dtype=float) for r in rs], axis=0
            )
            total = sum(r["gradients"][k].get("values_recorded", 0) for r in rs)
            zeros = sum(r["gradients"][k].get("log10_hist_zeros", 0) for r in rs)
            if not total:
                continue
            colour, _ = styles.of(label)
            centres = 0.5 * (edges[:-1] + edges[1:])
            frac = counts_k / total
            nonzero = np.flatnonzero(counts_k)
            if nonzero.size:
                span += [float(edges[nonzero[0]]), float(edges[nonzero[-1] + 1])]
            text = f"{display_name(label)}: {100 * zeros / total:.0f} % exactly 0"
            ax.hist(centres, bins=edges, weights=frac, histtype="bar", rwidth=1.0, alpha=0.35, color=colour,
                    label=text)  # fmt: skip
            ax.hist(centres, bins=edges, weights=frac, histtype="step", color=colour, linewidth=1.2)
        epoch = runs[next(iter(runs))][0]["gradients"][k]["epoch"]
        ax.set_title(f"|∂L/∂W| distribution, epoch {epoch}", fontsize="medium")
        ax.set_xlabel("log10 |∂L/∂W|")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    hist_axes[0].set_ylabel("fraction of recorded gradients")
    if span:  # the recorded edges span 1e-14 ... 1: show the decades that hold gradients, and one more
        for ax in hist_axes[: len(which)]:
            ax.set_xlim(min(span) - 1.0, max(span) + 1.0)
    for ax in hist_axes[len(which) :]:
        fig.delaxes(ax)
    # --- sign changes
    present = set()
    for ax, group in zip(sign_axes, groups, strict=False):
        for label, rs in runs.items():
            records = [r.get("sign_changes", []) for r in rs]
            epochs = [e["epoch"] for e in min(records, key=len)]
            for key, _ in _TRANSITIONS:
                per_seed = [[_transition(e, group, key) for e in rec] for rec in records]
                if all(v is None for row in per_seed for v in row):
                    continue
                if key == "flipped" and not any(v for row in per_seed for v in row if v is not None):
                    continue
                present.add(key)
                mean, sd = _mean_sd(per_seed)
                counts += _draw_curves(ax, {(label, key): (epochs, mean, sd, len(rs))}, styles)
        ax.set_title(_GROUP_TITLES[group], fontsize="medium")
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    if groups:
        sign_axes[0].set_ylabel("% of the group's synapses")
        from matplotlib.lines import Line2D

        names = dict(_TRANSITIONS)
        entries = [(Line2D([], [], color="0.2", linestyle=styles.style[k]), names[k]) for k, _ in _TRANSITIONS
                   if k in present]  # fmt: skip
        if len(groups) < len(sign_axes):  # the legend of the line styles in the free cell
            spare = sign_axes[len(groups)]
            spare.axis("off")
            _legend(spare, entries, below=False, loc="center left", title="line style")
        else:
            _legend(sign_axes[0], entries, below=False)
    for ax in sign_axes[len(groups) + 1 if len(groups) else 0 :]:
        fig.delaxes(ax)
    colour_entries = [(_colour_handle(styles.colour[label]), display_name(label)) for label in runs]
    _legend(fig, colour_entries + _extra_entries(counts, "seeds", seeds=None, chance=False), below=True)
    if title:
        fig.suptitle(title)
    _save(fig, path, formats)
    return fig


def _colour_handle(colour):
    """A legend handle: a thick line of one colour."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=colour, linewidth=2.5)


def _default_edges():
    from cortexnet.analysis.dynamics import GRAD_BIN_EDGES

    return GRAD_BIN_EDGES
