"""Parameter and synapse counts of any built model (masked-off positions never count)."""

from __future__ import annotations

from torch import nn

from cortexnet.layers import sparse_weights


def built_counts(model: nn.Module) -> dict[str, int]:
    """Counts of a built model: ``synapses`` (active weights of its sparse matrices), ``parameters`` (every
    trainable value that exists: dense parameters plus active sparse weights, masked-off positions excluded)
    and ``stored`` (what its parameters allocate, backend-dependent: masked dense stores every position)."""
    weights = sparse_weights(model).values()
    synapses = sum(w.nnz for w in weights)
    stored = sum(p.numel() for p in model.parameters())
    sparse_stored = sum(p.numel() for w in weights for p in w.parameters())
    return {"synapses": synapses, "parameters": stored - sparse_stored + synapses, "stored": stored}
