"""Row-by-row sequence encodings of images: each image row is one time step (REFERENCE.md §1 "Inputs")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

Scaling = Literal["unit", "symmetric"]


def images_to_row_sequences(
    images: np.ndarray, *, max_value: float = 255.0, scaling: Scaling | None = None
) -> torch.Tensor:
    """Turn images into sequences of rows, batch-first ``(n, T, F)`` float32, as the recurrent network reads them.

    - Grey-scale ``(n, H, W)`` → ``(n, H, W)``: step ``t`` is image row ``t`` (MNIST/Fashion-MNIST: 28 × 28;
      scikit-learn digits: 8 × 8 with ``max_value=16``).
    - Channel-first colour ``(n, C, H, W)`` (CIFAR's native layout) → ``(n, H, C·W)``: step ``t`` is row ``t`` of
      channel 0, then row ``t`` of channel 1, then of channel 2 — *channel-blocked* (R row, G row, B row), as the
      paper's code did, not RGB-interleaved. CIFAR-10/100: 32 steps × 96 inputs.

    Scaling of a pixel value ``v`` (units: raw intensity, ``0 ≤ v ≤ max_value``):

    - ``"unit"``: ``v / max_value`` in [0, 1] — the default for grey-scale input and for ``C == 1``;
    - ``"symmetric"``: ``(v / max_value − 0.5) / 0.5`` in [−1, 1] — the default for colour input (the paper's
      CIFAR normalisation).

    Raises ``ValueError`` for another array rank, an empty image, or values outside ``[0, max_value]``.
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"images must have shape (n, H, W) (grey) or (n, C, H, W) (channel-first colour), got shape "
            f"{arr.shape}; reshape CIFAR's flat (n, 3072) rows with .reshape(n, 3, 32, 32)"
        )
    if (arr.ndim == 4 and arr.shape[1] < 1) or any(s == 0 for s in arr.shape[-2:]):
        raise ValueError(f"images have an empty channel or spatial dimension: shape {arr.shape}")
    if not np.isfinite(max_value) or max_value <= 0:
        raise ValueError(f"max_value must be a positive finite number, got {max_value!r}")
    if scaling is None:
        scaling = "symmetric" if arr.ndim == 4 and arr.shape[1] > 1 else "unit"
    if scaling not in ("unit", "symmetric"):
        raise ValueError(f"scaling must be 'unit', 'symmetric' or None, got {scaling!r}")
    if arr.size and (arr.min() < 0 or arr.max() > max_value or not np.isfinite(arr).all()):
        raise ValueError(
            f"pixel values must lie in [0, {max_value}], found [{arr.min()}, {arr.max()}]; pass the matching "
            "max_value (e.g. 16 for scikit-learn digits, 255 for 8-bit images)"
        )
    if arr.ndim == 4:
        n, c, h, w = arr.shape
        # (n, C, H, W) -> (n, H, C, W) -> (n, H, C*W): row t = [ch0 row t, ch1 row t, ch2 row t]
        arr = arr.transpose(0, 2, 1, 3).reshape(n, h, c * w)
    # float32 throughout: a float64 copy of CIFAR's training set would need 1.2 GB
    out = np.array(arr, dtype=np.float32, order="C", copy=True)
    out /= np.float32(max_value)
    if scaling == "symmetric":
        out -= np.float32(0.5)
        out /= np.float32(0.5)
    import torch

    return torch.from_numpy(out)
