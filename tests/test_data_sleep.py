"""Sleep EEG: the UCR "Sleep" .ts loader (sleep-ucr) and raw Sleep-EDF through MNE (sleep-edf), on fixtures."""

from __future__ import annotations

import functools
import http.server
import json
import logging
import threading
import zipfile

import numpy as np
import pytest
import torch
from conftest_data import (
    EXPECTED_LABELS,
    EXPECTED_ONSETS,
    SLEEP_EDF_NAMES,
    forbid_network,
    ts_series,
    write_sleep_edf_fixture,
    write_ts,
)

import cortexnet.data.sleep_edf as sleep_edf
import cortexnet.data.sleep_ucr as sleep_ucr
from cortexnet.data import DataError, download_dataset, load_dataset, sequence_cost
from cortexnet.data.sleep_edf import epoch_recording
from cortexnet.data.sleep_ucr import read_ts

EDF_DIR = ("sleep-edf", "physionet-sleep-data")


@pytest.fixture
def no_network(monkeypatch):
    forbid_network(monkeypatch)


# ================================================================================================ sleep-ucr
@pytest.fixture
def ucr_root(tmp_path, monkeypatch):
    # no download manifest, so the content is checked in full, the archive's total count included: the fixture's
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TOTAL", 35)
    x_train, y_train = ts_series(25, seed=1)
    x_test, y_test = ts_series(10, seed=2)
    write_ts(tmp_path / "sleep-ucr" / "Sleep_TRAIN.ts", x_train, y_train)
    write_ts(tmp_path / "sleep-ucr" / "Sleep_TEST.ts", x_test, y_test)
    return tmp_path, (x_train, y_train, x_test, y_test)


def test_ts_parser_reads_values_labels_and_header(tmp_path):
    x, labels = ts_series(7, length=178)
    ts = read_ts(write_ts(tmp_path / "a.ts", x, labels))
    assert ts.x.shape == (7, 178, 1) and ts.x.dtype == np.float32
    np.testing.assert_allclose(ts.x[:, :, 0], x, atol=1e-6)
    assert ts.labels.tolist() == labels and ts.class_labels == ("0", "1", "2", "3", "4")
    assert ts.header["serieslength"] == "178"


def test_ts_parser_multivariate_and_missing_values(tmp_path):
    path = tmp_path / "m.ts"
    path.write_text("@problemName M\n@classLabel true a b\n@data\n1,2,3:4,5,?:a\n7,8,9:10,11,12:b\n")
    ts = read_ts(path)
    assert ts.x.shape == (2, 3, 2)
    assert ts.x[0, :, 0].tolist() == [1, 2, 3] and ts.x[1, :, 1].tolist() == [10, 11, 12]
    assert np.isnan(ts.x[0, 2, 1])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("@problemName X\n1,2:0\n", "header lines"),
        ("@problemName X\n@data\n", "no '@data' section"),
        ("@data\n1,2,3\n", "no class label"),
        ("@data\n1,2,3:0\n1,2:0\n", "differ in length"),
        ("@data\n1,x,3:0\n", "unreadable series"),
        ("@data\n1,2:3:0\n1,2:0\n", "dimensions"),
    ],
)
def test_malformed_ts_is_a_data_error_naming_the_file(tmp_path, text, match):
    path = tmp_path / "bad.ts"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        read_ts(path)
    assert str(path) in str(info.value)


def test_sleep_ucr_archive_split(ucr_root, no_network):
    root, (x_train, y_train, _, _) = ucr_root
    s = load_dataset("sleep-ucr", root=root, val_fraction=0, options={"split": "archive"})
    assert (s.n_steps, s.n_inputs, s.n_classes) == (178, 1, 5)
    assert s.train.tensors[0].shape == (25, 178, 1) and s.test.tensors[0].shape == (10, 178, 1)
    np.testing.assert_allclose(s.train.tensors[0][:, :, 0].numpy(), x_train, atol=1e-6)
    assert s.train.tensors[1].tolist() == [int(v) for v in y_train]
    assert "archive's own" in s.description


def test_sleep_ucr_paper_protocol_pools_and_resplits(ucr_root, no_network):
    from sklearn.model_selection import train_test_split

    root, (x_train, _, x_test, _) = ucr_root
    s = load_dataset("sleep-ucr", root=root, val_fraction=0)  # split="paper" is the default
    pool_x = np.concatenate([x_train, x_test])
    tr, te = train_test_split(np.arange(35), test_size=0.3, random_state=123)
    assert len(s.train) == 24 and len(s.test) == 11
    np.testing.assert_allclose(s.test.tensors[0][:, :, 0].numpy(), pool_x[te], atol=1e-6)
    np.testing.assert_allclose(s.train.tensors[0][:, :, 0].numpy(), pool_x[tr], atol=1e-6)
    assert "random_state=123" in s.description
    other = load_dataset("sleep-ucr", root=root, val_fraction=0, options={"split_seed": 7})
    assert not torch.equal(other.test.tensors[0], s.test.tensors[0])
    again = load_dataset("sleep-ucr", root=root, val_fraction=0)
    assert torch.equal(again.test.tensors[0], s.test.tensors[0])


def test_sleep_ucr_parses_once_then_uses_its_cache(ucr_root, monkeypatch):
    root, _ = ucr_root
    first = load_dataset("sleep-ucr", root=root, val_fraction=0)
    monkeypatch.setattr(sleep_ucr, "read_ts", lambda *a: pytest.fail("parsed again despite the cache"))
    second = load_dataset("sleep-ucr", root=root, val_fraction=0)
    assert torch.equal(first.train.tensors[0], second.train.tensors[0])


def test_sleep_ucr_cache_sees_a_same_size_replacement_with_preserved_mtime(ucr_root, no_network):
    import os

    root, _ = ucr_root
    opts = {"split": "archive"}
    first = load_dataset("sleep-ucr", root=root, val_fraction=0, options=opts)
    path = root / "sleep-ucr" / "Sleep_TRAIN.ts"
    before = path.stat()
    data = bytearray(path.read_bytes())
    last_digit = data.index(b",", data.index(b"@data\n")) - 1  # last digit of the first value
    data[last_digit] = ord("7") if data[last_digit] != ord("7") else ord("3")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = load_dataset("sleep-ucr", root=root, val_fraction=0, options=opts)
    assert second.train.tensors[0][0, 0, 0] != first.train.tensors[0][0, 0, 0]
    assert torch.equal(second.train.tensors[0][1:], first.train.tensors[0][1:])


def test_sleep_ucr_rejects_data_that_is_not_sleep(tmp_path):
    x, labels = ts_series(10, length=100)
    write_ts(tmp_path / "sleep-ucr" / "Sleep_TRAIN.ts", x, labels)
    write_ts(tmp_path / "sleep-ucr" / "Sleep_TEST.ts", x, labels)
    with pytest.raises(DataError, match="not the UCR 'Sleep' data: series of 100 steps"):
        load_dataset("sleep-ucr", root=tmp_path)


def test_sleep_ucr_missing_files_name_path_and_command(tmp_path, no_network):
    with pytest.raises(DataError) as info:
        load_dataset("sleep-ucr", root=tmp_path)
    assert str(tmp_path / "sleep-ucr" / "Sleep_TRAIN.ts") in str(info.value)
    assert f"python -m cortexnet.data.download sleep-ucr --root {tmp_path}" in str(info.value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"split": "random"}, "split must be"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"split": "archive", "split_seed": 1}, "apply to split='paper' only"),
        ({"seq_len": 10}, "unknown sleep-ucr option"),
    ],
)
def test_sleep_ucr_bad_options(options, match, tmp_path, no_network):
    with pytest.raises(ValueError, match=match):
        load_dataset("sleep-ucr", root=tmp_path, options=options)


@pytest.fixture
def zip_server(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _write_zip(www, length=178):
    src = www / "src"
    x1, y1 = ts_series(20, length=length, seed=3)
    x2, y2 = ts_series(8, length=length, seed=4)
    with zipfile.ZipFile(www / "Sleep.zip", "w") as zf:
        zf.write(write_ts(src / "Sleep_TRAIN.ts", x1, y1), "Sleep/Sleep_TRAIN.ts")
        zf.write(write_ts(src / "Sleep_TEST.ts", x2, y2), "Sleep/Sleep_TEST.ts")


def test_sleep_ucr_download_verifies_content_and_writes_a_manifest(zip_server, tmp_path, monkeypatch):
    base, www = zip_server
    _write_zip(www)
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TOTAL", 28)
    paths = download_dataset("sleep-ucr", tmp_path / "r", base_urls=[base])
    folder = tmp_path / "r" / "sleep-ucr"
    assert [p.name for p in paths] == ["Sleep_TRAIN.ts", "Sleep_TEST.ts"]
    assert sorted(p.name for p in folder.iterdir()) == ["Sleep_TEST.ts", "Sleep_TRAIN.ts", "manifest.json"]
    s = load_dataset("sleep-ucr", root=tmp_path / "r", val_fraction=0, options={"split": "archive"})
    assert len(s.train) == 20 and len(s.test) == 8
    # the manifest now pins the extracted files: a changed file no longer passes
    with open(folder / "Sleep_TEST.ts", "a") as fh:
        fh.write("0.1" + ",0.1" * 177 + ":0\n")
    with pytest.raises(DataError, match="does not match its download manifest"):
        load_dataset("sleep-ucr", root=tmp_path / "r")


@pytest.mark.parametrize("problem", ["wrong-count", "wrong-length"])
def test_sleep_ucr_unverifiable_download_leaves_nothing(zip_server, tmp_path, monkeypatch, problem):
    base, www = zip_server
    _write_zip(www, length=100 if problem == "wrong-length" else 178)
    if problem == "wrong-count":
        monkeypatch.setattr(
            sleep_ucr, "EXPECTED_TOTAL", 569_100
        )  # the real archive's count, not the fixture's
    with pytest.raises(DataError, match="expected"):
        download_dataset("sleep-ucr", tmp_path, base_urls=[base])
    assert list((tmp_path / "sleep-ucr").iterdir()) == []


def test_sleep_ucr_download_true_replaces_a_file_failing_its_manifest(zip_server, tmp_path, monkeypatch):
    base, www = zip_server
    _write_zip(www)
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TOTAL", 28)
    monkeypatch.setattr(sleep_ucr, "ARCHIVE_MIRRORS", (base,))
    root = tmp_path / "r"
    load_dataset("sleep-ucr", root=root, download=True, val_fraction=0)
    test_file = root / "sleep-ucr" / "Sleep_TEST.ts"
    good = test_file.read_bytes()
    with open(test_file, "a") as fh:  # changed after download: fails its manifest entry
        fh.write("0.1" + ",0.1" * 177 + ":0\n")
    with pytest.raises(DataError, match="does not match its download manifest"):
        load_dataset("sleep-ucr", root=root, val_fraction=0)
    s = load_dataset("sleep-ucr", root=root, download=True, val_fraction=0, options={"split": "archive"})
    assert len(s.train) == 20 and len(s.test) == 8 and test_file.read_bytes() == good


@pytest.mark.parametrize(
    ("constant", "value", "match"),
    [
        ("ARCHIVE_BYTES", 12345, "bytes, expected 12345"),
        ("EXPECTED_TRAIN", 19, "20 series, expected 19"),
        ("EXPECTED_TEST", 9, "8 series, expected 9"),
    ],
)
def test_sleep_ucr_download_checks_known_size_and_counts(
    zip_server, tmp_path, monkeypatch, constant, value, match
):
    base, www = zip_server
    _write_zip(www)
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TOTAL", 28)
    monkeypatch.setattr(sleep_ucr, constant, value)
    with pytest.raises(DataError, match=match):
        download_dataset("sleep-ucr", tmp_path, base_urls=[base])
    assert list((tmp_path / "sleep-ucr").iterdir()) == []
    monkeypatch.setattr(
        sleep_ucr, constant, None if constant != "ARCHIVE_BYTES" else (www / "Sleep.zip").stat().st_size
    )
    assert len(download_dataset("sleep-ucr", tmp_path, base_urls=[base])) == 2


def test_sleep_ucr_load_checks_known_per_file_counts(ucr_root, monkeypatch, no_network):
    root, _ = ucr_root
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TRAIN", 26)
    with pytest.raises(DataError, match=r"Sleep_TRAIN\.ts: 25 series, expected 26"):
        load_dataset("sleep-ucr", root=root)


def test_sleep_ucr_download_offline(tmp_path):
    with pytest.raises(DataError, match="cannot connect"):
        download_dataset("sleep-ucr", tmp_path, base_urls=["http://127.0.0.1:1/"])
    assert list((tmp_path / "sleep-ucr").iterdir()) == []


# ================================================================================================ sleep-edf
@pytest.fixture
def edf_root(tmp_path):
    signals = write_sleep_edf_fixture(tmp_path, recordings=((0, 1), (1, 1), (2, 1), (3, 1)))
    return tmp_path, signals


def _pair(root, subject, night=1):
    psg, hyp = SLEEP_EDF_NAMES[(subject, night)]
    folder = root.joinpath(*EDF_DIR)
    return folder / psg, folder / hyp


def test_epoching_gives_exact_epochs_and_labels(edf_root):
    root, signals = edf_root
    psg, hyp = _pair(root, 0)
    ep = epoch_recording(psg, hyp, crop_wake_minutes=None)
    assert ep.x.shape == (16, 3000, 1) and ep.x.dtype == np.float32 and ep.sfreq == 100
    assert ep.y.tolist() == EXPECTED_LABELS and ep.onset_s.tolist() == EXPECTED_ONSETS
    expected = np.stack([signals[(0, 1)][o * 100 : o * 100 + 3000] for o in EXPECTED_ONSETS])
    np.testing.assert_allclose(ep.x[:, :, 0], expected, atol=0.01)  # EDF's 16-bit quantisation: 0.006 uV
    assert ep.report["dropped_seconds"] == {"Movement time": 30.0, "Sleep stage ?": 30.0 + 45.0}


def test_wake_cropping_and_channels(edf_root):
    root, _ = edf_root
    psg, hyp = _pair(root, 1)
    # 1 minute of wake kept around sleep (first sleep at 120 s, last sleep epoch ends at 390 s)
    ep = epoch_recording(psg, hyp, crop_wake_minutes=1.0, channels=("EEG Fpz-Cz", "EEG Pz-Oz"))
    assert ep.y.tolist() == [0, 0, 1, 2, 2, 2, 3, 3, 4, 4, 0]
    assert ep.onset_s[0] == 60 and ep.onset_s[-1] == 420 and ep.report["cropped_wake"] == 5
    assert ep.x.shape == (11, 3000, 2)
    with pytest.raises(DataError, match=r"has no channel\(s\) \['EEG Fp1'\]") as info:
        epoch_recording(psg, hyp, channels=("EEG Fp1",))
    assert str(psg) in str(info.value)


def test_sleep_edf_end_to_end_with_defaults(edf_root, no_network):
    root, _ = edf_root
    s = load_dataset("sleep-edf", root=root, val_fraction=0.1)  # every recording found, val 10 % by subject
    assert (s.n_steps, s.n_inputs, s.n_classes) == (3000, 1, 5)
    assert s.class_names == ("W", "N1", "N2", "N3", "REM")
    test, pool = s.metadata["subjects"]["test"], s.metadata["subjects"]["train_pool"]
    val = s.metadata["val_groups"]
    assert len(test) == 1 and len(val) == 1 and set(test).isdisjoint(pool) and set(val) <= set(pool)
    # 4 subjects of 16 epochs: 1 test subject, 1 validation subject, 2 training subjects
    assert (len(s.train), len(s.val), len(s.test)) == (32, 16, 16)
    assert "split by subject" in s.description and "class counts" in s.description
    json.dumps(s.metadata)  # saved beside results, so it must serialise


def test_subject_split_keeps_each_subject_on_one_side(edf_root, no_network):
    root, _ = edf_root
    opts = {"normalize": "none", "crop_wake_minutes": None, "test_fraction": 0.5, "split_seed": 3}
    s = load_dataset("sleep-edf", root=root, options=opts, val_fraction=0.5, seed=1)

    def subjects_of(ds):  # subject s has EEG around 10*s uV: an epoch's mean tells whose it is
        return set(np.round(ds.tensors[0].mean(dim=(1, 2)).numpy() / 10).astype(int).tolist())

    train, val, test = subjects_of(s.train), subjects_of(s.val), subjects_of(s.test)
    assert train | val | test == {0, 1, 2, 3}
    assert not train & val and not train & test and not val & test
    assert test == set(s.metadata["subjects"]["test"]) and val == set(s.metadata["val_groups"])
    again = load_dataset("sleep-edf", root=root, options=opts, val_fraction=0.5, seed=1)
    assert torch.equal(again.train.tensors[0], s.train.tensors[0])


def test_explicit_test_subjects_exact_arrays_and_counts(edf_root, no_network):
    root, signals = edf_root
    opts = {
        "normalize": "none",
        "crop_wake_minutes": None,
        "test_subjects": [2],
        "subjects": [1, 2],
        "recordings": [1],
    }
    s = load_dataset("sleep-edf", root=root, options=opts, val_fraction=0)
    assert s.test.tensors[1].tolist() == EXPECTED_LABELS and s.train.tensors[1].tolist() == EXPECTED_LABELS
    expected = np.stack([signals[(2, 1)][o * 100 : o * 100 + 3000] for o in EXPECTED_ONSETS])
    np.testing.assert_allclose(s.test.tensors[0][:, :, 0].numpy(), expected, atol=0.01)
    assert s.metadata["class_counts"]["test"] == [8, 1, 3, 2, 2]


def test_resampling_and_normalisation(edf_root, no_network):
    root, _ = edf_root
    s = load_dataset("sleep-edf", root=root, options={"seq_len": 300, "test_subjects": [3]}, val_fraction=0)
    assert s.n_steps == 300 and s.train.tensors[0].shape == (48, 300, 1)
    x = s.test.tensors[0].double()  # one recording, normalised with its own statistics
    assert abs(x.mean().item()) < 1e-5 and x.std().item() == pytest.approx(1.0, abs=1e-3)
    e = load_dataset(
        "sleep-edf",
        root=root,
        options={"normalize": "epoch", "subjects": [0, 1], "recordings": [1]},
        val_fraction=0,
    )
    per_epoch = e.train.tensors[0].double()
    assert torch.allclose(per_epoch.mean(dim=1), torch.zeros(1, dtype=torch.float64), atol=1e-5)


def test_epochs_are_cached_with_a_manifest(edf_root, monkeypatch, no_network):
    import mne

    root, _ = edf_root
    opts = {"subjects": [0, 1], "recordings": [1], "normalize": "none"}
    first = load_dataset("sleep-edf", root=root, options=opts, val_fraction=0)
    manifest = (root / "sleep-edf" / "cache" / "manifest.json").read_text()
    assert "SC4001E0-PSG.edf" in manifest and '"n_epochs": 16' in manifest
    calls = []
    real = mne.io.read_raw_edf
    monkeypatch.setattr(mne.io, "read_raw_edf", lambda *a, **k: calls.append(a) or real(*a, **k))
    second = load_dataset("sleep-edf", root=root, options=opts, val_fraction=0)
    assert calls == [] and torch.equal(first.train.tensors[0], second.train.tensors[0])
    write_sleep_edf_fixture(root, recordings=((1, 1),))  # a source changed: only it is read again
    load_dataset("sleep-edf", root=root, options=opts, val_fraction=0)
    assert [c[0].name for c in calls] == ["SC4011E0-PSG.edf"]


def test_same_size_replacement_with_preserved_mtime_is_not_served_from_the_cache(edf_root, no_network):
    import os

    from conftest_data import HYPNOGRAM

    root, _ = edf_root
    opts = {"subjects": [0, 1], "recordings": [1], "normalize": "none", "crop_wake_minutes": None}
    opts["test_subjects"] = [1]
    first = load_dataset("sleep-edf", root=root, options=opts, val_fraction=0)
    assert first.test.tensors[1].tolist() == EXPECTED_LABELS
    psg, hyp = _pair(root, 1)
    before, psg_before = hyp.stat(), psg.stat()
    # stage 1 <-> stage 2 swapped: same byte size; then the mtime set back, as cp -p / rsync -a would
    swapped = {"Sleep stage 1": "Sleep stage 2", "Sleep stage 2": "Sleep stage 1"}
    write_sleep_edf_fixture(
        root, recordings=((1, 1),), hypnograms={(1, 1): [(o, d, swapped.get(t, t)) for o, d, t in HYPNOGRAM]}
    )
    os.utime(hyp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.utime(psg, ns=(psg_before.st_atime_ns, psg_before.st_mtime_ns))  # the PSG is rewritten identically
    for path, old in ((hyp, before), (psg, psg_before)):
        assert (path.stat().st_size, path.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    second = load_dataset("sleep-edf", root=root, options=opts, val_fraction=0)
    expected = [{1: 2, 2: 1}.get(v, v) for v in EXPECTED_LABELS]
    assert second.test.tensors[1].tolist() == expected != EXPECTED_LABELS


def test_manifest_prunes_cache_entries_built_from_older_files(edf_root, no_network):
    root, _ = edf_root
    cache = root / "sleep-edf" / "cache"
    base = {"subjects": [0, 1], "recordings": [1]}
    load_dataset("sleep-edf", root=root, options={**base, "crop_wake_minutes": None}, val_fraction=0)
    load_dataset("sleep-edf", root=root, options=base, val_fraction=0)  # a second parameter set

    def entries():
        return json.loads((cache / "manifest.json").read_text())["entries"]

    assert sorted(n[:8] for n in entries()) == ["SC4001E0"] * 2 + ["SC4011E0"] * 2
    assert sorted(entries()) == sorted(p.name for p in cache.glob("*.npz"))
    write_sleep_edf_fixture(root, recordings=((1, 1),))  # subject 1's files replaced
    load_dataset("sleep-edf", root=root, options=base, val_fraction=0)
    # subject 1's entry for the other parameter set was built from the old files: deleted with its npz file
    assert sorted(n[:8] for n in entries()) == ["SC4001E0"] * 2 + ["SC4011E0"]
    assert sorted(entries()) == sorted(p.name for p in cache.glob("*.npz"))


def test_verify_checksums_checks_the_hash_even_on_a_cache_hit(edf_root, monkeypatch, no_network):
    root, _ = edf_root
    opts = {"verify_checksums": True, "subjects": [0, 1], "recordings": [1]}
    table = {p.name: sleep_edf._sha1(p) for s in (0, 1) for p in _pair(root, s)}
    monkeypatch.setattr(sleep_edf, "known_sha1", lambda: table)
    load_dataset("sleep-edf", root=root, options=opts, val_fraction=0)  # verified and cached
    table["SC4001E0-PSG.edf"] = "0" * 40  # the file is unchanged, so its cache entry is still current
    with pytest.raises(DataError, match=r"SC4001E0-PSG\.edf has SHA-1"):
        load_dataset("sleep-edf", root=root, options=opts, val_fraction=0)


def test_assembly_holds_the_data_about_once(no_network):
    import tracemalloc
    from pathlib import Path

    from cortexnet.data.sleep_edf import Recording, _assemble

    tracemalloc.start()
    try:
        rng = np.random.default_rng(0)
        per_rec = [
            (Recording(s, 1, Path(f"SC40{s}1E0-PSG.edf"), Path("h.edf")),
             rng.normal(10 * s, 5, (40, 3000, 1)).astype(np.float32), np.arange(40) % 5)
            for s in range(8)
        ]  # fmt: skip
        data_bytes = sum(x.nbytes for _, x, _ in per_rec)
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        sides = _assemble(per_rec, [6, 7], 3000, "recording")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert per_rec == [None] * 8  # consumed
    x_train, y_train, g_train = sides["train"]
    assert x_train.shape == (240, 3000, 1) and sides["test"][0].shape == (80, 3000, 1)
    assert g_train.tolist() == [s for s in range(6) for _ in range(40)] and y_train.dtype == np.int64
    assert abs(float(x_train[:40].mean())) < 1e-4 and float(x_train[:40].std()) == pytest.approx(1, abs=1e-3)
    # one output copy plus one recording's temporaries (float64 statistics), far from the ~2 extra copies of
    # resample/normalise/concatenate
    assert peak < 1.5 * data_bytes, (peak, data_bytes)


def test_truncated_psg_is_a_data_error_naming_it(edf_root):
    root, _ = edf_root
    psg, _ = _pair(root, 1)
    psg.write_bytes(psg.read_bytes()[:-1000])
    with pytest.raises(DataError, match="is truncated") as info:
        load_dataset("sleep-edf", root=root)
    assert str(psg) in str(info.value)


@pytest.mark.parametrize("which", ["psg", "hypnogram"])
def test_garbage_edf_is_a_data_error_naming_it(edf_root, which):
    root, _ = edf_root
    psg, hyp = _pair(root, 2)
    bad = psg if which == "psg" else hyp
    bad.write_bytes(b"this is not an EDF file" * 20)
    with pytest.raises(DataError, match="not a readable EDF file") as info:
        load_dataset("sleep-edf", root=root)
    assert str(bad) in str(info.value)


def _wreck_first_annotation(hyp):
    data = bytearray(hyp.read_bytes())
    tal = data.index(b"Sleep stage W")
    data[tal - 6 : tal] = b"\x07" * 6  # wreck the first annotation's onset/duration: MNE skips it silently
    hyp.write_bytes(bytes(data))


def _zero_annotation_data(hyp):
    from cortexnet.data.edf import read_edf_header

    data = bytearray(hyp.read_bytes())
    start = read_edf_header(hyp).header_bytes
    data[start:] = bytes(len(data) - start)  # header intact, every annotation byte zero: MNE finds nothing
    hyp.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_wreck_first_annotation, "malformed annotation"),
        (_zero_annotation_data, "no time-stamped annotation"),
    ],
)
def test_corrupt_hypnogram_annotations_are_a_data_error_naming_it(edf_root, damage, match, no_network):
    root, _ = edf_root
    _, hyp = _pair(root, 2)
    damage(hyp)
    with pytest.raises(DataError, match=match) as info:
        epoch_recording(*_pair(root, 2), crop_wake_minutes=None)
    assert str(hyp) in str(info.value) and "corrupt" in str(info.value)
    # the other three recordings are fine: the load must still fail, not skip the damaged one
    with pytest.raises(DataError, match=match) as info:
        load_dataset("sleep-edf", root=root, val_fraction=0)
    assert str(hyp) in str(info.value)


def test_read_edf_annotations_is_strict_and_exact(edf_root):
    from conftest_data import HYPNOGRAM

    from cortexnet.data.edf import read_edf_annotations

    root, _ = edf_root
    psg, hyp = _pair(root, 0)
    assert read_edf_annotations(hyp) == [(float(o), float(d), t) for o, d, t in HYPNOGRAM]
    with pytest.raises(DataError, match="no 'EDF Annotations' signal") as info:
        read_edf_annotations(psg)
    assert str(psg) in str(info.value)
    data = bytearray(hyp.read_bytes())
    data[-1:] = b"x"  # a stray byte after the last annotation list
    hyp.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"at byte 771 .* the file is corrupt"):
        read_edf_annotations(hyp)


def test_unannotated_gap_in_a_wellformed_hypnogram_is_reported(tmp_path, caplog, no_network):
    from conftest_data import HYPNOGRAM

    gap = [h for h in HYPNOGRAM if h[0] != 0]  # no annotation for the first 120 s
    write_sleep_edf_fixture(tmp_path, recordings=((0, 1), (1, 1), (2, 1)), hypnograms={(2, 1): gap})
    with caplog.at_level(logging.WARNING, logger="cortexnet.data.sleep_edf"):
        ep = epoch_recording(*_pair(tmp_path, 2), crop_wake_minutes=None)
    _, hyp = _pair(tmp_path, 2)
    assert str(hyp) in caplog.text and "1 gap(s) totalling 120 s (first at 0 s)" in caplog.text
    assert ep.report["annotation_gaps"] == [[0.0, 120.0]] and ep.y.tolist() == EXPECTED_LABELS[4:]
    s = load_dataset("sleep-edf", root=tmp_path, val_fraction=0, options={"crop_wake_minutes": None})
    assert "hypnograms with unannotated gaps: ['SC4021EH-Hypnogram.edf']" in s.description


def test_annotation_gaps():
    from cortexnet.data.sleep_edf import annotation_gaps

    assert annotation_gaps(np.array([0.0, 30, 90]), np.array([30.0, 30, 30])) == [(60.0, 30.0)]
    assert annotation_gaps(np.array([0.0, 10]), np.array([60.0, 10])) == []


def test_recording_without_usable_epochs_is_reported(tmp_path, caplog, no_network):
    write_sleep_edf_fixture(
        tmp_path,
        recordings=((0, 1), (1, 1), (2, 1), (3, 1)),
        hypnograms={(3, 1): [(0, 600, "Sleep stage ?")]},
    )
    with caplog.at_level(logging.WARNING, logger="cortexnet.data.sleep_edf"):
        s = load_dataset("sleep-edf", root=tmp_path, val_fraction=0)
    assert "SC4031E0-PSG.edf" in caplog.text and "no usable epochs" in caplog.text
    assert "skipped (no usable epochs): ['SC4031E0-PSG.edf']" in s.description
    assert s.metadata["skipped_recordings"][0]["psg"] == "SC4031E0-PSG.edf"
    assert 3 not in s.metadata["subjects"]["train_pool"] + s.metadata["subjects"]["test"]


def test_missing_recordings_name_path_and_command_without_downloading(edf_root, no_network):
    root, _ = edf_root
    with pytest.raises(DataError) as info:
        load_dataset("sleep-edf", root=root, options={"subjects": [0, 5], "recordings": [1, 2]})
    msg = str(info.value)
    # subject 0 has only night 1 on disk; subject 5 nothing
    assert str(root.joinpath(*EDF_DIR)) in msg and "[(0, 2), (5, 1), (5, 2)]" in msg
    assert f"python -m cortexnet.data.download sleep-edf --root {root} --subjects 0 5" in msg


def test_empty_root_names_the_folder(tmp_path, no_network):
    with pytest.raises(DataError, match="no Sleep-EDF recordings under") as info:
        load_dataset("sleep-edf", root=tmp_path)
    assert "python -m cortexnet.data.download sleep-edf" in str(info.value)


def test_download_true_calls_mne_fetch_data_with_the_selection(tmp_path, monkeypatch):
    from mne.datasets.sleep_physionet import age

    calls = []

    def fake_fetch_data(subjects, recording, path, base_url, on_missing, verbose):
        calls.append({"subjects": subjects, "recording": recording, "path": path})
        written = write_sleep_edf_fixture(tmp_path, recordings=[(s, 1) for s in subjects])
        return [list(_pair(tmp_path, s)) for s, _ in written]

    monkeypatch.setattr(age, "fetch_data", fake_fetch_data)
    s = load_dataset(
        "sleep-edf", root=tmp_path, download=True, options={"subjects": [0, 1, 2], "recordings": [1]}
    )
    assert calls == [{"subjects": [0, 1, 2], "recording": [1], "path": str(tmp_path / "sleep-edf")}]
    assert len(s.test) == 16


def test_download_true_replaces_a_corrupt_local_file(tmp_path, monkeypatch, no_network):
    from mne.datasets.sleep_physionet import age

    write_sleep_edf_fixture(tmp_path, recordings=((0, 1), (1, 1), (2, 1)))
    _, hyp = _pair(tmp_path, 2)
    _zero_annotation_data(hyp)
    fetched = []

    def fake_fetch_data(subjects, recording, path, base_url, on_missing, verbose):
        pairs = []
        for s in subjects:  # like MNE: a file already present is never fetched again
            if not all(p.exists() for p in _pair(tmp_path, s)):
                fetched.append(s)
                write_sleep_edf_fixture(tmp_path, recordings=((s, 1),))
            pairs.append([str(p) for p in _pair(tmp_path, s)])
        return pairs

    monkeypatch.setattr(age, "fetch_data", fake_fetch_data)
    opts = {"subjects": [0, 1, 2], "recordings": [1]}
    with pytest.raises(DataError, match="no time-stamped annotation"):
        load_dataset("sleep-edf", root=tmp_path, options=opts)
    s = load_dataset("sleep-edf", root=tmp_path, download=True, options=opts, val_fraction=0)
    assert fetched == [2] and len(s.train) + len(s.test) == 48


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    import requests
    from mne.datasets.sleep_physionet import age

    def offline(**kwargs):
        raise requests.exceptions.ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(age, "fetch_data", offline)
    with pytest.raises(DataError, match=r"download of sleep-edf failed.*no network") as info:
        download_dataset("sleep-edf", tmp_path, options={"subjects": [4]})
    assert "--subjects 4" in str(info.value)


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        ("http404", "HTTP error 404"),
        ("sha1", "did not match the expected SHA-1 and was deleted"),
        ("disk", "OSError: [Errno 28] No space left on device"),
    ],
)
def test_download_failures_other_than_offline_name_the_real_cause(tmp_path, monkeypatch, failure, cause):
    import requests
    from mne.datasets.sleep_physionet import age

    def fail(**kwargs):
        if failure == "http404":
            response = requests.Response()
            response.status_code = 404
            raise requests.HTTPError("404 Client Error: Not Found", response=response)
        if failure == "sha1":
            raise ValueError("SHA1 hash of downloaded file (SC4041E0-PSG.edf) does not match the known hash")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(age, "fetch_data", fail)
    with pytest.raises(DataError) as info:
        download_dataset("sleep-edf", tmp_path, options={"subjects": [4]})
    msg = str(info.value)
    assert msg.startswith("download of sleep-edf failed from every mirror: ") and cause in msg
    assert "no network" not in msg and "unreachable" not in msg and "--subjects 4" in msg


def test_verify_checksums_uses_the_known_sha1(edf_root, monkeypatch):
    root, _ = edf_root
    monkeypatch.setattr(sleep_edf, "known_sha1", lambda: {})
    with pytest.raises(DataError, match="no SHA-1 known"):
        load_dataset(
            "sleep-edf", root=root, options={"verify_checksums": True, "subjects": [0, 1], "recordings": [1]}
        )
    table = {p.name: sleep_edf._sha1(p) for s in (0, 1) for p in _pair(root, s)}
    monkeypatch.setattr(sleep_edf, "known_sha1", lambda: table)
    load_dataset(
        "sleep-edf",
        root=root,
        options={"verify_checksums": True, "subjects": [0, 1], "recordings": [1]},
        val_fraction=0,
    )
    table["SC4011EH-Hypnogram.edf"] = "0" * 40
    write_sleep_edf_fixture(root, recordings=((1, 1),))  # invalidates that recording's cache
    with pytest.raises(DataError, match=r"SC4011EH-Hypnogram\.edf has SHA-1"):
        load_dataset(
            "sleep-edf", root=root, options={"verify_checksums": True, "subjects": [0, 1], "recordings": [1]}
        )


def test_mne_sha1_table_covers_the_fixture_names():
    table = sleep_edf.known_sha1()
    assert all(name in table for pair in SLEEP_EDF_NAMES.values() for name in pair)
    assert len(table) == 306


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"subject": [1]}, "unknown sleep-edf option"),
        ({"subjects": [39]}, r"\[39\] not available"),
        ({"subjects": []}, "non-empty list"),
        ({"recordings": [3]}, r"\[3\] not available"),
        ({"normalize": "global"}, "normalize must be one of"),
        ({"seq_len": 1}, "seq_len"),
        ({"crop_wake_minutes": -1}, "crop_wake_minutes"),
        ({"test_fraction": 0}, "test_fraction"),
        ({"channels": []}, "channels"),
        ({"verify_checksums": "yes"}, "verify_checksums"),
    ],
)
def test_sleep_edf_bad_options_fail_before_io(options, match, tmp_path, no_network):
    with pytest.raises(ValueError, match=match):
        load_dataset("sleep-edf", root=tmp_path / "absent", options=options)


def test_sequence_cost_guidance():
    text = sequence_cost(3000, 10_000, 1000, density=0.1, batch_size=100)
    assert "3.00e+10 node updates" in text and "3.00e+13 multiply-adds" in text and "12.00 GB" in text
    # the docstring's example: 3,000 steps x 10,000 nodes = 3e7 node updates per sample
    assert "3.00e+07 node updates" in sequence_cost(3000, 10_000, 1)
    with pytest.raises(ValueError, match="n_nodes"):
        sequence_cost(3000, 0, 10)


def test_download_command_for_sleep_edf_passes_subjects_and_fails_cleanly(tmp_path, monkeypatch, capsys):
    import requests
    from mne.datasets.sleep_physionet import age

    from cortexnet.data.download import main

    seen = {}

    def offline(**kwargs):
        seen.update(kwargs)
        raise requests.exceptions.ConnectionError("Name or service not known")

    monkeypatch.setattr(age, "fetch_data", offline)
    assert main(["sleep-edf", "--root", str(tmp_path), "--subjects", "4", "7", "--recordings", "1"]) == 2
    assert seen["subjects"] == [4, 7] and seen["recording"] == [1]
    err = capsys.readouterr().err
    assert (
        err.startswith("cortexnet.data.download: error: download of sleep-edf failed")
        and err.count("\n") == 1
    )
    assert main(["sleep-edf", "--root", str(tmp_path), "--subjects", "39"]) == 2
    assert "not available" in capsys.readouterr().err
