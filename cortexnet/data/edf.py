"""A minimal EDF/EDF+ header reader, used to check files before MNE reads them."""

from __future__ import annotations

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
