"""Connectivity as seeded data: masks (CSR index form) and E/I identities, generators registered by name."""

import torch

from cortexnet.connectivity import er as _er  # noqa: F401  (registers "er", "full")
from cortexnet.connectivity import g2g as _g2g  # noqa: F401  (registers "g2g")
from cortexnet.connectivity.base import (
    TOPOLOGIES,
    Connectivity,
    assign_inhibitory,
    dale_signs,
    round_half_up,
    rounded_count,
)
from cortexnet.connectivity.er import erdos_renyi


def make_connectivity(
    name: str, n_out: int, n_in: int, *, generator: torch.Generator | None = None, **params
) -> Connectivity:
    """Build a registered topology by name, e.g. ``make_connectivity("er", N, N, p=0.1, generator=g)``.
    Random topologies require ``generator``; deterministic ones (``"full"``) ignore it."""
    return TOPOLOGIES.get(name)(n_out, n_in, generator=generator, **params)


__all__ = [
    "TOPOLOGIES",
    "Connectivity",
    "assign_inhibitory",
    "dale_signs",
    "erdos_renyi",
    "make_connectivity",
    "round_half_up",
    "rounded_count",
]
