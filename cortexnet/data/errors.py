"""The one exception type of the data layer."""

from __future__ import annotations


class DataError(RuntimeError):
    """Data that cannot be used as it is: missing files, a failed or unverifiable download, corrupt content.

    The message always names the file (or folder) concerned and, where a download can fix it, the exact command
    that fetches the data (``python -m cortexnet.data.download <name> --root <dir>``). Bad *arguments* raise
    ``ValueError`` / ``TypeError`` instead, before any I/O.
    """
