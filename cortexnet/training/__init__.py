"""Training: fit / evaluate / history / checkpoints / callbacks for any cortexnet model."""

from cortexnet.training.callbacks import Callback, Checkpointer, EarlyStopping, HistoryWriter
from cortexnet.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    model_from_checkpoint,
    save_checkpoint,
)
from cortexnet.training.config import OPTIMIZERS, TrainConfig
from cortexnet.training.fit import (
    CHECKPOINT_NAME,
    HISTORY_NAME,
    NonFiniteLossError,
    TrainContext,
    TrainState,
    evaluate,
    fit,
    make_optimizer,
    resolve_device,
)

__all__ = [
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
    "OPTIMIZERS",
    "Callback",
    "CheckpointError",
    "Checkpointer",
    "EarlyStopping",
    "HistoryWriter",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainContext",
    "TrainState",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_model_state",
    "make_optimizer",
    "model_from_checkpoint",
    "resolve_device",
    "save_checkpoint",
]
