"""Category breakdown: every sample-level metric per prompt category, as small multiples and a table.

Why: the study's suite has four kinds of prompt (story openings, character introductions, actions,
dialogue), and a model can be fluent on one and loop on another; a suite-wide mean hides that. Each cell
is the same statistic as the summary table (``harness.summary.describe``: mean with a 95% interval that
resamples prompts), computed on the category's samples only. Shown only when the suite has two or more
categories.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from harness.report.context import ReportContext, Series, metric_label
from harness.report.figures import axis_title
from harness.report.markup import esc, esc_plotly, fmt_metric, scale_of
from harness.summary import describe

#: Small multiples for at most this many metrics (the study's nine and a few more); the table has all.
MAX_FIGURES = 12


def categories_of(ctx: ReportContext) -> list[str]:
    """Categories in first-seen order over every run."""
    return list(dict.fromkeys(str(s.get("category") or "") for series in ctx.series for s in series.samples))


def category_stats(series: Series, metric: str, model: str, category: str) -> dict[str, Any] | None:
    rows = [
        s
        for s in series.model_samples(model)
        if str(s.get("category") or "") == category and metric in s.get("metrics", {})
    ]
    if not rows:
        return None
    values = [s["metrics"].get(metric) for s in rows]
    return describe(values, [str(s.get("prompt_id")) for s in rows])


def category_figure(ctx: ReportContext, metric: str, categories: list[str]) -> go.Figure:
    """Grouped bars: categories on x, one bar per model (and run), 95% interval as error bars."""
    meta = ctx.metrics.get(metric, {})
    scale = scale_of(meta)
    fig = go.Figure()
    for series in ctx.series:
        for model in series.models:
            cells = [category_stats(series, metric, model, c) for c in categories]
            means = [None if c is None or c["mean"] is None else c["mean"] * scale for c in cells]
            plus = [None if c is None or c["ci_high"] is None else (c["ci_high"] - c["mean"]) * scale for c in cells]
            minus = [None if c is None or c["ci_low"] is None else (c["mean"] - c["ci_low"]) * scale for c in cells]
            fig.add_trace(
                go.Bar(
                    x=[esc_plotly(c) for c in categories],
                    y=means,
                    name=esc_plotly(series.trace_name(model)),
                    marker={"color": ctx.color(model)},
                    error_y={"type": "data", "array": plus, "arrayminus": minus, "visible": True},
                )
            )
    fig.update_layout(
        title={"text": esc_plotly(metric_label(metric, meta))},
        barmode="group",
        height=300,
        margin={"l": 60, "r": 10, "t": 40, "b": 60},
        yaxis={"title": {"text": axis_title(ctx, metric)}},
        legend={"orientation": "h", "y": -0.25, "x": 0},
    )
    return fig


def _table(ctx: ReportContext, metrics: list[str], categories: list[str]) -> str:
    heads = "".join(f"<th>{esc(series.trace_name(m))}</th>" for series in ctx.series for m in series.models)
    rows = []
    for metric in metrics:
        meta = ctx.metrics.get(metric, {})
        for index, category in enumerate(categories):
            cells = []
            for series in ctx.series:
                for model in series.models:
                    stats = category_stats(series, metric, model, category)
                    if stats is None or stats["mean"] is None:
                        cells.append("<td>–</td>")
                        continue
                    ci = f"[{fmt_metric(stats['ci_low'], meta)}, {fmt_metric(stats['ci_high'], meta)}]"
                    cells.append(
                        f'<td title="n = {stats["n"]}"><span class="mean">{esc(fmt_metric(stats["mean"], meta))}'
                        f'</span><span class="ci">{esc(ci)}</span></td>'
                    )
            label = (
                f'<th scope="row" rowspan="{len(categories)}">{esc(metric_label(metric, meta))}</th>'
                if not index
                else ""
            )
            rows.append(
                f'<tr data-metric="{esc(metric)}" data-category="{esc(category)}">{label}'
                f"<td>{esc(category or '(none)')}</td>{''.join(cells)}</tr>"
            )
    return (
        '<table class="summary categories"><caption>Mean [95% interval] per category</caption>'
        f"<thead><tr><th>Metric</th><th>Category</th>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def category_section(ctx: ReportContext) -> str:
    """Empty (section skipped) when the runs have fewer than two categories."""
    categories = categories_of(ctx)
    metrics = ctx.sample_metrics()
    if len(categories) < 2 or not metrics:
        return ""
    figures = "".join(
        f'<div class="category-plot" data-metric="{esc(m)}">'
        f"{ctx.figure(category_figure(ctx, m, categories), 'category-' + m, lazy=True)}</div>"
        for m in metrics[:MAX_FIGURES]
    )
    return (
        f"<p>Every sample-level metric by prompt category ({len(categories)} categories): bars are means, "
        "whiskers the 95% interval over the category's prompts.</p>"
        f'<div class="grid3">{figures}</div><details><summary>The same as a table</summary>'
        f"{_table(ctx, metrics, categories)}</details>"
    )
