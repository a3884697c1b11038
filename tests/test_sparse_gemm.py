"""The oneDNN float32 GEMM path (cortexnet.sparse.gemm): the same products as float64 to float32 rounding, on
strided views, in the fused dense recurrence (forward, backward, leak, h0) and the masked-dense linear; which
path each product takes; deterministic; the BLAS path is torch's own product."""

import pytest
import torch

from cortexnet.connectivity import erdos_renyi
from cortexnet.sparse import DenseRecurrence, gemm, make_sparse_weight

needs_onednn = pytest.mark.skipif(
    not gemm.onednn_available(), reason="this PyTorch build has no oneDNN matmul"
)


@pytest.fixture
def mode():
    """Set the dense GEMM for one test and restore it afterwards."""
    saved = []

    def set_(m):
        saved.append(gemm.set_dense_gemm(m))

    yield set_
    gemm.set_dense_gemm(saved[0] if saved else None)


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double(), ref.detach().double()
    return float((a - ref).abs().max() / ref.abs().max())


# float32 products of K terms: relative error of order sqrt(K) * 2^-24 (about 1e-6 here); 2e-5 leaves margin
TOL = 2e-5


@needs_onednn
@pytest.mark.parametrize("m,n,k", [(3, 5, 7), (32, 300, 200), (130, 64, 257)])
def test_nt_and_addmm_nt_match_float64_on_contiguous_and_transposed_views(mode, m, n, k):
    mode("onednn")
    g = torch.Generator().manual_seed(0)
    a, b, c = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(m, n, generator=g)
    ref = a.double() @ b.double().t()
    assert rel(gemm.nt(a, b), ref) < TOL
    at, bt = a.t().contiguous().t(), b.t().contiguous().t()  # the same matrices, transposed strides
    assert not at.is_contiguous() and rel(gemm.nt(at, bt), ref) < TOL
    out = torch.empty(m, n)
    gemm.addmm_nt(c, a, b, out=out)
    assert rel(out, c.double() + ref) < TOL


def test_the_blas_path_is_torchs_own_product(mode):
    mode("blas")
    g = torch.Generator().manual_seed(1)
    a, b, c = (
        torch.randn(40, 600, generator=g),
        torch.randn(500, 600, generator=g),
        torch.randn(40, 500, generator=g),
    )
    assert not gemm.uses_onednn(a, b)
    assert torch.equal(gemm.nt(a, b), a @ b.t())
    out = torch.empty(40, 500)
    assert torch.equal(gemm.addmm_nt(c, a, b, out=out), torch.addmm(c, a, b.t()))


def test_which_path_auto_takes(mode):
    mode("auto")
    small, large = torch.zeros(8, 20), torch.zeros(64, 256)  # 8 * 20 * 20 vs 64 * 256 * 256 >= MIN_MACS
    assert not gemm.uses_onednn(small, torch.zeros(20, 20))
    assert gemm.uses_onednn(large, torch.zeros(256, 256)) == gemm.onednn_available()
    assert not gemm.uses_onednn(
        large.double(), torch.zeros(256, 256, dtype=torch.float64)
    )  # no float64 in oneDNN
    mode("onednn")
    assert gemm.uses_onednn(small, torch.zeros(20, 20)) == gemm.onednn_available()


def test_bad_choices_are_one_line_errors(mode, monkeypatch):
    with pytest.raises(ValueError, match="must be one of auto, onednn, blas, got 'mkl'"):
        gemm.set_dense_gemm("mkl")
    mode(None)
    monkeypatch.setenv("CORTEXNET_DENSE_GEMM", "fast")
    with pytest.raises(ValueError, match="CORTEXNET_DENSE_GEMM must be one of"):
        gemm.dense_gemm()
    monkeypatch.setenv("CORTEXNET_DENSE_GEMM", "blas")
    assert gemm.dense_gemm() == "blas"


def _recurrence(dtype, alpha: bool, h0: bool):
    """The same problem in ``dtype``: drawn in float64, then cast."""
    g = torch.Generator().manual_seed(2)
    steps, batch, n = 6, 16, 96
    mask = torch.rand(n, n, generator=g) < 0.4
    u = torch.randn(steps, batch, n, generator=g, dtype=torch.float64)
    w = 0.2 * torch.randn(n, n, generator=g, dtype=torch.float64) * mask
    a = 0.1 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)
    s0 = torch.randn(batch, n, generator=g, dtype=torch.float64)
    w_out = torch.randn(steps, batch, n, generator=g, dtype=torch.float64)
    return (u.to(dtype).requires_grad_(), w.to(dtype).requires_grad_(), mask, a.to(dtype) if alpha else None,
            s0.to(dtype).requires_grad_() if h0 else None, w_out.to(dtype))  # fmt: skip


@needs_onednn
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("alpha,h0", [(False, False), (True, False), (False, True), (True, True)])
def test_dense_recurrence_through_onednn_matches_float64(mode, act, alpha, h0):
    results = {}
    for dtype, path in ((torch.float64, "blas"), (torch.float32, "onednn")):
        mode(path)
        u, w, mask, a, s0, w_out = _recurrence(dtype, alpha, h0)
        states = DenseRecurrence.apply(u, w, mask, act, a, s0)
        (states * w_out).sum().backward()
        results[path] = (states, u.grad, w.grad, None if s0 is None else s0.grad)
        assert torch.all(w.grad[~mask] == 0)  # the gradient stays on the mask
    for ours, ref in zip(results["onednn"], results["blas"], strict=True):
        if ref is not None:
            assert rel(ours, ref) < TOL


@needs_onednn
def test_masked_dense_linear_through_onednn_matches_float64_and_keeps_the_mask(mode):
    g = torch.Generator().manual_seed(3)
    conn = erdos_renyi(200, 300, p=0.3, generator=g)
    values = torch.randn(conn.nnz, generator=g, dtype=torch.float64)
    x64 = torch.randn(5, 7, 300, generator=g, dtype=torch.float64)
    grads = {}
    for dtype, path in ((torch.float64, "blas"), (torch.float32, "onednn")):
        mode(path)
        weight = make_sparse_weight("masked_dense", conn)
        weight = weight.double() if dtype == torch.float64 else weight
        weight.set_values_(conn.rows(), conn.col, values)
        x = x64.to(dtype).clone().requires_grad_()
        y = weight.linear(x)
        assert y.shape == (5, 7, 200)
        (y * torch.arange(200, dtype=dtype)).sum().backward()
        grads[path] = (y, x.grad, weight.weight.grad)
    for ours, ref in zip(grads["onednn"], grads["blas"], strict=True):
        assert rel(ours, ref) < TOL
    assert torch.all(grads["onednn"][2][~conn.to_dense()] == 0)  # no gradient off the mask


@needs_onednn
def test_onednn_products_are_deterministic(mode):
    mode("onednn")
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(32, 2000, generator=g), torch.randn(1500, 2000, generator=g)
    assert torch.equal(gemm.nt(a, b), gemm.nt(a, b))
