"""Which metrics a run computes, and computing them so that one failing metric costs nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.plugins import Registry
from harness.suite import LoadedSuite, Suite
from harness.types import Generation, Metric, Model, ModelContext, SampleContext, SamplingParams, as_float

SelectedMetrics = dict[str, tuple[Metric, dict[str, Any]]]
_SUITE_FIELD = {"reference_texts": "reference", "judge": "judge"}


def available_resources(suite: Suite) -> set[str]:
    """Resources a suite provides to metrics that declare ``requires``."""
    return {name for name, present in (("reference_texts", suite.reference), ("judge", suite.judge)) if present}


def select_metrics(suite: Suite, suite_path: Path, registry: Registry) -> SelectedMetrics:
    """The suite's metrics, or every default metric whose resources the suite provides."""
    available = available_resources(suite)
    requested = suite.metric_options()
    if requested is None:
        requested = {
            name: {}
            for name, metric in registry.metrics.items()
            if set(metric.requires) <= available and (metric.default or metric.requires)
        }
    selected: SelectedMetrics = {}
    for name, metric_options in requested.items():
        try:
            metric = registry.metric(name)
        except UserError as exc:
            raise UserError(f"{suite_path}: field 'metrics': {exc}") from None
        missing = set(metric.requires) - available
        if missing:
            fields = sorted(_SUITE_FIELD.get(m, m) for m in missing)
            raise UserError(
                f"{suite_path}: metric {name!r} needs the suite field(s) {fields}; add them or drop the metric"
            )
        selected[name] = (metric, metric_options)
    return selected


def check_suite_inputs(loaded: LoadedSuite, registry: Registry) -> None:
    """Everything a run would reject about a suite, without loading any model: metric names and their
    required fields, the judge spec, the reference file."""
    from harness.models import resolve_backend
    from harness.references import load_reference_texts

    select_metrics(loaded.suite, loaded.path, registry)
    if loaded.suite.judge:
        try:
            resolve_backend(loaded.suite.judge, registry)
        except UserError as exc:
            raise UserError(f"{loaded.path}: field 'judge': {exc}") from None
    if loaded.suite.reference is not None and loaded.suite.reference.path is not None:
        load_reference_texts(loaded.suite.reference, loaded.path)


def _error(exc: Exception) -> str:
    return f"{exc.__class__.__name__}: {exc}"


def sample_metrics(
    metrics: SelectedMetrics,
    generation: Generation,
    prompt_ids: list[int],
    model: Model,
    sampling: SamplingParams,
    resources: dict[str, Any],
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every sample-level metric's value (None = missing) and the errors of those that raised."""
    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name, (metric, options) in metrics.items():
        if metric.compute is None:
            continue
        ctx = SampleContext(generation, prompt_ids, model, sampling, options, resources)
        try:
            values[name] = as_float(metric.compute(ctx))
        except Exception as exc:  # one metric failing must not cost the sample or the others
            values[name], errors[name] = None, _error(exc)
    return values, errors


def model_metrics(
    metrics: SelectedMetrics, model: Model, records: list[dict[str, Any]], resources: dict[str, Any]
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every model-level metric's value and the errors of those that raised."""
    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name, (metric, options) in metrics.items():
        if metric.compute_model is None:
            continue
        try:
            values[name] = as_float(metric.compute_model(ModelContext(model, records, options, resources)))
        except Exception as exc:
            values[name], errors[name] = None, _error(exc)
    return values, errors
