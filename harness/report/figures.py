"""Plotly figures: the study's four scatter plots and a distribution plot for every sample-level metric.

Every sample is one point, coloured by model (marker symbol by run), with the prompt id, category and
the start of the output on hover, so an outlier can be traced to its text in the sample browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from harness.report.context import TEMPLATE, ReportContext, Series, finite, metric_label
from harness.report.markup import esc, esc_plotly, scale_of

HOVER_OUTPUT_CHARS = 80


@dataclass(frozen=True)
class ScatterSpec:
    """One of the study's scatter plots: a metric on each axis."""

    key: str
    x: str
    y: str
    title: str


STUDY_SCATTERS = [
    ScatterSpec("tokens-vs-coherence", "tokens_generated", "coherence_length", "Tokens generated vs coherence length"),
    ScatterSpec("tokens-vs-repetition", "tokens_generated", "repetition_rate", "Tokens generated vs repetition rate"),
    ScatterSpec(
        "tokens-vs-diversity", "tokens_generated", "vocab_diversity", "Tokens generated vs vocabulary diversity"
    ),
    ScatterSpec("tps-vs-latency", "tps", "latency_ms", "TPS vs total latency"),
]


def axis_title(ctx: ReportContext, metric: str) -> str:
    """Axis label with the display unit (percent metrics are plotted ×100)."""
    meta = ctx.metrics.get(metric, {})
    label = metric_label(metric, meta).replace(" (avg)", "")  # an axis shows samples, not the average
    if meta.get("unit") == "%" and "%" not in label:
        label += " (%)"
    return esc_plotly(label)


def hover_text(sample: dict[str, Any]) -> str:
    """Prompt id, sample index, category and the start of the output, escaped for plotly."""
    output = " ".join(str(sample.get("output_text", "")).split())
    if len(output) > HOVER_OUTPUT_CHARS:
        output = output[:HOVER_OUTPUT_CHARS] + "…"
    return (
        f"<b>{esc_plotly(sample.get('prompt_id'))}</b> #{esc_plotly(sample.get('sample_index'))}"
        f" · {esc_plotly(sample.get('category'))}<br>{esc_plotly(output) or '(empty output)'}"
    )


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 460) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title={"text": esc_plotly(title)},
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 90},
        # below the plot: legend names with run labels are long and would squeeze a side legend
        legend={"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0},
        xaxis={"title": {"text": x_title}},
        yaxis={"title": {"text": y_title}},
        hovermode="closest",
    )
    return fig


def scatter_points(
    series: Series, model: str, x: str, y: str, x_scale: float = 1.0, y_scale: float = 1.0
) -> tuple[list[float], list[float], list[str]]:
    """(x, y, hover) of the samples that have both metrics; samples missing either are left out."""
    xs, ys, texts = [], [], []
    for sample in series.model_samples(model):
        metrics = sample.get("metrics", {})
        xv, yv = finite(metrics.get(x)), finite(metrics.get(y))
        if xv is None or yv is None:
            continue
        xs.append(xv * x_scale)
        ys.append(yv * y_scale)
        texts.append(hover_text(sample))
    return xs, ys, texts


def scatter_figure(ctx: ReportContext, spec: ScatterSpec) -> tuple[go.Figure, int]:
    """The figure and the number of samples left out because a value was missing."""
    x_title, y_title = axis_title(ctx, spec.x), axis_title(ctx, spec.y)
    x_scale, y_scale = scale_of(ctx.metrics.get(spec.x, {})), scale_of(ctx.metrics.get(spec.y, {}))
    fig = go.Figure()
    omitted = 0
    for series in ctx.series:
        for model in series.models:
            xs, ys, texts = scatter_points(series, model, spec.x, spec.y, x_scale, y_scale)
            omitted += len(series.model_samples(model)) - len(xs)
            name = esc_plotly(series.trace_name(model))
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    text=texts,
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    marker={
                        "color": ctx.color(model),
                        "symbol": ctx.symbol(series),
                        "size": 7,
                        "opacity": 0.7,
                        "line": {"width": 0.5, "color": "white"},
                    },
                    hovertemplate=f"%{{text}}<br>{x_title}: %{{x}}<br>{y_title}: %{{y}}<extra>{name}</extra>",
                )
            )
    return _layout(fig, spec.title, x_title, y_title), omitted


def distribution_figure(ctx: ReportContext, metric: str) -> go.Figure:
    """Box plot of one metric, one box per model (and per run / batch mode), mean marked."""
    meta = ctx.metrics.get(metric, {})
    scale = scale_of(meta)
    fig = go.Figure()
    for series in ctx.series:
        for model in series.models:
            values = [v * scale for v in series.values(metric, model) if v is not None]
            name = esc_plotly(series.trace_name(model))
            fig.add_trace(
                go.Box(
                    y=values,
                    name=name,
                    boxmean=True,
                    boxpoints="outliers",
                    marker={"color": ctx.color(model)},
                    line={"width": 1.5},
                )
            )
    direction = {True: " · higher is better", False: " · lower is better"}.get(meta.get("higher_is_better"), "")
    fig = _layout(fig, f"{metric_label(metric, meta)}{direction}", "", axis_title(ctx, metric), height=340)
    fig.update_layout(showlegend=False, margin={"l": 60, "r": 20, "t": 50, "b": 80})
    return fig


def scatter_section(ctx: ReportContext) -> str:
    """The study's four plots in a 2×2 grid; a plot whose metrics the run lacks says so instead."""
    parts = []
    for spec in STUDY_SCATTERS:
        missing = [m for m in (spec.x, spec.y) if m not in ctx.metrics]
        if missing:
            parts.append(
                f'<div class="plot-missing" data-scatter="{spec.key}"><h3>{esc(spec.title)}</h3>'
                f'<p class="note">Not in this run: {esc(", ".join(missing))}.</p></div>'
            )
            continue
        fig, omitted = scatter_figure(ctx, spec)
        note = f'<p class="note">{omitted} sample(s) without one of the values are not plotted.</p>' if omitted else ""
        parts.append(f'<div class="scatter" data-scatter="{spec.key}">{ctx.figure(fig, spec.key)}{note}</div>')
    batched = any(s.batched for s in ctx.series)
    caution = (
        (
            '<p class="note">Batched samples use their own marker symbol and legend entry; their latency is '
            "throughput under batching, not comparable with batch-1 latency.</p>"
        )
        if batched
        else ""
    )
    return (
        "<p>Every sample is one point, coloured by model; hover for the prompt, its category and the start "
        f'of the output. Percent metrics are plotted ×100.</p>{caution}<div class="grid2">{"".join(parts)}</div>'
    )


def distribution_section(ctx: ReportContext) -> str:
    """One box plot per sample-level metric, so metrics from plugins appear without extra code."""
    metrics = ctx.sample_metrics()
    if not metrics:
        return '<p class="note">No sample-level metric values in these runs.</p>'
    figures = "".join(
        f'<div class="dist" data-metric="{esc(m)}">{ctx.figure(distribution_figure(ctx, m), "dist-" + m)}</div>'
        for m in metrics
    )
    return (
        "<p>Distribution of every sample-level metric per model: box = quartiles, line = median, dashed = "
        f"mean, dots = outliers. Missing values (for example ratios of an empty output) are left out.</p>"
        f'<div class="grid2">{figures}</div>'
    )
