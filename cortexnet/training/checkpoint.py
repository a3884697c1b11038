"""Checkpoints: everything needed to rebuild a model, probe it, or resume its training bit-exactly (CPU)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cortexnet.io import atomic_torch_save
from cortexnet.sparse import backend_hints

CHECKPOINT_FORMAT = "cortexnet.checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, of another format, or does not match the model."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict (format tags are added). Keys used by cortexnet:
    ``meta`` (model name, model config, n_inputs, n_classes, dataset spec), ``model_state``,
    ``optimizer_state``, ``train_config``, ``train_state``, ``data_generator_state``, ``callbacks``."""
    from cortexnet import __version__

    atomic_torch_save(
        path,
        {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "cortexnet_version": __version__,
         **payload},
    )  # fmt: skip


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a cortexnet checkpoint. Raises :class:`CheckpointError` with the path and the reason
    for a missing, truncated or foreign file. Loads with ``weights_only=True``: no code in the file runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # Not torch's advice to pass weights_only=False: that would let a crafted file run code.
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data: refused (loading them could run "
            "code from the file); it was not written by cortexnet"
        ) from exc
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        reason = " ".join(str(exc).split("\n")[0].split())[:200]
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {reason}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a cortexnet checkpoint (no format tag {CHECKPOINT_FORMAT!r}); "
            "pass a checkpoint.pt written by cortexnet's trainer"
        )
    if ckpt.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this cortexnet "
            f"({CHECKPOINT_VERSION}); upgrade cortexnet"
        )
    return ckpt


def model_from_checkpoint(
    path_or_ckpt: str | os.PathLike | dict[str, Any], *, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a checkpoint (from its ``meta``) and load its weights.

    Returns ``(model, checkpoint_dict)``; the model is in eval mode on ``map_location``.
    """
    from cortexnet.models import MODELS, build_model

    ckpt = (
        path_or_ckpt
        if isinstance(path_or_ckpt, dict)
        else load_checkpoint(path_or_ckpt, map_location=map_location)
    )
    meta = ckpt.get("meta") or {}
    name = meta.get("model")
    if name not in MODELS:
        raise CheckpointError(f"checkpoint names model {name!r}; known models: {', '.join(MODELS.names())}")
    saved_hints = meta.get("backend_hints") or {}
    # "auto" weights are rebuilt with the training batch size for the device the model is loaded to; whichever
    # backend they pick, the saved weights load into it (SparseWeight converts layouts on load).
    with backend_hints(batch=saved_hints.get("batch"), device=torch.device(map_location).type):
        model = build_model(name, meta["model_config"], meta["n_inputs"], meta["n_classes"])
    try:
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint weights do not fit model {name!r}: {exc}") from exc
    return model.to(map_location).eval(), ckpt
