"""``--topology NAME --topology-params key=value ...`` on every training experiment: the built models use it,
config.json, summaries and checkpoints record it, TOML sets it, bad values are one line with exit status 2,
and a resume keeps it."""

import json

import pytest

from cortexnet.experiments import dale, g2g
from cortexnet.experiments import recurrent_vs_feedforward as rvf
from cortexnet.experiments.common import run_cli
from cortexnet.layers import sparse_weights
from cortexnet.training import load_checkpoint, model_from_checkpoint

FAST = ["--dataset", "digits", "--epochs", "1", "--batch-size", "400", "--no-progress"]
G2G_TINY = ["--hidden", "16", "16", "16", "--patch-channels", "4", "--groups", "4"]


def _run(out, experiment):
    (run,) = list((out / experiment).iterdir())
    return run


def _members(run):
    return {p.name: p / "checkpoint.pt" for p in (run / "members").iterdir()}


def test_dale_with_a_recurrent_g2g_cortex(tmp_path):
    out = tmp_path / "runs"
    args = [*FAST, "--nodes", "48", "--densities", "0.5", "--topology", "g2g",
            "--topology-params", "groups=4", "p_inter=0.05", "--out", str(out)]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    run = _run(out, "dale")
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["topology"] == "g2g" and saved["topology_params"] == ["groups=4", "p_inter=0.05"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["topology"] == "g2g"
    (ckpt,) = _members(run).values()
    meta = load_checkpoint(ckpt)["meta"]["model_config"]
    assert meta["topology"] == "g2g" and meta["topology_params"] == {"groups": 4, "p_inter": 0.05}
    model, _ = model_from_checkpoint(ckpt)
    conn = sparse_weights(model)["recurrent.rec"].connectivity()
    # Expected density p/G + p'(G-1)/G = 0.5/4 + 0.05 * 3/4 = 0.1625 (Bernoulli: within 5 SD).
    possible = 48 * 47
    sd = (0.1625 * (1 - 0.1625) / possible) ** 0.5
    assert abs(conn.density() - 0.1625) < 5 * sd


def test_recurrent_vs_feedforward_wires_both_architectures(tmp_path):
    out = tmp_path / "runs"
    args = [*FAST, "--nodes", "40", "--densities", "0.4", "--topology", "full", "--out", str(out)]
    assert run_cli(rvf.main, args) == 0
    run = _run(out, "recurrent_vs_feedforward")
    for label, ckpt in _members(run).items():
        model, _ = model_from_checkpoint(ckpt)
        (w,) = sparse_weights(model).values()
        # "full": every allowed synapse, whatever p says (recurrent: no diagonal; feed-forward: 20 x 20).
        assert w.nnz == (40 * 39 if label.startswith("recurrent") else 20 * 20), label
    summary = json.loads((run / "summary.json").read_text())
    assert all(c["expected_synapses"] is None for c in summary["configurations"])


def test_g2g_experiment_with_er_layers_and_a_per_layer_override_from_toml(tmp_path):
    out = tmp_path / "runs"
    toml = tmp_path / "er.toml"
    toml.write_text('topology = "er"\n[topology_params]\np = 0.25\n"2.topology" = "full"\n')
    args = [*FAST, *G2G_TINY, "--models", "g2g", "--config", str(toml), "--out", str(out)]
    assert run_cli(g2g.main, args) == 0
    run = _run(out, "g2g")
    (ckpt,) = _members(run).values()
    model, _ = model_from_checkpoint(ckpt)
    counts = [layer.nnz for layer in model.layers]
    assert counts == [round(0.25 * 16 * 64), round(0.25 * 16 * 16), 16 * 16]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["table1"][0]["parameters"]["hidden_synapses_per_layer"] == counts
    assert summary["table1"][0]["parameter_budget"]["hidden_synapses_per_layer"] == counts


@pytest.mark.parametrize(
    "experiment,extra,message",
    [
        (dale, ["--nodes", "20", "--topology", "nope"], "unknown --topology 'nope'; known: "),
        (dale, ["--nodes", "20", "--topology-params", "groups=4"], "--topology-params needs --topology"),
        (
            dale,
            ["--nodes", "20", "--topology", "g2g", "--topology-params", "groupz=4"],
            "takes no ['groupz']",
        ),
        (dale, ["--nodes", "20", "--topology", "er", "--topology-params", "p=0.2"], "must not repeat ['p']"),
        (
            dale,
            ["--nodes", "20", "--topology", "er", "--topology-params", "1.p=0.2"],
            "sparse weight 1 does not",
        ),
        (rvf, ["--nodes", "20", "--topology", "g2g", "--densities", "0.1"], "p_inter <= p"),
        (
            g2g,
            [*G2G_TINY, "--topology", "er", "--p-inter-sweep", "0.1"],
            "cannot be combined with --topology",
        ),
        (g2g, [*G2G_TINY, "--topology", "er", "--topology-params", "x.p=1"], "I.name with I a sparse-weight"),
        (g2g, [*G2G_TINY, "--models", "g2g", "--topology", "er"], "needs a connection probability"),
        (g2g, [*G2G_TINY, "--topology", "g2g", "--topology-params", "groups=0"], "groups must be in [1, 16]"),
        (
            dale,
            [
                "--nodes",
                "50",
                "--densities",
                "0.5",
                "--topology",
                "g2g",
                "--topology-params",
                "groups=100",
                "p_inter=0.05",
            ],
            "groups must be in [1, 50]",
        ),
        (
            dale,
            ["--nodes", "50", "--topology", "g2g", "--topology-params", "groups=abc"],
            "groups must be an integer",
        ),
        (
            dale,
            ["--nodes", "50", "--topology", "g2g", "--topology-params", "p_inter=-1"],
            "p_inter must be in [0, 1]",
        ),
    ],
)
def test_bad_topology_options_are_one_line_with_exit_2_and_no_results(
    tmp_path, capsys, experiment, extra, message
):
    out = tmp_path / "runs"
    assert run_cli(experiment.main, [*FAST, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not out.exists() or not any(out.rglob("config.json"))


def test_resume_keeps_the_topology_and_refuses_another(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*FAST, "--nodes", "30", "--densities", "0.5", "--topology", "g2g", "--topology-params",
            "groups=3", "p_inter=0.1", "--out", str(out)]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    run = _run(out, "dale")
    assert run_cli(dale.main, ["--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    (ckpt,) = _members(run).values()
    assert load_checkpoint(ckpt)["meta"]["model_config"]["topology_params"] == {"groups": 3, "p_inter": 0.1}
    assert run_cli(dale.main, ["--resume", str(run), "--topology", "er"]) == 2
    assert "--topology cannot be changed when resuming" in capsys.readouterr().err


def test_a_topology_that_fails_only_when_built_is_one_line_exit_2(tmp_path, capsys):
    from cortexnet.connectivity import TOPOLOGIES

    def picky(spec, /, *, generator):
        raise ValueError(f"picky cannot wire {spec.n_out} x {spec.n_in}")

    TOPOLOGIES.register("picky")(picky)
    try:
        out = tmp_path / "runs"
        assert run_cli(dale.main, [*FAST, "--nodes", "20", "--topology", "picky", "--out", str(out)]) == 2
    finally:
        del TOPOLOGIES._items["picky"]
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot build model 'cortex_rnn': picky cannot wire 20 x 20" in err


def test_a_relative_npz_dataset_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = dale.DaleConfig(dataset="npz:data/mine.npz")
    assert config.dataset == f"npz:{tmp_path / 'data' / 'mine.npz'}"
