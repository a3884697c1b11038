"""Invariant 5: every sparse-weight backend computes the function and the gradients of masked dense.

float64, random sizes and densities from 0.001 to 1, with and without Dale's law (both modes), relu/tanh, the
recurrent Function and the linear product, and step by step through several optimiser steps.
"""

from __future__ import annotations

import pytest
import torch

from cortexnet.connectivity import Connectivity, assign_inhibitory, dale_signs, make_connectivity
from cortexnet.sparse import BACKENDS, make_sparse_weight

# Every test here runs on PyTorch's sparse kernels and on the compiled ones (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("csr_kernel")

OTHER_BACKENDS = ["csr"]
DENSITIES = [0.001, 0.01, 0.1, 0.5, 1.0]
DALE = ["none", "clip", "abs"]
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _pair(
    n_out: int,
    n_in: int,
    density: float,
    dale: str,
    seed: int,
    backend: str = "csr",
    **options,
):
    """The same random weight on masked_dense and on ``backend`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    conn = make_connectivity("er", n_out, n_in, generator=g, p=density, self_connections=True)
    sign = dale_signs(assign_inhibitory(n_in, 0.3, generator=g)) if dale != "none" else None
    ref = make_sparse_weight("masked_dense", conn, dale=dale, column_sign=sign).double()
    other = make_sparse_weight(backend, conn, dale=dale, column_sign=sign, **options).double()
    values = torch.randn(conn.nnz, generator=g, dtype=torch.float64) * 0.3
    ref.set_values_(conn.rows(), conn.col, values)
    other.set_values_(conn.rows(), conn.col, values)
    return conn, ref, other, g


def _param(w):
    return w.weight if w.backend == "masked_dense" else w.values


def _at_synapses(w, grad: torch.Tensor, conn: Connectivity) -> torch.Tensor:
    """A parameter-shaped gradient read at the synapses, canonical order."""
    if w.backend == "masked_dense":
        return grad[conn.rows(), conn.col]
    return grad


def test_registry_has_all_backends():
    assert {"masked_dense", "csr", "auto"} <= set(BACKENDS.names())


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("dale", DALE)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_recurrent_outputs_and_gradients_match(backend, density, dale, activation):
    seed = hash((density, dale, activation)) % 10_000
    g0 = torch.Generator().manual_seed(seed)
    n = int(torch.randint(20, 160, (1,), generator=g0))
    steps, batch = int(torch.randint(1, 7, (1,), generator=g0)), int(torch.randint(1, 6, (1,), generator=g0))
    # Small panels exercise the multi-panel kernels at these small sizes; None the default policy.
    panel = [None, 16, 7][seed % 3]
    conn, ref, other, g = _pair(n, n, density, dale, seed, backend, panel_cols=panel)
    assert torch.equal(ref.to_dense(), other.to_dense())
    u = torch.randn(steps, batch, n, generator=g, dtype=torch.float64, requires_grad=True)
    w_out = torch.randn(steps, batch, n, generator=g, dtype=torch.float64)
    y_ref = ref.recurrent(u, activation)
    y_other = other.recurrent(u, activation)
    torch.testing.assert_close(y_other, y_ref, **TOL)
    gu_ref, gw_ref = torch.autograd.grad((y_ref * w_out).sum(), [u, _param(ref)])
    gu_other, gw_other = torch.autograd.grad((y_other * w_out).sum(), [u, _param(other)])
    torch.testing.assert_close(gu_other, gu_ref, **TOL)
    torch.testing.assert_close(gw_other, _at_synapses(ref, gw_ref, conn), **TOL)
    # The reference's gradient is exactly zero off the mask (invariant 1).
    assert not bool(gw_ref[~ref.mask].any())


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("dale", DALE)
def test_linear_outputs_and_gradients_match(backend, density, dale):
    seed = hash((density, dale, "linear")) % 10_000
    g0 = torch.Generator().manual_seed(seed)
    n_out, n_in = (int(v) for v in torch.randint(5, 200, (2,), generator=g0))
    conn, ref, other, g = _pair(n_out, n_in, density, dale, seed, backend, panel_cols=[None, 9][seed % 2])
    x = torch.randn(3, 4, n_in, generator=g, dtype=torch.float64, requires_grad=True)
    y_ref, y_other = ref.linear(x), other.linear(x)
    assert y_other.shape == (3, 4, n_out)
    torch.testing.assert_close(y_other, y_ref, **TOL)
    w_out = torch.randn(3, 4, n_out, generator=g, dtype=torch.float64)
    gx_ref, gw_ref = torch.autograd.grad((y_ref * w_out).sum(), [x, _param(ref)])
    gx_other, gw_other = torch.autograd.grad((y_other * w_out).sum(), [x, _param(other)])
    torch.testing.assert_close(gx_other, gx_ref, **TOL)
    torch.testing.assert_close(gw_other, _at_synapses(ref, gw_ref, conn), **TOL)


def test_linear_large_batch_chunks_the_value_gradient():
    conn, ref, other, g = _pair(40, 30, 0.2, "none", 3)
    x = torch.randn(700, 30, generator=g, dtype=torch.float64, requires_grad=True)  # > one K chunk
    (gr,) = torch.autograd.grad(ref.linear(x).square().sum(), [ref.weight])
    (go,) = torch.autograd.grad(other.linear(x).square().sum(), [other.values])
    torch.testing.assert_close(go, gr[conn.rows(), conn.col], **TOL)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize(
    ("dale", "optimizer"), [("none", "adam"), ("clip", "adam"), ("abs", "adam"), ("clip", "sgd")]
)
def test_weights_stay_equal_through_optimiser_steps(backend, dale, optimizer):
    """Train both backends side by side: after every step (and constraint projection) the effective weights
    are equal, off-mask weights of the reference are exactly zero and Dale's signs hold."""
    n, steps, batch = 60, 5, 4
    _, ref, other, g = _pair(n, n, 0.15, dale, 11, backend, panel_cols=16)
    readout = torch.randn(n, 3, generator=g, dtype=torch.float64)
    make = {
        "adam": lambda p: torch.optim.Adam([p], lr=0.05),
        "sgd": lambda p: torch.optim.SGD([p], lr=0.5, momentum=0.9),
    }[optimizer]
    opt_ref, opt_other = make(_param(ref)), make(_param(other))
    for _ in range(6):
        u = torch.randn(steps, batch, n, generator=g, dtype=torch.float64)
        target = torch.randint(0, 3, (batch,), generator=g)
        for w, opt in ((ref, opt_ref), (other, opt_other)):
            opt.zero_grad()
            logits = w.recurrent(u, "relu")[-1] @ readout
            torch.nn.functional.cross_entropy(logits, target).backward()
            opt.step()
            w.apply_constraints_()
        torch.testing.assert_close(other.to_dense(), ref.to_dense(), rtol=1e-9, atol=1e-12)
        assert not bool(ref.weight[~ref.mask].any())
        if dale != "none":
            assert ref.sign_violations() == 0 and other.sign_violations() == 0
    if dale == "clip":
        # The rule bit: some weights were pushed across zero and clipped to exactly zero, on both.
        assert int((other.values == 0).sum()) == int((ref.weight[ref.mask] == 0).sum())


def test_empty_and_full_connectivity():
    for conn in (
        Connectivity(5, 4, torch.zeros(6, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)),
        Connectivity.full(5, 4),
    ):
        ref = make_sparse_weight("masked_dense", conn).double()
        other = make_sparse_weight("csr", conn).double()
        values = torch.linspace(-1, 1, conn.nnz, dtype=torch.float64)
        ref.set_values_(conn.rows(), conn.col, values)
        other.set_values_(conn.rows(), conn.col, values)
        x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        torch.testing.assert_close(other.linear(x), ref.linear(x))
        (gx,) = torch.autograd.grad(other.linear(x).sum(), [x])
        torch.testing.assert_close(gx, torch.autograd.grad(ref.linear(x).sum(), [x])[0])


@pytest.mark.parametrize("density", [0.01, 0.3, 1.0])
@pytest.mark.parametrize("dale", DALE)
def test_active_values_and_grads_are_the_synapses_in_connectivity_order(density, dale):
    conn, ref, other, _ = _pair(23, 17, density, dale, seed=5)
    rows, cols = conn.rows(), conn.col
    for w in (ref, other):
        assert w.active_grads() is None  # before any backward pass
        v = w.active_values()
        assert torch.equal(v, w.to_dense()[rows, cols])  # effective weights, Dale signs applied
        v.add_(1.0)  # a copy: changing it leaves the weight alone
        assert torch.equal(w.active_values(), w.to_dense()[rows, cols])
        x = torch.randn(4, 17, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        w.linear(x).square().sum().backward()
        assert torch.equal(w.active_grads(), _at_synapses(w, _param(w).grad, conn))
    assert torch.equal(ref.active_values(), other.active_values())
    torch.testing.assert_close(ref.active_grads(), other.active_grads(), **TOL)
