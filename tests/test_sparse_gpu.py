"""GPU path of the sparse backends (cuSPARSE through torch): equivalence with masked dense on the CPU.

Marked ``gpu`` (deselected by default; ``pytest -m gpu``) and skipped without CUDA.
"""

from __future__ import annotations

import pytest
import torch

from cortexnet.connectivity import assign_inhibitory, dale_signs, make_connectivity
from cortexnet.sparse import make_sparse_weight

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("backend", ["csr", "masked_dense"])
@pytest.mark.parametrize("density", [0.001, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("dale", ["none", "clip", "abs"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_cuda_matches_cpu_masked_dense(backend, density, dale, activation):
    g = torch.Generator().manual_seed(0)
    n, steps, batch = 300, 6, 5
    conn = make_connectivity("er", n, n, generator=g, p=density)
    sign = dale_signs(assign_inhibitory(n, 0.2, generator=g)) if dale != "none" else None
    ref = make_sparse_weight("masked_dense", conn, dale=dale, column_sign=sign).double()
    values = torch.randn(conn.nnz, generator=g, dtype=torch.float64) * 0.2
    ref.set_values_(conn.rows(), conn.col, values)
    gpu = make_sparse_weight(backend, conn, dale=dale, column_sign=sign).double()
    gpu.load_state_dict(ref.state_dict())
    gpu.to("cuda")
    u = torch.randn(steps, batch, n, generator=g, dtype=torch.float64, requires_grad=True)
    u_gpu = u.detach().cuda().requires_grad_()
    y_ref, y_gpu = ref.recurrent(u, activation), gpu.recurrent(u_gpu, activation)
    torch.testing.assert_close(y_gpu.cpu(), y_ref)
    y_ref.square().sum().backward()
    y_gpu.square().sum().backward()
    torch.testing.assert_close(u_gpu.grad.cpu(), u.grad)
    p_gpu = next(gpu.parameters())
    grad_ref = ref.weight.grad if backend == "masked_dense" else ref.weight.grad[conn.rows(), conn.col]
    torch.testing.assert_close(p_gpu.grad.cpu(), grad_ref)
    # linear, and an optimiser step with the projection, on the device
    x = torch.randn(7, n, generator=g, dtype=torch.float64)
    torch.testing.assert_close(gpu.linear(x.cuda()).cpu(), ref.linear(x))
    torch.optim.Adam(gpu.parameters(), lr=0.1).step()
    gpu.apply_constraints_()
    if dale != "none":
        assert gpu.sign_violations() == 0
    back = make_sparse_weight("masked_dense", conn, dale=dale, column_sign=sign).double()
    back.load_state_dict(gpu.cpu().state_dict())
    assert torch.equal(back.to_dense(), gpu.to_dense())
