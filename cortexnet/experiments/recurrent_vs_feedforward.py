"""Recurrent vs feed-forward experiment (Fruengel & Oberlaender 2025, Fig. 3A, 4A, 4B, S3 and S4).

Trains, for every total hidden size N and connection probability p, the cortex-like RNN (one recurrent layer of
N nodes, images row by row) and the feed-forward control (two hidden layers of N/2 nodes joined by random
connections at the same p, the whole image as one vector), over several seeds, and reports test accuracy per
epoch and the sparse − dense difference per architecture::

    python -m cortexnet.experiments.recurrent_vs_feedforward                   # the paper: MNIST, N = 1,000, 10,000
    python -m cortexnet.experiments.recurrent_vs_feedforward --dataset digits --nodes 200 --epochs 3  # minutes, CPU
    python -m cortexnet.experiments.recurrent_vs_feedforward --n-per-class-sweep 50 100 500 1000 0  # Fig. 4A / S4

Writes ``runs/recurrent_vs_feedforward/<timestamp>-<hash>/`` with config.json, metrics.jsonl, summary.json,
accuracy.png (and .svg), heatmap.png (one-epoch accuracy over N × p per architecture, for three or more sizes:
Fig. S3), limited_data.png (best test accuracy against the training-set size, with
``--n-per-class-sweep``: Fig. 4A / S4) and one checkpoint per member; ``--resume <that folder>`` continues an
interrupted run.
The summary's synapse and parameter counts are those of the built models (per seed in each run, mean ± SD per configuration:
Bernoulli masks differ from seed to seed), beside the expected synapse count p · possible pairs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cortexnet.analysis import MeanSD, aggregate_runs
from cortexnet.analysis.plots import plot_accuracy_curves, plot_curves, plot_heatmap
from cortexnet.config import field
from cortexnet.data import chance_level, sequence_cost
from cortexnet.experiments.common import (
    RecordCounts,
    RunOptions,
    check_distinct,
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
    n_per_class_sweep: tuple[int, ...] = field(
        (),
        "train every configuration on each of these training-set sizes, in examples per class (0: the full "
        "training set), instead of one --n-per-class (Fig. 4A / S4: 50 100 500 1000 0)",
    )

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
        if self.n_per_class_sweep:
            check_distinct(n_per_class_sweep=self.n_per_class_sweep)
            if min(self.n_per_class_sweep) < 0:
                raise ValueError(
                    f"--n-per-class-sweep: each size must be >= 1 examples per class, or 0 for the full "
                    f"training set, got {list(self.n_per_class_sweep)}"
                )
            if self.n_per_class is not None:
                raise ValueError(
                    f"--n-per-class {self.n_per_class} and --n-per-class-sweep both set the training-set size: "
                    "give one (add the size to the sweep)"
                )
        self.validate_run_options()
        for arch in self.architectures:
            self.model_config(arch, self.nodes[0], self.densities[0], self.seeds[0], n_steps=1).validate()
        return self

    def data_sizes(self) -> tuple[int | None, ...]:
        """The training-set sizes trained, in examples per class (None: the full training set)."""
        if not self.n_per_class_sweep:
            return (self.n_per_class,)
        return tuple(k or None for k in self.n_per_class_sweep)

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


def _label(architecture: str, nodes: int, p: float, seed: int, data: str = "") -> str:
    return f"{architecture}-n{nodes}-p{p:g}{data}-seed{seed}"


def _size_tag(n_per_class: int | None) -> str:
    """The member-label part naming a training-set size of a sweep: ``-pc50``, ``-pcall`` (the full set)."""
    return f"-pc{n_per_class if n_per_class is not None else 'all'}"


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the process exit status (2 for bad options or missing data)."""
    config, folder = resolve_run_config(RecurrentVsFeedforwardConfig, argv, __doc__.split("\n")[0])
    sweep = bool(config.n_per_class_sweep)
    # Every training-set size is loaded (and so checked) before any member trains.
    data = {k: load_run_data(dataclasses.replace(config, n_per_class=k)) for k in config.data_sizes()}
    largest = max((d[0] for d in data.values()), key=lambda s: len(s.train))
    if "recurrent" in config.architectures:  # the feed-forward control has no time loop
        cost = sequence_cost(largest.n_steps, max(config.nodes), len(largest.train),
                             density=max(config.densities), batch_size=config.batch_size)  # fmt: skip
        print(f"{EXPERIMENT}: cost of the largest recurrent network: {cost}")
    folder = folder or RunFolder.create(config.out, EXPERIMENT, dataclasses.asdict(config))
    print(f"{EXPERIMENT}: writing {folder.path}")
    results, members, per_class = None, [], {}
    for k, (splits, dataset_spec) in data.items():
        group = [
            Member(
                label=_label(arch, nodes, p, seed, _size_tag(k) if sweep else ""),
                key=(arch, nodes, p, k),
                tags={"architecture": arch, "nodes": nodes, "density": p, "seed": seed}
                | ({"n_per_class": k} if sweep else {}),
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
        results = run_members(config, folder, splits, dataset_spec, group, results=results)
        for m in group:
            results.runs[m.label]["parameters"] = m.callbacks[0].result(m, splits)
        members += group
        # The x of the limited-data figure: the examples per class actually trained on (the full set: its mean).
        per_class[k] = len(splits.train) / splits.n_classes if k is None else k
    groups = results.groups
    chance = chance_level(largest)
    summary = {
        "experiment": EXPERIMENT,
        "dataset": largest.description,
        "chance": chance,
        "configurations": [
            {
                "architecture": arch,
                "nodes": nodes,
                "layer_sizes": [nodes] if arch == "recurrent" else [nodes - nodes // 2, nodes // 2],
                "density": p,
                "n_per_class": k,
                "train_examples": len(data[k][0].train),
                # p * possible pairs is the expectation of the default (Erdős–Rényi) wiring only.
                "expected_synapses": expected_synapses(arch, nodes, p) if config.topology is None else None,
                **_count_fields(runs),
                "runs": runs,
                "aggregate": aggregate_runs(runs),
            }
            for (arch, nodes, p, k), runs in groups.items()
        ],
        "topology": config.topology or "er",
        "topology_params": list(config.topology_params),
        "sparse_minus_dense": _sparse_minus_dense(groups),
        "paper": PAPER,
    }
    folder.write_summary(summary)
    _figures(folder, config, groups, chance=chance, per_class=per_class)
    _print_table(summary)
    return 0


def _data_name(k: int | None) -> str:
    return "full training set" if k is None else f"{k:,} per class"


def _figures(folder: RunFolder, config: RecurrentVsFeedforwardConfig, groups: dict, *, chance: float,
             per_class: dict[int | None, float]) -> None:  # fmt: skip
    """accuracy.png (learning curves, a panel per size and training-set size), heatmap.png (one-epoch accuracy
    over N × p, a panel per architecture: Fig. 3A / S3) and, for a training-set sweep, limited_data.png (best
    test accuracy against examples per class: Fig. 4A / S4)."""
    sweep = bool(config.n_per_class_sweep)
    panels: dict[str, dict] = {}
    for (arch, nodes, p, k), runs in groups.items():
        agg = aggregate_runs(runs)["test_acc_per_epoch"]
        epochs = list(range(len(agg["mean"])))
        # 2 x 2 design: colour for density, line style for architecture
        curve = (epochs, agg["mean"], agg["sd"], len(runs))
        panel = f"N = {nodes:,}" + (f", {_data_name(k)}" if sweep else "")
        panels.setdefault(panel, {})[(f"p = {p:g}", arch)] = curve
    plot_accuracy_curves(folder.path / "accuracy.png", panels, chance=chance,
                         title=f"recurrent vs feed-forward, {config.dataset}")  # fmt: skip
    sizes, densities = sorted(config.nodes), sorted(config.densities, reverse=True)
    if len(sizes) > 2 and len(densities) > 1:  # a grid (Fig. 2C / S3); two sizes are read off accuracy.png
        for k in config.data_sizes():
            grids = {}
            for arch in config.architectures:
                grid = np.full((len(densities), len(sizes)), np.nan)
                for (a, nodes, p, kk), runs in groups.items():
                    acc1 = _acc_at_epoch_1(runs)
                    if a == arch and kk == k and acc1.mean is not None:
                        grid[densities.index(p), sizes.index(nodes)] = 100 * acc1.mean
                grids[arch] = grid
            name = "heatmap.png" if not sweep else f"heatmap{_size_tag(k)}.png"
            data = "" if not sweep else f", {_data_name(k)}"
            plot_heatmap(folder.path / name, grids, x=[f"{n:,}" for n in sizes], y=[f"{p:g}" for p in densities],
                         xlabel="total hidden nodes N", ylabel="connection probability p",
                         value_label="test accuracy after 1 epoch (%)",
                         title=f"One-epoch accuracy over N × p ({config.dataset}{data}, {len(config.seeds)} seeds)")  # fmt: skip
    if sweep:
        curves: dict[tuple[str, str], tuple] = {}
        for arch in config.architectures:
            for nodes in config.nodes:
                for p in config.densities:
                    stats = [(per_class[k], MeanSD.of(r["best_test_acc"] for r in groups[(arch, nodes, p, k)]))
                             for k in config.data_sizes()]  # fmt: skip
                    stats.sort(key=lambda t: t[0])
                    name = f"N = {nodes:,}" + (f", {arch}" if len(config.architectures) > 1 else "")
                    curves[(f"p = {p:g}", name)] = ([x for x, _ in stats], [m.mean for _, m in stats],
                                                    [m.sd or 0.0 for _, m in stats], len(config.seeds))  # fmt: skip
        full = " (the largest: the full training set)" if None in config.data_sizes() else ""
        plot_curves(folder.path / "limited_data.png", curves, xlabel=f"training examples per class{full}",
                    ylabel="best test accuracy (%, selected on the test set)", scale=100.0, chance=chance,
                    log_x=True, integer_x=True, title=f"Limited data ({config.dataset})")  # fmt: skip


def _acc_at_epoch_1(runs: list[dict]) -> MeanSD:
    return MeanSD.of(r["test_acc_per_epoch"][1] for r in runs if len(r["test_acc_per_epoch"]) > 1)


def _sparse_minus_dense(groups: dict[tuple[str, int, float, int | None], list[dict]]) -> list[dict]:
    """Per architecture, size and training-set size: mean test accuracy (after epoch 1 and best) of the
    sparsest p minus p = 1."""
    out = []
    for arch, nodes, k in dict.fromkeys((a, n, k) for a, n, _, k in groups):
        ps = sorted(p for a, n, p, kk in groups if (a, n, kk) == (arch, nodes, k))
        if 1.0 not in ps or ps[0] == 1.0:
            continue
        sparse, dense = groups[(arch, nodes, ps[0], k)], groups[(arch, nodes, 1.0, k)]
        s1, d1 = _acc_at_epoch_1(sparse), _acc_at_epoch_1(dense)
        sb = MeanSD.of(r["best_test_acc"] for r in sparse)
        db = MeanSD.of(r["best_test_acc"] for r in dense)
        out.append(
            {
                "architecture": arch,
                "nodes": nodes,
                "n_per_class": k,
                "sparse_density": ps[0],
                "epoch_1": None if s1.mean is None or d1.mean is None else s1.mean - d1.mean,
                "best": sb.mean - db.mean,
            }
        )
    return out


def _print_table(summary: dict) -> None:
    with_val = any(c["aggregate"].get("test_acc_at_best_val", {}).get("mean") is not None
                   for c in summary["configurations"])  # fmt: skip
    sweep = len({c["n_per_class"] for c in summary["configurations"]}) > 1
    head = (
        f"{'architecture':>12} {'N':>7} {'p':>6} {'train':>6} {'seeds':>5} {'synapses (built)':>21} "
        f"{'expected':>10} {'params (built)':>14} {'acc@1 (%)':>14} {'best* (%)':>14}"
        + (f" {'test@val (%)':>14}" if with_val else "")
    )
    print(head)
    print("-" * len(head))
    for c in summary["configurations"]:
        agg = c["aggregate"]
        spread = c["parameters_sd"]["synapses"]
        syn = f"{c['parameters']['synapses']:,.0f} ± " + ("n/a" if spread is None else f"{spread:,.0f}")
        expected = "n/a" if c["expected_synapses"] is None else f"{c['expected_synapses']:,.0f}"
        cells = [MeanSD(agg[key]["mean"], agg[key]["sd"], agg[key]["n"]).format(100)
                 for key in ("best_test_acc", "test_acc_at_best_val") if key in agg]  # fmt: skip
        print(
            f"{c['architecture']:>12} {c['nodes']:>7} {c['density']:>6g} {c['train_examples']:>6} "
            f"{agg['n_seeds']:>5} {syn:>21} {expected:>10} {c['parameters']['parameters']:>14,.0f} "
            f"{_acc_at_epoch_1(c['runs']).format(100):>14} " + " ".join(f"{v:>14}" for v in cells)
        )
    print(
        "(train: training examples; synapses / params: the built models, mean ± SD over seeds; params = every "
        "trainable value that exists; acc@1: after one epoch; best*: the best epoch selected on the test set, as "
        "the paper reports it"
        + ("; test@val: test accuracy at the best validation epoch)" if with_val else ")")
    )
    if summary["sparse_minus_dense"]:
        print("\nsparse - dense (percentage points of mean test accuracy):")
        for d in summary["sparse_minus_dense"]:
            e1 = "n/a" if d["epoch_1"] is None else f"{100 * d['epoch_1']:+.1f}"
            data = f" ({_data_name(d['n_per_class'])})" if sweep else ""
            print(
                f"  {d['architecture']:>12} N = {d['nodes']:<7} p = {d['sparse_density']:g}{data}: after epoch 1 "
                f"{e1}, best* {100 * d['best']:+.1f}"
            )
    print("\npaper (" + PAPER["source"] + "):")
    for finding in PAPER["findings"]:
        print(f"  - {finding}")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
