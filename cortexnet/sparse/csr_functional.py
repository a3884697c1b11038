"""Custom autograd Functions of the compressed sparse (CSR) backend: whole-sequence recurrence and linear.

Both take the **effective** synapse values ``(nnz,)`` in canonical CSR order (Dale's reparametrisation, if
any, is applied by the caller under autograd) and a :class:`~cortexnet.sparse._csr_index.CSRIndex`. The
gradient of the values is formed only at stored synapses: no dense ``N x N`` tensor exists at any point. The
products run on the compiled kernels where they are built (:mod:`cortexnet.sparse.native`), else on PyTorch's
(``addmm`` with CSR panels, ``torch.sparse.sampled_addmm`` over stacked K = T·B rows).

Internally the states are kept feature-major, ``(T, N, B)``: one step is then a sparse-times-dense product
``W @ H`` with a row-major dense operand, which is what the sparse kernels are fast at.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from cortexnet.sparse import native
from cortexnet.sparse._csr_index import CSRIndex, native_for, sddmm_acc_, spmm, spmm_
from cortexnet.sparse.functional import activate_, activation_grad_


def _swap_last(x: Tensor) -> Tensor:
    """A fresh contiguous copy of ``x`` (A, B, C) as (A, C, B) (never a view: callers write into it)."""
    if native_for(x):
        return native.swap_last(x)
    out = torch.empty((x.shape[0], x.shape[2], x.shape[1]), dtype=x.dtype, device=x.device)
    return out.copy_(x.permute(0, 2, 1))


class CSRRecurrence(torch.autograd.Function):
    """h_t = (1 - α) h_{t-1} + α act(u_t + h_{t-1} Wᵀ), W sparse (CSR), over a whole sequence.

    Forward inputs: ``u`` (T, B, N), ``values`` (nnz,) effective weights in canonical CSR order, ``index``
    (:class:`CSRIndex` on u's device), ``activation``, ``alpha`` (N,) leak factors in (0, 1] or None (α = 1,
    the paper's network, by the operations it always used), ``h0`` (B, N) initial state or None (zero).
    Returns all states (T, B, N), contiguous. Gradients flow to ``u``, ``values`` and ``h0``.

    Backward: one reverse pass over time for the state gradient (``Wᵀ g`` with the pre-computed transposed
    panels), then the value gradient once over all steps (K = (T-1)·B), chunked so that panel slices stay in
    cache (PERFORMANCE.md, lessons 1-2). A leaky network keeps the rates act(pre_t) beside the states.
    """

    @staticmethod
    def forward(ctx, u, values, index, activation, alpha=None, h0=None):  # type: ignore[override]
        steps = u.shape[0]
        # Feature-major (T, N, B), computed in place in a copy of the drive: the pre-activations become the
        # rates, which are the states when α = 1.
        rates = _swap_last(u)
        states = rates if alpha is None else torch.empty_like(rates)
        a = None if alpha is None else alpha.view(-1, 1)
        h0t = None if h0 is None else h0.t().contiguous()
        w = index.fwd.bind(index.fwd.gather(values))
        for t in range(steps):
            prev = states[t - 1] if t > 0 else h0t
            if prev is not None:
                spmm_(rates[t], w, prev)
            activate_(rates[t], activation)
            if a is not None:
                torch.mul(rates[t], a, out=states[t])
                if prev is not None:
                    states[t].addcmul_(prev, 1.0 - a)
        ctx.activation = activation
        ctx.index = index
        ctx.save_for_backward(states, values, alpha, h0t, None if alpha is None else rates)
        return _swap_last(states)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        states, values, alpha, h0t, rates = ctx.saved_tensors
        rates = states if rates is None else rates
        index: CSRIndex = ctx.index
        steps = states.shape[0]
        # dL/dh_t, feature-major, in a copy of grad_out; the carry through h_{t-1} is added into it in place.
        grad = _swap_last(grad_out)
        wt = index.bwd.bind(index.bwd.gather(values)) if steps > 1 or h0t is not None else None
        a = None if alpha is None else alpha.view(-1, 1)
        # dL/dpre_t: the same buffer when α = 1 (in place), else its own.
        grad_pre = grad if a is None else torch.empty_like(grad)
        grad_h0t = torch.zeros_like(h0t) if h0t is not None else None
        for t in range(steps - 1, -1, -1):
            if a is not None:
                torch.mul(grad[t], a, out=grad_pre[t])
            activation_grad_(grad_pre[t], rates[t], ctx.activation)
            target = grad[t - 1] if t > 0 else grad_h0t
            if target is not None:
                spmm_(target, wt, grad_pre[t])  # += Wᵀ g_t (carry through h_{t-1})
                if a is not None:
                    target.addcmul_(grad[t], 1.0 - a)
        grad_values = None
        if ctx.needs_input_grad[1]:
            acc = torch.zeros(index.nnz, dtype=values.dtype, device=values.device)
            # dW[i, j] = Σ_{t>=1, b} g_t[i, b] h_{t-1}[j, b]; step 0 adds h0's term (nothing when h_{-1} = 0).
            if steps > 1:
                sddmm_acc_(acc, index.fwd, grad_pre[1:], states[:-1])
            if h0t is not None:
                sddmm_acc_(acc, index.fwd, grad_pre[0], h0t)
            grad_values = index.to_canonical(acc)
        grad_u = _swap_last(grad_pre) if ctx.needs_input_grad[0] else None
        grad_h0 = grad_h0t.t() if grad_h0t is not None and ctx.needs_input_grad[5] else None
        return grad_u, grad_values, None, None, None, grad_h0


class CSRLinear(torch.autograd.Function):
    """``y = x Wᵀ`` with W sparse (CSR): ``x`` (M, n_in) -> (M, n_out).

    Forward inputs: ``x`` (M, n_in), ``values`` (nnz,) effective weights (canonical order), ``index``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, values: Tensor, index: CSRIndex) -> Tensor:  # type: ignore[override]
        xt = x.t().contiguous()  # (n_in, M)
        yt = spmm(index.fwd.bind(index.fwd.gather(values)), xt, index.n_out)
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
            grad_x = spmm(index.bwd.bind(index.bwd.gather(values)), gt, index.n_in).t()
        if ctx.needs_input_grad[1]:
            acc = torch.zeros(index.nnz, dtype=values.dtype, device=values.device)
            sddmm_acc_(acc, index.fwd, gt, xt)
            grad_values = index.to_canonical(acc)
        return grad_x, grad_values, None
