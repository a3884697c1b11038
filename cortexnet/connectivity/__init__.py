"""Connectivity as seeded data: masks (CSR index form) and E/I identities, generators registered by name."""

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import torch

from cortexnet.connectivity import er as _er  # noqa: F401  (registers "er", "full")
from cortexnet.connectivity import g2g as _g2g  # noqa: F401  (registers "g2g")
from cortexnet.connectivity.base import (
    TOPOLOGIES,
    Connectivity,
    LayerSpec,
    assign_inhibitory,
    dale_signs,
    round_half_up,
    rounded_count,
)
from cortexnet.connectivity.er import erdos_renyi


def make_connectivity(
    name: str,
    layer: LayerSpec | int,
    n_in: int | None = None,
    /,
    *,
    generator: torch.Generator | None = None,
    **params: Any,
) -> Connectivity:
    """Build the registered topology ``name`` for one weight: ``make_connectivity("er", spec, p=0.1,
    generator=g)`` with a :class:`LayerSpec`, or ``make_connectivity("er", n_out, n_in, ...)`` for a single
    weight (``LayerSpec.of``: a square matrix is recurrent). Random topologies require ``generator``;
    deterministic ones (``"full"``) ignore it. An unknown name raises ``KeyError`` listing the known ones."""
    gen = TOPOLOGIES.get(name)
    if isinstance(layer, LayerSpec):
        if n_in is not None:
            raise TypeError("pass either a LayerSpec or (n_out, n_in), not both")
        spec = layer
    else:
        if n_in is None:
            raise TypeError("make_connectivity needs a LayerSpec or both n_out and n_in")
        spec = LayerSpec.of(int(layer), int(n_in))
    return gen(spec, generator=generator, **params)


def topology_settable(name: str, *, fixed: Iterable[str] = ()) -> list[str]:
    """The keyword parameters of the registered topology ``name`` a user may set (its keyword-only
    parameters, less ``generator`` and the ``fixed`` ones a model sets itself)."""
    fixed = set(fixed) | {"generator"}
    signature = inspect.signature(TOPOLOGIES.get(name)).parameters
    return [k for k, v in signature.items() if v.kind is inspect.Parameter.KEYWORD_ONLY and k not in fixed]


def build_connectivity(
    topology: str,
    params: dict[str, Any],
    spec: LayerSpec,
    *,
    generator: torch.Generator,
    inhibitory_fraction: float | None,
) -> tuple[Connectivity, torch.Tensor | None]:
    """The mask of one sparse weight and, with ``inhibitory_fraction``, the E/I identities of its presynaptic
    units, both from ``generator``: the mask first, then the identities — unless the topology declares
    ``uses_identities = True``, which gets them in ``spec.inhibitory`` and so draws them first. (The default
    order keeps every existing seed's masks and identities unchanged.)"""
    wants = bool(getattr(TOPOLOGIES.get(topology), "uses_identities", False))
    inhibitory = None
    if inhibitory_fraction is not None and wants:
        inhibitory = assign_inhibitory(spec.n_in, inhibitory_fraction, generator=generator)
        spec = replace(spec, inhibitory=inhibitory)
    conn = make_connectivity(topology, spec, generator=generator, **params)
    if inhibitory_fraction is not None and not wants:
        inhibitory = assign_inhibitory(spec.n_in, inhibitory_fraction, generator=generator)
    return conn, inhibitory


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
            f"topology_params must not repeat {repeated}: the model sets them from its own fields (p is the "
            "connection probability: --densities on the command line)"
        )
    signature = inspect.signature(gen).parameters
    settable = topology_settable(name, fixed=fixed)
    unknown = [k for k in params if k not in settable]
    if unknown:
        raise ValueError(f"topology {name!r} takes no {unknown}; topology_params may set {settable}")
    check = getattr(gen, "check_params", None)
    if check is not None:
        check(**{k: v for k, v in (given or {}).items() if k in signature}, **params)


__all__ = [
    "TOPOLOGIES",
    "Connectivity",
    "LayerSpec",
    "assign_inhibitory",
    "build_connectivity",
    "check_topology_params",
    "dale_signs",
    "erdos_renyi",
    "make_connectivity",
    "round_half_up",
    "rounded_count",
    "topology_settable",
]
