"""Learning delay and seed statistics on scripted histories (known answers)."""

import pytest

from cortexnet.analysis import MeanSD, aggregate_runs, learning_delay, summarize_run


def hist(accs, fractions=()):
    out = [{"epoch": float(e), "test_acc": a} for e, a in enumerate(accs)]
    out += [{"epoch": e, "test_acc": a} for e, a in fractions]
    return out


def test_no_delay_when_first_epoch_learns():
    assert learning_delay(hist([0.1, 0.9, 0.95]), chance=0.1) == 0


def test_delay_counts_epochs_at_chance():
    # At chance (within the 5-point margin) for epochs 1..20, above after epoch 21.
    accs = [0.1] + [0.12] * 20 + [0.5]
    assert learning_delay(hist(accs), chance=0.1) == 20


def test_margin_is_strict_and_fractional_points_count():
    assert learning_delay(hist([0.1, 0.15, 0.16]), chance=0.1, margin=0.05) == 1  # 0.15 is not > 0.15
    # Above threshold half-way through epoch 3 (epoch 2.5): two whole epochs before it.
    assert learning_delay(hist([0.1, 0.1, 0.1, 0.9], fractions=[(2.5, 0.6)]), chance=0.1) == 2


def test_never_learned_is_none():
    assert learning_delay(hist([0.1, 0.11, 0.1]), chance=0.1) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="chance"):
        learning_delay([], chance=1.5)
    with pytest.raises(ValueError, match="margin"):
        learning_delay([], chance=0.1, margin=-1)


def test_summaries_and_mean_sd():
    a = summarize_run(hist([0.1, 0.5, 0.7, 0.6]), chance=0.1)
    b = summarize_run(hist([0.1, 0.1, 0.3, 0.4]), chance=0.1)
    assert a["best_test_acc"] == 0.7 and a["best_test_epoch"] == 2 and a["final_test_acc"] == 0.6
    assert a["learning_delay"] == 0 and b["learning_delay"] == 1
    agg = aggregate_runs([a, b])
    assert agg["best_test_acc"]["mean"] == pytest.approx(0.55)
    assert agg["best_test_acc"]["sd"] == pytest.approx(0.2121320344)  # sample SD of (0.7, 0.4)
    assert agg["learning_delay"]["mean"] == 0.5 and agg["learning_delay"]["never_learned"] == 0
    assert agg["test_acc_per_epoch"]["mean"][1] == pytest.approx(0.3)
    assert MeanSD.of([None]).format() == "n/a"
    assert MeanSD.of([0.5]).format(100) == "50.0 ± n/a" and MeanSD.of([0.5]).sd is None
