"""The CLI error contract, generated (issue 16, class 1): every command, driven with values and combinations
drawn from its own option dataclass, ends in one of two ways and nothing else:

* refused: exit status 2, exactly one line ``cortexnet: error: ...`` on stderr, no traceback, no results folder
  left behind; a value that no field of its type accepts (``2.5`` for an int, ``nan`` for a float, ``x`` for a
  number, a value after a flag) is always refused, and the message names the option or the value;
* accepted: the command reaches its work (here a sentinel stands in for training / probing, so the test stays
  fast) without having crashed on the way.

The cases come from the dataclasses' fields, so an option added later is covered without touching this file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cortexnet.training.runs as runs_mod
from cortexnet.config import _unwrap
from cortexnet.data import download
from cortexnet.experiments import (
    connectivity_sweep,
    dale,
    dst,
    g2g,
    recurrent_vs_feedforward,
    report,
    representations,
    topologies,
)
from cortexnet.experiments.common import run_cli

#: command → (its option dataclass, its main, the base arguments of a tiny valid run).
TINY_TRAINING = ["--dataset", "digits", "--epochs", "1", "--no-progress"]
COMMANDS = {
    "dale": (dale.DaleConfig, dale.main, [*TINY_TRAINING, "--nodes", "16"]),
    "recurrent_vs_feedforward": (
        recurrent_vs_feedforward.RecurrentVsFeedforwardConfig,
        recurrent_vs_feedforward.main,
        [*TINY_TRAINING, "--nodes", "16"],
    ),
    "g2g": (g2g.G2GExperimentConfig, g2g.main, TINY_TRAINING),
    "connectivity_sweep": (
        connectivity_sweep.ConnectivitySweepConfig,
        connectivity_sweep.main,
        [*TINY_TRAINING, "--nodes", "16"],
    ),
    "topologies": (topologies.TopologiesConfig, topologies.main, TINY_TRAINING),
    "dst": (dst.DSTConfig, dst.main, TINY_TRAINING),
    "representations": (representations.ProbeConfig, representations.main, []),  # + --checkpoint (fixture)
    "report": (report.ReportConfig, report.main, []),  # + the fixture's run folder
}
#: Fields whose values are paths or free text: any string is a legal value, so no string is "bad" there.
FREE_TEXT = {"out", "data_root", "resume", "label", "checkpoint", "run", "runs", "title"}
#: Commands with positional arguments: a stray word after a flag is one of them, not an error.
POSITIONAL = {"report"}


class WorkStarted(Exception):
    """Raised where a command's work would begin: the options were accepted."""


def _stop(*args, **kwargs):
    raise WorkStarted


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    args = ["--dataset", "digits", "--nodes", "12", "--densities", "0.5", "--epochs", "1", "--no-progress"]
    assert run_cli(dale.main, [*args, "--out", str(out)]) == 0
    (path,) = out.glob("dale/*/members/*/checkpoint.pt")
    return path


@pytest.fixture
def sentinel(monkeypatch):
    """Training and probing stop where their work would start."""
    monkeypatch.setattr(runs_mod, "train_members", _stop)
    monkeypatch.setattr(representations, "_dataset", _stop)
    monkeypatch.setattr(report, "compose", _stop)


def _kind(tp) -> tuple[type, bool, bool]:
    """(scalar type, is a tuple, is optional) of a field's type hint."""
    inner, optional = _unwrap(tp)
    if typing.get_origin(inner) is tuple:
        return typing.get_args(inner)[0], True, optional
    return inner, False, optional


#: Values that no field of the scalar type accepts (the type check refuses them whatever the field).
ALWAYS_BAD = {
    int: ["2.5", "x", "nan", "inf", "1.0e3", "", "0x1z"],
    float: ["nan", "inf", "-inf", "x", "1e999", "", "1,5"],
}
#: Values some fields accept and others refuse: used to explore combinations (either outcome is allowed).
PLAUSIBLE = {
    int: ["0", "-1", "1", "2", "7", "10000000000000"],
    float: ["0", "-1", "0.5", "1", "1.5", "1e-12", "1e12"],
    str: ["", "none", "x", "auto", "csr", "relu", "digits", "a=1", "0.a=b", "clip"],
}


def _options(cls) -> dict[str, tuple[str, type, bool, bool]]:
    hints = typing.get_type_hints(cls)
    return {f.name: ("--" + f.name.replace("_", "-"), *_kind(hints[f.name])) for f in dataclasses.fields(cls)}


def _bad_argv(flag: str, scalar: type, is_tuple: bool, value: str) -> list[str]:
    return [flag, "1", value] if is_tuple and scalar in (int, float) else [flag, value]


def _definitely_bad_cases():
    for command, (cls, _, _) in COMMANDS.items():
        for flag, scalar, is_tuple, optional in _options(cls).values():
            if scalar is bool:
                if command not in POSITIONAL:
                    yield pytest.param(
                        command, [flag, "maybe"], (flag, "maybe"), id=f"{command}:{flag}=maybe"
                    )
                continue
            for value in ALWAYS_BAD.get(scalar, []):
                if optional and not is_tuple and value == "":
                    continue  # "" (like "none") means None for an optional option
                yield pytest.param(command, _bad_argv(flag, scalar, is_tuple, value), (flag, value),
                                   id=f"{command}:{flag}={value!r}")  # fmt: skip


DEFINITELY_BAD = list(_definitely_bad_cases())


def _run(command: str, argv: list[str], out: Path, checkpoint: Path) -> tuple[int, str]:
    """Run ``command`` with ``argv`` through the CLI layer; assert the contract; return (status, stderr)."""
    _, main, base = COMMANDS[command]
    extra = {
        "representations": ["--checkpoint", str(checkpoint)],
        "report": [str(checkpoint.parents[2])],
    }.get(command, [])
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        code = run_cli(main, [*base, *extra, "--out", str(out), *argv])
    err = stderr.getvalue()
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cortexnet: error: "), (argv, err)
        left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
        assert not left, f"{argv}: a refused command left {left}"
    else:  # accepted: it got as far as its work (the sentinel), through run_cli's one-line report
        assert code == 1 and "WorkStarted" in err, (argv, code, err)
    return code, err


def test_the_generated_cases_cover_every_command_and_option():
    commands = {p.values[0] for p in DEFINITELY_BAD}
    # report's options are text and flags only, and a word after a flag is a RUN_DIR: the random cases cover it
    assert commands == set(COMMANDS) - POSITIONAL
    flags = {(p.values[0], p.values[2][0]) for p in DEFINITELY_BAD}
    expected = {
        (c, o[0])
        for c, (cls, _, _) in COMMANDS.items()
        for o in _options(cls).values()
        if o[1] in (int, float) or (o[1] is bool and c not in POSITIONAL)
    }
    assert flags == expected and len(DEFINITELY_BAD) > 400


@pytest.mark.parametrize(("command", "argv", "bad"), DEFINITELY_BAD)
def test_a_value_no_option_of_its_type_accepts_is_refused_in_one_line(
    command, argv, bad, tmp_path, checkpoint, sentinel
):
    code, err = _run(command, argv, tmp_path / "out", checkpoint)
    assert code == 2, err
    flag, value = bad
    assert flag in err or flag[2:].replace("-", "_") in err or (value and repr(value)[1:-1] in err), err


@st.composite
def _combination(draw, command: str) -> list[str]:
    cls = COMMANDS[command][0]
    options = {k: v for k, v in _options(cls).items() if k not in ("out", "resume", "checkpoint", "config")}
    names = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=4, unique=True))
    argv: list[str] = []
    for name in names:
        flag, scalar, is_tuple, _ = options[name]
        if scalar is bool:
            argv.append(draw(st.sampled_from([flag, "--no-" + flag[2:]])))
            continue
        pool = PLAUSIBLE.get(scalar, PLAUSIBLE[str]) + ALWAYS_BAD.get(scalar, [])
        if name in FREE_TEXT:
            pool = ["x", "sub/dir"]
        values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3 if is_tuple else 1))
        argv += [flag, *values]
    return argv


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_random_combinations_are_refused_in_one_line_or_reach_their_work(
    command, tmp_path_factory, checkpoint, sentinel
):
    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(argv=_combination(command))
    def check(argv):
        _run(command, argv, tmp_path_factory.mktemp("case") / "out", checkpoint)

    check()


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["nosuchdata"], "invalid choice"),
        (["mnist", "--subjects", "1"], "sleep-edf only"),
        (["sleep-edf", "--subjects", "x"], "invalid int value"),
        (["sleep-edf", "--recordings", "3"], "recordings"),
        ([], "required"),
    ],
)
def test_the_download_command_keeps_the_contract(argv, msg, capsys, tmp_path):
    assert download.main([*argv, "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cortexnet.data.download: error: ") and msg in err, err
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").rglob("*.*"))
