"""Network-science initialisers on a static sparse MLP and on the recurrent cortex (issue 11; seeds 002-004).

Trains the static sparse MLP of the DNM / CHTs experiments (REFERENCE.md §3: 784-1568-1568-1568-10 on MNIST,
99 % sparsity, every weight but the classifier's sparse) with each topology of ``--topologies`` — ``full`` (the
FC baseline), ``er`` (random), ``bsw``, ``bsf``, ``brf``, ``dnm``, ``ramanujan`` (any registered topology,
e.g. ``erk`` or ``g2g``, may be named) — over several seeds, and compares final / best test accuracy, learning
delay and parameter counts with the DNM paper's static table where the dataset matches. With
``--recurrent-nodes N`` it also trains the cortex-like RNN (:class:`~cortexnet.models.CortexRNN`, N nodes) with
each non-``full`` topology at ``--recurrent-density``, Dale's law on and/or off (``--recurrent-dale on off``):
does a structured recurrent topology learn faster than ER at the same density?::

    python -m cortexnet.experiments.topologies --download            # REFERENCE.md §3 scale: MNIST, 3 x 1568
    python -m cortexnet.experiments.topologies --config experiments/topologies_digits.toml   # minutes, CPU

CSTI (``csti``, correlated sparse topological initialisation) is wired from the |Pearson r| of the training
inputs: a seeded sample of 2,000 flattened training sequences (``--split-seed``) is its ``activity``, tiled onto
the deeper layers as the authors do; the recurrent cortex has no data for its hidden nodes, so CSTI runs on the
MLP only. SNIP (``snip``) keeps the global top |g * w| of each member's dense twin at initialisation, scored on
one seeded batch of ``--batch-size`` training samples (Lee et al. 2019); a layer SNIP leaves without links is
refused. Data-derived parameters are wired by :func:`~cortexnet.experiments.common.wire_data_params`. The masks
are static (no DST: no pruning/regrowth).

Training: the shared options plus ``--optimizer``, ``--momentum`` and ``--weight-decay``; the defaults follow
the CHTs MLP recipe (SGD, momentum 0.9, weight decay 5e-4, lr 0.025, batch 32, 100 epochs); its linear decay to
0.01x by 90 % of the steps is ``--lr-schedule linear`` (the MNIST config sets it; the default is constant).
All members of a run (MLP and recurrent) share one optimiser setting.

Writes ``runs/topologies/<timestamp>-<hash>/`` with config.json, metrics.jsonl, summary.json, accuracy.png (and
.svg) and one checkpoint per member; ``--resume <folder>`` continues. The summary gives, per model and topology, final
and best test accuracy as mean ± SD and standard error (SE = SD / sqrt(seeds), as DNM reports), the learning
delay, and the built models' parameter counts (active synapses only).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from cortexnet.analysis import MeanSD, aggregate_runs
from cortexnet.analysis.plots import plot_accuracy_curves
from cortexnet.config import UsageError, field
from cortexnet.connectivity import TOPOLOGIES, data_params
from cortexnet.data import chance_level
from cortexnet.experiments.common import (
    RecordCounts,
    SparseMLPRecipe,
    check_memory,
    load_run_data,
    resolve_run_config,
    run_cli,
    run_members,
    summarize_counts,
    wire_data_params,
    with_data_placeholders,
)
from cortexnet.experiments.paper import table
from cortexnet.layers import SPARSE_LINEAR_INITS
from cortexnet.models import CortexRNNConfig, SparseMLPConfig, built_counts
from cortexnet.models.sparse_mlp import sparse_mlp_connectivities
from cortexnet.sparse import ACTIVATIONS
from cortexnet.training.runs import Member, RunFolder, derive_seeds

log = logging.getLogger(__name__)

EXPERIMENT = "topologies"
DEFAULT_TOPOLOGIES = ("full", "er", "bsw", "bsf", "brf", "dnm", "csti", "snip", "ramanujan")
DALE_CHOICES = ("on", "off")

#: What the DNM paper reports (REFERENCE.md §3); printed beside our numbers. Our names for its rows.
PAPER: dict[str, Any] = {
    "source": "DNM (seed 004), static 99 %-sparse MLP table, via REFERENCE.md §3",
    "setting": (
        "784-1568-1568-1568-10 MLP (MNIST), 99 % sparse on every weight but the classifier's, static masks; "
        "CHTs recipe: SGD momentum 0.9, weight decay 5e-4, lr 0.025 decayed linearly to 0.01x by 90 % of the "
        "epochs, batch 32, 100 epochs; mean of 3 seeds ± standard error"
    ),
    "static_accuracy": table("dnm_static"),  # %, per dataset: our topology names (experiments/paper.py)
    "spread": "standard error over 3 seeds (the values are not given in REFERENCE.md)",
    "comparison_note": (
        "ours with experiments/topologies_mnist.toml: the same architecture, optimiser and linear learning-rate "
        "decay, and our readings of BSW/BSF/BRF/DNM/CSTI/SNIP (DST.md); the paper's FC row is dense, 'random' is ER"
    ),
}


@dataclass(frozen=True)
class TopologiesConfig(SparseMLPRecipe):
    """Options of ``python -m cortexnet.experiments.topologies`` (every option can also come from ``--config``)."""

    experiment: ClassVar[str] = EXPERIMENT

    topologies: tuple[str, ...] = field(
        DEFAULT_TOPOLOGIES, "registered topologies of the sparse MLP (full = the FC baseline)"
    )
    hidden: tuple[int, ...] = field((1568, 1568, 1568), "MLP hidden widths (REFERENCE.md §3: 1568 1568 1568)")
    density: float = field(0.01, "MLP connection probability in (0, 1] (0.01 = 99 % sparse; erk: overall)")
    activation: str = field("relu", "hidden activation: relu or tanh")
    init: str = field("sparse_fan_in", f"MLP sparse-weight initialisation, one of {SPARSE_LINEAR_INITS}")
    exact_edges: bool = field(True, "exact rounded link totals (ER: round(p * possible) per matrix)")
    recurrent_nodes: int | None = field(
        None,
        "also train the recurrent cortex (CortexRNN) with this many nodes per non-full topology (none: skip)",
    )
    recurrent_density: float = field(0.1, "connection probability of the recurrent cortex, in (0, 1]")
    recurrent_dale: tuple[str, ...] = field(
        DALE_CHOICES, "Dale's law on the recurrent cortex: on and/or off (one member set per value)"
    )

    def validate(self) -> TopologiesConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        if not self.topologies:
            raise ValueError("--topologies needs at least one registered topology")
        for t in self.topologies:
            if t not in TOPOLOGIES:
                raise ValueError(
                    f"--topologies: unknown topology {t!r}; known: {', '.join(TOPOLOGIES.names())}"
                )
        if len(set(self.topologies)) != len(self.topologies):
            raise ValueError(f"--topologies must be distinct, got {list(self.topologies)}")
        self.topology_options(len(self.hidden))  # --topology NAME [--topology-params ...]: that one, so wired
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"--hidden needs at least one width, each >= 1, got {list(self.hidden)}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"--density must be in (0, 1], got {self.density}")
        if self.recurrent_nodes is not None and not self.recurrent_topologies():
            raise ValueError(
                "--recurrent-nodes trains the recurrent cortex with the sparse topologies compared that need no "
                f"data sample, but there is none among {list(self.compared())} ('full' and data-wired ones such "
                "as csti do not apply): add one (e.g. er) or drop --recurrent-nodes"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"--activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.recurrent_nodes is not None and self.recurrent_nodes < 2:
            raise ValueError(f"--recurrent-nodes must be >= 2 (or none to skip), got {self.recurrent_nodes}")
        if not 0.0 < self.recurrent_density <= 1.0:
            raise ValueError(f"--recurrent-density must be in (0, 1], got {self.recurrent_density}")
        if not self.recurrent_dale or any(d not in DALE_CHOICES for d in self.recurrent_dale):
            raise ValueError(
                f"--recurrent-dale: each must be one of {DALE_CHOICES}, got {list(self.recurrent_dale)}"
            )
        if len(set(self.recurrent_dale)) != len(self.recurrent_dale):
            raise ValueError(f"--recurrent-dale must be distinct, got {list(self.recurrent_dale)}")
        self.validate_run_options()
        for t in self.compared():
            try:
                # Data parameters (csti's activity, snip's saliency) are FROM_DATA until main wires them.
                self.mlp_config(t, self.seeds[0], n_steps=1).validate()
            except ValueError as exc:
                raise ValueError(f"--topologies {t}: {exc} (check --hidden, --density)") from None
        return self

    def compared(self) -> tuple[str, ...]:
        """The topologies trained: ``--topology`` alone when given (with ``--topology-params``), else
        ``--topologies`` (each with its generator's defaults)."""
        return (self.topology,) if self.topology is not None else self.topologies

    def _params(self, topology: str) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
        """``--topology-params`` (model-wide, per matrix) for ``--topology``; nothing for the --topologies."""
        if self.topology is None or topology != self.topology:
            return {}, ()
        _, params, per = self.topology_options(len(self.hidden))
        return params, tuple(per)

    def mlp_config(self, topology: str, seed: int, *, n_steps: int) -> SparseMLPConfig:
        """The sparse MLP of one member (``n_steps``: the dataset's sequence length, flattened with F); data
        parameters of the topology (csti's activity, snip's saliency) are FROM_DATA (wire_data_params)."""
        seeds = derive_seeds(seed)
        params, per_matrix = self._params(topology)
        params = with_data_placeholders(topology, params)
        return SparseMLPConfig(
            n_steps=n_steps,
            hidden=self.hidden,
            density=self.density,
            activation=self.activation,
            exact_edges=self.exact_edges,
            topology=topology,
            topology_params=params,
            layer_topologies=per_matrix,
            init=self.init,
            backend=self.backend,
            connectivity_seed=seeds["connectivity_seed"],
            weight_seed=seeds["weight_seed"],
        )

    def recurrent_config(self, topology: str, dale: str, seed: int) -> CortexRNNConfig:
        """The recurrent cortex of one member: ``recurrent_nodes`` nodes at ``recurrent_density``."""
        seeds = derive_seeds(seed)
        # The recurrent cortex has one weight: it takes --topology-params' model-wide values (not the MLP's
        # per-matrix I.key ones), without p: its density is --recurrent-density.
        params = {k: v for k, v in self._params(topology)[0].items() if k != "p"}
        params = with_data_placeholders(topology, params)
        return CortexRNNConfig(
            topology_params=params,
            n_nodes=self.recurrent_nodes or 2,
            p=self.recurrent_density,
            activation=self.activation,
            dale=dale == "on",
            exact_edges=self.exact_edges,
            topology=topology,
            backend=self.backend,
            connectivity_seed=seeds["connectivity_seed"],
            weight_seed=seeds["weight_seed"],
        )

    def recurrent_topologies(self) -> tuple[str, ...]:
        """Topologies of the recurrent members: the non-``full`` ones that need no input sample of their
        presynaptic units (csti's ``activity``: hidden nodes have no data; none without ``--recurrent-nodes``)."""
        if self.recurrent_nodes is None:
            return ()
        return tuple(t for t in self.compared() if t != "full" and "activity" not in data_params(t))


def standard_error(sd: float | None, n: int) -> float | None:
    """SD / sqrt(n) (None for fewer than two seeds)."""
    return None if sd is None or n < 2 else sd / math.sqrt(n)


def _refuse_empty_matrices(config: SparseMLPConfig, n_inputs: int) -> None:
    """A matrix without a single link cuts the network in two (it would train at chance): refuse it."""
    for i, conn in enumerate(sparse_mlp_connectivities(config, n_inputs)):
        if conn.nnz == 0:
            raise ValueError(
                f"sparse matrix {i} ({conn.n_out} x {conn.n_in}) gets no link at this density: raise --density "
                "(or the matrix's p in --topology-params)"
            )


def _label(key: tuple, seed: int) -> str:
    if key[0] == "mlp":
        return f"mlp-{key[1]}-seed{seed}"
    return f"recurrent-{key[1]}-dale{key[2]}-seed{seed}"


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the process exit status (2 for bad options or missing data)."""
    config, folder = resolve_run_config(TopologiesConfig, argv, __doc__.split("\n")[0])
    splits, dataset_spec = load_run_data(config)
    # Every member's model checked on the real input width, and its memory, before any connectivity is built.
    unwired: dict[tuple, Any] = {}
    for t in config.compared():
        for seed in config.seeds:
            try:
                unwired[(("mlp", t), seed)] = config.mlp_config(t, seed, n_steps=splits.n_steps).validate(
                    splits.n_inputs
                )
            except ValueError as exc:
                raise UsageError(f"--topologies {t} (MLP) on --dataset {config.dataset}: {exc}") from exc
    if config.memory_check:
        check_memory(
            config, splits, [Member(_label(k, s), k, {}, "sparse_mlp", c, s) for (k, s), c in unwired.items()]
        )
    specs: dict[tuple, Any] = {}
    for t in config.compared():
        for seed in config.seeds:
            try:
                mlp = unwired[(("mlp", t), seed)]
                # CSTI's input sample and SNIP's dense-twin scores, from the training data (seeded).
                mlp = wire_data_params("sparse_mlp", mlp, splits, seed=config.split_seed,
                                       batch_size=config.batch_size)  # fmt: skip
                specs[(("mlp", t), seed)] = mlp.validate(splits.n_inputs)
                _refuse_empty_matrices(mlp, splits.n_inputs)
            except ValueError as exc:
                raise UsageError(f"--topologies {t} (MLP) on --dataset {config.dataset}: {exc}") from exc
    for t in config.recurrent_topologies():
        for dale in config.recurrent_dale:
            for seed in config.seeds:
                try:
                    specs[(("recurrent", t, dale), seed)] = config.recurrent_config(t, dale, seed).validate()
                except ValueError as exc:
                    raise UsageError(f"--topologies {t} (recurrent cortex): {exc}") from exc
    folder = folder or RunFolder.create(config.out, EXPERIMENT, dataclasses.asdict(config))
    print(f"{EXPERIMENT}: writing {folder.path}")
    members = [
        Member(
            label=_label(key, seed),
            key=key,
            tags={
                "model": key[0],
                "topology": key[1],
                "dale": key[2] if len(key) > 2 else None,
                "seed": seed,
            },
            model_name="sparse_mlp" if key[0] == "mlp" else "cortex_rnn",
            model_config=model_config,
            seed=seed,
            callbacks=(
                RecordCounts((lambda model: model.parameter_counts()) if key[0] == "mlp" else built_counts),
            ),
        )
        for (key, seed), model_config in specs.items()
    ]
    results = run_members(config, folder, splits, dataset_spec, members)
    for m in members:
        results.runs[m.label]["parameters"] = m.callbacks[0].result(m, splits)
    chance = chance_level(splits)
    paper = PAPER["static_accuracy"].get(config.dataset)
    # The DNM numbers belong to its setting only: 784-1568³-10 at 99 % sparsity, default generator parameters.
    comparable = config.hidden == (1568, 1568, 1568) and config.density == 0.01 and not config.topology_params
    rows = []
    for key, runs in results.groups.items():
        agg = aggregate_runs(runs)
        mean, sd = summarize_counts([r["parameters"] for r in runs])
        row: dict[str, Any] = {
            "model": key[0],
            "topology": key[1],
            "dale": key[2] if len(key) > 2 else None,
            "density": mean.get("density", config.density) if key[0] == "mlp" else config.recurrent_density,
            "parameters": mean,
            "parameters_sd": sd,
            "runs": runs,
            "aggregate": agg,
        }
        for name in ("final_test_acc", "best_test_acc"):
            row[f"{name}_se"] = standard_error(agg[name]["sd"], agg[name]["n"])
        row["paper_accuracy"] = paper.get(key[1]) if paper and key[0] == "mlp" and comparable else None
        rows.append(row)
    summary = {
        "experiment": EXPERIMENT,
        "dataset": splits.description,
        "chance": chance,
        "mlp_widths": [splits.n_steps * splits.n_inputs, *config.hidden, splits.n_classes],
        "training": dataclasses.asdict(config.train_config(config.seeds[0])),
        "topology_params": list(config.topology_params),
        "paper_comparable": bool(paper) and comparable,
        "rows": rows,
        "paper": PAPER,
    }
    folder.write_summary(summary)
    _plot(folder, config, results.groups, chance)
    _print_table(summary, config)
    return 0


def _plot(folder: RunFolder, config: TopologiesConfig, groups: dict, chance: float) -> None:
    panels: dict[str, dict] = {}
    for key, runs in groups.items():
        agg = aggregate_runs(runs)["test_acc_per_epoch"]
        curve = (list(range(len(agg["mean"]))), agg["mean"], agg["sd"], len(runs))
        if key[0] == "mlp":
            panels.setdefault(f"sparse MLP, density {config.density:g}", {})[key[1]] = curve
        else:
            title = (
                f"recurrent, N = {config.recurrent_nodes:,}, p = {config.recurrent_density:g}, Dale {key[2]}"
            )
            panels.setdefault(title, {})[key[1]] = curve
    plot_accuracy_curves(
        folder.path / "accuracy.png", panels, chance=chance, title=f"topologies, {config.dataset}"
    )


def _print_table(summary: dict, config: TopologiesConfig) -> None:
    head = (
        f"{'model':>9} {'topology':>9} {'dale':>4} {'synapses':>10} {'params':>10} {'final (%)':>12} "
        f"{'SE':>4} {'best (%)':>12} {'delay':>9} {'paper (%)':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in summary["rows"]:
        agg = r["aggregate"]
        final, best, delay = agg["final_test_acc"], agg["best_test_acc"], agg["learning_delay"]
        p = r["parameters"]
        synapses = p["hidden_synapses"] if r["model"] == "mlp" else p["synapses"]
        params = p["total"] if r["model"] == "mlp" else p["parameters"]
        se = "n/a" if r["final_test_acc_se"] is None else f"{100 * r['final_test_acc_se']:.1f}"
        paper = "n/a" if r["paper_accuracy"] is None else f"{r['paper_accuracy']:g}"
        delay_text = MeanSD(delay["mean"], delay["sd"], delay["n"]).format(1, 1)
        print(
            f"{r['model']:>9} {r['topology']:>9} {r['dale'] or '-':>4} {synapses:>10,.0f} {params:>10,.0f} "
            f"{MeanSD(final['mean'], final['sd'], final['n']).format(100):>12} {se:>4} "
            f"{MeanSD(best['mean'], best['sd'], best['n']).format(100):>12} {delay_text:>9} {paper:>9}"
        )
    print(
        "(final / best: test accuracy, mean ± SD over seeds; SE = SD / sqrt(seeds); delay: learning delay in "
        "epochs, mean ± SD; synapses / params: the built models, active synapses only, mean over seeds)"
    )
    if config.dataset not in PAPER["static_accuracy"]:
        print(
            f"(the DNM table has no {config.dataset} numbers: it covers {', '.join(PAPER['static_accuracy'])})"
        )
    print(f"paper ({PAPER['source']}): {PAPER['setting']}")
    print(f"  note: {PAPER['comparison_note']}")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
