"""cortexnet.rewiring.schedules: update timing, ζ, temperature, CHTss sparsity, overlap and early stop.

Expected values are the formulas evaluated by hand (written out in the comments), not the code's own output.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cortexnet.rewiring.schedules import (
    TEMPERATURE_SCHEDULES,
    ZETA_SCHEDULES,
    ConstantTemperature,
    ConstantZeta,
    CosineZeta,
    DeltaTemperature,
    LinearTemperature,
    SigmoidSparsity,
    TopologicalEarlyStop,
    UpdateTiming,
    drop_count,
    is_update_step,
    make_temperature_schedule,
    make_zeta_schedule,
    overlap,
    update_count,
)

# ------------------------------------------------------------------------------------------ update timing


def test_update_steps_every_delta_t_until_t_end_inclusive():
    # step = optimiser steps taken (1 after the first); updates at 100, 200, ..., 7500 with ΔT = 100.
    assert not is_update_step(0, 100, 7500)  # nothing trained yet
    assert not is_update_step(99, 100, 7500)
    assert is_update_step(100, 100, 7500)
    assert not is_update_step(150, 100, 7500)
    assert is_update_step(7500, 100, 7500)  # T_end itself is the last update
    assert not is_update_step(7600, 100, 7500)
    assert [s for s in range(1, 30) if is_update_step(s, 10, 25)] == [10, 20]
    assert not any(is_update_step(s, 1, 0) for s in range(5))  # t_end = 0: never rewire
    assert is_update_step(1, 1, 1)


def test_update_count_is_t_end_over_delta_t():
    assert update_count(0, 100, 7500) == 0
    assert update_count(99, 100, 7500) == 0
    assert update_count(100, 100, 7500) == 1
    assert update_count(7499, 100, 7500) == 74
    assert update_count(7500, 100, 7500) == 75  # 7500 / 100
    assert update_count(10_000, 100, 7500) == 75  # held after T_end
    # The count agrees with is_update_step at every step.
    assert update_count(1000, 7, 900) == sum(is_update_step(s, 7, 900) for s in range(1, 1001)) == 128


def test_update_timing_object_and_fraction():
    timing = UpdateTiming.from_total_steps(10_000, 100)  # T_end = 0.75 · 10,000 = 7500
    assert timing == UpdateTiming(delta_t=100, t_end=7500)
    assert timing(7500) and not timing(7600) and timing.count(10_000) == 75
    assert (
        UpdateTiming.from_total_steps(1000, 10, end_fraction=0.29).t_end == 290
    )  # not 289 (0.29·1000 < 290)


def test_update_timing_validation_names_value():
    with pytest.raises(ValueError, match=r"delta_t must be >= 1, got 0"):
        is_update_step(10, 0, 100)
    with pytest.raises(ValueError, match=r"step must be >= 0, got -1"):
        update_count(-1, 10, 100)
    with pytest.raises(ValueError, match=r"t_end must be >= 0, got -5"):
        UpdateTiming(delta_t=10, t_end=-5)
    with pytest.raises(ValueError, match=r"end_fraction must be in \[0, 1\], got 1.5"):
        UpdateTiming.from_total_steps(100, 10, end_fraction=1.5)
    with pytest.raises(TypeError, match="step must be an integer"):
        is_update_step(10.0, 10, 100)


# --------------------------------------------------------------------------------------------------- ζ


def test_constant_zeta():
    z = ConstantZeta()  # SET: ζ = 0.3
    assert z(0) == z(123) == z(10**9) == 0.3
    assert z.n_drop(5, 1000) == 300  # floor(0.3 · 1000)
    assert z.n_drop(5, 7) == 2  # floor(2.1)


def test_cosine_zeta_hand_values_and_boundaries():
    z = CosineZeta(zeta0=0.3, t_end=1000)
    assert z(0) == pytest.approx(0.3)  # 0.15 · (1 + cos 0) = 0.3
    assert z(250) == pytest.approx(0.15 * (1 + math.sqrt(0.5)))  # cos(π/4) = 0.70711 -> 0.25607
    assert z(500) == pytest.approx(0.15)  # cos(π/2) = 0
    assert z(750) == pytest.approx(0.15 * (1 - math.sqrt(0.5)))  # 0.04393
    assert z(1000) == pytest.approx(0.0, abs=1e-15)  # cos π = -1
    assert z(5000) == pytest.approx(0.0, abs=1e-15)  # held at T_end
    values = [z(t) for t in range(0, 1200, 10)]
    assert all(a >= b for a, b in itertools.pairwise(values))  # non-increasing
    assert z.n_drop(250, 1000) == 256  # floor(256.066)


def test_drop_count_floors_without_float_artefacts():
    assert 0.29 * 100 < 29  # 28.999999999999996 in floating point
    assert drop_count(0.29, 100) == 29
    assert drop_count(0.3, 10) == 3
    assert drop_count(0.3, 0) == 0
    assert drop_count(1.0, 5) == 5
    assert drop_count(0.025, 806_100) == 20_152  # G2GNet: 2.5 % of 806,100 = 20,152.5


def test_zeta_registry_and_validation():
    assert ZETA_SCHEDULES.names() == ["constant", "cosine"]
    assert make_zeta_schedule("cosine", zeta0=0.3, t_end=100)(50) == pytest.approx(0.15)
    assert make_zeta_schedule("constant", zeta=0.1)(7) == 0.1
    with pytest.raises(KeyError, match=r"unknown zeta schedule 'linear'; known: constant, cosine"):
        make_zeta_schedule("linear")
    with pytest.raises(ValueError, match=r"zeta must be in \[0, 1\], got 1.5"):
        ConstantZeta(1.5)
    with pytest.raises(ValueError, match=r"zeta0 must be in \[0, 1\], got -0.1"):
        CosineZeta(zeta0=-0.1, t_end=10)
    with pytest.raises(ValueError, match=r"t_end must be >= 1, got 0"):
        CosineZeta(zeta0=0.3, t_end=0)
    with pytest.raises(ValueError, match=r"zeta must be in \[0, 1\], got nan"):
        drop_count(math.nan, 10)
    with pytest.raises(ValueError, match=r"step must be >= 0, got -3"):
        CosineZeta(t_end=10)(-3)


# -------------------------------------------------------------------------------------------- temperature


def test_linear_temperature_hand_values():
    t = LinearTemperature(start=1.0, end=3.0, t_end=1000)  # CHTs MLP code: T = 1 + 2 t / T_end
    assert t(0) == 1.0
    assert t(250) == pytest.approx(1.5)
    assert t(500) == pytest.approx(2.0)
    assert t(1000) == pytest.approx(3.0)
    assert t(10_000) == pytest.approx(3.0)  # held at T_end
    assert LinearTemperature(start=1.0, end=9.0, t_end=100)(50) == pytest.approx(5.0)  # LLM scripts: 1 -> 9


def test_delta_temperature_hand_values_and_convexity():
    t = DeltaTemperature(delta_start=0.5, delta_end=0.75, t_end=1000)  # seed 003, eq. 2
    assert t(0) == pytest.approx(1.0)  # 0.5 / 0.5
    assert t(250) == pytest.approx(0.5625 / 0.4375)  # δ = 0.5625 -> 1.28571
    assert t(500) == pytest.approx(0.625 / 0.375)  # δ = 0.625 -> 1.66667 (linear gives 2)
    assert t(750) == pytest.approx(2.2)  # δ = 0.6875 -> 0.6875 / 0.3125
    assert t(1000) == pytest.approx(3.0)  # 0.75 / 0.25
    assert t(4000) == pytest.approx(3.0)
    assert t.delta(500) == pytest.approx(0.625)
    lin = LinearTemperature(1.0, 3.0, 1000)
    steps = range(0, 1001, 50)
    # Same end points, below the chord in between (convex), both increasing.
    assert all(t(s) <= lin(s) + 1e-12 for s in steps)
    vals = [t(s) for s in steps]
    assert all(a < b for a, b in itertools.pairwise(vals))
    assert DeltaTemperature.from_temperatures(1.0, 3.0, 1000) == t


def test_temperature_registry_and_validation():
    assert TEMPERATURE_SCHEDULES.names() == ["constant", "delta", "linear"]
    assert make_temperature_schedule("constant")(123) == 1.0
    assert ConstantTemperature(0.0)(5) == 0.0  # T = 0: uniform among positive scores
    assert make_temperature_schedule("linear", start=1.0, end=3.0, t_end=10)(5) == pytest.approx(2.0)
    assert make_temperature_schedule("delta", t_end=10)(10) == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"value must be in \[0, inf\), got -1.0"):
        ConstantTemperature(-1.0)
    with pytest.raises(ValueError, match=r"end must be in \[0, inf\), got inf"):
        LinearTemperature(start=1.0, end=math.inf, t_end=10)
    with pytest.raises(ValueError, match=r"delta_end must be in \[0, 1\), got 1.0"):
        DeltaTemperature(delta_end=1.0, t_end=10)
    with pytest.raises(ValueError, match=r"t_end must be >= 1, got 0"):
        LinearTemperature(t_end=0)
    with pytest.raises(KeyError, match="unknown temperature schedule 'cosine'"):
        make_temperature_schedule("cosine")


# ------------------------------------------------------------------------------------------------ CHTss


def test_sigmoid_sparsity_hand_values():
    # total = 80: mid = 40, k = 6/40 = 0.15, a0 = σ(-6) = 0.0024726, a1 = σ(6) = 0.9975274, a1 - a0 = 0.9950548.
    s = SigmoidSparsity(s0=0.5, s1=0.9, total=80)
    assert s(0) == 0.5
    # c = 20: σ(-3) = 0.0474259; (0.0474259 - 0.5) / 0.9950548 + 0.5 = 0.0451770 -> 0.5 + 0.4 · 0.0451770
    assert s(20) == pytest.approx(0.5180707, abs=1e-7)
    assert s(40) == pytest.approx(0.7)  # σ(0) = 0.5: half-way
    # c = 60: symmetric to c = 20 about the midpoint: 0.9 - 0.0180707
    assert s(60) == pytest.approx(0.8819293, abs=1e-7)
    # c = 75: σ(5.25) = 0.9947799; (0.4947799 / 0.9950548) + 0.5 = 0.9972388 -> 0.5 + 0.4 · 0.9972388
    assert s(75) == pytest.approx(0.8988955, abs=1e-7)
    assert s(80) == 0.9 and s(1000) == 0.9  # exactly s1 at and after total
    vals = [s(c) for c in range(0, 81)]
    assert all(a < b for a, b in itertools.pairwise(vals))


def test_sigmoid_sparsity_endpoints_exact_for_any_total():
    # a1 = 1 - a0 makes the normalisation exact: s(0) = s0, s(total) = s1, for fractional totals too.
    for total in (1, 2.5, 7, 80, 1000):
        s = SigmoidSparsity(s0=0.3, s1=0.99, total=total)
        assert s(0) == 0.3
        assert s(total) == 0.99
        assert s(total - 1e-9) == pytest.approx(0.99, abs=1e-6)
        assert s(1e-9) == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize("delta_t", [50, 100, 250, 500])
@pytest.mark.parametrize(("target", "expected"), [(0.90, 0.8989), (0.95, 0.9488)])
def test_chtss_authors_t_end_7500_vs_pruning_t_end_8000(delta_t, target, expected):
    # The authors' script: s0 = 0.5, pruning_T_end = 8000, DST stops at T_end = 7500 (DST.md). With
    # updates at ΔT, 2ΔT, ..., T_end (inclusive) the last update is c = 7500 / ΔT of total = 8000 / ΔT, and
    # s depends on c / total = 0.9375 only, so every ΔT dividing both gives the same value.
    schedule = SigmoidSparsity.from_steps(s0=0.5, s1=target, pruning_t_end=8000, delta_t=delta_t)
    timing = UpdateTiming(delta_t=delta_t, t_end=7500)
    c_final = timing.count(10_000)
    assert c_final == 7500 // delta_t
    assert round(schedule(c_final), 4) == expected
    # The integer link count of a real layer (the CHTs MLP's 1568 x 1568) lands on the same 4 decimals.
    possible = 1568 * 1568
    assert round(1 - schedule.target_links(c_final, possible) / possible, 4) == expected
    # The other reading (no update at T_end itself, one update fewer) does not reproduce the numbers.
    assert round(schedule(c_final - 1), 4) != expected


def test_links_to_remove_follows_target_exactly_without_drift():
    # Simulate a layer through every update: it always holds round((1 - s(c)) · possible).
    for possible, total in ((1568 * 1568, 80), (1000, 37), (7, 10), (98 * 196, 12.5)):
        s = SigmoidSparsity(s0=0.5, s1=0.9, total=total)
        active = s.target_links(0, possible)
        assert active == math.floor(0.5 * possible + 0.5)
        removed = 0
        for c in range(1, math.ceil(total) + 5):
            n = s.links_to_remove(c, possible, active)
            assert n >= 0
            active -= n
            removed += n
            assert active == math.floor((1 - s(c)) * possible + 0.5)
            assert s.links_to_remove(c, possible) == n  # default: the previous target
        assert active == math.floor(0.1 * possible + 0.5)
        assert removed == s.target_links(0, possible) - s.target_links(total, possible)


def test_links_to_remove_corrects_an_off_target_layer():
    s = SigmoidSparsity(s0=0.5, s1=0.9, total=80)
    target = s.target_links(10, 10_000)
    assert s.links_to_remove(10, 10_000, active=target + 7) == 7
    assert s.links_to_remove(10, 10_000, active=target - 3) == -3  # net growth
    assert SigmoidSparsity(s0=0.9, s1=0.5, total=4).links_to_remove(4, 100) < 0  # a density increase


def test_sigmoid_sparsity_validation():
    with pytest.raises(ValueError, match=r"s0 must be in \[0, 1\], got 1.2"):
        SigmoidSparsity(s0=1.2, s1=0.9, total=10)
    with pytest.raises(ValueError, match=r"s1 must be in \[0, 1\], got -0.1"):
        SigmoidSparsity(s0=0.5, s1=-0.1, total=10)
    with pytest.raises(ValueError, match=r"total must be in \(0, inf\), got 0.0"):
        SigmoidSparsity(s0=0.5, s1=0.9, total=0)
    with pytest.raises(ValueError, match=r"c must be in \[0, inf\), got -1.0"):
        SigmoidSparsity(s0=0.5, s1=0.9, total=10)(-1)
    with pytest.raises(ValueError, match=r"c must be >= 1, got 0"):
        SigmoidSparsity(s0=0.5, s1=0.9, total=10).links_to_remove(0, 100)
    with pytest.raises(ValueError, match=r"delta_t must be >= 1, got 0"):
        SigmoidSparsity.from_steps(0.5, 0.9, pruning_t_end=8000, delta_t=0)


# ----------------------------------------------------------------------------------- overlap, early stop


def test_overlap_is_fraction_of_regrown_that_was_removed():
    # removed {1, 2, 3, 4}, regrown {3, 4, 5, 6, 7}: |{3, 4}| / |regrown| = 2 / 5
    assert overlap({1, 2, 3, 4}, [3, 4, 5, 6, 7]) == 0.4
    assert overlap(torch.tensor([1, 2, 3, 4]), torch.tensor([3, 4, 5, 6, 7])) == 0.4
    assert overlap([(0, 1), (2, 3)], [(2, 3)]) == 1.0  # (row, col) keys
    assert overlap(torch.tensor([1, 2]), torch.tensor([[3, 4], [5, 1]])) == 0.25  # any shape
    assert overlap(torch.tensor([1, 2]), torch.tensor([1, 1, 9, 9])) == 0.5  # duplicates count once
    assert overlap([1, 2, 3], []) == 0.0  # nothing regrown: no re-prediction
    assert overlap(torch.empty(0, dtype=torch.long), torch.tensor([5])) == 0.0
    with pytest.raises(TypeError, match="both be tensors"):
        overlap(torch.tensor([1]), [1])
    with pytest.raises(TypeError, match="integer keys"):
        overlap(torch.tensor([1.0]), torch.tensor([1.0]))


def test_topological_early_stop_freezes_above_threshold_and_stays_frozen():
    stop = TopologicalEarlyStop()  # threshold 0.9, strictly greater
    regrown = list(range(10))
    assert not stop.update("fc1", removed_keys=range(9), regrown_keys=regrown)  # 9 / 10 = 0.9: not above
    assert not stop.is_frozen("fc1")
    assert stop.update("fc1", removed_keys=range(20), regrown_keys=regrown)  # 10 / 10 = 1.0
    assert stop.update("fc1", removed_keys=[], regrown_keys=regrown)  # stays frozen
    assert not stop.is_frozen("fc2")
    restored = TopologicalEarlyStop(threshold=0.5)
    restored.load_state_dict(stop.state_dict())
    assert restored.threshold == 0.9 and restored.is_frozen("fc1") and not restored.is_frozen("fc2")
    assert stop.state_dict() == {"threshold": 0.9, "frozen": ["fc1"]}
    assert stop.should_freeze(0.95) and not stop.should_freeze(0.9)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 1.5"):
        TopologicalEarlyStop(threshold=1.5)
