"""Connectivity sweep: how size and connection probability shape learning (Fruengel & Oberlaender 2025, Fig. 2,
Fig. S2, Fig. 3B, Tables S1-S3).

Trains the cortex-like RNN (one recurrent layer of N ReLU or tanh nodes, images row by row, no Dale's law) for
every size N and connection probability p of a grid, over several seeds, and reports test accuracy after one
epoch (Fig. 2C's heat map, Tables S1-S3) and per epoch (Fig. 2B's learning curves), mean ± SD over seeds, and
the two-sample Kolmogorov-Smirnov test between each p and the dense network (p = 1) of the same size on the
seeds' one-epoch accuracies, the test the paper reports::

    python -m cortexnet.experiments.connectivity_sweep --config experiments/connectivity_sweep_fig2.toml --download
    python -m cortexnet.experiments.connectivity_sweep --dataset digits --nodes 200 500 --densities 1 0.1 --epochs 2

``--weight-budget W`` trades N against p at a fixed number of recurrent weights (Fig. S2): every size N gets
p = W / (N (N - 1)). ``--activations relu tanh --record-gradients`` gives Fig. 3B's first-epoch gradient
magnitudes from the same run.

Writes ``runs/connectivity_sweep/<timestamp>-<hash>/``: config.json, metrics.jsonl, summary.json,
``heatmap.png`` (one-epoch accuracy over N × p), ``accuracy.png`` (learning curves, one panel per size) and one
checkpoint per member; ``--resume <that folder>`` continues an interrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cortexnet.analysis import GradientRecorder, MeanSD, aggregate_runs, ks_compare, plot_accuracy_curves
from cortexnet.analysis.plots import plot_heatmap
from cortexnet.config import field
from cortexnet.data import chance_level, sequence_cost
from cortexnet.experiments.common import (
    RunOptions,
    check_distinct,
    load_run_data,
    readout_for,
    resolve_run_config,
    run_cli,
    run_members,
)
from cortexnet.models import CortexRNNConfig
from cortexnet.sparse import ACTIVATIONS
from cortexnet.training.runs import Member, RunFolder, derive_seeds

log = logging.getLogger(__name__)

EXPERIMENT = "connectivity_sweep"


@dataclass(frozen=True)
class ConnectivitySweepConfig(RunOptions):
    """Options of ``python -m cortexnet.experiments.connectivity_sweep``."""

    experiment: ClassVar[str] = EXPERIMENT

    nodes: tuple[int, ...] = field(
        (1_000, 10_000), "recurrent sizes N, each >= 1 (paper Fig. 2: 500 ... 24,000)"
    )
    densities: tuple[float, ...] = field(
        (1.0, 0.1), "connection probabilities p, each in (0, 1] (ignored with --weight-budget)"
    )
    weight_budget: int | None = field(
        None, "a fixed number of recurrent weights W: each size gets p = W / (N (N - 1)) (Fig. S2)"
    )
    activations: tuple[str, ...] = field(("relu",), "hidden activations, any of relu, tanh (Fig. 3B: both)")
    record_gradients: bool = field(
        False, "record recurrent gradient magnitudes per epoch (Fig. 3B: first epoch, tanh vs ReLU)"
    )
    exact_edges: bool = field(False, "exactly round(p*N*(N-1)) synapses instead of Bernoulli(p) per pair")

    def validate(self) -> ConnectivitySweepConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        if not self.nodes or min(self.nodes) < 1:
            raise ValueError(f"--nodes needs sizes >= 1, got {list(self.nodes)}")
        check_distinct(nodes=self.nodes, densities=self.densities, activations=self.activations)
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise ValueError(f"--activations: unknown activation {a!r}; known: {', '.join(ACTIVATIONS)}")
        if not self.activations:
            raise ValueError("--activations needs at least one value")
        if self.weight_budget is None:
            if not self.densities:
                raise ValueError("--densities needs at least one value")
            for p in self.densities:
                if not 0.0 < p <= 1.0:
                    raise ValueError(f"--densities: connection probability must be in (0, 1], got {p}")
        else:
            if self.weight_budget < 1:
                raise ValueError(f"--weight-budget must be >= 1 weights, got {self.weight_budget}")
            too_small = [n for n in self.nodes if n * (n - 1) < self.weight_budget]
            if too_small:
                raise ValueError(
                    f"--weight-budget {self.weight_budget:,} exceeds the N (N - 1) possible synapses of --nodes "
                    f"{too_small} (p would be > 1); use larger sizes or a smaller budget"
                )
        self.validate_run_options()
        for n in self.nodes:
            for p in self.densities_for(n):
                self.model_config(n, p, self.activations[0], self.seeds[0]).validate()
        return self

    def densities_for(self, n: int) -> tuple[float, ...]:
        """The connection probabilities trained at size ``n``: the grid's, or the budget's one."""
        if self.weight_budget is None:
            return self.densities
        return (self.weight_budget / (n * (n - 1)) if n > 1 else 1.0,)

    def model_config(
        self, n: int, p: float, activation: str, seed: int, readout: str = "last"
    ) -> CortexRNNConfig:
        """The network of one member: N nodes, ER at p (or the run's --topology), no Dale's law."""
        seeds = derive_seeds(seed)
        topology, params = self.single_weight_topology("er")
        return CortexRNNConfig(
            n_nodes=n, p=p, activation=activation, dale=False, exact_edges=self.exact_edges, topology=topology,
            topology_params=params, backend=self.backend, connectivity_seed=seeds["connectivity_seed"],
            weight_seed=seeds["weight_seed"], readout=readout,
        )  # fmt: skip


def _label(n: int, p: float, activation: str, seed: int, activations: int) -> str:
    return f"n{n}-p{p:.4g}" + (f"-{activation}" if activations > 1 else "") + f"-seed{seed}"


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; returns the process exit status (2 for bad options or missing data)."""
    config, folder = resolve_run_config(ConnectivitySweepConfig, argv, __doc__.split("\n")[0])
    splits, dataset_spec = load_run_data(config)
    print(f"{EXPERIMENT}: cost: " + sequence_cost(splits.n_steps, max(config.nodes), len(splits.train),
          density=max(p for n in config.nodes for p in config.densities_for(n)), batch_size=config.batch_size))  # fmt: skip
    folder = folder or RunFolder.create(config.out, EXPERIMENT, dataclasses.asdict(config))
    print(f"{EXPERIMENT}: writing {folder.path}")
    acts = len(config.activations)
    members = [
        Member(
            label=_label(n, p, a, seed, acts),
            key=(a, n, p),
            tags={"activation": a, "nodes": n, "density": p, "seed": seed},
            model_name="cortex_rnn",
            model_config=config.model_config(n, p, a, seed, readout_for(splits)),
            seed=seed,
            callbacks=(GradientRecorder(),) if config.record_gradients else (),
        )
        for a in config.activations
        for n in config.nodes
        for p in config.densities_for(n)
        for seed in config.seeds
    ]
    results = run_members(config, folder, splits, dataset_spec, members)
    if config.record_gradients:
        for m in members:
            results.runs[m.label]["mean_abs_grad_per_epoch"] = [
                e["mean_abs_grad"] for e in m.callbacks[0].epochs
            ]
    chance = chance_level(splits)
    configurations = [_configuration(a, n, p, runs) for (a, n, p), runs in results.groups.items()]
    _add_ks(configurations)
    summary: dict[str, Any] = {
        "experiment": EXPERIMENT,
        "dataset": splits.description,
        "chance": chance,
        "weight_budget": config.weight_budget,
        "acc1_definition": "test accuracy after one epoch of training (the paper's Fig. 2C, Tables S1-S3)",
        "best_definition": "the best test accuracy over epochs, selected on the test set (as the paper reports it)",
        "ks_definition": "two-sample Kolmogorov-Smirnov test of the seeds' one-epoch accuracies against p = 1 of "
        "the same size and activation",
        "configurations": configurations,
    }
    folder.write_summary(summary)
    _figures(folder, config, configurations, chance)
    _print_table(configurations)
    return 0


def _configuration(activation: str, n: int, p: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    acc1 = [r["test_acc_per_epoch"][1] for r in runs if len(r["test_acc_per_epoch"]) > 1]
    m = MeanSD.of(acc1)
    row: dict[str, Any] = {"activation": activation, "nodes": n, "density": p, "runs": runs,
                           "aggregate": aggregate_runs(runs), "acc1": {"mean": m.mean, "sd": m.sd, "n": m.n},
                           "acc1_per_seed": acc1}  # fmt: skip
    grads = [r["mean_abs_grad_per_epoch"][0] for r in runs if r.get("mean_abs_grad_per_epoch")]
    if grads:
        g = MeanSD.of(grads)
        row["first_epoch_mean_abs_grad"] = {"mean": g.mean, "sd": g.sd, "n": g.n}
    return row


def _add_ks(configurations: list[dict[str, Any]]) -> None:
    """The KS test of each configuration's one-epoch accuracies against the dense one of its size (>= 2 seeds)."""
    dense = {(c["activation"], c["nodes"]): c for c in configurations if c["density"] == 1.0}
    for c in configurations:
        ref = dense.get((c["activation"], c["nodes"]))
        if ref is None or ref is c or len(c["acc1_per_seed"]) < 2 or len(ref["acc1_per_seed"]) < 2:
            continue
        ks = ks_compare(np.asarray(c["acc1_per_seed"]), np.asarray(ref["acc1_per_seed"]))
        c["ks_vs_dense"] = {"statistic": ks.statistic, "pvalue": ks.pvalue}


def _figures(
    folder: RunFolder, config: ConnectivitySweepConfig, configurations: list[dict], chance: float
) -> None:
    sizes = sorted({c["nodes"] for c in configurations})
    densities = sorted({c["density"] for c in configurations}, reverse=True)
    if config.weight_budget is None:  # a grid: the heat map of Fig. 2C, one panel per activation
        panels = {}
        for a in config.activations:
            grid = np.full((len(densities), len(sizes)), np.nan)
            for c in configurations:
                if c["activation"] == a and c["acc1"]["mean"] is not None:
                    grid[densities.index(c["density"]), sizes.index(c["nodes"])] = 100 * c["acc1"]["mean"]
            panels[a] = grid
        plot_heatmap(folder.path / "heatmap.png", panels, x=[f"{n:,}" for n in sizes],
                     y=[f"{p:g}" for p in densities], xlabel="nodes N", ylabel="connection probability p",
                     value_label="test accuracy after 1 epoch (%)",
                     title=f"One-epoch accuracy over N × p ({config.dataset}, {len(config.seeds)} seeds)")  # fmt: skip
    curves: dict[str, dict] = {}
    for c in configurations:
        agg = c["aggregate"]["test_acc_per_epoch"]
        name = f"N = {c['nodes']:,}" + (f", {c['activation']}" if len(config.activations) > 1 else "")
        curves.setdefault(name, {})[f"p = {c['density']:.3g}"] = (
            list(range(len(agg["mean"]))),
            agg["mean"],
            agg["sd"],
            c["aggregate"]["n_seeds"],
        )
    plot_accuracy_curves(folder.path / "accuracy.png", curves, chance=chance,
                         title=f"Learning curves ({config.dataset})")  # fmt: skip


def _print_table(configurations: list[dict]) -> None:
    head = (
        f"{'act.':>5} {'N':>7} {'p':>8} {'seeds':>5} {'acc@1 (%)':>14} {'best* (%)':>14} {'KS p vs p=1':>12}"
    )
    print(head)
    print("-" * len(head))
    for c in configurations:
        agg = c["aggregate"]
        acc1 = MeanSD(c["acc1"]["mean"], c["acc1"]["sd"], c["acc1"]["n"])
        best = agg["best_test_acc"]
        ks = c.get("ks_vs_dense")
        ks_text = f"{ks['pvalue']:.2g}" if ks else "-"
        print(f"{c['activation']:>5} {c['nodes']:>7} {c['density']:>8.3g} {agg['n_seeds']:>5} {acc1.format(100):>14} "
              f"{MeanSD(best['mean'], best['sd'], best['n']).format(100):>14} {ks_text:>12}")  # fmt: skip
    print("best*: selected on the test set, as the paper reports it")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
