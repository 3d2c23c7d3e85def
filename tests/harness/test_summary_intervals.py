"""summary.json intervals: prompts are the resampled unit, and 0/1 metrics are proportions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.summary import bootstrap_ci, describe


def test_several_samples_per_prompt_widen_the_interval_when_prompts_differ():
    """Ten prompts of very different difficulty, eight near-identical samples each: resampling samples
    pretends there are 80 independent values and gives an interval far too narrow; resampling prompts
    does not."""
    rng = np.random.default_rng(1)
    prompt_level = rng.normal(0, 10, size=10)
    values = np.repeat(prompt_level, 8) + rng.normal(0, 0.1, size=80)
    prompts = np.repeat([f"p{i}" for i in range(10)], 8)
    naive = bootstrap_ci(values)
    clustered = bootstrap_ci(values, clusters=prompts)
    assert (clustered[1] - clustered[0]) > 2 * (naive[1] - naive[0])
    # with one sample per prompt the two are the same resampling
    assert bootstrap_ci(values[:10], clusters=prompts[::8]) == bootstrap_ci(values[:10])


def test_describe_uses_the_prompts_it_is_given():
    values = [1.0, 1.1, 5.0, 5.1, 9.0, 9.1]
    with_prompts = describe(values, ["a", "a", "b", "b", "c", "c"])
    alone = describe(values)
    assert with_prompts["mean"] == alone["mean"]
    assert (with_prompts["ci_high"] - with_prompts["ci_low"]) > (alone["ci_high"] - alone["ci_low"])


def test_a_zero_one_metric_is_a_proportion_with_an_exact_interval():
    values = [1.0] * 7 + [0.0] * 13 + [None]
    result = describe(values, [f"p{i}" for i in range(21)])
    exact = stats.binomtest(7, 20).proportion_ci(confidence_level=0.95, method="exact")
    assert result["proportion"] is True and result["mean"] == pytest.approx(0.35)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((exact.low, exact.high))
    assert result["missing"] == 1 and "proportion" not in describe([0.5, 1.0, 0.0])
