"""The training seam: fit on any dataset, callbacks that act through one context, rewiring at the step-end
point with bit-exact resume."""

import logging

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cortexnet.connectivity import Connectivity
from cortexnet.layers import constraint_violations, sparse_weights
from cortexnet.models import CortexRNNConfig, build_model
from cortexnet.training import CHECKPOINT_NAME, Callback, TrainConfig, evaluate, fit


def _data(n=60, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 5, 3, generator=g).to(dtype), torch.randint(0, 3, (n,), generator=g))


def _model(backend="csr"):
    cfg = CortexRNNConfig(n_nodes=30, p=0.3, dale=True, backend=backend, connectivity_seed=4, weight_seed=5)
    return build_model("cortex_rnn", cfg, 3, 3)


def _cfg(**kw):
    return TrainConfig(**{"epochs": 2, "batch_size": 16, "device": "cpu", "lr": 1e-2, **kw})


class Samples(Dataset):
    """A map-style dataset holding the same samples as a TensorDataset (labels as plain ints)."""

    def __init__(self, ds: TensorDataset) -> None:
        self.x, self.y = ds.tensors

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def _losses(state):
    return [(r["train_loss"], r["test_loss"], r["test_acc"]) for r in state.history]


def test_a_map_style_dataset_trains_exactly_as_the_tensor_dataset():
    a = fit(_model(), _data(), _data(30, 1), _cfg(), progress=False)
    b = fit(_model(), Samples(_data()), Samples(_data(30, 1)), _cfg(), progress=False)
    assert _losses(a) == _losses(b)


def test_fit_on_a_dataloader_without_a_test_set(tmp_path):
    loader = DataLoader(_data(), batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = _model()
    state = fit(model, loader, None, _cfg(eval_fractions=(0.5,)), run_dir=tmp_path, progress=False)
    assert state.epoch == 2 and state.step == 2 * 3  # the loader's own batch size: 60 / 20
    # 3 batches per epoch: the mid-epoch evaluation falls after round(0.5 * 3) = 2 of them.
    assert [r["epoch"] for r in state.history] == pytest.approx([0.0, 2 / 3, 1.0, 5 / 3, 2.0])
    assert all(r["test_acc"] is None and r["test_loss"] is None for r in state.history)
    assert all(r["train_loss"] > 0 for r in state.history if r["train_loss"] is not None)
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    assert constraint_violations(model)["total"] == 0


def test_float64_inputs_are_converted_once_with_a_log_line(caplog):
    with caplog.at_level(logging.INFO, logger="cortexnet.data.batching"):
        a = fit(_model(), _data(dtype=torch.float64), _data(30, 1, torch.float64), _cfg(), progress=False)
    assert any("converting inputs from torch.float64 to torch.float32" in r.message for r in caplog.records)
    b = fit(_model(), _data(), _data(30, 1), _cfg(), progress=False)
    assert _losses(a) == _losses(b)  # float32 values held in float64 convert back exactly


def test_wrong_shapes_fail_before_training_naming_the_expected_shape():
    flat = TensorDataset(torch.rand(10, 15), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected batches \(B, T, 3\)"):
        fit(_model(), flat, None, _cfg(), progress=False)
    wrong_f = TensorDataset(torch.rand(10, 5, 4), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T, 3\).*got shape \(10, 5, 4\)"):
        fit(_model(), wrong_f, None, _cfg(), progress=False)
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        fit(_model(), TensorDataset(torch.rand(10, 5, 3), torch.rand(10)), None, _cfg(), progress=False)


def test_evaluate_follows_the_model_dtype_and_takes_any_source():
    model = _model("masked_dense").double()
    ds = _data(30, 1)
    out = evaluate(model, ds)
    assert out["n"] == 30 and 0 <= out["accuracy"] <= 1
    assert evaluate(model, DataLoader(ds, batch_size=7)) == pytest.approx(out)


class StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, model, ctx):
        assert ctx.model is model and ctx.optimizer is not None and ctx.device.type == "cpu"
        ctx.state.stopped_early = True


def test_a_callback_can_stop_training_through_the_context(tmp_path):
    state = fit(_model(), _data(), _data(30, 1), _cfg(epochs=5), run_dir=tmp_path,
                callbacks=[StopAfterFirstEpoch()], progress=False)  # fmt: skip
    assert state.epoch == 1 and state.stopped_early
    assert (tmp_path / CHECKPOINT_NAME).is_file()


class SwapSynapses(Callback):
    """A minimal rewiring rule at the step-end seam: every ``every`` steps drop ``k`` random active synapses
    of the recurrent weight and grow ``k`` random inactive ones (new values zero), moving the optimiser state
    with ``set_connectivity_``. Its generator is in its state_dict, so a resumed run rewires identically."""

    def __init__(self, every=3, k=5, seed=0, kill_at_epoch=None):
        self.every, self.k, self.kill_at_epoch = every, k, kill_at_epoch
        self.g = torch.Generator().manual_seed(seed)
        self.rewirings = 0

    def on_step_end(self, model, ctx):
        if ctx.state.step % self.every:
            return
        w = sparse_weights(model)["recurrent.rec"]
        mask = w.connectivity().to_dense()
        allowed = ~mask & ~torch.eye(mask.shape[0], dtype=torch.bool)
        active, inactive = mask.flatten().nonzero()[:, 0], allowed.flatten().nonzero()[:, 0]
        drop = active[torch.randperm(len(active), generator=self.g)[: self.k]]
        grow = inactive[torch.randperm(len(inactive), generator=self.g)[: self.k]]
        new = mask.flatten().clone()
        new[drop], new[grow] = False, True
        w.set_connectivity_(Connectivity.from_dense(new.view_as(mask)), ctx.optimizer)
        self.rewirings += 1

    def on_epoch_end(self, model, ctx):
        if ctx.state.epoch == self.kill_at_epoch:
            raise KeyboardInterrupt("killed")

    def state_dict(self):
        return {"g": self.g.get_state(), "rewirings": self.rewirings}

    def load_state_dict(self, state):
        self.g.set_state(state["g"])
        self.rewirings = state["rewirings"]


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_rewiring_at_the_step_end_seam_resumes_bit_exactly(tmp_path, backend):
    cfg = _cfg(epochs=3)
    ref_model = _model(backend)
    ref_cb = SwapSynapses()
    ref = fit(
        ref_model, _data(), _data(30, 1), cfg, run_dir=tmp_path / "ref", callbacks=[ref_cb], progress=False
    )
    nnz0 = _model(backend).recurrent.rec.nnz
    assert ref_cb.rewirings == ref.step // 3 and ref_model.recurrent.rec.nnz == nnz0
    assert not ref_model.recurrent.rec.connectivity().equals(_model(backend).recurrent.rec.connectivity())
    assert constraint_violations(ref_model)["total"] == 0

    with pytest.raises(KeyboardInterrupt):
        fit(_model(backend), _data(), _data(30, 1), cfg, run_dir=tmp_path / "run",
            callbacks=[SwapSynapses(kill_at_epoch=2)], progress=False)  # fmt: skip
    model, cb = _model(backend), SwapSynapses()
    state = fit(model, _data(), _data(30, 1), cfg, run_dir=tmp_path / "run", resume=True, callbacks=[cb],
                progress=False)  # fmt: skip
    assert _losses(state) == _losses(ref) and cb.rewirings == ref_cb.rewirings
    assert model.recurrent.rec.connectivity().equals(ref_model.recurrent.rec.connectivity())
    for (name, a), b in zip(model.state_dict().items(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


class KillInEpoch2(Callback):
    def on_epoch_end(self, model, ctx):
        if ctx.state.epoch == 2:
            raise KeyboardInterrupt("killed")


@pytest.mark.parametrize("own_generator", [True, False])
def test_a_shuffling_dataloader_resumes_bit_exactly(tmp_path, own_generator):
    def loader():
        g = torch.Generator().manual_seed(7) if own_generator else None
        return DataLoader(_data(), batch_size=16, shuffle=True, generator=g)

    torch.manual_seed(123)  # a loader without its own generator draws from the global one
    ref = fit(_model(), loader(), _data(30, 1), _cfg(epochs=3), run_dir=tmp_path / "ref", progress=False)
    torch.manual_seed(123)
    with pytest.raises(KeyboardInterrupt):
        fit(_model(), loader(), _data(30, 1), _cfg(epochs=3), run_dir=tmp_path / "run",
            callbacks=[KillInEpoch2()], progress=False)  # fmt: skip
    torch.manual_seed(999)  # whatever the new process's global state: the checkpoint's is restored
    state = fit(_model(), loader(), _data(30, 1), _cfg(epochs=3), run_dir=tmp_path / "run", resume=True,
                callbacks=[Callback()], progress=False)  # fmt: skip
    assert _losses(state) == _losses(ref)


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    from cortexnet.training import CheckpointError

    fit(_model(), _data(), None, _cfg(epochs=1), run_dir=tmp_path, progress=False)
    other = build_model("cortex_rnn", CortexRNNConfig(n_nodes=30, p=0.3, dale=True, topology="g2g",
                                                      topology_params={"groups": 3, "p_inter": 0.1}), 3, 3)  # fmt: skip
    with pytest.raises(CheckpointError, match="another model"):
        fit(other, _data(), None, _cfg(epochs=2), run_dir=tmp_path, resume=True, progress=False)


def test_labels_of_any_integer_dtype_and_shape_errors():
    ds = _data()
    x, y = ds.tensors
    a = fit(_model(), TensorDataset(x, y.int()), None, _cfg(), progress=False)
    b = fit(_model(), ds, None, _cfg(), progress=False)
    assert _losses(a) == _losses(b)
    with pytest.raises(ValueError, match=r"labels must be class indices of shape \(n,\)"):
        fit(_model(), TensorDataset(x, y[:, None]), None, _cfg(), progress=False)


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, ds):
        self.ds = ds

    def __iter__(self):
        return iter(zip(*self.ds.tensors, strict=True))


def test_a_loader_over_an_iterable_dataset_trains_without_knowing_its_length():
    state = fit(_model(), DataLoader(Stream(_data()), batch_size=20), None, _cfg(), progress=False)
    assert state.step == 6 and state.history[-1]["train_loss"] > 0
    with pytest.raises(ValueError, match="eval_fractions need a DataLoader with a length"):
        fit(_model(), DataLoader(Stream(_data()), batch_size=20), None, _cfg(eval_fractions=(0.5,)),
            progress=False)  # fmt: skip
    with pytest.raises(TypeError, match="wrap it in a DataLoader"):
        fit(_model(), Stream(_data()), None, _cfg(), progress=False)


def test_a_float64_test_set_is_converted_once_per_run(caplog):
    with caplog.at_level(logging.INFO, logger="cortexnet.data.batching"):
        fit(
            _model(),
            _data(),
            _data(30, 1, torch.float64),
            _cfg(epochs=3, eval_fractions=(0.5,)),
            progress=False,
        )
    assert sum("converting inputs" in r.message for r in caplog.records) == 1


def test_a_resume_with_other_tensor_valued_topology_params_is_a_checkpoint_error(tmp_path):
    from cortexnet.training import CheckpointError

    def model(groups):
        cfg = CortexRNNConfig(n_nodes=30, p=0.3, topology="g2g",
                              topology_params={"in_groups": torch.tensor(groups), "p_inter": 0.1})  # fmt: skip
        return build_model("cortex_rnn", cfg, 3, 3)

    fit(model([i % 3 for i in range(30)]), _data(), None, _cfg(epochs=1), run_dir=tmp_path, progress=False)
    same = fit(model([i % 3 for i in range(30)]), _data(), None, _cfg(epochs=2), run_dir=tmp_path,
               resume=True, progress=False)  # fmt: skip
    assert same.epoch == 2
    with pytest.raises(CheckpointError, match="another model"):
        fit(model([i % 2 for i in range(30)]), _data(), None, _cfg(epochs=3), run_dir=tmp_path, resume=True,
            progress=False)  # fmt: skip


def test_probes_refuse_a_loader_without_a_length_with_one_clear_message():
    from cortexnet.analysis import hidden_activations

    with pytest.raises(ValueError, match="need a sized dataset or DataLoader"):
        hidden_activations(_model(), DataLoader(Stream(_data()), batch_size=10))
