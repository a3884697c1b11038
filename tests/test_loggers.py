"""Logging a run (issue 13, items 3 and 4): progress lines when there are no progress bars (a batch job's log),
and the registered loggers: csv (metrics.csv = history.jsonl, steps.csv) and tensorboard (tb/ event files)."""

from __future__ import annotations

import csv
import importlib
import logging
import os
import re
import signal
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from cortexnet.experiments import dale
from cortexnet.experiments.common import run_cli
from cortexnet.io import read_jsonl
from cortexnet.models import CortexRNNConfig, build_model
from cortexnet.training import (
    LOGGERS,
    Callback,
    TrainConfig,
    TrainingInterrupted,
    fit,
    logger_callbacks,
    register_logger,
)
from cortexnet.training.loggers import CSVLogger, ProgressLog, TensorBoardLogger, check_loggers

fit_mod = importlib.import_module(
    "cortexnet.training.fit"
)  # the module (the package's `fit` is the function)
DALE = ["--dataset", "digits", "--nodes", "16", "--densities", "0.5", "--batch-size", "100", "--no-progress"]


def toy_data(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 5, 4, generator=g) * 0.2
    x[torch.arange(n), :, y] += 0.8
    return TensorDataset(x, y)


def model():
    return build_model("cortex_rnn", CortexRNNConfig(n_nodes=30, p=0.2, weight_seed=0), 4, 3)


def cfg(**kw):
    return TrainConfig(**{"epochs": 2, "batch_size": 25, "lr": 0.01, "device": "cpu", **kw})


def progress_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "cortexnet.training"]


# -- progress lines ---------------------------------------------------------------------------------------------------
def test_without_a_terminal_progress_is_logged_with_steps_per_second_and_eta(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cortexnet.training")
    fit(model(), toy_data(), toy_data(seed=1), cfg(), run_dir=tmp_path / "m1", progress=False)
    lines = progress_lines(caplog)
    assert len(lines) == 2  # one per epoch (the default 300 s between lines within epochs)
    assert lines[0].startswith("m1: epoch 1/2 done, step 10/20, train loss ")
    assert lines[1].startswith("m1: epoch 2/2 done, step 20/20, train loss ")
    assert all(
        re.search(r", test acc [01]\.\d{4}, [\d.]+ steps/s, ETA \d+:\d\d:\d\d$", line) for line in lines
    ), lines
    assert lines[1].endswith("ETA 0:00:00")
    caplog.clear()
    fit(model(), toy_data(), toy_data(seed=1), cfg(log_every_s=0.0), progress=False)
    lines = progress_lines(caplog)
    within = [line for line in lines if "done" not in line]
    assert len(within) == 20 and len(lines) == 22  # every step (log_every_s 0) and the two epoch ends
    assert within[0].startswith("epoch 1/2, step 1/20, train loss ") and "test acc" in within[0]


def test_a_terminal_gets_bars_and_no_duplicate_lines(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="cortexnet.training")
    monkeypatch.setattr(fit_mod, "_is_terminal", lambda: True)
    fit(model(), toy_data(), None, cfg(log_every_s=0.0), progress=True)
    assert progress_lines(caplog) == []
    fit(model(), toy_data(), None, cfg(), progress=False)  # --no-progress on a terminal: lines
    assert len(progress_lines(caplog)) == 2
    monkeypatch.setattr(fit_mod, "_is_terminal", lambda: False)
    caplog.clear()
    fit(model(), toy_data(), None, cfg(), progress=True)  # bars asked for, but not a terminal: lines
    assert len(progress_lines(caplog)) == 2


def test_progress_log_throttles_by_its_clock():
    now = [0.0]
    log = ProgressLog(10.0, clock=lambda: now[0])

    class Ctx:
        pass

    lines = []
    log._line = lambda ctx, t, where, loss: lines.append((t, where))
    ctx = Ctx()
    ctx.state = type("S", (), {"step": 0, "epoch": 0, "history": []})()
    ctx.config, ctx.loss = cfg(), torch.tensor(1.0)
    log.on_train_begin(None, ctx)
    for t in (1.0, 9.9, 10.0, 15.0, 20.5):
        now[0] = t
        log.on_step_end(None, ctx)
    assert [t for t, _ in lines] == [10.0, 20.5]


# -- csv ------------------------------------------------------------------------------------------------------------
def _cells(records):
    return [{k: "" if v is None else str(v) for k, v in r.items()} for r in records]


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_logger_rows_equal_history_and_steps_continue_exactly_after_a_resume(tmp_path):
    full_cfg = cfg(epochs=3, eval_fractions=(0.5,), loggers=("csv",))
    fit(model(), toy_data(), toy_data(seed=1), full_cfg, run_dir=tmp_path / "a", progress=False)
    history = read_jsonl(tmp_path / "a" / "history.jsonl")
    assert _read_csv(tmp_path / "a" / "metrics.csv") == _cells(history)
    steps = _read_csv(tmp_path / "a" / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(1, 31))
    assert float(steps[4]["epoch"]) == 0.5 and float(steps[-1]["epoch"]) == 3.0
    assert all(float(r["train_loss"]) > 0 and float(r["lr"]) == 0.01 for r in steps)

    class Stop(Callback):
        def on_step_end(self, model, ctx):
            if ctx.state.step == 17:
                os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        fit(model(), toy_data(), toy_data(seed=1), full_cfg, run_dir=tmp_path / "b", callbacks=[Stop()],
            progress=False)  # fmt: skip
    with open(tmp_path / "b" / "steps.csv", "a") as fh:  # rows past the checkpoint, a torn last line
        fh.write("18,1.8,0.01,9.9\n19,1.9,0.0")
    fit(model(), toy_data(), toy_data(seed=1), full_cfg, run_dir=tmp_path / "b", resume=True,
        callbacks=[Callback()], progress=False)  # fmt: skip
    assert _read_csv(tmp_path / "b" / "steps.csv") == steps
    resumed = _read_csv(tmp_path / "b" / "metrics.csv")
    assert resumed == _cells(read_jsonl(tmp_path / "b" / "history.jsonl"))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert drop(resumed) == drop(_cells(history))


def test_cli_logger_csv_writes_beside_every_member_history(tmp_path):
    out = tmp_path / "runs"
    assert (
        run_cli(
            dale.main, [*DALE, "--epochs", "1", "--seeds", "0", "1", "--logger", "csv", "--out", str(out)]
        )
        == 0
    )
    members = sorted(out.glob("dale/*/members/*"))
    assert len(members) == 2
    for member in members:
        assert _read_csv(member / "metrics.csv") == _cells(read_jsonl(member / "history.jsonl"))
        assert len(_read_csv(member / "steps.csv")) == 15  # 1438 samples / 100


def test_resume_may_change_the_logging_and_checkpoint_options(tmp_path, capsys):
    out = tmp_path / "runs"
    assert run_cli(dale.main, [*DALE, "--epochs", "1", "--out", str(out)]) == 0
    (folder,) = (out / "dale").iterdir()
    argv = ["--resume", str(folder), "--epochs", "2", "--logger", "csv", "--log-every-s", "5",
            "--checkpoint-every-steps", "4", "--requeue"]  # fmt: skip
    assert run_cli(dale.main, argv) == 0, capsys.readouterr().err
    (member,) = folder.glob("members/*")
    assert _read_csv(member / "metrics.csv") == _cells(read_jsonl(member / "history.jsonl"))
    assert [int(r["step"]) for r in _read_csv(member / "steps.csv")] == list(range(16, 31))


# -- tensorboard ------------------------------------------------------------------------------------------------------
def test_tensorboard_logger_writes_every_evaluation_and_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    state = fit(model(), toy_data(), toy_data(seed=1), cfg(loggers=("tensorboard",)), run_dir=tmp_path,
                progress=False)  # fmt: skip
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert files
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    acc = events.Scalars("eval/test_acc")
    assert [e.step for e in acc] == [r["step"] for r in state.history]
    assert [e.value for e in acc] == pytest.approx([r["test_acc"] for r in state.history], rel=1e-6)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 21))
    assert "eval/train_loss" in events.Tags()["scalars"]


def test_tensorboard_after_a_resume_has_each_step_once(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Stop(Callback):
        def on_step_end(self, model, ctx):
            if ctx.state.step == 13:
                os.kill(os.getpid(), signal.SIGTERM)

    config = cfg(loggers=("tensorboard",))
    with pytest.raises(TrainingInterrupted):
        fit(
            model(),
            toy_data(),
            toy_data(seed=1),
            config,
            run_dir=tmp_path,
            callbacks=[Stop()],
            progress=False,
        )
    state = fit(model(), toy_data(), toy_data(seed=1), config, run_dir=tmp_path, resume=True,
                callbacks=[Callback()], progress=False)  # fmt: skip
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 21))
    assert (
        [e.step for e in events.Scalars("eval/test_acc")] == [r["step"] for r in state.history] == [0, 10, 20]
    )


def test_missing_tensorboard_is_a_one_line_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(ValueError, match=r'pip install "cortexnet\[tensorboard\]"'):
        TrainConfig(loggers=("tensorboard",)).validate()
    out = tmp_path / "runs"
    assert run_cli(dale.main, [*DALE, "--epochs", "1", "--logger", "tensorboard", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cortexnet: error: ") and 'pip install "cortexnet[tensorboard]"' in err
    assert not out.exists()


# -- the registry -----------------------------------------------------------------------------------------------------
COUNTERS: list = []


@register_logger("test-counter")
class CountingLogger(Callback):
    def __init__(self):
        self.evaluations = 0
        COUNTERS.append(self)

    def on_evaluation(self, model, ctx, record):
        self.evaluations += 1


def test_the_registry_makes_loggers_by_name_and_checks_names(tmp_path, capsys):
    assert {"csv", "tensorboard", "test-counter"} <= set(LOGGERS.names())
    made = logger_callbacks(["csv", "test-counter"])  # also for loops other than fit
    assert isinstance(made[0], CSVLogger) and isinstance(made[1], CountingLogger)
    assert LOGGERS.get("tensorboard").factory is TensorBoardLogger
    fit(model(), toy_data(), toy_data(seed=1), cfg(loggers=("test-counter",)), progress=False)
    assert COUNTERS[-1].evaluations == 3
    with pytest.raises(ValueError, match="unknown logger 'wandb'; known: csv, tensorboard"):
        check_loggers(["wandb"])
    with pytest.raises(ValueError, match="given twice"):
        check_loggers(["csv", "csv"])
    with pytest.raises(ValueError, match="already registered"):
        register_logger("csv")(CSVLogger)
    out = tmp_path / "runs"
    assert run_cli(dale.main, [*DALE, "--logger", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown logger 'nope'" in err and not out.exists()
