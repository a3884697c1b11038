"""Dale's-law experiment (Fruengel & Oberlaender 2025, Fig. 6B/F, Fig. S5B/C).

Trains Dale-compliant cortex-like RNNs of one or more sizes for several connection probabilities and inhibitory
fractions over several seeds and reports test accuracy per epoch and the learning delay::

    python -m cortexnet.experiments.dale --nodes 10000                      # the paper's MNIST setting
    python -m cortexnet.experiments.dale --nodes 2000 --dataset digits --epochs 3   # offline, minutes on a CPU

Beyond the paper, the same comparison on the cognitive tasks of Dale-RNN studies, with leaky units, noise and
a readout scored on the response period (``pip install "cortexnet[neurogym]"``)::

    python -m cortexnet.experiments.dale --nodes 500 --dataset neurogym --dataset-options task=pdm \
        --dt 20 --tau 100 --noise-std 0.1

Writes ``runs/dale/<timestamp>-<hash>/`` with config.json, metrics.jsonl, summary.json, accuracy.png
(every figure also as SVG), dynamics.png with ``--record-dynamics`` (and members/<label>/dynamics.json) and
one checkpoint per member; ``--resume <that folder>`` continues an interrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cortexnet.analysis import (
    GRAD_BIN_EDGES,
    GradientRecorder,
    SignTracker,
    aggregate_runs,
    delay_vs_size,
)
from cortexnet.analysis.plots import plot_accuracy_curves, plot_curves, plot_dynamics
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
from cortexnet.io import atomic_write_json
from cortexnet.models import CortexRNNConfig
from cortexnet.training.runs import Member, RunFolder, derive_seeds

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


@dataclass(frozen=True)
class DaleConfig(RunOptions):
    """Options of ``python -m cortexnet.experiments.dale`` (every option can also come from ``--config``)."""

    experiment: ClassVar[str] = "dale"

    nodes: tuple[int, ...] = field(
        (10_000,),
        "hidden (recurrent) nodes N, each >= 1; several sizes give the delay-vs-size figure (Fig. 6C)",
    )
    densities: tuple[float, ...] = field((1.0, 0.1), "recurrent connection probabilities p, each in (0, 1]")
    inhibitory_fractions: tuple[float, ...] = field((0.115,), "fractions of inhibitory nodes, each in [0, 1]")
    inhibitory_scale: float = field(1.0, "initial inhibitory weight magnitude multiplier (paper control: 10)")
    activation: str = field("relu", "hidden activation: relu or tanh")
    dale_mode: str = field(
        "clip", "clip: wrong-sign weights set to zero after each step (paper); abs: |W|*sign"
    )
    sparse_to_dense: bool = field(
        False, "initialise with the p-mask but let every weight train (paper Fig. S5B)"
    )
    delay_margin: float = field(0.05, "learning delay threshold: accuracy above chance + margin, in [0, 1)")
    exact_edges: bool = field(False, "exactly round(p*N*(N-1)) synapses instead of Bernoulli(p) per pair")
    record_dynamics: bool = field(
        False, "record recurrent gradient magnitudes and sign changes per epoch (paper Fig. 6E, S5A)"
    )
    dt: float = field(1.0, "integration step (ms), > 0; leaky units when --tau > --dt (alpha = dt / tau)")
    tau: float = field(
        1.0, "time constant (ms) of every node (of excitatory ones with --tau-inhibitory), >= dt"
    )
    tau_inhibitory: float | None = field(
        None, "time constant (ms) of inhibitory nodes, >= dt (default: --tau)"
    )
    noise_std: float = field(
        0.0, "recurrent noise sigma (continuous time; sqrt(2/alpha) sigma per step), >= 0"
    )
    noise_at_eval: bool = field(False, "keep the recurrent noise on at evaluation")
    init_state: str = field("zero", "initial state: zero (paper), learned or random (per sequence)")
    init_state_std: float = field(0.1, "sigma of the random initial state, > 0")
    balanced: bool = field(
        False,
        "balanced E/I initialisation: each node's initial E and I input weights cancel (supersedes "
        "--inhibitory-scale)",
    )

    def validate(self) -> DaleConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        if not self.nodes or min(self.nodes) < 1:
            raise ValueError(f"--nodes needs sizes >= 1, got {list(self.nodes)}")
        if not self.densities or not self.inhibitory_fractions:
            raise ValueError("--densities and --inhibitory-fractions each need at least one value")
        for p in self.densities:
            if not 0.0 < p <= 1.0:
                raise ValueError(f"--densities: connection probability must be in (0, 1], got {p}")
        for f in self.inhibitory_fractions:
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"--inhibitory-fractions: fraction must be in [0, 1], got {f}")
        check_distinct(
            nodes=self.nodes, densities=self.densities, inhibitory_fractions=self.inhibitory_fractions
        )
        if not 0.0 <= self.delay_margin < 1.0:
            raise ValueError(f"--delay-margin must be in [0, 1), got {self.delay_margin}")
        self.validate_run_options()
        for n in self.nodes:
            for p in self.densities:
                self.model_config(n, p, self.inhibitory_fractions[0], self.seeds[0]).validate()
        return self

    def model_config(
        self, nodes: int, p: float, fraction: float, seed: int, readout: str = "last"
    ) -> CortexRNNConfig:
        """The Dale-compliant network of one member (``readout`` "all" for data scored per step)."""
        seeds = derive_seeds(seed)
        topology, params = self.single_weight_topology("er")
        return CortexRNNConfig(
            n_nodes=nodes,
            p=p,
            activation=self.activation,
            dale=True,
            inhibitory_fraction=fraction,
            inhibitory_scale=self.inhibitory_scale,
            dale_mode=self.dale_mode,
            sparse_to_dense=self.sparse_to_dense,
            exact_edges=self.exact_edges,
            topology=topology,
            topology_params=params,
            backend=self.backend,
            connectivity_seed=seeds["connectivity_seed"],
            weight_seed=seeds["weight_seed"],
            dt=self.dt,
            tau=self.tau,
            tau_inhibitory=self.tau_inhibitory,
            noise_std=self.noise_std,
            noise_at_eval=self.noise_at_eval,
            init_state=self.init_state,
            init_state_std=self.init_state_std,
            balanced=self.balanced,
            readout=readout,
        )


def _label(n: int, p: float, fraction: float, seed: int, sizes: int) -> str:
    # One size: the labels (member folders) of runs made before --nodes took several sizes.
    return (f"n{n}-" if sizes > 1 else "") + f"p{p:g}-inh{fraction:g}-seed{seed}"


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the process exit status (2 for bad options or missing data)."""
    config, folder = resolve_run_config(DaleConfig, argv, __doc__.split("\n")[0])
    splits, dataset_spec = load_run_data(config)
    print("dale: cost: " + sequence_cost(splits.n_steps, max(config.nodes), len(splits.train),
                                         density=max(config.densities), batch_size=config.batch_size))  # fmt: skip
    folder = folder or RunFolder.create(config.out, config.experiment, dataclasses.asdict(config))
    print(f"dale: writing {folder.path}")
    sizes = len(config.nodes)
    members = [
        Member(
            label=_label(n, p, fraction, seed, sizes),
            key=(n, p, fraction),
            tags={"nodes": n, "density": p, "inhibitory_fraction": fraction, "seed": seed},
            model_name="cortex_rnn",
            model_config=config.model_config(n, p, fraction, seed, readout_for(splits)),
            seed=seed,
            callbacks=(GradientRecorder(), SignTracker()) if config.record_dynamics else (),
        )
        for n in config.nodes
        for fraction in config.inhibitory_fractions
        for p in config.densities
        for seed in config.seeds
    ]
    results = run_members(config, folder, splits, dataset_spec, members, margin=config.delay_margin)
    dynamics: dict[tuple, list[dict]] = {}
    if config.record_dynamics:
        for m in members:
            record = _dynamics_record(m.callbacks)
            results.runs[m.label]["dynamics"] = _dynamics(folder.member_dir(m.label), record)
            dynamics.setdefault(m.key, []).append(record)
    chance = chance_level(splits)
    configurations = [
        {"nodes": n, "density": p, "inhibitory_fraction": f, "runs": runs, "aggregate": aggregate_runs(runs)}
        for (n, p, f), runs in results.groups.items()
    ]
    summary = {
        "experiment": "dale",
        "dataset": splits.description,
        "nodes": list(config.nodes),
        "topology": config.topology or "er",
        "topology_params": list(config.topology_params),
        "chance": chance,
        "learning_delay_definition": (
            f"whole epochs before the one in which test accuracy first exceeds chance + {config.delay_margin}"
        ),
        "configurations": configurations,
        "paper": PAPER,
    }
    if sizes > 1:
        summary["delay_vs_size"] = _delay_vs_size(members, results, chance, config.delay_margin)
    folder.write_summary(summary)
    panels: dict[str, dict] = {}
    for c in configurations:
        agg = c["aggregate"]["test_acc_per_epoch"]
        epochs = list(range(len(agg["mean"])))
        panel = (
            f"N = {c['nodes']:,}, " if sizes > 1 else ""
        ) + f"{100 * c['inhibitory_fraction']:g} % inhibitory"
        n_seeds = c["aggregate"]["n_seeds"]
        panels.setdefault(panel, {})[f"p = {c['density']:g}"] = (epochs, agg["mean"], agg["sd"], n_seeds)
    sizes_text = ", ".join(f"{n:,}" for n in config.nodes)
    plot_accuracy_curves(
        folder.path / "accuracy.png",
        panels,
        chance=chance,
        title=f"Dale's law, N = {sizes_text}, {config.dataset}",
    )
    if sizes > 1:
        curves = {}
        for row in summary["delay_vs_size"]:
            # sizes at which some seed learned (where none did there is no mean; summary.json counts them)
            points = [
                (n, m, sd, k - never)
                for n, m, sd, k, never in zip(row["nodes"], row["mean"], row["sd"], row["seeds"],
                                              row["never_learned"], strict=True)
                if m is not None
            ]  # fmt: skip
            if points:
                n, m, sd, k = (list(v) for v in zip(*points, strict=True))
                curves[f"p = {row['density']:g}, {100 * row['inhibitory_fraction']:g} % inh."] = (n, m, sd, k)
        plot_curves(folder.path / "delay_vs_size.png", curves, xlabel="nodes N", ylabel="learning delay (epochs)",
                    title=f"Learning delay against size (Fig. 6C), {config.dataset}", integer_x=True, integer_y=True,
                    log_x=max(config.nodes) >= 10 * min(config.nodes))  # fmt: skip
    if dynamics:
        names = {key: _configuration_name(key, config) for key in dynamics}
        plot_dynamics(folder.path / "dynamics.png", {names[key]: recs for key, recs in dynamics.items()},
                      title=f"Recurrent weights during training (Fig. 6E, S5A), {config.dataset}")  # fmt: skip
    _print_table(summary)
    return 0


def _configuration_name(key: tuple[int, float, float], config: DaleConfig) -> str:
    """A readable label of a (nodes, density, inhibitory fraction) configuration, naming what varies."""
    n, p, f = key
    parts = [f"N = {n:,}"] if len(config.nodes) > 1 else []
    parts.append(f"p = {p:g}")
    if len(config.inhibitory_fractions) > 1:
        parts.append(f"{100 * f:g} % inh.")
    return ", ".join(parts)


def _delay_vs_size(members: list[Member], results, chance: float, margin: float) -> list[dict]:
    """Per (density, inhibitory fraction): the learning delay's mean and SD over seeds at each size, and how many
    seeds never learned (:func:`cortexnet.analysis.delay_vs_size`; a run that never learned counts there, not
    in the mean)."""
    histories: dict[tuple, list] = {}
    for m in members:
        n, p, f = m.key
        history = [r for r in results.records if r.get("seed") == m.seed and r.get("nodes") == n
                   and r.get("density") == p and r.get("inhibitory_fraction") == f]  # fmt: skip
        histories.setdefault((p, f), []).append((n, history))
    rows = []
    for (p, f), runs in histories.items():
        by_size = delay_vs_size(runs, chance=chance, margin=margin)
        sizes = sorted(by_size)
        rows.append({
            "density": p, "inhibitory_fraction": f, "nodes": sizes,
            "mean": [by_size[n]["mean"] for n in sizes], "sd": [by_size[n]["sd"] for n in sizes],
            "never_learned": [by_size[n]["never_learned"] for n in sizes], "seeds": [by_size[n]["n"] for n in sizes],
        })  # fmt: skip
    return rows


def _dynamics_record(recorders: Sequence) -> dict:
    """Per-epoch gradient and sign statistics of one member (a member finished before a resume has its
    recorders restored from its checkpoint), with the bin edges of the gradient histograms: the log10 |g|
    histogram of epoch k is ``gradients[k]["log10_hist_counts"]`` on ``log10_hist_edges``."""
    grad = next(r for r in recorders if isinstance(r, GradientRecorder))
    sign = next(r for r in recorders if isinstance(r, SignTracker))  # (a rewiring callback may follow them)
    return {
        "gradients": grad.epochs,
        "sign_changes": sign.epochs,
        "log10_hist_edges": GRAD_BIN_EDGES.tolist(),
    }


def _dynamics(member: Path, record: dict) -> dict:
    """Write one member's :func:`_dynamics_record` to ``dynamics.json`` beside its checkpoint; returns the
    summary's part of it."""
    atomic_write_json(member / "dynamics.json", record)
    return {"mean_abs_grad_per_epoch": [e["mean_abs_grad"] for e in record["gradients"]],
            "sign_changes": record["sign_changes"]}  # fmt: skip


def _print_table(summary: dict) -> None:
    from cortexnet.analysis import MeanSD

    head = (
        f"{'N':>7} {'p':>6} {'inhib.':>7} {'seeds':>5} {'acc@1 (%)':>14} {'best (%)':>14} {'delay (ep.)':>12}"
    )
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
            f"{c.get('nodes', ''):>7} {c['density']:>6g} {100 * c['inhibitory_fraction']:>6g}% {agg['n_seeds']:>5} "
            f"{acc1.format(100):>14} {MeanSD(best['mean'], best['sd'], best['n']).format(100):>14} "
            f"{delay:>12}"
        )


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
