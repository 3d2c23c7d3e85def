"""Timing metrics: hand-computed values, the n = 0 / n = 1 edge cases, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.metrics import latency
from harness.metrics.latency import decode_tps, inter_token_gaps_ms, itl_ms, latency_ms, percentile, tps, ttft_ms

# start 1 ms; tokens at 3, 4, 6 ms; end 7 ms (EOS sampled 1 ms after the last token)
START, TIMES, END = 1_000_000, [3_000_000, 4_000_000, 6_000_000], 7_000_000


def test_hand_computed_values():
    assert ttft_ms(TIMES, START) == pytest.approx(2.0)
    assert latency_ms(START, END) == pytest.approx(6.0)
    assert tps(3, START, END) == pytest.approx(3 / 0.006)
    assert decode_tps(TIMES) == pytest.approx(2 / 0.003)
    assert inter_token_gaps_ms(TIMES) == pytest.approx([1.0, 2.0])
    assert itl_ms(TIMES, 50) == pytest.approx(1.5)
    assert itl_ms(TIMES, 95) == pytest.approx(1.95)


def test_tps_reproduces_the_study_table():
    # the study's Table 2: 26.7 tokens / 90.2 ms = 296 TPS (here 267 tokens over 902 ms)
    assert tps(267, 0, 902_000_000) == pytest.approx(296, abs=0.1)


def test_n0_eos_first():
    assert ttft_ms([], START, first_token_ns=2_500_000) == pytest.approx(1.5)  # the EOS time
    assert ttft_ms([], START) is None  # backend did not report when EOS came
    assert latency_ms(START, 2_500_000) == pytest.approx(1.5)  # still defined: prefill ran
    assert tps(0, START, 2_500_000) is None
    assert decode_tps([]) is None
    assert itl_ms([], 50) is None and itl_ms([], 95) is None


def test_n1_has_no_inter_token_gap():
    assert ttft_ms([3_000_000], START) == pytest.approx(2.0)
    assert tps(1, START, 3_000_000) == pytest.approx(1 / 0.002)
    assert decode_tps([3_000_000]) is None
    assert inter_token_gaps_ms([3_000_000]) == []
    assert itl_ms([3_000_000], 50) is None


def test_ttft_prefers_the_first_token_time_over_first_token_ns():
    assert ttft_ms(TIMES, START, first_token_ns=9_000_000) == pytest.approx(2.0)


def test_zero_length_intervals_are_missing_not_division_errors():
    assert tps(3, 5, 5) is None
    assert decode_tps([7, 7, 7]) is None
    assert itl_ms([7, 7, 7], 95) == 0.0


def test_impossible_timestamps_raise():
    with pytest.raises(ValueError, match="before start"):
        latency_ms(10, 5)
    with pytest.raises(ValueError, match="before start"):
        ttft_ms([4], 10)
    with pytest.raises(ValueError, match="before token time"):
        decode_tps([3, 2])
    with pytest.raises(ValueError, match="before token time"):
        itl_ms([3, 2], 50)


def test_percentile_matches_numpy_on_a_fixed_example():
    values = [5.0, 1.0, 3.0, 2.0]
    for q in (0, 5, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_metric_wrappers_on_generations(make_generation, sample_ctx):
    gen = make_generation([5, 6, 7], eos_hit=True)  # prefill 5 ms, then tokens 1 ms apart, EOS 1 ms later
    ctx = sample_ctx(gen)
    assert latency.TTFT_MS.compute(ctx) == pytest.approx(5.0)
    assert latency.LATENCY_MS.compute(ctx) == pytest.approx(8.0)
    assert latency.TPS.compute(ctx) == pytest.approx(3 / 0.008)
    assert latency.DECODE_TPS.compute(ctx) == pytest.approx(1000.0)
    assert latency.ITL_MS_P50.compute(ctx) == pytest.approx(1.0)
    assert latency.ITL_MS_P95.compute(ctx) == pytest.approx(1.0)


def test_wrappers_reject_a_time_per_token_mismatch(make_generation, sample_ctx):
    ctx = sample_ctx(make_generation([5, 6, 7], token_times_ns=[2_000_000]))
    for metric in (latency.TTFT_MS, latency.DECODE_TPS, latency.ITL_MS_P50, latency.ITL_MS_P95):
        with pytest.raises(ValueError, match="token times for 3 tokens"):
            metric.compute(ctx)


timelines = st.tuples(
    st.integers(0, 10**12),  # start
    st.integers(0, 10**9),  # prefill
    st.lists(st.integers(0, 10**8), max_size=60),  # gaps between tokens
    st.integers(0, 10**8),  # tail after the last token
)


@given(timelines)
def test_timing_properties(timeline):
    start, prefill, gaps, tail = timeline
    times = [start + prefill + sum(gaps[: i + 1]) for i in range(len(gaps))]
    end = (times[-1] if times else start + prefill) + tail
    n = len(times)
    first = ttft_ms(times, start, first_token_ns=start + prefill)
    total = latency_ms(start, end)
    assert first is not None and 0 <= first <= total
    rate = tps(n, start, end)
    assert rate is None if n == 0 or end == start else rate > 0
    dtps = decode_tps(times)
    assert (dtps is None) == (n < 2 or times[-1] == times[0])
    p50, p95 = itl_ms(times, 50), itl_ms(times, 95)
    if n < 2:
        assert p50 is None and p95 is None
    else:
        assert 0 <= p50 <= p95 <= max(inter_token_gaps_ms(times))
        assert p50 == pytest.approx(np.percentile(inter_token_gaps_ms(times), 50))
        assert p95 == pytest.approx(np.percentile(inter_token_gaps_ms(times), 95))


@given(st.lists(st.floats(-1e6, 1e6), max_size=50), st.floats(0, 100))
def test_percentile_is_numpy_linear(values, q):
    got = percentile(values, q)
    if not values:
        assert got is None
    else:
        assert math.isclose(got, float(np.percentile(values, q)), rel_tol=1e-9, abs_tol=1e-6)
