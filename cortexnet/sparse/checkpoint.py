"""Checkpoints across backends: a state_dict saved with one sparse-weight backend loads into another.

Every backend stores the same *raw parameter* (for ``dale="abs"`` the magnitudes, otherwise the weights) and
the synapse set; only the layout differs:

* ``masked_dense``: ``weight`` ``(n_out, n_in)`` and ``mask`` (bool ``(n_out, n_in)``);
* ``csr``: ``values`` ``(nnz,)`` in canonical CSR order, ``crow`` int64 ``(n_out + 1,)``, ``col`` ``(nnz,)``;
* both: ``column_sign`` ``(n_in,)``.

:class:`~cortexnet.sparse.SparseWeight` converts a foreign layout on ``load_state_dict`` automatically (a
``_load_from_state_dict`` hook), so ``model.load_state_dict(torch.load(path)["model_state"])`` works whatever
backend either side used. :func:`convert_state_dict` does the same for a whole state_dict offline.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: state_dict keys (after the module prefix) that identify each backend's layout.
LAYOUTS: dict[str, tuple[str, ...]] = {"masked_dense": ("weight", "mask"), "csr": ("values", "crow", "col")}


def detect_layout(state_dict: dict, prefix: str = "") -> str | None:
    """Which backend layout ``state_dict`` holds under ``prefix`` (None: neither)."""
    for name, keys in LAYOUTS.items():
        if all(prefix + k in state_dict for k in keys):
            if name == "masked_dense":
                w, m = state_dict[prefix + "weight"], state_dict[prefix + "mask"]
                if not (m.dtype == torch.bool and m.dim() == 2 and w.shape == m.shape):
                    continue
            return name
    return None


def off_mask_values(state_dict: dict, prefix: str = "") -> int:
    """Non-zero stored values outside the mask of a masked-dense layout under ``prefix`` (0 for any other
    layout, which cannot hold them): what loading drops, whichever backend it loads into. In row blocks, so
    the temporaries stay small at N = 20,000."""
    if detect_layout(state_dict, prefix) != "masked_dense":
        return 0
    weight, mask = state_dict[prefix + "weight"], state_dict[prefix + "mask"]
    step = max(1, 2**24 // max(1, weight.shape[1]))
    return sum(
        int(torch.count_nonzero(weight[a : a + step].masked_fill(mask[a : a + step], 0)))
        for a in range(0, weight.shape[0], step)
    )


def _canonical(state_dict: dict, prefix: str, layout: str) -> tuple[Tensor, Tensor, Tensor, int]:
    """Pop a layout's keys; return (crow int64, col int64, raw values (nnz,), n_in)."""
    if layout == "masked_dense":
        weight = state_dict.pop(prefix + "weight")
        mask = state_dict.pop(prefix + "mask")
        n_out, n_in = mask.shape
        counts = mask.sum(dim=1, dtype=torch.int64)
        crow = torch.zeros(n_out + 1, dtype=torch.int64, device=mask.device)
        crow[1:] = counts.cumsum(0)
        col = mask.nonzero(as_tuple=True)[1].to(torch.int64)
        return crow, col, weight[mask], n_in  # boolean indexing is row-major: canonical order
    values = state_dict.pop(prefix + "values")
    crow = state_dict.pop(prefix + "crow").to(torch.int64)
    col = state_dict.pop(prefix + "col").to(torch.int64)
    sign = state_dict.get(prefix + "column_sign")
    n_in = int(sign.numel()) if sign is not None else (int(col.max()) + 1 if col.numel() else 0)
    return crow, col, values, n_in


def convert_layout_(state_dict: dict, prefix: str, target: str, *, n_in: int | None = None) -> bool:
    """Rewrite the sparse weight under ``prefix`` of ``state_dict`` in place to the ``target`` backend's
    layout (``"masked_dense"`` or ``"csr"``). Returns False when there is nothing to convert."""
    if target not in LAYOUTS:
        raise ValueError(f"no checkpoint layout for backend {target!r}; known: {', '.join(LAYOUTS)}")
    layout = detect_layout(state_dict, prefix)
    if layout is None or layout == target:
        return False
    crow, col, values, found_n_in = _canonical(state_dict, prefix, layout)
    n_in = found_n_in if n_in is None else n_in
    n_out = crow.numel() - 1
    if target == "csr":
        state_dict[prefix + "values"] = values
        state_dict[prefix + "crow"] = crow
        state_dict[prefix + "col"] = col.to(torch.int32 if n_in <= 2**31 - 1 else torch.int64)
    else:
        rows = torch.repeat_interleave(torch.arange(n_out, device=crow.device), crow.diff())
        mask = torch.zeros(n_out, n_in, dtype=torch.bool, device=values.device)
        weight = torch.zeros(n_out, n_in, dtype=values.dtype, device=values.device)
        mask[rows, col] = True
        weight[rows, col] = values
        state_dict[prefix + "weight"] = weight
        state_dict[prefix + "mask"] = mask
    return True


def convert_state_dict(state_dict: dict, backend: str) -> dict:
    """A copy of a (whole-model) state_dict with every sparse weight in ``backend``'s layout.

    Needed only offline (e.g. to shrink a masked-dense checkpoint file); ``load_state_dict`` converts on the
    fly. Sparse weights are recognised by their key groups (see :data:`LAYOUTS`).
    """
    out = dict(state_dict)
    prefixes = set()
    for key in state_dict:
        for keys in LAYOUTS.values():
            for k in keys:
                if key == k or key.endswith("." + k):
                    prefixes.add(key[: len(key) - len(k)])
    for prefix in sorted(prefixes):
        convert_layout_(out, prefix, backend)
    return out
