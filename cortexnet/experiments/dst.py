"""Dynamic sparse training compared rule by rule on one model: G2GNet's Table II, the CHTs MLP comparison and
DST on the recurrent Dale cortex (issue 12; seeds 000, 002, 003; DST.md).

Each rule of ``--rules`` trains the model of ``--model`` over ``--seeds``:

* ``static`` — the sparse model with its initial mask (no rewiring); ``dense`` — the fully connected baseline
  (FC; the cortex at p = 1); ``sparse_to_dense`` (cortex only) — the p-mask at initialisation, every weight
  trainable (Fig. S5B);
* a rewiring rule by name (:data:`cortexnet.rewiring.PRESETS`: ``set``, ``random``, ``rigl``, ``hebbian``,
  ``cht``, ``chts``, ``chtss``) or ``REMOVAL+GROWTH`` (e.g. ``magnitude+hebbian``: G2GNet's Table II grid);
  ``--rewire-params key=value`` set every rule's :class:`~cortexnet.rewiring.RewiringConfig` fields
  (ΔT, ζ, T_end, ...). ``chtss`` starts from ``--chtss-start-density`` (CHTss: s0 = 0.5, i.e. density 0.5;
  1.0 prunes a dense network gradually) and ends at ``--density``::

    python -m cortexnet.experiments.dst --config experiments/dst_g2g_digits.toml     # Table II grid, minutes
    python -m cortexnet.experiments.dst --config experiments/dst_mlp_digits.toml     # CHTs MLP comparison
    python -m cortexnet.experiments.dst --config experiments/dst_cortex_digits.toml  # DST on the Dale cortex
    python -m cortexnet.experiments.dst --config experiments/dst_g2g_cifar10.toml --download   # paper scale

Writes ``runs/dst/<timestamp>-<hash>/`` with config.json, metrics.jsonl, summary.json (per rule: final / best
test accuracy mean ± SD, learning delay, the rewiring's updates, overlap and final synapse counts, and the
paper's number where the setting matches), accuracy.png (and .svg) and one checkpoint per member; ``--resume``
continues (rewiring resumes identically).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from cortexnet.analysis import MeanSD, aggregate_runs
from cortexnet.analysis.plots import display_name, plot_accuracy_curves
from cortexnet.config import UsageError, field, parse_key_values
from cortexnet.connectivity.g2g import GROUPINGS
from cortexnet.data import chance_level
from cortexnet.experiments.common import (
    SparseMLPRecipe,
    load_run_data,
    resolve_run_config,
    rewiring_seed,
    run_cli,
    run_members,
    with_data_placeholders,
)
from cortexnet.experiments.paper import table
from cortexnet.models import CortexRNNConfig, G2GNetConfig, SparseMLPConfig
from cortexnet.models.g2gnet import image_geometry_from_rows
from cortexnet.rewiring import GROWTH, PRESETS, REMOVAL, rewiring_config
from cortexnet.training.rewiring import RewiringCallback
from cortexnet.training.runs import Member, RunFolder, derive_seeds

log = logging.getLogger(__name__)

EXPERIMENT = "dst"
MODELS = ("sparse_mlp", "g2gnet", "cortex_rnn")
BASELINES = ("static", "dense", "sparse_to_dense")

#: What the papers report (REFERENCE.md §2 and §3), by model, dataset and our rule names; printed beside ours.
PAPER: dict[str, Any] = {
    "g2gnet": {
        "source": "G2GNet (seed 000) Table II via REFERENCE.md §2: removal x growth, every 1000 iterations, 2.5 %",
        "accuracy": table("g2g_table2"),  # the numbers live in experiments/paper.py
        "setting": "G2GNet of Table I (3 x 1024, p = 1, p' = 0.15, G = 8, mixer), Adam 1e-3, 20 epochs, 5 runs",
    },
    "sparse_mlp": {
        "source": "DNM (seed 004) / CHTs (seed 003) via REFERENCE.md §3: 99 %-sparse 784-1568-1568-1568-10 MLP",
        "accuracy": table("chts_mlp"),
        "setting": (
            "CHTs recipe: SGD momentum 0.9, weight decay 5e-4, lr 0.025 decayed linearly, batch 32, 100 epochs, "
            "update every epoch, zeta 0.3, T_end 75 epochs; the DNM numbers use DNM initialisation for CHTs / "
            "CHTss and ER for static (3 seeds)"
        ),
    },
    "cortex_rnn": {"source": "none: DST on a sparse recurrent Dale network is new here", "accuracy": {}},
}


@dataclass(frozen=True)
class DSTConfig(SparseMLPRecipe):
    """Options of ``python -m cortexnet.experiments.dst`` (every option can also come from ``--config``)."""

    experiment: ClassVar[str] = EXPERIMENT

    model: str = field("sparse_mlp", f"model whose sparse weights are rewired, one of {MODELS}")
    rules: tuple[str, ...] = field(
        ("static", "dense", "set", "rigl", "cht", "chts", "chtss"),
        "rules compared: static, dense, sparse_to_dense (cortex), a rewiring preset "
        f"({', '.join(PRESETS)}) or REMOVAL+GROWTH (removal: {', '.join(REMOVAL.names())}; growth: "
        f"{', '.join(GROWTH.names())})",
    )
    density: float = field(
        0.01, "connection probability of the sparse weights in (0, 1] (the target of chtss)"
    )
    chtss_start_density: float = field(0.5, "density chtss starts from, in (density, 1] (CHTss: s0 = 0.5)")
    hidden: tuple[int, ...] = field((1568, 1568, 1568), "hidden widths (sparse_mlp, g2gnet)")
    nodes: int = field(500, "recurrent nodes N (cortex_rnn)")
    dale: bool = field(True, "Dale's law on the recurrent cortex")
    activation: str = field("relu", "hidden activation: relu or tanh")
    patches_per_side: int = field(4, "g2gnet: patches per image side (paper: 4, i.e. 16 patches)")
    patch_channels: int = field(32, "g2gnet: output channels of the patch convolution (paper: 32)")
    p_inter: float = field(0.15, "g2gnet: inter-pathway probability p' (paper: 0.15)")
    groups: int = field(8, "g2gnet: groups per layer (paper: 8)")
    grouping: str = field("mixer", f"g2gnet: grouping, one of {GROUPINGS}")

    def validate(self) -> DSTConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {MODELS}, got {self.model!r}")
        if self.rewire:
            raise ValueError("--rewire does not apply here: name the rules to compare with --rules")
        if not self.rules or len(set(self.rules)) != len(self.rules):
            raise ValueError(f"--rules needs distinct rules, got {list(self.rules)}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"--density must be in (0, 1], got {self.density}")
        if not self.density < self.chtss_start_density <= 1.0 and "chtss" in self.rules:
            raise ValueError(
                f"--chtss-start-density must be in (--density {self.density}, 1], got {self.chtss_start_density}"
            )
        if "sparse_to_dense" in self.rules and self.model != "cortex_rnn":
            raise ValueError("rule sparse_to_dense applies to --model cortex_rnn only")
        if self.model == "g2gnet" and self.p_inter > self.density:
            raise ValueError(
                f"--p-inter {self.p_inter} exceeds --density {self.density} (G2G's intra-pathway p)"
            )
        for rule in self.rules:
            try:
                self.rewiring(rule, self.seeds[0])
            except ValueError as exc:
                raise ValueError(f"--rules {rule}: {exc}") from None
        self.validate_run_options()
        return self

    def rewiring(self, rule: str, seed: int) -> Any:
        """The rewiring configuration of ``rule`` for run seed ``seed`` (None for the baselines)."""
        if rule in BASELINES:
            return None
        params = parse_key_values(self.rewire_params, option="--rewire-params")
        params.setdefault("seed", rewiring_seed(seed))
        if isinstance(params.get("weights"), str):  # weights=NAME: one weight, not its characters
            params["weights"] = (params["weights"],)
        if rule == "chtss":
            params.setdefault("sparsity_end", 1.0 - self.density)
        if "+" in rule:
            removal, _, growth = rule.partition("+")
            return rewiring_config("custom", removal=removal, growth=growth, **params)
        return rewiring_config(rule, **params)

    def rewiring_config(self, seed: int) -> None:
        """None: the rules compared carry their own rewiring (``--rewire-params`` configure them all)."""
        return None

    def model_config(self, rule: str, seed: int, *, n_steps: int, n_inputs: int) -> Any:
        """The model one member of ``rule`` trains (its density: ``dense`` 1, ``chtss`` the start density)."""
        seeds = derive_seeds(seed)
        density = 1.0 if rule == "dense" else self.chtss_start_density if rule == "chtss" else self.density
        common = {"backend": self.backend, "connectivity_seed": seeds["connectivity_seed"],
                  "weight_seed": seeds["weight_seed"], "activation": self.activation}  # fmt: skip
        name, params, per = self.topology_options(len(self.hidden) if self.model != "cortex_rnn" else 1)
        if self.model == "cortex_rnn":
            topology, params = self.single_weight_topology("er")
            return CortexRNNConfig(
                n_nodes=self.nodes, p=density, dale=self.dale, sparse_to_dense=rule == "sparse_to_dense",
                exact_edges=True, topology=topology if rule != "dense" else "full",
                topology_params={k: v for k, v in params.items() if k != "p"} if rule != "dense" else {}, **common,
            )  # fmt: skip
        if self.model == "sparse_mlp":
            topology = "full" if rule == "dense" else name or "er"
            return SparseMLPConfig(
                n_steps=n_steps, hidden=self.hidden, density=density, topology=topology,
                topology_params=with_data_placeholders(topology, params) if rule != "dense" else {},
                layer_topologies=tuple(per) if rule != "dense" else (), **common,
            )  # fmt: skip
        c, h, w = image_geometry_from_rows(n_steps, n_inputs)
        return G2GNetConfig(
            image_channels=c, image_height=h, image_width=w, patches_per_side=self.patches_per_side,
            patch_channels=self.patch_channels, hidden=self.hidden, p=density if rule != "dense" else 1.0,
            p_inter=self.p_inter if rule != "dense" else 1.0, groups=self.groups, grouping=self.grouping,
            connectivity="full" if rule == "dense" else "g2g", **common,
        )  # fmt: skip


def _label(rule: str, seed: int) -> str:
    return f"{rule}-seed{seed}"


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the process exit status (2 for bad options or missing data)."""
    config, folder = resolve_run_config(DSTConfig, argv, __doc__.split("\n")[0])
    splits, dataset_spec = load_run_data(config)
    members = []
    for rule in config.rules:
        for seed in config.seeds:
            try:
                model_config = config.model_config(
                    rule, seed, n_steps=splits.n_steps, n_inputs=splits.n_inputs
                )
                model_config = (
                    model_config.validate(splits.n_inputs)
                    if config.model == "sparse_mlp"
                    else model_config.validate()
                )
            except ValueError as exc:
                raise UsageError(
                    f"--rules {rule} (--model {config.model}) on --dataset {config.dataset}: {exc}"
                ) from exc
            rewiring = config.rewiring(rule, seed)
            members.append(
                Member(
                    label=_label(rule, seed),
                    key=(rule,),
                    tags={"rule": rule, "seed": seed},
                    model_name=config.model,
                    model_config=model_config,
                    seed=seed,
                    callbacks=(RewiringCallback(rewiring),) if rewiring is not None else (),
                )
            )
    folder = folder or RunFolder.create(config.out, EXPERIMENT, dataclasses.asdict(config))
    print(f"{EXPERIMENT}: writing {folder.path}")
    results = run_members(config, folder, splits, dataset_spec, members)
    chance = chance_level(splits)
    paper = PAPER[config.model]["accuracy"].get(config.dataset, {})
    rows = []
    for (rule,), runs in results.groups.items():
        rewired = [r.get("rewiring") for r in runs if r.get("rewiring")]
        rows.append({
            "rule": rule,
            "rewiring": dataclasses.asdict(config.rewiring(rule, config.seeds[0])) if rule not in BASELINES else None,
            "rewiring_per_seed": rewired,
            "runs": runs,
            "aggregate": aggregate_runs(runs),
            "paper_accuracy": paper.get(rule),
        })  # fmt: skip
    summary = {
        "experiment": EXPERIMENT,
        "model": config.model,
        "dataset": splits.description,
        "chance": chance,
        "density": config.density,
        "training": dataclasses.asdict(config.train_config(config.seeds[0])),
        "rows": rows,
        "paper": PAPER[config.model],
    }
    folder.write_summary(summary)
    panels = {f"{display_name(config.model)}, density {config.density:g}": {}}
    for (rule,), runs in results.groups.items():
        agg = aggregate_runs(runs)["test_acc_per_epoch"]
        panels[next(iter(panels))][rule] = (list(range(len(agg["mean"]))), agg["mean"], agg["sd"], len(runs))
    plot_accuracy_curves(folder.path / "accuracy.png", panels, chance=chance, title=f"DST, {config.dataset}")
    _print_table(summary)
    return 0


def _print_table(summary: dict) -> None:
    head = f"{'rule':>20} {'final (%)':>12} {'best (%)':>12} {'delay':>9} {'updates':>7} {'overlap':>7} {'synapses':>9} {'paper (%)':>9}"
    print(head)
    print("-" * len(head))
    for r in summary["rows"]:
        agg = r["aggregate"]
        final, best, delay = agg["final_test_acc"], agg["best_test_acc"], agg["learning_delay"]
        per_seed = r["rewiring_per_seed"]
        updates = overlap = synapses = "-"
        if per_seed:
            weights = [w for seed in per_seed for w in seed.values()]
            updates = f"{sum(w['updates'] for w in weights) / len(per_seed):.0f}"
            overlap = f"{sum(w['mean_overlap'] for w in weights) / len(weights):.2f}"
            synapses = f"{sum(w['nnz'] for w in weights) / len(per_seed):,.0f}"
        paper = "n/a" if r["paper_accuracy"] is None else f"{r['paper_accuracy']:g}"
        print(
            f"{r['rule']:>20} {MeanSD(final['mean'], final['sd'], final['n']).format(100):>12} "
            f"{MeanSD(best['mean'], best['sd'], best['n']).format(100):>12} "
            f"{MeanSD(delay['mean'], delay['sd'], delay['n']).format(1, 1):>9} {updates:>7} {overlap:>7} "
            f"{synapses:>9} {paper:>9}"
        )
    print(
        "(final / best: test accuracy, mean ± SD over seeds; delay: learning delay in epochs; updates: rewiring "
        "updates per seed (all weights); overlap: mean share of regrown links that were just removed; synapses: "
        "rewired weights' final count)"
    )
    print(
        f"paper ({summary['paper']['source']})"
        + (f": {summary['paper']['setting']}" if "setting" in summary["paper"] else "")
    )


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
