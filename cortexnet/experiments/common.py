"""What every experiment shares: the run options, resume, data loading, the command-line error contract
(bad value → one line on stderr, exit status 2, before any work) and summaries of the members' counts. The
dataclass → argparse + TOML engine is :mod:`cortexnet.config`; the member loop is
:func:`cortexnet.training.runs.train_members`."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from cortexnet.analysis import MeanSD
from cortexnet.config import (
    UsageError,
    build_parser,
    check_fields,
    coerce_values,
    field,
    given_values,
    parse_config,
    parse_key_values,
)
from cortexnet.models import build_model
from cortexnet.training import Callback, TrainConfig

if TYPE_CHECKING:
    from cortexnet.training.runs import Member, RunFolder, RunResults


def run_cli(main: Callable[[list[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run an experiment's ``main`` with logging set up. A :class:`UsageError`, a data error, an unusable
    checkpoint or output folder becomes one line ``<prog>: error: <message>`` on stderr and exit status 2; training that
    diverged (NaN/inf loss or weights) one such line and exit status 1 (the metrics of every finished
    evaluation are already in the run folder, and the last good checkpoint is named); any other failure one
    line and exit status 1. A failing command removes the run folders it created that hold no finished work
    (:func:`~cortexnet.training.runs.discard_unfinished_folders`)."""
    from cortexnet.data import DataError
    from cortexnet.training import CheckpointError, NonFiniteLossError, TrainingInterrupted
    from cortexnet.training.launch import MembersFailed
    from cortexnet.training.runs import (
        CREATED_FOLDERS,
        HELD_LOCKS,
        ModelBuildError,
        OutputError,
        discard_unfinished_folders,
        release_locks,
    )

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prog = Path(sys.argv[0]).stem if argv is None else "cortexnet"
    _join_data_parallel_run()
    # Run folders created and locks taken before this command are not its to remove or release.
    made, locked = len(CREATED_FOLDERS), len(HELD_LOCKS)
    try:
        return main(None if argv is None else list(argv))
    except (UsageError, DataError, OutputError, ModelBuildError, CheckpointError) as exc:
        # CheckpointError: a missing, corrupt or mismatching checkpoint given to --resume (an input file).
        discard_unfinished_folders(made)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"{prog}: error: training diverged: {exc}", file=sys.stderr)
        return 1
    except MembersFailed:  # each failed member was reported in one line, and how to retry them
        return 1
    except TrainingInterrupted as exc:  # a signal: checkpoint written; one line saying how to continue
        spec = (
            getattr(sys.modules.get("__main__"), "__spec__", None) if main.__module__ == "__main__" else None
        )
        command = f"python -m {spec.name if spec is not None else main.__module__}"
        if main.__module__ == "__main__" and spec is None:  # run as a script file
            command = f"python {sys.argv[0]}"
        print(f"{prog}: {exc.with_resume_command(command)}", file=sys.stderr)
        return exc.exit_status
    except BaseException as exc:  # no traceback reaches a CLI user: one line, the cause first
        discard_unfinished_folders(made)
        if isinstance(exc, KeyboardInterrupt | SystemExit) or os.environ.get("CORTEXNET_TRACEBACK"):
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        release_locks(locked)


def _join_data_parallel_run() -> None:
    """Under ``torchrun`` (several ranks): join the process group; ranks other than 0 write no file and print
    nothing (every rank computes the same results; rank 0 reports them)."""
    from cortexnet.io import disable_writes
    from cortexnet.training.distributed import distributed_env, init_group, rank

    if not distributed_env():
        return
    init_group()
    if rank() != 0:
        disable_writes()
        sys.stdout = open(os.devnull, "w")  # for the life of the process
        logging.getLogger().setLevel(logging.WARNING)


def _one_line(exc: BaseException) -> str:
    """What went wrong, in one line with the fix: a full disk, memory, or an unexpected error (with how to see
    its traceback)."""
    import errno

    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        return f"no space left on the device{where}; free some space or choose another --out, then --resume"
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower():
        return (
            f"out of memory ({text[:200] or type(exc).__name__}); use fewer --nodes, a lower density or "
            "--batch-size, or a machine with more memory"
        )
    return (
        f"unexpected {type(exc).__name__}: {text[:300]} (this is a bug if the options were valid; rerun with "
        "CORTEXNET_TRACEBACK=1 for the traceback)"
    )


# ------------------------------------------------------------------------------------------------------------
# What every training experiment shares: data, training and output options; resume; the member loop.

#: Options that may differ when an interrupted run is resumed (everything else comes from its config.json).
RESUME_OVERRIDES = ("epochs", "device", "data_root", "download", "progress", "memory_check",
                    "checkpoint_every_steps", "log_every_s", "logger", "requeue")  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    """Options shared by every training experiment (data, optimisation, output). Experiments subclass it,
    add their own fields (and may redeclare a field to change its default), and set ``experiment``."""

    experiment: ClassVar[str] = ""

    seeds: tuple[int, ...] = field(
        (0,), "run seeds (each: its own masks, E/I identities, weights, data order)"
    )
    epochs: int = field(10, "training epochs, >= 1")
    batch_size: int = field(100, "batch size (paper: 100)")
    lr: float = field(1e-3, "Adam learning rate (paper: 1e-3)")
    dataset: str = field("mnist", "dataset name (digits is embedded and needs no download)")
    data_root: str | None = field(None, "data folder (default: $CORTEXNET_DATA, ./datasets, user cache)")
    download: bool = field(False, "download the dataset if it is missing (verified by sha256)")
    dataset_options: tuple[str, ...] = field(
        (), "dataset-specific key=value options, e.g. seq_len=300 subjects=[0,1] for sleep-edf"
    )
    n_per_class: int | None = field(None, "limit training data to this many examples per class")
    val_fraction: float = field(0.0, "fraction of the training set held out for validation, in [0, 1)")
    split_seed: int = field(0, "seed of the validation split and the limited-data subset")
    eval_fractions: tuple[float, ...] = field((), "extra evaluations at these fractions of every epoch")
    early_stopping_patience: int | None = field(None, "stop after this many epochs without validation gain")
    backend: str = field(
        "auto",
        "sparse-weight backend: auto (per weight, from its size, density, the batch size and the device), "
        "masked_dense or csr",
    )
    topology: str | None = field(
        None,
        "connectivity generator of every sparse weight, any registered topology (er, full, g2g, ...); "
        "default: the experiment's own (dale, recurrent_vs_feedforward: er at each --densities p; g2g: the "
        "Table I wiring)",
    )
    topology_params: tuple[str, ...] = field(
        (),
        "key=value parameters of --topology for every sparse weight (e.g. groups=4 p_inter=0.05); I.key=value "
        "sets one for sparse weight I only, I.topology=NAME gives weight I another topology",
    )
    lr_schedule: str = field(
        "constant", "learning-rate schedule: constant (the paper) or linear (decay to --lr-final-factor)"
    )
    lr_final_factor: float = field(0.01, "linear schedule: final fraction of --lr, in [0, 1] (CHTs: 0.01)")
    lr_decay_fraction: float = field(
        0.9, "linear schedule: fraction of all steps at which the decay ends, in (0, 1] (CHTs: 0.9)"
    )
    rewire: tuple[str, ...] = field(
        (),
        "dynamic sparse training of every sparse weight: a rule (set, random, rigl, hebbian, cht, chts, "
        "chtss) or removal=NAME growth=NAME ... (cortexnet.rewiring); default: static masks",
    )
    rewire_params: tuple[str, ...] = field(
        (),
        "key=value settings of --rewire (zeta=0.3 delta_t=100 end_fraction=0.75 grow_value=zero "
        "soft_removal=true sparsity_end=0.9 percolation=true early_stop=0.9 ...: cortexnet.rewiring.RewiringConfig)",
    )
    device: str = field("auto", "auto (CUDA when present), cpu, cuda, cuda:K or mps (Apple GPUs)")
    out: str = field("runs", "results root; the run is written to <out>/<experiment>/<timestamp>-<hash>/")
    resume: str | None = field(None, "continue the interrupted run in this folder")
    run_dir: str | None = field(
        None,
        "fixed run folder instead of <out>/<experiment>/<timestamp>-<hash>: created if absent; a run of the same "
        "configuration in it is resumed (what a requeued SLURM job uses to find its run), another one refused",
    )
    launcher: str = field(
        "local",
        "where the members train: local (one after another in this process), processes (--workers in parallel "
        'on this machine) or slurm (one SLURM job per member through submitit, pip install "cortexnet[slurm]")',
    )
    workers: int | None = field(
        None,
        "--launcher processes: worker processes, >= 1, each with cores/workers torch threads (default: the cores)",
    )
    slurm_partition: str | None = field(None, "--launcher slurm: the partition of the jobs")
    slurm_time: int | None = field(None, "--launcher slurm: time limit of each job in minutes, >= 1")
    slurm_gpus_per_task: int | None = field(None, "--launcher slurm: GPUs of each job, >= 0")
    slurm_cpus_per_task: int | None = field(
        None, "--launcher slurm: CPU cores of each job, >= 1 (its torch threads)"
    )
    slurm_mem: float | None = field(None, "--launcher slurm: memory of each job in GB, > 0")
    slurm_array_parallelism: int | None = field(
        None, "--launcher slurm: at most this many jobs of the run's job array at once, >= 1"
    )
    slurm_cluster: str | None = field(
        None,
        "--launcher slurm, for testing: local runs the jobs as subprocesses of this machine (submitit's local "
        "executor) instead of submitting them with sbatch",
    )
    progress: bool = field(True, "show progress bars")
    checkpoint_every_steps: int | None = field(
        None, "also checkpoint every N optimiser steps within an epoch (--resume continues at that step)"
    )
    log_every_s: float = field(
        300.0,
        "without progress bars (not a terminal, --no-progress): log progress at most this often, in seconds",
    )
    logger: tuple[str, ...] = field(
        (),
        'loggers per member: csv (metrics.csv, steps.csv), tensorboard (tb/; pip install "cortexnet[tensorboard]")',
    )
    requeue: bool = field(
        False, "on SIGTERM/SIGUSR1 under SLURM, after the checkpoint: scontrol requeue the job"
    )
    memory_check: bool = field(
        True,
        "refuse, before any work, members whose estimated training memory exceeds what the device has "
        "(--no-memory-check: try anyway)",
    )

    def __post_init__(self) -> None:
        check_fields(self)  # every field of the experiment's options: types, integral ints, finite floats
        # npz:PATH relative to where the command ran would not be found again by --resume or the probe
        # command run elsewhere: store it absolute (config.json, checkpoints).
        if isinstance(self.dataset, str) and self.dataset.startswith("npz:"):
            path = Path(self.dataset[4:]).expanduser()
            if not path.is_absolute():
                object.__setattr__(self, "dataset", f"npz:{path.resolve()}")

    def validate_run_options(self) -> None:
        """Check the shared options; raise ``ValueError`` naming the value, the allowed range and the fix."""
        from cortexnet.data import DATASETS
        from cortexnet.sparse import BACKENDS
        from cortexnet.training.fit import resolve_device
        from cortexnet.training.launch import LaunchOptions
        from cortexnet.training.runs import check_output_writable

        if not self.seeds:
            raise ValueError("--seeds needs at least one value")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"--seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.early_stopping_patience is not None and not self.val_fraction > 0:
            raise ValueError(
                "--early-stopping-patience needs a validation split: set --val-fraction in (0, 1) (early "
                "stopping never looks at the test set)"
            )
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown --dataset {self.dataset!r}; known: {', '.join(DATASETS.known())}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.n_per_class is not None and self.n_per_class < 1:
            raise ValueError(f"--n-per-class must be >= 1, got {self.n_per_class}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown --backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        parse_key_values(self.dataset_options, option="--dataset-options")
        self.topology_options()
        self.train_config(self.seeds[0]).validate()
        LaunchOptions.of(self).validate()
        try:
            if self.launcher != "slurm":  # a SLURM job's device is that of its node, not of this one
                resolve_device(self.device)
        except ValueError as exc:
            raise ValueError(f"--device: {exc}") from None
        try:
            self.rewiring_config(0)
        except ValueError as exc:
            raise ValueError(f"--rewire: {exc}") from None
        if self.resume is None:
            check_output_writable(self.run_dir or self.out)

    def topology_options(self, n_weights: int | None = None) -> tuple[str | None, dict[str, Any], list[dict]]:
        """``(topology, params, per_weight)`` from ``--topology`` and ``--topology-params``: the name (None:
        the experiment's default), the parameters of every sparse weight, and for a model of ``n_weights``
        sparse weights one override dict per weight (``{"topology": NAME, **params}`` or ``{**params}``; all
        ``{}`` without ``I.`` keys). Raises ``ValueError`` for an unknown name, a bad key or index."""
        from cortexnet.connectivity import TOPOLOGIES

        if self.topology is not None and self.topology not in TOPOLOGIES:
            raise ValueError(f"unknown --topology {self.topology!r}; known: {', '.join(TOPOLOGIES.names())}")
        params: dict[str, Any] = {}
        per: dict[int, dict[str, Any]] = {}
        for key, value in parse_key_values(self.topology_params, option="--topology-params").items():
            index, dot, name = key.partition(".")
            if not dot:
                params[key] = value
                continue
            if not index.isdigit():
                raise ValueError(
                    f"--topology-params {key}={value}: a per-weight key is I.name with I a sparse-weight index "
                    "(0, 1, ...)"
                )
            if name == "topology" and value not in TOPOLOGIES:
                raise ValueError(f"--topology-params {key}: unknown topology {value!r}; known: "
                                 f"{', '.join(TOPOLOGIES.names())}")  # fmt: skip
            per.setdefault(int(index), {})[name] = value
        if self.topology is None and (params or per):
            raise ValueError("--topology-params needs --topology NAME (the generator they are passed to)")
        # Parameters that come from data (CSTI's activity, SNIP's saliency) are wired after the data is loaded
        # (wire_data_params); until then they are FROM_DATA, which the configuration checks accept.
        if self.topology is not None:
            params = with_data_placeholders(self.topology, params)
        for i, override in per.items():
            if "topology" in override:
                per[i] = with_data_placeholders(override["topology"], override)
        if n_weights is None:
            return self.topology, params, []
        bad = sorted(i for i in per if i >= n_weights)
        if bad:
            raise ValueError(
                f"--topology-params: sparse weight {bad[0]} does not exist; the model has {n_weights} "
                f"(indices 0 ... {n_weights - 1})"
            )
        return self.topology, params, [per.get(i, {}) for i in range(n_weights)]

    def rewiring_config(self, seed: int) -> Any:
        """The :class:`~cortexnet.rewiring.RewiringConfig` of ``--rewire`` / ``--rewire-params`` for the member
        with run seed ``seed`` (its rewiring draws derive from it), or None for static masks."""
        from cortexnet.rewiring import rewiring_config

        if not self.rewire:
            if self.rewire_params:
                raise ValueError("--rewire-params needs --rewire RULE (the rule they configure)")
            return None
        first, rest = self.rewire[0], list(self.rewire[1:])
        rule = "custom" if "=" in first else first
        pairs = [first, *rest] if rule == "custom" else rest
        params = {
            **parse_key_values(pairs, option="--rewire"),
            **parse_key_values(self.rewire_params, option="--rewire-params"),
        }
        if "weights" in params and isinstance(params["weights"], str):
            params["weights"] = (params["weights"],)
        params.setdefault("seed", rewiring_seed(seed))
        return rewiring_config(rule, **params)

    def single_weight_topology(self, default: str) -> tuple[str, dict[str, Any]]:
        """``(name, params)`` for a model with one sparse weight (its ``0.`` overrides folded in)."""
        name, params, per = self.topology_options(1)
        override = dict(per[0])
        name = override.pop("topology", name or default)
        return name, {**params, **override}

    def train_config(self, seed: int) -> TrainConfig:
        """Training settings of the member with run seed ``seed`` (its data order derives from the seed)."""
        from cortexnet.training.runs import derive_seeds

        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            eval_fractions=self.eval_fractions,
            early_stopping_patience=self.early_stopping_patience,
            data_seed=derive_seeds(seed)["data_seed"],
            device=self.device,
            lr_schedule=self.lr_schedule,
            lr_final_factor=self.lr_final_factor,
            lr_decay_fraction=self.lr_decay_fraction,
            checkpoint_every_steps=self.checkpoint_every_steps,
            log_every_s=self.log_every_s,
            loggers=self.logger,
            requeue=self.requeue,
        )


@dataclass(frozen=True)
class SparseMLPRecipe(RunOptions):
    """RunOptions with the CHTs MLP training recipe as defaults (REFERENCE.md §3: SGD, momentum 0.9, weight
    decay 5e-4, lr 0.025, batch 32, 100 epochs, 3 seeds), shared by the experiments that train the DNM / CHTs
    sparse MLP (``topologies``, ``dst``); its linear decay is ``--lr-schedule linear``."""

    optimizer: str = field("sgd", "optimiser: adam, adamw, sgd or rmsprop (CHTs recipe: sgd)")
    momentum: float = field(0.9, "SGD / RMSprop momentum in [0, 1) (CHTs recipe: 0.9)")
    weight_decay: float = field(5e-4, "weight decay >= 0 (CHTs recipe: 5e-4)")
    lr: float = field(
        0.025, "initial learning rate (CHTs recipe: 0.025, decayed linearly: --lr-schedule linear)"
    )
    batch_size: int = field(32, "batch size (CHTs recipe: 32)")
    epochs: int = field(100, "training epochs, >= 1 (CHTs recipe: 100)")
    seeds: tuple[int, ...] = field((0, 1, 2), "run seeds (DNM / CHTs: 3)")

    def train_config(self, seed: int) -> TrainConfig:
        """The shared settings plus this recipe's optimiser, momentum and weight decay."""
        return dataclasses.replace(
            super().train_config(seed),
            optimizer=self.optimizer,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )


def check_distinct(**options: Sequence[Any]) -> None:
    """Refuse an option list that names a value twice (``check_distinct(densities=(1.0, 0.1, 0.1))``): each value
    is one configuration of the experiment, and repetitions are what ``--seeds`` is for."""
    for name, values in options.items():
        repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        if repeated:
            show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
            raise ValueError(
                f"{_flag(name)} repeats {', '.join(map(show, repeated))} (got {', '.join(map(show, values))}); "
                "give each value once (use --seeds for repetitions)"
            )


R = TypeVar("R", bound=RunOptions)


def resolve_run_config(
    cls: type[R], argv: Sequence[str] | None, description: str
) -> tuple[R, RunFolder | None]:
    """Parse (and validate) an experiment's options; with ``--resume FOLDER`` the saved configuration of that
    run is used, except the options in :data:`RESUME_OVERRIDES` and the launch options
    (:data:`~cortexnet.training.launch.LAUNCH_FIELDS`: ``--launcher``, ``--workers``, ``--slurm-*``) given on
    this command line. With ``--run-dir PATH`` the run goes to that folder: created when it is absent (or
    empty); when it holds a run of the same configuration (all options but those) that run is resumed, as with
    ``--resume PATH``; a run of another configuration there is refused, naming the options that differ.

    Returns ``(config, folder)``: ``folder`` is the run folder to continue (or the ``--run-dir`` just made), or
    None for a new run.
    """
    from cortexnet.training.launch import LAUNCH_FIELDS
    from cortexnet.training.runs import RunFolder

    parser = build_parser(
        cls, prog=f"python -m cortexnet.experiments.{cls.experiment}", description=description
    )
    given = given_values(cls, parser, argv)
    if given.get("resume") is not None and given.get("run_dir") is not None:
        raise UsageError(
            "--run-dir and --resume cannot be combined: --run-dir resumes the run it holds itself"
        )
    if given.get("resume") is None:
        config = parse_config(cls, parser, argv)
        return (config, None) if config.run_dir is None else _open_run_dir(cls, config)
    try:
        folder, saved = RunFolder.open(given["resume"], cls.experiment)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        saved = coerce_values(cls, saved, source=str(folder.path / "config.json"))
    except UsageError as exc:
        raise UsageError(f"cannot resume {folder.path}: {exc}") from exc
    overrides = (*RESUME_OVERRIDES, *LAUNCH_FIELDS)
    # Everything but the overrides comes from the saved run: refuse other options rather than ignore them.
    changed = sorted(
        k for k, v in given.items() if k != "resume" and k not in overrides and saved.get(k) != v
    )
    if changed:
        allowed = ", ".join(_flag(k) for k in RESUME_OVERRIDES) + " and --launcher, --workers, --slurm-*"
        raise UsageError(
            f"{', '.join(_flag(k) for k in changed)} cannot be changed when resuming {folder.path} (the run "
            f"continues with its saved configuration); with --resume only {allowed} may be given"
        )
    if "launcher" in given and given["launcher"] != saved.get("launcher", "local"):
        # Another launcher: the saved run's options of its own launcher do not apply.
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        saved.update({k: defaults[k] for k in LAUNCH_FIELDS if k != "run_dir" and k not in given})
    saved.update({k: v for k, v in given.items() if k in overrides})
    try:
        config = cls(**saved)
        config = dataclasses.replace(config, resume=str(folder.path))
        config.validate()  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot resume {folder.path}: {exc}") from exc
    return config, folder


def _open_run_dir(cls: type[R], config: R) -> tuple[R, RunFolder]:
    """``--run-dir``: a new run folder there, or the run of the same configuration it holds (resumed)."""
    from cortexnet.training.launch import LAUNCH_FIELDS
    from cortexnet.training.runs import CONFIG_NAME, RunFolder

    path = Path(config.run_dir)
    if not (path / CONFIG_NAME).is_file():
        return config, RunFolder.create_at(path, cls.experiment, dataclasses.asdict(config))
    try:
        folder, saved = RunFolder.open(path, cls.experiment)
        saved_config = cls(**coerce_values(cls, saved, source=str(path / CONFIG_NAME)))
    except (TypeError, ValueError) as exc:  # UsageError is a ValueError
        raise UsageError(f"--run-dir {path}: {exc}") from exc
    ignored = {"resume", "out", *RESUME_OVERRIDES, *LAUNCH_FIELDS}
    now, there = dataclasses.asdict(config), dataclasses.asdict(saved_config)
    differ = [k for k in now if k not in ignored and now[k] != there.get(k)]
    if differ:
        shown = "; ".join(
            f"{_flag(k)} {_shown(there.get(k))} there, {_shown(now[k])} now" for k in differ[:4]
        )
        more = f"; and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise UsageError(
            f"--run-dir {path} holds a {cls.experiment} run of another configuration ({shown}{more}); choose "
            f"another --run-dir, or continue that run as it is with --resume {path}"
        )
    return dataclasses.replace(config, resume=str(folder.path)), folder


def _shown(value: Any) -> str:
    text = " ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def load_run_data(config: RunOptions) -> tuple[Any, dict[str, Any]]:
    """Load the configured dataset; returns ``(splits, dataset_spec)`` where the spec (saved in every
    checkpoint) is what the probe command needs to load the same data again. Bad dataset options are usage
    errors (raised before any I/O); missing data raises the data layer's ``DataError``."""
    from cortexnet.data import load_dataset

    options = parse_key_values(config.dataset_options, option="--dataset-options")
    try:
        splits = load_dataset(
            config.dataset,
            root=config.data_root,
            download=config.download,
            val_fraction=config.val_fraction,
            n_per_class=config.n_per_class,
            seed=config.split_seed,
            options=options or None,
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc
    spec = {
        "name": config.dataset,
        "val_fraction": config.val_fraction,
        "n_per_class": config.n_per_class,
        "seed": config.split_seed,
        "options": options,
        "description": splits.description,
    }
    return splits, spec


def readout_for(splits: Any) -> str:
    """The readout a model needs for this data: ``"all"`` (logits at every step) when its targets are per
    step ``(n, T)`` (a cognitive task scored on its response period), else ``"last"`` (one label per
    sequence)."""
    return "all" if splits.train.tensors[1].dim() == 2 else "last"


def rewiring_seed(seed: int) -> int:
    """The seed of a member's rewiring draws, from its run seed (a stream of its own: the masks, weights and
    data order of :func:`~cortexnet.training.runs.derive_seeds` do not move when rewiring is switched on)."""
    return int(np.random.SeedSequence([seed, 4]).generate_state(1)[0])


def with_data_placeholders(topology: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with :data:`~cortexnet.connectivity.FROM_DATA` for each data parameter of ``topology`` not
    given."""
    from cortexnet.connectivity import FROM_DATA, data_params

    return {**{k: FROM_DATA for k in data_params(topology)}, **params}


def wire_data_params(model_name: str, model_config: Any, splits: Any, *, seed: int, batch_size: int) -> Any:
    """``model_config`` with every :data:`~cortexnet.connectivity.FROM_DATA` topology parameter filled from the
    training data (``topology_params`` and per-weight ``layer_topologies``; unchanged when there is none):

    * ``saliency`` (SNIP): |g * w| of the model's dense twin at initialisation
      (:func:`cortexnet.models.saliency.snip_saliency`) on one batch of ``batch_size`` training samples drawn
      with ``seed``, for the weights that SNIP wires (a dict by weight name, so a global top-k spans them);
    * ``activity`` (CSTI): a sample of 2,000 flattened training inputs drawn with ``seed``
      (:func:`cortexnet.connectivity.correlation.input_activity`); refused on a recurrent weight, whose
      presynaptic units are hidden nodes without data.

    Deterministic in ``seed`` and the configuration, so a resumed run wires the same values. Raises
    ``UsageError`` for a parameter that cannot be wired.
    """
    from cortexnet.connectivity import FROM_DATA

    overrides = tuple(getattr(model_config, "layer_topologies", ()))
    base = (model_config.topology, dict(model_config.topology_params))
    # (topology, params) per sparse weight, in the order of sparse_weights (one weight without the method).
    specs = getattr(model_config, "layer_topology_specs", None)
    per_weight = specs() if specs is not None else [base]
    wanted = sorted({k for _, params in per_weight for k, v in params.items() if v is FROM_DATA})
    if not wanted:
        return model_config
    x, y = splits.train.tensors[0], splits.train.tensors[1]
    values: dict[str, Any] = {}
    for key in wanted:
        users = [i for i, (_, params) in enumerate(per_weight) if params.get(key) is FROM_DATA]
        if key == "saliency":
            from cortexnet.models.saliency import snip_saliency

            g = torch.Generator().manual_seed(seed)
            idx = torch.randperm(len(x), generator=g)[: min(batch_size, len(x))].sort().values
            scores = snip_saliency(
                model_name, model_config, splits.n_inputs, splits.n_classes, x[idx], y[idx]
            )
            names = list(scores)
            values[key] = {names[i]: scores[names[i]] for i in users}
        elif key == "activity":
            from cortexnet.connectivity.correlation import input_activity

            spec = model_config.layer_spec() if hasattr(model_config, "layer_spec") else None
            if spec is not None and spec.recurrent:
                raise UsageError(
                    f"topology {per_weight[users[0]][0]!r} needs activity samples of its presynaptic units, but "
                    "they are the hidden nodes of a recurrent layer, which have no data: use it on a "
                    "feed-forward model (sparse_mlp, g2gnet)"
                )
            values[key] = input_activity(x, generator=torch.Generator().manual_seed(seed))
        else:
            raise UsageError(
                f"no wiring from data for topology parameter {key!r} (known: activity, saliency)"
            )
    wired_base = {k: values[k] if v is FROM_DATA else v for k, v in base[1].items()}
    changes: dict[str, Any] = {"topology_params": wired_base}
    if overrides:
        changes["layer_topologies"] = tuple(
            {k: values[k] if v is FROM_DATA else v for k, v in o.items()} for o in overrides
        )
    return dataclasses.replace(model_config, **changes)


def run_members(
    config: RunOptions,
    folder: RunFolder,
    splits: Any,
    dataset_spec: dict[str, Any],
    members: Sequence[Member],
    *,
    margin: float = 0.05,
    results: RunResults | None = None,
) -> RunResults:
    """Train (or, on resume, finish) every member with the run's options and its ``--launcher``
    (:func:`cortexnet.training.launch.launch_members`; local: :func:`cortexnet.training.runs.train_members`),
    its data-derived topology parameters wired first (:func:`wire_data_params`, written into
    ``member.model_config``), and summarise each with :func:`cortexnet.analysis.summarize_run` (accuracy per
    epoch, best, final, learning delay with ``margin``). Every launcher gives the same results. ``results``: the
    results of members of the same run trained earlier on other data (``splits``), to add to."""
    from cortexnet.analysis import summarize_run
    from cortexnet.data import chance_level
    from cortexnet.training.launch import LaunchOptions, launch_members

    chance = chance_level(splits)
    from cortexnet.training.rewiring import RewiringCallback

    for m in members:  # in place: what the experiment reads of a member afterwards is what was trained
        m.model_config = wire_data_params(
            m.model_name, m.model_config, splits, seed=config.split_seed, batch_size=config.batch_size
        )
        rewiring = config.rewiring_config(m.seed)
        if rewiring is not None and not any(isinstance(cb, RewiringCallback) for cb in m.callbacks):
            m.callbacks = (*m.callbacks, RewiringCallback(rewiring))  # last: a stable checkpoint position
    if config.memory_check:
        check_memory(config, splits, members)
    results = launch_members(
        folder,
        splits,
        dataset_spec,
        members,
        launch=LaunchOptions.of(config, config.experiment),
        train_config=config.train_config,
        summarize=lambda history: summarize_run(history, chance=chance, margin=margin),
        resume=config.resume is not None,
        progress=config.progress,
        results=results,
    )
    for m in members:
        for cb in m.callbacks:
            if isinstance(cb, RewiringCallback):
                results.runs[m.label]["rewiring"] = summarize_rewiring(cb.history)
    return results


def check_memory(config: RunOptions, splits: Any, members: Sequence[Member]) -> None:
    """Refuse, before any member trains, a run whose members cannot fit in memory: each member's training peak
    is estimated from the backends' own formulas (:func:`cortexnet.training.memory.estimate_training_memory`,
    nothing is built) and compared with what the device has (for a GPU also the host, for the connectivity
    build). Raises :class:`~cortexnet.training.memory.MemoryBudgetError` (a usage error) naming the member, the
    estimate and its parts, what is available and the largest ``--nodes`` that fits where the model has nodes.
    A model the estimator cannot describe is not checked (logged). With ``--launcher processes`` K members
    train at once, so each must fit in 1/K of the memory; with ``--launcher slurm`` they train on other nodes:
    members on the CPU are checked against ``--slurm-mem`` when it is given, the others not at all."""
    from cortexnet.training import resolve_device
    from cortexnet.training.launch import LaunchOptions
    from cortexnet.training.memory import (
        MemoryBudgetError,
        available_memory,
        check_fits,
        estimate_training_memory,
        size_hint,
    )

    launch = LaunchOptions.of(config)
    if launch.launcher == "slurm":
        on_gpu = config.device.startswith("cuda") or (
            config.device == "auto" and bool(launch.slurm_gpus_per_task)
        )
        if on_gpu or launch.slurm_mem is None:
            logging.getLogger(__name__).info("memory not checked here: the members train on SLURM nodes")
            return
        device = torch.device("cpu")
    else:
        device = resolve_device(config.device)

    def estimate(m: Member, **changes: Any) -> Any:
        return estimate_training_memory(
            m.model_name, dataclasses.replace(m.model_config, **changes), n_inputs=splits.n_inputs,
            n_classes=splits.n_classes, n_steps=splits.n_steps, train_config=config.train_config(m.seed),
            device=device,
        )  # fmt: skip

    try:
        estimates = [(m.label, estimate(m)) for m in members]
    except (NotImplementedError, ValueError, TypeError) as exc:  # not a reason to refuse a run: say so
        logging.getLogger(__name__).warning("memory not checked: %s", " ".join(str(exc).split())[:200])
        return
    by_label = {m.label: m for m in members}

    def fix(label: str, est: Any) -> str:
        m = by_label[label]
        nodes = getattr(m.model_config, "n_nodes", None)
        generic = "or a smaller --batch-size, a lower density, or a machine with more memory (--no-memory-check: try anyway)"
        if parallel > 1:
            generic = (
                f"or fewer --workers ({parallel} members train at once, each in 1/{parallel} of the memory), "
                + generic
            )
        if not isinstance(nodes, int):
            return "use smaller layers " + generic
        hint = size_hint("--nodes", lambda n: estimate(m, n_nodes=n), budget, nodes)
        return f"{hint}; use fewer --nodes " + generic

    parallel = launch.parallel(len(members))
    if launch.launcher == "slurm":
        budget, host = int(launch.slurm_mem * 1024**3), None  # type: ignore[operator]
    else:
        budget = available_memory(device) // parallel
        host = available_memory("cpu") // parallel if device.type == "cuda" else None
    try:
        check_fits(estimates, budget, host_budget_bytes=host, fix=fix)
    except MemoryBudgetError as exc:
        raise UsageError(str(exc)) from exc


def summarize_rewiring(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per weight: updates made, links removed / regrown in total, mean overlap, final synapse count and the
    seconds spent, from a rewirer's update records."""
    out: dict[str, Any] = {}
    for rec in history:
        w = out.setdefault(rec["weight"], {"updates": 0, "removed": 0, "grown": 0, "overlap_sum": 0.0,
                                           "nnz": None, "seconds": 0.0, "frozen": False})  # fmt: skip
        w["updates"] += 1
        w["removed"] += rec["removed"]
        w["grown"] += rec["grown"]
        w["overlap_sum"] += rec["overlap"]
        w["nnz"], w["frozen"] = rec["nnz"], rec["frozen"]
        w["seconds"] += rec["seconds"]
    for w in out.values():
        w["mean_overlap"] = w.pop("overlap_sum") / max(w["updates"], 1)
    return out


class RecordCounts(Callback):
    """Records ``count(model)`` of the member's built model when training begins (kept in its checkpoint)."""

    def __init__(self, count: Callable[[nn.Module], dict[str, Any]]) -> None:
        self.count = count
        self.counts: dict[str, Any] | None = None

    def on_train_begin(self, model: nn.Module, ctx: Any) -> None:
        self.counts = self.count(model)

    def state_dict(self) -> dict:
        return {"counts": self.counts}

    def load_state_dict(self, state: dict) -> None:
        self.counts = state.get("counts")

    def result(self, member: Member, splits: Any) -> dict[str, Any]:
        """The recorded counts. A member finished before a resume gets them back from its checkpoint
        (:func:`~cortexnet.training.runs.train_member` restores callback state); only a checkpoint without them (an older cortexnet)
        is rebuilt from its configuration (same seeds, same masks) and counted."""
        if self.counts is None:
            self.counts = self.count(
                build_model(member.model_name, member.model_config, splits.n_inputs, splits.n_classes)
            )
        return self.counts


def summarize_counts(counts: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(mean, sd)`` over seeds of count dicts (numbers, and lists of numbers element by element); a count
    equal in every seed stays that exact value (its SD is 0). Non-numeric entries are left out."""
    mean: dict[str, Any] = {}
    sd: dict[str, Any] = {}
    for key, first in counts[0].items():
        vals = [c[key] for c in counts]
        if isinstance(first, bool) or not isinstance(first, (int, float, list)):
            continue
        if isinstance(first, list):
            cols = [MeanSD.of(col) for col in zip(*vals, strict=True)]
            same = all(v == first for v in vals)
            mean[key], sd[key] = (first if same else [m.mean for m in cols]), [m.sd for m in cols]
        else:
            m = MeanSD.of(vals)
            mean[key], sd[key] = (first if all(v == first for v in vals) else m.mean), m.sd
    return mean, sd
