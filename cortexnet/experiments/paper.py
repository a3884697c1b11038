"""The papers' reported numbers, as data: one :class:`PaperEntry` per figure or table that cortexnet's
experiments address, keyed by an id (``"table_s1"``, ``"fig6b"``, ``"g2g_table1"``, ...).

Every number here is transcribed from ``shared/design/REFERENCE.md`` (the section is cited beside each entry) or
from the ``PAPER`` dicts the experiment modules held before this table existed; nothing else. Where REFERENCE.md
states a finding without a number ("tens of epochs", "no advantage") the value is text only (``mean=None``), and
the finding's sign is a :class:`Direction`. Ids follow the papers' own figure / table labels (checked against the
papers' text in ``shared/seeds``); the reproduction report (:mod:`cortexnet.experiments.report`) decides which
entries a run addresses.

Schema::

    PaperEntry(id, title, source, reference, setting, metric, unit, spread, values, directions, notes)
    Setting(datasets, nodes, densities, epochs, seeds, extra)   # what a run must match to be compared
    values[dataset][row] = Value(mean, sd, text, resolution)    # in the paper's unit (% for accuracies)
    Direction(higher=row, lower=row, text)                       # the paper finds values[higher] > values[lower]

``setting.epochs`` is the epoch at which the metric is taken (1 for the after-one-epoch numbers); a field that is
``None`` is not stated in REFERENCE.md, so no run can be shown to match it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Metrics a paper entry can report (how the report reads our value from a run).
METRICS = {
    "acc@1": "test accuracy after one epoch",
    "best": "best test accuracy over the epochs (selected on the test set, as the paper did)",
    "final": "test accuracy after the last epoch",
    "delay": "learning delay: whole epochs before the epoch in which test accuracy first exceeds chance + margin",
    "active_fraction": "nodes with non-zero output at the last step, per test image",
    "mi": "mutual information between random node pairs (nats)",
    "dropout": "test accuracy with a fraction q of the nodes' outputs zeroed at test time (no rescaling)",
    "parameters": "hidden weights (active synapses of the hidden matrices)",
}


@dataclass(frozen=True)
class Value:
    """One reported number: ``mean`` (None when the paper states the finding in words only), its ``sd`` where
    the paper gives one, the paper's words in ``text``, and ``resolution``, the unit of the last digit the paper
    wrote (default: read from the number, e.g. 0.1 for 90.3; set it for rounded counts such as 806,100)."""

    mean: float | None
    sd: float | None = None
    text: str = ""
    resolution: float | None = None

    def half_unit(self) -> float:
        """Half the unit of the paper's last stated digit: how far the true value may lie from the printed one."""
        if self.mean is None:
            return 0.0
        if self.resolution is not None:
            return self.resolution / 2
        return 0.5 * 10.0 ** -_decimals(self.mean)

    def decimals(self) -> int:
        """Decimals the paper wrote (from ``resolution`` when set, else from the numbers)."""
        if self.resolution is not None:
            return max(0, round(-math.log10(self.resolution)))
        return max(_decimals(self.mean or 0.0), _decimals(self.sd) if self.sd is not None else 0)

    def format(self) -> str:
        """As the paper wrote it (``"90.3 ± 2.0"``: the SD with the mean's decimals), or its words when it
        gives no number."""
        if self.mean is None:
            return self.text or "not given"
        digits = self.decimals()
        return f"{self.mean:,.{digits}f}" + (f" ± {self.sd:.{digits}f}" if self.sd is not None else "")


def _decimals(x: float) -> int:
    """Decimals of ``x`` as written (90.3: 1, 91.14: 2, 806100: 0)."""
    text = repr(float(x))
    return 0 if "e" in text or text.endswith(".0") else len(text.split(".")[1])


@dataclass(frozen=True)
class Setting:
    """The setting the paper's numbers come from. ``nodes``: hidden sizes compared (the hidden widths for MLPs and
    G2GNet); ``densities``: connection probabilities compared; ``epochs``: the epoch the metric is taken at;
    ``seeds``: initialisations averaged (shown, not matched); ``extra``: further options that must match, by name
    (``activation``, ``dale``, ``inhibitory_fraction``, ``p_inter``, ...). ``None``: not stated in REFERENCE.md."""

    datasets: tuple[str, ...]
    nodes: tuple[int, ...] | None
    densities: tuple[float, ...] | None
    epochs: int | None
    seeds: int | None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Direction:
    """A sign the paper reports: row ``higher`` exceeds row ``lower`` (``text``: the finding in words)."""

    higher: str
    lower: str
    text: str


@dataclass(frozen=True)
class PaperEntry:
    """One figure or table: where it comes from, its setting, its metric and its values by dataset and row."""

    id: str
    title: str
    source: str
    reference: str
    setting: Setting
    metric: str
    unit: str
    spread: str
    values: Mapping[str, Mapping[str, Value]]
    directions: tuple[Direction, ...] = ()
    notes: str = ""

    def value(self, dataset: str, row: str) -> Value | None:
        """The paper's value of ``row`` on ``dataset``; a dataset the paper does not report gives None."""
        return self.values.get(dataset, {}).get(row)


FO = "Fruengel & Oberlaender 2025, Front. Neural Circuits 19:1528309"
G2G = "Konstantaropoulos, Smyrnakis & Papadopouli, G2GNet (seed 000)"
DNM = "DNM (seed 004), static 99 %-sparse MLP table"
CHTS = "DNM (seed 004) / CHTs (seed 003), 99 %-sparse MLP with dynamic sparse training"
RELU = {"activation": "relu", "dale": False}
#: Our names for the DNM / CHTs MLP recipe's training options (REFERENCE.md §3).
CHTS_RECIPE = {"optimizer": "sgd", "batch_size": 32}
MLP_WIDTHS = (1568, 1568, 1568)
G2G_TABLE_I = {"p": 1.0, "p_inter": 0.15, "groups": 8, "patch_channels": 32}


def _sparse_dense(
    sparse: tuple[float, float], dense: tuple[float, float], resolution: float | None = None
) -> dict[str, Value]:
    return {"sparse": Value(*sparse, resolution=resolution), "dense": Value(*dense, resolution=resolution)}


SPARSE_BEATS_DENSE = (Direction("sparse", "dense", "sparse (p = 0.1) beats dense (p = 1.0)"),)
NO_DELAY = Value(0.0, text="no delay", resolution=1)

_ENTRIES = (
    # REFERENCE.md §1, "Headline results to reproduce": 1 epoch, N = 20,000 (Fig. 2C; all values in Table S1).
    PaperEntry(
        id="table_s1",
        title="Sparse vs dense recurrent networks after one epoch, MNIST",
        source=f"{FO}, Fig. 2C and Supplementary Table S1",
        reference="REFERENCE.md §1, Headline results",
        setting=Setting(("mnist",), (20_000,), (0.1, 1.0), 1, 10, RELU),
        metric="acc@1",
        unit="%",
        spread="SD over 10 initialisations",
        values={"mnist": _sparse_dense((90.3, 2.0), (77.5, 7.3))},
        directions=SPARSE_BEATS_DENSE,
    ),
    # REFERENCE.md §1, "Headline results": 1 epoch, CIFAR-10, large N (Fig. 2D; Table S2).
    PaperEntry(
        id="table_s2",
        title="Sparse vs dense recurrent networks after one epoch, CIFAR-10",
        source=f"{FO}, Fig. 2D and Supplementary Table S2",
        reference="REFERENCE.md §1, Headline results",
        setting=Setting(("cifar10",), None, (0.1, 1.0), 1, 10, RELU),
        metric="acc@1",
        unit="%",
        spread="SD over 10 initialisations",
        values={"cifar10": _sparse_dense((29.7, 1.5), (17.4, 3.9))},
        directions=SPARSE_BEATS_DENSE,
        notes="'large N': the size is not stated in REFERENCE.md",
    ),
    # REFERENCE.md §1, "Headline results" and "Inputs": 1 epoch, Sleep-EDF, large N (Fig. 2E; Table S3).
    PaperEntry(
        id="table_s3",
        title="Sparse vs dense recurrent networks after one epoch, Sleep-EDF",
        source=f"{FO}, Fig. 2E and Supplementary Table S3",
        reference="REFERENCE.md §1, Headline results and Inputs",
        setting=Setting(("sleep-ucr",), None, (0.1, 1.0), 1, 10, RELU),
        metric="acc@1",
        unit="%",
        spread="SD over 10 initialisations",
        values={"sleep-ucr": _sparse_dense((50.7, 1.8), (10.3, 0.0))},
        directions=SPARSE_BEATS_DENSE,
        notes=(
            "the paper says Sleep-EDF; its code used the UEA/UCR univariate 'Sleep' dataset (cortexnet: "
            "sleep-ucr); 'large N' is not stated in REFERENCE.md"
        ),
    ),
    # REFERENCE.md §1, "Headline results" (bullets): the sparse advantage needs a large recurrent network; the
    # experiment's PAPER dict (recurrent_vs_feedforward.py): Fig. 3A / S3 give no numbers in the text.
    PaperEntry(
        id="fig3a",
        title="Recurrent vs feed-forward: where sparsity helps",
        source=f"{FO}, Fig. 3A and Supplementary Fig. S3",
        reference="REFERENCE.md §1, Headline results (the sparse advantage needs a large recurrent network)",
        setting=Setting(("mnist",), (1_000, 10_000), (0.1, 1.0), 1, 10, RELU),
        metric="acc@1",
        unit="%",
        spread="not given (figure only)",
        values={
            "mnist": {
                "recurrent/large/sparse": Value(None, text="above dense: sparsity helps"),
                "feedforward/small/sparse": Value(None, text="below dense: typically detrimental"),
                "feedforward/large/sparse": Value(None, text="about dense: very little effect"),
            }
        },
        directions=(
            Direction(
                "recurrent/large/sparse", "recurrent/large/dense", "large recurrent: sparse beats dense"
            ),
            Direction(
                "feedforward/small/dense", "feedforward/small/sparse", "small feed-forward: sparsity hurts"
            ),
        ),
        notes="numbers for Fig. 3A are not given in the text, only the figure",
    ),
    # REFERENCE.md §1, "Headline results" and "Limited data": best of 50 epochs, 50 per class (and full data).
    PaperEntry(
        id="fig4a",
        title="Limited data, MNIST: best test accuracy of 50 epochs",
        source=f"{FO}, Fig. 4A and Supplementary Fig. S4",
        reference="REFERENCE.md §1, Headline results and Limited data",
        setting=Setting(("mnist",), (500, 20_000), (0.1, 1.0), 50, 10, {**RELU, "n_per_class": 50}),
        metric="best",
        unit="%",
        spread="SD over 10 initialisations",
        values={
            "mnist": {
                "large/sparse": Value(70.1, 10.2),
                "large/dense": Value(40.3, 7.2),
                "small/sparse": Value(57.0, 1.3),
                "small/dense": Value(66.0, 4.0, resolution=0.1),
                "large/sparse/full data": Value(99.0, 0.1),
                "large/dense/full data": Value(98.5, 0.1),
            }
        },
        directions=(
            Direction("large/sparse", "large/dense", "large (20,000 nodes): sparse beats dense"),
            Direction("small/dense", "small/sparse", "small (500 nodes): dense beats sparse"),
        ),
        notes=(
            "large = 20,000, small = 500 nodes; 50 examples per class (the full-data rows: all 60,000); the "
            "paper selected the best epoch on the test set"
        ),
    ),
    # REFERENCE.md §1, "Headline results": CIFAR-10 full data and most restricted data, large N.
    PaperEntry(
        id="fig4b",
        title="Limited data, CIFAR-10: best test accuracy",
        source=f"{FO}, Fig. 4B",
        reference="REFERENCE.md §1, Headline results and Limited data",
        setting=Setting(("cifar10",), None, (0.1, 1.0), 50, 10, {**RELU, "n_per_class": 50}),
        metric="best",
        unit="%",
        spread="SD over 10 initialisations",
        values={
            "cifar10": {
                "large/sparse": Value(24.0, 0.1),
                "large/dense": Value(17.6, 1.5),
                "large/sparse/full data": Value(54.9, 0.1),
                "large/dense/full data": Value(42.1, 1.8),
            }
        },
        directions=(Direction("large/sparse", "large/dense", "large networks: sparse beats dense"),),
        notes="'most restricted data' read as 50 per class (the smallest subset of Limited data); 'large N' not stated",
    ),
    # REFERENCE.md §1, "Headline results": nodes with non-zero output after 1 epoch (N = 10,000).
    PaperEntry(
        id="fig5b",
        title="Activation sparsity after one epoch",
        source=f"{FO}, Fig. 5B",
        reference="REFERENCE.md §1, Headline results and Representation analysis",
        setting=Setting(("mnist",), (10_000,), (0.1, 1.0), 1, None, RELU),
        metric="active_fraction",
        unit="%",
        spread="the paper's ± (over what is not stated)",
        values={"mnist": _sparse_dense((11.2, 1.5), (3.0, 1.0), resolution=0.1)},
        directions=(Direction("sparse", "dense", "more nodes are active in sparse networks"),),
    ),
    # REFERENCE.md §1, "Headline results": MI between 10,000 random node pairs (KS p from representations.py).
    PaperEntry(
        id="fig5_mi",
        title="Mutual information between random node pairs after one epoch",
        source=f"{FO}, Fig. 5 (text: 10,000 random node pairs)",
        reference="REFERENCE.md §1, Headline results and Representation analysis",
        setting=Setting(("mnist",), (10_000,), (0.1, 1.0), 1, None, RELU),
        metric="mi",
        unit="nats",
        spread="SD over the 10,000 pairs",
        values={"mnist": _sparse_dense((0.019, 0.065), (0.005, 0.029))},
        directions=(Direction("sparse", "dense", "MI is higher in sparse networks (KS p = 1.03e-44)"),),
        notes="KS test of the two distributions: p = 1.03e-44",
    ),
    # REFERENCE.md §1, "Headline results": 50 % / 90 % of outputs zeroed at test time, after 1 epoch.
    PaperEntry(
        id="fig5e",
        title="Dropout robustness after one epoch",
        source=f"{FO}, Fig. 5D/E",
        reference="REFERENCE.md §1, Headline results and Dropout robustness",
        setting=Setting(("mnist",), (10_000,), (0.1, 1.0), 1, None, RELU),
        metric="dropout",
        unit="%",
        spread="not given in REFERENCE.md",
        values={
            "mnist": {
                "sparse/q=0": Value(91.1),
                "sparse/q=0.5": Value(90.9),
                "dense/q=0": Value(81.4),
                "dense/q=0.5": Value(76.3),
                "sparse/loss at q=0.9": Value(3.1, text="loses 3.1 points"),
                "dense/loss at q=0.9": Value(33.3, text="loses 33.3 points"),
            }
        },
        directions=(
            Direction("sparse/q=0.5", "dense/q=0.5", "with 50 % zeroed, sparse stays above dense"),
            Direction("dense/loss at q=0.9", "sparse/loss at q=0.9", "with 90 % zeroed, dense loses more"),
        ),
    ),
    # REFERENCE.md §1, "Headline results" (Dale bullets): the learning delay at N = 10,000, 11.5 % inhibitory.
    PaperEntry(
        id="fig6b",
        title="Dale's law: learning delay, dense vs sparse",
        source=f"{FO}, Fig. 6B",
        reference="REFERENCE.md §1, Headline results (Dale) and Dale's law",
        setting=Setting(("mnist",), (10_000,), (0.1, 1.0), None, 10, {"inhibitory_fraction": 0.115}),
        metric="delay",
        unit="epochs",
        spread="not given",
        values={"mnist": {"sparse": NO_DELAY, "dense": Value(None, text="tens of epochs at chance")}},
        directions=(
            Direction("dense", "sparse", "dense Dale networks are delayed, sparse (p = 0.1) ones are not"),
        ),
        notes="the sparser, the shorter the delay; the training length is not stated in REFERENCE.md",
    ),
    # REFERENCE.md §1, "Headline results" (Dale bullets): the delay grows with N; sparse p = 0.1: none at any N.
    PaperEntry(
        id="fig6c",
        title="Dale's law: learning delay against network size",
        source=f"{FO}, Fig. 6C",
        reference="REFERENCE.md §1, Headline results (Dale)",
        setting=Setting(("mnist",), None, (0.1, 1.0), None, None, {"inhibitory_fraction": 0.115}),
        metric="delay",
        unit="epochs",
        spread="not given",
        values={
            "mnist": {
                "sparse": Value(0.0, text="no delay at any size", resolution=1),
                "dense": Value(None, text="grows with N"),
            }
        },
        directions=(
            Direction("dense@largest", "dense@smallest", "the delay of dense networks grows with N"),
            Direction("dense@largest", "sparse@largest", "dense networks are delayed, sparse ones are not"),
        ),
        notes="the sizes of Fig. 6C are not stated in REFERENCE.md",
    ),
    # REFERENCE.md §1, "Headline results" (Dale bullets): 50 % inhibitory, no delay at any density.
    PaperEntry(
        id="fig6f",
        title="Dale's law with 50 % inhibitory nodes: no delay",
        source=f"{FO}, Fig. 6F",
        reference="REFERENCE.md §1, Headline results (Dale)",
        setting=Setting(("mnist",), (10_000,), (0.1, 1.0), None, None, {"inhibitory_fraction": 0.5}),
        metric="delay",
        unit="epochs",
        spread="not given",
        values={"mnist": {"sparse": NO_DELAY, "dense": NO_DELAY}},
        notes="no delay at any density",
    ),
    # REFERENCE.md §1, "Dale's law" (variants) and the dale.py PAPER findings: sparse-to-dense.
    PaperEntry(
        id="fig_s5b",
        title="Dale's law, sparse-to-dense (p = 0.1 mask at initialisation, every weight trainable)",
        source=f"{FO}, Supplementary Fig. S5B",
        reference="REFERENCE.md §1, Dale's law (variants)",
        setting=Setting(("mnist",), (10_000,), (0.1,), None, None, {"inhibitory_fraction": 0.115}),
        metric="delay",
        unit="epochs",
        spread="not given",
        values={"mnist": {"sparse": Value(0.0, text="no delay, but slower to peak", resolution=1)}},
    ),
    # REFERENCE.md §1, "Headline results" (Dale bullets): 10x inhibitory weights, no delay at any density.
    PaperEntry(
        id="fig_s5c",
        title="Dale's law with 10x inhibitory initial weights: no delay",
        source=f"{FO}, Supplementary Fig. S5C",
        reference="REFERENCE.md §1, Headline results (Dale)",
        setting=Setting(
            ("mnist",),
            (10_000,),
            (0.1, 1.0),
            None,
            None,
            {"inhibitory_fraction": 0.115, "inhibitory_scale": 10.0},
        ),
        metric="delay",
        unit="epochs",
        spread="not given",
        values={"mnist": {"sparse": NO_DELAY, "dense": NO_DELAY}},
        notes="no delay at any density",
    ),
    # REFERENCE.md §2, Table I (accuracy %); g2g.py PAPER["table1_accuracy"].
    PaperEntry(
        id="g2g_table1",
        title="G2GNet against its baselines",
        source=f"{G2G}, Table I",
        reference="REFERENCE.md §2, Table I",
        setting=Setting(
            ("fashion-mnist", "cifar10", "cifar100"), (1024, 1024, 1024), None, 20, None, G2G_TABLE_I
        ),
        metric="final",
        unit="%",
        spread="not given",
        values={
            "fashion-mnist": {
                "fc_same_params": Value(90.2),
                "fc_same_width": Value(90.9),
                "er_same_edges": Value(89.2),
                "g2g": Value(91.14),
            },
            "cifar10": {
                "fc_same_params": Value(68.4),
                "fc_same_width": Value(71.5),
                "er_same_edges": Value(69.8),
                "g2g": Value(71.5),
            },
            "cifar100": {
                "fc_same_params": Value(38.7),
                "fc_same_width": Value(40.8),
                "er_same_edges": Value(40.7),
                "g2g": Value(42.2),
            },
        },
        directions=(
            Direction("g2g", "er_same_edges", "G2GNet beats Erdős–Rényi with the same edges"),
            Direction("g2g", "fc_same_params", "G2GNet beats fully connected with the same parameters"),
        ),
        notes="whether Table I is the final or the best epoch is not stated (compared: final)",
    ),
    # REFERENCE.md §2 (Default; Table I's 806,100 parameters); g2g.py PAPER["table1_parameters"].
    PaperEntry(
        id="g2g_table1_parameters",
        title="G2GNet Table I parameter counts",
        source=f"{G2G}, Table I",
        reference="REFERENCE.md §2, Default (Table I's 806,100 parameters)",
        setting=Setting(("*",), (1024, 1024, 1024), None, None, None, G2G_TABLE_I),
        metric="parameters",
        unit="weights",
        spread="exact counts, rounded",
        values={
            "*": {
                "fc_same_params": Value(806_400, resolution=100),
                "fc_same_width": Value(3_150_000, text="3.15 M", resolution=10_000),
                "er_same_edges": Value(806_100, resolution=100),
                "g2g": Value(806_100, resolution=100),
            }
        },
        directions=(Direction("fc_same_width", "g2g", "G2GNet has about a quarter of the dense weights"),),
        notes=(
            "weights of three 1024 x 1024 hidden matrices only (3 * 1024^2 * (1/8 + 0.15 * 7/8) = 806,092.8); "
            "16 patches x 32 channels = a 512-wide embedding gives ~672k instead: the count implies a 1024-wide one"
        ),
    ),
    # g2g.py PAPER["fig4a"] (accuracy against p', CIFAR-10); REFERENCE.md §2 (G2G vs ER).
    PaperEntry(
        id="g2g_fig4a",
        title="G2GNet: accuracy against the inter-pathway probability p'",
        source=f"{G2G}, Fig. 4A",
        reference="REFERENCE.md §2; the plateau value from g2g.py's PAPER (fig4a)",
        setting=Setting(("cifar10",), (1024, 1024, 1024), None, 20, 5, {"p": 1.0, "groups": 8}),
        metric="final",
        unit="%",
        spread="mean of five runs; SD not given",
        values={"cifar10": {"g2g@plateau": Value(70.8, text="plateau around 70.8 % for p' in [0.08, 0.15]")}},
        directions=(
            Direction("g2g", "er_same_edges", "G2G beats Erdős–Rényi with the same edges at every p'"),
        ),
    ),
    # REFERENCE.md §2, Table II (DST removal x growth, accuracy %); dst.py PAPER["g2gnet"].
    PaperEntry(
        id="g2g_table2",
        title="G2GNet with dynamic sparse training (removal x growth)",
        source=f"{G2G}, Table II",
        reference="REFERENCE.md §2, Table II",
        setting=Setting(("cifar10", "cifar100"), (1024, 1024, 1024), None, 20, 5, G2G_TABLE_I),
        metric="final",
        unit="%",
        spread="mean of 5 runs; SD not given",
        values={
            "cifar10": {
                "static": Value(71.4),
                "magnitude+random": Value(71.6),
                "magnitude+hebbian": Value(72.7),
                "random+random": Value(72.5),
                "random+hebbian": Value(72.0),
                "hebbian+random": Value(71.5),
                "hebbian+hebbian": Value(72.5),
            },
            "cifar100": {
                "static": Value(42.2),
                "magnitude+random": Value(41.8),
                "magnitude+hebbian": Value(42.3),
                "random+random": Value(41.8),
                "random+hebbian": Value(42.28),
                "hebbian+random": Value(41.4),
                "hebbian+hebbian": Value(42.7),
            },
        },
        directions=tuple(
            Direction(f"{removal}+hebbian", "static", f"{removal} removal with Hebbian growth beats static")
            for removal in ("magnitude", "random", "hebbian")
        ),
        notes="static G2GNet: 71.4 / 42.2 here, 71.5 / 42.2 in Table I; magnitude removal = SET",
    ),
    # REFERENCE.md §3, DNM targets (static); topologies.py PAPER["static_accuracy"].
    PaperEntry(
        id="dnm_static",
        title="Network-science initialisers on a static 99 %-sparse MLP",
        source=DNM,
        reference="REFERENCE.md §3, DNM targets (static)",
        setting=Setting(
            ("mnist", "fashion-mnist", "emnist", "cifar10"), MLP_WIDTHS, (0.01,), 100, 3, CHTS_RECIPE
        ),
        metric="final",
        unit="%",
        spread="standard error over 3 seeds (the values are not in REFERENCE.md)",
        values={
            "mnist": {"dnm": Value(97.82), "full": Value(98.78), "er": Value(96.72)},
            "fashion-mnist": {"dnm": Value(89.19), "full": Value(90.88), "er": Value(87.34)},
            "emnist": {"dnm": Value(84.76), "full": Value(87.13), "er": Value(82.66)},
            "cifar10": {"dnm": Value(61.63), "full": Value(62.85), "er": Value(55.28)},
        },
        directions=(
            Direction("full", "dnm", "the dense (FC) MLP beats the static DNM one"),
            Direction("dnm", "er", "DNM initialisation beats random (ER) at the same sparsity"),
        ),
        notes="full = the paper's FC row (dense); er = its 'random' row; final vs best epoch not stated (compared: final)",
    ),
    # REFERENCE.md §3, DNM targets (dynamic) and the CHTs MLP recipe; dst.py PAPER["sparse_mlp"].
    PaperEntry(
        id="chts_mlp",
        title="Dynamic sparse training (CHTs, CHTss) on the 99 %-sparse MLP",
        source=CHTS,
        reference="REFERENCE.md §3, CHTs MLP recipe and DNM targets (dynamic)",
        setting=Setting(
            ("mnist", "fashion-mnist", "emnist", "cifar10"), MLP_WIDTHS, (0.01,), 100, 3, CHTS_RECIPE
        ),
        metric="final",
        unit="%",
        spread="standard error over 3 seeds (the values are not in REFERENCE.md)",
        values={
            "mnist": {
                "dense": Value(98.78),
                "static": Value(96.72),
                "chts": Value(98.66),
                "chtss": Value(98.90),
            },
            "fashion-mnist": {
                "dense": Value(90.88),
                "static": Value(87.34),
                "chts": Value(90.68),
                "chtss": Value(90.88),
            },
            "emnist": {
                "dense": Value(87.13),
                "static": Value(82.66),
                "chts": Value(87.40),
                "chtss": Value(87.55),
            },
            "cifar10": {
                "dense": Value(62.85),
                "static": Value(55.28),
                "chts": Value(68.76),
                "chtss": Value(68.50),
            },
        },
        directions=(
            Direction("chts", "static", "CHTs beats static sparse training"),
            Direction("chtss", "static", "CHTss beats static sparse training"),
        ),
        notes=(
            "DNM initialisation for CHTs / CHTss, ER for static; dense = FC. REFERENCE.md's CIFAR-10 'CSTI 69.77 / "
            "71.29' is ambiguous and not transcribed; final vs best epoch not stated (compared: final)"
        ),
    ),
)

#: Every paper entry by id.
PAPER: dict[str, PaperEntry] = {e.id: e for e in _ENTRIES}


def entry(entry_id: str) -> PaperEntry:
    """The entry ``entry_id``; raises ``KeyError`` naming the known ids."""
    try:
        return PAPER[entry_id]
    except KeyError:
        raise KeyError(f"no paper entry {entry_id!r}; known: {', '.join(PAPER)}") from None


def means(entry_id: str, dataset: str) -> dict[str, float]:
    """``{row: mean}`` of the numeric values of ``entry_id`` on ``dataset`` (empty when the paper has none):
    what an experiment module prints beside its own numbers, e.g. ``means("g2g_table1", "cifar10")``."""
    values = entry(entry_id).values.get(dataset, {})
    return {row: v.mean for row, v in values.items() if v.mean is not None}


def table(entry_id: str) -> dict[str, dict[str, float]]:
    """``{dataset: {row: mean}}`` of ``entry_id``'s numeric values (the shape of the experiments' PAPER tables)."""
    return {ds: means(entry_id, ds) for ds in entry(entry_id).values}
