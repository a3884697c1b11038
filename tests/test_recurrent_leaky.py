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

# Every test here runs on PyTorch's sparse kernels and on the compiled ones (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("csr_kernel")

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


# -- the layer: leak, noise, initial state ----------------------------------------------------------------------
def _layer(**kw):
    from cortexnet.layers import RecurrentLayer

    conn = erdos_renyi(12, 12, p=0.3, generator=torch.Generator().manual_seed(0))
    return RecurrentLayer(3, conn, generator=torch.Generator().manual_seed(1), backend="masked_dense", **kw)


def test_the_default_layer_has_exactly_the_papers_state_dict():
    assert set(_layer().state_dict()) == {"inhibitory", "weight_in", "bias", "rec.column_sign", "rec.weight",
                                          "rec.mask"}  # fmt: skip


def test_a_leaky_layer_matches_the_formula_with_its_own_weights():
    layer = _layer(alpha=torch.linspace(0.1, 1.0, 12)).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    _, states = layer(x, return_states=True)
    u = (x @ layer.weight_in.t() + layer.bias).transpose(0, 1)
    ref = reference(u, layer.rec.to_dense(), "relu", layer.alpha)
    torch.testing.assert_close(states.transpose(0, 1), ref, rtol=1e-12, atol=1e-12)


def test_noise_has_the_discretised_variance_and_is_off_at_evaluation():
    # No recurrence, no input weight, zero bias: the pre-activation is the noise alone, so with tanh (odd) and
    # α = 1 the state is tanh(ε), ε ~ N(0, 2σ²) (α = 1: sqrt(2/α) σ = sqrt(2) σ).
    from cortexnet.layers import RecurrentLayer

    empty = erdos_renyi(400, 400, p=0.0, generator=torch.Generator())
    layer = RecurrentLayer(1, empty, generator=torch.Generator(), activation="tanh", noise_std=0.01,
                           backend="csr", alpha=0.25).double()  # fmt: skip
    with torch.no_grad():
        layer.weight_in.zero_()
        layer.bias.zero_()
        x = torch.zeros(1, 50, 1, dtype=torch.float64)  # one sequence of 50 steps
        _, states = layer(x, return_states=True)
        # h_t = 0.75 h_{t-1} + 0.25 tanh(ε_t), ε ~ N(0, 2σ²/α) = N(0, 8e-4): recover ε from consecutive states
        h = states.reshape(50, 400)
        eps = torch.atanh((h[1:] - 0.75 * h[:-1]) / 0.25)
        n = eps.numel()
        var = float(eps.var())
        # the sample variance of n normal draws has sd sqrt(2/(n-1)) var: 6 sd bounds
        assert abs(var - 8e-4) < 6 * (2 / (n - 1)) ** 0.5 * 8e-4
        layer.eval()
        assert torch.count_nonzero(layer(x)) == 0
        layer.noise_at_eval = True
        assert torch.count_nonzero(layer(x)) > 0


def test_noise_is_seeded_and_its_state_round_trips_through_the_state_dict():
    a = _layer(noise_std=0.1, noise_seed=5)
    b = _layer(noise_std=0.1, noise_seed=5)
    x = torch.randn(2, 4, 3)
    assert torch.equal(a(x), b(x))  # same seed, same draws
    state = a.state_dict()  # after one draw
    c = _layer(noise_std=0.1, noise_seed=99)
    c.load_state_dict(state)
    assert torch.equal(a(x), c(x))  # continues the same stream (a resumed run draws what the first would)
    assert not torch.equal(a(x), _layer(noise_std=0.1, noise_seed=6)(x))


@pytest.mark.parametrize("mode", ["learned", "random"])
def test_initial_states(mode):
    layer = _layer(init_state=mode, init_state_std=0.5)
    x = torch.zeros(3, 1, 3)
    with torch.no_grad():
        layer.weight_in.zero_()
        layer.bias.zero_()
    if mode == "learned":
        with torch.no_grad():
            layer.h0.fill_(0.2)
        layer(x).sum().backward()  # the learned state is trained
        assert layer.h0.grad is not None and layer.h0.grad.abs().sum() > 0
    else:
        h0 = layer._initial_state(torch.zeros(1, 3, 12))
        assert (
            h0.shape == (3, 12) and bool((h0 >= 0).all()) and not torch.equal(h0[0], h0[1])
        )  # relu, per sequence


@pytest.mark.parametrize(
    ("kw", "msg"),
    [({"alpha": 0.0}, r"alpha"), ({"alpha": 1.2}, r"alpha"), ({"noise_std": -1.0}, "noise_std"),
     ({"init_state": "ones"}, "init_state"), ({"init_state": "random", "init_state_std": 0.0}, "init_state_std")],
)  # fmt: skip
def test_layer_options_out_of_range_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _layer(**kw)


def test_balanced_initialisation_cancels_every_nodes_e_and_i_input():
    from cortexnet.connectivity import dale_signs
    from cortexnet.layers import RecurrentLayer

    n = 200
    conn = erdos_renyi(n, n, p=0.2, generator=torch.Generator().manual_seed(0))
    inhibitory = torch.arange(n) % 8 == 0
    layer = RecurrentLayer(3, conn, generator=torch.Generator().manual_seed(1), inhibitory=inhibitory,
                           balanced=True).double()  # fmt: skip
    w = layer.rec.to_dense()
    has_both = ((w > 0).any(1)) & ((w < 0).any(1))
    assert has_both.sum() > 150
    # zero up to float32 rounding of the stored weights (relative to the row's total input magnitude)
    assert bool((w.sum(1).abs() <= 1e-6 * w.abs().sum(1))[has_both].all())
    assert not bool((w.sum(1).abs() <= 1e-6 * w.abs().sum(1))[~has_both & (w != 0).any(1)].any())
    # Dale's signs hold and excitatory weights are the usual U(0, 0.001) draws
    assert bool(((w * dale_signs(inhibitory).double()) >= 0).all())
    assert float(w[:, ~inhibitory].max()) <= 1e-3
    with pytest.raises(ValueError, match="needs Dale's law"):
        RecurrentLayer(3, conn, generator=torch.Generator(), balanced=True)
