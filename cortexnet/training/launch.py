"""Launchers: where the members of a run train.

* ``local`` (the default): one after another in this process (:func:`~cortexnet.training.runs.train_members`);
* ``processes``: in parallel worker processes on this machine (``--workers K``; each worker gets
  ``cores // K`` torch threads);
* ``slurm``: one SLURM job per member, submitted as one job array through submitit
  (``pip install "cortexnet[slurm]"``).

Whatever the launcher, every member trains with :func:`~cortexnet.training.runs.train_member` in its own member
folder (same seeds, same checkpoint, same history), and the parent process collects the results in member order
from the members' checkpoints (:func:`~cortexnet.training.runs.collect_member`: the same code that reports a
member finished before a resume, callback states included), then writes ``metrics.jsonl``: the
:class:`~cortexnet.training.runs.RunResults`, and so every summary, figure and table, are those of the local
launcher. Workers never take the run folder's lock (the parent holds it), only their member folder's.

The processes launcher uses :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start method:
it is in the standard library (no extra dependency), runs at most K members at once (submitit's local executor
starts every job at the same time), returns each member's outcome directly, and ``spawn`` (unlike ``fork``)
is safe with torch's thread pools and CUDA and passes no open file, such as the run folder's lock, to the
workers.

A member that fails (an exception in its worker or job) does not stop the others: every failure is logged in
one line naming the member, the finished members' results are kept, and :class:`MembersFailed` ends the run
with exit status 1 and the ``--resume`` line that retries the failed ones (only unfinished members are
started again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import shutil
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cortexnet.config import UsageError
from cortexnet.io import atomic_torch_save
from cortexnet.training import runs  # the module: launch calls what tests may replace there
from cortexnet.training.config import TrainConfig

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "processes", "slurm")
#: The options of :class:`LaunchOptions` that say how a run is launched, not what it computes: they may differ
#: when a run is resumed, and are not compared when ``--run-dir`` finds a run of the same configuration.
LAUNCH_FIELDS = (
    "run_dir",
    "launcher",
    "workers",
    "slurm_partition",
    "slurm_time",
    "slurm_gpus_per_task",
    "slurm_cpus_per_task",
    "slurm_mem",
    "slurm_array_parallelism",
    "slurm_cluster",
)
SLURM_CLUSTERS = ("slurm", "local")
#: Where the parent leaves the data for its workers (removed when they are done) and the SLURM jobs' logs.
LAUNCH_DIR = ".launch"
SLURM_DIR = "slurm"
#: A failed member's traceback, in its member folder (removed when it is trained again).
ERROR_NAME = "error.txt"
SLURM_INSTALL = 'pip install "cortexnet[slurm]"'
#: What a worker returns for a member it did not start because the run is stopping (a signal).
NOT_STARTED = "not started: the run is stopping"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity; the machine's count where that is not known)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class LaunchOptions:
    """How the members of a run are launched (the ``--launcher`` options of every training experiment)."""

    launcher: str = "local"
    workers: int | None = None
    slurm_partition: str | None = None
    slurm_time: int | None = None
    slurm_gpus_per_task: int | None = None
    slurm_cpus_per_task: int | None = None
    slurm_mem: float | None = None
    slurm_array_parallelism: int | None = None
    slurm_cluster: str | None = None
    requeue: bool = False
    experiment: str = ""

    @classmethod
    def of(cls, options: Any, experiment: str = "") -> LaunchOptions:
        """The launch options of an experiment's options object (its fields of the same names; defaults for
        those it lacks)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "experiment"]
        given = {n: getattr(options, n) for n in names if hasattr(options, n)}
        return cls(**given, experiment=experiment)

    def validate(self) -> LaunchOptions:
        """Raise ``ValueError`` (one line: the option, the value, the fix) for a bad combination."""
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"unknown --launcher {self.launcher!r}; known: {', '.join(LAUNCHERS)}")
        if self.workers is not None:
            if self.launcher != "processes":
                raise ValueError(
                    f"--workers applies to --launcher processes only (got --launcher {self.launcher})"
                )
            if self.workers < 1:
                raise ValueError(f"--workers must be >= 1, got {self.workers}")
        slurm = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name.startswith("slurm_")
        }
        given = [name for name, value in slurm.items() if value is not None]
        if given and self.launcher != "slurm":
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise ValueError(f"{flags} apply to --launcher slurm only (got --launcher {self.launcher})")
        for name, low in (
            ("slurm_time", 1),
            ("slurm_gpus_per_task", 0),
            ("slurm_cpus_per_task", 1),
            ("slurm_array_parallelism", 1),
        ):
            value = slurm[name]
            if value is not None and value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
        if self.slurm_mem is not None and not self.slurm_mem > 0:
            raise ValueError(f"--slurm-mem (GB) must be > 0, got {self.slurm_mem}")
        if self.slurm_partition is not None and not self.slurm_partition.strip():
            raise ValueError("--slurm-partition needs a partition name")
        if self.slurm_cluster is not None and self.slurm_cluster not in SLURM_CLUSTERS:
            raise ValueError(
                f"unknown --slurm-cluster {self.slurm_cluster!r}; known: {', '.join(SLURM_CLUSTERS)} (local: "
                "for testing)"
            )
        if self.launcher == "slurm":
            try:
                import submitit  # noqa: F401
            except ImportError:
                raise ValueError(f"--launcher slurm needs submitit: {SLURM_INSTALL}") from None
            if self.cluster == "slurm" and self.slurm_time is None:
                raise ValueError(
                    "--launcher slurm needs --slurm-time MINUTES, each job's time limit (submitit's default is 5 "
                    "minutes); a job that reaches it is requeued and continues from its last checkpoint"
                )
            if self.cluster == "slurm" and shutil.which("sbatch") is None:
                raise ValueError(
                    "--launcher slurm needs SLURM's sbatch, which is not on this machine: run the command on a "
                    "login node of the cluster, or use --launcher processes"
                )
        return self

    @property
    def cluster(self) -> str:
        """The submitit cluster of ``--launcher slurm``: ``slurm``, or ``local`` (local subprocesses, for
        tests)."""
        return self.slurm_cluster or "slurm"

    def parallel(self, n_members: int) -> int:
        """How many members train at the same time on this machine: 1 (local, or slurm: elsewhere), else
        ``--workers`` (default: the cores), at most one per member."""
        if self.launcher != "processes":
            return 1
        return max(1, min(self.workers or available_cores(), n_members))


class MembersFailed(SystemExit):
    """Some members failed in their workers or jobs: each was logged in one line; the others' results are kept.
    Ends the command with exit status 1 (a :class:`SystemExit`, so that no other handler reports it again);
    ``--resume <folder>`` trains the failed ones."""

    def __init__(self, folder: Path, failures: dict[str, str], n_members: int) -> None:
        super().__init__(1)
        self.folder, self.failures, self.n_members = folder, failures, n_members

    def __str__(self) -> str:
        n = len(self.failures)
        return (
            f"{n} of {self.n_members} members failed ({self.n_members - n} finished, kept in {self.folder}); "
            f"--resume {self.folder} retries the failed ones"
        )


@dataclass
class MemberTask:
    """One member to train in a worker process or a SLURM job: everything :func:`runs.train_member` needs
    (the data comes from a file the parent wrote once). Calling it trains the member and returns None, or the
    one line it failed with (its traceback goes to ``error.txt`` in the member folder)."""

    run_path: str
    label: str
    model_name: str
    model_config: Any
    train_config: TrainConfig
    tags: dict[str, Any]
    dataset_spec: dict[str, Any]
    callbacks: tuple[Any, ...]
    data_path: str
    threads: int | None = None
    verbose: bool = False
    in_pool: bool = False  # a worker of --launcher processes (stops when the parent passes a signal on)

    def __call__(self) -> str | BaseException | None:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO if self.verbose else logging.WARNING, format="%(message)s")
        threads = self.threads or _slurm_cpus()
        if threads:
            torch.set_num_threads(threads)
        folder = runs.RunFolder(self.run_path)  # not locked: the parent holds the run folder's lock
        member = folder.member_dir(self.label)
        error_file = member / ERROR_NAME
        try:
            with (
                _stop_before_training() if self.in_pool else contextlib.nullcontext(),
                runs.member_lock(member),
            ):
                if Path(self.data_path).with_name("stop").exists():  # the parent got a stop signal
                    return NOT_STARTED
                error_file.unlink(missing_ok=True)
                runs.train_member(
                    folder,
                    self.label,
                    model_name=self.model_name,
                    model_config=self.model_config,
                    splits=_load_data(self.data_path),
                    train_config=self.train_config,
                    tags=self.tags,
                    finished_records=[],
                    dataset_spec=self.dataset_spec,
                    resume=True,  # continue from its checkpoint: a retried member, or a requeued job
                    callbacks=self.callbacks,
                    progress=False,  # bars of parallel workers would overwrite each other
                    write_metrics=False,  # the parent writes metrics.jsonl from every member
                )
        except BaseException as exc:  # reported by the parent; the other members go on
            if isinstance(exc, SystemExit) and not self.in_pool:
                raise  # submitit's requeue on a time limit or preemption (its USR2 handler) exits the job
            if isinstance(exc, _StoppedBeforeTraining):
                return NOT_STARTED
            if _is_interruption(exc):
                return exc  # a signal: checkpoint written; the parent stops the run with its resume line
            line = one_line(exc)
            if not isinstance(exc, runs.RunFolderInUse):  # another worker's folder: not ours to write
                with contextlib.suppress(OSError):
                    error_file.write_text(traceback.format_exc())
                    line += f" (traceback: {error_file})"
            return line
        return None

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue hook (a job about to time out or preempted): the same task again, which resumes
        the member from its last checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class _StoppedBeforeTraining(Exception):
    """A stop signal reached a worker before its training loop catches signals itself."""


@contextlib.contextmanager
def _stop_before_training() -> Iterator[None]:
    """In a worker process, until :func:`~cortexnet.training.fit` installs its own handlers (and again after it
    returns): SIGTERM / SIGUSR1 raise :class:`_StoppedBeforeTraining` instead of killing the worker, which
    would break the whole pool."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _StoppedBeforeTraining(signum)

    previous = {}
    for name in ("SIGTERM", "SIGUSR1"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) != signal.SIG_IGN:
            previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _is_interruption(exc: BaseException) -> bool:
    from cortexnet.training.state import TrainingInterrupted

    return isinstance(exc, TrainingInterrupted)


def one_line(exc: BaseException) -> str:
    """``Type: message`` in one line (at most 300 characters of the message)."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _slurm_cpus() -> int | None:
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


_DATA: dict[str, Any] = {}


def _load_data(path: str) -> Any:
    """The run's data, written by the parent (memory-mapped: the workers of one machine share its pages);
    loaded once per process."""
    if path not in _DATA:
        # The parent wrote this file moments ago into the run folder (a DatasetSplits: not only tensors).
        _DATA[path] = torch.load(path, mmap=True, weights_only=False)
    return _DATA[path]


def _pickler() -> Any:
    """cloudpickle (as installed, or the copy joblib, a dependency of scikit-learn, ships): it sends the
    members' callbacks, lambdas included, to the workers; the standard pickle where neither exists."""
    try:
        import cloudpickle
    except ImportError:
        try:
            from joblib.externals import cloudpickle
        except ImportError:  # pragma: no cover
            return pickle
    return cloudpickle


def _run_pickled(payload: bytes) -> str | None:
    """A worker process's entry point: unpickle one :class:`MemberTask` and run it."""
    return pickle.loads(payload)()


def launch_members(
    folder: runs.RunFolder,
    splits: Any,
    dataset_spec: dict[str, Any],
    members: Sequence[runs.Member],
    *,
    launch: LaunchOptions,
    train_config: Callable[[int], TrainConfig],
    summarize: Callable[[list[dict[str, Any]]], dict[str, Any]],
    resume: bool = False,
    progress: bool = True,
    results: runs.RunResults | None = None,
) -> runs.RunResults:
    """Train (or, on resume, finish) every member with ``launch``'s launcher and return the same
    :class:`~cortexnet.training.runs.RunResults` as :func:`~cortexnet.training.runs.train_members` (which the
    local launcher is). Only members whose checkpoint does not show them finished are started. Raises
    :class:`MembersFailed` after collecting the others when some failed. ``results``: earlier results of the
    same run folder to add to (see :func:`~cortexnet.training.runs.train_members`)."""
    if launch.launcher == "local":
        return runs.train_members(folder, splits, dataset_spec, members, train_config=train_config,
                                  summarize=summarize, resume=resume, progress=progress, results=results)  # fmt: skip
    configs = {m.label: train_config(m.seed) for m in members}
    todo = [m for m in members if not runs.member_finished(folder, m.label, configs[m.label])]
    name = launch.experiment or "cortexnet"
    if len(todo) < len(members):
        log.info("%s: %d of %d members already finished", name, len(members) - len(todo), len(members))
    failures: dict[str, str] = {}
    interrupted: BaseException | None = None
    if todo:
        data_dir = folder.path / LAUNCH_DIR
        data_path = data_dir / "data.pt"
        data_dir.mkdir(exist_ok=True)
        atomic_torch_save(data_path, splits)
        tasks = [
            MemberTask(
                run_path=str(folder.path.resolve()),
                label=m.label,
                model_name=m.model_name,
                model_config=m.model_config,
                train_config=configs[m.label],
                tags=m.tags,
                dataset_spec=dataset_spec,
                callbacks=tuple(m.callbacks),
                data_path=str(data_path.resolve()),
            )
            for m in todo
        ]
        try:
            log.info("%s: training %d of %d members with --launcher %s", name, len(todo), len(members),
                     launch.launcher)  # fmt: skip
            if launch.launcher == "processes":
                failures, interrupted = _run_processes(tasks, launch, folder)
            else:
                failures = _run_slurm(tasks, launch, folder)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    results = runs.RunResults([], {}, {}) if results is None else results
    for m in members:
        if m.label in failures:
            continue
        if interrupted is not None and not runs.member_finished(folder, m.label, configs[m.label]):
            continue  # stopped by the signal, or not started
        try:
            state = runs.collect_member(
                folder, m.label, train_config=configs[m.label], tags=m.tags, callbacks=m.callbacks
            )
        except (RuntimeError, ValueError, OSError) as exc:  # CheckpointError is a ValueError
            failures[m.label] = one_line(exc)
            continue
        runs.add_result(results, m, state, summarize)
    folder.write_metrics(results.records)
    for m in members:
        if m.label in failures:
            log.error("%s: member %s failed: %s", name, m.label, failures[m.label])
    if interrupted is not None:  # a signal: the run stops with the interruption's resume line
        runs.keep_folder(folder.path)
        raise interrupted
    if failures:
        runs.keep_folder(folder.path)  # a failing command would remove it when nothing finished
        error = MembersFailed(folder.path, {m.label: failures[m.label] for m in members if m.label in failures},
                              len(members))  # fmt: skip
        log.error("%s: error: %s", name, error)
        raise error
    return results


def _run_processes(
    tasks: list[MemberTask], launch: LaunchOptions, folder: runs.RunFolder
) -> tuple[dict[str, str], BaseException | None]:
    """Run ``tasks`` in ``launch.parallel`` spawned worker processes, ``cores // K`` torch threads each.
    Returns the failures (label → one line) and, when a stop signal (SIGINT, SIGTERM, SIGUSR1) reached this
    process, the :class:`~cortexnet.training.state.TrainingInterrupted` to end the run with: the signal is
    passed on to the workers (as SIGTERM: each writes its member's checkpoint and stops), members not started
    are not started, and with ``--requeue`` this process (not every worker) requeues the SLURM job."""
    import concurrent.futures as cf
    import multiprocessing
    import signal

    from cortexnet.training.signals import REQUEUE_SIGNALS, StopSignals, requeue_slurm_job
    from cortexnet.training.state import TrainingInterrupted

    k = launch.parallel(len(tasks))
    threads = max(1, available_cores() // k)
    pickler = _pickler()
    payloads = []
    for task in tasks:
        task.threads, task.in_pool = threads, True
        if getattr(task.train_config, "requeue", False):  # requeued once, by this process
            task.train_config = dataclasses.replace(task.train_config, requeue=False)
        try:
            payloads.append(pickler.dumps(task))
        except Exception as exc:
            raise UsageError(
                f"member {task.label} cannot be sent to a worker process ({one_line(exc)}); use --launcher local"
            ) from exc
    log.info("%s: %d worker processes, %d torch thread(s) each", launch.experiment, k, threads)
    failures: dict[str, str] = {}
    stopped: dict[str, Any] = {}  # label → the TrainingInterrupted its worker stopped with
    cancelled = False
    pool = cf.ProcessPoolExecutor(max_workers=k, mp_context=multiprocessing.get_context("spawn"))
    try:
        with StopSignals() as stop:
            futures = {pool.submit(_run_pickled, p): t.label for p, t in zip(payloads, tasks, strict=True)}
            pending, done, stopping, signalled = set(futures), 0, False, set()
            while pending:
                finished, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    if future.cancelled():
                        continue
                    label, done = futures[future], done + 1
                    try:
                        outcome = future.result()
                    except cf.process.BrokenProcessPool:
                        outcome = "its worker process died abruptly (killed, e.g. out of memory)"
                        if stop.signum is not None:  # killed by the signal (e.g. SLURM's, to every process)
                            outcome = NOT_STARTED
                    except Exception as exc:
                        outcome = one_line(exc)
                    if isinstance(outcome, TrainingInterrupted):
                        stopped[label], state = outcome, "stopped"
                    elif outcome == NOT_STARTED:
                        cancelled, state = True, "not started"
                    elif outcome:
                        failures[label], state = str(outcome), "failed"
                    else:
                        state = "finished"
                    log.info("%s: member %s %s (%d/%d)", launch.experiment, label, state, done, len(tasks))
                if stop.signum is not None:
                    if not stopping:  # first time: members not started yet are not started
                        stopping = True
                        with contextlib.suppress(OSError):
                            Path(tasks[0].data_path).with_name("stop").touch()
                        for future in pending:
                            cancelled |= future.cancel()
                    # The workers training a member (they hold its lock) stop it with a checkpoint; a worker
                    # still starting up is left alone (it finds the stop file and starts nothing).
                    busy = _member_holders(folder, [futures[f] for f in pending]) & _worker_pids(pool)
                    for pid in busy - signalled:
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGTERM)
                    signalled |= busy
    except BaseException:  # a second Ctrl-C, or this process failing: stop the workers at once
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if stop.signum is None or not (stopped or cancelled):  # no signal here (or every member done anyway)
        for label, exc in stopped.items():  # a worker signalled on its own: its member did not finish
            failures[label] = f"stopped: {exc}"
        return failures, None
    requeue = requeue_slurm_job() if launch.requeue and stop.signum in REQUEUE_SIGNALS else None
    first = next(iter(stopped.values()), None)
    interrupted = TrainingInterrupted(
        stop.name or "a signal", stop.signum, epoch=first.epoch if first else 0, step=first.step if first else 0,
        checkpoint=first.checkpoint if first else folder.path,
        run_dir=first.run_dir if first else folder.member_dir(tasks[0].label), requeue=requeue,
    )  # fmt: skip
    return failures, interrupted


def _worker_pids(pool: Any) -> set[int]:
    return {p.pid for p in list((getattr(pool, "_processes", None) or {}).values()) if p.pid}


def _member_holders(folder: runs.RunFolder, labels: Sequence[str]) -> set[int]:
    """Process ids written in the lock files of these members (``process <pid> on <host>``), of this host."""
    import platform

    pids = set()
    for label in labels:
        with contextlib.suppress(OSError, ValueError, IndexError):
            words = (folder.member_dir(label) / runs.LOCK_NAME).read_text().split()
            if words[0] == "process" and words[3] == platform.node():
                pids.add(int(words[1]))
    return pids


def _run_slurm(tasks: list[MemberTask], launch: LaunchOptions, folder: runs.RunFolder) -> dict[str, str]:
    """Submit ``tasks`` as one job array (submitit ``batch``), wait for every job and return the failures
    (label → one line naming the job and its log). Interrupted (Ctrl-C), it cancels the jobs still running."""
    import submitit

    cluster = launch.cluster
    executor = submitit.AutoExecutor(folder=folder.path / SLURM_DIR / "%j", cluster=cluster)
    params = {
        "name": f"cortexnet-{launch.experiment or 'run'}",
        "nodes": 1,
        "tasks_per_node": 1,
        "timeout_min": launch.slurm_time,
        "mem_gb": launch.slurm_mem,
        "cpus_per_task": launch.slurm_cpus_per_task,
        "slurm_partition": launch.slurm_partition,
        "slurm_gpus_per_task": launch.slurm_gpus_per_task,
        "slurm_array_parallelism": launch.slurm_array_parallelism,
    }
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    if cluster == "local":  # every job starts at once on this machine: share its cores
        threads = max(1, available_cores() // min(len(tasks), launch.slurm_array_parallelism or len(tasks)))
    else:  # a job uses its allocation's cores (SLURM_CPUS_PER_TASK)
        threads = None
    for task in tasks:
        task.threads, task.verbose = threads, True
        if getattr(task.train_config, "requeue", False):  # submitit requeues its jobs itself (checkpoint())
            task.train_config = dataclasses.replace(task.train_config, requeue=False)
    try:
        with executor.batch():
            jobs = [executor.submit(task) for task in tasks]
    except Exception as exc:
        raise UsageError(
            f"--launcher slurm: the jobs could not be submitted ({_last_line(exc)}); check --slurm-partition, "
            "--slurm-time, --slurm-mem and --slurm-gpus-per-task"
        ) from exc
    labels = {job.job_id: task.label for job, task in zip(jobs, tasks, strict=True)}
    log.info("%s: submitted %d jobs (%s), logs in %s", launch.experiment, len(jobs),
             jobs[0].job_id.split("_")[0] if jobs else "-", folder.path / SLURM_DIR)  # fmt: skip
    failures: dict[str, str] = {}
    try:
        poll = 1.0 if cluster == "local" else 15.0
        for done, job in enumerate(submitit.helpers.as_completed(jobs, poll_frequency=poll), start=1):
            label = labels[job.job_id]
            try:
                error = job.result()
                if error:
                    error = f"{'interrupted: ' if isinstance(error, BaseException) else ''}{error} (job {job.job_id})"
            except Exception as exc:  # the job died (killed, timed out, out of memory) or could not start
                error = f"job {job.job_id}: {_last_line(exc)} (log: {job.paths.stderr})"
            if error:
                failures[label] = error
            log.info("%s: member %s %s (%d/%d)", launch.experiment, label, "failed" if error else "finished",
                     done, len(jobs))  # fmt: skip
    except BaseException:
        for job in jobs:
            with contextlib.suppress(Exception):
                if not job.done():
                    job.cancel(check=False)
        raise
    return failures


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join((lines[-1] if lines else type(exc).__name__).split())[:300]
