"""One process-wide choice among named options, read from an environment variable unless set in code.

Serves the kernel switches of :mod:`cortexnet.sparse.gemm` (``CORTEXNET_DENSE_GEMM``) and
:mod:`cortexnet.sparse.native` (``CORTEXNET_CSR_KERNEL``): the first option is the default, a bad value names the
allowed ones, and :meth:`EnvChoice.set` returns the previous in-code setting so a caller can restore it.
"""

from __future__ import annotations

import os
from collections.abc import Callable


class EnvChoice:
    """``choices[0]`` unless ``$env`` or :meth:`set` says otherwise; ``label`` names it in messages."""

    def __init__(self, env: str, label: str, choices: tuple[str, ...]) -> None:
        self.env, self.label, self.choices = env, label, choices
        self._mode: str | None = None

    def check(self, mode: str, source: str) -> str:
        """``mode`` if it is one of the choices, else a ValueError naming ``source`` and the allowed values."""
        if mode not in self.choices:
            raise ValueError(f"{source} must be one of {', '.join(self.choices)}, got {mode!r}")
        return mode

    def get(self) -> str:
        """The choice in force: :meth:`set`'s, else the environment's, else the default."""
        if self._mode is not None:
            return self._mode
        return self.check(os.environ.get(self.env, self.choices[0]), self.env)

    def set(self, mode: str | None, unavailable: Callable[[str], str | None] = lambda _: None) -> str | None:
        """Set the choice (None: back to the environment's); ``unavailable(mode)`` returns why a valid choice
        cannot be used here (raised as ValueError, the setting unchanged) or None. Returns the previous
        in-code setting (None when it came from the environment)."""
        previous = self._mode
        checked = None if mode is None else self.check(mode, self.label)
        reason = None if checked is None else unavailable(checked)
        if reason is not None:
            raise ValueError(reason)
        self._mode = checked
        return previous
