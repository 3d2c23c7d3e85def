"""Comparison view: baseline (first run) vs candidates, paired Wilcoxon / Mann-Whitney, Holm, batched guard."""

from __future__ import annotations

import numpy as np
from scipy import stats

from harness.records import load_run
from harness.report import write_report
from harness.report.comparison_view import compare_runs, comparisons, holm
from harness.report.context import build_context


def _compare(a, b):
    ctx = build_context([load_run(a), load_run(b)])
    comps, notes = comparisons(ctx)
    return comps, notes


def test_same_seed_same_tokens_is_identical_and_slower_is_regressed(make_run):
    base = make_run("base", models=("a", "b"), n_prompts=40)
    cand = make_run("cand", models=("a", "b"), n_prompts=40, timing_seed=1, speed=0.6)
    (comp,), notes = _compare(base, cand)
    assert comp.paired and not notes
    cells = {(d.metric, d.model): d for d in comp.deltas}
    for metric in ("perplexity", "repetition_rate", "coherence_length", "vocab_diversity", "tokens_generated"):
        assert cells[(metric, "a")].verdict == "identical"
    assert cells[("tps", "a")].verdict == "regressed" and cells[("tps", "a")].test == "wilcoxon"
    assert cells[("tps", "a")].delta < 0 and cells[("ttft_ms", "b")].verdict == "regressed"
    assert cells[("peak_mem_mb", "a")].verdict == "identical"  # model-level: one value per run


def test_wilcoxon_p_matches_scipy_before_holm(make_run):
    base = make_run("base", models=("a",), n_prompts=30)
    cand = make_run("cand", models=("a",), n_prompts=30, token_seed=5)
    b, c = load_run(base), load_run(cand)
    ctx = build_context([b, c])
    comp = compare_runs(b, c, ctx.metrics, ctx.metric_order)
    d = next(d for d in comp.deltas if d.metric == "coherence_length")
    key = lambda s: (s["prompt_id"], s["sample_index"])  # noqa: E731
    bv = {key(s): s["metrics"]["coherence_length"] for s in b.samples}
    cv = {key(s): s["metrics"]["coherence_length"] for s in c.samples}
    keys = sorted(bv)
    assert d.p == stats.wilcoxon([bv[k] for k in keys], [cv[k] for k in keys]).pvalue
    assert d.n == 30 and d.p_holm >= d.p


def test_unpaired_when_prompts_differ(make_run):
    base = make_run("base", models=("a",), prompts_sha="x" * 64)
    cand = make_run("cand", models=("a",), prompts_sha="y" * 64, token_seed=3)
    (comp,), _ = _compare(base, cand)
    assert not comp.paired and "not paired" in comp.notes[0]
    assert {d.test for d in comp.deltas if d.test not in ("identical", "none")} == {"mann-whitney"}


def test_other_suite_named_not_compared(make_run):
    _, notes = _compare(make_run("base", suite="smoke"), make_run("cand", suite="tinystories"))
    assert notes and "not compared" in notes[0] and "tinystories" in notes[0]


def test_batched_timing_never_compared_with_batch_one(make_run):
    (comp,), _ = _compare(make_run("base", models=("a",)), make_run("cand", models=("a",), batched=True))
    assert not [d for d in comp.deltas if d.metric in ("tps", "ttft_ms", "latency_ms")]
    assert any("batched" in n for n in comp.notes)
    assert any(d.metric == "perplexity" for d in comp.deltas)  # quality still compared


def test_new_model_in_candidate_is_named(make_run):
    (comp,), _ = _compare(make_run("base", models=("a",)), make_run("cand", models=("a", "b")))
    assert any("'b'" in n for n in comp.notes) and {d.model for d in comp.deltas} == {"a"}


def test_holm_adjustment():
    p = [0.01, 0.04, 0.03, 0.5]
    assert np.allclose(holm(p), [0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []


def test_comparison_section_in_report_only_with_two_runs(make_run, tmp_path):
    base, cand = make_run("base"), make_run("cand", speed=0.5, timing_seed=2)
    one = write_report([base], tmp_path / "one.html").read_text(encoding="utf-8")
    assert 'data-section="comparison"' not in one
    two = write_report([base, cand], tmp_path / "two.html").read_text(encoding="utf-8")
    assert 'data-section="comparison"' in two and 'data-candidate="cand"' in two
    assert 'data-verdict="regressed"' in two and "timing: indicative" in two
