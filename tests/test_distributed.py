"""Data-parallel training with torch.distributed (issue 13, item 5): two gloo processes on the CPU, each a slice
of every batch, end with the weights of one process trained on the whole batch (float tolerance); masks, E/I
identities and constraints are identical on every rank; rank 0 alone writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from cortexnet.models import CortexRNNConfig, build_model
from cortexnet.training import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(n: int = 30, steps: int = 5, feats: int = 3, classes: int = 4) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.randn(n, steps, feats, generator=g), torch.randint(0, classes, (n,), generator=g)
    )


def _model():
    config = CortexRNNConfig(n_nodes=24, p=0.3, dale=True, backend="csr", connectivity_seed=1, weight_seed=2)
    return build_model("cortex_rnn", config, 3, 4)


CONFIG = TrainConfig(epochs=1, batch_size=10, lr=5e-3, data_seed=7, device="cpu")  # 3 steps


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    model = _model()
    fit(model, _data(), None, CONFIG, progress=False)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_ranks_take_the_steps_of_one_process_on_the_whole_batch(tmp_path):
    port = _free_port()
    mp.start_processes(_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    torch.set_num_threads(1)
    single = _model()
    fit(single, _data(), None, CONFIG, progress=False)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in single.state_dict().items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # every rank holds the same network
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-7, msg=key)
    initial = _model().state_dict()
    assert not torch.equal(ranks[0]["recurrent.rec.values"], initial["recurrent.rec.values"])  # it trained
    assert torch.equal(ranks[0]["recurrent.rec.col"], initial["recurrent.rec.col"])  # the same mask
    signs = ranks[0]["recurrent.rec.column_sign"][ranks[0]["recurrent.rec.col"].long()]
    assert bool((ranks[0]["recurrent.rec.values"] * signs >= 0).all())  # Dale's law on every rank


def _differing_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    config = CortexRNNConfig(
        n_nodes=24, p=0.3, dale=True, backend="csr", connectivity_seed=rank, weight_seed=2
    )
    try:
        fit(build_model("cortex_rnn", config, 3, 4), _data(), None, CONFIG, progress=False)
    except RuntimeError as exc:
        Path(out, f"rank{rank}.txt").write_text(str(exc))
    torch.distributed.destroy_process_group()


def test_ranks_that_built_different_networks_are_refused(tmp_path):
    mp.start_processes(_differing_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")  # fmt: skip
    for r in (0, 1):
        assert "built a different network from rank 0" in (tmp_path / f"rank{r}.txt").read_text()


@pytest.mark.slow
def test_torchrun_trains_one_dale_network_and_rank_0_writes_the_run(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "cortexnet.experiments.dale", "--dataset", "digits", "--nodes", "30",
           "--densities", "0.3", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "runs")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((tmp_path / "runs" / "dale").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()  # one run folder, written by rank 0
