"""The load section: latency against throughput across the concurrency levels of ``--concurrency``.

One line per served model (and run), one point per level, labelled with its concurrency: as more streams
are kept in flight, output tokens/s rise until the server saturates, and from there only latency grows.
TTFT and ITL get a figure each, p50 solid and p95 dashed. The section is left out for runs without levels.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from harness.load import split_level
from harness.report.context import TEMPLATE, ReportContext, finite
from harness.report.markup import esc_plotly

X_METRIC = "load_output_tokens_per_s"


def load_points(ctx: ReportContext) -> dict[str, list[dict[str, Any]]]:
    """Per line (spec, plus the run when the report has several): its levels' metrics, by concurrency."""
    lines: dict[str, list[dict[str, Any]]] = {}
    many = len(ctx.runs) > 1
    for index, run in enumerate(ctx.runs):
        for record in run.model_metrics:
            values = record.get("metrics", {})
            level = finite(values.get("load_concurrency"))
            if level is None:
                continue
            spec, _ = split_level(str(record.get("model")))
            name = f"{spec} · run {index + 1}" if many else spec
            lines.setdefault(name, []).append({"concurrency": int(level), **values})
    for points in lines.values():
        points.sort(key=lambda p: p["concurrency"])
    return lines


def latency_figure(lines: dict[str, list[dict[str, Any]]], what: str, title: str) -> go.Figure:
    fig = go.Figure()
    for name, points in lines.items():
        for q, dash in (("p50", "solid"), ("p95", "dash")):
            metric = f"load_{what}_{q}_ms"
            kept = [p for p in points if finite(p.get(X_METRIC)) is not None and finite(p.get(metric)) is not None]
            if not kept:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[p[X_METRIC] for p in kept],
                    y=[p[metric] for p in kept],
                    mode="lines+markers+text",
                    text=[f"c={p['concurrency']}" for p in kept],
                    textposition="top center",
                    line={"dash": dash},
                    name=esc_plotly(f"{name} {what.upper()} {q}"),
                )
            )
    fig.update_layout(
        template=TEMPLATE,
        title={"text": esc_plotly(title)},
        height=420,
        margin={"l": 60, "r": 20, "t": 50, "b": 90},
        legend={"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0},
        xaxis={"title": {"text": "output tokens/s (all streams)"}, "rangemode": "tozero"},
        yaxis={"title": {"text": f"{what.upper()} (ms)"}, "rangemode": "tozero"},
    )
    return fig


def load_section(ctx: ReportContext) -> str:
    lines = load_points(ctx)
    if not lines:
        return ""
    figures = "".join(
        f'<div class="scatter" data-load="{what}">{ctx.figure(latency_figure(lines, what, title), "load-" + what)}</div>'
        for what, title in (("ttft", "TTFT vs throughput"), ("itl", "Inter-token latency vs throughput"))
    )
    return (
        "<p>Each point is one concurrency level (<code>--concurrency</code>): requests kept in flight against "
        "the served model. Latencies are measured by the client, so they include the network and the "
        f'server\'s queue. p50 solid, p95 dashed.</p><div class="grid2">{figures}</div>'
    )
