"""``"auto"``: pick the fastest backend for a weight from measured crossovers.

Rules (see benchmarks/README.md for the measurements):

1. Speed: tiny matrices (fewer than ``SMALL_DENSE`` possible synapses) use ``"masked_dense"`` (one GEMM beats
   the sparse kernels' per-call overhead); otherwise ``"csr"`` when the density is below the crossover density
   for the size, batch and device, ``"masked_dense"`` above it. CPU crossovers were measured with
   ``benchmarks/crossover.py`` on the 2-core EPYC development machines, one table per pair of kernels the two
   backends will run: :data:`CPU_CROSSOVER_NATIVE` where csr runs on its compiled kernels
   (:mod:`cortexnet.sparse.native`), else :data:`CPU_CROSSOVER` (PyTorch's sparse kernels against masked
   dense through oneDNN) or :data:`CPU_CROSSOVER_BLAS` (masked dense on PyTorch's BLAS); the training step
   (forward+backward of the 28-step recurrence and the fused Adam step) of masked dense (the fused
   :class:`~cortexnet.sparse.DenseRecurrence`) against csr, each case in its own process. CUDA
   (:data:`CUDA_CROSSOVER`): dense GEMMs run far closer to peak than cuSPARSE on a GPU, so the crossover is much
   lower — a guess from the literature, **not measured** (no GPU was available when this was written).
2. Memory: if the faster backend's training state would exceed ``memory_budget`` (default: 4 GiB) and the
   other's is smaller, the other is used. Training state per possible synapse of masked dense: 17 bytes
   (weight, gradient, Adam's two moments, bool mask); per stored synapse of csr: ~49 bytes (value, gradient,
   Adam's moments, five int32 index arrays, gathered copies in the backward) — so csr is also the leaner one
   below p ≈ 0.35.

A layer builds its weight before it knows the batch or the device. Pass them explicitly
(``make_sparse_weight("auto", ..., batch_hint=B, device=...)``), or build the model inside
``with backend_hints(batch=B, device=d):`` (what the training runner does), so that every ``"auto"`` weight of
the model decides from its own shape and synapse count with the run's batch size and device; without either,
``batch_hint`` is 32 and ``device`` the CPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
from collections.abc import Iterator

import torch
from torch import Tensor

from cortexnet.connectivity import Connectivity
from cortexnet.sparse import gemm, native
from cortexnet.sparse.base import BACKENDS, DaleMode, SparseWeight

#: Measured on CPU with masked dense's products through oneDNN (cortexnet.sparse.gemm, the default where the
#: PyTorch build has it; benchmarks/results/crossover-20261202T080003Z.json: 2-core AMD EPYC, torch 2.13,
#: training step = forward+backward over 28 steps + fused Adam): batch -> ((N, density above which masked
#: dense is faster than csr), ...). Interpolated in log N within a batch row (clamped at its ends), then in
#: log B between rows.
CPU_CROSSOVER: dict[int, tuple[tuple[int, float], ...]] = {
    32: ((1000, 0.18), (3000, 0.19), (10000, 0.29)),
    256: ((1000, 0.12), (3000, 0.18)),
}
#: The same with masked dense's products through PyTorch's BLAS (MKL; ``CORTEXNET_DENSE_GEMM=blas`` or a build
#: without oneDNN), 1.5-2x slower on that CPU (benchmarks/results/crossover-20261122T053731Z.json).
#: PERFORMANCE.md's earlier probe found 0.25-0.39 at B = 32, 0.13-0.28 at B = 256.
CPU_CROSSOVER_BLAS: dict[int, tuple[tuple[int, float], ...]] = {
    32: ((1000, 0.33), (3000, 0.42), (10000, 0.41)),
    256: ((1000, 0.15), (3000, 0.16)),
}
#: csr on its compiled kernels (cortexnet.sparse.native) against masked dense through oneDNN
#: (benchmarks/results/crossover-20261202T205117Z.json: 2-core AMD EPYC Zen 3, AVX2, torch 2.13). At N = 3000
#: and 10,000, batch 32, csr was faster at every density tried (up to 0.7; at N = 10,000 it was 6.1 s against
#: 6.3 s there), so 0.7 is a lower bound. Also used where masked dense runs on BLAS, which is slower still.
CPU_CROSSOVER_NATIVE: dict[int, tuple[tuple[int, float], ...]] = {
    32: ((1000, 0.41), (3000, 0.70), (10000, 0.70)),
    256: ((1000, 0.51), (3000, 0.50)),
}
#: CUDA: unmeasured guess (dense GEMMs run far closer to peak than cuSPARSE on a GPU); re-measure with
#: benchmarks/crossover.py on a GPU.
CUDA_CROSSOVER: dict[int, tuple[tuple[int, float], ...]] = {32: ((1000, 0.02),), 256: ((1000, 0.01),)}
#: Matrices with fewer possible synapses than this always use masked dense.
SMALL_DENSE = 256 * 256
#: Bytes per possible synapse of the dense path during training (weight, grad, Adam x2, bool mask).
DENSE_BYTES_PER_ENTRY = 17
#: Bytes per stored synapse of the csr path during training (see rule 2).
CSR_BYTES_PER_SYNAPSE = 49
DEFAULT_MEMORY_BUDGET = 4 * 2**30
DEFAULT_BATCH_HINT = 32

_HINTS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("cortexnet_backend_hints", default=None)


@contextlib.contextmanager
def backend_hints(*, batch: int | None = None, device: str | torch.device | None = None) -> Iterator[None]:
    """Defaults for every ``"auto"`` weight built inside the block: ``batch`` (rows per product, the training
    batch size) and ``device`` (where the model will run). Explicit arguments of the factory still win."""
    if batch is not None and batch < 1:
        raise ValueError(f"backend_hints batch must be >= 1, got {batch}")
    hints = dict(_HINTS.get() or {})
    if batch is not None:
        hints["batch"] = int(batch)
    if device is not None:
        hints["device"] = torch.device(device)
    token = _HINTS.set(hints)
    try:
        yield
    finally:
        _HINTS.reset(token)


def _interp(points: tuple[tuple[int, float], ...], x: float) -> float:
    """Piecewise-linear interpolation in log x, clamped at the ends."""
    if x <= points[0][0]:
        return points[0][1]
    if x >= points[-1][0]:
        return points[-1][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 <= x <= x1:
            w = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + w * (y1 - y0)
    return points[-1][1]  # pragma: no cover


def crossover_density(batch: int, device: str | torch.device = "cpu", n: int = 10_000) -> float:
    """Density above which masked dense is faster than csr, for ``batch`` rows per product, ``n`` nodes
    (``max(n_out, n_in)``) on ``device``."""
    if torch.device(device).type == "cuda":
        table = CUDA_CROSSOVER
    elif native.uses_native():  # the table measured with the kernels both backends will run here
        table = CPU_CROSSOVER_NATIVE
    else:
        table = CPU_CROSSOVER if gemm.onednn_for(n, n, batch) else CPU_CROSSOVER_BLAS
    rows = sorted(table.items())
    per_batch = tuple((b, _interp(points, max(n, 1))) for b, points in rows)
    return _interp(per_batch, max(batch, 1))


def choose_backend(
    n_out: int,
    n_in: int,
    nnz: int,
    *,
    batch_hint: int = 32,
    device: str | torch.device = "cpu",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> str:
    """The backend name ``"auto"`` picks for a ``(n_out, n_in)`` weight with ``nnz`` synapses (rules above).

    Args:
        batch_hint: rows per product (the training batch size; for the recurrent layer B, not T·B).
        device: where the weight will run (``"cpu"`` or ``"cuda"``).
        memory_budget: bytes the weight's training state should stay under.
    """
    possible = n_out * n_in
    density = nnz / possible if possible else 1.0
    if possible < SMALL_DENSE:
        fast = "masked_dense"
    else:
        threshold = crossover_density(batch_hint, device, max(n_out, n_in))
        fast = "csr" if density < threshold else "masked_dense"
    need = {"masked_dense": possible * DENSE_BYTES_PER_ENTRY, "csr": nnz * CSR_BYTES_PER_SYNAPSE}
    other = "csr" if fast == "masked_dense" else "masked_dense"
    if need[fast] > memory_budget and need[other] < need[fast]:
        return other
    return fast


@BACKENDS.register("auto")
def auto_sparse_weight(
    connectivity: Connectivity,
    *,
    dale: DaleMode = "none",
    column_sign: Tensor | None = None,
    batch_hint: int | None = None,
    device: str | torch.device | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> SparseWeight:
    """Build the backend :func:`choose_backend` picks (registry name ``"auto"``); the result is a concrete
    backend (its ``backend`` attribute says which), and its checkpoints load into any backend.
    ``batch_hint`` / ``device`` default to the enclosing :func:`backend_hints`, else 32 / CPU."""
    hints = _HINTS.get() or {}
    batch_hint = batch_hint if batch_hint is not None else hints.get("batch", DEFAULT_BATCH_HINT)
    device = device if device is not None else hints.get("device", "cpu")
    name = choose_backend(
        connectivity.n_out,
        connectivity.n_in,
        connectivity.nnz,
        batch_hint=batch_hint,
        device=device,
        memory_budget=memory_budget,
    )
    return BACKENDS.get(name)(connectivity, dale=dale, column_sign=column_sign)
