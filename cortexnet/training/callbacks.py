"""Training callbacks: hooks the trainer calls so analyses can observe training without changing it."""

from __future__ import annotations

from typing import Any

from torch import nn


class Callback:
    """Base class; override any hook. ``state`` is the trainer's :class:`~cortexnet.training.fit.TrainState`.

    Hooks run in this order per optimiser step: ``on_after_backward`` (gradients are populated, before the
    step: e.g. record gradient magnitudes), then the step and the constraints, then ``on_step_end``.
    ``on_train_end`` always runs last, also when training ends with an exception.
    """

    def on_train_begin(self, model: nn.Module, state: Any) -> None:
        """Before the first (or, on resume, the next) epoch."""

    def on_after_backward(self, model: nn.Module, state: Any) -> None:
        """After ``loss.backward()`` and before ``optimizer.step()``."""

    def on_step_end(self, model: nn.Module, state: Any) -> None:
        """After the optimiser step and the constraints."""

    def on_evaluation(self, model: nn.Module, state: Any, record: dict) -> None:
        """After every evaluation (epoch 0, fractional points, epoch ends) with its history record."""

    def on_epoch_end(self, model: nn.Module, state: Any) -> None:
        """After the epoch-end evaluation and before the epoch's checkpoint, so that what :meth:`state_dict`
        returns (saved in that checkpoint) already includes the epoch just finished."""

    def on_train_end(self, model: nn.Module, state: Any) -> None:
        """When training stops for any reason (finished, early stop, an exception): release what the
        callback holds (e.g. hooks it registered)."""

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this callback (saved in the checkpoint)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""
