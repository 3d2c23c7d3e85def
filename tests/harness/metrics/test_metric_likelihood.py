"""Perplexity and average token probability: hand-computed values, edge cases, properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.metrics.likelihood import AVG_TOKEN_PROB, PERPLEXITY, avg_token_prob, perplexity


def test_hand_computed_values():
    logprobs = [math.log(0.5), math.log(0.25)]
    assert perplexity(logprobs) == pytest.approx(math.sqrt(8))  # exp((ln 2 + ln 4) / 2)
    assert avg_token_prob(logprobs) == pytest.approx(0.375)


def test_n0_is_missing_and_n1_is_the_token_itself():
    assert perplexity([]) is None and avg_token_prob([]) is None
    assert perplexity([math.log(0.5)]) == pytest.approx(2.0)
    assert avg_token_prob([math.log(0.5)]) == pytest.approx(0.5)


def test_certain_tokens_give_perplexity_one():
    assert perplexity([0.0, 0.0, 0.0]) == 1.0
    assert avg_token_prob([0.0, 0.0]) == 1.0


def test_huge_nll_gives_inf_not_overflow_error():
    assert perplexity([-1e6]) == math.inf
    assert avg_token_prob([-1e6]) == 0.0


def test_nan_logprob_propagates_to_missing():
    assert math.isnan(perplexity([float("nan"), -1.0]))


def test_metrics_read_generation_logprobs(make_generation, sample_ctx):
    gen = make_generation([4, 5], logprobs=[math.log(0.5), math.log(0.25)])
    assert PERPLEXITY.compute(sample_ctx(gen)) == pytest.approx(math.sqrt(8))
    assert AVG_TOKEN_PROB.compute(sample_ctx(gen)) == pytest.approx(0.375)
    assert PERPLEXITY.compute(sample_ctx(make_generation([], eos_hit=True))) is None


def test_logprob_count_mismatch_is_an_error(make_generation, sample_ctx):
    ctx = sample_ctx(make_generation([4, 5], logprobs=[-1.0]))
    with pytest.raises(ValueError, match="1 log-probabilities for 2 tokens"):
        PERPLEXITY.compute(ctx)


@given(st.lists(st.floats(min_value=-50.0, max_value=0.0), max_size=300))
def test_properties(logprobs):
    ppl, prob = perplexity(logprobs), avg_token_prob(logprobs)
    if not logprobs:
        assert ppl is None and prob is None
        return
    assert ppl >= 1.0 - 1e-12
    assert 0.0 <= prob <= 1.0 + 1e-12
    # geometric mean (1 / perplexity) never exceeds the arithmetic mean of the probabilities
    assert 1.0 / ppl <= prob * (1 + 1e-9) + 1e-300
