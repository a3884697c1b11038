"""Rewiring probes: gradients at inactive positions (RigL) and Hebbian activity accumulation (G2GNet)."""

from __future__ import annotations

import io

import pytest
import torch

from cortexnet.connectivity import Connectivity, assign_inhibitory, dale_signs, make_connectivity
from cortexnet.sparse import ActivityAccumulator, CSRWeight, make_sparse_weight

# Every test here runs on PyTorch's sparse kernels and on the compiled ones (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("csr_kernel")

TOL = {"rtol": 1e-10, "atol": 1e-12}


def _weight(backend: str, n_out: int, n_in: int, dale: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    conn = make_connectivity("er", n_out, n_in, generator=g, p=0.15)
    sign = dale_signs(assign_inhibitory(n_in, 0.3, generator=g)) if dale != "none" else None
    kw = {"panel_cols": 8} if backend == "csr" else {}
    w = make_sparse_weight(backend, conn, dale=dale, column_sign=sign, **kw).double()
    w.set_values_(conn.rows(), conn.col, torch.randn(conn.nnz, generator=g, dtype=torch.float64) * 0.4)
    return conn, w, g


def _candidates(conn: Connectivity, k: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    off = (~conn.to_dense()).nonzero()
    pick = off[torch.randperm(len(off), generator=g)[:k]]
    return pick[:, 0], pick[:, 1]


def _act(x: torch.Tensor, activation: str) -> torch.Tensor:
    return x.relu() if activation == "relu" else x.tanh()


def _dense_loss(weight: torch.Tensor, x: torch.Tensor, proj: torch.Tensor, mode: str, activation: str):
    """Reference: the same loss with a plain dense effective weight (autograd)."""
    if mode == "linear":
        return (_act(x @ weight.t(), activation) * proj).sum()
    h, states = torch.zeros_like(x[0]), []
    for t in range(x.shape[0]):
        h = _act(x[t] + (h @ weight.t() if t else 0), activation)
        states.append(h)
    return (torch.stack(states) * proj).sum()


def _loss(w, x: torch.Tensor, proj: torch.Tensor, mode: str, activation: str):
    out = _act(w.linear(x), activation) if mode == "linear" else w.recurrent(x, activation)
    return (out * proj).sum()


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
@pytest.mark.parametrize("mode", ["linear", "recurrent"])
@pytest.mark.parametrize("dale", ["none", "clip", "abs"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_probe_gradients_match_dense_reference(backend, mode, dale, activation):
    n_out, n_in = (30, 30) if mode == "recurrent" else (24, 36)
    conn, w, g = _weight(backend, n_out, n_in, dale, seed=1)
    x = torch.randn(6, 5, n_in, generator=g, dtype=torch.float64)
    proj = torch.randn(6, 5, n_out, generator=g, dtype=torch.float64)
    rows, cols = _candidates(conn, 40, g)

    reference = w.to_dense().requires_grad_(True)
    (dense_grad,) = torch.autograd.grad(_dense_loss(reference, x, proj, mode, activation), [reference])
    param = next(w.parameters())
    _loss(w, x, proj, mode, activation).backward()
    grad_without = param.grad.clone()
    param.grad = None

    before = (w.connectivity(), w.active_values(), getattr(w, "_index", None))
    with w.probe_gradients(rows, cols) as probe:
        loss = _loss(w, x, proj, mode, activation)
        loss.backward()
    torch.testing.assert_close(loss.detach(), _dense_loss(w.to_dense(), x, proj, mode, activation), **TOL)
    assert probe.grad.shape == (40,) and probe.grad.dtype == torch.float64
    torch.testing.assert_close(probe.grad, dense_grad[rows, cols], **TOL)
    assert bool((probe.grad != 0).any())
    # The training step is unaffected: the parameter got the usual gradient and only that.
    assert next(w.parameters()) is param
    torch.testing.assert_close(param.grad, grad_without, **TOL)
    if backend == "masked_dense":
        assert not bool(param.grad[~w.mask].any())
    # ... and the weight is exactly as before.
    assert w.connectivity().equals(before[0]) and torch.equal(w.active_values(), before[1])
    if isinstance(w, CSRWeight):
        assert w._index is before[2]  # kernel cache untouched
    assert w._probe is None


def test_probe_gradients_accumulate_over_backward_passes_and_work_through_layers():
    conn, w, g = _weight("csr", 30, 30, "clip", seed=2)
    rows, cols = _candidates(conn, 10, g)
    x = torch.randn(4, 3, 30, generator=g, dtype=torch.float64)
    with w.probe_gradients(rows, cols) as probe:
        w.recurrent(x, "tanh").sum().backward()
        once = probe.grad
        w.recurrent(x, "tanh").sum().backward()
    torch.testing.assert_close(probe.grad, 2 * once, **TOL)
    w.recurrent(x, "tanh").sum().backward()  # after the block the weight computes as before
    with pytest.raises(RuntimeError, match="backward"):
        with w.probe_gradients(rows, cols) as probe:
            pass
        _ = probe.grad


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_probe_gradients_error_paths(backend):
    conn, w, g = _weight(backend, 20, 20, "none", seed=3)
    r, c = int(conn.rows()[5]), int(conn.col[5])
    with pytest.raises(ValueError, match=rf"\({r}, {c}\) is already an active synapse"):
        with w.probe_gradients(torch.tensor([r]), torch.tensor([c])):
            pass
    rows, cols = _candidates(conn, 3, g)
    with pytest.raises(ValueError, match="listed twice"):
        with w.probe_gradients(torch.cat([rows, rows[:1]]), torch.cat([cols, cols[:1]])):
            pass
    with pytest.raises(ValueError, match=r"col index 20 outside \[0, 20\)"):
        with w.probe_gradients(torch.tensor([0]), torch.tensor([20])):
            pass
    assert w._probe is None


# -- ActivityAccumulator ---------------------------------------------------------------------------------
def _batches(n_in: int, n_out: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of different shapes and scales (averaging per-batch cosines would differ); pre node 2 and post
    node 1 are silent throughout."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, lead in enumerate([(5,), (3, 4), (2, 3, 2), (9,)]):
        pre = torch.randn(*lead, n_in, generator=g, dtype=torch.float64).relu() * (1 + 3 * i)
        post = torch.randn(*lead, n_out, generator=g, dtype=torch.float64) + pre[..., :1]
        pre[..., 2] = 0
        post[..., 1] = 0
        out.append((pre, post))
    return out


def _direct(batches, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    pre = torch.cat([p.reshape(-1, p.shape[-1]) for p, _ in batches])
    post = torch.cat([q.reshape(-1, q.shape[-1]) for _, q in batches])
    cross = post.t() @ pre
    norms = post.norm(dim=0)[:, None] * pre.norm(dim=0)[None, :]
    score = torch.where(norms > 0, cross / norms.clamp_min(1e-300), torch.zeros_like(cross))
    return score[rows, cols]


def _positions(n_in: int, n_out: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keys = torch.randperm(n_in * n_out, generator=g)[:k]
    return keys // n_in, keys % n_in


@pytest.mark.parametrize("tracked", [False, True])
def test_activity_scores_match_direct_cosine(tracked):
    n_in, n_out = 13, 11
    batches = _batches(n_in, n_out, seed=1)
    rows, cols = _positions(n_in, n_out, 60, seed=2)
    rows = torch.cat([rows, rows[:5], torch.tensor([1, 1, 4])])  # duplicates and silent nodes
    cols = torch.cat([cols, cols[:5], torch.tensor([2, 5, 2])])
    acc = ActivityAccumulator(
        n_in, n_out, positions=(rows, cols) if tracked else None, dtype=torch.float64, chunk_samples=7
    )
    for pre, post in batches:
        acc.update(pre, post)
    assert acc.samples == sum(p.reshape(-1, n_in).shape[0] for p, _ in batches)
    got = acc.scores(rows, cols)
    torch.testing.assert_close(got, _direct(batches, rows, cols), **TOL)
    assert not bool(got.isnan().any()) and bool((got[-3:] == 0).all())
    perm = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(acc.scores(rows[perm], cols[perm]), got[perm], **TOL)  # any order
    if tracked:
        untracked = next(i for i in range(n_in * n_out) if not bool(((rows * n_in + cols) == i).any()))
        with pytest.raises(ValueError, match=rf"\({untracked // n_in}, {untracked % n_in}\)"):
            acc.scores(torch.tensor([untracked // n_in]), torch.tensor([untracked % n_in]))
        with pytest.raises(ValueError, match="samples-mode"):
            acc.topk(3)
    acc.reset()
    assert acc.samples == 0 and not bool(acc.scores(rows, cols).any())


def test_activity_topk_over_inactive_positions():
    n_in, n_out = 17, 12
    batches = _batches(n_in, n_out, seed=4)
    acc = ActivityAccumulator(n_in, n_out, dtype=torch.float64, chunk_samples=10)
    for pre, post in batches:
        acc.update(pre, post)
    active = make_connectivity("er", n_out, n_in, generator=torch.Generator().manual_seed(5), p=0.3)
    rows, cols, scores = acc.topk(20, exclude=active)
    assert not bool(active.to_dense()[rows, cols].any())
    full = _direct(batches, *torch.meshgrid(torch.arange(n_out), torch.arange(n_in), indexing="ij"))
    full[active.to_dense()] = -float("inf")
    torch.testing.assert_close(scores, full.flatten().topk(20).values, **TOL)
    torch.testing.assert_close(scores, _direct(batches, rows, cols), **TOL)
    free = n_in * n_out - active.nnz
    with pytest.raises(ValueError, match=rf"\[0, {free}\].*got {free + 1}"):
        acc.topk(free + 1, exclude=active)


@pytest.mark.parametrize("tracked", [False, True])
def test_activity_state_dict_resumes_identically(tracked):
    n_in, n_out = 13, 11
    batches = _batches(n_in, n_out, seed=6)
    rows, cols = _positions(n_in, n_out, 50, seed=7)
    make = lambda: ActivityAccumulator(  # noqa: E731
        n_in, n_out, positions=(rows, cols) if tracked else None, chunk_samples=8
    )
    a = make()
    for pre, post in batches[:2]:
        a.update(pre.float(), post.float())
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    b = make()
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    for acc in (a, b):
        for pre, post in batches[2:]:
            acc.update(pre.float(), post.float())
    assert torch.equal(a.scores(rows, cols), b.scores(rows, cols)) and a.samples == b.samples
    with pytest.raises(ValueError, match="saved configuration"):
        ActivityAccumulator(n_in + 1, n_out).load_state_dict(a.state_dict())


def test_activity_accumulator_validates_shapes():
    acc = ActivityAccumulator(4, 3)
    with pytest.raises(ValueError, match=r"pre \(\.\.\., 4\)"):
        acc.update(torch.zeros(2, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="row index 3 outside"):
        acc.scores(torch.tensor([3]), torch.tensor([0]))
