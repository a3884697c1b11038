"""A minimal EDF/EDF+ header and annotation reader, used to check files strictly before MNE reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError


@dataclass(frozen=True)
class EdfHeader:
    """The fields of an EDF header needed to check a file: signal labels, record layout, declared length."""

    labels: tuple[str, ...]
    n_records: int  # -1 when the writer did not know it (then the length cannot be checked)
    record_seconds: float
    samples_per_record: tuple[int, ...]
    header_bytes: int

    @property
    def expected_bytes(self) -> int | None:
        """File size implied by the header (16-bit samples), or ``None`` when ``n_records`` is unknown."""
        if self.n_records < 0:
            return None
        return self.header_bytes + 2 * self.n_records * sum(self.samples_per_record)


def read_edf_header(path: Path) -> EdfHeader:
    """Parse the fixed-width ASCII header of an EDF/EDF+ file; ``DataError`` naming the file if it is malformed.

    Layout: 256 bytes (version, patient, recording, start date/time, header size at 184, reserved at 192, number
    of data records at 236, record duration at 244, number of signals ``ns`` at 252), then ``ns`` × 256 bytes of
    per-signal fields (labels first; samples per record at offset ``256 + 216·ns``).
    """
    try:
        with open(path, "rb") as fh:
            fixed = fh.read(256)
            if len(fixed) < 256:
                raise DataError(f"{path} is not an EDF file: only {len(fixed)} bytes, an EDF header has 256+")
            ns = int(fixed[252:256].decode("ascii").strip())
            signals = fh.read(256 * ns)
        if fixed[:8].strip() != b"0" or ns < 0 or len(signals) < 256 * ns:
            raise ValueError("bad version field, signal count or signal header")
        labels = tuple(signals[16 * i : 16 * (i + 1)].decode("latin-1").strip() for i in range(ns))
        offset = 216 * ns
        samples = tuple(
            int(signals[offset + 8 * i : offset + 8 * (i + 1)].decode("ascii").strip()) for i in range(ns)
        )
        header = EdfHeader(
            labels=labels,
            n_records=int(fixed[236:244].decode("ascii").strip()),
            record_seconds=float(fixed[244:252].decode("ascii").strip()),
            samples_per_record=samples,
            header_bytes=int(fixed[184:192].decode("ascii").strip()),
        )
    except DataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable EDF file (malformed header: {exc})") from exc
    if header.header_bytes != 256 * (ns + 1):
        raise DataError(
            f"{path}: header size field {header.header_bytes}, expected {256 * (ns + 1)} for {ns} signals"
        )
    return header


def check_edf_complete(path: Path) -> EdfHeader:
    """Read the header and check that the file is at least as long as the header declares.

    A shorter file is truncated (an interrupted copy): ``DataError`` naming it. MNE would read such a file with a
    warning and silently return less data, which is why this check comes first.
    """
    header = read_edf_header(path)
    expected = header.expected_bytes
    size = path.stat().st_size
    if expected is not None and size < expected:
        raise DataError(
            f"{path} is truncated: its header declares {header.n_records} data records ({expected} bytes) but the "
            f"file has {size} bytes"
        )
    return header


ANNOTATION_LABEL = "EDF Annotations"
# one TAL: +onset [\x15 duration] \x14 (annotation \x14)* \x00 (EDF+ specification, section 2.2.2)
_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14((?:[^\x14\x00]*\x14)*)\x00")


def read_edf_annotations(path: Path) -> list[tuple[float, float | None, str]]:
    """Every annotation of an EDF+ file, parsed strictly: ``(onset s, duration s or None, text)``.

    Reads the "EDF Annotations" signal of each data record: a sequence of TALs (time-stamped annotation lists),
    then zero padding. Each record must hold at least one TAL (the EDF+ time-keeping one) and every TAL must be
    well formed; the empty time-keeping annotations are not returned. MNE's reader instead skips whatever does not
    match its pattern, so a damaged annotation, or a record of zeros, silently disappears; here it is a
    ``DataError`` naming the file, the record and the byte offset. The file must already have passed
    ``check_edf_complete``.
    """
    header = read_edf_header(path)
    slots = [i for i, label in enumerate(header.labels) if label == ANNOTATION_LABEL]
    if not slots:
        raise DataError(f"{path} has no '{ANNOTATION_LABEL}' signal: it is not an EDF+ annotation file")
    record_bytes = 2 * sum(header.samples_per_record)
    data = path.read_bytes()[header.header_bytes :]
    n_records = header.n_records if header.n_records >= 0 else len(data) // max(record_bytes, 1)
    out: list[tuple[float, float | None, str]] = []
    for r in range(n_records):
        record = data[r * record_bytes : (r + 1) * record_bytes]
        for slot in slots:
            start = 2 * sum(header.samples_per_record[:slot])
            chunk = record[start : start + 2 * header.samples_per_record[slot]]
            where = f"{path}: data record {r + 1} of {n_records}"
            base = header.header_bytes + r * record_bytes + start  # file offset of this chunk
            pos = 0
            while pos < len(chunk) and chunk[pos] != 0:
                match = _TAL.match(chunk, pos)
                if match is None:
                    raise DataError(
                        f"{where}: malformed annotation at byte {base + pos} ({bytes(chunk[pos : pos + 24])!r}...); "
                        "the file is corrupt. Delete it and fetch it again"
                    )
                onset, duration, texts = match.groups()
                for raw in texts.split(b"\x14")[:-1]:
                    if raw:
                        try:
                            text = raw.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            raise DataError(
                                f"{where}: annotation text is not UTF-8 ({exc}); corrupt"
                            ) from exc
                        out.append((float(onset), None if duration is None else float(duration), text))
                pos = match.end()
            if pos == 0:
                raise DataError(
                    f"{where}: the annotation signal holds no time-stamped annotation list (all zeros or empty); "
                    "the file is corrupt. Delete it and fetch it again"
                )
            if any(chunk[pos:]):
                raise DataError(
                    f"{where}: unexpected bytes after the annotations at byte {base + pos}; the file is corrupt. "
                    "Delete it and fetch it again"
                )
    return out
