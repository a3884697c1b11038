"""SNIP's scores for any registered model: the connection sensitivity of its dense twin at initialisation.

SNIP (Lee et al., ICLR 2019) prunes a *dense* network at initialisation by |∂L/∂w · w| on one batch. Here the
dense twin is the same model configuration with every sparse weight fully connected (``topology="full"``,
per-weight overrides dropped; same weight seed); its scores are the ``saliency`` the ``"snip"`` topology
keeps the top of (:mod:`cortexnet.connectivity.saliency`). Memory: the twin is dense (a recurrent layer of
N nodes holds N² weights and N² gradients, e.g. 3.2 GB at N = 20,000 in float32), plus the N² float32 scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cortexnet.layers.saliency import connection_sensitivity
from cortexnet.models import build_model


def dense_twin_config(config: Any) -> Any:
    """``config`` with every sparse weight fully connected: ``topology="full"``, no topology parameters, no
    per-weight overrides (the fields a model config has of these)."""
    fields = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {"topology": "full", "topology_params": {}}
    if "layer_topologies" in fields:
        changes["layer_topologies"] = ()
    missing = {"topology", "topology_params"} - fields
    if missing:
        raise ValueError(
            f"{type(config).__name__} has no {sorted(missing)}: SNIP needs a model wired by topology"
        )
    return dataclasses.replace(config, **changes)


def snip_saliency(
    model_name: str,
    config: Any,
    n_inputs: int,
    n_classes: int,
    x: Tensor,
    y: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """SNIP scores of every sparse weight of the model ``model_name`` with ``config``.

    Args:
        model_name, config, n_inputs, n_classes: the model as :func:`cortexnet.models.build_model` takes it.
        x: float ``(B, T, F)`` the batch SNIP scores on; y: int64 ``(B,)`` its labels.
        loss_fn: the training loss (default mean cross-entropy).
        device: where the dense twin runs.

    Returns:
        ``{weight name: float32 (n_out, n_in)}`` on the CPU: |∂L/∂w · w| of the dense twin at initialisation,
        ``-inf`` where the twin has no synapse (a recurrent diagonal without self-connections).
    """
    twin = build_model(model_name, dense_twin_config(config), n_inputs, n_classes).to(device)
    return connection_sensitivity(twin, x.to(device), y.to(device), loss_fn=loss_fn)
