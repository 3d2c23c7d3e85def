"""Likelihood of a model's own output: perplexity and average token probability.

Both read ``Generation.logprobs``, which backends fill with log p(g_i) under the model's raw
next-token distribution (temperature 1, no top-k), *not* the distribution that was sampled from.
Using the raw distribution keeps the numbers comparable across sampling settings; using the
sampling distribution would reward a low temperature for being confident by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from harness.hookspecs import hookimpl
from harness.types import Metric, SampleContext

#: math.exp overflows just above this; a mean NLL this large means perplexity is effectively infinite.
_MAX_EXP_ARG = 709.0


def perplexity(logprobs: Sequence[float]) -> float | None:
    """``exp(-(1/n) Σ log p(g_i))``; missing for ``n = 0``.

    Returns ``inf`` instead of raising ``OverflowError`` when the mean NLL is astronomically large
    (the run stores non-finite values as missing). NaN log-probabilities propagate to NaN (missing).
    """
    if not logprobs:
        return None
    mean_nll = -math.fsum(logprobs) / len(logprobs)
    if mean_nll > _MAX_EXP_ARG:
        return math.inf
    return math.exp(mean_nll)


def avg_token_prob(logprobs: Sequence[float]) -> float | None:
    """``(1/n) Σ p(g_i)``, the arithmetic mean of probabilities; missing for ``n = 0``.

    Unlike perplexity (a geometric mean) it is dominated by the confident tokens, which is why the
    study reports both.
    """
    if not logprobs:
        return None
    return math.fsum(math.exp(lp) for lp in logprobs) / len(logprobs)


def _logprobs(ctx: SampleContext) -> list[float]:
    """The log-probabilities, insisting on one per token: a mismatch is a backend contract bug."""
    gen = ctx.generation
    if len(gen.logprobs) != len(gen.tokens):
        raise ValueError(f"backend reported {len(gen.logprobs)} log-probabilities for {len(gen.tokens)} tokens")
    return gen.logprobs


def _perplexity(ctx: SampleContext) -> float | None:
    return perplexity(_logprobs(ctx))


def _avg_token_prob(ctx: SampleContext) -> float | None:
    return avg_token_prob(_logprobs(ctx))


PERPLEXITY = Metric(
    name="perplexity",
    unit="",
    higher_is_better=False,
    kind="quality",
    compute=_perplexity,
    description="exp of the mean negative log-probability of the generated tokens under the raw distribution.",
)
AVG_TOKEN_PROB = Metric(
    name="avg_token_prob",
    unit="",
    higher_is_better=True,
    kind="quality",
    compute=_avg_token_prob,
    description="Mean probability of the generated tokens under the raw distribution.",
)

METRICS: tuple[Metric, ...] = (PERPLEXITY, AVG_TOKEN_PROB)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
