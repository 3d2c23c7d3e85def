"""Shared by ``heldout_bpb`` and ``judge_bpb``: windowed NLL of long texts and bits per byte.

Not a plugin (it registers nothing). ``Model.score`` accepts at most ``info.context_length`` ids,
so longer texts are scored in windows. Each window after the first re-reads ``overlap`` tokens
of the preceding text as context and counts only the tokens it has not scored yet, so every token
is scored exactly once and (when ``overlap`` > 1) with more than one token of context. With
``overlap = window - 1`` this is the exact sliding-window likelihood; the default, half a window,
costs at most twice a disjoint split and gives every token at least ``window / 2`` tokens of
context (or all of the preceding text, when shorter).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

Encode = Callable[[str], list[int]]
Score = Callable[[list[int]], list[float]]


def resolve_window(context_length: int, window: int | None = None, overlap: int | None = None) -> tuple[int, int]:
    """Validate and default ``(window, overlap)``: window <= context, 1 <= overlap < window."""
    if context_length < 2:
        raise ValueError(f"context length {context_length} is too short to score anything (need >= 2)")
    window = context_length if window is None else int(window)
    if not 2 <= window <= context_length:
        raise ValueError(f"window {window} must be between 2 and the model's context length {context_length}")
    overlap = window // 2 if overlap is None else int(overlap)
    if not 1 <= overlap < window:
        raise ValueError(f"overlap {overlap} must be at least 1 and below the window {window}")
    return window, overlap


def window_spans(n_ids: int, window: int, overlap: int) -> list[tuple[int, int, int]]:
    """``(start, end, first_new)`` per window: score ``ids[start:end]``, keep positions ``>= first_new``.

    Position ``j`` means the prediction of ``ids[j]`` from ``ids[:j]``; position 0 has no context
    and is never scored. The windows cover positions ``1 .. n_ids - 1`` exactly once, each window
    is at most ``window`` ids long, and a window other than the first gives its first new position
    ``overlap`` ids of context.
    """
    if not 1 <= overlap < window:
        raise ValueError(f"need 1 <= overlap < window, got overlap={overlap}, window={window}")
    spans: list[tuple[int, int, int]] = []
    scored_to = 1  # next position that needs a score
    while scored_to < n_ids:
        start = max(0, scored_to - overlap)
        end = min(n_ids, start + window)
        spans.append((start, end, scored_to))
        scored_to = end
    return spans


def windowed_nll(ids: Sequence[int], score: Score, window: int, overlap: int) -> tuple[float, int]:
    """Sum of per-token NLL (nats) over ``ids[1:]`` and how many tokens were scored.

    ``score(ids[start:end])`` must return ``end - start - 1`` values (the ``Model.score`` contract);
    a different length is a backend bug and raises.
    """
    ids = list(ids)
    total, count = 0.0, 0
    for start, end, first_new in window_spans(len(ids), window, overlap):
        nll = list(score(ids[start:end]))
        if len(nll) != end - start - 1:
            raise ValueError(f"score() returned {len(nll)} values for {end - start} ids (expected {end - start - 1})")
        kept = nll[first_new - start - 1 :]
        total += math.fsum(kept)
        count += len(kept)
    return total, count


def bits_per_byte(total_nll_nats: float, n_bytes: int) -> float | None:
    """``Σ NLL / (ln 2 · bytes)``; missing when there are no bytes to divide by."""
    if n_bytes <= 0:
        return None
    return total_nll_nats / (math.log(2) * n_bytes)


def texts_bits_per_byte(
    texts: Iterable[str],
    encode: Encode,
    score: Score,
    context_length: int,
    window: int | None = None,
    overlap: int | None = None,
) -> float | None:
    """Bits per UTF-8 byte of a set of texts: NLL and bytes are summed over all texts, then divided.

    Each text is encoded (with the model's BOS, if it has one) and scored on its own, so no text
    conditions on another. A tokenizer without BOS leaves its first token unscored while its bytes
    still count, a small bias in that model's favour that fades with text length.
    """
    window, overlap = resolve_window(context_length, window, overlap)
    total_nll, total_bytes = 0.0, 0
    for text in texts:
        n_bytes = len(text.encode("utf-8"))
        if n_bytes == 0:
            continue
        nll, _ = windowed_nll(encode(text), score, window, overlap)
        total_nll += nll
        total_bytes += n_bytes
    return bits_per_byte(total_nll, total_bytes)
