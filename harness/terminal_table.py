"""The terminal summary in the study's Table 2 layout: metrics as rows, models as columns."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from harness.user_text import plain

#: The study's nine metrics first, in its order; everything else (extras, plugins) after, alphabetically.
STUDY_ORDER = (
    "ttft_ms",
    "tps",
    "latency_ms",
    "tokens_generated",
    "perplexity",
    "avg_token_prob",
    "repetition_rate",
    "coherence_length",
    "vocab_diversity",
)


def ordered_metrics(names: list[str]) -> list[str]:
    return [n for n in STUDY_ORDER if n in names] + sorted(n for n in names if n not in STUDY_ORDER)


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{100 * value:.1f}%"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if magnitude < 1 else f"{value:.2f}"


def direction_mark(higher_is_better: bool | None) -> str:
    return {True: "↑", False: "↓", None: ""}[higher_is_better]


def summary_table(summary: dict[str, Any], title: str | None = None) -> Table:
    """Means per model; missing values (e.g. a ratio over zero tokens) are counted in the caption.

    Model names are paths and specs the user typed and metric names come from plugins, so every one is a
    ``Text`` (``plain``): ``runs/[v2]`` shows as typed and ``[/]`` cannot raise a markup error.
    """
    models = summary["models"]
    table = Table(title=plain(title or f"{summary['suite']}: mean per model (95% CI in summary.json)"))
    table.add_column("#", justify="right")
    table.add_column("metric")
    for model in models:
        table.add_column(plain(model), justify="right")
    missing: dict[str, int] = {}
    busy = summary.get("timing_flags") or {}
    mixed = summary.get("hardware_flags") or {}
    for index, name in enumerate(ordered_metrics(list(summary["metrics"])), 1):
        entry = summary["metrics"][name]
        unit = entry["unit"]
        label = f"{name} ({unit})" if unit and unit != "%" else name
        cells = []
        for model in models:
            stats = entry["models"].get(model)
            timing = entry.get("kind") == "timing" and stats
            mark = (" *" if timing and model in busy else "") + (" †" if timing and model in mixed else "")
            cells.append((format_value(stats["mean"], unit) if stats else "—") + mark)
            if stats and stats.get("missing"):
                missing[model] = max(missing.get(model, 0), stats["missing"])
        table.add_row(str(index), plain(f"{label} {direction_mark(entry['higher_is_better'])}"), *cells)
    captions = []
    if missing:
        counts = ", ".join(f"{model} up to {n}" for model, n in missing.items())
        captions.append(f"samples with missing values (e.g. too few tokens for a ratio), excluded from means: {counts}")
    if busy:
        which = ", ".join(f"{model} ({flag['flag']})" for model, flag in busy.items())
        captions.append(f"* timing taken while other processes used the CPU: {which}")
    if mixed:
        which = ", ".join(f"{model} ({flag['reason']})" for model, flag in mixed.items())
        captions.append(f"† timing samples from different kinds of hardware: {which}")
    if captions:
        table.caption = Text("\n").join(plain(caption) for caption in captions)  # one_line per caption
    return table
