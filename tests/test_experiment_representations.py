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
        assert net["ei_identities"]["layer"] == "recurrent" and net["ei_identities"]["n_inhibitory"] > 0
        # E/I balance both as trained and as initialised (rebuilt from the saved seeds), in one run.
        bal = net["ei_balance"]
        assert set(bal) == {"after_training", "at_init"}
        assert bal["at_init"]["struct_exc_mean"] != bal["after_training"]["struct_exc_mean"]
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


def test_probe_ei_balance_at_init_matches_the_rebuilt_network(trained, tmp_path):
    """--at-init reports only the initial balance; it equals the at_init part of a trained probe."""
    a, _ = ckpts(trained)
    common = ["--checkpoint", a, "--analyses", "ei_balance", "--max-samples", "50"]
    assert run_cli(representations.main, [*common, "--at-init", "--out", str(tmp_path / "i")]) == 0
    assert run_cli(representations.main, [*common, "--out", str(tmp_path / "t")]) == 0
    at_init, trained_net = (
        json.loads(next((tmp_path / d / "representations").iterdir()).joinpath("summary.json").read_text())[
            "networks"
        ][0]
        for d in ("i", "t")
    )
    assert set(at_init["ei_balance"]) == {"at_init"}
    assert at_init["ei_balance"]["at_init"] == trained_net["ei_balance"]["at_init"]


def _rewrite(src: str, dst, edit) -> str:
    from cortexnet.training import load_checkpoint
    from cortexnet.training.checkpoint import save_checkpoint

    ckpt = load_checkpoint(src)
    edit(ckpt["meta"])
    save_checkpoint(dst, {k: v for k, v in ckpt.items() if k not in ("format", "format_version")})
    return str(dst)


def test_probe_loads_the_data_with_the_saved_dataset_options(trained, tmp_path, monkeypatch):
    """A net trained with dataset options (e.g. sleep-edf seq_len=300) must be probed on the same data: the
    saved options, n_per_class, val_fraction and split seed are all passed on, and are part of the cache key."""
    from cortexnet.data import load_dataset

    a, _ = ckpts(trained)

    def spec(options, **kw):
        def edit(meta):
            meta["dataset"].update(options=options, n_per_class=7, val_fraction=0.2, seed=3, **kw)

        return edit

    x = _rewrite(a, tmp_path / "x.pt", spec({"seq_len": 300}))
    y = _rewrite(a, tmp_path / "y.pt", spec({"seq_len": 300}))
    z = _rewrite(a, tmp_path / "z.pt", spec({"seq_len": 30}))
    calls = []

    def recording(name, **kw):
        calls.append((name, kw))
        return load_dataset(name, root=kw["root"])  # digits takes no options: give it the real data

    monkeypatch.setattr(representations, "load_dataset", recording)
    args = ["--analyses", "sparsity", "--out", str(tmp_path / "o")]
    for c in (x, y, z):
        args += ["--checkpoint", c]
    assert run_cli(representations.main, args) == 0
    assert len(calls) == 2  # x and y share their data; z differs only in an option
    (n1, kw1), (_, kw2) = calls
    assert n1 == "digits" and kw1["options"] == {"seq_len": 300} and kw2["options"] == {"seq_len": 30}
    assert (kw1["n_per_class"], kw1["val_fraction"], kw1["seed"]) == (7, 0.2, 3)


def test_checkpoint_with_invalid_model_config_is_a_clear_error(trained, tmp_path, capsys):
    a, _ = ckpts(trained)
    bad = _rewrite(a, tmp_path / "bad.pt", lambda meta: meta["model_config"].update(p=5.0))
    for extra in ([], ["--at-init"]):
        code = run_cli(representations.main, ["--checkpoint", bad, *extra, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and bad in err and "probability" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def _train_tiny(folder, name, cfg):
    """A 1-epoch network of another model family on digits, checkpointed as the experiments do."""
    import dataclasses

    from cortexnet.data import load_dataset
    from cortexnet.models import build_model
    from cortexnet.training import TrainConfig, fit

    splits = load_dataset("digits", val_fraction=0.0)
    model = build_model(name, cfg, splits.n_inputs, splits.n_classes)
    spec = {"name": "digits", "val_fraction": 0.0, "n_per_class": None, "seed": 0, "options": {}}
    meta = {"model": name, "model_config": dataclasses.asdict(cfg), "n_inputs": splits.n_inputs,
            "n_classes": splits.n_classes, "dataset": spec}  # fmt: skip
    fit(model, splits.train, splits.test, TrainConfig(epochs=1, batch_size=100), run_dir=folder, meta=meta,
        progress=False)  # fmt: skip
    return str(folder / "checkpoint.pt")


def test_probe_feedforward_dale_and_g2gnet_checkpoints(tmp_path):
    from cortexnet.models import FeedForwardConfig, G2GNetConfig

    ff = _train_tiny(
        tmp_path / "ff", "feedforward", FeedForwardConfig(n_nodes=60, n_steps=8, p=0.3, dale=True)
    )
    g2g_cfg = G2GNetConfig(image_channels=1, image_height=8, image_width=8, patches_per_side=2,
                           patch_channels=4, hidden=(32, 32), groups=2)  # fmt: skip
    g2g = _train_tiny(tmp_path / "g2g", "g2gnet", g2g_cfg)
    args = ["--checkpoint", ff, "--checkpoint", g2g, "--mi-pairs", "40", "--corr-pairs", "100",
            "--dropout-draws", "1", "--out", str(tmp_path / "o")]  # fmt: skip
    assert run_cli(representations.main, args) == 0
    (run,) = list((tmp_path / "o" / "representations").iterdir())
    net_ff, net_g2g = json.loads((run / "summary.json").read_text())["networks"]
    assert net_ff["ei_identities"]["layer"] == "connections"
    assert not net_ff["ei_identities"]["label_probed_nodes"]
    assert set(net_ff["ei_balance"]) == {"after_training", "at_init"}
    assert net_ff["ei_balance"]["at_init"]["layer"] == "connections"
    assert net_ff["sparsity"]["per_population"].startswith("not applicable")  # identities are on layer 1
    assert net_g2g["ei_identities"] is None
    assert net_g2g["ei_balance"].startswith("not applicable")
    assert net_g2g["mutual_information"]["pairs"] == 40
    assert (run / "ei_balance.png").exists()


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


def test_a_checkpoint_with_non_finite_weights_is_refused_in_one_line(trained, tmp_path, capsys):
    from cortexnet.training import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(ckpts(trained)[0])
    ckpt["model_state"]["readout.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(path, ckpt)  # a valid file (checksum and all) holding a diverged network
    assert run_cli(representations.main, ["--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "non-finite (NaN/inf) weights in readout.weight" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_finite_weights_whose_activity_overflows_are_refused_in_one_line(trained, tmp_path, capsys):
    from cortexnet.training import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(ckpts(trained)[0])
    ckpt["model_state"]["recurrent.bias"].fill_(3e38)  # finite, but act(x W_in + b + ...) overflows float32
    path = tmp_path / "overflow.pt"
    save_checkpoint(path, ckpt)
    assert run_cli(representations.main, ["--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hidden activations are non-finite" in err and "Traceback" not in err
    assert not any((tmp_path / "o").rglob("*.json"))


# --run RUN_DIR: every member of an experiment's run folder --------------------------------------------------

#: The members of the tiny recurrent-vs-feed-forward run, in the run's member order (not sorted by name).
RVF_MEMBERS = ["recurrent-n20-p0.1-seed0", "feedforward-n20-p0.1-seed0"]
CHEAP = ["--analyses", "sparsity", "mi", "correlations", "--mi-pairs", "50", "--corr-pairs", "50",
         "--max-samples", "100"]  # fmt: skip


@pytest.fixture(scope="module")
def rvf_run(tmp_path_factory):
    """A finished two-member run folder of another experiment (seconds: 20 nodes, one epoch)."""
    from cortexnet.experiments import recurrent_vs_feedforward

    out = tmp_path_factory.mktemp("rvf")
    args = ["--dataset", "digits", "--nodes", "20", "--densities", "0.1", "--architectures", "recurrent",
            "feedforward", "--epochs", "1", "--seeds", "0", "--no-progress", "--out", str(out)]  # fmt: skip
    assert run_cli(recurrent_vs_feedforward.main, args) == 0
    (run,) = list((out / "recurrent_vs_feedforward").iterdir())
    assert sorted(p.name for p in (run / "members").iterdir()) == sorted(RVF_MEMBERS)
    return run


def _summary(out):
    (run,) = list((out / "representations").iterdir())
    return json.loads((run / "summary.json").read_text())


def _copy_run(run, dst, *, metrics=True):
    import shutil

    shutil.copytree(
        run, dst, ignore=shutil.ignore_patterns(".lock", *(() if metrics else ("metrics.jsonl",)))
    )
    return dst


def test_run_probes_every_member_in_run_order_as_the_checkpoints_would(rvf_run, tmp_path):
    assert run_cli(representations.main, ["--run", str(rvf_run), *CHEAP, "--out", str(tmp_path / "r")]) == 0
    explicit = []
    for m in RVF_MEMBERS:
        explicit += ["--checkpoint", str(rvf_run / "members" / m / "checkpoint.pt")]
    assert run_cli(representations.main, [*explicit, *CHEAP, "--out", str(tmp_path / "c")]) == 0
    by_run, by_checkpoint = _summary(tmp_path / "r"), _summary(tmp_path / "c")
    assert [n["label"] for n in by_run["networks"]] == RVF_MEMBERS  # the run's order, labelled by member
    assert by_run == by_checkpoint  # same networks, same numbers, same comparisons


def test_run_without_metrics_probes_its_members_sorted_by_name(rvf_run, tmp_path):
    run = _copy_run(rvf_run, tmp_path / "run", metrics=False)
    args = ["--run", str(run), "--analyses", "sparsity", "--max-samples", "50", "--out", str(tmp_path / "o")]
    assert run_cli(representations.main, args) == 0
    assert [n["label"] for n in _summary(tmp_path / "o")["networks"]] == sorted(RVF_MEMBERS)


def test_checkpoints_come_first_then_each_runs_members(trained, rvf_run, tmp_path):
    a, _ = ckpts(trained)
    args = ["--run", str(rvf_run), "--checkpoint", a, "--analyses", "sparsity", "--max-samples", "50",
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert run_cli(representations.main, args) == 0
    networks = _summary(tmp_path / "o")["networks"]
    assert [n["label"] for n in networks] == ["p0.1-inh0.115-seed0", *RVF_MEMBERS]
    assert networks[0]["checkpoint"] == a
    assert networks[1]["checkpoint"] == str(rvf_run / "members" / RVF_MEMBERS[0] / "checkpoint.pt")
    # --label names every probed network, counted after the runs' members are expanded.
    named = [*args[:-2], "--label", "x", "y", "z", "--out", str(tmp_path / "n")]
    assert run_cli(representations.main, named) == 0
    assert [n["label"] for n in _summary(tmp_path / "n")["networks"]] == ["x", "y", "z"]


def _refused(args, out, capsys) -> str:
    code = run_cli(representations.main, [*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("cortexnet: error: "), err
    assert not out.exists()  # refused before any work: no results folder
    return err


def test_run_error_paths_are_one_line_usage_errors(rvf_run, tmp_path, capsys):
    out = tmp_path / "o"
    err = _refused(["--run", str(tmp_path / "nope")], out, capsys)
    assert (
        str(tmp_path / "nope") in err
        and "does not exist" in err
        and "run folder written by an experiment" in err
    )
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in _refused(["--run", str(tmp_path / "file")], out, capsys)

    bare = tmp_path / "bare"
    bare.mkdir()
    err = _refused(["--run", str(bare)], out, capsys)
    assert str(bare / "members") in err and "run folder written by an experiment" in err

    (bare / "members").mkdir()
    err = _refused(["--run", str(bare)], out, capsys)
    assert "no member checkpoints" in err and str(bare / "members") in err and "train it first" in err

    unfinished = _copy_run(rvf_run, tmp_path / "unfinished")
    (unfinished / "members" / "recurrent-n20-p1-seed0").mkdir()  # a member that never wrote its checkpoint
    err = _refused(["--run", str(unfinished)], out, capsys)
    assert "member recurrent-n20-p1-seed0" in err and "checkpoint.pt" in err
    assert f"--resume {unfinished}" in err

    err = _refused([], out, capsys)
    assert "give at least one --checkpoint FILE or --run RUN_DIR" in err


def test_label_count_is_checked_after_the_runs_are_expanded(trained, rvf_run, tmp_path, capsys):
    err = _refused(["--run", str(rvf_run), "--label", "only-one"], tmp_path / "o", capsys)
    assert "--label needs one name per probed network (2" in err and "got 1" in err
    a, _ = ckpts(trained)
    err = _refused(["--checkpoint", a, "--run", str(rvf_run), "--label", "x", "y"], tmp_path / "o", capsys)
    assert "(3: 1 --checkpoint, 2 members of --run), got 2" in err
