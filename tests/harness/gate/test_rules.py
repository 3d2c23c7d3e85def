"""Rules files: defaults without a file, layering, and errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.gate.rules import Rules, direction_of, load_rules


def test_defaults_without_rules_file() -> None:
    rules = load_rules(None)
    quality = rules.resolve("perplexity", "10m", "quality", False)
    timing = rules.resolve("tps", "10m", "timing", True)
    count = rules.resolve("tokens_generated", "10m", "count", None)
    assert (quality.direction, quality.replicate, quality.rel_tolerance) == ("lower", "samples", 0.02)
    assert (timing.direction, timing.replicate, timing.rel_tolerance) == ("higher", "runs", 0.05)
    assert count.direction == "none"
    assert quality.alpha == 0.05 and quality.test == "auto" and quality.gate and not quality.strict


@pytest.mark.parametrize(("higher_is_better", "direction"), [(True, "higher"), (False, "lower"), (None, "none")])
def test_direction_comes_from_higher_is_better(higher_is_better: bool | None, direction: str) -> None:
    assert direction_of(higher_is_better) == direction


def test_layers_apply_in_order(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("""
defaults: {alpha: 0.01}
kinds:
  timing: {rel_tolerance: 0.10}
metrics:
  tps:
    abs_tolerance: 5
    models:
      "2.5m": {rel_tolerance: 0.2, gate: false}
  tokens_generated: {direction: any}
  perplexity: {test: exact}
require_match: [weights]
timing_other_machine: gate
""")
    rules = load_rules(path)
    assert rules.resolve("tps", "10m", "timing", True).rel_tolerance == 0.10
    assert rules.resolve("tps", "10m", "timing", True).abs_tolerance == 5
    small = rules.resolve("tps", "2.5m", "timing", True)
    assert small.rel_tolerance == 0.2 and small.gate is False and small.alpha == 0.01
    assert rules.resolve("latency_ms", "10m", "timing", False).rel_tolerance == 0.10
    assert rules.resolve("tokens_generated", "10m", "count", None).direction == "any"
    assert rules.resolve("perplexity", "10m", "quality", False).test == "exact"
    assert rules.spec.require_match == ["weights"] and rules.spec.timing_other_machine == "gate"


def test_empty_rules_file_is_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("# nothing\n")
    assert load_rules(path).resolve("tps", "m", "timing", True) == Rules().resolve("tps", "m", "timing", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics:\n  tps: {rel_tolerance: -1}\n", "metrics.tps.rel_tolerance"),
        ("metrics:\n  tps: {alpha: 2}\n", "metrics.tps.alpha"),
        ("metrics:\n  tps: {test: ttest}\n", "metrics.tps.test"),
        ("metrics:\n  tps: {tolerance: 0.1}\n", "metrics.tps.tolerance"),
        ("metrics:\n  tps:\n    models: {m: {direction: up}}\n", "metrics.tps.models.m.direction"),
        ("kinds: {latency: {alpha: 0.1}}\n", "kinds.latency"),
        ("require_match: [colour]\n", "require_match.0"),
    ],
)
def test_validation_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_rules(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("metrics:\n  tps: {rel_tolerance: 0.1\n")
    with pytest.raises(UserError, match=r"gates.yaml:3: malformed YAML"):
        load_rules(path)


def test_non_mapping_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="is a mapping"):
        load_rules(path)
    with pytest.raises(UserError, match="file not found"):
        load_rules(tmp_path / "absent.yaml")


def test_unknown_metric_or_model_in_rules_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("metrics:\n  perplexty: {alpha: 0.01}\n")
    with pytest.raises(UserError, match=r"metrics.perplexty: no such metric.*did you mean 'perplexity'"):
        load_rules(path).check_names(["perplexity", "tps"], ["10m"])
    path.write_text("metrics:\n  tps:\n    models: {'1m': {alpha: 0.01}}\n")
    with pytest.raises(UserError, match=r"metrics.tps.models.1m: no such model"):
        load_rules(path).check_names(["perplexity", "tps"], ["10m"])
