"""The experiment CLI contract: a bad value stops with one line on stderr and exit status 2, before any work and
without leaving a results folder; divergence is exit status 1 with one line; resume refuses options it would
ignore; run folders never collide; one seed has no SD. Exercised through `python -m cortexnet.experiments.dale`'s
``main`` (the shared glue in experiments/common.py and training/runs.py serves every experiment)."""

import dataclasses
import datetime
import json
import os
import threading
import types
from pathlib import Path

import pytest
import torch

import cortexnet.training.runs as runs_mod
from cortexnet.analysis import aggregate_runs
from cortexnet.experiments import dale
from cortexnet.experiments.common import (
    RESUME_OVERRIDES,
    RunOptions,
    UsageError,
    build_parser,
    parse_config,
    resolve_run_config,
    run_cli,
)
from cortexnet.io import read_jsonl
from cortexnet.training import Callback, load_checkpoint
from cortexnet.training.runs import OutputError, RunFolder, check_output_writable

TINY = ["--dataset", "digits", "--nodes", "30", "--batch-size", "200", "--no-progress"]


def fails_with_one_line(capsys, out: Path, argv, msg: str, code: int = 2) -> str:
    assert run_cli(dale.main, argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cortexnet: error: ") and msg in err, err
    assert not out.exists(), "a results folder was left behind"
    return err


# -- (a) device ------------------------------------------------------------------------------------------------
def test_unavailable_device_is_a_usage_error_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "runs"
    fails_with_one_line(capsys, out, [*TINY, "--device", "cuda", "--out", str(out)], "CUDA is not available")
    fails_with_one_line(capsys, out, [*TINY, "--device", "cuda:1", "--out", str(out)], "--device")


# -- (b) TOML value types ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line,msg",
    [
        ('nodes = "abc"', "nodes in"),
        ("nodes = 20.5", "must be an integer, got 20.5"),
        ("epochs = true", "must be an integer, got True"),
        ('densities = ["x"]', "densities in"),
        ("densities = [[0.1]]", "must be a number"),
        ('lr = "fast"', "must be a number"),
        ("progress = 1", "must be true or false"),
        ('download = "yes"', "must be true or false"),
        ("data_root = 5", "must be a string or none"),
        ("seeds = [0.5]", "must be an integer"),
    ],
)
def test_toml_values_of_the_wrong_type_are_one_line_usage_errors(tmp_path, capsys, line, msg):
    cfg = tmp_path / "c.toml"
    cfg.write_text(line + "\n")
    out = tmp_path / "runs"
    err = fails_with_one_line(capsys, out, [*TINY, "--config", str(cfg), "--out", str(out)], msg)
    assert str(cfg) in err


def test_toml_values_are_coerced_to_the_field_types(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('seeds = 3\ndensities = 0.5\ninhibitory_fractions = [0, 0.5]\nlr = 1\ndata_root = "none"\n'
                   'dataset = "digits"\nout = "' + str(tmp_path / "o") + '"\n')  # fmt: skip
    parser = build_parser(dale.DaleConfig, prog="dale", description="")
    config = parse_config(dale.DaleConfig, parser, ["--config", str(cfg)])
    assert config.seeds == (3,) and config.densities == (0.5,)  # a single value is a 1-tuple
    assert config.inhibitory_fractions == (0.0, 0.5) and all(
        type(f) is float for f in config.inhibitory_fractions
    )
    assert config.lr == 1.0 and type(config.lr) is float and config.data_root is None


# -- (c) argparse errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,msg",
    [
        (["--nodes", "abc"], "argument --nodes: invalid int value: 'abc'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--densities"], "argument --densities: expected at least one argument"),
    ],
)
def test_argparse_errors_are_one_line(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    err = fails_with_one_line(capsys, out, [*TINY, "--out", str(out), *args], msg)
    assert "--help" in err


# -- (d) output folder that cannot be written ---------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_unwritable_output_is_detected_by_trying_even_as_root(tmp_path, capsys):
    # os.access says /proc is writable for root, but no folder can be made there.
    out = Path("/proc/cortexnet-no-such-runs")
    fails_with_one_line(capsys, out, [*TINY, "--out", str(out)], "not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_output_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    fails_with_one_line(capsys, ro / "runs", [*TINY, "--out", str(ro / "runs")], "not writable")


def test_write_probe_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b" / "runs"
    assert check_output_writable(target) == target.resolve()
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not writable"):
        check_output_writable(blocker / "runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_run_folder_creation_failure_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create the run folder"):
        RunFolder.create(blocker, "dale", {"a": 1})


# -- (e) duplicate configurations -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,msg",
    [
        (["--densities", "0.1", "1.0", "0.1"], "--densities repeats 0.1"),
        (["--densities", "0.1", "--densities", "0.1"], "--densities repeats 0.1"),
        (["--inhibitory-fractions", "0.115", "0.115"], "--inhibitory-fractions repeats 0.115"),
    ],
)
def test_duplicate_configurations_are_refused(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    fails_with_one_line(capsys, out, [*TINY, "--out", str(out), *args], msg)


# -- resume: options it would ignore ------------------------------------------------------------------------------
def _saved_run(tmp_path) -> RunFolder:
    config = dale.DaleConfig(dataset="digits", nodes=30, out=str(tmp_path / "runs"))
    return RunFolder.create(config.out, "dale", dataclasses.asdict(config))


@pytest.mark.parametrize("args,flag", [(["--lr", "0.1"], "--lr"), (["--nodes", "31"], "--nodes"),
                                       (["--densities", "0.5"], "--densities"), (["--out", "x"], "--out")])  # fmt: skip
def test_resume_refuses_options_it_would_ignore(tmp_path, capsys, args, flag):
    folder = _saved_run(tmp_path)
    assert run_cli(dale.main, ["--resume", str(folder.path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{flag} cannot be changed when resuming" in err
    assert all("--" + k.replace("_", "-") in err for k in RESUME_OVERRIDES)


def test_resume_refuses_config_file_keys_it_would_ignore(tmp_path, capsys):
    folder = _saved_run(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_size = 7\n")
    assert run_cli(dale.main, ["--resume", str(folder.path), "--config", str(cfg)]) == 2
    assert "--batch-size cannot be changed" in capsys.readouterr().err


def test_resume_takes_overrides_and_unchanged_values(tmp_path):
    folder = _saved_run(tmp_path)
    # --nodes 30 repeats the saved value: nothing would be ignored, so it is accepted.
    argv = [
        "--resume",
        str(folder.path),
        "--epochs",
        "12",
        "--no-progress",
        "--nodes",
        "30",
        "--device",
        "cpu",
    ]
    config, opened = resolve_run_config(dale.DaleConfig, argv, "")
    assert opened.path == folder.path and config.resume == str(folder.path)
    assert config.epochs == 12 and config.progress is False and config.device == "cpu"
    assert config.nodes == (30,) and config.densities == (1.0, 0.1)  # tuples again, from config.json's lists
    with pytest.raises(UsageError, match="--seeds cannot be changed"):
        resolve_run_config(dale.DaleConfig, ["--resume", str(folder.path), "--seeds", "1"], "")


# -- run folder names ---------------------------------------------------------------------------------------
def test_run_folders_of_the_same_config_in_the_same_second_get_distinct_names(tmp_path, monkeypatch):
    fixed = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    fake = types.SimpleNamespace(
        datetime=types.SimpleNamespace(now=lambda tz=None: fixed), timezone=datetime.timezone
    )
    monkeypatch.setattr(runs_mod, "_dt", fake)
    made, errors = [], []

    def create():
        try:
            made.append(RunFolder.create(tmp_path, "dale", {"same": "config"}).path)
        except Exception as exc:  # any failure fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = sorted(p.name for p in made)
    assert len(set(names)) == 6 and {p.name for p in (tmp_path / "dale").iterdir()} == set(names)
    base = names[0]
    assert base.startswith("20250102-030405-") and set(names) == {base} | {f"{base}-{k}" for k in range(2, 7)}
    for p in made:
        assert json.loads((p / "config.json").read_text())["config"] == {"same": "config"}


# -- divergence ---------------------------------------------------------------------------------------------
class NaNWeights(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, model, state):
        if state.step == self.at:
            with torch.no_grad():
                model.readout.weight.fill_(float("nan"))


def test_divergence_is_one_line_exit_1_after_writing_metrics(tmp_path, capsys, monkeypatch):
    real = runs_mod.train_member
    calls = []

    def poisoning(folder, label, **kw):
        calls.append(label)
        if len(calls) == 2:  # the second member diverges in its second epoch (digits: 7 steps per epoch)
            kw["callbacks"] = [NaNWeights(at=9)]
        return real(folder, label, **kw)

    monkeypatch.setattr(runs_mod, "train_member", poisoning)
    out = tmp_path / "runs"
    argv = [*TINY, "--epochs", "3", "--densities", "1.0", "--seeds", "0", "1", "--out", str(out)]
    assert run_cli(dale.main, argv) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("cortexnet: error: training diverged: ")
    (run,) = (out / "dale").iterdir()
    ckpt = run / "members" / calls[1] / "checkpoint.pt"
    assert "at epoch 2, step 10" in err[0] and f"last good checkpoint: {ckpt} (epoch 1)" in err[0]
    assert load_checkpoint(ckpt)["train_state"]["epoch"] == 1
    metrics = read_jsonl(run / "metrics.jsonl")
    # member 1: epochs 0-3; member 2: epochs 0 and 1 (epoch 2 never finished)
    assert [(m["seed"], m["epoch"]) for m in metrics] == [
        (0, 0.0),
        (0, 1.0),
        (0, 2.0),
        (0, 3.0),
        (1, 0.0),
        (1, 1.0),
    ]
    assert not (run / "summary.json").exists()


# -- default backend ----------------------------------------------------------------------------------------------
def test_default_backend_is_auto_and_decides_with_the_runs_batch_and_device(tmp_path, monkeypatch):
    import cortexnet.sparse.auto as auto

    assert RunOptions.backend == "auto" and dale.DaleConfig().backend == "auto"
    seen = []
    real = auto.choose_backend

    def spy(*args, **kw):
        seen.append((kw["batch_hint"], str(kw["device"])))
        return real(*args, **kw)

    monkeypatch.setattr(auto, "choose_backend", spy)
    out = tmp_path / "runs"
    argv = ["--dataset", "digits", "--nodes", "300", "--densities", "0.05", "--epochs", "1", "--batch-size", "50",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert run_cli(dale.main, argv) == 0
    assert seen and set(seen) == {(50, "cpu")}
    (run,) = (out / "dale").iterdir()
    meta = load_checkpoint(run / "members" / "p0.05-inh0.115-seed0" / "checkpoint.pt")["meta"]
    assert meta["backends"] == {"recurrent.rec": "csr"}  # 300 x 300 at p = 0.05: sparse wins
    assert meta["backend_hints"] == {"batch": 50, "device": "cpu"}


# -- one seed: no SD -------------------------------------------------------------------------------------------
def _run(acc):
    return {"seed": 0, "test_acc_per_epoch": acc, "best_test_acc": max(acc), "final_test_acc": acc[-1],
            "learning_delay": 0}  # fmt: skip


def test_single_seed_sd_is_na_not_zero(capsys):
    one = aggregate_runs([_run([0.1, 0.5])])
    assert one["best_test_acc"]["sd"] is None and one["final_test_acc"]["sd"] is None
    assert one["learning_delay"]["sd"] is None and one["test_acc_per_epoch"]["sd"] == [None, None]
    two = aggregate_runs([_run([0.1, 0.5]), _run([0.1, 0.7])])
    assert two["best_test_acc"]["sd"] == pytest.approx(0.1414, abs=1e-4)
    summary = {"configurations": [
        {"density": 1.0, "inhibitory_fraction": 0.115, "runs": [_run([0.1, 0.5])], "aggregate": one},
        {"density": 0.1, "inhibitory_fraction": 0.115, "runs": [_run([0.1, 0.5]), _run([0.1, 0.7])], "aggregate": two},
    ]}  # fmt: skip
    dale._print_table(summary)
    rows = capsys.readouterr().out.splitlines()[2:]
    assert "50.0 ± n/a" in rows[0] and "± 0.0" not in rows[0]
    assert "60.0 ± 14.1" in rows[1]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (OSError(28, "No space left on device", "/runs/x/metrics.jsonl"),
         "no space left on the device writing /runs/x/metrics.jsonl; free some space or choose another --out"),
        (MemoryError(), "out of memory (MemoryError); use fewer --nodes"),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried "
                      "to allocate 400000000000 bytes"), "out of memory ([enforce fail"),
        (KeyError("x"), "unexpected KeyError: 'x' (this is a bug if the options were valid; rerun with "
                        "CORTEXNET_TRACEBACK=1"),
    ],
)  # fmt: skip
def test_failures_after_the_start_are_one_line_with_exit_1(capsys, monkeypatch, error, message):
    def main(argv):
        raise error

    monkeypatch.delenv("CORTEXNET_TRACEBACK", raising=False)
    assert run_cli(main, []) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("CORTEXNET_TRACEBACK", "1")  # the developer's view: the exception itself
    with pytest.raises(type(error)):
        run_cli(main, [])


def test_early_stopping_without_a_validation_split_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [
        "--dataset",
        "digits",
        "--nodes",
        "20",
        "--epochs",
        "1",
        "--early-stopping-patience",
        "1",
        "--out",
        str(out),
    ]
    assert run_cli(dale.main, args) == 2
    assert "--early-stopping-patience needs a validation split" in capsys.readouterr().err
    assert not (out / "dale").exists()


def test_mps_is_refused_in_one_line_where_it_does_not_exist(tmp_path, capsys):
    if torch.backends.mps.is_available():  # pragma: no cover - an Apple machine
        pytest.skip("MPS exists here")
    out = tmp_path / "runs"
    fails_with_one_line(
        capsys, out, [*TINY, "--device", "mps", "--out", str(out)], "Apple's MPS is not available"
    )
