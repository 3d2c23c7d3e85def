"""The study's published Table 2, typed in from the blog post, to show beside a TinyStories run.

These are the study author's numbers on his hardware (one NVIDIA L4 GPU), not measurements of this
harness; the table says so in its caption so nobody mistakes them for ours. Percentages are stored as
fractions like our metrics (13.0% -> 0.130) so one formatter prints both tables.
"""

from __future__ import annotations

from harness.report.context import STUDY_LABELS, STUDY_ORDER, ReportContext
from harness.report.markup import esc, fmt_metric

STUDY_SUITE = "tinystories"
STUDY_SOURCE = (
    "Abhishek Dey, “Tiny Models Under the Microscope” (blog post, June 2026), Table 2: Performance Benchmarks"
)
STUDY_HARDWARE = "NVIDIA L4 GPU (24 GB)"
STUDY_MODELS = ["10M", "7M", "5M", "2.5M"]

# metric -> one value per STUDY_MODELS entry, exactly as printed in the post.
STUDY_TABLE2: dict[str, list[float]] = {
    "ttft_ms": [5.5, 7.8, 4.1, 4.1],
    "tps": [297, 169, 531, 538],
    "latency_ms": [90.2, 178.5, 61.0, 68.7],
    "tokens_generated": [26.7, 30.3, 32.2, 37.1],
    "perplexity": [4.1, 3.8, 4.3, 3.8],
    "avg_token_prob": [0.496, 0.513, 0.494, 0.538],
    "repetition_rate": [0.130, 0.122, 0.095, 0.068],
    "coherence_length": [21.7, 23.2, 22.4, 27.3],
    "vocab_diversity": [0.823, 0.812, 0.835, 0.837],
}
STUDY_UNITS = {"repetition_rate": "%", "vocab_diversity": "%"}


def applies(ctx: ReportContext) -> bool:
    """Shown only for the TinyStories suite, the only one whose prompts match the study's setup."""
    return STUDY_SUITE in ctx.suites


def _seed_fmt(metric: str, value: float) -> str:
    """The post's own precision: one decimal, three for probabilities, integers for TPS."""
    if metric in STUDY_UNITS:
        return fmt_metric(value, {"unit": "%"})
    if metric == "tps":
        return f"{value:.0f}"
    if metric == "avg_token_prob":
        return f"{value:.3f}"
    return f"{value:.1f}"


def study_table(ctx: ReportContext | None = None) -> str:
    """The study's Table 2 in the same layout as ours, captioned as the study's figures on an L4."""
    heads = "".join(f"<th>{esc(m)}</th>" for m in STUDY_MODELS)
    rows = "".join(
        f'<tr data-metric="{metric}"><td class="num">{i}</td><th scope="row">{esc(STUDY_LABELS[metric])}</th>'
        + "".join(f"<td>{esc(_seed_fmt(metric, v))}</td>" for v in STUDY_TABLE2[metric])
        + "</tr>"
        for i, metric in enumerate(STUDY_ORDER, 1)
    )
    caption = (
        f"The study's published figures, not measured here: {esc(STUDY_SOURCE)}; {esc(STUDY_HARDWARE)}, "
        "100 samples per model, temperature 0.8, top-k 50, max 256 tokens. Its timings come from a GPU and "
        "its perplexities from different tokenizers, so compare shapes, not digits."
    )
    return (
        f'<table class="summary seed" data-seed="true"><caption>{caption}</caption>'
        f"<thead><tr><th>#</th><th>Metric</th>{heads}</tr></thead><tbody>{rows}</tbody></table>"
    )
