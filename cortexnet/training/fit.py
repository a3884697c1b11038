"""fit / evaluate: the one training loop every cortexnet model and experiment uses."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cortexnet.data import IGNORE_INDEX, Batches, batches, model_device, model_dtype
from cortexnet.training.callbacks import Callback, Checkpointer, EarlyStopping, HistoryWriter
from cortexnet.training.checkpoint import CheckpointError, load_checkpoint, load_model_state
from cortexnet.training.config import TrainConfig
from cortexnet.training.state import (
    CHECKPOINT_NAME,
    HISTORY_NAME,
    NonFiniteLossError,
    TrainContext,
    TrainState,
)

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
    "NonFiniteLossError",
    "TrainContext",
    "TrainState",
    "evaluate",
    "fit",
    "make_optimizer",
    "resolve_device",
    "task_loss",
]


def _scores(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores (M, C), targets (M,))``: class logits ``(B, C)`` with labels ``(B,)``, or per-step logits
    ``(B, T, C)`` with per-step targets ``(B, T)`` (:data:`IGNORE_INDEX` where a step is not scored)."""
    if logits.dim() == 3:
        if y.shape != logits.shape[:2]:
            raise ValueError(
                f"a model with an output at every step, (B, T, C) = {tuple(logits.shape)}, needs per-step targets "
                f"(B, T) = {tuple(logits.shape[:2])}, got {tuple(y.shape)}; use readout 'last' for one label per "
                "sequence"
            )
        return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    if y.dim() != 1:
        raise ValueError(
            f"per-step targets {tuple(y.shape)} need a model with an output at every step (readout 'all'), got "
            f"logits {tuple(logits.shape)}"
        )
    return logits, y


def task_loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(mean cross-entropy, number of scored targets)``: over the batch for class labels ``(B,)``, over the
    scored steps (targets other than :data:`IGNORE_INDEX`, e.g. a task's response period) for per-step outputs
    ``(B, T, C)`` with targets ``(B, T)``. A batch without scored steps has loss 0 (and no gradient)."""
    if logits.dim() == 2 and y.dim() == 1:  # the paper's classification: exactly the loss it always was
        return F.cross_entropy(logits, y), len(y)
    scores, targets = _scores(logits, y)
    n = int((targets != IGNORE_INDEX).sum())
    total = F.cross_entropy(scores, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / max(n, 1), n


def resolve_device(name: str) -> torch.device:
    """ "auto" → CUDA when available, else CPU; otherwise ``torch.device(name)``, checked to exist (raises
    ``ValueError`` naming the device and the fix). Cheap: it does not create a CUDA context."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:K") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device {name!r} requested but only {count} CUDA device(s) exist (cuda:0 ... cuda:{count - 1})"
            )
    return dev


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named in ``config`` (Adam by default, as in the paper)."""
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.RMSprop(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Any, *, batch_size: int = 500, device: torch.device | str | None = None
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset``: a ``TensorDataset``, any map-style
    ``Dataset`` of ``(x (T, F), y)`` or a ``DataLoader`` (see :func:`cortexnet.data.batching`). With per-step
    outputs and targets ``(T,)`` per sequence both are over the scored steps only (``n`` counts them).

    Computes on ``device`` (default: the model's); ``dataset`` may also be prepared :class:`Batches` (what
    :func:`fit` passes, so a dataset is converted once per run, not per evaluation). Returns ``{"loss": float, "accuracy": float in [0, 1],
    "n": int}``. The model's train/eval mode is restored.
    """
    device = model_device(model) if device is None else torch.device(device)
    data = (
        dataset if isinstance(dataset, Batches) else _batches(model, dataset, batch_size, "evaluation data")
    )
    was_training = model.training
    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    try:
        for x, y in data.epoch():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            scores, targets = _scores(model(x), y)
            scored = targets != IGNORE_INDEX
            total_loss += float(F.cross_entropy(scores, targets, ignore_index=IGNORE_INDEX, reduction="sum"))
            correct += int(((scores.argmax(dim=1) == targets) & scored).sum())
            n += int(scored.sum())
    finally:
        model.train(was_training)
    return {"loss": total_loss / n if n else math.nan, "accuracy": correct / n if n else math.nan, "n": n}


def fit(
    model: nn.Module,
    train: Any,
    test: Any | None,
    config: TrainConfig,
    *,
    val: Any | None = None,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    callbacks: Sequence[Callback] = (),
    meta: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainState:
    """Train ``model`` with cross-entropy (Adam, lr 1e-3, batch 100 by default: Fruengel & Oberlaender 2025),
    evaluating before training (epoch 0), at ``eval_fractions`` of every epoch and after every epoch. The mask
    and Dale's law are re-imposed inside every ``optimizer.step()`` (:mod:`cortexnet.sparse.constraints`).

    Args:
        model: maps ``(B, T, F)`` to logits ``(B, C)``.
        train, test, val: ``TensorDataset``, map-style ``Dataset`` of ``(x (T, F), y)`` or ``DataLoader``
            (a loader keeps its own batches and order; otherwise batches of ``config.batch_size`` in a
            seeded order). ``test`` (optional) is only ever evaluated; early stopping looks at ``val`` alone.
        config: :class:`TrainConfig`.
        run_dir: folder for ``checkpoint.pt`` and ``history.jsonl``. None: nothing is written.
        resume: continue from ``run_dir/checkpoint.pt`` when present; ends with the same metrics as an
            uninterrupted run on CPU (model, optimiser, data order and callbacks are restored).
        optimizer: any torch optimiser over ``model``'s parameters (default: from ``config``).
        callbacks: :class:`Callback` hooks; each gets ``(model, ctx)`` with the one :class:`TrainContext`.
        meta: saved in checkpoints to rebuild the model later (model name/config, dataset spec, ...).
        progress: show tqdm bars (they switch themselves off when output is not a terminal).

    Returns:
        The final :class:`TrainState` (its ``history`` is also on disk when ``run_dir`` is given).

    Raises:
        NonFiniteLossError: the loss, or at a checkpoint the weights or optimiser state, became NaN/inf; the
            checkpoint on disk stays the last good one (the error names it).
    """
    config.validate()
    if config.early_stopping_patience is not None and val is None:
        raise ValueError(
            "early stopping needs a validation split (val_fraction > 0); it never uses the test set"
        )
    device = resolve_device(config.device)
    model.to(device)
    data = _batches(model, train, config.batch_size, "train")
    if config.eval_fractions and data.n_batches() is None:
        raise ValueError(
            "eval_fractions need a DataLoader with a length (batches per epoch); this one has none"
        )
    eval_size = max(config.batch_size, 100)
    splits = {k: _batches(model, d, eval_size, k) for k, d in (("val", val), ("test", test)) if d is not None}
    optimizer = optimizer or make_optimizer(model.parameters(), config)
    generator = torch.Generator().manual_seed(config.data_seed)
    run_path = Path(run_dir) if run_dir is not None else None
    ctx = TrainContext(model, optimizer, TrainState(), device, config, run_path)
    user = list(callbacks)
    saver = Checkpointer(every=config.checkpoint_every, epochs=config.epochs, meta=meta or {},
                         data_generator=generator, data=data, callbacks=user)  # fmt: skip
    # Order at epoch ends: best-validation bookkeeping, then the user's callbacks, then the checkpoint.
    hooks: list[Callback] = [HistoryWriter(), EarlyStopping(config.early_stopping_patience), *user, saver]

    def record(epoch: float, train_loss: float | None, t0: float) -> dict[str, Any]:
        rec: dict[str, Any] = {"epoch": epoch, "step": ctx.state.step, "train_loss": train_loss}
        for split in ("val", "test"):
            r = evaluate(model, splits[split], device=device) if split in splits else {}
            rec.update({f"{split}_loss": r.get("loss"), f"{split}_acc": r.get("accuracy")})
        rec["elapsed_s"] = ctx.state.elapsed_s + (time.perf_counter() - t0)
        ctx.state.history.append(rec)
        for cb in hooks:
            cb.on_evaluation(model, ctx, rec)
        model.train()
        return rec

    if not (resume and run_path is not None and _restore(ctx, run_path / CHECKPOINT_NAME, saver)):
        if run_path is not None:
            run_path.mkdir(parents=True, exist_ok=True)
        record(0.0, None, time.perf_counter())
    ctx.steps_per_epoch = data.n_batches()
    if config.lr_schedule != "constant" and ctx.steps_per_epoch is None:
        raise ValueError(
            f"lr_schedule {config.lr_schedule!r} needs the number of steps per epoch; this loader has no length"
        )
    for group in optimizer.param_groups:  # the schedule's reference; saved with the optimiser's state
        group.setdefault("initial_lr", group["lr"])
    for cb in hooks:
        cb.on_train_begin(model, ctx)
    state = ctx.state
    try:
        model.train()
        while state.epoch < config.epochs and not state.stopped_early:
            t0 = time.perf_counter()
            order = data.index_batches(generator)
            n_batches = len(order) if order is not None else data.n_batches()
            eval_at = {max(1, min(n_batches - 1, round(f * n_batches))) for f in config.eval_fractions}
            loss_sum, seen = torch.zeros((), dtype=torch.float64, device=device), 0
            bar = tqdm(data.epoch(order), total=n_batches, desc=f"epoch {state.epoch + 1}/{config.epochs}",
                       leave=False, disable=None if progress else True)  # fmt: skip
            for i, (x, y) in enumerate(bar, start=1):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss, scored = task_loss(model(x), y)
                if not torch.isfinite(loss):
                    raise ctx.non_finite(
                        f"training loss became {loss.item()}", state.epoch + 1, state.step + 1
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for cb in hooks:
                    cb.on_after_backward(model, ctx)
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                if config.lr_schedule != "constant":
                    factor = config.lr_factor(state.step, config.epochs * (ctx.steps_per_epoch or 0))
                    for group in optimizer.param_groups:
                        group["lr"] = group["initial_lr"] * factor
                optimizer.step()  # re-imposes the mask and Dale's law (step post-hook)
                state.step += 1
                loss_sum += loss.detach() * scored
                seen += scored
                ctx.batch = (x, y)
                for cb in hooks:
                    cb.on_step_end(model, ctx)
                ctx.batch = None
                if i in eval_at and i < (n_batches or 0):
                    record(state.epoch + i / n_batches, None, t0)
            state.epoch += 1
            state.elapsed_s = record(float(state.epoch), float(loss_sum) / max(seen, 1), t0)["elapsed_s"]
            for cb in hooks:
                cb.on_epoch_end(model, ctx)
    finally:
        for cb in hooks:
            cb.on_train_end(model, ctx)
    if config.epochs == 0 or (run_path is not None and not (run_path / CHECKPOINT_NAME).exists()):
        saver.save(ctx)
    model.eval()
    return state


def _batches(model: nn.Module, data: Any, batch_size: int, what: str) -> Batches:
    """``data`` as batches in the model's dtype, checked against its ``n_inputs`` (when it has one)."""
    return batches(data, batch_size=batch_size, dtype=model_dtype(model),
                   n_features=getattr(model, "n_inputs", None), what=what)  # fmt: skip


def _restore(ctx: TrainContext, path: Path, saver: Checkpointer) -> bool:
    """Load a checkpoint into the run (model, optimiser, state, data order, random states, callbacks);
    False when there is none. Refuses a checkpoint of another model."""
    if not path.exists():
        return False
    ckpt = load_checkpoint(path, map_location=ctx.device)
    _check_resumable(ckpt, ctx.config, path)
    saver.check_compatible(ckpt, ctx.model, path)
    load_model_state(ctx.model, ckpt["model_state"], source=path)
    ctx.optimizer.load_state_dict(ckpt["optimizer_state"])
    ctx.state = TrainState(**ckpt["train_state"])
    saver.restore_random_state(ckpt)
    saver.restore_callbacks(ckpt)
    HistoryWriter().on_evaluation(ctx.model, ctx, {})  # drop evaluations made after the checkpoint
    ctx.last_good.update(path=path, epoch=ctx.state.epoch)
    log.info("resumed %s at epoch %d (step %d)", path, ctx.state.epoch, ctx.state.step)
    return True


def _check_resumable(ckpt: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """A run may only be resumed with the settings it started with (more epochs are allowed)."""
    # Fields added after a checkpoint was written count as their defaults (e.g. lr_schedule = "constant").
    saved = {**dataclasses.asdict(TrainConfig()), **dict(ckpt.get("train_config") or {})}
    now = dataclasses.asdict(config)
    for key in ("epochs", "device"):
        saved.pop(key, None)
        now.pop(key, None)
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now) if saved.get(k) != now.get(k)}
        raise CheckpointError(f"cannot resume {path}: training settings differ (saved, now): {diff}")
