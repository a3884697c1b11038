"""Custom autograd Functions of the compressed sparse (CSR) backend: whole-sequence recurrence and linear.

Both take the **effective** synapse values ``(nnz,)`` in canonical CSR order (Dale's reparametrisation, if
any, is applied by the caller under autograd) and a :class:`~cortexnet.sparse._csr_index.CSRIndex`. The
gradient of the values is formed only at stored synapses (``torch.sparse.sampled_addmm``, chunked over the
stacked K = T·B rows): no dense ``N x N`` tensor exists at any point.

Internally the states are kept feature-major, ``(T, N, B)``: one step is then a sparse-times-dense product
``W @ H`` with a row-major dense operand, which is what the sparse kernels are fast at.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from cortexnet.sparse._csr_index import SDDMM_K_CHUNK, CSRIndex, k_chunks, sddmm_acc_, spmm, spmm_
from cortexnet.sparse.functional import activate_, activation_grad_


def _swap_last(x: Tensor) -> Tensor:
    """A fresh contiguous copy of ``x`` (A, B, C) as (A, C, B) (never a view: callers write into it)."""
    out = torch.empty((x.shape[0], x.shape[2], x.shape[1]), dtype=x.dtype, device=x.device)
    return out.copy_(x.permute(0, 2, 1))


class CSRRecurrence(torch.autograd.Function):
    """h_t = act(u_t + h_{t-1} Wᵀ), h_{-1} = 0, W sparse (CSR), over a whole sequence.

    Forward inputs: ``u`` (T, B, N), ``values`` (nnz,) effective weights in canonical CSR order, ``index``
    (:class:`CSRIndex` on u's device), ``activation``. Returns all states (T, B, N), contiguous.

    Backward: one reverse pass over time for the state gradient (``Wᵀ g`` with the pre-computed transposed
    panels), then the value gradient once over all steps (K = (T-1)·B), chunked so that panel slices stay in
    cache (PERFORMANCE.md, lessons 1-2).
    """

    @staticmethod
    def forward(ctx, u: Tensor, values: Tensor, index: CSRIndex, activation: str) -> Tensor:  # type: ignore[override]
        steps = u.shape[0]
        # Feature-major states (T, N, B), computed in place in a copy of the drive.
        states = _swap_last(u)
        wv = index.fwd.gather(values)
        mats = index.fwd.matrices(wv)
        activate_(states[0], activation)
        for t in range(1, steps):
            spmm_(states[t], mats, states[t - 1])
            activate_(states[t], activation)
        ctx.activation = activation
        ctx.index = index
        ctx.save_for_backward(states, values)
        return _swap_last(states)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        states, values = ctx.saved_tensors
        index: CSRIndex = ctx.index
        steps, n, batch = states.shape
        # Gradient w.r.t. pre-activations, feature-major, computed in place in a copy of grad_out.
        grad = _swap_last(grad_out)
        mats_t = index.bwd.matrices(index.bwd.gather(values)) if steps > 1 else []
        for t in range(steps - 1, -1, -1):
            activation_grad_(grad[t], states[t], ctx.activation)
            if t > 0:
                spmm_(grad[t - 1], mats_t, grad[t])  # grad_{t-1} += Wᵀ g_t (carry through h_{t-1})
        grad_values = None
        if ctx.needs_input_grad[1]:
            acc = torch.zeros(index.nnz, dtype=values.dtype, device=values.device)
            # dW[i, j] = Σ_{t>=1, b} g_t[i, b] h_{t-1}[j, b]; step 0 contributes nothing (h_{-1} = 0).
            for k0, k1 in k_chunks(steps - 1, 1, target=max(1, round(SDDMM_K_CHUNK / batch))):
                g = grad[1 + k0 : 1 + k1].permute(1, 0, 2).reshape(n, -1)
                h = states[k0:k1].permute(1, 0, 2).reshape(n, -1)
                sddmm_acc_(acc, index.fwd, g, h)
            grad_values = index.to_canonical(acc)
        grad_u = _swap_last(grad) if ctx.needs_input_grad[0] else None
        return grad_u, grad_values, None, None


class CSRLinear(torch.autograd.Function):
    """``y = x Wᵀ`` with W sparse (CSR): ``x`` (M, n_in) -> (M, n_out).

    Forward inputs: ``x`` (M, n_in), ``values`` (nnz,) effective weights (canonical order), ``index``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, values: Tensor, index: CSRIndex) -> Tensor:  # type: ignore[override]
        xt = x.t().contiguous()  # (n_in, M)
        yt = spmm(index.fwd.matrices(index.fwd.gather(values)), xt, index.n_out)
        ctx.index = index
        ctx.save_for_backward(xt, values)
        return yt.t().contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):  # type: ignore[override]
        xt, values = ctx.saved_tensors
        index: CSRIndex = ctx.index
        gt = grad_y.t().contiguous()  # (n_out, M)
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_x = spmm(index.bwd.matrices(index.bwd.gather(values)), gt, index.n_in).t()
        if ctx.needs_input_grad[1]:
            acc = torch.zeros(index.nnz, dtype=values.dtype, device=values.device)
            m = xt.shape[1]
            for k0, k1 in k_chunks(m, 1):
                if k0 == 0 and k1 == m:
                    sddmm_acc_(acc, index.fwd, gt, xt)
                else:
                    sddmm_acc_(acc, index.fwd, gt[:, k0:k1].contiguous(), xt[:, k0:k1].contiguous())
            grad_values = index.to_canonical(acc)
        return grad_x, grad_values, None
