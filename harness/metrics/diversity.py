"""Vocabulary diversity: the share of a generation's tokens that are distinct.

Stored as a fraction in (0, 1]; the unit "%" tells the report to display it x100 (the study's
82.3% is stored as 0.823). It falls with length by construction, so compare it between models
with similar ``tokens_generated`` or alongside that metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.hookspecs import hookimpl
from harness.types import Metric, SampleContext


def vocab_diversity(tokens: Sequence[int]) -> float | None:
    """``|{g_i}| / n``; missing for ``n = 0``. ``[a b c a b c d]`` gives 4/7, ``[a a a a]`` 1/4."""
    if not tokens:
        return None
    return len(set(tokens)) / len(tokens)


def _vocab_diversity(ctx: SampleContext) -> float | None:
    return vocab_diversity(ctx.tokens)


VOCAB_DIVERSITY = Metric(
    name="vocab_diversity",
    unit="%",
    higher_is_better=True,
    kind="quality",
    compute=_vocab_diversity,
    description="Distinct generated tokens / generated tokens.",
)

METRICS: tuple[Metric, ...] = (VOCAB_DIVERSITY,)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
