"""tokens_generated and eos_rate, and every sample metric on the n = 0 / n = 1 edge cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.metrics import diversity, eos, latency, length, likelihood, repetition
from harness.metrics.eos import EOS_RATE, eos_indicator, eos_rate
from harness.metrics.length import TOKENS_GENERATED, tokens_generated
from harness.types import as_float

SAMPLE_METRICS = [m for module in (latency, length, likelihood, repetition, diversity, eos) for m in module.METRICS]


def test_tokens_generated():
    assert tokens_generated([]) == 0
    assert tokens_generated([7]) == 1
    assert tokens_generated([1, 2, 3]) == 3


def test_eos_indicator_and_rate():
    assert eos_indicator(True) == 1.0 and eos_indicator(False) == 0.0
    assert eos_rate([]) is None
    assert eos_rate([True]) == 1.0
    assert eos_rate([True, False, False, True]) == 0.5


def test_mean_of_per_sample_eos_values_is_the_model_rate(make_generation, sample_ctx):
    hits = [True, False, True, True, False]
    values = [EOS_RATE.compute(sample_ctx(make_generation([1, 2], eos_hit=h))) for h in hits]
    assert sum(values) / len(values) == eos_rate(hits) == pytest.approx(0.6)


def test_metric_wrappers(make_generation, sample_ctx):
    assert TOKENS_GENERATED.compute(sample_ctx(make_generation([1, 2, 3]))) == 3.0
    assert EOS_RATE.compute(sample_ctx(make_generation([], eos_hit=True))) == 1.0
    assert EOS_RATE.compute(sample_ctx(make_generation([1], stop_reason="context"))) == 0.0


def _values(ctx) -> dict[str, float | None]:
    return {m.name: as_float(m.compute(ctx)) for m in SAMPLE_METRICS}


def test_every_sample_metric_on_eos_first(make_generation, sample_ctx):
    values = _values(sample_ctx(make_generation([], eos_hit=True)))
    missing = {
        "tps",
        "decode_tps",
        "itl_ms_p50",
        "itl_ms_p95",
        "perplexity",
        "avg_token_prob",
        "repetition_rate",
        "vocab_diversity",
        "distinct_2",
    }
    assert {name for name, v in values.items() if v is None} == missing
    assert values["tokens_generated"] == 0.0
    assert values["coherence_length"] == 0.0
    assert values["eos_rate"] == 1.0
    assert values["ttft_ms"] == pytest.approx(values["latency_ms"])  # the EOS was the first and last token


def test_every_sample_metric_on_one_token(make_generation, sample_ctx):
    values = _values(sample_ctx(make_generation([42])))
    assert {name for name, v in values.items() if v is None} == {"decode_tps", "itl_ms_p50", "itl_ms_p95", "distinct_2"}
    assert values["tokens_generated"] == 1.0
    assert values["repetition_rate"] == 0.0 and values["vocab_diversity"] == 1.0
    assert values["perplexity"] == pytest.approx(math.exp(0.5))


@given(st.lists(st.integers(0, 50), max_size=60), st.booleans())
def test_no_sample_metric_crashes_on_any_token_list(tokens, eos_hit):
    from harness.types import Generation, SampleContext, SamplingParams

    times = [1_000 * (i + 1) for i in range(len(tokens))]
    gen = Generation(
        tokens=tokens,
        logprobs=[-1.0] * len(tokens),
        token_times_ns=times,
        start_ns=0,
        end_ns=(times[-1] if times else 500) + 10,
        eos_hit=eos_hit,
        first_token_ns=times[0] if times else None,
    )
    ctx = SampleContext(generation=gen, prompt_ids=[2], model=None, sampling=SamplingParams())
    values = _values(ctx)
    assert values["tokens_generated"] == len(tokens)
    assert values["coherence_length"] <= values["tokens_generated"]
    for name in ("repetition_rate", "vocab_diversity", "distinct_2", "eos_rate", "avg_token_prob"):
        assert values[name] is None or 0.0 <= values[name] <= 1.0
