"""How much memory training one member needs, estimated before any work, and the refusal when it does not fit.

:func:`estimate_training_memory` reads a model's :class:`~cortexnet.models.memory.ModelLayout` (its config's
``memory_layout`` hook: shapes, expected synapse counts, the forward stages; nothing is built or drawn) and
applies the byte formulas of the code that will run, each with its source (function, and its lines at
commit c2d2e08):

* **weights** — parameters and buffers per backend. ``masked_dense``: a dense float weight plus a bool mask
  (``MaskedDenseWeight.__init__``, masked_dense.py:31-32); ``csr``: float values, int64 ``crow`` (n_out + 1)
  and int32 ``col`` (int64 when n_in > 2³¹ - 1) (``CSRWeight.__init__``, csr.py:63-65); every sparse weight
  also keeps a float32 ``column_sign`` (n_in) (``SparseWeight.__init__``, base.py:66-67). Which backend ``"auto"`` gives a weight is :func:`cortexnet.sparse.choose_backend` itself,
  called with the run's batch and device as :func:`cortexnet.training.runs.train_member` hints them.
* **kernel index** — the csr backend's cached column panels of W and of Wᵀ (``build_panels`` / ``build_index``,
  _csr_index.py:115-215):
  per side ``n_panels · (rows + 1)`` row pointers, ``nnz`` local columns and (except one untransposed panel)
  an ``nnz`` permutation, int32 while the counts fit; panel widths from the backend's own
  :func:`~cortexnet.sparse._csr_index.default_panel_cols`.
* **gradients** — one per parameter (the dense (N, N) gradient of masked dense; ``nnz`` values for csr).
* **optimiser** — :func:`cortexnet.training.fit.make_optimizer` (fit.py:98-111) builds torch's Adam / AdamW
  (``exp_avg``, ``exp_avg_sq`` and a 0-d float32 ``step`` per parameter, torch/optim/adam.py ``_init_group``), SGD (a
  ``momentum_buffer`` only with momentum), RMSprop (``square_avg``, ``momentum_buffer`` with momentum, a
  ``step``); not ``fused``, so torch runs its per-parameter loop on CPU (the largest parameter's temporaries
  at a time: Adam's ``exp_avg_sq.sqrt() / c`` makes two) and ``foreach`` on CUDA (one temporary per
  parameter, all at once) — the **optimiser step** part.
* **BPTT states** (recurrent) / **activations** — what autograd keeps for the backward pass and the peak of
  the backward itself, walked stage by stage (:class:`~cortexnet.models.memory.Stage`). The recurrent layer
  copies the time-major input (T·B·F, ``RecurrentLayer.forward``, recurrent.py:217, kept for W_in's gradient);
  the fused masked-dense recurrence keeps the states (T, B, N) (``DenseRecurrence.forward``, functional.py:67-85)
  and its backward adds the incoming gradient and ``grad_pre`` (``DenseRecurrence.backward``, 88-116):
  **3 × T·B·N** at the peak, plus the bool complement of the mask in ``grad_weight.masked_fill_``; the csr
  recurrence keeps feature-major states plus the returned (T, B, N) copy, which the readout holds through
  ``states[-1]`` (``CSRRecurrence.forward``, csr_functional.py:42-63), and its backward holds the states,
  the incoming gradient and two transposed copies (``CSRRecurrence.backward``, 67-101): **4 × T·B·N**. A
  leaky recurrence (α ≠ 1) keeps the rates too (+1 forward, +2 csr / +1 masked dense backward). Feed-forward
  stages keep their outputs (and csr its transposed input copy, ``CSRLinear``, csr_functional.py:111-136);
  masked dense masks with ``weight.masked_fill(~mask, 0)`` (the bool complement, kept for the backward, and the
  masked weight, kept for the input gradient; ``MaskedDenseWeight.linear``, masked_dense.py:40-46) and its
  backward forms a dense ``(n_in, n_out)`` product before masking.
* **batch** — the inputs ``(B, T, F)`` and int64 labels; evaluation runs batches of ``max(B, 100)``
  (fit.py:197) without gradients but with the last step's gradients still allocated.
* **build peak** — constructing the model (host memory): every weight's storage plus the largest transient
  of one weight's build: the mask generator's own peak (constants measured, see :func:`build_bytes`) or the
  connectivity (int64 ``col``) with the initialisation's temporaries.

The **total** is the largest of the phases, not the sum of the parts: building; a training step's forward /
backward (weights + optimiser + index + gradients + activations + batch); the optimiser step (with the
after-step projection of the constraints); an evaluation. On CUDA the build happens in host memory
(``host``) and the total counts the device only.

Not counted: the datasets themselves (pass ``data_bytes``), rewiring state (activity accumulators, probes),
analysis callbacks, the Python / torch runtime (already spent when :func:`available_memory` looks) and
allocator fragmentation. :func:`check_fits` raises :class:`MemoryBudgetError` (one line: the member, the
estimate, what is available and the fix) and :func:`largest_fitting` finds the largest size that fits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cortexnet.models.memory import ModelLayout, SparseWeightLayout, Stage, model_layout
from cortexnet.sparse import choose_backend, gemm, native
from cortexnet.sparse._csr_index import SDDMM_K_CHUNK, default_panel_cols
from cortexnet.training.config import TrainConfig

_INT32_MAX = 2**31 - 1
#: Evaluation batch of :func:`cortexnet.training.fit.fit` (fit.py:197): ``max(batch_size, EVAL_BATCH_MIN)``.
EVAL_BATCH_MIN = 100

# -- measured constants of the build (torch CPU allocator via torch.profiler(profile_memory=True), the running
# sum of allocation events; numpy via tracemalloc; tests/test_memory_estimate.py re-measures them) ----------
#: ER Bernoulli (``erdos_renyi``, er.py:81-104), per element of one (rows x n_in) chunk: float32 keys, then the bool
#: selection and its int64 copy in ``selected.sum(dtype=int64)`` (9 B), plus 16 B per selected pair of the
#: previous chunk's ``nonzero`` (its column view keeps the (k, 2) int64 result). Measured: 2000², p = 0.1:
#: 39.3 MB = 8 B x 0.41 M capacity + 9 B x 4 M elements; 8000², p = 0.05 (4 chunks of 16 M): 182.7 MB.
ER_BERNOULLI_BYTES_PER_ELEMENT = 9
#: ER exact (er.py:89-95): keys, argsort's values + int64 order, int64 ranks, the int64 arange scattered into
#: them: 28 B per chunk element with one chunk (2000², p = 0.1: 115.2 MB = 28.0 B x 4 M + 8 B x nnz), 33 B plus
#: 16 B per selected pair with several (8000², p = 0.05 / 0.3: 33.8 / 37.8 B per element).
ER_EXACT_BYTES_PER_ELEMENT = (28, 33)
#: Rows x columns of one ER chunk (er.py:14).
ER_CHUNK_ELEMENTS = 16_000_000
#: G2G (g2g.py:286-319): the column chunks kept in a list (16 B per synapse: each ``nonzero(as_tuple)``
#: column is a view of a (k, 2) int64 result) and their concatenation (8 B): 24 B per synapse at the end,
#: with the last chunk's temporaries (Bernoulli ~10 B, exact ~31 B per element); during the loop 16 B per
#: synapse so far plus one chunk (Bernoulli 15 B, exact 38 B with one chunk, 58 B with several). Measured
#: (peak MB): 2000², p = 0.1, p' = 0.05: 60.0 Bernoulli / 156.1 exact; 8000², p = 0.3, p' = 0.15: 298.3 / 394.5.
G2G_BYTES = {False: (10, 15, 15), True: (31, 38, 58)}
#: Rows x columns of one G2G chunk (g2g.py:56).
G2G_CHUNK_ELEMENTS = 4_000_000
#: Connectivity.full without the diagonal (base.py:257-265): ``base + (base >= rows)`` per chunk of ~4 M
#: elements: bool, its int64 promotion and the sum (17 B per element; 2000², 4 M synapses: 100.0 MB = 8 B x
#: nnz + 17 B x 4 M + 1 B x nnz).
FULL_BYTES_PER_ELEMENT = 17
FULL_CHUNK_ELEMENTS = 4_000_000
#: Generators whose peak is a plain multiple of their links (B per synapse, torch + numpy), measured at
#: 2000², p = 0.1; 6000², p = 0.05; 1000 x 20000, p = 0.02: bsw 45.6 / 43.3 / 46.0, dnm 66.6 / 66.3 / 65.4.
GENERATOR_BYTES_PER_SYNAPSE = {"bsw": 48, "dnm": 72}
#: Any other generator: an upper bound of those measured at the same sizes (brf 89 / 33 / 332, bsf 220 / 58 /
#: 58 (numpy), ramanujan 71 / 34 / 35 (numpy) B per synapse): 80 B per synapse plus 32 B per possible pair
#: of one ~4 M-element chunk — loose (up to ~4x) where the chunk term dominates.
OTHER_BYTES_PER_SYNAPSE = 80
OTHER_BYTES_PER_ELEMENT = 32
OTHER_CHUNK_ELEMENTS = 4_000_000
#: SNIP's scores come from a dense twin of the model (models/saliency.py): its weight, gradient and the
#: float32 scores, 12 B per possible pair, on top of the selection.
SNIP_BYTES_PER_POSSIBLE = 12
#: Initialisation temporaries per drawn synapse once the mask exists (``RecurrentLayer._init_weights``,
#: recurrent.py:193-210; ``SparseLinear._init_values``, sparse_linear.py:122-138; ``set_values_``): ``Connectivity.rows()`` (int64, 16 B while repeat_interleave
#: runs), float32 draws, signs / bounds and values. Measured (profiler timeline of build_model, N = 1,500,
#: p = 0.1, Dale): 28 B per synapse at the peak for both backends; 32 leaves room for SparseLinear's bounds.
INIT_BYTES_PER_SYNAPSE = 32
#: csr ``set_values_`` at a subset of its synapses (sparse-to-dense): rows, int64 columns and sorted keys of
#: every stored synapse (csr.py:174, base.py:424-430).
CSR_SEARCH_BYTES_PER_SYNAPSE = 40
#: csr index build (``build_panels``, _csr_index.py:115-201) beyond its results, per (panel, row) key of one side: int64
#: counts, starts, running, one chunk's bincount and the row-pointer cumsum / concatenation / cast (~44 B);
#: per synapse of one 4 M chunk: keys, local columns, sort, unique_consecutive, positions — measured 77 B
#: (N = 6,000, p = 0.1: 348 MB peak for 3.6 M synapses, 58 MB of it the index) and 81 B (N = 3,000,
#: p = 0.05): 80.
INDEX_BUILD_BYTES_PER_KEY = 44
INDEX_BUILD_BYTES_PER_CHUNK_SYNAPSE = 80
INDEX_BUILD_CHUNK = 1 << 22
#: Chunk of the csr Dale "clip" projection (csr.py:23, 196-203): gathered signs, product, bool: 9 B each.
CSR_CONSTRAINT_CHUNK = 1 << 24


class MemoryBudgetError(ValueError):
    """A member's estimated training memory exceeds what is available (a usage error: shrink the run)."""

    def __init__(self, message: str, *, label: str, estimate: MemoryEstimate, budget_bytes: int) -> None:
        super().__init__(message)
        self.label, self.estimate, self.budget_bytes = label, estimate, budget_bytes


def format_bytes(n: float) -> str:
    """``41.3 GiB``, ``512.0 MiB``, ``12 B``: binary units, one decimal."""
    for unit, size in (
        ("EiB", 2**60),
        ("PiB", 2**50),
        ("TiB", 2**40),
        ("GiB", 2**30),
        ("MiB", 2**20),
        ("KiB", 2**10),
    ):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


#: Order and display names of :attr:`MemoryEstimate.parts`.
PART_NAMES: tuple[str, ...] = (
    "weights",
    "gradients",
    "optimiser",
    "kernel index",
    "BPTT states",
    "activations",
    "index build",
    "batch",
    "optimiser step",
    "evaluation",
    "data",
    "build peak",
)


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak memory of training one member (bytes).

    Attributes:
        total: bytes needed on ``device``: the largest phase (on CPU the build phase included).
        parts: bytes by part, keys of :data:`PART_NAMES` (each part's own size; the transients — ``"build
            peak"``, ``"optimiser step"``, ``"index build"``, ``"evaluation"`` — belong to one phase each).
        phases: ``"build"``, ``"train"`` (forward / backward), ``"step"`` and ``"evaluate"`` peaks.
        peak: the phase that sets ``total``.
        breakdown: what ``peak`` is made of (part -> bytes, summing to ``phases[peak]``).
        host: bytes of host memory (the build; equals ``total`` on CPU).
        device: the device type the estimate is for (``"cpu"``, ``"cuda"``).
        backends: the backend each sparse weight gets, by weight name.
        notes: what is approximate (counts that are expectations or bounds, unknown backends).
    """

    total: int
    parts: Mapping[str, int]
    phases: Mapping[str, int]
    host: int
    device: str
    peak: str = "train"
    breakdown: Mapping[str, int] = field(default_factory=dict)
    backends: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: ``needs ~41.3 GiB (weights 12.0 GiB, optimiser 24.0 GiB, BPTT states 4.8 GiB, build peak
        9.1 GiB)`` — what the peak phase is made of (parts of at least 1 % of the total) and, for context, the
        build peak; on a GPU also the host memory the build needs."""
        items = self.breakdown or self.parts
        shown = [(n, b) for n, b in items.items() if b > 0 and b >= 0.01 * self.total]
        build = self.parts.get("build peak", 0)
        if "build peak" not in dict(shown) and self.device == "cpu" and build >= 0.01 * self.total:
            shown.append(("build peak", build))
        inner = ", ".join(f"{name} {format_bytes(b)}" for name, b in shown)
        host = f"; host ~{format_bytes(self.host)} to build" if self.device != "cpu" else ""
        return f"needs ~{format_bytes(self.total)} ({inner}){host}"


# -- backend formulas ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightBytes:
    """What one sparse weight costs on its backend (bytes, except ``param_numel``)."""

    name: str
    backend: str
    nnz: int
    param_numel: int
    buffers: int
    index: int
    index_panels_fwd: int
    index_build: int


def _index_itemsize(n: int) -> int:
    return 4 if n <= _INT32_MAX else 8  # _csr_index.py:64-65


def csr_index_bytes(n_out: int, n_in: int, nnz: int, device: str) -> tuple[int, int, int]:
    """``(bytes, forward panels, build transient)`` of the csr kernel index of one weight (_csr_index.py:115-215):
    for W and for Wᵀ, ``n_panels · (rows + 1)`` row pointers, ``nnz`` local columns and, unless it is W in one
    panel, an ``nnz`` permutation."""
    dev = torch.device(device)
    total, build, fwd_panels = 0, 0, 1
    for transpose in (False, True):
        rows_m, cols_m = (n_in, n_out) if transpose else (n_out, n_in)
        panel = default_panel_cols(rows_m, cols_m, nnz, dev)  # build_index: (n_out, n_in) and (n_in, n_out)
        panel = max(1, min(panel, max(cols_m, 1)))
        n_panels = max(1, math.ceil(cols_m / panel))
        item = _index_itemsize(max(nnz, rows_m, cols_m, n_panels * rows_m))
        identity = not transpose and n_panels == 1
        total += n_panels * (rows_m + 1) * item + nnz * item + (0 if identity else nnz * item)
        keys = n_panels * rows_m
        build = max(
            build,
            keys * INDEX_BUILD_BYTES_PER_KEY
            + min(nnz, INDEX_BUILD_CHUNK) * INDEX_BUILD_BYTES_PER_CHUNK_SYNAPSE,
        )
        if not transpose:
            fwd_panels = n_panels
    return total, fwd_panels, build


def resolve_backend(w: SparseWeightLayout, *, batch: int, device: str) -> str:
    """The concrete backend of ``w``: its configured one, or what ``"auto"`` picks
    (:func:`cortexnet.sparse.choose_backend` with the run's batch and device type, as
    :func:`~cortexnet.training.runs.train_member` hints it)."""
    if w.backend != "auto":
        return w.backend
    return choose_backend(w.n_out, w.n_in, round(w.synapses), batch_hint=batch, device=device)


def weight_bytes(w: SparseWeightLayout, backend: str, *, device: str, dtype_bytes: int = 4) -> WeightBytes:
    """Storage of one sparse weight on ``backend`` (``"masked_dense"`` or ``"csr"``; another name is costed as
    masked dense, the larger store). ``column_sign`` is float32 whatever the model's dtype (base.py:66-67)."""
    nnz = max(0, round(w.synapses))
    sign = 4 * w.n_in
    if backend == "csr":
        col = 4 if w.n_in <= _INT32_MAX else 8  # csr.py:71-72
        index, fwd_panels, build = csr_index_bytes(w.n_out, w.n_in, nnz, device)
        return WeightBytes(
            w.name, backend, nnz, nnz, 8 * (w.n_out + 1) + col * nnz + sign, index, fwd_panels, build
        )
    return WeightBytes(w.name, backend, nnz, w.possible, w.possible + sign, 0, 1, 0)  # weight + bool mask


# -- optimiser ------------------------------------------------------------------------------------------------
def optimiser_state_bytes(
    numels: Sequence[int], optimizer: str, *, momentum: float = 0.0, dtype_bytes: int = 4
) -> int:
    """Bytes of the optimiser state of parameters with ``numels`` elements after the first step, for the
    optimisers of :func:`cortexnet.training.fit.make_optimizer`: Adam / AdamW two moments and a 0-d float32
    ``step`` each; RMSprop ``square_avg`` (+ ``momentum_buffer`` with momentum) and a ``step``; SGD a
    ``momentum_buffer`` with momentum, nothing without."""
    f = dtype_bytes
    if optimizer in ("adam", "adamw"):
        return sum(2 * n * f + 4 for n in numels)
    if optimizer == "rmsprop":
        return sum(n * f * (2 if momentum > 0 else 1) + 4 for n in numels)
    if optimizer == "sgd":
        return sum(n * f for n in numels) if momentum > 0 else 0
    raise ValueError(f"unknown optimizer {optimizer!r}; known: adam, adamw, sgd, rmsprop")


def optimiser_step_bytes(
    numels: Sequence[int], optimizer: str, *, weight_decay: float, device: str, dtype_bytes: int = 4
) -> int:
    """Temporaries of one ``optimizer.step()``: per parameter on CPU (torch's single-tensor loop: the largest
    parameter counts), for all parameters at once on CUDA (``foreach``). Adam: ``exp_avg_sq.sqrt()`` and its
    quotient (2 on CPU, 1 in place on CUDA) plus ``grad + wd · param`` with weight decay; AdamW decays in
    place; RMSprop ``square_avg.sqrt()`` (+ the decayed gradient); SGD only the decayed gradient."""
    if not numels:
        return 0
    wd = 1 if weight_decay > 0 else 0
    per = {"adam": (2 + wd, 1 + wd), "adamw": (2, 1), "rmsprop": (1 + wd, 1 + wd), "sgd": (wd, wd)}[optimizer]
    if torch.device(device).type == "cpu":
        return per[0] * max(numels) * dtype_bytes
    return per[1] * sum(numels) * dtype_bytes


# -- activations ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _StageCost:
    saved: int  # kept for the backward pass after the stage's forward
    forward: int  # peak of the stage's forward (its saved tensors included)
    backward: int  # peak of the stage's backward (its saved tensors included; parameter gradients excluded)
    evaluate: int  # peak of a no-grad forward of the stage (its input excluded)
    grads: int  # gradients of the stage's parameters, allocated during its backward


#: oneDNN's packing scratchpad in a masked-dense layer's backward products, per thread: measured on the 2-core
#: Zen 3 dev CPU (AVX2) as 180-350 KB per thread above the BLAS path's peak, varying between runs (sparse MLP
#: 800 -> 600, the feed-forward control), ~0 on Zen 4 (AVX-512); 512 KB per thread keeps both within the test's
#: tolerance.
ONEDNN_SCRATCH_PER_THREAD = 512 * 1024
#: Synapses per chunk of the csr index scatter (``Panels.scatter``: an int64 copy of the permutation).
SCATTER_CHUNK = 1 << 22


def _stage_cost(
    stage: Stage,
    weights: Mapping[str, tuple[SparseWeightLayout, WeightBytes]],
    b: int,
    t: int,
    f: int,
    *,
    sequence_read: bool = False,
    cpu: bool = True,
) -> _StageCost:
    """One stage's costs; ``sequence_read``: the next stage reads every step of this one's output (a per-step
    readout copies the states, so the csr recurrence's returned tensor is not kept beyond the copy); ``cpu``:
    the stage runs on the CPU (where large float32 dense products go through oneDNN, cortexnet.sparse.gemm)."""
    i, o = stage.n_in, stage.n_out
    if stage.kind in ("recurrent", "sparse"):
        layout, wb = weights[stage.weight]
        p = layout.possible * f  # a dense (n_out, n_in) float temporary
        v = wb.nnz * f  # an (nnz,) float temporary
        permuted = wb.index_panels_fwd > 1  # W in several panels: gathers copy, scatters take an int64 index
        gathered = v if permuted else 0
        # The compiled kernels (cortexnet.sparse.native) read the steps in place and permute with int32 indices:
        # no stacked copies for the value gradient, no int64 index chunk for the scatter.
        compiled = (
            cpu and wb.backend == "csr" and native.csr_kernel() != "torch" and native.native_available()
        )
        scatter = 8 * min(wb.nnz, SCATTER_CHUNK) if permuted and not compiled else 0
        abs_dale = layout.dale == "abs"
    if stage.kind == "recurrent":
        x, s = t * b * i * f, t * b * o * f
        grads = (wb.param_numel + o * i + o) * f  # W_rec, W_in, bias
        # a leaky recurrence keeps the rates beside the states (and, for csr, a grad_pre of its own)
        lk = s if stage.leaky else 0
        noise = x + 3 * s if stage.noise else 0  # recurrent.py:224: old drive, scaled draw, new drive
        if wb.backend == "csr":
            # csr_functional.py:42-63 / 67-101: feature-major states (+ rates) and the returned copy, which the
            # readout keeps through ``states[-1]``; the backward holds the states, the incoming gradient, its
            # transposed copy (+ grad_pre), the input gradient's copy; the value gradient reads (N, k·B) copies
            # of k ~ 128 / B steps (PyTorch's kernels; the compiled ones read in place), then scatters to
            # canonical order.
            k = min(max(t - 1, 1), max(1, round(SDDMM_K_CHUNK / b)))
            sddmm = 0 if compiled else 2 * k * b * o * f
            extra = 2 * v if abs_dale else 0  # |values| · sign: the signs and the effective values are kept
            back = max(4 * s + 2 * lk, 3 * s + 2 * lk + scatter) + 2 * v + sddmm + 2 * extra
            fwd = max(x + 3 * s + lk + gathered + extra, noise)
            held = 0 if sequence_read else s  # the output, kept by the readout's ``states[-1]``
            return _StageCost(x + s + held + lk + extra, fwd, x + back, x + 3 * s + lk + gathered, grads)
        # masked dense (functional.py:67-118): the states (+ rates); the backward adds the incoming gradient
        # and grad_pre, and ``grad_weight.masked_fill_`` the mask's bool complement; with "abs" the
        # effective |W| · sign is kept and the raw gradient is one more dense temporary. oneDNN's weight
        # gradient reads its transposed (T-1)·B × N operand through a contiguous copy.
        extra = p if abs_dale else 0
        staged = s if gemm.onednn_for(o, i, max(t - 1, 1) * b, dtype_bytes=f, cpu=cpu) else 0
        fwd = max(x + 2 * s + lk + 2 * extra, noise)
        back = x + 3 * s + lk + layout.possible + extra + staged
        return _StageCost(x + s + lk + extra, fwd, back, x + 2 * s + lk + 2 * extra, grads)
    out = b * o * f
    if stage.kind == "sparse":
        grads = (wb.param_numel + o) * f  # the sparse weight and the bias
        if wb.backend == "csr":
            xt = b * i * f
            extra = 2 * v if abs_dale else 0
            saved = xt + out + extra
            grad_x = b * i * f if stage.input_grad else 0
            sddmm = (i + o) * SDDMM_K_CHUNK * f if b > SDDMM_K_CHUNK and not compiled else 0
            # csr_functional.py:120-136: grad_x through the gathered transposed values, then the accumulator
            # and its scatter to canonical order
            back = saved + out + grad_x + max(v if stage.input_grad else 0, v + scatter) + sddmm + extra
            return _StageCost(saved, xt + 3 * out + gathered + extra, back, xt + 3 * out + gathered, grads)
        # masked dense: ``weight.masked_fill(~mask, 0)``: the mask's bool complement (kept for the backward) and
        # the masked weight (kept when the input needs a gradient); the backward's (n_out, n_in) product (its
        # masked copy is the weight's gradient, counted with the gradients).
        extra = p if abs_dale else 0
        keep = layout.possible
        saved = (p if stage.input_grad else 0) + out + keep
        grad_x = b * i * f if stage.input_grad else 0
        scratch = (
            ONEDNN_SCRATCH_PER_THREAD * torch.get_num_threads() if gemm.onednn_for(b, o, i, cpu=cpu) else 0
        )
        return _StageCost(
            saved, p + keep + 2 * out + extra, out + p + keep + out + grad_x + extra + scratch,
            p + keep + 2 * out + extra, grads,
        )  # fmt: skip
    if stage.kind == "patch":  # conv input copy, conv output, patch-major copy; its gradients: the remainder
        saved = b * (i + 2 * o) * f
        return _StageCost(saved, saved, saved + 2 * out, saved, 0)
    grads = (i * o + o) * f
    if (
        stage.per_step
    ):  # nn.Linear on the transposed (B, T, N) states: a contiguous copy, kept for the backward
        rows = b * t
        saved = rows * (i + 2 * o) * f  # input copy, logits, cross-entropy's log-softmax
        return _StageCost(saved, saved, saved + rows * (i + o) * f, rows * (i + 2 * o) * f, grads)
    saved = out if stage.activation else 2 * out  # activation output / logits and cross-entropy's log-softmax
    grad_x = b * i * f if stage.input_grad else 0
    return _StageCost(saved, 2 * out, saved + out + grad_x, 2 * out, grads)


def activation_bytes(
    stages: Sequence[Stage],
    weights: Mapping[str, tuple[SparseWeightLayout, WeightBytes]],
    *,
    batch: int,
    n_steps: int,
    gradients: int,
    dtype_bytes: int = 4,
    cpu: bool = True,
) -> tuple[int, int]:
    """``(training, evaluation)`` activation peaks for batches of ``batch``, beyond the ``gradients`` (bytes of
    all parameter gradients).

    Training follows :func:`~cortexnet.training.fit.fit`: the forward runs with the previous step's gradients
    still allocated (``zero_grad(set_to_none=True)`` comes after it) and keeps each stage's saved tensors while
    later stages run; the backward visits the stages in reverse, each with what the earlier stages still keep
    and the gradients produced so far (its own included; parameters no stage claims, e.g. a convolution's, are
    counted from the start). Evaluation: the largest single no-grad stage."""
    costs = [
        _stage_cost(
            s,
            weights,
            batch,
            n_steps,
            dtype_bytes,
            sequence_read=k + 1 < len(stages) and stages[k + 1].per_step,
            cpu=cpu,
        )
        for k, s in enumerate(stages)
    ]
    unclaimed = max(0, gradients - sum(c.grads for c in costs))
    kept, forward, evaluate, before = 0, 0, 0, []
    for cost in costs:
        forward = max(forward, kept + cost.forward)
        evaluate = max(evaluate, cost.evaluate)
        before.append(kept)
        kept += cost.saved
    backward, produced = 0, unclaimed
    for cost, kept_before in zip(reversed(costs), reversed(before), strict=True):
        produced += cost.grads
        backward = max(backward, kept_before + cost.backward + produced)
    return max(forward, backward - gradients), evaluate


# -- build ----------------------------------------------------------------------------------------------------
def _chunk(n_out: int, n_in: int, elements: int) -> tuple[int, int]:
    """``(elements of one chunk, number of chunks)`` of a row-chunked generator."""
    rows = max(1, elements // max(n_in, 1))
    return min(n_out, rows) * n_in, math.ceil(n_out / rows)


def generation_bytes(w: SparseWeightLayout) -> int:
    """Peak of drawing ``w``'s mask (host memory, bytes), the connectivity it returns included."""
    nnz, n_out, n_in = max(0, round(w.drawn)), w.n_out, w.n_in
    crow = 8 * (n_out + 1)
    check = nnz  # Connectivity's index check: a bool per synapse (base.py:193)
    if w.topology in ("er", "erk"):
        elements, chunks = _chunk(n_out, n_in, ER_CHUNK_ELEMENTS)
        previous = 16 * nnz / chunks if chunks > 1 else 0  # the previous chunk's nonzero result
        if w.exact_draw or w.topology == "erk":
            per = ER_EXACT_BYTES_PER_ELEMENT[0 if chunks == 1 else 1]
            return int(8 * nnz + crow + per * elements + previous + check)
        p = nnz / max(w.possible, 1)
        capacity = min(w.possible, nnz + 10.0 * math.sqrt(nnz * max(1.0 - p, 0.0)) + n_out)  # er.py:77
        return int(8 * capacity + crow + ER_BERNOULLI_BYTES_PER_ELEMENT * elements + previous + check)
    if w.topology == "full":
        return _full_bytes(nnz, n_out, drop_diag=nnz < w.possible)
    if w.topology == "g2g":
        elements, chunks = _chunk(n_out, n_in, G2G_CHUNK_ELEMENTS)
        end, single, multi = G2G_BYTES[w.exact_draw]
        loop = single if chunks == 1 else multi
        return int(crow + max(24 * nnz + end * elements, 16 * nnz + loop * elements) + check)
    if w.topology in GENERATOR_BYTES_PER_SYNAPSE:
        return int(crow + GENERATOR_BYTES_PER_SYNAPSE[w.topology] * nnz)
    elements = min(w.possible, OTHER_CHUNK_ELEMENTS)
    extra = SNIP_BYTES_PER_POSSIBLE * w.possible if w.topology == "snip" else 0
    return int(crow + OTHER_BYTES_PER_SYNAPSE * nnz + OTHER_BYTES_PER_ELEMENT * elements + extra)


def _full_bytes(nnz: int, n_out: int, *, drop_diag: bool) -> int:
    """Connectivity.full (base.py:249-265): int64 columns, chunked diagonal skipping, the index check."""
    chunk = min(nnz, FULL_CHUNK_ELEMENTS) if drop_diag else 0
    return 8 * nnz + 8 * (n_out + 1) + FULL_BYTES_PER_ELEMENT * chunk + nnz


def build_bytes(w: SparseWeightLayout, wb: WeightBytes, *, dtype_bytes: int = 4) -> int:
    """Peak of building ``w`` (host memory) beyond the rest of the model: drawing its mask, or its storage with
    the connectivity (int64) and the initialisation's temporaries (see ``INIT_BYTES_PER_SYNAPSE``)."""
    drawn, synapses = max(0, round(w.drawn)), wb.nnz
    storage = wb.param_numel * dtype_bytes + wb.buffers
    conn = 8 * drawn + 8 * (w.n_out + 1)
    gen = generation_bytes(w)
    s2d = synapses != drawn
    if s2d:  # sparse-to-dense: the full trainable set is built while the drawn mask is alive
        gen = max(gen, conn + _full_bytes(synapses, w.n_out, drop_diag=synapses < w.possible))
        conn += 8 * synapses + 8 * (w.n_out + 1)
    init = INIT_BYTES_PER_SYNAPSE * drawn
    if wb.backend == "csr":
        if s2d:  # set_values_ at a subset: a sorted-key search over every stored synapse
            init += CSR_SEARCH_BYTES_PER_SYNAPSE * synapses
        if w.dale == "clip":
            init += 9 * min(synapses, CSR_CONSTRAINT_CHUNK)
        return max(gen, storage + conn + init)
    # masked dense: Connectivity.to_dense's rows (int64, twice at once), then the initialisation and the
    # constraints' projection (the mask's bool complement; with "clip" the product with the signs and its test)
    projection = (dtype_bytes + 1) * w.possible if w.dale == "clip" else w.possible
    return max(gen, storage + conn + max(init + projection, 16 * synapses))


# -- the estimate ---------------------------------------------------------------------------------------------
def estimate_training_memory(
    model_name: str,
    model_config: Any,
    *,
    n_inputs: int,
    n_classes: int,
    n_steps: int | None = None,
    train_config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    data_bytes: int = 0,
    dtype_bytes: int = 4,
) -> MemoryEstimate:
    """Estimate the peak memory of training one member: ``build_model(model_name, model_config, n_inputs,
    n_classes)`` trained by :func:`cortexnet.training.fit.fit` with ``train_config``. Nothing is built.

    Args:
        model_name, model_config: the registered model and its config (dataclass or dict of its fields).
        n_inputs, n_classes: F features per step and the number of classes (the data's).
        n_steps: T, the sequence length of the data; required when the configuration does not fix it
            (``cortex_rnn``), checked against it when it does.
        train_config: batch size, optimiser, momentum, weight decay and device (default ``TrainConfig()``).
        device: the device to estimate for (default: ``train_config.device`` resolved as fit resolves it).
        data_bytes: bytes of the prepared datasets held during training (added to every phase; 0: ignored).
        dtype_bytes: bytes per float of the model (4: float32, what the models build).

    Returns:
        :class:`MemoryEstimate`; ``describe()`` gives the one-line summary.
    """
    from cortexnet.training.fit import resolve_device

    train_config = (train_config or TrainConfig()).validate()
    dev = torch.device(device) if device is not None else resolve_device(train_config.device)
    kind = dev.type
    layout = model_layout(model_name, model_config, n_inputs, n_classes)
    t = _steps(layout, n_steps)
    b, f = train_config.batch_size, dtype_bytes
    notes = [
        f"{w.name}: {w.count} count ({w.synapses:,.0f} synapses)"
        for w in layout.weights
        if w.count != "exact"
    ]

    weights: dict[str, tuple[SparseWeightLayout, WeightBytes]] = {}
    for w in layout.weights:
        backend = resolve_backend(w, batch=b, device=kind)
        if backend not in ("masked_dense", "csr"):
            notes.append(f"{w.name}: backend {backend!r} costed as masked_dense")
        weights[w.name] = (w, weight_bytes(w, backend, device=kind, dtype_bytes=f))
    numels = [n for _, n in layout.dense] + [wb.param_numel for _, wb in weights.values()]
    buffers = sum(n for _, n in layout.buffers) + sum(wb.buffers for _, wb in weights.values())
    stored = sum(numels) * f + buffers
    gradients = sum(numels) * f
    optimiser = optimiser_state_bytes(
        numels, train_config.optimizer, momentum=train_config.momentum, dtype_bytes=f
    )
    index = sum(wb.index for _, wb in weights.values())
    index_build = max((wb.index_build for _, wb in weights.values()), default=0)
    act_train, _ = activation_bytes(
        layout.stages, weights, batch=b, n_steps=t, gradients=gradients, dtype_bytes=f, cpu=kind == "cpu"
    )
    b_eval = max(b, EVAL_BATCH_MIN)
    _, act_eval = activation_bytes(
        layout.stages, weights, batch=b_eval, n_steps=t, gradients=gradients, dtype_bytes=f, cpu=kind == "cpu"
    )
    labels = 8 * (t if layout.stages and layout.stages[-1].per_step else 1)  # int64, (B,) or per step (B, T)
    batch = b * (t * n_inputs * f + labels)
    batch_eval = b_eval * (t * n_inputs * f + labels)
    step = optimiser_step_bytes(
        numels, train_config.optimizer, weight_decay=train_config.weight_decay, device=kind, dtype_bytes=f
    )
    projection = max((_projection_bytes(w, wb, f) for w, wb in weights.values()), default=0)
    build = max(
        (
            stored - wb.param_numel * f - wb.buffers + build_bytes(w, wb, dtype_bytes=f)
            for w, wb in weights.values()
        ),
        default=stored,
    )

    # The index is built on the CPU (``build_index``, _csr_index.py:204-215) at the first product: on CUDA its transient and
    # host copies of the structure (int64 crow, the columns, the results before the move) are host memory.
    on_cpu = kind == "cpu"
    host_index = max((wb.index_build + wb.index + 12 * wb.nnz for _, wb in weights.values()), default=0)
    recurrent = any(s.kind == "recurrent" for s in layout.stages)
    act_name = "BPTT states" if recurrent else "activations"
    idx_build = index_build if on_cpu else 0
    common = {
        "weights": stored,
        "optimiser": optimiser,
        "kernel index": index,
        "gradients": gradients,
        "data": data_bytes,
    }
    train = {act_name: act_train} if act_train >= idx_build else {"index build": idx_build}
    evaluation = (
        {"evaluation": batch_eval + act_eval}
        if act_eval >= idx_build
        else {"evaluation": batch_eval, "index build": idx_build}
    )
    compositions = {
        "build": {"build peak": max(build, 0 if on_cpu else host_index), "data": data_bytes},
        "train": {**common, "batch": batch, **train},
        "step": {**common, "batch": batch, "optimiser step": max(step, projection)},
        "evaluate": {**common, **evaluation},
    }
    phases = {name: int(sum(c.values())) for name, c in compositions.items()}
    candidates = [p for p in ("train", "step", "evaluate", "build") if on_cpu or p != "build"]
    peak = max(candidates, key=lambda p: phases[p])
    parts = {
        "weights": stored,
        "gradients": gradients,
        "optimiser": optimiser,
        "kernel index": index,
        act_name: act_train,
        "index build": index_build,
        "batch": batch,
        "optimiser step": max(step, projection),
        "evaluation": act_eval + batch_eval,
        "data": data_bytes,
        "build peak": build,
    }
    return MemoryEstimate(
        total=phases[peak],
        parts={k: int(v) for k, v in parts.items()},
        phases=phases,
        host=phases[peak] if on_cpu else phases["build"],
        device=kind,
        peak=peak,
        breakdown={k: int(v) for k, v in compositions[peak].items()},
        backends={name: wb.backend for name, (_, wb) in weights.items()},
        notes=tuple(notes),
    )


def _steps(layout: ModelLayout, n_steps: int | None) -> int:
    if layout.n_steps is not None:
        if n_steps is not None and n_steps != layout.n_steps:
            raise ValueError(
                f"n_steps {n_steps} does not match the {layout.model} configuration's T = {layout.n_steps}; "
                "pass the data's sequence length or leave n_steps out"
            )
        return layout.n_steps
    if n_steps is None or n_steps < 1:
        raise ValueError(
            f"{layout.model} takes the sequence length from the data: pass n_steps (T >= 1), got {n_steps}"
        )
    return n_steps


def _projection_bytes(w: SparseWeightLayout, wb: WeightBytes, f: int) -> int:
    """Temporaries of the after-step projection of one weight (masked_dense.py:97-103, csr.py:196-203):
    measured at N = 1,500 masked dense "clip": 1.25 x the 9.0 MB weight."""
    if wb.backend == "csr":
        return 9 * min(wb.nnz, CSR_CONSTRAINT_CHUNK) if w.dale == "clip" else 0
    # ``weight.masked_fill_(~mask, 0)``: the mask's bool complement; "clip" then forms weight * column_sign
    # and its bool sign test.
    return (f + 1) * w.possible if w.dale == "clip" else w.possible


# -- the machine ----------------------------------------------------------------------------------------------
def available_memory(device: str | torch.device = "cpu") -> int:
    """Bytes a new allocation can use now on ``device``: CUDA ``torch.cuda.mem_get_info`` (free); CPU
    ``MemAvailable`` of /proc/meminfo (else ``os.sysconf`` available pages), capped by a cgroup memory limit
    (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) less its usage, reclaimable page cache added back."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    if dev.type != "cpu":
        raise ValueError(f"available_memory knows cpu and cuda devices, got {dev}")
    avail = _meminfo_available()
    if avail is None:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_available()
    return int(min(avail, limit) if limit is not None else avail)


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_available(root: str = "/sys/fs/cgroup") -> int | None:
    """Room left under this process's cgroup memory limit, or None when there is no limit."""
    base = Path(root)
    limit = _read_int(base / "memory.max")  # v2 ("max": no limit -> None)
    if limit is not None:
        used = _read_int(base / "memory.current") or 0
        return max(0, limit - used + _stat_value(base / "memory.stat", "inactive_file"))
    v1 = base / "memory"
    limit = _read_int(v1 / "memory.limit_in_bytes")
    if limit is not None and limit < 2**60:
        used = _read_int(v1 / "memory.usage_in_bytes") or 0
        return max(0, limit - used + _stat_value(v1 / "memory.stat", "total_inactive_file"))
    return None


# -- decisions ------------------------------------------------------------------------------------------------
def _need(estimate: MemoryEstimate | int) -> int:
    return estimate.total if isinstance(estimate, MemoryEstimate) else int(estimate)


def largest_fitting(
    estimate_at: Callable[[int], MemoryEstimate | int],
    budget_bytes: int,
    *,
    lo: int = 1,
    hi: int | None = None,
) -> int | None:
    """The largest size ``n`` in ``[lo, hi]`` whose ``estimate_at(n)`` (a :class:`MemoryEstimate` or bytes)
    fits in ``budget_bytes``, by bisection (the estimate must not decrease with ``n``); None when not even
    ``lo`` fits. ``hi=None`` doubles from ``lo`` until a size does not fit (at most 2⁶²).
    E.g. ``largest_fitting(lambda n: estimate_training_memory("cortex_rnn", replace(cfg, n_nodes=n), ...),
    available_memory())`` for "the largest --nodes that fits"."""
    if lo < 0 or (hi is not None and hi < lo):
        raise ValueError(f"largest_fitting needs 0 <= lo <= hi, got lo={lo}, hi={hi}")
    if _need(estimate_at(lo)) > budget_bytes:
        return None
    if hi is None:
        hi = max(2 * lo, 1)
        while _need(estimate_at(hi)) <= budget_bytes:
            if hi >= 2**62:
                return hi
            lo, hi = hi, 2 * hi
    elif _need(estimate_at(hi)) <= budget_bytes:
        return hi
    while hi - lo > 1:  # need(lo) fits, need(hi) does not
        mid = (lo + hi) // 2
        if _need(estimate_at(mid)) <= budget_bytes:
            lo = mid
        else:
            hi = mid
    return lo


def size_hint(
    flag: str,
    estimate_at: Callable[[int], MemoryEstimate | int],
    budget_bytes: int,
    current: int,
    *,
    lo: int = 1,
) -> str:
    """The fix naming a size: ``"the largest --nodes that fits is 41,230"`` (searched in ``[lo, current]``), or
    ``"even --nodes 1 does not fit"``."""
    best = largest_fitting(estimate_at, budget_bytes, lo=lo, hi=max(lo, current))
    if best is None:
        return f"even {flag} {lo:,} does not fit"
    return f"the largest {flag} that fits is {best:,}"


def check_fits(
    estimates: Sequence[tuple[str, MemoryEstimate]],
    budget_bytes: int,
    *,
    host_budget_bytes: int | None = None,
    fix: str | Callable[[str, MemoryEstimate], str] | None = None,
) -> None:
    """Raise :class:`MemoryBudgetError` when a member's estimate exceeds ``budget_bytes`` (its device), or, for a
    member on a GPU, its host build peak exceeds ``host_budget_bytes`` (when given). The message is one line
    naming the member with the largest estimate among those that do not fit, its estimate and parts, what is
    available and the fix: ``fix`` (text, or ``fix(label, estimate)``, e.g. a :func:`size_hint`), else a
    generic one."""
    failing = []
    for label, est in estimates:
        if est.total > budget_bytes:
            failing.append((est.total / max(budget_bytes, 1), label, est, budget_bytes, est.device))
        elif host_budget_bytes is not None and est.device != "cpu" and est.host > host_budget_bytes:
            failing.append((est.host / max(host_budget_bytes, 1), label, est, host_budget_bytes, "host"))
    if not failing:
        return
    failing.sort(key=lambda item: -item[0])
    _, label, est, budget, where = failing[0]
    if fix is None:
        hint = (
            "use fewer nodes, a smaller batch size or a sparse backend (csr), or a machine with more memory"
        )
    else:
        hint = fix if isinstance(fix, str) else fix(label, est)
    others = f" ({len(failing) - 1} more members do not fit either)" if len(failing) > 1 else ""
    memory = "host memory" if where == "host" else f"{where} memory"
    message = (
        f"member {label} {est.describe()} to train, but {format_bytes(budget)} of {memory} is available"
        f"{others}; {hint}"
    )
    raise MemoryBudgetError(" ".join(message.split()), label=label, estimate=est, budget_bytes=budget)
