"""Every configuration in experiments/ parses and validates for its experiment (no training, no data)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cortexnet.experiments.common import resolve_run_config
from cortexnet.experiments.connectivity_sweep import ConnectivitySweepConfig
from cortexnet.experiments.dale import DaleConfig
from cortexnet.experiments.dst import DSTConfig
from cortexnet.experiments.g2g import G2GExperimentConfig
from cortexnet.experiments.recurrent_vs_feedforward import RecurrentVsFeedforwardConfig
from cortexnet.experiments.topologies import TopologiesConfig

ROOT = Path(__file__).resolve().parents[1] / "experiments"
CLASSES = {
    "connectivity_sweep": ConnectivitySweepConfig,
    "dale": DaleConfig,
    "dst": DSTConfig,
    "g2g": G2GExperimentConfig,
    "recurrent_vs_feedforward": RecurrentVsFeedforwardConfig,
    "topologies": TopologiesConfig,
}
PREFIX = re.compile(r"(connectivity_sweep|dale|dst|g2g|recurrent_vs_feedforward|topologies)_")
TOMLS = sorted(ROOT.glob("*.toml"))


def test_there_are_configs_for_every_experiment():
    prefixes = {PREFIX.match(p.name).group(1) for p in TOMLS}
    assert prefixes == set(CLASSES)


@pytest.mark.parametrize("path", TOMLS, ids=lambda p: p.name)
def test_config_parses_and_validates(path, tmp_path):
    name = PREFIX.match(path.name).group(1)
    config, folder = resolve_run_config(CLASSES[name], ["--config", str(path), "--out", str(tmp_path)], "")
    assert folder is None and config.experiment == name
    # The command line in the file's header runs this very file.
    assert f"--config experiments/{path.name}" in path.read_text()


#: The paper-scale configurations and the paper entry (experiments/paper.py) each one reproduces.
PAPER_CONFIGS = {
    "connectivity_sweep_fig2.toml": "table_s1",
    "connectivity_sweep_fig2d.toml": "table_s2",
    "connectivity_sweep_fig2e.toml": "table_s3",
    "recurrent_vs_feedforward_fig3a.toml": "fig3a",
    "recurrent_vs_feedforward_fig4a.toml": "fig4a",
    "recurrent_vs_feedforward_fig4b.toml": "fig4b",
    "recurrent_vs_feedforward_fig5.toml": "fig5b",
    "dale_fig6b.toml": "fig6b",
    "dale_fig6c.toml": "fig6c",
    "dale_fig6f_balanced.toml": "fig6f",
    "dale_figS5b_sparse_to_dense.toml": "fig_s5b",
    "dale_figS5c_inhibitory_10x.toml": "fig_s5c",
    "g2g_table1.toml": "g2g_table1",
    "g2g_fig4a.toml": "g2g_fig4a",
    "dst_g2g_table2_cifar10.toml": "g2g_table2",
    "topologies_mnist.toml": "dnm_static",
    "dst_mlp_mnist.toml": "chts_mlp",
}


@pytest.mark.parametrize(("name", "entry_id"), sorted(PAPER_CONFIGS.items()))
def test_paper_scale_configs_use_the_papers_data_seeds_epochs_and_sizes(name, entry_id, tmp_path):
    from cortexnet.experiments.paper import entry

    setting = entry(entry_id).setting
    kind = PREFIX.match(name).group(1)
    config, _ = resolve_run_config(CLASSES[kind], ["--config", str(ROOT / name), "--out", str(tmp_path)], "")
    assert config.dataset in setting.datasets, (config.dataset, setting.datasets)
    if setting.seeds is not None:
        assert len(config.seeds) == setting.seeds
    if setting.epochs is not None:
        assert config.epochs >= setting.epochs
    nodes = getattr(config, "nodes", None)
    if setting.nodes is not None and kind in ("dale", "recurrent_vs_feedforward", "connectivity_sweep"):
        assert set(setting.nodes) <= set(nodes), (nodes, setting.nodes)
    densities = getattr(config, "densities", None)
    if setting.densities is not None and densities is not None:
        assert set(setting.densities) <= set(densities), (densities, setting.densities)


def test_every_paper_scale_config_is_checked_against_the_paper():
    digits = {p.name for p in TOMLS if "digits" in p.name or "neurogym" in p.name}
    unchecked = (
        {p.name for p in TOMLS}
        - digits
        - set(PAPER_CONFIGS)
        - {
            "connectivity_sweep_fig2b.toml",  # curves of Fig. 2B: no number in REFERENCE.md beyond table_s1's
            "connectivity_sweep_figS2.toml",  # Fig. S2: no number in REFERENCE.md
            "connectivity_sweep_fig3b.toml",  # Fig. 3B: gradient magnitudes, not in paper.py's accuracy entries
            "recurrent_vs_feedforward_figS3.toml",  # Fig. S3: no number in REFERENCE.md
            "dst_cortex_mnist.toml",  # new here: no paper
        }
    )
    assert not unchecked, unchecked
