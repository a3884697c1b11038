"""Figures fit for a paper (issue 14, item 3): every plot function returns its Figure and writes PNG + SVG;
integer epoch ticks, shared y, readable labels, shared histogram bins, p-values, chance lines, grid layouts,
the band's meaning in the legend, and the --record-dynamics figure of a tiny dale run."""

from __future__ import annotations

import json

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from cortexnet.analysis import (
    GRAD_BIN_EDGES,
    gradient_histogram,
    plots,
)
from cortexnet.analysis.plots import (
    band_caption,
    display_name,
    format_p,
    grid_shape,
    plot_accuracy_curves,
    plot_curves,
    plot_dynamics,
    plot_heatmap,
    plot_histogram_panels,
    plot_histograms,
)
from cortexnet.experiments import dale, recurrent_vs_feedforward
from cortexnet.experiments.common import run_cli

#: Code names that must never reach a legend or a title.
CODE_NAMES = {"fc_same_params", "fc_same_width", "er_same_edges", "g2g", "feedforward", "p1", "p0.1",
              "sparse_to_dense", "cortex_rnn", "sparse_mlp", "pinter0.5", "seed0"}  # fmt: skip


def epochs_curve(n_epochs=4, start=0.1, slope=0.1, sd=0.02, n=3):
    ep = list(range(n_epochs))
    return (ep, [start + slope * e for e in ep], [sd] * n_epochs, n)


def legend_texts(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def assert_written(path):
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    svg = path.with_suffix(".svg").read_text()
    assert "<svg" in svg
    assert not list(path.parent.glob(".*.tmp"))  # atomic writes leave no temporary files


def assert_integer_ticks(ax):
    ticks = ax.get_xticks()
    assert len(ticks) and np.allclose(ticks, np.round(ticks)), ticks


def assert_no_code_names(texts):
    for text in texts:
        assert text not in CODE_NAMES and "_" not in text, text


# ---------------------------------------------------------------------------------------- labels and text


def test_display_name_maps_code_names_to_readable_labels():
    assert display_name("fc_same_params") == "FC, same parameters"
    assert display_name("fc_same_width") == "FC, same width"
    assert display_name("er_same_edges") == "ER, same edges"
    assert display_name("g2g") == "G2G"
    assert display_name("feedforward") == "feed-forward"
    assert display_name("p1") == "p = 1"
    assert display_name("p0.1") == "p = 0.1"
    assert display_name("pinter0.5") == "p' = 0.5"
    assert display_name("sparse_to_dense") == "sparse-to-dense"
    assert display_name("magnitude+hebbian") == "magnitude + Hebbian"
    assert display_name("p0.1-inh0.115-seed0") == "p = 0.1, 11.5 % inh., seed 0"
    assert (
        display_name("recurrent-n200-p1-seed2 @init")
        == "recurrent, N = 200, p = 1, seed 2 (at initialisation)"
    )
    assert display_name(("p = 0.1", "feedforward")) == "p = 0.1, feed-forward"
    # readable text passes unchanged; unknown code names lose their underscores
    assert display_name("p = 0.3") == "p = 0.3" and display_name("my-net") == "my-net"
    assert display_name("some_new_rule") == "some new rule"


def test_format_p_never_prints_zero():
    assert format_p(0.0) == "p < 1e-300"
    assert format_p(5e-324) == "p < 1e-300"
    assert format_p(1.03e-44) == "p = 1e-44"
    assert format_p(0.5) == "p = 0.5"
    assert format_p(float("nan")) == "p = n/a" and format_p(None) == "p = n/a"


def test_band_caption_names_the_band_and_the_seed_count():
    assert band_caption([3, 3]) == "band: ± SD over 3 seeds"
    assert band_caption([1]) == "1 seed"
    assert band_caption([2, 3]) == "band: ± SD over 2–3 seeds"
    assert band_caption([1, 3]) == "band: ± SD over 3 seeds (1 seed: no band)"
    assert band_caption(5, over="dropout draws") == "band: ± SD over 5 dropout draws"


def test_grid_has_at_most_three_panels_per_row():
    assert grid_shape(1) == (1, 1) and grid_shape(3) == (1, 3) and grid_shape(5) == (2, 3)
    assert grid_shape(7) == (3, 3)


# ------------------------------------------------------------------------------------------ curves


def test_accuracy_curves_return_the_figure_with_integer_epochs_shared_y_chance_and_band(tmp_path):
    panels = {f"N = {n}": {"p0.1": epochs_curve(), "p1": epochs_curve(slope=0.05)} for n in (10, 20, 40)}
    path = tmp_path / "accuracy.png"
    fig = plot_accuracy_curves(path, panels, chance=0.1, title="t")
    assert isinstance(fig, Figure)
    assert_written(path)
    axes = fig.axes
    assert len(axes) == 3
    for ax in axes:
        assert_integer_ticks(ax)
        assert ax.get_shared_y_axes().joined(axes[0], ax)
        assert ax.get_ylim() == axes[0].get_ylim()
        chance = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert chance and np.allclose(chance[0].get_ydata(), 10.0)
        assert any(isinstance(c, PolyCollection) for c in ax.collections)  # the ± SD band
    texts = legend_texts(fig)
    assert {"p = 0.1", "p = 1", "chance", "band: ± SD over 3 seeds"} <= set(texts)
    assert_no_code_names(texts)
    fig.savefig(tmp_path / "again.pdf")  # the returned figure can be saved again
    assert (tmp_path / "again.pdf").read_bytes()[:4] == b"%PDF"


def test_one_seed_draws_no_band_and_says_so(tmp_path):
    fig = plot_accuracy_curves(tmp_path / "a.png", {"": {"static": epochs_curve(sd=None, n=1)}})
    (ax,) = fig.axes
    assert not any(isinstance(c, PolyCollection) for c in ax.collections)
    assert "1 seed" in legend_texts(fig)
    assert not any(ln.get_linestyle() == "--" for ln in ax.get_lines())  # no chance given: no chance line


def test_five_panels_are_laid_out_on_a_grid(tmp_path):
    panels = {f"N = {n}": {"p1": epochs_curve()} for n in range(5)}
    fig = plot_accuracy_curves(tmp_path / "five.png", panels, chance=0.1)
    assert len(fig.axes) == 5
    geometries = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
    assert geometries == {(2, 3)}
    rows = {ax.get_subplotspec().rowspan.start for ax in fig.axes}
    assert rows == {0, 1}
    for ax in fig.axes:
        assert ax.get_shared_y_axes().joined(fig.axes[0], ax)


def test_two_factor_designs_use_colour_for_density_and_line_style_for_architecture(tmp_path):
    curves = {(f"p = {p:g}", arch): epochs_curve(slope=s) for p, s in ((0.1, 0.1), (1.0, 0.05))
              for arch in ("recurrent", "feedforward")}  # fmt: skip
    fig = plot_accuracy_curves(tmp_path / "rvf.png", {"N = 200": curves}, chance=0.1)
    (ax,) = fig.axes
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() != "--"]
    assert len(lines) == 4
    by = {(p, a): ln for ln, (p, a) in zip(lines, curves, strict=True)}
    assert by[("p = 0.1", "recurrent")].get_color() == by[("p = 0.1", "feedforward")].get_color()
    assert by[("p = 0.1", "recurrent")].get_color() != by[("p = 1", "recurrent")].get_color()
    assert by[("p = 0.1", "recurrent")].get_linestyle() == by[("p = 1", "recurrent")].get_linestyle()
    assert by[("p = 0.1", "recurrent")].get_linestyle() != by[("p = 0.1", "feedforward")].get_linestyle()
    texts = legend_texts(fig)
    assert {"p = 0.1", "p = 1", "recurrent", "feed-forward"} <= set(texts)
    assert_no_code_names(texts)


def test_plot_curves_returns_the_figure_with_chance_and_readable_labels(tmp_path):
    curves = {
        "g2g": ([0.1, 0.5], [0.5, 0.6], [0.01, 0.02], 3),
        "er_same_edges": ([0.1, 0.5], [0.4, 0.5], None),
    }
    path = tmp_path / "sweep.png"
    fig = plot_curves(path, curves, xlabel="p'", ylabel="accuracy (%)", scale=100.0, chance=0.1)
    assert isinstance(fig, Figure)
    assert_written(path)
    (ax,) = fig.axes
    assert any(ln.get_linestyle() == "--" and np.allclose(ln.get_ydata(), 10.0) for ln in ax.get_lines())
    texts = legend_texts(fig)
    assert {"G2G", "ER, same edges", "chance"} <= set(texts)
    assert_no_code_names(texts)
    fig = plot_curves(tmp_path / "n.png", {"a": ([20, 40, 80], [1.0, 2.0, 3.0], None, 1)}, xlabel="N",
                      ylabel="delay", integer_x=True)  # fmt: skip
    assert_integer_ticks(fig.axes[0])
    # Delays in whole epochs: integer y ticks, even when every delay is 0 (a flat line has no integer in ±5 %).
    fig = plot_curves(tmp_path / "d.png", {"a": ([20, 40], [0.0, 0.0], [0.0, 0.0], 2)}, xlabel="N",
                      ylabel="delay (epochs)", integer_y=True)  # fmt: skip
    ticks = [
        t for t in fig.axes[0].get_yticks() if fig.axes[0].get_ylim()[0] <= t <= fig.axes[0].get_ylim()[1]
    ]
    assert 0.0 in ticks and len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


# --------------------------------------------------------------------------------------- histograms


def bar_edges(ax) -> list[np.ndarray]:
    out = []
    for c in ax.containers:
        if isinstance(c, BarContainer):
            xs = np.array([r.get_x() for r in c.patches])
            out.append(np.append(xs, xs[-1] + c.patches[-1].get_width()))
    return out


def test_histograms_share_one_set_of_bin_edges(tmp_path):
    rng = np.random.default_rng(0)
    samples = {"p0.1-inh0.115-seed0": rng.normal(0, 1, 500), "p1-inh0.115-seed0": rng.normal(3, 0.2, 300)}
    path = tmp_path / "mi.png"
    fig = plot_histograms(path, samples, xlabel="x", title="t", note=f"two-sample KS test: {format_p(0.0)}")
    assert isinstance(fig, Figure)
    assert_written(path)
    (ax,) = fig.axes
    edges = bar_edges(ax)
    assert len(edges) == 2 and np.allclose(edges[0], edges[1])
    assert ax.get_title() == "two-sample KS test: p < 1e-300"
    assert_no_code_names(legend_texts(fig))


def test_histogram_panels_share_bins_within_a_panel_and_y_across_panels(tmp_path):
    rng = np.random.default_rng(1)
    panels = {"at_init": {"a": rng.normal(0, 1e-4, 200), "b": rng.normal(5e-4, 1e-4, 200)},
              "after_training": {"a": rng.normal(0, 1e-2, 200), "b": rng.normal(1e-2, 1e-3, 200)}}  # fmt: skip
    path = tmp_path / "ei.png"
    fig = plot_histogram_panels(path, panels, xlabel="net input")
    assert isinstance(fig, Figure)
    assert_written(path)
    a0, a1 = fig.axes
    assert [a0.get_title(), a1.get_title()] == ["at initialisation", "after training"]
    assert a0.get_shared_y_axes().joined(a0, a1)
    for ax in (a0, a1):
        edges = bar_edges(ax)
        assert len(edges) == 2 and np.allclose(edges[0], edges[1])


def test_values_on_a_lattice_get_one_bin_per_step():
    edges = plots.shared_bin_edges({"a": [30.0, 35.0, 50.0], "b": [55.0, 70.0]}, 50)
    assert np.allclose(np.diff(edges), 5.0) and edges[0] == 27.5 and edges[-1] == 72.5


# --------------------------------------------------------------------------------------- heat maps


def test_heatmap_returns_the_figure_on_one_colour_scale(tmp_path):
    grid = np.array([[90.0, np.nan], [70.0, 60.0]])
    path = tmp_path / "heatmap.png"
    fig = plot_heatmap(path, {"relu": grid, "tanh": grid - 10}, x=["1,000", "10,000"], y=["1", "0.1"],
                       xlabel="N", ylabel="p", value_label="accuracy (%)")  # fmt: skip
    assert isinstance(fig, Figure)
    assert_written(path)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["ReLU", "tanh"]
    assert {ax.images[0].get_clim() for ax in panels} == {(50.0, 90.0)}
    assert "n/a" in [t.get_text() for t in panels[0].texts]


# ---------------------------------------------------------------------------------- training dynamics


def fake_dynamics(seed: int, epochs: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    grads, signs = [], []
    for e in range(1, epochs + 1):
        g = np.abs(rng.normal(0, 1e-3 / e, 400))
        g[:40] = 0.0
        h = gradient_histogram(g)
        grads.append({"epoch": e, "mean_abs_grad": float(g.mean()), "values_recorded": g.size,
                      "log10_hist_counts": h["counts"].tolist(), "log10_hist_zeros": h["zeros"]})  # fmt: skip
        group = {"n": 300, "pos_to_neg": 0, "neg_to_pos": 0, "to_zero": 30 // e, "from_zero": e}
        per_step = {"positive": {"weights_zeroed": 40 // e}, "negative": {"weights_zeroed": 5}, "zero": {}}
        signs.append({"epoch": e, "positive": group, "negative": {**group, "n": 100}, "zero": {"n": 0},
                      "per_step": per_step, "steps": 4})  # fmt: skip
    return {"gradients": grads, "sign_changes": signs, "log10_hist_edges": GRAD_BIN_EDGES.tolist()}


def test_dynamics_figure_shares_bins_and_y_and_has_integer_epochs(tmp_path):
    runs = {"p = 0.1": [fake_dynamics(0), fake_dynamics(1)], "p = 1": [fake_dynamics(2), fake_dynamics(3)]}
    path = tmp_path / "dynamics.png"
    fig = plot_dynamics(path, runs)
    assert isinstance(fig, Figure)
    assert_written(path)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    hist = [ax for t, ax in by_title.items() if t.startswith("|∂L/∂W| distribution")]
    assert len(hist) == 2 and hist[0].get_shared_y_axes().joined(*hist)
    for ax in hist:
        edges = bar_edges(ax)
        assert len(edges) == 2 and all(np.allclose(e, edges[0]) for e in edges)
        assert np.all(np.isin(np.round(edges[0], 9), np.round(GRAD_BIN_EDGES, 9)))
    signs = [
        by_title["initially positive (excitatory) synapses"],
        by_title["initially negative (inhibitory) synapses"],
    ]
    assert signs[0].get_shared_y_axes().joined(*signs)
    for ax in [by_title["gradient magnitude"], *signs]:
        assert_integer_ticks(ax)
    texts = legend_texts(fig)
    assert {"p = 0.1", "p = 1", "band: ± SD over 2 seeds"} <= set(texts)
    assert_no_code_names(texts)


def test_svg_is_reproducible(tmp_path):
    panels = {"": {"p1": epochs_curve()}}
    plot_accuracy_curves(tmp_path / "a.png", panels)
    plot_accuracy_curves(tmp_path / "b.png", panels)
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


# ----------------------------------------------------------------------------------- the experiments


def capture(monkeypatch, module, name):
    """Record the figures ``module.name`` returns (the experiment still writes them)."""
    figures = []
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        fig = real(*args, **kwargs)
        figures.append(fig)
        return fig

    monkeypatch.setattr(module, name, wrapped)
    return figures


def test_dale_record_dynamics_writes_the_dynamics_figure_and_bin_edges(tmp_path, monkeypatch):
    figures = capture(monkeypatch, dale, "plot_dynamics")
    args = ["--dataset", "digits", "--nodes", "20", "--densities", "0.3", "--epochs", "2", "--batch-size", "400",
            "--record-dynamics", "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    (run,) = (tmp_path / "dale").iterdir()
    assert_written(run / "dynamics.png")
    assert_written(run / "accuracy.png")
    (member,) = (run / "members").iterdir()
    dyn = json.loads((member / "dynamics.json").read_text())
    edges = dyn["log10_hist_edges"]
    assert np.allclose(edges, GRAD_BIN_EDGES)
    for epoch in dyn["gradients"]:
        assert len(epoch["log10_hist_counts"]) == len(edges) - 1
    (fig,) = figures
    assert "p = 0.3" in legend_texts(fig) and "1 seed" in legend_texts(fig)


def test_recurrent_vs_feedforward_figure_is_a_readable_two_by_two(tmp_path, monkeypatch):
    figures = capture(monkeypatch, recurrent_vs_feedforward, "plot_accuracy_curves")
    args = ["--dataset", "digits", "--nodes", "20", "--densities", "0.3", "1.0", "--epochs", "1",
            "--batch-size", "400", "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    assert run_cli(recurrent_vs_feedforward.main, args) == 0
    (fig,) = figures
    texts = legend_texts(fig)
    assert {"p = 0.3", "p = 1", "recurrent", "feed-forward", "chance", "1 seed"} <= set(texts)
    assert_no_code_names(texts)
    assert_integer_ticks(fig.axes[0])
