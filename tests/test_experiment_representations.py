"""`python -m cortexnet.experiments.representations` on two small networks trained on digits (issue 5's
"must show"), its error contract, and `dale --record-dynamics`."""

import json

import pytest
import torch

from cortexnet.experiments import dale, representations
from cortexnet.experiments.common import run_cli

FIGURES = {
    "activation_sparsity.png",
    "activation_magnitudes.png",
    "mutual_information.png",
    "correlations.png",
    "dropout.png",
    "ei_balance.png",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    args = ["--dataset", "digits", "--nodes", "150", "--epochs", "1", "--densities", "0.1", "1.0",
            "--record-dynamics", "--no-progress", "--out", str(out)]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    (run,) = list((out / "dale").iterdir())
    return run


def ckpts(run):
    return [str(run / "members" / m / "checkpoint.pt") for m in ("p0.1-inh0.115-seed0", "p1-inh0.115-seed0")]


def test_probe_writes_every_figure_and_measure(trained, tmp_path, capsys):
    a, b = ckpts(trained)
    code = run_cli(representations.main, ["--checkpoint", a, "--checkpoint", b, "--mi-pairs", "300",
                                          "--dropout-draws", "2", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    (run,) = list((tmp_path / "representations").iterdir())
    assert FIGURES <= {p.name for p in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    assert [n["label"] for n in summary["networks"]] == ["p0.1-inh0.115-seed0", "p1-inh0.115-seed0"]
    for net in summary["networks"]:
        assert {"sparsity", "mutual_information", "correlations", "dropout", "ei_balance"} <= set(net)
        assert 0 <= net["sparsity"]["active_fraction_mean"] <= 1
        assert net["mutual_information"]["pairs"] == 300
        assert net["dropout"]["q"][0] == 0.0 and net["dropout"]["accuracy_mean"][0] == pytest.approx(
            net["accuracy"]
        )
        assert net["model"]["n_nodes"] == 150 and net["epochs_trained"] == 1
        assert set(net["sparsity"]["per_population"]) == {"excitatory", "inhibitory"}
    comp = summary["comparisons"][0]
    assert 0 <= comp["mutual_information_ks"]["pvalue"] <= 1
    assert "KS" not in capsys.readouterr().err


def test_probe_at_initialisation_rebuilds_the_initial_network(trained, tmp_path):
    a, _ = ckpts(trained)
    assert run_cli(representations.main, ["--checkpoint", a, "--at-init", "--analyses", "correlations",
                                          "--out", str(tmp_path)]) == 0  # fmt: skip
    (run,) = list((tmp_path / "representations").iterdir())
    net = json.loads((run / "summary.json").read_text())["networks"][0]
    assert net["label"].endswith("@init") and net["epochs_trained"] == 0
    assert set(net) >= {"correlations"} and "mutual_information" not in net


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    for path, msg in ((bad, "corrupt"), (foreign, "not a cortexnet checkpoint")):
        assert run_cli(representations.main, ["--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert msg in err and str(path) in err
    assert not (tmp_path / "o").exists()


def test_bad_probe_options(tmp_path, capsys):
    assert run_cli(representations.main, ["--out", str(tmp_path)]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert (
        run_cli(representations.main, ["--checkpoint", "x.pt", "--analyses", "magic", "--out", str(tmp_path)])
        == 2
    )
    assert "magic" in capsys.readouterr().err


def test_record_dynamics_writes_gradients_and_sign_changes(trained):
    member = trained / "members" / "p1-inh0.115-seed0"
    dyn = json.loads((member / "dynamics.json").read_text())
    (grad,) = dyn["gradients"]
    assert grad["epoch"] == 1 and grad["steps_recorded"] > 0 and grad["mean_abs_grad"] > 0
    (signs,) = dyn["sign_changes"]
    # Dale's law: no sign can flip; the projection's work shows as weights set to zero.
    assert signs["positive"]["pos_to_neg"] == 0 and signs["negative"]["neg_to_pos"] == 0
    assert signs["positive"]["n"] + signs["negative"]["n"] == 150 * 149
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["configurations"][0]["runs"][0]["dynamics"]["mean_abs_grad_per_epoch"]
