"""The connectivity sweep (Fig. 2, S2, 3B): a grid of N × p (or a weight budget), one-epoch accuracy, learning
curves, the KS test against the dense network, gradient magnitudes; on the embedded digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from cortexnet.experiments import connectivity_sweep as cs
from cortexnet.experiments.common import run_cli
from cortexnet.io import read_jsonl

BASE = ["--dataset", "digits", "--epochs", "1", "--batch-size", "400", "--no-progress"]


def only_run(out):
    (run,) = (out / "connectivity_sweep").iterdir()
    return run


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    args = [*BASE, "--nodes", "20", "40", "--densities", "1.0", "0.3", "--seeds", "0", "1", "--activations",
            "relu", "tanh", "--record-gradients", "--out", str(out)]  # fmt: skip
    assert run_cli(cs.main, args) == 0
    return only_run(out)


def test_the_grid_writes_its_figures_and_one_member_per_cell_and_seed(grid):
    assert (grid / "heatmap.png").is_file() and (grid / "accuracy.png").is_file()
    assert len(list((grid / "members").iterdir())) == 2 * 2 * 2 * 2
    summary = json.loads((grid / "summary.json").read_text())
    cells = {(c["activation"], c["nodes"], c["density"]) for c in summary["configurations"]}
    assert cells == {(a, n, p) for a in ("relu", "tanh") for n in (20, 40) for p in (1.0, 0.3)}


def test_one_epoch_accuracy_and_the_ks_test_are_computed_from_the_seeds(grid):
    summary = json.loads((grid / "summary.json").read_text())
    records = read_jsonl(grid / "metrics.jsonl")
    by = {(c["activation"], c["nodes"], c["density"]): c for c in summary["configurations"]}
    for (a, n, p), c in by.items():
        acc1 = [
            r["test_acc"]
            for r in records
            if r["epoch"] == 1 and (r["activation"], r["nodes"], r["density"]) == (a, n, p)
        ]
        assert c["acc1_per_seed"] == acc1 and c["acc1"]["mean"] == pytest.approx(np.mean(acc1))
        assert c["acc1"]["sd"] == pytest.approx(np.std(acc1, ddof=1))
        if p == 1.0:
            assert "ks_vs_dense" not in c
        else:
            want = stats.ks_2samp(acc1, by[(a, n, 1.0)]["acc1_per_seed"])
            assert c["ks_vs_dense"]["pvalue"] == pytest.approx(want.pvalue)
            assert c["ks_vs_dense"]["statistic"] == pytest.approx(want.statistic)
        assert c["first_epoch_mean_abs_grad"]["mean"] > 0


def test_a_weight_budget_trades_size_against_density(tmp_path):
    out = tmp_path / "runs"
    assert run_cli(cs.main, [*BASE, "--nodes", "20", "40", "--weight-budget", "300", "--out", str(out)]) == 0
    summary = json.loads((only_run(out) / "summary.json").read_text())
    got = {c["nodes"]: c["density"] for c in summary["configurations"]}
    assert got == {20: pytest.approx(300 / (20 * 19)), 40: pytest.approx(300 / (40 * 39))}
    assert not (only_run(out) / "heatmap.png").exists()  # no grid: learning curves only


@pytest.mark.parametrize(
    ("args", "msg"),
    [(["--nodes", "10", "--weight-budget", "100"], "exceeds the N (N - 1) possible synapses of --nodes [10]"),
     (["--densities", "0"], "must be in (0, 1]"), (["--activations", "sigmoid"], "unknown activation 'sigmoid'"),
     (["--nodes", "20", "20"], "--nodes repeats")],
)  # fmt: skip
def test_bad_options_are_refused_in_one_line(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    assert run_cli(cs.main, [*BASE, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err
    assert not out.exists() or not any(out.rglob("*.json"))
