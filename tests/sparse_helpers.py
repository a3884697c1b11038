"""Helpers shared by the sparse-weight tests."""

from __future__ import annotations

import torch

from cortexnet.connectivity import Connectivity


def rewired(conn: Connectivity, swaps: int, seed: int) -> Connectivity:
    """Same synapse count: ``swaps`` existing synapses dropped, as many absent ones added (seeded)."""
    g = torch.Generator().manual_seed(seed)
    mask = conn.to_dense()
    on, off = mask.nonzero(), (~mask).nonzero()
    drop = on[torch.randperm(len(on), generator=g)[:swaps]]
    add = off[torch.randperm(len(off), generator=g)[:swaps]]
    mask[drop[:, 0], drop[:, 1]] = False
    mask[add[:, 0], add[:, 1]] = True
    return Connectivity.from_dense(mask)
