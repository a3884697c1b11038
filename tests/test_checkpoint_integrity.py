"""Issue 16, class 4: what is loaded is verified. A checkpoint's payload carries a sha256 checked on load (a
flipped byte anywhere is an error naming the file), and loading re-imposes every sparse weight's mask and
Dale's law, counting what it changed (or refusing under ``strict``), so every backend computes the same
function from the same file."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from cortexnet.experiments import representations
from cortexnet.experiments.common import run_cli
from cortexnet.layers import sparse_weights
from cortexnet.models import CortexRNNConfig, build_model
from cortexnet.training import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from cortexnet.training.checkpoint import CHECKSUM_KEY, load_model_state, payload_digest


def _config(backend: str) -> CortexRNNConfig:
    return CortexRNNConfig(n_nodes=24, p=0.3, dale=True, backend=backend, connectivity_seed=3, weight_seed=4)


def _write(path, backend: str = "masked_dense", state: dict | None = None) -> dict:
    cfg = _config(backend)
    model = build_model("cortex_rnn", cfg, 8, 10)
    payload = {
        "meta": {
            "model": "cortex_rnn",
            "model_config": dataclasses.asdict(cfg),
            "n_inputs": 8,
            "n_classes": 10,
        },
        "model_state": state if state is not None else model.state_dict(),
        "train_state": {"epoch": 1, "step": 7},
        "rng": [5, 6.5, None, "x", (1, 2)],
        "optimizer_state": {
            "state": {0: {"step": torch.tensor(3.0)}},
            "param_groups": [{"lr": 1e-3, "params": [0]}],
        },
    }
    save_checkpoint(path, payload)
    return payload


def test_the_digest_is_the_same_before_saving_and_after_loading(tmp_path):
    payload = _write(tmp_path / "c.pt")
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    stored = raw.pop(CHECKSUM_KEY)["sha256"]
    assert stored == payload_digest(raw)
    ckpt = load_checkpoint(tmp_path / "c.pt")  # verifies
    assert CHECKSUM_KEY not in ckpt and ckpt["train_state"] == payload["train_state"]


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.__setitem__((0,), t[0] + 1e-7),  # one value, a last-bit-sized change
        lambda t: t.__setitem__((-1,), -t[-1]),  # one sign
    ],
)
def test_the_digest_sees_any_change_of_a_value(change):
    t = torch.linspace(-1, 1, 100)
    before = payload_digest({"w": t})
    change(t)
    assert payload_digest({"w": t}) != before


def test_the_digest_tells_structure_apart():
    assert payload_digest({"a": [1, 2]}) != payload_digest({"a": (1, 2)})
    assert payload_digest({"a": 1}) != payload_digest({"a": 1.0})
    assert payload_digest({1: "x"}) != payload_digest({"1": "x"})
    assert payload_digest(torch.zeros(2, 3)) != payload_digest(torch.zeros(3, 2))
    assert payload_digest(torch.zeros(4, dtype=torch.float32)) != payload_digest(
        torch.zeros(2, dtype=torch.float64)
    )


def test_a_flipped_byte_in_a_tensor_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "c.pt"
    payload = _write(path)
    data = bytearray(path.read_bytes())
    # the bytes of the readout's weights, found in the file (torch stores tensor data raw, uncompressed)
    raw = payload["model_state"]["readout.weight"].numpy().tobytes()
    at = data.find(raw[64:96])
    assert at > 0
    data[at + 3] ^= 0x10
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # torch itself loads it silently: the checksum is what catches it
    with pytest.raises(CheckpointError, match=r"c\.pt fails its checksum"):
        load_checkpoint(path)


def test_a_checkpoint_that_lost_its_checksum_is_refused_and_an_old_one_loads_with_a_warning(tmp_path, caplog):
    path = tmp_path / "c.pt"
    _write(path)
    raw = torch.load(path, weights_only=True)
    raw.pop(CHECKSUM_KEY)
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="lost its checksum"):
        load_checkpoint(path)
    raw["format_version"] = 1  # written before checksums existed
    torch.save(raw, path)
    with caplog.at_level(logging.WARNING):
        ckpt = load_checkpoint(path)
    assert ckpt["train_state"]["step"] == 7
    assert "without a checksum" in caplog.text


def _tampered_state(backend: str) -> tuple[dict, int, int]:
    """A masked-dense state with non-zero values off the mask and active weights of the wrong sign."""
    model = build_model("cortex_rnn", _config("masked_dense"), 8, 10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prefix = next(k[: -len("mask")] for k in state if k.endswith("mask"))
    weight, mask, sign = state[prefix + "weight"], state[prefix + "mask"], state[prefix + "column_sign"]
    off = (~mask).nonzero()[:5]
    weight[off[:, 0], off[:, 1]] = 0.25
    on = mask.nonzero()[:3]
    weight[on[:, 0], on[:, 1]] = -0.5 * sign[on[:, 1]]  # the wrong Dale sign
    return state, 5, 3


@pytest.mark.parametrize("backend", ["masked_dense", "csr"])
def test_loading_re_imposes_the_mask_and_dale_and_counts_the_repairs(tmp_path, backend, caplog):
    state, n_off, n_wrong = _tampered_state(backend)
    model = build_model("cortex_rnn", _config(backend), 8, 10)
    with caplog.at_level(logging.WARNING):
        repairs = load_model_state(model, state, source="tampered.pt")
    # the csr layout cannot hold off-mask values: they are dropped on conversion, and counted as repairs too
    assert repairs == {"off_mask": n_off, "wrong_sign": n_wrong}
    assert "tampered.pt" in caplog.text and "set to zero on load" in caplog.text
    for w in sparse_weights(model).values():
        assert w.constraint_violations() == {"wrong_sign": 0, "off_mask": 0, "non_finite": 0}


def test_both_backends_compute_the_same_function_from_a_tampered_file(tmp_path):
    state, _, _ = _tampered_state("masked_dense")
    x = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(0))
    outs = []
    for backend in ("masked_dense", "csr"):
        model = build_model("cortex_rnn", _config(backend), 8, 10)
        load_model_state(model, {k: v.clone() for k, v in state.items()}, source="t")
        with torch.no_grad():
            outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


def test_strict_loading_refuses_a_file_that_needs_repair(tmp_path):
    state, _, _ = _tampered_state("masked_dense")
    path = tmp_path / "t.pt"
    _write(path, state=state)
    with pytest.raises(
        CheckpointError, match=r"t\.pt breaks its constraints: 5 non-zero values outside the mask and 3"
    ):
        model_from_checkpoint(path, strict=True)
    model, _ = model_from_checkpoint(path)  # repaired
    w = next(iter(sparse_weights(model).values()))
    assert w.load_repairs == {"off_mask": 5, "wrong_sign": 3}


def test_a_file_written_by_the_trainer_needs_no_repair(tmp_path, caplog):
    path = tmp_path / "c.pt"
    _write(path)
    with caplog.at_level(logging.WARNING):
        model, _ = model_from_checkpoint(path, strict=True)
    assert "set to zero" not in caplog.text
    assert all(w.load_repairs == {"off_mask": 0, "wrong_sign": 0} for w in sparse_weights(model).values())


def test_the_probe_command_refuses_a_damaged_or_tampered_checkpoint_in_one_line(tmp_path, capsys):
    bad = tmp_path / "t.pt"
    state, _, _ = _tampered_state("masked_dense")
    _write(bad, state=state)
    out = tmp_path / "o"
    assert run_cli(representations.main, ["--checkpoint", str(bad), "--strict", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "breaks its constraints" in err and "Traceback" not in err
    flipped = tmp_path / "f.pt"
    _write(flipped)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    assert run_cli(representations.main, ["--checkpoint", str(flipped), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "f.pt" in err and "Traceback" not in err and "weights_only" not in err
    assert not out.exists()
