"""Stopping cleanly on a signal: what :func:`~cortexnet.training.fit` does with Ctrl-C and a cluster's warnings.

While ``fit`` runs (in the main thread) SIGINT (Ctrl-C), SIGTERM (what SLURM and most schedulers send before
a time limit or a preemption) and SIGUSR1 (SLURM's ``--signal=USR1@90``) only set a flag; at the next
optimiser-step boundary ``fit`` writes a checkpoint (atomically) and raises
:class:`~cortexnet.training.state.TrainingInterrupted`. A second Ctrl-C while it stops raises
``KeyboardInterrupt`` at once, as usual. A signal its process ignores (``SIG_IGN``, e.g. SIGINT of a background
job) stays ignored, and the handlers that were there before are put back when ``fit`` returns.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

#: The signals ``fit`` turns into a checkpoint and a clean stop (SIGUSR1 where the platform has it).
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name)
)
#: The signals after which a SLURM job is requeued when asked (a cluster's warnings; never Ctrl-C).
REQUEUE_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


def signal_name(signum: int) -> str:
    """``15`` → ``"SIGTERM"``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """A context manager that, in the main thread, catches :data:`STOP_SIGNALS`: the first one sets
    :attr:`signum`; later ones are ignored, except a second SIGINT, which raises ``KeyboardInterrupt``. Outside
    the main thread (where Python cannot install handlers) it does nothing and :attr:`signum` stays None.
    The previous handlers are restored on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in STOP_SIGNALS:
            try:
                previous = signal.getsignal(sig)
                if previous == signal.SIG_IGN:
                    continue  # ignored on purpose (nohup, a background job's SIGINT): leave it so
                signal.signal(sig, self._handle)
            except (OSError, ValueError):  # pragma: no cover - a platform without this signal
                continue
            self._previous[sig] = previous
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            # None: a handler not installed from Python; the default is what stood there.
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C while stopping: stop now
            return
        self.signum = signum
        log.warning(
            "%s received: writing a checkpoint at the next step, then stopping%s", signal_name(signum),
            " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else "",
        )  # fmt: skip

    @property
    def name(self) -> str | None:
        return signal_name(self.signum) if self.signum is not None else None


def requeue_slurm_job(env: Mapping[str, str] | None = None, *, timeout_s: float = 60.0) -> str | None:
    """``scontrol requeue $SLURM_JOB_ID`` when ``SLURM_JOB_ID`` is set: a sentence saying what happened
    ("SLURM job 123 requeued" or why it failed), or None outside SLURM. Never raises."""
    job = (os.environ if env is None else env).get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"requeue of SLURM job {job} failed: {' '.join(str(exc).split())[:200]}"
    if done.returncode != 0:
        why = " ".join(((done.stderr or "") + " " + (done.stdout or "")).split())[:200]
        return f"requeue of SLURM job {job} failed: {why or f'scontrol exited with status {done.returncode}'}"
    return f"SLURM job {job} requeued"
