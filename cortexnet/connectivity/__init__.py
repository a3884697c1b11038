"""Connectivity as seeded data: masks (CSR index form) and E/I identities, generators registered by name."""

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

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


def check_topology_params(
    name: str, params: Mapping[str, Any], *, fixed: Iterable[str], given: Mapping[str, Any] | None = None
) -> None:
    """Validate a model's extra keyword arguments ``params`` for the registered topology ``name``, before
    anything is built. ``fixed`` names the arguments the model sets itself from its own fields (they may not be
    repeated) and ``given`` their values. Only the generator's keyword-only parameters may be set; a generator's
    own ``check_params(**kwargs)`` hook (G2G: p' <= p) then checks the whole argument set.

    Raises ``ValueError`` naming the bad key and what may be set instead.
    """
    if name not in TOPOLOGIES:
        raise ValueError(f"unknown topology {name!r}; known: {', '.join(TOPOLOGIES.names())}")
    gen = TOPOLOGIES.get(name)
    fixed = set(fixed) | {"generator"}
    repeated = sorted(fixed & set(params))
    if repeated:
        raise ValueError(
            f"topology_params must not repeat {repeated}: the model sets them from its own fields"
        )
    signature = inspect.signature(gen).parameters
    settable = [
        k for k, v in signature.items() if v.kind is inspect.Parameter.KEYWORD_ONLY and k not in fixed
    ]
    unknown = [k for k in params if k not in settable]
    if unknown:
        raise ValueError(f"topology {name!r} takes no {unknown}; topology_params may set {settable}")
    check = getattr(gen, "check_params", None)
    if check is not None:
        check(**{k: v for k, v in (given or {}).items() if k in signature}, **params)


__all__ = [
    "TOPOLOGIES",
    "Connectivity",
    "assign_inhibitory",
    "check_topology_params",
    "dale_signs",
    "erdos_renyi",
    "make_connectivity",
    "round_half_up",
    "rounded_count",
]
