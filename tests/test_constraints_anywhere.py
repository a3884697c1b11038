"""Dale's law and the mask hold in any training loop (ARCHITECTURE.md invariants 1-2), not only in fit()."""

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from cortexnet.layers import constraint_violations, sparse_weights
from cortexnet.models import CortexRNNConfig, FeedForwardConfig, build_model
from cortexnet.sparse import constraints as constraints_mod

OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=0.05),
    "sgd": lambda params: torch.optim.SGD(params, lr=5.0, momentum=0.9),
}


def _model(kind: str, backend: str):
    if kind == "rnn":
        cfg = CortexRNNConfig(
            n_nodes=60, p=0.3, dale=True, backend=backend, connectivity_seed=1, weight_seed=2
        )
        return build_model("cortex_rnn", cfg, 4, 3), torch.rand(
            32, 5, 4, generator=torch.Generator().manual_seed(0)
        )
    cfg = FeedForwardConfig(
        n_nodes=60, n_steps=5, p=0.3, dale=True, backend=backend, hidden_init="dense_fan_in"
    )
    return build_model("feedforward", cfg, 4, 3), torch.rand(
        32, 5, 4, generator=torch.Generator().manual_seed(0)
    )


def _plain_loop(model, x, opt, steps=20, check=None):
    """The loop a PyTorch user writes: no cortexnet call anywhere."""
    y = torch.arange(len(x)) % 3
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if check is not None:
            check()


@pytest.mark.parametrize("kind", ["rnn", "ff"])
@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_a_plain_pytorch_loop_keeps_dale_and_the_mask_after_every_step(kind, backend, opt_name):
    model, x = _model(kind, backend)
    masks = {n: w.connectivity() for n, w in sparse_weights(model).items()}
    counts = []

    def check():
        v = constraint_violations(model)
        counts.append(v["total"])
        for n, w in sparse_weights(model).items():
            assert w.connectivity().equals(masks[n])  # the mask itself never changes

    tried = []  # how many weights each step pushed to the wrong sign before the projection
    handle = constraints_mod.observe_projection(
        lambda w: tried.append(w.constraint_violations()["wrong_sign"])
    )
    try:
        _plain_loop(model, x, OPTIMIZERS[opt_name](model.parameters()), check=check)
    finally:
        handle.remove()
    assert counts == [0] * 20
    assert sum(tried) > 0  # the large steps really tried to flip signs: the projection was exercised


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_without_the_step_hook_the_same_loop_breaks_dale(backend):
    # The test above fails if the mechanism is removed: the very same loop, with the after-step projection
    # detached, leaves wrong-sign weights in the stored parameters.
    model, x = _model("rnn", backend)
    constraints_mod.AFTER_STEP_HOOK.remove()
    try:
        opt = OPTIMIZERS["adam"](model.parameters())
        y = torch.arange(len(x)) % 3
        violations = []
        for _ in range(5):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            violations.append(constraint_violations(model)["wrong_sign"])
    finally:
        constraints_mod.AFTER_STEP_HOOK = register_optimizer_step_post_hook(constraints_mod._after_step)
    assert max(violations) > 0
    # ... and the forward-time check still protects the function: the next forward projects first.
    before = model(x)
    assert constraint_violations(model)["total"] == 0
    torch.testing.assert_close(model(x), before)


def test_a_manual_edit_is_projected_before_the_next_forward():
    model, x = _model("rnn", "csr")
    w = sparse_weights(model)["recurrent.rec"]
    with torch.no_grad():
        w.values.mul_(-1.0)  # every weight now has the wrong sign
    assert constraint_violations(model)["wrong_sign"] > 0
    out = model(x)
    assert constraint_violations(model)["total"] == 0
    assert torch.isfinite(out).all()


def test_one_optimizer_over_two_models_projects_both():
    (a, x), (b, _) = _model("rnn", "csr"), _model("ff", "masked_dense")
    opt = torch.optim.Adam([*a.parameters(), *b.parameters()], lr=0.05)
    y = torch.arange(len(x)) % 3
    for _ in range(5):
        loss = F.cross_entropy(a(x), y) + F.cross_entropy(b(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert constraint_violations(a)["total"] == 0 and constraint_violations(b)["total"] == 0


def test_violations_are_counted_in_connectivity_order_and_named():
    model, _ = _model("ff", "csr")
    w = sparse_weights(model)["connections.sparse"]
    with torch.no_grad():
        w.values[:3] = -w.values[:3].abs() * w.column_sign[w.col[:3].long()] - 1.0  # three wrong signs
        w.values[3] = float("nan")
    v = constraint_violations(model)
    assert v["wrong_sign"] == 3 and v["non_finite"] == 1 and v["off_mask"] == 0
    assert v["per_weight"]["connections.sparse"]["wrong_sign"] == 3


class RawSparse(torch.nn.Module):
    """A user module holding a bare SparseWeight (no cortexnet layer around it)."""

    def __init__(self, backend):
        super().__init__()
        from cortexnet.connectivity import assign_inhibitory, dale_signs, make_connectivity
        from cortexnet.sparse import make_sparse_weight

        g = torch.Generator().manual_seed(0)
        conn = make_connectivity("er", 40, 30, generator=g, p=0.5)
        sign = dale_signs(assign_inhibitory(30, 0.3, generator=g))
        self.w = make_sparse_weight(backend, conn, dale="clip", column_sign=sign)
        rows, cols = conn.rows(), conn.col
        self.w.set_values_(rows, cols, torch.rand(conn.nnz, generator=g) * sign[cols] * 0.1)
        self.readout = torch.nn.Linear(40, 3)

    def forward(self, x):
        return self.readout(torch.relu(self.w.linear(x)))


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_a_bare_sparse_weight_in_a_user_module_keeps_dale(backend):
    model = RawSparse(backend)
    x = torch.rand(64, 30, generator=torch.Generator().manual_seed(1))
    y = torch.arange(64) % 3
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(10):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert model.w.constraint_violations()["wrong_sign"] == 0


def test_functional_call_never_modifies_the_callers_tensors():
    model = RawSparse("csr")
    wrong = -model.w.values.detach().clone() - 0.5  # every value has the wrong sign
    out = torch.func.functional_call(model, {"w.values": wrong}, (torch.rand(4, 30),))
    assert torch.isfinite(out).all()
    assert bool((wrong < 0).sum() > 0) and torch.equal(wrong, -model.w.values.detach() - 0.5)


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_the_first_product_never_rewrites_a_weight_a_graph_already_holds(backend):
    # An L1 penalty evaluated before the forward pass holds the parameter; the forward must not then
    # project it in place (the constraints were recorded as holding when the values were set or loaded).
    def penalised_step(model):
        w = sparse_weights(model)["recurrent.rec"]
        reg = 1e-3 * w._parameter().abs().sum()
        loss = F.cross_entropy(model(x), torch.arange(len(x)) % 3) + reg
        loss.backward()

    model, x = _model("rnn", backend)
    penalised_step(model)  # fresh model
    w = sparse_weights(model)["recurrent.rec"]
    from sparse_helpers import rewired

    w.set_connectivity_(rewired(w.connectivity(), 5, seed=1))
    penalised_step(model)  # after rewiring
    fresh, _ = _model("rnn", backend)
    fresh.load_state_dict(model.state_dict())
    penalised_step(fresh)  # after loading


def test_swap_tensors_conversions_and_copies_stay_constrained():
    import copy

    model, _ = _model("rnn", "csr")
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        model.double()
        model.load_state_dict(model.state_dict())
    finally:
        torch.__future__.set_swap_module_params_on_conversion(False)
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        converted = copy.deepcopy(model).float()  # new Parameter objects
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(False)
    for m in (copy.deepcopy(model), converted):
        # No forward pass first: an optimiser step on made-up gradients is still projected.
        opt = torch.optim.SGD(m.parameters(), lr=10.0)
        for p in m.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
        assert constraint_violations(m)["total"] == 0


def test_functional_call_with_parameter_copies_leaves_them_alone():
    model = RawSparse("masked_dense")
    copies = {k: torch.nn.Parameter(-v.detach().clone() - 0.5) for k, v in model.named_parameters()}
    before = {k: v.detach().clone() for k, v in copies.items()}
    torch.func.functional_call(model, copies, (torch.rand(4, 30),))
    assert all(torch.equal(copies[k], before[k]) for k in copies)
