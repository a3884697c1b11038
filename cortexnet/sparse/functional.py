"""Whole-sequence recurrent autograd Function (dense weight, gradient restricted to a mask).

PERFORMANCE.md, lesson 1: computing the whole sequence in one autograd Function, keeping the states as one
(T, B, N) tensor and forming the recurrent weight gradient **once** as a single (N x TB)(TB x N) product,
is ~5x faster and ~6x leaner than per-step autograd (which accumulates an N x N outer product every step).
"""

from __future__ import annotations

import torch
from torch import Tensor

ACTIVATIONS = ("relu", "tanh")


def check_activation(name: str) -> str:
    """Validate an activation name (``"relu"`` or ``"tanh"``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return name


def activate_(x: Tensor, activation: str) -> Tensor:
    """In-place activation of a pre-activation tensor."""
    return x.relu_() if activation == "relu" else x.tanh_()


def activation_grad_(grad: Tensor, states: Tensor, activation: str) -> Tensor:
    """Multiply ``grad`` in place by act'(pre), written in terms of the output ``states = act(pre)``."""
    if activation == "relu":
        return grad.mul_(states > 0)
    return grad.mul_(1.0 - states * states)


class DenseRecurrence(torch.autograd.Function):
    """h_t = act(u_t + h_{t-1} Wᵀ), h_{-1} = 0, over a whole sequence, with a hand-written backward.

    Forward inputs: ``u`` (T, B, N) (input drive incl. bias), ``weight`` (N, N) (W[i, j]: j -> i),
    ``mask`` (N, N) bool or None (gradient restricted to it), ``activation``.
    Returns all states (T, B, N).
    """

    @staticmethod
    def forward(ctx, u: Tensor, weight: Tensor, mask: Tensor | None, activation: str) -> Tensor:  # type: ignore[override]
        steps = u.shape[0]
        states = torch.empty_like(u)
        wt = weight.t()
        states[0] = u[0]
        activate_(states[0], activation)
        for t in range(1, steps):
            torch.addmm(u[t], states[t - 1], wt, out=states[t])
            activate_(states[t], activation)
        ctx.activation = activation
        ctx.save_for_backward(states, weight, mask)
        return states

    @staticmethod
    def backward(ctx, grad_states: Tensor):  # type: ignore[override]
        states, weight, mask = ctx.saved_tensors
        steps, _, n = states.shape
        grad_pre = torch.empty_like(states)
        carry = torch.zeros_like(states[0])
        for t in range(steps - 1, -1, -1):
            g = grad_pre[t]
            torch.add(grad_states[t], carry, out=g)
            activation_grad_(g, states[t], ctx.activation)
            if t > 0:
                carry = g @ weight
        grad_weight = None
        if ctx.needs_input_grad[1]:
            # One GEMM over all steps (K = (T-1) * B); step 0 contributes nothing because h_{-1} = 0.
            grad_weight = grad_pre[1:].reshape(-1, n).t() @ states[:-1].reshape(-1, n)
            if mask is not None:
                grad_weight.mul_(mask)
        return grad_pre, grad_weight, None, None
