"""Connectivity as seeded data: masks (CSR index form) and E/I identities, generators registered by name."""

import inspect
import numbers
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from cortexnet.connectivity import budget as _budget  # noqa: F401  (registers "erk")
from cortexnet.connectivity import correlation as _correlation  # noqa: F401  (registers "csti")
from cortexnet.connectivity import er as _er  # noqa: F401  (registers "er", "full")
from cortexnet.connectivity import g2g as _g2g  # noqa: F401  (registers "g2g")
from cortexnet.connectivity import lattice as _lattice  # noqa: F401  (registers "bsw", "brf", "dnm")
from cortexnet.connectivity import saliency as _saliency  # noqa: F401  (registers "snip")
from cortexnet.connectivity import scale_free as _scale_free  # noqa: F401  (registers "bsf")
from cortexnet.connectivity import spectral as _spectral  # noqa: F401  (registers "ramanujan")
from cortexnet.connectivity.base import (
    FROM_DATA,
    TOPOLOGIES,
    Connectivity,
    LayerSpec,
    assign_inhibitory,
    dale_signs,
    data_params,
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


def check_layer_overrides(
    overrides: Sequence[Mapping[str, Any]], n_weights: int, what: str = "sparse matrix"
) -> None:
    """A model's per-weight topology overrides: empty or one dict per sparse weight, with known topology names.
    Raises ``ValueError`` naming the count or the name and the fix."""
    if overrides and len(overrides) != n_weights:
        raise ValueError(
            f"layer_topologies needs one dict per {what} ({n_weights}), got {len(overrides)}; use {{}} for a "
            "matrix that keeps the model-wide topology"
        )
    for override in overrides:
        name = override.get("topology")
        if name is not None and name not in TOPOLOGIES:
            raise ValueError(f"unknown topology {name!r}; known: {', '.join(TOPOLOGIES.names())}")


def apply_layer_overrides(
    specs: Sequence[tuple[str, Mapping[str, Any]]], overrides: Sequence[Mapping[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Per-weight ``(topology, params)`` with ``overrides`` applied: ``{"topology": name, **params}`` replaces
    that weight's topology and parameters (a different generator's parameters make no sense), ``{**params}``
    (or the same name) updates its parameters, ``{}`` keeps it."""
    out = [(name, dict(params)) for name, params in specs]
    for i, override in enumerate(overrides):
        override = dict(override)
        name = override.pop("topology", None)
        out[i] = (
            (name, override)
            if name is not None and name != out[i][0]
            else (out[i][0], {**out[i][1], **override})
        )
    return out


def check_topology_params(
    name: str,
    params: Mapping[str, Any],
    *,
    fixed: Iterable[str] = (),
    given: Mapping[str, Any] | None = None,
    spec: LayerSpec | None = None,
) -> None:
    """Validate the keyword parameters ``params`` of the registered topology ``name`` before anything is built.

    ``fixed`` names the arguments the model sets itself from its own fields (they may not be repeated) and
    ``given`` their values. Only the generator's keyword-only parameters may be set; values of scalar
    parameters (annotated ``int``, ``float``, ``bool``, ``str``, optionally ``| None``) must have that type;
    then the generator's own ``check_params(spec, **params)`` hook, when it has one, checks ranges against the
    layer description ``spec`` (e.g. G2G: p' <= p, groups <= layer width). Cheap: nothing is drawn.

    Raises ``ValueError`` naming the bad key or value, what is allowed and the fix.
    """
    if name not in TOPOLOGIES:
        raise ValueError(f"unknown topology {name!r}; known: {', '.join(TOPOLOGIES.names())}")
    if not isinstance(params, Mapping):
        raise ValueError(f"topology_params must be a mapping of parameter names to values, got {params!r}")
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
    _check_types(name, gen, params)
    check = getattr(gen, "check_params", None)
    if check is not None:
        check(spec, **{k: v for k, v in (given or {}).items() if k in signature}, **params)


_SCALARS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _check_types(name: str, gen: Any, params: Mapping[str, Any]) -> None:
    """Values of a generator's scalar-annotated parameters must have that type (ints are numbers too)."""
    try:
        hints = typing.get_type_hints(gen)
    except Exception:  # unresolvable annotations of a third-party generator: leave it to the generator
        return
    for key, value in params.items():
        hint = hints.get(key)
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
        optional = type(None) in args
        options = [a for a in args if a is not type(None)] if args else [hint]
        if len(options) != 1 or options[0] not in _SCALARS or (optional and value is None):
            continue
        tp = options[0]
        # numbers.* so that NumPy scalars (np.int64(4), np.float32(0.05)) of a programmatic sweep pass too.
        kinds = {int: numbers.Integral, float: numbers.Real, str: str}
        ok = (
            isinstance(value, bool)
            if tp is bool
            else isinstance(value, kinds[tp]) and not isinstance(value, bool)
        )
        if not ok:
            raise ValueError(
                f"topology {name!r} parameter {key} must be {_SCALARS[tp]}{' or none' if optional else ''}, got "
                f"{value!r} ({type(value).__name__})"
            )


__all__ = [
    "FROM_DATA",
    "TOPOLOGIES",
    "Connectivity",
    "LayerSpec",
    "apply_layer_overrides",
    "assign_inhibitory",
    "build_connectivity",
    "check_layer_overrides",
    "check_topology_params",
    "dale_signs",
    "data_params",
    "erdos_renyi",
    "make_connectivity",
    "round_half_up",
    "rounded_count",
    "topology_settable",
]
