"""The Rewirer: invariants of every rule on feed-forward and recurrent Dale weights, both backends."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from cortexnet.data import load_dataset
from cortexnet.layers import constraint_violations, sparse_weights
from cortexnet.models import CortexRNNConfig, SparseMLPConfig, build_model
from cortexnet.rewiring import GROWTH, PRESETS, REMOVAL, Rewirer, rewiring_config
from cortexnet.training import Callback, TrainConfig, fit
from cortexnet.training.rewiring import RewiringCallback


def _models(backend: str):
    rnn = CortexRNNConfig(n_nodes=30, p=0.2, dale=True, backend=backend, connectivity_seed=1, weight_seed=2)
    mlp = SparseMLPConfig(n_steps=4, hidden=(16, 12), density=0.3, backend=backend, connectivity_seed=1)
    return [build_model("cortex_rnn", rnn, 3, 4), build_model("sparse_mlp", mlp, 3, 4)]


def _batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(8, 4, 3, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(n)]


def _train(model, rewirer, opt, batches, *, check=None):
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        records = rewirer.step(batch=(x, y))
        if check is not None and records:
            check(records)


def _state_at(opt, w, rows, cols):
    """Adam's two moments of weight ``w`` at positions (rows, cols) (all active)."""
    param = next(w.parameters())
    index, found = w._search(rows, cols)
    assert bool(found.all())
    st = opt.state[param]
    return [w._gather_active(st[k])[index] for k in ("exp_avg", "exp_avg_sq")]


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
@pytest.mark.parametrize("rule", [*PRESETS])
def test_every_rule_conserves_counts_keeps_dale_and_the_mask_and_resets_state(rule, backend):
    for model in _models(backend):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        cfg = rewiring_config(rule, delta_t=2, zeta=0.3)
        rewirer = Rewirer(model, opt, cfg, total_steps=6)
        weights = sparse_weights(model)
        counts = {k: w.nnz for k, w in weights.items()}
        before = {}

        def check(records, model=model, weights=weights, cfg=cfg, counts=counts, before=before, opt=opt):
            assert constraint_violations(model)["total"] == 0  # Dale's signs, nothing off the mask
            for rec in records:
                w = weights[rec["weight"]]
                if cfg.sparsity_end is None:
                    assert w.nnz == counts[rec["weight"]] and rec["removed"] == rec["grown"]
                assert w.nnz == rec["nnz"]
                # Every synapse that is new since the last update starts with zero Adam moments.
                conn, (old_keys) = w.connectivity(), before[rec["weight"]]
                keys = conn.rows() * conn.n_in + conn.col
                new = keys[~torch.isin(keys, old_keys)]
                if new.numel():
                    for moment in _state_at(opt, w, new // conn.n_in, new % conn.n_in):
                        assert torch.count_nonzero(moment) == 0
            for name, w in weights.items():
                conn = w.connectivity()
                before[name] = conn.rows() * conn.n_in + conn.col

        for name, w in weights.items():
            conn = w.connectivity()
            before[name] = conn.rows() * conn.n_in + conn.col
        _train(model, rewirer, opt, _batches(6), check=check)
        assert len(rewirer.history) == 2 * len(weights)  # updates at steps 2 and 4 (T_end = 0.75 * 6 -> 4)
        rewirer.close()


def test_chtss_follows_the_sigmoid_sparsity_schedule_exactly():
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=40, p=1.0, dale=True, backend="csr"), 3, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rewirer = Rewirer(model, opt, rewiring_config("chtss", delta_t=2, sparsity_end=0.9), total_steps=40)
    schedule = rewirer.sparsity["recurrent.rec"]
    possible = 40 * 39
    _train(model, rewirer, opt, _batches(40))
    nnz = [rec["nnz"] for rec in rewirer.history]
    assert nnz == [schedule.target_links(c, possible) for c in range(1, len(nnz) + 1)]
    assert nnz[-1] == round(0.1 * possible) and constraint_violations(model)["total"] == 0
    # The optimiser trains the resized weight: the parameter it holds is the weight's.
    assert any(p is model.recurrent.rec.values for g in opt.param_groups for p in g["params"])


def test_masks_are_identical_across_backends_for_the_same_seed():
    masks = {}
    for backend in ("masked_dense", "csr"):
        torch.manual_seed(0)
        model = _models(backend)[0]
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        rewirer = Rewirer(model, opt, rewiring_config("set", delta_t=2), total_steps=10)
        _train(model, rewirer, opt, _batches(10))
        masks[backend] = model.recurrent.rec.connectivity()
    assert masks["masked_dense"].equals(masks["csr"])


def test_removal_and_growth_pick_what_the_rule_says():
    model = build_model("sparse_mlp", SparseMLPConfig(n_steps=1, hidden=(6,), density=0.5,
                                                      backend="masked_dense"), 6, 2)  # fmt: skip
    w = model.layers[0].sparse
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights stay as set
    conn = w.connectivity()
    values = torch.arange(1, conn.nnz + 1, dtype=torch.float32)
    dense = torch.zeros(6, 6)
    dense[conn.rows(), conn.col] = values
    w.load_dense_(dense)
    x, y = torch.rand(4, 1, 6, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 0, 1])
    # RigL: the 3 smallest |w| go; the 3 largest |dL/dW| among the positions then free come in.
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    rewirer = Rewirer(model, opt, rewiring_config("rigl", delta_t=1, zeta=3 / 18, zeta_schedule="constant",
                                                  end_fraction=1.0), total_steps=1)  # fmt: skip
    full = w.to_dense().clone().requires_grad_()
    h = torch.relu(x.reshape(4, 6) @ full.t() + model.layers[0].bias)
    F.cross_entropy(model.readout(h), y).backward()
    smallest = {(int(r), int(c)) for r, c in zip(conn.rows()[:3], conn.col[:3], strict=True)}
    free = ~conn.to_dense()
    for r, c in smallest:
        free[r, c] = True
    grad = full.grad.abs().masked_fill(~free, -1.0)
    expected_grown = {(int(i) // 6, int(i) % 6) for i in grad.reshape(-1).topk(3).indices}
    (rec,) = rewirer.step(batch=(x, y))
    after = w.connectivity().to_dense()
    assert rec["removed"] == 3 and rec["grown"] == 3
    grown = {tuple(p) for p in (after & ~conn.to_dense()).nonzero().tolist()}
    kept_smallest = {p for p in smallest if after[p]}
    assert grown | kept_smallest == expected_grown
    # Grown values are exactly zero (grow_value="zero"), also where a removed link came back.
    assert all(float(w.to_dense()[p]) == 0.0 for p in expected_grown)


def test_grow_values_zero_keep_random_and_dale_signs():
    for grow_value in ("zero", "keep", "random"):
        model = _models("csr")[0]
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        rewirer = Rewirer(model, opt, rewiring_config("random", delta_t=1, zeta=0.5, grow_value=grow_value),
                          total_steps=4)  # fmt: skip
        w = model.recurrent.rec
        before = w.connectivity()
        old = w.to_dense()
        _train(model, rewirer, opt, _batches(1))
        after = w.connectivity().to_dense()
        added = after & ~before.to_dense()
        values = w.to_dense()[added]
        if grow_value == "zero":
            assert torch.count_nonzero(values) == 0
        elif grow_value == "random":
            assert torch.count_nonzero(values) == values.numel()
            signs = w.column_sign[added.nonzero()[:, 1]]
            assert bool((values * signs > 0).all())  # each takes its presynaptic node's sign
        del old
        assert constraint_violations(model)["total"] == 0


def test_hebbian_grows_the_most_coactive_pairs():
    model = build_model("sparse_mlp", SparseMLPConfig(n_steps=1, hidden=(4,), density=0.25,
                                                      backend="masked_dense"), 4, 2)  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    rewirer = Rewirer(
        model, opt, rewiring_config("hebbian", delta_t=1, zeta=0.0, end_fraction=1.0), total_steps=1
    )
    acc = rewirer.weights[0].recording.accumulator
    x = torch.rand(16, 1, 4)
    model(x)  # recorded in training mode
    assert acc.samples == 16
    # With zeta = 0 nothing moves; the update still resets the period's statistics.
    loss = F.cross_entropy(model(x), torch.zeros(16, dtype=torch.int64))
    loss.backward()
    (rec,) = rewirer.step(batch=None)
    assert rec["removed"] == rec["grown"] == 0 and acc.samples == 0
    rewirer.close()


def test_large_layer_more_than_two_to_the_24_candidates():
    # A 10,000 x 10,000 recurrent layer (1e8 positions > 2^24): random and magnitude rules at p = 1e-4.
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=10_000, p=1e-4, backend="csr"), 2, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rewirer = Rewirer(model, opt, rewiring_config("set", delta_t=1, end_fraction=1.0), total_steps=1)
    nnz = model.recurrent.rec.nnz
    x, y = torch.rand(2, 3, 2), torch.tensor([0, 1])
    F.cross_entropy(model(x), y).backward()
    opt.step()
    (rec,) = rewirer.step(batch=(x, y))
    assert rec["nnz"] == nnz and rec["grown"] == rec["removed"] == int(0.3 * nnz)
    assert not bool(model.recurrent.rec.connectivity().diagonal_present().any())


def test_config_errors_name_the_value_and_the_known_names():
    with pytest.raises(ValueError, match="unknown rewiring rule 'nope'; known: set, random, rigl"):
        rewiring_config("nope")
    with pytest.raises(ValueError, match=r"takes no \['zeta0'\]"):
        rewiring_config("set", zeta0=0.3)
    with pytest.raises(ValueError, match=r"zeta .* must be in \[0, 1\], got 1.5"):
        rewiring_config("set", zeta=1.5)
    with pytest.raises(ValueError, match="unknown growth criterion 'x'; known: "):
        rewiring_config("custom", growth="x")
    assert set(REMOVAL.names()) >= {"magnitude", "set", "random", "ri", "hebbian"}
    assert set(GROWTH.names()) >= {"random", "gradient", "hebbian", "ch3_l3", "ch2_l3", "ch3_l3n", "ch2_l3n"}
    model = _models("csr")[0]
    with pytest.raises(ValueError, match=r"do not exist; the model's sparse weights: \['recurrent.rec'\]"):
        Rewirer(model, torch.optim.SGD(model.parameters(), lr=0.1), rewiring_config("set", weights=("x",)),
                total_steps=10)  # fmt: skip


class _KillAt(Callback):
    """Raises KeyboardInterrupt after optimiser step ``step`` (a run killed mid-epoch)."""

    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_step_end(self, model, ctx) -> None:
        if self.step is not None and ctx.state.step == self.step:
            raise KeyboardInterrupt


def test_a_resumed_run_rewires_bit_identically(tmp_path):
    splits = load_dataset("digits", n_per_class=12, seed=0)
    config = CortexRNNConfig(n_nodes=40, p=0.2, dale=True, backend="csr")
    cfg = rewiring_config("rigl", delta_t=3)
    train = TrainConfig(epochs=2, batch_size=20, lr=1e-2, data_seed=1)
    straight = build_model("cortex_rnn", config, splits.n_inputs, splits.n_classes)
    cb = RewiringCallback(cfg)
    fit(straight, splits.train, splits.test, train, run_dir=tmp_path / "a", callbacks=[cb], progress=False)
    # Killed in epoch 2 (after its first checkpoint, at epoch 1), then resumed from that checkpoint.
    first = build_model("cortex_rnn", config, splits.n_inputs, splits.n_classes)
    with pytest.raises(KeyboardInterrupt):
        fit(first, splits.train, splits.test, train, run_dir=tmp_path / "b",
            callbacks=[RewiringCallback(cfg), _KillAt(step=8)], progress=False)  # fmt: skip
    resumed = build_model("cortex_rnn", config, splits.n_inputs, splits.n_classes)
    cb2 = RewiringCallback(cfg)
    fit(resumed, splits.train, splits.test, train, run_dir=tmp_path / "b", resume=True,
        callbacks=[cb2, _KillAt(step=None)], progress=False)  # fmt: skip
    assert resumed.recurrent.rec.connectivity().equals(straight.recurrent.rec.connectivity())
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["nnz"] for r in cb.history] == [r["nnz"] for r in cb2.history] and len(cb.history) > 2


def test_chain_percolation_removes_the_links_of_a_neuron_left_without_inputs_and_regrows_them():
    config = SparseMLPConfig(
        n_steps=1, hidden=(6, 5), density=0.5, backend="masked_dense", connectivity_seed=3
    )
    model = build_model("sparse_mlp", config, 8, 2)
    first, second = model.layers[0].sparse, model.layers[1].sparse
    # Hidden neuron 0 (row 0 of the first matrix) gets the smallest weights, exactly as many as one update
    # removes: magnitude removal leaves it without inputs, so its outgoing links (column 0 of the second
    # matrix) are dead and percolate.
    c0 = first.connectivity()
    row0 = int(c0.crow[1])
    dense = first.to_dense().abs() + 1.0
    dense[0] = 1e-3
    first.load_dense_(dense * c0.to_dense())
    out_links = int(second.connectivity().to_dense()[:, 0].sum())
    assert row0 > 0 and out_links > 0
    zeta = row0 / c0.nnz
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    rw = rewiring_config("custom", removal="magnitude", growth="random", zeta=zeta, delta_t=1, end_fraction=1.0,
                         percolation=True, weights=("layers.0.sparse",))  # fmt: skip
    # Rewiring one matrix of the two: not the model's whole chain, so nothing percolates.
    (rec,) = Rewirer(model, opt, rw, total_steps=1).step()
    assert rec["percolated"] == 0
    model = build_model("sparse_mlp", config, 8, 2)
    model.layers[0].sparse.load_dense_(dense * c0.to_dense())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    counts = [w.nnz for w in sparse_weights(model).values()]
    rewirer = Rewirer(model, opt, dataclasses.replace(rw, weights=(), zeta=zeta), total_steps=1)
    first_rec, second_rec = rewirer.step()
    n_drop = [int(zeta * n + 1e-9) for n in counts]
    assert first_rec["percolated"] == 0 and first_rec["removed"] == n_drop[0]
    # Column 0 of the second matrix lost every link that removal left it.
    assert second_rec["percolated"] > 0 and second_rec["removed"] == n_drop[1] + second_rec["percolated"]
    assert [w.nnz for w in sparse_weights(model).values()] == counts  # percolated links were regrown
    assert second_rec["grown"] == second_rec["removed"]


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
@pytest.mark.parametrize("dale_mode", ["clip", "abs"])
def test_dense_and_probed_gradients_agree(backend, dale_mode, monkeypatch):
    # RigL's gradient from one dense pass (a fully connected copy of the effective weight swapped in) equals
    # the probe's at inactive positions and the parameter's at active ones.
    import cortexnet.rewiring.rewirer as rewirer_module

    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=20, p=0.3, dale=True, dale_mode=dale_mode,
                                                      backend=backend), 3, 4)  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    rewirer = Rewirer(model, opt, rewiring_config("rigl", delta_t=1), total_steps=4)
    w = model.recurrent.rec
    x, y = torch.rand(6, 5, 3), torch.arange(6) % 4
    rows, cols = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
    off = rows != cols
    rows, cols = rows[off], cols[off]
    dense = rewirer._gradient_probe("recurrent.rec", w, (x, y))(rows, cols)
    monkeypatch.setattr(rewirer_module, "DENSE_GRADIENT_MAX_ELEMENTS", 0)
    probed = rewirer._gradient_probe("recurrent.rec", w, (x, y))(rows, cols)
    torch.testing.assert_close(dense, probed, rtol=1e-4, atol=1e-7)
    assert model.recurrent.rec is w and all(p.grad is None for p in model.parameters())


def test_tracked_hebbian_grows_among_the_tracked_candidates_and_resumes_identically():
    # Large recurrent layers: statistics at the active links plus 200 random free positions per period.
    def run(batches, state=None):
        torch.manual_seed(0)
        model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=30, p=0.2, dale=True, backend="csr"), 3, 4)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        rewirer = Rewirer(model, opt, rewiring_config("hebbian", delta_t=2, zeta=0.2, hebbian_candidates=200),
                          total_steps=10)  # fmt: skip
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            rewirer.load_state_dict(state["rewirer"])
        return model, opt, rewirer

    model, opt, rewirer = run(None)
    acc = rewirer.weights[0].recording.accumulator
    assert acc.tracked and acc.tracked_keys.numel() == model.recurrent.rec.nnz + 200
    tracked_before = acc.tracked_keys.clone()
    w = model.recurrent.rec
    before = w.connectivity()
    batches = _batches(10)
    _train(model, rewirer, opt, batches[:2])  # one update, at step 2
    after = w.connectivity()
    grown = (after.to_dense() & ~before.to_dense()).nonzero()
    assert grown.numel() and torch.isin(grown[:, 0] * 30 + grown[:, 1], tracked_before).all()
    assert after.nnz == before.nnz and constraint_violations(model)["total"] == 0
    # A state saved mid-period (step 3) resumes to the same masks and weights as the run straight through.
    _train(model, rewirer, opt, batches[2:3])
    state = copy.deepcopy(
        {"model": model.state_dict(), "opt": opt.state_dict(), "rewirer": rewirer.state_dict()}
    )
    _train(model, rewirer, opt, batches[3:])
    model2, opt2, rewirer2 = run(None, state)
    _train(model2, rewirer2, opt2, batches[3:])
    assert model2.recurrent.rec.connectivity().equals(model.recurrent.rec.connectivity())
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
