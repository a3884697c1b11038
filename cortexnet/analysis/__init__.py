"""Analysis of trained networks: learning curves and delay (here), representations (own issue)."""

from cortexnet.analysis.learning import (
    MeanSD,
    aggregate_runs,
    epoch_curve,
    learning_delay,
    summarize_run,
)
from cortexnet.analysis.plots import plot_accuracy_curves

__all__ = [
    "MeanSD",
    "aggregate_runs",
    "epoch_curve",
    "learning_delay",
    "plot_accuracy_curves",
    "summarize_run",
]
