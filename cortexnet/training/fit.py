"""fit / evaluate: the one training loop every cortexnet model and experiment uses."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
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
from cortexnet.training.config import RESUMABLE_CHANGES, TrainConfig
from cortexnet.training.distributed import DistributedContext, distributed_env
from cortexnet.training.loggers import ProgressLog, logger_callbacks
from cortexnet.training.signals import REQUEUE_SIGNALS, StopSignals, requeue_slurm_job
from cortexnet.training.state import (
    CHECKPOINT_NAME,
    HISTORY_NAME,
    NonFiniteLossError,
    TrainContext,
    TrainingInterrupted,
    TrainState,
)

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
    "NonFiniteLossError",
    "TrainContext",
    "TrainState",
    "TrainingInterrupted",
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


def task_loss(logits: torch.Tensor, y: torch.Tensor, *, reduction: str = "mean") -> tuple[torch.Tensor, int]:
    """``(cross-entropy, number of scored targets)``: over the batch for class labels ``(B,)``, over the scored
    steps (targets other than :data:`IGNORE_INDEX`, e.g. a task's response period) for per-step outputs
    ``(B, T, C)`` with targets ``(B, T)``; the mean (``reduction="mean"``; a batch without scored steps has loss
    0 and no gradient) or the sum (``"sum"``, what data-parallel ranks add up)."""
    if (
        reduction == "mean" and logits.dim() == 2 and y.dim() == 1
    ):  # the paper's loss, exactly as it always was
        return F.cross_entropy(logits, y), len(y)
    scores, targets = _scores(logits, y)
    n = int((targets != IGNORE_INDEX).sum())
    total = F.cross_entropy(scores, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return (total if reduction == "sum" else total / max(n, 1)), n


def resolve_device(name: str) -> torch.device:
    """ "auto" → CUDA when available, else CPU; otherwise ``torch.device(name)`` (cpu, cuda, cuda:K, mps), checked to exist (raises
    ``ValueError`` naming the device and the fix). Cheap: it does not create a CUDA context."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:K") from exc
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(
            f"device {name!r} requested but Apple's MPS is not available here; use --device cpu or auto"
        )
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
        progress: show tqdm bars (they switch themselves off when output is not a terminal). Without bars
            progress is logged instead (logger ``cortexnet.training``): a line per epoch and at most every
            ``config.log_every_s`` seconds (:class:`~cortexnet.training.loggers.ProgressLog`).

    The loggers named in ``config.loggers`` are attached (:mod:`cortexnet.training.loggers`). While it runs in
    the main thread, SIGINT, SIGTERM and SIGUSR1 stop training at the next optimiser step with a checkpoint
    (:mod:`cortexnet.training.signals`); with ``config.checkpoint_every_steps`` checkpoints are also written
    within epochs. A resume from a checkpoint within an epoch skips the batches already done and continues
    bit-identically (on CPU).

    Returns:
        The final :class:`TrainState` (its ``history`` is also on disk when ``run_dir`` is given).

    Raises:
        NonFiniteLossError: the loss, or at a checkpoint the weights or optimiser state, became NaN/inf; the
            checkpoint on disk stays the last good one (the error names it).
        TrainingInterrupted: a signal stopped training; the checkpoint it wrote is named (with ``run_dir``).
    """
    config.validate()
    if config.early_stopping_patience is not None and val is None:
        raise ValueError(
            "early stopping needs a validation split (val_fraction > 0); it never uses the test set"
        )
    device = resolve_device(config.device)
    dctx = None
    if distributed_env():  # torchrun: one network, each rank a slice of every batch (training.distributed)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dctx = DistributedContext.from_env(device)
    model.to(device)
    if dctx is not None:
        dctx.check_identical(model)
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
    # Rank 0 alone writes (checkpoints, history); every rank reads a checkpoint to resume.
    ctx = TrainContext(model, optimizer, TrainState(), device, config,
                       run_path if dctx is None or dctx.is_main else None)  # fmt: skip
    user = list(callbacks)
    saver = Checkpointer(every=config.checkpoint_every, epochs=config.epochs, meta=meta or {},
                         data_generator=generator, data=data, callbacks=user)  # fmt: skip
    # Loggers and the text progress are not the user's callbacks: they keep no state in checkpoints.
    reporters = logger_callbacks(config.loggers)
    if not (progress and _is_terminal()):  # no progress bars: log lines instead
        reporters.append(ProgressLog(config.log_every_s))
    # Order at epoch ends: best-validation bookkeeping, then the user's callbacks, then the checkpoint.
    hooks: list[Callback] = [HistoryWriter(), EarlyStopping(config.early_stopping_patience), *user, *reporters,
                             saver]  # fmt: skip
    every_steps = config.checkpoint_every_steps

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

    def stop_if_signalled(catcher: StopSignals) -> None:
        """After a signal: checkpoint here (unless just written) and stop with TrainingInterrupted."""
        if catcher.signum is None:
            return
        st = ctx.state
        if run_path is not None and saver.saved_at != (st.epoch, st.epoch_step, st.step):
            saver.save(ctx)
        requeue = None
        if config.requeue and catcher.signum in REQUEUE_SIGNALS:
            requeue = requeue_slurm_job()
        raise TrainingInterrupted(
            catcher.name or str(catcher.signum), catcher.signum, epoch=st.epoch + (1 if st.epoch_step else 0),
            step=st.step, checkpoint=run_path / CHECKPOINT_NAME if run_path is not None else None,
            run_dir=run_path, requeue=requeue,
        )  # fmt: skip

    with StopSignals() as catcher:
        if not (resume and run_path is not None and _restore(ctx, run_path / CHECKPOINT_NAME, saver)):
            if run_path is not None:
                run_path.mkdir(parents=True, exist_ok=True)
            record(0.0, None, time.perf_counter())
        ctx.steps_per_epoch = data.n_batches()
        if config.lr_schedule != "constant" and ctx.steps_per_epoch is None:
            raise ValueError(
                f"lr_schedule {config.lr_schedule!r} needs the number of steps per epoch; this loader has no "
                "length"
            )
        for group in optimizer.param_groups:  # the schedule's reference; saved with the optimiser's state
            group.setdefault("initial_lr", group["lr"])
        for cb in hooks:
            cb.on_train_begin(model, ctx)
        state = ctx.state
        try:
            model.train()
            while state.epoch < config.epochs and not state.stopped_early:
                saver.begin_epoch()
                stop_if_signalled(catcher)  # a signal during the evaluation before this epoch
                t0 = time.perf_counter()
                order = data.index_batches(generator)
                n_batches = len(order) if order is not None else data.n_batches()
                eval_at = {max(1, min(n_batches - 1, round(f * n_batches))) for f in config.eval_fractions}
                # A resume within the epoch: the batches already done are skipped, the running loss restored.
                done = state.epoch_step
                loss_sum = torch.tensor(state.epoch_loss_sum, dtype=torch.float64, device=device)
                seen = state.epoch_scored
                remaining = _remaining_batches(data, order, done, saver.epoch_start)
                bar = tqdm(remaining, total=n_batches, initial=done, desc=f"epoch {state.epoch + 1}/{config.epochs}",
                           leave=False, disable=None if progress else True)  # fmt: skip
                try:
                    for i, (x, y) in enumerate(bar, start=done + 1):
                        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                        if dctx is None:
                            loss, scored = task_loss(model(x), y)
                        else:  # this rank's slice; gradients summed over ranks, divided by the global count
                            xl, yl = dctx.local_slice(x, y)
                            total, mine = task_loss(model(xl), yl, reduction="sum")
                            scored = int(dctx.total(mine))
                            loss = torch.tensor(
                                dctx.total(float(total.detach())) / max(scored, 1), device=device
                            )
                        if not torch.isfinite(loss):
                            raise ctx.non_finite(
                                f"training loss became {loss.item()}", state.epoch + 1, state.step + 1
                            )
                        optimizer.zero_grad(set_to_none=True)
                        if dctx is None:
                            loss.backward()
                        else:
                            total.backward()
                            dctx.reduce_gradients_(model, 1.0 / max(scored, 1))
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
                        state.epoch_step = i
                        loss_sum += loss.detach() * scored
                        seen += scored
                        ctx.batch, ctx.loss = (x, y), loss.detach()
                        for cb in hooks:
                            cb.on_step_end(model, ctx)
                        ctx.batch = ctx.loss = None
                        if i in eval_at and i < (n_batches or 0):
                            record(state.epoch + i / n_batches, None, t0)
                        # The step boundary: a checkpoint within the epoch on a signal or every N steps
                        # (not at the epoch's last step, whose checkpoint comes with the epoch's end).
                        due = every_steps is not None and state.step % every_steps == 0 and i != n_batches
                        if run_path is not None and (due or catcher.signum is not None):
                            state.epoch_loss_sum, state.epoch_scored = float(loss_sum), seen
                            now = time.perf_counter()
                            state.elapsed_s, t0 = state.elapsed_s + (now - t0), now
                            saver.save(ctx)
                        stop_if_signalled(catcher)
                finally:
                    bar.close()
                state.epoch += 1
                state.epoch_step, state.epoch_loss_sum, state.epoch_scored = 0, 0.0, 0
                state.elapsed_s = record(float(state.epoch), float(loss_sum) / max(seen, 1), t0)["elapsed_s"]
                for cb in hooks:
                    cb.on_epoch_end(model, ctx)
            stop_if_signalled(catcher)  # a signal during the last evaluation: its checkpoint is written
        finally:
            for cb in hooks:
                cb.on_train_end(model, ctx)
        if config.epochs == 0 or (run_path is not None and not (run_path / CHECKPOINT_NAME).exists()):
            saver.save(ctx)
    model.eval()
    return state


def _is_terminal() -> bool:
    """Whether progress bars would show: stderr (tqdm's stream) is a terminal."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _remaining_batches(
    data: Batches, order: list[torch.Tensor] | None, done: int, epoch_start: dict[str, Any] | None
) -> Any:
    """The epoch's batches after the first ``done`` (a resume within an epoch): index sets are sliced; a
    loader is iterated past them from torch's global random state at the epoch's start (what a loader without
    a generator of its own draws its order from when iterated), after which the current state is put back."""
    if not done:
        return data.epoch(order)
    if order is not None:
        return data.epoch(order[done:])
    batches_left = data.epoch(None)
    current = torch.get_rng_state()
    if epoch_start is not None and epoch_start.get("torch_rng_state") is not None:
        torch.set_rng_state(epoch_start["torch_rng_state"])
    try:
        for _ in range(done):
            if next(batches_left, None) is None:
                break
    finally:
        torch.set_rng_state(current)
    return batches_left


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
    saver.saved_at = (ctx.state.epoch, ctx.state.epoch_step, ctx.state.step)
    within = (
        f", {ctx.state.epoch_step} steps into epoch {ctx.state.epoch + 1}" if ctx.state.epoch_step else ""
    )
    log.info("resumed %s at epoch %d (step %d%s)", path, ctx.state.epoch, ctx.state.step, within)
    return True


def _check_resumable(ckpt: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """A run may only be resumed with the settings it started with (more epochs are allowed, and the settings of
    :data:`~cortexnet.training.config.RESUMABLE_CHANGES`, which do not change what is computed)."""
    # Fields added after a checkpoint was written count as their defaults (e.g. lr_schedule = "constant").
    saved = {**dataclasses.asdict(TrainConfig()), **dict(ckpt.get("train_config") or {})}
    now = dataclasses.asdict(config)
    for key in RESUMABLE_CHANGES:
        saved.pop(key, None)
        now.pop(key, None)
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now) if saved.get(k) != now.get(k)}
        raise CheckpointError(f"cannot resume {path}: training settings differ (saved, now): {diff}")
