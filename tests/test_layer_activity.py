"""Per-layer activity recording for Hebbian criteria: pre/post activity of a named sparse weight, checked
against a float64 cosine computed directly from the layer's states and inputs."""

import pytest
import torch

from cortexnet.layers import record_activity
from cortexnet.models import CortexRNNConfig, G2GNetConfig, build_model


def _cosine(post: torch.Tensor, pre: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    post, pre = post.double(), pre.double()
    num = (post[:, rows] * pre[:, cols]).sum(0)
    den = post[:, rows].norm(dim=0) * pre[:, cols].norm(dim=0)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def test_recurrent_activity_is_h_t_against_h_t_minus_1_over_the_whole_period():
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=20, p=0.3, dale=True, backend="csr"), 3, 2)
    rec = record_activity(model, "recurrent.rec", dtype=torch.float64)
    xs = [torch.rand(4, 6, 3, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    for x in xs:
        model(x)
    model.eval()
    model(torch.rand(4, 6, 3))  # eval passes are not part of the period
    rec.remove()
    model(torch.rand(4, 6, 3))  # nor are passes after remove()
    with torch.no_grad():
        states = torch.cat([model.recurrent(x, return_states=True)[1] for x in xs])  # (12, 6, N)
    prev = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
    post, pre = states.reshape(-1, 20), prev.reshape(-1, 20)
    conn = model.recurrent.rec.connectivity()
    rows, cols = conn.rows(), conn.col
    torch.testing.assert_close(rec.accumulator.scores(rows, cols).double(), _cosine(post, pre, rows, cols))


def test_feedforward_activity_is_input_against_activated_output():
    cfg = G2GNetConfig(image_channels=1, image_height=8, image_width=8, patches_per_side=2, patch_channels=4,
                       hidden=(12, 10), backend="masked_dense")  # fmt: skip
    model = build_model("g2gnet", cfg, 8, 3)
    rec = record_activity(model, "layers.1.sparse", dtype=torch.float64)
    x = torch.rand(9, 8, 8, generator=torch.Generator().manual_seed(0))
    model(x)
    rec.remove()
    layer0, layer1 = model.layers
    with torch.no_grad():
        h0 = torch.relu(layer0(model.embed(x.view(9, 1, 8, 8))))
        h1 = torch.relu(layer1(h0))
    rows = torch.arange(10).repeat_interleave(12)
    cols = torch.arange(12).repeat(10)
    torch.testing.assert_close(rec.accumulator.scores(rows, cols).double(), _cosine(h1, h0, rows, cols))


def test_unknown_weight_names_list_the_known_ones():
    model = build_model("cortex_rnn", CortexRNNConfig(n_nodes=10, p=0.3), 3, 2)
    with pytest.raises(ValueError, match=r"has no sparse weight 'rec'; it has recurrent\.rec"):
        record_activity(model, "rec")
