"""Leaky (continuous-time) units and initial states in the fused whole-sequence kernels (issue 15, item 1):
h_t = (1 - α) h_{t-1} + α act(u_t + h_{t-1} Wᵀ), h_{-1} = h0. Float64 gradients of every backend's fused
kernel against autograd through the unfused formula on a dense weight; α = 1 without h0 is the paper's
network computed by the very same operations (bit-identical)."""

from __future__ import annotations

import pytest
import torch

from cortexnet.connectivity import erdos_renyi
from cortexnet.sparse import DenseRecurrence, make_sparse_weight
from cortexnet.sparse.base import SparseWeight

N, B, T = 9, 4, 6


def reference(u, w, act, alpha=None, h0=None):
    """The unfused formula under plain autograd: ``u`` (T, B, N), dense ``w`` (N, N)."""
    f = torch.relu if act == "relu" else torch.tanh
    h = torch.zeros_like(u[0]) if h0 is None else h0
    a = torch.ones(u.shape[-1], dtype=u.dtype) if alpha is None else alpha
    out = []
    for t in range(u.shape[0]):
        h = (1 - a) * h + a * f(u[t] + h @ w.t())
        out.append(h)
    return torch.stack(out)


def _alpha(kind: str) -> torch.Tensor | None:
    if kind == "none":
        return None
    if kind == "scalar":
        return torch.full((N,), 0.2, dtype=torch.float64)
    return torch.linspace(0.05, 1.0, N, dtype=torch.float64)  # per node, one of them α = 1


def _weight(backend: str, seed: int = 0):
    conn = erdos_renyi(N, N, p=0.4, self_connections=True, generator=torch.Generator().manual_seed(seed))
    w = make_sparse_weight(backend, conn).double()
    g = torch.Generator().manual_seed(seed + 1)
    w.set_values_(conn.rows(), conn.col, 0.6 * torch.randn(conn.nnz, generator=g, dtype=torch.float64))
    return w, conn


@pytest.mark.parametrize("backend", ["masked_dense", "csr", "generic"])
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("alpha_kind", ["none", "scalar", "per_node"])
@pytest.mark.parametrize("with_h0", [False, True])
def test_fused_kernels_match_autograd_on_the_unfused_formula(backend, act, alpha_kind, with_h0):
    w, conn = _weight("csr" if backend == "csr" else "masked_dense")
    torch.manual_seed(3)
    u = torch.randn(T, B, N, dtype=torch.float64, requires_grad=True)
    h0 = torch.rand(B, N, dtype=torch.float64, requires_grad=True) if with_h0 else None
    alpha = _alpha(alpha_kind)
    upstream = torch.randn(T, B, N, dtype=torch.float64)
    if backend == "generic":  # the reference loop every backend inherits
        states = SparseWeight.recurrent(w, u, act, alpha=alpha, h0=h0)
    else:
        states = w.recurrent(u, act, alpha=alpha, h0=h0)
    (states * upstream).sum().backward()
    got = (u.grad.clone(), w.active_grads().clone(), None if h0 is None else h0.grad.clone())
    dense = w.to_dense().requires_grad_()
    u.grad = None
    if h0 is not None:
        h0.grad = None
    ref = reference(u, dense, act, alpha, h0)
    torch.testing.assert_close(states, ref, rtol=1e-12, atol=1e-12)
    (ref * upstream).sum().backward()
    torch.testing.assert_close(got[0], u.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[1], dense.grad[conn.rows(), conn.col], rtol=1e-10, atol=1e-12)
    if h0 is not None:
        torch.testing.assert_close(got[2], h0.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_dense_leaky_kernel_gradcheck(act):
    torch.manual_seed(0)
    u = torch.randn(4, 3, 6, dtype=torch.float64, requires_grad=True)
    w = (0.4 * torch.randn(6, 6, dtype=torch.float64)).requires_grad_()
    h0 = torch.rand(3, 6, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda u, w, h0: DenseRecurrence.apply(u, w, None, act, alpha, h0), (u, w, h0)
    )


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_alpha_one_is_bit_identical_to_the_papers_network(backend):
    w, _ = _weight(backend)
    w = w.float()
    u = torch.randn(T, B, N, generator=torch.Generator().manual_seed(5))
    plain = w.recurrent(u, "relu")
    ones = w.recurrent(u, "relu", alpha=torch.ones(N))
    assert torch.equal(plain, ones)


def test_a_slow_unit_integrates_a_constant_drive_toward_its_fixed_point():
    # One node, no recurrence (an empty weight): h_t = (1 - α) h_{t-1} + α relu(u) → u, by hand.
    w = make_sparse_weight("masked_dense", erdos_renyi(1, 1, p=0.0, generator=torch.Generator())).double()
    u = torch.full((4, 1, 1), 2.0, dtype=torch.float64)
    states = w.recurrent(u, "relu", alpha=torch.tensor([0.5], dtype=torch.float64)).flatten()
    torch.testing.assert_close(states, torch.tensor([1.0, 1.5, 1.75, 1.875], dtype=torch.float64))


@pytest.mark.parametrize(
    ("alpha", "msg"), [(torch.full((N,), 0.0), r"\(0, 1\]"), (torch.full((N,), 1.5), r"\(0, 1\]")]
)
def test_alpha_out_of_range_is_refused(alpha, msg):
    w, _ = _weight("csr")
    with pytest.raises(ValueError, match=msg):
        w.float().recurrent(torch.zeros(T, B, N), "relu", alpha=alpha)


def test_h0_of_the_wrong_shape_is_refused():
    w, _ = _weight("masked_dense")
    with pytest.raises(ValueError, match=r"h0 must be \(B, N\)"):
        w.float().recurrent(torch.zeros(T, B, N), "relu", h0=torch.zeros(B + 1, N))
