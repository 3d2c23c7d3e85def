"""What every section renders from: the loaded runs, split into series that may share a table.

A *series* is the samples of one run with one ``batched`` flag. Batched generation measures throughput
under batching, so its latency numbers must never sit in a table or a trace with batch-1 numbers;
splitting by the flag up front makes that impossible for every section, plugins included.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import plotly.colors
import plotly.graph_objects as go
import plotly.io as pio

from harness.records import Run
from harness.report.markup import json_block, slug
from harness.terminal_table import STUDY_ORDER as _TABLE2_ORDER

# The study's Table 2 rows come first (STUDY_ORDER, shared with the terminal table); other metrics follow
# in the order the run registered them.
STUDY_ORDER = list(_TABLE2_ORDER)

# Labels as the study's Table 2 prints them; any other metric is labelled by its name and unit.
STUDY_LABELS = {
    "ttft_ms": "TTFT (ms)",
    "tps": "TPS (tokens/sec)",
    "latency_ms": "Total Latency (ms)",
    "tokens_generated": "Tokens Generated (avg)",
    "perplexity": "Perplexity",
    "avg_token_prob": "Avg Token Probability",
    "repetition_rate": "Repetition Rate",
    "coherence_length": "Coherence Length",
    "vocab_diversity": "Vocab Diversity",
}

TEMPLATE = "plotly_white"


@lru_cache(maxsize=1)
def default_template_json() -> dict[str, Any]:
    """The template as it appears in a figure's JSON; figures using it drop their copy (7 kB each)."""
    return json.loads(go.Figure(layout={"template": TEMPLATE}).to_json())["layout"]["template"]


PALETTE = plotly.colors.qualitative.D3 + plotly.colors.qualitative.Dark2  # distinct hues first
SYMBOLS = ["circle", "diamond", "square", "triangle-up", "x", "cross", "star", "triangle-down"]


def metric_label(name: str, meta: dict[str, Any]) -> str:
    """Human label of a metric: the study's wording for its nine, else ``name (unit)``."""
    if name in STUDY_LABELS:
        return STUDY_LABELS[name]
    unit = meta.get("unit") or ""
    return f"{name} ({unit})" if unit else name


def finite(value: Any) -> float | None:
    """A metric value as float, or None when missing (None, NaN, inf, or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Series:
    """The samples of one run that share a ``batched`` flag."""

    run: Run
    run_index: int
    batched: bool
    samples: list[dict[str, Any]]
    run_label: str  # empty when the report shows a single run

    @property
    def label(self) -> str:
        """Caption suffix: which run, and whether it was batched."""
        parts = [self.run_label] if self.run_label else []
        if self.batched:
            parts.append(f"batched (batch size {self.run.manifest.batch_size})")
        return " · ".join(parts)

    @property
    def models(self) -> list[str]:
        """Models of the run in run order, plus any model seen only in samples (a damaged manifest)."""
        seen = [m for m in self.run.models if any(s.get("model") == m for s in self.samples)]
        for sample in self.samples:
            if sample.get("model") not in seen:
                seen.append(sample.get("model"))
        return seen

    def trace_name(self, model: str) -> str:
        """Legend name: the model, then "run N" and "batched" only when needed to tell traces apart (the
        run's full name is in the header; a legend of long run ids squeezes the plots)."""
        parts = [model]
        if self.run_label:
            parts.append(f"run {self.run_index + 1}")
        if self.batched:
            parts.append("batched")
        return " · ".join(parts)

    def model_samples(self, model: str) -> list[dict[str, Any]]:
        return [s for s in self.samples if s.get("model") == model]

    def values(self, metric: str, model: str, level: str = "sample") -> list[float | None]:
        """Values of a metric for one model: per sample, or the model-level record(s) of the run."""
        if level == "model":
            return [
                finite(r.get("metrics", {}).get(metric))
                for r in self.run.model_metrics
                if r.get("model") == model and metric in r.get("metrics", {})
            ]
        return [
            finite(s.get("metrics", {}).get(metric))
            for s in self.model_samples(model)
            if metric in s.get("metrics", {})
        ]

    def prompt_ids(self, metric: str, model: str) -> list[str]:
        """The prompt of each value ``values(metric, model)`` returns (for intervals that resample prompts)."""
        return [str(s.get("prompt_id")) for s in self.model_samples(model) if metric in s.get("metrics", {})]


@dataclass
class ReportContext:
    """Everything a section needs; passed to ``ReportSection.render``."""

    runs: list[Run]
    series: list[Series]
    metrics: dict[str, dict[str, Any]]  # name -> unit, higher_is_better, level, kind, description
    metric_order: list[str]
    model_colors: dict[str, str]
    _figures: list[str] = field(default_factory=list)

    @property
    def suites(self) -> list[str]:
        return list(dict.fromkeys(r.manifest.suite.name for r in self.runs))

    @property
    def models(self) -> list[str]:
        """Every model in any run, first-seen order."""
        return list(dict.fromkeys(m for s in self.series for m in s.models))

    def sample_metrics(self) -> list[str]:
        """Sample-level metrics with at least one value in the run(s), so plugin metrics appear by themselves."""
        present = {name for s in self.series for sample in s.samples for name in sample.get("metrics", {})}
        return [m for m in self.metric_order if m in present and self.metrics[m].get("level", "sample") == "sample"]

    def color(self, model: str) -> str:
        return self.model_colors.get(model, PALETTE[0])

    def symbol(self, series: Series) -> str:
        """Marker symbol per run (and batched series), so runs stay apart while colour means model."""
        return SYMBOLS[(series.run_index * 2 + int(series.batched)) % len(SYMBOLS)]

    def figure(self, fig: go.Figure, name: str, lazy: bool = False) -> str:
        """HTML for a plotly figure: an empty div plus its escaped JSON; the page script draws it.

        Sections (plugins too) call this instead of ``fig.to_html`` so plotly.js is embedded once and
        the figure JSON goes through the same escaping as everything else. A ``lazy`` figure is drawn
        when it scrolls near the viewport: dozens of small multiples far down the page would otherwise
        delay the moment the page becomes usable (benchmarks/report_load.py).
        """
        fig_id = f"fig-{slug(name)}-{len(self._figures)}"
        self._figures.append(fig_id)
        spec = json.loads(pio.to_json(fig, validate=False, engine="json"))  # numpy and NaN made JSON-safe
        layout = spec.get("layout", {})
        if layout.get("template") == default_template_json():
            del layout["template"]  # the page applies it once instead of repeating 7 kB per figure
        lazy_attr = ' data-lazy="true"' if lazy else ""
        return f'<div class="plot" id="{fig_id}" data-spec="{fig_id}-spec"{lazy_attr}></div>' + json_block(
            f"{fig_id}-spec", {"data": spec.get("data", []), "layout": layout}
        )

    @property
    def figure_ids(self) -> list[str]:
        return list(self._figures)


def _series_of(run: Run, index: int, label: str) -> list[Series]:
    flags = sorted({bool(s.get("batched", False)) for s in run.samples}) or [False]
    return [
        Series(
            run=run,
            run_index=index,
            batched=flag,
            run_label=label,
            samples=[s for s in run.samples if bool(s.get("batched", False)) == flag],
        )
        for flag in flags
    ]


def _merged_metrics(runs: Iterable[Run]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """metrics.json of all runs merged; metrics found only in samples are added, so nothing is hidden."""
    merged: dict[str, dict[str, Any]] = {}
    for run in runs:
        for name, meta in run.metrics.items():
            merged.setdefault(name, dict(meta))
        for record in run.samples:
            for name in record.get("metrics", {}):
                merged.setdefault(
                    name,
                    {
                        "unit": "",
                        "higher_is_better": None,
                        "level": "sample",
                        "kind": "quality",
                        "description": "not described in metrics.json",
                    },
                )
        for record in run.model_metrics:
            for name in record.get("metrics", {}):
                merged.setdefault(
                    name,
                    {
                        "unit": "",
                        "higher_is_better": None,
                        "level": "model",
                        "kind": "quality",
                        "description": "not described in metrics.json",
                    },
                )
    order = [m for m in STUDY_ORDER if m in merged] + [m for m in merged if m not in STUDY_ORDER]
    return merged, order


def run_label(run: Run) -> str:
    """Short name of a run for captions and legends: its directory name."""
    return run.path.name or str(run.path)


def build_context(runs: list[Run]) -> ReportContext:
    """Split runs into series and fix one colour per model for every figure of the report."""
    multi = len(runs) > 1
    series = [
        s for i, run in enumerate(runs) for s in _series_of(run, i, f"#{i + 1} {run_label(run)}" if multi else "")
    ]
    metrics, order = _merged_metrics(runs)
    models = list(dict.fromkeys(m for s in series for m in [*s.run.models, *s.models]))
    colors = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(models)}
    return ReportContext(runs=runs, series=series, metrics=metrics, metric_order=order, model_colors=colors)
