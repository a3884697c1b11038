"""A cluster's life (issue 13, item 3): SIGINT / SIGTERM / SIGUSR1 during ``fit`` write a checkpoint at the next
step and stop with one line and status 128 + signum; a resume from a checkpoint within an epoch (a signal, or
``checkpoint_every_steps``) skips the batches already done and ends bit-identically on CPU; ``--requeue`` asks
SLURM to requeue the job."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import cortexnet.training.callbacks as callbacks_mod
import cortexnet.training.runs as runs_mod
import cortexnet.training.signals as signals_mod
from cortexnet.experiments import dale
from cortexnet.experiments.common import run_cli
from cortexnet.io import read_jsonl
from cortexnet.models import CortexRNNConfig, build_model
from cortexnet.training import Callback, TrainConfig, TrainingInterrupted, fit, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
DALE = ["--dataset", "digits", "--nodes", "16", "--densities", "0.5", "--batch-size", "50", "--no-progress"]


def toy_data(n=240, steps=5, feats=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.rand(n, steps, feats, generator=g) * 0.2
    x[torch.arange(n), :, y] += 0.8
    return TensorDataset(x, y)


def model(**kw):
    return build_model("cortex_rnn", CortexRNNConfig(n_nodes=30, p=0.2, weight_seed=0, **kw), 4, 3)


def drop_time(records):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if torch.is_tensor(sa[key]):
            assert torch.equal(sa[key], sb[key]), key


class SendSignal(Callback):
    """Sends ``sig`` to this process ``times`` times after optimiser step ``at`` (as a scheduler would)."""

    def __init__(self, at, sig=signal.SIGTERM, times=1):
        self.at, self.sig, self.times = at, sig, times

    def on_step_end(self, model, ctx):
        if ctx.state.step == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.sig)


class Crash(Callback):
    """Dies (KeyboardInterrupt, like a kill without warning) after optimiser step ``at``."""

    def __init__(self, at):
        self.at = at

    def on_step_end(self, model, ctx):
        if ctx.state.step == self.at:
            raise KeyboardInterrupt


CFG = dict(epochs=3, batch_size=25, lr=0.01, eval_fractions=(0.3,), device="cpu")  # 10 steps per epoch


# -- fit: a signal within an epoch ----------------------------------------------------------------------------------
# 13: just after the fractional evaluation (step 3 of epoch 2); 10: an epoch's last step; 20: the run's last.
@pytest.mark.parametrize("at", [13, 10, 20])
def test_sigterm_mid_epoch_checkpoints_and_the_resume_is_bit_identical(tmp_path, at):
    cfg = TrainConfig(**{**CFG, "epochs": 2})
    straight = model(noise_std=0.05)  # noise: the model's own generator continues too
    full = fit(straight, toy_data(), toy_data(seed=1), cfg, run_dir=tmp_path / "a", progress=False)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        fit(model(noise_std=0.05), toy_data(), toy_data(seed=1), cfg, run_dir=tmp_path / "b",
            callbacks=[SendSignal(at)], progress=False)  # fmt: skip
    exc = info.value
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back
    assert (exc.signal_name, exc.signum, exc.exit_status, exc.step) == ("SIGTERM", 15, 143, at)
    assert exc.checkpoint == tmp_path / "b" / "checkpoint.pt" and exc.run_dir == tmp_path / "b"
    saved = load_checkpoint(exc.checkpoint)["train_state"]
    assert saved["step"] == at and saved["epoch"] * 10 + saved["epoch_step"] == at
    assert str(exc).startswith(f"interrupted by SIGTERM at epoch {exc.epoch}, step {at}: checkpoint saved")
    resumed = model(noise_std=0.05)
    state = fit(resumed, toy_data(), toy_data(seed=1), cfg, run_dir=tmp_path / "b", resume=True,
                callbacks=[Callback()], progress=False)  # fmt: skip
    assert_same_weights(straight, resumed)
    assert drop_time(state.history) == drop_time(full.history)
    assert drop_time(read_jsonl(tmp_path / "b" / "history.jsonl")) == drop_time(full.history)
    assert state.step == 20 and state.epoch_step == 0


@pytest.mark.parametrize("own_generator", [True, False])
def test_mid_epoch_resume_of_a_shuffling_dataloader_is_bit_identical(tmp_path, own_generator):
    """A loader draws its order when iterated: from its own generator, or (without one) from torch's global one;
    a resume replays the epoch's start and skips the batches already done."""

    def loader():
        g = torch.Generator().manual_seed(3) if own_generator else None
        return DataLoader(toy_data(), batch_size=30, shuffle=True, generator=g)

    cfg = TrainConfig(epochs=2, lr=0.01, device="cpu")
    torch.manual_seed(0)
    straight = model()
    full = fit(straight, loader(), toy_data(seed=1), cfg, run_dir=tmp_path / "a", progress=False)
    torch.manual_seed(0)
    with pytest.raises(TrainingInterrupted):
        fit(model(), loader(), toy_data(seed=1), cfg, run_dir=tmp_path / "b", callbacks=[SendSignal(11)],
            progress=False)  # fmt: skip
    torch.manual_seed(123)  # the resume restores the global state itself
    resumed = model()
    state = fit(resumed, loader(), toy_data(seed=1), cfg, run_dir=tmp_path / "b", resume=True,
                callbacks=[Callback()], progress=False)  # fmt: skip
    assert_same_weights(straight, resumed)
    assert drop_time(state.history) == drop_time(full.history)


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_every_stop_signal_stops_at_a_step_with_its_status(tmp_path, sig, status):
    with pytest.raises(TrainingInterrupted) as info:
        fit(model(), toy_data(), None, TrainConfig(**CFG), run_dir=tmp_path, callbacks=[SendSignal(4, sig)],
            progress=False)  # fmt: skip
    assert info.value.exit_status == status and info.value.signal_name == sig.name
    again = pickle.loads(pickle.dumps(info.value))  # it crosses process boundaries (worker launchers)
    assert (str(again), again.exit_status, again.checkpoint) == (
        str(info.value),
        status,
        info.value.checkpoint,
    )
    assert load_checkpoint(tmp_path / "checkpoint.pt")["train_state"]["step"] == 4


def test_a_second_ctrl_c_while_stopping_stops_at_once(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        fit(model(), toy_data(), None, TrainConfig(**CFG), run_dir=tmp_path,
            callbacks=[SendSignal(4, signal.SIGINT, times=2)], progress=False)  # fmt: skip
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_run_folder_still_stops_cleanly_without_a_checkpoint():
    with pytest.raises(TrainingInterrupted) as info:
        fit(model(), toy_data(), None, TrainConfig(**CFG), callbacks=[SendSignal(3)], progress=False)
    assert info.value.checkpoint is None and "no checkpoint" in str(info.value)
    assert info.value.with_resume_command("python -m x") == str(info.value)


def test_an_ignored_signal_stays_ignored_and_other_threads_install_nothing(tmp_path, monkeypatch):
    seen = {}

    class Look(Callback):
        def on_step_end(self, model, ctx):
            seen[threading.current_thread().name] = signal.getsignal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        fit(model(), toy_data(), None, TrainConfig(epochs=1, batch_size=120, device="cpu"), callbacks=[Look()],
            progress=False)  # fmt: skip
        assert seen[threading.current_thread().name] == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
    errors = []

    def train():
        try:
            fit(model(), toy_data(), None, TrainConfig(epochs=1, batch_size=120, device="cpu"),
                callbacks=[Look()], progress=False)  # fmt: skip
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=train, name="worker")
    worker.start()
    worker.join()
    assert not errors and seen["worker"] == previous  # nothing installed from another thread


# -- checkpoint_every_steps -----------------------------------------------------------------------------------------
def test_checkpoint_every_steps_writes_within_epochs_and_resumes_exactly(tmp_path, monkeypatch):
    saves = []
    real_save = callbacks_mod.Checkpointer.save

    def spy(self, ctx):
        real_save(self, ctx)
        saves.append((ctx.state.step, ctx.state.epoch_step))

    monkeypatch.setattr(callbacks_mod.Checkpointer, "save", spy)
    straight = model()
    full = fit(
        straight, toy_data(), toy_data(seed=1), TrainConfig(**CFG), run_dir=tmp_path / "a", progress=False
    )
    assert saves == [(10, 0), (20, 0), (30, 0)]  # epoch ends only, by default
    saves.clear()
    cfg = TrainConfig(**CFG, checkpoint_every_steps=4)
    with pytest.raises(
        KeyboardInterrupt
    ):  # killed without warning after step 15: the last checkpoint is step 12
        fit(model(), toy_data(), toy_data(seed=1), cfg, run_dir=tmp_path / "b", callbacks=[Crash(15)],
            progress=False)  # fmt: skip
    assert saves == [(4, 4), (8, 8), (10, 0), (12, 2)]
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["train_state"]["epoch_step"] == 2
    saves.clear()
    resumed = model()  # resumed without the option: it does not change what is computed
    state = fit(resumed, toy_data(), toy_data(seed=1), TrainConfig(**CFG), run_dir=tmp_path / "b", resume=True,
                callbacks=[Callback()], progress=False)  # fmt: skip
    assert_same_weights(straight, resumed)
    assert drop_time(state.history) == drop_time(full.history)
    assert saves == [(20, 0), (30, 0)]
    with pytest.raises(ValueError, match="checkpoint_every_steps must be >= 1"):
        TrainConfig(checkpoint_every_steps=0).validate()


def test_mid_epoch_resume_continues_the_dynamics_records_exactly(tmp_path):
    from cortexnet.analysis import GradientRecorder, SignTracker

    cfg = TrainConfig(epochs=2, batch_size=25, lr=0.05, device="cpu", checkpoint_every_steps=3)
    full = (GradientRecorder(), SignTracker())
    fit(model(dale=True), toy_data(), None, cfg, run_dir=tmp_path / "a", callbacks=full, progress=False)
    with pytest.raises(KeyboardInterrupt):
        fit(model(dale=True), toy_data(), None, cfg, run_dir=tmp_path / "b",
            callbacks=(GradientRecorder(), SignTracker(), Crash(14)), progress=False)  # fmt: skip
    resumed = (GradientRecorder(), SignTracker(), Callback())
    fit(model(dale=True), toy_data(), None, cfg, run_dir=tmp_path / "b", resume=True, callbacks=resumed,
        progress=False)  # fmt: skip
    assert resumed[0].epochs == full[0].epochs
    assert resumed[1].epochs == full[1].epochs


def test_mid_epoch_resume_rewires_bit_identically(tmp_path):
    from cortexnet.data import load_dataset
    from cortexnet.rewiring import rewiring_config
    from cortexnet.training.rewiring import RewiringCallback

    splits = load_dataset("digits", n_per_class=12, seed=0)  # 120 samples: 6 steps per epoch
    config = CortexRNNConfig(n_nodes=40, p=0.2, dale=True, backend="csr")
    rule = rewiring_config("rigl", delta_t=2)
    train = TrainConfig(epochs=2, batch_size=20, lr=1e-2, data_seed=1, device="cpu")

    def net():
        return build_model("cortex_rnn", config, splits.n_inputs, splits.n_classes)

    straight, cb = net(), RewiringCallback(rule)
    fit(straight, splits.train, splits.test, train, run_dir=tmp_path / "a", callbacks=[cb], progress=False)
    with pytest.raises(TrainingInterrupted):  # stopped 3 steps into epoch 2, between two rewiring steps
        fit(net(), splits.train, splits.test, train, run_dir=tmp_path / "b",
            callbacks=[RewiringCallback(rule), SendSignal(9)], progress=False)  # fmt: skip
    resumed, cb2 = net(), RewiringCallback(rule)
    fit(resumed, splits.train, splits.test, train, run_dir=tmp_path / "b", resume=True,
        callbacks=[cb2, Callback()], progress=False)  # fmt: skip
    assert resumed.recurrent.rec.connectivity().equals(straight.recurrent.rec.connectivity())
    assert_same_weights(straight, resumed)
    assert [r["nnz"] for r in cb.history] == [r["nnz"] for r in cb2.history] and len(cb.history) > 2


# -- requeue ----------------------------------------------------------------------------------------------------------
class FakeScontrol:
    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def __call__(self, args, **kwargs):
        self.calls.append(list(args))
        if self.fail is not None:
            raise self.fail
        return subprocess.CompletedProcess(args, 0, "", "")


@pytest.mark.parametrize(
    "job,requeue,sig,called",
    [("123", True, signal.SIGUSR1, True), ("123", True, signal.SIGTERM, True), (None, True, signal.SIGTERM, False),
     ("123", False, signal.SIGUSR1, False), ("123", True, signal.SIGINT, False)],
)  # fmt: skip
def test_requeue_calls_scontrol_only_under_slurm_when_asked(tmp_path, monkeypatch, job, requeue, sig, called):
    fake = FakeScontrol()
    monkeypatch.setattr(signals_mod.subprocess, "run", fake)
    if job is None:
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    else:
        monkeypatch.setenv("SLURM_JOB_ID", job)
    with pytest.raises(TrainingInterrupted) as info:
        fit(model(), toy_data(), None, TrainConfig(**CFG, requeue=requeue), run_dir=tmp_path,
            callbacks=[SendSignal(2, sig)], progress=False)  # fmt: skip
    assert fake.calls == ([["scontrol", "requeue", "123"]] if called else [])
    assert (info.value.requeue == "SLURM job 123 requeued") if called else info.value.requeue is None
    assert ("requeued" in str(info.value)) == called


# -- the command line -------------------------------------------------------------------------------------------------
def _with_signal(monkeypatch, at, sig):
    """Make every member's fit send ``sig`` after step ``at``."""
    real = runs_mod.fit

    def fit_with_signal(*args, callbacks=(), **kwargs):
        return real(*args, callbacks=[*callbacks, SendSignal(at, sig)], **kwargs)

    monkeypatch.setattr(runs_mod, "fit", fit_with_signal)


LINE = re.compile(
    r"^cortexnet: interrupted by (SIG\w+) at epoch (\d+), step (\d+): checkpoint saved(; .*)?; resume with: "
    r"python -m cortexnet\.experiments\.dale --resume (\S+)$"
)


def _member_checkpoint(folder: Path) -> Path:
    (path,) = folder.glob("members/*/checkpoint.pt")
    return path


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_the_cli_reports_an_interruption_in_one_line_with_its_status(
    tmp_path, capsys, monkeypatch, sig, status
):
    _with_signal(monkeypatch, 33, sig)
    argv = [*DALE, "--epochs", "2", "--out", str(tmp_path / "runs")]
    assert run_cli(dale.main, argv) == status
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    m = LINE.match(lines[0])
    assert m, lines[0]
    assert m[1] == sig.name and (m[2], m[3]) == ("2", "33")  # 29 steps per epoch: step 4 of epoch 2
    folder = Path(m[5])
    assert folder.parent == tmp_path / "runs" / "dale"
    assert load_checkpoint(_member_checkpoint(folder))["train_state"]["epoch_step"] == 4


def test_cli_resume_after_sigterm_matches_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    argv = [*DALE, "--epochs", "2", "--record-dynamics", "--eval-fractions", "0.5"]
    assert run_cli(dale.main, [*argv, "--out", str(tmp_path / "a")]) == 0
    (straight,) = (tmp_path / "a" / "dale").iterdir()
    capsys.readouterr()
    with monkeypatch.context() as m:
        _with_signal(m, 39, signal.SIGTERM)
        assert run_cli(dale.main, [*argv, "--out", str(tmp_path / "b")]) == 143
    folder = Path(LINE.match(capsys.readouterr().err.strip())[5])
    assert not (folder / "summary.json").exists()
    assert run_cli(dale.main, ["--resume", str(folder)]) == 0
    assert drop_time(read_jsonl(folder / "metrics.jsonl")) == drop_time(
        read_jsonl(straight / "metrics.jsonl")
    )
    a, b = load_checkpoint(_member_checkpoint(straight)), load_checkpoint(_member_checkpoint(folder))
    for key in a["model_state"]:
        assert torch.equal(a["model_state"][key], b["model_state"][key]), key
    dyn = [json.loads((f / "summary.json").read_text())["configurations"][0]["runs"][0]["dynamics"]
           for f in (straight, folder)]  # fmt: skip
    assert dyn[0] == dyn[1]


def test_a_failed_requeue_is_reported_in_the_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setattr(signals_mod.subprocess, "run", FakeScontrol(fail=FileNotFoundError("no scontrol")))
    _with_signal(monkeypatch, 5, signal.SIGUSR1)
    assert run_cli(dale.main, [*DALE, "--epochs", "1", "--requeue", "--out", str(tmp_path / "runs")]) == 138
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert (
        "requeue of SLURM job 77 failed: no scontrol; resume with: python -m cortexnet.experiments.dale"
        in err
    )


@pytest.mark.slow  # ~75 s: the run must outlast the signal (the in-process tests above cover the same path fast)
def test_a_real_process_killed_with_sigterm_resumes_to_the_same_result(tmp_path):
    """``python -m cortexnet.experiments.dale`` in its own process, SIGTERM after its first checkpoint."""
    argv = [*DALE, "--epochs", "6", "--batch-size", "20", "--checkpoint-every-steps", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "cortexnet.experiments.dale", *argv, "--out", str(tmp_path / "b")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "b").glob("dale/*/members/*/checkpoint.pt")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the test failed
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    m = re.match(r"^dale: interrupted by SIGTERM at epoch \d+, step \d+: checkpoint saved; resume with: "
                 r"python -m cortexnet\.experiments\.dale --resume (\S+)$", last)  # fmt: skip
    assert m, err
    folder = Path(m[1])
    assert run_cli(dale.main, ["--resume", str(folder)]) == 0
    assert run_cli(dale.main, [*argv, "--out", str(tmp_path / "a")]) == 0
    (straight,) = (tmp_path / "a" / "dale").iterdir()
    assert drop_time(read_jsonl(folder / "metrics.jsonl")) == drop_time(
        read_jsonl(straight / "metrics.jsonl")
    )
    a, b = load_checkpoint(_member_checkpoint(straight)), load_checkpoint(_member_checkpoint(folder))
    for key in a["model_state"]:
        assert torch.equal(a["model_state"][key], b["model_state"][key]), key
