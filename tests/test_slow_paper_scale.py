"""Paper-scale runs (minutes on 2 CPU cores): deselected by default, run with `python -m pytest -m slow`."""

import json

import pytest
import torch

from cortexnet.experiments import dale
from cortexnet.experiments.common import run_cli
from cortexnet.training import load_checkpoint


@pytest.mark.slow
def test_dale_runs_at_10000_nodes_and_checkpoint_obeys_dale(tmp_path):
    out = tmp_path / "runs"
    args = ["--nodes", "10000", "--dataset", "digits", "--epochs", "1", "--densities", "0.1",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    (run,) = list((out / "dale").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["configurations"][0]["runs"][0]["test_acc_per_epoch"]) == 2
    state = load_checkpoint(run / "members" / "p0.1-inh0.115-seed0" / "checkpoint.pt")["model_state"]
    inh = state["recurrent.inhibitory"]
    assert int(inh.sum()) == 1150
    w = next(v for k, v in state.items() if k.startswith("recurrent.rec.") and v.is_floating_point() and v.dim() >= 1
             and k.split(".")[-1] in ("weight", "values"))  # fmt: skip
    if w.dim() == 2:  # masked dense layout: columns carry the presynaptic sign
        assert torch.all(w[:, inh] <= 0) and torch.all(w[:, ~inh] >= 0)
