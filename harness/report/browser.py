"""Sample browser: pick a prompt, read every model's output side by side with its metrics.

The data is embedded as escaped JSON in a ``<script type="application/json">`` block and drawn by
vanilla JavaScript (assets.APP_JS) with ``textContent`` only, so model output can never become markup.
Prompts and columns are arrays rather than objects keyed by untrusted ids (no ``__proto__`` surprises).
"""

from __future__ import annotations

from typing import Any

from harness.metrics.repetition import COHERENCE_NGRAM, coherence_length
from harness.report.context import ReportContext, finite, metric_label
from harness.report.markup import esc, is_percent, json_block

BROWSER_DATA_ID = "browser-data"


def repeated_positions(ids: list[int], ngram: int = COHERENCE_NGRAM) -> list[int]:
    """Indices of the tokens inside an n-gram that already occurred earlier (the repetition the study's
    coherence length stops at), for highlighting in the token view."""
    seen: set[tuple[int, ...]] = set()
    marked: set[int] = set()
    for start in range(len(ids) - ngram + 1):
        gram = tuple(ids[start : start + ngram])
        if gram in seen:
            marked.update(range(start, start + ngram))
        seen.add(gram)
    return sorted(marked)


def token_view(sample: dict[str, Any]) -> dict[str, Any]:
    """Per-token data of one sample for the token view: the decoded pieces, log-probs, the time each token
    took, the tokens of repeated 3-grams and where coherence breaks. Empty for runs recorded before
    ``output_tokens`` existed (the view then says so)."""
    pieces, ids = sample.get("output_tokens"), sample.get("output_ids") or []
    logprobs, times = sample.get("logprobs") or [], sample.get("token_times_ms") or []
    if not isinstance(pieces, list) or len(pieces) != len(ids):
        return {}
    # integers at display precision (log-prob in hundredths, time in tenths of a ms) keep the 400-sample
    # main-job report under 7 MB; the page divides them back
    gaps = (
        [round((t - (times[i - 1] if i else 0.0)) * 10) for i, t in enumerate(times)] if len(times) == len(ids) else []
    )
    brk = coherence_length(ids)
    return {
        "tok": [str(piece) for piece in pieces],
        "lp": [None if v is None else round(v * 100) for v in logprobs] if len(logprobs) == len(ids) else [],
        "dt": gaps,
        "rep": repeated_positions(ids),
        "brk": brk if brk < len(ids) else None,
    }


def browser_data(ctx: ReportContext) -> dict[str, Any]:
    """Prompts (first-seen order over all runs), one column per series × model, and their samples."""
    prompts: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for series in ctx.series:
        for sample in series.samples:
            pid = str(sample.get("prompt_id"))
            if pid not in index:
                index[pid] = len(prompts)
                prompts.append(
                    {
                        "id": pid,
                        "category": str(sample.get("category") or ""),
                        "text": str(sample.get("prompt_text") or ""),
                    }
                )
    columns = []
    cells: list[list[list[dict[str, Any]]]] = [[] for _ in prompts]
    for series in ctx.series:
        for model in series.models:
            columns.append(
                {
                    "label": series.trace_name(model),
                    "model": model,
                    "color": ctx.color(model),
                    "batched": series.batched,
                    "run": series.run_index,
                }
            )
            per_prompt: list[list[dict[str, Any]]] = [[] for _ in prompts]
            for s in series.model_samples(model):
                per_prompt[index[str(s.get("prompt_id"))]].append(
                    {
                        "i": s.get("sample_index"),
                        "out": str(s.get("output_text") or ""),
                        "stop": s.get("stop_reason"),
                        "eos": s.get("eos_hit"),
                        "flags": s.get("flags") or [],
                        "m": {k: finite(v) for k, v in s.get("metrics", {}).items()},
                        "err": s.get("metric_errors") or {},
                        **token_view(s),
                    }
                )
            for i, samples in enumerate(per_prompt):
                cells[i].append(sorted(samples, key=lambda r: r["i"] if isinstance(r["i"], int) else 0))
    metrics = [
        {
            "name": m,
            "label": metric_label(m, ctx.metrics[m]),
            "percent": is_percent(ctx.metrics[m]),
            "hib": ctx.metrics[m].get("higher_is_better"),
        }
        for m in ctx.sample_metrics()
    ]
    return {"prompts": prompts, "columns": columns, "metrics": metrics, "cells": cells}


def browser_section(ctx: ReportContext) -> str:
    data = browser_data(ctx)
    if not data["prompts"]:
        return '<p class="note">No samples in these runs.</p>'
    return (
        '<div id="sample-browser"><div class="controls">'
        '<label>Category <select id="browser-category"></select></label> '
        '<label>Prompt <select id="browser-prompt-select"></select></label> '
        '<button type="button" id="browser-prev" title="previous prompt">◀</button>'
        '<button type="button" id="browser-next" title="next prompt">▶</button> '
        '<label title="each token coloured by its probability; hover for log-prob and time">'
        '<input type="checkbox" id="browser-token-view"> token view</label></div>'
        '<div class="prompt-box"><div id="browser-prompt-meta" class="sub"></div><pre id="browser-prompt"></pre></div>'
        '<div id="browser-columns" class="columns"></div>'
        '<h3>All samples</h3><div class="controls" id="samples-controls">'
        '<label>Sort by <select id="samples-sort"></select></label> '
        '<label><select id="samples-order"><option value="desc">highest first</option>'
        '<option value="asc">lowest first</option></select></label> '
        '<label>Model <select id="samples-model"></select></label> '
        '<label>Search <input type="search" id="samples-search" placeholder="prompt or output text"></label> '
        '<span id="samples-count" class="sub"></span></div>'
        '<table class="summary samples-table" id="samples-table"><thead><tr><th>prompt</th><th>category</th>'
        '<th>model</th><th>#</th><th id="samples-metric-head">value</th><th>output</th></tr></thead>'
        "<tbody></tbody></table>"
        f'<noscript><p class="note">The sample browser needs JavaScript; {len(data["prompts"])} prompts are in the '
        f"embedded data block {esc(BROWSER_DATA_ID)}.</p></noscript></div>" + json_block(BROWSER_DATA_ID, data)
    )
