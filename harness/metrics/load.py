"""Load-level metrics: what one concurrency level of ``harness run --concurrency`` sustained.

Model-level metrics, computed once per row (``SPEC@cN``) from its samples and from the level's wall clock,
which the runner passes as ``ModelContext.resources["load"]`` (``concurrency``, ``wall_s``, ``samples``,
``tokens``, ``errors`` of this session). Without that resource (an ordinary row) every value is missing, and
they are off by default: the runner adds them to the run's metrics when ``--concurrency`` is given.

TTFT and ITL percentiles pool the level's samples: TTFT is each sample's first token time, ITL every gap
between consecutive token times of every sample (client-side arrival times for a served model, so they
include the network and the server's queue). Percentiles use numpy's default (linear) interpolation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.hookspecs import hookimpl
from harness.types import Metric, ModelContext

RESOURCE = "load"
PERCENTILES = (50, 95, 99)


def ttfts_ms(records: list[dict[str, Any]]) -> list[float]:
    """Each sample's time to its first token (ms after the request started); samples with none are skipped."""
    return [float(r["token_times_ms"][0]) for r in records if r.get("token_times_ms")]


def itls_ms(records: list[dict[str, Any]]) -> list[float]:
    """Every gap between consecutive token arrival times, over every sample."""
    gaps: list[float] = []
    for record in records:
        times = record.get("token_times_ms") or []
        gaps += [b - a for a, b in zip(times, times[1:], strict=False)]
    return gaps


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _load(ctx: ModelContext) -> dict[str, Any] | None:
    return ctx.resources.get(RESOURCE)


def _percentile_metric(source: Callable[[list[dict[str, Any]]], list[float]], q: int):
    def compute(ctx: ModelContext) -> float | None:
        return None if _load(ctx) is None else percentile(source(ctx.records), q)

    return compute


def _rate(key: str) -> Callable[[ModelContext], float | None]:
    def compute(ctx: ModelContext) -> float | None:
        load = _load(ctx)
        if load is None or not load.get("wall_s"):
            return None
        return load[key] / load["wall_s"]

    return compute


def _field(key: str) -> Callable[[ModelContext], float | None]:
    def compute(ctx: ModelContext) -> float | None:
        load = _load(ctx)
        return None if load is None else float(load[key])

    return compute


def _metrics() -> tuple[Metric, ...]:
    found: list[Metric] = []
    for what, source in (("ttft", ttfts_ms), ("itl", itls_ms)):
        for q in PERCENTILES:
            found.append(
                Metric(
                    name=f"load_{what}_p{q}_ms",
                    unit="ms",
                    higher_is_better=False,
                    kind="timing",
                    default=False,
                    compute_model=_percentile_metric(source, q),
                    description=f"{what.upper()} {q}th percentile over the load level's samples (client-side).",
                )
            )
    found += [
        Metric(
            name="load_requests_per_s",
            unit="req/s",
            higher_is_better=True,
            kind="timing",
            default=False,
            compute_model=_rate("samples"),
            description="Completed requests per second of the level's wall clock (first request to last answer).",
        ),
        Metric(
            name="load_output_tokens_per_s",
            unit="tok/s",
            higher_is_better=True,
            kind="timing",
            default=False,
            compute_model=_rate("tokens"),
            description="Generated tokens per second of the level's wall clock, all streams together.",
        ),
        Metric(
            name="load_errors",
            unit="requests",
            higher_is_better=False,
            kind="count",
            default=False,
            compute_model=_field("errors"),
            description="Requests of the level that failed (broken stream, timeout, 5xx after retries).",
        ),
        Metric(
            name="load_concurrency",
            unit="streams",
            higher_is_better=None,
            kind="count",
            default=False,
            compute_model=_field("concurrency"),
            description="Requests kept in flight at this level.",
        ),
    ]
    return tuple(found)


METRICS: tuple[Metric, ...] = _metrics()
NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    for metric in METRICS:
        register(metric)
