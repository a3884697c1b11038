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
