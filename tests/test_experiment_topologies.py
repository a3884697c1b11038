"""`python -m cortexnet.experiments.topologies` end to end on the embedded digits: outputs (one member per
topology), the error contract (exit status 2 before any work, no run folder), resume of a finished run, TOML."""

import json
import sys
from pathlib import Path

import pytest

from cortexnet.experiments import topologies as topo
from cortexnet.experiments.common import run_cli
from cortexnet.io import read_jsonl
from cortexnet.models import CortexRNN, SparseMLP
from cortexnet.training import load_checkpoint, model_from_checkpoint

TINY = ["--dataset", "digits", "--hidden", "16", "16", "--density", "0.3", "--epochs", "1"]
BASE = [*TINY, "--seeds", "0", "--batch-size", "200", "--optimizer", "adam", "--lr", "0.001", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1] / "experiments"


def only_run(out):
    (run,) = list((out / "topologies").iterdir())
    return run


def test_writes_outputs_one_member_per_topology_and_recurrent_members(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*BASE, "--topologies", "full", "er", "dnm", "--recurrent-nodes", "20", "--recurrent-density",
            "0.3", "--recurrent-dale", "on", "--out", str(out)]  # fmt: skip
    assert run_cli(topo.main, args) == 0
    run = only_run(out)
    assert {p.name for p in run.iterdir()} == {
        ".lock", "config.json", "metrics.jsonl", "summary.json", "accuracy.png", "accuracy.svg", "members"}  # fmt: skip
    members = sorted(p.name for p in (run / "members").iterdir())
    assert members == [
        "mlp-dnm-seed0", "mlp-er-seed0", "mlp-full-seed0", "recurrent-dnm-daleon-seed0", "recurrent-er-daleon-seed0"
    ]  # fmt: skip
    assert len(read_jsonl(run / "metrics.jsonl")) == 5 * 2  # epochs 0 and 1
    summary = json.loads((run / "summary.json").read_text())
    rows = {(r["model"], r["topology"]): r for r in summary["rows"]}
    assert rows[("mlp", "full")]["parameters"]["density"] == 1.0
    assert rows[("mlp", "er")]["parameters"]["hidden_synapses_per_layer"] == [round(0.3 * 64 * 16),
                                                                              round(0.3 * 16 * 16)]  # fmt: skip
    assert rows[("recurrent", "er")]["parameters"]["synapses"] == round(0.3 * 20 * 19)
    assert rows[("recurrent", "er")]["dale"] == "on"
    assert summary["mlp_widths"] == [64, 16, 16, 10] and "not_included" not in summary
    assert summary["training"]["optimizer"] == "adam"
    for r in summary["rows"]:
        assert r["final_test_acc_se"] is None and r["paper_accuracy"] is None  # one seed; no digits in DNM
        assert "learning_delay" in r["aggregate"]
    assert (run / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "topology" in printed and "not included" not in printed
    mlp, _ = model_from_checkpoint(run / "members" / "mlp-dnm-seed0" / "checkpoint.pt")
    rnn, _ = model_from_checkpoint(run / "members" / "recurrent-dnm-daleon-seed0" / "checkpoint.pt")
    assert isinstance(mlp, SparseMLP) and mlp.config.topology == "dnm"
    assert isinstance(rnn, CortexRNN) and rnn.config.topology == "dnm" and rnn.config.dale


def test_standard_error_and_paper_numbers():
    assert topo.standard_error(0.3, 9) == pytest.approx(0.1)
    assert topo.standard_error(None, 1) is None
    assert topo.PAPER["static_accuracy"]["mnist"] == {"dnm": 97.82, "full": 98.78, "er": 96.72}
    cfg = topo.TopologiesConfig()
    assert cfg.hidden == (1568, 1568, 1568) and cfg.density == 0.01 and cfg.recurrent_nodes is None
    assert cfg.train_config(0).optimizer == "sgd" and cfg.train_config(0).momentum == 0.9


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--topologies", "nope"], "unknown topology"),
        (["--topologies", "er", "er"], "distinct"),
        (["--density", "0"], "--density"),
        (["--recurrent-nodes", "1"], "--recurrent-nodes"),
        (["--recurrent-density", "2"], "--recurrent-density"),
        (["--recurrent-dale", "maybe"], "--recurrent-dale"),
        (["--optimizer", "lbfgs"], "optimizer"),
        (["--topology", "nope"], "unknown --topology 'nope'"),
        (["--hidden", "16", "--density", "1e-6", "--topologies", "er"], "gets no link at this density"),
        (["--topology", "full", "--recurrent-nodes", "10"], "need no data sample, but there is none"),
        (["--hidden", "0"], "--hidden needs at least one width"),
        (["--topology", "bsw", "--topology-params", "beta=2"], "beta"),
        (["--topologies", "g2g"], "--topologies g2g"),
        (["--epochs", "0"], "--epochs"),
    ],
)
def test_bad_values_exit_2_with_one_line_and_no_run_folder(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    assert run_cli(topo.main, ["--dataset", "digits", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_resume_of_a_finished_run_is_a_no_op_with_the_same_summary(tmp_path):
    out = tmp_path / "runs"
    assert run_cli(topo.main, [*BASE, "--topologies", "er", "bsw", "--out", str(out)]) == 0
    run = only_run(out)
    before = json.loads((run / "summary.json").read_text())
    metrics = read_jsonl(run / "metrics.jsonl")
    assert run_cli(topo.main, ["--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text()) == before
    assert read_jsonl(run / "metrics.jsonl") == metrics


def test_toml_configs_parse_and_follow_the_reference():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    mnist = tomllib.loads((ROOT / "topologies_mnist.toml").read_text())
    assert mnist["hidden"] == [1568] * 3 and mnist["density"] == 0.01 and len(mnist["seeds"]) == 3
    assert (mnist["optimizer"], mnist["momentum"], mnist["batch_size"]) == ("sgd", 0.9, 32)
    digits = tomllib.loads((ROOT / "topologies_digits.toml").read_text())
    assert digits["dataset"] == "digits" and digits["recurrent_nodes"] == 500
    for raw, (n_steps, n_inputs) in ((mnist, (28, 28)), (digits, (8, 8))):
        config = topo.TopologiesConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        config.validate()
        for (
            t
        ) in config.compared():  # every member's model on the dataset's real shapes (data params: FROM_DATA)
            config.mlp_config(t, 0, n_steps=n_steps).validate(n_inputs)
        for t in config.recurrent_topologies():
            config.recurrent_config(t, "on", 0).validate()


def test_topology_option_trains_that_one_with_its_parameters(tmp_path):
    out = tmp_path / "runs"
    args = [*BASE, "--topology", "bsw", "--topology-params", "beta=0", "1.topology=full",
            "--recurrent-nodes", "20", "--recurrent-dale", "on", "--out", str(out)]  # fmt: skip
    assert run_cli(topo.main, args) == 0
    run = only_run(out)
    members = sorted(p.name for p in (run / "members").iterdir())
    assert members == ["mlp-bsw-seed0", "recurrent-bsw-daleon-seed0"]
    ckpt = load_checkpoint(run / "members" / "mlp-bsw-seed0" / "checkpoint.pt")
    mc = ckpt["meta"]["model_config"]
    assert mc["topology_params"] == {"beta": 0} and mc["layer_topologies"][1] == {"topology": "full"}
    model, _ = model_from_checkpoint(run / "members" / "mlp-bsw-seed0" / "checkpoint.pt")
    widths = [64, 16, 16]
    assert model.parameter_counts()["hidden_synapses_per_layer"][1] == widths[1] * widths[2]


def test_summary_reports_the_built_density_and_no_paper_numbers_outside_its_setting(tmp_path):
    out = tmp_path / "runs"
    args = [*BASE, "--topology", "er", "--topology-params", "p=0.5", "--out", str(out)]
    assert run_cli(topo.main, args) == 0
    summary = json.loads((only_run(out) / "summary.json").read_text())
    (row,) = summary["rows"]
    assert row["density"] == pytest.approx(0.5, abs=0.01)  # what was built, not --density 0.3
    assert row["paper_accuracy"] is None and summary["paper_comparable"] is False


def test_csti_members_are_wired_from_the_training_inputs_and_rebuild_from_their_checkpoint(tmp_path):
    out = tmp_path / "runs"
    args = [
        *BASE,
        "--topologies",
        "csti",
        "--recurrent-nodes",
        "20",
        "--recurrent-dale",
        "on",
        "--out",
        str(out),
    ]
    assert run_cli(topo.main, args) == 2  # only csti: no recurrent member can use it
    args = [*BASE, "--topologies", "csti", "er", "--recurrent-nodes", "20", "--recurrent-dale", "on",
            "--out", str(out)]  # fmt: skip
    assert run_cli(topo.main, args) == 0
    run = only_run(out)
    members = sorted(p.name for p in (run / "members").iterdir())
    assert members == ["mlp-csti-seed0", "mlp-er-seed0", "recurrent-er-daleon-seed0"]
    path = run / "members" / "mlp-csti-seed0" / "checkpoint.pt"
    activity = load_checkpoint(path)["meta"]["model_config"]["topology_params"]["activity"]
    assert tuple(activity.shape) == (1438, 64)  # every digits training image (fewer than the 2,000 cap)
    model, _ = model_from_checkpoint(path)  # no data needed: the sample is part of the configuration
    fresh = SparseMLP(model.config, 8, 10)
    for a, b in zip(model.layers, fresh.layers, strict=True):
        assert a.connectivity().equals(b.connectivity())
