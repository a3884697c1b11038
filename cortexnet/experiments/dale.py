"""Dale's-law experiment (Fruengel & Oberlaender 2025, Fig. 6B/F, Fig. S5B/C).

Trains Dale-compliant cortex-like RNNs of one size for several connection probabilities and inhibitory
fractions over several seeds and reports test accuracy per epoch and the learning delay::

    python -m cortexnet.experiments.dale --nodes 10000                      # the paper's MNIST setting
    python -m cortexnet.experiments.dale --nodes 2000 --dataset digits --epochs 3   # offline, minutes on a CPU

Writes ``runs/dale/<timestamp>-<hash>/`` with config.json, metrics.jsonl, summary.json, accuracy.png and one
checkpoint per member; ``--resume <that folder>`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from cortexnet.analysis import (
    GradientRecorder,
    SignTracker,
    aggregate_runs,
    plot_accuracy_curves,
    summarize_run,
)
from cortexnet.data import DATASETS, chance_level, load_dataset, sequence_cost
from cortexnet.experiments.common import (
    UsageError,
    build_parser,
    field,
    parse_config,
    parse_key_values,
    run_cli,
)
from cortexnet.io import atomic_write_json
from cortexnet.models import CortexRNNConfig
from cortexnet.sparse import BACKENDS
from cortexnet.training import TrainConfig, load_checkpoint
from cortexnet.training.fit import CHECKPOINT_NAME
from cortexnet.training.runs import RunFolder, check_output_writable, derive_seeds, train_member

log = logging.getLogger(__name__)

#: What the paper reports for this experiment (REFERENCE.md §1, "Dale"); printed beside our numbers.
PAPER = {
    "source": "Fruengel & Oberlaender 2025, Front. Neural Circuits 19:1528309, Fig. 6B/C/F and Fig. S5B/C",
    "setting": "MNIST, N = 10,000, 11.5 % inhibitory, Adam 1e-3, batch 100",
    "findings": [
        "dense (p = 1.0) Dale networks stay at chance for tens of epochs (learning delay); the delay grows with N",
        "sparse (p = 0.1) Dale networks show no delay at any size",
        "50 % inhibitory nodes, or 10x inhibitory initial weights: no delay at any density",
        "sparse-to-dense (p = 0.1 init, all weights trainable): no delay, but slower to peak",
    ],
}

#: Options that may differ when an interrupted run is resumed (everything else comes from its config.json).
RESUME_OVERRIDES = ("epochs", "device", "data_root", "download", "progress")


@dataclass(frozen=True)
class DaleConfig:
    """Options of ``python -m cortexnet.experiments.dale`` (every option can also come from ``--config``)."""

    nodes: int = field(10_000, "hidden (recurrent) nodes N, >= 1")
    densities: tuple[float, ...] = field((1.0, 0.1), "recurrent connection probabilities p, each in (0, 1]")
    inhibitory_fractions: tuple[float, ...] = field((0.115,), "fractions of inhibitory nodes, each in [0, 1]")
    seeds: tuple[int, ...] = field(
        (0,), "run seeds (each: its own mask, E/I identities, weights, data order)"
    )
    epochs: int = field(10, "training epochs, >= 1")
    batch_size: int = field(100, "batch size (paper: 100)")
    lr: float = field(1e-3, "Adam learning rate (paper: 1e-3)")
    inhibitory_scale: float = field(1.0, "initial inhibitory weight magnitude multiplier (paper control: 10)")
    activation: str = field("relu", "hidden activation: relu or tanh")
    dale_mode: str = field(
        "clip", "clip: wrong-sign weights set to zero after each step (paper); abs: |W|*sign"
    )
    sparse_to_dense: bool = field(
        False, "initialise with the p-mask but let every weight train (paper Fig. S5B)"
    )
    dataset: str = field("mnist", "dataset name (digits is embedded and needs no download)")
    data_root: str | None = field(None, "data folder (default: $CORTEXNET_DATA, ./datasets, user cache)")
    download: bool = field(False, "download the dataset if it is missing (verified by sha256)")
    dataset_options: tuple[str, ...] = field(
        (), "dataset-specific key=value options, e.g. seq_len=300 subjects=[0,1] for sleep-edf"
    )
    n_per_class: int | None = field(None, "limit training data to this many examples per class")
    val_fraction: float = field(0.0, "fraction of the training set held out for validation, in [0, 1)")
    split_seed: int = field(0, "seed of the validation split and the limited-data subset")
    eval_fractions: tuple[float, ...] = field((), "extra evaluations at these fractions of every epoch")
    early_stopping_patience: int | None = field(None, "stop after this many epochs without validation gain")
    delay_margin: float = field(0.05, "learning delay threshold: accuracy above chance + margin, in [0, 1)")
    backend: str = field("masked_dense", "sparse-weight backend for W_rec")
    exact_edges: bool = field(False, "exactly round(p*N*(N-1)) synapses instead of Bernoulli(p) per pair")
    device: str = field("auto", "auto (CUDA when present), cpu, cuda or cuda:K")
    out: str = field("runs", "results root; the run is written to <out>/dale/<timestamp>-<hash>/")
    resume: str | None = field(None, "continue the interrupted run in this folder")
    record_dynamics: bool = field(
        False, "record recurrent gradient magnitudes and sign changes per epoch (paper Fig. 6E, S5A)"
    )
    progress: bool = field(True, "show progress bars")

    def validate(self) -> DaleConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        if self.nodes < 1:
            raise ValueError(f"--nodes must be >= 1, got {self.nodes}")
        if not self.densities or not self.inhibitory_fractions or not self.seeds:
            raise ValueError("--densities, --inhibitory-fractions and --seeds each need at least one value")
        for p in self.densities:
            if not 0.0 < p <= 1.0:
                raise ValueError(f"--densities: connection probability must be in (0, 1], got {p}")
        for f in self.inhibitory_fractions:
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"--inhibitory-fractions: fraction must be in [0, 1], got {f}")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"--seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown --dataset {self.dataset!r}; known: {', '.join(DATASETS.names())}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.n_per_class is not None and self.n_per_class < 1:
            raise ValueError(f"--n-per-class must be >= 1, got {self.n_per_class}")
        if not 0.0 <= self.delay_margin < 1.0:
            raise ValueError(f"--delay-margin must be in [0, 1), got {self.delay_margin}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown --backend {self.backend!r}; known: {', '.join(BACKENDS.names())}")
        for p in self.densities:
            self.model_config(p, self.inhibitory_fractions[0], self.seeds[0]).validate()
        self.train_config(self.seeds[0]).validate()
        if self.resume is None:
            check_output_writable(self.out)
        return self

    def model_config(self, p: float, fraction: float, seed: int) -> CortexRNNConfig:
        seeds = derive_seeds(seed)
        return CortexRNNConfig(
            n_nodes=self.nodes,
            p=p,
            activation=self.activation,
            dale=True,
            inhibitory_fraction=fraction,
            inhibitory_scale=self.inhibitory_scale,
            dale_mode=self.dale_mode,
            sparse_to_dense=self.sparse_to_dense,
            exact_edges=self.exact_edges,
            backend=self.backend,
            connectivity_seed=seeds["connectivity_seed"],
            weight_seed=seeds["weight_seed"],
        )

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


def _label(p: float, fraction: float, seed: int) -> str:
    return f"p{p:g}-inh{fraction:g}-seed{seed}"


def _resolve(argv: list[str] | None) -> tuple[DaleConfig, argparse.ArgumentParser]:
    parser = build_parser(
        DaleConfig, prog="python -m cortexnet.experiments.dale", description=__doc__.split("\n")[0]
    )
    try:
        config = parse_config(DaleConfig, parser, argv)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return config, parser


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the process exit status (2 for bad options or missing data)."""
    config, parser = _resolve(argv)
    if config.resume is not None:
        try:
            folder, saved = RunFolder.open(config.resume, "dale")
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        given = {k for k in vars(parser.parse_args(argv)) if k in RESUME_OVERRIDES}
        saved.update({k: getattr(config, k) for k in given})
        try:
            config = DaleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
            config = dataclasses.replace(config, resume=str(folder.path)).validate()
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot resume {folder.path}: {exc}") from exc
    options = parse_key_values(config.dataset_options, option="--dataset-options")
    try:
        splits = load_dataset(
            config.dataset,
            root=config.data_root,
            download=config.download,
            val_fraction=config.val_fraction,
            n_per_class=config.n_per_class,
            seed=config.split_seed,
            options=options or None,
        )
    except (ValueError, TypeError) as exc:  # bad dataset options: a usage error, raised before any I/O
        raise UsageError(str(exc)) from exc
    print("dale: cost: " + sequence_cost(splits.n_steps, config.nodes, len(splits.train),
                                         density=max(config.densities), batch_size=config.batch_size))  # fmt: skip
    if config.resume is None:
        folder = RunFolder.create(config.out, "dale", dataclasses.asdict(config))
    print(f"dale: writing {folder.path}")
    chance = chance_level(splits)
    dataset_spec = {
        "name": config.dataset,
        "val_fraction": config.val_fraction,
        "n_per_class": config.n_per_class,
        "seed": config.split_seed,
        "options": options,
        "description": splits.description,
    }
    records: list[dict] = []
    groups: dict[tuple[float, float], list[dict]] = {}
    for fraction in config.inhibitory_fractions:
        for p in config.densities:
            for seed in config.seeds:
                tags = {"density": p, "inhibitory_fraction": fraction, "seed": seed}
                recorders = [GradientRecorder(), SignTracker()] if config.record_dynamics else []
                state = train_member(
                    folder,
                    _label(p, fraction, seed),
                    model_name="cortex_rnn",
                    model_config=config.model_config(p, fraction, seed),
                    splits=splits,
                    train_config=config.train_config(seed),
                    tags=tags,
                    finished_records=records,
                    dataset_spec=dataset_spec,
                    resume=config.resume is not None,
                    progress=config.progress,
                    callbacks=recorders,
                )
                records.extend({**tags, **r} for r in state.history)
                run = summarize_run(state.history, chance=chance, margin=config.delay_margin)
                if config.record_dynamics:
                    run["dynamics"] = _dynamics(folder.member_dir(_label(p, fraction, seed)), recorders)
                groups.setdefault((p, fraction), []).append({"seed": seed, **run})
                log.info("%s: best test accuracy %.4f, delay %s", _label(p, fraction, seed),
                         run["best_test_acc"], run["learning_delay"])  # fmt: skip
    folder.write_metrics(records)
    summary = {
        "experiment": "dale",
        "dataset": splits.description,
        "nodes": config.nodes,
        "chance": chance,
        "learning_delay_definition": (
            f"whole epochs before the one in which test accuracy first exceeds chance + {config.delay_margin}"
        ),
        "configurations": [
            {"density": p, "inhibitory_fraction": f, "runs": runs, "aggregate": aggregate_runs(runs)}
            for (p, f), runs in groups.items()
        ],
        "paper": PAPER,
    }
    folder.write_summary(summary)
    panels: dict[str, dict] = {}
    for (p, f), runs in groups.items():
        agg = aggregate_runs(runs)["test_acc_per_epoch"]
        epochs = list(range(len(agg["mean"])))
        panels.setdefault(f"{100 * f:g} % inhibitory", {})[f"p = {p:g}"] = (epochs, agg["mean"], agg["sd"])
    plot_accuracy_curves(
        folder.path / "accuracy.png",
        panels,
        chance=chance,
        title=f"Dale's law, N = {config.nodes}, {config.dataset}",
    )
    _print_table(summary)
    return 0


def _dynamics(member: Path, recorders: list) -> dict:
    """Per-epoch gradient and sign statistics of one member, written to ``dynamics.json`` beside its
    checkpoint. A member finished before a resume is not retrained: its record comes from its checkpoint."""
    grad, sign = recorders
    if not grad.epochs:
        saved = load_checkpoint(member / CHECKPOINT_NAME).get("callbacks", [])
        # callbacks[0] is the run folder's metrics sink; the recorders follow in order.
        if len(saved) >= 3:
            grad.load_state_dict(saved[1])
            sign.load_state_dict(saved[2])
    out = {"gradients": grad.epochs, "sign_changes": sign.epochs}
    atomic_write_json(member / "dynamics.json", out)
    return {"mean_abs_grad_per_epoch": [e["mean_abs_grad"] for e in grad.epochs], "sign_changes": sign.epochs}


def _print_table(summary: dict) -> None:
    from cortexnet.analysis import MeanSD

    head = f"{'p':>6} {'inhib.':>7} {'seeds':>5} {'acc@1 (%)':>14} {'best (%)':>14} {'delay (ep.)':>12}"
    print(head)
    print("-" * len(head))
    for c in summary["configurations"]:
        agg = c["aggregate"]
        acc1 = MeanSD.of(r["test_acc_per_epoch"][1] for r in c["runs"] if len(r["test_acc_per_epoch"]) > 1)
        best = agg["best_test_acc"]
        d = agg["learning_delay"]
        delay = (
            "never"
            if d["mean"] is None
            else f"{d['mean']:.1f}" + (f" (+{d['never_learned']} never)" if d["never_learned"] else "")
        )
        print(
            f"{c['density']:>6g} {100 * c['inhibitory_fraction']:>6g}% {agg['n_seeds']:>5} {acc1.format(100):>14} "
            f"{MeanSD(best['mean'], best['sd'], best['n']).format(100):>14} {delay:>12}"
        )


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
