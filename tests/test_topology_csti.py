"""CSTI: links where the presynaptic features correlate most, checked on hand-made inputs."""

import pytest
import torch

from cortexnet.connectivity import LayerSpec, check_topology_params, make_connectivity
from cortexnet.connectivity.correlation import abs_correlation, input_activity


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _hand_made(n: int = 400) -> torch.Tensor:
    """Six features: 0 ~ 1 (r = 1), 2 = -0 (|r| = 1, anticorrelated), 3 weakly tied to 0, 4 independent,
    5 constant."""
    g = gen(1)
    a = torch.randn(n, generator=g)
    weak = 0.3 * a + torch.randn(n, generator=g)
    return torch.stack([a, 2 * a + 1, -a, weak, torch.randn(n, generator=g), torch.ones(n)], dim=1)


def test_abs_correlation_by_hand():
    c = abs_correlation(_hand_made())
    assert c[0, 1] == pytest.approx(1.0) and c[0, 2] == pytest.approx(1.0)
    assert 0.15 < c[0, 3] < 0.45 and c[0, 4] < 0.15
    assert torch.all(c[5] == 0) and torch.all(c[:, 5] == 0)  # a constant feature correlates with nothing


def test_csti_picks_the_most_correlated_inputs_of_each_row():
    x = _hand_made()
    # 6 outputs x 6 inputs, 3 links per row: row i is "the neuron of feature i".
    conn = make_connectivity("csti", LayerSpec(6, 6), generator=gen(), p=0.5, activity=x)
    assert conn.nnz == 18 and torch.equal(conn.crow.diff(), torch.full((6,), 3))
    cols = [set(conn.col[conn.crow[i] : conn.crow[i + 1]].tolist()) for i in range(6)]
    assert cols[0] == {0, 1, 2} and cols[1] == {0, 1, 2}  # the perfectly (anti)correlated triple
    assert 5 not in cols[0] | cols[1] | cols[2]  # the constant feature scores 0


def test_tiling_exact_totals_no_diagonal_and_determinism():
    x = torch.rand(50, 8, generator=gen(2))
    spec = LayerSpec(30, 30, recurrent=True)
    a = make_connectivity("csti", spec, generator=gen(3), p=0.2, activity=x)
    b = make_connectivity("csti", spec, generator=gen(3), p=0.2, activity=x)
    assert a.equals(b) and a.nnz == round(0.2 * 30 * 29) and not bool(a.diagonal_present().any())
    wide = make_connectivity(
        "csti", LayerSpec(40, 16), generator=gen(), p=0.25, activity=x
    )  # 8 features tiled
    assert wide.nnz == round(0.25 * 40 * 16)


def test_input_activity_and_errors():
    x = torch.rand(100, 4, 3)
    sample = input_activity(x, samples=30, generator=gen())
    assert sample.shape == (30, 12) and sample.dtype == torch.float32
    with pytest.raises(ValueError, match="csti needs activity"):
        check_topology_params("csti", {}, spec=LayerSpec(5, 5, density=0.3))
    with pytest.raises(ValueError, match=r"float \(n_samples >= 2, F\)"):
        check_topology_params("csti", {"activity": torch.ones(1, 4)}, spec=LayerSpec(5, 5, density=0.3))
