"""Atomic result files (invariant 7) and the import direction of ARCHITECTURE.md."""

import ast
import json
from pathlib import Path

import pytest
import torch

from cortexnet.io import atomic_torch_save, atomic_write_json, atomic_write_jsonl, read_jsonl

PKG = Path(__file__).resolve().parent.parent / "cortexnet"

#: package -> cortexnet packages it may import (ARCHITECTURE.md "Layout"); top-level utility modules
#: (registry, io) may be imported by anyone.
ALLOWED = {
    "connectivity": set(),
    "sparse": {"connectivity"},
    "layers": {"connectivity", "sparse"},
    "models": {"layers", "connectivity", "sparse"},
    "rewiring": {"layers", "connectivity", "sparse"},
    "data": set(),
    "training": {"models", "rewiring", "data", "layers", "connectivity", "sparse"},
    "analysis": {"models", "training", "data", "layers", "connectivity", "sparse"},
    "experiments": {"connectivity", "sparse", "layers", "models", "rewiring", "data", "training", "analysis"},
}
UTILITIES = {"registry", "io", "config", "__init__"}


def test_import_direction():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if len(rel) == 1:
            continue  # top-level utility modules
        pkg = rel[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] != "cortexnet" or len(parts) < 2:
                    continue
                target = parts[1]
                if target == pkg or target in UTILITIES:
                    continue
                if target not in ALLOWED[pkg]:
                    bad.append(f"{path.relative_to(PKG.parent)} imports cortexnet.{target}")
    assert not bad, "\n".join(bad)


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"a": 1, "nan": float("nan")})
    assert target.read_text().strip().startswith("{")
    assert '"nan": null' in target.read_text()
    atomic_write_jsonl(tmp_path / "m.jsonl", [{"x": 1}, {"x": 2}])
    assert read_jsonl(tmp_path / "m.jsonl") == [{"x": 1}, {"x": 2}]


def test_failed_write_leaves_old_file_and_no_temporaries(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"complete": True})

    # torch.save writes the tensor's bytes, then fails on the lambda: a half-written file must not replace it.
    with pytest.raises(Exception, match=r"pickle|lambda|Can.t"):
        atomic_torch_save(target, {"big": torch.zeros(100_000), "bad": lambda: 0})
    assert json.loads(target.read_text()) == {"complete": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_files_get_normal_permissions(tmp_path, umask):
    """Result files are 0666 & ~umask like any file a program creates (mkstemp's 0600 would hide them)."""
    import os
    import stat

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
        atomic_write_jsonl(tmp_path / "metrics.jsonl", [{"x": 1}])
        atomic_torch_save(tmp_path / "checkpoint.pt", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    for name in ("summary.json", "metrics.jsonl", "checkpoint.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "summary.json"]
