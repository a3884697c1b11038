"""Training-dynamics analyses: gradient histogram bookkeeping, backend independence of the recorders (no dense
N x N matrix), per-step Dale zeroings, and E/I identities found on any Dale layer."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cortexnet.analysis import (
    GRAD_BIN_EDGES,
    GradientRecorder,
    SignTracker,
    ei_balance,
    ei_layer,
    gradient_histogram,
)
from cortexnet.layers import apply_constraints
from cortexnet.models import CortexRNNConfig, FeedForwardConfig, G2GNetConfig, build_model
from cortexnet.training import TrainConfig, fit


class S:
    epoch = 0
    step = 0


def test_gradient_histogram_drops_nothing():
    h = gradient_histogram(np.array([5.0, 1e-20, 0.0, 1e-3]))
    assert (h["zeros"], h["underflow"], h["overflow"], h["nonfinite"]) == (1, 1, 1, 0)
    assert h["counts"].sum() == 1
    assert h["counts"][np.searchsorted(GRAD_BIN_EDGES, -3.0, side="right") - 1] == 1
    h = gradient_histogram(np.array([np.nan, np.inf, 1.0, 1e-14, -2.0]))  # signs are ignored: |g|
    assert (h["nonfinite"], h["overflow"], h["counts"][-1], h["counts"][0]) == (1, 2, 1, 1)
    assert h["counts"].sum() + h["zeros"] + h["underflow"] + h["overflow"] + h["nonfinite"] == 5


def test_gradient_recorder_accounts_for_every_value():
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.rand(60, 5, 4, generator=g), torch.randint(0, 3, (60,), generator=g))
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=20, p=0.3, dale=True), 4, 3)
    rec = GradientRecorder()
    fit(model, ds, ds, TrainConfig(epochs=1, batch_size=20, data_seed=0), callbacks=[rec], progress=False)
    (ep,) = rec.epochs
    parts = ("log10_hist_zeros", "log10_hist_underflow", "log10_hist_overflow", "log10_hist_nonfinite")
    assert sum(ep["log10_hist_counts"]) + sum(ep[k] for k in parts) == ep["values_recorded"]
    assert ep["values_recorded"] == 3 * model.recurrent.rec.nnz


def _scripted_run(backend: str, steps: int = 12) -> tuple[list, list]:
    """The trainer's hook order (after_backward, step, constraints, step_end) with scripted gradients: loss =
    Σ C ⊙ W_eff for a fresh seeded C per step, so both backends see bit-identical gradients."""
    model = build_model(
        "cortex_rnn",
        CortexRNNConfig(n_nodes=12, p=0.5, dale=True, inhibitory_fraction=0.25, backend=backend),
        3,
        2,
    )
    rec = model.recurrent.rec

    def no_dense():
        raise AssertionError("the recorders must not build a dense N x N matrix")

    rec.to_dense = no_dense
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    cbs = [GradientRecorder(), SignTracker()]
    state = S()
    for cb in cbs:
        cb.on_train_begin(model, state)
    g = torch.Generator().manual_seed(1)
    eye = torch.eye(12)
    for epoch in (1, 2):
        for _ in range(steps // 2):
            opt.zero_grad()
            (rec.linear(eye) * torch.randn(12, 12, generator=g)).sum().backward()
            for cb in cbs:
                cb.on_after_backward(model, state)
            opt.step()
            apply_constraints(model)
            state.step += 1
            for cb in cbs:
                cb.on_step_end(model, state)
        state.epoch = epoch
        for cb in cbs:
            cb.on_epoch_end(model, state)
    return cbs[0].epochs, cbs[1].epochs


def test_recorders_identical_on_masked_dense_and_csr():
    grads_md, signs_md = _scripted_run("masked_dense")
    grads_csr, signs_csr = _scripted_run("csr")
    assert grads_md == grads_csr
    assert signs_md == signs_csr
    # The script does make Dale's projection work (else the comparison would be vacuous).
    assert sum(signs_md[0]["per_step"][k]["zeroed_by_projection"] for k in ("positive", "negative")) > 0


def test_recorders_run_on_csr_in_fit_without_dense_matrix():
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.rand(40, 5, 4, generator=g), torch.randint(0, 3, (40,), generator=g))
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=30, p=0.2, dale=True, backend="csr"), 4, 3)
    model.recurrent.rec.to_dense = lambda: (_ for _ in ()).throw(AssertionError("dense matrix built"))
    cbs = [GradientRecorder(), SignTracker()]
    fit(model, ds, ds, TrainConfig(epochs=1, batch_size=20, data_seed=0), callbacks=cbs, progress=False)
    assert cbs[0].epochs[0]["values_recorded"] == 2 * model.recurrent.rec.nnz
    assert cbs[1].epochs[0]["steps"] == 2


def test_sign_tracker_counts_dale_zeroings_inside_an_epoch():
    """Scripted history: SGD with lr 1 and grad = w - target moves the weights to exactly ``target`` (pre-
    projection); Dale's clip then zeroes wrong-sign ones. A weight zeroed and regrown within one epoch is
    invisible in the epoch-end snapshots but counted per step."""
    model = build_model(
        "cortex_rnn", CortexRNNConfig(n_nodes=4, p=1.0, dale=True, inhibitory_fraction=0.25), 2, 2
    )
    rec = model.recurrent.rec
    w = rec.weight  # masked dense: (N, N) parameter
    mask = rec.mask
    sign = rec.column_sign
    opt = torch.optim.SGD([w], lr=1.0)
    tracker = SignTracker()
    state = S()
    tracker.on_train_begin(model, state)
    w0 = rec.to_dense()
    pos_idx = [(i, j) for i in range(4) for j in range(4) if mask[i, j] and sign[j] > 0]
    neg_idx = [(i, j) for i in range(4) for j in range(4) if mask[i, j] and sign[j] < 0]
    a, b = pos_idx[0], pos_idx[1]
    c = neg_idx[0]

    def step(target):
        w.grad = (w.detach() - target) * mask
        tracker.on_after_backward(model, state)
        opt.step()
        apply_constraints(model)
        tracker.on_step_end(model, state)

    t1 = w0.clone()
    t1[a], t1[b], t1[c] = -1.0, -1.0, 1.0  # three wrong-sign pushes: all zeroed by the projection
    step(t1)
    t2 = rec.to_dense().clone()
    t2[a] = 0.5  # a regrows with its sign; b (at zero) is pushed the wrong way again; c stays at zero
    t2[b] = -0.2
    step(t2)
    t3 = rec.to_dense().clone()
    step(t3)  # nothing moves
    state.epoch = 1
    tracker.on_epoch_end(model, state)
    (ep,) = tracker.epochs
    ps, ns = ep["per_step"]["positive"], ep["per_step"]["negative"]
    assert ep["steps"] == 3
    assert ps["zeroed_by_projection"] == 3 and ps["weights_zeroed"] == 2  # a once, b twice
    assert ps["to_zero"] == 2 and ps["from_zero"] == 1
    assert ns["zeroed_by_projection"] == 1 and ns["weights_zeroed"] == 1 and ns["to_zero"] == 1
    # Epoch-end snapshot: only the net change (b zeroed; a is back, positive).
    assert ep["positive"]["to_zero"] == 1 and ep["negative"]["to_zero"] == 1
    assert ep["positive"]["pos_to_neg"] == 0 and ps["pos_to_neg"] == 0


def test_sign_tracker_hook_is_scoped_to_the_step():
    """The optimiser hook is removed at step end: other optimisers' steps are not recorded."""
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=4, p=1.0, dale=True), 2, 2)
    tracker = SignTracker()
    tracker.on_train_begin(model, S())
    tracker.on_after_backward(model, S())
    tracker.on_step_end(model, S())  # no optimiser step in between: zeroings unknown, not invented
    assert tracker._handle is None
    tracker.on_epoch_end(model, S())
    assert tracker.epochs[0]["per_step"]["positive"]["zeroed_by_projection"] is None


def test_sign_tracker_leaves_no_global_hook_when_training_fails_mid_step():
    from torch.optim.optimizer import _global_optimizer_post_hooks

    from cortexnet.training import Callback, TrainConfig, fit

    class Boom(Callback):
        def on_after_backward(self, model, state):
            raise RuntimeError("boom between backward and step")

    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=12, p=0.5, dale=True), 3, 2)
    data = torch.utils.data.TensorDataset(torch.rand(8, 4, 3), torch.randint(0, 2, (8,)))
    before = len(_global_optimizer_post_hooks)
    with pytest.raises(RuntimeError, match="boom"):
        fit(model, data, data, TrainConfig(epochs=1, batch_size=4, device="cpu"),
            callbacks=[SignTracker(), Boom()], progress=False)  # fmt: skip
    assert len(_global_optimizer_post_hooks) == before


def test_ei_layer_is_found_on_recurrent_and_feedforward_dale_nets():
    rnn = build_model("cortex_rnn", CortexRNNConfig(n_nodes=10, p=0.5, dale=True), 3, 2)
    ff = build_model("feedforward", FeedForwardConfig(n_nodes=20, n_steps=4, p=0.5, dale=True), 3, 2)
    g2g_cfg = G2GNetConfig(image_channels=1, image_height=8, image_width=8, patches_per_side=2,
                           patch_channels=2, hidden=(16, 16), groups=2)  # fmt: skip
    g2g = build_model("g2gnet", g2g_cfg, 8, 2)
    info = ei_layer(rnn)
    assert info.name == "recurrent" and info.labels_representation
    assert torch.equal(info.inhibitory, rnn.recurrent.inhibitory)
    info = ei_layer(ff)
    assert info.name == "connections" and not info.labels_representation
    assert torch.equal(info.inhibitory, ff.connections.inhibitory)
    assert ei_layer(g2g) is None
    assert ei_layer(build_model("feedforward", FeedForwardConfig(n_nodes=20, n_steps=4), 3, 2)) is None


def test_ei_balance_of_a_feedforward_dale_net():
    ff = build_model("feedforward", FeedForwardConfig(n_nodes=20, n_steps=4, p=0.5, dale=True), 3, 2)
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.rand(30, 4, 3, generator=g), torch.randint(0, 2, (30,), generator=g))
    bal = ei_balance(ff, ds, max_samples=30)
    w = ff.connections.sparse.to_dense()
    inh = ff.connections.inhibitory
    exc_f = (~inh).float()
    np.testing.assert_allclose(bal.struct_exc, (w @ exc_f).numpy(), rtol=1e-6)
    np.testing.assert_allclose(bal.struct_inh, (w @ inh.float()).numpy(), rtol=1e-6)
    with torch.no_grad():
        h1, _ = ff.hidden_activations(ds.tensors[0])
    np.testing.assert_allclose(bal.func_exc, ((h1 * exc_f) @ w.t()).mean(0).numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        bal.func_inh, ((h1 * inh.float()) @ w.t()).mean(0).numpy(), rtol=1e-5, atol=1e-8
    )
    assert bal.summary()["layer"] == "connections"


def test_ei_balance_rejects_networks_without_identities():
    with pytest.raises(ValueError, match="Dale"):
        ei_balance(build_model("feedforward", FeedForwardConfig(n_nodes=20, n_steps=4), 3, 2),
                   TensorDataset(torch.rand(5, 4, 3), torch.zeros(5, dtype=torch.long)))  # fmt: skip
