"""G2GNet experiment (Konstantaropoulos, Smyrnakis & Papadopouli, seed 000: Table I and Fig. 4A).

Trains G2GNet (patch convolution → three G2G hidden layers → linear classifier) and the baselines of its Table I
— fully connected with the same width, fully connected with the same number of parameters, Erdős–Rényi with the
same number of edges — over several seeds; optionally sweeps the inter-pathway probability p' with G2G and
edge-matched ER at every value (Fig. 4A)::

    python -m cortexnet.experiments.g2g --download                     # the paper: CIFAR-10, 3 x 1024, 20 epochs
    python -m cortexnet.experiments.g2g --dataset digits --hidden 64 64 64 --patch-channels 8 --epochs 3
    python -m cortexnet.experiments.g2g --config experiments/g2g_fig4a.toml --download   # the p' sweep

Writes ``runs/g2g/<timestamp>-<hash>/`` with config.json, metrics.jsonl, summary.json (parameter counts beside
Table I's), accuracy.png, sweep.png (with a sweep; each figure also as SVG) and one checkpoint per member;
``--resume <folder>`` continues.
The summary's ``parameters`` are the built models' :meth:`G2GNet.parameter_counts` (per seed in every run; mean
and ``parameters_sd`` per row: with ``--no-exact-edges`` the masks' counts differ by seed), ``parameter_budget``
the same counts computed from the configuration (expectations for Bernoulli masks).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from cortexnet.analysis import MeanSD, aggregate_runs
from cortexnet.analysis.plots import display_name, plot_accuracy_curves, plot_curves
from cortexnet.config import UsageError, field
from cortexnet.connectivity.g2g import GROUPINGS
from cortexnet.data import chance_level
from cortexnet.experiments.common import (
    RecordCounts,
    RunOptions,
    load_run_data,
    resolve_run_config,
    run_cli,
    run_members,
    summarize_counts,
)
from cortexnet.experiments.paper import means, table
from cortexnet.layers import SPARSE_LINEAR_INITS
from cortexnet.models import G2GNetConfig
from cortexnet.models.g2gnet import g2gnet_parameter_budget, image_geometry_from_rows, matched_fc_width
from cortexnet.sparse import ACTIVATIONS
from cortexnet.training.runs import Member, RunFolder, derive_seeds

log = logging.getLogger(__name__)

EXPERIMENT = "g2g"
#: Table I rows: G2GNet and its baselines.
MODEL_KINDS = ("g2g", "fc_same_params", "fc_same_width", "er_same_edges")
#: Kinds trained at every p' of the sweep (Fig. 4A).
SWEEP_KINDS = ("g2g", "er_same_edges")

#: What the paper reports (REFERENCE.md §2); printed beside our numbers.
PAPER: dict[str, Any] = {
    "source": "Konstantaropoulos, Smyrnakis & Papadopouli, G2GNet (seed 000), Table I and Fig. 4A",
    "setting": (
        "16 patches, one convolution with 32 output channels per patch, 3 hidden layers of 1024 ReLU units, "
        "p = 1, p' = 0.15, G = 8, mixer grouping; linear classifier; Adam 1e-3, 20 epochs (batch size not stated)"
    ),
    "table1_accuracy": table("g2g_table1"),  # %, per dataset (the numbers live in experiments/paper.py)
    "table1_parameters": means("g2g_table1_parameters", "*"),
    "table1_parameter_convention": (
        "weights of three 1024 x 1024 hidden matrices only: 3 * 1024^2 = 3,145,728 ~ 3.15 M (FC same width); "
        "3 * 1024^2 * (1/8 + 0.15 * 7/8) = 806,092.8 ~ 806,100 (G2G, expected active weights); conv, biases "
        "and classifier not counted; it implies a 1024-wide embedding, while 16 patches x 32 channels is 512"
    ),
    "fig4a": [
        "CIFAR-10: accuracy rises with p' and plateaus around 70.8 % for p' in [0.08, 0.15] (18-25 % density)",
        "G2G beats Erdős–Rényi graphs with the same number of edges at every p'",
    ],
}


@dataclass(frozen=True)
class G2GExperimentConfig(RunOptions):
    """Options of ``python -m cortexnet.experiments.g2g`` (every option can also come from ``--config``)."""

    experiment: ClassVar[str] = EXPERIMENT

    models: tuple[str, ...] = field(MODEL_KINDS, f"Table I rows to train, from {MODEL_KINDS}")
    p_inter_sweep: tuple[float, ...] = field(
        (),
        "Fig. 4A: inter-pathway probabilities p' at which G2G and edge-matched ER are trained (none: no sweep)",
    )
    hidden: tuple[int, ...] = field((1024, 1024, 1024), "hidden layer widths (paper: 1024 1024 1024)")
    patches_per_side: int = field(
        4, "the image is cut into this many x this many patches (paper: 4, 16 patches)"
    )
    patch_channels: int = field(32, "output channels of the per-patch convolution (paper: 32)")
    p: float = field(1.0, "intra-pathway probability p in [0, 1] (paper: 1)")
    p_inter: float = field(0.15, "inter-pathway probability p' in [0, 1] of the Table I models (paper: 0.15)")
    groups: int = field(8, "groups G per layer (paper: 8)")
    grouping: str = field("mixer", f"grouping strategy, one of {GROUPINGS} (paper: mixer)")
    init: str = field("dense_fan_in", f"hidden-weight initialisation, one of {SPARSE_LINEAR_INITS}")
    activation: str = field("relu", "hidden activation: relu (paper) or tanh")
    exact_edges: bool = field(
        True,
        "exact rounded edge counts (G2G and matched ER then have identical counts); no: Bernoulli per pair",
    )
    image_channels: int | None = field(None, "image channels C (default: inferred, square images: C = F / T)")
    epochs: int = field(20, "training epochs, >= 1 (paper: 20)")
    batch_size: int = field(100, "batch size (not stated in the paper)")
    dataset: str = field("cifar10", "dataset name: an image dataset (digits is embedded, no download)")

    def validate(self) -> G2GExperimentConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        if not self.models and not self.p_inter_sweep:
            raise ValueError("nothing to train: give --models and/or --p-inter-sweep")
        for m in self.models:
            if m not in MODEL_KINDS:
                raise ValueError(f"--models: each must be one of {MODEL_KINDS}, got {m!r}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"--models must be distinct, got {list(self.models)}")
        for q in (self.p_inter, *self.p_inter_sweep):
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"inter-pathway probability p' must be in [0, 1], got {q}")
            if 0.0 <= self.p <= 1.0 and q > self.p:
                raise ValueError(
                    f"inter-pathway probability p' = {q} (--p-inter / --p-inter-sweep) exceeds the intra-pathway "
                    f"probability --p {self.p}; G2G needs p' <= p: lower p' or raise --p"
                )
        if self.topology is not None and self.p_inter_sweep:
            raise ValueError(
                "--p-inter-sweep sweeps G2G's p' (Fig. 4A) and cannot be combined with --topology, which replaces "
                "the G2G wiring of the g2g rows; drop one of them"
            )
        if len(set(self.p_inter_sweep)) != len(self.p_inter_sweep):
            raise ValueError(f"--p-inter-sweep values must be distinct, got {list(self.p_inter_sweep)}")
        if self.image_channels is not None and self.image_channels < 1:
            raise ValueError(f"--image-channels must be >= 1 (or none to infer), got {self.image_channels}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"--activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        self.validate_run_options()
        # Model fields that do not depend on the image (checked on a placeholder geometry the patches divide).
        side = self.patches_per_side if self.patches_per_side >= 1 else 1
        try:
            self.base_model((1, side, side), seed=self.seeds[0]).validate()
        except ValueError as exc:
            raise ValueError(
                f"{exc} (check --hidden, --patches-per-side, --groups, --grouping, --p, --init)"
            ) from exc
        if self.topology is not None:
            if "g2g" not in self.models:
                raise ValueError("--topology rewires the g2g rows: add g2g to --models (or drop --topology)")
            try:
                self.model_config("g2g", self.p_inter, (1, side, side), 2, seed=self.seeds[0]).validate()
            except ValueError as exc:
                raise ValueError(f"--topology {self.topology}: {exc}") from exc
        return self

    def base_model(self, geometry: tuple[int, int, int], *, seed: int) -> G2GNetConfig:
        """G2GNet with this experiment's options for images of ``geometry`` = (C, H, W)."""
        seeds = derive_seeds(seed)
        return G2GNetConfig(
            image_channels=geometry[0],
            image_height=geometry[1],
            image_width=geometry[2],
            patches_per_side=self.patches_per_side,
            patch_channels=self.patch_channels,
            hidden=self.hidden,
            activation=self.activation,
            p=self.p,
            p_inter=self.p_inter,
            groups=self.groups,
            grouping=self.grouping,
            exact_edges=self.exact_edges,
            init=self.init,
            backend=self.backend,
            connectivity_seed=seeds["connectivity_seed"],
            weight_seed=seeds["weight_seed"],
        )

    def model_config(
        self, kind: str, p_inter: float, geometry: tuple[int, int, int], n_classes: int, *, seed: int
    ) -> G2GNetConfig:
        """The model of one member: ``kind`` from :data:`MODEL_KINDS` at inter-pathway probability ``p_inter``
        (ER matches the G2G edge counts at that p'; the same-parameters FC matches G2G's total at it)."""
        base = dataclasses.replace(self.base_model(geometry, seed=seed), p_inter=p_inter)
        if kind == "g2g":
            if self.topology is None:
                return base
            # --topology replaces the wiring of the G2GNet rows; the baselines keep their Table I definitions.
            name, params, per_weight = self.topology_options(len(self.hidden))
            return dataclasses.replace(
                base, topology=name, topology_params=params, layer_topologies=tuple(per_weight)
            )
        if kind == "er_same_edges":
            return dataclasses.replace(base, connectivity="er")
        if kind == "fc_same_width":
            return dataclasses.replace(base, connectivity="full")
        width = matched_fc_width(base, n_classes)
        return dataclasses.replace(base, connectivity="full", hidden=(width,) * len(self.hidden))

    def members(self) -> list[tuple[str, float]]:
        """Distinct ``(kind, p')`` to train: the Table I rows at ``p_inter``, then G2G and ER at every sweep
        value (a sweep point equal to ``p_inter`` reuses the Table I member)."""
        out = [(kind, self.p_inter) for kind in self.models]
        out += [(kind, q) for q in self.p_inter_sweep for kind in SWEEP_KINDS]
        return list(dict.fromkeys(out))


def _label(kind: str, p_inter: float, seed: int) -> str:
    return f"{kind}-pinter{p_inter:g}-seed{seed}"


def main(argv: list[str] | None = None) -> int:
    """Run the experiment; returns the process exit status (2 for bad options, missing or non-image data)."""
    config, folder = resolve_run_config(G2GExperimentConfig, argv, __doc__.split("\n")[0])
    splits, dataset_spec = load_run_data(config)
    # Images back from the row encoding (T = H, F = C·W); all model configurations checked before any training.
    try:
        geometry = image_geometry_from_rows(splits.n_steps, splits.n_inputs, config.image_channels)
        specs = {
            (kind, q, seed): config.model_config(kind, q, geometry, splits.n_classes, seed=seed).validate()
            for kind, q in config.members()
            for seed in config.seeds
        }
    except ValueError as exc:
        raise UsageError(f"--dataset {config.dataset}: {exc}") from exc
    folder = folder or RunFolder.create(config.out, EXPERIMENT, dataclasses.asdict(config))
    print(f"{EXPERIMENT}: writing {folder.path}")
    chance = chance_level(splits)
    dataset_spec["image_geometry"] = list(geometry)
    members = [
        Member(
            label=_label(kind, q, seed),
            key=(kind, q),
            tags={"model": kind, "p_inter": q, "seed": seed},
            model_name="g2gnet",
            model_config=model_config,
            seed=seed,
            callbacks=(RecordCounts(lambda model: model.parameter_counts()),),
        )
        for (kind, q, seed), model_config in specs.items()
    ]
    results = run_members(config, folder, splits, dataset_spec, members)
    for m in members:
        results.runs[m.label]["parameters"] = m.callbacks[0].result(m, splits)
    groups = results.groups

    def row(kind: str, q: float) -> dict[str, Any]:
        # The member's configuration as trained (data-derived topology parameters wired by run_members).
        model_config = next(m.model_config for m in members if m.key == (kind, q))
        runs = groups[(kind, q)]
        mean, sd = summarize_counts([r["parameters"] for r in runs])
        return {
            "model": kind,
            "p_inter": q,
            "hidden": list(model_config.hidden),
            "parameters": mean,
            "parameters_sd": sd,
            "parameter_budget": g2gnet_parameter_budget(model_config, splits.n_classes),
            "runs": runs,
            "aggregate": aggregate_runs(runs),
        }

    paper_acc = PAPER["table1_accuracy"].get(config.dataset)
    default_counts = g2gnet_parameter_budget(G2GNetConfig(), 10)["hidden_synapses"]
    table1_embedding = g2gnet_parameter_budget(G2GNetConfig(patch_channels=64), 10)["hidden_synapses"]
    summary = {
        "experiment": EXPERIMENT,
        "dataset": splits.description,
        "image_geometry": list(geometry),
        "topology": config.topology,
        "topology_params": list(config.topology_params),
        "chance": chance,
        "table1": [
            {**row(kind, config.p_inter), "paper_accuracy": paper_acc.get(kind) if paper_acc else None}
            for kind in config.models
        ],
        "sweep": [
            {
                "p_inter": q,
                **{kind: row(kind, q) for kind in SWEEP_KINDS},
            }
            for q in config.p_inter_sweep
        ],
        "parameter_count_check": {
            "paper_table1_g2g": PAPER["table1_parameters"]["g2g"],
            "paper_convention": PAPER["table1_parameter_convention"],
            "ours_default_config_hidden_synapses": default_counts,
            "ours_with_1024_wide_embedding_hidden_synapses": table1_embedding,
        },
        "paper": PAPER,
    }
    folder.write_summary(summary)
    _plots(folder, config, groups, chance)
    _print_tables(summary, config)
    return 0


def _plots(folder: RunFolder, config: G2GExperimentConfig, groups: dict, chance: float) -> None:
    panels: dict[str, dict] = {}
    for (kind, q), runs in groups.items():
        agg = aggregate_runs(runs)["test_acc_per_epoch"]
        curve = (list(range(len(agg["mean"]))), agg["mean"], agg["sd"], len(runs))
        if kind in config.models and q == config.p_inter:
            panels.setdefault(f"Table I (p' = {config.p_inter:g})", {})[kind] = curve
        if q in config.p_inter_sweep:
            panels.setdefault(f"p' sweep: {display_name(kind)}", {})[f"p' = {q:g}"] = curve
    plot_accuracy_curves(
        folder.path / "accuracy.png", panels, chance=chance, title=f"G2GNet, {config.dataset}"
    )
    if config.p_inter_sweep:
        qs = sorted(config.p_inter_sweep)
        curves = {}
        for kind in SWEEP_KINDS:
            final = [MeanSD.of(r["final_test_acc"] for r in groups[(kind, q)]) for q in qs]
            seeds = [len(groups[(kind, q)]) for q in qs]
            curves[kind] = (qs, [m.mean for m in final], [m.sd for m in final], seeds)
        plot_curves(
            folder.path / "sweep.png",
            curves,
            xlabel="inter-pathway probability p'",
            ylabel="final test accuracy (%)",
            title=f"G2G vs edge-matched ER (Fig. 4A), {config.dataset}",
            scale=100.0,
            chance=chance,
        )


def _print_tables(summary: dict, config: G2GExperimentConfig) -> None:
    if summary["table1"]:
        head = (
            f"{'model':>15} {'hidden':>16} {'hidden wts':>17} {'total params':>12} {'final (%)':>14} "
            f"{'best (%)':>14} {'paper (%)':>9} {'paper params':>12}"
        )
        print(head)
        print("-" * len(head))
        for r in summary["table1"]:
            agg = r["aggregate"]
            final, best = agg["final_test_acc"], agg["best_test_acc"]
            paper = "n/a" if r["paper_accuracy"] is None else f"{r['paper_accuracy']:g}"
            hidden = "x".join(str(h) for h in r["hidden"])
            wts = f"{r['parameters']['hidden_synapses']:,.0f}"
            if r["parameters_sd"]["hidden_synapses"]:
                wts += f" ± {r['parameters_sd']['hidden_synapses']:,.0f}"
            print(
                f"{r['model']:>15} {hidden:>16} {wts:>17} {r['parameters']['total']:>12,.0f} "
                f"{MeanSD(final['mean'], final['sd'], final['n']).format(100):>14} "
                f"{MeanSD(best['mean'], best['sd'], best['n']).format(100):>14} {paper:>9} "
                f"{PAPER['table1_parameters'][r['model']]:>12,}"
            )
        print(
            "(hidden wts / total params: the built models, mean over seeds (± SD when the masks differ); "
            "paper params: Table I, hidden weights of three 1024 x 1024 matrices only)"
        )
        if config.dataset not in PAPER["table1_accuracy"]:
            print(
                f"(the paper reports no {config.dataset} numbers: Table I covers fashion-mnist, cifar10, cifar100)"
            )
    if summary["sweep"]:
        head = f"{'p_inter':>8} {'density':>8} {'G2G final (%)':>15} {'ER final (%)':>15} {'G2G - ER':>9}"
        print("\n" + head)
        print("-" * len(head))
        for s in summary["sweep"]:
            g = MeanSD.of(r["final_test_acc"] for r in s["g2g"]["runs"])
            e = MeanSD.of(r["final_test_acc"] for r in s["er_same_edges"]["runs"])
            print(
                f"{s['p_inter']:>8g} {s['g2g']['parameters']['density']:>8.4f} {g.format(100):>15} "
                f"{e.format(100):>15} {100 * (g.mean - e.mean):>+9.1f}"
            )
    check = summary["parameter_count_check"]
    print(
        f"\nparameter count: paper Table I G2GNet {check['paper_table1_g2g']:,}; ours at the stated defaults "
        f"(16 x 32 = 512-wide embedding) {check['ours_default_config_hidden_synapses']:,} hidden weights, with a "
        f"1024-wide embedding {check['ours_with_1024_wide_embedding_hidden_synapses']:,} (Table I counts only the "
        "hidden weights of three 1024 x 1024 matrices)"
    )
    print("paper (" + PAPER["source"] + "):")
    for finding in PAPER["fig4a"]:
        print(f"  - {finding}")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
