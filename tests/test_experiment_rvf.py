"""`python -m cortexnet.experiments.recurrent_vs_feedforward` end to end on the embedded digits: outputs, the
error contract (exit status 2 before any work, no partial results), TOML configs, resume after a kill."""

import json
import sys
from pathlib import Path

import pytest
import torch

import cortexnet.training.runs as runs_mod
from cortexnet.experiments import recurrent_vs_feedforward as rvf
from cortexnet.experiments.common import run_cli
from cortexnet.io import read_jsonl
from cortexnet.models import CortexRNN, FeedForwardNet
from cortexnet.training import Callback, load_checkpoint, model_from_checkpoint

BASE = ["--dataset", "digits", "--nodes", "40", "--epochs", "2", "--batch-size", "200", "--no-progress"]


def only_run(out):
    (run,) = list((out / "recurrent_vs_feedforward").iterdir())
    return run


def test_writes_config_metrics_summary_plot_and_checkpoints(tmp_path, capsys):
    out = tmp_path / "runs"
    assert run_cli(rvf.main, [*BASE, "--seeds", "0", "1", "--out", str(out)]) == 0
    run = only_run(out)
    assert {p.name for p in run.iterdir()} == {
        ".lock",  # the run folder's advisory lock (held while a command writes it)
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "accuracy.png",
        "accuracy.svg",  # every figure also as SVG
        "members",
    }
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["nodes"] == [40] and cfg["cortexnet_version"] and "git_revision" in cfg
    metrics = read_jsonl(run / "metrics.jsonl")
    assert len(metrics) == 2 * 2 * 2 * 3  # architectures x densities x seeds x (epoch 0, 1, 2)
    assert {m["architecture"] for m in metrics} == {"recurrent", "feedforward"}
    summary = json.loads((run / "summary.json").read_text())
    confs = {(c["architecture"], c["density"]): c for c in summary["configurations"]}
    assert set(confs) == {("recurrent", 1.0), ("recurrent", 0.1), ("feedforward", 1.0), ("feedforward", 0.1)}
    assert confs[("recurrent", 0.1)]["expected_synapses"] == pytest.approx(0.1 * 40 * 39)
    assert confs[("feedforward", 1.0)]["expected_synapses"] == 20 * 20
    assert confs[("feedforward", 1.0)]["layer_sizes"] == [20, 20]
    for conf in summary["configurations"]:
        assert conf["aggregate"]["n_seeds"] == 2 and len(conf["runs"][0]["test_acc_per_epoch"]) == 3
    assert {d["architecture"] for d in summary["sparse_minus_dense"]} == {"recurrent", "feedforward"}
    assert summary["paper"]["findings"]
    assert (run / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "sparse - dense" in printed and "feedforward" in printed and "limited to networks" in printed
    # Checkpoints rebuild the right model class; the sparse masks hold on the saved weights.
    for member in (run / "members").iterdir():
        model, _ = model_from_checkpoint(member / "checkpoint.pt")
        if member.name.startswith("feedforward"):
            assert isinstance(model, FeedForwardNet)
            w = model.connections.to_dense()
            mask = model.connections.connectivity().to_dense()
        else:
            assert isinstance(model, CortexRNN)
            w, mask = model.recurrent.rec.to_dense(), model.recurrent.rec.connectivity().to_dense()
        assert torch.all(w[~mask] == 0)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--nodes", "1"], "--nodes"),
        (["--densities", "0.1", "1.5"], "(0, 1]"),
        (["--architectures", "convolutional"], "--architectures"),
        (["--architectures", "recurrent", "recurrent"], "distinct"),
        (["--dataset", "imagenet"], "unknown --dataset"),
        (["--epochs", "0"], "--epochs"),
        (["--ff-hidden-init", "zeros"], "--ff-hidden-init"),
        (["--activation", "gelu"], "--activation"),
        (["--backend", "nope"], "--backend"),
        (["--seeds", "1", "1"], "--seeds"),
    ],
)
def test_bad_values_exit_2_with_one_line_and_no_results(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    assert run_cli(rvf.main, ["--dataset", "digits", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unwritable_output_and_missing_data_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert run_cli(rvf.main, [*BASE, "--out", str(blocker / "runs")]) == 2
    assert "not writable" in capsys.readouterr().err
    out = tmp_path / "runs"
    code = run_cli(rvf.main, ["--dataset", "mnist", "--data-root", str(tmp_path / "data"), "--out", str(out)])
    assert code == 2 and "download" in capsys.readouterr().err and not out.exists()


def test_toml_config_and_command_line_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'dataset = "digits"\nnodes = [30]\ndensities = [0.5]\narchitectures = ["feedforward"]\nepochs = 1\n'
        "progress = false\n"
    )
    out = tmp_path / "runs"
    assert run_cli(rvf.main, ["--config", str(cfg), "--nodes", "24", "--out", str(out)]) == 0
    saved = json.loads((only_run(out) / "config.json").read_text())["config"]
    assert saved["nodes"] == [24] and saved["architectures"] == ["feedforward"] and saved["epochs"] == 1
    assert [p.name for p in (only_run(out) / "members").iterdir()] == ["feedforward-n24-p0.5-seed0"]
    cfg.write_text("nodez = 3\n")
    assert run_cli(rvf.main, ["--config", str(cfg), "--out", str(out)]) == 2


class Kill(Callback):
    """A kill in epoch 2, after epoch 1's checkpoint was written (epoch-end hooks run before the checkpoint)."""

    def on_epoch_end(self, model, state):
        if state.epoch == 2:
            raise KeyboardInterrupt("simulated kill")


def test_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch):
    args = [*BASE, "--densities", "0.2", "--eval-fractions", "0.5"]
    assert run_cli(rvf.main, [*args, "--out", str(tmp_path / "ref")]) == 0
    reference = json.loads((only_run(tmp_path / "ref") / "summary.json").read_text())

    real = runs_mod.train_member
    calls = []

    def killing(folder, label, **kw):
        calls.append(label)
        if len(calls) == 2:  # the feed-forward member: killed in epoch 2, after epoch 1's checkpoint
            kw["callbacks"] = [Kill()]
        return real(folder, label, **kw)

    monkeypatch.setattr(runs_mod, "train_member", killing)
    with pytest.raises(KeyboardInterrupt):
        run_cli(rvf.main, [*args, "--out", str(tmp_path / "killed")])
    monkeypatch.setattr(runs_mod, "train_member", real)
    run = only_run(tmp_path / "killed")
    killed = run / "members" / calls[1] / "checkpoint.pt"
    assert load_checkpoint(killed)["train_state"]["epoch"] == 1  # resume really continues from a checkpoint
    assert not (run / "summary.json").exists()
    assert run_cli(rvf.main, ["--resume", str(run), "--no-progress"]) == 0
    resumed = json.loads((run / "summary.json").read_text())
    for a, b in zip(reference["configurations"], resumed["configurations"], strict=True):
        assert a["runs"][0]["test_acc_per_epoch"] == b["runs"][0]["test_acc_per_epoch"]
        assert a["runs"][0]["parameters"]["synapses"] == b["runs"][0]["parameters"]["synapses"]
    strip = lambda ms: [{k: v for k, v in m.items() if k != "elapsed_s"} for m in ms]  # noqa: E731
    assert strip(read_jsonl(run / "metrics.jsonl")) == strip(
        read_jsonl(only_run(tmp_path / "ref") / "metrics.jsonl")
    )


def test_resume_of_a_non_run_folder_is_a_usage_error(tmp_path):
    assert run_cli(rvf.main, ["--resume", str(tmp_path)]) == 2


def test_summary_and_table_report_the_built_models_counts_per_seed(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*BASE, "--epochs", "1", "--densities", "0.3", "--seeds", "0", "1", "2", "--out", str(out)]
    assert run_cli(rvf.main, args) == 0
    run = only_run(out)
    summary = json.loads((run / "summary.json").read_text())
    printed = capsys.readouterr().out
    assert "synapses (built)" in printed and "params (built)" in printed
    for conf in summary["configurations"]:
        per_seed = []
        for r in conf["runs"]:
            label = f"{conf['architecture']}-n40-p0.3-seed{r['seed']}"
            model, _ = model_from_checkpoint(run / "members" / label / "checkpoint.pt")
            assert r["parameters"]["synapses"] == model.describe()["synapses"]
            per_seed.append(r["parameters"]["synapses"])
        # Bernoulli masks: the counts differ by seed; the configuration reports their mean and SD.
        assert len(set(per_seed)) > 1 and conf["parameters_sd"]["synapses"] > 0
        assert conf["parameters"]["synapses"] == pytest.approx(sum(per_seed) / 3)
        assert f"{conf['parameters']['synapses']:,.0f} ± {conf['parameters_sd']['synapses']:,.0f}" in printed
    ff = next(c for c in summary["configurations"] if c["architecture"] == "feedforward")
    model, _ = model_from_checkpoint(run / "members" / "feedforward-n40-p0.3-seed0" / "checkpoint.pt")
    assert ff["runs"][0]["parameters"]["parameters"] == model.parameter_counts()["total"]
    rec = next(c for c in summary["configurations"] if c["architecture"] == "recurrent")
    # CortexRNN: W_in (40 x 8) + bias 40 + active synapses + readout (40 x 10 + 10).
    r0 = rec["runs"][0]["parameters"]
    assert r0["parameters"] == 40 * 8 + 40 + r0["synapses"] + 40 * 10 + 10


def test_paper_figure_configs_use_the_papers_seed_counts():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    root = Path(__file__).resolve().parents[1] / "experiments"
    seeds = {name: tomllib.loads((root / name).read_text())["seeds"] for name in (
        "recurrent_vs_feedforward_fig3a.toml", "g2g_table1.toml", "g2g_fig4a.toml")}  # fmt: skip
    assert len(seeds["recurrent_vs_feedforward_fig3a.toml"]) == 10  # "10 random initialisations"
    assert len(seeds["g2g_table1.toml"]) == len(seeds["g2g_fig4a.toml"]) == 5  # "mean ... over five runs"
    assert all(len(set(s)) == len(s) for s in seeds.values())


def test_resume_of_finished_members_reports_their_saved_counts_without_rebuilding(tmp_path, monkeypatch):
    import cortexnet.experiments.common as common

    out = tmp_path / "runs"
    assert run_cli(rvf.main, [*BASE, "--epochs", "1", "--densities", "0.3", "--out", str(out)]) == 0
    run = only_run(out)
    before = json.loads((run / "summary.json").read_text())

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a finished member's counts must come from its checkpoint")

    monkeypatch.setattr(common, "build_model", no_rebuild)
    assert run_cli(rvf.main, ["--resume", str(run), "--no-progress"]) == 0
    after = json.loads((run / "summary.json").read_text())
    for a, b in zip(before["configurations"], after["configurations"], strict=True):
        assert a["runs"][0]["parameters"] == b["runs"][0]["parameters"]


def test_prints_the_recurrent_cost_before_training_and_not_for_feedforward_only(tmp_path, capsys):
    args = [*BASE, "--epochs", "1", "--densities", "0.3", "--out", str(tmp_path)]
    assert run_cli(rvf.main, args) == 0
    out = capsys.readouterr().out
    # 8 steps x 40 nodes x 1,438 training images of digits
    assert "cost of the largest recurrent network: 8 steps x 40 nodes x 1,438 samples" in out
    assert run_cli(rvf.main, [*args, "--architectures", "feedforward"]) == 0
    assert "cost of" not in capsys.readouterr().out


def test_training_set_sweep_trains_every_size_and_plots_accuracy_against_it(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*BASE, "--architectures", "recurrent", "--densities", "1", "0.3", "--epochs", "1", "--seeds", "0", "1",
            "--n-per-class-sweep", "5", "0", "--out", str(out)]  # fmt: skip
    assert run_cli(rvf.main, args) == 0
    run = only_run(out)
    summary = json.loads((run / "summary.json").read_text())
    sizes = {(c["n_per_class"], c["density"]): c for c in summary["configurations"]}
    assert set(sizes) == {(5, 1.0), (5, 0.3), (None, 1.0), (None, 0.3)}
    # 5 per class of 10 digit classes; None: the whole training split (1,438 images at val_fraction 0)
    assert sizes[(5, 1.0)]["train_examples"] == 50 and sizes[(None, 1.0)]["train_examples"] == 1438
    assert {(d["n_per_class"], d["sparse_density"]) for d in summary["sparse_minus_dense"]} == {
        (5, 0.3),
        (None, 0.3),
    }
    members = sorted(p.name for p in (run / "members").iterdir())
    assert members == sorted(f"recurrent-n40-p{p}-pc{k}-seed{s}" for p in ("1", "0.3") for k in ("5", "all")
                             for s in (0, 1))  # fmt: skip
    # Every size's records are in metrics.jsonl (each size trains on other data: none may overwrite another's).
    metrics = read_jsonl(run / "metrics.jsonl")
    assert {m["n_per_class"] for m in metrics} == {5, None} and len(metrics) == 8 * 2
    # Each member's checkpoint records the data it was trained on (the probe reloads exactly that subset).
    ckpt = load_checkpoint(run / "members" / "recurrent-n40-p1-pc5-seed0" / "checkpoint.pt")
    assert ckpt["meta"]["dataset"]["n_per_class"] == 5
    ckpt = load_checkpoint(run / "members" / "recurrent-n40-p1-pcall-seed0" / "checkpoint.pt")
    assert ckpt["meta"]["dataset"]["n_per_class"] is None
    assert (run / "limited_data.png").read_bytes()[:4] == b"\x89PNG" and (run / "limited_data.svg").exists()
    printed = capsys.readouterr().out
    assert "(5 per class)" in printed and "(full training set)" in printed


def test_a_size_by_density_grid_writes_a_heat_map_per_architecture(tmp_path):
    out = tmp_path / "runs"
    args = [*BASE, "--nodes", "20", "24", "30", "--densities", "1", "0.3", "--epochs", "1", "--out", str(out)]
    assert run_cli(rvf.main, args) == 0
    assert {"heatmap.png", "heatmap.svg"} <= {p.name for p in only_run(out).iterdir()}


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--n-per-class-sweep", "50", "50"], "repeats 50"),
        (["--n-per-class-sweep", "-1", "5"], "0 for the full training set"),
        (["--n-per-class-sweep", "5", "--n-per-class", "10"], "give one"),
    ],
)
def test_bad_training_set_sweeps_exit_2(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    assert run_cli(rvf.main, ["--dataset", "digits", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1 and not out.exists()
