"""`python -m cortexnet.experiments.g2g` end to end on the embedded digits: Table I rows and the p' sweep,
parameter counts in the summary, the error contract (exit 2 before any work, no partial results), TOML, resume."""

import json

import pytest
import torch
from torch.utils.data import TensorDataset

import cortexnet.data
import cortexnet.training.runs as runs_mod
from cortexnet.data import DatasetSplits
from cortexnet.experiments import g2g
from cortexnet.experiments.common import run_cli
from cortexnet.io import read_jsonl
from cortexnet.models import G2GNet
from cortexnet.training import Callback, load_checkpoint, model_from_checkpoint

TINY = ["--dataset", "digits", "--hidden", "16", "16", "16", "--patch-channels", "4", "--groups", "4"]
BASE = [*TINY, "--epochs", "1", "--batch-size", "200", "--no-progress"]


def only_run(out):
    (run,) = list((out / "g2g").iterdir())
    return run


def test_table_one_and_sweep_write_outputs_with_parameter_counts(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*BASE, "--p-inter-sweep", "0.05", "0.15", "--out", str(out)]
    assert run_cli(g2g.main, args) == 0
    run = only_run(out)
    names = {p.name for p in run.iterdir()}
    assert names == {
        ".lock",
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "accuracy.png",
        "accuracy.svg",  # every figure also as SVG
        "sweep.png",
        "sweep.svg",
        "members",
    }
    # 4 Table I rows + ER/G2G at p' = 0.05 (p' = 0.15 reuses the Table I members).
    members = sorted(p.name for p in (run / "members").iterdir())
    assert len(members) == 6 and "g2g-pinter0.05-seed0" in members
    assert len(read_jsonl(run / "metrics.jsonl")) == 6 * 2  # epoch 0 and 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["image_geometry"] == [1, 8, 8]
    rows = {r["model"]: r for r in summary["table1"]}
    assert set(rows) == {"g2g", "fc_same_params", "fc_same_width", "er_same_edges"}
    g, er = rows["g2g"]["parameters"], rows["er_same_edges"]["parameters"]
    assert er["hidden_synapses_per_layer"] == g["hidden_synapses_per_layer"]
    assert (
        rows["fc_same_width"]["parameters"]["density"] == 1.0 and rows["fc_same_width"]["hidden"] == [16] * 3
    )
    assert rows["fc_same_params"]["hidden"][0] < 16
    assert abs(rows["fc_same_params"]["parameters"]["total"] - g["total"]) < 0.1 * g["total"]
    assert rows["g2g"]["paper_accuracy"] is None  # Table I has no digits column
    assert [s["p_inter"] for s in summary["sweep"]] == [0.05, 0.15]
    assert summary["sweep"][1]["g2g"]["runs"] == rows["g2g"]["runs"]
    check = summary["parameter_count_check"]
    assert (
        check["paper_table1_g2g"] == 806_100
        and check["ours_with_1024_wide_embedding_hidden_synapses"] == 806_094
    )
    for name in ("accuracy.png", "sweep.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "paper params" in printed and "G2G - ER" in printed and "806,100" in printed
    model, ckpt = model_from_checkpoint(run / "members" / "g2g-pinter0.15-seed0" / "checkpoint.pt")
    assert isinstance(model, G2GNet) and model.parameter_counts()["hidden_synapses"] == g["hidden_synapses"]
    assert ckpt["meta"]["dataset"]["image_geometry"] == [1, 8, 8]


def test_sweep_only_trains_g2g_and_er(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text("models = []\np_inter_sweep = [0.1]\n")
    out = tmp_path / "runs"
    assert run_cli(g2g.main, [*BASE, "--config", str(cfg), "--out", str(out)]) == 0
    members = sorted(p.name for p in (only_run(out) / "members").iterdir())
    assert members == ["er_same_edges-pinter0.1-seed0", "g2g-pinter0.1-seed0"]
    assert json.loads((only_run(out) / "summary.json").read_text())["table1"] == []


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--models", "resnet"], "--models"),
        (["--p-inter-sweep", "0.1", "1.5"], "[0, 1]"),
        (["--p-inter", "-0.1"], "[0, 1]"),
        (["--groups", "0"], "groups must be in"),
        (["--grouping", "blocks"], "grouping must be one of"),
        (["--hidden", "0"], "hidden"),
        (["--init", "zeros"], "init must be one of"),
        (["--epochs", "0"], "--epochs"),
        (["--dataset", "imagenet"], "unknown --dataset"),
        (["--image-channels", "0"], "--image-channels"),
        (
            ["--patches-per-side", "3"],
            "divide the image height 8",
        ),  # found once the digits' geometry is known
        (["--image-channels", "3"], "do not divide"),
        (["--p", "0.1"], "exceeds the intra-pathway probability --p 0.1"),
        (
            ["--p", "0.3", "--p-inter", "0.1", "--p-inter-sweep", "0.5"],
            "p' = 0.5 (--p-inter / --p-inter-sweep)",
        ),
    ],
)
def test_bad_values_exit_2_with_one_line_and_no_results(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    assert run_cli(g2g.main, [*BASE, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_non_image_dataset_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    eeg = TensorDataset(torch.zeros(10, 178, 1), torch.zeros(10, dtype=torch.int64))
    fake = DatasetSplits("sleep-ucr", eeg, None, eeg, n_steps=178, n_inputs=1, n_classes=5, description="EEG")
    monkeypatch.setattr(cortexnet.data, "load_dataset", lambda *a, **k: fake)
    out = tmp_path / "runs"
    assert run_cli(g2g.main, [*BASE, "--out", str(out)]) == 2
    assert "image dataset" in capsys.readouterr().err
    assert not out.exists()


class Kill(Callback):
    """A kill in epoch 2, after epoch 1's checkpoint was written (epoch-end hooks run before the checkpoint)."""

    def on_epoch_end(self, model, state):
        if state.epoch == 2:
            raise KeyboardInterrupt("simulated kill")


def test_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch):
    args = [
        *TINY,
        "--epochs",
        "2",
        "--batch-size",
        "200",
        "--no-progress",
        "--models",
        "g2g",
        "er_same_edges",
    ]
    assert run_cli(g2g.main, [*args, "--out", str(tmp_path / "ref")]) == 0
    reference = json.loads((only_run(tmp_path / "ref") / "summary.json").read_text())
    real = runs_mod.train_member
    calls = []

    def killing(folder, label, **kw):
        calls.append(label)
        if len(calls) == 2:
            kw["callbacks"] = [Kill()]
        return real(folder, label, **kw)

    monkeypatch.setattr(runs_mod, "train_member", killing)
    with pytest.raises(KeyboardInterrupt):
        run_cli(g2g.main, [*args, "--out", str(tmp_path / "killed")])
    monkeypatch.setattr(runs_mod, "train_member", real)
    run = only_run(tmp_path / "killed")
    killed = run / "members" / calls[1] / "checkpoint.pt"
    assert load_checkpoint(killed)["train_state"]["epoch"] == 1  # resume really continues from a checkpoint
    assert not (run / "summary.json").exists()
    assert run_cli(g2g.main, ["--resume", str(run), "--no-progress"]) == 0
    resumed = json.loads((run / "summary.json").read_text())
    for a, b in zip(reference["table1"], resumed["table1"], strict=True):
        assert a["runs"][0]["test_acc_per_epoch"] == b["runs"][0]["test_acc_per_epoch"]
        assert a["parameters"] == b["parameters"] and a["runs"][0]["parameters"] == b["runs"][0]["parameters"]


def test_summary_reports_the_built_models_counts_per_seed_beside_the_budget(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [
        *BASE,
        "--no-exact-edges",
        "--seeds",
        "0",
        "1",
        "--models",
        "g2g",
        "fc_same_width",
        "--out",
        str(out),
    ]
    assert run_cli(g2g.main, args) == 0
    run = only_run(out)
    rows = {r["model"]: r for r in json.loads((run / "summary.json").read_text())["table1"]}
    g = rows["g2g"]
    per_seed = []
    for r in g["runs"]:
        model, _ = model_from_checkpoint(
            run / "members" / f"g2g-pinter0.15-seed{r['seed']}" / "checkpoint.pt"
        )
        assert r["parameters"] == model.parameter_counts()
        per_seed.append(r["parameters"]["hidden_synapses"])
    # Bernoulli masks: the counts differ by seed, the row gives their mean and SD; the budget is the expectation.
    assert per_seed[0] != per_seed[1] and g["parameters"]["hidden_synapses"] == pytest.approx(
        sum(per_seed) / 2
    )
    assert g["parameters_sd"]["hidden_synapses"] > 0 and g["parameters"]["hidden_synapses"] not in per_seed
    assert isinstance(g["parameter_budget"]["hidden_synapses"], float)
    assert g["parameter_budget"]["hidden_synapses"] != g["parameters"]["hidden_synapses"]
    fc = rows["fc_same_width"]  # dense: identical in every seed, exact integers, SD 0
    assert (
        fc["parameters"]["hidden_synapses"]
        == fc["parameter_budget"]["hidden_synapses"]
        == 4 * 16 * 16 + 2 * 16 * 16
    )
    assert fc["parameters_sd"]["hidden_synapses"] == 0
    printed = capsys.readouterr().out
    sd = g["parameters_sd"]["hidden_synapses"]
    assert (
        f"{g['parameters']['hidden_synapses']:,.0f} ± {sd:,.0f}" in printed and "the built models" in printed
    )
