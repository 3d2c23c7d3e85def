"""One metric × model comparison: gather the values, test, and estimate the change.

The decision rule (asv's, gates.md §1): a regression needs a statistically significant change
*and* a point estimate worse than the tolerance. Significance is only known after Holm's
correction across every gate of the job, so this module produces a :class:`Comparison` with the
raw test; :mod:`harness.gate.engine` corrects and decides.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from harness.gate.data import Key, MetricMeta, Side
from harness.gate.rules import Rule
from harness.gate.stats import (
    Interval,
    TestResult,
    bootstrap_paired,
    bootstrap_unpaired,
    paired_test,
    unpaired_test,
    worse_alternative,
)

# Verdicts. Failing ones: regression, missing. inconclusive fails only with --fail-on-inconclusive.
PASS, IMPROVED, REGRESSION, MISSING, INCONCLUSIVE, WARNING, INFO = (
    "pass",
    "improved",
    "regression",
    "missing",
    "inconclusive",
    "warning",
    "info",
)


@dataclass
class Comparison:
    """Everything a report shows about one metric × model gate."""

    metric: str
    model: str
    meta: MetricMeta
    rule: Rule
    method: str = "none"  # wilcoxon | mannwhitney | exact | identical | single value | none
    unit_of_replication: str = "prompt"  # prompt | round | value | sample
    n_baseline: int = 0
    n_candidate: int = 0
    missing_baseline: int = 0
    missing_candidate: int = 0
    baseline_mean: float | None = None
    candidate_mean: float | None = None
    change: float | None = None  # candidate − baseline, in the metric's unit
    rel_change: float | None = None  # change / |baseline mean|
    ci: Interval = field(default_factory=lambda: Interval(None, None, None, None))
    test: TestResult | None = None
    tolerance: float | None = None  # allowed worsening in the metric's unit
    beyond_tolerance: bool = False
    better_beyond_tolerance: bool = False
    gated: bool = True
    not_gated_reason: str = ""
    in_family: bool = False
    family_size: int = 1  # gates in the Holm family (for the "cannot reach significance" check)
    p_adjusted: float | None = None
    alpha_step: float | None = None  # alpha / Holm divisor at this test's step
    verdict: str = PASS
    reason: str = ""

    @property
    def p_value(self) -> float | None:
        return self.test.p_value if self.test else None

    @property
    def failing(self) -> bool:
        return self.gated and self.verdict in (REGRESSION, MISSING)


def _seed(metric: str, model: str, seed: int) -> int:
    """A per-gate bootstrap seed: results do not depend on which other metrics were gated."""
    return (zlib.crc32(f"{metric}\0{model}".encode()) + seed) % (2**32)


def _values(side: Side, round_index: int, model: str, metric: str) -> tuple[dict[Key, float], int]:
    """Present values of one round keyed by sample, and how many of the round's samples lack one."""
    rnd = side.rounds[round_index]
    raw = rnd.samples.get(model, {}).get(metric, {})
    present = {k: v for k, v in raw.items() if v is not None}
    keys = rnd.keys.get(model, list(raw))
    return present, max(0, len(keys) - len(present))


def _prompt_sums(values: dict[Key, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt sum and count: the prompt is the unit resampled and tested."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for (prompt, _), value in values.items():
        sums[prompt] += value
        counts[prompt] += 1
    order = sorted(sums)
    return np.array([sums[p] for p in order]), np.array([counts[p] for p in order], dtype=float)


def _round_values(side: Side, model: str, meta: MetricMeta) -> tuple[list[float], int]:
    """One value per round: the round median of a sample metric (robust to a stray slow sample), or the model value."""
    values, missing = [], 0
    for index, rnd in enumerate(side.rounds):
        if meta.level == "sample":
            present, _ = _values(side, index, model, meta.name)
            value = float(np.median(list(present.values()))) if present else None
        else:
            value = rnd.model_values.get(model, {}).get(meta.name)
        if value is None:
            missing += 1
        else:
            values.append(value)
    return values, missing


def _set_means(comp: Comparison, base_mean: float, cand_mean: float) -> None:
    comp.baseline_mean, comp.candidate_mean = base_mean, cand_mean
    comp.change = cand_mean - base_mean
    comp.rel_change = comp.change / abs(base_mean) if base_mean != 0 else None


def _compare_rounds(
    comp: Comparison, baseline: Side, candidate: Side, resamples: int, confidence: float, seed: int
) -> None:
    """Timing metrics: rounds are the replicates; Mann-Whitney U on round values (gates.md §3)."""
    base, comp.missing_baseline = _round_values(baseline, comp.model, comp.meta)
    cand, comp.missing_candidate = _round_values(candidate, comp.model, comp.meta)
    comp.unit_of_replication = "round"
    comp.n_baseline, comp.n_candidate = len(base), len(cand)
    if not base or not cand:
        return
    _set_means(comp, float(np.mean(base)), float(np.mean(cand)))
    if sorted(base) == sorted(cand):
        comp.method = "identical"
        return
    b, c = np.array(base), np.array(cand)
    comp.method = "mannwhitney"
    comp.test = unpaired_test(c, b, worse_alternative(comp.rule.direction))
    ones_b, ones_c = np.ones(len(b)), np.ones(len(c))
    comp.ci = bootstrap_unpaired(b, ones_b, c, ones_c, resamples, confidence, seed)


def _compare_single(comp: Comparison, baseline: Side, candidate: Side) -> None:
    """A model-level metric with one value per side: nothing to test, the tolerance decides."""
    base, comp.missing_baseline = _round_values(baseline, comp.model, comp.meta)
    cand, comp.missing_candidate = _round_values(candidate, comp.model, comp.meta)
    comp.unit_of_replication = "value"
    comp.n_baseline, comp.n_candidate = min(len(base), 1), min(len(cand), 1)
    if base and cand:
        _set_means(comp, base[0], cand[0])
        comp.method = "identical" if base[0] == cand[0] else "single value"


def _compare_exact(comp: Comparison, baseline: Side, candidate: Side) -> tuple[list[Key], float]:
    """Deterministic metrics of a seeded run: every value must reproduce (within abs_tolerance).

    Returns the keys whose value differs (or is present on one side only) and the largest difference.
    """
    base, comp.missing_baseline = _values(baseline, 0, comp.model, comp.metric)
    cand, comp.missing_candidate = _values(candidate, 0, comp.model, comp.metric)
    comp.method, comp.unit_of_replication = "exact", "sample"
    comp.n_baseline, comp.n_candidate = len(base), len(cand)
    if base and cand:
        _set_means(comp, float(np.mean(list(base.values()))), float(np.mean(list(cand.values()))))
    differing, worst = [], 0.0
    for key in sorted(set(base) | set(cand)):
        if key not in base or key not in cand:
            differing.append(key)
        elif abs(base[key] - cand[key]) > comp.rule.abs_tolerance:
            differing.append(key)
            worst = max(worst, abs(base[key] - cand[key]))
    return differing, worst


def _compare_samples(
    comp: Comparison, baseline: Side, candidate: Side, resamples: int, confidence: float, seed: int
) -> None:
    """Quality metrics: samples pair by (prompt id, sample index); prompts are the unit of replication."""
    base, comp.missing_baseline = _values(baseline, 0, comp.model, comp.metric)
    cand, comp.missing_candidate = _values(candidate, 0, comp.model, comp.metric)
    comp.n_baseline, comp.n_candidate = len(base), len(cand)
    if not base or not cand:
        return
    if base == cand and comp.missing_baseline == comp.missing_candidate:
        _set_means(comp, float(np.mean(list(base.values()))), float(np.mean(list(cand.values()))))
        comp.method = "identical"
        return
    alternative = worse_alternative(comp.rule.direction)
    pairs = [k for k in base if k in cand]
    paired = comp.rule.test == "wilcoxon" or (
        comp.rule.test == "auto" and len(pairs) >= max(2, 0.5 * max(len(base), len(cand)))
    )
    if paired and len(pairs) >= 2:
        base_sum, count = _prompt_sums({k: base[k] for k in pairs})
        cand_sum, _ = _prompt_sums({k: cand[k] for k in pairs})
        _set_means(comp, float(base_sum.sum() / count.sum()), float(cand_sum.sum() / count.sum()))
        comp.method = "wilcoxon"
        comp.test = paired_test((cand_sum - base_sum) / count, alternative)
        comp.ci = bootstrap_paired(base_sum, cand_sum, count, resamples, confidence, seed)
    else:
        base_sum, base_count = _prompt_sums(base)
        cand_sum, cand_count = _prompt_sums(cand)
        _set_means(comp, float(base_sum.sum() / base_count.sum()), float(cand_sum.sum() / cand_count.sum()))
        comp.method = "mannwhitney"
        comp.test = unpaired_test(cand_sum / cand_count, base_sum / base_count, alternative)
        comp.ci = bootstrap_unpaired(base_sum, base_count, cand_sum, cand_count, resamples, confidence, seed)
    if len({key[0] for key in base}) < len(base):
        comp.unit_of_replication = "prompt (cluster)"  # several samples per prompt: resampled together


def _judge_tolerance(comp: Comparison) -> None:
    """Is the point estimate (or, in strict mode, the whole CI) worse than the tolerance? Better than it?"""
    if comp.change is None or comp.baseline_mean is None:
        return
    rule = comp.rule
    comp.tolerance = max(rule.abs_tolerance, rule.rel_tolerance * abs(comp.baseline_mean))
    sign = {"lower": 1.0, "higher": -1.0}.get(rule.direction)
    low, high = comp.ci.abs_low, comp.ci.abs_high
    if sign is None:  # any / none: a change either way counts
        comp.beyond_tolerance = abs(comp.change) > comp.tolerance
        if rule.strict and low is not None and high is not None:
            comp.beyond_tolerance = min(abs(low), abs(high)) > comp.tolerance and low * high > 0
        return
    worse = sign * comp.change
    comp.beyond_tolerance = worse > comp.tolerance
    comp.better_beyond_tolerance = -worse > comp.tolerance
    if rule.strict and low is not None and high is not None:
        least_worse = min(sign * low, sign * high)
        comp.beyond_tolerance = least_worse > comp.tolerance


def compare(
    meta: MetricMeta,
    model: str,
    rule: Rule,
    baseline: Side,
    candidate: Side,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Gather, test and measure one metric × model; the verdict is settled later (after Holm)."""
    comp = Comparison(metric=meta.name, model=model, meta=meta, rule=rule)
    gate_seed = _seed(meta.name, model, seed)
    if rule.test == "exact" and meta.level == "sample":
        differing, worst = _compare_exact(comp, baseline, candidate)
        if comp.n_baseline and comp.n_candidate:
            comp.tolerance = rule.abs_tolerance
            if differing:
                comp.verdict, comp.beyond_tolerance = REGRESSION, True
                first = differing[0]
                comp.reason = (
                    f"exact: {len(differing)} of {max(comp.n_baseline, comp.n_candidate)} values differ "
                    f"(first {first[0]}#{first[1]}, max |Δ| {worst:.4g})"
                )
            else:
                comp.method, comp.reason = "identical", "exact: every value reproduces"
        return comp
    if rule.replicate == "runs":
        _compare_rounds(comp, baseline, candidate, resamples, confidence, gate_seed)
    elif meta.level != "sample":
        if len(baseline.rounds) > 1 and len(candidate.rounds) > 1:
            _compare_rounds(comp, baseline, candidate, resamples, confidence, gate_seed)
        else:
            _compare_single(comp, baseline, candidate)
    else:
        _compare_samples(comp, baseline, candidate, resamples, confidence, gate_seed)
    if rule.test == "exact":  # a model-level value gated for exact equality
        comp.tolerance = rule.abs_tolerance
        if comp.change is not None and abs(comp.change) > rule.abs_tolerance:
            comp.verdict, comp.beyond_tolerance = REGRESSION, True
            comp.reason = f"exact: value changed by {comp.change:+.4g}"
        return comp
    _judge_tolerance(comp)
    return comp
