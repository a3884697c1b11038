"""Connection sensitivity |∂L/∂w ⊙ w| of every sparse weight of a model on one batch (SNIP, Lee et al. 2019).

The scores SNIP (:func:`cortexnet.connectivity.saliency.snip`) keeps the top of. They are the saliency of the
*effective* weights: for ``dale="abs"`` the stored magnitude m and w = sign · m give |∂L/∂m · m| = |∂L/∂w · w|,
so the score does not depend on how Dale's law is parametrised.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cortexnet.layers.constraints import sparse_weights


def connection_sensitivity(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> dict[str, Tensor]:
    """|∂L/∂w · w| at every synapse of every sparse weight, for the loss of ``model(x)`` against ``y``.

    Args:
        model: any module holding :class:`~cortexnet.sparse.SparseWeight` s (typically a *dense twin*: every
            position active, as SNIP scores a dense network at initialisation).
        x: float ``(B, T, F)`` a batch of inputs on the model's device; y: int64 ``(B,)`` labels.
        loss_fn: ``loss_fn(logits, y)`` → scalar (default: mean cross-entropy, the training loss).

    Returns:
        ``{weight name: float32 (n_out, n_in) on the CPU}`` (names of
        :func:`~cortexnet.layers.sparse_weights`): the score at active synapses and ``-inf`` where the model
        has no synapse (not a candidate). The model's parameters and their ``.grad`` are left as they were;
        the model runs in training mode for the pass and is put back in its previous mode.
    """
    weights = sparse_weights(model)
    if not weights:
        raise ValueError(
            f"{type(model).__name__} has no sparse weight: connection sensitivity scores sparse weights"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    was_training = model.training
    try:
        for p in params:
            p.grad = None
        model.train()
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            raise ValueError(
                f"connection sensitivity: the loss on this batch is {float(loss)}; check the inputs"
            )
        loss.backward()
        out = {}
        for name, w in weights.items():
            conn = w.connectivity()
            grads = w.active_grads()
            values = w.active_values()
            score = torch.full((w.n_out, w.n_in), -torch.inf, dtype=torch.float32)
            if grads is not None:
                score[conn.rows(), conn.col] = (grads * values).abs().float().cpu()
            else:  # the weight took no part in the loss: every synapse scores 0
                score[conn.rows(), conn.col] = 0.0
            out[name] = score
        return out
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
        model.train(was_training)
