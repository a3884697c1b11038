"""``"auto"``: pick the fastest backend for a weight from measured crossovers.

Rules (CPU numbers measured with ``benchmarks/crossover.py`` on the 2-core EPYC development machine, torch
2.13, forward+backward of the whole 28-step recurrence, each case in its own process; the fused dense
Function :class:`~cortexnet.sparse.DenseRecurrence` against the CSR backend; see benchmarks/README.md):

1. Speed: tiny matrices (fewer than ``SMALL_DENSE`` possible synapses) use ``"masked_dense"`` (one GEMM beats
   the sparse kernels' per-call overhead); otherwise ``"csr"`` when the density is below the crossover density
   for the batch size and device, ``"masked_dense"`` above it.
2. Memory: if the faster backend's training state would exceed ``memory_budget`` (default: 4 GiB) and the
   other's is smaller, the other is used. Training state per possible synapse of masked dense: 17 bytes
   (weight, gradient, Adam's two moments, bool mask); per stored synapse of csr: ~44 bytes (value, gradient,
   Adam's moments, five int32 index arrays, gathered copies in the backward) — so csr is also the leaner one
   below p ≈ 0.4. CPU crossovers are interpolated (in log B) between the measured points of
   :data:`CPU_CROSSOVER`. CUDA: dense GEMMs are far closer to peak than cuSPARSE on a GPU, so the CUDA
   crossover is much lower (:data:`CUDA_CROSSOVER`, from the literature, **not measured here**: no GPU was
   available when this was written).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from cortexnet.connectivity import Connectivity
from cortexnet.sparse.base import BACKENDS, DaleMode, SparseWeight

#: Measured on CPU: (batch, density above which the fused dense path is faster than CSR). Batches between
#: points are interpolated in log B; outside, the nearest point is used.
CPU_CROSSOVER: tuple[tuple[int, float], ...] = ((32, 0.3), (256, 0.2))
#: CUDA: (batch, crossover density). Unmeasured guess; re-measure with benchmarks/crossover.py on a GPU.
CUDA_CROSSOVER: tuple[tuple[int, float], ...] = ((32, 0.02), (256, 0.01))
#: Matrices with fewer possible synapses than this always use masked dense.
SMALL_DENSE = 256 * 256
#: Bytes per possible synapse of the dense path during training (weight, grad, Adam x2, bool mask).
DENSE_BYTES_PER_ENTRY = 17
#: Bytes per stored synapse of the csr path during training (see rule 2).
CSR_BYTES_PER_SYNAPSE = 44
DEFAULT_MEMORY_BUDGET = 4 * 2**30


def crossover_density(batch: int, device: str | torch.device = "cpu") -> float:
    """Density above which masked dense is faster than CSR, for ``batch`` rows per product on ``device``."""
    table = CUDA_CROSSOVER if torch.device(device).type == "cuda" else CPU_CROSSOVER
    b = max(1, batch)
    if b <= table[0][0]:
        return table[0][1]
    if b >= table[-1][0]:
        return table[-1][1]
    for (b0, d0), (b1, d1) in itertools.pairwise(table):
        if b0 <= b <= b1:
            w = (math.log(b) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return d0 + w * (d1 - d0)
    return table[-1][1]  # pragma: no cover


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
        fast = "csr" if density < crossover_density(batch_hint, device) else "masked_dense"
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
    batch_hint: int = 32,
    device: str | torch.device = "cpu",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> SparseWeight:
    """Build the backend :func:`choose_backend` picks (registry name ``"auto"``); the result is a concrete
    backend (its ``backend`` attribute says which), and its checkpoints load into any backend."""
    name = choose_backend(
        connectivity.n_out,
        connectivity.n_in,
        connectivity.nnz,
        batch_hint=batch_hint,
        device=device,
        memory_budget=memory_budget,
    )
    return BACKENDS.get(name)(connectivity, dale=dale, column_sign=column_sign)
