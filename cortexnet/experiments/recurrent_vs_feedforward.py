"""Recurrent vs feed-forward experiment (Fruengel & Oberlaender 2025, Fig. 3A and Fig. S3).

Trains, for every total hidden size N and connection probability p, the cortex-like RNN (one recurrent layer of
N nodes, images row by row) and the feed-forward control (two hidden layers of N/2 nodes joined by random
connections at the same p, the whole image as one vector), over several seeds, and reports test accuracy per
epoch and the sparse − dense difference per architecture::

    python -m cortexnet.experiments.recurrent_vs_feedforward                   # the paper: MNIST, N = 1,000, 10,000
    python -m cortexnet.experiments.recurrent_vs_feedforward --dataset digits --nodes 200 --epochs 3  # minutes, CPU

Writes ``runs/recurrent_vs_feedforward/<timestamp>-<hash>/`` with config.json, metrics.jsonl, summary.json,
accuracy.png and one checkpoint per member; ``--resume <that folder>`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from cortexnet.analysis import MeanSD, aggregate_runs, plot_accuracy_curves, summarize_run
from cortexnet.data import DATASETS, chance_level, load_dataset
from cortexnet.experiments.common import UsageError, build_parser, field, parse_config, run_cli
from cortexnet.models import CortexRNNConfig, FeedForwardConfig
from cortexnet.models.feedforward import FF_HIDDEN_INITS
from cortexnet.sparse import ACTIVATIONS, BACKENDS
from cortexnet.training import TrainConfig
from cortexnet.training.runs import RunFolder, check_output_writable, derive_seeds, train_member

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

#: Options that may differ when an interrupted run is resumed (everything else comes from its config.json).
RESUME_OVERRIDES = ("epochs", "device", "data_root", "download", "progress")


@dataclass(frozen=True)
class RecurrentVsFeedforwardConfig:
    """Options of ``python -m cortexnet.experiments.recurrent_vs_feedforward`` (also from ``--config``)."""

    nodes: tuple[int, ...] = field(
        (1_000, 10_000), "total hidden nodes N: recurrent N, feed-forward N/2 + N/2; each >= 2"
    )
    densities: tuple[float, ...] = field((1.0, 0.1), "connection probabilities p, each in (0, 1]")
    architectures: tuple[str, ...] = field(ARCHITECTURES, "architectures: recurrent and/or feedforward")
    seeds: tuple[int, ...] = field((0,), "run seeds (each: its own masks, weights, data order)")
    epochs: int = field(10, "training epochs, >= 1")
    batch_size: int = field(100, "batch size (paper: 100)")
    lr: float = field(1e-3, "Adam learning rate (paper: 1e-3)")
    activation: str = field("relu", "hidden activation: relu (paper) or tanh")
    ff_hidden_init: str = field(
        "paper",
        "feed-forward hidden-to-hidden init: paper (U(+-0.001), as the recurrent weights), dense_fan_in, "
        "sparse_fan_in",
    )
    dataset: str = field("mnist", "dataset name (digits is embedded and needs no download)")
    data_root: str | None = field(None, "data folder (default: $CORTEXNET_DATA, ./datasets, user cache)")
    download: bool = field(False, "download the dataset if it is missing (verified by sha256)")
    n_per_class: int | None = field(None, "limit training data to this many examples per class")
    val_fraction: float = field(0.0, "fraction of the training set held out for validation, in [0, 1)")
    split_seed: int = field(0, "seed of the validation split and the limited-data subset")
    eval_fractions: tuple[float, ...] = field((), "extra evaluations at these fractions of every epoch")
    early_stopping_patience: int | None = field(None, "stop after this many epochs without validation gain")
    backend: str = field("masked_dense", "sparse-weight backend of the sparse matrices")
    exact_edges: bool = field(False, "exactly round(p * possible) synapses instead of Bernoulli(p) per pair")
    device: str = field("auto", "auto (CUDA when present), cpu, cuda or cuda:K")
    out: str = field("runs", f"results root; the run is written to <out>/{EXPERIMENT}/<timestamp>-<hash>/")
    resume: str | None = field(None, "continue the interrupted run in this folder")
    progress: bool = field(True, "show progress bars")

    def validate(self) -> RecurrentVsFeedforwardConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        if not self.nodes or not self.densities or not self.architectures or not self.seeds:
            raise ValueError("--nodes, --densities, --architectures and --seeds each need at least one value")
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
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"--seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"--activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.ff_hidden_init not in FF_HIDDEN_INITS:
            raise ValueError(
                f"--ff-hidden-init must be one of {FF_HIDDEN_INITS}, got {self.ff_hidden_init!r}"
            )
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown --dataset {self.dataset!r}; known: {', '.join(DATASETS.names())}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.n_per_class is not None and self.n_per_class < 1:
            raise ValueError(f"--n-per-class must be >= 1, got {self.n_per_class}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown --backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        for arch in self.architectures:
            self.model_config(arch, self.nodes[0], self.densities[0], self.seeds[0], n_steps=1).validate()
        self.train_config(self.seeds[0]).validate()
        if self.resume is None:
            check_output_writable(self.out)
        return self

    def model_config(
        self, architecture: str, nodes: int, p: float, seed: int, *, n_steps: int
    ) -> CortexRNNConfig | FeedForwardConfig:
        """The model of one member; ``n_steps`` is the dataset's sequence length (the feed-forward input is
        the whole sequence at once)."""
        seeds = derive_seeds(seed)
        common: dict[str, Any] = {
            "n_nodes": nodes,
            "p": p,
            "activation": self.activation,
            "exact_edges": self.exact_edges,
            "backend": self.backend,
            "connectivity_seed": seeds["connectivity_seed"],
            "weight_seed": seeds["weight_seed"],
        }
        if architecture == "recurrent":
            return CortexRNNConfig(**common)
        return FeedForwardConfig(**common, n_steps=n_steps, hidden_init=self.ff_hidden_init)

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            eval_fractions=self.eval_fractions,
            early_stopping_patience=self.early_stopping_patience,
            data_seed=derive_seeds(seed)["data_seed"],
            device=self.device,
        )


def expected_synapses(architecture: str, nodes: int, p: float) -> float:
    """Expected trainable sparse synapses: p · N(N−1) recurrent (no self-connections), p · N1 · N2 feed-forward."""
    if architecture == "recurrent":
        return p * nodes * (nodes - 1)
    n2 = nodes // 2
    return p * (nodes - n2) * n2


def _label(architecture: str, nodes: int, p: float, seed: int) -> str:
    return f"{architecture}-n{nodes}-p{p:g}-seed{seed}"


def _resolve(argv: list[str] | None) -> tuple[RecurrentVsFeedforwardConfig, argparse.ArgumentParser]:
    parser = build_parser(
        RecurrentVsFeedforwardConfig,
        prog=f"python -m cortexnet.experiments.{EXPERIMENT}",
        description=__doc__.split("\n")[0],
    )
    try:
        config = parse_config(RecurrentVsFeedforwardConfig, parser, argv)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return config, parser


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the process exit status (2 for bad options or missing data)."""
    config, parser = _resolve(argv)
    if config.resume is not None:
        try:
            folder, saved = RunFolder.open(config.resume, EXPERIMENT)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        given = {k for k in vars(parser.parse_args(argv)) if k in RESUME_OVERRIDES}
        saved.update({k: getattr(config, k) for k in given})
        try:
            config = RecurrentVsFeedforwardConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
            )
            config = dataclasses.replace(config, resume=str(folder.path)).validate()
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot resume {folder.path}: {exc}") from exc
    splits = load_dataset(
        config.dataset,
        root=config.data_root,
        download=config.download,
        val_fraction=config.val_fraction,
        n_per_class=config.n_per_class,
        seed=config.split_seed,
    )
    if config.resume is None:
        folder = RunFolder.create(config.out, EXPERIMENT, dataclasses.asdict(config))
    print(f"{EXPERIMENT}: writing {folder.path}")
    chance = chance_level(splits)
    dataset_spec = {
        "name": config.dataset,
        "val_fraction": config.val_fraction,
        "n_per_class": config.n_per_class,
        "seed": config.split_seed,
        "description": splits.description,
    }
    records: list[dict] = []
    groups: dict[tuple[str, int, float], list[dict]] = {}
    for nodes in config.nodes:
        for arch in config.architectures:
            for p in config.densities:
                for seed in config.seeds:
                    tags = {"architecture": arch, "nodes": nodes, "density": p, "seed": seed}
                    label = _label(arch, nodes, p, seed)
                    state = train_member(
                        folder,
                        label,
                        model_name=MODEL_NAMES[arch],
                        model_config=config.model_config(arch, nodes, p, seed, n_steps=splits.n_steps),
                        splits=splits,
                        train_config=config.train_config(seed),
                        tags=tags,
                        finished_records=records,
                        dataset_spec=dataset_spec,
                        resume=config.resume is not None,
                        progress=config.progress,
                    )
                    records.extend({**tags, **r} for r in state.history)
                    run = summarize_run(state.history, chance=chance)
                    groups.setdefault((arch, nodes, p), []).append({"seed": seed, **run})
                    log.info("%s: best test accuracy %.4f", label, run["best_test_acc"])
    folder.write_metrics(records)
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
                "expected_synapses": expected_synapses(arch, nodes, p),
                "runs": runs,
                "aggregate": aggregate_runs(runs),
            }
            for (arch, nodes, p), runs in groups.items()
        ],
        "sparse_minus_dense": _sparse_minus_dense(groups),
        "paper": PAPER,
    }
    folder.write_summary(summary)
    panels: dict[str, dict] = {}
    for (arch, nodes, p), runs in groups.items():
        agg = aggregate_runs(runs)["test_acc_per_epoch"]
        epochs = list(range(len(agg["mean"])))
        panels.setdefault(f"N = {nodes}", {})[f"{arch}, p = {p:g}"] = (epochs, agg["mean"], agg["sd"])
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
    head = f"{'architecture':>12} {'N':>7} {'p':>6} {'seeds':>5} {'synapses':>12} {'acc@1 (%)':>14} {'best (%)':>14}"
    print(head)
    print("-" * len(head))
    for c in summary["configurations"]:
        best = c["aggregate"]["best_test_acc"]
        print(
            f"{c['architecture']:>12} {c['nodes']:>7} {c['density']:>6g} {c['aggregate']['n_seeds']:>5} "
            f"{c['expected_synapses']:>12.0f} {_acc_at_epoch_1(c['runs']).format(100):>14} "
            f"{MeanSD(best['mean'], best['sd'], best['n']).format(100):>14}"
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
