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
from pathlib import Path
from typing import Any, TypeVar

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


def build_parser(cls: type, *, prog: str, description: str) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one option per field of the frozen dataclass ``cls``.

    ``field_name`` becomes ``--field-name``; bools use ``BooleanOptionalAction``; ``tuple[X, ...]`` fields take
    one or more values (the option may repeat); ``X | None`` fields accept ``none``. Help comes from ``field.metadata["help"]``.
    Defaults are suppressed so that :func:`parse_config` can tell given options from defaults; ``--config``
    reads a TOML file of field values, overridden by options given on the command line.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
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


def parse_config(cls: type[C], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> C:
    """Defaults ← TOML file (``--config``) ← command-line options; returns a validated ``cls`` instance.

    Raises :class:`UsageError` for unknown TOML keys, wrong types, or values that ``cls.validate`` rejects.
    """
    ns = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    cfg_file = ns.pop("config", None)
    names = {f.name for f in dataclasses.fields(cls)}
    if cfg_file is not None:
        try:
            data = tomllib.loads(Path(cfg_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"cannot read config file {cfg_file}: {exc}") from exc
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in names:
                raise UsageError(f"unknown key {key!r} in {cfg_file}; known: {', '.join(sorted(names))}")
            values[name] = tuple(value) if isinstance(value, list) else value
    values.update({k: tuple(v) if isinstance(v, list) else v for k, v in ns.items()})
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
    """Run an experiment's ``main`` with logging set up; a :class:`UsageError` or a data error becomes one line
    ``<prog>: error: <message>`` on stderr and exit status 2."""
    from cortexnet.data import DataError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prog = Path(sys.argv[0]).stem if argv is None else "cortexnet"
    try:
        return main(None if argv is None else list(argv))
    except (UsageError, DataError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


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
