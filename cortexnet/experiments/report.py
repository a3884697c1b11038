"""Reproduction report: our numbers beside the papers', from finished run folders of any experiment.

    python -m cortexnet.experiments.report runs/dale/<run> runs/recurrent_vs_feedforward/<run> --out report/
    python -m cortexnet.experiments.report runs/ --out report/     # every run folder below runs/
    python -m cortexnet.experiments.report runs/digits --out experiments --notes experiments/NOTES.md

Reads each run folder (config.json, summary.json; the figures *.png and *.svg beside them) and writes
``<out>/README.md`` (Markdown, the ``--notes`` files first) and ``<out>/figures/`` (the runs' figures, copied,
linked relatively). For every figure or table of
the papers that a run addresses (:data:`MATCHERS` decides from the run's experiment and configuration; the
papers' numbers are :data:`cortexnet.experiments.paper.PAPER`) it gives our value (mean ± SD over seeds, n
seeds) beside the paper's, the setting the run actually used against the paper's, the difference in SD units
where the settings match, and a one-line verdict (:func:`verdict`). A run that cannot be read (no summary.json,
corrupt JSON, an unknown experiment) is one "skipped: ... because ..." line of the report; with no readable run
at all the command fails (exit status 2) and writes nothing. Files are written atomically, one by one, figures
first and README.md last, only after every run has been read and the whole report composed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cortexnet.analysis import MeanSD
from cortexnet.config import UsageError, build_parser, check_fields, field, parse_config
from cortexnet.experiments.common import run_cli
from cortexnet.experiments.paper import METRICS, PAPER, Direction, PaperEntry, Setting, Value
from cortexnet.io import atomic_write_bytes

#: Experiments whose run folders the report can read.
KNOWN_EXPERIMENTS = (
    "dale",
    "recurrent_vs_feedforward",
    "connectivity_sweep",
    "g2g",
    "topologies",
    "dst",
    "representations",
)
#: Digits shown per unit (ours; the paper's numbers are shown as written).
DIGITS = {"%": 1, "nats": 3, "epochs": 1, "weights": 0}
#: What the report's columns are (the Markdown legend).
LEGEND = """\
How to read this report:

- **ours**: mean ± SD over seeds (n = seeds, or networks for the probes), in the paper's unit; with one seed
  the SD is "n/a". Accuracies are test accuracies in %.
- **acc@1**: test accuracy after one epoch. **best\\***: the best test accuracy over the evaluated epochs
  (epoch 0 included), *selected on the test set* as the papers did: optimistic. **test @ best val**: test
  accuracy at the epoch with the best validation accuracy (runs with a validation split only). **final**: after
  the last epoch.
- **learning delay**: whole epochs before the epoch in which test accuracy first exceeds chance + margin; an
  integer for one seed, else mean ± SD. "never" = did not learn within the run; such a seed counts at the
  run's length, so the value is a lower bound (≥).
- **Δ/SD**: (ours − paper) / max(our SD, paper SD), only where the setting matches the paper's (same dataset,
  N, p, epochs and the listed options).
- **verdict**: *within SD*: the setting matches and every number the paper gives lies within max(our SD,
  paper SD, half a unit of the paper's last digit) of ours; *same direction*: every sign the paper reports
  (sparse vs dense, method vs baseline) has the paper's sign in ours; *differs*: neither; *not comparable
  (setting differs: ...)*: dataset or scale differ and no sign could be judged (with a different setting only
  the direction is judged)."""


class RunError(Exception):
    """A run folder that cannot be reported (the message says why)."""


# ------------------------------------------------------------------------------------------------------------
# Reading run folders


@dataclass
class Run:
    """One finished run folder: its experiment, resolved configuration, provenance, summary and figures."""

    path: Path
    experiment: str
    config: dict[str, Any]
    provenance: dict[str, Any]
    summary: dict[str, Any]
    figures: list[Path] = dataclass_field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.experiment}/{self.path.name}"

    @property
    def has_val(self) -> bool:
        """The run held out a validation split (its metrics have val_acc)."""
        return float(self.config.get("val_fraction") or 0.0) > 0.0

    @property
    def seeds(self) -> int:
        return len(self.config.get("seeds") or ())


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RunError(f"{path.name} cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_run(path: Path) -> Run:
    """The run in folder ``path``; raises :class:`RunError` saying why it cannot be reported."""
    if not path.is_dir():
        raise RunError("it is not a folder" if path.exists() else "it does not exist")
    if not (path / "config.json").is_file():
        raise RunError("it has no config.json (not a cortexnet run folder)")
    meta = _read_json(path / "config.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "experiment" not in meta:
        raise RunError("config.json has no 'experiment' and 'config' (not written by a cortexnet experiment)")
    experiment = meta["experiment"]
    if experiment not in KNOWN_EXPERIMENTS:
        raise RunError(f"unknown experiment {experiment!r} (known: {', '.join(KNOWN_EXPERIMENTS)})")
    if not (path / "summary.json").is_file():
        raise RunError("it has no summary.json (the run did not finish; --resume it)")
    summary = _read_json(path / "summary.json")
    if not isinstance(summary, dict):
        raise RunError("summary.json does not hold an object")
    if summary.get("experiment", experiment) != experiment:
        raise RunError(
            f"summary.json is of experiment {summary.get('experiment')!r}, config.json of {experiment!r}"
        )
    provenance = {k: v for k, v in meta.items() if k != "config"}
    figures = sorted(p for p in path.glob("*.png") if p.is_file())
    return Run(path, experiment, meta["config"], provenance, summary, figures)


def expand(paths: Iterable[str]) -> list[Path]:
    """Run folders from the command line: a folder with a config.json is a run; one without is searched one and
    two levels down (``runs/`` or ``runs/dale/``); anything else stays as given (it is reported as skipped)."""
    out: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir() and not (path / "config.json").exists():
            found = sorted({p.parent for p in (*path.glob("*/config.json"), *path.glob("*/*/config.json"))})
            out.extend(found or [path])
        else:
            out.append(path)
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------------------------------------------------
# Our numbers


@dataclass(frozen=True)
class Stat:
    """Our value of one row: mean, SD and n (seeds), in the paper's unit. ``censored``: seeds whose learning
    delay is unknown (never learned; counted at the run's length, so ``mean`` is a lower bound). ``spread``:
    what the SD spans."""

    mean: float | None
    sd: float | None
    n: int
    censored: int = 0
    spread: str = "SD over seeds"

    @staticmethod
    def of(values: Iterable[float | None], scale: float = 1.0, spread: str = "SD over seeds") -> Stat:
        m = MeanSD.of(None if v is None else v * scale for v in values)
        return Stat(m.mean, m.sd, m.n, spread=spread)


def fmt_stat(stat: Stat, unit: str) -> str:
    """``mean ± SD`` with the unit's digits; ``± n/a`` for one seed; learning delays as integers for one seed."""
    if stat.mean is None:
        return "n/a"
    if unit == "epochs":
        if stat.censored == stat.n:
            return f"never (≥ {stat.mean:g})"
        if stat.n == 1:
            return f"{stat.mean:.0f}"
        text = MeanSD(stat.mean, stat.sd, stat.n).format(1.0, 1)
        return f"≥ {text} ({stat.censored} never)" if stat.censored else text
    digits = DIGITS.get(unit, 2)
    if unit == "weights":
        spread = "n/a" if stat.sd is None else f"{stat.sd:,.0f}"
        return f"{stat.mean:,.0f} ± {spread}"
    return MeanSD(stat.mean, stat.sd, stat.n).format(1.0, digits)


def _acc1(r: dict) -> float | None:
    per_epoch = r.get("test_acc_per_epoch") or []
    return per_epoch[1] if len(per_epoch) > 1 else None


#: Per-seed accuracy readers of a summary's run record, by metric name.
ACCURACY = {
    "acc@1": _acc1,
    "best": lambda r: r.get("best_test_acc"),
    "final": lambda r: r.get("final_test_acc"),
    "best_val": lambda r: r.get("test_acc_at_best_val"),
}
#: Column names of the accuracy metrics.
COLUMN = {"acc@1": "acc@1", "best": "best*", "final": "final", "best_val": "test @ best val"}


def accuracy(runs: Sequence[dict], metric: str) -> Stat:
    """Mean ± SD over seeds (in %) of a summary's per-seed run records."""
    return Stat.of((ACCURACY[metric](r) for r in runs), 100.0)


def delay(runs: Sequence[dict]) -> Stat:
    """Learning delay over seeds; a seed that never learned counts at its run length (censored)."""
    values = [r["learning_delay"] if r.get("learning_delay") is not None else r["epochs"] for r in runs]
    m = MeanSD.of(values)
    return Stat(m.mean, m.sd, m.n, censored=sum(r.get("learning_delay") is None for r in runs))


def accuracy_columns(run: Run, runs: Sequence[dict], metric: str) -> dict[str, str]:
    """The other accuracy readings of a row (beside ``metric``): acc@1, final, best* and, with a validation
    split, test @ best val."""
    names = ["acc@1", "final", "best"] + (["best_val"] if run.has_val else [])
    return {COLUMN[m]: fmt_stat(accuracy(runs, m), "%") for m in names if m != metric}


# ------------------------------------------------------------------------------------------------------------
# Comparisons and verdicts


@dataclass
class Row:
    """One compared line: our value beside the paper's (``paper_key``: the row of the paper's values)."""

    key: str
    label: str
    ours: Stat
    paper_key: str | None = None
    aliases: tuple[str, ...] = ()
    columns: dict[str, str] = dataclass_field(default_factory=dict)


@dataclass
class Check:
    """One of the paper's signs tested on our rows: ``holds`` True / False, None when it cannot be judged."""

    text: str
    higher: str
    lower: str
    ours: float | None
    paper: float | None
    holds: bool | None
    why: str = ""


@dataclass
class Comparison:
    """What one run says about one paper entry."""

    entry: PaperEntry
    run: Run
    actual: dict[str, Any]
    rows: list[Row]
    note: str = ""
    checks: list[Check] = dataclass_field(default_factory=list)
    mismatches: list[str] = dataclass_field(default_factory=list)
    figures: list[Path] = dataclass_field(default_factory=list)

    @property
    def paper_dataset(self) -> str:
        """The paper's dataset the rows are compared with: ours when the paper reports it, else its first."""
        ds = self.actual.get("dataset")
        if ds in self.entry.values:
            return ds
        return next(iter(self.entry.values))

    def paper(self, row: Row) -> Value | None:
        return self.entry.value(self.paper_dataset, row.paper_key or row.key)


def tolerance(ours_sd: float | None, paper: Value) -> float:
    """max(our SD, the paper's SD, half a unit of the paper's last digit)."""
    return max(ours_sd or 0.0, paper.sd or 0.0, paper.half_unit())


def within_sd(ours_mean: float, ours_sd: float | None, paper: Value) -> bool:
    """|ours − paper| <= :func:`tolerance` (the paper's value must be a number)."""
    if paper.mean is None:
        raise ValueError("the paper gives no number here: nothing to be within")
    return abs(ours_mean - paper.mean) <= tolerance(ours_sd, paper) + 1e-12


def sd_units(ours_mean: float | None, ours_sd: float | None, paper: Value | None) -> float | None:
    """(ours − paper) / max(our SD, paper SD); None without two numbers or without any SD."""
    if ours_mean is None or paper is None or paper.mean is None:
        return None
    scale = max(ours_sd or 0.0, paper.sd or 0.0)
    return None if scale == 0 else (ours_mean - paper.mean) / scale


def direction_holds(higher: Stat, lower: Stat) -> bool | None:
    """Whether ``higher`` > ``lower`` in ours; None where a censored (lower-bound) value leaves it open."""
    if higher.mean is None or lower.mean is None:
        return None
    if higher.censored and lower.censored:
        return None
    if lower.censored:  # lower >= its mean
        return False if higher.mean <= lower.mean else None
    if higher.censored:  # higher >= its mean
        return True if higher.mean > lower.mean else None
    return higher.mean > lower.mean


def verdict(
    mismatches: Sequence[str], within: Sequence[bool | None], directions: Sequence[bool | None]
) -> str:
    """The one-line verdict of a comparison.

    ``mismatches``: how the run's setting differs from the paper's (empty: it matches); ``within``: per row with a
    paper value, whether ours is within SD (None where the paper gives words, not a number); ``directions``: per
    sign the paper reports, whether ours has it (None: cannot be judged).

    * ``"within SD"``: the setting matches and ours is within SD of every number the paper gives (at least one;
      rows the paper states in words only do not count);
    * ``"same direction"``: every judged sign is the paper's (with a different setting followed by why the values
      are not comparable);
    * ``"not comparable (setting differs: ...)"``: the setting differs and no sign could be judged;
    * ``"differs"``: anything else (with a different setting: a sign opposite to the paper's, or no difference).
    """
    differs = "; ".join(mismatches)
    judged = [d for d in directions if d is not None]
    numbers = [w for w in within if w is not None]
    if not mismatches and numbers and all(numbers):
        return "within SD"
    if judged and all(judged):
        return "same direction" + (f" (values not comparable: setting differs: {differs})" if differs else "")
    if mismatches and not judged:
        return f"not comparable (setting differs: {differs})"
    if mismatches:
        return f"differs (not the paper's direction; values not comparable: setting differs: {differs})"
    if not numbers and not judged:
        return "not comparable (the paper gives neither a number nor a sign to compare)"
    return "differs"


def _fmt_list(values: Sequence[Any]) -> str:
    return ", ".join(f"{v:,}" if isinstance(v, int) else f"{v:g}" for v in values)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def setting_mismatches(paper: Setting, actual: dict[str, Any]) -> list[str]:
    """How ``actual`` (the run's setting, as an extractor read it) differs from the paper's ``setting``. Only the
    fields ``actual`` has are compared; a field the paper does not state cannot be shown to match."""
    out = []
    ds = actual.get("dataset")
    if "dataset" in actual and "*" not in paper.datasets and ds not in paper.datasets:
        out.append(f"dataset {ds} vs {' / '.join(paper.datasets)}")
    for key, name, theirs in (("nodes", "N", paper.nodes), ("densities", "p", paper.densities)):
        if key not in actual:
            continue
        ours = tuple(actual[key])
        if theirs is None:
            out.append(f"{name} {_fmt_list(ours)} (the paper's is not stated in REFERENCE.md)")
        elif len(ours) != len(theirs) or not all(
            _same(a, b) for a, b in zip(sorted(ours), sorted(theirs), strict=True)
        ):
            out.append(f"{name} {_fmt_list(ours) or 'none'} vs {_fmt_list(theirs)}")
    if "epochs" in actual:
        if paper.epochs is None:
            out.append(
                f"epochs {actual['epochs']} (the paper's training length is not stated in REFERENCE.md)"
            )
        elif not _same(actual["epochs"], paper.epochs):
            out.append(f"epochs {actual['epochs']} vs {paper.epochs}")
    for key, theirs in paper.extra.items():
        if key in actual and not _same(actual[key], theirs):
            out.append(f"{_option(key, actual[key])} vs {_option(key, theirs).split(' ', 1)[1]}")
    return out


def finish(comparison: Comparison, pairs: Sequence[tuple[Direction, str, str]] | None = None) -> Comparison:
    """Fill in the setting mismatches and the sign checks (``pairs``: (direction, higher row, lower row); default:
    the entry's directions with their own row keys, matched against row keys and aliases)."""
    c = comparison
    c.mismatches = setting_mismatches(c.entry.setting, c.actual)
    by_key: dict[str, Row] = {}
    for row in c.rows:
        for k in (row.key, *row.aliases):
            by_key.setdefault(k, row)
    if pairs is None:
        pairs = [(d, d.higher, d.lower) for d in c.entry.directions]
    for d, hi, lo in pairs:
        h, lo_row = by_key.get(hi), by_key.get(lo)
        ph = c.entry.value(c.paper_dataset, d.higher)
        pl = c.entry.value(c.paper_dataset, d.lower)
        paper_diff = ph.mean - pl.mean if ph and pl and ph.mean is not None and pl.mean is not None else None
        if h is None or lo_row is None:
            missing = " and ".join(k for k, r in ((hi, h), (lo, lo_row)) if r is None)
            c.checks.append(Check(d.text, hi, lo, None, paper_diff, None, f"this run has no {missing}"))
            continue
        diff = None if h.ours.mean is None or lo_row.ours.mean is None else h.ours.mean - lo_row.ours.mean
        holds = direction_holds(h.ours, lo_row.ours)
        why = "" if holds is not None else "a never-learned (censored) value leaves it open"
        c.checks.append(Check(d.text, h.label, lo_row.label, diff, paper_diff, holds, why))
    return c


def row_verdict(c: Comparison, row: Row) -> str:
    paper = c.paper(row)
    if paper is None:
        return "—"
    if paper.mean is None:
        return "no number in the paper"
    if c.mismatches:
        return "not comparable"
    if row.ours.mean is None:
        return "n/a"
    if row.ours.censored and row.ours.mean <= paper.mean:
        return "n/a (censored)"
    return "within SD" if within_sd(row.ours.mean, row.ours.sd, paper) else "differs"


def comparison_verdict(c: Comparison) -> str:
    within: list[bool | None] = []
    for row in c.rows:
        paper = c.paper(row)
        if paper is None:
            continue
        if paper.mean is None or row.ours.mean is None or c.mismatches:
            within.append(None)
        else:
            within.append(row_verdict(c, row) == "within SD")
    return verdict(c.mismatches, within, [k.holds for k in c.checks])


# ------------------------------------------------------------------------------------------------------------
# Extractors: one run + one paper entry -> a comparison


def _setting(run: Run, **fields: Any) -> dict[str, Any]:
    return {"dataset": run.config.get("dataset"), "seeds": run.seeds, **fields}


def _by_density(confs: Sequence[dict]) -> tuple[dict | None, dict | None, list[dict]]:
    """(sparse: the lowest p < 1, dense: p = 1, the other configurations) of configurations with a density."""
    dense = next((c for c in confs if _same(c["density"], 1.0)), None)
    below = sorted((c for c in confs if c["density"] < 1.0), key=lambda c: c["density"])
    sparse = below[0] if below else None
    return sparse, dense, [c for c in confs if c is not sparse and c is not dense]


def _size_class(sizes: Sequence[int], paper_sizes: Sequence[int] | None) -> dict[int, str]:
    """Our sizes → "small" / "large": the smallest and the largest when there are several, else the nearer (on a
    log scale) of the paper's smallest and largest size."""
    sizes = sorted(set(sizes))
    if len(sizes) > 1:
        return {sizes[0]: "small", sizes[-1]: "large"}
    if not sizes:
        return {}
    lo, hi = (min(paper_sizes), max(paper_sizes)) if paper_sizes else (1_000, 10_000)
    n = sizes[0]
    return {n: "small" if abs(math.log(n / lo)) < abs(math.log(n / hi)) else "large"}


def _density_rows(run: Run, sparse, dense, others, stat: Callable[[dict], Stat], metric: str,
                  prefix: str = "", label: str = "") -> list[Row]:  # fmt: skip
    rows = []
    for conf, key in ((sparse, "sparse"), (dense, "dense"), *((c, f"p={c['density']:g}") for c in others)):
        if conf is None:
            continue
        kind = f"{key}, " if key in ("sparse", "dense") else ""
        rows.append(
            Row(prefix + key, f"{label}{kind}p = {conf['density']:g}", stat(conf),
                columns=accuracy_columns(run, conf["runs"], metric))
        )  # fmt: skip
    return rows


def extract_rvf_single_epoch(run: Run, entry: PaperEntry) -> Comparison:
    """table_s1/s2/s3: the largest recurrent network, sparse vs dense, acc@1."""
    # recurrent_vs_feedforward: its recurrent rows; connectivity_sweep: its ReLU rows (the paper's Fig. 2 units)
    confs = [c for c in run.summary["configurations"]
             if c.get("architecture", "recurrent") == "recurrent" and c.get("activation", "relu") == "relu"]  # fmt: skip
    n = max(c["nodes"] for c in confs)
    sparse, dense, others = _by_density([c for c in confs if c["nodes"] == n])
    rows = _density_rows(run, sparse, dense, others, lambda c: accuracy(c["runs"], "acc@1"), "acc@1",
                         label=f"recurrent, N = {n:,}, ")  # fmt: skip
    actual = _setting(run, nodes=(n,), densities=tuple(c["density"] for c in (sparse, dense) if c), epochs=1,
                      activation=run.config.get("activation", "relu"), dale=False)  # fmt: skip
    return finish(Comparison(entry, run, actual, rows, note=f"acc@1 ({METRICS['acc@1']})"))


def extract_rvf_fig3a(run: Run, entry: PaperEntry) -> Comparison:
    """fig3a: sparse vs dense acc@1 for each architecture at the smallest and the largest size."""
    confs = run.summary["configurations"]
    rows, used_n, used_p = [], set(), set()
    classes = _size_class([c["nodes"] for c in confs], entry.setting.nodes)
    for arch in ("recurrent", "feedforward"):
        for n, cls in classes.items():
            sparse, dense, _ = _by_density(
                [c for c in confs if c["architecture"] == arch and c["nodes"] == n]
            )
            for conf, which in ((sparse, "sparse"), (dense, "dense")):
                if conf is None:
                    continue
                used_n.add(n)
                used_p.add(conf["density"])
                rows.append(Row(f"{arch}/{cls}/{which}", f"{arch}, N = {n:,} ({cls}), p = {conf['density']:g}",
                                accuracy(conf["runs"], "acc@1"), columns=accuracy_columns(run, conf["runs"], "acc@1")))  # fmt: skip
    actual = _setting(run, nodes=tuple(sorted(used_n)), densities=tuple(sorted(used_p)), epochs=1,
                      activation=run.config.get("activation"), dale=False)  # fmt: skip
    return finish(Comparison(entry, run, actual, rows, note=f"acc@1 ({METRICS['acc@1']})"))


def _data_sizes(run: Run) -> list[int | None]:
    """The training-set sizes (examples per class, None: all) of a recurrent_vs_feedforward run."""
    sweep = _cfg(run, "n_per_class_sweep") or ()
    return [k or None for k in sweep] if sweep else [_cfg(run, "n_per_class")]


def extract_rvf_limited_data(run: Run, entry: PaperEntry) -> Comparison:
    """fig4a/fig4b: recurrent networks on limited data, best* (test-selected, as the paper), small and large; with
    a training-set sweep (Fig. S4) every size, the paper's restricted size and the full set compared."""
    confs = [c for c in run.summary["configurations"] if c["architecture"] == "recurrent"]
    classes = _size_class([c["nodes"] for c in confs], entry.setting.nodes)
    sizes = _data_sizes(run)
    wanted = entry.setting.extra.get("n_per_class")
    restricted = [k for k in sizes if k is not None]
    # The rows the paper's restricted-data numbers are compared with: its size if run, else our smallest.
    main = wanted if wanted in restricted else (min(restricted) if restricted else None)
    rows, used_n, used_p = [], set(), set()
    for k in sorted(sizes, key=lambda v: (v is None, v or 0)):
        suffix = "" if k == main else ("/full data" if k is None else f"/{k} per class")
        data = "" if len(sizes) == 1 else (", full training set" if k is None else f", {k:,} per class")
        for n, cls in classes.items():
            sparse, dense, _ = _by_density(
                [c for c in confs if c["nodes"] == n and c.get("n_per_class", sizes[0]) == k]
            )
            for conf, which in ((sparse, "sparse"), (dense, "dense")):
                if conf is not None:
                    used_n.add(n)
                    used_p.add(conf["density"])
                    rows.append(Row(f"{cls}/{which}{suffix}", f"recurrent, N = {n:,} ({cls}), p = {conf['density']:g}{data}",
                                    accuracy(conf["runs"], "best"), columns=accuracy_columns(run, conf["runs"], "best")))  # fmt: skip
    actual = _setting(run, nodes=tuple(sorted(used_n)), densities=tuple(sorted(used_p)), epochs=run.config["epochs"],
                      activation=run.config.get("activation"), dale=False, n_per_class=main)  # fmt: skip
    note = f"best* ({METRICS['best']})"
    if len(sizes) > 1:
        note += "; n_per_class above is the size compared with the paper's restricted-data numbers"
    return finish(Comparison(entry, run, actual, rows, note=note))


def _dale_confs(run: Run, entry: PaperEntry) -> list[dict]:
    fraction = entry.setting.extra.get("inhibitory_fraction")
    return [
        c
        for c in run.summary["configurations"]
        if fraction is None or _same(c["inhibitory_fraction"], fraction)
    ]


def _dale_actual(run: Run, confs: Sequence[dict], densities: Iterable[float]) -> dict[str, Any]:
    return _setting(run, nodes=tuple(sorted({c["nodes"] for c in confs})), densities=tuple(sorted(set(densities))),
                    epochs=run.config["epochs"], inhibitory_fraction=confs[0]["inhibitory_fraction"],
                    inhibitory_scale=float(run.config.get("inhibitory_scale", 1.0)))  # fmt: skip


def extract_dale_delay(run: Run, entry: PaperEntry) -> Comparison:
    """fig6b / fig6f / fig_s5b / fig_s5c: learning delay per density at one size."""
    confs = _dale_confs(run, entry)
    sparse, dense, others = _by_density(confs)
    rows = _density_rows(run, sparse, dense, others, lambda c: delay(c["runs"]), "delay")
    used = [c["density"] for c in (sparse, dense) if c]
    note = f"learning delay in epochs ({METRICS['delay']}; margin {run.config.get('delay_margin', 0.05):g})"
    return finish(Comparison(entry, run, _dale_actual(run, confs, used), rows, note=note))


def extract_dale_delay_vs_size(run: Run, entry: PaperEntry) -> Comparison:
    """fig6c: learning delay of the dense and the sparsest density at every size."""
    confs = _dale_confs(run, entry)
    sizes = sorted({c["nodes"] for c in confs})
    rows, used = [], set()
    for n in sizes:
        sparse, dense, _ = _by_density([c for c in confs if c["nodes"] == n])
        for conf, which in ((sparse, "sparse"), (dense, "dense")):
            if conf is None:
                continue
            used.add(conf["density"])
            aliases = tuple(
                f"{which}@{end}" for end, m in (("smallest", sizes[0]), ("largest", sizes[-1])) if m == n
            )
            rows.append(Row(f"{which}@N={n}", f"N = {n:,}, p = {conf['density']:g}", delay(conf["runs"]),
                            paper_key=which, aliases=aliases, columns=accuracy_columns(run, conf["runs"], "delay")))  # fmt: skip
    note = f"learning delay in epochs ({METRICS['delay']}; margin {run.config.get('delay_margin', 0.05):g})"
    return finish(Comparison(entry, run, _dale_actual(run, confs, used), rows, note=note))


def _g2g_actual(run: Run, **more: Any) -> dict[str, Any]:
    cfg = run.config
    return _setting(run, nodes=tuple(cfg["hidden"]), p=cfg.get("p"), p_inter=cfg.get("p_inter"),
                    groups=cfg.get("groups"), patch_channels=cfg.get("patch_channels"), **more)  # fmt: skip


def extract_g2g_table1(run: Run, entry: PaperEntry) -> Comparison:
    """g2g_table1: final test accuracy of G2GNet and its baselines."""
    rows = [Row(r["model"], r["model"], accuracy(r["runs"], "final"), columns=accuracy_columns(run, r["runs"], "final"))
            for r in run.summary["table1"]]  # fmt: skip
    actual = _g2g_actual(run, epochs=run.config["epochs"])
    return finish(Comparison(entry, run, actual, rows, note=f"final ({METRICS['final']})"))


def extract_g2g_parameters(run: Run, entry: PaperEntry) -> Comparison:
    """g2g_table1_parameters: the built models' hidden weights."""
    rows = []
    for r in run.summary["table1"]:
        n = len(r["runs"])
        sd = r["parameters_sd"].get("hidden_synapses")
        rows.append(
            Row(
                r["model"],
                r["model"],
                Stat(r["parameters"]["hidden_synapses"], sd, n, spread="SD over seeds"),
            )
        )
    actual = _g2g_actual(run)
    actual.pop("dataset")  # the counts do not depend on the data (beyond its image size)
    return finish(Comparison(entry, run, actual, rows, note=f"{METRICS['parameters']}, built models"))


def extract_g2g_sweep(run: Run, entry: PaperEntry) -> Comparison:
    """g2g_fig4a: G2G and edge-matched ER at every p' of the sweep; the plateau as the mean over p' in
    [0.08, 0.15]."""
    rows, pairs, plateau = [], [], []
    (direction,) = entry.directions
    for point in run.summary["sweep"]:
        q = point["p_inter"]
        for kind in ("g2g", "er_same_edges"):
            runs = point[kind]["runs"]
            rows.append(Row(f"{kind}@{q:g}", f"{kind}, p' = {q:g}", accuracy(runs, "final"),
                            columns=accuracy_columns(run, runs, "final")))  # fmt: skip
        if 0.08 - 1e-9 <= q <= 0.15 + 1e-9:
            plateau.extend(point["g2g"]["runs"])
        pairs.append((Direction(direction.higher, direction.lower, f"{direction.text} (p' = {q:g})"),
                      f"g2g@{q:g}", f"er_same_edges@{q:g}"))  # fmt: skip
    if plateau:
        rows.append(Row("g2g@plateau", "g2g, p' in [0.08, 0.15] (all seeds and points)",
                        accuracy(plateau, "final")))  # fmt: skip
    actual = _g2g_actual(run, epochs=run.config["epochs"])
    actual.pop("p_inter")
    return finish(Comparison(entry, run, actual, rows, note=f"final ({METRICS['final']})"), pairs)


def _mlp_actual(run: Run, density: float) -> dict[str, Any]:
    cfg = run.config
    return _setting(run, nodes=tuple(cfg["hidden"]), densities=(density,), epochs=cfg["epochs"],
                    optimizer=cfg.get("optimizer"), batch_size=cfg.get("batch_size"))  # fmt: skip


def extract_topologies(run: Run, entry: PaperEntry) -> Comparison:
    """dnm_static: final test accuracy of the static sparse MLP per topology (the recurrent rows are new)."""
    rows = []
    for r in run.summary["rows"]:
        if r["model"] != "mlp":
            continue
        cols = accuracy_columns(run, r["runs"], "final")
        se = r.get("final_test_acc_se")
        cols["SE"] = "n/a" if se is None else f"{100 * se:.1f}"
        rows.append(Row(r["topology"], r["topology"], accuracy(r["runs"], "final"), columns=cols))
    note = f"final ({METRICS['final']}); SE = SD / sqrt(seeds), the paper's spread"
    return finish(Comparison(entry, run, _mlp_actual(run, run.config["density"]), rows, note=note))


def extract_dst(run: Run, entry: PaperEntry) -> Comparison:
    """g2g_table2 / chts_mlp: final test accuracy per rule."""
    rows = [Row(r["rule"], r["rule"], accuracy(r["runs"], "final"), columns=accuracy_columns(run, r["runs"], "final"))
            for r in run.summary["rows"]]  # fmt: skip
    if run.config["model"] == "g2gnet":
        actual = _g2g_actual(run, epochs=run.config["epochs"])
        actual["p"] = run.config.get("density")
    else:
        actual = _mlp_actual(run, run.config["density"])
    return finish(Comparison(entry, run, actual, rows, note=f"final ({METRICS['final']})"))


def _probed(run: Run) -> list[dict]:
    """The probed networks of a representations run that are cortex-like (nodes and a density)."""
    return [
        n for n in run.summary.get("networks", []) if "n_nodes" in n.get("model", {}) and "p" in n["model"]
    ]


def _probe_dataset(net: dict) -> str:
    """The dataset a probed checkpoint was trained on: from its run folder's config.json, when it is there."""
    try:
        meta = json.loads((Path(net["checkpoint"]).parents[2] / "config.json").read_text())
        return str(meta["config"]["dataset"])
    except (OSError, KeyError, IndexError, TypeError, ValueError):
        return "unknown"


def _probe_groups(run: Run) -> tuple[list[dict], list[dict], dict[str, Any]]:
    nets = _probed(run)
    dense = [n for n in nets if _same(n["model"]["p"], 1.0)]
    below = sorted({n["model"]["p"] for n in nets if n["model"]["p"] < 1.0})
    sparse = [n for n in nets if below and _same(n["model"]["p"], below[0])]
    used = sparse + dense
    datasets = sorted({_probe_dataset(n) for n in used})
    epochs = sorted({n.get("epochs_trained") for n in used}, key=str)
    actual = {
        "dataset": datasets[0] if len(datasets) == 1 else " / ".join(datasets),
        "seeds": len(used),
        "nodes": tuple(sorted({n["model"]["n_nodes"] for n in used})),
        "densities": tuple(sorted({n["model"]["p"] for n in used})),
        "epochs": epochs[0] if len(epochs) == 1 else " / ".join(map(str, epochs)),
        "activation": " / ".join(sorted({str(n["model"].get("activation")) for n in used})),
        "dale": any(n["model"].get("dale") for n in used),
    }
    return sparse, dense, actual


def _probe_stat(nets: Sequence[dict], mean_sd: Callable[[dict], tuple[float, float | None]], scale: float,
                what: str) -> Stat:  # fmt: skip
    """One network: its own mean ± SD (over ``what``); several: mean ± SD of their means over networks."""
    if len(nets) == 1:
        m, s = mean_sd(nets[0])
        return Stat(m * scale, None if s is None else s * scale, 1, spread=f"SD over {what}, one network")
    return Stat.of((mean_sd(n)[0] for n in nets), scale, spread="SD over networks")


def extract_probe(run: Run, entry: PaperEntry) -> Comparison:
    """fig5b / fig5_mi / fig5e: the probes of the sparse and the dense network(s)."""
    sparse, dense, actual = _probe_groups(run)
    rows: list[Row] = []
    for nets, which in ((sparse, "sparse"), (dense, "dense")):
        if not nets:
            continue
        label = f"{which}, p = {nets[0]['model']['p']:g}"
        if entry.metric == "active_fraction":
            st = _probe_stat(nets, lambda n: (n["sparsity"]["active_fraction_mean"], n["sparsity"]["active_fraction_sd"]),
                             100.0, "images")  # fmt: skip
            rows.append(Row(which, label, st))
        elif entry.metric == "mi":
            st = _probe_stat(
                nets, lambda n: (n["mutual_information"]["mean"], n["mutual_information"]["sd"]), 1.0, "pairs"
            )
            rows.append(Row(which, label, st))
        else:
            for q in (0.0, 0.5):
                st = _probe_stat(nets, lambda n, q=q: _dropout_at(n, q), 100.0, "dropout draws")
                rows.append(Row(f"{which}/q={q:g}", f"{label}, {100 * q:g} % zeroed", st))
            st = _probe_stat(
                nets, lambda n: (_dropout_at(n, 0.0)[0] - _dropout_at(n, 0.9)[0], None), 100.0, "-"
            )
            rows.append(Row(f"{which}/loss at q=0.9", f"{label}, points lost with 90 % zeroed", st))
    note = f"{METRICS[entry.metric]}; " + (rows[0].ours.spread if rows else "")
    return finish(Comparison(entry, run, actual, rows, note=note))


def _dropout_at(net: dict, q: float) -> tuple[float, float | None]:
    d = net["dropout"]
    for i, value in enumerate(d["q"]):
        if _same(value, q):
            return d["accuracy_mean"][i], d["accuracy_sd"][i]
    raise KeyError(f"dropout q = {q:g} was not probed (probed: {_fmt_list(d['q'])}); add it to --dropout-qs")


# ------------------------------------------------------------------------------------------------------------
# Matchers: which paper entries a run addresses


@dataclass(frozen=True)
class Matcher:
    """``entry`` is addressed by runs of ``experiment`` for which ``applies(run)``; ``extract`` builds the
    comparison. Adding a figure: one :data:`~cortexnet.experiments.paper.PAPER` entry and one matcher here."""

    entry: str
    experiment: str
    applies: Callable[[Run], bool]
    extract: Callable[[Run, PaperEntry], Comparison]
    figures: tuple[str, ...] | None = ("accuracy.png",)


def _cfg(run: Run, key: str, default: Any = None) -> Any:
    return run.config.get(key, default)


def _dale_plain(run: Run, fraction: float) -> bool:
    """A Dale run of the paper's kind (not NeuroGym), with configurations at ``fraction`` inhibitory, the default
    inhibitory scale and no sparse-to-dense."""
    return (_cfg(run, "dataset") != "neurogym" and not _cfg(run, "sparse_to_dense", False)
            and _same(float(_cfg(run, "inhibitory_scale", 1.0)), 1.0)
            and any(_same(f, fraction) for f in _cfg(run, "inhibitory_fractions", ())))  # fmt: skip


def _has_sparse_and_dense(run: Run) -> bool:
    ps = _cfg(run, "densities", ())
    return any(_same(p, 1.0) for p in ps) and any(p < 1.0 for p in ps)


def _one_size(run: Run) -> bool:
    return len(_cfg(run, "nodes", ())) == 1


def _rvf_dataset(run: Run) -> str:
    ds = _cfg(run, "dataset")
    return "table_s2" if ds == "cifar10" else "table_s3" if str(ds).startswith("sleep") else "table_s1"


def _rvf_recurrent(run: Run) -> bool:
    return "recurrent" in _cfg(run, "architectures", ()) and _has_sparse_and_dense(run)


def _sweep_relu(run: Run) -> bool:
    """A connectivity_sweep grid (not a weight budget) with ReLU units and both a sparse and the dense p."""
    return (
        "relu" in _cfg(run, "activations", ())
        and _cfg(run, "weight_budget") is None
        and _has_sparse_and_dense(run)
    )


def _limited(run: Run, cifar: bool) -> bool:
    return _rvf_recurrent(run) and _data_sizes(run) != [None] and (_cfg(run, "dataset") == "cifar10") == cifar


def _full_data(run: Run) -> bool:
    """Trained on the whole training set only (not a limited-data run)."""
    return _data_sizes(run) == [None]


def _probes(run: Run, key: str) -> bool:
    return any(key in n for n in _probed(run))


MATCHERS: tuple[Matcher, ...] = (
    Matcher("table_s1", "recurrent_vs_feedforward",
            lambda r: _rvf_recurrent(r) and _rvf_dataset(r) == "table_s1" and _full_data(r),
            extract_rvf_single_epoch),
    Matcher("table_s2", "recurrent_vs_feedforward",
            lambda r: _rvf_recurrent(r) and _rvf_dataset(r) == "table_s2" and _full_data(r),
            extract_rvf_single_epoch),
    Matcher("table_s3", "recurrent_vs_feedforward",
            lambda r: _rvf_recurrent(r) and _rvf_dataset(r) == "table_s3" and _full_data(r),
            extract_rvf_single_epoch),
    *(Matcher(table, "connectivity_sweep",
              lambda r, t=table: _sweep_relu(r) and _rvf_dataset(r) == t and _cfg(r, "n_per_class") is None,
              extract_rvf_single_epoch, ("heatmap.png", "accuracy.png"))
      for table in ("table_s1", "table_s2", "table_s3")),
    Matcher("fig3a", "recurrent_vs_feedforward",
            lambda r: _has_sparse_and_dense(r) and _full_data(r), extract_rvf_fig3a,
            ("accuracy.png", "heatmap.png")),
    Matcher("fig4a", "recurrent_vs_feedforward", lambda r: _limited(r, cifar=False), extract_rvf_limited_data,
            ("limited_data.png", "accuracy.png")),
    Matcher("fig4b", "recurrent_vs_feedforward", lambda r: _limited(r, cifar=True), extract_rvf_limited_data,
            ("limited_data.png", "accuracy.png")),
    Matcher("fig5b", "representations", lambda r: _probes(r, "sparsity"), extract_probe,
            ("activation_sparsity.png", "activation_magnitudes.png")),
    Matcher("fig5_mi", "representations", lambda r: _probes(r, "mutual_information"), extract_probe,
            ("mutual_information.png",)),
    Matcher("fig5e", "representations", lambda r: _probes(r, "dropout"), extract_probe, ("dropout.png",)),
    Matcher("fig6b", "dale", lambda r: _dale_plain(r, 0.115) and _one_size(r) and _has_sparse_and_dense(r),
            extract_dale_delay),
    Matcher("fig6c", "dale", lambda r: _dale_plain(r, 0.115) and not _one_size(r), extract_dale_delay_vs_size,
            ("delay_vs_size.png", "accuracy.png")),
    Matcher("fig6f", "dale", lambda r: _dale_plain(r, 0.5) and _one_size(r), extract_dale_delay),
    Matcher("fig_s5b", "dale", lambda r: _cfg(r, "dataset") != "neurogym" and bool(_cfg(r, "sparse_to_dense"))
            and _one_size(r), extract_dale_delay),
    Matcher("fig_s5c", "dale", lambda r: _cfg(r, "dataset") != "neurogym" and not _cfg(r, "sparse_to_dense", False)
            and _same(float(_cfg(r, "inhibitory_scale", 1.0)), 10.0) and _one_size(r), extract_dale_delay),
    Matcher("g2g_table1", "g2g", lambda r: bool(r.summary.get("table1")), extract_g2g_table1),
    Matcher("g2g_table1_parameters", "g2g", lambda r: bool(r.summary.get("table1")), extract_g2g_parameters, ()),
    Matcher("g2g_fig4a", "g2g", lambda r: bool(r.summary.get("sweep")), extract_g2g_sweep, ("sweep.png",)),
    Matcher("dnm_static", "topologies", lambda r: any(x["model"] == "mlp" for x in r.summary.get("rows", ())),
            extract_topologies),
    Matcher("g2g_table2", "dst", lambda r: _cfg(r, "model") == "g2gnet", extract_dst),
    Matcher("chts_mlp", "dst", lambda r: _cfg(r, "model") == "sparse_mlp", extract_dst),
)  # fmt: skip


def addressed(run: Run) -> list[Matcher]:
    """The matchers (paper entries) that apply to ``run``, in :data:`MATCHERS` order."""
    return [m for m in MATCHERS if m.experiment == run.experiment and m.applies(run)]


# ------------------------------------------------------------------------------------------------------------
# Composing the report


@dataclass(frozen=True)
class ReportConfig:
    """Options of ``python -m cortexnet.experiments.report``."""

    runs: tuple[str, ...] = field(
        (),
        "run folders (RUN_DIR ...; positional), or folders holding run folders such as runs/ or runs/dale/",
    )
    out: str = field("report", "output folder: README.md and figures/ are written there")
    title: str = field("Reproduction report: cortexnet beside the papers", "title of README.md")
    figures: bool = field(
        True, "copy the runs' figures (PNG, and the SVG beside each) into <out>/figures/ and embed them"
    )
    notes: tuple[str, ...] = field(
        (),
        "Markdown files included after the title, in order (the hand-written part: what was run where, the "
        "deviations explained); experiments/README.md is this command's output with experiments/NOTES.md",
    )

    def validate(self) -> ReportConfig:
        """Check every value before any work; raise ``ValueError`` naming the value and the fix."""
        check_fields(self)
        if not self.runs:
            raise ValueError(
                "give at least one RUN_DIR (a run folder of any experiment, or a folder of run folders)"
            )
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {self.out} exists and is not a folder; choose another --out")
        for note in self.notes:
            if not Path(note).is_file():
                raise ValueError(f"--notes {note}: no such file; give Markdown files that exist")
            if Path(note).resolve() == (out / "README.md").resolve():
                raise ValueError(
                    f"--notes {note} is the README.md this command writes; keep the notes in another file"
                )
        return self


@dataclass
class Report:
    """A composed report: README.md's text and the figures to copy (destination name → source file's bytes)."""

    text: str
    figures: dict[str, bytes]
    sections: int
    runs: int
    skipped: list[tuple[Path, str]]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _fmt_setting(c: Comparison) -> str:
    a = c.actual
    parts = [str(a.get("dataset", "any dataset"))]
    if a.get("nodes"):
        parts.append(f"N = {_fmt_list(a['nodes'])}")
    if a.get("densities"):
        parts.append(f"p = {' / '.join(f'{p:g}' for p in a['densities'])}")
    for key in ("p", "p_inter", "groups", "patch_channels", "optimizer", "batch_size", "inhibitory_fraction",
                "inhibitory_scale", "activation", "dale", "n_per_class"):  # fmt: skip
        if key in a and key in c.entry.setting.extra:
            parts.append(_option(key, a[key]))
    if "epochs" in a:
        parts.append(
            f"metric at epoch {a['epochs']}" if c.entry.metric == "acc@1" else _plural(a["epochs"], "epoch")
        )
    parts.append(_plural(a.get("seeds", "?"), "network" if c.run.experiment == "representations" else "seed"))
    if c.run.has_val:
        parts.append(f"validation split {c.run.config['val_fraction']:g}")
    if c.run.config.get("n_per_class") is not None and "n_per_class" not in c.entry.setting.extra:
        parts.append(f"{c.run.config['n_per_class']} per class")
    return ", ".join(parts)


def _fmt_paper_setting(e: PaperEntry) -> str:
    s = e.setting
    parts = [" / ".join(s.datasets) if "*" not in s.datasets else "any dataset"]
    parts.append(f"N = {_fmt_list(s.nodes)}" if s.nodes else "N not stated")
    if s.densities:
        parts.append(f"p = {' / '.join(f'{p:g}' for p in s.densities)}")
    parts += [_option(k, v) for k, v in s.extra.items()]
    if s.epochs is not None:
        parts.append(f"metric at epoch {s.epochs}" if e.metric == "acc@1" else _plural(s.epochs, "epoch"))
    elif e.metric != "parameters":
        parts.append("training length not stated")
    if s.seeds:
        parts.append(_plural(s.seeds, "seed"))
    return ", ".join(parts)


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _option(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{key} {'on' if value else 'off'}"
    return f"{key} {'all' if value is None else value}"


def _fmt_number(x: float | None, unit: str) -> str:
    if x is None:
        return "n/a"
    digits = DIGITS.get(unit, 2)
    return f"{x:+,.{digits}f}"


def _section(entry: PaperEntry, comparisons: list[Comparison], links: dict[Path, str]) -> list[str]:
    lines = [f"## {entry.id}: {entry.title}", ""]
    lines += [
        f"**Paper**: {entry.source} ({entry.reference}). Setting: {_fmt_paper_setting(entry)}. "
        f"Spread: {entry.spread}." + (f" Note: {entry.notes}." if entry.notes else ""),
        "",
    ]
    for c in comparisons:
        lines += [f"### Run `{c.run.id}`", ""]
        lines += [f"- **Ours**: {_fmt_setting(c)}; metric: {c.note}."]
        if c.mismatches:
            lines += [f"- **Setting differs**: {'; '.join(c.mismatches)}."]
        else:
            lines += ["- **Setting matches** the paper's."]
        if c.paper_dataset != c.actual.get("dataset") and "*" not in entry.setting.datasets:
            lines += [f"- Paper column: its {c.paper_dataset} values."]
        lines.append("")
        extra = list(dict.fromkeys(k for row in c.rows for k in row.columns))
        head = ["row", f"ours ({entry.unit})", "n", f"paper ({entry.unit})", "Δ/SD", "verdict", *extra]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in c.rows:
            paper = c.paper(row)
            z = None if c.mismatches else sd_units(row.ours.mean, row.ours.sd, paper)
            cells = [row.label, fmt_stat(row.ours, entry.unit), str(row.ours.n),
                     "—" if paper is None else paper.format(), "—" if z is None else f"{z:+.1f}",
                     row_verdict(c, row), *(row.columns.get(k, "") for k in extra)]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if c.checks:
            lines.append("Directions (the paper's signs):")
            lines.append("")
            for k in c.checks:
                state = {True: "same direction", False: "differs", None: "not judged"}[k.holds]
                ours = _fmt_number(k.ours, entry.unit)
                theirs = "" if k.paper is None else f" (paper: {_fmt_number(k.paper, entry.unit)})"
                why = f"; {k.why}" if k.why else ""
                lines.append(f"- {k.text}: ours {ours} ({k.higher} minus {k.lower}){theirs} → {state}{why}")
            lines.append("")
        lines += [f"**Verdict: {comparison_verdict(c)}**", ""]
        for fig in c.figures:
            if fig in links:
                lines += [f"![{c.run.id}: {fig.name}]({links[fig]})" + _svg_link(fig, links), ""]
    return lines


def compose(config: ReportConfig) -> Report:
    """Read every run and compose the report (no file is written here). Raises :class:`UsageError` when no run
    can be read."""
    paths = expand(config.runs)
    runs: list[Run] = []
    skipped: list[tuple[Path, str]] = []
    comparisons: dict[str, list[Comparison]] = {}
    unaddressed: list[Run] = []
    for path in paths:
        run = None
        try:
            run = read_run(path)
            found = [(m, m.extract(run, PAPER[m.entry])) for m in addressed(run)]
        except RunError as exc:
            skipped.append((path, str(exc)))
            continue
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
            what = run.experiment if run is not None else "the experiment"
            skipped.append((path, f"its summary.json lacks what {what} writes ({type(exc).__name__}: {exc}); "
                                  "was it written by another cortexnet version?"))  # fmt: skip
            continue
        runs.append(run)
        for m, comp in found:
            comp.figures = [f for f in run.figures if m.figures is None or f.name in m.figures]
            comparisons.setdefault(m.entry, []).append(comp)
        if not found:
            unaddressed.append(run)
    if not runs:
        reasons = "; ".join(f"{p}: {why}" for p, why in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        raise UsageError(f"no readable run folder among the {len(paths)} given ({reasons})")

    figures: dict[str, bytes] = {}
    links: dict[Path, str] = {}
    if config.figures:
        for run in runs:
            for fig in run.figures:
                name = _safe(f"{run.experiment}-{run.path.name}-{fig.name}")
                base, i = name, 2
                while name in figures:
                    name, i = f"{Path(base).stem}-{i}{Path(base).suffix}", i + 1
                try:
                    figures[name] = fig.read_bytes()
                except OSError:
                    continue
                links[fig] = f"figures/{name}"
                svg = fig.with_suffix(".svg")  # the vector version every cortexnet figure is also written as
                if svg.is_file():
                    try:
                        figures[str(Path(name).with_suffix(".svg"))] = svg.read_bytes()
                        links[svg] = f"figures/{Path(name).with_suffix('.svg')}"
                    except OSError:
                        pass

    ordered = [e for e in PAPER if e in comparisons]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {config.title}", ""]
    for note in config.notes:
        try:
            lines += [Path(note).read_text(encoding="utf-8").strip(), ""]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--notes {note}: cannot read it ({exc}); give a UTF-8 Markdown file") from exc
    lines += [
        f"Generated by `python -m cortexnet.experiments.report` on {now} from {len(runs)} run folder(s)"
        + (f" ({len(skipped)} skipped)" if skipped else "")
        + ". The papers' numbers: "
        "`cortexnet/experiments/paper.py` (transcribed from REFERENCE.md).",
        "",
        LEGEND,
        "",
        "## Summary",
        "",
        "| paper entry | run | our setting | verdict |",
        "|---|---|---|---|",
    ]
    for e in ordered:
        for c in comparisons[e]:
            lines.append(
                f"| [{e}](#{_anchor(PAPER[e])}) | `{c.run.id}` | {_fmt_setting(c)} | {comparison_verdict(c)} |"
            )
    for run in unaddressed:
        lines.append(
            f"| none (no paper entry addresses this run) | `{run.id}` | {run.config.get('dataset')} | — |"
        )
    lines += ["", "## Runs", "", "| run | experiment | dataset | epochs | seeds | created | cortexnet | git revision | folder | figures |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for run in runs:
        p = run.provenance
        lines.append(
            f"| `{run.id}` | {run.experiment} | {run.config.get('dataset', '—')} | {run.config.get('epochs', '—')} | "
            f"{run.seeds or '—'} | {p.get('created', '—')} | {p.get('cortexnet_version', '—')} | "
            f"{str(p.get('git_revision') or '—')[:12]}{'-dirty' if str(p.get('git_revision', '')).endswith('-dirty') else ''} | "
            f"`{run.path}` | {', '.join(f'[{f.name}]({links[f]})' for f in run.figures if f in links) or '—'} |"
        )
    if skipped:
        lines.append("")
        lines += [f"- skipped: `{path}` because {why}" for path, why in skipped]
    lines.append("")
    for e in ordered:
        lines += _section(PAPER[e], comparisons[e], links)
    if unaddressed:
        lines += ["## Runs that no paper entry addresses", ""]
        for run in unaddressed:
            lines += [f"### Run `{run.id}`", "", f"{run.experiment} on {run.config.get('dataset')}: beyond the papers' "
                      "figures (see its summary.json).", ""]  # fmt: skip
            lines += [
                f"![{run.id}: {fig.name}]({links[fig]}){_svg_link(fig, links)}\n"
                for fig in run.figures
                if fig in links
            ]
    text = "\n".join(lines).rstrip() + "\n"
    return Report(text, figures, sum(len(v) for v in comparisons.values()), len(runs), skipped)


def _svg_link(fig: Path, links: dict[Path, str]) -> str:
    svg = fig.with_suffix(".svg")
    return f" ([SVG]({links[svg]}))" if svg in links else ""


def _anchor(entry: PaperEntry) -> str:
    """GitHub's anchor of a section heading ``## id: title``."""
    heading = f"{entry.id}: {entry.title}".lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", heading))


def write(report: Report, out: Path) -> None:
    """Write the figures, then README.md, each atomically (a file is complete or absent)."""
    for name, data in report.figures.items():
        atomic_write_bytes(out / "figures" / name, data)
    atomic_write_bytes(out / "README.md", report.text.encode())


def main(argv: list[str] | None = None) -> int:
    """Compose and write the report; returns the exit status (2 for bad options or no readable run)."""
    parser = build_parser(ReportConfig, prog="python -m cortexnet.experiments.report",
                          description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("runs", nargs="*", action="extend", type=str, metavar="RUN_DIR",
                        help="run folders, or folders of run folders")  # fmt: skip
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]  # RUN_DIR after options too
    try:
        config = parse_config(ReportConfig, parser, argv)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    report = compose(config)
    out = Path(config.out)
    write(report, out)
    for path, why in report.skipped:
        print(f"report: skipped: {path} because {why}")
    print(
        f"report: wrote {out / 'README.md'}: {report.sections} comparison(s) from {report.runs} run(s), "
        f"{len(report.figures)} figure(s)" + (f", {len(report.skipped)} skipped" if report.skipped else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
