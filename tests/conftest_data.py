"""Fixture writers for the data-layer tests: tiny files in the exact on-disk formats, built in ``tmp_path``.

Plain functions (imported by ``tests/test_data*.py``), so that other tests can build the same fixtures.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of a uint8 array: magic 00 00 08 ndim, big-endian uint32 dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: byte-identical output for identical input, so hashes are stable across runs
    path.write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return path


def write_mnist_like(folder: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    """Write the four MNIST IDX-gz files with random 28x28 images and labels cycling 0..9 into ``folder``.

    Returns ``{"train": (images, labels), "t10k": (images, labels)}``.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx_gz(folder / IDX_FILES[split][0], images)
        write_idx_gz(folder / IDX_FILES[split][1], labels)
        out[split] = (images, labels)
    return out


def remote_source_for(folder: Path, names: list[str], mirrors: tuple[str, ...] = ("http://127.0.0.1:1/",)):
    """A ``RemoteSource`` whose hashes are those of the fixture files in ``folder``."""
    from cortexnet.data.remote import RemoteFile, RemoteSource

    files = tuple(RemoteFile(n, sha256_file(folder / n), (folder / n).stat().st_size) for n in names)
    return RemoteSource(mirrors, files)


def _py2_style_pickle(obj) -> bytes:
    """Protocol-2 pickle naming numpy's module as NumPy 1 / Python 2 writers did (like the real CIFAR files)."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_cifar10_tarball(path: Path, n_per_batch: int = 2, seed: int = 0) -> dict:
    """A ``cifar-10-python.tar.gz`` with 5 training batches and a test batch of ``n_per_batch`` images each."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for k, name in enumerate(names):
            data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
            labels = [int((k * n_per_batch + j) % 10) for j in range(n_per_batch)]
            batches[name] = (data, labels)
            payload = {
                "batch_label": name,
                "labels": labels,
                "data": data,
                "filenames": ["x.png"] * n_per_batch,
            }
            _add_member(tar, f"cifar-10-batches-py/{name}", _py2_style_pickle(payload))
        meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
        _add_member(tar, "cifar-10-batches-py/batches.meta", _py2_style_pickle(meta))
    return batches


def write_cifar100_tarball(path: Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict:
    """A ``cifar-100-python.tar.gz`` whose fine and coarse labels differ (fine = 10 * coarse + 7)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, n in (("train", n_train), ("test", n_test)):
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            coarse = [int(j % 10) for j in range(n)]
            fine = [10 * c + 7 for c in coarse]
            out[name] = (data, fine, coarse)
            payload = {"data": data, "fine_labels": fine, "coarse_labels": coarse, "filenames": ["x"] * n}
            _add_member(tar, f"cifar-100-python/{name}", _py2_style_pickle(payload))
        meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": ["c"] * 20}
        _add_member(tar, "cifar-100-python/meta", _py2_style_pickle(meta))
    return out


def forbid_network(monkeypatch) -> None:
    """Make any attempt to open a connection, call pooch or MNE's Sleep-EDF fetcher fail the test."""
    import socket

    import pooch
    from mne.datasets.sleep_physionet import age

    def boom(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(pooch, "retrieve", boom)
    monkeypatch.setattr(age, "fetch_data", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setattr(socket, "create_connection", boom)


# ------------------------------------------------------------------------------------------- UCR .ts
TS_HEADER = """# synthetic UCR/UEA file in the archive's format
@problemName Sleep
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength {length}
@classLabel true {classes}
@data
"""


def ts_series(n: int, length: int = 178, seed: int = 0, n_classes: int = 5):
    """``n`` random series (values with 3 decimals, exactly representable in text) and labels cycling classes."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(0, 1, size=(n, length)), 3)
    labels = [str(i % n_classes) for i in range(n)]
    return x, labels


def write_ts(path: Path, x: np.ndarray, labels, classes=("0", "1", "2", "3", "4")) -> Path:
    """Write univariate series ``x`` (n, T) with ``labels`` as a ``.ts`` file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(f"{v:.3f}" for v in row) + f":{lab}" for row, lab in zip(x, labels, strict=True)]
    path.write_text(TS_HEADER.format(length=x.shape[1], classes=" ".join(classes)) + "\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------ Sleep-EDF
#: real sleep-cassette file names (from MNE's table) for the fixture recordings: (subject, night) -> names
SLEEP_EDF_NAMES = {
    (0, 1): ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"),
    (0, 2): ("SC4002E0-PSG.edf", "SC4002EC-Hypnogram.edf"),
    (1, 1): ("SC4011E0-PSG.edf", "SC4011EH-Hypnogram.edf"),
    (2, 1): ("SC4021E0-PSG.edf", "SC4021EH-Hypnogram.edf"),
    (3, 1): ("SC4031E0-PSG.edf", "SC4031EC-Hypnogram.edf"),
    (4, 1): ("SC4041E0-PSG.edf", "SC4041EC-Hypnogram.edf"),
}

#: (onset s, duration s, description) of the fixture hypnogram; the PSG lasts RECORD_SECONDS
HYPNOGRAM = [
    (0, 120, "Sleep stage W"),  # 4 x W
    (120, 30, "Sleep stage 1"),  # N1
    (150, 90, "Sleep stage 2"),  # 3 x N2
    (240, 30, "Sleep stage 3"),  # N3
    (270, 30, "Sleep stage 4"),  # N3 (stage 4 merged)
    (300, 30, "Movement time"),  # dropped
    (330, 60, "Sleep stage R"),  # 2 x REM
    (390, 30, "Sleep stage ?"),  # dropped
    (420, 120, "Sleep stage W"),  # 4 x W
    (540, 15, "Sleep stage 2"),  # shorter than 30 s: no epoch
    (555, 345, "Sleep stage ?"),  # runs past the end of the recording, as in the real files
]
RECORD_SECONDS = 600
EXPECTED_LABELS = [0, 0, 0, 0, 1, 2, 2, 2, 3, 3, 4, 4, 0, 0, 0, 0]
EXPECTED_ONSETS = [0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 330, 360, 420, 450, 480, 510]


def write_sleep_edf_pair(
    folder: Path, psg_name: str, hyp_name: str, *, offset_uv: float = 0.0, seed: int = 0, hypnogram=None
) -> np.ndarray:
    """A PSG (EDF, 30-s data records, the sleep-cassette channels; EEG at 100 Hz) and its EDF+ hypnogram.

    The ``EEG Fpz-Cz`` signal is noise (std 5 uV) around ``offset_uv``, so tests can tell subjects apart.
    Returns that signal in microvolts, ``(RECORD_SECONDS * 100,)``.
    """
    import datetime

    import edfio

    rng = np.random.default_rng(seed)
    n100, n1 = RECORD_SECONDS * 100, RECORD_SECONDS
    eeg = np.clip(offset_uv + rng.normal(0, 5, n100), -190, 190)
    uv = {"physical_dimension": "uV", "physical_range": (-200, 200)}
    signals = [
        edfio.EdfSignal(eeg, 100, label="EEG Fpz-Cz", **uv),
        edfio.EdfSignal(rng.normal(0, 5, n100), 100, label="EEG Pz-Oz", **uv),
        edfio.EdfSignal(rng.normal(0, 5, n100), 100, label="EOG horizontal", **uv),
        edfio.EdfSignal(rng.normal(0, 1, n1), 1, label="Resp oro-nasal", physical_range=(-10, 10)),
        edfio.EdfSignal(rng.normal(0, 1, n1), 1, label="EMG submental", **uv),
        edfio.EdfSignal(np.full(n1, 37.0), 1, label="Temp rectal", physical_range=(30, 40)),
        edfio.EdfSignal(np.zeros(n1), 1, label="Event marker", physical_range=(-1, 1)),
    ]
    recording = edfio.Recording(startdate=datetime.date(1989, 4, 24))
    start = datetime.time(16, 13)
    folder.mkdir(parents=True, exist_ok=True)
    edfio.Edf(signals, recording=recording, starttime=start, data_record_duration=30).write(folder / psg_name)
    annotations = [edfio.EdfAnnotation(o, d, t) for o, d, t in (hypnogram or HYPNOGRAM)]
    edfio.Edf([], recording=recording, starttime=start, annotations=annotations).write(folder / hyp_name)
    return eeg


def write_sleep_edf_fixture(root: Path, recordings=((0, 1), (1, 1), (2, 1)), hypnograms=None) -> dict:
    """Sleep-EDF fixture recordings under ``<root>/sleep-edf/physionet-sleep-data/`` (MNE's layout).

    Subject ``s`` has EEG around ``10 * s`` uV. Returns ``{(subject, night): eeg signal in uV}``.
    """
    folder = Path(root) / "sleep-edf" / "physionet-sleep-data"
    out = {}
    for subject, night in recordings:
        psg, hyp = SLEEP_EDF_NAMES[(subject, night)]
        hypnogram = (hypnograms or {}).get((subject, night))
        out[(subject, night)] = write_sleep_edf_pair(
            folder, psg, hyp, offset_uv=10.0 * subject, seed=100 * subject + night, hypnogram=hypnogram
        )
    return out
