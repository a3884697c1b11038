"""Issue 16, classes 1, 4 and 5 at the run folder: a failing command leaves no half-made folder behind; a
damaged config.json or checkpoint given to --resume is one line and exit status 2; a run folder in use by
another process cannot be resumed a second time."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from cortexnet.experiments import dale
from cortexnet.experiments.common import run_cli
from cortexnet.training.runs import (
    CREATED_FOLDERS,
    HELD_LOCKS,
    RunFolder,
    RunFolderInUse,
    discard_unfinished_folders,
    release_locks,
)

TINY = ["--dataset", "digits", "--nodes", "20", "--densities", "0.3", "--epochs", "1", "--batch-size", "300",
        "--no-progress"]  # fmt: skip


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cortexnet: error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert run_cli(dale.main, [*TINY, "--out", str(out)]) == 0
    (run,) = (out / "dale").iterdir()
    return run


def test_a_failure_after_the_folder_was_created_removes_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "runs"

    def broken(*args, **kwargs):
        raise RuntimeError("connectivity build exploded")

    monkeypatch.setattr(dale, "run_members", broken)  # fails after RunFolder.create, before any checkpoint
    assert run_cli(dale.main, [*TINY, "--out", str(out)]) == 1
    assert "connectivity build exploded" in one_line(capsys)
    assert list((out / "dale").iterdir()) == []


def test_a_folder_with_finished_work_is_kept(tmp_path):
    folder = RunFolder.create(tmp_path, "dale", {"a": 1})
    (folder.member_dir("m") / "checkpoint.pt").parent.mkdir(parents=True)
    (folder.member_dir("m") / "checkpoint.pt").write_bytes(b"x")
    empty = RunFolder.create(tmp_path, "dale", {"b": 2})
    at = CREATED_FOLDERS.index(folder.path)
    assert discard_unfinished_folders(at) == [empty.path]
    assert folder.path.is_dir() and not empty.path.exists()


def test_a_folder_made_before_the_command_is_not_the_commands_to_remove(tmp_path, capsys):
    earlier = RunFolder.create(tmp_path / "runs", "dale", {"earlier": True})
    assert run_cli(dale.main, [*TINY, "--lr", "-1", "--out", str(tmp_path / "runs")]) == 2
    one_line(capsys)
    assert earlier.path.is_dir()


@pytest.mark.parametrize(
    "content,msg",
    [("{ not json", "is unreadable or not JSON"), ('["a list"]', 'no run configuration'),
     ('{"experiment": "dale"}', "no run configuration"), ("", "is unreadable or not JSON")],
)  # fmt: skip
def test_a_damaged_config_json_is_one_line_on_resume(tmp_path, capsys, content, msg):
    folder = RunFolder.create(tmp_path, "dale", {"x": 1})
    release_locks()
    (folder.path / "config.json").write_text(content)
    assert run_cli(dale.main, ["--resume", str(folder.path)]) == 2
    err = one_line(capsys)
    assert msg in err and "config.json" in err


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _inside_largest_tensor(path) -> int:
    """The file offset of the middle byte of the checkpoint's largest tensor record."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.compress_size)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len + info.compress_size // 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_checkpoint_is_one_line_on_resume(finished, tmp_path, capsys, damage):
    run = _copy_run(finished, tmp_path / "run")
    (ckpt,) = run.glob("members/*/checkpoint.pt")
    data = bytearray(ckpt.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # a byte of a stored tensor (not zip bookkeeping, e.g. CRCs, torch never reads)
        data[_inside_largest_tensor(ckpt)] ^= 0x5A
    else:
        data = bytearray(b"not a checkpoint at all" * 10)
    ckpt.write_bytes(bytes(data))
    assert run_cli(dale.main, ["--resume", str(run), "--epochs", "2"]) == 2
    err = one_line(capsys)
    assert "checkpoint.pt" in err and "weights_only" not in err


def test_a_folder_in_use_by_another_process_cannot_be_resumed(finished, tmp_path, capsys):
    run = _copy_run(finished, tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from cortexnet.training.runs import RunFolder
            RunFolder({str(run)!r}).lock()
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_cli(dale.main, ["--resume", str(run), "--epochs", "2"]) == 2
        err = one_line(capsys)
        assert f"run folder {run} is in use by process {holder.pid}" in err
        with pytest.raises(RunFolderInUse):
            RunFolder(run).lock()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock with it, and the run resumes
    assert run_cli(dale.main, ["--resume", str(run), "--epochs", "2"]) == 0
    assert run.resolve() not in HELD_LOCKS  # the command released what it took


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    folder = RunFolder.create(tmp_path, "dale", {"x": 1})
    RunFolder(folder.path).lock()  # the same process: no conflict
    release_locks()
    assert not HELD_LOCKS


def test_run_folder_create_locks_and_records_the_folder(tmp_path):
    config = dale.DaleConfig(dataset="digits", nodes=30, out=str(tmp_path / "runs"))
    folder = RunFolder.create(config.out, "dale", dataclasses.asdict(config))
    assert folder.path.resolve() in HELD_LOCKS and CREATED_FOLDERS[-1] == folder.path
    assert (folder.path / ".lock").read_text().startswith("process ")
    release_locks()


@pytest.mark.parametrize("command", ["dale", "recurrent_vs_feedforward"])
def test_a_network_that_cannot_fit_is_refused_before_any_member_trains(
    tmp_path, capsys, monkeypatch, command
):
    import importlib

    import cortexnet.training.runs as runs_mod

    def trained(*args, **kwargs):
        raise AssertionError("a member started training")

    monkeypatch.setattr(runs_mod, "train_members", trained)
    module = importlib.import_module(f"cortexnet.experiments.{command}")
    out = tmp_path / "runs"
    args = ["--dataset", "digits", "--nodes", "100000000", "--no-progress", "--out", str(out)]
    assert run_cli(module.main, args) == 2
    err = one_line(capsys)
    assert (
        "to train, but" in err
        and "of cpu memory is available" in err
        and "the largest --nodes that fits is" in err
    )
    assert not any(out.rglob("*.json"))


def test_the_memory_check_can_be_switched_off(tmp_path, capsys, monkeypatch):
    import cortexnet.training.runs as runs_mod

    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(runs_mod, "train_members", reached)
    args = ["--dataset", "digits", "--nodes", "100000000", "--no-memory-check", "--out", str(tmp_path / "r")]
    assert run_cli(dale.main, args) == 1  # reached training (here: the stand-in) without the check
    assert "Reached" in capsys.readouterr().err
