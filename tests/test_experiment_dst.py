"""`python -m cortexnet.experiments.dst` end to end on the embedded digits: one member per rule and seed, the
rewiring summary, an interrupted run resumed to the same metrics, and the error contract."""

import json

import pytest

from cortexnet.experiments import dst
from cortexnet.experiments.common import run_cli
from cortexnet.io import read_jsonl

BASE = ["--dataset", "digits", "--epochs", "2", "--seeds", "0", "--batch-size", "200", "--optimizer", "adam",
        "--lr", "0.003", "--momentum", "0", "--weight-decay", "0", "--no-progress"]  # fmt: skip


def only_run(out):
    (run,) = list((out / "dst").iterdir())
    return run


def test_mlp_rules_write_outputs_with_the_rewiring_summary(tmp_path, capsys):
    out = tmp_path / "runs"
    args = [*BASE, "--model", "sparse_mlp", "--hidden", "16", "16", "--density", "0.2", "--rules", "static",
            "dense", "rigl", "chtss", "magnitude+ch2_l3n", "--rewire-params", "delta_t=2", "percolation=true",
            "--out", str(out)]  # fmt: skip
    assert run_cli(dst.main, args) == 0
    run = only_run(out)
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json", "accuracy.png"}
    summary = json.loads((run / "summary.json").read_text())
    rows = {r["rule"]: r for r in summary["rows"]}
    assert list(rows) == ["static", "dense", "rigl", "chtss", "magnitude+ch2_l3n"]
    assert rows["static"]["rewiring"] is None and rows["static"]["rewiring_per_seed"] == []
    rigl = rows["rigl"]["rewiring_per_seed"][0]
    assert set(rigl) == {"layers.0.sparse", "layers.1.sparse"}
    # 8 steps per epoch (1438 / 200), 16 in all, T_end 12, every 2 steps: 6 updates per weight.
    assert all(w["updates"] == 6 and w["removed"] == w["grown"] for w in rigl.values())
    assert rows["magnitude+ch2_l3n"]["rewiring"]["growth"] == "ch2_l3n"
    # CHTss from density 0.5 to the target 0.2: the final counts are 0.2 of each matrix's positions.
    chtss = rows["chtss"]["rewiring_per_seed"][0]
    assert chtss["layers.0.sparse"]["nnz"] == round(0.2 * 64 * 16) and chtss["layers.1.sparse"][
        "nnz"
    ] == round(0.2 * 256)
    assert rows["chtss"]["rewiring"]["sparsity_end"] == pytest.approx(0.8)
    assert len(read_jsonl(run / "metrics.jsonl")) == 5 * 3  # epochs 0, 1, 2
    printed = capsys.readouterr().out
    assert "rule" in printed and "magnitude+ch2_l3n" in printed


def test_an_interrupted_cortex_run_resumes_to_the_same_metrics(tmp_path):
    args = [*BASE, "--model", "cortex_rnn", "--nodes", "30", "--density", "0.2", "--rules", "set", "hebbian",
            "--rewire-params", "delta_t=3"]  # fmt: skip
    straight = tmp_path / "a"
    assert run_cli(dst.main, [*args, "--out", str(straight)]) == 0
    # The same run stopped after one epoch (epochs is a resume override), then resumed to two.
    part = tmp_path / "b"
    assert run_cli(dst.main, [*[a if a != "2" else "1" for a in args], "--out", str(part)]) == 0
    run = only_run(part)
    assert run_cli(dst.main, ["--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    a = [
        {k: v for k, v in r.items() if k != "elapsed_s"}
        for r in read_jsonl(only_run(straight) / "metrics.jsonl")
    ]
    b = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in read_jsonl(run / "metrics.jsonl")]
    # 8 steps per epoch; updates every 3 steps fall at 3 and 6 before the shorter run's T_end (0.75 * 8) as
    # before the longer one's (12), so stopping after epoch 1 and resuming changes nothing.
    assert len(a) == 2 * 3 and a == b


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rules", "static", "static"], "distinct rules"),
        (["--rules", "nope"], "--rules nope: unknown rewiring rule 'nope'"),
        (["--rules", "magnitude+nope"], "unknown growth criterion 'nope'"),
        (["--rules", "sparse_to_dense"], "cortex_rnn only"),
        (["--rewire", "set"], "name the rules to compare with --rules"),
        (["--rules", "set", "--rewire-params", "zeta=2"], "zeta"),
        (["--model", "nope"], "--model must be one of"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_no_run_folder(tmp_path, capsys, extra, message):
    out = tmp_path / "runs"
    assert run_cli(dst.main, [*BASE, "--model", "sparse_mlp", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "dst").exists()
