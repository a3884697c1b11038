"""fit / evaluate: the one training loop every cortexnet model and experiment uses."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from cortexnet.io import atomic_write_jsonl
from cortexnet.layers import apply_constraints
from cortexnet.training.callbacks import Callback
from cortexnet.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cortexnet.training.config import TrainConfig

log = logging.getLogger(__name__)

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


@dataclass
class TrainState:
    """Progress of one training run; saved in every checkpoint.

    ``history`` holds one record per evaluation: ``epoch`` (float, fractional for within-epoch points),
    ``step``, ``train_loss`` (plain mean cross-entropy over the epoch's batches; None at epoch 0 and at
    fractional points), ``val_loss``/``val_acc`` (None without a validation split), ``test_loss``/``test_acc``,
    ``elapsed_s`` (training wall time so far).
    """

    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float | None = None
    best_epoch: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False


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
    model: nn.Module, dataset: TensorDataset, *, batch_size: int = 500, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset`` (tensors x ``(n, T, F)``, y ``(n,)``).

    Returns ``{"loss": float, "accuracy": float in [0, 1], "n": int}``. The model's train/eval mode is restored.
    """
    x_all, y_all = dataset.tensors[:2]
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for start in range(0, len(y_all), batch_size):
            x = x_all[start : start + batch_size].to(device, non_blocking=True)
            y = y_all[start : start + batch_size].to(device, non_blocking=True)
            logits = model(x)
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
    finally:
        model.train(was_training)
    n = len(y_all)
    return {"loss": total_loss / n if n else math.nan, "accuracy": correct / n if n else math.nan, "n": n}


def fit(
    model: nn.Module,
    train: TensorDataset,
    test: TensorDataset,
    config: TrainConfig,
    *,
    val: TensorDataset | None = None,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
    callbacks: Sequence[Callback] = (),
    meta: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainState:
    """Train ``model`` with cross-entropy, evaluating before training (epoch 0), at ``eval_fractions`` of
    every epoch and after every epoch; apply every constraint (mask, Dale's law) after every optimiser step.

    Args:
        model: maps ``(B, T, F)`` to logits ``(B, C)``.
        train, test, val: TensorDatasets (x float32 ``(n, T, F)``, y int64 ``(n,)``). The test set is only
            ever evaluated; early stopping looks at ``val`` alone.
        config: :class:`TrainConfig`.
        run_dir: folder for ``checkpoint.pt`` (every ``checkpoint_every`` epochs, and at the end) and
            ``history.jsonl`` (rewritten atomically after every evaluation). None: nothing is written.
        resume: continue from ``run_dir/checkpoint.pt`` when present; ends with the same metrics as an
            uninterrupted run on CPU (model, optimiser, data order and callbacks are restored).
        optimizer: any torch optimiser over ``model``'s parameters (default: from ``config``).
        callbacks: :class:`Callback` hooks (e.g. gradient recorders).
        meta: saved in checkpoints to rebuild the model later (model name/config, dataset spec, ...).
        progress: show tqdm bars (they switch themselves off when output is not a terminal).

    Returns:
        The final :class:`TrainState` (its ``history`` is also on disk when ``run_dir`` is given).

    Raises:
        NonFiniteLossError: the loss, or at a checkpoint the weights or optimiser state, became NaN/inf; the
            checkpoint on disk stays the last good one (the error names it, its epoch, and where training
            stopped).
    """
    config.validate()
    if config.early_stopping_patience is not None and val is None:
        raise ValueError(
            "early stopping needs a validation split (val_fraction > 0); it never uses the test set"
        )
    device = resolve_device(config.device)
    model.to(device)
    optimizer = optimizer or make_optimizer(model.parameters(), config)
    generator = torch.Generator().manual_seed(config.data_seed)
    run_path = Path(run_dir) if run_dir is not None else None
    ckpt_path = run_path / CHECKPOINT_NAME if run_path else None
    state = TrainState()
    # The last checkpoint this call wrote or resumed from, and its epoch (a checkpoint left in run_dir by an
    # earlier, unrelated call is not "good" for this run).
    last_good: dict[str, Any] = {"path": None, "epoch": None}

    def write_history() -> None:
        if run_path is not None:
            atomic_write_jsonl(run_path / HISTORY_NAME, state.history)

    def non_finite(what: str, epoch: int, step: int) -> NonFiniteLossError:
        where = (
            f"last good checkpoint: {last_good['path']} (epoch {last_good['epoch']})"
            if last_good["path"] is not None
            else "no good checkpoint was written"
        )
        return NonFiniteLossError(
            f"{what} at epoch {epoch}, step {step}; {where} (try a lower --lr)",
            epoch=epoch,
            step=step,
            checkpoint=last_good["path"],
        )

    def checkpoint() -> None:
        if ckpt_path is None:
            return
        if not _all_finite(model.parameters()) or not _all_finite(_optimizer_tensors(optimizer)):
            # Never overwrite the last good checkpoint with a broken network.
            raise non_finite(
                "weights or optimiser state became NaN/inf (checkpoint not written)", state.epoch, state.step
            )
        save_checkpoint(
            ckpt_path,
            {
                "meta": meta or {},
                "train_config": dataclasses.asdict(config),
                "model_state": model.state_dict(),
                "optimizer_state": optimizer.state_dict(),
                "train_state": dataclasses.asdict(state),
                "data_generator_state": generator.get_state(),
                "callbacks": [cb.state_dict() for cb in callbacks],
            },
        )
        last_good.update(path=ckpt_path, epoch=state.epoch)

    def record(epoch: float, train_loss: float | None, t0: float) -> dict[str, Any]:
        rec: dict[str, Any] = {"epoch": epoch, "step": state.step, "train_loss": train_loss}
        if val is not None:
            v = evaluate(model, val, batch_size=max(config.batch_size, 100), device=device)
            rec.update(val_loss=v["loss"], val_acc=v["accuracy"])
        else:
            rec.update(val_loss=None, val_acc=None)
        t = evaluate(model, test, batch_size=max(config.batch_size, 100), device=device)
        rec.update(test_loss=t["loss"], test_acc=t["accuracy"])
        rec["elapsed_s"] = state.elapsed_s + (time.perf_counter() - t0)
        state.history.append(rec)
        write_history()
        for cb in callbacks:
            cb.on_evaluation(model, state, rec)
        return rec

    if resume and ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _check_resumable(ckpt, config, ckpt_path)
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        state = TrainState(**ckpt["train_state"])
        generator.set_state(ckpt["data_generator_state"].cpu())
        for cb, cb_state in zip(callbacks, ckpt.get("callbacks", []), strict=False):
            cb.load_state_dict(cb_state)
        write_history()  # drop evaluations made after the checkpoint by the interrupted process
        last_good.update(path=ckpt_path, epoch=state.epoch)
        log.info("resumed %s at epoch %d (step %d)", ckpt_path, state.epoch, state.step)
    else:
        if run_path is not None:
            run_path.mkdir(parents=True, exist_ok=True)
        record(0.0, None, time.perf_counter())

    x_train, y_train = train.tensors[:2]
    n_train = len(y_train)
    for cb in callbacks:
        cb.on_train_begin(model, state)
    try:
        model.train()
        while state.epoch < config.epochs and not state.stopped_early:
            t0 = time.perf_counter()
            batches = torch.randperm(n_train, generator=generator).split(config.batch_size)
            eval_at = {max(1, min(len(batches) - 1, round(f * len(batches)))) for f in config.eval_fractions}
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            bar = tqdm(
                batches,
                desc=f"epoch {state.epoch + 1}/{config.epochs}",
                leave=False,
                disable=None if progress else True,
            )
            for i, idx in enumerate(bar, start=1):
                x = x_train[idx].to(device, non_blocking=True)
                y = y_train[idx].to(device, non_blocking=True)
                loss = F.cross_entropy(model(x), y)
                if not torch.isfinite(loss):
                    raise non_finite(f"training loss became {loss.item()}", state.epoch + 1, state.step + 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for cb in callbacks:
                    cb.on_after_backward(model, state)
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                apply_constraints(model)
                state.step += 1
                loss_sum += loss.detach() * len(idx)
                for cb in callbacks:
                    cb.on_step_end(model, state)
                if i in eval_at and i < len(batches):
                    record(state.epoch + i / len(batches), None, t0)
                    model.train()
            state.epoch += 1
            rec = record(float(state.epoch), float(loss_sum) / n_train, t0)
            state.elapsed_s = rec["elapsed_s"]
            model.train()
            if val is not None:
                if state.best_val_acc is None or rec["val_acc"] > state.best_val_acc:
                    state.best_val_acc, state.best_epoch, state.evals_since_best = (
                        rec["val_acc"],
                        state.epoch,
                        0,
                    )
                else:
                    state.evals_since_best += 1
                patience = config.early_stopping_patience
                if patience is not None and state.evals_since_best >= patience:
                    state.stopped_early = True
                    log.info(
                        "early stop at epoch %d: no validation improvement for %d epochs",
                        state.epoch,
                        patience,
                    )
            # Callbacks first, so that the state they save in the checkpoint includes the epoch just finished
            # (a resumed run then continues their records exactly where the checkpoint left off).
            for cb in callbacks:
                cb.on_epoch_end(model, state)
            if (
                state.epoch % config.checkpoint_every == 0
                or state.epoch == config.epochs
                or state.stopped_early
            ):
                checkpoint()
    finally:
        for cb in callbacks:
            cb.on_train_end(model, state)
    if config.epochs == 0 or (ckpt_path is not None and not ckpt_path.exists()):
        checkpoint()
    model.eval()
    return state


def _check_resumable(ckpt: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """A run may only be resumed with the settings it started with (more epochs are allowed)."""
    saved = dict(ckpt.get("train_config") or {})
    now = dataclasses.asdict(config)
    for key in ("epochs", "device"):
        saved.pop(key, None)
        now.pop(key, None)
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now) if saved.get(k) != now.get(k)}
        raise CheckpointError(f"cannot resume {path}: training settings differ (saved, now): {diff}")
