"""NeuroGym tasks as a dataset with per-step targets, and batching of (n, T) labels.

The loader logic (padding, the IGNORE_INDEX mask, seeding, caching, option checks, the missing-package error) is
tested against a tiny fake ``neurogym`` module put in ``sys.modules``, so it runs without neurogym installed; the
tests marked by ``pytest.importorskip("neurogym")`` check the real tasks. Everything is written in tmp_path.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cortexnet.data import (
    IGNORE_INDEX,
    DataError,
    SourceData,
    batches,
    download_dataset,
    known_datasets,
    load_dataset,
    make_splits,
)
from cortexnet.data import neurogym_tasks as ngt
from cortexnet.data.sequences import pad_trials, scored_mask

FAKE_TASK = "FakeDecision-v0"
NO_DECISION_TASK = "FakeNoDecision-v0"


# ------------------------------------------------------------------------------------------------ fake neurogym
class FakeTask:
    """A trial task with the attributes the loader reads: fixation 2 steps, stimulus 1..3 steps (drawn), decision 2
    steps; 3 inputs (fixation cue, two evidence channels), 3 actions (0 fixate, 1 / 2 choose)."""

    def __init__(self, dt=100, sigma=1.0, decision=True, log=None):
        self.dt = dt
        self.sigma = sigma
        self.decision = decision
        self.observation_space = types.SimpleNamespace(shape=(3,))
        self.action_space = types.SimpleNamespace(n=3, name={"fixation": 0, "choice": [1, 2]})
        self.rng = np.random.RandomState()
        self.start_ind, self.end_ind = {}, {}
        self.log = log if log is not None else []

    def seed(self, seed=None):
        self.rng = np.random.RandomState(seed)
        return [seed]

    def new_trial(self):
        stim = 1 + int(self.rng.randint(3))
        length = 2 + stim + 2
        choice = 1 + int(self.rng.randint(2))
        last = "decision" if self.decision else "response"
        self.start_ind = {"fixation": 0, "stimulus": 2, last: 2 + stim}
        self.end_ind = {"fixation": 2, "stimulus": 2 + stim, last: length}
        self.ob = np.zeros((length, 3), np.float32)
        self.ob[: 2 + stim, 0] = 1
        self.ob[2 : 2 + stim, choice] = 1 + self.sigma * self.rng.randn(stim)
        self.gt = np.zeros(length, np.int64)
        self.gt[2 + stim :] = choice
        self.log.append((self.ob.copy(), self.gt.copy(), dict(self.start_ind), dict(self.end_ind)))
        return {"ground_truth": choice}


@pytest.fixture
def fake(monkeypatch):
    """A fake ``neurogym`` module in ``sys.modules``; ``fake.envs`` lists the environments it made."""
    module = types.ModuleType("neurogym")
    module.__version__ = "0.0-fake"
    module.envs = []

    def make(id_, **kwargs):
        if id_ not in (FAKE_TASK, NO_DECISION_TASK):
            raise KeyError(id_)
        env = FakeTask(decision=id_ == FAKE_TASK, **kwargs)
        module.envs.append(env)
        return types.SimpleNamespace(unwrapped=env)

    module.make = make
    module.all_envs = lambda collections=False: [FAKE_TASK, NO_DECISION_TASK]
    monkeypatch.setitem(sys.modules, "neurogym", module)
    return module


def _load(root, **options):
    return load_dataset(
        "neurogym", root=root, options={"task": FAKE_TASK, "n_trials": 24, "n_test": 8, **options}
    )


def _arrays(splits):
    return [t.numpy() for ds in (splits.train, splits.test) for t in ds.tensors]


# ------------------------------------------------------------------------------------------------ the contract
def test_ignore_index_is_cross_entropys_default():
    assert IGNORE_INDEX == -100 == torch.nn.CrossEntropyLoss().ignore_index
    y = np.array([[IGNORE_INDEX, 1, 2], [0, IGNORE_INDEX, IGNORE_INDEX]])
    np.testing.assert_array_equal(scored_mask(y), [[False, True, True], [True, False, False]])


def test_neurogym_is_registered_and_needs_no_download(tmp_path):
    assert "neurogym" in known_datasets()
    assert download_dataset("neurogym", tmp_path) == []


def test_shapes_dtypes_and_description(fake, tmp_path):
    s = _load(tmp_path, dt=50)
    x, y = s.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert (s.n_steps, s.n_inputs, s.n_classes) == (7, 3, 3)  # the longest fake trial: 2 + 3 + 2 steps
    assert x.shape == (24, 7, 3) and y.shape == (24, 7) and s.test.tensors[1].shape == (8, 7)
    assert s.class_names == ("fixation", "choice 1", "choice 2")
    assert fake.envs[0].dt == 50  # dt reaches the task
    for word in (FAKE_TASK, "T = 7", "dt 50 ms", "decision period", "one trial per sequence", "-100"):
        assert word in s.description
    assert s.metadata["score"] == "decision" and s.metadata["ignore_index"] == IGNORE_INDEX
    assert s.metadata["class_counts_of"].startswith("scored steps")


@pytest.mark.parametrize("score", ["decision", "all"])
def test_targets_and_mask_follow_the_periods_by_hand(fake, tmp_path, score):
    s = _load(tmp_path, score=score)
    train_env, test_env = fake.envs
    for ds, env in ((s.train, train_env), (s.test, test_env)):
        x, y = (t.numpy() for t in ds.tensors)
        assert len(env.log) == len(y)
        for i, (ob, gt, start, end) in enumerate(env.log):
            n = len(ob)
            np.testing.assert_array_equal(x[i, :n], ob)
            assert not x[i, n:].any()  # padding: zero inputs
            expected = np.full(s.n_steps, IGNORE_INDEX)
            lo, hi = (start["decision"], end["decision"]) if score == "decision" else (0, n)
            expected[lo:hi] = gt[lo:hi]
            np.testing.assert_array_equal(y[i], expected)
    if score == "decision":  # fixation is never scored, choices only
        scored = s.train.tensors[1][s.train.tensors[1] != IGNORE_INDEX]
        assert set(scored.tolist()) <= {1, 2}
    else:
        assert s.metadata["class_counts"]["train"][0] > 0


def test_seq_len_pads_or_truncates(fake, tmp_path, caplog):
    long = _load(tmp_path / "a", seq_len=10)
    assert long.n_steps == 10 and (long.train.tensors[1][:, 7:] == IGNORE_INDEX).all()
    with caplog.at_level(logging.WARNING, logger="cortexnet.data.neurogym_tasks"):
        short = _load(tmp_path / "b", seq_len=4)
    assert short.n_steps == 4 and short.train.tensors[0].shape == (24, 4, 3)
    assert "cuts" in caplog.text
    lengths = np.array([len(ob) for ob, *_ in fake.envs[-2].log])
    assert short.metadata["truncated"]["train"] == int((lengths > 4).sum())
    # trials of 5+ steps lose (part of) the decision period: those of 6 or 7 steps lose all of it
    y = short.train.tensors[1].numpy()
    assert short.metadata["unscored_sequences"]["train"] == int((~(y != IGNORE_INDEX).any(axis=1)).sum())
    assert short.metadata["unscored_sequences"]["train"] == int((lengths >= 6).sum())


def test_same_seed_same_arrays_and_test_set_independent_of_n_trials(fake, tmp_path):
    a, b = _load(tmp_path / "a", seed=3), _load(tmp_path / "b", seed=3)
    for u, v in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(u, v)
    c = _load(tmp_path / "c", seed=4)
    assert not np.array_equal(a.train.tensors[0].numpy(), c.train.tensors[0].numpy())
    d = _load(tmp_path / "d", seed=3, n_trials=30, seq_len=7)
    np.testing.assert_array_equal(d.test.tensors[0].numpy(), a.test.tensors[0].numpy())
    np.testing.assert_array_equal(d.train.tensors[1].numpy()[:24], a.train.tensors[1].numpy())


def test_numpys_global_generator_is_left_as_it_was(fake, tmp_path):
    np.random.seed(123)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    _load(tmp_path)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


def test_cache_round_trip(fake, tmp_path, caplog):
    first = _load(tmp_path)
    files = sorted((tmp_path / "neurogym").glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith(FAKE_TASK)
    assert len(fake.envs) == 2
    second = _load(tmp_path)
    assert len(fake.envs) == 2  # read from the cache: no environment made
    for u, v in zip(_arrays(first), _arrays(second), strict=True):
        np.testing.assert_array_equal(u, v)
    assert second.description == first.description and second.class_names == first.class_names
    # other options (or another neurogym version) are another entry
    _load(tmp_path, score="all")
    fake.__version__ = "0.1-fake"
    _load(tmp_path)
    assert len(list((tmp_path / "neurogym").glob("*.npz"))) == 3 and len(fake.envs) == 6
    # a damaged entry is rebuilt, with a warning naming it
    files[0].write_bytes(b"not an npz")
    fake.__version__ = "0.0-fake"
    with caplog.at_level(logging.WARNING, logger="cortexnet.data.cache"):
        again = _load(tmp_path)
    assert str(files[0]) in caplog.text and len(fake.envs) == 8
    np.testing.assert_array_equal(again.train.tensors[1].numpy(), first.train.tensors[1].numpy())


def test_cache_of_other_options_under_the_same_name_is_not_served(fake, tmp_path, caplog):
    s = _load(tmp_path)
    path = next((tmp_path / "neurogym").glob("*.npz"))
    opts = ngt.parse_options({"task": FAKE_TASK, "n_trials": 24, "n_test": 8})
    assert path == ngt.cache_path(tmp_path, opts, "0.0-fake")
    from cortexnet.data.cache import load_npz, save_npz

    meta, arrays = load_npz(path)
    meta["key"]["options"]["seed"] = 99
    save_npz(path, meta, **arrays)
    with caplog.at_level(logging.WARNING, logger="cortexnet.data.cache"):
        again = _load(tmp_path)
    assert "other options" in caplog.text and len(fake.envs) == 4
    np.testing.assert_array_equal(again.train.tensors[0].numpy(), s.train.tensors[0].numpy())


def test_validation_split_is_unstratified_and_n_per_class_is_refused(fake, tmp_path):
    s = _load(tmp_path, n_trials=40)
    v = load_dataset("neurogym", root=tmp_path, val_fraction=0.25, seed=1,
                     options={"task": FAKE_TASK, "n_trials": 40, "n_test": 8})  # fmt: skip
    assert (len(v.train), len(v.val)) == (30, 10) and "unstratified" in v.description
    rows = {tuple(r) for r in s.train.tensors[0].reshape(40, -1).tolist()}
    assert {tuple(r) for r in v.val.tensors[0].reshape(10, -1).tolist()} <= rows
    with pytest.raises(ValueError, match="n_per_class=2 needs one class per sample"):
        load_dataset("neurogym", root=tmp_path, n_per_class=2, options={"task": FAKE_TASK})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"seq_len": 0}, r"seq_len must be an integer >= 1, got 0"),
        ({"seq_len": 2.5}, r"seq_len must be an integer >= 1, got 2\.5"),
        ({"score": "bad"}, r"score must be one of \['decision', 'all'\], got 'bad'"),
        ({"n_trials": 0}, r"n_trials must be an integer >= 1, got 0"),
        ({"n_test": True}, r"n_test must be an integer >= 1, got True"),
        ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
        ({"dt": -5}, r"dt must be a positive number of milliseconds, got -5"),
        ({"task": ""}, r"task must be a NeuroGym task id"),
        ({"colour": 1}, r"unknown neurogym option\(s\) \['colour'\]"),
        ({"env_kwargs": {"dt": 20}}, r"give dt as the option dt"),
        ({"env_kwargs": {"sigma": object()}}, r"env_kwargs must hold JSON values"),
    ],
)
def test_bad_options_are_one_line_value_errors_before_any_work(tmp_path, options, match):
    with pytest.raises(ValueError, match=match) as info:
        load_dataset("neurogym", root=tmp_path, options=options)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "neurogym").exists()


def test_unknown_task_and_task_without_decision_period(fake, tmp_path):
    with pytest.raises(
        ValueError, match=r"unknown NeuroGym task 'FakeDecisio-v0'.*did you mean 'FakeDecision-v0'"
    ) as info:
        _load(tmp_path, task="FakeDecisio")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"has no 'decision' period .*'response'.*score='all'"):
        _load(tmp_path, task=NO_DECISION_TASK)
    assert _load(tmp_path, task=NO_DECISION_TASK, score="all").n_steps == 7
    with pytest.raises(ValueError, match=r"neurogym cannot make task 'FakeDecision-v0'.*TypeError.*colour"):
        _load(tmp_path, env_kwargs={"colour": "red"})


def test_task_aliases():
    assert ngt.resolve_task("pdm") == "PerceptualDecisionMaking-v0"
    assert ngt.resolve_task("CDI") == ngt.resolve_task("context") == "ContextDecisionMaking-v0"
    assert ngt.resolve_task("dms") == "DelayMatchSample-v0"
    assert ngt.resolve_task("DelayMatchSample") == "DelayMatchSample-v0"
    assert ngt.resolve_task("yang19.go-v0") == "yang19.go-v0"
    assert ngt.parse_options(None)["task"] == "PerceptualDecisionMaking-v0"


def test_missing_neurogym_is_a_one_line_data_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "neurogym", None)  # "import neurogym" raises ImportError
    with pytest.raises(DataError, match=r'pip install "cortexnet\[neurogym\]"') as info:
        load_dataset("neurogym", root=tmp_path)
    assert "\n" not in str(info.value)
    # not installed at all (no distribution): the same error, before anything is generated
    monkeypatch.delitem(sys.modules, "neurogym")

    def no_distribution(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", no_distribution)
    with pytest.raises(DataError, match=r"not installed.*pip install \"cortexnet\[neurogym\]\""):
        load_dataset("neurogym", root=tmp_path)
    assert not (tmp_path / "neurogym").exists()


def test_source_data_checks_per_step_labels():
    x = torch.zeros(4, 5, 2)
    y = np.full((4, 5), IGNORE_INDEX)
    y[:, -1] = [0, 1, 2, 1]
    s = SourceData(x, y, x, y, n_classes=3, description="per step")
    assert make_splits("mine", s).train.tensors[1].shape == (4, 5)
    bad = y.copy()
    bad[0, 0] = 3
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\) \(or -100 at steps not scored\)"):
        SourceData(x, bad, x, y, n_classes=3, description="per step")
    with pytest.raises(ValueError, match=r"y \(n,\) or per-step y \(n, T\)"):
        SourceData(x, y[:, :4], x, y[:, :4], n_classes=3, description="per step")
    with pytest.raises(ValueError, match="the same kind"):
        SourceData(x, y, x, y[:, -1].copy(), n_classes=3, description="mixed")


def test_pad_trials():
    x, y, cut = pad_trials(
        [np.ones((2, 1)), np.ones((4, 1))],
        [np.array([1, 2]), np.array([0, 0, 1, 1])],
        [np.array([False, True]), np.array([True, False, True, True])],
        3,
    )
    np.testing.assert_array_equal(x[..., 0], [[1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(y, [[IGNORE_INDEX, 2, IGNORE_INDEX], [0, IGNORE_INDEX, 1]])
    np.testing.assert_array_equal(cut, [False, True])
    with pytest.raises(ValueError, match="seq_len must be an integer >= 1, got 0"):
        pad_trials([np.ones((2, 1))], [np.zeros(2, int)], [np.ones(2, bool)], 0)


# ------------------------------------------------------------------------------------------------ batching (n, T)
def _per_step_data(n=10, t=6, f=2, dtype=torch.int64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, t, f, generator=g)
    y = torch.randint(0, 3, (n, t), generator=g)
    y[:, : t // 2] = IGNORE_INDEX
    return x, y.to(dtype)


class Samples(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_batches_accept_per_step_labels_from_every_source():
    x, y = _per_step_data()
    source = batches(TensorDataset(x, y.int()), batch_size=4)
    got = list(source.epoch())
    assert [tuple(b[1].shape) for b in got] == [(4, 6), (4, 6), (2, 6)]
    assert all(b[1].dtype == torch.int64 for b in got)
    torch.testing.assert_close(torch.cat([b[1] for b in got]), y)  # IGNORE_INDEX kept
    from_dataset = list(batches(Samples(x, y), batch_size=4).epoch())
    for (xa, ya), (xb, yb) in zip(got, from_dataset, strict=True):
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)
    loader = DataLoader(TensorDataset(x, y), batch_size=5)
    assert [tuple(b[1].shape) for b in batches(loader).epoch()] == [(5, 6), (5, 6)]


def test_batches_refuse_other_label_shapes():
    x, y = _per_step_data()
    with pytest.raises(ValueError, match=r"labels must be class indices of shape \(n,\) or per-step targets \(n, T\) with T = the inputs' 6 steps, got \(10, 5\)"):  # fmt: skip
        batches(TensorDataset(x, y[:, :5]))
    with pytest.raises(ValueError, match=r"labels must be class indices of shape \(n,\)"):
        batches(TensorDataset(x, y[:, :1]))
    with pytest.raises(ValueError, match=r"of shape \(n,\) or per-step"):
        batches(TensorDataset(x, y[:, :, None]))
    with pytest.raises(ValueError, match=r"a sample's label must be a class index \(a scalar\) or per-step targets \(T,\)"):  # fmt: skip
        batches(Samples(x, y[:, :5]))
    with pytest.raises(ValueError, match=r"a batch of class indices \(B,\) or of per-step targets \(B, T\).*\(5, 7\)"):  # fmt: skip
        list(
            batches(DataLoader(TensorDataset(x, torch.zeros(10, 7, dtype=torch.long)), batch_size=5)).epoch()
        )
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        batches(TensorDataset(x, y.float()))


def test_masked_loss_counts_scored_steps_only():
    _, y = _per_step_data()
    logits = torch.randn(10, 6, 3, generator=torch.Generator().manual_seed(1))
    mask = y != IGNORE_INDEX
    loss = F.cross_entropy(logits.reshape(-1, 3), y.reshape(-1))  # PyTorch's default ignore_index
    by_hand = -torch.log_softmax(logits, -1).gather(-1, y.clamp(min=0)[..., None])[..., 0][mask].mean()
    torch.testing.assert_close(loss, by_hand)
    assert int(mask.sum()) == 10 * 3


# ------------------------------------------------------------------------------------------------ real neurogym
@pytest.mark.parametrize("task", ["pdm", "cdi", "dms"])
def test_real_tasks_score_exactly_the_decision_period(task, tmp_path, monkeypatch):
    ngym = pytest.importorskip("neurogym")
    made = []
    real_make = ngym.make

    def recording_make(id_, **kwargs):
        env = real_make(id_, **kwargs)
        inner = env.unwrapped
        log = []
        new_trial = inner.new_trial

        def recorded(**kw):
            trial = new_trial(**kw)
            d = ("decision", inner.start_ind["decision"], inner.end_ind["decision"])
            log.append((inner.ob.copy(), inner.gt.copy(), d))
            return trial

        inner.new_trial = recorded
        made.append(log)
        return env

    monkeypatch.setattr(ngym, "make", recording_make)
    s = load_dataset("neurogym", root=tmp_path, options={"task": task, "n_trials": 40, "n_test": 10})
    assert len(made) == 2 and s.n_classes == 3
    for ds, log in ((s.train, made[0]), (s.test, made[1])):
        x, y = (t.numpy() for t in ds.tensors)
        assert len(log) == len(y)
        for i, (ob, gt, (_, lo, hi)) in enumerate(log):
            assert hi > lo
            np.testing.assert_array_equal(np.flatnonzero(y[i] != IGNORE_INDEX), np.arange(lo, hi))
            np.testing.assert_array_equal(y[i, lo:hi], gt[lo:hi])
            assert set(gt[lo:hi].tolist()) <= {1, 2}  # a choice, never fixation
            np.testing.assert_array_equal(x[i, : len(ob)], ob)
    assert s.n_inputs == made[0][0][0].shape[1]
    # same seed, same arrays (generated again in another root)
    again = load_dataset(
        "neurogym", root=tmp_path / "again", options={"task": task, "n_trials": 40, "n_test": 10}
    )
    for u, v in zip(_arrays(s), _arrays(again), strict=True):
        np.testing.assert_array_equal(u, v)


def test_real_task_score_all_scores_every_step_of_the_trial(tmp_path):
    pytest.importorskip("neurogym")
    s = load_dataset(
        "neurogym", root=tmp_path, options={"task": "pdm", "n_trials": 20, "n_test": 5, "score": "all"}
    )
    y = s.train.tensors[1]
    assert (y != IGNORE_INDEX).all()  # PerceptualDecisionMaking trials all have the same length: no padding
    assert (y[:, 0] == 0).all() and set(y[:, -1].tolist()) <= {1, 2}  # fixation first, the choice last


# ------------------------------------------------------------------------- the Dale experiment on a cognitive task
def _dale_on_task(tmp_path, task, extra=()):
    import json

    from cortexnet.experiments import dale
    from cortexnet.experiments.common import run_cli

    out = tmp_path / "runs"
    args = ["--dataset", "neurogym", "--dataset-options", f"task={task}", "n_trials=60", "n_test=20",
            "--data-root", str(tmp_path / "data"), "--nodes", "24", "--densities", "1.0", "0.3",
            "--epochs", "2", "--batch-size", "20", "--dt", "20", "--tau", "100", "--noise-std", "0.05",
            "--no-progress", "--out", str(out), *extra]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    (run,) = (out / "dale").iterdir()
    return run, json.loads((run / "summary.json").read_text())


def test_dale_trains_leaky_noisy_networks_on_a_task_scored_on_its_decision_period(fake, tmp_path):
    from cortexnet.training import model_from_checkpoint

    run, summary = _dale_on_task(tmp_path, FAKE_TASK, ["--init-state", "learned", "--balanced"])
    assert summary["chance"] == 0.5  # the decision period asks for one of two choices, never for fixation
    assert [c["density"] for c in summary["configurations"]] == [1.0, 0.3]
    for c in summary["configurations"]:
        accs = c["runs"][0]["test_acc_per_epoch"]
        assert len(accs) == 3 and all(0.0 <= a <= 1.0 for a in accs)
    (ckpt,) = run.glob("members/p0.3-*/checkpoint.pt")
    model, ckpt = model_from_checkpoint(ckpt)
    cfg = ckpt["meta"]["model_config"]
    assert (
        cfg["readout"] == "all" and cfg["tau"] == 100 and cfg["init_state"] == "learned" and cfg["balanced"]
    )
    x = torch.zeros(2, 7, 3)
    assert model(x).shape == (2, 7, 3)  # logits at every step
    assert torch.allclose(model.recurrent.alpha, torch.full((24,), 0.2))


def test_a_real_neurogym_task_trains_end_to_end(tmp_path):
    pytest.importorskip("neurogym")
    _, summary = _dale_on_task(tmp_path, "pdm")
    assert summary["chance"] == 0.5 and len(summary["configurations"]) == 2


def test_the_probe_measures_a_task_network_at_each_trials_last_scored_step(fake, tmp_path):
    import json

    from cortexnet.analysis import hidden_activations
    from cortexnet.experiments import representations
    from cortexnet.experiments.common import run_cli
    from cortexnet.training import model_from_checkpoint

    run, _ = _dale_on_task(tmp_path, FAKE_TASK)
    (path,) = run.glob("members/p0.3-*/checkpoint.pt")
    model, _ = model_from_checkpoint(path)
    splits = _load(tmp_path / "data", n_trials=60, n_test=20)
    acts = hidden_activations(model, splits.test)
    x, y = splits.test.tensors
    all_h = model.hidden(x, all_steps=True)
    for i in range(len(y)):
        last = int((y[i] != IGNORE_INDEX).nonzero().max())
        torch.testing.assert_close(acts.values[i], all_h[i, last])
        assert acts.labels[i] == y[i, last]
    out = tmp_path / "probe"
    args = ["--checkpoint", str(path), "--data-root", str(tmp_path / "data"), "--mi-pairs", "50",
            "--corr-pairs", "50", "--dropout-draws", "1", "--out", str(out)]  # fmt: skip
    assert run_cli(representations.main, args) == 0
    (summary,) = out.glob("representations/*/summary.json")
    network = json.loads(summary.read_text())["networks"][0]
    assert 0.0 <= network["accuracy"] <= 1.0 and network["inputs_used"] == 20
