"""The benchmark scripts run (tiny cases, in process): no timing is asserted, only that records are complete."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

recurrent_step = pytest.importorskip("recurrent_step")
peer_jax = pytest.importorskip("peer_jax")  # imports no JAX itself; the JAX test skips without it


@pytest.mark.parametrize("method", ["authors", "best_dense", "masked_dense", "csr_torch", "csr", "auto"])
def test_recurrent_step_case_record(method):
    rec = recurrent_step.run_case(method, 40, 0.2, 3, steps=4, repeats=1, optimizer_step=True)
    assert rec["method"] == method and rec["nnz"] > 0
    assert rec["ms"] > 0 and rec["peak_mb"] > 0 and len(rec["times_ms"]) == 1
    recurrent_step.derive(rec, {"gemm_gflops": 100.0, "copy_gbs": 10.0})
    assert rec["floor_ms"] > 0 and rec["x_floor"] > 0


def test_work_and_memory_models_are_monotone():
    a = recurrent_step.estimate_gb("csr", 10_000, 10_000_000, 32)
    b = recurrent_step.estimate_gb("csr", 100_000, 100_000_000, 32)
    assert 0 < a < b
    assert recurrent_step.estimate_gb("authors", 20_000, 0, 32) > 40  # does not fit on a 24 GB machine
    cases = recurrent_step.build_cases(
        type("A", (), {"n": [1000, 10_000], "p": [0.1], "b": [32], "methods": ["csr", "auto"]})()
    )
    assert cases[0] == ("csr", 10_000, 0.1, 32)  # target cases first; auto is resolved, not run


@pytest.mark.parametrize("method", ["cortexnet_masked_dense", "cortexnet_csr", "cortexnet_auto"])
def test_peer_jax_cortexnet_case_record(method):
    rec = peer_jax.run_case(method, 40, 0.2, 3, steps=4, repeats=1)
    assert rec["method"] == method and rec["nnz"] > 0 and rec["backend"] in ("masked_dense", "csr")
    assert rec["ms"] > 0 and rec["peak_mb"] > 0 and len(rec["times_ms"]) == 1 and rec["loss"] > 0


def test_peer_jax_problem_is_one_mask_per_seed():
    a = peer_jax.make_problem(60, 0.1, 2, 3, seed=1)
    b = peer_jax.make_problem(60, 0.1, 2, 3, seed=1)
    assert a["connectivity_sha1"] == b["connectivity_sha1"] and a["nnz"] == a["col"].size > 0
    assert not (a["rows"] == a["col"]).any()  # no self-connections


def test_peer_jax_agrees_with_cortexnet_in_float64(capsys):
    pytest.importorskip("jax")
    assert peer_jax.run_check(30, 0.2, 3, 4, seed=0, tol=1e-8) == 0
    assert "agree" in capsys.readouterr().out
