"""Training callbacks: the seam of :func:`cortexnet.training.fit`. Observers (gradient recorders), actors
(rewiring, early stopping) and writers (history, checkpoints) are all callbacks.

Every hook receives ``(model, ctx)``: ``ctx`` is the one :class:`~cortexnet.training.state.TrainContext`
(model, optimiser, state, device, config, run folder); ``model`` is ``ctx.model``, passed first for brevity.
Per optimiser step the hooks run in this order: ``on_after_backward`` (gradients populated, before the step),
then ``optimizer.step()`` — which re-imposes the mask and Dale's law (:mod:`cortexnet.sparse.constraints`) —
then ``on_step_end``: **the point where rewiring runs**, after the step and the constraints. Whatever a
callback needs after a resume goes in its :meth:`~Callback.state_dict` (saved in every checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import torch
from torch import nn

from cortexnet.io import atomic_write_jsonl
from cortexnet.training.checkpoint import CheckpointError, save_checkpoint
from cortexnet.training.state import CHECKPOINT_NAME, HISTORY_NAME, TrainContext

log = logging.getLogger(__name__)


class Callback:
    """Base class; override any hook. ``ctx`` is the :class:`~cortexnet.training.state.TrainContext`.

    ``on_train_end`` always runs last, also when training ends with an exception.
    """

    def on_train_begin(self, model: nn.Module, ctx: TrainContext) -> None:
        """Before the first (or, on resume, the next) epoch."""

    def on_after_backward(self, model: nn.Module, ctx: TrainContext) -> None:
        """After ``loss.backward()`` and before ``optimizer.step()``."""

    def on_step_end(self, model: nn.Module, ctx: TrainContext) -> None:
        """After the optimiser step and the constraints (the rewiring point)."""

    def on_evaluation(self, model: nn.Module, ctx: TrainContext, record: dict) -> None:
        """After every evaluation (epoch 0, fractional points, epoch ends) with its history record."""

    def on_epoch_end(self, model: nn.Module, ctx: TrainContext) -> None:
        """After the epoch-end evaluation and before the epoch's checkpoint, so that what :meth:`state_dict`
        returns (saved in that checkpoint) already includes the epoch just finished."""

    def on_train_end(self, model: nn.Module, ctx: TrainContext) -> None:
        """When training stops for any reason (finished, early stop, an exception): release what the
        callback holds (e.g. hooks it registered)."""

    def state_dict(self) -> dict:
        """What a resumed run needs to continue this callback (saved in the checkpoint)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""


class HistoryWriter(Callback):
    """Rewrites ``run_dir/history.jsonl`` atomically after every evaluation (one record per line)."""

    def on_evaluation(self, model: nn.Module, ctx: TrainContext, record: dict) -> None:
        if ctx.run_dir is not None:
            atomic_write_jsonl(ctx.run_dir / HISTORY_NAME, ctx.state.history)


class EarlyStopping(Callback):
    """Tracks the best validation accuracy (``state.best_val_acc``, ``best_epoch``) at every epoch end and, with
    ``patience``, stops training after that many epoch-end evaluations without a new best. Its state lives in
    :class:`~cortexnet.training.state.TrainState` (so it is in every checkpoint). Never looks at the test set."""

    def __init__(self, patience: int | None = None) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"early stopping patience must be >= 1 or None, got {patience}")
        self.patience = patience

    def on_epoch_end(self, model: nn.Module, ctx: TrainContext) -> None:
        state = ctx.state
        acc = state.history[-1].get("val_acc") if state.history else None
        if acc is None:
            return
        if state.best_val_acc is None or acc > state.best_val_acc:
            state.best_val_acc, state.best_epoch, state.evals_since_best = acc, state.epoch, 0
        else:
            state.evals_since_best += 1
        if self.patience is not None and state.evals_since_best >= self.patience:
            state.stopped_early = True
            log.info(
                "early stop at epoch %d: no validation improvement for %d epochs", state.epoch, self.patience
            )


class Checkpointer(Callback):
    """Writes ``run_dir/checkpoint.pt`` every ``every`` epochs, at the last epoch and on an early stop: model,
    optimiser, :class:`TrainState`, the data-order generator and the ``callbacks``' states — everything a bit-
    exact resume needs. A checkpoint is written only when every weight and optimiser state is finite; otherwise
    training stops with :class:`~cortexnet.training.state.NonFiniteLossError` naming the last good one.

    Within an epoch (``state.epoch_step`` > 0: ``fit`` on a signal or every ``checkpoint_every_steps``) the
    checkpoint holds the random states the epoch *started* from (recorded by :meth:`begin_epoch`): the data-order
    generator, the loader's generator and torch's global generator as a loader drew from it
    (``epoch_start_torch_rng_state``), beside the current global state. A resume draws the epoch's order again
    from them and skips the ``epoch_step`` batches already done."""

    def __init__(
        self,
        *,
        every: int,
        epochs: int,
        meta: dict[str, Any],
        data_generator: torch.Generator,
        callbacks: list[Callback],
        data: Any = None,
    ) -> None:
        self.every, self.epochs, self.meta = every, epochs, meta
        self.data_generator, self.callbacks, self.data = data_generator, callbacks, data
        #: The random states of the epoch in progress at its start (:meth:`begin_epoch`).
        self.epoch_start: dict[str, Any] | None = None
        #: ``(epoch, epoch_step, step)`` of the last checkpoint written or resumed from.
        self.saved_at: tuple[int, int, int] | None = None
        self._resumed_torch_state: torch.Tensor | None = None

    def begin_epoch(self) -> None:
        """Record the random states the epoch starts from (before its order is drawn). After a resume within
        an epoch, torch's global state at the epoch's start is the checkpoint's, not the current one."""
        torch_state = self._resumed_torch_state
        self._resumed_torch_state = None
        self.epoch_start = {
            "data_generator_state": self.data_generator.get_state(),
            "loader_state": self.data.state_dict() if self.data is not None else {},
            "torch_rng_state": torch_state if torch_state is not None else torch.get_rng_state(),
        }

    def on_epoch_end(self, model: nn.Module, ctx: TrainContext) -> None:
        st = ctx.state
        if st.epoch % self.every == 0 or st.epoch == self.epochs or st.stopped_early:
            self.save(ctx)

    def save(self, ctx: TrainContext) -> None:
        """Write the checkpoint now (when the run has a folder)."""
        if ctx.run_dir is None:
            return
        st = ctx.state
        if not _all_finite(ctx.model.parameters()) or not _all_finite(_optimizer_tensors(ctx.optimizer)):
            # Never overwrite the last good checkpoint with a broken network.
            raise ctx.non_finite(
                "weights or optimiser state became NaN/inf (checkpoint not written)",
                st.epoch + (1 if st.epoch_step else 0),
                st.step,
            )
        path = ctx.run_dir / CHECKPOINT_NAME
        # Within an epoch: the states it started from (a resume draws its order again, then skips what is done).
        start = self.epoch_start if st.epoch_step and self.epoch_start is not None else None
        if start is None:
            start = {
                "data_generator_state": self.data_generator.get_state(),
                "loader_state": self.data.state_dict() if self.data is not None else {},
                "torch_rng_state": None,
            }
        save_checkpoint(
            path,
            {
                "meta": self.meta,
                "train_config": dataclasses.asdict(ctx.config),
                "model_state": ctx.model.state_dict(),
                "optimizer_state": ctx.optimizer.state_dict(),
                "train_state": dataclasses.asdict(ctx.state),
                "data_generator_state": start["data_generator_state"],
                # A DataLoader's own shuffling, and anything drawn from torch's global generator (a loader
                # without a generator of its own draws its seed there), continue exactly after a resume.
                "loader_state": start["loader_state"],
                "torch_rng_state": torch.get_rng_state(),
                "epoch_start_torch_rng_state": start["torch_rng_state"],
                "cuda_rng_states": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
                "model_signature": model_signature(ctx.model),
                "callbacks": [cb.state_dict() for cb in self.callbacks],
                "callback_types": [_qualname(cb) for cb in self.callbacks],
            },
        )
        ctx.last_good.update(path=path, epoch=st.epoch)
        self.saved_at = (st.epoch, st.epoch_step, st.step)

    def check_compatible(self, ckpt: dict[str, Any], model: nn.Module, path: Any) -> None:
        """Raise :class:`~cortexnet.training.CheckpointError` unless ``ckpt`` was written for this model (its
        class and configuration: a resume never swaps in another topology or size)."""
        saved = ckpt.get("model_signature")
        if saved is None:  # an older checkpoint
            return
        saved, now = _plain(saved), _plain(model_signature(model))
        if saved != now:
            config_s, config_n = saved.get("config") or {}, now.get("config") or {}
            diff = {k: (config_s.get(k), config_n.get(k)) for k in sorted(set(config_s) | set(config_n))
                    if config_s.get(k) != config_n.get(k)}  # fmt: skip
            if saved.get("class") != now.get("class"):
                diff["class"] = (saved.get("class"), now.get("class"))
            raise CheckpointError(f"cannot resume {path}: it holds another model (saved, now): {diff}")

    def restore_callbacks(self, ckpt: dict[str, Any]) -> None:
        """Give the run's callbacks their saved states (:func:`restore_callback_states`)."""
        restore_callback_states(self.callbacks, ckpt)

    def restore_random_state(self, ckpt: dict[str, Any]) -> None:
        """Put the data order and the random generators back where the checkpoint left them."""
        self.data_generator.set_state(ckpt["data_generator_state"].cpu())
        if self.data is not None:
            self.data.load_state_dict(ckpt.get("loader_state") or {})
        if ckpt.get("torch_rng_state") is not None:
            torch.set_rng_state(ckpt["torch_rng_state"].cpu())
        start = ckpt.get("epoch_start_torch_rng_state")
        self._resumed_torch_state = start.cpu() if start is not None else None
        cuda = ckpt.get("cuda_rng_states")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([t.cpu() for t in cuda])


def restore_callback_states(callbacks: list[Callback], ckpt: dict[str, Any]) -> None:
    """Give each callback its state saved in ``ckpt`` — only where the callback at that position has the type
    that saved it (a state never lands on another kind of callback); the others start afresh, with a log line."""
    states = ckpt.get("callbacks", [])
    types = ckpt.get("callback_types") or [None] * len(states)
    for i, cb in enumerate(callbacks):
        if i < len(states) and types[i] in (None, _qualname(cb)):
            cb.load_state_dict(states[i])
        else:
            log.warning("resume: callback %d (%s) has no saved state of its kind; it starts afresh", i,
                        _qualname(cb))  # fmt: skip


def model_signature(model: nn.Module) -> dict[str, Any]:
    """What identifies a model for a resume: its class and, when it has one, its configuration dataclass
    (cortexnet's models: topology, sizes, seeds, ...)."""
    config = getattr(model, "config", None)
    return {
        "class": _qualname(model),
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None,
    }


def _plain(obj: Any) -> Any:
    """JSON-comparable form: tuples as lists, tensors as (CPU) lists, whatever device they were loaded to."""

    def default(o: Any) -> Any:
        return o.detach().cpu().tolist() if torch.is_tensor(o) else str(o)

    return json.loads(json.dumps(obj, sort_keys=True, default=default))


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _all_finite(tensors) -> bool:
    """Whether every floating-point tensor in ``tensors`` is free of NaN and inf (one flag per tensor, moved
    to the CPU and combined; a per-epoch check, not on the per-step path)."""
    flags = [torch.isfinite(t).all() for t in tensors if torch.is_tensor(t) and t.is_floating_point()]
    return bool(torch.stack([f.to("cpu") for f in flags]).all()) if flags else True


def _optimizer_tensors(optimizer: torch.optim.Optimizer):
    for per_param in optimizer.state.values():
        for value in per_param.values():
            if torch.is_tensor(value):
                yield value


__all__ = ["Callback", "Checkpointer", "EarlyStopping", "HistoryWriter"]
