"""The topology contract: every registered generator reaches every sparse layer of every model, by name."""

import dataclasses

import pytest
import torch

from cortexnet.connectivity import (
    TOPOLOGIES,
    Connectivity,
    LayerSpec,
    check_topology_params,
    data_params,
    make_connectivity,
    topology_settable,
)
from cortexnet.layers import SparseLinear, constraint_violations, sparse_weights
from cortexnet.models import (
    CortexRNNConfig,
    FeedForwardConfig,
    G2GNetConfig,
    build_model,
)
from cortexnet.models.saliency import snip_saliency


def _params(name: str, *, with_density: bool) -> dict:
    """Parameters a sweep passes: a density for generators that take one when the model supplies none, and
    a data sample (8 features, tiled onto any layer) for generators that need one (csti)."""
    settable = topology_settable(name)
    params: dict = {}
    if not with_density and "p" in settable:
        params["p"] = 0.4
    if "activity" in settable:
        params["activity"] = torch.rand(20, 8, generator=torch.Generator().manual_seed(9))
    return params


def _layer_params(name: str) -> dict:
    """What a lone 16 -> 12 SparseLinear needs (a density; csti's sample; snip's scores of its shape)."""
    params = _params(name, with_density=False)
    if "saliency" in data_params(name):
        params["saliency"] = torch.rand(12, 16, generator=torch.Generator().manual_seed(9))
    return params


def _wired(model_name: str, config, n_inputs: int, x: torch.Tensor):
    """The model, with SNIP's scores computed on its dense twin and the batch ``x`` when its topology takes
    them (the whole data-derived chain: twin, connection sensitivity, global top-k)."""
    if "saliency" in data_params(config.topology):
        y = torch.arange(x.shape[0]) % 4
        scores = snip_saliency(model_name, config, n_inputs, 4, x, y)
        config = dataclasses.replace(config, topology_params={**config.topology_params, "saliency": scores})
    return build_model(model_name, config, n_inputs, 4)


def _models(name: str, backend: str):
    """(model, input) of each model class wired by topology ``name`` (small, Dale where possible)."""
    data = {k: v for k, v in _params(name, with_density=True).items()}
    rnn = CortexRNNConfig(n_nodes=24, p=0.4, dale=True, topology=name, topology_params=data, backend=backend,
                          connectivity_seed=3)  # fmt: skip
    ff = FeedForwardConfig(n_nodes=30, n_steps=4, p=0.4, dale=True, topology=name, topology_params=data,
                           backend=backend)  # fmt: skip
    g2g = G2GNetConfig(image_channels=1, image_height=8, image_width=8, patches_per_side=2, patch_channels=4,
                       hidden=(12, 12), topology=name, topology_params=_params(name, with_density=False),
                       backend=backend)  # fmt: skip
    g = torch.Generator().manual_seed(4)
    inputs = [
        torch.rand(5, 6, 3, generator=g),
        torch.rand(5, 4, 3, generator=g),
        torch.rand(5, 8, 8, generator=g),
    ]
    return [
        (_wired(model_name, config, x.shape[2], x), x)
        for model_name, config, x in zip(
            ("cortex_rnn", "feedforward", "g2gnet"), (rnn, ff, g2g), inputs, strict=True
        )
    ]


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
@pytest.mark.parametrize("name", TOPOLOGIES.names())
def test_every_registered_topology_builds_on_every_model(name, backend):
    for model, x in _models(name, backend):
        weights = sparse_weights(model)
        assert weights, type(model).__name__
        for w in weights.values():
            assert w.backend == backend and w.nnz > 0
        logits = model(x)
        assert logits.shape == (5, 4) and torch.isfinite(logits).all()
        assert constraint_violations(model)["total"] == 0
    # A SparseLinear on its own takes the topology by name too.
    layer = SparseLinear.from_topology(
        16, 12, name, _layer_params(name),
        connectivity_generator=torch.Generator().manual_seed(0), generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    assert layer(torch.rand(2, 16)).shape == (2, 12)


@pytest.fixture
def spy_topology():
    """Registers ``spy``: an ER-like generator that records every LayerSpec it is given."""
    seen: list[LayerSpec] = []

    def spy(spec: LayerSpec, /, *, generator, keep: float = 0.5) -> Connectivity:
        seen.append(spec)
        mask = torch.rand(spec.n_out, spec.n_in, generator=generator) < keep
        if spec.recurrent and not spec.self_connections:
            mask.fill_diagonal_(False)
        if spec.inhibitory is not None:
            # Uses the E/I identities it was given: inhibitory presynaptic units project to every row.
            mask[:, spec.inhibitory] = True
            if spec.recurrent:
                mask.fill_diagonal_(False)
        return Connectivity.from_dense(mask)

    spy.uses_identities = True
    TOPOLOGIES.register("spy")(spy)
    yield seen
    del TOPOLOGIES._items["spy"]


def test_a_newly_registered_topology_gets_the_layer_description_of_every_model(spy_topology):
    seen = spy_topology
    rnn = build_model("cortex_rnn", CortexRNNConfig(n_nodes=20, p=0.3, dale=True, topology="spy"), 3, 2)
    spec = seen[-1]
    assert spec.recurrent and spec.shape == (20, 20) and spec.density == 0.3 and spec.name == "recurrent.rec"
    assert torch.equal(spec.inhibitory, rnn.recurrent.inhibitory)  # identities drawn first, then given
    inh = rnn.recurrent.inhibitory
    assert bool(rnn.recurrent.rec.connectivity().to_dense()[:, inh].sum() == inh.sum() * 19)
    assert not bool(rnn.recurrent.rec.connectivity().diagonal_present().any())

    ff = build_model("feedforward", FeedForwardConfig(n_nodes=30, n_steps=2, dale=True, topology="spy",
                                                      topology_params={"keep": 0.2}), 3, 2)  # fmt: skip
    spec = seen[-1]
    assert not spec.recurrent and spec.shape == (15, 15) and spec.name == "connections.sparse"
    assert torch.equal(spec.inhibitory, ff.connections.inhibitory)

    seen.clear()
    g2g = G2GNetConfig(image_channels=1, image_height=8, image_width=8, patches_per_side=2, patch_channels=4,
                       hidden=(10, 12, 6), topology="spy")  # fmt: skip
    build_model("g2gnet", g2g, 8, 2)
    assert [s.index for s in seen] == [0, 1, 2]
    assert all(s.shapes == ((10, 16), (12, 10), (6, 12)) and s.depth == 3 and not s.recurrent for s in seen)
    assert len({id(s.shared) for s in seen}) == 1  # one shared dict per model build


def test_unknown_names_and_bad_parameters_fail_at_validation_naming_the_allowed():
    with pytest.raises(ValueError, match=r"unknown topology 'nope'; known: .*\ber\b.*\bfull\b.*\bg2g\b"):
        CortexRNNConfig(n_nodes=10, topology="nope").validate()
    with pytest.raises(ValueError, match=r"takes no \['groupz'\].*may set \[.*'groups'"):
        FeedForwardConfig(n_nodes=10, topology="g2g", topology_params={"groupz": 4}).validate()
    with pytest.raises(ValueError, match="p_inter <= p"):
        CortexRNNConfig(n_nodes=10, p=0.1, topology="g2g").validate()  # default p' = 0.15 > p
    with pytest.raises(ValueError, match="hidden matrix 1: topology 'er' takes no"):
        G2GNetConfig(
            hidden=(8, 8), topology="full", layer_topologies=({}, {"topology": "er", "q": 1})
        ).validate()
    with pytest.raises(ValueError, match="one dict per hidden matrix"):
        G2GNetConfig(hidden=(8, 8), topology="full", layer_topologies=({},)).validate()
    with pytest.raises(ValueError, match="must not repeat"):
        check_topology_params("er", {"p": 0.1}, fixed=("p",))


def test_g2gnet_per_layer_overrides_and_table1_masks_unchanged():
    small = dict(image_channels=1, image_height=8, image_width=8, patches_per_side=2, patch_channels=4,
                 hidden=(16, 16, 16), exact_edges=True)  # fmt: skip
    cfg = G2GNetConfig(**small, topology="er", topology_params={"p": 0.25},
                       layer_topologies=({}, {"topology": "full"}, {"p": 0.5}))  # fmt: skip
    model = build_model("g2gnet", cfg, 8, 3)
    counts = [layer.nnz for layer in model.layers]
    assert counts == [round(0.25 * 16 * 16), 16 * 16, round(0.5 * 16 * 16)]
    assert list(sparse_weights(model)) == ["layers.0.sparse", "layers.1.sparse", "layers.2.sparse"]
    # Without a topology the Table I kinds are what they were: G2G through the contract equals the generator
    # called directly with the same group assignments.
    g2g = G2GNetConfig(**small, p=1.0, p_inter=0.2, groups=4)
    built = build_model("g2gnet", g2g, 8, 3)
    g = torch.Generator().manual_seed(g2g.connectivity_seed)
    groups = g2g.layer_groups(g)
    for i, layer in enumerate(built.layers):
        direct = make_connectivity(
            "g2g", layer.out_features, layer.in_features, generator=g, p=1.0, p_inter=0.2,
            out_groups=groups[i + 1], in_groups=groups[i], recurrent=False, exact=True,
        )  # fmt: skip
        assert layer.connectivity().equals(direct), i


def test_recurrent_and_feedforward_descriptions_decide_the_diagonal():
    g = torch.Generator().manual_seed(0)
    rec = make_connectivity("full", LayerSpec(6, 6, recurrent=True), generator=g)
    ff = make_connectivity("full", LayerSpec(6, 6, recurrent=False), generator=g)
    assert rec.nnz == 30 and not bool(rec.diagonal_present().any())
    assert ff.nnz == 36
    er_ff = make_connectivity("er", LayerSpec(40, 40, density=1.0), generator=g)
    assert er_ff.nnz == 1600  # a feed-forward square layer has no diagonal to exclude
    with pytest.raises(ValueError, match="recurrent layer must be square"):
        LayerSpec(3, 4, recurrent=True)
    with pytest.raises(ValueError, match="needs a connection probability"):
        make_connectivity("er", LayerSpec(3, 4), generator=g)


def test_same_seed_same_masks_for_every_topology():
    for name in TOPOLOGIES.names():
        first = [sparse_weights(m).copy() for m, _ in _models(name, "csr")]
        second = [sparse_weights(m).copy() for m, _ in _models(name, "csr")]
        for w1, w2 in zip(first, second, strict=True):
            for (n1, s1), (n2, s2) in zip(w1.items(), w2.items(), strict=True):
                assert n1 == n2 and s1.connectivity().equals(s2.connectivity()), (name, n1)


def test_weights_are_addressed_by_name_in_the_recorders():
    from cortexnet.analysis import GradientRecorder
    from cortexnet.layers import select_weight
    from cortexnet.training import TrainConfig, fit

    g2g = G2GNetConfig(image_channels=1, image_height=8, image_width=8, patches_per_side=2, patch_channels=4,
                       hidden=(12, 12))  # fmt: skip
    model = build_model("g2gnet", g2g, 8, 3)
    with pytest.raises(ValueError, match=r"has 2 sparse weights .*pass weight=NAME"):
        select_weight(model)
    assert select_weight(model, "layers.1.sparse")[1] is model.layers[1].sparse
    rnn = build_model("cortex_rnn", CortexRNNConfig(n_nodes=12, p=0.5), 3, 3)
    assert select_weight(rnn)[0] == "recurrent.rec"
    data = torch.utils.data.TensorDataset(torch.rand(20, 8, 8), torch.arange(20) % 3)
    recorder = GradientRecorder(weight="layers.1.sparse")
    fit(
        model,
        data,
        None,
        TrainConfig(epochs=1, batch_size=10, device="cpu"),
        callbacks=[recorder],
        progress=False,
    )
    assert recorder.epochs and recorder.epochs[0]["values_recorded"] == 2 * model.layers[1].nnz


def test_edge_matched_er_baseline_draws_the_g2g_grouping_first_as_before():
    small = dict(image_channels=1, image_height=8, image_width=8, patches_per_side=2, patch_channels=4,
                 hidden=(16, 16), exact_edges=True, grouping="random", groups=4, p_inter=0.2)  # fmt: skip
    cfg = G2GNetConfig(**small, connectivity="er", connectivity_seed=5)
    model = build_model("g2gnet", cfg, 8, 3)
    g = torch.Generator().manual_seed(5)
    cfg.layer_groups(g)  # the grouping the counts come from is drawn first from the same generator
    for layer, (n_out, n_in) in zip(model.layers, [(16, 16), (16, 16)], strict=True):
        expected = make_connectivity(
            "er", LayerSpec(n_out, n_in, exact=True), generator=g, p=layer.nnz / (n_out * n_in)
        )
        assert layer.connectivity().equals(expected)


def test_numpy_scalars_and_lists_of_group_ids_are_accepted():
    import numpy as np

    cfg = CortexRNNConfig(n_nodes=24, p=0.4, topology="g2g", topology_params={"groups": np.int64(4),
                          "p_inter": np.float32(0.05)})  # fmt: skip
    build_model("cortex_rnn", cfg.validate(), 3, 2)
    ids = [i % 3 for i in range(24)]
    cfg = CortexRNNConfig(
        n_nodes=24, p=0.4, topology="g2g", topology_params={"in_groups": ids, "p_inter": 0.1}
    )
    model = build_model("cortex_rnn", cfg.validate(), 3, 2)
    mask = model.recurrent.rec.connectivity().to_dense()
    same = torch.tensor(ids)[:, None] == torch.tensor(ids)[None, :]
    assert mask[same & ~torch.eye(24, dtype=torch.bool)].float().mean() > 0.2  # intra p = 0.4
    with pytest.raises(ValueError, match="in_groups must be a flat list of integer group ids"):
        CortexRNNConfig(
            n_nodes=24, p=0.4, topology="g2g", topology_params={"in_groups": [0.5] * 24}
        ).validate()
    with pytest.raises(ValueError, match="topology_params must be a mapping"):
        CortexRNNConfig(n_nodes=24, topology_params=None).validate()


def test_a_single_g2g_matrix_is_checked_against_its_own_widths():
    cfg = G2GNetConfig(
        image_channels=1,
        image_height=8,
        image_width=8,
        patches_per_side=2,
        patch_channels=4,
        hidden=(32, 4),
        topology="full",
        layer_topologies=({"topology": "g2g", "groups": 8}, {}),
    )
    model = build_model("g2gnet", cfg.validate(), 8, 3)
    assert model.layers[1].nnz == 4 * 32
