"""Example metric plugin for tinylm-harness.

``vocab_diversity`` counts unique *tokens*, so a 512-token vocabulary and a 2,000-token one are not
on the same scale. ``word_diversity`` counts unique lower-cased *words* of the decoded output
instead, which does not depend on the tokenizer.
"""

from __future__ import annotations

import re

from harness import hookimpl
from harness.types import Metric, SampleContext

WORD = re.compile(r"[a-z']+")


def word_diversity(text: str) -> float | None:
    """Unique words / words; None (missing) when the text has no words."""
    words = WORD.findall(text.lower())
    return len(set(words)) / len(words) if words else None


def _compute(ctx: SampleContext) -> float | None:
    return word_diversity(ctx.model.decode(ctx.tokens))


WORD_DIVERSITY = Metric(
    name="word_diversity",
    unit="%",
    higher_is_better=True,
    description="Unique lower-cased words / words in the decoded output (tokenizer-independent).",
    compute=_compute,
)


@hookimpl
def register_metrics(register):
    register(WORD_DIVERSITY)
