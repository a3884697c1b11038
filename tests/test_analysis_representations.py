"""Known answers for the representation and dynamics analyses (issue 5)."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cortexnet.analysis import (
    GradientRecorder,
    SignTracker,
    activation_sparsity,
    delay_vs_size,
    dropout_robustness,
    ei_balance,
    hidden_activations,
    ks_compare,
    pairwise_correlations,
    pairwise_mutual_information,
    sign_changes,
)
from cortexnet.models import CortexRNNConfig, build_model
from cortexnet.training import TrainConfig, evaluate, fit


def small_model(**kw):
    cfg = dict(n_nodes=30, p=0.3) | kw
    return build_model("cortex_rnn", CortexRNNConfig(**cfg), 4, 3)


def data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 5, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_activation_sparsity_hand_built():
    h = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0], [0.0, 5.0, 0.0, 0.0]])
    inh = torch.tensor([False, False, True, True])
    s = activation_sparsity(h, inhibitory=inh)
    np.testing.assert_allclose(s.active_fraction, [0.5, 0.25, 0.25])
    assert s.mean == pytest.approx(1 / 3) and s.sd == pytest.approx(np.std([0.5, 0.25, 0.25], ddof=1))
    assert s.ever_active == 0.5
    assert sorted(s.magnitudes.tolist()) == [1.0, 2.0, 3.0, 5.0]
    assert s.per_population["excitatory"]["mean"] == pytest.approx(
        1 / 3
    )  # node 1 on in 2 of 3 inputs, node 0 never
    assert s.per_population["inhibitory"]["ever_active"] == 0.5


def test_mutual_information_independent_near_zero_identical_large():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=2000), rng.normal(size=2000)
    h = torch.tensor(np.stack([a, b, a], axis=1))
    res = pairwise_mutual_information(h, n_pairs=3)
    by_pair = {tuple(p): v for p, v in zip(res.pairs.tolist(), res.values, strict=True)}
    assert abs(by_pair[(0, 1)]) < 0.05 and abs(by_pair[(1, 2)]) < 0.05
    assert by_pair[(0, 2)] > 2.0  # identical continuous variables: k-NN MI estimate is large


def test_mutual_information_constant_nodes_reported():
    h = torch.tensor(np.random.default_rng(1).normal(size=(300, 4)))
    h[:, 3] = 0.0
    zero = pairwise_mutual_information(h, n_pairs=6)
    skip = pairwise_mutual_information(h, n_pairs=6, constant_policy="skip")
    assert zero.n_constant_nodes == 1 and zero.n_pairs_with_constant == 3
    assert len(zero.values) == 6 and len(skip.values) == 3
    assert np.all(zero.values[np.any(zero.pairs == 3, axis=1)] == 0)


def test_mutual_information_is_seeded():
    h = torch.rand(200, 50, generator=torch.Generator().manual_seed(0))
    a = pairwise_mutual_information(h, n_pairs=20, seed=3)
    b = pairwise_mutual_information(h, n_pairs=20, seed=3)
    assert np.array_equal(a.pairs, b.pairs) and np.array_equal(a.values, b.values)
    assert len({tuple(p) for p in a.pairs.tolist()}) == 20


def test_pearson_constructed_signals():
    x = np.linspace(0, 1, 100)
    noise = np.random.default_rng(0).normal(size=100)
    h = torch.tensor(np.stack([x, 2 * x + 1, -x, noise, np.zeros(100)], axis=1))
    res = pairwise_correlations(h, n_pairs=100)
    r = {tuple(p): v for p, v in zip(res.pairs.tolist(), res.values, strict=True)}
    assert r[(0, 1)] == pytest.approx(1.0) and r[(0, 2)] == pytest.approx(-1.0)
    assert abs(r[(0, 3)]) < 0.3
    assert res.n_constant_nodes == 1 and res.n_pairs_with_constant == 4  # node 4 pairs are skipped


def test_ks_compare():
    rng = np.random.default_rng(0)
    same = ks_compare(rng.normal(size=500), rng.normal(size=500))
    diff = ks_compare(rng.normal(size=500), rng.normal(1.0, size=500))
    assert same.pvalue > 0.01 and diff.pvalue < 1e-10


def test_dropout_q0_is_plain_accuracy_and_q1_is_bias_prediction():
    model = small_model()
    ds = data()
    curve = dropout_robustness(model, ds, qs=(0.0, 0.5, 1.0), n_draws=3)
    assert curve.accuracy.shape == (3, 3)
    assert np.all(curve.accuracy[0] == evaluate(model, ds)["accuracy"])
    bias_pred = int(model.readout.bias.argmax())
    expected = float((ds.tensors[1] == bias_pred).float().mean())
    assert np.all(curve.accuracy[2] == pytest.approx(expected))
    assert curve.sd[0] == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout_robustness(model, ds, qs=(1.5,))


def test_hidden_activations_budget_subsamples_and_says_so():
    model = small_model()
    ds = data(n=100)
    full = hidden_activations(model, ds, batch_size=32)
    assert full.values.shape == (100, 30) and not full.subsampled
    torch.testing.assert_close(full.values, model.hidden(ds.tensors[0]))
    capped = hidden_activations(model, ds, budget_bytes=30 * 4 * 10)
    assert capped.values.shape == (10, 30) and capped.subsampled
    torch.testing.assert_close(capped.values, full.values[capped.indices])
    steps = hidden_activations(model, ds, all_steps=True, max_samples=7)
    assert steps.values.shape == (7, 5, 30)


def test_sign_changes_scripted():
    init = torch.tensor([1.0, 2.0, -1.0, -2.0, 0.0, 3.0])
    before = init.clone()
    after = torch.tensor([-1.0, 0.0, 1.0, -2.0, 4.0, 3.0])
    out = sign_changes(init, before, after)
    assert out["positive"] == {"n": 3, "pos_to_neg": 1, "neg_to_pos": 0, "to_zero": 1, "from_zero": 0}
    assert out["negative"] == {"n": 2, "pos_to_neg": 0, "neg_to_pos": 1, "to_zero": 0, "from_zero": 0}
    assert out["zero"]["from_zero"] == 1


def test_sign_tracker_on_a_scripted_weight_history():
    model = small_model(n_nodes=6, p=1.0)
    rec = model.recurrent.rec
    tracker = SignTracker()

    class S:
        epoch = 0

    w0 = rec.to_dense()
    tracker.on_train_begin(model, S)
    rec.load_dense_(-w0)  # epoch 1: every weight flips sign
    S.epoch = 1
    tracker.on_epoch_end(model, S)
    rec.load_dense_(torch.zeros_like(w0))  # epoch 2: all zeroed
    S.epoch = 2
    tracker.on_epoch_end(model, S)
    pos, neg = int((w0 > 0).sum()), int((w0 < 0).sum())
    e1, e2 = tracker.epochs
    assert e1["positive"]["pos_to_neg"] == pos and e1["negative"]["neg_to_pos"] == neg
    assert e2["positive"]["to_zero"] == pos and e2["negative"]["to_zero"] == neg


@pytest.mark.parametrize("dale", [False, True])
def test_gradient_recorder_matches_manual_gradient(dale):
    ds = data(n=40)
    model = small_model(dale=dale)
    manual = small_model(dale=dale)
    loss = torch.nn.functional.cross_entropy(manual(ds.tensors[0]), ds.tensors[1])
    loss.backward()
    mask = manual.recurrent.rec.mask
    expected = manual.recurrent.rec.weight.grad[mask].abs().mean().item()
    rec = GradientRecorder()
    fit(model, ds, ds, TrainConfig(epochs=1, batch_size=40, data_seed=0), callbacks=[rec], progress=False)
    (ep,) = rec.epochs
    assert ep["steps_recorded"] == 1
    assert ep["mean_abs_grad"] == pytest.approx(expected, rel=1e-5)
    assert sum(ep["log10_hist_counts"]) + round(ep["fraction_zero"] * int(mask.sum())) == int(mask.sum())


def test_ei_balance_hand_built():
    model = small_model(n_nodes=3, p=1.0, dale=True, inhibitory_fraction=1 / 3)
    rec = model.recurrent.rec
    inh = model.recurrent.inhibitory
    w = torch.zeros(3, 3)
    sign = torch.where(inh, -1.0, 1.0)
    w[:] = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 4.0], [5.0, 6.0, 0.0]]) * sign
    rec.load_dense_(w)
    bal = ei_balance(model, data(n=20), max_samples=20)
    np.testing.assert_allclose(bal.struct_exc, (w * (~inh).float()).sum(1).numpy())
    np.testing.assert_allclose(bal.struct_inh, (w * inh.float()).sum(1).numpy())
    assert np.all(bal.struct_inh <= 0) and np.all(bal.struct_exc >= 0)
    with torch.no_grad():
        states = model.hidden(data(n=20).tensors[0], all_steps=True)[:, -2]
    expected_exc = (states * (~inh).float()) @ w.t()
    # Same 20 inputs in another order: the mean is order-independent.
    np.testing.assert_allclose(bal.func_exc, expected_exc.mean(0).double().numpy(), rtol=1e-5, atol=1e-7)
    assert set(bal.summary()) >= {"func_net_mean", "fraction_net_excitatory"}
    with pytest.raises(ValueError, match="Dale"):
        ei_balance(small_model(), data())


def test_delay_vs_size():
    h = lambda accs: [{"epoch": float(e), "test_acc": a} for e, a in enumerate(accs)]  # noqa: E731
    out = delay_vs_size(
        [(100, h([0.1, 0.9])), (100, h([0.1, 0.1, 0.9])), (200, h([0.1, 0.1, 0.1]))], chance=0.1
    )
    assert out[100]["mean"] == 0.5 and out[100]["n"] == 2
    assert out[200]["never_learned"] == 1 and out[200]["mean"] is None
    assert math.isclose(out[100]["sd"], math.sqrt(0.5))


def test_magnitudes_are_absolute_values_and_tanh_with_threshold_zero_warns(caplog):
    h = torch.tensor([[-0.5, 0.2, 0.0], [0.9, -0.1, 0.3]])
    s = activation_sparsity(h, activation="tanh")
    assert sorted(s.magnitudes.tolist()) == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.9])
    assert s.notes and "tanh" in caplog.text
    assert not activation_sparsity(h, activation="tanh", threshold=0.05).notes
    assert not activation_sparsity(h.relu(), activation="relu").notes


def test_per_population_says_when_a_population_is_empty():
    h = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    s = activation_sparsity(h, inhibitory=torch.zeros(2, dtype=torch.bool))
    assert s.per_population["excitatory"]["n_nodes"] == 2
    inh = s.per_population["inhibitory"]
    assert inh["n_nodes"] == 0 and inh["mean"] is None and "no inhibitory" in inh["note"]
    with pytest.raises(ValueError, match="label the 2 nodes"):
        activation_sparsity(h, inhibitory=torch.zeros(3, dtype=torch.bool))


@pytest.mark.parametrize("fn", [pairwise_mutual_information, pairwise_correlations])
def test_pairwise_input_checks(fn):
    with pytest.raises(ValueError, match="all-steps"):
        fn(torch.rand(10, 4, 6), n_pairs=3)
    with pytest.raises(ValueError, match="n_pairs"):
        fn(torch.rand(10, 6), n_pairs=0)
    with pytest.raises(ValueError, match="at least 2 nodes"):
        fn(torch.rand(10, 1), n_pairs=3)


@pytest.mark.parametrize("fn", [pairwise_mutual_information, pairwise_correlations])
def test_pairwise_never_converts_the_whole_matrix(fn, monkeypatch):
    """Only the columns of sampled pairs are copied to float64 (chunked), never all n x N activations."""
    h = torch.rand(50, 400, generator=torch.Generator().manual_seed(0))
    sizes = []
    orig = torch.Tensor.double

    def spy(self, *a, **k):
        sizes.append(self.numel())
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "double", spy)
    fn(h, n_pairs=30)
    assert sizes and max(sizes) <= 50 * 30


def test_pairwise_correlations_chunks_match_numpy(monkeypatch):
    from cortexnet.analysis import representations as rep

    h = torch.rand(40, 12, generator=torch.Generator().manual_seed(0)).double()
    full = pairwise_correlations(h, n_pairs=66)
    monkeypatch.setattr(rep, "PAIR_CHUNK_BYTES", 40 * 8 * 2 * 5)  # 5 pairs per chunk
    chunked = pairwise_correlations(h, n_pairs=66)
    assert np.array_equal(full.pairs, chunked.pairs)
    np.testing.assert_allclose(chunked.values, full.values, rtol=0, atol=1e-12)
    c = np.corrcoef(h.numpy(), rowvar=False)
    np.testing.assert_allclose(full.values, c[full.pairs[:, 0], full.pairs[:, 1]], atol=1e-12)


def test_mi_grouped_calls_equal_one_scikit_learn_call_per_pair():
    """Batching pairs that share their first node into one mutual_info_regression call changes nothing: on
    tie-free data every pair's value equals a separate call for that pair alone."""
    from sklearn.feature_selection import mutual_info_regression

    rng = np.random.default_rng(1)
    h = torch.from_numpy(3 * rng.normal(size=(120, 1)) + rng.normal(size=(120, 12)))
    res = pairwise_mutual_information(h, n_pairs=40, seed=3, n_jobs=1)
    x = h.numpy()
    for (i, j), v in zip(res.pairs, res.values, strict=True):
        alone = mutual_info_regression(x[:, [j]], x[:, i], n_neighbors=3, random_state=0)[0]
        assert v == pytest.approx(alone, abs=1e-9)
    assert res.values.mean() > 0.3  # the shared component (r = 0.9) makes the nodes dependent


def test_mi_pairs_are_uniform_and_n_jobs_does_not_change_results(monkeypatch):
    from cortexnet.analysis import representations as rep

    h = torch.rand(60, 40, generator=torch.Generator().manual_seed(0))
    serial = pairwise_mutual_information(h, n_pairs=150, seed=4, n_jobs=1)
    expected_pairs = rep._sample_pairs(40, 150, np.random.default_rng(4))
    assert np.array_equal(serial.pairs, expected_pairs)  # batching does not change which pairs are drawn
    monkeypatch.setattr(rep, "MI_PARALLEL_MIN_CALLS", 1)
    parallel = pairwise_mutual_information(h, n_pairs=150, seed=4, n_jobs=2)
    assert np.array_equal(serial.values, parallel.values)


def test_dropout_mask_is_per_input_unscaled_and_at_rate_q():
    from cortexnet.analysis import dropout_mask

    g = torch.Generator().manual_seed(0)
    m = dropout_mask((4000, 50), 0.3, g)
    assert set(m.unique().tolist()) <= {0.0, 1.0}  # survivors are kept as they are (no 1/(1-q))
    assert (m == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    per_input = (m == 0).float().mean(dim=1)
    assert per_input.std().item() == pytest.approx(np.sqrt(0.3 * 0.7 / 50), rel=0.1)  # independent per input
    assert len({tuple(r) for r in m.int().tolist()}) > 3990  # not one mask shared by the batch
    assert (m == 0).float().mean(dim=0).std().item() < 0.05  # nor by the nodes


class _TwoNodes(torch.nn.Module):
    """hidden(x) = [1, 1]; logits (h0 + h1, 1.5): class 0 wins only if both nodes survive (unscaled)."""

    def __init__(self):
        super().__init__()
        self.readout = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.readout.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
            self.readout.bias.copy_(torch.tensor([0.0, 1.5]))

    def hidden(self, x, all_steps=False):
        return torch.ones(len(x), 2)

    def forward(self, x):
        return self.readout(self.hidden(x))


def test_dropout_robustness_known_expectation():
    """At q = 0.5 with masks drawn per input and node and no rescaling, P(both survive) = 0.25 per input: each
    draw's accuracy over 2,000 inputs is 0.25 ± 0.01. Rescaling survivors would give 0.75, one mask per batch
    0 or 1, one mask per input (all nodes together) 0.5."""
    ds = TensorDataset(torch.zeros(2000, 1, 1), torch.zeros(2000, dtype=torch.long))
    curve = dropout_robustness(_TwoNodes(), ds, qs=(0.0, 0.5), n_draws=8, batch_size=2000)
    assert np.all(curve.accuracy[0] == 1.0)
    assert np.all(np.abs(curve.accuracy[1] - 0.25) < 0.04)
    assert curve.mean[1] == pytest.approx(0.25, abs=0.015)
