"""Windowed scoring, heldout_bpb and judge_bpb, checked against a real tiny tinylm_ref model.

The model's context is 32 tokens and its tokenizer has 300 entries, so real TinyStories stories
(read from ../shared at test time) span many windows; the network itself raises on a longer input,
so a successful run proves the windowing kept every call within the context.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.metrics._windowed_nll import bits_per_byte, resolve_window, texts_bits_per_byte, window_spans, windowed_nll
from harness.metrics.heldout import HELDOUT_BPB
from harness.metrics.judge import JUDGE_BPB
from harness.types import ModelContext

LN2 = math.log(2)


# --------------------------------------------------------------------------- pure windowing


def test_window_spans_hand_example():
    # 10 ids, window 4, overlap 2: score 1..3, then 4..5 (context 2..3), then 6..7, then 8..9
    assert window_spans(10, 4, 2) == [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    assert window_spans(10, 4, 1) == [(0, 4, 1), (3, 7, 4), (6, 10, 7)]  # disjoint, one token of context


def test_window_spans_short_inputs():
    assert window_spans(0, 4, 2) == []
    assert window_spans(1, 4, 2) == []  # a lone id has nothing to predict
    assert window_spans(2, 4, 2) == [(0, 2, 1)]
    assert window_spans(4, 4, 2) == [(0, 4, 1)]  # fits: one window


@given(st.integers(0, 400), st.integers(2, 64), st.data())
def test_window_spans_cover_each_position_once(n_ids, window, data):
    overlap = data.draw(st.integers(1, window - 1))
    spans = window_spans(n_ids, window, overlap)
    covered = [pos for _, end, first_new in spans for pos in range(first_new, end)]
    assert covered == list(range(1, n_ids))
    for start, end, first_new in spans:
        assert 0 <= start < first_new < end <= n_ids
        assert end - start <= window
        assert first_new - start == min(overlap, first_new) or start == 0


def position_score(ids: list[int]) -> list[float]:
    """A score whose value names the token, so a miscounted or shifted window changes the sum."""
    return [float(token) for token in ids[1:]]


@given(st.lists(st.integers(0, 1000), max_size=200), st.integers(2, 40), st.data())
def test_windowed_nll_counts_every_token_once(ids, window, data):
    overlap = data.draw(st.integers(1, window - 1))
    total, count = windowed_nll(ids, position_score, window, overlap)
    assert count == max(0, len(ids) - 1)
    assert total == sum(ids[1:])


def test_windowed_nll_rejects_a_wrong_length_score():
    with pytest.raises(ValueError, match="returned 1 values for 4 ids"):
        windowed_nll([1, 2, 3, 4], lambda ids: [0.0], 8, 4)


def test_bits_per_byte_and_window_validation():
    assert bits_per_byte(LN2 * 10, 5) == pytest.approx(2.0)
    assert bits_per_byte(3.0, 0) is None
    assert resolve_window(256) == (256, 128)
    assert resolve_window(256, window=64, overlap=1) == (64, 1)
    for kwargs in ({"window": 300}, {"window": 1}, {"overlap": 0}, {"window": 8, "overlap": 8}):
        with pytest.raises(ValueError):
            resolve_window(256, **kwargs)
    with pytest.raises(ValueError):
        resolve_window(1)


def test_texts_bpb_sums_before_dividing():
    encode = lambda text: [1, *(ord(c) for c in text)]  # noqa: E731  BOS + one id per character
    got = texts_bits_per_byte(["ab", "", "cde"], encode, position_score, context_length=4)
    assert got == pytest.approx(sum(map(ord, "abcde")) / (LN2 * 5))
    assert texts_bits_per_byte([], encode, position_score, 4) is None
    assert texts_bits_per_byte([""], encode, position_score, 4) is None


# --------------------------------------------------------------------------- heldout_bpb on a real model


def heldout(lm, texts, **options):
    return HELDOUT_BPB.compute_model(
        ModelContext(model=lm, records=[], options=options, resources={"reference_texts": texts})
    )


def short_text(lm, story_texts) -> str:
    """A real text that fits in one window (<= 32 ids with BOS)."""
    words = story_texts[0].split()
    text = " ".join(words[:5])
    assert 3 <= len(lm.encode(text)) <= lm.info.context_length
    return text


def test_heldout_equals_direct_computation_when_the_text_fits(lm, story_texts):
    text = short_text(lm, story_texts)
    ids = lm.encode(text)
    direct = sum(lm.score(ids)) / (LN2 * len(text.encode("utf-8")))
    lm.windows.clear()
    assert heldout(lm, [text]) == pytest.approx(direct, rel=1e-9)
    assert lm.windows == [len(ids)]  # one window, the whole text
    assert heldout(lm, [text], overlap=1) == pytest.approx(direct, rel=1e-9)  # overlap irrelevant when it fits


def test_heldout_windows_a_text_longer_than_the_context(lm, story_texts):
    text = story_texts[1]
    ids = lm.encode(text)
    assert len(ids) > 4 * lm.info.context_length
    value = heldout(lm, [text])
    assert math.isfinite(value) and value > 0
    assert max(lm.windows) == lm.info.context_length
    _, count = windowed_nll(ids, lm.score, lm.info.context_length, lm.info.context_length // 2)
    assert count == len(ids) - 1


def test_heldout_full_overlap_is_the_exact_sliding_window_likelihood(lm, story_texts):
    text = " ".join(story_texts[2].split()[:30])
    ids = lm.encode(text)
    window = 16
    assert len(ids) > window
    by_position = sum(lm.score(ids[max(0, j - window + 1) : j + 1])[-1] for j in range(1, len(ids)))
    expected = by_position / (LN2 * len(text.encode("utf-8")))
    assert heldout(lm, [text], window=window, overlap=window - 1) == pytest.approx(expected, rel=1e-6)


def test_heldout_over_several_texts_is_total_nll_over_total_bytes(lm, story_texts):
    texts = story_texts[3:6]
    nll = sum(windowed_nll(lm.encode(t), lm.score, 32, 16)[0] for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert heldout(lm, texts) == pytest.approx(nll / (LN2 * n_bytes), rel=1e-9)


def test_heldout_window_option_is_honoured(lm, story_texts):
    heldout(lm, [story_texts[1]], window=8, overlap=3)
    assert max(lm.windows) == 8
    with pytest.raises(ValueError, match="context length 32"):
        heldout(lm, [story_texts[1]], window=64)


def test_heldout_missing_without_reference_texts(lm):
    assert HELDOUT_BPB.compute_model(ModelContext(model=lm, records=[])) is None
    assert heldout(lm, []) is None
    assert heldout(lm, ["", ""]) is None
    with pytest.raises(TypeError, match="list of strings"):
        heldout(lm, "a lone string")


def test_heldout_matches_the_tinylm_backend_if_present(lm, story_texts):
    backend = pytest.importorskip("harness.backends.tinylm")
    if not hasattr(backend, "TinyLMModel"):
        pytest.skip("harness.backends.tinylm has no TinyLMModel")
    wrapped = backend.TinyLMModel(lm.net, lm.tokenizer, lm.info)
    texts = story_texts[6:8]
    assert heldout(wrapped, texts) == pytest.approx(heldout(lm, texts), rel=1e-5)


# --------------------------------------------------------------------------- judge_bpb


def judge_ctx(sample_ctx, make_generation, model, judge, tokens):
    return sample_ctx(make_generation(tokens), model=model, resources={} if judge is None else {"judge": judge})


def test_judge_scores_the_decoded_text_under_the_judge(lm, story_texts, sample_ctx, make_generation):
    text = " ".join(story_texts[4].split()[:40])
    tokens = lm.encode(text)[1:]  # a "generation": the text's tokens without BOS
    decoded = lm.decode(tokens)
    expected = texts_bits_per_byte([decoded], lm.encode, lm.score, lm.info.context_length)
    got = JUDGE_BPB.compute(judge_ctx(sample_ctx, make_generation, lm, lm, tokens))
    assert got == pytest.approx(expected, rel=1e-9)
    assert math.isfinite(got) and got > 0


def test_judge_missing_cases(lm, sample_ctx, make_generation):
    assert JUDGE_BPB.compute(judge_ctx(sample_ctx, make_generation, lm, None, [40, 41])) is None  # no judge
    assert JUDGE_BPB.compute(judge_ctx(sample_ctx, make_generation, lm, lm, [])) is None  # n = 0
    special_only = [lm.eos_id]  # decodes to "" (special tokens dropped)
    assert JUDGE_BPB.compute(judge_ctx(sample_ctx, make_generation, lm, lm, special_only)) is None


def test_judge_needs_the_model_to_decode(lm, sample_ctx, make_generation):
    with pytest.raises(ValueError, match="decode"):
        JUDGE_BPB.compute(judge_ctx(sample_ctx, make_generation, None, lm, [40, 41]))
