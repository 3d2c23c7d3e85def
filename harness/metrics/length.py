"""Output length: how many tokens a model generates before EOS or the token budget.

A plain count with no better direction (``higher_is_better=None``): the study's 2.5M model is
"best" at it only because it never learns to stop, so a gate must not treat more as better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.hookspecs import hookimpl
from harness.types import Metric, SampleContext


def tokens_generated(tokens: Sequence[int]) -> int:
    """``n``: generated tokens, the EOS that ended generation excluded (so EOS-first gives 0)."""
    return len(tokens)


def _tokens_generated(ctx: SampleContext) -> float:
    return float(tokens_generated(ctx.tokens))


TOKENS_GENERATED = Metric(
    name="tokens_generated",
    unit="tokens",
    higher_is_better=None,
    kind="count",
    compute=_tokens_generated,
    description="Number of generated tokens n, excluding the EOS that ended generation.",
)

METRICS: tuple[Metric, ...] = (TOKENS_GENERATED,)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
