"""What a gate compares: one *side* (baseline or candidate) made of one or more *rounds*.

A round is one run of the suite. Quality metrics are replicated by samples inside a round;
timing metrics are replicated by rounds (a noisy neighbour shifts every sample of a run at once,
see the gates spec, shared/spec/gates.md §3), so the side keeps rounds apart instead of pooling them.

Run directories and exported baseline files both load into a :class:`Side`, so the statistics
never care where the numbers came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError, did_you_mean
from harness.records import MANIFEST, Run, load_run

Key = tuple[str, int]  # (prompt_id, sample_index): the unit a paired test pairs on


@dataclass(frozen=True)
class MetricMeta:
    """Direction, kind and level of a metric, as the run recorded it in metrics.json."""

    name: str
    unit: str = ""
    higher_is_better: bool | None = None
    kind: str = "quality"  # timing | quality | count
    level: str = "sample"  # sample | model

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "higher_is_better": self.higher_is_better, "kind": self.kind, "level": self.level}

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> MetricMeta:
        return cls(
            name=name,
            unit=str(data.get("unit", "") or ""),
            higher_is_better=data.get("higher_is_better"),
            kind=str(data.get("kind", "quality") or "quality"),
            level=str(data.get("level", "sample") or "sample"),
        )


@dataclass
class Round:
    """One run: per-sample values (model -> metric -> key -> value) and model-level values."""

    run_id: str
    source: str
    environment: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    samples: dict[str, dict[str, dict[Key, float | None]]] = field(default_factory=dict)
    keys: dict[str, list[Key]] = field(default_factory=dict)  # model -> every sample key, even all-missing ones
    model_values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    busy: dict[str, str] = field(default_factory=dict)  # model -> flag, when its timing window was contended
    mixed_hardware: dict[str, str] = field(default_factory=dict)  # model -> reason, timing from several machine kinds


@dataclass
class Side:
    """A baseline or a candidate: suite identity, model infos, metric metadata and its rounds."""

    label: str
    suite: dict[str, Any]
    models: dict[str, dict[str, Any]]  # name -> ModelInfo dict (may be empty when unknown)
    metrics: dict[str, MetricMeta]
    rounds: list[Round]

    @property
    def model_names(self) -> list[str]:
        return list(self.models)

    @property
    def environment(self) -> dict[str, Any]:
        """The first round's machine description (rounds of one side normally share a machine)."""
        return self.rounds[0].environment if self.rounds else {}


def clean_value(value: Any) -> float | None:
    """A metric value as a finite float, or None for missing (None, NaN, inf, non-numbers)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def round_from_run(run: Run) -> Round:
    """Pull the per-sample and model-level values of one (validated) run directory into a Round."""
    manifest = run.manifest
    rnd = Round(
        run_id=manifest.run_id,
        source=str(run.path),
        environment=dict(manifest.environment),
        batch_size=manifest.batch_size,
        statuses={m.name: m.status for m in manifest.models},
        busy={model: flag["flag"] for model, flag in run.timing_flags().items()},
        mixed_hardware={model: flag["reason"] for model, flag in run.hardware_flags().items()},
    )
    seen: dict[str, list[Key]] = {}  # load_run guarantees each (model, prompt, index) once
    for record in run.samples:
        model = record["model"]
        key: Key = (record["prompt_id"], record["sample_index"])
        seen.setdefault(model, []).append(key)
        per_metric = rnd.samples.setdefault(model, {})
        for name, value in record["metrics"].items():
            per_metric.setdefault(name, {})[key] = clean_value(value)
    rnd.keys = seen
    for record in run.model_metrics:
        for name, value in record["metrics"].items():
            rnd.model_values.setdefault(record["model"], {})[name] = clean_value(value)
    return rnd


def _metric_metas(run: Run) -> dict[str, MetricMeta]:
    """metrics.json, plus any metric that only appears in the samples (direction unknown)."""
    metas = {name: MetricMeta.from_dict(name, meta) for name, meta in run.metrics.items()}
    for record in run.samples:
        for name in record.get("metrics") or {}:
            metas.setdefault(name, MetricMeta(name=name))
    for record in run.model_metrics:
        for name in record.get("metrics") or {}:
            metas.setdefault(name, MetricMeta(name=name, level="model"))
    return metas


def side_from_runs(runs: list[Run], label: str, allow_incomplete: bool = False) -> Side:
    """Several run directories of one suite as the rounds of one side.

    Rounds must share the suite hash: rounds of different suites are not replicates of anything.
    """
    if not runs:
        raise UserError(f"{label}: no run directories given")
    first = runs[0]
    for run in runs:
        status = run.manifest.status
        if status != "complete" and not allow_incomplete:
            raise UserError(f"{run.path}: run status is {status!r}, not 'complete'; finish or re-run it before gating")
        if run.suite_sha256 != first.suite_sha256:
            raise UserError(
                f"{label}: rounds {first.path} and {run.path} ran different suites "
                f"(sha256 {first.suite_sha256[:12]} vs {run.suite_sha256[:12]}); a side's rounds must repeat one suite"
            )
    models: dict[str, dict[str, Any]] = {}
    metas: dict[str, MetricMeta] = {}
    for run in runs:
        for entry in run.manifest.models:
            models.setdefault(entry.name, dict(entry.info or {}))
        for name, meta in _metric_metas(run).items():
            metas.setdefault(name, meta)
    return Side(
        label=label,
        suite=first.manifest.suite.identity(),
        models=models,
        metrics=metas,
        rounds=[round_from_run(run) for run in runs],
    )


def expand_run_paths(paths: list[Path]) -> list[Path]:
    """Each path is a run directory, or a directory whose sub-directories are run directories (one per round)."""
    expanded: list[Path] = []
    for path in paths:
        if (path / MANIFEST).is_file():
            expanded.append(path)
        elif path.is_dir():
            children = sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
            if not children:
                raise UserError(f"{path}: not a run directory (no {MANIFEST}) and holds no run directories")
            expanded.extend(children)
        else:
            raise UserError(
                f"{path}: not found; pass a run directory or a baseline file from 'harness baseline export'"
            )
    return expanded


def load_side(paths: list[Path], label: str) -> Side:
    """Load a side from run directories (rounds) or from one exported baseline file."""
    from harness.gate.baseline import load_baseline  # local: baseline imports this module

    files = [p for p in paths if p.is_file()]
    if files:
        if len(paths) != 1:
            raise UserError(
                f"{label}: give either one baseline file or run directories, not both ({', '.join(map(str, paths))})"
            )
        return load_baseline(files[0])
    return side_from_runs([load_run(p) for p in expand_run_paths(paths)], label=", ".join(map(str, paths)))


def refuse_partial(side: Side, what: str) -> None:
    """A run made with ``--limit`` covers only some of the suite's prompts: it is never a baseline."""
    overrides = side.suite.get("overrides") or {}
    if side.suite.get("partial"):
        raise UserError(
            f"{side.label}: a partial run (--limit {overrides.get('limit')}: only some prompts of suite "
            f"{side.suite.get('name')!r}) cannot be {what}; run the whole suite without --limit"
        )


def parse_model_map(pairs: list[str]) -> dict[str, str]:
    """``--map CANDIDATE=BASELINE`` (repeatable) -> {baseline name: candidate name}."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        candidate, sep, baseline = pair.partition("=")
        if not sep or not candidate.strip() or not baseline.strip():
            raise UserError(f"--map {pair!r}: expected CANDIDATE=BASELINE, e.g. --map ckpt/step-2000=ckpt/step-1000")
        candidate, baseline = candidate.strip(), baseline.strip()
        if baseline in mapping:
            raise UserError(f"--map: baseline model {baseline!r} is mapped twice")
        if candidate in mapping.values():
            raise UserError(f"--map: candidate model {candidate!r} is mapped twice")
        mapping[baseline] = candidate
    return mapping


def map_models(baseline: Side, candidate: Side, mapping: dict[str, str]) -> Side:
    """The baseline with its models renamed to the candidate's names they are compared with.

    Why rename the baseline: everything downstream (rules per model, notes, reports) speaks the candidate's
    names, which are what the user is gating. The weights, tokenizer, dtype and device checks still apply
    to the renamed pair, so two models with different tokenizers stay refused, with the reason.
    """
    if not mapping:
        return baseline
    for base_name, cand_name in mapping.items():
        if base_name not in baseline.models:
            raise UserError(
                f"--map {cand_name}={base_name}: the baseline has no model {base_name!r}"
                f"{did_you_mean(base_name, baseline.model_names)}; it has {', '.join(baseline.model_names)}"
            )
        if cand_name not in candidate.models:
            raise UserError(
                f"--map {cand_name}={base_name}: the candidate has no model {cand_name!r}"
                f"{did_you_mean(cand_name, candidate.model_names)}; it has {', '.join(candidate.model_names)}"
            )
        clash = cand_name in baseline.models and cand_name not in mapping
        if clash:
            raise UserError(
                f"--map {cand_name}={base_name}: the baseline already has a model {cand_name!r}; map it too or "
                "gate a subset with --model"
            )

    def rename(per_model: dict[str, Any]) -> dict[str, Any]:
        return {mapping.get(name, name): value for name, value in per_model.items()}

    rounds = [
        Round(
            run_id=rnd.run_id,
            source=rnd.source,
            environment=rnd.environment,
            batch_size=rnd.batch_size,
            samples=rename(rnd.samples),
            keys=rename(rnd.keys),
            model_values=rename(rnd.model_values),
            statuses=rename(rnd.statuses),
            busy=rename(rnd.busy),
        )
        for rnd in baseline.rounds
    ]
    return Side(
        label=baseline.label,
        suite=baseline.suite,
        models=rename(baseline.models),
        metrics=baseline.metrics,
        rounds=rounds,
    )
