"""Training configuration."""

from __future__ import annotations

from dataclasses import dataclass

from cortexnet.config import check_fields

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "linear")
#: Settings that do not change what a run computes: a run may be resumed with other values.
RESUMABLE_CHANGES = ("epochs", "device", "checkpoint_every_steps", "log_every_s", "loggers", "requeue")


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a model (defaults follow Fruengel & Oberlaender 2025: Adam, lr 1e-3, batch 100).

    Attributes:
        epochs: number of passes over the training set, ≥ 0 (0 only evaluates the initial network).
        batch_size: samples per optimiser step, ≥ 1.
        lr: learning rate, > 0.
        optimizer: "adam" (paper), "adamw", "sgd" or "rmsprop"; any other torch optimiser can be passed to
            :func:`fit` directly.
        weight_decay: L2 / decoupled weight decay, ≥ 0.
        momentum: SGD / RMSprop momentum in [0, 1).
        eval_fractions: extra evaluations inside every epoch at these fractions, each in (0, 1)
            (e.g. (0.25, 0.5) for the paper's within-epoch curves).
        early_stopping_patience: stop after this many epoch-end evaluations without a new best validation
            accuracy (None: never; needs a validation split).
        data_seed: seed of the training order (shuffling); independent of the model's seeds.
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:K".
        checkpoint_every: write a checkpoint every this many epochs (≥ 1) when a run folder is given.
        grad_clip: clip the global gradient norm to this value (None: no clipping; the paper used none).
        lr_schedule: "constant" (the paper) or "linear": every parameter group's rate falls linearly from its
            initial value to ``lr_final_factor`` times it at ``lr_decay_fraction`` of all optimiser steps, then
            stays (the CHTs MLP recipe: 0.01 at 0.9). Set per step from the step count, so a resume continues it
            exactly (with more epochs on resume the schedule stretches to the new total).
        lr_final_factor: the final fraction of the initial rate, in [0, 1].
        lr_decay_fraction: the fraction of all steps at which the decay ends, in (0, 1].
        checkpoint_every_steps: also write a checkpoint every this many optimiser steps (≥ 1) within an epoch,
            from which a resume continues at that step (None: at epoch ends only).
        log_every_s: when the progress bars are off (output not a terminal, or ``progress=False``), log a line
            (epoch, step, running loss, last accuracy, steps/s, ETA) at most this often, in seconds (≥ 0),
            besides one per epoch.
        loggers: names of registered loggers (:mod:`cortexnet.training.loggers`: "csv", "tensorboard", ...)
            that ``fit`` attaches to the run.
        requeue: on SIGTERM / SIGUSR1 under SLURM (``SLURM_JOB_ID`` set), after the checkpoint, requeue the job
            (``scontrol requeue``).

    ``checkpoint_every_steps``, ``log_every_s``, ``loggers`` and ``requeue`` do not change what is computed: a
    run may be resumed with other values (as with ``epochs`` and ``device``).
    """

    epochs: int = 1
    batch_size: int = 100
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.0
    eval_fractions: tuple[float, ...] = ()
    early_stopping_patience: int | None = None
    data_seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 1
    grad_clip: float | None = None
    lr_schedule: str = "constant"
    lr_final_factor: float = 0.01
    lr_decay_fraction: float = 0.9
    checkpoint_every_steps: int | None = None
    log_every_s: float = 300.0
    loggers: tuple[str, ...] = ()
    requeue: bool = False

    def lr_factor(self, step: int, total_steps: int) -> float:
        """The multiplier of the initial learning rate for optimiser step ``step`` (0-based) of ``total_steps``."""
        if self.lr_schedule == "constant" or total_steps <= 0:
            return 1.0
        progress = min(1.0, step / max(self.lr_decay_fraction * total_steps, 1e-12))
        return 1.0 - (1.0 - self.lr_final_factor) * progress

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the bad field and its allowed range; return self."""
        check_fields(self)  # types, integral ints, finite floats: before any range check
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        for f in self.eval_fractions:
            if not 0 < f < 1:
                raise ValueError(f"eval fractions must be in (0, 1), got {f}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(
                f"early stopping patience must be >= 1 or None, got {self.early_stopping_patience}"
            )
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_final_factor <= 1.0:
            raise ValueError(f"lr_final_factor must be in [0, 1], got {self.lr_final_factor}")
        if not 0.0 < self.lr_decay_fraction <= 1.0:
            raise ValueError(f"lr_decay_fraction must be in (0, 1], got {self.lr_decay_fraction}")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise ValueError(
                f"checkpoint_every_steps must be >= 1 or None, got {self.checkpoint_every_steps}"
            )
        if self.log_every_s < 0:
            raise ValueError(f"log_every_s must be >= 0 seconds, got {self.log_every_s}")
        from cortexnet.training.loggers import check_loggers

        check_loggers(self.loggers)
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:K' or 'mps', got {self.device!r}")
        return self
