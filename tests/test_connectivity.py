"""Connectivity: ER masks, exact E/I counts, determinism, registry (ARCHITECTURE invariants 2 and 4)."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexnet.connectivity import (
    TOPOLOGIES,
    Connectivity,
    assign_inhibitory,
    dale_signs,
    erdos_renyi,
    make_connectivity,
    rounded_count,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_er_has_no_self_connections_by_default_and_density_matches_p():
    n, p = 400, 0.1
    c = erdos_renyi(n, n, p=p, generator=gen())
    assert not c.diagonal_present().any()
    possible = n * (n - 1)
    # Bernoulli count: mean p*possible, sd sqrt(p(1-p)possible) ~ 126; allow 5 sd.
    assert abs(c.nnz - p * possible) < 5 * math.sqrt(p * (1 - p) * possible)
    assert c.density() == pytest.approx(c.nnz / possible)


def test_er_self_connections_option():
    c = erdos_renyi(300, 300, p=0.5, generator=gen(), self_connections=True)
    assert c.diagonal_present().sum() > 100  # ~150 expected


@pytest.mark.parametrize("n,p", [(50, 0.1), (200, 0.01), (123, 0.37), (64, 1.0), (10, 0.0)])
def test_er_exact_count(n, p):
    c = erdos_renyi(n, n, p=p, generator=gen(3), exact=True)
    assert c.nnz == math.floor(Fraction(repr(p)) * n * (n - 1) + Fraction(1, 2))
    assert not c.diagonal_present().any()


def test_er_rectangular_and_rows_sorted_unique():
    c = erdos_renyi(30, 70, p=0.3, generator=gen(1))
    assert c.shape == (30, 70)
    for i in range(30):
        cols = c.col[c.crow[i] : c.crow[i + 1]]
        assert torch.all(cols[1:] > cols[:-1])  # strictly increasing: sorted, no duplicates


def test_er_same_seed_bit_identical_and_different_seed_differs():
    a = erdos_renyi(500, 500, p=0.05, generator=gen(7))
    b = erdos_renyi(500, 500, p=0.05, generator=gen(7))
    c = erdos_renyi(500, 500, p=0.05, generator=gen(8))
    assert a.equals(b)
    assert not a.equals(c)


def test_er_large_n_is_index_form():
    # 20,000 nodes at p = 0.001: ~4e5 synapses stored as indices, never an N x N float array.
    c = erdos_renyi(20_000, 20_000, p=0.001, generator=gen())
    assert c.col.numel() == c.nnz and c.crow.numel() == 20_001
    assert abs(c.density() - 0.001) < 1e-4


def test_dense_round_trip():
    mask = torch.rand(17, 9, generator=gen()) < 0.4
    c = Connectivity.from_dense(mask)
    assert torch.equal(c.to_dense(), mask)
    assert c.nnz == int(mask.sum())


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_er_rejects_bad_p(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        erdos_renyi(10, 10, p=bad, generator=gen())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), f=st.floats(0.0, 1.0))
def test_inhibitory_count_is_exact_and_unique(n, f):
    inh = assign_inhibitory(n, f, generator=gen(n))
    assert inh.dtype == torch.bool and inh.shape == (n,)
    # Exact rational arithmetic on the decimal value of f (what the user wrote), halves up.
    assert int(inh.sum()) == math.floor(Fraction(repr(f)) * n + Fraction(1, 2))


def test_inhibitory_paper_fraction_at_10000():
    inh = assign_inhibitory(10_000, 0.115, generator=gen())
    assert int(inh.sum()) == 1150  # the authors' with-replacement draw gives ~1090 unique
    assert torch.equal(dale_signs(inh)[inh], -torch.ones(1150))


def test_inhibitory_count_rounds_the_decimal_fraction_not_its_binary_product():
    # 0.145 * 100 == 14.499999999999998 in floating point; 14.5 rounds half up to 15.
    assert 0.145 * 100 < 14.5
    assert int(assign_inhibitory(100, 0.145, generator=gen()).sum()) == 15
    assert rounded_count(0.145, 100) == 15 and rounded_count(0.125, 4) == 1 and rounded_count(0.1, 4) == 0


@pytest.mark.parametrize("shape", [(5, 5), (4, 7), (7, 4), (1, 1), (2, 2)])
@pytest.mark.parametrize("self_connections", [True, False])
def test_full_is_built_in_index_form_and_equals_the_dense_mask(shape, self_connections):
    mask = torch.ones(shape, dtype=torch.bool)
    if not self_connections and shape[0] == shape[1]:
        mask.fill_diagonal_(False)
    c = Connectivity.full(*shape, self_connections=self_connections)
    assert c.equals(Connectivity.from_dense(mask))


def test_er_at_p_one_is_every_allowed_pair():
    c = erdos_renyi(60, 60, p=1.0, generator=gen())
    assert c.equals(Connectivity.full(60, 60, self_connections=False))
    assert c.col.numel() == 60 * 59  # no spare capacity left in the stored array


def test_inhibitory_rejects_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        assign_inhibitory(10, 1.2, generator=gen())


def test_registry_by_name():
    assert "er" in TOPOLOGIES and "full" in TOPOLOGIES
    c = make_connectivity("er", 20, 20, generator=gen(), p=0.5)
    assert c.shape == (20, 20)
    with pytest.raises(KeyError, match="known"):
        make_connectivity("nope", 2, 2, generator=gen())
    full = make_connectivity("full", 5, 5)
    assert full.nnz == 20


@pytest.mark.parametrize(
    ("crow", "col", "message"),
    [
        ([0, 2, 1, 3], [0, 1, 2], "crow must be non-decreasing"),
        ([0, 2, 3], [1, 0, 2], "strictly increasing within each row"),
        ([0, 2, 3], [1, 1, 2], "strictly increasing within each row"),  # a duplicate synapse
        ([0, 2, 3], [0, 3, 2], r"column index 3 outside \[0, 3\)"),
        ([0, 2, 3], [-1, 1, 2], r"column index -1 outside \[0, 3\)"),
    ],
)
def test_a_corrupt_index_form_is_refused_naming_what_is_wrong(crow, col, message):
    n_out = len(crow) - 1
    with pytest.raises(ValueError, match=message):
        Connectivity(n_out, 3, torch.tensor(crow), torch.tensor(col))
    # Rows may restart low: the step into a new row is not a violation.
    assert Connectivity(2, 3, torch.tensor([0, 2, 3]), torch.tensor([1, 2, 0])).nnz == 3
