"""Per-layer activity recording for Hebbian rewiring criteria: the pre- and postsynaptic activity of one
sparse weight, fed into a :class:`~cortexnet.sparse.ActivityAccumulator` during every training forward pass.

* a :class:`~cortexnet.layers.SparseLinear` (``y = x Wᵀ + b``): pre = its input ``x``, post = ``act(y)``, with
  ``act`` the activation the model applies after the layer (G2GNet: ReLU; pass ``post=`` otherwise);
* a :class:`~cortexnet.layers.RecurrentLayer`: one node set, pre = ``h_{t-1}`` (``h_{-1} = 0``) and post =
  ``h_t`` at every step, so the score of synapse (i ← j) is the cosine of node i's activity with node j's one
  step earlier (G2GNet's rule, seed 000, on the directed node graph).

Samples of every batch and time step are concatenated over the period (no average of per-batch cosines,
DST.md "Hebbian"). Nothing is recorded in eval mode or under ``torch.no_grad`` unless asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from cortexnet.layers.constraints import select_weight
from cortexnet.layers.recurrent import RecurrentLayer
from cortexnet.layers.sparse_linear import SparseLinear
from cortexnet.sparse import ActivityAccumulator

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu, "tanh": torch.tanh}


class ActivityRecording:
    """A live recording of one sparse weight's activity (see :func:`record_activity`); ``remove()`` stops it.

    Attributes:
        name: the weight's name in the model.
        accumulator: the :class:`~cortexnet.sparse.ActivityAccumulator` being fed (``scores``, ``topk``,
            ``reset`` at each rewiring, ``state_dict`` for checkpoints).
    """

    def __init__(self, name: str, accumulator: ActivityAccumulator, handle: Any) -> None:
        self.name, self.accumulator, self._handle = name, accumulator, handle

    def remove(self) -> None:
        """Stop recording (the accumulator keeps what it has)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def record_activity(
    model: nn.Module,
    name: str,
    *,
    accumulator: ActivityAccumulator | None = None,
    post: Callable[[Tensor], Tensor] | None = None,
    in_eval: bool = False,
    **accumulator_options: Any,
) -> ActivityRecording:
    """Feed the pre/post activity of the sparse weight ``name`` (as :func:`cortexnet.layers.sparse_weights`
    names it) into ``accumulator`` (default: a new ``ActivityAccumulator(n_in, n_out, **accumulator_options)``,
    e.g. ``positions=(rows, cols)`` to track only some synapses of a large recurrent layer).

    ``post`` maps a SparseLinear's output to the postsynaptic activity (default: the model's
    ``config.activation`` when it has one, else identity); recurrent states are activities already. Forward
    passes in eval mode are skipped unless ``in_eval``. Raises ``ValueError`` naming the weights there are.
    """
    name, weight = select_weight(model, name)
    owner_name = name.rpartition(".")[0]
    owner = model.get_submodule(owner_name) if owner_name else model
    acc = accumulator or ActivityAccumulator(weight.n_in, weight.n_out, **accumulator_options)

    def active(module: nn.Module) -> bool:
        return in_eval or (module.training and torch.is_grad_enabled())

    if isinstance(owner, RecurrentLayer) and owner.rec is weight:

        def on_states(module: RecurrentLayer, states: Tensor) -> None:  # states (T, B, N), time-major
            if active(module):
                h = states.detach()
                prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
                acc.update(prev.reshape(-1, h.shape[-1]), h.reshape(-1, h.shape[-1]))

        handle = owner.register_state_hook(on_states)
    elif isinstance(owner, SparseLinear) and owner.sparse is weight:
        if post is None:
            act = getattr(getattr(model, "config", None), "activation", None)
            post = _ACTIVATIONS.get(act, lambda y: y)

        def on_forward(module: SparseLinear, inputs: tuple, output: Tensor) -> None:
            if active(module):
                x = inputs[0].detach()
                acc.update(x.reshape(-1, x.shape[-1]), post(output.detach()).reshape(-1, output.shape[-1]))

        handle = owner.register_forward_hook(on_forward)
    else:
        raise ValueError(
            f"{name!r} is not the weight of a RecurrentLayer or SparseLinear; record its activity with "
            "ActivityAccumulator.update(pre, post) directly"
        )
    return ActivityRecording(name, acc, handle)
