"""The seed's published Table 2, typed in from the blog post, to show beside a TinyStories run.

These are the seed author's numbers on his hardware (one NVIDIA L4 GPU), not measurements of this
harness; the table says so in its caption so nobody mistakes them for ours. Percentages are stored as
fractions like our metrics (13.0% -> 0.130) so one formatter prints both tables.
"""

from __future__ import annotations

from harness.report.context import SEED_LABELS, SEED_ORDER, ReportContext
from harness.report.markup import esc, fmt_metric

SEED_SUITE = "tinystories"
SEED_SOURCE = "Abhishek Dey, “Tiny Models Under the Microscope” (blog post, June 2026), Table 2: Performance Benchmarks"
SEED_HARDWARE = "NVIDIA L4 GPU (24 GB)"
SEED_MODELS = ["10M", "7M", "5M", "2.5M"]

# metric -> one value per SEED_MODELS entry, exactly as printed in the post.
SEED_TABLE2: dict[str, list[float]] = {
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
SEED_UNITS = {"repetition_rate": "%", "vocab_diversity": "%"}


def applies(ctx: ReportContext) -> bool:
    """Shown only for the TinyStories suite, the only one whose prompts match the seed's setup."""
    return SEED_SUITE in ctx.suites


def _seed_fmt(metric: str, value: float) -> str:
    """The post's own precision: one decimal, three for probabilities, integers for TPS."""
    if metric in SEED_UNITS:
        return fmt_metric(value, {"unit": "%"})
    if metric == "tps":
        return f"{value:.0f}"
    if metric == "avg_token_prob":
        return f"{value:.3f}"
    return f"{value:.1f}"


def seed_table(ctx: ReportContext | None = None) -> str:
    """The seed's Table 2 in the same layout as ours, captioned as the seed's figures on an L4."""
    heads = "".join(f"<th>{esc(m)}</th>" for m in SEED_MODELS)
    rows = "".join(
        f'<tr data-metric="{metric}"><td class="num">{i}</td><th scope="row">{esc(SEED_LABELS[metric])}</th>'
        + "".join(f"<td>{esc(_seed_fmt(metric, v))}</td>" for v in SEED_TABLE2[metric])
        + "</tr>"
        for i, metric in enumerate(SEED_ORDER, 1)
    )
    caption = (
        f"The seed's published figures, not measured here: {esc(SEED_SOURCE)}; {esc(SEED_HARDWARE)}, "
        "100 samples per model, temperature 0.8, top-k 50, max 256 tokens. Its timings come from a GPU and "
        "its perplexities from different tokenizers, so compare shapes, not digits."
    )
    return (
        f'<table class="summary seed" data-seed="true"><caption>{caption}</caption>'
        f"<thead><tr><th>#</th><th>Metric</th>{heads}</tr></thead><tbody>{rows}</tbody></table>"
    )
