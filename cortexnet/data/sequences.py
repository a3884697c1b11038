"""Per-step targets for sequence tasks: the ``IGNORE_INDEX`` convention and the padding of variable-length trials.

A dataset with per-step targets holds labels ``y`` int64 of shape ``(n, T)`` beside inputs ``x`` ``(n, T, F)``:
``y[i, t]`` is the class index to predict at step ``t`` of sequence ``i``, or :data:`IGNORE_INDEX` where the step
is not scored (outside a task's response period, or padding). The loss mask is ``y != IGNORE_INDEX``; PyTorch's
``cross_entropy`` skips these targets by default (its ``ignore_index`` is the same ``-100``).

Imports only NumPy (``python -m cortexnet.data.download`` must not pay for torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Per-step targets equal to this are not scored: PyTorch cross-entropy's default ``ignore_index``.
IGNORE_INDEX = -100


def scored_mask(y: np.ndarray) -> np.ndarray:
    """The loss mask of per-step targets ``y`` ``(n, T)``: a bool array of the same shape, true where scored."""
    return np.asarray(y) != IGNORE_INDEX


def pad_trials(
    inputs: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    scored: Sequence[np.ndarray],
    seq_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variable-length trials as one fixed-length batch, one trial per sequence, aligned at step 0.

    Args:
        inputs: per trial, ``(L_i, F)`` inputs.
        targets: per trial, ``(L_i,)`` integer class indices (the ground truth at every step).
        scored: per trial, ``(L_i,)`` bools: which steps are scored.
        seq_len: T, the length of every output sequence (>= 1).

    Returns:
        ``(x, y, truncated)``: ``x`` float32 ``(n, T, F)`` — a trial shorter than T is followed by zeros, a longer
        one is cut after T steps; ``y`` int64 ``(n, T)`` — the target where the step is scored, else
        :data:`IGNORE_INDEX` (so padding is never scored); ``truncated`` bool ``(n,)`` — which trials were cut.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"seq_len must be an integer >= 1, got {seq_len!r}")
    if not (len(inputs) == len(targets) == len(scored)):
        raise ValueError(
            f"got {len(inputs)} inputs, {len(targets)} targets and {len(scored)} masks; give one of each per trial"
        )
    if not inputs:
        raise ValueError("no trials to pad")
    n_features = np.asarray(inputs[0]).shape[-1]
    x = np.zeros((len(inputs), seq_len, n_features), dtype=np.float32)
    y = np.full((len(inputs), seq_len), IGNORE_INDEX, dtype=np.int64)
    truncated = np.zeros(len(inputs), dtype=bool)
    for i, (ob, gt, mask) in enumerate(zip(inputs, targets, scored, strict=True)):
        ob, gt, mask = np.asarray(ob), np.asarray(gt), np.asarray(mask, dtype=bool)
        if ob.ndim != 2 or ob.shape[1] != n_features or gt.shape != (len(ob),) or mask.shape != (len(ob),):
            raise ValueError(
                f"trial {i}: inputs must be (L, {n_features}) with targets and mask (L,), got "
                f"{ob.shape}, {gt.shape} and {mask.shape}"
            )
        length = min(len(ob), seq_len)
        truncated[i] = len(ob) > seq_len
        x[i, :length] = ob[:length]
        y[i, :length] = np.where(mask[:length], gt[:length], IGNORE_INDEX)
    return x, y, truncated
