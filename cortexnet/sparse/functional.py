"""Whole-sequence recurrent autograd Function (dense weight, gradient restricted to a mask).

PERFORMANCE.md, lesson 1: computing the whole sequence in one autograd Function, keeping the states as one
(T, B, N) tensor and forming the recurrent weight gradient **once** as a single (N x TB)(TB x N) product,
is ~5x faster and ~6x leaner than per-step autograd (which accumulates an N x N outer product every step).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cortexnet.sparse.gemm import addmm_nt, nt

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


def leak_operands(
    drive: Tensor, alpha: Tensor | None, h0: Tensor | None, n: int
) -> tuple[Tensor | None, Tensor | None]:
    """``(alpha, h0)`` checked and in the drive's dtype and device for the fused kernels: α ``(N,)`` (or a
    scalar, broadcast) in (0, 1]; an all-ones α becomes None (the α = 1 kernel, bit-identical to the paper's);
    h0 ``(B, N)`` matching the drive's batch."""
    if alpha is not None:
        alpha = torch.as_tensor(alpha, dtype=drive.dtype, device=drive.device).expand(n).contiguous()
        if not bool(((alpha > 0) & (alpha <= 1)).all()):
            raise ValueError(f"alpha (dt / tau) must be in (0, 1] for every node, got min {float(alpha.min()):g}, "
                             f"max {float(alpha.max()):g}")  # fmt: skip
        if bool((alpha == 1).all()):
            alpha = None
    if h0 is not None and h0.shape != (drive.shape[1], n):
        raise ValueError(f"h0 must be (B, N) = ({drive.shape[1]}, {n}), got {tuple(h0.shape)}")
    return alpha, (None if h0 is None else h0.to(drive.dtype))


class DenseRecurrence(torch.autograd.Function):
    """h_t = (1 - α) h_{t-1} + α act(u_t + h_{t-1} Wᵀ) over a whole sequence, with a hand-written backward.

    Forward inputs: ``u`` (T, B, N) (input drive incl. bias and any noise), ``weight`` (N, N) (W[i, j]: j -> i),
    ``mask`` (N, N) bool or None (gradient restricted to it), ``activation``, ``alpha`` (N,) leak factors
    Δt/τ in (0, 1] or None (α = 1: the paper's discrete network, h_t = act(u_t + h_{t-1} Wᵀ), computed by
    exactly the operations it always was), ``h0`` (B, N) initial state or None (zero). Returns all states
    (T, B, N). Gradients flow to ``u``, ``weight`` and ``h0`` (α is a fixed time constant).

    A leaky network also keeps the rates r_t = act(pre_t) (one more (T, B, N) tensor): act' needs them, and
    recovering them from h_t and h_{t-1} would divide by α.
    """

    @staticmethod
    def forward(ctx, u, weight, mask, activation, alpha=None, h0=None):  # type: ignore[override]
        steps = u.shape[0]
        states = torch.empty_like(u)
        rates = states if alpha is None else torch.empty_like(u)
        for t in range(steps):
            prev = states[t - 1] if t > 0 else h0
            if prev is None:
                rates[0] = u[0]
            else:
                addmm_nt(u[t], prev, weight, out=rates[t])
            activate_(rates[t], activation)
            if alpha is not None:  # h_t = (1 - α) h_{t-1} + α r_t
                torch.mul(rates[t], alpha, out=states[t])
                if prev is not None:
                    states[t].addcmul_(prev, 1.0 - alpha)
        ctx.activation = activation
        ctx.save_for_backward(states, weight, mask, alpha, h0, None if alpha is None else rates)
        return states

    @staticmethod
    def backward(ctx, grad_states: Tensor):  # type: ignore[override]
        states, weight, mask, alpha, h0, rates = ctx.saved_tensors
        rates = states if rates is None else rates
        steps, _, n = states.shape
        grad_pre = torch.empty_like(states)
        carry = torch.zeros_like(states[0])
        total = torch.empty_like(states[0]) if alpha is not None else None
        for t in range(steps - 1, -1, -1):
            g = grad_pre[t]
            if alpha is None:
                torch.add(grad_states[t], carry, out=g)
            else:  # dL/dh_t in ``total``; dL/dpre_t = total * α * act'(pre_t)
                torch.add(grad_states[t], carry, out=total)
                torch.mul(total, alpha, out=g)
            activation_grad_(g, rates[t], ctx.activation)
            if t > 0 or h0 is not None:
                carry = nt(g, weight.t())  # g @ W
                if alpha is not None:
                    carry.addcmul_(total, 1.0 - alpha)
        grad_weight = None
        if ctx.needs_input_grad[1]:
            # One GEMM over all steps (K = (T-1) * B); step 0 adds h0's term (nothing when h_{-1} = 0).
            grad_weight = nt(grad_pre[1:].reshape(-1, n).t(), states[:-1].reshape(-1, n).t())
            if h0 is not None:  # + grad_pre[0]ᵀ h0, in place (K = B is small; no (N, N) temporary)
                grad_weight.addmm_(grad_pre[0].t(), h0)
            if mask is not None:
                # masked_fill_ with the bool mask's complement: mul_ by a bool mask would first cast it to a
                # float copy of the whole (N, N) matrix (a 400 MB pass at N = 10,000)
                grad_weight.masked_fill_(~mask, 0.0)
        grad_h0 = carry if h0 is not None and ctx.needs_input_grad[5] else None
        return grad_pre, grad_weight, None, None, None, grad_h0
