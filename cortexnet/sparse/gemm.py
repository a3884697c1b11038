"""Dense float32 products through oneDNN where PyTorch's BLAS is slower.

PyTorch computes a float32 ``torch.mm`` on the CPU with its BLAS (MKL in the official builds). On the project's
development CPU (AMD EPYC, Zen 4, AVX-512) MKL's kernels for the dense recurrence's products — the skinny
per-step ``(B × N)(N × N)`` at B = 32, N = 10,000 and the weight gradient ``(N × TB)(TB × N)`` — reach about
100 and 180 GFLOP/s, while oneDNN (PyTorch's own ``mkldnn`` library, bundled with every x86 build) reaches
about 210 and 280 on the same cores and threads: the reason a JAX/XLA dense recurrence was faster than
cortexnet's (benchmarks/README.md, "Dense GEMM").

:func:`nt` (``a @ bᵀ``) and :func:`addmm_nt` (``c + a @ bᵀ``) take the oneDNN path for float32 CPU matrices
when ``CORTEXNET_DENSE_GEMM`` (or :func:`set_dense_gemm`) is ``auto`` (the default) and the product has at
least :data:`MIN_MACS` multiply-adds (below that oneDNN's per-call overhead, ~10 µs, loses), always with
``onednn``, never with ``blas``. Both paths compute the same product; they differ only in float32 rounding
(summation order: relative differences ~1e-7), each is deterministic for a given thread count, and float64
always takes the BLAS path (oneDNN has no float64 GEMM), so the float64 equivalence tests check the same
formulas the float32 path runs. Strided (transposed) views are read in place by both.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from cortexnet.sparse._choice import EnvChoice

#: The choices of ``CORTEXNET_DENSE_GEMM`` / :func:`set_dense_gemm`.
GEMM_BACKENDS = ("auto", "onednn", "blas")
#: Multiply-adds from which ``auto`` uses oneDNN (measured crossover on the dev CPU: between 3e5 and 8e6).
MIN_MACS = 1 << 21

_choice = EnvChoice("CORTEXNET_DENSE_GEMM", "the dense GEMM", GEMM_BACKENDS)


def dense_gemm() -> str:
    """The dense GEMM choice in force: :func:`set_dense_gemm`'s, else ``$CORTEXNET_DENSE_GEMM``, else auto."""
    return _choice.get()


def set_dense_gemm(mode: str | None) -> str | None:
    """Choose the dense GEMM (``auto``, ``onednn``, ``blas``; None: back to the environment's); returns the
    previous setting (None when it came from the environment) so a caller can restore it."""

    def unavailable(choice: str) -> str | None:
        if choice == "onednn" and not onednn_available():
            return "the dense GEMM 'onednn' is not available in this PyTorch build; use auto or blas"
        return None

    return _choice.set(mode, unavailable)


@functools.cache
def _probe() -> bool:
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:  # a @ bᵀ with b a transposed view, as the fast path calls it: [[1, 2], [3, 4]]² = [[7, 10], [15, 22]]
        a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        out = op(a, a.t(), None, "none", [], "")
        return bool(torch.equal(out, torch.tensor([[7.0, 10.0], [15.0, 22.0]])))
    except (RuntimeError, NotImplementedError):
        return False


def onednn_available() -> bool:
    """Whether this PyTorch build runs oneDNN's float32 matmul on dense CPU tensors (and mkldnn is enabled)."""
    return bool(torch.backends.mkldnn.enabled) and _probe()


def uses_onednn(a: Tensor, b: Tensor) -> bool:
    """Whether :func:`nt` takes the oneDNN path for ``a`` (M, K) and ``b`` (N, K)."""
    if a.dtype != torch.float32 or b.dtype != torch.float32 or a.dim() != 2 or b.dim() != 2:
        return False
    cpu = a.device.type == "cpu" and b.device.type == "cpu"
    return onednn_for(a.shape[0], b.shape[0], a.shape[1], cpu=cpu)


def onednn_for(m: int, n: int, k: int, *, dtype_bytes: int = 4, cpu: bool = True) -> bool:
    """Whether an (m × k)(k × n) product of ``dtype_bytes`` floats takes the oneDNN path (for estimates made
    without tensors, e.g. :mod:`cortexnet.training.memory`)."""
    mode = dense_gemm()
    if mode == "blas" or dtype_bytes != 4 or not cpu or (mode == "auto" and m * n * k < MIN_MACS):
        return False
    return onednn_available()


def nt(a: Tensor, b: Tensor) -> Tensor:
    """``a @ bᵀ`` for ``a`` (M, K) and ``b`` (N, K), any strides; returns a new contiguous (M, N) tensor."""
    if uses_onednn(a, b):
        return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    return a @ b.t()


def addmm_nt(c: Tensor, a: Tensor, b: Tensor, *, out: Tensor) -> Tensor:
    """``out = c + a @ bᵀ`` (``c`` and ``out`` (M, N)); the BLAS path is the single fused ``torch.addmm``."""
    if uses_onednn(a, b):
        return torch.add(c, torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""), out=out)
    return torch.addmm(c, a, b.t(), out=out)


class _DenseLinear(torch.autograd.Function):
    """y = x wᵀ with both products of the backward through :func:`nt` (first-order gradients only)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)
        return nt(x, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, w = ctx.saved_tensors
        gx = nt(grad, w.t()) if ctx.needs_input_grad[0] else None  # (M, N)(N, K)
        gw = nt(grad.t(), x.t()) if ctx.needs_input_grad[1] else None  # (N, M)(M, K)
        return gx, gw


def linear(x: Tensor, w: Tensor) -> Tensor:
    """``x @ wᵀ`` for ``x`` (..., K) and ``w`` (N, K) with autograd: through oneDNN (forward and both backward
    products) where :func:`uses_onednn` says so for the flattened product, else the plain differentiable
    ``x @ w.t()`` (which keeps higher-order gradients for small and float64 products)."""
    x2 = x.reshape(-1, x.shape[-1])
    if not uses_onednn(x2, w):
        return x @ w.t()
    return _DenseLinear.apply(x2, w).reshape(*x.shape[:-1], w.shape[0])
