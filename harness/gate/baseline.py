"""Baselines for the gate: a :class:`Side` to and from ``baseline.json``.

Why a file and not the run directory: a run directory carries every generated text and token id
(megabytes); the gate needs only the metric values per (model, prompt id, sample index), the suite
hash that proves the prompts are the same, the model infos that prove which weights produced them,
and each metric's direction. The file format and its validation live in :mod:`harness.records.baseline`;
this module only converts between it and the gate's :class:`Side`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import UserError, did_you_mean
from harness.gate.data import Key, MetricMeta, Round, Side
from harness.records.baseline import FORMAT, FORMAT_VERSION, BaselineFile, read_baseline, write_baseline_file


def _select(names: list[str], wanted: list[str] | None, what: str, label: str) -> list[str]:
    """Restrict to the names asked for, failing loudly on a typo instead of exporting nothing."""
    if not wanted:
        return names
    for name in wanted:
        if name not in names:
            raise UserError(
                f"{label}: no {what} {name!r}{did_you_mean(name, names)}; it has {', '.join(names) or 'none'}"
            )
    return [n for n in names if n in wanted]


def baseline_dict(side: Side, models: list[str] | None = None, metrics: list[str] | None = None) -> dict[str, Any]:
    """The baseline file content for a side (all of its rounds), optionally a subset of models/metrics."""
    model_names = _select(side.model_names, models, "model", side.label)
    metric_names = _select(list(side.metrics), metrics, "metric", side.label)
    sample_metrics = [m for m in metric_names if side.metrics[m].level == "sample"]
    model_metrics = [m for m in metric_names if side.metrics[m].level != "sample"]
    rounds = []
    for rnd in side.rounds:
        per_model: dict[str, Any] = {}
        for model in model_names:
            values = rnd.samples.get(model, {})
            present = [m for m in sample_metrics if m in values]
            rows = [[key[0], key[1], *[values[m].get(key) for m in present]] for key in rnd.keys.get(model, [])]
            per_model[model] = {
                "status": rnd.statuses.get(model, "ok"),
                "columns": ["prompt_id", "sample_index", *present],
                "rows": rows,
                "model_metrics": {m: v for m, v in rnd.model_values.get(model, {}).items() if m in model_metrics},
            }
        rounds.append(
            {
                "run_id": rnd.run_id,
                "source": rnd.source,
                "environment": rnd.environment,
                "batch_size": rnd.batch_size,
                **({"timing_flags": {m: f for m, f in rnd.busy.items() if m in model_names}} if rnd.busy else {}),
                **(
                    {"hardware_flags": {m: f for m, f in rnd.mixed_hardware.items() if m in model_names}}
                    if rnd.mixed_hardware
                    else {}
                ),
                "models": per_model,
            }
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "suite": side.suite,
        "models": {m: side.models.get(m, {}) for m in model_names},
        "metrics": {m: side.metrics[m].to_dict() for m in metric_names},
        "rounds": rounds,
    }


def write_baseline(
    side: Side, path: Path, models: list[str] | None = None, metrics: list[str] | None = None
) -> dict[str, Any]:
    """Write ``baseline.json`` atomically and return its content."""
    data = baseline_dict(side, models, metrics)
    write_baseline_file(path, data)
    return data


def side_from_baseline(data: BaselineFile, path: Path) -> Side:
    """Rebuild a Side from a validated baseline file."""
    rounds = []
    for index, entry in enumerate(data.rounds):
        rnd = Round(
            run_id=entry.run_id or str(index),
            source=entry.source or str(path),
            environment=dict(entry.environment),
            batch_size=entry.batch_size,
            busy=dict(entry.timing_flags),
            mixed_hardware=dict(entry.hardware_flags),
        )
        for model, block in entry.models.items():
            names = block.columns[2:]
            per_metric: dict[str, dict[Key, float | None]] = {m: {} for m in names}
            keys: list[Key] = []
            for row in block.rows:
                key: Key = (row[0], row[1])  # type: ignore[assignment]  # validated: (str, int)
                keys.append(key)
                for name, value in zip(names, row[2:], strict=True):
                    per_metric[name][key] = None if value is None else float(value)
            rnd.samples[model] = per_metric
            rnd.keys[model] = keys
            rnd.model_values[model] = dict(block.model_metrics)
            rnd.statuses[model] = block.status
        rounds.append(rnd)
    return Side(
        label=str(path),
        suite=data.suite.model_dump(),
        models={m: dict(info) for m, info in data.models.items()},
        metrics={name: MetricMeta.from_dict(name, meta.model_dump()) for name, meta in data.metrics.items()},
        rounds=rounds,
    )


def load_baseline(path: Path) -> Side:
    """Read ``baseline.json`` (one-line errors for unreadable, malformed or damaged files)."""
    return side_from_baseline(read_baseline(path), path)
