"""`python -m cortexnet.experiments.report` on real tiny run folders (dale and recurrent_vs_feedforward on the
embedded digits, one with a validation split), the verdict rules on hand-made numbers, which paper entries a
run addresses, and `cortexnet.experiments.paper` as the one source of the papers' numbers."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from cortexnet.experiments import (
    dale,
    dst,
    g2g,
    recurrent_vs_feedforward,
    report,
    representations,
    topologies,
)
from cortexnet.experiments.common import run_cli
from cortexnet.experiments.paper import METRICS, PAPER, Value, means, table
from cortexnet.experiments.report import (
    Run,
    Stat,
    addressed,
    comparison_verdict,
    direction_holds,
    sd_units,
    verdict,
    within_sd,
)
from cortexnet.io import read_jsonl

TINY = [
    "--dataset",
    "digits",
    "--nodes",
    "20",
    "--densities",
    "1.0",
    "0.3",
    "--batch-size",
    "200",
    "--no-progress",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs")
    assert run_cli(dale.main, [*TINY, "--epochs", "1", "--seeds", "0", "1", "--out", str(out)]) == 0
    assert run_cli(recurrent_vs_feedforward.main, [*TINY, "--epochs", "2", "--val-fraction", "0.2",
                                                   "--out", str(out)]) == 0  # fmt: skip
    (d,) = (out / "dale").iterdir()
    (r,) = (out / "recurrent_vs_feedforward").iterdir()
    return {"dale": d, "rvf": r, "root": out}


@pytest.fixture(scope="module")
def readme(runs, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("report") / "report"
    assert run_cli(report.main, [str(runs["dale"]), str(runs["rvf"]), "--out", str(out)]) == 0
    return (out / "README.md").read_text(), out


def section(text: str, entry_id: str) -> str:
    start = text.index(f"\n## {entry_id}: ")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def row(text: str, label: str) -> list[str]:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def header(text: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith("| row |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def by_hand(values: list[float], digits: int = 1) -> str:
    """mean ± SD (sample SD; "n/a" for one value), in %, computed without cortexnet."""
    pct = [100 * v for v in values]
    sd = "n/a" if len(pct) < 2 else f"{statistics.stdev(pct):.{digits}f}"
    return f"{statistics.mean(pct):.{digits}f} ± {sd}"


def configuration(summary: dict, **match) -> dict:
    (conf,) = [c for c in summary["configurations"] if all(c[k] == v for k, v in match.items())]
    return conf


# ------------------------------------------------------------------------------------------------------------
# The report on real run folders


def test_a_section_per_addressed_paper_entry_and_a_summary_line_each(readme):
    text, _ = readme
    assert re.findall(r"^## (\w+): ", text, flags=re.M) == ["table_s1", "fig3a", "fig6b"]
    summary = text[text.index("## Summary") : text.index("## Runs")]
    for entry_id in ("table_s1", "fig3a", "fig6b"):
        assert f"[{entry_id}](#" in summary
    assert "selected on the test set" in text  # best* is labelled honestly


def test_our_numbers_are_the_summaries_mean_and_sd_by_hand(readme, runs):
    text, _ = readme
    # recurrent_vs_feedforward, one seed: acc@1 = test accuracy after epoch 1, SD "n/a".
    rvf = json.loads((runs["rvf"] / "summary.json").read_text())
    s1 = section(text, "table_s1")
    for p, kind in ((0.3, "sparse"), (1.0, "dense")):
        (r,) = configuration(rvf, architecture="recurrent", density=p)["runs"]
        cells = row(s1, f"recurrent, N = 20, {kind}, p = {p:g}")
        assert cells[1] == by_hand([r["test_acc_per_epoch"][1]]) and cells[1].endswith("± n/a")
        assert cells[2] == "1"
    # dale, two seeds: learning delays (integers, or never) and acc@1 mean ± SD over the seeds.
    d = json.loads((runs["dale"] / "summary.json").read_text())
    s6 = section(text, "fig6b")
    columns = header(s6)
    for p, kind in ((0.3, "sparse"), (1.0, "dense")):
        seeds = configuration(d, density=p)["runs"]
        cells = row(s6, f"{kind}, p = {p:g}")
        delays = [r["learning_delay"] for r in seeds]
        if all(x is None for x in delays):
            expected = f"never (≥ {seeds[0]['epochs']:g})"
        else:
            vals = [x if x is not None else r["epochs"] for x, r in zip(delays, seeds, strict=True)]
            expected = f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"
            expected = ("≥ " if None in delays else "") + expected
        assert cells[1].startswith(expected)
        assert cells[2] == "2"
        assert cells[columns.index("acc@1")] == by_hand([r["test_acc_per_epoch"][1] for r in seeds])
        assert cells[columns.index("final")] == by_hand([r["final_test_acc"] for r in seeds])


def test_the_papers_numbers_come_from_paper_py(readme):
    text, _ = readme
    s1 = section(text, "table_s1")
    sparse, dense = PAPER["table_s1"].values["mnist"]["sparse"], PAPER["table_s1"].values["mnist"]["dense"]
    assert row(s1, "recurrent, N = 20, sparse, p = 0.3")[3] == sparse.format() == "90.3 ± 2.0"
    assert row(s1, "recurrent, N = 20, dense, p = 1")[3] == dense.format() == "77.5 ± 7.3"
    s6 = section(text, "fig6b")
    assert row(s6, "dense, p = 1")[3] == "tens of epochs at chance"
    assert PAPER["table_s1"].source in s1 and PAPER["fig6b"].source in s6


def test_settings_differ_so_values_are_not_comparable_and_only_directions_are_judged(readme):
    text, _ = readme
    s1 = section(text, "table_s1")
    assert "**Setting differs**: dataset digits vs mnist; N 20 vs 20,000; p 0.3, 1 vs 0.1, 1." in s1
    assert row(s1, "recurrent, N = 20, sparse, p = 0.3")[4] == "—"  # no Δ/SD across settings
    assert row(s1, "recurrent, N = 20, sparse, p = 0.3")[5] == "not comparable"
    (line,) = [ln for ln in s1.splitlines() if ln.startswith("**Verdict: ")]
    assert re.match(
        r"\*\*Verdict: (same direction|differs) \(.*setting differs: dataset digits vs mnist", line
    )


def test_a_validation_split_adds_test_accuracy_at_the_best_validation_epoch(readme, runs):
    text, _ = readme
    s1 = section(text, "table_s1")
    columns = header(s1)
    assert "test @ best val" in columns and "best*" in columns
    # By hand from metrics.jsonl: the whole epoch with the highest val_acc (the earliest on ties), its test_acc.
    records = [m for m in read_jsonl(runs["rvf"] / "metrics.jsonl")
               if m["architecture"] == "recurrent" and m["density"] == 0.3 and float(m["epoch"]).is_integer()]  # fmt: skip
    assert all(m["val_acc"] is not None for m in records)
    best = max(records, key=lambda m: (m["val_acc"], -m["epoch"]))
    assert row(s1, "recurrent, N = 20, sparse, p = 0.3")[columns.index("test @ best val")] == by_hand(
        [best["test_acc"]]
    )
    assert "test @ best val" not in header(section(text, "fig6b"))  # the dale run has no validation split


def test_figures_are_copied_and_linked_relatively(readme, runs):
    text, out = readme
    links = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text))
    assert links and all(link.startswith("figures/") for link in links)
    for link in links:
        assert (out / link).read_bytes()[:4] == b"\x89PNG"
    copied = {p.name: p.read_bytes() for p in (out / "figures").iterdir()}
    for run in (runs["dale"], runs["rvf"]):
        (name,) = [n for n in copied if n.startswith(f"{run.parent.name}-{run.name}") and n.endswith(".png")]
        assert copied[name] == (run / "accuracy.png").read_bytes()
        assert f"figures/{name}" in section(text, "fig6b" if run == runs["dale"] else "table_s1")
        # The vector version beside it, copied and linked next to the embedded PNG.
        svg = name.removesuffix(".png") + ".svg"
        assert copied[svg] == (run / "accuracy.svg").read_bytes()
        assert f": accuracy.png](figures/{name}) ([SVG](figures/{svg}))" in text
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "figures"]  # no temporary files left


def test_unreadable_runs_are_one_skipped_line_each_and_the_command_succeeds(runs, tmp_path, capsys):
    corrupt, unfinished, unknown = (tmp_path / name for name in ("corrupt", "unfinished", "unknown"))
    for folder in (corrupt, unfinished, unknown):
        shutil.copytree(runs["dale"], folder)
    (corrupt / "summary.json").write_text('{"experiment": "dale", ')
    (unfinished / "summary.json").unlink()
    meta = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**meta, "experiment": "nope"}))
    out = tmp_path / "report"
    args = [str(corrupt), str(unfinished), str(unknown), str(tmp_path / "missing"), str(runs["rvf"])]
    assert run_cli(report.main, [*args, "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    skipped = [ln for ln in text.splitlines() if ln.startswith("- skipped: ")]
    assert len(skipped) == 4
    assert f"- skipped: `{corrupt}` because summary.json is not valid JSON" in text
    assert f"- skipped: `{unfinished}` because it has no summary.json" in text
    assert f"- skipped: `{unknown}` because unknown experiment 'nope'" in text
    assert f"- skipped: `{tmp_path / 'missing'}` because it does not exist" in text
    assert re.findall(r"^## (\w+): ", text, flags=re.M) == ["table_s1", "fig3a"]
    assert "4 skipped" in capsys.readouterr().out


def test_no_readable_run_exits_2_with_one_line_and_writes_nothing(runs, tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(runs["dale"], corrupt)
    (corrupt / "config.json").write_text("not json")
    out = tmp_path / "report"
    assert run_cli(report.main, [str(corrupt), str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cortexnet: error: no readable run folder among the 2 given")
    assert "config.json is not valid JSON" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("args", [[], ["--bogus"], ["RUN"]])
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, args):
    out = tmp_path / "report"
    if args == ["RUN"]:  # --out names a file
        out.write_text("x")
        args = [str(tmp_path)]
    assert run_cli(report.main, [*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cortexnet: error: ")


def test_a_folder_of_run_folders_is_expanded(runs, tmp_path):
    out = tmp_path / "report"
    assert run_cli(report.main, [str(runs["root"]), "--out", str(out), "--no-figures"]) == 0
    text = (out / "README.md").read_text()
    assert re.findall(r"^## (\w+): ", text, flags=re.M) == ["table_s1", "fig3a", "fig6b"]
    assert not (out / "figures").exists() and "![" not in text


def test_notes_come_first_and_bad_notes_are_usage_errors(runs, tmp_path, capsys):
    notes = tmp_path / "NOTES.md"
    notes.write_text("Hand-written: the **deviations** explained.\n")
    out = tmp_path / "report"
    assert (
        run_cli(report.main, [str(runs["rvf"]), "--out", str(out), "--notes", str(notes), "--no-figures"])
        == 0
    )
    text = (out / "README.md").read_text()
    assert text.index("the **deviations** explained") < text.index("Generated by") < text.index("## Summary")
    for bad, msg in (
        (tmp_path / "missing.md", "no such file"),
        (out / "README.md", "the README.md this command"),
    ):
        assert run_cli(report.main, [str(runs["rvf"]), "--out", str(out), "--notes", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0]
    assert "the **deviations** explained" in (out / "README.md").read_text()  # the report was not overwritten


def test_python_dash_m_without_a_run_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cortexnet.experiments.report", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "RUN_DIR" in proc.stderr


# ------------------------------------------------------------------------------------------------------------
# Verdicts on hand-made numbers


def test_verdict_rules():
    assert verdict([], [True, True], [True]) == "within SD"
    assert verdict([], [True, False], [True]) == "same direction"
    assert verdict([], [True, None], [True]) == "within SD"  # a paper row in words only does not count
    assert verdict([], [None], [True]) == "same direction"
    assert verdict([], [None], [None]).startswith("not comparable (the paper gives neither")
    assert verdict([], [False, False], [False]) == "differs"
    assert verdict([], [False], []) == "differs"
    assert verdict(["dataset digits vs mnist"], [None], []) == (
        "not comparable (setting differs: dataset digits vs mnist)"
    )
    assert verdict(["N 20 vs 20,000", "p 0.3 vs 0.1"], [None], [None]) == (
        "not comparable (setting differs: N 20 vs 20,000; p 0.3 vs 0.1)"
    )
    assert verdict(["N 20 vs 20,000"], [None], [True]) == (
        "same direction (values not comparable: setting differs: N 20 vs 20,000)"
    )
    assert verdict(["N 20 vs 20,000"], [None], [True, False]).startswith("differs (not the paper's direction")


def test_within_sd_uses_the_larger_sd_or_the_papers_rounding():
    assert within_sd(91.0, 1.5, Value(90.3, 2.0))  # |0.7| <= 2.0
    assert within_sd(94.0, 4.0, Value(90.3, 2.0))  # |3.7| <= our 4.0
    assert not within_sd(95.0, 1.0, Value(90.3, 2.0))  # |4.7| > 2.0
    assert within_sd(90.34, None, Value(90.3))  # one seed, no paper SD: half a unit of 90.3 is 0.05
    assert not within_sd(90.36, None, Value(90.3))
    assert within_sd(806_094, 0.0, Value(806_100, resolution=100))
    with pytest.raises(ValueError, match="no number"):
        within_sd(1.0, None, Value(None, text="tens of epochs"))
    assert sd_units(94.3, 1.0, Value(90.3, 2.0)) == pytest.approx(2.0)
    assert sd_units(94.3, None, Value(90.3)) is None and sd_units(None, 1.0, Value(90.3, 1.0)) is None


def test_direction_with_never_learned_seeds():
    learned, never = Stat(0.0, 0.0, 2), Stat(5.0, 0.0, 2, censored=2)
    assert direction_holds(never, learned) is True  # >= 5 > 0
    assert direction_holds(learned, never) is False  # 0 < 5 <= lower
    assert direction_holds(never, never) is None
    assert direction_holds(Stat(3.0, None, 1, censored=1), Stat(4.0, None, 1)) is None  # >= 3 vs 4: open
    assert direction_holds(Stat(None, None, 0), learned) is None


def _rvf_run(dataset: str, n: int, sparse: list[float], dense: list[float]) -> Run:
    def conf(p, accs):
        runs = [{"seed": s, "test_acc_per_epoch": [0.1, a], "best_test_acc": a, "final_test_acc": a, "epochs": 1,
                 "learning_delay": 0} for s, a in enumerate(accs)]  # fmt: skip
        return {"architecture": "recurrent", "nodes": n, "density": p, "runs": runs}

    config = {"dataset": dataset, "seeds": list(range(len(sparse))), "epochs": 1, "densities": [0.1, 1.0],
              "nodes": [n], "architectures": ["recurrent"], "activation": "relu", "val_fraction": 0.0}  # fmt: skip
    summary = {
        "experiment": "recurrent_vs_feedforward",
        "configurations": [conf(0.1, sparse), conf(1.0, dense)],
    }
    return Run(Path("hand-made"), "recurrent_vs_feedforward", config, {}, summary)


@pytest.mark.parametrize(
    "dataset,n,sparse,dense,expected",
    [
        ("mnist", 20_000, [0.90, 0.91, 0.89], [0.78, 0.80, 0.76], "within SD"),
        ("mnist", 20_000, [0.95, 0.96, 0.97], [0.78, 0.80, 0.76], "same direction"),
        ("mnist", 20_000, [0.70, 0.71, 0.72], [0.78, 0.80, 0.76], "differs"),
        ("digits", 20_000, [0.50, 0.51, 0.52], [0.40, 0.41, 0.42],
         "same direction (values not comparable: setting differs: dataset digits vs mnist)"),
        ("mnist", 500, [0.40, 0.41, 0.42], [0.50, 0.51, 0.52],
         "differs (not the paper's direction; values not comparable: setting differs: N 500 vs 20,000)"),
    ],
)  # fmt: skip
def test_table_s1_verdicts_of_hand_made_runs(dataset, n, sparse, dense, expected):
    run = _rvf_run(dataset, n, sparse, dense)
    (matcher, *_) = addressed(run)
    assert matcher.entry == "table_s1"
    comparison = matcher.extract(run, PAPER["table_s1"])
    assert comparison_verdict(comparison) == expected
    ours = next(r for r in comparison.rows if r.key == "sparse").ours
    assert ours.mean == pytest.approx(100 * statistics.mean(sparse))
    assert ours.sd == pytest.approx(100 * statistics.stdev(sparse)) and ours.n == 3


# ------------------------------------------------------------------------------------------------------------
# Which paper entries a run addresses


def _fake(experiment: str, summary: dict | None = None, **config) -> Run:
    return Run(Path("x"), experiment, {"dataset": "mnist", "seeds": [0], **config}, {}, summary or {})


DALE = {"nodes": [10_000], "densities": [1.0, 0.1], "inhibitory_fractions": [0.115], "inhibitory_scale": 1.0,
        "sparse_to_dense": False}  # fmt: skip
RVF = {"nodes": [1000, 10_000], "densities": [1.0, 0.1], "architectures": ["recurrent", "feedforward"]}
PROBED = {"networks": [{"model": {"n_nodes": 10, "p": 0.1}, "sparsity": {}, "mutual_information": {}}]}


@pytest.mark.parametrize(
    "run,expected",
    [
        (_fake("dale", **DALE), ["fig6b"]),
        (_fake("dale", **{**DALE, "nodes": [1000, 2000, 5000]}), ["fig6c"]),
        (_fake("dale", **{**DALE, "inhibitory_fractions": [0.5]}), ["fig6f"]),
        (_fake("dale", **{**DALE, "inhibitory_fractions": [0.115, 0.5]}), ["fig6b", "fig6f"]),
        (_fake("dale", **{**DALE, "densities": [0.1], "sparse_to_dense": True}), ["fig_s5b"]),
        (_fake("dale", **{**DALE, "inhibitory_scale": 10.0}), ["fig_s5c"]),
        (_fake("dale", **{**DALE, "dataset": "neurogym"}), []),
        (_fake("recurrent_vs_feedforward", **RVF), ["table_s1", "fig3a"]),
        (_fake("recurrent_vs_feedforward", **{**RVF, "dataset": "cifar10"}), ["table_s2", "fig3a"]),
        (_fake("recurrent_vs_feedforward", **{**RVF, "dataset": "sleep-ucr"}), ["table_s3", "fig3a"]),
        (_fake("recurrent_vs_feedforward", **{**RVF, "n_per_class": 50}), ["fig4a"]),
        (_fake("recurrent_vs_feedforward", **{**RVF, "n_per_class": 50, "dataset": "cifar10"}), ["fig4b"]),
        (_fake("recurrent_vs_feedforward", **{**RVF, "n_per_class_sweep": [50, 0]}), ["fig4a"]),
        (
            _fake("recurrent_vs_feedforward", **{**RVF, "n_per_class_sweep": [50, 0], "dataset": "cifar10"}),
            ["fig4b"],
        ),
        (_fake("recurrent_vs_feedforward", **{**RVF, "n_per_class_sweep": [0]}), ["table_s1", "fig3a"]),
        (_fake("g2g", {"table1": [{}], "sweep": []}), ["g2g_table1", "g2g_table1_parameters"]),
        (_fake("g2g", {"table1": [], "sweep": [{}]}), ["g2g_fig4a"]),
        (_fake("topologies", {"rows": [{"model": "mlp"}, {"model": "recurrent"}]}), ["dnm_static"]),
        (_fake("topologies", {"rows": [{"model": "recurrent"}]}), []),
        (_fake("dst", model="g2gnet"), ["g2g_table2"]),
        (_fake("dst", model="sparse_mlp"), ["chts_mlp"]),
        (_fake("dst", model="cortex_rnn"), []),
        (_fake("representations", PROBED), ["fig5b", "fig5_mi"]),
    ],
)
def test_matchers_choose_the_paper_entries_from_experiment_and_config(run, expected):
    assert [m.entry for m in addressed(run)] == expected


def test_every_matcher_names_a_paper_entry_and_every_entry_has_a_matcher():
    named = [m.entry for m in report.MATCHERS]
    assert set(named) <= set(PAPER) and set(PAPER) <= set(named)
    assert {m.experiment for m in report.MATCHERS} <= set(report.KNOWN_EXPERIMENTS)


# ------------------------------------------------------------------------------------------------------------
# paper.py: complete, and the one source of the experiments' PAPER numbers


def test_every_paper_entry_has_source_setting_and_values():
    for key, e in PAPER.items():
        assert e.id == key and e.title and e.source and e.reference.startswith("REFERENCE.md §")
        assert e.setting.datasets and e.metric in METRICS and e.unit and e.spread
        assert e.values, key
        for ds, rows in e.values.items():
            assert ds in e.setting.datasets, (key, ds)
            assert rows and all(v.mean is not None or v.text for v in rows.values()), (key, ds)
        for d in e.directions:  # every sign agrees with the paper's own numbers where both are numbers
            for rows in e.values.values():
                hi, lo = rows.get(d.higher), rows.get(d.lower)
                if hi is not None and lo is not None and hi.mean is not None and lo.mean is not None:
                    assert hi.mean > lo.mean, (key, d)


def test_values_print_as_the_paper_wrote_them():
    assert PAPER["table_s1"].values["mnist"]["sparse"].format() == "90.3 ± 2.0"
    assert PAPER["fig5b"].values["mnist"]["dense"].format() == "3.0 ± 1.0"
    assert PAPER["table_s3"].values["sleep-ucr"]["dense"].format() == "10.3 ± 0.0"
    assert PAPER["fig5_mi"].values["mnist"]["sparse"].format() == "0.019 ± 0.065"
    assert PAPER["g2g_table1"].values["fashion-mnist"]["g2g"].format() == "91.14"
    assert PAPER["g2g_table1_parameters"].values["*"]["g2g"].format() == "806,100"
    assert PAPER["fig6b"].values["mnist"]["dense"].format() == "tens of epochs at chance"


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*(?:e-?\d+)?", text)]


def test_the_experiments_paper_dicts_hold_the_same_numbers_as_paper_py():
    assert g2g.PAPER["table1_accuracy"] == table("g2g_table1")
    assert g2g.PAPER["table1_parameters"] == means("g2g_table1_parameters", "*")
    assert PAPER["g2g_fig4a"].values["cifar10"]["g2g@plateau"].mean in _numbers(g2g.PAPER["fig4a"][0])
    assert topologies.PAPER["static_accuracy"] == table("dnm_static")
    assert dst.PAPER["g2gnet"]["accuracy"] == table("g2g_table2")
    assert dst.PAPER["sparse_mlp"]["accuracy"] == table("chts_mlp")
    # recurrent_vs_feedforward: "sparse 90.3 ± 2.0 % vs dense 77.5 ± 7.3 %" (Fig. 2) and its setting's sizes.
    (finding,) = [f for f in recurrent_vs_feedforward.PAPER["findings"] if "90.3" in f]
    s1 = PAPER["table_s1"].values["mnist"]
    assert _numbers(finding)[-4:] == [s1["sparse"].mean, s1["sparse"].sd, s1["dense"].mean, s1["dense"].sd]
    assert "1,000" in recurrent_vs_feedforward.PAPER["setting"] and PAPER["fig3a"].setting.nodes == (
        1000,
        10_000,
    )
    # representations: Fig. 5 strings.
    rp = representations.PAPER
    for entry_id, key in (
        ("fig5b", "nodes_with_nonzero_output"),
        ("fig5_mi", "mutual_information_10000_pairs"),
    ):
        for kind in ("sparse", "dense"):
            v = PAPER[entry_id].values["mnist"][kind]
            assert _numbers(rp[key][kind]) == [v.mean, v.sd]
    assert (
        "p = 1.03e-44" in PAPER["fig5_mi"].notes and rp["mutual_information_10000_pairs"]["ks_p"] == 1.03e-44
    )
    dropout = PAPER["fig5e"].values["mnist"]
    for kind in ("sparse", "dense"):
        assert _numbers(rp["dropout_50_percent"][kind]) == [
            dropout[f"{kind}/q=0"].mean,
            dropout[f"{kind}/q=0.5"].mean,
        ]
        assert _numbers(rp["dropout_90_percent_loss"][kind]) == [dropout[f"{kind}/loss at q=0.9"].mean]
    # dale: the setting's N and inhibitory fraction.
    assert "N = 10,000" in dale.PAPER["setting"] and "11.5 %" in dale.PAPER["setting"]
    assert (
        PAPER["fig6b"].setting.nodes == (10_000,)
        and PAPER["fig6b"].setting.extra["inhibitory_fraction"] == 0.115
    )


# ------------------------------------------------------------------------------------------------------------
# The other experiments' extractors, on summaries in their formats (fast: no training)


def _seed(acc: float, delay: int | None = 0, epochs: int = 20) -> dict:
    return {"test_acc_per_epoch": [0.1, acc], "best_test_acc": acc, "final_test_acc": acc, "epochs": epochs,
            "learning_delay": delay}  # fmt: skip


def _compare(run: Run, entry_id: str):
    (matcher,) = [m for m in addressed(run) if m.entry == entry_id]
    return matcher.extract(run, PAPER[entry_id])


def test_fig6c_judges_the_delay_growing_with_size_and_counts_never_learned_seeds_as_lower_bounds():
    confs = [{"nodes": n, "density": p, "inhibitory_fraction": 0.115, "runs": [_seed(0.5, d, 6), _seed(0.5, d, 6)]}
             for n, p, d in ((100, 1.0, 1), (100, 0.1, 0), (400, 1.0, None), (400, 0.1, 0))]  # fmt: skip
    run = _fake(
        "dale", {"configurations": confs}, **{**DALE, "nodes": [100, 400], "epochs": 6, "seeds": [0, 1]}
    )
    c = _compare(run, "fig6c")
    assert [k.holds for k in c.checks] == [True, True]  # dense: 1 at N = 100, >= 6 at N = 400; sparse 0
    assert report.fmt_stat(next(r for r in c.rows if r.key == "dense@N=400").ours, "epochs") == "never (≥ 6)"
    assert report.fmt_stat(next(r for r in c.rows if r.key == "dense@N=100").ours, "epochs") == "1.0 ± 0.0"
    assert comparison_verdict(c).startswith(
        "same direction (values not comparable: setting differs: N 100, 400"
    )


def _g2g_row(model: str, acc: float, synapses: float, q: float = 0.15) -> dict:
    return {"model": model, "p_inter": q, "runs": [_seed(acc), _seed(acc + 0.002)],
            "parameters": {"hidden_synapses": synapses}, "parameters_sd": {"hidden_synapses": 0.0}}  # fmt: skip


G2G_CONFIG = {"dataset": "cifar10", "hidden": [1024] * 3, "p": 1.0, "p_inter": 0.15, "groups": 8,
              "patch_channels": 32, "epochs": 20, "seeds": [0, 1]}  # fmt: skip


def test_g2g_table1_at_the_papers_setting_is_within_sd_and_the_parameter_counts_are_compared():
    table1 = [_g2g_row("g2g", 0.715, 806_094), _g2g_row("er_same_edges", 0.698, 806_094),
              _g2g_row("fc_same_params", 0.684, 806_400), _g2g_row("fc_same_width", 0.715, 3_145_728)]  # fmt: skip
    run = _fake("g2g", {"table1": table1, "sweep": []}, **G2G_CONFIG)
    c = _compare(run, "g2g_table1")
    assert c.mismatches == [] and comparison_verdict(c) == "within SD"
    counts = _compare(run, "g2g_table1_parameters")
    assert (
        counts.mismatches == [] and comparison_verdict(counts) == "within SD"
    )  # 806,094 ~ 806,100 (rounded)
    narrow = _fake("g2g", {"table1": table1, "sweep": []}, **{**G2G_CONFIG, "patch_channels": 64})
    assert _compare(narrow, "g2g_table1").mismatches == ["patch_channels 64 vs 32"]


def test_g2g_sweep_checks_g2g_against_er_at_every_p_inter():
    sweep = [{"p_inter": q, "g2g": _g2g_row("g2g", 0.70 + q / 10, 0, q), "er_same_edges": _g2g_row("er", 0.69, 0, q)}
             for q in (0.05, 0.1, 0.15)]  # fmt: skip
    c = _compare(_fake("g2g", {"table1": [], "sweep": sweep}, **G2G_CONFIG), "g2g_fig4a")
    assert [k.holds for k in c.checks] == [True, True, True]
    plateau = next(r for r in c.rows if r.key == "g2g@plateau").ours  # p' = 0.1 and 0.15, both seeds
    assert plateau.n == 4 and plateau.mean == pytest.approx(
        100 * statistics.mean([0.71, 0.712, 0.715, 0.717])
    )
    assert comparison_verdict(c) == "same direction"


def test_topologies_and_dst_compare_their_mlp_and_g2g_rows():
    mlp = {"dataset": "mnist", "hidden": [1568] * 3, "density": 0.01, "epochs": 100, "optimizer": "sgd",
           "batch_size": 32, "seeds": [0, 1, 2]}  # fmt: skip
    rows = [{"model": "mlp", "topology": t, "runs": [_seed(a), _seed(a + 0.001), _seed(a - 0.001)],
             "final_test_acc_se": 0.001} for t, a in (("full", 0.9878), ("dnm", 0.9782), ("er", 0.9672))]  # fmt: skip
    rows.append({"model": "recurrent", "topology": "er", "runs": [_seed(0.5)]})
    c = _compare(_fake("topologies", {"rows": rows}, **mlp), "dnm_static")
    assert [r.key for r in c.rows] == ["full", "dnm", "er"] and comparison_verdict(c) == "within SD"
    dst_rows = [
        {"rule": r, "runs": [_seed(a), _seed(a)]}
        for r, a in (("static", 0.9672), ("chts", 0.98), ("set", 0.97))
    ]
    c = _compare(_fake("dst", {"rows": dst_rows}, model="sparse_mlp", **mlp), "chts_mlp")
    assert [k.holds for k in c.checks] == [True, None]  # no chtss rule in this run
    assert comparison_verdict(c) == "same direction"
    g2g_rows = [{"rule": "static", "runs": [_seed(0.60)]}, {"rule": "hebbian+hebbian", "runs": [_seed(0.62)]}]
    dst_g2g = {**G2G_CONFIG, "density": 1.0, "dataset": "cifar100", "seeds": [0]}
    c = _compare(_fake("dst", {"rows": g2g_rows}, model="g2gnet", **dst_g2g), "g2g_table2")
    assert c.mismatches == [] and c.paper_dataset == "cifar100"
    assert comparison_verdict(c) == "same direction"  # 62 > 60, values far from 42.7 / 42.2


def test_representations_compare_the_sparse_and_the_dense_probe():
    def net(p: float, active: float, mi: float, accs: list[float]) -> dict:
        return {"model": {"n_nodes": 10_000, "p": p, "activation": "relu", "dale": False}, "epochs_trained": 1,
                "checkpoint": "/nonexistent/members/m/checkpoint.pt",
                "sparsity": {"active_fraction_mean": active, "active_fraction_sd": 0.015},
                "mutual_information": {"mean": mi, "sd": 0.05},
                "dropout": {"q": [0.0, 0.5, 0.9], "accuracy_mean": accs, "accuracy_sd": [0.0, 0.01, 0.01]}}  # fmt: skip

    run = _fake("representations", {"networks": [net(0.1, 0.112, 0.02, [0.911, 0.909, 0.88]),
                                                 net(1.0, 0.03, 0.005, [0.814, 0.763, 0.481])]})  # fmt: skip
    assert [m.entry for m in addressed(run)] == ["fig5b", "fig5_mi", "fig5e"]
    sparsity = _compare(run, "fig5b")
    assert sparsity.mismatches == ["dataset unknown vs mnist"]  # the checkpoint's run folder is not there
    assert next(r for r in sparsity.rows if r.key == "sparse").ours == Stat(
        pytest.approx(11.2), pytest.approx(1.5), 1, spread="SD over images, one network"
    )
    dropout = _compare(run, "fig5e")
    loss = {r.key: r.ours.mean for r in dropout.rows}
    assert loss["sparse/loss at q=0.9"] == pytest.approx(3.1) and loss[
        "dense/loss at q=0.9"
    ] == pytest.approx(33.3)
    assert [k.holds for k in dropout.checks] == [True, True]


def test_a_training_set_sweep_compares_the_papers_size_and_the_full_set():
    def conf(n, p, k, accs):
        runs = [{"seed": i, "test_acc_per_epoch": [0.1, a], "best_test_acc": a, "final_test_acc": a, "epochs": 50,
                 "learning_delay": 0} for i, a in enumerate(accs)]  # fmt: skip
        return {"architecture": "recurrent", "nodes": n, "density": p, "n_per_class": k, "runs": runs}

    accs = {(50, 0.1): [0.70, 0.72], (50, 1.0): [0.40, 0.42], (100, 0.1): [0.8, 0.8], (100, 1.0): [0.6, 0.6],
            (None, 0.1): [0.990, 0.991], (None, 1.0): [0.985, 0.986]}  # fmt: skip
    config = {"dataset": "mnist", "seeds": [0, 1], "epochs": 50, "nodes": [20_000], "densities": [1.0, 0.1],
              "architectures": ["recurrent"], "activation": "relu", "n_per_class": None,
              "n_per_class_sweep": [50, 100, 0], "val_fraction": 0.0}  # fmt: skip
    summary = {"configurations": [conf(20_000, p, k, a) for (k, p), a in accs.items()]}
    run = Run(Path("hand-made"), "recurrent_vs_feedforward", config, {}, summary)
    (matcher,) = addressed(run)
    comparison = matcher.extract(run, PAPER["fig4a"])
    rows = {r.key: r for r in comparison.rows}
    assert set(rows) == {
        f"large/{w}{s}" for w in ("sparse", "dense") for s in ("", "/100 per class", "/full data")
    }
    assert rows["large/sparse"].ours.mean == pytest.approx(71.0)  # the paper's 50 per class
    assert rows["large/dense/full data"].ours.mean == pytest.approx(98.55)
    assert comparison.paper(rows["large/sparse/full data"]).mean == 99.0
    assert comparison.paper(rows["large/sparse/100 per class"]) is None  # the paper gives no number for it
    # n_per_class is the paper's 50 (not a mismatch); the small networks were not run
    assert comparison.actual["n_per_class"] == 50 and comparison.mismatches == ["N 20,000 vs 500, 20,000"]
