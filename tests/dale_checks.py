"""Dale's law and the mask checked on a checkpoint's raw stored tensors, for every backend's storage layout."""

from __future__ import annotations

import torch


def assert_dale_on_disk(model_state: dict, prefix: str = "recurrent.") -> None:
    """Check the stored recurrent weight of a saved ``model_state`` (not a rebuilt model's view of it):
    masked dense — exactly zero off the stored mask and no wrong sign on it; csr — one stored value per stored
    index, none with the wrong sign. Signs come from the saved inhibitory identities (columns)."""
    sign = torch.where(model_state[prefix + "inhibitory"], -1.0, 1.0)
    rec = prefix + "rec."
    if rec + "weight" in model_state:  # masked dense: an (N, N) parameter and its bool mask
        w, mask = model_state[rec + "weight"], model_state[rec + "mask"]
        assert w.shape == mask.shape
        assert torch.count_nonzero(w[~mask]) == 0, "weights off the mask"
        assert int(((w * sign) < 0).sum()) == 0, "wrong-sign weights"
        assert torch.count_nonzero(w) > 0
    else:  # csr: values in CSR order of (crow, col)
        values, crow, col = model_state[rec + "values"], model_state[rec + "crow"], model_state[rec + "col"]
        assert values.numel() == col.numel() == int(crow[-1]), "values do not match the stored synapses"
        assert int(((values * sign[col.long()]) < 0).sum()) == 0, "wrong-sign weights"
        assert torch.count_nonzero(values) > 0
