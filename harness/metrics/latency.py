"""Timing metrics: TTFT, end-to-end latency and throughput, decode throughput, inter-token latency.

All inputs are ``time.perf_counter_ns()`` readings taken by the backend after the device finished
the work (docs/metrics.md). The pure functions below work on plain integers and lists so they can
be checked by hand; they return ``None`` for "missing" (e.g. a rate over zero tokens) and raise
``ValueError`` when the timestamps themselves are impossible (a token before the start, time going
backwards), because that is a backend bug the run should record rather than average away.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from harness.hookspecs import hookimpl
from harness.types import Generation, Metric, SampleContext

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


def _duration_ns(start_ns: int, end_ns: int, what: str) -> int:
    """``end - start``, refusing negative durations: the clock is monotonic, so one means a bug."""
    if end_ns < start_ns:
        raise ValueError(f"{what}: end timestamp {end_ns} is before start {start_ns}")
    return end_ns - start_ns


def _check_monotonic(token_times_ns: Sequence[int]) -> None:
    for i in range(1, len(token_times_ns)):
        if token_times_ns[i] < token_times_ns[i - 1]:
            raise ValueError(
                f"token time {i} ({token_times_ns[i]}) is before token time {i - 1} ({token_times_ns[i - 1]})"
            )


def ttft_ms(token_times_ns: Sequence[int], start_ns: int, first_token_ns: int | None = None) -> float | None:
    """Milliseconds from the start of prefill until the first sampled token was on the host.

    With ``n >= 1`` that is ``g_1``'s time. With ``n = 0`` (EOS sampled first) there is no ``g_1``,
    but the work timed (prefill plus one sampling step) is identical, so the EOS time
    (``first_token_ns``) is used when the backend reported it; otherwise the value is missing.
    """
    first = token_times_ns[0] if token_times_ns else first_token_ns
    if first is None:
        return None
    return _duration_ns(start_ns, first, "ttft") / NS_PER_MS


def latency_ms(start_ns: int, end_ns: int) -> float:
    """Milliseconds from the start of prefill until the last token (or the EOS) was on the host.

    Defined for ``n = 0`` too: the model still ran prefill and sampled EOS.
    """
    return _duration_ns(start_ns, end_ns, "latency") / NS_PER_MS


def tps(n_tokens: int, start_ns: int, end_ns: int) -> float | None:
    """End-to-end tokens per second, ``n / total latency`` (the study's Table 2 definition).

    Missing for ``n = 0``: zero tokens says nothing about speed, and counting it as 0 TPS would make
    a model that stops early look slow. Missing also for a zero-length interval (no division by 0).
    """
    duration = _duration_ns(start_ns, end_ns, "tps")
    if n_tokens <= 0 or duration == 0:
        return None
    return n_tokens / (duration / NS_PER_S)


def decode_tps(token_times_ns: Sequence[int]) -> float | None:
    """Steady-state decode rate ``(n - 1) / (t_last - t_first)``, excluding prefill and TTFT.

    Missing for ``n < 2`` (no decode interval) and when all tokens share one timestamp.
    """
    _check_monotonic(token_times_ns)
    if len(token_times_ns) < 2:
        return None
    span = token_times_ns[-1] - token_times_ns[0]
    if span == 0:
        return None
    return (len(token_times_ns) - 1) / (span / NS_PER_S)


def inter_token_gaps_ms(token_times_ns: Sequence[int]) -> list[float]:
    """The ``n - 1`` gaps between consecutive generated tokens, in ms (empty for ``n < 2``)."""
    _check_monotonic(token_times_ns)
    return [(token_times_ns[i] - token_times_ns[i - 1]) / NS_PER_MS for i in range(1, len(token_times_ns))]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation, numpy's default method.

    Written out so the metric does not depend on numpy's defaults changing; ``None`` if empty.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside [0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def itl_ms(token_times_ns: Sequence[int], q: float) -> float | None:
    """Percentile ``q`` of the inter-token gaps; missing for ``n < 2`` (``n = 1`` has no gap)."""
    return percentile(inter_token_gaps_ms(token_times_ns), q)


def _token_times(generation: Generation) -> list[int]:
    """The per-token times, insisting on one per token: a mismatch is a backend contract bug."""
    times = generation.token_times_ns
    if len(times) != len(generation.tokens):
        raise ValueError(f"backend reported {len(times)} token times for {len(generation.tokens)} tokens")
    return times


def _ttft(ctx: SampleContext) -> float | None:
    gen = ctx.generation
    return ttft_ms(_token_times(gen), gen.start_ns, gen.first_token_ns)


def _latency(ctx: SampleContext) -> float | None:
    return latency_ms(ctx.generation.start_ns, ctx.generation.end_ns)


def _tps(ctx: SampleContext) -> float | None:
    gen = ctx.generation
    return tps(len(gen.tokens), gen.start_ns, gen.end_ns)


def _decode_tps(ctx: SampleContext) -> float | None:
    return decode_tps(_token_times(ctx.generation))


def _itl_p50(ctx: SampleContext) -> float | None:
    return itl_ms(_token_times(ctx.generation), 50)


def _itl_p95(ctx: SampleContext) -> float | None:
    return itl_ms(_token_times(ctx.generation), 95)


TTFT_MS = Metric(
    name="ttft_ms",
    unit="ms",
    higher_is_better=False,
    kind="timing",
    compute=_ttft,
    description="Time from the start of prefill until the first generated token is on the host "
    "(the EOS time when EOS comes first).",
)
TPS = Metric(
    name="tps",
    unit="tokens/s",
    higher_is_better=True,
    kind="timing",
    compute=_tps,
    description="End-to-end throughput: tokens generated / total latency; missing when no token was generated.",
)
LATENCY_MS = Metric(
    name="latency_ms",
    unit="ms",
    higher_is_better=False,
    kind="timing",
    compute=_latency,
    description="Time from the start of prefill until the last token (or EOS) is on the host.",
)
DECODE_TPS = Metric(
    name="decode_tps",
    unit="tokens/s",
    higher_is_better=True,
    kind="timing",
    compute=_decode_tps,
    description="Decode-only throughput (n - 1) / (t_last - t_first); missing when fewer than 2 tokens.",
)
ITL_MS_P50 = Metric(
    name="itl_ms_p50",
    unit="ms",
    higher_is_better=False,
    kind="timing",
    compute=_itl_p50,
    description="Median gap between consecutive generated tokens; missing when fewer than 2 tokens.",
)
ITL_MS_P95 = Metric(
    name="itl_ms_p95",
    unit="ms",
    higher_is_better=False,
    kind="timing",
    compute=_itl_p95,
    description="95th percentile gap between consecutive generated tokens; missing when fewer than 2 tokens.",
)

METRICS: tuple[Metric, ...] = (TTFT_MS, TPS, LATENCY_MS, DECODE_TPS, ITL_MS_P50, ITL_MS_P95)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
