"""Model assemblies reached by name: ``build_model("cortex_rnn", config, n_inputs, n_classes)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from cortexnet.models.cortex_rnn import CortexRNN, CortexRNNConfig, build_cortex_rnn
from cortexnet.models.counting import built_counts
from cortexnet.models.feedforward import FeedForwardConfig, FeedForwardNet, build_feedforward
from cortexnet.models.g2gnet import G2GNet, G2GNetConfig, build_g2gnet
from cortexnet.models.registry import MODEL_CONFIGS, MODELS
from cortexnet.models.sparse_mlp import SparseMLP, SparseMLPConfig, build_sparse_mlp

MODEL_CONFIGS["cortex_rnn"] = CortexRNNConfig
MODEL_CONFIGS["feedforward"] = FeedForwardConfig
MODEL_CONFIGS["g2gnet"] = G2GNetConfig
MODEL_CONFIGS["sparse_mlp"] = SparseMLPConfig


def build_model(name: str, config: Any, n_inputs: int, n_classes: int) -> nn.Module:
    """Build the model registered as ``name`` from its config dataclass (or a plain dict of its fields)."""
    factory = MODELS.get(name)
    if isinstance(config, dict):
        config = MODEL_CONFIGS[name](**config)
    return factory(config, n_inputs, n_classes)


__all__ = [
    "MODELS",
    "MODEL_CONFIGS",
    "CortexRNN",
    "CortexRNNConfig",
    "FeedForwardConfig",
    "FeedForwardNet",
    "G2GNet",
    "G2GNetConfig",
    "SparseMLP",
    "SparseMLPConfig",
    "build_cortex_rnn",
    "build_feedforward",
    "build_g2gnet",
    "build_model",
    "build_sparse_mlp",
    "built_counts",
]
