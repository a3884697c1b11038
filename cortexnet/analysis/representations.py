"""How trained networks represent their inputs (Fruengel & Oberlaender 2025, Fig. 5 and 6D).

Every function works on any model with ``hidden(x) -> (B, N)`` (the representation fed to the readout) and a
``readout`` module, e.g. :class:`~cortexnet.models.CortexRNN`, whatever backend stores its weights.

The probes that take data accept a ``TensorDataset``, any map-style ``Dataset`` of ``(x (T, F), y)`` samples or a
``DataLoader`` (read in its own order: use ``shuffle=False`` for results that match the dataset), read through
:mod:`cortexnet.data.batching`; they compute on the model's device unless ``device`` says otherwise, and give the
same numbers for the same samples whatever the container.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cortexnet.data import IGNORE_INDEX
from cortexnet.data.samples import first_input, probe_source, select_batches

log = logging.getLogger(__name__)

#: Default memory budget for a stored activation matrix; above it inputs are subsampled (and it is said).
ACTIVATION_BUDGET_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Activations:
    """Hidden activations of a model over a dataset.

    Attributes:
        values: float32 ``(n, N)`` (last step) or ``(n, T, N)`` (all steps), on the CPU.
        labels: int64 ``(n,)``.
        indices: int64 ``(n,)`` positions of the inputs in the dataset (a seeded subsample when capped).
        subsampled: whether fewer than all inputs were kept (memory budget or ``max_samples``).
    """

    values: Tensor
    labels: Tensor
    indices: Tensor
    subsampled: bool


def _check_model(model: nn.Module) -> None:
    if not callable(getattr(model, "hidden", None)) or not isinstance(
        getattr(model, "readout", None), nn.Module
    ):
        raise TypeError(
            f"{type(model).__name__} has no hidden(x) / readout: representation analyses need a cortexnet model"
        )


@torch.no_grad()
def hidden_activations(
    model: nn.Module,
    dataset: Any,
    *,
    all_steps: bool = False,
    max_samples: int | None = None,
    budget_bytes: int = ACTIVATION_BUDGET_BYTES,
    batch_size: int = 500,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> Activations:
    """Hidden activations ``(n, N)`` (``(n, T, N)`` with ``all_steps``) for a whole dataset of ``(x (T, F), y)``
    samples, in batches, without autograd graphs.

    ``dataset``: a ``TensorDataset``, a map-style ``Dataset`` or a ``DataLoader`` (positions in ``indices`` are
    then ranks in its iteration order). ``device``: where to compute (default: the model's device); the values
    come back on the CPU. Memory: n × N float32 (× T with ``all_steps``); 10,000 MNIST test images at
    N = 10,000 is 400 MB. When that exceeds ``budget_bytes`` (or n > ``max_samples``) a seeded random subset of
    inputs is used and a warning is logged; ``Activations.subsampled`` and ``indices`` say which inputs were kept.
    For data with per-step targets ``(T,)`` per sequence (a task scored on its response period) the activations
    are each sequence's state at its last scored step, and the labels the targets there.
    """
    _check_model(model)
    source, device = probe_source(model, dataset, batch_size=batch_size, device=device)
    n = source.n_samples
    x_first = first_input(source)
    per_input = 4 * _hidden_size(model, x_first, device) * (x_first.shape[1] if all_steps else 1)
    keep = n
    if max_samples is not None:
        keep = min(keep, max_samples)
    keep = min(keep, max(1, budget_bytes // per_input))
    if keep < n:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(n, generator=g)[:keep].sort().values
        log.warning("hidden activations: using %d of %d inputs (memory budget %.1f GB or max_samples)",
                    keep, n, budget_bytes / 1e9)  # fmt: skip
    else:
        idx = torch.arange(n)
    was_training = model.training
    model.eval()
    chunks, labels = [], []
    try:
        for xb, yb in select_batches(source, idx, batch_size):
            if yb.dim() == 2 and not all_steps:
                # Per-step targets (a task scored on its response period): the state at each sequence's last
                # scored step, not after the padding that follows its trial; its label is the target there.
                h, y = _at_last_scored_step(model.hidden(xb.to(device), all_steps=True), yb)
                chunks.append(h.float().cpu())
                labels.append(y.cpu())
                continue
            chunks.append(model.hidden(xb.to(device), all_steps=all_steps).float().cpu())
            labels.append(yb.cpu())
    finally:
        model.train(was_training)
    return Activations(torch.cat(chunks), torch.cat(labels).long(), idx, keep < n)


def _at_last_scored_step(h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(states (B, N), targets (B,))`` at each sequence's last scored step (the last step when none is scored)
    from all-steps states ``h`` ``(B, T, N)`` and per-step targets ``y`` ``(B, T)``."""
    steps = torch.arange(y.shape[1], device=y.device).expand_as(y)
    last = torch.where(y != IGNORE_INDEX, steps, -1).amax(dim=1)
    last = torch.where(last < 0, y.shape[1] - 1, last)
    rows = torch.arange(len(y), device=y.device)
    return h[rows.to(h.device), last.to(h.device)], y[rows, last]


def _hidden_size(model: nn.Module, x: Tensor, device) -> int:
    return int(model.hidden(x.to(device)).shape[-1])


@dataclass(frozen=True)
class ActivationSparsity:
    """Activation sparsity (paper Fig. 5B/C): which nodes send non-zero output to the readout.

    Attributes:
        active_fraction: ``(n,)`` fraction of nodes with |h| > threshold, per input.
        mean, sd: mean and SD of ``active_fraction`` over inputs.
        ever_active: fraction of nodes active for at least one input.
        magnitudes: |h| of the active activations (a seeded sample of at most 100,000). For ReLU these are the
            activations themselves; for tanh the absolute values (a negative output is as "active" as a positive).
        per_population: ``{"excitatory"|"inhibitory": {"mean", "sd", "ever_active", "n_nodes"}}`` when E/I
            identities were given. A population without nodes is still listed, with ``n_nodes`` 0, None
            measures and a ``note`` saying so.
        notes: caveats about this measurement (e.g. tanh with threshold 0).
    """

    active_fraction: np.ndarray
    mean: float
    sd: float
    ever_active: float
    magnitudes: np.ndarray
    per_population: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def activation_sparsity(
    h: Tensor,
    *,
    inhibitory: Tensor | None = None,
    threshold: float = 0.0,
    seed: int = 0,
    max_magnitudes: int = 100_000,
    activation: str | None = None,
) -> ActivationSparsity:
    """Fraction of active nodes per input, nodes ever active, and magnitudes |h| of the active entries of ``h``
    ``(n, N)``.

    ``threshold`` is 0 for ReLU networks (exact zeros); tanh units are almost never exactly zero, so with
    threshold 0 nearly every node counts as active: pass a small positive threshold to ask a meaningful question
    of them. Given ``activation="tanh"`` and ``threshold == 0`` this is logged as a warning and recorded in
    ``notes``. ``inhibitory`` (bool ``(N,)``, identities of the nodes of ``h``) adds the same measures per E/I
    population.
    """
    h = _as_2d(h, "h")
    if inhibitory is not None and tuple(inhibitory.shape) != (h.shape[1],):
        raise ValueError(
            f"inhibitory must label the {h.shape[1]} nodes of h, got shape {tuple(inhibitory.shape)}"
        )
    notes: list[str] = []
    if activation == "tanh" and threshold == 0:
        msg = ("tanh units are almost never exactly 0: with threshold 0 nearly every node counts as active; "
               "pass a small positive threshold (e.g. 0.05) for a meaningful sparsity")  # fmt: skip
        log.warning("activation sparsity: %s", msg)
        notes.append(msg)
    active = h.abs() > threshold
    frac = active.float().mean(dim=1).numpy().astype(np.float64)
    nz = h[active].abs()
    if nz.numel() > max_magnitudes:
        g = torch.Generator().manual_seed(seed)
        nz = nz[torch.randperm(nz.numel(), generator=g)[:max_magnitudes]]
    pops: dict[str, dict[str, Any]] = {}
    if inhibitory is not None:
        inhibitory = inhibitory.cpu().bool()
        for name, sel in (("excitatory", ~inhibitory), ("inhibitory", inhibitory)):
            if not sel.any():
                pops[name] = {"mean": None, "sd": None, "ever_active": None, "n_nodes": 0,
                              "note": f"this network has no {name} nodes"}  # fmt: skip
                continue
            a = active[:, sel]
            f = a.float().mean(dim=1).numpy()
            pops[name] = {"mean": float(f.mean()), "sd": float(f.std(ddof=1)) if len(f) > 1 else 0.0,
                          "ever_active": float(a.any(dim=0).float().mean()), "n_nodes": int(sel.sum())}  # fmt: skip
    return ActivationSparsity(
        active_fraction=frac,
        mean=float(frac.mean()),
        sd=float(frac.std(ddof=1)) if len(frac) > 1 else 0.0,
        ever_active=float(active.any(dim=0).float().mean()),
        magnitudes=nz.numpy().astype(np.float64),
        per_population=pops,
        notes=tuple(notes),
    )


def _as_2d(h: Tensor | np.ndarray, name: str) -> Tensor:
    """``h`` as a CPU tensor ``(n_inputs, N)``; a clear error for anything else (e.g. all-steps activations)."""
    t = torch.as_tensor(h)
    if t.dim() == 3:
        raise ValueError(
            f"{name} must be (inputs, nodes), got all-steps activations {tuple(t.shape)} (inputs, steps, nodes): "
            f"pass one step, e.g. {name}[:, -1] (or hidden_activations(..., all_steps=False))"
        )
    if t.dim() != 2:
        raise ValueError(f"{name} must be (inputs, nodes), got shape {tuple(t.shape)}")
    return t.cpu()


def _sample_pairs(n_nodes: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_pairs, 2)`` distinct unordered node pairs ``i < j``, sorted; all pairs when there are no more than
    ``n_pairs``."""
    total = n_nodes * (n_nodes - 1) // 2
    if total <= n_pairs:
        i, j = np.triu_indices(n_nodes, k=1)
        return np.stack([i, j], axis=1)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < n_pairs:
        a = rng.integers(0, n_nodes, size=2 * (n_pairs - len(pairs)))
        b = rng.integers(0, n_nodes, size=a.size)
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if x != y:
                pairs.add((min(x, y), max(x, y)))
                if len(pairs) == n_pairs:
                    break
    return np.array(sorted(pairs), dtype=np.int64)


@dataclass(frozen=True)
class PairwiseResult:
    """A distribution over node pairs (mutual information or Pearson r).

    Attributes:
        values: ``(k,)`` one value per analysed pair.
        pairs: ``(k, 2)`` node indices of those pairs.
        n_constant_nodes: nodes whose activation never varies over the inputs.
        n_pairs_with_constant: sampled pairs involving such a node (see ``constant_policy``).
        constant_policy: "zero" (the pair is kept with value 0: a constant carries no information) or "skip".
    """

    values: np.ndarray
    pairs: np.ndarray
    n_constant_nodes: int
    n_pairs_with_constant: int
    constant_policy: str

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if self.values.size else float("nan")

    @property
    def sd(self) -> float:
        return float(self.values.std(ddof=1)) if self.values.size > 1 else 0.0


def _constant_nodes(h: Tensor) -> np.ndarray:
    """Nodes whose activation never varies over the inputs (exact comparison; O(N) extra memory)."""
    return (h.amax(dim=0) == h.amin(dim=0)).numpy()


def _check_pairwise(h: Tensor | np.ndarray, n_pairs: int) -> Tensor:
    t = _as_2d(h, "h")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if t.shape[1] < 2:
        raise ValueError(f"pairwise measures need at least 2 nodes, got {t.shape[1]}")
    if t.shape[0] < 2:
        raise ValueError(f"pairwise measures need at least 2 inputs, got {t.shape[0]}")
    return t


def _columns(h: Tensor, idx: np.ndarray) -> np.ndarray:
    """float64 copy of the columns ``idx`` of ``h`` ``(n, len(idx))``."""
    return h[:, torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))].double().numpy()


#: Memory budget of one chunk of gathered pair columns in :func:`pairwise_correlations` (float64).
PAIR_CHUNK_BYTES = 64 * 1024**2


def _mi_task(x: np.ndarray, y: np.ndarray, n_neighbors: int, random_state: int) -> np.ndarray:
    """MI of every column of ``x`` ``(n, m)`` with ``y`` ``(n,)`` by scikit-learn's ``mutual_info_regression``
    (each feature is estimated against the target independently)."""
    from sklearn.feature_selection import mutual_info_regression

    return mutual_info_regression(x, y, n_neighbors=n_neighbors, random_state=random_state)


def _resolve_jobs(n_jobs: int | None) -> int:
    if n_jobs is None or n_jobs < 0:
        import joblib

        return max(1, joblib.cpu_count())
    if n_jobs == 0:
        raise ValueError("n_jobs must be >= 1, or None / -1 for every available core")
    return n_jobs


#: Below this many estimator calls (groups of pairs) :func:`pairwise_mutual_information` runs serially (worker start-up
#: costs more than it saves).
MI_PARALLEL_MIN_CALLS = 64

#: With ``n_jobs=None`` (auto), parallel only from this much work (non-constant pairs x inputs): below it,
#: starting worker processes (each imports scikit-learn) costs more than it saves — measured on 2 shared cores,
#: 10,000 pairs at 359 inputs (3.6e6) ran faster serially than with 2 workers.
MI_PARALLEL_MIN_WORK = 2e7


def pairwise_mutual_information(
    h: Tensor,
    *,
    n_pairs: int = 10_000,
    seed: int = 0,
    n_neighbors: int = 3,
    constant_policy: str = "zero",
    n_jobs: int | None = None,
) -> PairwiseResult:
    """Mutual information (nats) between randomly sampled node pairs over inputs (paper Fig. 5D).

    Uses scikit-learn's ``mutual_info_regression`` (Kraskov k-NN estimator, ``n_neighbors``) on the activations
    ``h`` ``(n, N)``, as the paper did. Pairs (i < j) are drawn uniformly without replacement (seeded). Constant
    nodes (e.g. ReLU nodes silent for every input) have no defined estimate: ``constant_policy="zero"`` keeps
    those pairs at MI = 0 (a constant carries no information; the default), ``"skip"`` drops them; both are
    counted.

    Speed: a scikit-learn call costs a few ms at a few hundred inputs, much of it per-call overhead. Sampled
    pairs that share their first node i are estimated in one call (target node i, one feature per partner j;
    scikit-learn estimates every feature against the target independently), so the pairs stay uniformly random
    and only the batching changes. The calls are spread over ``n_jobs`` worker processes: -1 every available
    core, k that many, 1 serial; None (default) every available core when the work is large (above
    :data:`MI_PARALLEL_MIN_WORK`), else serial; serial anyway below :data:`MI_PARALLEL_MIN_CALLS` calls. Each
    call's
    ``random_state`` (the tiny noise scikit-learn adds to break ties) derives from (``seed``, i), so the result
    does not depend on ``n_jobs``. Memory: only the columns of the nodes of one call are copied (float64).
    """
    if constant_policy not in ("zero", "skip"):
        raise ValueError(f"constant_policy must be 'zero' or 'skip', got {constant_policy!r}")
    t = _check_pairwise(h, n_pairs)
    if t.shape[0] <= n_neighbors:
        raise ValueError(
            f"mutual information with n_neighbors={n_neighbors} needs more inputs, got {t.shape[0]}"
        )
    jobs = _resolve_jobs(n_jobs)
    rng = np.random.default_rng(seed)
    pairs = _sample_pairs(t.shape[1], n_pairs, rng)
    const = _constant_nodes(t)
    has_const = const[pairs[:, 0]] | const[pairs[:, 1]]
    values = np.zeros(len(pairs))
    todo = np.flatnonzero(~has_const)  # pairs are sorted by their first node: groups are contiguous runs
    firsts, starts = np.unique(pairs[todo, 0], return_index=True)
    bounds = [*starts.tolist(), len(todo)]
    groups = [todo[bounds[k] : bounds[k + 1]] for k in range(len(firsts))]

    def tasks():
        for i, g in zip(firsts.tolist(), groups, strict=True):
            state = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            yield _columns(t, pairs[g, 1]), _columns(t, np.array([i]))[:, 0], n_neighbors, state

    if n_jobs is None:
        jobs = jobs if len(todo) * float(t.shape[0]) >= MI_PARALLEL_MIN_WORK else 1
    if jobs > 1 and len(groups) >= MI_PARALLEL_MIN_CALLS:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs)(delayed(_mi_task)(*a) for a in tasks())
    else:
        results = [_mi_task(*a) for a in tasks()]
    for g, r in zip(groups, results, strict=True):
        values[g] = r
    keep = ~has_const if constant_policy == "skip" else np.ones(len(pairs), dtype=bool)
    return PairwiseResult(values[keep], pairs[keep], int(const.sum()), int(has_const.sum()), constant_policy)


def pairwise_correlations(h: Tensor, *, n_pairs: int = 10_000, seed: int = 0) -> PairwiseResult:
    """Pearson r between sampled node pairs over inputs (paper Fig. 6D: Dale networks at initialisation).

    ``h`` ``(n, N)``; all pairs when N(N-1)/2 ≤ ``n_pairs``. Pairs with a constant node have no correlation
    and are skipped (counted in ``n_pairs_with_constant``). Memory: the two columns of each pair are gathered
    in chunks of pairs (at most :data:`PAIR_CHUNK_BYTES` of float64 each), never the whole matrix in float64.
    """
    t = _check_pairwise(h, n_pairs)
    rng = np.random.default_rng(seed)
    pairs = _sample_pairs(t.shape[1], n_pairs, rng)
    const = _constant_nodes(t)
    ok = ~(const[pairs[:, 0]] | const[pairs[:, 1]])
    p = pairs[ok]
    chunk = max(1, PAIR_CHUNK_BYTES // (2 * 8 * t.shape[0]))
    r = np.empty(len(p))
    for a in range(0, len(p), chunk):
        x, y = _columns(t, p[a : a + chunk, 0]), _columns(t, p[a : a + chunk, 1])
        x -= x.mean(axis=0)
        y -= y.mean(axis=0)
        r[a : a + chunk] = (x * y).sum(axis=0) / np.sqrt((x * x).sum(axis=0) * (y * y).sum(axis=0))
    return PairwiseResult(np.clip(r, -1.0, 1.0), p, int(const.sum()), int((~ok).sum()), "skip")


@dataclass(frozen=True)
class KSResult:
    """Two-sample Kolmogorov-Smirnov test (SciPy)."""

    statistic: float
    pvalue: float


def ks_compare(a: np.ndarray, b: np.ndarray) -> KSResult:
    """Two-sample KS test between two distributions (e.g. MI of a sparse and a dense network, paper: p=1e-44)."""
    from scipy.stats import ks_2samp

    res = ks_2samp(np.asarray(a), np.asarray(b))
    return KSResult(float(res.statistic), float(res.pvalue))


@dataclass(frozen=True)
class DropoutCurve:
    """Test accuracy when hidden outputs to the readout are zeroed with probability q (paper Fig. 5E/F).

    Attributes:
        qs: ``(n_q,)`` dropout probabilities.
        accuracy: ``(n_q, n_draws)`` accuracy of each draw.
        mean, sd: ``(n_q,)`` over draws.
    """

    qs: np.ndarray
    accuracy: np.ndarray
    mean: np.ndarray
    sd: np.ndarray


def dropout_mask(shape: tuple[int, ...], q: float, generator: torch.Generator) -> Tensor:
    """Test-time dropout mask ``(B, N)`` (float 0/1, CPU): every entry is 0 with probability ``q``, drawn
    independently for every input and node; survivors are 1 — kept as they are, not rescaled by 1/(1-q)."""
    return (torch.rand(shape, generator=generator) >= q).float()


@torch.no_grad()
def dropout_robustness(
    model: nn.Module,
    dataset: Any,
    *,
    qs: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(10)),
    n_draws: int = 5,
    seed: int = 0,
    batch_size: int = 500,
    device: torch.device | str | None = None,
) -> DropoutCurve:
    """The paper's test-time robustness protocol: each hidden node's output to the readout is zeroed with
    probability q, drawn afresh for every input, with no rescaling of the survivors; training is untouched.

    ``dataset``: ``(x (T, F), y)`` samples as a ``TensorDataset``, a map-style ``Dataset`` or a ``DataLoader``,
    read in order, ``batch_size`` at a time; ``device``: where to compute (default: the model's device). The
    masks ``(B, N)`` are drawn on the CPU from one generator seeded with ``seed``, so the result does not depend
    on the device. q = 0 is the plain accuracy; q = 1 leaves only the readout bias (every input gets
    argmax(bias)). Hidden states are computed once per batch and reused for every q and draw. With per-step
    targets (a task scored on its response period) each trial counts once: its decision at its last scored step.
    """
    _check_model(model)
    qs_arr = np.asarray(qs, dtype=np.float64)
    if qs_arr.size == 0 or (qs_arr < 0).any() or (qs_arr > 1).any():
        raise ValueError(f"dropout probabilities must be in [0, 1], got {list(qs)}")
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    source, device = probe_source(model, dataset, batch_size=batch_size, device=device)
    if source.n_samples == 0:
        raise ValueError("dropout robustness needs at least one input; the dataset is empty")
    g = torch.Generator(device="cpu").manual_seed(seed)
    correct = np.zeros((len(qs_arr), n_draws))
    n_seen = 0
    was_training = model.training
    model.eval()
    try:
        for xb, yb in select_batches(source, None, batch_size):
            xb, yb = xb.to(device), yb.to(device)
            if yb.dim() == 2:  # per-step targets: each trial's decision, at its last scored step
                h, yb = _at_last_scored_step(model.hidden(xb, all_steps=True), yb)
            else:
                h = model.hidden(xb)
            n_seen += len(yb)
            for qi, q in enumerate(qs_arr):
                for d in range(n_draws):
                    pred = model.readout(h * dropout_mask(h.shape, float(q), g).to(h)).argmax(dim=1)
                    correct[qi, d] += int((pred == yb).sum())
    finally:
        model.train(was_training)
    acc = correct / n_seen
    sd = acc.std(axis=1, ddof=1) if n_draws > 1 else np.zeros(len(qs_arr))
    return DropoutCurve(qs_arr, acc, acc.mean(axis=1), sd)
