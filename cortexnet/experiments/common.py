"""Shared command-line glue for experiments: a CLI generated from a frozen config dataclass, TOML configs,
and the error contract (bad value → one line on stderr, exit status 2, before any work)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from torch import nn

from cortexnet.analysis import MeanSD
from cortexnet.models import build_model
from cortexnet.sparse import SparseWeight
from cortexnet.training import Callback, TrainConfig

if TYPE_CHECKING:
    from cortexnet.training.runs import RunFolder

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C")


class UsageError(ValueError):
    """A bad command-line or config value; reported as one line with exit status 2."""


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _scalar(tp: Any) -> Callable[[str], Any]:
    if tp in (int, float, str):
        return tp
    raise TypeError(f"unsupported config field type {tp!r}")


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce_scalar(tp: Any, value: Any, optional: bool) -> Any:
    """``value`` as ``tp`` (int, float, str or bool), or raise ``TypeError`` saying what was expected."""
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - build_parser already refuses such fields
        raise TypeError(f"unsupported config field type {tp!r}")
    if not ok:
        expected = _TYPE_WORDS[tp] + (" or none" if optional else "")
        raise TypeError(f"must be {expected}, got {value!r} ({type(value).__name__})")
    return value


def coerce_field(tp: Any, value: Any) -> Any:
    """Check ``value`` (from TOML, JSON or argparse) against a config field's type hint ``tp`` and convert it:
    ints must be ints (20.5 and true are refused), bools bools, floats accept ints, ``X | None`` accepts None
    or "none", and ``tuple[X, ...]`` takes a list (or a single value, as a 1-tuple) of X. Raises ``TypeError``
    saying what was expected."""
    inner, optional = _unwrap(tp)
    if typing.get_origin(inner) is tuple:
        if optional and value is None:
            return None
        items = value if isinstance(value, list | tuple) else [value]
        elem = typing.get_args(inner)[0]
        try:
            return tuple(_coerce_scalar(elem, v, False) for v in items)
        except TypeError as exc:
            raise TypeError(f"each value {exc}") from None
    return _coerce_scalar(inner, value, optional)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: a bad option is one line (no usage dump), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def build_parser(cls: type, *, prog: str, description: str) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one option per field of the frozen dataclass ``cls``.

    ``field_name`` becomes ``--field-name``; bools use ``BooleanOptionalAction``; ``tuple[X, ...]`` fields take
    one or more values (the option may repeat); ``X | None`` fields accept ``none``. Help comes from ``field.metadata["help"]``.
    Defaults are suppressed so that :func:`parse_config` can tell given options from defaults; ``--config``
    reads a TOML file of field values, overridden by options given on the command line.
    """
    parser = _Parser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help="TOML file with option values (command line wins)")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "") + f" (default: {default})"
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(tp) is tuple:
            inner = _scalar(typing.get_args(tp)[0])
            # "extend": both --x a b and --x a --x b collect every value.
            parser.add_argument(
                flag, type=inner, nargs="+", action="extend", metavar=f.name.upper(), help=help_text
            )
        else:
            conv = _scalar(tp)
            if optional:
                conv = _optional(conv)
            parser.add_argument(flag, type=conv, metavar=f.name.upper(), help=help_text)
    return parser


def _optional(conv: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else conv(text)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def coerce_values(cls: type, values: dict[str, Any], *, source: str) -> dict[str, Any]:
    """``values`` checked and converted against the field types of ``cls`` (see :func:`coerce_field`);
    raises :class:`UsageError` naming the key, ``source``, what was expected and what was given."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for name, value in values.items():
        if name not in names:
            raise UsageError(f"unknown key {name!r} in {source}; known: {', '.join(sorted(names))}")
        try:
            out[name] = coerce_field(hints[name], value)
        except TypeError as exc:
            raise UsageError(f"{name} in {source} {exc}") from None
    return out


def given_values(cls: type, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> dict[str, Any]:
    """The values given explicitly (TOML file from ``--config``, then command-line options, which win),
    type-checked; defaults are not included."""
    ns = vars(parser.parse_args(argv))
    cfg_file = ns.pop("config", None)
    values: dict[str, Any] = {}
    if cfg_file is not None:
        try:
            data = tomllib.loads(Path(cfg_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"cannot read config file {cfg_file}: {exc}") from exc
        values.update(
            coerce_values(cls, {k.replace("-", "_"): v for k, v in data.items()}, source=str(cfg_file))
        )
    values.update(coerce_values(cls, ns, source="the command line"))
    return values


def parse_config(cls: type[C], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> C:
    """Defaults ← TOML file (``--config``) ← command-line options; returns a validated ``cls`` instance.

    Raises :class:`UsageError` for unknown TOML keys, wrong types, or values that ``cls.validate`` rejects.
    """
    values = given_values(cls, parser, argv)
    try:
        config = cls(**values)
    except TypeError as exc:
        raise UsageError(str(exc)) from exc
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    return config


def run_cli(main: Callable[[list[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run an experiment's ``main`` with logging set up. A :class:`UsageError`, a data error or an unusable
    output folder becomes one line ``<prog>: error: <message>`` on stderr and exit status 2; training that
    diverged (NaN/inf loss or weights) one such line and exit status 1 (the metrics of every finished
    evaluation are already in the run folder, and the last good checkpoint is named)."""
    from cortexnet.data import DataError
    from cortexnet.training import NonFiniteLossError
    from cortexnet.training.runs import OutputError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prog = Path(sys.argv[0]).stem if argv is None else "cortexnet"
    try:
        return main(None if argv is None else list(argv))
    except (UsageError, DataError, OutputError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"{prog}: error: training diverged: {exc}", file=sys.stderr)
        return 1


def parse_key_values(items: Sequence[str], *, option: str) -> dict[str, Any]:
    """``("seq_len=300", "subjects=[0, 1]")`` → ``{"seq_len": 300, "subjects": [0, 1]}``: values are read as
    JSON when they parse (numbers, lists, true/false/null), else kept as strings."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


def field(default: Any, help: str) -> Any:
    """A dataclass field with CLI help text (tuples are stored as immutable defaults)."""
    return dataclasses.field(default=default, metadata={"help": help})


# ------------------------------------------------------------------------------------------------------------
# What every training experiment shares: data, training and output options; resume; the member loop.

#: Options that may differ when an interrupted run is resumed (everything else comes from its config.json).
RESUME_OVERRIDES = ("epochs", "device", "data_root", "download", "progress")


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
    device: str = field("auto", "auto (CUDA when present), cpu, cuda or cuda:K")
    out: str = field("runs", "results root; the run is written to <out>/<experiment>/<timestamp>-<hash>/")
    resume: str | None = field(None, "continue the interrupted run in this folder")
    progress: bool = field(True, "show progress bars")

    def validate_run_options(self) -> None:
        """Check the shared options; raise ``ValueError`` naming the value, the allowed range and the fix."""
        from cortexnet.data import DATASETS
        from cortexnet.sparse import BACKENDS
        from cortexnet.training.fit import resolve_device
        from cortexnet.training.runs import check_output_writable

        if not self.seeds:
            raise ValueError("--seeds needs at least one value")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"--seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown --dataset {self.dataset!r}; known: {', '.join(DATASETS.names())}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.n_per_class is not None and self.n_per_class < 1:
            raise ValueError(f"--n-per-class must be >= 1, got {self.n_per_class}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown --backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        parse_key_values(self.dataset_options, option="--dataset-options")
        self.train_config(self.seeds[0]).validate()
        try:
            resolve_device(self.device)
        except ValueError as exc:
            raise ValueError(f"--device: {exc}") from None
        if self.resume is None:
            check_output_writable(self.out)

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
        )


R = TypeVar("R", bound=RunOptions)


def resolve_run_config(
    cls: type[R], argv: Sequence[str] | None, description: str
) -> tuple[R, RunFolder | None]:
    """Parse (and validate) an experiment's options; with ``--resume FOLDER`` the saved configuration of that
    run is used, except the options in :data:`RESUME_OVERRIDES` given on this command line.

    Returns ``(config, folder)``: ``folder`` is the run folder to continue, or None for a new run.
    """
    from cortexnet.training.runs import RunFolder

    parser = build_parser(
        cls, prog=f"python -m cortexnet.experiments.{cls.experiment}", description=description
    )
    given = given_values(cls, parser, argv)
    if given.get("resume") is None:
        return parse_config(cls, parser, argv), None
    try:
        folder, saved = RunFolder.open(given["resume"], cls.experiment)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        saved = coerce_values(cls, saved, source=str(folder.path / "config.json"))
    except UsageError as exc:
        raise UsageError(f"cannot resume {folder.path}: {exc}") from exc
    # Everything but RESUME_OVERRIDES comes from the saved run: refuse other options rather than ignore them.
    changed = sorted(
        k for k, v in given.items() if k != "resume" and k not in RESUME_OVERRIDES and saved.get(k) != v
    )
    if changed:
        allowed = ", ".join(_flag(k) for k in RESUME_OVERRIDES)
        raise UsageError(
            f"{', '.join(_flag(k) for k in changed)} cannot be changed when resuming {folder.path} (the run "
            f"continues with its saved configuration); with --resume only {allowed} may be given"
        )
    saved.update({k: v for k, v in given.items() if k in RESUME_OVERRIDES})
    try:
        config = cls(**saved)
        config = dataclasses.replace(config, resume=str(folder.path))
        config.validate()  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot resume {folder.path}: {exc}") from exc
    return config, folder


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
    its :func:`~cortexnet.analysis.summarize_run` summary, grouped by configuration key in member order."""

    records: list[dict[str, Any]]
    runs: dict[str, dict[str, Any]]
    groups: dict[tuple, list[dict[str, Any]]]


def train_members(
    config: RunOptions,
    folder: RunFolder,
    splits: Any,
    dataset_spec: dict[str, Any],
    members: Sequence[Member],
    *,
    margin: float = 0.05,
) -> RunResults:
    """Train (or, on resume, finish) every member in ``folder``, keeping ``metrics.jsonl`` current, and
    summarise each run (accuracy per epoch, best, final, learning delay with ``margin``)."""
    from cortexnet.analysis import summarize_run
    from cortexnet.data import chance_level
    from cortexnet.training.runs import train_member

    chance = chance_level(splits)
    results = RunResults([], {}, {})
    for m in members:
        state = train_member(
            folder,
            m.label,
            model_name=m.model_name,
            model_config=m.model_config,
            splits=splits,
            train_config=config.train_config(m.seed),
            tags=m.tags,
            finished_records=results.records,
            dataset_spec=dataset_spec,
            resume=config.resume is not None,
            callbacks=m.callbacks,
            progress=config.progress,
        )
        results.records.extend({**m.tags, **r} for r in state.history)
        run = {"seed": m.seed, **summarize_run(state.history, chance=chance, margin=margin)}
        results.runs[m.label] = run
        results.groups.setdefault(m.key, []).append(run)
        logging.getLogger(__name__).info(
            "%s: best test accuracy %.4f, final %.4f, delay %s",
            m.label, run["best_test_acc"], run["final_test_acc"], run["learning_delay"],
        )  # fmt: skip
    folder.write_metrics(results.records)
    return results


# Counts of the built models (parameters, synapses), recorded per member and summarised over seeds.


def built_counts(model: nn.Module) -> dict[str, int]:
    """Counts of a built model: ``synapses`` (active weights of its sparse matrices), ``parameters`` (every
    trainable value that exists: dense parameters plus active sparse weights, masked-off positions excluded)
    and ``stored`` (what its parameters allocate, backend-dependent)."""
    sparse = [m for m in model.modules() if isinstance(m, SparseWeight)]
    synapses = sum(m.nnz for m in sparse)
    stored = sum(p.numel() for p in model.parameters())
    sparse_stored = sum(p.numel() for m in sparse for p in m.parameters())
    return {"synapses": synapses, "parameters": stored - sparse_stored + synapses, "stored": stored}


class RecordCounts(Callback):
    """Records ``count(model)`` of the member's built model when training begins (kept in its checkpoint)."""

    def __init__(self, count: Callable[[nn.Module], dict[str, Any]]) -> None:
        self.count = count
        self.counts: dict[str, Any] | None = None

    def on_train_begin(self, model: nn.Module, state: Any) -> None:
        self.counts = self.count(model)

    def state_dict(self) -> dict:
        return {"counts": self.counts}

    def load_state_dict(self, state: dict) -> None:
        self.counts = state.get("counts")

    def result(self, member: Member, splits: Any) -> dict[str, Any]:
        """The recorded counts. A member finished before a resume gets them back from its checkpoint
        (:func:`~cortexnet.training.runs.train_member` restores callback state); only a checkpoint without them
        (an older cortexnet) is rebuilt from its configuration (same seeds, same masks) and counted."""
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
