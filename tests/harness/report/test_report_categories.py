"""Category breakdown: per-category statistics equal describe() on that category's samples."""

from __future__ import annotations

from harness.records import load_run
from harness.report import write_report
from harness.report.categories import categories_of, category_figure, category_stats
from harness.report.context import build_context
from harness.summary import describe


def test_per_category_means_and_intervals_match_describe(make_run):
    run = load_run(make_run(models=("a", "b"), n_prompts=16, samples_per_prompt=2))
    ctx = build_context([run])
    categories = categories_of(ctx)
    assert len(categories) == 4
    series = ctx.series[0]
    for category in categories:
        rows = [s for s in run.samples if s["model"] == "a" and s["category"] == category]
        expected = describe([s["metrics"]["perplexity"] for s in rows], [s["prompt_id"] for s in rows])
        assert category_stats(series, "perplexity", "a", category) == expected
    fig = category_figure(ctx, "perplexity", categories)
    assert [t.name for t in fig.data] == ["a", "b"] and list(fig.data[0].x) == categories
    means = [category_stats(series, "perplexity", "a", c)["mean"] for c in categories]
    assert list(fig.data[0].y) == means


def test_section_only_when_the_suite_has_categories(make_run, tmp_path):
    text = write_report([make_run("four", n_prompts=8)], tmp_path / "a.html").read_text(encoding="utf-8")
    assert 'data-section="categories"' in text and 'data-category="dialogue starters"' in text
    one = make_run("one", n_prompts=1)
    single = write_report([one], tmp_path / "b.html").read_text(encoding="utf-8")
    assert 'data-section="categories"' not in single
