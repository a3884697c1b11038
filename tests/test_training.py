"""fit / evaluate / checkpoints / resume: determinism, resume equality, non-finite loss, early stopping."""

import math

import pytest
import torch
from dale_checks import assert_dale_on_disk
from torch import nn
from torch.utils.data import TensorDataset

from cortexnet.io import read_jsonl
from cortexnet.models import CortexRNNConfig, build_model
from cortexnet.training import (
    Callback,
    CheckpointError,
    NonFiniteLossError,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    resolve_device,
)


def toy_data(n=240, steps=5, feats=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.rand(n, steps, feats, generator=g) * 0.2
    x[torch.arange(n), :, y] += 0.8  # class is the feature that is on: learnable in a few epochs
    return TensorDataset(x, y)


def model(seed=0, n=40, **kw):
    return build_model("cortex_rnn", CortexRNNConfig(n_nodes=n, p=0.2, weight_seed=seed, **kw), 4, 3)


class ConstantLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_evaluate_known_answer():
    # Constant logits [0, ln 3] -> p(class 1) = 3/4; labels: three 1s, one 0.
    m = ConstantLogits([0.0, math.log(3.0)])
    ds = TensorDataset(torch.zeros(4, 1, 1), torch.tensor([1, 1, 1, 0]))
    out = evaluate(m, ds, batch_size=3)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["loss"] == pytest.approx((3 * -math.log(0.75) - math.log(0.25)) / 4)


def test_fit_learns_and_records_history(tmp_path):
    train, test = toy_data(), toy_data(seed=1)
    state = fit(model(), train, test, TrainConfig(epochs=3, batch_size=20, lr=0.01, eval_fractions=(0.5,)),
                run_dir=tmp_path, progress=False)  # fmt: skip
    epochs = [r["epoch"] for r in state.history]
    assert epochs == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert state.history[0]["train_loss"] is None and state.history[2]["train_loss"] > 0
    assert state.history[-1]["test_acc"] > 0.8
    assert read_jsonl(tmp_path / "history.jsonl") == [{k: v for k, v in r.items()} for r in state.history]
    assert state.step == 3 * 12


def test_same_seed_identical_metrics(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=30, lr=0.01)
    a = fit(model(), toy_data(), toy_data(seed=1), cfg, progress=False)
    b = fit(model(), toy_data(), toy_data(seed=1), cfg, progress=False)
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in b.history]


def test_resume_ends_with_same_metrics_as_uninterrupted(tmp_path):
    full_cfg = TrainConfig(epochs=3, batch_size=25, lr=0.01, eval_fractions=(0.3,))
    full = fit(model(), toy_data(), toy_data(seed=1), full_cfg, run_dir=tmp_path / "a", progress=False)
    # "Killed" after 2 epochs (its last checkpoint is at epoch 2), then resumed to 3.
    fit(model(), toy_data(), toy_data(seed=1), TrainConfig(epochs=2, batch_size=25, lr=0.01, eval_fractions=(0.3,)),
        run_dir=tmp_path / "b", progress=False)  # fmt: skip
    resumed_model = model()
    resumed = fit(resumed_model, toy_data(), toy_data(seed=1), full_cfg, run_dir=tmp_path / "b", resume=True,
                  progress=False)  # fmt: skip
    drop = lambda h: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in h]  # noqa: E731
    assert drop(resumed.history) == drop(full.history)
    assert drop(read_jsonl(tmp_path / "b" / "history.jsonl")) == drop(full.history)


def test_resume_refuses_other_settings(tmp_path):
    fit(
        model(),
        toy_data(),
        toy_data(),
        TrainConfig(epochs=1, batch_size=50),
        run_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(CheckpointError, match="batch_size"):
        fit(model(), toy_data(), toy_data(), TrainConfig(epochs=2, batch_size=60), run_dir=tmp_path, resume=True,
            progress=False)  # fmt: skip


class Poison(Callback):
    """Makes training diverge: after optimiser step ``at`` it sets the readout weights (or Adam's moments) to
    ``value``; remembers the model state at every epoch end (what that epoch's checkpoint should hold)."""

    def __init__(self, at, what="weights", value=float("inf")):
        self.at, self.what, self.value, self.snapshots = at, what, value, {}
        self.optimizer = None

    def on_step_end(self, model, state):
        if state.step != self.at:
            return
        with torch.no_grad():
            if self.what == "weights":
                model.readout.weight.fill_(self.value)
            else:
                self.optimizer.state[model.readout.weight]["exp_avg_sq"].fill_(self.value)

    def on_epoch_end(self, model, state):
        self.snapshots[state.epoch] = {k: v.clone() for k, v in model.state_dict().items()}


def _all_finite(ckpt):
    tensors = list(ckpt["model_state"].values())
    tensors += [
        t for s in ckpt["optimizer_state"]["state"].values() for t in s.values() if torch.is_tensor(t)
    ]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


@pytest.mark.parametrize("what", ["weights", "optimizer"])
def test_non_finite_after_the_last_step_of_an_epoch_is_never_checkpointed(tmp_path, what):
    # 240 samples / batch 40 = 6 steps per epoch: step 12 is the last step of epoch 2. Its inf values reach the
    # epoch-end evaluation and checkpoint, not the loss check of a next step.
    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    poison = Poison(at=12, what=what)
    poison.optimizer = opt
    with pytest.raises(NonFiniteLossError) as info:
        fit(m, toy_data(), toy_data(), TrainConfig(epochs=3, batch_size=40), run_dir=tmp_path, optimizer=opt,
            callbacks=[poison], progress=False)  # fmt: skip
    msg = str(info.value)
    assert (
        "epoch 2, step 12" in msg and f"last good checkpoint: {tmp_path / 'checkpoint.pt'} (epoch 1)" in msg
    )
    assert info.value.epoch == 2 and info.value.checkpoint == tmp_path / "checkpoint.pt"
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["train_state"]["epoch"] == 1 and _all_finite(ckpt)
    for k, v in poison.snapshots[1].items():
        assert torch.equal(ckpt["model_state"][k], v), k


def test_non_finite_loss_mid_epoch_stops_and_keeps_last_good_checkpoint(tmp_path):
    poison = Poison(at=9, value=float("nan"))  # inside epoch 2: the loss of step 10 is NaN
    with pytest.raises(
        NonFiniteLossError, match=r"loss became nan at epoch 2, step 10; last good checkpoint"
    ):
        fit(model(), toy_data(), toy_data(), TrainConfig(epochs=3, batch_size=40), run_dir=tmp_path,
            callbacks=[poison], progress=False)  # fmt: skip
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["train_state"]["epoch"] == 1 and _all_finite(ckpt)
    assert torch.equal(ckpt["model_state"]["readout.weight"], poison.snapshots[1]["readout.weight"])
    # A checkpoint left by an earlier, unrelated call in the same folder is not called "good" for this one.
    with pytest.raises(NonFiniteLossError, match="no good checkpoint was written"):
        fit(model(), toy_data(), toy_data(), TrainConfig(epochs=1, batch_size=40), run_dir=tmp_path,
            callbacks=[Poison(at=2, value=float("nan"))], progress=False)  # fmt: skip


def test_resume_continues_dynamics_records_exactly(tmp_path):
    """GradientRecorder / SignTracker state is saved in the checkpoint after their epoch-end hook: a run stopped
    after epoch 1 and resumed to 2 has the same records as an uninterrupted one."""
    from cortexnet.analysis import GradientRecorder, SignTracker

    cfg = lambda e: TrainConfig(epochs=e, batch_size=40, lr=0.05)  # noqa: E731
    full = (GradientRecorder(), SignTracker())
    fit(
        model(dale=True),
        toy_data(),
        toy_data(),
        cfg(2),
        run_dir=tmp_path / "a",
        callbacks=full,
        progress=False,
    )
    fit(model(dale=True), toy_data(), toy_data(), cfg(1), run_dir=tmp_path / "b", callbacks=(GradientRecorder(),
        SignTracker()), progress=False)  # fmt: skip
    resumed = (GradientRecorder(), SignTracker())
    fit(model(dale=True), toy_data(), toy_data(), cfg(2), run_dir=tmp_path / "b", resume=True, callbacks=resumed,
        progress=False)  # fmt: skip
    assert [e["epoch"] for e in full[0].epochs] == [1, 2] and [e["epoch"] for e in full[1].epochs] == [1, 2]
    assert resumed[0].epochs == full[0].epochs
    assert resumed[1].epochs == full[1].epochs
    saved = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["callbacks"]
    assert saved[0]["epochs"] == full[0].epochs and saved[1]["epochs"] == full[1].epochs


def test_resolve_device_checks_the_device_exists(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"only 1 CUDA device"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


def test_early_stopping_uses_validation_only(tmp_path):
    with pytest.raises(ValueError, match="validation"):
        fit(model(), toy_data(), toy_data(), TrainConfig(epochs=2, early_stopping_patience=1), progress=False)
    # Learning rate zero: validation accuracy never improves after epoch 1, so patience 2 stops at epoch 3.
    state = fit(model(), toy_data(), toy_data(), TrainConfig(epochs=10, lr=1e-12, early_stopping_patience=2),
                val=toy_data(seed=2), progress=False)  # fmt: skip
    assert state.stopped_early and state.epoch == 3
    assert all(r["val_acc"] is not None for r in state.history)


def test_checkpoint_rebuilds_model_and_dale_holds_on_disk(tmp_path):
    m = model(dale=True)
    meta = {"model": "cortex_rnn", "model_config": vars(m.config) | {}, "n_inputs": 4, "n_classes": 3}
    fit(m, toy_data(), toy_data(), TrainConfig(epochs=2, batch_size=20, lr=0.05), run_dir=tmp_path, meta=meta,
        progress=False)  # fmt: skip
    rebuilt, ckpt = model_from_checkpoint(tmp_path / "checkpoint.pt")
    x = toy_data().tensors[0][:7]
    torch.testing.assert_close(rebuilt(x), m.eval()(x))
    # Backend-independent: the effective weight the forward pass uses, rebuilt from the file.
    rec = rebuilt.recurrent.rec
    w, mask = rec.to_dense(), rec.connectivity().to_dense()
    inh = ckpt["model_state"]["recurrent.inhibitory"]
    assert rec.sign_violations() == 0
    assert torch.all(w[~mask] == 0)
    assert torch.all(w[:, inh] <= 0) and torch.all(w[:, ~inh] >= 0)
    assert int(inh.sum()) == round(0.115 * 40 + 0.5 - 0.5) == 5
    assert_dale_on_disk(ckpt["model_state"])  # the stored tensors themselves


def test_corrupt_and_foreign_checkpoints_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a cortexnet checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_any_torch_optimizer(tmp_path):
    m = model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    state = fit(
        m, toy_data(), toy_data(), TrainConfig(epochs=1, batch_size=40), optimizer=opt, progress=False
    )
    assert state.step == 6


@pytest.mark.parametrize("kw,msg", [({"epochs": -1}, "epochs"), ({"batch_size": 0}, "batch"), ({"lr": 0}, "learning"),
                                    ({"eval_fractions": (1.0,)}, "fractions"), ({"device": "tpu"}, "device")])  # fmt: skip
def test_train_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw).validate()


class _RecordLR(Callback):
    def __init__(self):
        self.lrs = []

    def on_step_end(self, model, ctx):
        self.lrs.append(ctx.optimizer.param_groups[0]["lr"])


class _Kill(Callback):
    def on_step_end(self, model, ctx):
        if ctx.state.step == 14:
            raise KeyboardInterrupt


def test_linear_lr_schedule_known_values_and_exact_resume(tmp_path):
    # 240 samples / 40 = 6 steps per epoch, 3 epochs = 18 steps; the decay ends at 0.5 * 18 = 9 steps: the rate
    # of step s (0-based) is 0.01 * (1 - 0.9 * min(1, s / 9)), then 0.001 from step 9 on.
    cfg = TrainConfig(epochs=3, batch_size=40, lr=0.01, lr_schedule="linear", lr_final_factor=0.1,
                      lr_decay_fraction=0.5)  # fmt: skip
    rec = _RecordLR()
    straight = model()
    fit(straight, toy_data(), None, cfg, run_dir=tmp_path / "a", callbacks=[rec], progress=False)
    expected = [0.01 * (1 - 0.9 * min(1.0, s / 9)) for s in range(18)]
    assert rec.lrs == pytest.approx(expected, rel=1e-12)
    assert TrainConfig().lr_factor(5, 10) == 1.0  # constant by default
    # Killed in epoch 3 (after step 14; the last checkpoint is at epoch 2), resumed: the same rates and weights.
    with pytest.raises(KeyboardInterrupt):
        fit(
            model(),
            toy_data(),
            None,
            cfg,
            run_dir=tmp_path / "b",
            callbacks=[_RecordLR(), _Kill()],
            progress=False,
        )
    again = _RecordLR()
    resumed = model()
    fit(resumed, toy_data(), None, cfg, run_dir=tmp_path / "b", resume=True, callbacks=[again, Callback()],
        progress=False)  # fmt: skip
    assert again.lrs == pytest.approx(expected[12:], rel=1e-12)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="cosine").validate()


class _Payload:
    """An arbitrary object: a pickle of it could run code on load."""


def test_a_checkpoint_with_arbitrary_objects_is_refused_without_suggesting_unsafe_loading(tmp_path):
    path = tmp_path / "crafted.pt"
    torch.save({"format": 1, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "objects other than tensors and plain data: refused" in message and str(path) in message
    assert "weights_only" not in message
