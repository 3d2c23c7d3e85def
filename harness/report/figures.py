"""Plotly figures: the study's four scatter plots and a distribution plot for every sample-level metric.

Every sample is one point, coloured by model (marker symbol by run), with the prompt id, category and
the start of the output on hover, so an outlier can be traced to its text in the sample browser.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from harness.report.context import TEMPLATE, ReportContext, Series, finite, metric_label
from harness.report.markup import esc, esc_plotly, scale_of

HOVER_OUTPUT_CHARS = 60


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


#: Integer-valued axes get a deterministic jitter of this half-width (in the axis unit), so the hundreds of
#: samples that stop at the token cap spread into a visible band instead of one opaque stripe.
JITTER = {"tokens_generated": 0.4}
#: Marker opacity: low enough that density shows where points pile up.
POINT_OPACITY = 0.45
#: Plots where the y value can never exceed the x value, and why (drawn as a labelled y = x line).
BOUNDS = {("tokens_generated", "coherence_length"): "y = x: coherence length cannot exceed tokens generated"}


def _jitter(sample: dict[str, Any], axis: str, width: float) -> float:
    """A fixed offset in [-width, width] per sample and axis (the same in every render of the report)."""
    key = f"{sample.get('model')}/{sample.get('prompt_id')}/{sample.get('sample_index')}/{axis}"
    return (zlib.crc32(key.encode()) / 0xFFFFFFFF * 2 - 1) * width


def scatter_points(
    series: Series, model: str, x: str, y: str, x_scale: float = 1.0, y_scale: float = 1.0
) -> tuple[list[float], list[float], list[str]]:
    """(x, y, hover) of the samples that have both metrics, unjittered; samples missing either are left out."""
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


def _plotted(series: Series, model: str, spec: ScatterSpec, scales: tuple[float, float]) -> list[dict[str, Any]]:
    """Per plotted sample: true values, jittered position, hover text and what a click opens."""
    points = []
    for sample in series.model_samples(model):
        metrics = sample.get("metrics", {})
        xv, yv = finite(metrics.get(spec.x)), finite(metrics.get(spec.y))
        if xv is None or yv is None:
            continue
        x, y = xv * scales[0], yv * scales[1]
        points.append(
            {
                "x": x,
                "y": y,
                "px": x + _jitter(sample, "x", JITTER.get(spec.x, 0.0)),
                "py": y + _jitter(sample, "y", JITTER.get(spec.y, 0.0)),
                "hover": hover_text(sample),
                "open": [
                    series.run_index,
                    int(series.batched),
                    str(sample.get("prompt_id")),
                    sample.get("sample_index"),
                    model,
                ],
            }
        )
    return points


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def scatter_figure(ctx: ReportContext, spec: ScatterSpec) -> tuple[go.Figure, int]:
    """The figure and the number of samples left out because a value was missing.

    Points are translucent and integer axes jittered (hover shows the true values); each model's median
    is a large diamond; the top and right margins hold each model's histogram; a plot whose metrics are
    bounded (coherence ≤ tokens) draws the bound and says why. A click on a point opens its sample in the
    sample browser (``customdata``: run, batched, prompt id, sample index).
    """
    x_title, y_title = axis_title(ctx, spec.x), axis_title(ctx, spec.y)
    scales = scale_of(ctx.metrics.get(spec.x, {})), scale_of(ctx.metrics.get(spec.y, {}))
    fig = go.Figure()
    omitted = 0
    top = 0.0
    for series in ctx.series:
        for model in series.models:
            points = _plotted(series, model, spec, scales)
            omitted += len(series.model_samples(model)) - len(points)
            if not points:
                continue
            name = esc_plotly(series.trace_name(model))
            color = ctx.color(model)
            xs, ys = [p["x"] for p in points], [p["y"] for p in points]
            top = max(top, *xs, *ys)
            fig.add_trace(
                go.Scatter(
                    x=[p["px"] for p in points],
                    y=[p["py"] for p in points],
                    text=[p["hover"] for p in points],
                    customdata=[[p["x"], p["y"], *p["open"]] for p in points],
                    mode="markers",
                    name=name,
                    legendgroup=name,
                    marker={"color": color, "symbol": ctx.symbol(series), "size": 7, "opacity": POINT_OPACITY},
                    hovertemplate=(
                        f"%{{text}}<br>{x_title}: %{{customdata[0]}}<br>{y_title}: %{{customdata[1]}}"
                        f"<br><i>click to open the sample</i><extra>{name}</extra>"
                    ),
                )
            )
            mx, my = _median(xs), _median(ys)
            fig.add_trace(
                go.Scatter(
                    x=[mx],
                    y=[my],
                    mode="markers",
                    name=f"{name} median",
                    legendgroup=name,
                    showlegend=False,
                    marker={"color": color, "symbol": "diamond", "size": 16, "line": {"width": 2, "color": "#1d2330"}},
                    hovertemplate=f"median of {name}<br>{x_title}: {mx:.4g}<br>{y_title}: {my:.4g}<extra></extra>",
                )
            )
            for axis, values in (("x", xs), ("y", ys)):
                fig.add_trace(
                    go.Histogram(
                        **{axis: values},
                        xaxis="x" if axis == "x" else "x2",
                        yaxis="y2" if axis == "x" else "y",
                        marker={"color": color},
                        opacity=0.5,
                        legendgroup=name,
                        showlegend=False,
                        hoverinfo="skip",
                    )
                )
    fig = _layout(fig, spec.title, x_title, y_title)
    fig.update_layout(
        barmode="overlay",
        xaxis={"domain": [0, 0.84]},
        yaxis={"domain": [0, 0.82]},
        xaxis2={"domain": [0.86, 1], "showticklabels": False, "showgrid": False},
        yaxis2={"domain": [0.84, 1], "showticklabels": False, "showgrid": False},
    )
    bound = BOUNDS.get((spec.x, spec.y))
    if bound and scales == (1.0, 1.0) and top > 0:
        fig.add_shape(type="line", x0=0, y0=0, x1=top, y1=top, line={"dash": "dash", "color": "#5b6475", "width": 1})
        fig.add_annotation(x=top, y=top, text=esc_plotly(bound), showarrow=False, xanchor="right", yanchor="bottom")
    return fig, omitted


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
    suites = {(r.manifest.suite.name, r.manifest.suite.sha256) for r in ctx.runs}
    mixed = ""
    if len(suites) > 1:
        names = ", ".join(sorted({name for name, _ in suites}))
        mixed = (
            f'<p class="warn" data-mixed-suites="true">These plots overlay runs of different suites ({esc(names)}, '
            "or one suite changed): their points come from different prompts or settings and are not comparable "
            "one for one.</p>"
        )
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
        "<p>Every sample is one translucent point, coloured by model (integer axes slightly jittered so piled-up "
        "points show as a band; hover shows the true values); the large diamond is each model's median and the "
        "margins hold each model's histogram. Click a point to open its sample below. Percent metrics are plotted "
        f'×100.</p>{mixed}{caution}<div class="grid2">{"".join(parts)}</div>'
    )


def distribution_section(ctx: ReportContext) -> str:
    """One box plot per sample-level metric, so metrics from plugins appear without extra code."""
    metrics = ctx.sample_metrics()
    if not metrics:
        return '<p class="note">No sample-level metric values in these runs.</p>'
    figures = "".join(
        f'<div class="dist" data-metric="{esc(m)}">{ctx.figure(distribution_figure(ctx, m), "dist-" + m, lazy=True)}</div>'
        for m in metrics
    )
    return (
        "<p>Distribution of every sample-level metric per model: box = quartiles, line = median, dashed = "
        f"mean, dots = outliers. Missing values (for example ratios of an empty output) are left out.</p>"
        f'<div class="grid2">{figures}</div>'
    )
