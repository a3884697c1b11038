"""The optional compiled CPU kernels of the CSR backend: built where a C++ compiler exists, never required.

``csrc/csr_kernels.cpp`` holds the two products of the CSR backend over column panels (``W @ X`` / ``Wᵀ @ G``
and the value gradient ``Σ_s G_s X_sᵀ`` sampled at stored synapses), vectorised with GCC/Clang vector
extensions and split over threads by rows. On the 2-core dev CPU they run the recurrence at N = 10,000,
p = 0.1 ~2-3x faster than PyTorch's sparse kernels (MKL ``addmm`` and ``sampled_addmm``; benchmarks/README.md).

The first use compiles the file with ``$CXX`` (else ``c++``) for this CPU (``-O3 -march=native``) into
``$CORTEXNET_CACHE_DIR`` (else ``~/.cache/cortexnet``)/kernels, keyed by a hash of the source, the compiler's
version and the CPU's flags, so a home directory shared by different cluster nodes gets one build per CPU
kind; it is loaded with :mod:`ctypes`, no Python headers or pybind11 needed. Where there is no compiler or
the build fails, the backend uses PyTorch's kernels (the fallback, and what CUDA always uses) and
:func:`native_status` says why.

``CORTEXNET_CSR_KERNEL`` (or :func:`set_csr_kernel`): ``auto`` (the default: compiled where available),
``native`` (compiled or an error), ``torch`` (PyTorch's kernels only). Both compute the same products for
float32 and float64; they differ only in float rounding (summation order), and each is deterministic — the
compiled one even across thread counts (every output element is summed by one thread in a fixed order).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from cortexnet.sparse._choice import EnvChoice

#: The choices of ``CORTEXNET_CSR_KERNEL`` / :func:`set_csr_kernel`.
CSR_KERNELS = ("auto", "native", "torch")
#: Multiply-adds below which one thread does the work (starting a thread costs ~20-50 µs).
MIN_PARALLEL_MACS = 1 << 17

_SOURCE = Path(__file__).with_name("csrc") / "csr_kernels.cpp"
_ABI = 2
_DTYPES = {torch.float32: 0, torch.float64: 1}
_ITYPES = {torch.int32: 0, torch.int64: 1}

#: Compiler flags, best first: for this CPU with OpenMP (PyTorch's runtime is reused, see the source), without
#: OpenMP (own threads) where it is missing, and a portable build where ``-march=native`` is unknown.
_FLAG_SETS = (
    ["-O3", "-march=native", "-ffp-contract=fast", "-fopenmp"],
    ["-O3", "-march=native", "-ffp-contract=fast"],
    ["-O3", "-ffp-contract=fast"],
)

_choice = EnvChoice("CORTEXNET_CSR_KERNEL", "the CSR kernel", CSR_KERNELS)
_status = "not built yet"
_log = logging.getLogger(__name__)


def csr_kernel() -> str:
    """The CSR kernel choice in force: :func:`set_csr_kernel`'s, else ``$CORTEXNET_CSR_KERNEL``, else auto."""
    return _choice.get()


def set_csr_kernel(mode: str | None) -> str | None:
    """Choose the CSR kernels (``auto``, ``native``, ``torch``; None: back to the environment's); returns the
    previous setting (None when it came from the environment) so a caller can restore it."""

    def unavailable(choice: str) -> str | None:
        if choice == "native" and _library() is None:
            return f"the compiled CSR kernels are not available ({_status}); use auto or torch"
        return None

    return _choice.set(mode, unavailable)


def native_status() -> str:
    """Why the compiled kernels are or are not in use (the build's outcome), in one line."""
    _library()
    return _status


def native_available() -> bool:
    """Whether the compiled kernels are built and loaded (building them on the first call)."""
    return _library() is not None


def _cache_dir() -> Path:
    """``$CORTEXNET_CACHE_DIR``/kernels, else ``~/.cache/cortexnet/kernels``; a per-user temporary folder where
    that cannot be written (read-only home directories on some clusters)."""
    root = os.environ.get("CORTEXNET_CACHE_DIR")
    folder = (Path(root) if root else Path.home() / ".cache" / "cortexnet") / "kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    folder = Path(tempfile.gettempdir()) / f"cortexnet-kernels-{uid}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cpu_signature() -> str:
    """The CPU's model and instruction-set flags (what ``-march=native`` compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [
            ln for ln in text.splitlines() if ln.startswith(("flags", "model name", "Features", "CPU part"))
        ]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def _compile(cxx: str, flags: list[str], target: Path) -> str | None:
    """Compile the source to ``target`` atomically; returns an error message or None."""
    try:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        return f"cannot write to {target.parent}: {exc}"
    cmd = [cxx, *flags, "-std=gnu++17", "-fPIC", "-shared", "-pthread", "-o", tmp, str(_SOURCE)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            return (proc.stderr.strip().splitlines() or ["no message"])[-1]
        os.replace(
            tmp, target
        )  # atomic: concurrent processes (data-parallel ranks) never load a partial file
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def _library() -> ctypes.CDLL | None:
    global _status
    if not _SOURCE.is_file():
        _status = f"the kernel source {_SOURCE} is missing from this installation"
        return None
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        _status = "no C++ compiler found (set CXX)"
        return None
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        _status = f"the compiler {cxx} does not run: {exc}"
        return None
    errors = []
    # -march=native first (the speed); a portable build where the compiler does not know it (e.g. some arm64).
    for flags in _FLAG_SETS:
        key = hashlib.sha256(
            b"\0".join(s.encode() for s in (_SOURCE.read_text(), version, _cpu_signature(), " ".join(flags)))
        ).hexdigest()[:16]
        target = _cache_dir() / f"csr_kernels-{key}.so"
        failed = target.with_suffix(".failed")  # a failed build is not retried by every process
        if failed.is_file():
            errors.append(f"{' '.join(flags)}: {failed.read_text().strip()} (earlier build; delete {failed})")
            continue
        if not target.exists():
            _log.info("building the compiled CSR kernels (once per CPU kind): %s", target)
            error = _compile(cxx, flags, target)
            if error is not None:
                errors.append(f"{' '.join(flags)}: {error}")
                try:
                    failed.write_text(error + "\n")
                except OSError:
                    pass
                continue
        try:
            lib = ctypes.CDLL(str(target))
        except OSError as exc:
            errors.append(f"loading {target}: {exc}")
            continue
        if lib.cn_abi_version() != _ABI:
            errors.append(f"{target} has another ABI version")
            continue
        _declare(lib)
        _status = f"compiled with {cxx} {' '.join(flags)}: {target}"
        return lib
    _status = "the build failed: " + "; ".join(errors)
    return None


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.cn_spmm.argtypes = [i32, i32, i64, i64, i64, ptr, ptr, ptr, ptr, ptr, i64, ptr, i64, ptr, i32]
    lib.cn_spmm.restype = i32
    lib.cn_sddmm.argtypes = [
        i32,
        i32,
        i64,
        i64,
        i64,
        i64,
        ptr,
        ptr,
        ptr,
        ptr,
        i64,
        i64,
        ptr,
        i64,
        i64,
        ptr,
        ptr,
        i32,
    ]
    lib.cn_sddmm.restype = i32
    lib.cn_permute.argtypes = [i32, i32, i32, i64, ptr, ptr, ptr, i32]
    lib.cn_permute.restype = i32
    lib.cn_swap_last.argtypes = [i32, i64, i64, i64, ptr, i64, i64, ptr, i32]
    lib.cn_swap_last.restype = i32


def uses_native(*tensors: Tensor) -> bool:
    """Whether the compiled kernels serve a product of these tensors (CPU, float32/float64, mode not torch)."""
    if csr_kernel() == "torch":
        return False
    if any(t.device.type != "cpu" or t.dtype not in _DTYPES for t in tensors):
        return False
    return _library() is not None


def _rows_last_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _parts(macs: int, rows: int) -> int:
    return 1 if macs < MIN_PARALLEL_MACS else max(1, min(torch.get_num_threads(), rows))


def spmm_(
    out: Tensor, bounds: Tensor, crow: Tensor, col: Tensor, values: Tensor, x: Tensor, splits
) -> Tensor:
    """``out += W @ x`` for W as column panels (``bounds`` (P, 4) int64 ``(c0, c1, e0, e1)``, ``crow``
    (P, n_out + 1) and ``col`` (nnz,) of one integer type, ``values`` (nnz,) panel order); ``x`` (n_in, K) and
    ``out`` (n_out, K) with unit stride along K. ``splits(parts)`` gives the threads' row bounds (parts + 1,)."""
    x = _rows_last_contiguous(x)
    if out.stride(-1) != 1:
        raise ValueError("spmm_: out must have unit stride along K")
    n_rows, k = out.shape
    parts = _parts(values.numel() * k, n_rows)
    rows = splits(parts)
    rc = _library().cn_spmm(
        _DTYPES[out.dtype], _ITYPES[col.dtype], bounds.shape[0], n_rows, k, bounds.data_ptr(),
        crow.data_ptr(), col.data_ptr(), values.data_ptr(), x.data_ptr(), x.stride(0), out.data_ptr(),
        out.stride(0), rows.data_ptr(), parts,
    )  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"cn_spmm failed ({rc}) for {out.dtype} values and {col.dtype} indices")
    return out


def sddmm_acc_(
    acc: Tensor, bounds: Tensor, crow: Tensor, col: Tensor, g: Tensor, x: Tensor, splits
) -> Tensor:
    """``acc[e] += Σ_s Σ_k g[s, row_e, k] · x[s, col_e, k]`` for panel-order synapses ``e`` (index tensors as
    in :func:`spmm_`); ``g`` (S, n_out, K) and ``x`` (S, n_in, K), any step and row strides."""
    g, x = _rows_last_contiguous(g), _rows_last_contiguous(x)
    steps, n_rows, k = g.shape
    parts = _parts(acc.numel() * k * steps, n_rows)
    rows = splits(parts)
    rc = _library().cn_sddmm(
        _DTYPES[acc.dtype], _ITYPES[col.dtype], bounds.shape[0], n_rows, steps, k, bounds.data_ptr(),
        crow.data_ptr(), col.data_ptr(), g.data_ptr(), g.stride(0), g.stride(1), x.data_ptr(), x.stride(0),
        x.stride(1), acc.data_ptr(), rows.data_ptr(), parts,
    )  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"cn_sddmm failed ({rc}) for {acc.dtype} values and {col.dtype} indices")
    return acc


def permute(values: Tensor, perm: Tensor, *, scatter: bool) -> Tensor:
    """A new (n,) tensor: ``values[perm]`` (gather) or the ``out`` with ``out[perm] = values`` (scatter; ``perm`` a
    permutation); ``values`` contiguous (n,), ``perm`` (n,) int32/int64."""
    values = values.contiguous()
    out = torch.empty_like(values)
    n = values.numel()
    parts = _parts(n * 8, n)
    rc = _library().cn_permute(
        _DTYPES[values.dtype], _ITYPES[perm.dtype], int(scatter), n, values.data_ptr(), perm.data_ptr(),
        out.data_ptr(), parts,
    )  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"cn_permute failed ({rc}) for {values.dtype} values and {perm.dtype} indices")
    return out


def swap_last(x: Tensor) -> Tensor:
    """A new contiguous (A, C, B) copy of ``x`` (A, B, C) with unit stride along C (blocked transpose)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    a, r, c = x.shape
    out = torch.empty((a, c, r), dtype=x.dtype, device=x.device)
    rc = _library().cn_swap_last(
        _DTYPES[x.dtype],
        a,
        r,
        c,
        x.data_ptr(),
        x.stride(0),
        x.stride(1),
        out.data_ptr(),
        _parts(x.numel() * 4, a * c),
    )
    if rc != 0:
        raise RuntimeError(f"cn_swap_last failed ({rc}) for {x.dtype}")
    return out
