"""Image datasets: encoders, digits, IDX-gz and CIFAR fixtures, splits, verification, data root."""

from __future__ import annotations

import gzip
import io
import pickle
import socket
import tarfile

import numpy as np
import pytest
import torch
from conftest_data import (
    IDX_FILES,
    idx_bytes,
    remote_source_for,
    sha256_file,
    write_cifar10_tarball,
    write_cifar100_tarball,
    write_idx_gz,
    write_mnist_like,
)

import cortexnet.data.root as root_mod
from cortexnet.data import (
    DATASETS,
    DataError,
    SourceData,
    chance_level,
    images_to_row_sequences,
    load_dataset,
    resolve_data_root,
)
from cortexnet.data.remote import REMOTE_FILES, RemoteFile, RemoteSource
from cortexnet.data.splits import make_splits, stratified_take

MNIST_NAMES = [*IDX_FILES["train"], *IDX_FILES["t10k"]]


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to open a connection or call pooch."""
    import pooch

    def boom(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(pooch, "retrieve", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setattr(socket, "create_connection", boom)


@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    data = write_mnist_like(tmp_path / "mnist", n_train=30, n_test=10)
    monkeypatch.setitem(REMOTE_FILES, "mnist", remote_source_for(tmp_path / "mnist", MNIST_NAMES))
    return tmp_path, data


# ----------------------------------------------------------------------------------------------- encoders
def test_channel_blocked_encoding_of_a_2x2_rgb_image():
    # channel-first (1, 3, 2, 2): R = [[0, 255], [51, 102]], G = 255 - R, B = all 0
    r = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    image = np.stack([r, 255 - r, np.zeros_like(r)])[None]
    x = images_to_row_sequences(image)
    assert x.shape == (1, 2, 6) and x.dtype == torch.float32

    def sym(v):
        return (np.float32(v) / 255 - 0.5) / 0.5

    expected = np.array(
        [
            [sym(0), sym(255), sym(255), sym(0), -1, -1],  # row 0: R row, G row, B row
            [sym(51), sym(102), sym(204), sym(153), -1, -1],
        ],
        dtype=np.float32,
    )
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=0, atol=1e-6)
    assert x.min() >= -1 and x.max() <= 1


def test_grey_encoding_and_scaling_choices():
    img = np.array([[[0, 16], [8, 4]]], dtype=np.float64)
    np.testing.assert_allclose(images_to_row_sequences(img, max_value=16).numpy(), [[[0, 1], [0.5, 0.25]]])
    np.testing.assert_allclose(
        images_to_row_sequences(img, max_value=16, scaling="symmetric").numpy(), [[[-1, 1], [0, -0.5]]]
    )
    cifar_flat = np.arange(3072, dtype=np.int64).reshape(1, 3072) % 256
    x = images_to_row_sequences(cifar_flat.reshape(1, 3, 32, 32))
    assert x.shape == (1, 32, 96)
    # step 1, input 32 is the first pixel of the G row 1 = flat value 1024 + 32
    assert x[0, 1, 32].item() == pytest.approx(((1024 + 32) % 256 / 255 - 0.5) / 0.5)


@pytest.mark.parametrize(
    ("images", "kwargs", "match"),
    [
        (np.zeros((2, 3)), {}, "shape"),
        (np.full((1, 2, 2), 300), {}, r"\[0, 255"),
        (np.full((1, 2, 2), -1), {}, r"\[0, 255"),
        (np.zeros((1, 2, 2)), {"scaling": "bad"}, "scaling"),
        (np.zeros((1, 2, 2)), {"max_value": 0}, "max_value"),
    ],
)
def test_encoder_rejects_bad_input(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        images_to_row_sequences(images, **kwargs)


# ------------------------------------------------------------------------------------------------- digits
def test_digits_shapes_ranges_and_fixed_test_split():
    a = load_dataset("digits", seed=0, val_fraction=0.1)
    b = load_dataset("digits", seed=1, val_fraction=0.1)
    assert DATASETS.names() >= ["cifar10", "cifar100", "digits", "fashion-mnist", "mnist"]
    assert (a.n_steps, a.n_inputs, a.n_classes) == (8, 8, 10)
    assert chance_level(a) == pytest.approx(0.1)
    x, y = a.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (8, 8)
    assert 0 <= x.min() and x.max() <= 1 and x.max() == 1
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert len(a.test) == 359  # round(0.2 * 1797)
    # the test split is fixed (seed 0) whatever the run seed; validation depends on the seed
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])
    assert not torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert "seed 0" in a.description and "test 20%" in a.description
    # stratified: every class's share of the test and validation sets is within one example of proportional
    full = np.bincount(np.concatenate([t.tensors[1].numpy() for t in (a.train, a.val, a.test)]), minlength=10)
    for part, frac, pool in (
        (a.test, 0.2, full),
        (a.val, 0.1, full - np.bincount(a.test.tensors[1], minlength=10)),
    ):
        counts = np.bincount(part.tensors[1].numpy(), minlength=10)
        assert np.all(np.abs(counts - frac * pool) <= 1.0)


def test_same_seed_same_splits():
    a = load_dataset("digits", seed=3, n_per_class=7, val_fraction=0.1)
    b = load_dataset("digits", seed=3, n_per_class=7, val_fraction=0.1)
    for part in ("train", "val", "test"):
        for ta, tb in zip(getattr(a, part).tensors, getattr(b, part).tensors, strict=True):
            assert torch.equal(ta, tb)
    assert a.description == b.description


def test_val_fraction_zero_gives_no_validation_set():
    s = load_dataset("digits", val_fraction=0)
    assert s.val is None and len(s.train) == 1797 - 359


# ----------------------------------------------------------------------------------------- split logic
def _indexed_source(y: np.ndarray, groups=None) -> SourceData:
    """A source whose x[i, 0, 0] is i, so every example can be traced through the splits."""
    n = len(y)
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1)
    return SourceData(
        train_x=x,
        train_y=y.astype(np.int64),
        test_x=x[:5] + 10_000,
        test_y=y[:5].astype(np.int64),
        n_classes=int(y.max()) + 1,
        description="indexed",
        train_groups=groups,
    )


def _ids(ds):
    return set(ds.tensors[0][:, 0, 0].long().tolist())


def test_val_and_subset_are_disjoint_and_drawn_from_the_training_pool():
    y = np.repeat(np.arange(4), [30, 40, 50, 60])
    src = _indexed_source(y)
    s = make_splits("t", src, val_fraction=0.2, n_per_class=10, seed=5)
    train, val, test = _ids(s.train), _ids(s.val), _ids(s.test)
    assert not train & val and not (train | val) & test
    assert len(val) == 36  # round(0.2 * 180), stratified 6/8/10/12
    assert np.bincount(s.val.tensors[1].numpy()).tolist() == [6, 8, 10, 12]
    assert np.bincount(s.train.tensors[1].numpy()).tolist() == [10, 10, 10, 10]
    # labels travel with their examples
    ids = s.train.tensors[0][:, 0, 0].long().numpy()
    assert np.array_equal(s.train.tensors[1].numpy(), y[ids])
    # reproducible; another seed draws another subset; the validation set ignores n_per_class
    again = make_splits("t", src, val_fraction=0.2, n_per_class=10, seed=5)
    assert _ids(again.train) == train and _ids(again.val) == val
    assert _ids(make_splits("t", src, val_fraction=0.2, n_per_class=10, seed=6).train) != train
    assert _ids(make_splits("t", src, val_fraction=0.2, n_per_class=None, seed=5).val) == val
    assert s.metadata["class_counts"]["train"] == [10, 10, 10, 10]


def test_subset_larger_than_a_class_is_an_error():
    src = _indexed_source(np.repeat(np.arange(3), [20, 20, 5]))
    with pytest.raises(ValueError, match=r"class 2 has only 4 training examples"):
        make_splits("t", src, val_fraction=0.2, n_per_class=5, seed=0)
    with pytest.raises(ValueError, match="n_per_class=1000"):
        load_dataset("digits", n_per_class=1000)


def test_grouped_validation_takes_whole_groups():
    y = np.tile(np.arange(3), 20)
    groups = np.repeat(np.arange(6), 10)
    s = make_splits("t", _indexed_source(y, groups), val_fraction=0.34, seed=1)
    val_groups = {int(groups[i]) for i in _ids(s.val)}
    train_groups = {int(groups[i]) for i in _ids(s.train)}
    assert len(val_groups) == 2 and not val_groups & train_groups
    assert s.metadata["val_groups"] == sorted(val_groups)
    with pytest.raises(ValueError, match="at least 2 groups"):
        make_splits("t", _indexed_source(y, np.zeros(60, np.int64)), val_fraction=0.1)


def test_stratified_take_totals():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [7, 7, 7])
    rest, taken = stratified_take(y, 0.5, rng)
    assert len(taken) == 11 and len(rest) == 10 and set(rest).isdisjoint(taken)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"val_fraction": 1.0}, ValueError, r"\[0, 1\)"),
        ({"val_fraction": -0.1}, ValueError, r"\[0, 1\)"),
        ({"val_fraction": float("nan")}, ValueError, r"\[0, 1\)"),
        ({"val_fraction": "0.1"}, TypeError, "val_fraction"),
        ({"n_per_class": 0}, ValueError, "n_per_class"),
        ({"n_per_class": 2.5}, ValueError, "n_per_class"),
        ({"seed": -1}, ValueError, "seed"),
        ({"options": {"x": 1}}, ValueError, "takes no options"),
    ],
)
def test_bad_arguments_fail_before_any_io(kwargs, exc, match, tmp_path, no_network):
    # the mnist files do not exist: a DataError here would mean the arguments were checked too late
    with pytest.raises(exc, match=match):
        load_dataset("mnist", root=tmp_path / "absent", **kwargs)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnits'.*digits.*mnist"):
        load_dataset("mnits")


# -------------------------------------------------------------------------------------------------- IDX
def test_mnist_from_idx_fixture(mnist_root, no_network):
    root, data = mnist_root
    s = load_dataset("mnist", root=root, val_fraction=0)
    assert (s.n_steps, s.n_inputs, s.n_classes) == (28, 28, 10)
    x, y = s.train.tensors
    assert x.shape == (30, 28, 28) and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), data["train"][0].astype(np.float32) / 255)
    np.testing.assert_array_equal(y.numpy(), data["train"][1])
    np.testing.assert_array_equal(s.test.tensors[0].numpy(), data["t10k"][0].astype(np.float32) / 255)
    assert "sha256-verified" in s.description


def test_fashion_mnist_uses_its_own_folder(tmp_path, monkeypatch, no_network):
    write_mnist_like(tmp_path / "fashion-mnist", n_train=20, n_test=10, seed=1)
    monkeypatch.setitem(
        REMOTE_FILES, "fashion-mnist", remote_source_for(tmp_path / "fashion-mnist", MNIST_NAMES)
    )
    s = load_dataset("fashion-mnist", root=tmp_path, val_fraction=0, n_per_class=2)
    assert len(s.train) == 20 and s.class_names[9] == "Ankle boot"


def test_missing_files_name_the_path_and_the_fetch_command(tmp_path, no_network):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert f"python -m cortexnet.data.download mnist --root {tmp_path}" in msg


def test_hash_mismatch_on_load_is_reported_and_not_loaded(mnist_root, no_network):
    root, _ = mnist_root
    path = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    load_dataset("mnist", root=root)  # verified once (and cached) ...
    write_idx_gz(path, np.zeros(10, np.uint8))  # ... then replaced by other, valid-looking content
    with pytest.raises(DataError, match="failed verification") as info:
        load_dataset("mnist", root=root)
    assert str(path) in str(info.value) and "python -m cortexnet.data.download mnist" in str(info.value)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (lambda good: good[: len(good) // 2], "decompress"),  # truncated gzip stream
        (lambda good: gzip.compress(gzip.decompress(good)[:-5], mtime=0), "truncated or corrupt"),
        (lambda good: gzip.compress(b"\x00\x00\x0d\x03" + gzip.decompress(good)[4:], mtime=0), "magic"),
        (lambda good: b"not gzip at all", "decompress"),
    ],
)
def test_corrupt_idx_file_is_a_data_error_naming_it(tmp_path, monkeypatch, payload, match, no_network):
    write_mnist_like(tmp_path / "mnist")
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(payload(bad.read_bytes()))
    # register the corrupt file's own hash, so that the parser (not the hash check) must catch it
    monkeypatch.setitem(REMOTE_FILES, "mnist", remote_source_for(tmp_path / "mnist", MNIST_NAMES))
    with pytest.raises(DataError, match=match) as info:
        load_dataset("mnist", root=tmp_path)
    assert str(bad) in str(info.value)


def test_idx_label_count_must_match_images(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "mnist", n_train=12)
    write_idx_gz(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    monkeypatch.setitem(REMOTE_FILES, "mnist", remote_source_for(tmp_path / "mnist", MNIST_NAMES))
    with pytest.raises(DataError, match=r"12 images but .* 11 labels"):
        load_dataset("mnist", root=tmp_path)
    assert idx_bytes(np.zeros((2, 3), np.uint8))[:4] == b"\x00\x00\x08\x02"


# ------------------------------------------------------------------------------------------------ CIFAR
def test_cifar10_from_tarball_fixture(tmp_path, monkeypatch, no_network):
    tarball = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    batches = write_cifar10_tarball(tarball, n_per_batch=3)
    monkeypatch.setitem(REMOTE_FILES, "cifar10", remote_source_for(tarball.parent, [tarball.name]))
    s = load_dataset("cifar10", root=tmp_path, val_fraction=0)
    assert (s.n_steps, s.n_inputs, s.n_classes) == (32, 96, 10)
    assert len(s.train) == 15 and len(s.test) == 3 and s.class_names[3] == "class3"
    x = s.train.tensors[0]
    assert x.min() >= -1 and x.max() <= 1
    # example 3 = first image of data_batch_2; step 5, inputs 64..95 = its B row 5 = flat 2048 + 5*32 + 0..31
    flat = batches["data_batch_2"][0][0].astype(np.float32)
    expected = (flat[2048 + 160 : 2048 + 192] / 255 - 0.5) / 0.5
    np.testing.assert_allclose(x[3, 5, 64:].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(x[3, 5, :32].numpy(), (flat[160:192] / 255 - 0.5) / 0.5, atol=1e-6)
    expected_labels = [lab for k in range(1, 6) for lab in batches[f"data_batch_{k}"][1]]
    assert s.train.tensors[1].tolist() == expected_labels
    assert s.test.tensors[1].tolist() == batches["test_batch"][1]


def test_cifar100_uses_fine_labels(tmp_path, monkeypatch, no_network):
    tarball = tmp_path / "cifar100" / "cifar-100-python.tar.gz"
    data = write_cifar100_tarball(tarball)
    monkeypatch.setitem(REMOTE_FILES, "cifar100", remote_source_for(tarball.parent, [tarball.name]))
    s = load_dataset("cifar100", root=tmp_path, val_fraction=0)
    assert s.n_classes == 100 and s.train.tensors[1].tolist() == data["train"][1]
    assert s.test.tensors[1].tolist() == data["test"][1] and s.class_names[17] == "fine17"


def test_cifar_is_not_unpickled_before_its_hash_passes(tmp_path, monkeypatch, no_network):
    import cortexnet.data.images as images

    tarball = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    write_cifar10_tarball(tarball)
    monkeypatch.setitem(
        REMOTE_FILES, "cifar10", RemoteSource(("http://127.0.0.1:1/",), (RemoteFile(tarball.name, "0" * 64),))
    )

    def must_not_run(*args, **kwargs):
        raise AssertionError("unpickled an unverified tarball")

    monkeypatch.setattr(images, "_unpickle_batch", must_not_run)
    monkeypatch.setattr(images.tarfile, "open", must_not_run)
    with pytest.raises(DataError, match="failed verification"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_pickle_with_foreign_globals_is_refused(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    tarball = tmp_path / "cifar100" / "cifar-100-python.tar.gz"
    tarball.parent.mkdir(parents=True)
    with tarfile.open(tarball, "w:gz") as tar:
        for name in ("train", "test"):
            blob = pickle.dumps({"data": Evil(), "fine_labels": []}, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    monkeypatch.setitem(REMOTE_FILES, "cifar100", remote_source_for(tarball.parent, [tarball.name]))
    with pytest.raises(DataError, match=r"refusing to load global \w+\.print"):
        load_dataset("cifar100", root=tmp_path)


def test_truncated_cifar_tarball_is_a_data_error(tmp_path, monkeypatch):
    tarball = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    write_cifar10_tarball(tarball, n_per_batch=50)
    tarball.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    monkeypatch.setitem(REMOTE_FILES, "cifar10", remote_source_for(tarball.parent, [tarball.name]))
    with pytest.raises(DataError, match="corrupt or truncated") as info:
        load_dataset("cifar10", root=tmp_path)
    assert str(tarball) in str(info.value)


# -------------------------------------------------------------------------------------------- data root
def test_data_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CORTEXNET_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("CORTEXNET_DATA")
    checkout = root_mod.checkout_datasets_dir()
    if checkout is not None:  # running from a checkout (the usual case for this suite)
        assert resolve_data_root() == checkout and (checkout.parent / "pyproject.toml").is_file()
    monkeypatch.setattr(root_mod, "_PACKAGE_PARENT", tmp_path / "site-packages")
    import pooch

    assert resolve_data_root() == pooch.os_cache("cortexnet").absolute()
    with pytest.raises(TypeError, match="root must be a path"):
        resolve_data_root(3)


def test_checksum_of_fixture_helper_is_stable(tmp_path):
    a = write_idx_gz(tmp_path / "a.gz", np.arange(6, dtype=np.uint8))
    b = write_idx_gz(tmp_path / "b.gz", np.arange(6, dtype=np.uint8))
    assert sha256_file(a) == sha256_file(b)
