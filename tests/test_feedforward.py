"""The feed-forward control of Fruengel & Oberlaender 2025: layer split, flattening, exact parameter counts,
initialisation, Dale's law, checkpoints, and training on digits above chance."""

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from cortexnet.analysis import hidden_activations
from cortexnet.connectivity.g2g import group_assignment
from cortexnet.data import chance_level, load_dataset
from cortexnet.layers import apply_constraints
from cortexnet.models import MODEL_CONFIGS, FeedForwardConfig, FeedForwardNet, build_model
from cortexnet.training import TrainConfig, fit, model_from_checkpoint


def test_hidden_nodes_split_into_two_layers():
    assert FeedForwardConfig(n_nodes=7).layer_sizes == (4, 3)
    assert FeedForwardConfig(n_nodes=10_000).layer_sizes == (5000, 5000)


def test_flattens_the_whole_sequence_row_major_and_counts_parameters_exactly():
    cfg = FeedForwardConfig(n_nodes=50, n_steps=6, p=0.2, exact_edges=True)
    model = FeedForwardNet(cfg, n_inputs=5, n_classes=4)
    n1, n2 = 25, 25
    counts = model.parameter_counts()
    assert counts["input"] == 30 * n1 + n1
    assert counts["hidden_synapses"] == round(0.2 * n1 * n2) == 125  # exact; square but no diagonal excluded
    assert counts["hidden_bias"] == n2 and counts["readout"] == n2 * 4 + 4
    assert counts["total"] == 30 * n1 + n1 + 125 + n2 + n2 * 4 + 4
    assert counts["stored"] == counts["total"] - 125 + n1 * n2  # masked dense stores all N1*N2 positions
    x = torch.randn(3, 6, 5)
    h1 = torch.relu(x.reshape(3, 30) @ model.input.weight.t() + model.input.bias)
    h2 = torch.relu(h1 @ model.connections.to_dense().t() + model.connections.bias)
    torch.testing.assert_close(model(x), h2 @ model.readout.weight.t() + model.readout.bias)


def test_dense_control_connects_every_pair_of_the_two_layers():
    model = FeedForwardNet(FeedForwardConfig(n_nodes=20, n_steps=2, p=1.0), 3, 2)
    assert (
        model.connections.nnz == 10 * 10
    )  # the two layers are different nodes: nothing on a "diagonal" is dropped


def test_paper_initialisation_of_the_hidden_weights():
    model = FeedForwardNet(FeedForwardConfig(n_nodes=200, n_steps=2, p=0.5), 3, 2)
    w = model.connections.to_dense()
    mask = model.connections.connectivity().to_dense()
    assert w.abs().max() <= 1e-3 and (w[mask] != 0).all()
    default = FeedForwardNet(
        FeedForwardConfig(n_nodes=200, n_steps=2, p=0.5, hidden_init="dense_fan_in"), 3, 2
    )
    assert default.connections.to_dense().abs().max() > 1e-2


def test_seeds_determine_mask_and_weights():
    cfg = FeedForwardConfig(n_nodes=40, n_steps=3, p=0.3, connectivity_seed=1, weight_seed=2)
    a, b = FeedForwardNet(cfg, 4, 3), FeedForwardNet(cfg, 4, 3)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    c = FeedForwardNet(dataclasses.replace(cfg, connectivity_seed=5), 4, 3)
    assert not c.connections.connectivity().equals(a.connections.connectivity())
    assert torch.equal(c.input.weight, a.input.weight)  # weight seed unchanged


def test_g2g_hidden_topology():
    model = FeedForwardNet(
        FeedForwardConfig(n_nodes=64, n_steps=2, p=1.0, topology="g2g", exact_edges=True), 3, 2
    )
    assert model.connections.nnz == 32 * 32 // 8 + round(0.15 * 32 * 32 * 7 / 8)


def test_g2g_topology_params_reach_the_generator():
    cfg = FeedForwardConfig(
        n_nodes=96, n_steps=2, p=0.5, topology="g2g", exact_edges=True,
        topology_params={"p_inter": 0.05, "groups": 4, "grouping": "index"},
    )  # fmt: skip
    model = FeedForwardNet(cfg, 3, 2)
    g = group_assignment(48, 4, "index")
    intra = g[:, None] == g[None, :]
    mask = model.connections.connectivity().to_dense()
    assert int(mask[intra].sum()) == round(0.5 * 48 * 12) and int(mask[~intra].sum()) == round(0.05 * 48 * 36)
    assert model.describe()["topology_params"] == {"p_inter": 0.05, "groups": 4, "grouping": "index"}
    rebuilt = FeedForwardNet(FeedForwardConfig(**dataclasses.asdict(cfg)), 3, 2)  # a saved dict round trip
    assert rebuilt.connections.connectivity().equals(model.connections.connectivity())


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        # p = 0.1 is the intra-pathway probability: the generator's default p' = 0.15 would exceed it.
        (
            {"topology": "g2g"},
            r"p_inter = 0\.15 exceeds the intra-pathway probability p = 0\.1.*topology_params",
        ),
        ({"topology": "g2g", "topology_params": {"p": 0.5}}, r"must not repeat \['p'\]"),
        ({"topology": "g2g", "topology_params": {"recurrent": True}}, "must not repeat"),
        ({"topology": "er", "topology_params": {"groups": 4}}, r"takes no \['groups'\]"),
    ],
)
def test_topology_params_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        FeedForwardConfig(**kwargs).validate()


def test_default_backend_is_auto_and_small_layers_stay_masked_dense():
    assert FeedForwardConfig().backend == "auto"
    model = FeedForwardNet(FeedForwardConfig(n_nodes=40, n_steps=2), 3, 2)  # 20 x 20 < 65,536 possible
    assert model.connections.sparse.backend == "masked_dense"


def test_dale_on_the_first_hidden_layer_holds_while_training():
    cfg = FeedForwardConfig(
        n_nodes=60, n_steps=4, p=0.5, dale=True, inhibitory_fraction=0.2, hidden_init="dense_fan_in"
    )
    model = FeedForwardNet(cfg, 4, 3)
    inh = model.connections.inhibitory
    assert int(inh.sum()) == 6  # round(0.2 * 30)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for step in range(4):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(16, 4, 4)), torch.randint(0, 3, (16,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        apply_constraints(model)
        w = model.connections.to_dense()
        assert torch.all(w[:, inh] <= 0) and torch.all(w[:, ~inh] >= 0), step


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"n_nodes": 1}, "n_nodes must be >= 2"),
        ({"n_steps": 0}, "n_steps"),
        ({"p": 0.0}, r"\(0, 1\]"),
        ({"activation": "gelu"}, "activation"),
        ({"hidden_init": "zeros"}, "hidden_init"),
        ({"topology": "nope"}, "unknown topology"),
        ({"backend": "nope"}, "unknown backend"),
    ],
)
def test_config_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        FeedForwardConfig(**kwargs).validate()


def test_wrong_input_shape_is_explained():
    model = FeedForwardNet(FeedForwardConfig(n_nodes=10, n_steps=8), 8, 10)
    with pytest.raises(ValueError, match=r"\(B, 8, 8\)"):
        model(torch.randn(2, 28, 28))


def test_registered_and_rebuilt_from_checkpoint_after_training_on_digits_above_chance(tmp_path):
    assert MODEL_CONFIGS["feedforward"] is FeedForwardConfig
    splits = load_dataset("digits", val_fraction=0.0)
    cfg = FeedForwardConfig(n_nodes=200, n_steps=splits.n_steps, p=0.1, connectivity_seed=3, weight_seed=4)
    model = build_model("feedforward", dataclasses.asdict(cfg), splits.n_inputs, splits.n_classes)
    meta = {"model": "feedforward", "model_config": dataclasses.asdict(cfg), "n_inputs": 8, "n_classes": 10}
    state = fit(
        model,
        splits.train,
        splits.test,
        TrainConfig(epochs=3, batch_size=50, device="cpu"),
        run_dir=tmp_path,
        meta=meta,
        progress=False,
    )
    acc = state.history[-1]["test_acc"]
    assert acc > chance_level(splits) + 0.4, acc
    rebuilt, _ = model_from_checkpoint(tmp_path / "checkpoint.pt")
    x = splits.test.tensors[0][:20]
    torch.testing.assert_close(rebuilt(x), model.eval()(x))


def test_hidden_is_what_the_readout_sees_for_the_representation_analyses():
    model = FeedForwardNet(FeedForwardConfig(n_nodes=30, n_steps=4), 5, 3)
    x = torch.randn(12, 4, 5)
    h = model.hidden(x)
    assert h.shape == (12, 15)
    torch.testing.assert_close(model.readout(h), model(x))
    acts = hidden_activations(model, TensorDataset(x, torch.zeros(12, dtype=torch.int64)))
    torch.testing.assert_close(acts.values, h.detach())
    with pytest.raises(ValueError, match="no time steps"):
        model.hidden(x, all_steps=True)
