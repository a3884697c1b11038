"""Analysis of trained networks: learning curves and delay, representations (activation sparsity, mutual
information, dropout robustness, correlations), training dynamics (gradients, sign changes), E/I balance."""

from cortexnet.analysis.dynamics import (
    GRAD_BIN_EDGES,
    EIBalance,
    GradientRecorder,
    SignTracker,
    delay_vs_size,
    ei_balance,
    recurrent_weight,
    sign_changes,
)
from cortexnet.analysis.learning import (
    MeanSD,
    aggregate_runs,
    epoch_curve,
    learning_delay,
    summarize_run,
)
from cortexnet.analysis.plots import plot_accuracy_curves, plot_curves, plot_histograms
from cortexnet.analysis.representations import (
    Activations,
    ActivationSparsity,
    DropoutCurve,
    KSResult,
    PairwiseResult,
    activation_sparsity,
    dropout_robustness,
    hidden_activations,
    ks_compare,
    pairwise_correlations,
    pairwise_mutual_information,
)

__all__ = [
    "GRAD_BIN_EDGES",
    "ActivationSparsity",
    "Activations",
    "DropoutCurve",
    "EIBalance",
    "GradientRecorder",
    "KSResult",
    "MeanSD",
    "PairwiseResult",
    "SignTracker",
    "activation_sparsity",
    "aggregate_runs",
    "delay_vs_size",
    "dropout_robustness",
    "ei_balance",
    "epoch_curve",
    "hidden_activations",
    "ks_compare",
    "learning_delay",
    "pairwise_correlations",
    "pairwise_mutual_information",
    "plot_accuracy_curves",
    "plot_curves",
    "plot_histograms",
    "recurrent_weight",
    "sign_changes",
    "summarize_run",
]
