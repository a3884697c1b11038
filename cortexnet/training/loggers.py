"""Loggers: callbacks that report a run as it trains, registered by name so that a run asks for them by name
(``TrainConfig(loggers=("csv", "tensorboard"))``, ``--logger csv tensorboard``) and a user can add one::

    from cortexnet.training.loggers import register_logger

    @register_logger("wandb", requires="wandb", install="pip install wandb")
    class WandbLogger(Callback): ...

:func:`~cortexnet.training.fit` attaches the loggers of ``config.loggers`` to every run (each writes into the
run folder); :func:`logger_callbacks` builds them for any other training loop. Built in:

* ``csv``: ``metrics.csv`` beside ``history.jsonl``, one row per evaluation (the same records), and
  ``steps.csv``, the training loss and learning rate of every optimiser step;
* ``tensorboard``: ``tb/`` event files (``torch.utils.tensorboard``), every evaluation's numbers (``eval/...``)
  and the training loss and learning rate of every step (``train/...``); needs the ``tensorboard`` package
  (``pip install "cortexnet[tensorboard]"``).

Per-step losses are kept on the device and turned into numbers in blocks of :data:`FLUSH_EVERY` steps (and at
every evaluation), so a logger costs one device synchronisation per block, not per step.

:class:`ProgressLog` is the text line ``fit`` logs (logger ``cortexnet.training``) when the progress bars are
off: one per epoch and at most every ``log_every_s`` seconds, so a batch job's log is never silent for hours.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cortexnet.io import atomic_write_bytes
from cortexnet.registry import Registry
from cortexnet.training.callbacks import Callback
from cortexnet.training.state import TrainContext

#: The logger of the progress lines (a batch job's log).
progress_log = logging.getLogger("cortexnet.training")

METRICS_CSV = "metrics.csv"
STEPS_CSV = "steps.csv"
TENSORBOARD_DIR = "tb"
#: Per-step losses are read from the device in blocks of this many steps.
FLUSH_EVERY = 100


@dataclass(frozen=True)
class LoggerSpec:
    """A registered logger: ``factory()`` makes its callback; ``requires`` names a module it imports (checked
    before any work, with ``install`` saying how to get it)."""

    factory: Callable[[], Callback]
    requires: str | None = None
    install: str | None = None


LOGGERS: Registry[LoggerSpec] = Registry("logger")


def register_logger(
    name: str, *, requires: str | None = None, install: str | None = None
) -> Callable[[Callable[[], Callback]], Callable[[], Callback]]:
    """Decorator registering a logger factory (a :class:`Callback` class or function) as ``name``."""

    def deco(factory: Callable[[], Callback]) -> Callable[[], Callback]:
        LOGGERS.register(name)(LoggerSpec(factory, requires, install))
        return factory

    return deco


def check_loggers(names: Iterable[str]) -> None:
    """Raise ``ValueError`` for an unknown or repeated logger name, or one whose package is not installed
    (naming how to install it)."""
    names = list(names)
    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"unknown logger {name!r}; known: {', '.join(LOGGERS.names())}")
        spec = LOGGERS.get(name)
        if spec.requires is not None and not _importable(spec.requires):
            how = f": {spec.install}" if spec.install else ""
            raise ValueError(
                f"logger {name!r} needs the {spec.requires} package, which is not installed{how}"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"logger {repeated[0]!r} is given twice; name each logger once")


def logger_callbacks(names: Sequence[str]) -> list[Callback]:
    """One new callback per logger name (checked first: :func:`check_loggers`), in the order given."""
    check_loggers(names)
    return [LOGGERS.get(name).factory() for name in names]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class _StepLosses:
    """Per-step ``(step, epoch, lr, loss)`` with the loss left on the device until :meth:`take`."""

    def __init__(self) -> None:
        self._rows: list[tuple[int, float, float, torch.Tensor]] = []

    def add(self, ctx: TrainContext) -> None:
        if ctx.loss is None:
            return
        st, per_epoch = ctx.state, ctx.steps_per_epoch
        epoch = st.epoch + st.epoch_step / per_epoch if per_epoch else float(st.epoch)
        lr = float(ctx.optimizer.param_groups[0]["lr"]) if ctx.optimizer.param_groups else math.nan
        self._rows.append((st.step, epoch, lr, ctx.loss.detach()))

    def __len__(self) -> int:
        return len(self._rows)

    def take(self) -> list[tuple[int, float, float, float]]:
        """The rows so far with their losses as numbers (one device synchronisation); the buffer empties."""
        if not self._rows:
            return []
        losses = torch.stack([r[3].float().reshape(()) for r in self._rows]).tolist()
        rows = [(s, e, lr, loss) for (s, e, lr, _), loss in zip(self._rows, losses, strict=True)]
        self._rows = []
        return rows


def _cell(value: Any) -> str:
    """A CSV cell: numbers exactly (``repr`` round-trips a float), None and non-finite values empty (as
    ``history.jsonl`` writes them ``null``)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value)


@register_logger("csv")
class CSVLogger(Callback):
    """``metrics.csv``: one row per evaluation, the history's records (columns in their order), rewritten
    atomically after every evaluation, so it always equals ``history.jsonl``; ``steps.csv``: ``step, epoch,
    lr, train_loss`` of every optimiser step, appended in blocks (on resume the rows after the checkpoint's step
    are dropped first, so the file continues exactly)."""

    def __init__(self) -> None:
        self._steps = _StepLosses()
        self._dir: Path | None = None

    def on_train_begin(self, model: nn.Module, ctx: TrainContext) -> None:
        self._dir = ctx.run_dir
        if self._dir is None:
            return
        self._write_metrics(ctx.state.history)
        path = self._dir / STEPS_CSV
        kept: list[list[str]] = []
        if path.exists():
            header = ["step", "epoch", "lr", "train_loss"]
            with open(path, newline="") as fh:
                for row in csv.reader(fh):
                    if len(row) == len(header) and row != header and row[0].isdigit():
                        if int(row[0]) <= ctx.state.step:
                            kept.append(row)
        self._write_rows(path, kept, rewrite=True)

    def on_step_end(self, model: nn.Module, ctx: TrainContext) -> None:
        if self._dir is None:
            return
        self._steps.add(ctx)
        if len(self._steps) >= FLUSH_EVERY:
            self._flush()

    def on_evaluation(self, model: nn.Module, ctx: TrainContext, record: dict) -> None:
        if self._dir is None:
            return
        self._flush()
        self._write_metrics(ctx.state.history)

    def on_train_end(self, model: nn.Module, ctx: TrainContext) -> None:
        if self._dir is not None:
            self._flush()

    def _flush(self) -> None:
        rows = [[str(s), repr(e), _cell(lr), _cell(loss)] for s, e, lr, loss in self._steps.take()]
        if rows:
            self._write_rows(self._dir / STEPS_CSV, rows, rewrite=False)

    @staticmethod
    def _write_rows(path: Path, rows: list[list[str]], *, rewrite: bool) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if rewrite:
            writer.writerow(["step", "epoch", "lr", "train_loss"])
            writer.writerows(rows)
            atomic_write_bytes(path, buf.getvalue().encode())
            return
        writer.writerows(rows)
        with open(path, "a", newline="") as fh:  # whole lines; a torn last line is dropped on resume
            fh.write(buf.getvalue())

    def _write_metrics(self, history: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for rec in history:
            columns.extend(k for k in rec if k not in columns)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(rec.get(k)) for k in columns] for rec in history)
        atomic_write_bytes(self._dir / METRICS_CSV, buf.getvalue().encode())  # type: ignore[operator]


@register_logger("tensorboard", requires="tensorboard", install='pip install "cortexnet[tensorboard]"')
class TensorBoardLogger(Callback):
    """``tb/`` event files (``torch.utils.tensorboard.SummaryWriter``): every number of every evaluation as
    ``eval/<key>`` at its optimiser step (``eval/test_acc``, ``eval/val_loss``, ``eval/train_loss``, ...) and
    ``train/loss``, ``train/lr`` of every step. A resumed run hides what the interrupted one wrote after the
    checkpoint (``purge_step``)."""

    def __init__(self) -> None:
        self.writer: Any = None
        self._steps = _StepLosses()

    def on_train_begin(self, model: nn.Module, ctx: TrainContext) -> None:
        if ctx.run_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise RuntimeError(
                f'the tensorboard logger cannot start ({exc}); pip install "cortexnet[tensorboard]"'
            ) from exc
        folder = ctx.run_dir / TENSORBOARD_DIR
        continuing = folder.is_dir() and any(folder.glob("events.out.tfevents.*"))
        # Events written after the checkpoint's step by the interrupted run are hidden (purged).
        self.writer = SummaryWriter(str(folder), purge_step=ctx.state.step + 1 if continuing else None)
        if not continuing:  # the evaluation before training came before this writer existed
            for rec in ctx.state.history:
                self._write_record(rec)
            self.writer.flush()

    def on_step_end(self, model: nn.Module, ctx: TrainContext) -> None:
        if self.writer is None:
            return
        self._steps.add(ctx)
        if len(self._steps) >= FLUSH_EVERY:
            self._flush_steps()

    def on_evaluation(self, model: nn.Module, ctx: TrainContext, record: dict) -> None:
        if self.writer is None:
            return
        self._flush_steps()
        self._write_record(record)
        self.writer.flush()

    def on_train_end(self, model: nn.Module, ctx: TrainContext) -> None:
        if self.writer is not None:
            self._flush_steps()
            self.writer.close()
            self.writer = None

    def _flush_steps(self) -> None:
        for step, _, lr, loss in self._steps.take():
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def _write_record(self, record: dict[str, Any]) -> None:
        step = int(record.get("step") or 0)
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(f"eval/{key}", value, step)


def _duration(seconds: float) -> str:
    """``3725.2`` → ``"1:02:05"``."""
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressLog(Callback):
    """Progress as log lines (logger ``cortexnet.training``, level INFO), for output that is not a terminal:
    at every epoch's end and, within epochs, at most every ``every_s`` seconds — epoch, step, the running
    training loss of the epoch, the last validation/test accuracy, steps per second (this process, evaluations
    included) and the estimated time left. ``fit`` adds it when its progress bars are off."""

    def __init__(self, every_s: float = 300.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._sum: torch.Tensor | None = None
        self._n = 0

    def on_train_begin(self, model: nn.Module, ctx: TrainContext) -> None:
        self._t0 = self._last = self.clock()
        self._step0 = ctx.state.step
        self._sum, self._n = None, 0

    def on_step_end(self, model: nn.Module, ctx: TrainContext) -> None:
        if ctx.loss is not None:
            loss = ctx.loss.detach().double()
            self._sum = loss if self._sum is None else self._sum + loss
            self._n += 1
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            running = float(self._sum) / self._n if self._sum is not None and self._n else None
            self._line(ctx, now, f"epoch {ctx.state.epoch + 1}/{ctx.config.epochs}", running)

    def on_epoch_end(self, model: nn.Module, ctx: TrainContext) -> None:
        now = self._last = self.clock()
        self._sum, self._n = None, 0
        loss = ctx.state.history[-1].get("train_loss") if ctx.state.history else None
        self._line(ctx, now, f"epoch {ctx.state.epoch}/{ctx.config.epochs} done", loss)

    def _line(self, ctx: TrainContext, now: float, where: str, loss: float | None) -> None:
        st = ctx.state
        total = ctx.config.epochs * ctx.steps_per_epoch if ctx.steps_per_epoch else None
        steps = f"step {st.step}" + (f"/{total}" if total else "")
        parts = [f"{where}, {steps}", f"train loss {loss:.4f}" if loss is not None else "train loss -"]
        last = {}
        for rec in reversed(st.history):
            for split in ("val", "test"):
                if rec.get(f"{split}_acc") is not None:
                    last.setdefault(split, rec[f"{split}_acc"])
            if len(last) == 2:
                break
        parts += [f"{split} acc {last[split]:.4f}" for split in ("val", "test") if split in last]
        elapsed = now - self._t0
        rate = (st.step - self._step0) / elapsed if elapsed > 0 else math.nan
        parts.append(f"{rate:.2f} steps/s" if math.isfinite(rate) else "- steps/s")
        eta = (total - st.step) / rate if total and math.isfinite(rate) and rate > 0 else math.nan
        parts.append(f"ETA {_duration(eta)}")
        prefix = f"{ctx.run_dir.name}: " if ctx.run_dir is not None else ""
        progress_log.info("%s%s", prefix, ", ".join(parts))


__all__ = [
    "FLUSH_EVERY",
    "LOGGERS",
    "METRICS_CSV",
    "STEPS_CSV",
    "TENSORBOARD_DIR",
    "CSVLogger",
    "LoggerSpec",
    "ProgressLog",
    "TensorBoardLogger",
    "check_loggers",
    "logger_callbacks",
    "register_logger",
]
