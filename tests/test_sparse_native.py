"""The compiled CSR kernels (cortexnet.sparse.native): built where a compiler exists, exact against float64
dense references for every shape class (vector chunks, scalar tails, empty rows and panels, int32/int64
indices, strided steps), independent of the thread count, and a clean fallback where nothing compiles."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
import torch

from cortexnet.sparse import native
from cortexnet.sparse._csr_index import build_index, sddmm_acc_, spmm

HAS_COMPILER = bool(
    os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
)
needs_native = pytest.mark.skipif(not native.native_available(), reason="compiled CSR kernels unavailable")


@pytest.fixture
def native_only():
    previous = native.set_csr_kernel("native")
    yield
    native.set_csr_kernel(previous)


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """A clean build state (and cache folder) for this test; the normal one is restored afterwards."""
    monkeypatch.setenv("CORTEXNET_CACHE_DIR", str(tmp_path))
    native._library.cache_clear()
    previous = native._choice._mode
    native._choice._mode = None
    yield tmp_path
    native._choice._mode = previous
    monkeypatch.undo()
    native._library.cache_clear()


def _matrix(n_out, n_in, p, seed, *, empty_rows=(), empty_cols=()):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_out, n_in, generator=g) < p
    mask[list(empty_rows)] = False
    mask[:, list(empty_cols)] = False
    crow = torch.zeros(n_out + 1, dtype=torch.int64)
    crow[1:] = mask.sum(1).cumsum(0)
    col = mask.nonzero()[:, 1]
    return mask, crow, col


def _int64(panels):
    return dataclasses.replace(panels, crow=panels.crow.long(), col=panels.col.long(), _cache={})


def test_a_present_compiler_builds_the_kernels():
    if not HAS_COMPILER:
        pytest.skip("no C++ compiler on this machine")
    assert native.native_available(), native.native_status()
    assert native.native_status().startswith("compiled with")


@needs_native
@pytest.mark.usefixtures("native_only")
@pytest.mark.parametrize("k", [1, 3, 8, 16, 17, 32, 33, 64, 100])
@pytest.mark.parametrize("panel", [None, 7, 64])
@pytest.mark.parametrize("wide", [False, True])
def test_products_match_float64_dense(k, panel, wide):
    n_out, n_in = (90, 131) if wide else (131, 90)
    mask, crow, col = _matrix(n_out, n_in, 0.15, k, empty_rows=(0, 5, n_out - 1), empty_cols=range(20, 60))
    index = build_index(crow, col, n_out, n_in, torch.device("cpu"), panel_cols=panel)
    g = torch.Generator().manual_seed(1)
    vals = torch.randn(col.numel(), generator=g, dtype=torch.float64)
    dense = torch.zeros(n_out, n_in, dtype=torch.float64)
    dense[mask] = vals
    x = torch.randn(n_in, k, generator=g, dtype=torch.float64)
    y = torch.randn(n_out, k, generator=g, dtype=torch.float64)
    for fwd, bwd in [(index.fwd, index.bwd), (_int64(index.fwd), _int64(index.bwd))]:
        assert native.uses_native(vals)
        out = spmm(fwd.bind(fwd.gather(vals)), x, n_out)
        torch.testing.assert_close(out, dense @ x, rtol=1e-12, atol=1e-12)
        out_t = spmm(bwd.bind(bwd.gather(vals)), y, n_in)
        torch.testing.assert_close(out_t, dense.t() @ y, rtol=1e-12, atol=1e-12)
        acc = torch.zeros(col.numel(), dtype=torch.float64)
        sddmm_acc_(acc, fwd, y, x)
        torch.testing.assert_close(fwd.scatter(acc), (y @ x.t())[mask], rtol=1e-12, atol=1e-12)


@needs_native
@pytest.mark.usefixtures("native_only")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_gradient_over_strided_steps(dtype):
    """(S, n, K) operands read in place, e.g. ``grad[1:]`` and ``states[:-1]`` of a (T, n, K) buffer."""
    mask, crow, col = _matrix(70, 70, 0.2, 3)
    index = build_index(crow, col, 70, 70, torch.device("cpu"), panel_cols=16)
    g = torch.Generator().manual_seed(2)
    buf_g = torch.randn(6, 70, 40, generator=g, dtype=torch.float64)
    buf_x = torch.randn(6, 70, 40, generator=g, dtype=torch.float64)
    gs, xs = buf_g[1:, :, 3:37].to(dtype), buf_x[:-1, :, 3:37].to(dtype)  # K = 34: chunks and a tail
    acc = torch.zeros(col.numel(), dtype=dtype)
    sddmm_acc_(acc, index.fwd, gs[:, :, :], xs[:, :, :])
    expected = torch.einsum("sik,sjk->ij", gs.double(), xs.double())[mask]
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(index.to_canonical(acc).double(), expected, rtol=tol, atol=tol)


@needs_native
@pytest.mark.usefixtures("native_only")
def test_results_do_not_depend_on_the_thread_count():
    _, crow, col = _matrix(600, 600, 0.05, 4)
    index = build_index(crow, col, 600, 600, torch.device("cpu"))
    g = torch.Generator().manual_seed(5)
    vals, x = torch.randn(col.numel(), generator=g), torch.randn(600, 48, generator=g)
    assert col.numel() * 48 >= native.MIN_PARALLEL_MACS  # the parallel path runs
    threads = torch.get_num_threads()
    runs = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            acc = torch.zeros(col.numel())
            sddmm_acc_(acc, index.fwd, x, x)
            runs.append((spmm(index.fwd.bind(index.fwd.gather(vals)), x, 600), acc))
    finally:
        torch.set_num_threads(threads)
    for out, acc in runs[1:]:
        assert torch.equal(out, runs[0][0]) and torch.equal(acc, runs[0][1])


@needs_native
@pytest.mark.usefixtures("native_only")
def test_row_splits_balance_synapses_of_skewed_rows():
    n = 400
    rows = torch.cat([torch.zeros(300, dtype=torch.long), torch.arange(1, n)])  # row 0 holds 300 synapses
    cols = torch.cat([torch.arange(300), torch.zeros(n - 1, dtype=torch.long)])
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[rows, cols] = True
    crow = torch.zeros(n + 1, dtype=torch.int64)
    crow[1:] = mask.sum(1).cumsum(0)
    index = build_index(crow, mask.nonzero()[:, 1], n, n, torch.device("cpu"))
    splits = index.fwd.row_splits(2)
    assert splits[0] == 0 and splits[-1] == n and len(splits) == 3
    assert 1 <= int(splits[1]) < 200  # row 0 alone is about half the work (300 of ~700 synapse + row units)
    assert torch.equal(index.fwd.row_splits(2), splits)  # cached


@needs_native
@pytest.mark.usefixtures("native_only")
@pytest.mark.parametrize("itype", [torch.int32, torch.int64])
def test_permutations_round_trip(itype):
    g = torch.Generator().manual_seed(6)
    perm = torch.randperm(1000, generator=g).to(itype)
    v = torch.randn(1000, generator=g, dtype=torch.float64)
    gathered = native.permute(v, perm, scatter=False)
    assert torch.equal(gathered, v[perm.long()])
    assert torch.equal(native.permute(gathered, perm, scatter=True), v)


def test_the_choice_is_validated(monkeypatch):
    monkeypatch.setenv("CORTEXNET_CSR_KERNEL", "fast")
    with pytest.raises(
        ValueError, match="CORTEXNET_CSR_KERNEL must be one of auto, native, torch, got 'fast'"
    ):
        native.csr_kernel()
    with pytest.raises(ValueError, match="the CSR kernel must be one of"):
        native.set_csr_kernel("fast")
    monkeypatch.setenv("CORTEXNET_CSR_KERNEL", "torch")
    assert native.csr_kernel() == "torch" and not native.uses_native(torch.zeros(1))


@pytest.mark.usefixtures("fresh_build")
def test_no_compiler_falls_back_to_pytorch(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert not native.native_available()
    assert "does not run" in native.native_status()
    with pytest.raises(ValueError, match=r"not available .*; use auto or torch"):
        native.set_csr_kernel("native")
    # auto: the products still run, on PyTorch's kernels
    mask, crow, col = _matrix(30, 30, 0.2, 7)
    index = build_index(crow, col, 30, 30, torch.device("cpu"))
    vals = torch.randn(col.numel(), dtype=torch.float64)
    x = torch.randn(30, 4, dtype=torch.float64)
    dense = torch.zeros(30, 30, dtype=torch.float64)
    dense[mask] = vals
    torch.testing.assert_close(spmm(index.fwd.bind(index.fwd.gather(vals)), x, 30), dense @ x)


@pytest.mark.usefixtures("fresh_build")
def test_a_failing_build_is_reported_and_left_out(monkeypatch, tmp_path):
    fake = tmp_path / "fake-cxx"
    fake.write_text(
        "#!/bin/sh\necho 'fake 1.0'\n[ \"$1\" = --version ] && exit 0\necho 'error: no' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    assert not native.native_available()
    assert native.native_status().startswith("the build failed") and "error: no" in native.native_status()
    assert not list((tmp_path / "kernels").glob("*.so"))  # nothing partial left behind
    # the failure is remembered: the next process does not run the compiler again
    fake.write_text("#!/bin/sh\necho 'fake 1.0'\n[ \"$1\" = --version ] && exit 0\ntouch ran\nexit 1\n")
    native._library.cache_clear()
    monkeypatch.chdir(tmp_path)
    assert not native.native_available() and "earlier build" in native.native_status()
    assert not (tmp_path / "ran").exists()


@needs_native
@pytest.mark.usefixtures("fresh_build")
def test_the_build_is_cached_per_source_compiler_and_cpu(fresh_build):
    assert native.native_available()
    built = list((fresh_build / "kernels").glob("csr_kernels-*.so"))
    assert len(built) == 1
    native._library.cache_clear()
    mtime = built[0].stat().st_mtime_ns
    assert native.native_available() and built[0].stat().st_mtime_ns == mtime  # loaded, not rebuilt
