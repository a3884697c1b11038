"""Training configuration."""

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


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

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the bad field and its allowed range; return self."""
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
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:K', got {self.device!r}")
        return self
