"""The fused recurrence, the masked-dense weight, the recurrent layer and the model: known answers in float64,
mask and Dale invariants (ARCHITECTURE invariants 1, 2, 4, 5)."""

import pytest
import torch

from cortexnet.connectivity import Connectivity, erdos_renyi
from cortexnet.layers import REC_INIT_SCALE, RecurrentLayer, apply_constraints, observe_projection
from cortexnet.models import CortexRNN, CortexRNNConfig, build_model
from cortexnet.sparse import DenseRecurrence, make_sparse_weight


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_states(u, w, act):
    f = torch.relu if act == "relu" else torch.tanh
    h = torch.zeros_like(u[0])
    out = []
    for t in range(u.shape[0]):
        h = f(u[t] + h @ w.t())
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_dense_recurrence_gradcheck(act):
    torch.manual_seed(0)
    u = torch.randn(4, 3, 6, dtype=torch.float64, requires_grad=True)
    w = (0.4 * torch.randn(6, 6, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, w: DenseRecurrence.apply(u, w, None, act), (u, w))


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_dense_recurrence_matches_per_step_autograd_with_mask(act):
    torch.manual_seed(1)
    mask = torch.rand(9, 9) < 0.3
    u = torch.randn(6, 4, 9, dtype=torch.float64, requires_grad=True)
    w = (0.5 * torch.randn(9, 9, dtype=torch.float64) * mask).requires_grad_()
    upstream = torch.randn(6, 4, 9, dtype=torch.float64)
    (DenseRecurrence.apply(u, w, mask, act) * upstream).sum().backward()
    gu, gw = u.grad.clone(), w.grad.clone()
    u.grad = w.grad = None
    (reference_states(u, w * mask, act) * upstream).sum().backward()
    torch.testing.assert_close(gu, u.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw, w.grad, rtol=1e-12, atol=1e-12)
    assert torch.all(gw[~mask] == 0)  # exactly zero gradient off the mask


def test_hand_computed_two_step_relu():
    # N = 2, w = [[0, 1], [-1, 0]]: h0 = relu(u0) = [1, 2]; h1 = relu(u1 + h0 wᵀ) = relu([0, 0] + [2, -1]) = [2, 0].
    u = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]])
    w = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    out = DenseRecurrence.apply(u, w, None, "relu")
    torch.testing.assert_close(out[:, 0], torch.tensor([[1.0, 2.0], [2.0, 0.0]]))


def test_masked_dense_linear_and_set_values():
    conn = erdos_renyi(5, 7, p=0.5, generator=gen())
    sw = make_sparse_weight("masked_dense", conn)
    rows, cols = conn.rows(), conn.col
    vals = torch.arange(1, conn.nnz + 1, dtype=torch.float32)
    sw.set_values_(rows, cols, vals)
    dense = torch.zeros(5, 7)
    dense[rows, cols] = vals
    x = torch.randn(3, 7)
    torch.testing.assert_close(sw.linear(x), x @ dense.t())
    torch.testing.assert_close(sw.to_dense(), dense)
    off = (~conn.to_dense()).nonzero()
    if len(off):
        with pytest.raises(ValueError, match="outside"):
            sw.set_values_(off[:1, 0], off[:1, 1], torch.ones(1))


def _layer(n=60, p=0.2, dale=True, mode="clip", scale=1.0, **kw):
    conn = erdos_renyi(n, n, p=p, generator=gen(1))
    inh = None
    if dale:
        inh = torch.zeros(n, dtype=torch.bool)
        inh[: n // 4] = True
    return RecurrentLayer(
        4, conn, inhibitory=inh, dale_mode=mode, inhibitory_scale=scale, generator=gen(2), **kw
    ), conn


def test_init_ranges_and_dale_column_signs():
    layer, conn = _layer(scale=10.0)
    w = layer.rec.to_dense()
    mask = conn.to_dense()
    assert torch.all(w[~mask] == 0)
    inh = layer.inhibitory
    assert torch.all(w[:, inh] <= 0) and torch.all(w[:, ~inh] >= 0)
    assert w[:, ~inh].max() <= REC_INIT_SCALE and w[:, inh].min() >= -10 * REC_INIT_SCALE
    assert w[:, inh].min() < -REC_INIT_SCALE  # the 10x scale is used
    plain, _ = _layer(dale=False)
    wp = plain.rec.to_dense()
    assert wp.abs().max() <= REC_INIT_SCALE and (wp < 0).any() and (wp > 0).any()


def _train_hard(model, steps=30, lr=0.05, after_every_step=None):
    """Adam at a large lr; returns how many effective weights the optimiser step itself (before the constraint
    projection) flipped in sign. ``after_every_step(model, x)`` runs after every step's constraints."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.rand(16, 5, model.n_inputs, generator=gen(4))
    y = torch.randint(0, model.n_classes, (16,), generator=gen(5))
    flips = [0]
    rec = model.recurrent.rec
    before: list[torch.Tensor] = []

    def count(weight):  # runs inside opt.step(), between the update and the constraint projection
        if weight is rec:
            flips[0] += int(((weight.to_dense() * before[-1]) < 0).sum())

    handle = observe_projection(count)
    try:
        for _ in range(steps):
            before.append(rec.to_dense())
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()  # the constraints are re-imposed inside step (cortexnet.sparse.constraints)
            if after_every_step is not None:
                after_every_step(model, x)
    finally:
        handle.remove()
    return flips[0]


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
@pytest.mark.parametrize("mode", ["clip", "abs"])
def test_dale_holds_after_every_step_on_the_forward_tensor(mode, backend):
    cfg = CortexRNNConfig(n_nodes=80, p=0.3, dale=True, dale_mode=mode, backend=backend)
    model = build_model("cortex_rnn", cfg, 3, 4)
    layer, rec = model.recurrent, model.recurrent.rec
    mask = rec.connectivity().to_dense()
    inh = layer.inhibitory
    steps = []

    def check(model, x):
        # The effective weight (what the forward pass multiplies by, for every backend) obeys Dale's law...
        w = rec.to_dense()
        assert rec.sign_violations() == 0
        assert torch.all(w[:, inh] <= 0) and torch.all(w[:, ~inh] >= 0)
        assert torch.all(w[~mask] == 0) and torch.equal(rec.connectivity().to_dense(), mask)
        # ... and it is the weight the forward pass really uses: the model equals a dense reference built from it.
        with torch.no_grad():
            u = (x @ layer.weight_in.t() + layer.bias).transpose(0, 1)
            ref = model.readout(reference_states(u, w, cfg.activation)[-1])
            torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)
        steps.append(int((w[mask] != 0).sum()))

    flips = _train_hard(model, after_every_step=check)
    assert len(steps) == 30  # checked after every optimiser step
    if mode == "clip":
        assert flips > 0  # the large lr really tried to flip signs, so the projection was exercised
    else:
        # |V| * sign(column): the optimiser step moves V, but the effective weight can never change sign.
        assert flips == 0
    # Zeroed weights may regrow with their node's sign: the count of exact zeros is not all of the clipped ones.
    assert steps[-1] > 0


def test_inhibitory_count_and_identity_are_fixed_through_training():
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=200, p=0.1, dale=True), 3, 4)
    inh = model.recurrent.inhibitory.clone()
    assert int(inh.sum()) == 23  # round(0.115 * 200)
    _train_hard(model, steps=5)
    assert torch.equal(model.recurrent.inhibitory, inh)


def test_sparse_to_dense_initial_sparse_all_trainable():
    cfg = CortexRNNConfig(n_nodes=50, p=0.1, dale=True, sparse_to_dense=True)
    model = build_model("cortex_rnn", cfg, 3, 4)
    rec = model.recurrent.rec
    assert rec.nnz == 50 * 49  # every off-diagonal weight may train
    nz = int((rec.to_dense() != 0).sum())
    assert nz < 0.2 * 50 * 49  # initial weights only on the ~10 % sparse mask
    _train_hard(model, steps=10, lr=0.01)
    assert int((rec.to_dense() != 0).sum()) > nz  # weights initialised at zero grew
    assert rec.sign_violations() == 0


def test_model_forward_shapes_and_states():
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=30, p=0.2), 8, 10)
    x = torch.rand(5, 8, 8)
    assert model(x).shape == (5, 10)
    states = model.hidden(x, all_steps=True)
    assert states.shape == (5, 8, 30)
    torch.testing.assert_close(states[:, -1], model.hidden(x))
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        model(torch.rand(5, 8, 7))


def test_model_matches_hand_written_recurrence():
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=25, p=0.3, activation="tanh"), 4, 3).double()
    x = torch.rand(2, 6, 4, dtype=torch.float64)
    layer = model.recurrent
    u = (x @ layer.weight_in.t() + layer.bias).transpose(0, 1)
    h = reference_states(u, layer.rec.to_dense(), "tanh")[-1]
    torch.testing.assert_close(model(x), model.readout(h))


def test_determinism_and_separate_seeds():
    cfg = CortexRNNConfig(n_nodes=100, p=0.1, dale=True, connectivity_seed=3, weight_seed=4)
    a, b = CortexRNN(cfg, 5, 3), CortexRNN(cfg, 5, 3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = CortexRNN(CortexRNNConfig(n_nodes=100, p=0.1, dale=True, connectivity_seed=3, weight_seed=5), 5, 3)
    mask = lambda m: m.recurrent.rec.connectivity().to_dense()  # noqa: E731 - backend-independent views
    assert torch.equal(mask(a), mask(c))  # same connectivity seed: same mask and E/I
    assert torch.equal(a.recurrent.inhibitory, c.recurrent.inhibitory)
    assert not torch.equal(a.recurrent.rec.to_dense(), c.recurrent.rec.to_dense())  # other weight seed
    d = CortexRNN(CortexRNNConfig(n_nodes=100, p=0.1, dale=True, connectivity_seed=4, weight_seed=4), 5, 3)
    assert not torch.equal(mask(a), mask(d))


def test_describe_reports_exact_counts():
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=100, p=0.1, dale=True, exact_edges=True), 5, 3)
    info = model.describe()
    assert info["synapses"] == 990 and info["n_inhibitory"] == 12
    assert info["density"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "kwargs,msg",
    [({"n_nodes": 0}, "n_nodes"), ({"p": 0.0}, r"\(0, 1\]"), ({"p": 1.5}, r"\(0, 1\]"),
     ({"inhibitory_fraction": -0.1}, r"\[0, 1\]"), ({"activation": "gelu"}, "activation"),
     ({"backend": "nope"}, "backend"), ({"dale": True, "dale_mode": "abs", "sparse_to_dense": True}, "clip")],
)  # fmt: skip
def test_config_errors_name_the_value(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        CortexRNNConfig(**kwargs).validate()


def test_full_connectivity_helper():
    assert Connectivity.full(4, 4, self_connections=False).nnz == 12


def test_off_mask_weights_get_no_gradient_and_no_optimiser_state():
    # masked dense internals (its dense parameter and mask); the other backends store only active synapses
    cfg = CortexRNNConfig(n_nodes=40, p=0.2, dale=True, backend="masked_dense")
    model = build_model("cortex_rnn", cfg, 3, 4)
    rec = model.recurrent.rec
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.rand(8, 4, 3, generator=gen(1)), torch.randint(0, 4, (8,), generator=gen(2))
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        assert torch.all(rec.weight.grad[~rec.mask] == 0)
        opt.step()
        apply_constraints(model)
    state = opt.state[rec.weight]
    assert torch.all(state["exp_avg"][~rec.mask] == 0) and torch.all(state["exp_avg_sq"][~rec.mask] == 0)
    assert torch.all(rec.weight[~rec.mask] == 0)


def test_topology_params_reach_the_generator_and_are_validated():
    cfg = CortexRNNConfig(n_nodes=400, p=1.0, topology="g2g", topology_params={"p_inter": 0.1, "groups": 4},
                          connectivity_seed=1)  # fmt: skip
    density = build_model("cortex_rnn", cfg, 3, 2).describe()["density"]
    expected = 1.0 / 4 + 0.1 * 3 / 4  # p/G + p'(G-1)/G (G2GNet's active fraction)
    assert abs(density - expected) < 0.02
    full = build_model("cortex_rnn", CortexRNNConfig(n_nodes=20, topology="full"), 3, 2)
    assert full.describe()["synapses"] == 20 * 19
    with pytest.raises(ValueError, match="takes no"):
        CortexRNNConfig(topology="er", topology_params={"groups": 3}).validate()
    with pytest.raises(ValueError, match="must not repeat"):
        CortexRNNConfig(topology="g2g", topology_params={"p": 0.3}).validate()
