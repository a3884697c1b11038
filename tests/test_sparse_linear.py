"""SparseLinear: equal to a masked dense linear layer in float64 (outputs, gradients, after optimiser steps) on
every backend, masks and Dale's law on its inputs hold after every step, initialisations, checkpoints."""

import math

import pytest
import torch
from torch import nn

from cortexnet.connectivity import assign_inhibitory, make_connectivity
from cortexnet.layers import SparseLinear, apply_constraints
from cortexnet.sparse import BACKENDS

# Every test here runs on PyTorch's sparse kernels and on the compiled ones (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("csr_kernel")

BACKEND_NAMES = ["masked_dense", "csr", "auto"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def conn(n_out=30, n_in=40, p=0.3, topology="er", seed=0, **kw):
    return make_connectivity(topology, n_out, n_in, generator=gen(seed), p=p, **kw)


def test_backends_are_registered():
    assert set(BACKEND_NAMES) <= set(BACKENDS.names())


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("topology", ["er", "g2g"])
def test_equals_masked_dense_linear_in_float64_outputs_and_gradients(backend, topology):
    c = conn(
        topology=topology, p=0.3 if topology == "er" else 0.9, **({"groups": 5} if topology == "g2g" else {})
    )
    layer = SparseLinear(c, backend=backend, generator=gen(1)).double()
    mask = c.to_dense()
    w_ref = layer.to_dense().clone().requires_grad_(True)
    b_ref = layer.bias.detach().clone().requires_grad_(True)
    assert torch.all(w_ref[~mask] == 0) and w_ref.dtype == torch.float64

    x = torch.randn(7, 3, 40, dtype=torch.float64, requires_grad=True)  # any leading shape
    x_ref = x.detach().clone().requires_grad_(True)
    r = torch.randn(7, 3, 30, dtype=torch.float64)
    y = layer(x)
    y_ref = x_ref @ (w_ref * mask).t() + b_ref
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    (y * r).sum().backward()
    (y_ref * r).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.bias.grad, b_ref.grad, rtol=1e-12, atol=1e-12)
    # Weight gradient, backend-independently: one plain SGD step moves the effective weight by -lr * masked grad.
    sgd = torch.optim.SGD(layer.parameters(), lr=0.5)
    sgd.step()
    torch.testing.assert_close(
        layer.to_dense(), (w_ref - 0.5 * w_ref.grad * mask).detach(), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_adam_steps_match_a_masked_dense_reference_and_keep_the_mask(backend):
    c = conn(p=0.2, seed=3)
    mask = c.to_dense()
    layer = SparseLinear(c, backend=backend, generator=gen(4)).double()
    ref_w = nn.Parameter(layer.to_dense().clone())
    ref_b = nn.Parameter(layer.bias.detach().clone())
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    ref_opt = torch.optim.Adam([ref_w, ref_b], lr=0.05)
    g = gen(5)
    for _ in range(5):
        x = torch.randn(16, 40, generator=g, dtype=torch.float64)
        t = torch.randn(16, 30, generator=g, dtype=torch.float64)
        for model_out, o in ((layer(x), opt), (x @ (ref_w * mask).t() + ref_b, ref_opt)):
            o.zero_grad()
            (model_out - t).pow(2).mean().backward()
            o.step()
        apply_constraints(layer)
    torch.testing.assert_close(layer.to_dense(), (ref_w * mask).detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.bias.detach(), ref_b.detach(), rtol=1e-10, atol=1e-12)
    w = layer.to_dense()
    assert torch.all(w[~mask] == 0)
    assert layer.connectivity().equals(c)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("dale_mode", ["clip", "abs"])
def test_dale_on_inputs_holds_after_every_step(backend, dale_mode):
    c = conn(n_out=25, n_in=50, p=0.4, seed=6)
    inhibitory = assign_inhibitory(50, 0.3, generator=gen(7))
    layer = SparseLinear(c, inhibitory=inhibitory, dale_mode=dale_mode, backend=backend, generator=gen(8))
    w0 = layer.to_dense()
    assert torch.all(w0[:, inhibitory] <= 0) and torch.all(w0[:, ~inhibitory] >= 0)
    assert (w0[c.to_dense()] != 0).all()  # every active synapse starts non-zero, with its input's sign
    opt = torch.optim.Adam(layer.parameters(), lr=0.5)  # large steps: many weights try to flip sign
    zeroed = 0
    for step in range(6):
        x = torch.randn(32, 50, generator=gen(100 + step))
        loss = (layer(x) - torch.randn(32, 25, generator=gen(200 + step))).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        apply_constraints(layer)
        w = layer.to_dense()
        assert torch.all(w[:, inhibitory] <= 0) and torch.all(w[:, ~inhibitory] >= 0), step
        assert layer.sparse.sign_violations() == 0
        assert torch.all(w[~c.to_dense()] == 0)
        zeroed = max(zeroed, int((w[c.to_dense()] == 0).sum()))
    if dale_mode == "clip":
        assert zeroed > 0  # the paper's rule: a weight that would flip is set to zero instead


def test_initialisations_bounds_and_support():
    c = conn(n_out=200, n_in=100, p=0.1, seed=9)
    mask, fan_in = c.to_dense(), c.crow.diff()
    dense = SparseLinear(c, init="dense_fan_in", generator=gen()).to_dense()
    assert dense[mask].abs().max() <= 1 / math.sqrt(100) and dense[mask].abs().max() > 0.8 / math.sqrt(100)
    sparse = SparseLinear(c, init="sparse_fan_in", generator=gen()).to_dense()
    row_max = sparse.abs().max(dim=1).values
    assert torch.all(row_max <= 1 / fan_in.clamp(min=1).float().sqrt() + 1e-7)
    assert row_max.max() > 1 / math.sqrt(100)  # larger than the dense bound: fan-in ~10, not 100
    uni = SparseLinear(c, init="uniform", init_scale=1e-3, generator=gen()).to_dense()
    assert uni.abs().max() <= 1e-3
    for w in (dense, sparse, uni):
        assert torch.all(w[~mask] == 0) and (w[mask] != 0).all()


def test_same_seed_same_values_and_parameter_count():
    c = conn(seed=11)
    a = SparseLinear(c, generator=gen(2))
    b = SparseLinear(c, generator=gen(2), backend="csr")
    torch.testing.assert_close(a.to_dense(), b.to_dense(), rtol=0, atol=0)
    assert a.parameter_count() == c.nnz + 30 == b.parameter_count()
    assert SparseLinear(c, bias=False, generator=gen()).parameter_count() == c.nnz
    # masked dense stores every position; csr only the active ones.
    assert sum(p.numel() for p in a.parameters()) == 30 * 40 + 30
    assert sum(p.numel() for p in b.parameters()) == c.nnz + 30


def test_checkpoint_of_one_backend_loads_into_another():
    c = conn(seed=12)
    src = SparseLinear(c, backend="masked_dense", generator=gen(3))
    dst = SparseLinear(c, backend="csr", generator=gen(4))
    dst.load_state_dict(src.state_dict())
    x = torch.randn(5, 40)
    torch.testing.assert_close(dst(x), src(x))


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"inhibitory": torch.zeros(39, dtype=torch.bool)}, r"shape \(40,\)"),
        ({"inhibitory": torch.zeros(40)}, "bool tensor"),
        ({"init": "xavier"}, "init must be one of"),
        ({"init_scale": 0.0}, "init_scale must be > 0"),
        ({"backend": "nope"}, "unknown sparse backend"),
    ],
)
def test_constructor_errors(kwargs, msg):
    with pytest.raises((ValueError, KeyError), match=msg):
        SparseLinear(conn(), generator=gen(), **kwargs)


def test_forward_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match="expected 40"):
        SparseLinear(conn(), generator=gen())(torch.randn(2, 41))


def test_default_backend_is_auto_masked_dense_when_small_csr_when_large_and_sparse():
    from cortexnet.layers import RecurrentLayer
    from cortexnet.models import CortexRNNConfig

    assert CortexRNNConfig().backend == "auto"
    assert SparseLinear(conn(), generator=gen()).sparse.backend == "masked_dense"  # 30 x 40 possible
    big = SparseLinear(conn(400, 400, p=0.01), generator=gen())  # 160,000 possible, 1 % dense
    assert big.sparse.backend == "csr"
    rec = RecurrentLayer(3, conn(400, 400, p=0.01), generator=gen())
    assert rec.rec.backend == "csr"
