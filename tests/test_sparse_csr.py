"""The compressed (CSR) backend: storage, checkpoints across backends, devices/dtypes, optimisers, rewiring,
and the ``auto`` choice."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from sparse_helpers import rewired

from cortexnet.connectivity import assign_inhibitory, dale_signs, make_connectivity
from cortexnet.layers import RecurrentLayer
from cortexnet.models.cortex_rnn import CortexRNN, CortexRNNConfig
from cortexnet.sparse import (
    CSRWeight,
    MaskedDenseWeight,
    choose_backend,
    convert_state_dict,
    crossover_density,
    make_sparse_weight,
)

# Every test here runs on PyTorch's sparse kernels and on the compiled ones (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("csr_kernel")


def _conn(n=40, p=0.2, seed=0, n_in=None):
    g = torch.Generator().manual_seed(seed)
    return make_connectivity("er", n, n_in or n, generator=g, p=p)


def _random_weight(backend, conn, dale="none", seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    sign = dale_signs(assign_inhibitory(conn.n_in, 0.25, generator=g)) if dale != "none" else None
    w = make_sparse_weight(backend, conn, dale=dale, column_sign=sign, **kw)
    w.set_values_(conn.rows(), conn.col, torch.randn(conn.nnz, generator=g))
    return w


def test_values_are_the_only_parameter_and_storage_is_compressed():
    conn = _conn(50, 0.1)
    w = make_sparse_weight("csr", conn)
    assert isinstance(w, CSRWeight)
    params = dict(w.named_parameters())
    assert list(params) == ["values"] and params["values"].shape == (conn.nnz,)
    sd = w.state_dict()
    assert set(sd) == {"values", "crow", "col", "column_sign"}
    assert sd["col"].dtype == torch.int32 and sd["crow"].dtype == torch.int64
    assert w.connectivity().equals(conn)
    assert w.nnz == conn.nnz


def test_mask_invariant_off_mask_exactly_zero():
    conn = _conn(30, 0.1)
    w = _random_weight("csr", conn)
    dense = w.to_dense()
    assert not bool(dense[~conn.to_dense()].any())
    with pytest.raises(ValueError, match="outside"):
        off = (~conn.to_dense()).nonzero()[0]
        w.set_values_(off[:1], off[1:], torch.ones(1))


@pytest.mark.parametrize("dale", ["clip", "abs"])
def test_dale_projection_matches_masked_dense(dale):
    conn = _conn(40, 0.3)
    ref, csr = _random_weight("masked_dense", conn, dale), _random_weight("csr", conn, dale)
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(40, 40, generator=g)
    ref.load_dense_(noise)
    csr.load_dense_(noise)
    assert torch.equal(csr.to_dense(), ref.to_dense())
    assert csr.sign_violations() == 0
    with torch.no_grad():
        csr.values.copy_(torch.randn(conn.nnz, generator=g))
        ref.weight.copy_(csr.to_dense() if dale == "clip" else torch.zeros(40, 40))
        if dale == "abs":
            ref.weight[conn.rows(), conn.col] = csr.values
    csr.apply_constraints_()
    ref.apply_constraints_()
    assert torch.equal(csr.to_dense(), ref.to_dense())
    assert csr.sign_violations() == 0


# -- checkpoints ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("src", "dst"), [("masked_dense", "csr"), ("csr", "masked_dense"), ("csr", "csr")])
@pytest.mark.parametrize("dale", ["none", "clip", "abs"])
def test_state_dict_round_trip_across_backends(src, dst, dale):
    conn = _conn(35, 0.15, seed=2)
    a = _random_weight(src, conn, dale, seed=3)
    b = _random_weight(dst, conn, dale, seed=4)  # different values before loading
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    assert torch.equal(b.to_dense(), a.to_dense())
    x = torch.randn(2, 3, 35)
    torch.testing.assert_close(b.recurrent(x, "relu"), a.recurrent(x, "relu"))
    # ... and back again.
    a2 = _random_weight(src, conn, dale, seed=5)
    a2.load_state_dict(b.state_dict())
    assert torch.equal(a2.to_dense(), a.to_dense())


def test_checkpoint_of_a_rewired_weight_loads_into_a_fresh_model_of_any_backend():
    conn, other = _conn(30, 0.2, seed=0), _conn(30, 0.25, seed=9)  # different synapse sets and counts
    a = _random_weight("csr", other, seed=1)
    for backend in ("csr", "masked_dense"):
        b = make_sparse_weight(backend, conn)
        param_before = next(b.parameters())
        b.load_state_dict(a.state_dict())
        assert b.connectivity().equals(other)
        assert torch.equal(b.to_dense(), a.to_dense())
        assert next(b.parameters()) is param_before  # same Parameter object: optimisers stay valid
        x = torch.randn(4, 30)
        torch.testing.assert_close(b.linear(x), a.linear(x))


@pytest.mark.parametrize(("src", "dst"), [("masked_dense", "csr"), ("csr", "masked_dense")])
def test_model_checkpoint_across_backends(src, dst):
    kw = {"n_nodes": 40, "p": 0.2, "dale": True}
    a = CortexRNN(CortexRNNConfig(backend=src, **kw), n_inputs=5, n_classes=3)
    b = CortexRNN(CortexRNNConfig(backend=dst, weight_seed=7, **kw), n_inputs=5, n_classes=3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 6, 5)
    torch.testing.assert_close(b(x), a(x))
    converted = convert_state_dict(a.state_dict(), dst)
    assert set(converted) == set(b.state_dict())
    c = CortexRNN(CortexRNNConfig(backend=dst, **kw), n_inputs=5, n_classes=3)
    c.load_state_dict(converted)
    torch.testing.assert_close(c(x), a(x))


def test_auto_backend_in_config_trains_and_checkpoints():
    model = CortexRNN(CortexRNNConfig(n_nodes=300, p=0.05, backend="auto"), n_inputs=4, n_classes=2)
    assert model.recurrent.rec.backend == "csr"
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(3, 5, 4), torch.tensor([0, 1, 0])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    ref = CortexRNN(CortexRNNConfig(n_nodes=300, p=0.05, backend="masked_dense"), n_inputs=4, n_classes=2)
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(ref(x), model(x), rtol=1e-5, atol=1e-6)


# -- devices, dtypes, optimisers -----------------------------------------------------------------------------
def test_to_dtype_device_and_deepcopy():
    conn = _conn(30, 0.2)
    w = _random_weight("csr", conn, "abs", panel_cols=8)
    x = torch.randn(3, 2, 30)
    y32 = w.recurrent(x, "tanh")
    w64 = copy.deepcopy(w).to(torch.float64)
    assert w64.values.dtype == torch.float64 and w64.column_sign.dtype == torch.float64
    torch.testing.assert_close(w64.recurrent(x.double(), "tanh").float(), y32, rtol=1e-5, atol=1e-6)
    w.to("cpu")
    torch.testing.assert_close(w.recurrent(x, "tanh"), y32)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.Adam(p, lr=1e-2, fused=True),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        lambda p: torch.optim.SGD(p, lr=1e-1, momentum=0.9, nesterov=True),
        lambda p: torch.optim.RMSprop(p, lr=1e-3),
        lambda p: torch.optim.Adagrad(p, lr=1e-2),
    ],
)
def test_any_torch_optimiser(make_opt):
    conn = _conn(30, 0.2)
    w = _random_weight("csr", conn, "clip")
    opt = make_opt(list(w.parameters()))
    before = w.values.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        w.recurrent(torch.randn(4, 2, 30), "relu").square().sum().backward()
        opt.step()
        w.apply_constraints_()
    assert not torch.equal(w.values, before)
    assert w.sign_violations() == 0


# -- rewiring ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dale", ["none", "clip"])
def test_rewiring_keeps_values_resets_optimiser_state_and_matches_masked_dense(dale):
    conn = _conn(40, 0.2, seed=1)
    ref = _random_weight("masked_dense", conn, dale, seed=2).double()
    csr = _random_weight("csr", conn, dale, seed=2, panel_cols=16).double()
    opts = {w: torch.optim.Adam(w.parameters(), lr=0.02) for w in (ref, csr)}
    g = torch.Generator().manual_seed(3)

    def train(steps):
        for _ in range(steps):
            u = torch.randn(3, 4, 40, generator=g, dtype=torch.float64)
            for w, opt in opts.items():
                opt.zero_grad()
                w.recurrent(u, "relu")[-1].sum().backward()
                opt.step()
                w.apply_constraints_()
            torch.testing.assert_close(csr.to_dense(), ref.to_dense(), rtol=1e-9, atol=1e-12)

    train(3)
    new = rewired(conn, 25, seed=4)
    param = csr.values
    old_dense = csr.to_dense()
    source = csr.set_connectivity_(new, optimizer=opts[csr])
    ref.set_connectivity_(new, optimizer=opts[ref])
    assert csr.values is param and csr.connectivity().equals(new) and csr.nnz == conn.nnz
    kept = new.to_dense() & conn.to_dense()
    assert torch.equal(csr.to_dense()[kept], old_dense[kept])
    assert not bool(csr.to_dense()[~kept].any())  # new synapses start at zero, removed ones are gone
    assert int((source < 0).sum()) == 25
    state = opts[csr].state[csr.values]
    assert not bool(state["exp_avg"][source < 0].any()) and not bool(state["exp_avg_sq"][source < 0].any())
    train(3)  # Adam continues identically on both backends: state moved with the synapses and was reset
    # Another synapse count (gradual pruning): a new parameter, in the optimiser in place of the old one.
    csr.set_connectivity_(_conn(40, 0.3, seed=5), optimizer=opts[csr])
    assert csr.values is not param and csr.nnz == _conn(40, 0.3, seed=5).nnz
    assert any(p is csr.values for g in opts[csr].param_groups for p in g["params"])


# -- auto ----------------------------------------------------------------------------------------------------
def test_auto_rules():
    assert choose_backend(10_000, 10_000, 10_000_000, batch_hint=32) == "csr"  # p = 0.1
    assert choose_backend(10_000, 10_000, 100_000_000, batch_hint=32) == "masked_dense"  # p = 1
    assert choose_backend(100, 100, 100, batch_hint=32) == "masked_dense"  # tiny
    assert choose_backend(100_000, 100_000, 10**8, batch_hint=32) == "csr"  # dense would not fit
    assert crossover_density(32) >= crossover_density(256)
    assert crossover_density(32, "cuda") < crossover_density(32, "cpu")
    w = make_sparse_weight("auto", _conn(300, 0.01))
    assert isinstance(w, CSRWeight)
    w = make_sparse_weight("auto", _conn(300, 1.0))
    assert isinstance(w, MaskedDenseWeight)


def test_recurrent_layer_with_csr_matches_masked_dense():
    conn = _conn(50, 0.1, seed=6)
    inh = assign_inhibitory(50, 0.2, generator=torch.Generator().manual_seed(0))
    layers = [
        RecurrentLayer(3, conn, inhibitory=inh, backend=b, generator=torch.Generator().manual_seed(1))
        for b in ("masked_dense", "csr")
    ]
    x = torch.randn(4, 7, 3)
    outs = [layer(x, return_states=True) for layer in layers]
    torch.testing.assert_close(outs[1][1], outs[0][1])
    assert outs[1][1].shape == (4, 7, 50)


# -- index structures ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [37, 1 << 22])
@pytest.mark.parametrize("panel", [None, 5, 13])
def test_panel_structures_reassemble_the_matrix(monkeypatch, chunk, panel):
    """Column panels of W and of Wᵀ (built in chunks) hold exactly W's entries, with consistent permutations."""
    import cortexnet.sparse._csr_index as ci

    monkeypatch.setattr(ci, "_CHUNK", chunk)
    conn = _conn(45, 0.2, seed=8, n_in=31)
    w = _random_weight("csr", conn, panel_cols=panel)
    dense = w.to_dense()
    index = ci.build_index(w.crow, w.col, 45, 31, torch.device("cpu"), panel)
    for panels, target in ((index.fwd, dense), (index.bwd, dense.t())):
        vals = panels.gather(w.values.detach())
        rebuilt = torch.zeros_like(target)
        for c0, c1, csr in panels.matrices(vals):
            rebuilt[:, c0:c1] += csr.to_dense()
        assert torch.equal(rebuilt, target)
    assert torch.equal(index.to_canonical(index.fwd.gather(w.values.detach())), w.values.detach())


def test_auto_prefers_the_leaner_backend_when_the_faster_does_not_fit():
    # p = 1 at N = 20,000: dense is faster and (6.8 GB) leaner than csr (17.6 GB) -> masked_dense.
    assert choose_backend(20_000, 20_000, 20_000 * 19_999, batch_hint=32) == "masked_dense"
    # p = 0.2 at N = 30,000: csr (7.9 GB) is leaner than dense (15.3 GB).
    assert choose_backend(30_000, 30_000, int(0.2 * 30_000**2), batch_hint=256) == "csr"


@pytest.mark.parametrize("dense_gemm", ["blas", "onednn"])
def test_crossover_interpolation(dense_gemm, csr_kernel):
    """The table measured with the kernels both backends will run: csr's compiled kernels, else oneDNN's or
    the BLAS dense products against PyTorch's sparse ones."""
    from cortexnet.sparse import auto, gemm

    if dense_gemm == "onednn" and not gemm.onednn_available():
        pytest.skip("this PyTorch build has no oneDNN matmul")
    saved = gemm.set_dense_gemm(dense_gemm)
    try:
        if csr_kernel == "native":
            table = auto.CPU_CROSSOVER_NATIVE
        else:
            table = auto.CPU_CROSSOVER if dense_gemm == "onednn" else auto.CPU_CROSSOVER_BLAS
        (n0, p0), *_, (_, p_last) = table[32]
        assert crossover_density(32, n=n0) == pytest.approx(p0)
        assert crossover_density(32, n=100_000) == pytest.approx(p_last)  # clamped at the largest measured N
        p256 = table[256][0][1]
        mid = crossover_density(90, n=n0)
        assert min(p0, p256) < mid < max(p0, p256)  # between the two batch rows, in log B
        assert crossover_density(10_000, n=n0) == pytest.approx(p256)
    finally:
        gemm.set_dense_gemm(saved)
