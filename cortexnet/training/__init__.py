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
    TrainingInterrupted,
    TrainState,
    evaluate,
    fit,
    make_optimizer,
    resolve_device,
)
from cortexnet.training.loggers import LOGGERS, logger_callbacks, register_logger

__all__ = [
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
    "LOGGERS",
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
    "TrainingInterrupted",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_model_state",
    "logger_callbacks",
    "make_optimizer",
    "model_from_checkpoint",
    "register_logger",
    "resolve_device",
    "save_checkpoint",
]
