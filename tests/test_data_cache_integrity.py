"""Dataset caches and manifests are never silently wrong and never fail forever (issue 16, "verify what is loaded").

Every on-disk cache of the data layer (the ``.npz`` of a parsed sleep-ucr ``.ts`` file, the per-recording
``.npz`` of sleep-edf epochs) is damaged in many ways: the next load must warn naming the file, return exactly the
data of a clean load, and leave a valid cache behind. A missing or damaged manifest must lead to a full content
check (sleep-ucr) or to re-validating the caches it governed (sleep-edf), never to trusting them or to no check.
The image loaders (MNIST, Fashion-MNIST, CIFAR) keep no derived cache: they read the sha256-verified originals.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest_data import (
    SLEEP_EDF_NAMES,
    forbid_network,
    sha256_file,
    ts_series,
    write_sleep_edf_fixture,
    write_ts,
)

import cortexnet.data.sleep_edf as sleep_edf
import cortexnet.data.sleep_ucr as sleep_ucr
from cortexnet.data import DataError, download_dataset, load_dataset
from cortexnet.data.cache import load_npz, save_npz

N_TRAIN, N_TEST = 25, 10


@pytest.fixture
def no_network(monkeypatch):
    forbid_network(monkeypatch)


# ------------------------------------------------------------------------------------------ corruptions
def _member_data_offset(path: Path, member: str) -> int:
    """Byte offset in ``path`` of the first byte of ``member``'s stored data (after its local header)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = path.read_bytes()
    start = info.header_offset
    name_len = int.from_bytes(raw[start + 26 : start + 28], "little")
    extra_len = int.from_bytes(raw[start + 28 : start + 30], "little")
    return start + 30 + name_len + extra_len


def _flip(path: Path, offset: int, mask: int = 0x5A) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def _rewrite(path: Path, meta_change=None, **array_changes) -> None:
    """Rewrite the valid cache file ``path`` with ``save_npz`` after changing its meta and/or arrays: readable,
    with the current source fingerprints, but inconsistent."""
    loaded = load_npz(path)
    assert loaded is not None
    meta, arrays = loaded
    if meta_change is not None:
        meta = meta_change(dict(meta))
    for key, change in array_changes.items():
        if change is None:
            arrays.pop(key)
        else:
            arrays[key] = change(arrays[key])
    save_npz(path, meta, **arrays)


def _raw_npz(path: Path, **arrays) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _raw_npy(path: Path) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3, np.float32))


def _zip_without_arrays(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")


def _member_offset(path: Path, member: str) -> int:
    with zipfile.ZipFile(path) as zf:
        return zf.getinfo(member).header_offset


#: damage that makes any cache file unreadable, whatever it holds: name -> function(path, main array name)
UNREADABLE = {
    "truncated-half": lambda p, a: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "truncated-tail": lambda p, a: p.write_bytes(p.read_bytes()[:-10]),  # the end-of-archive record
    "empty": lambda p, a: p.write_bytes(b""),
    "garbage": lambda p, a: p.write_bytes(np.random.default_rng(0).bytes(3000)),
    "flipped-data-byte": lambda p, a: _flip(p, _member_data_offset(p, f"{a}.npy") + 200),  # bad CRC-32
    "flipped-npy-header": lambda p, a: _flip(p, _member_data_offset(p, f"{a}.npy") + 20),
    "flipped-meta-byte": lambda p, a: _flip(p, _member_data_offset(p, "meta.npy") + 130),
    "flipped-local-file-name": lambda p, a: _flip(p, _member_offset(p, f"{a}.npy") + 30, 0x01),
    "zip-without-arrays": lambda p, a: _zip_without_arrays(p),
    "single-npy-array": lambda p, a: _raw_npy(p),
    "no-meta": lambda p, a: _raw_npz(p, **load_npz(p)[1]),
    "meta-not-json": lambda p, a: _raw_npz(p, meta=np.array("{not json"), **load_npz(p)[1]),
    "meta-json-list": lambda p, a: _raw_npz(p, meta=np.array("[1, 2]"), **load_npz(p)[1]),
    "meta-a-number": lambda p, a: _raw_npz(p, meta=np.array(3.0), **load_npz(p)[1]),
    "main-array-missing": lambda p, a: _rewrite(p, **{a: None}),
}  # fmt: skip


# ============================================================================================== sleep-ucr
@pytest.fixture
def ucr_root(tmp_path, monkeypatch):
    """Two .ts files without a download manifest; ``EXPECTED_TOTAL`` set to their count, as for the archive."""
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TOTAL", N_TRAIN + N_TEST)
    x_train, y_train = ts_series(N_TRAIN, seed=1)
    x_test, y_test = ts_series(N_TEST, seed=2)
    write_ts(tmp_path / "sleep-ucr" / "Sleep_TRAIN.ts", x_train, y_train)
    write_ts(tmp_path / "sleep-ucr" / "Sleep_TEST.ts", x_test, y_test)
    return tmp_path


def _ucr(root):
    s = load_dataset("sleep-ucr", root=root, val_fraction=0, options={"split": "archive"})
    return s.train.tensors[0], s.train.tensors[1], s.test.tensors[0], s.test.tensors[1]


def _same(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


UCR_INCONSISTENT = {
    "x-float64": lambda p: _rewrite(p, x=lambda x: x.astype(np.float64)),
    "x-2d": lambda p: _rewrite(p, x=lambda x: x[:, :, 0]),
    "x-one-series-short": lambda p: _rewrite(p, x=lambda x: x[:-1]),  # labels and meta say one more
    "x-and-labels-short": lambda p: _rewrite(p, x=lambda x: x[:-1], labels=lambda y: y[:-1]),  # meta: n_series
    "x-truncated-steps": lambda p: _rewrite(p, x=lambda x: x[:, :-1], meta_change=lambda m: {**m, "shape": None}),
    "labels-not-strings": lambda p: _rewrite(p, labels=lambda y: np.zeros(len(y), np.int64)),
    "labels-missing": lambda p: _rewrite(p, labels=None),
    "meta-n-series-wrong": lambda p: _rewrite(p, meta_change=lambda m: {**m, "n_series": m["n_series"] + 1}),
    "meta-n-series-missing": lambda p: _rewrite(p, meta_change=lambda m: {k: v for k, v in m.items()
                                                                         if k != "n_series"}),
    "meta-shape-wrong": lambda p: _rewrite(p, meta_change=lambda m: {**m, "shape": [1, 2, 3]}),
    "meta-classes-not-a-list": lambda p: _rewrite(p, meta_change=lambda m: {**m, "class_labels": 5}),
    "empty-cache": lambda p: _rewrite(p, x=lambda x: x[:0], labels=lambda y: y[:0],
                                      meta_change=lambda m: {**m, "n_series": 0, "shape": [0, 178, 1]}),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(UNREADABLE) + sorted(UCR_INCONSISTENT))
def test_sleep_ucr_damaged_cache_is_rebuilt_with_a_warning(ucr_root, damage, caplog, monkeypatch, no_network):
    clean = _ucr(ucr_root)
    cache = ucr_root / "sleep-ucr" / "cache" / "Sleep_TRAIN.npz"
    good_meta, good_arrays = load_npz(cache)
    (UNREADABLE[damage] if damage in UNREADABLE else lambda p, a: UCR_INCONSISTENT[damage](p))(cache, "x")
    with caplog.at_level(logging.WARNING):
        again = _ucr(ucr_root)
    assert _same(again, clean)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(cache) in m and "rebuilt" in m for m in warned), warned
    # rewritten valid: the same meta and arrays as the first build, served from now on without parsing
    meta, arrays = load_npz(cache)
    assert meta == good_meta and sorted(arrays) == sorted(good_arrays)
    assert all(np.array_equal(arrays[k], good_arrays[k]) for k in arrays)
    monkeypatch.setattr(
        sleep_ucr, "read_ts", lambda *a: pytest.fail("parsed again: the cache was not rebuilt")
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _same(_ucr(ucr_root), clean)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_sleep_ucr_cache_that_is_a_folder_never_fails_the_load(ucr_root, caplog, no_network):
    clean = _ucr(ucr_root)
    cache = ucr_root / "sleep-ucr" / "cache" / "Sleep_TEST.npz"
    cache.unlink()
    cache.mkdir()
    for _ in range(2):  # cannot be replaced, so warned about on every load, but every load works
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert _same(_ucr(ucr_root), clean)
        assert any(str(cache) in r.getMessage() for r in caplog.records)


def test_sleep_ucr_old_cache_format_is_rebuilt(ucr_root, caplog, no_network):
    clean = _ucr(ucr_root)
    cache = ucr_root / "sleep-ucr" / "cache" / "Sleep_TRAIN.npz"
    _rewrite(cache, meta_change=lambda m: {k: v for k, v in m.items() if k not in ("n_series", "shape")}
             | {"format": 1})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert _same(_ucr(ucr_root), clean)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # merely stale: rebuilt quietly
    assert load_npz(cache)[0]["format"] == sleep_ucr._CACHE_FORMAT


def test_load_npz_never_raises_and_never_serves_a_changed_entry(tmp_path, caplog):
    """Every single-byte flip of a cache file, anywhere: either rejected (warned) or read back unchanged."""
    path = tmp_path / "c.npz"
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    save_npz(path, {"a": 1}, x=x, labels=np.array(["a", "b"]))
    original = path.read_bytes()
    outcomes = {"rejected": 0, "unchanged": 0}
    for offset in range(len(original)):
        for mask in (0x01, 0xFF):
            data = bytearray(original)
            data[offset] ^= mask
            path.write_bytes(bytes(data))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="cortexnet.data.cache"):
                got = load_npz(path, required=("x", "labels"))
            if got is None:
                assert str(path) in caplog.text and "rebuilt" in caplog.text
                outcomes["rejected"] += 1
                continue
            meta, arrays = got
            assert meta == {"a": 1} and sorted(arrays) == ["labels", "x"], (offset, mask)
            assert arrays["x"].dtype == np.float32 and np.array_equal(arrays["x"], x), (offset, mask)
            assert arrays["labels"].tolist() == ["a", "b"], (offset, mask)
            outcomes["unchanged"] += 1
    assert outcomes["rejected"] > len(original)  # most flips hit data guarded by the CRC-32s


# ------------------------------------------------------------------------------- sleep-ucr manifests
def _write_manifest(folder: Path) -> dict:
    """The manifest ``fetch`` writes after a verified download, for the .ts files now in ``folder``."""
    files = {
        name: {
            "sha256": sha256_file(folder / name),
            "size": (folder / name).stat().st_size,
            "n_series": n,
        }
        for name, n in (("Sleep_TRAIN.ts", N_TRAIN), ("Sleep_TEST.ts", N_TEST))
    }
    manifest = {"source": "http://127.0.0.1/Sleep.zip", "archive_sha256": "0" * 64, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _truncate_at_line_boundary(path: Path, n_lines: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-n_lines]))
    assert path.read_bytes().endswith(b"\n")  # a clean cut: every remaining line parses


def _edit_manifest(change):
    def apply(path: Path) -> None:
        manifest = json.loads(path.read_text())
        change(manifest["files"])
        path.write_text(json.dumps(manifest))

    return apply


def _replace_by_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


MANIFEST_DAMAGE = {
    "truncated": lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]),
    "truncated-by-one-byte": lambda p: p.write_text(p.read_text().rstrip()[:-1]),
    "empty": lambda p: p.write_text(""),
    "not-json": lambda p: p.write_text("this is not json"),
    "not-utf8": lambda p: p.write_bytes(b"\xff\xfe{\x00"),
    "top-level-list": lambda p: p.write_text("[]"),
    "no-files": lambda p: p.write_text('{"source": "x"}'),
    "files-a-list": lambda p: p.write_text('{"files": []}'),
    "entry-missing": _edit_manifest(lambda f: f.pop("Sleep_TEST.ts")),
    "entry-not-an-object": _edit_manifest(lambda f: f.update({"Sleep_TEST.ts": "abc"})),
    "sha256-missing": _edit_manifest(lambda f: f["Sleep_TEST.ts"].pop("sha256")),
    "sha256-a-number": _edit_manifest(lambda f: f["Sleep_TEST.ts"].update(sha256=123)),
    "sha256-short": _edit_manifest(lambda f: f["Sleep_TEST.ts"].update(sha256="abc")),
    "size-a-string": _edit_manifest(lambda f: f["Sleep_TEST.ts"].update(size="100")),
    "n-series-missing": _edit_manifest(lambda f: f["Sleep_TEST.ts"].pop("n_series")),
    "n-series-a-bool": _edit_manifest(lambda f: f["Sleep_TEST.ts"].update(n_series=True)),
    "a-folder": _replace_by_folder,
}


def test_sleep_ucr_missing_manifest_and_a_file_truncated_at_a_line_boundary(ucr_root, no_network):
    test_file = ucr_root / "sleep-ucr" / "Sleep_TEST.ts"
    _truncate_at_line_boundary(test_file, 3)
    assert len(sleep_ucr.read_ts(test_file).labels) == N_TEST - 3  # parses: only the count can tell
    with pytest.raises(DataError) as info:
        _ucr(ucr_root)
    message = str(info.value)
    assert "\n" not in message and str(test_file) in message
    assert f"{N_TRAIN} + {N_TEST - 3} = {N_TRAIN + N_TEST - 3} series, expected {N_TRAIN + N_TEST}" in message
    assert "no download manifest" in message
    assert (
        f"python -m cortexnet.data.download sleep-ucr --root {ucr_root}" in message
        and "--download" in message
    )


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
def test_sleep_ucr_damaged_manifest_means_a_full_content_check(ucr_root, damage, caplog, no_network):
    folder = ucr_root / "sleep-ucr"
    clean = _ucr(ucr_root)  # no manifest: checked by content
    _write_manifest(folder)
    manifest = folder / "manifest.json"
    MANIFEST_DAMAGE[damage](manifest)
    # intact files: a damaged manifest is reported, never fatal on its own, and the content passes in full
    with caplog.at_level(logging.WARNING):
        assert _same(_ucr(ucr_root), clean)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(manifest) in m and "damaged" in m for m in warned), warned
    # a file truncated at a line boundary is refused, not half loaded
    test_file = folder / "Sleep_TEST.ts"
    _truncate_at_line_boundary(test_file, 4)
    with pytest.raises(DataError) as info:
        _ucr(ucr_root)
    message = str(info.value)
    assert "\n" not in message and str(test_file) in message and "damaged" in message
    assert f"= {N_TRAIN + N_TEST - 4} series, expected {N_TRAIN + N_TEST}" in message
    assert "--download" in message


def test_sleep_ucr_valid_manifest_still_checks_the_hash(ucr_root, no_network):
    folder = ucr_root / "sleep-ucr"
    _write_manifest(folder)
    clean = _ucr(ucr_root)
    _truncate_at_line_boundary(folder / "Sleep_TEST.ts", 1)
    with pytest.raises(DataError, match=r"Sleep_TEST\.ts does not match its download manifest \(size"):
        _ucr(ucr_root)
    assert len(clean[3]) == N_TEST


def test_sleep_ucr_manifest_whose_counts_disagree_with_its_hashed_files_is_damaged(
    ucr_root, caplog, monkeypatch, no_network
):
    folder = ucr_root / "sleep-ucr"
    _write_manifest(folder)
    _edit_manifest(lambda f: f["Sleep_TEST.ts"].update(n_series=N_TEST + 5))(folder / "manifest.json")
    with caplog.at_level(logging.WARNING):
        assert len(_ucr(ucr_root)[3]) == N_TEST  # the content passes in full
    assert "is damaged (it records" in caplog.text
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TOTAL", N_TRAIN + N_TEST + 5)  # as the manifest claims
    with pytest.raises(DataError, match=rf"= {N_TRAIN + N_TEST} series, expected {N_TRAIN + N_TEST + 5}"):
        _ucr(ucr_root)


def test_sleep_ucr_content_errors_name_the_file_and_the_fix(ucr_root, no_network):
    test_file = ucr_root / "sleep-ucr" / "Sleep_TEST.ts"
    data = test_file.read_bytes()
    test_file.write_bytes(data[: len(data) - 200])  # cut inside a line: that series is short
    with pytest.raises(DataError) as info:
        _ucr(ucr_root)
    message = str(info.value)
    assert "\n" not in message and str(test_file) in message and "fetch again with" in message


# ------------------------------------------------------------- sleep-ucr --download and its manifest
@pytest.fixture
def zip_server(tmp_path):
    www = tmp_path / "www"
    src = www / "src"
    www.mkdir()
    x1, y1 = ts_series(N_TRAIN, seed=1)
    x2, y2 = ts_series(N_TEST, seed=2)
    with zipfile.ZipFile(www / "Sleep.zip", "w") as zf:
        zf.write(write_ts(src / "Sleep_TRAIN.ts", x1, y1), "Sleep/Sleep_TRAIN.ts")
        zf.write(write_ts(src / "Sleep_TEST.ts", x2, y2), "Sleep/Sleep_TEST.ts")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", src
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_sleep_ucr_download_replaces_a_damaged_manifest_and_a_truncated_file(
    zip_server, tmp_path, monkeypatch, caplog
):
    base, src = zip_server
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TOTAL", N_TRAIN + N_TEST)
    root = tmp_path / "r"
    folder = root / "sleep-ucr"
    download_dataset("sleep-ucr", root, base_urls=[base])
    good = json.loads((folder / "manifest.json").read_text())
    # a damaged manifest: --download fetches again and restores it
    (folder / "manifest.json").write_text(json.dumps(good)[:40])
    with caplog.at_level(logging.WARNING):
        download_dataset("sleep-ucr", root, base_urls=[base])
    assert "damaged" in caplog.text
    assert json.loads((folder / "manifest.json").read_text())["files"] == good["files"]
    # no manifest and a file truncated at a line boundary: --download sees it and replaces the file
    (folder / "manifest.json").unlink()
    _truncate_at_line_boundary(folder / "Sleep_TEST.ts", 2)
    download_dataset("sleep-ucr", root, base_urls=[base])
    assert (folder / "Sleep_TEST.ts").read_bytes() == (src / "Sleep_TEST.ts").read_bytes()
    assert json.loads((folder / "manifest.json").read_text())["files"] == good["files"]


def test_sleep_ucr_download_keeps_hand_copied_files_that_pass_in_full(ucr_root, no_network):
    paths = download_dataset("sleep-ucr", ucr_root, base_urls=["http://127.0.0.1:1/"])  # never contacted
    assert [p.name for p in paths] == ["Sleep_TRAIN.ts", "Sleep_TEST.ts"]
    assert not (ucr_root / "sleep-ucr" / "manifest.json").exists()


def test_sleep_ucr_half_file_is_one_line_with_status_2_from_an_experiment_cli(ucr_root, capsys, no_network):
    from cortexnet.experiments import dale
    from cortexnet.experiments.common import run_cli

    train_file = ucr_root / "sleep-ucr" / "Sleep_TRAIN.ts"
    _truncate_at_line_boundary(train_file, 5)
    args = ["--nodes", "50", "--dataset", "sleep-ucr", "--data-root", str(ucr_root), "--epochs", "1",
            "--densities", "0.1", "--no-progress", "--out", str(ucr_root / "runs")]  # fmt: skip
    assert run_cli(dale.main, args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(train_file) in errors[0] and "series, expected" in errors[0]


def test_sleep_ucr_download_cli_with_a_half_file_offline_is_one_line_with_status_2(ucr_root, capsys):
    from cortexnet.data.download import main

    _truncate_at_line_boundary(ucr_root / "sleep-ucr" / "Sleep_TRAIN.ts", 5)
    # no manifest and the content fails in full, so the download command fetches again: offline here
    assert main(["sleep-ucr", "--root", str(ucr_root), "--base-url", "http://127.0.0.1:1/"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error: " in line]
    assert len(errors) == 1 and "download of sleep-ucr" in errors[0], err


# ============================================================================================== sleep-edf
EDF_OPTS = {"subjects": [0, 1], "recordings": [1], "normalize": "none", "test_subjects": [1]}


@pytest.fixture
def edf_root(tmp_path):
    write_sleep_edf_fixture(tmp_path, recordings=((0, 1), (1, 1)))
    return tmp_path


def _edf(root, **changes):
    s = load_dataset("sleep-edf", root=root, options={**EDF_OPTS, **changes}, val_fraction=0)
    return s.train.tensors[0], s.train.tensors[1], s.test.tensors[0], s.test.tensors[1]


def _edf_cache(root, subject=0) -> Path:
    (path,) = (root / "sleep-edf" / "cache").glob(f"{SLEEP_EDF_NAMES[(subject, 1)][0][:8]}-*.npz")
    return path


EDF_INCONSISTENT = {
    "x-float64": lambda p: _rewrite(p, x=lambda x: x.astype(np.float64)),
    "x-one-epoch-short": lambda p: _rewrite(p, x=lambda x: x[:-1]),
    "all-one-epoch-short": lambda p: _rewrite(p, x=lambda x: x[:-1], y=lambda y: y[:-1],
                                              onset_s=lambda o: o[:-1]),  # meta: n_epochs, class counts
    "x-two-channels": lambda p: _rewrite(p, x=lambda x: np.concatenate([x, x], axis=2)),
    "x-samples-short": lambda p: _rewrite(p, x=lambda x: x[:, :-1]),
    "x-nan": lambda p: _rewrite(p, x=lambda x: np.where(np.arange(x.shape[1])[None, :, None] == 7, np.nan, x)),
    "y-int32": lambda p: _rewrite(p, y=lambda y: y.astype(np.int32)),
    "y-out-of-range": lambda p: _rewrite(p, y=lambda y: y + 5),
    "y-one-label-changed": lambda p: _rewrite(p, y=lambda y: np.concatenate([(y[:1] + 1) % 5, y[1:]])),
    "y-missing": lambda p: _rewrite(p, y=None),
    "onsets-missing": lambda p: _rewrite(p, onset_s=None),
    "onsets-negative": lambda p: _rewrite(p, onset_s=lambda o: o - 1e6),
    "meta-n-epochs-wrong": lambda p: _rewrite(p, meta_change=lambda m: {**m, "n_epochs": m["n_epochs"] + 1}),
    "meta-sfreq-wrong": lambda p: _rewrite(p, meta_change=lambda m: {**m, "sfreq": 50.0}),
    "meta-sfreq-a-string": lambda p: _rewrite(p, meta_change=lambda m: {**m, "sfreq": "100"}),
    "meta-other-subject": lambda p: _rewrite(p, meta_change=lambda m: {**m, "subject": 1}),
    "meta-no-report": lambda p: _rewrite(p, meta_change=lambda m: {k: v for k, v in m.items() if k != "report"}),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(UNREADABLE) + sorted(EDF_INCONSISTENT))
def test_sleep_edf_damaged_cache_is_rebuilt_with_a_warning(edf_root, damage, caplog, monkeypatch, no_network):
    clean = _edf(edf_root)
    cache = _edf_cache(edf_root)
    good_meta, good_arrays = load_npz(cache)
    (UNREADABLE[damage] if damage in UNREADABLE else lambda p, a: EDF_INCONSISTENT[damage](p))(cache, "x")
    with caplog.at_level(logging.WARNING):
        again = _edf(edf_root)
    assert _same(again, clean)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(cache) in m and "rebuilt" in m for m in warned), warned
    meta, arrays = load_npz(cache)
    assert meta == good_meta and sorted(arrays) == sorted(good_arrays)
    assert all(np.array_equal(arrays[k], good_arrays[k]) for k in arrays)
    # valid again: the next load reads it without MNE and without a warning
    monkeypatch.setattr(sleep_edf, "epoch_recording", lambda *a, **k: pytest.fail("epoched again"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _same(_edf(edf_root), clean)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_sleep_edf_cache_that_is_a_folder_never_fails_the_load(edf_root, caplog, no_network):
    clean = _edf(edf_root)
    cache = _edf_cache(edf_root, subject=1)
    cache.unlink()
    cache.mkdir()
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert _same(_edf(edf_root), clean)
        assert any(str(cache) in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------- sleep-edf manifest
def _entries(root) -> dict:
    return json.loads((root / "sleep-edf" / "cache" / "manifest.json").read_text())["entries"]


EDF_MANIFEST_DAMAGE = {
    "truncated": lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]),
    "empty": lambda p: p.write_text(""),
    "not-json": lambda p: p.write_text("garbage"),
    "not-utf8": lambda p: p.write_bytes(b"\xff\xfe\x00"),
    "top-level-list": lambda p: p.write_text("[]"),
    "entries-a-list": lambda p: p.write_text('{"entries": []}'),
    "no-entries": lambda p: p.write_text("{}"),
    "entry-not-an-object": lambda p: p.write_text(
        json.dumps({"entries": {**json.loads(p.read_text())["entries"], "SC4001E0-0123456789.npz": 3}})
    ),
    "entry-without-psg": lambda p: p.write_text(
        json.dumps(
            {"entries": {k: {**v, "psg": None} for k, v in json.loads(p.read_text())["entries"].items()}}
        )
    ),
    "entry-with-a-foreign-name": lambda p: p.write_text(
        json.dumps({"entries": {"../../escape.npz": {"psg": "x", "sources": {}, "params": {}}}})
    ),
}


@pytest.mark.parametrize("damage", [*sorted(EDF_MANIFEST_DAMAGE), "missing", "entries-missing"])
def test_sleep_edf_damaged_manifest_revalidates_the_caches_it_governed(edf_root, damage, caplog, no_network):
    clean = _edf(edf_root)
    _edf(edf_root, crop_wake_minutes=None)  # a second parameter set: four cache files in all
    cache_dir = edf_root / "sleep-edf" / "cache"
    good = _entries(edf_root)
    assert sorted(good) == sorted(p.name for p in cache_dir.glob("*.npz")) and len(good) == 4
    manifest = cache_dir / "manifest.json"
    if damage == "missing":
        manifest.unlink()
    elif damage == "entries-missing":
        manifest.write_text(json.dumps({"entries": dict(list(good.items())[:1])}))
    else:
        EDF_MANIFEST_DAMAGE[damage](manifest)
    with caplog.at_level(logging.WARNING):
        assert _same(_edf(edf_root), clean)
    if damage not in ("missing", "entries-missing"):  # absent is normal (first run), so not a warning
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(str(manifest) in m and "damaged" in m for m in warned), warned
    # rewritten valid, with an entry for every cache file: those of the parameter set not loaded now included
    assert _entries(edf_root) == good


def test_sleep_edf_lost_manifest_does_not_leave_stale_caches_behind(edf_root, no_network):
    _edf(edf_root)
    _edf(edf_root, crop_wake_minutes=None)
    cache_dir = edf_root / "sleep-edf" / "cache"
    other = [n for n, e in _entries(edf_root).items() if e["params"]["crop_wake_minutes"] is None]
    (cache_dir / "manifest.json").write_text('{"entries": {')  # damaged: it no longer lists them
    write_sleep_edf_fixture(edf_root, recordings=((1, 1),))  # subject 1's files replaced
    _edf(edf_root)
    # subject 1's cache for the other parameter set was built from the old files: found and deleted anyway
    stale = [n for n in other if n.startswith("SC4011E0")]
    assert len(stale) == 1 and not (cache_dir / stale[0]).exists()
    assert sorted(_entries(edf_root)) == sorted(p.name for p in cache_dir.glob("*.npz"))
    assert len(_entries(edf_root)) == 3


def test_sleep_edf_unreadable_cache_of_a_damaged_manifest_is_deleted(edf_root, caplog, no_network):
    _edf(edf_root)
    clean_other = _edf(edf_root, crop_wake_minutes=None)
    cache_dir = edf_root / "sleep-edf" / "cache"
    (other,) = [n for n, e in _entries(edf_root).items()
                if e["params"]["crop_wake_minutes"] is None and n.startswith("SC4001E0")]  # fmt: skip
    (cache_dir / other).write_bytes(b"junk")
    (cache_dir / "manifest.json").write_text("")
    with caplog.at_level(logging.WARNING):
        _edf(edf_root)  # the other parameter set: its damaged file is found and removed
    assert not (cache_dir / other).exists() and f"cache file {cache_dir / other}" in caplog.text
    assert other not in _entries(edf_root)
    assert _same(_edf(edf_root, crop_wake_minutes=None), clean_other)  # rebuilt when next needed
    assert other in _entries(edf_root)


def test_sleep_edf_manifest_that_is_a_folder_never_fails_the_load(edf_root, caplog, no_network):
    clean = _edf(edf_root)
    manifest = edf_root / "sleep-edf" / "cache" / "manifest.json"
    _replace_by_folder(manifest)
    with caplog.at_level(logging.WARNING):
        assert _same(_edf(edf_root), clean)
    assert "damaged" in caplog.text and f"cannot write {manifest}" in caplog.text


# ============================================================================================ npz: files
def test_npz_source_with_any_flipped_byte_is_a_data_error_or_unchanged(tmp_path):
    """Your own arrays (``npz:PATH``, compressed): a damaged file is a DataError naming it, never a zlib.error,
    NotImplementedError or other low-level exception."""
    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.normal(size=(6, 2, 3)).astype(np.float32),
        "train_y": np.arange(6) % 2,
        "test_x": rng.normal(size=(2, 2, 3)).astype(np.float32),
        "test_y": np.arange(2),
    }
    np.savez_compressed(path, **arrays)
    original = path.read_bytes()
    clean = load_dataset(f"npz:{path}", val_fraction=0)
    errors = 0
    for offset in range(0, len(original), 3):
        data = bytearray(original)
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        try:
            s = load_dataset(f"npz:{path}", val_fraction=0)
        except DataError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            errors += 1
            continue
        assert torch.equal(s.train.tensors[0], clean.train.tensors[0]), offset
        assert torch.equal(s.test.tensors[0], clean.test.tensors[0]), offset
    assert errors > len(original) // 6
