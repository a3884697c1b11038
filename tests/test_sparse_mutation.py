"""SparseWeight.set_connectivity_ (one rewiring contract on every backend) and constraint_violations."""

from __future__ import annotations

import pytest
import torch
from sparse_helpers import rewired

from cortexnet.connectivity import Connectivity, assign_inhibitory, dale_signs, make_connectivity
from cortexnet.sparse import CSRWeight, MaskedDenseWeight, make_sparse_weight

# (backend, n): "auto" at n = 300, p = 0.02 picks csr; at n = 40 masked dense.
CASES = [("masked_dense", 40), ("csr", 40), ("auto", 300), ("auto", 40)]
OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam([p], lr=0.02),
    "adamw": lambda p: torch.optim.AdamW([p], lr=0.02, amsgrad=True),
    "sgd": lambda p: torch.optim.SGD([p], lr=0.2, momentum=0.9),
    "rmsprop": lambda p: torch.optim.RMSprop([p], lr=0.01, momentum=0.5),
}


def _conn(n: int, p: float, seed: int) -> Connectivity:
    return make_connectivity("er", n, n, generator=torch.Generator().manual_seed(seed), p=p)


def _weight(backend: str, conn: Connectivity, dale: str, seed: int = 0, **kw):
    g = torch.Generator().manual_seed(seed)
    sign = dale_signs(assign_inhibitory(conn.n_in, 0.3, generator=g)) if dale != "none" else None
    w = make_sparse_weight(backend, conn, dale=dale, column_sign=sign, **kw).double()
    w.set_values_(conn.rows(), conn.col, torch.randn(conn.nnz, generator=g, dtype=torch.float64) * 0.3)
    return w


def _param(w):
    return w.weight if isinstance(w, MaskedDenseWeight) else w.values


def _per_synapse(w, t: torch.Tensor, conn: Connectivity) -> torch.Tensor:
    """A parameter-shaped tensor read at the synapses of ``conn``, connectivity order."""
    return t[conn.rows(), conn.col] if isinstance(w, MaskedDenseWeight) else t


def _brute_force_map(old: Connectivity, new: Connectivity) -> torch.Tensor:
    where = {(int(r), int(c)): e for e, (r, c) in enumerate(zip(old.rows(), old.col, strict=True))}
    return torch.tensor(
        [where.get((int(r), int(c)), -1) for r, c in zip(new.rows(), new.col, strict=True)], dtype=torch.int64
    )


def _train(w, opt, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    readout = torch.randn(w.n_out, 3, generator=g, dtype=torch.float64)
    for _ in range(steps):
        u = torch.randn(4, 5, w.n_in, generator=g, dtype=torch.float64)
        target = torch.randint(0, 3, (5,), generator=g)
        opt.zero_grad()
        logits = w.recurrent(u, "tanh")[-1] @ readout
        torch.nn.functional.cross_entropy(logits, target).backward()
        opt.step()
        w.apply_constraints_()


def _expected_new(w, fresh: torch.Tensor, conn: Connectivity, added: torch.Tensor) -> torch.Tensor:
    """Effective values the added synapses must have: the given value, Dale applied."""
    sign = w.column_sign.double()[conn.col[added]]
    if w.dale == "abs":
        return fresh.abs() * sign
    if w.dale == "clip":
        return torch.where(fresh * sign >= 0, fresh, torch.zeros_like(fresh))
    return fresh


@pytest.mark.parametrize(("backend", "n"), CASES)
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dale", ["none", "clip", "abs"])
def test_set_connectivity_moves_values_and_state_and_keeps_training(backend, n, opt_name, dale):
    conn = _conn(n, 0.02 if n > 100 else 0.2, seed=1)
    w = _weight(backend, conn, dale, seed=2)
    if backend == "auto":
        assert isinstance(w, CSRWeight if n > 100 else MaskedDenseWeight)
    param = _param(w)
    opt = OPTIMIZERS[opt_name](param)
    _train(w, opt, 3, seed=3)
    state = opt.state[param]
    keys = [k for k, v in state.items() if torch.is_tensor(v) and v.shape == param.shape]
    assert len(keys) >= 1 and (opt_name != "rmsprop" or len(keys) == 2)
    step_before = {k: v.clone() for k, v in state.items() if k not in keys and torch.is_tensor(v)}
    old_states = {k: _per_synapse(w, state[k], conn).clone() for k in keys}
    old_values = w.active_values()

    new = rewired(conn, 10, seed=4)
    expected_map = _brute_force_map(conn, new)
    added = expected_map < 0
    fresh = torch.randn(int(added.sum()), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    if dale == "abs":
        fresh = fresh.abs() * 0.01 + 1e-3
    source = w.set_connectivity_(new, opt, new_values=fresh)

    assert source.dtype == torch.int64 and torch.equal(source.cpu(), expected_map)
    assert _param(w) is param and opt.param_groups[0]["params"][0] is param
    assert w.connectivity().equals(new) and w.nnz == conn.nnz
    kept = ~added
    values = w.active_values()
    assert torch.equal(values[kept], old_values[expected_map[kept]])
    assert torch.equal(values[added], _expected_new(w, fresh, new, added))
    if dale == "clip":
        assert bool((values[added] == 0).any())  # some wrong-sign new values were clipped
    for k in keys:
        moved = _per_synapse(w, state[k], new)
        assert torch.equal(moved[kept], old_states[k][expected_map[kept]]), k
        assert not bool(moved[added].any()), k
        if isinstance(w, MaskedDenseWeight):  # removed synapses: zero state too
            assert not bool(state[k][~new.to_dense()].any()), k
    for k, v in step_before.items():
        assert torch.equal(state[k], v)  # scalar state untouched
    assert w.constraint_violations() == {"wrong_sign": 0, "off_mask": 0, "non_finite": 0}

    _train(w, opt, 4, seed=6)  # the optimiser keeps training the same parameter
    after = w.active_values()
    assert bool((after[added] != values[added]).any())  # added synapses receive updates
    assert w.connectivity().equals(new) and w.constraint_violations()["wrong_sign"] == 0
    if isinstance(w, MaskedDenseWeight):
        assert not bool(w.weight[~w.mask].any())


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
@pytest.mark.parametrize("dale", ["none", "abs"])
def test_backends_stay_equal_through_rewiring(opt_name, dale):
    """masked dense and csr trained side by side, rewired identically (twice), keep identical weights: the
    optimiser state moved with the values and was reset at the same synapses on both."""
    conn = _conn(40, 0.2, seed=7)
    ws = [
        _weight(b, conn, dale, seed=8, **kw) for b, kw in (("masked_dense", {}), ("csr", {"panel_cols": 16}))
    ]
    opts = [OPTIMIZERS[opt_name](_param(w)) for w in ws]
    current = conn
    for round_ in range(2):
        for w, opt in zip(ws, opts, strict=True):
            _train(w, opt, 3, seed=10 + round_)
        torch.testing.assert_close(ws[1].to_dense(), ws[0].to_dense(), rtol=1e-9, atol=1e-12)
        new = rewired(current, 12, seed=20 + round_)
        n_new = int((_brute_force_map(current, new) < 0).sum())
        fresh = torch.full((n_new,), 0.01, dtype=torch.float64)
        maps = [w.set_connectivity_(new, opt, new_values=fresh) for w, opt in zip(ws, opts, strict=True)]
        assert torch.equal(maps[0], maps[1])
        current = new
    for w, opt in zip(ws, opts, strict=True):
        _train(w, opt, 3, seed=30)
    torch.testing.assert_close(ws[1].to_dense(), ws[0].to_dense(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_set_connectivity_without_state_without_momentum_and_with_grad(backend):
    conn = _conn(30, 0.2, seed=1)
    new = rewired(conn, 8, seed=2)
    w = _weight(backend, conn, "none", seed=3)
    w.set_connectivity_(new, torch.optim.Adam(w.parameters()))  # no step yet: no state to move
    w = _weight(backend, conn, "none", seed=3)
    sgd = torch.optim.SGD(w.parameters(), lr=0.1)  # momentum_buffer is None
    _train(w, sgd, 2, seed=4)
    u = torch.randn(3, 2, 30, dtype=torch.float64)
    w.recurrent(u, "relu").square().sum().backward()  # a gradient is pending
    grad_before = _per_synapse(w, _param(w).grad, conn).clone()
    source = w.set_connectivity_(new, sgd)
    grad = _per_synapse(w, _param(w).grad, new)
    assert torch.equal(grad[source >= 0], grad_before[source[source >= 0]])
    assert not bool(grad[source < 0].any())
    if backend == "masked_dense":
        assert not bool(_param(w).grad[~new.to_dense()].any())


@pytest.mark.parametrize("target", [0.3, 0.1])
def test_every_backend_takes_another_count_and_keeps_training_identically(target):
    # Gradual pruning / growth (CHTss) changes the synapse count: compressed storage gets a new Parameter, put
    # in the module and in the optimiser (param group and remapped moments) in place of the old one; masked
    # dense keeps its object. Both backends go on computing the same thing.
    conn = _conn(30, 0.2, seed=1)
    other = _conn(30, target, seed=2)
    out = {}
    for backend in ("masked_dense", "csr"):
        w = _weight(backend, conn, "clip", seed=3)
        opt = torch.optim.Adam(w.parameters(), lr=0.01)
        _train(w, opt, 2, seed=4)
        old = w.active_values()
        param = next(w.parameters())
        source = w.set_connectivity_(other, opt)
        assert w.nnz == other.nnz and (next(w.parameters()) is param) == (backend == "masked_dense")
        param = next(w.parameters())
        assert [p for g in opt.param_groups for p in g["params"]] == [param]
        assert torch.equal(source, _brute_force_map(conn, other))
        assert torch.equal(w.active_values()[source >= 0], old[source[source >= 0]])
        moments = opt.state[param]["exp_avg"]
        assert moments.shape == param.shape and len(opt.state) == 1
        _train(w, opt, 2, seed=5)  # the optimiser steps on with the resized state
        out[backend] = w.to_dense()
    torch.testing.assert_close(out["masked_dense"], out["csr"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_set_connectivity_error_paths(backend):
    conn = _conn(30, 0.2, seed=1)
    w = _weight(backend, conn, "none")
    with pytest.raises(ValueError, match=r"\(30, 31\)"):
        w.set_connectivity_(
            make_connectivity("er", 30, 31, generator=torch.Generator().manual_seed(0), p=0.2)
        )
    new = rewired(conn, 5, seed=2)
    with pytest.raises(ValueError, match=r"adds 5 synapses"):
        w.set_connectivity_(new, new_values=torch.zeros(4, dtype=torch.float64))
    other = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="does not hold"):
        w.set_connectivity_(new, torch.optim.Adam([other]))
    assert w.connectivity().equals(conn)  # a refused call changes nothing


# -- constraint_violations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
@pytest.mark.parametrize("dale", ["none", "clip", "abs"])
def test_constraint_violations_count_injected_faults_exactly(backend, dale, monkeypatch):
    conn = _conn(50, 0.2, seed=1)
    w = _weight(backend, conn, dale, seed=2)
    assert w.constraint_violations() == {"wrong_sign": 0, "off_mask": 0, "non_finite": 0}
    p = _param(w)
    rows, cols = conn.rows(), conn.col
    sign = w.column_sign.double()[cols]
    with torch.no_grad():
        # 7 wrong signs (raw = effective for none/clip; for abs a negative raw value is still right-signed)
        wrong = torch.arange(0, 70, 10)
        flipped = -sign[wrong] * 0.5
        nonfinite = torch.tensor([3, 13, 23])
        bad = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=p.dtype)
        if isinstance(w, MaskedDenseWeight):
            p[rows[wrong], cols[wrong]] = flipped
            p[rows[nonfinite], cols[nonfinite]] = bad
            off = (~conn.to_dense()).nonzero()[:4]
            p[off[:, 0], off[:, 1]] = 1.0
        else:
            p[wrong] = flipped
            p[nonfinite] = bad
    # -inf on a column whose sign is +1 is also a wrong sign (inf on a -1 column too)
    inf_wrong = int((torch.tensor([0.0, 1.0, -1.0]) * sign[nonfinite] < 0).sum())
    expected_wrong = {"none": 0, "clip": 7 + inf_wrong, "abs": 0}[dale]
    monkeypatch.setattr(
        type(w), "to_dense", lambda self: pytest.fail("constraint_violations built a dense matrix")
    )
    if isinstance(w, MaskedDenseWeight):
        monkeypatch.undo()  # masked dense is dense anyway
    got = w.constraint_violations()
    assert got == {
        "wrong_sign": expected_wrong,
        "off_mask": 4 if isinstance(w, MaskedDenseWeight) else 0,
        "non_finite": 3,
    }
    assert w.sign_violations() == expected_wrong


def test_sign_violations_is_zero_without_dale():
    conn = _conn(30, 0.3, seed=1)
    for backend in ("masked_dense", "csr"):
        w = make_sparse_weight(backend, conn)
        w.set_values_(conn.rows(), conn.col, -torch.ones(conn.nnz))
        assert w.sign_violations() == 0
