"""Edge cases of the network-science generators found in review: complete layers, empty layers, non-integer
degrees, zero-size layers, and check hooks that agree with each other."""

import pytest
import torch

from cortexnet.connectivity import (
    FROM_DATA,
    TOPOLOGIES,
    LayerSpec,
    check_topology_params,
    data_params,
    make_connectivity,
    topology_settable,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _valid(conn):
    rows = conn.rows()
    keys = rows * conn.n_in + conn.col
    assert bool((keys[1:] > keys[:-1]).all()), "CSR order with no duplicates"
    assert int(conn.col.min()) >= 0 and int(conn.col.max()) < conn.n_in


@pytest.mark.parametrize("degree", ["fixed", "uniform"])
def test_brf_on_a_complete_or_nearly_complete_recurrent_layer_is_valid(degree):
    full = make_connectivity("brf", LayerSpec(300, 300, recurrent=True), generator=gen(1), p=1.0, r=1.0,
                             degree=degree)  # fmt: skip
    _valid(full)
    assert full.nnz == 300 * 299 and not bool(full.diagonal_present().any())
    dense = make_connectivity(
        "brf", LayerSpec(300, 300, recurrent=True), generator=gen(2), p=0.9, degree=degree
    )
    _valid(dense)
    assert not bool(dense.diagonal_present().any())


def test_ramanujan_meets_its_bound_at_non_integer_mean_degrees():
    for n, p in ((200, 2.5 / 200), (200, 3.5 / 200), (400, 4.5 / 400)):
        conn = make_connectivity("ramanujan", LayerSpec(n, n, recurrent=False), generator=gen(3), p=p,
                                 check_spectrum=True)  # fmt: skip
        _valid(conn)
        assert conn.nnz == round(p * n * n)


def test_empty_and_zero_size_layers():
    empty = make_connectivity("ramanujan", LayerSpec(23, 35), generator=gen(), p=1e-6)
    assert empty.nnz == 0
    one = make_connectivity("erk", LayerSpec(1, 1, recurrent=True), generator=gen(), p=0.5)
    assert one.nnz == 0


@pytest.mark.parametrize("name", TOPOLOGIES.names())
def test_check_hooks_without_a_layer_or_density_accept_and_with_a_bad_density_refuse(name):
    settable = topology_settable(name)
    # Nothing known yet: nothing to refuse (but a data sample, for a generator that cannot work without one).
    data = {k: FROM_DATA for k in data_params(name)}  # wired from data later: accepted until the build
    check_topology_params(name, data)
    if "p" in settable:
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
            check_topology_params(name, {"p": 1.5, **data}, spec=LayerSpec(10, 10))


def _circular_runs(cols: torch.Tensor, n: int) -> int:
    present = torch.zeros(n, dtype=torch.bool)
    present[cols] = True
    starts = present & ~present.roll(1)
    return int(starts.sum()) if not bool(present.all()) else 1


@pytest.mark.parametrize(
    "n,p,params", [(64, 0.9, {"window": 1.0, "branches": 2}), (20, 0.5, {}), (30, 0.6, {"branches": 3})]
)
def test_dnm_branches_stay_separate_around_a_whole_ring_window(n, p, params):
    conn = make_connectivity("dnm", LayerSpec(n, n, recurrent=False), generator=gen(4), p=p, **params)
    _valid(conn)
    assert conn.nnz == round(p * n * n)
    branches = params.get("branches")
    for i in range(n):
        cols = conn.col[conn.crow[i] : conn.crow[i + 1]]
        runs = _circular_runs(cols, n)
        assert runs == branches if branches else runs >= 1, (i, runs)
