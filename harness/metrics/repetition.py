"""Repetition metrics: looping within a short window, the first repeated 3-gram, distinct bigrams.

All three look at token ids only (no decoding), so they are exact, fast and tokenizer-specific:
compare them across models that share a tokenizer, or read them as rough indicators otherwise.
Ratios are stored as fractions in [0, 1]; their unit "%" tells the report to display them x100.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.hookspecs import hookimpl
from harness.types import Metric, SampleContext

#: The study's window: a token counts as repeated if it occurred among the previous 10 tokens.
REPETITION_WINDOW = 10
#: The study's coherence unit: the first repeated 3-gram ends the coherent span.
COHERENCE_NGRAM = 3


def repetition_rate(tokens: Sequence[int], window: int = REPETITION_WINDOW) -> float | None:
    """Fraction of positions ``i`` whose token occurs among the previous ``window`` tokens.

    The window is shorter at the start (position 0 never repeats) and the denominator is all ``n``
    positions. Missing for ``n = 0``. ``[a b c a b c d]`` gives 3/7, ``[a a a a]`` gives 3/4.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if not tokens:
        return None
    repeated = sum(1 for i, token in enumerate(tokens) if token in tokens[max(0, i - window) : i])
    return repeated / len(tokens)


def coherence_length(tokens: Sequence[int], ngram: int = COHERENCE_NGRAM) -> int:
    """Tokens generated before the first repeated ``ngram`` begins; ``n`` if none repeats.

    The smallest 0-based ``s`` whose n-gram equals the n-gram at some ``r < s`` (overlaps allowed,
    so ``[a a a a]`` gives 1); ``[a b c a b c d]`` gives 3. A count, not a ratio, so ``n = 0``
    gives 0 rather than missing.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be at least 1, got {ngram}")
    seen: set[tuple[int, ...]] = set()
    for start in range(len(tokens) - ngram + 1):
        gram = tuple(tokens[start : start + ngram])
        if gram in seen:
            return start
        seen.add(gram)
    return len(tokens)


def distinct_n(tokens: Sequence[int], n: int = 2) -> float | None:
    """Unique n-grams / n-grams of one generation; missing when there is no n-gram (``len < n``)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return None
    return len(set(grams)) / len(grams)


def distinct_2(tokens: Sequence[int]) -> float | None:
    """Unique bigrams / bigrams; missing for ``n < 2`` (no bigram)."""
    return distinct_n(tokens, 2)


def _repetition_rate(ctx: SampleContext) -> float | None:
    return repetition_rate(ctx.tokens)


def _coherence_length(ctx: SampleContext) -> float:
    return float(coherence_length(ctx.tokens))


def _distinct_2(ctx: SampleContext) -> float | None:
    return distinct_2(ctx.tokens)


REPETITION_RATE = Metric(
    name="repetition_rate",
    unit="%",
    higher_is_better=False,
    kind="quality",
    compute=_repetition_rate,
    description="Share of generated tokens that already occurred among the previous 10 generated tokens.",
)
COHERENCE_LENGTH = Metric(
    name="coherence_length",
    unit="tokens",
    higher_is_better=True,
    kind="quality",
    compute=_coherence_length,
    description="Tokens generated before the first repeated 3-gram begins (n if none repeats).",
)
DISTINCT_2 = Metric(
    name="distinct_2",
    unit="%",
    higher_is_better=True,
    kind="quality",
    compute=_distinct_2,
    description="Unique bigrams / bigrams of the generation; missing when fewer than 2 tokens.",
)

METRICS: tuple[Metric, ...] = (REPETITION_RATE, COHERENCE_LENGTH, DISTINCT_2)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
