"""Run folders ``runs/<experiment>/<timestamp>-<hash>/`` and the members (configuration × seed) inside them."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import itertools
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cortexnet.io import atomic_write_json, atomic_write_jsonl, git_revision
from cortexnet.layers import sparse_weights
from cortexnet.models import build_model
from cortexnet.sparse import backend_hints
from cortexnet.training.callbacks import Callback, restore_callback_states
from cortexnet.training.checkpoint import load_checkpoint
from cortexnet.training.config import TrainConfig
from cortexnet.training.fit import CHECKPOINT_NAME, TrainState, fit, resolve_device

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".lock"
#: The folder of a run holding one sub-folder per member (``<run>/members/<label>/checkpoint.pt``).
MEMBERS_NAME = "members"


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent connectivity, weight and data-order seeds from one run seed (NumPy SeedSequence spawning:
    changing one stream never shifts another)."""
    conn, weight, data = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint32)
    return {"connectivity_seed": int(conn), "weight_seed": int(weight), "data_seed": int(data)}


class ModelBuildError(ValueError):
    """A member's model could not be built from its configuration (a usage error: fix the options)."""


class OutputError(ValueError):
    """The results folder cannot be created or written (a usage error: choose another ``--out``)."""


class RunFolderInUse(OutputError):
    """Another process holds the run folder's lock (a second ``--resume`` of a run still training)."""


#: Run folders created by this process, in order: a failing command removes those it created that hold no
#: finished work (:func:`discard_unfinished_folders`), so a failure leaves nothing behind that was not complete.
CREATED_FOLDERS: list[Path] = []
#: The run-folder locks this process holds (resolved folder → open lock file), in the order taken.
HELD_LOCKS: dict[Path, Any] = {}
#: For a created folder of :data:`CREATED_FOLDERS` that was made with missing parents (``--run-dir a/b/run``):
#: those parents, innermost first; removed with it when they are left empty.
CREATED_PARENTS: dict[Path, list[Path]] = {}


def _flock(folder: Path, what: str) -> Any:
    """Take the advisory lock ``folder/.lock`` (``flock``, not blocking) and return its open file (closing it
    releases the lock), or None where ``flock`` does not exist (Windows). Raises :class:`RunFolderInUse`
    naming ``what`` and the holder when another process has it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    fh = open(folder / LOCK_NAME, "a+")  # held open: the lock lives as long as the file
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RunFolderInUse(
            f"{what} is in use by {holder}; wait until it finishes (or stop it), then --resume"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"process {os.getpid()} on {platform.node()}")
    fh.flush()
    return fh


@contextlib.contextmanager
def member_lock(member: Path) -> Iterator[None]:
    """Hold the lock of one member folder (made if absent) while it trains in a worker process or job: two
    workers never train the same member, and neither needs the run folder's lock (which the parent holds)."""
    member.mkdir(parents=True, exist_ok=True)
    fh = _flock(member, f"member folder {member}")
    try:
        yield
    finally:
        if fh is not None:
            fh.close()


def release_locks(since: int = 0) -> None:
    """Release the run-folder locks this process took, from position ``since`` of :data:`HELD_LOCKS` on."""
    for key in list(HELD_LOCKS)[since:]:
        HELD_LOCKS.pop(key).close()  # closing the file releases the flock


def check_output_writable(out: str | os.PathLike) -> Path:
    """Raise :class:`OutputError` unless files can really be created under ``out``.

    Tries it: makes the missing folders of ``out``, creates and deletes a probe file in it, then removes the
    folders it made, so nothing is left behind either way. (``os.access`` is not enough: it says yes to root
    on a read-only file system or a folder root may not write to.) Returns the resolved path.
    """
    path = Path(out).resolve()
    made: list[Path] = []
    try:
        missing = path
        while not missing.exists() and missing != missing.parent:
            made.append(missing)
            missing = missing.parent
        for folder in reversed(made):
            folder.mkdir()
        fd, probe = tempfile.mkstemp(dir=path, prefix=".cortexnet-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(
            f"output folder {out} is not writable ({reason}: {exc.filename or path}); choose --out"
        ) from exc
    finally:
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                pass  # not created by us after all, or already gone
    return path


def provenance() -> dict[str, Any]:
    """Package version, git revision, torch/Python versions and the machine, saved beside every result."""
    from cortexnet import __version__

    return {
        "cortexnet_version": __version__,
        "git_revision": git_revision(),
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class RunFolder:
    """One experiment invocation's results: ``config.json``, ``metrics.jsonl``, ``summary.json``, plots, and
    one sub-folder per member with its checkpoint and history. Every file is written atomically."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def lock(self) -> RunFolder:
        """Take the folder's advisory lock (``.lock``, ``flock``), so that another process resuming the same
        folder is refused (:class:`RunFolderInUse`) instead of both writing it. Held by this process (taking it
        again is a no-op) until :func:`release_locks` or the process ends; the CLI releases it when a command
        returns. Where ``flock`` does not exist (Windows) the folder is not locked."""
        from cortexnet.training.distributed import rank

        key = self.path.resolve()
        if key in HELD_LOCKS or rank() != 0:  # data-parallel ranks: rank 0 holds the lock for all
            return self
        fh = _flock(key, f"run folder {self.path}")
        if fh is not None:
            HELD_LOCKS[key] = fh
        return self

    @classmethod
    def create_at(cls, path: str | os.PathLike, experiment: str, config: dict[str, Any]) -> RunFolder:
        """Use the fixed folder ``path`` (``--run-dir``) as a new run folder: made (with its parents) when it is
        absent, used as it is when it exists and is empty; ``config.json`` is written and the folder locked. The
        folders made are recorded, so a failing command removes them again when they hold no finished work.
        Raises :class:`OutputError` when the folder cannot be made or written, or is not empty. In a
        data-parallel run rank 0 makes it."""
        from cortexnet.training.distributed import shared_from_rank0

        return cls(shared_from_rank0(lambda: cls._create_at(path, experiment, config).path))

    @classmethod
    def _create_at(cls, path: str | os.PathLike, experiment: str, config: dict[str, Any]) -> RunFolder:
        path = Path(path)
        missing = [p for p in (path, *path.parents) if not p.exists()]  # innermost first
        try:
            path.mkdir(parents=True, exist_ok=True)
            folder = cls(path).lock()  # first: a second command creating the same folder is refused
            if any(p.name != LOCK_NAME for p in path.iterdir()):
                raise OutputError(
                    f"--run-dir {path} is not empty and holds no cortexnet run (no {CONFIG_NAME}); choose a new "
                    "or empty folder"
                )
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
            cls._write_config(path, experiment, config, stamp)
        except OSError as exc:
            for made in missing:
                if made == path:
                    shutil.rmtree(made, ignore_errors=True)
                else:
                    _rmdir(made)
            raise OutputError(
                f"cannot create the run folder {path}: {exc.strerror or exc}; choose another --run-dir"
            ) from exc
        CREATED_FOLDERS.append(path)
        CREATED_PARENTS[path] = [p for p in missing if p != path]
        return folder

    @staticmethod
    def _write_config(path: Path, experiment: str, config: dict[str, Any], stamp: str) -> None:
        atomic_write_json(
            path / CONFIG_NAME, {"experiment": experiment, "config": config, "created": stamp, **provenance()}
        )

    @classmethod
    def create(cls, out: str | os.PathLike, experiment: str, config: dict[str, Any]) -> RunFolder:
        """Make ``<out>/<experiment>/<UTC timestamp>-<config hash>/`` and write ``config.json``.

        The name is claimed atomically (exclusive ``mkdir``): when another run of the same configuration took
        it in the same second, ``-2``, ``-3``, ... is appended. Raises :class:`OutputError` when the folder
        cannot be created or written. In a data-parallel run rank 0 makes it and every rank gets its path.
        """
        from cortexnet.training.distributed import shared_from_rank0

        return cls(shared_from_rank0(lambda: cls._create(out, experiment, config).path))

    @classmethod
    def _create(cls, out: str | os.PathLike, experiment: str, config: dict[str, Any]) -> RunFolder:
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        parent = Path(out) / experiment
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for n in itertools.count(1):
                path = parent / (f"{stamp}-{digest}" if n == 1 else f"{stamp}-{digest}-{n}")
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
            cls._write_config(path, experiment, config, stamp)
        except OSError as exc:
            raise OutputError(
                f"cannot create the run folder under {parent}: {exc.strerror or exc}; choose --out"
            ) from exc
        CREATED_FOLDERS.append(path)
        return cls(path).lock()

    @classmethod
    def open(cls, path: str | os.PathLike, experiment: str) -> tuple[RunFolder, dict[str, Any]]:
        """An existing run folder (for ``--resume``) and its saved configuration."""
        path = Path(path)
        cfg_file = path / CONFIG_NAME
        if not cfg_file.is_file():
            raise ValueError(
                f"cannot resume: {cfg_file} not found; pass the run folder printed by the first run"
            )
        try:
            saved = json.loads(cfg_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"cannot resume: {cfg_file} is unreadable or not JSON ({' '.join(str(exc).split())[:120]}); it was "
                "damaged: start a new run, or restore the file"
            ) from exc
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise ValueError(
                f'cannot resume: {cfg_file} holds no run configuration (no "config" object); it was not written '
                "by cortexnet or was edited: start a new run, or restore the file"
            )
        if saved.get("experiment") != experiment:
            raise ValueError(
                f"cannot resume: {path} is a {saved.get('experiment')!r} run, not {experiment!r}"
            )
        return cls(path).lock(), saved["config"]

    def member_dir(self, label: str) -> Path:
        return self.path / MEMBERS_NAME / label

    def write_metrics(self, records: Sequence[dict[str, Any]]) -> None:
        atomic_write_jsonl(self.path / METRICS_NAME, records)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY_NAME, summary)


def discard_unfinished_folders(since: int = 0) -> list[Path]:
    """Remove the run folders this process created (from position ``since`` of :data:`CREATED_FOLDERS` on)
    that hold no finished work (no member checkpoint, no summary): called by the CLI when a command fails, so
    nothing half-made is left behind. A folder with a checkpoint stays (it can be resumed). Returns the folders
    removed."""
    removed = []
    while len(CREATED_FOLDERS) > since:
        path = CREATED_FOLDERS.pop()
        if not path.is_dir():
            continue
        parents = CREATED_PARENTS.pop(path, [])
        if not ((path / SUMMARY_NAME).exists() or any(path.glob(f"members/*/{CHECKPOINT_NAME}"))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            for parent in parents:  # innermost first; only while they are empty
                if not _rmdir(parent):
                    break
    return removed


def _rmdir(folder: Path) -> bool:
    try:
        folder.rmdir()
    except OSError:
        return False
    return True


def keep_folder(path: Path) -> None:
    """Take ``path`` off :data:`CREATED_FOLDERS`: a failing command leaves it (e.g. a run whose members failed,
    to be retried with ``--resume``)."""
    while path in CREATED_FOLDERS:
        CREATED_FOLDERS.remove(path)
    CREATED_PARENTS.pop(path, None)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class _MetricsSink(Callback):
    """Keeps the run folder's ``metrics.jsonl`` current after every evaluation of any member."""

    def __init__(self, folder: RunFolder | None, done: list[dict[str, Any]], tags: dict[str, Any]) -> None:
        self.folder, self.done, self.tags = folder, done, tags  # folder None: write nothing (a worker)

    def on_evaluation(self, model: nn.Module, ctx: Any, record: dict[str, Any]) -> None:
        if self.folder is None:
            return
        current = [{**self.tags, **r} for r in ctx.state.history]
        self.folder.write_metrics([*self.done, *current])


def train_member(
    folder: RunFolder,
    label: str,
    *,
    model_name: str,
    model_config: Any,
    splits: Any,
    train_config: TrainConfig,
    tags: dict[str, Any],
    finished_records: list[dict[str, Any]],
    dataset_spec: dict[str, Any],
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    write_metrics: bool = True,
) -> TrainState:
    """Build, train (or resume) and checkpoint one member of an experiment in ``folder/members/<label>``.

    A member whose checkpoint shows it finished is not trained again on resume. ``finished_records`` are the
    metrics of members already done (they stay in ``metrics.jsonl``); ``tags`` (e.g. density, seed) are added
    to every metrics record of this member. ``write_metrics=False`` (a worker process training members in
    parallel): the run folder's ``metrics.jsonl`` is left to the parent, which writes it from every member.
    """
    member = folder.member_dir(label)
    ckpt_path = member / CHECKPOINT_NAME
    # "auto" sparse weights decide from their own shape with the run's batch size and device.
    hints = {"batch": train_config.batch_size, "device": resolve_device(train_config.device).type}
    sink = _MetricsSink(folder if write_metrics else None, finished_records, tags)
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        st = _finished(ckpt, train_config, [sink, *callbacks])
        if st is not None:
            return st
        # Rebuild with the hints of the first run (even on another --device), so every "auto" weight picks the
        # same backend and the saved optimiser state fits its parameters.
        hints = dict(ckpt.get("meta", {}).get("backend_hints") or hints)
    with backend_hints(**hints):
        try:
            model = build_model(model_name, model_config, splits.n_inputs, splits.n_classes)
        except (ValueError, TypeError) as exc:
            # What configuration validation could not see (e.g. a third-party topology's own checks).
            raise ModelBuildError(f"member {label}: cannot build model {model_name!r}: {exc}") from exc
    meta = {
        "model": model_name,
        "model_config": dataclasses.asdict(model_config),
        "n_inputs": splits.n_inputs,
        "n_classes": splits.n_classes,
        "dataset": dataset_spec,
        "tags": tags,
        "backend_hints": hints,
        "backends": _backends(model),
    }
    return fit(
        model,
        splits.train,
        splits.test,
        train_config,
        val=splits.val,
        run_dir=member,
        resume=resume,
        callbacks=[sink, *callbacks],
        meta=meta,
        progress=progress,
    )


def _finished(
    ckpt: dict[str, Any], train_config: TrainConfig, callbacks: list[Callback]
) -> TrainState | None:
    """The state of a member whose checkpoint shows it finished (all epochs, or stopped early), its callbacks
    given their saved states; None when it has more to train."""
    st = TrainState(**ckpt["train_state"])
    if not (st.epoch >= train_config.epochs or st.stopped_early):
        return None
    # Not trained again: its callbacks get their saved state (behind the metrics sink, as in training), so what
    # they recorded (dynamics, counts) is reported exactly as the finished run left it.
    restore_callback_states(callbacks, ckpt)
    return st


def member_finished(folder: RunFolder, label: str, train_config: TrainConfig) -> bool:
    """Whether member ``label`` of ``folder`` has a checkpoint showing it finished training with
    ``train_config`` (all its epochs, or an early stop): a launcher does not start it again."""
    path = folder.member_dir(label) / CHECKPOINT_NAME
    if not path.exists():
        return False
    st = TrainState(**load_checkpoint(path)["train_state"])
    return st.epoch >= train_config.epochs or st.stopped_early


def collect_member(
    folder: RunFolder,
    label: str,
    *,
    train_config: TrainConfig,
    tags: dict[str, Any],
    callbacks: Sequence[Callback] = (),
) -> TrainState:
    """The final state of member ``label``, trained elsewhere (a worker process, a SLURM job) and finished, read
    from its checkpoint; its ``callbacks`` (this process's copies) get the states the worker saved, exactly as
    :func:`train_member` restores them for a member finished before a resume. Raises ``RuntimeError`` when
    the checkpoint does not show it finished."""
    ckpt = load_checkpoint(folder.member_dir(label) / CHECKPOINT_NAME)
    st = _finished(ckpt, train_config, [_MetricsSink(None, [], tags), *callbacks])
    if st is None:
        raise RuntimeError(
            f"member {label} has not finished training (its checkpoint is of an earlier epoch)"
        )
    return st


def _backends(model: Any) -> dict[str, str]:
    """The concrete backend of every sparse weight of ``model`` (what ``"auto"`` chose), by weight name."""
    return {name: w.backend for name, w in sparse_weights(model).items()}


@dataclass
class Member:
    """One trained network of an experiment: a configuration (``key``, shared by its seeds) and a seed."""

    label: str
    key: tuple
    tags: dict[str, Any]
    model_name: str
    model_config: Any
    seed: int
    callbacks: tuple[Any, ...] = ()


@dataclass
class RunResults:
    """What :func:`train_members` returns: every evaluation record (with the member's tags), and per member
    the ``summarize(history)`` summary (with its ``seed``), grouped by configuration key in member order."""

    records: list[dict[str, Any]]
    runs: dict[str, dict[str, Any]]
    groups: dict[tuple, list[dict[str, Any]]]


def train_members(
    folder: RunFolder,
    splits: Any,
    dataset_spec: dict[str, Any],
    members: Sequence[Member],
    *,
    train_config: Callable[[int], TrainConfig],
    summarize: Callable[[list[dict[str, Any]]], dict[str, Any]],
    resume: bool = False,
    progress: bool = True,
    results: RunResults | None = None,
) -> RunResults:
    """Train (or, on resume, finish) every member in ``folder`` one after another, keeping ``metrics.jsonl``
    current; ``train_config(seed)`` gives a member's training settings and ``summarize(history)`` its summary
    (e.g. :func:`cortexnet.analysis.summarize_run`). ``results``: earlier results of the same run folder (members
    trained on other data, e.g. another training-set size) to add to; they stay in ``metrics.jsonl``."""
    results = RunResults([], {}, {}) if results is None else results
    for m in members:
        state = train_member(
            folder,
            m.label,
            model_name=m.model_name,
            model_config=m.model_config,
            splits=splits,
            train_config=train_config(m.seed),
            tags=m.tags,
            finished_records=results.records,
            dataset_spec=dataset_spec,
            resume=resume,
            callbacks=m.callbacks,
            progress=progress,
        )
        add_result(results, m, state, summarize)
    folder.write_metrics(results.records)
    return results


def add_result(
    results: RunResults,
    m: Member,
    state: TrainState,
    summarize: Callable[[list[dict[str, Any]]], dict[str, Any]],
) -> None:
    """Add member ``m``'s evaluation records (with its tags) and its summary to ``results`` (in call order)."""
    results.records.extend({**m.tags, **r} for r in state.history)
    run = {"seed": m.seed, **summarize(state.history)}
    results.runs[m.label] = run
    results.groups.setdefault(m.key, []).append(run)
    log.info("%s: best test accuracy %s, final %s, delay %s", m.label, _fmt(run.get("best_test_acc")),
             _fmt(run.get("final_test_acc")), run.get("learning_delay"))  # fmt: skip
