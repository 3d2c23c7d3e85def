"""Repetition rate, coherence length, distinct-2 and vocabulary diversity.

The worked examples are the ones in the metric contract (shared/spec/metrics.md):
``[a b c a b c d]`` and ``[a a a a]``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.metrics.diversity import VOCAB_DIVERSITY, vocab_diversity
from harness.metrics.repetition import (
    COHERENCE_LENGTH,
    DISTINCT_2,
    REPETITION_RATE,
    coherence_length,
    distinct_2,
    distinct_n,
    repetition_rate,
)

A, B, C, D = 10, 11, 12, 13
ABCABCD = [A, B, C, A, B, C, D]
AAAA = [A, A, A, A]


def test_worked_example_abcabcd():
    assert repetition_rate(ABCABCD) == pytest.approx(3 / 7)  # positions 3, 4, 5
    assert coherence_length(ABCABCD) == 3
    assert vocab_diversity(ABCABCD) == pytest.approx(4 / 7)
    assert distinct_2(ABCABCD) == pytest.approx(4 / 6)  # ab bc ca ab bc cd -> {ab, bc, ca, cd}


def test_worked_example_aaaa():
    assert repetition_rate(AAAA) == pytest.approx(3 / 4)
    assert coherence_length(AAAA) == 1  # overlapping 3-grams count
    assert vocab_diversity(AAAA) == pytest.approx(1 / 4)
    assert distinct_2(AAAA) == pytest.approx(1 / 3)


def test_n0():
    assert repetition_rate([]) is None
    assert vocab_diversity([]) is None
    assert distinct_2([]) is None
    assert coherence_length([]) == 0  # a count, not a ratio


def test_n1():
    assert repetition_rate([A]) == 0.0
    assert vocab_diversity([A]) == 1.0
    assert distinct_2([A]) is None  # no bigram
    assert coherence_length([A]) == 1


def test_repetition_window_is_the_previous_ten_tokens():
    eleven_apart = [A, *range(100, 110), A]  # A recurs 11 positions later: outside the window
    assert repetition_rate(eleven_apart) == 0.0
    ten_apart = [A, *range(100, 109), A]  # 10 positions later: inside
    assert repetition_rate(ten_apart) == pytest.approx(1 / 11)
    assert repetition_rate(eleven_apart, window=11) == pytest.approx(1 / 12)


def test_a_far_repeat_ends_coherence_but_is_not_a_windowed_repetition():
    far = [A, B, C, *range(100, 120), A, B, C]
    assert coherence_length(far) == 23
    assert repetition_rate(far) == 0.0


def test_coherence_length_without_a_repeat_is_n():
    assert coherence_length([A, B, C, D, A, B]) == 6
    assert coherence_length([A, B]) == 2


def test_invalid_parameters_raise():
    with pytest.raises(ValueError):
        repetition_rate(ABCABCD, window=0)
    with pytest.raises(ValueError):
        coherence_length(ABCABCD, ngram=0)
    with pytest.raises(ValueError):
        distinct_n(ABCABCD, n=0)


def test_metric_wrappers(make_generation, sample_ctx):
    ctx = sample_ctx(make_generation(ABCABCD))
    assert REPETITION_RATE.compute(ctx) == pytest.approx(3 / 7)
    assert COHERENCE_LENGTH.compute(ctx) == 3.0
    assert VOCAB_DIVERSITY.compute(ctx) == pytest.approx(4 / 7)
    assert DISTINCT_2.compute(ctx) == pytest.approx(4 / 6)


def coherence_length_by_definition(g: list[int]) -> int:
    """The contract's wording, literally: smallest s with (g_s, g_s+1, g_s+2) == (g_r, ...) for r < s."""
    n = len(g)
    for s in range(n - 2):
        if any(g[s : s + 3] == g[r : r + 3] for r in range(s)):
            return s
    return n


def repetition_rate_by_definition(g: list[int]) -> float | None:
    if not g:
        return None
    return sum(g[i] in {g[j] for j in range(max(0, i - 10), i)} for i in range(len(g))) / len(g)


token_lists = st.lists(st.integers(0, 6), max_size=80) | st.lists(st.integers(0, 2**31 - 1), max_size=80)


@given(token_lists)
def test_properties(tokens):
    n = len(tokens)
    rate, coherence = repetition_rate(tokens), coherence_length(tokens)
    diversity, d2 = vocab_diversity(tokens), distinct_2(tokens)
    assert coherence == coherence_length_by_definition(tokens)
    assert 0 <= coherence <= n
    assert rate == repetition_rate_by_definition(tokens)
    if n == 0:
        assert rate is None and diversity is None and d2 is None
        return
    assert 0.0 <= rate <= 1.0
    assert 0.0 < diversity <= 1.0
    if n < 2:
        assert d2 is None
    else:
        assert 0.0 < d2 <= 1.0
