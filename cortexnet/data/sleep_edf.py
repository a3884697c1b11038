"""Raw PhysioNet Sleep-EDF (sleep-cassette) through MNE (``sleep-edf``): 30-s EEG epochs, split by subject.

Each (PSG, hypnogram) pair is read once with MNE (``read_raw_edf`` on the chosen channels, ``read_annotations``,
``events_from_annotations(chunk_duration=30)``) and its epochs are cached as ``.npz``; resampling, normalisation
and the subject split are applied on top of the cache. Labels: W, N1, N2, N3 (R&K stages 3 and 4), REM; "?" and
"Movement time" are dropped. Not to be confused with the UCR "Sleep" data (``sleep-ucr``).

Cost: an epoch at 100 Hz is 3,000 time steps — for a recurrent network every step is a full recurrent update,
so see ``cortexnet.data.sequence_cost`` and the ``seq_len`` option before training a large network on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cache import (
    fingerprint,
    load_npz,
    read_manifest,
    read_npz_meta,
    save_npz,
    update_manifest,
    warn_rebuild,
)
from .edf import check_edf_complete, read_edf_annotations
from .errors import DataError
from .remote import describe_failure, file_digest
from .root import fetch_command
from .sources import DATASETS, DatasetLoader
from .splits import SourceData

logger = logging.getLogger(__name__)

NAME = "sleep-edf"
DATA_SUBDIR = "physionet-sleep-data"  # where MNE's fetch_data(path=<root>/sleep-edf) puts the files
EPOCH_SECONDS = 30.0
CLASS_NAMES = ("W", "N1", "N2", "N3", "REM")
#: hypnogram annotation → class index; R&K stages 3 and 4 are merged into N3 (AASM)
STAGE_CLASSES: dict[str, int] = {
    "Sleep stage W": 0,
    "Sleep stage 1": 1,
    "Sleep stage 2": 2,
    "Sleep stage 3": 3,
    "Sleep stage 4": 3,
    "Sleep stage R": 4,
}
DROPPED_DESCRIPTIONS = ("Sleep stage ?", "Movement time")
#: sleep-cassette subjects 0..82 except these five, which are not in the corpus
MISSING_SUBJECTS = frozenset({39, 68, 69, 78, 79})
AVAILABLE_SUBJECTS = tuple(s for s in range(83) if s not in MISSING_SUBJECTS)
#: (subject, night) pairs absent from the corpus (recording hardware failed)
MISSING_RECORDINGS = frozenset({(13, 2), (36, 1), (52, 1)})
_PSG_NAME = re.compile(r"^SC4(\d\d)([12])[A-Z]0-PSG\.edf$")
_CACHE_FORMAT = 2  # 2: strict hypnogram check, sources with ctime/inode, sha1 hashes
#: the name of a per-recording cache file: the PSG's first eight characters, "-", a hash of the parameters
_CACHE_NAME = re.compile(r"^SC4\d\d[12][A-Z]\d-[0-9a-f]{10}\.npz$")
MANIFEST_NAME = "manifest.json"
_DEFAULTS: dict[str, Any] = {
    "subjects": None,
    "recordings": (1, 2),
    "channels": ("EEG Fpz-Cz",),
    "crop_wake_minutes": 30.0,
    "seq_len": None,
    "normalize": "recording",
    "test_fraction": 0.3,
    "test_subjects": None,
    "split_seed": 0,
    "verify_checksums": False,
}
NORMALIZATIONS = ("recording", "epoch", "none")


# ----------------------------------------------------------------------------------------------- options
def _int_list(key: str, value: Any, allowed: Sequence[int] | None = None) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"{NAME} option {key} must be a non-empty list of integers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"{NAME} option {key} must hold integers, got {v!r}")
        out.append(int(v))
    if allowed is not None:
        bad = sorted(set(out) - set(allowed))
        if bad:
            hint = (
                f"sleep-cassette subjects are 0..82 except {sorted(MISSING_SUBJECTS)}"
                if "subjects" in key
                else f"allowed: {list(allowed)}"
            )
            raise ValueError(f"{NAME} option {key}: {bad} not available; {hint}")
    return tuple(sorted(set(out)))


def parse_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``sleep-edf`` options and fill defaults (no I/O). Keys:

    - ``subjects``: subject numbers (0..82, not 39/68/69/78/79); default ``None`` = every recording found on
      disk (with a download: all 78 subjects, about 7 GB).
    - ``recordings``: nights, ``(1, 2)`` (default), ``(1,)`` or ``(2,)``.
    - ``channels``: EDF channel labels, default ``("EEG Fpz-Cz",)`` (the paper's single input); F = their number.
    - ``crop_wake_minutes``: keep this much wake before the first and after the last sleep epoch (default 30,
      common practice); ``None`` keeps the whole recording.
    - ``seq_len``: resample each 30-s epoch to this many steps (``scipy.signal.resample_poly``, anti-aliased);
      default ``None`` keeps the native 3,000 samples at 100 Hz.
    - ``normalize``: ``"recording"`` (default: z-score each channel with the mean/std of its recording's kept
      epochs), ``"epoch"`` (z-score each epoch and channel on its own) or ``"none"`` (microvolts).
    - ``test_fraction`` (default 0.3) and ``split_seed`` (default 0): the subject-wise test split —
      ``round(test_fraction · n_subjects)`` subjects (at least 1, leaving at least 1) drawn with ``split_seed``;
      or ``test_subjects``: an explicit list of test subjects.
    - ``verify_checksums``: also check each EDF file's SHA-1 against MNE's table of the PhysioNet files on every
      load (hashes memoised within a process; about 7 s for all 153 recordings), and use a cached entry only if it
      was built from files with those hashes (default ``False``: MNE verifies the SHA-1 at download; files are
      always checked structurally when (re)epoched — readable header, length as declared, well-formed hypnogram
      annotations, channels present).
    """
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown {NAME} option(s) {unknown}; allowed: {sorted(_DEFAULTS)}")
    out = {**_DEFAULTS, **opts}
    if out["subjects"] is not None:
        out["subjects"] = _int_list("subjects", out["subjects"], AVAILABLE_SUBJECTS)
    out["recordings"] = _int_list("recordings", out["recordings"], (1, 2))
    channels = out["channels"]
    if isinstance(channels, str):
        channels = (channels,)
    if (
        not isinstance(channels, Sequence)
        or not channels
        or not all(isinstance(c, str) and c for c in channels)
    ):
        raise ValueError(
            f"{NAME} option channels must be a non-empty list of channel labels, got {channels!r}"
        )
    if len(set(channels)) != len(channels):
        raise ValueError(f"{NAME} option channels lists a channel twice: {list(channels)}")
    out["channels"] = tuple(channels)
    crop = out["crop_wake_minutes"]
    if crop is not None and (
        isinstance(crop, bool) or not isinstance(crop, numbers.Real) or not math.isfinite(crop) or crop < 0
    ):
        raise ValueError(f"{NAME} option crop_wake_minutes must be a number >= 0 or None, got {crop!r}")
    out["crop_wake_minutes"] = None if crop is None else float(crop)
    seq_len = out["seq_len"]
    if seq_len is not None and (
        isinstance(seq_len, bool) or not isinstance(seq_len, numbers.Integral) or not 2 <= seq_len <= 100_000
    ):
        raise ValueError(
            f"{NAME} option seq_len must be an integer in [2, 100000] or None (native 3000), got {seq_len!r}"
        )
    if out["normalize"] not in NORMALIZATIONS:
        raise ValueError(
            f"{NAME} option normalize must be one of {list(NORMALIZATIONS)}, got {out['normalize']!r}"
        )
    frac = out["test_fraction"]
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 < frac < 1:
        raise ValueError(f"{NAME} option test_fraction must lie in (0, 1), got {frac!r}")
    if out["test_subjects"] is not None:
        out["test_subjects"] = _int_list("test_subjects", out["test_subjects"], AVAILABLE_SUBJECTS)
    seed = out["split_seed"]
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{NAME} option split_seed must be a non-negative integer, got {seed!r}")
    if not isinstance(out["verify_checksums"], bool):
        raise ValueError(
            f"{NAME} option verify_checksums must be True or False, got {out['verify_checksums']!r}"
        )
    return out


# ----------------------------------------------------------------------------------------- one recording
@dataclass(frozen=True)
class Recording:
    """One night of one subject: the PSG file and its hypnogram."""

    subject: int
    night: int
    psg: Path
    hypnogram: Path


@dataclass(frozen=True)
class RecordingEpochs:
    """The labelled 30-s epochs of one recording.

    Attributes:
        x: float32 ``(n, L, C)`` signal in microvolts; ``L = 30 · sfreq`` samples, ``C`` channels.
        y: int64 ``(n,)`` class indices into ``CLASS_NAMES``.
        onset_s: float64 ``(n,)`` epoch start, seconds from the start of the recording.
        sfreq: sampling frequency in Hz.
        report: counts of what was dropped and why (JSON-serialisable).
    """

    x: np.ndarray
    y: np.ndarray
    onset_s: np.ndarray
    sfreq: float
    report: dict[str, Any] = field(default_factory=dict)


def _sha1(path: Path) -> str:
    """SHA-1 of a file (PhysioNet / MNE publish SHA-1 for these files), remembered per process while the file
    is unchanged (:func:`~cortexnet.data.remote.file_digest`)."""
    return file_digest(path, "sha1")


def _mne_records() -> list[dict[str, str]]:
    """The rows (subject, night, record type, sha, fname, ...) of the sleep-cassette table shipped with MNE."""
    import csv

    try:
        from mne.datasets.sleep_physionet._utils import AGE_SLEEP_RECORDS
    except ImportError as exc:  # the table's location is MNE-internal and may move
        raise DataError(
            f"this MNE version does not expose the Sleep-EDF checksum table ({exc}); use verify_checksums=False"
        ) from exc
    with open(AGE_SLEEP_RECORDS, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def known_sha1() -> dict[str, str]:
    """File name → SHA-1 of every sleep-cassette file, from the table shipped with MNE."""
    return {row["fname"]: row["sha"] for row in _mne_records()}


def _delete_invalid_local_files(
    folder: Path, subjects: Sequence[int], nights: Sequence[int], verify: bool
) -> None:
    """Before a download: delete the selection's files in ``folder`` that fail the structural checks (or, with
    ``verify``, their SHA-1), because MNE's ``fetch_data`` skips every file already present, good or bad."""
    try:
        table = _mne_records()
    except DataError as exc:
        logger.warning("%s: cannot check the files already present before fetching (%s)", NAME, exc)
        return
    wanted = set(subjects)
    for row in table:
        path = folder / row["fname"]
        if int(row["subject"]) not in wanted or int(row["night"]) not in nights or not path.is_file():
            continue
        try:
            check_edf_complete(path)
            if row["record type"] == "Hypnogram":
                read_edf_annotations(path)
            if verify and _sha1(path) != row["sha"]:
                raise DataError(f"{path} has SHA-1 {_sha1(path)}, expected {row['sha']}")
        except DataError as exc:
            logger.warning("%s: deleting %s to fetch it again: %s", NAME, path, exc)
            path.unlink()


def _verify_sha1(rec: Recording) -> dict[str, str]:
    """Check both files of ``rec`` against MNE's SHA-1 table; return ``{"psg": sha1, "hypnogram": sha1}``."""
    table = known_sha1()
    out = {}
    for part, path in (("psg", rec.psg), ("hypnogram", rec.hypnogram)):
        expected = table.get(path.name)
        if expected is None:
            raise DataError(f"{path}: no SHA-1 known for this file name; it is not a sleep-cassette file")
        actual = _sha1(path)
        out[part] = actual
        if actual != expected:
            raise DataError(
                f"{path} has SHA-1 {actual}, expected {expected}: corrupt or not the PhysioNet file. Delete it and "
                f"fetch again with: {fetch_command(NAME, path.parent.parent.parent, ['--subjects', str(rec.subject)])}"
            )
    return out


def annotation_gaps(onset: np.ndarray, duration: np.ndarray, tol_s: float = 0.5) -> list[tuple[float, float]]:
    """``(start s, length s)`` of every stretch from time 0 to the last annotation's end that no annotation covers.

    ``onset`` and ``duration`` are ``(n,)`` arrays in seconds from the start of the recording.
    """
    if len(onset) == 0:
        return []
    order = np.argsort(onset, kind="stable")
    gaps, covered = [], 0.0
    for start, length in zip(onset[order], duration[order], strict=True):
        if start - covered > tol_s:
            gaps.append((covered, float(start - covered)))
        covered = max(covered, float(start + length))
    return gaps


def epoch_recording(
    psg: Path,
    hypnogram: Path,
    *,
    channels: Sequence[str] = ("EEG Fpz-Cz",),
    crop_wake_minutes: float | None = 30.0,
) -> RecordingEpochs:
    """Read one (PSG, hypnogram) pair with MNE and cut it into labelled 30-s epochs.

    Follows DATA.md: ``mne.io.read_raw_edf(psg, include=channels)``, ``mne.read_annotations(hypnogram)``, then
    ``mne.events_from_annotations(raw, event_id=..., chunk_duration=30.0)``: one epoch per whole 30 s of each
    stage annotation (a partial window at an annotation's or the recording's end is dropped). "?" and "Movement
    time" are dropped; stages 3 and 4 both become N3. With ``crop_wake_minutes`` only epochs from that long before
    the first sleep epoch to that long after the end of the last one are kept (no sleep at all → no epochs).

    Returns ``RecordingEpochs`` with ``x`` float32 ``(n, 30·sfreq, len(channels))`` in microvolts. A truncated or
    unreadable file, a hypnogram with a malformed annotation or a data record without one (e.g. zeroed), or a
    missing channel, raises ``DataError`` naming the file.
    """
    import mne

    header = check_edf_complete(psg)
    check_edf_complete(hypnogram)
    n_stored = len(read_edf_annotations(hypnogram))  # strict: a damaged annotation is a DataError, not a gap
    absent = [c for c in channels if c not in header.labels]
    if absent:
        raise DataError(f"{psg} has no channel(s) {absent}; its channels are {list(header.labels)}")
    try:
        raw = mne.io.read_raw_edf(psg, include=list(channels), preload=True, verbose="error")
    except (
        Exception
    ) as exc:  # MNE raises many types for bad files; the user needs the file name, not the trace
        raise DataError(f"MNE cannot read PSG file {psg}: {type(exc).__name__}: {exc}") from exc
    try:
        annotations = mne.read_annotations(hypnogram)
    except Exception as exc:
        raise DataError(f"MNE cannot read hypnogram {hypnogram}: {type(exc).__name__}: {exc}") from exc
    if len(annotations) != n_stored:
        raise DataError(
            f"MNE read {len(annotations)} annotation(s) from hypnogram {hypnogram}, but the file holds {n_stored}; "
            "the file is damaged or in a form MNE misreads"
        )
    gaps = annotation_gaps(np.asarray(annotations.onset), np.asarray(annotations.duration))
    if gaps:
        # Sleep-EDF hypnograms tile the night from its start; every annotation parsed (checked above), so a gap
        # means a well-formed file that leaves time unlabelled: reported, not fatal
        logger.warning(
            "%s: the annotations leave %d gap(s) totalling %.0f s (first at %.0f s); the hypnogram may be "
            "incomplete — epochs in the gaps have no label and are left out",
            hypnogram, len(gaps), sum(g[1] for g in gaps), gaps[0][0],
        )  # fmt: skip
    try:
        raw.set_annotations(annotations, emit_warning=False)  # crops annotations to the recorded span
    except Exception as exc:
        raise DataError(f"the annotations of {hypnogram} do not fit {psg}: {exc}") from exc

    sfreq = float(raw.info["sfreq"])
    n_samples = round(EPOCH_SECONDS * sfreq)
    descriptions = [str(d) for d in raw.annotations.description]
    report: dict[str, Any] = {
        "dropped_seconds": {
            d: float(
                sum(
                    dur for desc, dur in zip(descriptions, raw.annotations.duration, strict=True) if desc == d
                )
            )
            for d in sorted(set(descriptions) - set(STAGE_CLASSES))
        },
        "annotation_gaps": [[float(a), float(b)] for a, b in gaps],
    }
    unknown = sorted(set(descriptions) - set(STAGE_CLASSES) - set(DROPPED_DESCRIPTIONS))
    if unknown:
        logger.warning("%s: unexpected annotation(s) %s ignored", hypnogram, unknown)
    present = sorted(set(descriptions) & set(STAGE_CLASSES))
    empty = np.zeros((0, n_samples, len(channels)), np.float32)
    if not present:
        report["reason"] = "no sleep-stage annotations inside the recording"
        return RecordingEpochs(empty, np.zeros(0, np.int64), np.zeros(0), sfreq, report)
    event_id = {d: i + 1 for i, d in enumerate(present)}
    code_to_class = np.zeros(len(present) + 1, np.int64)
    for d, code in event_id.items():
        code_to_class[code] = STAGE_CLASSES[d]
    try:
        events, _ = mne.events_from_annotations(
            raw, event_id=event_id, chunk_duration=EPOCH_SECONDS, verbose="error"
        )
    except Exception as exc:
        raise DataError(f"cannot cut {hypnogram} into 30-s epochs: {type(exc).__name__}: {exc}") from exc
    starts = events[:, 0] - raw.first_samp
    order = np.argsort(starts, kind="stable")
    starts, y = starts[order], code_to_class[events[order, 2]]
    inside = (starts >= 0) & (starts + n_samples <= raw.n_times)
    report["beyond_end"] = int((~inside).sum())
    starts, y = starts[inside], y[inside]
    if crop_wake_minutes is not None:
        asleep = np.flatnonzero(y != 0)
        if len(asleep) == 0:
            keep = np.zeros(len(y), bool)
            report["reason"] = "no sleep epochs, so the wake-cropping window is empty"
        else:
            margin = round(crop_wake_minutes * 60 * sfreq)
            first, last_end = starts[asleep[0]], starts[asleep[-1]] + n_samples
            keep = (starts >= first - margin) & (starts + n_samples <= last_end + margin)
        report["cropped_wake"] = int((~keep).sum())
        starts, y = starts[keep], y[keep]
    data = raw.get_data(picks=list(channels), units="uV")  # (C, n_times) float64
    window = starts[:, None] + np.arange(n_samples)[None, :]  # (n, L) sample indices
    x = data[:, window].transpose(1, 2, 0).astype(np.float32)  # (C, n, L) -> (n, L, C)
    if len(y) == 0 and "reason" not in report:
        report["reason"] = "no complete 30-s sleep-stage epoch"
    return RecordingEpochs(x, y.astype(np.int64), starts / sfreq, sfreq, report)


# ------------------------------------------------------------------------------------- files and cache
def find_recordings(root: Path, subjects: Sequence[int] | None, recordings: Sequence[int]) -> list[Recording]:
    """The (PSG, hypnogram) pairs under ``<root>/sleep-edf/physionet-sleep-data/`` for the selection.

    ``subjects=None`` takes every pair present. The hypnogram's name shares the PSG's first seven characters
    (``SC4ssNE``); its last letter varies per recording, so it is found, not derived. Missing files raise
    ``DataError`` naming them and the fetch command.
    """
    folder = root / NAME / DATA_SUBDIR
    found: dict[tuple[int, int], Recording] = {}
    problems = []
    for psg in sorted(folder.glob("SC4*-PSG.edf")) if folder.is_dir() else []:
        match = _PSG_NAME.match(psg.name)
        if not match:
            continue
        subject, night = int(match.group(1)), int(match.group(2))
        hyps = sorted(folder.glob(f"{psg.name[:7]}?-Hypnogram.edf"))
        if len(hyps) != 1:
            problems.append(
                f"{psg} has {'no' if not hyps else 'more than one'} hypnogram "
                f"{folder / (psg.name[:7] + '?-Hypnogram.edf')}"
            )
            continue
        found[(subject, night)] = Recording(subject, night, psg, hyps[0])
    wanted_subjects = sorted({s for s, _ in found}) if subjects is None else list(subjects)
    selected, missing = [], []
    for subject in wanted_subjects:
        for night in recordings:
            if (subject, night) in MISSING_RECORDINGS:
                logger.info("%s: subject %d has no night %d in the corpus; skipped", NAME, subject, night)
                continue
            if (subject, night) in found:
                selected.append(found[(subject, night)])
            elif subjects is not None:
                missing.append((subject, night))
    extra = ["--subjects", *[str(s) for s in sorted({s for s, _ in missing})]] if missing else []
    if missing or problems or not selected:
        parts = list(problems)
        if missing:
            names = ", ".join(f"{folder}/SC4{s:02d}{n}E0-PSG.edf" for s, n in missing[:4])
            parts.append(
                f"{len(missing)} recording(s) not found (subject, night): {missing[:10]} — e.g. {names} (the PSG "
                f"letter E/F/G and the hypnogram suffix vary)"
            )
        if not selected and not parts:
            parts.append(f"no Sleep-EDF recordings under {folder}")
            extra = ["--subjects", "0", "1", "2", "3"]
        raise DataError(
            f"{NAME}: {'; '.join(parts)}. Fetch them with: {fetch_command(NAME, root, extra)} "
            "(or pass download=True / --download)"
        )
    return selected


def _epochs_cache_problem(
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], rec: Recording, n_channels: int
) -> str | None:
    """Why a current (same parameters and sources) cache entry cannot be what ``epoch_recording`` returned for
    ``rec``: ``x`` float32 ``(n, 30 * sfreq, n_channels)`` and finite, ``y`` int64 ``(n,)`` class indices,
    ``onset_s`` float64 ``(n,)`` finite and >= 0, and ``meta``'s sfreq, epoch count, class counts, subject, night
    and report agreeing with them. ``None`` when it is consistent."""
    x, y, onset = arrays["x"], arrays["y"], arrays["onset_s"]
    if x.dtype != np.float32 or x.ndim != 3 or x.shape[2] != n_channels:
        return f"x is {x.dtype} of shape {x.shape}, expected float32 (n, samples, {n_channels})"
    n = len(x)
    if y.dtype != np.int64 or y.shape != (n,):
        return f"y is {y.dtype} of shape {y.shape}, expected int64 ({n},)"
    if onset.dtype != np.float64 or onset.shape != (n,):
        return f"onset_s is {onset.dtype} of shape {onset.shape}, expected float64 ({n},)"
    sfreq = meta.get("sfreq")
    if (
        isinstance(sfreq, bool)
        or not isinstance(sfreq, (int, float))
        or not math.isfinite(sfreq)
        or sfreq <= 0
    ):
        return f"its meta has sfreq {sfreq!r}, not a positive number"
    if x.shape[1] != round(EPOCH_SECONDS * sfreq):
        return f"epochs of {x.shape[1]} samples, but 30 s at {sfreq} Hz is {round(EPOCH_SECONDS * sfreq)}"
    if type(meta.get("n_epochs")) is not int or meta["n_epochs"] != n:
        return f"{n} epochs, its meta says {meta.get('n_epochs')!r}"
    if n and (int(y.min()) < 0 or int(y.max()) >= len(CLASS_NAMES)):
        return f"labels outside 0..{len(CLASS_NAMES) - 1}"
    counts = np.bincount(y, minlength=len(CLASS_NAMES)).tolist()
    if meta.get("class_counts") != counts:
        return f"class counts {counts}, its meta says {meta.get('class_counts')!r}"
    if (meta.get("subject"), meta.get("night")) != (rec.subject, rec.night):
        return (
            f"its meta names subject {meta.get('subject')!r} night {meta.get('night')!r}, not {rec.psg.name}"
        )
    if not isinstance(meta.get("report"), dict):
        return "its meta has no report object"
    if not np.isfinite(onset).all() or (n and float(onset.min()) < 0):
        return "onsets that are not finite times >= 0"
    if not np.isfinite(x).all():
        return "non-finite samples in x"
    return None


def _entry_from_meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A manifest entry rebuilt from a cache file's own ``meta``; ``None`` when that lacks what an entry needs."""
    if not isinstance(meta, Mapping) or not isinstance(meta.get("params"), dict):
        return None
    sources = meta.get("sources")
    names = {}
    for part in ("psg", "hypnogram"):
        source = sources.get(part) if isinstance(sources, dict) else None
        if not isinstance(source, dict) or not isinstance(source.get("name"), str):
            return None
        names[part] = source["name"]
    return {**meta, **names}


def _entry_problem(name: str, entry: Mapping[str, Any]) -> str | None:
    if not _CACHE_NAME.match(name):
        return f"entry name {name!r} is not a cache file name"
    if not isinstance(entry.get("psg"), str):
        return f"entry {name!r} names no PSG file"
    if not isinstance(entry.get("sources"), dict) or not isinstance(entry.get("params"), dict):
        return f"entry {name!r} has no sources/params objects"
    return None


def _reconciled_manifest(cache_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The cache manifest's entries checked against the cache files on disk, and the names to drop from it.

    A missing or damaged manifest (unreadable, truncated, wrong types, an entry malformed; a damaged one is
    warned about) is never trusted: every cache file it would have governed is re-validated from its own
    ``meta`` (only that member is read) and the entry rebuilt from it, as is every file the manifest lacks; a
    file whose ``meta`` is unreadable is deleted with a warning (it is rebuilt when next needed). Entries whose
    files are gone are dropped. Caches are never *served* on the manifest's word: each one that is loaded is
    checked in full against its sources and its own meta (:func:`_cached_epochs`).
    """
    path = cache_dir / MANIFEST_NAME
    entries, damage = read_manifest(path)
    on_disk = (
        sorted(p.name for p in cache_dir.glob("*.npz") if _CACHE_NAME.match(p.name))
        if cache_dir.is_dir()
        else []
    )
    if damage is None and entries is not None:
        bad = [problem for name, entry in entries.items() if (problem := _entry_problem(name, entry))]
        if bad:
            damage = bad[0] if len(bad) == 1 else f"{bad[0]}, and {len(bad) - 1} more"
    if damage is not None:
        logger.warning(
            "cache manifest %s is damaged (%s); not trusting it: re-validating the %d cache file(s) in %s from "
            "their own metadata (unusable ones are rebuilt) and rewriting it",
            path,
            damage,
            len(on_disk),
            cache_dir,
        )
        known: dict[str, dict[str, Any]] = {}
    else:
        known = dict(entries or {})
        if entries is None and on_disk:
            logger.info(
                "%s: no manifest; re-validating %d cache file(s) from their own metadata",
                cache_dir,
                len(on_disk),
            )
    drop = [name for name in (entries or {}) if name not in on_disk]  # gone, or never a cache file name
    for name in drop:
        known.pop(name, None)
    for name in on_disk:
        if name in known:
            continue
        entry = _entry_from_meta(read_npz_meta(cache_dir / name))
        if entry is None:
            logger.warning(
                "cache file %s is unreadable or has no usable metadata; deleting it (it will be rebuilt when "
                "needed)",
                cache_dir / name,
            )
            try:
                (cache_dir / name).unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("cannot delete %s (%s)", cache_dir / name, exc)
            drop.append(name)
            continue
        if damage is None:
            logger.info(
                "cache file %s was missing from %s; entry rebuilt from its metadata", cache_dir / name, path
            )
        known[name] = entry
    return known, drop


def _cached_epochs(
    rec: Recording, cache_dir: Path, channels: Sequence[str], crop: float | None, verify: bool
) -> tuple[RecordingEpochs, str, dict[str, Any]]:
    """Epochs of ``rec`` from the cache when it matches the sources and parameters, else from MNE (then cached).

    With ``verify`` both files are hashed (memoised per process) and checked against MNE's table on every call,
    cache hit or not, and a cache entry is used only if it was built from files with these very hashes.
    """
    params = {"format": _CACHE_FORMAT, "channels": list(channels), "crop_wake_minutes": crop}
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    cache_path = cache_dir / f"{rec.psg.name[:8]}-{key}.npz"
    sources = {"psg": fingerprint(rec.psg), "hypnogram": fingerprint(rec.hypnogram)}
    sha1 = _verify_sha1(rec) if verify else None
    cached = load_npz(cache_path, required=("x", "y", "onset_s"))
    if cached is not None:
        meta, arrays = cached
        if (
            meta.get("params") == params
            and meta.get("sources") == sources
            and (not verify or meta.get("sha1") == sha1)
        ):
            problem = _epochs_cache_problem(meta, arrays, rec, len(channels))
            if problem is None:
                epochs = RecordingEpochs(
                    arrays["x"], arrays["y"], arrays["onset_s"], float(meta["sfreq"]), meta["report"]
                )
                return epochs, cache_path.name, meta
            warn_rebuild(cache_path, problem)
    logger.info("epoching %s with MNE (cached afterwards in %s)", rec.psg.name, cache_path)
    epochs = epoch_recording(rec.psg, rec.hypnogram, channels=channels, crop_wake_minutes=crop)
    meta = {
        "params": params,
        "sources": sources,
        "sha1": sha1,
        "subject": rec.subject,
        "night": rec.night,
        "sfreq": epochs.sfreq,
        "n_epochs": len(epochs.y),
        "class_counts": np.bincount(epochs.y, minlength=len(CLASS_NAMES)).tolist(),
        "report": epochs.report,
    }
    try:
        save_npz(cache_path, meta, x=epochs.x, y=epochs.y, onset_s=epochs.onset_s)
    except OSError as exc:  # a read-only data root still works, only without the cache
        logger.warning("cannot write cache %s (%s); MNE will run again next time", cache_path, exc)
    return epochs, cache_path.name, meta


def _stale_entries(
    known: Mapping[str, Any], cache_dir: Path, rec: Recording, current: str, sources: Mapping[str, Any]
) -> list[str]:
    """Delete the cache files of ``rec`` that the manifest says were built from other versions of its files (or
    an older cache format), which can never be used again; return their names. Other parameter sets built from
    the current files are kept."""
    stale = []
    for name, entry in known.items():
        if name == current or not isinstance(entry, dict) or entry.get("psg") != rec.psg.name:
            continue
        params = entry.get("params") if isinstance(entry.get("params"), dict) else {}
        if entry.get("sources") == sources and params.get("format") == _CACHE_FORMAT:
            continue
        path = cache_dir / name
        if path.parent != cache_dir or path.suffix != ".npz":  # only ever a cache file of this folder
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("cannot delete stale cache file %s (%s)", path, exc)
            continue
        logger.info("deleted stale cache file %s (built from an older version of %s)", path, rec.psg.name)
        stale.append(name)
    return stale


def _resample(x: np.ndarray, seq_len: int) -> np.ndarray:
    """Resample ``(n, L, C)`` epochs to ``(n, seq_len, C)`` with a polyphase anti-aliasing filter."""
    from scipy.signal import resample_poly

    n, length, c = x.shape
    if n == 0:
        return np.zeros((0, seq_len, c), np.float32)
    g = math.gcd(seq_len, length)
    # up/down = seq_len/L exactly, so the output has ceil(L * up / down) = seq_len samples
    out = resample_poly(x, seq_len // g, length // g, axis=1)
    return np.ascontiguousarray(out[:, :seq_len], dtype=np.float32)


def _normalize_into(x: np.ndarray, out: np.ndarray, how: str, where: str) -> None:
    """Write ``x`` (n, L, C) into ``out`` (same shape, float32), z-scored per recording or epoch, or as it is."""
    if how == "none" or len(x) == 0:
        out[...] = x
        return
    axes = (0, 1) if how == "recording" else (1,)
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x.std(axis=axes, keepdims=True, dtype=np.float64)
    flat = std < 1e-6  # a flat channel (electrode off) has no scale to divide by
    if flat.any():
        logger.warning(
            "%s: %d flat channel/epoch block(s) (std < 1e-6 uV) are only centred", where, int(flat.sum())
        )
    # computed in float64 chunk by chunk inside the ufuncs, stored as float32: no full-size temporary
    np.subtract(x, mean, out=out, casting="unsafe")
    np.divide(out, np.where(flat, 1.0, std), out=out, casting="unsafe")


def _assemble(
    per_rec: list[tuple[Recording, np.ndarray, np.ndarray] | None],
    test_subjects: Sequence[int],
    seq_len: int,
    how: str,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{"train": (x, y, subject), "test": (x, y, subject)}`` from per-recording epochs, *consuming* ``per_rec``.

    Each side's output is allocated once and every recording is resampled and normalised straight into its slice,
    and its raw array is released from ``per_rec`` right after: the peak is about one copy of the data plus one
    recording (resampling, normalising and concatenating lists of arrays would hold it about three times).
    """
    test = set(test_subjects)
    side_of = ["test" if item is not None and item[0].subject in test else "train" for item in per_rec]
    out = {}
    for side in ("train", "test"):
        members = [i for i, s in enumerate(side_of) if s == side and per_rec[i] is not None]
        n = sum(len(per_rec[i][2]) for i in members)
        n_channels = per_rec[members[0]][1].shape[2] if members else 0
        x_out = np.empty((n, seq_len, n_channels), np.float32)
        y_out = np.empty(n, np.int64)
        g_out = np.empty(n, np.int64)
        at = 0
        for i in members:
            rec, x, y = per_rec[i]
            per_rec[i] = None  # drop the list's reference: the raw epochs are freed once ``x`` goes too
            if x.shape[1] != seq_len:
                x = _resample(x, seq_len)
            _normalize_into(x, x_out[at : at + len(y)], how, str(rec.psg))
            y_out[at : at + len(y)] = y
            g_out[at : at + len(y)] = rec.subject
            at += len(y)
            del x, y
        out[side] = (x_out, y_out, g_out)
    return out


# --------------------------------------------------------------------------------------------- loader
def load(root: Path, download: bool, options: Mapping[str, Any]) -> SourceData:
    """Load the selected Sleep-EDF recordings as ``(n, seq_len or 3000, C)`` float32 epochs, split by subject.

    Recordings without a usable epoch are reported (logged as warnings, listed in ``description`` and
    ``metadata["skipped_recordings"]``), never dropped silently. The training pool carries each epoch's subject
    as its group, so ``load_dataset`` draws validation subjects disjoint from the training ones.
    """
    if download:
        fetch(root, None, options)
    recs = find_recordings(root, options["subjects"], options["recordings"])
    cache_dir = root / NAME / "cache"
    channels, crop = options["channels"], options["crop_wake_minutes"]
    per_rec: list[tuple[Recording, np.ndarray, np.ndarray] | None] = []
    skipped, gapped, manifest, rec_meta = [], [], {}, []
    lengths = set()
    known, stale = _reconciled_manifest(cache_dir)
    for rec in recs:
        epochs, cache_name, meta = _cached_epochs(rec, cache_dir, channels, crop, options["verify_checksums"])
        manifest[cache_name] = {**meta, "psg": rec.psg.name, "hypnogram": rec.hypnogram.name}
        stale += _stale_entries(known, cache_dir, rec, cache_name, meta["sources"])
        rec_meta.append({"psg": rec.psg.name, "subject": rec.subject, "night": rec.night,
                         "n_epochs": meta["n_epochs"], "class_counts": meta["class_counts"]})  # fmt: skip
        if len(epochs.y) == 0:
            reason = epochs.report.get("reason", "no usable epochs")
            logger.warning("%s: %s has no usable epochs (%s); skipped", NAME, rec.psg, reason)
            skipped.append({"psg": rec.psg.name, "reason": reason})
            continue
        if epochs.report.get("annotation_gaps"):
            gapped.append(rec.hypnogram.name)
        lengths.add(epochs.x.shape[1])
        per_rec.append((rec, epochs.x, epochs.y))
    epochs = None  # per_rec holds the only reference to each recording's arrays (released by _assemble)
    try:
        update_manifest(cache_dir / MANIFEST_NAME, {**known, **manifest}, remove=stale)
    except OSError as exc:
        logger.warning("cannot write %s (%s)", cache_dir / MANIFEST_NAME, exc)
    if not per_rec:
        raise DataError(f"{NAME}: none of the {len(recs)} selected recordings has a usable epoch: {skipped}")
    if len(lengths) > 1 and options["seq_len"] is None:
        raise DataError(
            f"{NAME}: recordings have different epoch lengths {sorted(lengths)} (different sampling rates); set "
            "options seq_len to resample them all to one length"
        )
    seq_len = options["seq_len"] or lengths.pop()
    usable = sorted({rec.subject for rec, _, _ in per_rec})
    test_subjects = _choose_test_subjects(usable, options)
    train_subjects = [s for s in usable if s not in test_subjects]
    usable_recordings = len(per_rec)
    sides = _assemble(per_rec, test_subjects, seq_len, options["normalize"])  # empties per_rec
    (x_train, y_train, g_train), (x_test, y_test, _) = sides["train"], sides["test"]
    del sides
    import torch

    counts = {
        part: np.bincount(labels, minlength=len(CLASS_NAMES)).tolist()
        for part, labels in (("train pool", y_train), ("test", y_test))
    }
    logger.info("%s class counts %s: %s", NAME, list(CLASS_NAMES), counts)
    native = f"{seq_len} steps" + (
        "" if options["seq_len"] is None else " (resampled with scipy resample_poly)"
    )
    crop_text = "whole recordings" if crop is None else f"wake cropped to {crop:g} min around sleep"
    how = (
        f"explicit test subjects {test_subjects}" if options["test_subjects"] is not None
        else f"test fraction {options['test_fraction']:g}, seed {options['split_seed']}: test subjects {test_subjects}"
    )  # fmt: skip
    skipped_text = f"; skipped (no usable epochs): {[s['psg'] for s in skipped]}" if skipped else ""
    if gapped:
        logger.warning("%s: hypnograms with unannotated gaps (possibly damaged): %s", NAME, gapped)
        skipped_text += f"; hypnograms with unannotated gaps: {gapped}"
    description = (
        f"Sleep-EDF sleep-cassette (PhysioNet, via MNE) from {root / NAME / DATA_SUBDIR}: {usable_recordings} "
        f"recording(s) of {len(usable)} subject(s), channel(s) {list(channels)}, 30-s epochs as {native} x "
        f"{len(channels)} input(s), W/N1/N2/N3(stages 3+4)/REM ('?' and movement dropped), {crop_text}, "
        f"normalize={options['normalize']}; split by subject ({how}); class counts {counts}{skipped_text}"
    )
    return SourceData(
        train_x=torch.from_numpy(x_train),
        train_y=y_train,
        test_x=torch.from_numpy(x_test),
        test_y=y_test,
        n_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        description=description,
        train_groups=g_train,
        metadata={
            "subjects": {"train_pool": train_subjects, "test": test_subjects},
            "recordings": rec_meta,
            "skipped_recordings": skipped,
            "hypnograms_with_gaps": gapped,
            "class_counts_before_val": counts,
        },
    )


def _choose_test_subjects(usable: list[int], options: Mapping[str, Any]) -> list[int]:
    if options["test_subjects"] is not None:
        test = list(options["test_subjects"])
        absent = sorted(set(test) - set(usable))
        if absent:
            raise DataError(
                f"{NAME}: test subject(s) {absent} have no usable recording; subjects with data: {usable}"
            )
        if len(test) >= len(usable):
            raise ValueError(f"{NAME}: test_subjects {test} leave no training subject among {usable}")
        return sorted(test)
    if len(usable) < 2:
        raise DataError(
            f"{NAME}: a subject-wise split needs at least 2 subjects with usable epochs, found {usable}; select "
            "more subjects (options subjects=[...]) and fetch them"
        )
    rng = np.random.default_rng(options["split_seed"])
    n_test = min(max(1, math.floor(options["test_fraction"] * len(usable) + 0.5)), len(usable) - 1)
    return sorted(int(s) for s in rng.permutation(np.asarray(usable))[:n_test])


def fetch(root: Path, base_urls: Sequence[str] | None, options: Mapping[str, Any]) -> list[Path]:
    """Download the selected recordings with ``mne.datasets.sleep_physionet.age.fetch_data`` (SHA-1 verified).

    Only ever called on an explicit request (``download=True`` or the download command): ``fetch_data`` downloads
    whatever is missing on its own. Files already present are not fetched again unless they fail the structural
    checks (header, declared length, hypnogram annotations) or, with ``verify_checksums``, their SHA-1: those are
    deleted first and fetched again. ``subjects=None`` fetches all 78 subjects (about 7 GB). Failures (offline,
    HTTP error, checksum, disk) raise ``DataError`` naming the cause; only a connection failure is described as
    "no network".
    """
    import requests
    from mne.datasets.sleep_physionet import age

    subjects = options["subjects"]
    if subjects is None:
        subjects = AVAILABLE_SUBJECTS
        logger.warning(
            "%s: fetching all %d subjects (about 7 GB); pass subjects=[...] for fewer", NAME, len(subjects)
        )
    target = root / NAME
    target.mkdir(parents=True, exist_ok=True)
    _delete_invalid_local_files(
        target / DATA_SUBDIR, subjects, options["recordings"], options["verify_checksums"]
    )
    mirrors = tuple(base_urls) if base_urls is not None else (age.BASE_URL,)
    failures = []
    for base in mirrors:
        try:
            pairs = age.fetch_data(
                subjects=list(subjects),
                recording=list(options["recordings"]),
                path=str(target),
                base_url=base.rstrip("/"),
                on_missing="ignore",  # the corpus lacks three nights; find_recordings reports what is absent
                verbose="error",
            )
            return [Path(p) for pair in pairs for p in pair]
        except (ValueError, requests.RequestException, OSError) as exc:
            # the real cause first: only a connection failure is called "no network"; an HTTP error, a SHA-1
            # mismatch (MNE deletes the file) or a local OSError (disk full, permissions) is named as what it is
            failures.append(" ".join(describe_failure(base, exc, hash_name="SHA-1").split())[:300])
            logger.warning("download failed: %s", failures[-1])
    extra = [] if options["subjects"] is None else ["--subjects", *map(str, subjects)]
    raise DataError(
        f"download of {NAME} failed from every mirror: {'; '.join(failures)}. Retry with: "
        f"{fetch_command(NAME, root, extra)}"
    )


DATASETS.register(NAME)(
    DatasetLoader(
        name=NAME,
        summary="raw PhysioNet Sleep-EDF (sleep-cassette) via MNE: 30-s EEG Fpz-Cz epochs, 3000 steps (or "
        "seq_len) x 1 input, 5 classes, split by subject (download)",
        load=load,
        fetch=fetch,
        parse_options=parse_options,
    )
)
