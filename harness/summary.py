"""Per-model aggregation of metric values: the numbers behind the study's Table 2, with uncertainty."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from harness.records import Run, write_summary_files

STAT_FIELDS = ["mean", "median", "p5", "p95", "std", "ci_low", "ci_high", "n", "missing"]


def bootstrap_ci(
    values: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; deterministic for a given seed so summaries are reproducible."""
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(resamples, len(values)), replace=True).mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def describe(values: list[float | None]) -> dict[str, float | int | None]:
    """Statistics of one metric for one model; missing values (None/NaN) are excluded and counted."""
    arr = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    missing = len(values) - len(arr)
    if len(arr) == 0:
        return {
            "mean": None,
            "median": None,
            "p5": None,
            "p95": None,
            "std": None,
            "ci_low": None,
            "ci_high": None,
            "n": 0,
            "missing": missing,
        }
    low, high = bootstrap_ci(arr)
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
                values = [r["metrics"].get(name) for r in run.samples if r["model"] == model and name in r["metrics"]]
            else:
                values = [
                    r["metrics"].get(name) for r in run.model_metrics if r["model"] == model and name in r["metrics"]
                ]
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
