"""What the training loop and its callbacks share: the run's progress (:class:`TrainState`) and one context
(:class:`TrainContext`) handed to every callback."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.jsonl"


class NonFiniteLossError(RuntimeError):
    """The training loss, the weights or the optimiser state became NaN or infinite; the last good checkpoint
    is kept untouched (a checkpoint with non-finite values is never written).

    Attributes:
        epoch, step: where it was detected, both 1-based: the epoch it happened in, and the optimiser step
            whose loss was non-finite (a loss check) or the last step taken (the check of weights and optimiser
            state before an epoch's checkpoint: the values broke at that step or earlier in the epoch).
        checkpoint: the last good checkpoint this run wrote or resumed from (None: there is none).
    """

    def __init__(self, message: str, *, epoch: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint


class TrainingInterrupted(Exception):
    """Training stopped on a signal (SIGINT: Ctrl-C; SIGTERM: what SLURM sends before a time limit; SIGUSR1:
    SLURM's ``--signal=USR1@90``) at an optimiser-step boundary, after writing a checkpoint from which
    ``resume=True`` (``--resume``) continues exactly there, bit-identically on CPU.

    Attributes:
        signal_name, signum: the signal ("SIGTERM", 15).
        epoch, step: where training stopped: the 1-based epoch in progress (the epoch just finished when it
            stopped at an epoch's end) and the optimiser steps taken.
        checkpoint: the checkpoint written (None: the run has no folder, nothing was written).
        run_dir: the run folder given to :func:`~cortexnet.training.fit` (an experiment's member folder).
        requeue: what requeueing the SLURM job reported (None: not asked for or not under SLURM).
        exit_status: 128 + signum, the shell's status of a process ended by that signal (130, 143, 138).
    """

    def __init__(
        self,
        signal_name: str,
        signum: int,
        *,
        epoch: int,
        step: int,
        checkpoint: Path | None,
        run_dir: Path | None,
        requeue: str | None = None,
    ) -> None:
        saved = "checkpoint saved" if checkpoint is not None else "no checkpoint (no run folder)"
        super().__init__(
            f"interrupted by {signal_name} at epoch {epoch}, step {step}: {saved}"
            + (f"; {requeue}" if requeue else "")
        )
        self.signal_name, self.signum, self.epoch, self.step = signal_name, signum, epoch, step
        self.checkpoint, self.run_dir, self.requeue = checkpoint, run_dir, requeue

    def __reduce__(self) -> tuple[Any, ...]:  # picklable: it crosses process boundaries (worker launchers)
        return (_rebuild_interrupted, (self.signal_name, self.signum, self.epoch, self.step, self.checkpoint,
                                       self.run_dir, self.requeue))  # fmt: skip

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    @property
    def resume_folder(self) -> Path | None:
        """The folder to resume: the run folder of an experiment's member (``<run>/members/<label>``), else
        ``run_dir`` itself."""
        folder = self.run_dir
        if folder is not None and folder.parent.name == "members":
            return folder.parent.parent
        return folder

    def with_resume_command(self, command: str) -> str:
        """The message and, when a checkpoint was written, ``; resume with: <command> --resume <folder>``."""
        import shlex

        if self.checkpoint is None or self.resume_folder is None:
            return str(self)
        return f"{self}; resume with: {command} --resume {shlex.quote(str(self.resume_folder))}"


def _rebuild_interrupted(
    signal_name: str, signum: int, epoch: int, step: int, checkpoint: Any, run_dir: Any, requeue: Any
) -> TrainingInterrupted:
    return TrainingInterrupted(signal_name, signum, epoch=epoch, step=step, checkpoint=checkpoint,
                               run_dir=run_dir, requeue=requeue)  # fmt: skip


@dataclass
class TrainState:
    """Progress of one training run; saved in every checkpoint.

    ``history`` holds one record per evaluation: ``epoch`` (float, fractional for within-epoch points),
    ``step``, ``train_loss`` (plain mean cross-entropy over the epoch's batches; None at epoch 0 and at
    fractional points), ``val_loss``/``val_acc`` (None without a validation split), ``test_loss``/``test_acc``
    (None without a test set), ``elapsed_s`` (training wall time so far).

    ``epoch`` counts finished epochs; ``epoch_step`` the optimiser steps taken in the epoch in progress (0 at an
    epoch's end). A checkpoint written within an epoch (on a signal, or every ``checkpoint_every_steps``) has
    ``epoch_step`` > 0 and the epoch's running loss so far (``epoch_loss_sum``: the sum of batch losses times
    their scored targets, ``epoch_scored``: the targets scored), so that a resume skips the batches already done
    and ends the epoch with the same ``train_loss``; between checkpoints these two are not kept current.
    """

    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float | None = None
    best_epoch: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    epoch_step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_scored: int = 0


@dataclass
class TrainContext:
    """Everything a callback may read or act on, one object for every hook.

    Attributes:
        model, optimizer: what is being trained (callbacks may change the optimiser's state, e.g. when rewiring
            moves synapses, or the model's connectivity through ``SparseWeight.set_connectivity_``).
        state: the :class:`TrainState` (saved in every checkpoint); ``state.stopped_early = True`` ends training
            after the current epoch.
        device: where the model computes.
        config: the :class:`~cortexnet.training.TrainConfig`.
        run_dir: the run folder (None: nothing is written).
        last_good: the last good checkpoint this run wrote or resumed from, and its epoch.
        batch: the current training batch ``(x (B, T, F), y (B,))`` on the device (None outside the loop), e.g.
            for a rewiring criterion that needs the gradient at inactive positions.
        steps_per_epoch: optimiser steps per epoch (None: a loader without a length), set when training starts.
        loss: the current step's training loss (a detached 0-d tensor on the device; None outside
            ``on_step_end``), e.g. for loggers; turning it into a number (``float``) waits for the device.

    For callbacks written against the trainer's state, reading an attribute the context does not have (``ctx.
    epoch``, ``ctx.step``, ``ctx.history``, ...) reads it from ``state``.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    state: TrainState
    device: torch.device
    config: Any
    run_dir: Path | None = None
    last_good: dict[str, Any] = field(default_factory=lambda: {"path": None, "epoch": None})
    batch: tuple[Any, Any] | None = None
    steps_per_epoch: int | None = None
    loss: torch.Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        # Only called for names the context lacks: fall through to the state (ctx.epoch, ctx.step, ...).
        if name.startswith("__") or name == "state":
            raise AttributeError(name)
        return getattr(self.state, name)

    def non_finite(self, what: str, epoch: int, step: int) -> NonFiniteLossError:
        """The error for a NaN/inf detected at ``epoch``/``step``, naming the last good checkpoint."""
        path, good_epoch = self.last_good["path"], self.last_good["epoch"]
        where = (
            f"last good checkpoint: {path} (epoch {good_epoch})"
            if path is not None
            else "no good checkpoint was written"
        )
        return NonFiniteLossError(
            f"{what} at epoch {epoch}, step {step}; {where} (try a lower --lr)",
            epoch=epoch,
            step=step,
            checkpoint=path,
        )
