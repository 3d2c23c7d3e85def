"""Gate rules: what counts as a regression, per metric and optionally per model.

A rules file is optional: the built-in defaults per metric kind are what most users want
(quality metrics strict, timing metrics replicated by runs with a wider tolerance). Settings are
layered, later wins::

    built-in kind default < defaults: < kinds.<kind>: < metrics.<name>: < metrics.<name>.models.<model>:

Example ``gates.yaml``::

    defaults: {alpha: 0.05}
    kinds:
      timing: {rel_tolerance: 0.10}
    metrics:
      perplexity: {test: exact, abs_tolerance: 1.0e-9}
      tps:
        models: {"2.5m": {rel_tolerance: 0.20}}
      tokens_generated: {direction: any}
    require_match: [tokenizer, dtype, device]
    timing_other_machine: report

Unknown fields and unknown metric or model names are errors (a typo must not silently disable a gate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import UserError, did_you_mean

Direction = Literal["higher", "lower", "any", "none"]
TestChoice = Literal["auto", "wilcoxon", "mannwhitney", "exact"]
Replicate = Literal["runs", "samples"]
Kind = Literal["timing", "quality", "count"]
MatchField = Literal["weights", "tokenizer", "dtype", "device"]


class Settings(BaseModel):
    """One layer of gate settings; ``None`` means "inherit from the layer below"."""

    model_config = ConfigDict(extra="forbid")

    direction: Direction | None = Field(
        None, description="higher/lower is better, any = a change either way regresses, none = report only"
    )
    rel_tolerance: float | None = Field(
        None, ge=0, description="allowed worsening relative to the baseline mean (0.05 = 5%)"
    )
    abs_tolerance: float | None = Field(None, ge=0, description="allowed worsening in the metric's unit")
    alpha: float | None = Field(None, gt=0, lt=1, description="significance level before Holm correction")
    test: TestChoice | None = Field(
        None, description="auto: Wilcoxon when samples pair, else Mann-Whitney; exact: any difference fails"
    )
    replicate: Replicate | None = Field(None, description="runs: one value per round (timing); samples: one per sample")
    strict: bool | None = Field(None, description="require the whole confidence interval beyond the tolerance")
    gate: bool | None = Field(None, description="false = report the metric but never fail on it")


class MetricRule(Settings):
    """Settings of one metric, with optional per-model overrides."""

    models: dict[str, Settings] = Field(default_factory=dict)


class RulesFile(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    defaults: Settings = Field(default_factory=Settings)
    kinds: dict[Kind, Settings] = Field(default_factory=dict)
    metrics: dict[str, MetricRule] = Field(default_factory=dict)
    require_match: list[MatchField] = Field(default_factory=lambda: ["tokenizer", "dtype", "device"])
    timing_other_machine: Literal["report", "gate"] = "report"
    bootstrap_resamples: int = Field(2000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)


@dataclass(frozen=True)
class Rule:
    """The resolved settings for one metric × model: every field set."""

    direction: Direction
    rel_tolerance: float
    abs_tolerance: float
    alpha: float
    test: TestChoice
    replicate: Replicate
    strict: bool
    gate: bool


# Why these defaults: quality metrics of a seeded run reproduce exactly, so a small tolerance only
# has to absorb genuine model/code changes that do not matter (2%) and floating-point noise (1e-9);
# timing metrics vary ~3% run to run on shared machines (gates.md), so 5% with rounds as replicates.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "quality": {"rel_tolerance": 0.02, "abs_tolerance": 1e-9, "replicate": "samples"},
    "count": {"rel_tolerance": 0.02, "abs_tolerance": 1e-9, "replicate": "samples"},
    "timing": {"rel_tolerance": 0.05, "abs_tolerance": 0.0, "replicate": "runs"},
}
COMMON_DEFAULTS: dict[str, Any] = {"alpha": 0.05, "test": "auto", "strict": False, "gate": True}


def direction_of(higher_is_better: bool | None) -> Direction:
    """The metric's own direction: a metric with no better direction is reported, not gated."""
    return "higher" if higher_is_better is True else "lower" if higher_is_better is False else "none"


class Rules:
    """A validated rules file plus the lookup that resolves one metric × model."""

    def __init__(self, spec: RulesFile | None = None, source: str = "built-in defaults") -> None:
        self.spec = spec or RulesFile()
        self.source = source

    def resolve(self, metric: str, model: str, kind: str, higher_is_better: bool | None) -> Rule:
        """Layer the settings for one metric × model (see the module docstring for the order)."""
        merged: dict[str, Any] = {
            **COMMON_DEFAULTS,
            **KIND_DEFAULTS.get(kind, KIND_DEFAULTS["quality"]),
            "direction": direction_of(higher_is_better),
        }
        layers: list[Settings] = [self.spec.defaults]
        if kind in self.spec.kinds:
            layers.append(self.spec.kinds[kind])  # type: ignore[index]
        metric_rule = self.spec.metrics.get(metric)
        if metric_rule is not None:
            layers.append(metric_rule)
            if model in metric_rule.models:
                layers.append(metric_rule.models[model])
        for layer in layers:
            merged.update({k: v for k, v in layer.model_dump(exclude={"models"}).items() if v is not None})
        return Rule(**merged)

    def check_names(self, metrics: list[str], models: list[str]) -> None:
        """Fail on rules for metrics or models the runs do not have: a typo would silently disable a gate."""
        for name, rule in self.spec.metrics.items():
            if name not in metrics:
                raise UserError(
                    f"{self.source}: metrics.{name}: no such metric in the runs{did_you_mean(name, metrics)}"
                )
            for model in rule.models:
                if model not in models:
                    raise UserError(
                        f"{self.source}: metrics.{name}.models.{model}: no such model in the runs"
                        f"{did_you_mean(model, models)}"
                    )


def _format_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{path}: {loc}: {first['msg']}{more}"


def load_rules(path: Path | None) -> Rules:
    """Read and validate a rules file; ``None`` gives the defaults. Errors name the file and field."""
    if path is None:
        return Rules()
    from harness.yaml_safe import load_yaml, read_capped  # bounded: no alias bombs, no NaN, no 1 GB files

    try:
        text = read_capped(path, "rules file").decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; a rules file is YAML") from None
    data, _ = load_yaml(text, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a rules file is a mapping (defaults:, kinds:, metrics:), not {type(data).__name__}")
    try:
        spec = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(_format_error(path, exc)) from exc
    return Rules(spec, source=str(path))
