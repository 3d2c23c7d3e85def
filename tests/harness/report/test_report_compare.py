"""Comparison view: the report decides each pair exactly as ``harness gate`` does, and says why it refuses."""

from __future__ import annotations

import json

import pytest

from harness.records import load_run
from harness.report import write_report
from harness.report.comparison_view import compare_runs, comparisons
from harness.report.context import build_context
from tests.harness.test_runner import harness


def _report_verdicts(base, cand) -> dict[tuple[str, str], str]:
    comp = compare_runs(load_run(base), load_run(cand))
    assert comp.refused is None, comp.refused
    return {(c.metric, c.model): c.verdict for c in comp.comparisons}


def _gate_verdicts(base, cand) -> dict[tuple[str, str], str]:
    result = harness("gate", cand, "--baseline", base, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    return {(c["metric"], c["model"]): c["verdict"] for c in json.loads(result.stdout)["results"]}


@pytest.mark.parametrize(
    "candidate",
    [
        {"token_seed": 0, "timing_seed": 1, "speed": 0.6},  # same tokens, slower
        {"token_seed": 5, "timing_seed": 2},  # other tokens: quality metrics move
        {"token_seed": 0, "timing_seed": 0},  # the same run again
    ],
)
def test_report_and_gate_give_the_same_verdict_for_the_same_pair(make_run, candidate):
    base = make_run("base", models=("a", "b"), n_prompts=24, samples_per_prompt=2)
    cand = make_run("cand", models=("a", "b"), n_prompts=24, samples_per_prompt=2, **candidate)
    report, gate = _report_verdicts(base, cand), _gate_verdicts(base, cand)
    assert report == gate and len(report) >= 10


def test_a_pair_the_gate_refuses_is_refused_in_the_page_with_its_reason(make_run, tmp_path):
    base = make_run("base", models=("a",))
    cand = make_run("bf16", models=("a",), dtype="bfloat16", speed=0.5, timing_seed=4)
    comp = compare_runs(load_run(base), load_run(cand))
    assert comp.result is None and "dtype is bfloat16 vs baseline float32" in comp.refused
    gate = harness("gate", cand, "--baseline", base, check=2)
    assert comp.refused in gate.stderr
    page = write_report([base, cand], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Not compared: model mismatch" in page and "data-verdict=" not in page.split('data-section="comparison"')[1]
    assert ("dtype", "float32", "bfloat16") in comp.config_diff


def test_configuration_diff_and_models_in_only_one_run(make_run, tmp_path):
    base = make_run("base", models=("a", "gone"))
    cand = make_run("cand", models=("a", "new"), batched=True)
    (comp,) = comparisons(build_context([load_run(base), load_run(cand)]))
    assert comp.only_baseline == ["gone"] and comp.only_candidate == ["new"]
    assert ("batch size", "1", "4") in comp.config_diff
    assert {c.model for c in comp.comparisons} == {"a"}
    timing = [c for c in comp.comparisons if c.meta.kind == "timing"]
    assert timing and all(not c.gated for c in timing)  # batched vs batch-1 timings: reported, never gated
    page = write_report([base, cand], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Only in the baseline, not compared: gone." in page and "Only in cand, not compared: new." in page
    assert "Configuration that differs between the runs" in page


def test_runs_of_another_suite_are_refused_by_name(make_run):
    comp = compare_runs(load_run(make_run("base", suite="smoke")), load_run(make_run("cand", suite="tinystories")))
    assert comp.result is None and "suite mismatch" in comp.refused and "tinystories" in comp.refused


def test_comparison_section_in_report_only_with_two_runs(make_run, tmp_path):
    base, cand = make_run("base"), make_run("cand", speed=0.5, timing_seed=2, token_seed=7)
    one = write_report([base], tmp_path / "one.html").read_text(encoding="utf-8")
    assert 'data-section="comparison"' not in one
    two = write_report([base, cand], tmp_path / "two.html").read_text(encoding="utf-8")
    assert 'data-section="comparison"' in two and 'data-candidate="cand"' in two
    assert "harness gate" in two and 'data-verdict="' in two
