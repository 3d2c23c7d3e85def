"""EOS rate: does the model know when to stop?

The spec defines ``eos_rate`` per model (share of samples that ended on EOS). It is registered as a
*sample-level* metric whose value is 1.0 when the sample hit EOS and 0.0 otherwise, so the
per-model mean that every summary already computes IS the rate, and the summary's bootstrap CI,
p5/p95 and the gates' paired tests come for free. A model-level metric would give one number with
no uncertainty. Samples whose generation ended for another reason (token budget, full context,
non-finite logits) count as 0.0, never as missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.hookspecs import hookimpl
from harness.types import Metric, SampleContext


def eos_indicator(eos_hit: bool) -> float:
    """The per-sample value: 1.0 if generation ended on EOS, else 0.0."""
    return 1.0 if eos_hit else 0.0


def eos_rate(eos_hits: Sequence[bool]) -> float | None:
    """Share of samples that hit EOS (the mean of the indicators); missing with no samples."""
    if not eos_hits:
        return None
    return sum(eos_indicator(hit) for hit in eos_hits) / len(eos_hits)


def _eos_rate(ctx: SampleContext) -> float:
    return eos_indicator(ctx.generation.eos_hit)


EOS_RATE = Metric(
    name="eos_rate",
    unit="%",
    higher_is_better=True,
    kind="quality",
    compute=_eos_rate,
    description="Share of samples that ended on EOS; stored per sample as 1.0/0.0, so the model mean is the rate.",
)

METRICS: tuple[Metric, ...] = (EOS_RATE,)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
