"""Bringing your own data: SourceData.from_arrays, npz:PATH datasets, the cortexnet.datasets entry points, and
the shared val_fraction default. Everything is written in tmp_path; nothing touches the network."""

import importlib.metadata
import inspect
import logging
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

from cortexnet.data import (
    DATASETS,
    DataError,
    DatasetLoader,
    SourceData,
    get_loader,
    is_known_dataset,
    known_datasets,
    load_dataset,
    make_splits,
)


def arrays(n_train=40, n_test=12, t=6, f=3, k=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {
        "train_x": rng.normal(size=(n_train, t, f)).astype(dtype),
        "train_y": np.tile(np.arange(k), n_train // k + 1)[:n_train].astype(np.int32),
        "test_x": rng.normal(size=(n_test, t, f)).astype(dtype),
        "test_y": np.tile(np.arange(k), n_test // k + 1)[:n_test].astype(np.uint8),
    }


# ------------------------------------------------------------------------------------------ from_arrays
def test_from_arrays_converts_dtypes_and_infers_classes():
    a = arrays(dtype=np.float64)
    s = SourceData.from_arrays(a["train_x"], a["train_y"], a["test_x"], a["test_y"], description="mine")
    assert s.train_x.dtype == torch.float32 and s.test_x.shape == (12, 6, 3)
    assert s.train_y.dtype == np.int64 and s.test_y.dtype == np.int64
    assert s.n_classes == 4 and s.description == "mine" and s.class_names == ()
    np.testing.assert_array_equal(s.train_x.numpy(), a["train_x"].astype(np.float32))
    # tensors of other float / int dtypes, an explicit (larger) n_classes and class names
    t = SourceData.from_arrays(
        torch.from_numpy(a["train_x"]).half(),
        torch.from_numpy(a["train_y"]).short(),
        torch.from_numpy(a["test_x"]),
        torch.from_numpy(a["test_y"].astype(np.int64)),
        n_classes=6,
        class_names=[f"c{i}" for i in range(6)],
    )
    assert t.train_x.dtype == torch.float32 and t.n_classes == 6 and t.class_names[5] == "c5"
    np.testing.assert_array_equal(t.train_y, a["train_y"])


def test_from_arrays_takes_n_by_t_as_one_input_per_step(caplog):
    rng = np.random.default_rng(1)
    with caplog.at_level(logging.INFO, logger="cortexnet.data.splits"):
        s = SourceData.from_arrays(
            rng.normal(size=(10, 7)), np.arange(10) % 2, rng.normal(size=(4, 7)), np.arange(4) % 2
        )
    assert s.train_x.shape == (10, 7, 1) and s.test_x.shape == (4, 7, 1)
    assert "(n, T)" in s.description and "1 input per step" in s.description
    assert "one input per step" in caplog.text
    splits = make_splits("mine", s, val_fraction=0.2, seed=0)
    assert (splits.n_steps, splits.n_inputs, splits.n_classes) == (7, 1, 2) and len(splits.val) == 2


def _bad(**changes):
    a = arrays()
    a.update(changes)
    kw = {k: a.pop(k) for k in list(a) if k not in ("train_x", "train_y", "test_x", "test_y")}
    return SourceData.from_arrays(a["train_x"], a["train_y"], a["test_x"], a["test_y"], **kw)


@pytest.mark.parametrize(
    ("changes", "exc", "match"),
    [
        (
            {"train_x": np.zeros((40, 6, 3), np.uint8)},
            TypeError,
            r"train_x must hold floating-point.*uint8.*/ 255",
        ),
        ({"test_x": np.zeros((12, 6, 3, 2))}, ValueError, r"test_x must be \(n, T, F\).*\(12, 6, 3, 2\)"),
        ({"test_x": np.zeros((12, 5, 3))}, ValueError, r"same \(T, F\).*\(6, 3\) and \(5, 3\)"),
        (
            {"train_x": np.full((40, 6, 3), np.nan)},
            ValueError,
            r"train_x holds 720 non-finite values.*sample 0",
        ),
        ({"train_y": np.zeros(40)}, TypeError, r"train_y must hold integer class indices.*float64.*astype"),
        ({"train_y": np.zeros(40, bool)}, TypeError, r"train_y must hold integer class indices.*bool"),
        ({"train_y": np.eye(4, dtype=np.int64)[np.arange(40) % 4]}, ValueError, r"\(n,\).*\(40, 4\).*argmax"),
        ({"train_y": np.arange(39)}, ValueError, r"train_y has 39 entries for 40 samples"),
        ({"test_y": np.full(12, -1)}, ValueError, r"test_y has label -1.*\[0, n_classes\).*return_inverse"),
        ({"n_classes": 3}, ValueError, r"train_y has label 3 but n_classes=3.*\[0, 3\).*n_classes=4"),
        ({"n_classes": 1}, ValueError, r"n_classes must be an integer >= 2, got 1"),
        ({"class_names": ("a", "b")}, ValueError, r"2 class_names for n_classes=4"),
        (
            {"train_y": np.zeros(40, np.int64), "test_y": np.zeros(12, np.int64)},
            ValueError,
            "at least 2 classes",
        ),
        ({"train_groups": np.zeros(39, np.int64)}, ValueError, r"train_groups has 39 entries for 40 samples"),
        ({"train_x": np.array([[0.0], [1.0, 2.0]], dtype=object)}, TypeError, r"object array"),
    ],
)
def test_from_arrays_errors_name_the_value_range_and_fix(changes, exc, match):
    with pytest.raises(exc, match=match):
        _bad(**changes)


def test_from_arrays_warns_about_classes_without_training_examples(caplog):
    a = arrays()
    with caplog.at_level(logging.WARNING):
        s = SourceData.from_arrays(a["train_x"], a["train_y"] % 2 * 2, a["test_x"], a["test_y"] % 3)
    assert s.n_classes == 3 and "[1] have no training examples" in caplog.text


# -------------------------------------------------------------------------------------------------- npz
@pytest.fixture
def npz_file(tmp_path):
    path = tmp_path / "mine.npz"
    a = arrays(n_train=60, k=3)
    np.savez(path, **a, class_names=np.array(["rest", "left", "right"]))
    return path, a


def test_npz_dataset_loads_through_load_dataset_with_every_split_option(npz_file):
    path, a = npz_file
    name = f"npz:{path}"
    assert is_known_dataset(name) and name in DATASETS and "npz:PATH" in known_datasets()
    s = load_dataset(name, val_fraction=0.2, n_per_class=5, seed=3)
    assert (s.name, s.n_steps, s.n_inputs, s.n_classes) == (name, 6, 3, 3)
    assert s.class_names == ("rest", "left", "right")
    assert len(s.val) == 12 and np.bincount(s.train.tensors[1].numpy()).tolist() == [5, 5, 5]
    assert str(path) in s.description and "val: 0.2" in s.description and "seed 3" in s.description
    assert s.metadata["file"] == str(path) and len(s.metadata["sha256"]) == 64
    np.testing.assert_array_equal(s.test.tensors[0].numpy(), a["test_x"].astype(np.float32))
    np.testing.assert_array_equal(s.test.tensors[1].numpy(), a["test_y"])
    # the same seed gives the same splits; the default (no validation) takes the whole pool
    again = load_dataset(name, val_fraction=0.2, n_per_class=5, seed=3)
    assert torch.equal(again.train.tensors[0], s.train.tensors[0])
    whole = load_dataset(name)
    assert whole.val is None and len(whole.train) == 60


def test_npz_groups_give_a_grouped_validation_split(tmp_path):
    a = arrays(n_train=40, k=2)
    np.savez(tmp_path / "g.npz", **a, train_groups=np.repeat(np.arange(4), 10), n_classes=np.int64(3))
    s = load_dataset(f"npz:{tmp_path / 'g.npz'}", val_fraction=0.25, seed=0)
    assert s.n_classes == 3 and len(s.metadata["val_groups"]) == 1 and len(s.val) == 10


def test_npz_relative_path_is_taken_from_the_current_folder(npz_file, monkeypatch):
    path, _ = npz_file
    monkeypatch.chdir(path.parent)
    assert len(load_dataset("npz:mine.npz").test) == 12


def test_npz_missing_file_names_the_path_and_how_to_write_it(tmp_path):
    missing = tmp_path / "absent.npz"
    with pytest.raises(DataError, match="does not exist") as info:
        load_dataset(f"npz:{missing}")
    assert str(missing) in str(info.value) and "numpy.savez(" in str(info.value)


def test_npz_missing_keys_are_named(tmp_path):
    a = arrays()
    del a["test_y"]
    np.savez(tmp_path / "m.npz", **a, extra=np.zeros(1))
    with pytest.raises(DataError, match=r"lacks the array\(s\) \['test_y'\].*numpy.savez") as info:
        load_dataset(f"npz:{tmp_path / 'm.npz'}")
    assert str(tmp_path / "m.npz") in str(info.value)


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: np.savez(p, **arrays() | {"test_x": np.zeros((12, 2, 3))}), r"same \(T, F\)"),
        (lambda p: np.savez(p, **arrays() | {"train_y": np.zeros((40, 1), np.int64)}), r"ravel"),
        (lambda p: np.savez(p, **arrays(), class_names=np.array(["a", 1, None], dtype=object)), "unpickling"),
        (lambda p: np.savez(p, **arrays(), n_classes=np.array([4, 4])), "n_classes in .* one integer"),
        (
            lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)) or p.with_suffix(".npy").rename(p),
            "single array",
        ),
        (lambda p: p.write_bytes(b"not a zip archive at all"), "cannot read .* as a .npz archive"),
    ],
)
def test_npz_bad_content_is_a_data_error_naming_the_file(tmp_path, write, match):
    path = tmp_path / "bad.npz"
    write(path)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(f"npz:{path}")
    assert str(path) in str(info.value)


def test_npz_name_without_a_path_and_options_are_errors(npz_file):
    assert not is_known_dataset("npz:") and not is_known_dataset("npz:  ")
    with pytest.raises(ValueError, match=r"npz:PATH, e.g. npz:/data/mine.npz"):
        load_dataset("npz:")
    with pytest.raises(ValueError, match="takes no options"):
        load_dataset(f"npz:{npz_file[0]}", options={"seq_len": 3})


def test_npz_name_passes_the_experiments_dataset_validation(npz_file, tmp_path):
    from cortexnet.experiments import dale
    from cortexnet.experiments.common import load_run_data

    config = dale.DaleConfig(dataset=f"npz:{npz_file[0]}", nodes=30, out=str(tmp_path / "runs"))
    config.validate_run_options()
    splits, spec = load_run_data(config)
    assert spec["name"] == f"npz:{npz_file[0]}" and splits.n_inputs == 3
    with pytest.raises(ValueError, match="unknown --dataset 'nope'"):
        dale.DaleConfig(dataset="nope", nodes=30, out=str(tmp_path / "runs")).validate_run_options()


# ---------------------------------------------------------------------------------------- entry points
def _tiny_loader(name: str, k: int = 2) -> DatasetLoader:
    def load(root, download, options):
        a = arrays(n_train=20, n_test=6, k=k, seed=7)
        return SourceData.from_arrays(a["train_x"], a["train_y"], a["test_x"], a["test_y"], description=name)

    return DatasetLoader(name, f"{name}: a tiny plugin dataset", load)


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as if no plugin had been discovered yet; restored after the test."""
    monkeypatch.setattr(DATASETS, "_items", dict(DATASETS._items))
    monkeypatch.setattr(DATASETS, "_plugins_loaded", False)
    monkeypatch.setattr(DATASETS, "_plugin_errors", {})
    return DATASETS


@pytest.fixture
def fake_plugins(monkeypatch, fresh_registry):
    """Entry points of the group cortexnet.datasets served by a monkeypatched importlib.metadata.entry_points."""
    module = types.ModuleType("fake_cortexnet_plugins")
    module.good = _tiny_loader("good")
    module.factory = lambda: _tiny_loader("made", k=3)
    module.not_a_loader = 42
    module.misnamed = _tiny_loader("other-name")
    module.shadow = _tiny_loader("digits")

    def broken():
        raise RuntimeError("the plugin's data path is not configured")

    module.broken = broken
    monkeypatch.setitem(sys.modules, "fake_cortexnet_plugins", module)
    group = "cortexnet.datasets"
    eps = [importlib.metadata.EntryPoint(n, f"fake_cortexnet_plugins:{v}", group)
           for n, v in [("good", "good"), ("made", "factory"), ("broken", "broken"), ("typed", "not_a_loader"),
                        ("misnamed", "misnamed"), ("digits", "shadow"), ("gone", "nothing_here")]]  # fmt: skip
    eps.append(importlib.metadata.EntryPoint("absent", "no_such_module_for_cortexnet:x", group))
    calls = []

    def entry_points(**kw):
        calls.append(kw)
        return eps if kw.get("group") == group else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return calls


def test_plugins_are_discovered_lazily_once_and_load_like_builtins(fake_plugins):
    assert len(load_dataset("digits").test) == 359
    assert fake_plugins == []  # a built-in name never triggers discovery
    s = load_dataset("good", val_fraction=0.25, n_per_class=3, seed=1)
    assert fake_plugins == [{"group": "cortexnet.datasets"}]
    assert s.name == "good" and s.n_classes == 2 and len(s.val) == 5 and len(s.train) == 6
    assert load_dataset("made").n_classes == 3  # a zero-argument callable returning a DatasetLoader
    assert {"good", "made"} <= set(DATASETS.names()) and is_known_dataset("made")
    assert len(fake_plugins) == 1  # discovered once


@pytest.mark.parametrize(
    ("name", "match"),
    [
        (
            "broken",
            r"dataset plugin 'broken' \(broken = fake_cortexnet_plugins:broken\) failed to load: "
            r"RuntimeError: the plugin's data path is not configured; fix or uninstall",
        ),
        ("typed", r"plugin 'typed'.*DatasetLoader or a zero-argument callable.*got int"),
        ("misnamed", r"plugin 'misnamed'.*DatasetLoader is named 'other-name'; make the two names equal"),
        ("gone", r"plugin 'gone'.*AttributeError"),
        ("absent", r"plugin 'absent'.*ModuleNotFoundError.*no_such_module_for_cortexnet"),
    ],
)
def test_a_broken_plugin_is_reported_by_name_and_breaks_nothing_else(fake_plugins, caplog, name, match):
    with caplog.at_level(logging.WARNING, logger="cortexnet.data.sources"):
        assert is_known_dataset(name) and name in known_datasets()  # known, so that loading it says why not
    assert f"plugin {name!r}" in caplog.text
    with pytest.raises(DataError, match=match):
        load_dataset(name)
    with pytest.raises(DataError, match=match):
        get_loader(name)
    assert load_dataset("good").n_classes == 2 and len(load_dataset("digits").test) == 359


def test_a_plugin_cannot_replace_a_builtin_dataset(fake_plugins, caplog):
    builtin = DATASETS._items["digits"]
    with caplog.at_level(logging.WARNING, logger="cortexnet.data.sources"):
        errors = DATASETS.load_plugins()
    assert "'digits' is already taken" in caplog.text and "digits" not in errors
    assert get_loader("digits") is builtin


def test_unknown_names_list_builtins_plugins_and_patterns(fake_plugins):
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; known datasets: .*digits.*good.*npz:PATH"):
        load_dataset("nope")


def test_a_plugin_loader_must_return_source_data(fresh_registry):
    fresh_registry.register("weird")(DatasetLoader("weird", "returns a dict", lambda r, d, o: {"x": 1}))
    with pytest.raises(TypeError, match=r"loader of dataset 'weird' returned dict.*SourceData.from_arrays"):
        load_dataset("weird")


def _write_distribution(site, dist: str, module: str, body: str, entry: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    info.joinpath("entry_points.txt").write_text(f"[cortexnet.datasets]\n{entry}\n")


def test_an_installed_distribution_provides_a_dataset_to_every_cli(tmp_path, monkeypatch, fresh_registry):
    site = tmp_path / "site"
    site.mkdir()
    _write_distribution(
        site,
        "cortexnet_tinyplug",
        "cortexnet_tinyplug",
        """
        import numpy as np
        from cortexnet.data import DatasetLoader, SourceData

        def _load(root, download, options):
            rng = np.random.default_rng(0)
            x, y = rng.normal(size=(30, 4, 2)), np.arange(30) % 3
            return SourceData.from_arrays(x[:24], y[:24], x[24:], y[24:], description="tinyplug, 4 x 2",
                                          class_names=("a", "b", "c"))

        loader = DatasetLoader("tinyplug", "a plugin dataset: 4 steps x 2 inputs, 3 classes", _load)
    """,
        "tinyplug = cortexnet_tinyplug:loader",
    )
    _write_distribution(site, "cortexnet_badplug", "cortexnet_badplug", "raise ImportError('needs libfoo')\n",
                        "badplug = cortexnet_badplug:loader")  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    for mod in ("cortexnet_tinyplug", "cortexnet_badplug"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    s = load_dataset("tinyplug", val_fraction=0.25)
    assert (s.n_steps, s.n_inputs, s.n_classes, s.class_names) == (4, 2, 3, ("a", "b", "c"))
    assert "tinyplug" in DATASETS.names() and "badplug" not in DATASETS.names()
    with pytest.raises(DataError, match=r"plugin 'badplug'.*distribution 'cortexnet_badplug'.*needs libfoo"):
        load_dataset("badplug")

    from cortexnet.experiments import dale

    dale.DaleConfig(dataset="tinyplug", nodes=30, out=str(tmp_path / "runs")).validate_run_options()


def test_dataset_loader_defaults_and_checks():
    d = DatasetLoader("x", "summary", lambda r, d, o: None)
    assert d.fetch is None and d.parse_options(None) == {}
    with pytest.raises(ValueError, match="takes no options"):
        d.parse_options({"a": 1})
    with pytest.raises(TypeError, match="load must be callable"):
        DatasetLoader("x", "summary", None)


# -------------------------------------------------------------------------------------- val default
def test_python_and_cli_default_val_fraction_agree():
    from cortexnet.experiments.common import RunOptions

    default = inspect.signature(load_dataset).parameters["val_fraction"].default
    assert default == 0.0 == RunOptions.__dataclass_fields__["val_fraction"].default
    assert inspect.signature(make_splits).parameters["val_fraction"].default == 0.0
    s = load_dataset("digits")
    assert s.val is None and len(s.train) == 1797 - 359
