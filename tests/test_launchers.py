"""Launchers (issue 13, item 1) and fixed run folders (item 3): ``--launcher processes`` (spawned worker
processes) and ``--launcher slurm`` (submitit; here its local executor: real subprocesses) give the summary of
``--launcher local``; a failing member is reported while the others are kept, and ``--resume`` trains only it;
``--run-dir`` creates, resumes or refuses."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import sys

import pytest
import torch

from cortexnet.experiments import dale
from cortexnet.experiments.common import RecordCounts, run_cli
from cortexnet.io import read_jsonl
from cortexnet.training import launch
from cortexnet.training.launch import LaunchOptions
from cortexnet.training.runs import HELD_LOCKS, load_checkpoint

#: Four members (two densities x two seeds); the dynamics recorders (GradientRecorder, SignTracker: member
#: callbacks with hooks in the model) make callback state part of summary.json.
ARGS = ["--dataset", "digits", "--nodes", "30", "--densities", "1.0", "0.3", "--seeds", "0", "1", "--epochs", "2",
        "--batch-size", "300", "--no-progress", "--record-dynamics"]  # fmt: skip
TINY = ["--dataset", "digits", "--nodes", "20", "--densities", "0.3", "--epochs", "1", "--batch-size", "300",
        "--no-progress"]  # fmt: skip


def _run(out):
    (run,) = (out / "dale").iterdir()
    return run


def _numbers(obj):
    """``obj`` without timing fields (wall-clock seconds differ from run to run)."""
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items() if k != "elapsed_s" and "seconds" not in k}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    return obj


def _results(run):
    summary = json.loads((run / "summary.json").read_text())
    return _numbers(summary), _numbers(read_jsonl(run / "metrics.jsonl"))


def _local_results(args, out):
    """The local launcher's results (members one after another in this process), with one torch thread like
    every worker below: a reduction over threads (the gradient recorder's mean) may differ in its last bits
    with another thread count, the training itself does not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli(dale.main, [*args, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return _results(_run(out))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _local_results(ARGS, tmp_path_factory.mktemp("local"))


@pytest.fixture(autouse=True)
def one_thread_per_worker(monkeypatch):
    """Workers and jobs get ``cores // parallel`` torch threads: 1 here, as the reference had."""
    monkeypatch.setattr(launch, "available_cores", lambda: 1)


def test_processes_launcher_gives_the_local_results(tmp_path, reference):
    out = tmp_path / "runs"
    assert run_cli(dale.main, [*ARGS, "--out", str(out), "--launcher", "processes", "--workers", "2"]) == 0
    run = _run(out)
    summary, metrics = _results(run)
    assert summary == reference[0] and metrics == reference[1]
    conf = summary["configurations"][0]["runs"][0]
    assert conf["dynamics"]["sign_changes"] and conf["dynamics"]["mean_abs_grad_per_epoch"]
    assert not (run / launch.LAUNCH_DIR).exists()  # the workers' copy of the data is gone
    assert sorted(p.name for p in (run / "members").iterdir()) == sorted(
        f"p{p}-inh0.115-seed{s}" for p in ("1", "0.3") for s in (0, 1)
    )
    assert run.resolve() not in HELD_LOCKS  # the command released the run folder's lock


def test_slurm_launcher_through_submitit_gives_the_local_results(tmp_path, caplog):
    pytest.importorskip("submitit")
    args = [*ARGS[: ARGS.index("--seeds")], "--seeds", "0", *ARGS[ARGS.index("--epochs") :]]  # two members
    reference = _local_results(args, tmp_path / "local")
    out = tmp_path / "runs"
    slurm = ["--launcher", "slurm", "--slurm-cluster", "local", "--slurm-time", "10", "--slurm-mem", "4"]
    assert run_cli(dale.main, [*args, "--out", str(out), *slurm]) == 0
    run = _run(out)
    assert _results(run) == reference
    assert (run / launch.SLURM_DIR).is_dir()  # the jobs' logs
    # Resumed, a finished run submits nothing (the parent checks the checkpoints) and reports the same.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run_cli(dale.main, ["--resume", str(run), "--no-progress"]) == 0
    assert "2 of 2 members already finished" in caplog.text and "submitted" not in caplog.text
    assert _results(run) == reference


def test_a_failing_member_is_reported_the_others_kept_and_resume_trains_only_it(
    tmp_path, reference, monkeypatch, caplog
):
    out = tmp_path / "runs"
    real = dale.run_members

    def breaking(config, folder, splits, spec, members, **kw):  # one member cannot be built in its worker
        members[1].model_config = dataclasses.replace(members[1].model_config, activation="nope")
        return real(config, folder, splits, spec, members, **kw)

    monkeypatch.setattr(dale, "run_members", breaking)
    with caplog.at_level(logging.INFO):
        status = run_cli(dale.main, [*ARGS, "--out", str(out), "--launcher", "processes", "--workers", "2"])
    monkeypatch.setattr(dale, "run_members", real)
    assert status == 1  # MembersFailed, reported member by member, is exit status 1
    run = _run(out)
    bad = "p1-inh0.115-seed1"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, errors
    assert errors[0].startswith(f"dale: member {bad} failed: ModelBuildError") and "activation" in errors[0]
    assert "error.txt" in errors[0] and "Traceback" in (run / "members" / bad / "error.txt").read_text()
    assert "1 of 4 members failed" in errors[1] and f"--resume {run}" in errors[1]
    assert not (run / "summary.json").exists()
    kept = {p.parent.name: p.stat().st_mtime_ns for p in run.glob("members/*/checkpoint.pt")}
    assert len(kept) == 3 and bad not in kept
    assert len(read_jsonl(run / "metrics.jsonl")) == 3 * 3  # the finished members' evaluations

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run_cli(dale.main, ["--resume", str(run), "--no-progress"]) == 0
    assert "3 of 4 members already finished" in caplog.text and "training 1 of 4 members" in caplog.text
    assert {p.parent.name: p.stat().st_mtime_ns for p in run.glob("members/*/checkpoint.pt") if p.parent.name != bad} == kept  # fmt: skip
    assert not (run / "members" / bad / "error.txt").exists()
    assert load_checkpoint(run / "members" / bad / "checkpoint.pt")["train_state"]["epoch"] == 2
    assert _results(run) == reference


def test_run_dir_creates_resumes_and_refuses_another_configuration(tmp_path, capsys):
    run = tmp_path / "a" / "b" / "run"
    assert run_cli(dale.main, [*TINY, "--run-dir", str(run)]) == 0
    assert (run / "summary.json").is_file() and not (tmp_path / "runs").exists()
    (member,) = (run / "members").iterdir()
    assert load_checkpoint(member / "checkpoint.pt")["train_state"]["epoch"] == 1
    # The same configuration (more epochs may be given, as with --resume): the run continues in place.
    assert run_cli(dale.main, [*TINY, "--run-dir", str(run), "--epochs", "2"]) == 0
    assert load_checkpoint(member / "checkpoint.pt")["train_state"]["epoch"] == 2
    assert len(read_jsonl(run / "metrics.jsonl")) == 3
    assert [p.name for p in run.parent.iterdir()] == ["run"]
    capsys.readouterr()
    # Another configuration: refused in one line naming the differing options.
    assert run_cli(dale.main, [*TINY, "--run-dir", str(run), "--inhibitory-scale", "2", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another configuration" in err
    assert "--inhibitory-scale 1.0 there, 2.0 now" in err and "--lr 0.001 there, 0.01 now" in err
    # A folder that holds something else, and --run-dir with --resume, are refused too.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert run_cli(dale.main, [*TINY, "--run-dir", str(tmp_path / "other")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert run_cli(dale.main, [*TINY, "--run-dir", str(run), "--resume", str(run)]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_a_failed_run_dir_leaves_no_folders_behind(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("exploded")

    monkeypatch.setattr(dale, "run_members", broken)
    assert run_cli(dale.main, [*TINY, "--run-dir", str(tmp_path / "x" / "y" / "run")]) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--launcher", "cluster"], "unknown --launcher 'cluster'; known: local, processes, slurm"),
        (["--launcher", "processes", "--workers", "0"], "--workers must be >= 1, got 0"),
        (["--workers", "2"], "--workers applies to --launcher processes only"),
        (["--slurm-partition", "gpu", "--slurm-time", "5"], "--slurm-partition, --slurm-time apply to --launcher slurm only"),
        (["--launcher", "processes", "--slurm-mem", "4"], "--slurm-mem apply to --launcher slurm only"),
        (["--launcher", "slurm", "--slurm-cluster", "local", "--slurm-time", "0"], "--slurm-time must be >= 1"),
        (["--launcher", "slurm", "--slurm-cluster", "local", "--slurm-mem", "-1"], "--slurm-mem (GB) must be > 0"),
        (["--launcher", "slurm", "--slurm-cluster", "moon"], "unknown --slurm-cluster 'moon'"),
    ],
)  # fmt: skip
def test_launch_options_are_checked_before_any_work(tmp_path, capsys, args, msg):
    out = tmp_path / "runs"
    assert run_cli(dale.main, [*TINY, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cortexnet: error: ") and msg in err, err
    assert not out.exists()


def test_slurm_without_submitit_or_sbatch_is_a_usage_error_naming_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit fails
    assert run_cli(dale.main, [*TINY, "--out", str(tmp_path), "--launcher", "slurm"]) == 2
    assert 'submitit: pip install "cortexnet[slurm]"' in capsys.readouterr().err
    monkeypatch.undo()
    pytest.importorskip("submitit")
    assert run_cli(dale.main, [*TINY, "--out", str(tmp_path), "--launcher", "slurm"]) == 2
    assert "--launcher slurm needs --slurm-time MINUTES" in capsys.readouterr().err
    monkeypatch.setattr(launch.shutil, "which", lambda name: None)
    assert (
        run_cli(dale.main, [*TINY, "--out", str(tmp_path), "--launcher", "slurm", "--slurm-time", "60"]) == 2
    )
    assert "needs SLURM's sbatch" in capsys.readouterr().err


def test_resume_may_change_the_launcher(tmp_path):
    from cortexnet.experiments.common import resolve_run_config

    out = tmp_path / "runs"
    config = dale.DaleConfig(dataset="digits", out=str(out), launcher="processes", workers=3)
    from cortexnet.training.runs import RunFolder

    folder = RunFolder.create(out, "dale", dataclasses.asdict(config))
    resumed, _ = resolve_run_config(dale.DaleConfig, ["--resume", str(folder.path)], "")
    assert (resumed.launcher, resumed.workers) == ("processes", 3)  # the saved launcher by default
    resumed, _ = resolve_run_config(
        dale.DaleConfig, ["--resume", str(folder.path), "--launcher", "local"], ""
    )
    assert (resumed.launcher, resumed.workers) == ("local", None)  # its --workers does not apply there


def test_member_callbacks_with_lambdas_reach_the_workers():
    counts = RecordCounts(lambda model: {"n": 1})
    clone = pickle.loads(launch._pickler().dumps(counts))
    assert clone.count(None) == {"n": 1}


def test_parallel_workers_share_the_cores(monkeypatch):
    monkeypatch.setattr(launch, "available_cores", lambda: 16)
    assert LaunchOptions("processes", workers=4).parallel(10) == 4
    assert LaunchOptions("processes").parallel(10) == 10  # default: the cores, at most one per member
    assert LaunchOptions("processes").parallel(40) == 16
    assert LaunchOptions("local").parallel(10) == LaunchOptions("slurm").parallel(10) == 1


def test_a_stop_signal_reaches_the_workers_and_ends_with_the_resume_line(tmp_path):
    """SIGTERM to the parent (what SLURM sends before a time limit): the workers write their members'
    checkpoints and stop, members not started are not started, and the run ends with 128 + 15 and the
    --resume line."""
    import signal
    import subprocess
    import time

    out = tmp_path / "runs"
    args = ["--dataset", "digits", "--nodes", "100", "--densities", "0.3", "--seeds", "0", "1", "--epochs", "500",
            "--no-progress", "--out", str(out), "--launcher", "processes", "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "cortexnet.experiments.dale", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("dale/*/members/*/checkpoint.pt")) and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    run = _run(out)
    assert f"resume with: python -m cortexnet.experiments.dale --resume {run}" in err
    epochs = [load_checkpoint(p)["train_state"]["epoch"] for p in run.glob("members/*/checkpoint.pt")]
    assert len(epochs) == 1 and epochs[0] < 500  # the first was stopped; the second never started
    assert not (run / launch.LAUNCH_DIR).exists()


def test_the_memory_check_gives_each_parallel_member_its_share(tmp_path, monkeypatch):
    import cortexnet.training.memory as memory

    budgets = []

    def record(estimates, budget_bytes, **kw):
        budgets.append(budget_bytes)
        raise RuntimeError("checked")

    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 8 * 2**30)
    monkeypatch.setattr(memory, "check_fits", record)
    base = [*TINY, "--seeds", "0", "1", "--out", str(tmp_path), "--device", "cpu"]
    for extra in ([], ["--launcher", "processes", "--workers", "2"]):
        assert run_cli(dale.main, [*base, *extra]) == 1
    assert budgets == [8 * 2**30, 4 * 2**30]  # local: all of it; two at once: half each
    pytest.importorskip("submitit")
    assert (
        run_cli(dale.main, [*base, "--launcher", "slurm", "--slurm-cluster", "local", "--slurm-mem", "3"])
        == 1
    )
    assert budgets[-1] == 3 * 2**30  # a job's own memory
