"""G2GNet (seed 000): image recovery from rows, the patch front end, mixer/random grouping across layers, exact
parameter counts against the paper's Table I, the baselines, and training on digits above chance."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cortexnet.analysis import hidden_activations
from cortexnet.connectivity.g2g import group_assignment
from cortexnet.data import chance_level, images_to_row_sequences, load_dataset
from cortexnet.layers import PatchEmbedding, rows_to_images
from cortexnet.models import MODEL_CONFIGS, G2GNet, G2GNetConfig, build_model
from cortexnet.models.g2gnet import g2gnet_parameter_budget, image_geometry_from_rows, matched_fc_width
from cortexnet.training import TrainConfig, fit

SMALL = {
    "image_channels": 1,
    "image_height": 8,
    "image_width": 8,
    "patch_channels": 8,
    "hidden": (64, 64, 64),
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- images back from the row encoding ----------------------------------------------------------------------
def test_rows_to_images_inverts_the_row_encoding_grey_and_channel_blocked_colour():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(4, 6, 5))
    torch.testing.assert_close(
        rows_to_images(images_to_row_sequences(grey), 1), torch.from_numpy(grey / 255.0).float()[:, None]
    )
    colour = rng.integers(0, 256, size=(4, 3, 6, 5))  # (n, C, H, W): rows become (n, H, 3W), R|G|B blocks
    rows = images_to_row_sequences(colour, scaling="unit")
    assert rows.shape == (4, 6, 15)
    torch.testing.assert_close(rows_to_images(rows, 3), torch.from_numpy(colour / 255.0).float())


def test_image_geometry_from_rows():
    assert image_geometry_from_rows(28, 28) == (1, 28, 28)  # MNIST / Fashion-MNIST
    assert image_geometry_from_rows(32, 96) == (3, 32, 32)  # CIFAR, channel-blocked rows
    assert image_geometry_from_rows(8, 8) == (1, 8, 8)  # digits
    assert image_geometry_from_rows(4, 12, channels=1) == (1, 4, 12)
    with pytest.raises(ValueError, match="image dataset"):
        image_geometry_from_rows(178, 1)  # Sleep EEG is no image


# -- the patch front end ------------------------------------------------------------------------------------
def test_patch_embedding_is_one_shared_convolution_per_patch_patch_major():
    emb = PatchEmbedding(3, 8, 12, patches_per_side=4, out_channels=5, generator=gen())
    assert emb.patch_size == (2, 3) and emb.n_patches == 16 and emb.out_features == 80
    x = torch.randn(2, 3, 8, 12)
    out = emb(x)
    w, b = emb.conv.weight, emb.conv.bias  # (5, 3, 2, 3)
    for patch in (0, 5, 15):
        r, c = divmod(patch, 4)
        piece = x[:, :, 2 * r : 2 * r + 2, 3 * c : 3 * c + 3]
        expected = torch.einsum("bchw,kchw->bk", piece, w) + b
        torch.testing.assert_close(out[:, patch * 5 : (patch + 1) * 5], expected)
    assert emb.parameter_count() == 5 * 3 * 2 * 3 + 5
    with pytest.raises(ValueError, match="divide"):
        PatchEmbedding(3, 8, 10, patches_per_side=4, generator=gen())


# -- grouping across layers ---------------------------------------------------------------------------------
def test_mixer_groups_whole_patches_then_channels():
    cfg = G2GNetConfig(**SMALL, p=1.0, p_inter=0.0, groups=8)  # embedding 16 patches x 8 channels = 128
    model = G2GNet(cfg, 8, 10)
    m0 = model.layers[0].connectivity().to_dense()  # (64, 128): embedding (index) -> hidden 1 (interleaved)
    in_g = torch.arange(128) // 16  # groups of 16 features = 2 whole patches of 8 channels
    out_g = torch.arange(64) % 8
    assert torch.equal(m0, out_g[:, None] == in_g[None, :])
    m1 = model.layers[1].connectivity().to_dense()  # hidden 1 (interleaved) -> hidden 2 (index)
    assert torch.equal(m1, (torch.arange(64) // 8)[:, None] == out_g[None, :])


def test_random_grouping_uses_one_assignment_per_layer_for_both_matrices():
    cfg = G2GNetConfig(**SMALL, p=1.0, p_inter=0.0, groups=4, grouping="random", connectivity_seed=9)
    model = G2GNet(cfg, 8, 10)
    groups = cfg.layer_groups(gen(9))  # drawn first from the connectivity generator
    for i, layer in enumerate(model.layers):
        expected = groups[i + 1][:, None] == groups[i][None, :]
        assert torch.equal(layer.connectivity().to_dense(), expected), i
    assert not torch.equal(groups[1], group_assignment(64, 4, "index"))


# -- parameter counts ---------------------------------------------------------------------------------------
def test_default_configuration_counts_and_the_papers_table_one():
    cfg = G2GNetConfig()  # CIFAR geometry, 16 patches x 32 channels, 3 x 1024, p = 1, p' = 0.15, G = 8, mixer
    budget = g2gnet_parameter_budget(cfg, 10)
    # Exact-count masks: per pathway class round(p * pairs); 512 -> 1024 then two 1024 -> 1024 matrices.
    assert budget["hidden_synapses_per_layer"] == [65_536 + 68_813, 131_072 + 137_626, 131_072 + 137_626]
    assert budget["hidden_synapses"] == 671_745
    assert budget["embedding"] == 3 * 8 * 8 * 32 + 32
    assert budget["total"] == 6_176 + 671_745 + 3 * 1024 + 1024 * 10 + 10 == 691_243
    # Table I counts only the weights of three 1024 x 1024 matrices: a 1024-wide embedding reproduces it.
    table1 = g2gnet_parameter_budget(dataclasses.replace(cfg, patch_channels=64), 10)
    assert table1["hidden_synapses"] == 806_094 and round(table1["hidden_synapses"], -2) == 806_100
    bernoulli = g2gnet_parameter_budget(dataclasses.replace(cfg, patch_channels=64, exact_edges=False), 10)
    assert bernoulli["hidden_synapses"] == pytest.approx(3 * 1024**2 * 0.25625)  # 806,092.8
    fc_v2 = g2gnet_parameter_budget(dataclasses.replace(cfg, patch_channels=64, connectivity="full"), 10)
    assert fc_v2["hidden_synapses"] == 3 * 1024**2 and round(fc_v2["hidden_synapses"], -4) == 3_150_000


def test_built_models_report_the_budget_and_er_matches_g2g_edge_for_edge():
    cfg = G2GNetConfig()
    g2g = G2GNet(cfg, 96, 10)
    er = G2GNet(dataclasses.replace(cfg, connectivity="er"), 96, 10)
    counts = g2g.parameter_counts()
    budget = g2gnet_parameter_budget(cfg, 10)
    assert {k: counts[k] for k in budget} == budget
    assert er.parameter_counts()["hidden_synapses_per_layer"] == counts["hidden_synapses_per_layer"]
    assert counts["stored"] == sum(p.numel() for p in g2g.parameters())
    # The ER masks have the G2G edge counts but no block structure.
    same = (torch.arange(1024) % 8)[:, None] == (torch.arange(512) // 64)[None, :]
    assert g2g.layers[0].connectivity().to_dense()[same].all()
    assert er.layers[0].connectivity().to_dense()[same].float().mean() < 0.3


def test_fc_same_parameters_width_is_the_closest_match():
    cfg = G2GNetConfig(**SMALL)
    target = g2gnet_parameter_budget(cfg, 10)["total"]
    w = matched_fc_width(cfg, 10)

    def gap(width):
        fc = dataclasses.replace(cfg, connectivity="full", hidden=(width,) * 3)
        return abs(g2gnet_parameter_budget(fc, 10)["total"] - target)

    assert gap(w) <= gap(w - 1) and gap(w) <= gap(w + 1)
    assert w < 64


def test_er_with_a_given_density_and_bernoulli_counts():
    cfg = G2GNetConfig(**SMALL, connectivity="er", er_density=0.5)
    assert g2gnet_parameter_budget(cfg, 10)["hidden_synapses_per_layer"] == [4096, 2048, 2048]
    assert G2GNet(cfg, 8, 10).parameter_counts()["hidden_synapses_per_layer"] == [4096, 2048, 2048]
    bern = G2GNet(dataclasses.replace(cfg, exact_edges=False), 8, 10).parameter_counts()
    expected = 0.5 * (128 * 64 + 2 * 64 * 64)
    assert abs(bern["hidden_synapses"] - expected) < 4 * math.sqrt(0.25 * 2 * expected)


# -- configuration, registry, training ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"patches_per_side": 5}, "divide the image height"),
        ({"hidden": ()}, "at least one layer"),
        ({"groups": 2000}, r"groups must be in \[1, 512\]"),
        ({"grouping": "blocks"}, "grouping must be one of"),
        ({"connectivity": "dense"}, "connectivity must be one of"),
        ({"p_inter": 1.5}, r"p_inter must be in \[0, 1\]"),
        ({"p": 0.1}, r"p_inter = 0\.15 exceeds the intra-pathway probability p = 0\.1"),
        ({"er_density": 0.0}, "er_density"),
        ({"init": "zeros"}, "init must be one of"),
    ],
)
def test_config_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        G2GNetConfig(**kwargs).validate()


def test_input_that_is_not_the_configured_image_is_rejected():
    with pytest.raises(ValueError, match="F = C·W"):
        G2GNet(G2GNetConfig(), 28, 10)
    model = G2GNet(G2GNetConfig(**SMALL), 8, 10)
    with pytest.raises(ValueError, match=r"\(B, 8, 8\)"):
        model(torch.randn(2, 7, 8))


def test_registered_rebuilt_from_a_saved_dict_and_trains_on_digits_above_chance():
    assert MODEL_CONFIGS["g2gnet"] is G2GNetConfig
    splits = load_dataset("digits", val_fraction=0.0)
    c, h, w = image_geometry_from_rows(splits.n_steps, splits.n_inputs)
    cfg = G2GNetConfig(**{**SMALL, "image_channels": c, "image_height": h, "image_width": w}, weight_seed=1)
    saved = json_roundtrip(dataclasses.asdict(cfg))  # lists instead of tuples, as in config.json
    model = build_model("g2gnet", saved, splits.n_inputs, splits.n_classes)
    assert model.config == cfg
    state = fit(
        model, splits.train, splits.test, TrainConfig(epochs=4, batch_size=20, device="cpu"), progress=False
    )
    acc = state.history[-1]["test_acc"]
    # ~260 Adam steps on 1,294 images; at ~25 % density the default (dense fan-in) initialisation starts slowly.
    assert acc > chance_level(splits) + 0.3, acc


def json_roundtrip(obj):
    import json

    return json.loads(json.dumps(obj))


def test_hidden_is_what_the_readout_sees_for_the_representation_analyses():
    model = G2GNet(G2GNetConfig(**SMALL), 8, 10)
    x = torch.rand(6, 8, 8)
    h = model.hidden(x)
    assert h.shape == (6, 64)
    torch.testing.assert_close(model.readout(h), model(x))
    acts = hidden_activations(model, TensorDataset(x, torch.zeros(6, dtype=torch.int64)))
    torch.testing.assert_close(acts.values, h.detach())
    with pytest.raises(ValueError, match="no time steps"):
        model.hidden(x, all_steps=True)


def test_p_inter_equal_to_p_is_allowed_and_the_default_backend_is_auto():
    cfg = G2GNetConfig(**SMALL, p=0.4, p_inter=0.4).validate()  # Erdős–Rényi at density 0.4
    assert g2gnet_parameter_budget(cfg, 10)["density"] == pytest.approx(0.4, abs=1e-3)
    assert G2GNetConfig().backend == "auto"
    model = G2GNet(G2GNetConfig(**SMALL), 8, 10)  # 64 x 128 and 64 x 64 matrices: small, masked dense
    assert {layer.sparse.backend for layer in model.layers} == {"masked_dense"}


def test_exact_er_budget_equals_the_built_model_at_a_decimal_half():
    # er_density * possible lands a hair below .5 in binary floating point for 0.145 (0.145 * 100 = 14.4999...);
    # the budget and the generator must round the same decimal value.
    small = {**SMALL, "hidden": (10, 10)}  # the 10 x 10 layer has 100 possible synapses: 0.145 * 100 = 14.5
    cfg = G2GNetConfig(**small, groups=2, connectivity="er", er_density=0.145, exact_edges=True)
    built = G2GNet(cfg, 8, 3).parameter_counts()
    assert built["hidden_synapses_per_layer"][1] == 15
    assert g2gnet_parameter_budget(cfg, 3)["hidden_synapses"] == built["hidden_synapses"]


def test_pathway_check_applies_only_where_p_and_p_inter_define_the_mask():
    G2GNetConfig(**SMALL, connectivity="full", p=0.1).validate()  # p, p' unused by a dense model
    G2GNetConfig(**SMALL, connectivity="er", er_density=0.2, p=0.1).validate()
    with pytest.raises(ValueError, match="p_inter"):
        G2GNetConfig(**SMALL, connectivity="er", p=0.1).validate()  # ER matched to G2G's density
