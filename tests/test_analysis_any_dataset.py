"""The analysis probes read any data source (TensorDataset, map-style Dataset, DataLoader) with the same numbers,
and compute on the model's device unless told otherwise."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from cortexnet.analysis import dropout_robustness, ei_balance, hidden_activations
from cortexnet.data.batching import batches
from cortexnet.data.samples import select_batches
from cortexnet.models import CortexRNN, CortexRNNConfig

N_IN, N_CLASSES = 4, 3


def tiny_model() -> CortexRNN:
    cfg = CortexRNNConfig(n_nodes=30, p=0.2, dale=True, backend="masked_dense")
    return CortexRNN(cfg, N_IN, N_CLASSES)


class Samples(Dataset):
    """A map-style dataset holding the same samples as a TensorDataset: x (T, F) tensors, y Python ints."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.fixture(scope="module")
def sources():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(53, 5, N_IN, generator=g), torch.randint(0, N_CLASSES, (53,), generator=g)
    tensors = TensorDataset(x, y)
    mapped = Samples(x, y)
    # the loader's own batch size (7) differs from every probe's: its batches must be re-cut
    return {
        "tensors": tensors,
        "dataset": mapped,
        "loader": DataLoader(mapped, batch_size=7, shuffle=False),
        "tensor-loader": DataLoader(tensors, batch_size=11, shuffle=False),
    }


KINDS = ["dataset", "loader", "tensor-loader"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 16},  # every input, in order
        {"batch_size": 10, "max_samples": 23, "seed": 4},  # a seeded random subset of positions
        {"batch_size": 8, "all_steps": True, "budget_bytes": 4 * 30 * 5 * 19},  # memory cap: 19 inputs
    ],
)
def test_hidden_activations_same_numbers_for_every_source(sources, kind, kwargs):
    model = tiny_model()
    ref = hidden_activations(model, sources["tensors"], **kwargs)
    got = hidden_activations(model, sources[kind], **kwargs)
    assert torch.equal(got.values, ref.values)
    assert torch.equal(got.labels, ref.labels) and got.labels.dtype == torch.int64
    assert torch.equal(got.indices, ref.indices) and got.subsampled == ref.subsampled
    if "max_samples" in kwargs or "budget_bytes" in kwargs:
        assert ref.subsampled and len(ref.indices) in (23, 19)
        assert not torch.equal(
            ref.indices, torch.arange(len(ref.indices))
        )  # a random subset, not the first n


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_robustness_same_numbers_for_every_source(sources, kind):
    model = tiny_model()
    kw = {"qs": (0.0, 0.3, 0.7), "n_draws": 3, "seed": 2, "batch_size": 12}  # masks are drawn per batch of 12
    ref = dropout_robustness(model, sources["tensors"], **kw)
    got = dropout_robustness(model, sources[kind], **kw)
    np.testing.assert_array_equal(got.accuracy, ref.accuracy)
    np.testing.assert_array_equal(got.sd, ref.sd)


@pytest.mark.parametrize("kind", KINDS)
def test_ei_balance_same_numbers_for_every_source(sources, kind):
    model = tiny_model()
    kw = {"max_samples": 31, "batch_size": 9, "seed": 5}  # a seeded random order of 31 positions
    ref = ei_balance(model, sources["tensors"], **kw)
    got = ei_balance(model, sources[kind], **kw)
    for field in ("struct_exc", "struct_inh", "func_exc", "func_inh"):
        np.testing.assert_array_equal(getattr(got, field), getattr(ref, field))
    assert np.abs(ref.func_exc).sum() > 0


def test_a_shuffled_loader_is_read_in_its_own_order(sources):
    """Positions are ranks in the loader's order: a shuffled loader gives the same multiset of activations."""
    model = tiny_model()
    ref = hidden_activations(model, sources["tensors"], batch_size=100)
    shuffled = DataLoader(
        sources["dataset"], batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    got = hidden_activations(model, shuffled, batch_size=100)
    assert not torch.equal(got.values, ref.values)
    assert torch.equal(got.labels.sort().values, ref.labels.sort().values)


def test_select_batches_keeps_the_requested_order_and_batching(sources):
    order = torch.tensor([40, 3, 17, 52, 0, 9, 8])
    x, y = sources["tensors"].tensors
    for kind in ("tensors", *KINDS):
        got = list(select_batches(batches(sources[kind]), order, 3))
        assert [len(b[1]) for b in got] == [3, 3, 1]
        assert torch.equal(torch.cat([b[0] for b in got]), x[order])
        assert torch.equal(torch.cat([b[1] for b in got]), y[order])
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 53\)"):
        list(select_batches(batches(sources["tensors"]), torch.tensor([53]), 3))


def test_loader_that_drops_samples_is_a_clear_error(sources):
    dropping = DataLoader(sources["dataset"], batch_size=10, drop_last=True)
    with pytest.raises(ValueError, match=r"yielded 50 samples but its dataset holds 53.*drop_last=False"):
        dropout_robustness(tiny_model(), dropping, qs=(0.0,), n_draws=1)


def test_iterable_dataset_is_refused_with_the_fix():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(5, N_IN), 0

    with pytest.raises(TypeError, match=r"IterableDataset.*DataLoader"):
        hidden_activations(tiny_model(), Stream())


def test_float64_samples_are_converted_to_the_model_dtype(sources):
    x, y = sources["tensors"].tensors
    model = tiny_model()
    ref = hidden_activations(model, sources["tensors"], batch_size=16)
    got = hidden_activations(model, Samples(x.double(), y), batch_size=16)
    assert torch.equal(got.values, ref.values)


class _DeviceRecorder(torch.nn.Module):
    """hidden(x) records the device its input arrives on (and answers on the CPU)."""

    def __init__(self):
        super().__init__()
        self.readout = torch.nn.Linear(2, 2)
        self.seen: list[str] = []

    def hidden(self, x, all_steps=False):
        self.seen.append(x.device.type)
        return torch.ones(len(x), 2)


def test_probes_follow_the_model_device_and_an_explicit_device_wins(sources):
    model = _DeviceRecorder().to("meta")  # a device other than the data's, without a GPU
    hidden_activations(model, sources["dataset"], batch_size=20)
    assert model.seen and set(model.seen) == {"meta"}
    model.seen.clear()
    hidden_activations(model, sources["loader"], batch_size=20, device="cpu")
    assert model.seen and set(model.seen) == {"cpu"}


@pytest.mark.gpu
def test_probes_run_on_the_model_gpu(sources):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cpu = tiny_model()
    gpu = tiny_model().to("cuda")
    a, b = hidden_activations(cpu, sources["loader"]), hidden_activations(gpu, sources["loader"])
    assert b.values.device.type == "cpu"
    torch.testing.assert_close(b.values, a.values, rtol=1e-4, atol=1e-5)
    ea, eb = ei_balance(cpu, sources["dataset"]), ei_balance(gpu, sources["dataset"])
    np.testing.assert_allclose(eb.func_exc, ea.func_exc, rtol=1e-4, atol=1e-5)
    da = dropout_robustness(cpu, sources["tensors"], qs=(0.0,), n_draws=1)
    db = dropout_robustness(gpu, sources["tensors"], qs=(0.0,), n_draws=1)
    np.testing.assert_allclose(db.accuracy, da.accuracy, atol=1 / 53 + 1e-9)
