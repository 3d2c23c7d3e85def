"""The statistics behind a gate verdict: rank tests, a cluster bootstrap and Holm's correction.

Why these choices (see the gates spec, shared/spec/gates.md):

* Rank tests (Wilcoxon signed-rank for paired samples, Mann-Whitney U otherwise) make no normality
  assumption: perplexity and latency are skewed, ratio metrics are bounded and tied.
* Tests are one-sided in the direction of "worse": an improvement must never spend alpha.
* The replication unit is the *prompt*. With several samples per prompt, samples of one prompt are
  correlated, so the tests use per-prompt means and the bootstrap resamples whole prompts.
* Holm controls the chance of any false alarm across all metric × model gates of a job without
  Bonferroni's loss of power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

Alternative = Literal["greater", "less", "two-sided"]


@dataclass(frozen=True)
class TestResult:
    """A p-value plus the smallest p-value the test could have produced with this many units."""

    name: str
    p_value: float
    min_p: float  # when min_p > alpha the test cannot detect anything: the verdict is inconclusive
    n: int  # units the test used (prompts with a nonzero difference, or prompts/rounds per side)


@dataclass(frozen=True)
class Interval:
    """Bootstrap confidence interval of the change of the mean, absolute and relative to the baseline."""

    abs_low: float | None
    abs_high: float | None
    rel_low: float | None
    rel_high: float | None


def worse_alternative(direction: str) -> Alternative:
    """The scipy ``alternative`` under which candidate − baseline is a regression."""
    return {"lower": "greater", "higher": "less"}.get(direction, "two-sided")  # type: ignore[return-value]


def _finite_p(value: float) -> float:
    """scipy returns NaN for degenerate inputs; no evidence is p = 1, never a NaN that slips past ``<=``."""
    value = float(value)
    return value if math.isfinite(value) else 1.0


def paired_test(diffs: np.ndarray, alternative: Alternative) -> TestResult:
    """Wilcoxon signed-rank on per-unit differences (candidate − baseline); zero differences carry no evidence."""
    nonzero = diffs[diffs != 0]
    n = len(nonzero)
    sides = 1 if alternative != "two-sided" else 2
    min_p = min(1.0, sides * 0.5**n) if n else 1.0
    if n == 0:
        return TestResult("wilcoxon", 1.0, min_p, 0)
    result = sps.wilcoxon(nonzero, alternative=alternative, zero_method="wilcox")
    return TestResult("wilcoxon", _finite_p(result.pvalue), min_p, n)


def unpaired_test(
    candidate: np.ndarray, baseline: np.ndarray, alternative: Alternative, name: str = "mannwhitney"
) -> TestResult:
    """Mann-Whitney U (exact for small samples without ties, the normal approximation otherwise)."""
    n1, n2 = len(candidate), len(baseline)
    sides = 1 if alternative != "two-sided" else 2
    min_p = min(1.0, sides / math.comb(n1 + n2, n1)) if n1 and n2 else 1.0
    if not n1 or not n2:
        return TestResult(name, 1.0, min_p, min(n1, n2))
    if np.array_equal(np.sort(candidate), np.sort(baseline)):
        return TestResult(name, 1.0, min_p, min(n1, n2))
    result = sps.mannwhitneyu(candidate, baseline, alternative=alternative, method="auto")
    return TestResult(name, _finite_p(result.pvalue), min_p, min(n1, n2))


def _quantiles(values: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if len(finite) < len(values) * 0.5 or len(finite) == 0:
        return None, None  # the baseline mean was ~0 in too many resamples for a relative change
    tail = (1 - confidence) / 2
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))


def _chunks(resamples: int, units: int) -> list[int]:
    """Resample in blocks so a 10,000-prompt suite does not allocate resamples × units at once."""
    block = max(1, 2_000_000 // max(units, 1))
    return [min(block, resamples - start) for start in range(0, resamples, block)]


def bootstrap_paired(
    base_sum: np.ndarray, cand_sum: np.ndarray, count: np.ndarray, resamples: int, confidence: float, seed: int
) -> Interval:
    """Cluster bootstrap of the change of the mean over paired units (prompts): resample prompts, keep pairs."""
    n = len(count)
    if n < 2:
        return Interval(None, None, None, None)
    rng = np.random.default_rng(seed)
    abs_parts, rel_parts = [], []
    for size in _chunks(resamples, n):
        idx = rng.integers(0, n, size=(size, n))
        total = count[idx].sum(axis=1)
        mb = base_sum[idx].sum(axis=1) / total
        mc = cand_sum[idx].sum(axis=1) / total
        abs_parts.append(mc - mb)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_parts.append((mc - mb) / np.abs(mb))
    abs_low, abs_high = _quantiles(np.concatenate(abs_parts), confidence)
    rel_low, rel_high = _quantiles(np.concatenate(rel_parts), confidence)
    return Interval(abs_low, abs_high, rel_low, rel_high)


def bootstrap_unpaired(
    base_sum: np.ndarray,
    base_count: np.ndarray,
    cand_sum: np.ndarray,
    cand_count: np.ndarray,
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """Bootstrap of the change of the mean when the sides do not pair: resample each side's units on its own."""
    if len(base_count) < 2 or len(cand_count) < 2:
        return Interval(None, None, None, None)
    rng = np.random.default_rng(seed)
    abs_parts, rel_parts = [], []
    for size in _chunks(resamples, max(len(base_count), len(cand_count))):
        ib = rng.integers(0, len(base_count), size=(size, len(base_count)))
        ic = rng.integers(0, len(cand_count), size=(size, len(cand_count)))
        mb = base_sum[ib].sum(axis=1) / base_count[ib].sum(axis=1)
        mc = cand_sum[ic].sum(axis=1) / cand_count[ic].sum(axis=1)
        abs_parts.append(mc - mb)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_parts.append((mc - mb) / np.abs(mb))
    abs_low, abs_high = _quantiles(np.concatenate(abs_parts), confidence)
    rel_low, rel_high = _quantiles(np.concatenate(rel_parts), confidence)
    return Interval(abs_low, abs_high, rel_low, rel_high)


def holm(p_values: list[float]) -> tuple[list[float], list[int]]:
    """Holm step-down: adjusted p-values, and for each test the divisor of alpha at its step (m, m−1, …, 1).

    A test is significant at family-wise level alpha when its adjusted p ≤ alpha, which is the same
    as the step-down rule ``p_(i) ≤ alpha / (m − i + 1)`` with every smaller p also passing.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    divisors = [1] * m
    running = 0.0
    for rank, index in enumerate(order):
        divisors[index] = m - rank
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted, divisors


def binomial_ci(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a rate, for reporting false-alarm rates and power honestly."""
    if trials == 0:
        return 0.0, 1.0
    ci = sps.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)
