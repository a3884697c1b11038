"""Review of the DST code: regression tests for the bugs found in review (all fixed), and invariants the other rewiring tests
do not pin (the optimiser state of links removed and regrown in the same update, the state at removed links)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from cortexnet.experiments.dst import DSTConfig
from cortexnet.models import CortexRNNConfig, SparseMLPConfig, build_model
from cortexnet.rewiring import Rewirer, rewiring_config


def _batches(n: int, seed: int = 0, b: int = 8):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(b, 4, 3, generator=g), torch.randint(0, 4, (b,), generator=g)) for _ in range(n)]


def _rnn(backend: str, **kw):
    cfg = {
        "n_nodes": 30,
        "p": 0.2,
        "dale": True,
        "backend": backend,
        "connectivity_seed": 1,
        "weight_seed": 2,
    }
    return build_model("cortex_rnn", CortexRNNConfig(**{**cfg, **kw}), 3, 4)


def _mlp(backend: str):
    cfg = SparseMLPConfig(n_steps=4, hidden=(16, 12), density=0.3, backend=backend, connectivity_seed=1)
    return build_model("sparse_mlp", cfg, 3, 4)


def _step(model, opt, rewirer, x, y):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return rewirer.step(batch=(x, y))


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_links_removed_and_regrown_in_one_update_restart_their_optimiser_state(backend, optimizer):
    model = _rnn(backend)
    opt = (torch.optim.Adam(model.parameters(), lr=1e-2) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9))  # fmt: skip
    # zeta 0.9 at density 0.2: many links are removed and regrown in the same update.
    rewirer = Rewirer(
        model, opt, rewiring_config("random", delta_t=3, zeta=0.9, end_fraction=1.0), total_steps=3
    )
    w = model.recurrent.rec
    seen = {}
    original = w.reset_synapses_

    def spy(rows, cols, optimizer=None, *, values=None):
        seen["rows"], seen["cols"] = rows.clone(), cols.clone()
        return original(rows, cols, optimizer, values=values)

    w.reset_synapses_ = spy
    for x, y in _batches(3):
        _step(model, opt, rewirer, x, y)
    assert seen["rows"].numel() > 0
    param = next(w.parameters())
    index, found = w._search(seen["rows"], seen["cols"])
    assert bool(found.all())
    for key, state in opt.state[param].items():
        if isinstance(state, torch.Tensor) and state.shape == param.shape:
            assert torch.count_nonzero(w._gather_active(state)[index]) == 0, key
            if backend == "masked_dense":  # removed links (off the new mask) keep no state either
                assert torch.count_nonzero(state[~w.mask]) == 0, key
    assert torch.count_nonzero(w.to_dense()[seen["rows"], seen["cols"]]) == 0  # grow_value "zero"


def test_a_resumed_chtss_rewirer_follows_the_same_sparsity_schedule():
    # Regression (found in review, fixed): Rewirer.__init__ takes s0 (sparsity_start=None, the chtss preset) from the weight's *current*
    # sparsity, and load_state_dict does not restore it: a run resumed after some pruning restarts the sigmoid
    # from the pruned sparsity (through fit + RewiringCallback too: the rewirer is rebuilt on the resumed model).
    cfg = rewiring_config("chtss", delta_t=1, sparsity_end=0.9)
    batches = _batches(6)  # T_end 4: updates at steps 1 ... 4

    def start():
        model = _rnn("csr", p=0.5)
        return model, torch.optim.Adam(model.parameters(), lr=1e-2)

    model, opt = start()
    straight = Rewirer(model, opt, cfg, total_steps=6)
    for x, y in batches:
        _step(model, opt, straight, x, y)
    model, opt = start()
    first = Rewirer(model, opt, cfg, total_steps=6)
    for x, y in batches[:2]:
        _step(model, opt, first, x, y)
    saved = (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(opt.state_dict()),
        copy.deepcopy(first.state_dict()),
    )
    model, _ = start()  # "resume": a fresh model and optimiser, loaded from the checkpoint
    model.load_state_dict(saved[0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt.load_state_dict(saved[1])
    resumed = Rewirer(model, opt, cfg, total_steps=6)
    resumed.load_state_dict(saved[2])
    for x, y in batches[2:]:
        _step(model, opt, resumed, x, y)
    assert resumed.sparsity["recurrent.rec"].s0 == straight.sparsity["recurrent.rec"].s0
    assert [r["nnz"] for r in resumed.history] == [r["nnz"] for r in straight.history]


def test_hebbian_statistics_stop_accumulating_after_the_last_update():
    # Regression (found in review, fixed): the activity hooks keep storing every training batch after T_end (no update will ever read them), so
    # the samples-mode accumulator grows without bound and goes into every checkpoint.
    model = _mlp("csr")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rewirer = Rewirer(model, opt, rewiring_config("hebbian", delta_t=1, zeta=0.3), total_steps=10)  # T_end 7
    for x, y in _batches(10):
        _step(model, opt, rewirer, x, y)
    acc = rewirer.weights[0].recording.accumulator
    assert rewirer.history[-1]["step"] == 7
    assert acc.samples <= 8  # at most one period (delta_t = 1 batch of 8) of statistics is held


def test_gradient_probe_does_not_feed_the_hebbian_statistics_of_other_weights():
    # Regression (found in review, fixed): gradient growth runs training-mode forward passes of the batch; they land in the accumulators of the
    # weights already rewired in this update (reset earlier), so their next period starts with extra samples.
    model = _mlp("masked_dense")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cfg = rewiring_config("custom", removal="hebbian", growth="gradient", delta_t=2, zeta=0.3)
    rewirer = Rewirer(model, opt, cfg, total_steps=8)
    for x, y in _batches(2):
        records = _step(model, opt, rewirer, x, y)
    assert len(records) == 2
    assert [e.recording.accumulator.samples for e in rewirer.weights] == [0, 0]


def test_dst_rewire_params_weights_name_is_one_weight_not_its_characters():
    # Regression (found in review, fixed): --rewire-params weights=NAME reaches RewiringConfig as a str and tuple() splits it into characters
    # (RunOptions.rewiring_config wraps it; DSTConfig.rewiring does not), so the member fails when training
    # begins with "rewiring weights ['l', 'a', ...] do not exist".
    config = DSTConfig(rules=("rigl",), rewire_params=("weights=layers.0.sparse",))
    assert config.rewiring("rigl", 0).weights == ("layers.0.sparse",)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("growth", ["gradient", "hebbian"])
def test_gradient_and_hebbian_growth_run_on_cuda(growth):
    # Review (unconfirmed without a GPU): Rewirer._gradient_probe searches CPU candidate positions in the weight's device keys, and
    # grow_hebbian's block scores live on the accumulator's device while the candidate mask is on the CPU.
    model = _mlp("csr").cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cfg = rewiring_config("custom", removal="magnitude", growth=growth, delta_t=1, end_fraction=1.0)
    rewirer = Rewirer(model, opt, cfg, total_steps=1)
    x, y = _batches(1)[0]
    (rec, _) = _step(model, opt, rewirer, x.cuda(), y.cuda())
    assert rec["grown"] == rec["removed"] > 0
