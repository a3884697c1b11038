"""`python -m cortexnet.experiments.dale` end to end on the embedded digits: outputs, the error contract
(exit status 2 before any work, no partial results), resume after a kill, Dale's law on saved checkpoints."""

import json
import subprocess
import sys

import pytest
import torch
from dale_checks import assert_dale_on_disk

import cortexnet.training.runs as runs_mod
from cortexnet.experiments import dale
from cortexnet.experiments.common import run_cli
from cortexnet.io import read_jsonl
from cortexnet.training import Callback, load_checkpoint, model_from_checkpoint

BASE = ["--dataset", "digits", "--nodes", "60", "--epochs", "2", "--batch-size", "200", "--no-progress"]


def only_run(out):
    (run,) = list((out / "dale").iterdir())
    return run


def test_writes_config_metrics_summary_plot_and_checkpoints(tmp_path, capsys):
    out = tmp_path / "runs"
    assert run_cli(dale.main, [*BASE, "--seeds", "0", "1", "--out", str(out)]) == 0
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
    assert cfg["config"]["nodes"] == [60] and cfg["cortexnet_version"] and "git_revision" in cfg
    metrics = read_jsonl(run / "metrics.jsonl")
    assert len(metrics) == 2 * 2 * 3  # densities x seeds x (epoch 0, 1, 2)
    assert {m["density"] for m in metrics} == {1.0, 0.1}
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["configurations"]) == 2
    for conf in summary["configurations"]:
        assert conf["aggregate"]["n_seeds"] == 2
        assert len(conf["runs"][0]["test_acc_per_epoch"]) == 3
        assert "learning_delay" in conf["runs"][0]
    assert summary["paper"]["findings"]
    assert (run / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "delay" in printed and "11.5%" in printed
    # Dale's law and the exact inhibitory count, checked on every saved checkpoint (whatever backend "auto"
    # chose: the effective weight of the rebuilt model, not one backend's storage).
    for member in (run / "members").iterdir():
        rebuilt, ckpt = model_from_checkpoint(member / "checkpoint.pt")
        rec, inh = rebuilt.recurrent.rec, ckpt["model_state"]["recurrent.inhibitory"]
        w, mask = rec.to_dense(), rec.connectivity().to_dense()
        assert int(inh.sum()) == 7  # round(0.115 * 60) = 6.9 -> 7
        assert rec.sign_violations() == 0
        assert torch.all(w[~mask] == 0)
        assert torch.all(w[:, inh] <= 0) and torch.all(w[:, ~inh] >= 0)
        assert_dale_on_disk(ckpt["model_state"])  # the stored tensors themselves
        assert ckpt["meta"]["backend_hints"] == {"batch": 200, "device": "cpu"}
        assert ckpt["meta"]["backends"] == {"recurrent.rec": "masked_dense"}  # auto: 60 x 60 is tiny


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--nodes", "0"], "--nodes"),
        (["--nodes", "-5"], "--nodes"),
        (["--densities", "0.1", "1.5"], "(0, 1]"),
        (["--densities", "0"], "(0, 1]"),
        (["--inhibitory-fractions", "1.2"], "[0, 1]"),
        (["--dataset", "imagenet"], "unknown --dataset"),
        (["--epochs", "0"], "--epochs"),
        (["--backend", "nope"], "--backend"),
    ],
)
def test_bad_values_exit_2_with_one_line_and_no_results(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    assert run_cli(dale.main, ["--dataset", "digits", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unwritable_output_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert run_cli(dale.main, [*BASE, "--out", str(blocker / "runs")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_missing_dataset_names_path_and_fetch_command(tmp_path, capsys):
    out = tmp_path / "runs"
    code = run_cli(
        dale.main, ["--dataset", "mnist", "--data-root", str(tmp_path / "data"), "--out", str(out)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data") in err and "download" in err
    assert not out.exists()


def test_toml_config_and_command_line_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('dataset = "digits"\nnodes = 40\ndensities = [0.2]\nepochs = 1\nprogress = false\n')
    out = tmp_path / "runs"
    assert run_cli(dale.main, ["--config", str(cfg), "--nodes", "30", "--out", str(out)]) == 0
    saved = json.loads((only_run(out) / "config.json").read_text())["config"]
    assert saved["nodes"] == [30] and saved["densities"] == [0.2] and saved["epochs"] == 1
    cfg.write_text("nodez = 3\n")
    assert run_cli(dale.main, ["--config", str(cfg), "--out", str(out)]) == 2


class Kill(Callback):
    """A kill in epoch 2, after epoch 1's checkpoint was written (epoch-end hooks run before the checkpoint)."""

    def on_epoch_end(self, model, state):
        if state.epoch == 2:
            raise KeyboardInterrupt("simulated kill")


def test_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch):
    args = [*BASE, "--densities", "1.0", "0.1", "--eval-fractions", "0.5"]
    assert run_cli(dale.main, [*args, "--out", str(tmp_path / "ref")]) == 0
    reference = json.loads((only_run(tmp_path / "ref") / "summary.json").read_text())

    real = runs_mod.train_member
    calls = []

    def killing(folder, label, **kw):
        calls.append(label)
        if len(calls) == 2:  # second member: killed in epoch 2, after its first epoch's checkpoint
            kw["callbacks"] = [Kill()]
        return real(folder, label, **kw)

    monkeypatch.setattr(runs_mod, "train_member", killing)
    with pytest.raises(KeyboardInterrupt):
        run_cli(dale.main, [*args, "--out", str(tmp_path / "killed")])
    monkeypatch.setattr(runs_mod, "train_member", real)
    run = only_run(tmp_path / "killed")
    assert not (run / "summary.json").exists()  # no summary for an unfinished run
    killed = run / "members" / calls[1] / "checkpoint.pt"
    assert load_checkpoint(killed)["train_state"]["epoch"] == 1  # resume really continues from a checkpoint
    assert run_cli(dale.main, ["--resume", str(run), "--no-progress"]) == 0
    resumed = json.loads((run / "summary.json").read_text())
    for a, b in zip(reference["configurations"], resumed["configurations"], strict=True):
        assert a["runs"][0]["test_acc_per_epoch"] == b["runs"][0]["test_acc_per_epoch"]
    ref_metrics = read_jsonl(only_run(tmp_path / "ref") / "metrics.jsonl")
    got = read_jsonl(run / "metrics.jsonl")
    strip = lambda ms: [{k: v for k, v in m.items() if k != "elapsed_s"} for m in ms]  # noqa: E731
    assert strip(got) == strip(ref_metrics)


def test_resume_of_a_non_run_folder_is_a_usage_error(tmp_path, capsys):
    assert run_cli(dale.main, ["--resume", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_module_entry_point_exit_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cortexnet.experiments.dale", "--nodes", "0", "--dataset", "digits",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("--nodes needs sizes >= 1, got [0]")


def test_several_sizes_give_the_delay_vs_size_figure(tmp_path):
    out = tmp_path / "runs"
    args = ["--dataset", "digits", "--nodes", "20", "40", "--densities", "1.0", "0.3", "--seeds", "0", "1",
            "--epochs", "1", "--batch-size", "400", "--no-progress", "--out", str(out)]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    run = only_run(out)
    assert (run / "delay_vs_size.png").is_file()
    members = sorted(p.name for p in (run / "members").iterdir())
    assert len(members) == 8 and "n40-p0.3-inh0.115-seed1" in members
    summary = json.loads((run / "summary.json").read_text())
    assert summary["nodes"] == [20, 40]
    assert [(c["nodes"], c["density"]) for c in summary["configurations"]] == [(20, 1.0), (20, 0.3), (40, 1.0),
                                                                              (40, 0.3)]  # fmt: skip
    rows = {row["density"]: row for row in summary["delay_vs_size"]}
    assert rows[1.0]["nodes"] == [20, 40] and rows[1.0]["seeds"] == [2, 2]
    # the same delays as each configuration's own aggregate, size by size
    for c in summary["configurations"]:
        row = rows[c["density"]]
        assert row["mean"][row["nodes"].index(c["nodes"])] == c["aggregate"]["learning_delay"]["mean"]


def test_dynamics_are_recorded_beside_rewiring(tmp_path):
    out = tmp_path / "runs"
    args = ["--dataset", "digits", "--nodes", "20", "--densities", "0.3", "--epochs", "1", "--batch-size", "400",
            "--record-dynamics", "--rewire", "set", "--rewire-params", "delta_t=2", "--no-progress", "--out", str(out)]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    summary = json.loads((only_run(out) / "summary.json").read_text())
    run = summary["configurations"][0]["runs"][0]
    assert run["dynamics"]["mean_abs_grad_per_epoch"] and run["rewiring"]
