"""Exported baselines: a compact, commit-friendly ``baseline.json`` that a gate reads like a run.

Why a file and not the run directory: a run directory carries every generated text and token id
(megabytes); the gate needs only the metric values per (model, prompt id, sample index), the suite
hash that proves the prompts are the same, the model infos that prove which weights produced them,
and each metric's direction. One sample per line keeps ``git diff`` readable when a baseline moves.

Layout (``format_version`` 1)::

    {"format": "tinylm-harness-baseline", "format_version": 1, "created_at": "...",
     "suite": {"name", "sha256", "prompts_sha256", "n_prompts", "samples_per_prompt", "sampling"},
     "models": {"10m": {ModelInfo...}},
     "metrics": {"tps": {"unit", "higher_is_better", "kind", "level"}},
     "rounds": [{"run_id", "source", "environment", "batch_size",
                 "models": {"10m": {"status": "ok",
                                    "columns": ["prompt_id", "sample_index", "tps", ...],
                                    "rows": [["p001", 0, 296.1, ...], ...],
                                    "model_metrics": {"heldout_bpb": 1.23}}}}]}
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import UserError, did_you_mean
from harness.gate.data import Key, MetricMeta, Round, Side, clean_value
from harness.rundir import write_text_atomic

FORMAT = "tinylm-harness-baseline"
FORMAT_VERSION = 1


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


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value)


def dumps_compact(data: Any, indent: int = 0) -> str:
    """JSON with objects indented but lists of scalars on one line: one sample per line in ``rows``."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(data, dict):
        if not data:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {dumps_compact(v, indent + 2)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(data, list) and data and not _is_scalar_list(data):
        items = [f"{inner}{dumps_compact(v, indent + 2)}" for v in data]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


def write_baseline(
    side: Side, path: Path, models: list[str] | None = None, metrics: list[str] | None = None
) -> dict[str, Any]:
    """Write ``baseline.json`` atomically and return its content."""
    data = baseline_dict(side, models, metrics)
    write_text_atomic(path, dumps_compact(data) + "\n")
    return data


def _field(data: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in data:
        raise UserError(f"{where}: missing field {name!r}")
    if not isinstance(data[name], kind):
        raise UserError(f"{where}.{name}: expected {kind.__name__}, got {type(data[name]).__name__}")
    return data[name]


def side_from_baseline(data: dict[str, Any], path: Path) -> Side:
    """Rebuild a Side from a baseline file's content, naming the file and field when it is malformed."""
    where = str(path)
    if data.get("format") != FORMAT:
        raise UserError(
            f"{where}: not a harness baseline file (format {data.get('format')!r}); "
            f"make one with 'harness baseline export RUN_DIR -o {path.name}'"
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{where}: baseline format_version {data.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
        )
    suite = _field(data, "suite", dict, where)
    models = _field(data, "models", dict, where)
    metrics = {name: MetricMeta.from_dict(name, meta) for name, meta in _field(data, "metrics", dict, where).items()}
    rounds = []
    for index, entry in enumerate(_field(data, "rounds", list, where)):
        rwhere = f"{where}: rounds[{index}]"
        rnd = Round(
            run_id=str(entry.get("run_id", index)),
            source=str(entry.get("source", where)),
            environment=dict(entry.get("environment") or {}),
            batch_size=entry.get("batch_size"),
        )
        for model, block in _field(entry, "models", dict, rwhere).items():
            mwhere = f"{rwhere}.models.{model}"
            columns = _field(block, "columns", list, mwhere)
            if columns[:2] != ["prompt_id", "sample_index"]:
                raise UserError(f"{mwhere}.columns: must start with 'prompt_id', 'sample_index'")
            names = columns[2:]
            per_metric: dict[str, dict[Key, float | None]] = {m: {} for m in names}
            keys: list[Key] = []
            for number, row in enumerate(_field(block, "rows", list, mwhere)):
                if not isinstance(row, list) or len(row) != len(columns):
                    raise UserError(f"{mwhere}.rows[{number}]: expected {len(columns)} values like columns")
                key: Key = (str(row[0]), int(row[1]))
                keys.append(key)
                for name, value in zip(names, row[2:], strict=True):
                    per_metric[name][key] = clean_value(value)
            rnd.samples[model] = per_metric
            rnd.keys[model] = keys
            rnd.model_values[model] = {m: clean_value(v) for m, v in (block.get("model_metrics") or {}).items()}
            rnd.statuses[model] = str(block.get("status", "ok"))
        rounds.append(rnd)
    if not rounds:
        raise UserError(f"{where}: baseline has no rounds")
    if not suite.get("sha256"):
        raise UserError(f"{where}: suite.sha256 is missing; re-export the baseline")
    return Side(
        label=where,
        suite=suite,
        models={m: dict(info or {}) for m, info in models.items()},
        metrics=metrics,
        rounds=rounds,
    )


def load_baseline(path: Path) -> Side:
    """Read ``baseline.json`` (one-line errors for unreadable or malformed files)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read baseline ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a harness baseline file (top level is not an object)")
    return side_from_baseline(data, path)
