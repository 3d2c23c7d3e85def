"""The statistical building blocks, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from harness.gate.stats import (
    binomial_ci,
    bootstrap_paired,
    bootstrap_unpaired,
    holm,
    paired_test,
    unpaired_test,
    worse_alternative,
)


def test_worse_alternative_follows_direction() -> None:
    # candidate − baseline > 0 is worse when lower is better, and < 0 when higher is better
    assert worse_alternative("lower") == "greater"
    assert worse_alternative("higher") == "less"
    assert worse_alternative("any") == "two-sided"
    assert worse_alternative("none") == "two-sided"


def test_paired_test_all_zero_differences_is_p_one() -> None:
    result = paired_test(np.zeros(10), "greater")
    assert result.p_value == 1.0 and result.n == 0


def test_paired_test_min_p_and_exact_value() -> None:
    # 6 positive differences, no ties: exact one-sided p = 1/2^6
    result = paired_test(np.array([1.0, 2, 3, 4, 5, 6]), "greater")
    assert result.min_p == pytest.approx(1 / 64)
    assert result.p_value == pytest.approx(1 / 64)
    assert paired_test(np.array([1.0, 2, 3, 4, 5, 6]), "less").p_value == pytest.approx(1.0)
    assert paired_test(np.array([1.0, 2, 3, 4, 5, 6]), "two-sided").min_p == pytest.approx(2 / 64)


def test_unpaired_test_complete_separation_reaches_min_p() -> None:
    # 5 vs 5 rounds, every candidate round slower: p = 1 / C(10, 5) = 1/252, the best 5 rounds can do
    base = np.array([100.0, 101, 102, 103, 104])
    cand = base + 10
    result = unpaired_test(cand, base, "greater")
    assert result.min_p == pytest.approx(1 / 252)
    assert result.p_value == pytest.approx(1 / 252)
    assert unpaired_test(base, base.copy(), "greater").p_value == 1.0
    assert unpaired_test(np.array([]), base, "greater").p_value == 1.0


def test_holm_matches_hand_computation() -> None:
    adjusted, divisors = holm([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert divisors == [3, 1, 2, 4]
    assert holm([]) == ([], [])
    assert holm([0.9])[0] == [0.9]


def test_holm_is_never_below_raw_and_caps_at_one() -> None:
    raw = [0.2, 0.5, 0.7, 0.01]
    adjusted, _ = holm(raw)
    assert all(a >= r for a, r in zip(adjusted, raw, strict=True))
    assert max(adjusted) <= 1.0


def test_bootstrap_is_deterministic_and_covers_the_shift() -> None:
    rng = np.random.default_rng(0)
    base = rng.lognormal(3, 0.2, 200)
    cand = base * 1.10 * rng.lognormal(0, 0.02, 200)
    ones = np.ones(200)
    first = bootstrap_paired(base, cand, ones, 1000, 0.95, seed=7)
    again = bootstrap_paired(base, cand, ones, 1000, 0.95, seed=7)
    assert first == again
    assert first.rel_low < 0.10 < first.rel_high
    assert first.rel_high - first.rel_low < 0.02  # paired: the prompt effect cancels
    unpaired = bootstrap_unpaired(base, ones, cand, ones, 1000, 0.95, seed=7)
    assert unpaired.rel_high - unpaired.rel_low > first.rel_high - first.rel_low  # unpaired cannot cancel it


def test_bootstrap_cluster_counts_weight_the_mean() -> None:
    # two prompts: one with 3 samples summing to 3, one with 1 sample of 1: every resample's mean is 1
    sums, counts = np.array([3.0, 1.0]), np.array([3.0, 1.0])
    interval = bootstrap_paired(sums, sums * 2, counts, 500, 0.95, seed=1)
    assert interval.abs_low == pytest.approx(1.0) and interval.abs_high == pytest.approx(1.0)
    assert interval.rel_low == pytest.approx(1.0)


def test_bootstrap_with_zero_baseline_has_no_relative_interval() -> None:
    zeros, ones = np.zeros(20), np.ones(20)
    interval = bootstrap_paired(zeros, ones, ones, 200, 0.95, seed=0)
    assert interval.rel_low is None and interval.abs_low == pytest.approx(1.0)


def test_binomial_ci_contains_rate() -> None:
    low, high = binomial_ci(10, 200)
    assert low < 0.05 < high
    assert binomial_ci(0, 200)[0] == 0.0
