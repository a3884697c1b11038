"""Dynamic sparse training inside ``fit``: the :class:`~cortexnet.rewiring.Rewirer` as a callback.

The rewirer runs at the training loop's rewiring point (``on_step_end``: after the optimiser step and the
constraints) on the current batch; its state is in every checkpoint, so a killed and resumed run rewires
identically. Outside ``fit`` call :meth:`cortexnet.rewiring.Rewirer.step` yourself.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from cortexnet.rewiring import Rewirer, RewiringConfig
from cortexnet.training.callbacks import Callback
from cortexnet.training.state import TrainContext


class RewiringCallback(Callback):
    """Builds a :class:`~cortexnet.rewiring.Rewirer` with ``config`` when training begins (T_end from the run's
    epochs and steps per epoch) and steps it after every optimiser step.

    Attributes:
        rewirer: the live rewirer (None before training begins).
        history: its update records (also after training, and for a member finished before a resume).
    """

    def __init__(self, config: RewiringConfig) -> None:
        self.config = config.validate()
        self.rewirer: Rewirer | None = None
        self._pending: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []

    def on_train_begin(self, model: nn.Module, ctx: TrainContext) -> None:
        if ctx.steps_per_epoch is None:
            raise ValueError(
                "rewiring needs the number of steps per epoch (T_end is a fraction of all steps); this loader "
                "has no length: pass a sized dataset or DataLoader"
            )
        total = ctx.config.epochs * ctx.steps_per_epoch
        self.rewirer = Rewirer(model, ctx.optimizer, self.config, total_steps=total)
        if self._pending is not None:
            self.rewirer.load_state_dict(self._pending)
            self._pending = None

    def on_step_end(self, model: nn.Module, ctx: TrainContext) -> None:
        assert self.rewirer is not None
        self.history.extend(self.rewirer.step(batch=ctx.batch))

    def on_train_end(self, model: nn.Module, ctx: TrainContext) -> None:
        if self.rewirer is not None:
            self.rewirer.close()

    def state_dict(self) -> dict[str, Any]:
        state = self.rewirer.state_dict() if self.rewirer is not None else self._pending
        return {"config": dataclasses.asdict(self.config), "rewirer": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_config = state.get("config")
        if saved_config is not None and _plain(saved_config) != _plain(dataclasses.asdict(self.config)):
            raise ValueError(
                "cannot resume: the rewiring settings differ from the checkpoint's "
                f"(saved {saved_config}, now {dataclasses.asdict(self.config)}); resume with the same --rewire"
            )
        saved = state.get("rewirer")
        if saved is None:
            return
        self.history = list(saved.get("history", []))
        if self.rewirer is not None:
            self.rewirer.load_state_dict(saved)
        else:
            self._pending = saved


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
