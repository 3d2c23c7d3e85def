"""The summary table in the study's Table 2 layout: metrics as rows, models as columns.

Each cell is the mean with its 95% interval (``harness.summary.describe``, the same numbers as
summary.json: a bootstrap over prompts, or the exact binomial interval of a 0/1 metric). A row's best
mean is highlighted only when its interval does not overlap the runner-up's (a difference the data
supports, not 0.335 over 0.334), by the metric's direction; rows without a direction highlight nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.report.context import ReportContext, Series, metric_label
from harness.report.markup import esc, fmt_metric, fmt_params
from harness.summary import describe

ARROWS = {True: ("↑", "higher is better"), False: ("↓", "lower is better")}


def series_stats(ctx: ReportContext, series: Series) -> dict[str, dict[str, dict[str, Any]]]:
    """metric -> model -> describe() statistics, for the metrics and models this series has values for."""
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for metric in ctx.metric_order:
        level = ctx.metrics[metric].get("level", "sample")
        per_model = {}
        for model in series.models:
            values = series.values(metric, model, level)
            if values:
                clusters = series.prompt_ids(metric, model) if level == "sample" else None
                per_model[model] = describe(values, clusters)
        if per_model:
            stats[metric] = per_model
    return stats


def best_models(
    per_model: dict[str, dict[str, Any]], higher_is_better: bool | None, shown: Callable[[float], str] = repr
) -> set[str]:
    """The model whose mean is best in the row, when the data supports it; else none.

    Highlighted only when the best mean's 95% interval does not overlap the runner-up's: overlapping
    intervals are a difference the data cannot tell from noise, and a highlight there teaches the reader
    to trust it. ``shown`` is how a mean is printed: means that print the same count as a tie.
    """
    means = {m: s["mean"] for m, s in per_model.items() if s.get("mean") is not None}
    if higher_is_better is None or len(means) < 2:
        return set()
    ranked = sorted(means, key=lambda m: means[m], reverse=bool(higher_is_better))
    best, runner_up = ranked[0], ranked[1]
    if shown(means[best]) == shown(means[runner_up]):
        return set()
    b, r = per_model[best], per_model[runner_up]
    if None in (b.get("ci_low"), b.get("ci_high"), r.get("ci_low"), r.get("ci_high")):
        return set()
    separated = b["ci_low"] > r["ci_high"] if higher_is_better else b["ci_high"] < r["ci_low"]
    return {best} if separated else set()


def _cell(stats: dict[str, Any] | None, meta: dict[str, Any], best: bool, model: str) -> str:
    if stats is None:
        return f'<td data-model="{esc(model)}" class="empty">–</td>'
    mean, low, high = stats["mean"], stats["ci_low"], stats["ci_high"]
    ci = ""
    if stats["n"] > 1 and low is not None:
        ci = f'<span class="ci">[{esc(fmt_metric(low, meta))}, {esc(fmt_metric(high, meta))}]</span>'
    missing = f'<span class="missing">{stats["missing"]} missing</span>' if stats["missing"] else ""
    klass = ' class="best"' if best else ""
    title = f"n = {stats['n']}, missing = {stats['missing']}, median = {fmt_metric(stats['median'], meta)}"
    return (
        f'<td data-model="{esc(model)}"{klass} title="{esc(title)}"><span class="mean">'
        f"{esc(fmt_metric(mean, meta))}</span>{ci}{missing}</td>"
    )


def summary_table(ctx: ReportContext, series: Series) -> str:
    """One series as the study's Table 2: '#', 'Metric', then one column per model."""
    stats = series_stats(ctx, series)
    if not stats:
        return '<p class="note">No metric values in this run.</p>'
    info = {m.name: m.info or {} for m in series.run.manifest.models}
    busy = series.run.timing_flags()
    mixed = series.run.hardware_flags()
    heads = "".join(
        f'<th data-model="{esc(m)}">{esc(m)}<span class="sub">{esc(fmt_params(info.get(m, {}).get("parameters")))}'
        "</span></th>"
        for m in series.models
    )
    rows = []
    for number, metric in enumerate(stats, 1):
        meta = ctx.metrics[metric]
        arrow, why = ARROWS.get(meta.get("higher_is_better"), ("", "no better direction"))
        best = best_models(stats[metric], meta.get("higher_is_better"), lambda v, meta=meta: fmt_metric(v, meta))
        cells = "".join(
            _busy_mark(
                _busy_mark(
                    _cell(stats[metric].get(m), meta, m in best, m),
                    busy.get(m) if meta.get("kind") == "timing" else None,
                ),
                mixed.get(m) if meta.get("kind") == "timing" else None,
            )
            for m in series.models
        )
        level = ' <span class="sub">per model</span>' if meta.get("level") == "model" else ""
        rows.append(
            f'<tr data-metric="{esc(metric)}"><td class="num">{number}</td><th scope="row" '
            f'title="{esc(meta.get("description", ""))}">{esc(metric_label(metric, meta))} '
            f'<span class="dir" title="{why}">{arrow}</span>{level}</th>{cells}</tr>'
        )
    caption = (
        "Mean [95% interval: bootstrap over prompts; exact binomial for 0/1 metrics] per model. A row's best "
        "is highlighted only when its interval does not overlap the runner-up's."
    )
    if busy:
        which = ", ".join(f"{esc(m)} ({esc(flag['flag'])})" for m, flag in busy.items())
        caption += f" ⚠ Timing taken while other processes used the CPU: {which}."
    if mixed:
        which = ", ".join(f"{esc(m)} ({esc(flag['reason'])})" for m, flag in mixed.items())
        caption += f" ⚠ Timing samples from different kinds of hardware: {which}."
    if series.label:
        caption = f"{esc(series.label)}. {caption}"
    batched = ' data-batched="true"' if series.batched else ' data-batched="false"'
    return (
        f'<table class="summary" data-run="{series.run_index}"{batched}><caption>{caption}</caption>'
        f"<thead><tr><th>#</th><th>Metric</th>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _busy_mark(cell: str, flag: dict[str, str] | None) -> str:
    """A timing cell of a model whose timing window was judged busy gets a visible, explained mark."""
    if flag is None:
        return cell
    badge = f' <span class="warn busy" title="{esc(flag["reason"])}">⚠ {esc(flag["flag"])}</span>'
    return cell[: -len("</td>")] + badge + "</td>" if cell.endswith("</td>") else cell + badge


def summary_section(ctx: ReportContext) -> str:
    """A Table 2 per series (batched apart from batch-1), and the study's table beside ours for TinyStories."""
    from harness.report.study_table import STUDY_SUITE, applies, study_table

    parts = []
    beside = next(
        (i for i, s in enumerate(ctx.series) if not s.batched and s.run.manifest.suite.name == STUDY_SUITE),
        None,
    )
    for index, series in enumerate(ctx.series):
        table = summary_table(ctx, series)
        if series.batched:
            table = (
                '<p class="warn">Batched generation: TTFT, TPS and latency here are throughput under batching, '
                "not comparable with the batch-1 numbers of any other table.</p>"
            ) + table
        if index == beside:
            table = f'<div class="side-by-side"><div>{table}</div><div>{study_table(ctx)}</div></div>'
        parts.append(table)
    if beside is None and applies(ctx):
        parts.append(study_table(ctx))
    return "".join(parts)
