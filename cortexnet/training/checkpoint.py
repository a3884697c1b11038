"""Checkpoints: everything needed to rebuild a model, probe it, or resume its training bit-exactly (CPU)."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cortexnet.io import atomic_torch_save
from cortexnet.layers import sparse_weights
from cortexnet.sparse import backend_hints

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cortexnet.checkpoint"
#: 2: the payload carries a sha256 ``checksum`` verified on load (version-1 files load unverified, with a warning).
CHECKPOINT_VERSION = 2
CHECKSUM_KEY = "checksum"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, of another format, or does not match the model."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict (format tags are added). Keys used by cortexnet:
    ``meta`` (model name, model config, n_inputs, n_classes, dataset spec), ``model_state``,
    ``optimizer_state``, ``train_config``, ``train_state``, ``data_generator_state``, ``callbacks``."""
    from cortexnet import __version__

    body = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "cortexnet_version": __version__,
            **payload}  # fmt: skip
    body.pop(CHECKSUM_KEY, None)
    atomic_torch_save(path, {**body, CHECKSUM_KEY: {"sha256": payload_digest(body)}})


def payload_digest(obj: Any) -> str:
    """sha256 (hex) of a checkpoint payload's content: every tensor's dtype, shape and bytes, every plain value
    and the nesting, in order. The same for the dict before ``torch.save`` and after ``torch.load`` (on any
    device), so a byte flipped anywhere in a tensor or the pickled structure is caught on load (torch's zip
    reader does not check its own CRCs). About 1-2 GB/s: a 1e8-synapse Adam checkpoint (1.6 GB) takes ~1 s."""
    h = hashlib.sha256()
    _digest(obj, h)
    return h.hexdigest()


def _digest(obj: Any, h: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype.str}{obj.shape}|".encode())
        h.update(np.ascontiguousarray(obj).view(np.uint8).reshape(-1) if obj.size else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}|".encode())
        for key, value in obj.items():
            _digest(key, h)
            _digest(value, h)
    elif isinstance(obj, list | tuple):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}|".encode())
        for value in obj:
            _digest(value, h)
    else:  # str, bytes, int, float, bool, None, torch.dtype / torch.Size ...: exact reprs
        text = repr(obj)
        h.update(f"S{type(obj).__name__}{len(text)}|{text}".encode())


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
    stored = ckpt.pop(CHECKSUM_KEY, None)
    if stored is None:
        if ckpt.get("format_version", 0) >= 2:
            raise CheckpointError(f"checkpoint {path} has lost its checksum: it was damaged; use an earlier copy "
                                  "or delete it and train the member again (--resume)")  # fmt: skip
        log.warning("checkpoint %s was written by an older cortexnet without a checksum: its content is not "
                    "verified", path)  # fmt: skip
    else:
        digest = payload_digest(ckpt)
        if not isinstance(stored, dict) or stored.get("sha256") != digest:
            raise CheckpointError(
                f"checkpoint {path} fails its checksum (content sha256 {digest[:12]}..., stored "
                f"{str(stored.get('sha256') if isinstance(stored, dict) else stored)[:12]}...): the file was "
                "damaged after it was written; use an earlier copy or delete it and train the member again (--resume)"
            )
    return ckpt


def load_model_state(
    model: nn.Module, state: dict[str, Any], *, source: str | os.PathLike, strict: bool = False
) -> dict[str, int]:
    """``model.load_state_dict(state)``, then report what loading had to repair: every sparse weight
    re-imposes its mask and Dale's law on the loaded values (so every backend computes the same function from
    the same file), and the values it changed are counted here. Returns ``{"off_mask": n, "wrong_sign": m}``
    over all sparse weights. A file written by cortexnet needs no repair; any repair is logged as a warning, or
    with ``strict`` refused with :class:`CheckpointError` (nothing is loaded into a model that is used)."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {source}: weights do not fit the model: {exc}") from exc
    repairs = {"off_mask": 0, "wrong_sign": 0}
    names: list[str] = []
    for name, weight in sparse_weights(model).items():
        found = getattr(weight, "load_repairs", None) or {}
        if any(found.values()):
            names.append(name)
        for key in repairs:
            repairs[key] += int(found.get(key, 0))
    if any(repairs.values()):
        what = (f"{repairs['off_mask']} non-zero values outside the mask and {repairs['wrong_sign']} weights of the "
                f"wrong Dale sign in {', '.join(names)}")  # fmt: skip
        if strict:
            raise CheckpointError(f"checkpoint {source} breaks its constraints: {what}; it was not written by "
                                  "cortexnet's trainer or was edited (load without strict to repair)")  # fmt: skip
        log.warning(
            "checkpoint %s: %s were set to zero on load (mask and Dale's law re-imposed)", source, what
        )
    return repairs


def model_from_checkpoint(
    path_or_ckpt: str | os.PathLike | dict[str, Any],
    *,
    map_location: str | torch.device = "cpu",
    strict: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a checkpoint (from its ``meta``) and load its weights, re-imposing masks and
    Dale's law (:func:`load_model_state`; ``strict`` refuses a file that needs it).

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
    source = path_or_ckpt if not isinstance(path_or_ckpt, dict) else f"of model {name!r}"
    load_model_state(model, ckpt.get("model_state") or {}, source=source, strict=strict)
    return model.to(map_location).eval(), ckpt
