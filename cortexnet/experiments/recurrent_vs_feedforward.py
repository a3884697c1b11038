"""Recurrent vs feed-forward experiment (Fruengel & Oberlaender 2025, Fig. 3A and Fig. S3).

Trains, for every total hidden size N and connection probability p, the cortex-like RNN (one recurrent layer of
N nodes, images row by row) and the feed-forward control (two hidden layers of N/2 nodes joined by random
connections at the same p, the whole image as one vector), over several seeds, and reports test accuracy per
epoch and the sparse − dense difference per architecture::

    python -m cortexnet.experiments.recurrent_vs_feedforward                   # the paper: MNIST, N = 1,000, 10,000
    python -m cortexnet.experiments.recurrent_vs_feedforward --dataset digits --nodes 200 --epochs 3  # minutes, CPU

Writes ``runs/recurrent_vs_feedforward/<timestamp>-<hash>/`` with config.json, metrics.jsonl, summary.json,
accuracy.png (and .svg) and one checkpoint per member; ``--resume <that folder>`` continues an interrupted run.
The summary's synapse and parameter counts are those of the built models (per seed in each run, mean ± SD per configuration:
Bernoulli masks differ from seed to seed), beside the expected synapse count p · possible pairs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from cortexnet.analysis import MeanSD, aggregate_runs
from cortexnet.analysis.plots import plot_accuracy_curves
from cortexnet.config import field
from cortexnet.data import chance_level, sequence_cost
from cortexnet.experiments.common import (
    RecordCounts,
    RunOptions,
    load_run_data,
    resolve_run_config,
    run_cli,
    run_members,
    summarize_counts,
)
from cortexnet.models import CortexRNNConfig, FeedForwardConfig, built_counts
from cortexnet.models.feedforward import FF_HIDDEN_INITS
from cortexnet.sparse import ACTIVATIONS
from cortexnet.training.runs import Member, RunFolder, derive_seeds

log = logging.getLogger(__name__)

EXPERIMENT = "recurrent_vs_feedforward"
ARCHITECTURES = ("recurrent", "feedforward")
#: Registry names of the models behind the architectures.
MODEL_NAMES = {"recurrent": "cortex_rnn", "feedforward": "feedforward"}

#: What the paper reports for this experiment (REFERENCE.md §1); printed beside our numbers.
PAPER = {
    "source": "Fruengel & Oberlaender 2025, Front. Neural Circuits 19:1528309, Fig. 3A and Fig. S3",
    "setting": (
        "MNIST; 1,000 (small) and 10,000 (large) hidden nodes; p = 0.1 vs 1.0; one recurrent layer vs two "
        "feed-forward hidden layers of N/2 nodes; ReLU; Adam 1e-3, batch 100; 10 initialisations"
    ),
    "findings": [
        "the advantage of sparse connectivity is limited to networks with a recurrent architecture",
        "in feed-forward networks sparse connectivity has very little effect on the performance of large "
        "networks and is typically detrimental in small networks",
        "recurrent, 1 epoch, N = 20,000 (Fig. 2, for scale): sparse 90.3 ± 2.0 % vs dense 77.5 ± 7.3 %",
    ],
    "numbers_for_fig_3a": "not given in the text; only the figure (read the findings above)",
}


@dataclass(frozen=True)
class RecurrentVsFeedforwardConfig(RunOptions):
    """Options of ``python -m cortexnet.experiments.recurrent_vs_feedforward`` (also from ``--config``)."""

    experiment: ClassVar[str] = EXPERIMENT

    nodes: tuple[int, ...] = field(
        (1_000, 10_000), "total hidden nodes N: recurrent N, feed-forward N/2 + N/2; each >= 2"
    )
    densities: tuple[float, ...] = field((1.0, 0.1), "connection probabilities p, each in (0, 1]")
    architectures: tuple[str, ...] = field(ARCHITECTURES, "architectures: recurrent and/or feedforward")
    activation: str = field("relu", "hidden activation: relu (paper) or tanh")
    ff_hidden_init: str = field(
        "paper",
        "feed-forward hidden-to-hidden init: paper (U(+-0.001), as the recurrent weights), dense_fan_in, "
        "sparse_fan_in",
    )
    exact_edges: bool = field(False, "exactly round(p * possible) synapses instead of Bernoulli(p) per pair")

    def validate(self) -> RecurrentVsFeedforwardConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        if not self.nodes or not self.densities or not self.architectures:
            raise ValueError("--nodes, --densities and --architectures each need at least one value")
        for n in self.nodes:
            if n < 2:
                raise ValueError(
                    f"--nodes: each total hidden size must be >= 2 (two feed-forward layers), got {n}"
                )
        for p in self.densities:
            if not 0.0 < p <= 1.0:
                raise ValueError(f"--densities: connection probability must be in (0, 1], got {p}")
        for a in self.architectures:
            if a not in ARCHITECTURES:
                raise ValueError(f"--architectures: each must be one of {ARCHITECTURES}, got {a!r}")
        if len(set(self.architectures)) != len(self.architectures):
            raise ValueError(f"--architectures must be distinct, got {list(self.architectures)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"--activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.ff_hidden_init not in FF_HIDDEN_INITS:
            raise ValueError(
                f"--ff-hidden-init must be one of {FF_HIDDEN_INITS}, got {self.ff_hidden_init!r}"
            )
        self.validate_run_options()
        for arch in self.architectures:
            self.model_config(arch, self.nodes[0], self.densities[0], self.seeds[0], n_steps=1).validate()
        return self

    def model_config(
        self, architecture: str, nodes: int, p: float, seed: int, *, n_steps: int
    ) -> CortexRNNConfig | FeedForwardConfig:
        """The model of one member; ``n_steps`` is the dataset's sequence length (the feed-forward input is
        the whole sequence at once)."""
        seeds = derive_seeds(seed)
        topology, params = self.single_weight_topology("er")
        common: dict[str, Any] = {
            "n_nodes": nodes,
            "p": p,
            "activation": self.activation,
            "exact_edges": self.exact_edges,
            "topology": topology,
            "topology_params": params,
            "backend": self.backend,
            "connectivity_seed": seeds["connectivity_seed"],
            "weight_seed": seeds["weight_seed"],
        }
        if architecture == "recurrent":
            return CortexRNNConfig(**common)
        return FeedForwardConfig(**common, n_steps=n_steps, hidden_init=self.ff_hidden_init)


def expected_synapses(architecture: str, nodes: int, p: float) -> float:
    """Expected trainable sparse synapses: p · N(N−1) recurrent (no self-connections), p · N1 · N2 feed-forward."""
    if architecture == "recurrent":
        return p * nodes * (nodes - 1)
    n2 = nodes // 2
    return p * (nodes - n2) * n2


def _count_fields(runs: list[dict]) -> dict[str, dict[str, Any]]:
    mean, sd = summarize_counts([r["parameters"] for r in runs])
    return {"parameters": mean, "parameters_sd": sd}


def _label(architecture: str, nodes: int, p: float, seed: int) -> str:
    return f"{architecture}-n{nodes}-p{p:g}-seed{seed}"


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the process exit status (2 for bad options or missing data)."""
    config, folder = resolve_run_config(RecurrentVsFeedforwardConfig, argv, __doc__.split("\n")[0])
    splits, dataset_spec = load_run_data(config)
    if "recurrent" in config.architectures:  # the feed-forward control has no time loop
        cost = sequence_cost(splits.n_steps, max(config.nodes), len(splits.train),
                             density=max(config.densities), batch_size=config.batch_size)  # fmt: skip
        print(f"{EXPERIMENT}: cost of the largest recurrent network: {cost}")
    folder = folder or RunFolder.create(config.out, EXPERIMENT, dataclasses.asdict(config))
    print(f"{EXPERIMENT}: writing {folder.path}")
    members = [
        Member(
            label=_label(arch, nodes, p, seed),
            key=(arch, nodes, p),
            tags={"architecture": arch, "nodes": nodes, "density": p, "seed": seed},
            model_name=MODEL_NAMES[arch],
            model_config=config.model_config(arch, nodes, p, seed, n_steps=splits.n_steps),
            seed=seed,
            callbacks=(RecordCounts(built_counts),),
        )
        for nodes in config.nodes
        for arch in config.architectures
        for p in config.densities
        for seed in config.seeds
    ]
    results = run_members(config, folder, splits, dataset_spec, members)
    for m in members:
        results.runs[m.label]["parameters"] = m.callbacks[0].result(m, splits)
    groups = results.groups
    chance = chance_level(splits)
    summary = {
        "experiment": EXPERIMENT,
        "dataset": splits.description,
        "chance": chance,
        "configurations": [
            {
                "architecture": arch,
                "nodes": nodes,
                "layer_sizes": [nodes] if arch == "recurrent" else [nodes - nodes // 2, nodes // 2],
                "density": p,
                # p * possible pairs is the expectation of the default (Erdős–Rényi) wiring only.
                "expected_synapses": expected_synapses(arch, nodes, p) if config.topology is None else None,
                **_count_fields(runs),
                "runs": runs,
                "aggregate": aggregate_runs(runs),
            }
            for (arch, nodes, p), runs in groups.items()
        ],
        "topology": config.topology or "er",
        "topology_params": list(config.topology_params),
        "sparse_minus_dense": _sparse_minus_dense(groups),
        "paper": PAPER,
    }
    folder.write_summary(summary)
    panels: dict[str, dict] = {}
    for (arch, nodes, p), runs in groups.items():
        agg = aggregate_runs(runs)["test_acc_per_epoch"]
        epochs = list(range(len(agg["mean"])))
        # 2 x 2 design: colour for density, line style for architecture
        curve = (epochs, agg["mean"], agg["sd"], len(runs))
        panels.setdefault(f"N = {nodes:,}", {})[(f"p = {p:g}", arch)] = curve
    plot_accuracy_curves(
        folder.path / "accuracy.png",
        panels,
        chance=chance,
        title=f"recurrent vs feed-forward, {config.dataset}",
    )
    _print_table(summary)
    return 0


def _acc_at_epoch_1(runs: list[dict]) -> MeanSD:
    return MeanSD.of(r["test_acc_per_epoch"][1] for r in runs if len(r["test_acc_per_epoch"]) > 1)


def _sparse_minus_dense(groups: dict[tuple[str, int, float], list[dict]]) -> list[dict]:
    """Per architecture and size: mean test accuracy (after epoch 1 and best) of the sparsest p minus p = 1."""
    out = []
    for arch, nodes in dict.fromkeys((a, n) for a, n, _ in groups):
        ps = sorted(p for a, n, p in groups if (a, n) == (arch, nodes))
        if 1.0 not in ps or ps[0] == 1.0:
            continue
        sparse, dense = groups[(arch, nodes, ps[0])], groups[(arch, nodes, 1.0)]
        s1, d1 = _acc_at_epoch_1(sparse), _acc_at_epoch_1(dense)
        sb = MeanSD.of(r["best_test_acc"] for r in sparse)
        db = MeanSD.of(r["best_test_acc"] for r in dense)
        out.append(
            {
                "architecture": arch,
                "nodes": nodes,
                "sparse_density": ps[0],
                "epoch_1": None if s1.mean is None or d1.mean is None else s1.mean - d1.mean,
                "best": sb.mean - db.mean,
            }
        )
    return out


def _print_table(summary: dict) -> None:
    head = (
        f"{'architecture':>12} {'N':>7} {'p':>6} {'seeds':>5} {'synapses (built)':>21} {'expected':>10} "
        f"{'params (built)':>14} {'acc@1 (%)':>14} {'best (%)':>14}"
    )
    print(head)
    print("-" * len(head))
    for c in summary["configurations"]:
        best = c["aggregate"]["best_test_acc"]
        spread = c["parameters_sd"]["synapses"]
        syn = f"{c['parameters']['synapses']:,.0f} ± " + ("n/a" if spread is None else f"{spread:,.0f}")
        expected = "n/a" if c["expected_synapses"] is None else f"{c['expected_synapses']:,.0f}"
        print(
            f"{c['architecture']:>12} {c['nodes']:>7} {c['density']:>6g} {c['aggregate']['n_seeds']:>5} "
            f"{syn:>21} {expected:>10} {c['parameters']['parameters']:>14,.0f} "
            f"{_acc_at_epoch_1(c['runs']).format(100):>14} {MeanSD(best['mean'], best['sd'], best['n']).format(100):>14}"
        )
    print(
        "(synapses / params: the built models, mean ± SD over seeds; params = every trainable value that exists)"
    )
    if summary["sparse_minus_dense"]:
        print("\nsparse - dense (percentage points of mean test accuracy):")
        for d in summary["sparse_minus_dense"]:
            e1 = "n/a" if d["epoch_1"] is None else f"{100 * d['epoch_1']:+.1f}"
            print(
                f"  {d['architecture']:>12} N = {d['nodes']:<7} p = {d['sparse_density']:g}: after epoch 1 {e1}, "
                f"best {100 * d['best']:+.1f}"
            )
    print("\npaper (" + PAPER["source"] + "):")
    for finding in PAPER["findings"]:
        print(f"  - {finding}")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
