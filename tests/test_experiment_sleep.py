"""Issue 3's "must show": the dale experiment end to end on Sleep-EDF and UCR Sleep fixtures (no network)."""

import json

from conftest_data import forbid_network, ts_series, write_sleep_edf_fixture, write_ts

from cortexnet.experiments import dale
from cortexnet.experiments.common import run_cli


def _run(tmp_path, dataset, *extra):
    out = tmp_path / "runs"
    args = ["--nodes", "200", "--dataset", dataset, "--data-root", str(tmp_path / "data"), "--epochs", "1",
            "--densities", "0.1", "--no-progress", "--out", str(out), *extra]  # fmt: skip
    code = run_cli(dale.main, args)
    return code, out


def test_dale_on_sleep_edf_fixture(tmp_path, monkeypatch, capsys):
    forbid_network(monkeypatch)
    write_sleep_edf_fixture(tmp_path / "data")
    code, out = _run(tmp_path, "sleep-edf", "--dataset-options", "seq_len=300")
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "300 steps x 200 nodes" in printed  # the cost is shown before training starts
    (run,) = list((out / "dale").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["chance"] == 0.2  # 5 sleep stages
    ckpt_meta = json.loads((run / "config.json").read_text())["config"]
    assert ckpt_meta["dataset_options"] == ["seq_len=300"]


def test_dale_on_sleep_ucr_fixture(tmp_path, monkeypatch, capsys):
    from cortexnet.data import sleep_ucr

    forbid_network(monkeypatch)
    # a 40-series stand-in for the archive: without a manifest the loader checks the archive's series count
    monkeypatch.setattr(sleep_ucr, "EXPECTED_TOTAL", 40)
    x, labels = ts_series(40, seed=1)
    write_ts(tmp_path / "data" / "sleep-ucr" / "Sleep_TRAIN.ts", x[:30], labels[:30])
    write_ts(tmp_path / "data" / "sleep-ucr" / "Sleep_TEST.ts", x[30:], labels[30:])
    code, _ = _run(tmp_path, "sleep-ucr")
    assert code == 0, capsys.readouterr().err
    assert "178 steps x 200 nodes" in capsys.readouterr().out


def test_bad_dataset_option_is_a_usage_error(tmp_path, capsys):
    write_sleep_edf_fixture(tmp_path / "data", recordings=((0, 1),))
    code, out = _run(tmp_path, "sleep-edf", "--dataset-options", "seq_len=-3")
    assert code == 2 and "seq_len" in capsys.readouterr().err
    assert not out.exists()
    code, out = _run(tmp_path, "sleep-edf", "--dataset-options", "novalue")
    assert code == 2 and "key=value" in capsys.readouterr().err
