"""Paper-scale runs (minutes on 2 CPU cores): deselected by default, run with `python -m pytest -m slow`."""

import json

import pytest
import torch
from dale_checks import assert_dale_on_disk

from cortexnet.experiments import dale
from cortexnet.experiments.common import run_cli
from cortexnet.training import model_from_checkpoint


@pytest.mark.slow
def test_dale_runs_at_10000_nodes_and_checkpoint_obeys_dale(tmp_path):
    out = tmp_path / "runs"
    args = ["--nodes", "10000", "--dataset", "digits", "--epochs", "1", "--densities", "0.1",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert run_cli(dale.main, args) == 0
    (run,) = list((out / "dale").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["configurations"][0]["runs"][0]["test_acc_per_epoch"]) == 2
    # Backend-independent: rebuild the network from the file and check the effective weight the forward pass
    # uses, whatever backend "auto" chose (csr at this size and density on a CPU).
    ckpt_path = run / "members" / "p0.1-inh0.115-seed0" / "checkpoint.pt"
    model, ckpt = model_from_checkpoint(ckpt_path)
    rec, inh = model.recurrent.rec, model.recurrent.inhibitory
    assert ckpt["meta"]["backends"] == {"recurrent.rec": rec.backend}  # rebuilt as trained
    assert int(inh.sum()) == 1150
    assert torch.equal(rec.column_sign, torch.where(inh, -1.0, 1.0))  # Dale's sign per presynaptic column
    assert rec.sign_violations() == 0
    conn = rec.connectivity()
    w = rec.to_dense()
    active = w[conn.rows(), conn.col]
    sign = rec.column_sign[conn.col]
    assert torch.all(active * sign >= 0) and bool((active != 0).any())
    del w
    assert_dale_on_disk(ckpt["model_state"])  # the stored csr / masked-dense tensors themselves
