"""SparseMLP: flattened input → sparse hidden layers wired by any registered topology → dense classifier."""

import dataclasses

import pytest
import torch

from cortexnet.connectivity import TOPOLOGIES, rounded_count
from cortexnet.data import chance_level, load_dataset
from cortexnet.layers import SparseLinear
from cortexnet.models import MODEL_CONFIGS, SparseMLP, SparseMLPConfig, build_model
from cortexnet.training import TrainConfig, fit, model_from_checkpoint

SMALL = {"n_steps": 8, "hidden": (32, 24, 24), "density": 0.1}
#: Parameters a topology needs at density 0.1 on small layers (G2G's default p' = 0.15 exceeds p = 0.1).
NEEDS = {
    "g2g": {"p_inter": 0.05, "groups": 4},
    "csti": {"activity": torch.rand(30, 64, generator=torch.Generator().manual_seed(0))},
    "snip": {  # scores of every matrix of the SMALL MLP on 8 x 8 inputs, keyed by weight name
        "saliency": {
            f"layers.{i}.sparse": torch.rand(shape, generator=torch.Generator().manual_seed(i))
            for i, shape in enumerate([(32, 64), (24, 32), (24, 24)])
        }
    },
}


def test_shapes_flattening_and_hidden():
    model = SparseMLP(SparseMLPConfig(**SMALL), 8, 10)
    assert [(m.in_features, m.out_features) for m in model.layers] == [(64, 32), (32, 24), (24, 24)]
    assert all(isinstance(m, SparseLinear) for m in model.layers)
    assert isinstance(model.readout, torch.nn.Linear) and model.readout.in_features == 24
    x = torch.rand(5, 8, 8)
    assert model(x).shape == (5, 10)
    torch.testing.assert_close(model.readout(model.hidden(x)), model(x))
    assert model.hidden(x).min() >= 0  # ReLU
    with pytest.raises(ValueError, match=r"\(B, 8, 8\)"):
        model(torch.rand(5, 7, 8))
    with pytest.raises(ValueError, match="no time steps"):
        model.hidden(x, all_steps=True)
    assert SparseMLPConfig().hidden == (1568, 1568, 1568) and SparseMLPConfig().density == 0.01


@pytest.mark.parametrize("topology", ["er", "bsw"])
def test_exact_synapse_counts_per_matrix(topology):
    model = SparseMLP(SparseMLPConfig(**SMALL, topology=topology), 8, 10)
    expected = [rounded_count(0.1, n_out * n_in) for n_out, n_in in [(32, 64), (24, 32), (24, 24)]]
    counts = model.parameter_counts()
    assert counts["hidden_synapses_per_layer"] == expected == [m.nnz for m in model.layers]
    assert counts["hidden_synapses"] == sum(expected)
    assert counts["hidden_possible"] == 32 * 64 + 24 * 32 + 24 * 24
    assert counts["hidden_bias"] == 32 + 24 + 24 and counts["classifier"] == 24 * 10 + 10
    assert counts["total"] == sum(expected) + 80 + 250
    for layer in model.layers:  # masked-off weights are exactly zero
        w, mask = layer.to_dense(), layer.connectivity().to_dense()
        assert torch.all(w[~mask] == 0)


def test_full_is_the_dense_baseline_and_init_follows_the_actual_fan_in():
    full = SparseMLP(SparseMLPConfig(**SMALL, topology="full"), 8, 10)
    assert full.parameter_counts()["density"] == 1.0
    sparse = SparseMLP(SparseMLPConfig(**{**SMALL, "density": 0.25}), 8, 10)
    for layer in sparse.layers:
        conn = layer.connectivity()
        bound = 1.0 / conn.crow.diff().clamp(min=1).to(torch.float32).sqrt()
        w = layer.to_dense().abs().max(dim=1).values
        assert torch.all(w <= bound + 1e-6)
        # ... and reaches it: the largest |w| over the layer's rows sits near the bound (dense fan-in would be
        # sqrt(density) = 0.5 of it, fan-out another ratio), so a wrong scale fails here.
        assert float((w / bound).max()) > 0.9


@pytest.mark.parametrize("topology", TOPOLOGIES.names())
def test_every_registered_topology_builds(topology):
    cfg = SparseMLPConfig(**SMALL, topology=topology, topology_params=NEEDS.get(topology, {}))
    assert cfg.validate() is cfg  # without the input width: only what needs no shape
    model = SparseMLP(cfg, 8, 10)
    assert model(torch.rand(2, 8, 8)).shape == (2, 10)
    counts = model.parameter_counts()
    assert all(n > 0 for n in counts["hidden_synapses_per_layer"])
    if topology == "erk":  # a whole-model budget at the model's density
        assert counts["hidden_synapses"] == rounded_count(0.1, counts["hidden_possible"])
    # Deterministic: same seeds, same masks.
    again = SparseMLP(cfg, 8, 10)
    for a, b in zip(model.layers, again.layers, strict=True):
        assert a.connectivity().equals(b.connectivity())


def test_per_layer_override_and_topology_params():
    cfg = SparseMLPConfig(
        **SMALL,
        topology="bsw",
        topology_params={"beta": 0.0},
        layer_topologies=({"topology": "full"}, {}, {"p": 0.5}),
    )
    model = SparseMLP(cfg, 8, 10)
    assert model.layers[0].nnz == 32 * 64
    assert model.layers[2].nnz == rounded_count(0.5, 24 * 24)
    lattice = SparseMLP(dataclasses.replace(cfg, layer_topologies=()), 8, 10)
    # beta = 0: the deterministic ring lattice, whatever the seed.
    other = SparseMLP(dataclasses.replace(cfg, layer_topologies=(), connectivity_seed=5), 8, 10)
    assert lattice.layers[1].connectivity().equals(other.layers[1].connectivity())
    assert cfg.layer_topology_specs()[2] == ("bsw", {"beta": 0.0, "p": 0.5})


@pytest.mark.parametrize(
    "fields,msg",
    [
        ({"density": 0.0}, "density"),
        ({"density": 1.5}, "density"),
        ({"hidden": ()}, "hidden"),
        ({"n_steps": 0}, "n_steps"),
        ({"activation": "gelu"}, "activation"),
        ({"init": "zeros"}, "init"),
        ({"backend": "nope"}, "backend"),
        ({"topology": "nope"}, "unknown topology"),
        ({"topology_params": {"nope": 1}}, "takes no"),
        ({"topology": "bsw", "topology_params": {"beta": 2.0}}, "beta"),
        ({"layer_topologies": ({},)}, "one dict per sparse matrix"),
        ({"layer_topologies": ({"topology": "nope"}, {}, {})}, "unknown topology"),
    ],
)
def test_bad_config_errors(fields, msg):
    with pytest.raises(ValueError, match=msg):
        SparseMLPConfig(**{**SMALL, **fields}).validate()
    with pytest.raises(ValueError, match="n_classes"):
        SparseMLP(SparseMLPConfig(**SMALL), 8, 1)


def test_registered_trains_and_rebuilds_from_checkpoint(tmp_path):
    assert MODEL_CONFIGS["sparse_mlp"] is SparseMLPConfig
    splits = load_dataset("digits", val_fraction=0.0)
    cfg = SparseMLPConfig(n_steps=splits.n_steps, hidden=(64, 64), density=0.2, topology="bsw", weight_seed=3)
    saved = dataclasses.asdict(cfg)
    model = build_model(
        "sparse_mlp", {**saved, "hidden": list(cfg.hidden)}, splits.n_inputs, splits.n_classes
    )
    assert model.config == cfg
    meta = {"model": "sparse_mlp", "model_config": saved, "n_inputs": splits.n_inputs, "n_classes": 10}
    state = fit(
        model,
        splits.train,
        splits.test,
        TrainConfig(epochs=2, batch_size=50, device="cpu"),
        run_dir=tmp_path,
        meta=meta,
        progress=False,
    )
    assert state.history[-1]["test_acc"] > chance_level(splits) + 0.3
    rebuilt, _ = model_from_checkpoint(tmp_path / "checkpoint.pt")
    assert isinstance(rebuilt, SparseMLP)
    x = splits.test.tensors[0][:20]
    torch.testing.assert_close(rebuilt(x), model.eval()(x))
    for a, b in zip(model.layers, rebuilt.layers, strict=True):
        assert a.connectivity().equals(b.connectivity())
