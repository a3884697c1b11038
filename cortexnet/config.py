"""Configurations as frozen dataclasses, on the command line and in TOML files: one option per field
(``field_name`` → ``--field-name``), type-checked values, and the usage-error contract (a bad value is one
line naming the key, what was expected and what was given).

Used by every experiment CLI (:mod:`cortexnet.experiments`), and usable for any frozen dataclass::

    @dataclass(frozen=True)
    class Options:
        nodes: int = field(1000, "hidden nodes")

    options = parse_config(Options, build_parser(Options, prog="x", description="..."), argv)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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
        if ok and not math.isfinite(value):  # inf and nan pass every "> 0" and fail every computation
            raise TypeError(f"must be a finite number, got {value!r}")
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
        elem = typing.get_args(inner)[0]
        if isinstance(value, dict) and elem is str:
            # A TOML table for a key=value list option: {groups = 4, p_inter = 0.05} -> ("groups=4", ...).
            value = [f"{k}={json.dumps(v)}" for k, v in value.items()]
        items = value if isinstance(value, list | tuple) else [value]
        try:
            return tuple(_coerce_scalar(elem, v, False) for v in items)
        except TypeError as exc:
            raise TypeError(f"each value {exc}") from None
    return _coerce_scalar(inner, value, optional)


def check_fields(obj: Any) -> None:
    """Check every scalar field of the dataclass instance ``obj`` against its type hint, as the command line
    does (:func:`coerce_field`: ints integral, bools bools, floats finite, ``X | None``, ``tuple[X, ...]``);
    fields of other types (dicts, tuples of dicts) are left to the class. Raises ``ValueError`` naming the class,
    the field, what was expected and the value: the Python API gets the errors of the command line."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        tp = hints.get(f.name)
        if tp is None or not _checkable(tp):
            continue
        try:
            coerce_field(tp, getattr(obj, f.name))
        except TypeError as exc:
            raise ValueError(f"{type(obj).__name__}.{f.name} {exc}") from None


def _checkable(tp: Any) -> bool:
    inner, _ = _unwrap(tp)
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        return len(args) == 2 and args[1] is Ellipsis and args[0] in _TYPE_WORDS
    return inner in _TYPE_WORDS


class CLIParser(argparse.ArgumentParser):
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
    parser = CLIParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
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


def parse_key_values(items: Sequence[str], *, option: str) -> dict[str, Any]:
    """``("seq_len=300", "subjects=[0, 1]")`` → ``{"seq_len": 300, "subjects": [0, 1]}``: values are read as
    JSON when they parse (numbers, lists, true/false/null), else kept as strings."""
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
