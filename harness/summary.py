"""Per-model aggregation of metric values: the numbers behind the study's Table 2, with uncertainty."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from harness.records import Run, write_summary_files

STAT_FIELDS = ["mean", "median", "p5", "p95", "std", "ci_low", "ci_high", "n", "missing"]


def bootstrap_ci(
    values: np.ndarray,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    clusters: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling whole prompts when ``clusters`` (a prompt label per
    value) is given; deterministic for a given seed so summaries are reproducible.

    Why clusters: samples of one prompt share its difficulty, so with several samples per prompt they are
    not independent, and resampling samples gives intervals that are too narrow. Resampling prompts (each
    with all its samples) is the cluster bootstrap the gate uses too (docs/ci.md).
    """
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    if clusters is None or len(set(clusters.tolist())) == len(values):
        means = rng.choice(values, size=(resamples, len(values)), replace=True).mean(axis=1)
    else:
        _, index = np.unique(clusters, return_inverse=True)
        sums, counts = np.bincount(index, weights=values), np.bincount(index).astype(float)
        picks = rng.integers(0, len(sums), size=(resamples, len(sums)))
        means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def binomial_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion: a 0/1 metric is a rate, not a distribution."""
    interval = scipy_stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)


def describe(values: list[float | None], clusters: list[str] | None = None) -> dict[str, Any]:
    """Statistics of one metric for one model; missing values (None/NaN) are excluded and counted.

    ``clusters`` (the prompt id of each value) makes the interval resample prompts; a metric whose every
    value is 0 or 1 is a proportion (``"proportion": true``) and gets the exact binomial interval.
    """
    keep = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    arr = np.array([values[i] for i in keep], dtype=float)
    missing = len(values) - len(arr)
    if len(arr) == 0:
        return {field: None for field in STAT_FIELDS} | {"n": 0, "missing": missing}
    proportion = len(arr) > 1 and bool(np.isin(arr, (0.0, 1.0)).all())
    if proportion:
        low, high = binomial_ci(int(arr.sum()), len(arr))
    else:
        labels = np.array([clusters[i] for i in keep]) if clusters is not None else None
        low, high = bootstrap_ci(arr, clusters=labels)
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p5": float(np.quantile(arr, 0.05)),
        "p95": float(np.quantile(arr, 0.95)),
        "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
        "ci_low": low,
        "ci_high": high,
        "n": int(len(arr)),
        "missing": int(missing),
        **({"proportion": True} if proportion else {}),
    }


def summarize(run: Run) -> dict[str, Any]:
    """summary.json content: per metric, its direction and per-model statistics."""
    per_metric: dict[str, dict[str, Any]] = {}
    for name, meta in run.metrics.items():
        entry = {
            "unit": meta.get("unit", ""),
            "higher_is_better": meta.get("higher_is_better"),
            "level": meta.get("level", "sample"),
            "kind": meta.get("kind", "quality"),
            "models": {},
        }
        for model in run.models:
            if entry["level"] == "sample":
                rows = [r for r in run.samples if r["model"] == model and name in r["metrics"]]
                if rows:
                    prompts = [str(r["prompt_id"]) for r in rows]
                    entry["models"][model] = describe([r["metrics"].get(name) for r in rows], prompts)
                continue
            values = [r["metrics"].get(name) for r in run.model_metrics if r["model"] == model and name in r["metrics"]]
            if values:
                entry["models"][model] = describe(values)
        per_metric[name] = entry
    return {
        "suite": run.manifest.suite.name,
        "models": run.models,
        "metrics": per_metric,
        "timing_flags": run.timing_flags(),
        "hardware_flags": run.hardware_flags(),
    }


def summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """Long table (one row per model × metric) for summary.csv."""
    rows = []
    for name, entry in summary["metrics"].items():
        for model, stats in entry["models"].items():
            rows.append(
                {
                    "model": model,
                    "metric": name,
                    "unit": entry["unit"],
                    "higher_is_better": entry["higher_is_better"],
                    "level": entry["level"],
                    **{k: stats[k] for k in STAT_FIELDS},
                }
            )
    return pd.DataFrame(rows, columns=["model", "metric", "unit", "higher_is_better", "level", *STAT_FIELDS])


def write_summaries(run: Run) -> dict[str, Any]:
    """Compute and write summary.json and summary.csv (atomically) for a run; returns the summary."""
    summary = summarize(run)
    write_summary_files(run.path, summary, summary_frame(summary).to_csv(index=False))
    return summary
