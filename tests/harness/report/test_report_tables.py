"""Summary table in the study's Table 2 layout, best per row by direction, batched apart, the study's table."""

from __future__ import annotations

from harness.records import load_run
from harness.report import write_report
from harness.report.context import STUDY_ORDER, build_context
from harness.report.study_table import STUDY_TABLE2, study_table
from harness.report.summary_tables import best_models, summary_section, summary_table
from harness.summary import describe

from .conftest import table_rows


def test_table2_layout_metrics_rows_models_columns(make_run):
    run = load_run(make_run(models=("10m", "7m", "5m", "2.5m")))
    html = summary_table(build_context([run]), build_context([run]).series[0])
    rows = table_rows(html, 'class="summary"')
    assert rows[0][:2] == ["#", "Metric"] and [c.split()[0] for c in rows[0][2:]] == ["10m", "7m", "5m", "2.5m"]
    metrics = [r[1].split(" ↑")[0].split(" ↓")[0] for r in rows[1:]]
    assert metrics[:9] == [
        "TTFT (ms)",
        "TPS (tokens/sec)",
        "Total Latency (ms)",
        "Tokens Generated (avg)",
        "Perplexity",
        "Avg Token Probability",
        "Repetition Rate",
        "Coherence Length",
        "Vocab Diversity",
    ]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, len(rows))]
    assert any(m.startswith("example_word_len") for m in metrics)  # plugin metric gets a row too
    assert any(m.startswith("eos_rate") for m in metrics)  # model-level metric


def test_cells_are_mean_with_ci_from_describe(make_run):
    run = load_run(make_run(models=("a", "b")))
    ctx = build_context([run])
    html = summary_table(ctx, ctx.series[0])
    values = [s["metrics"]["coherence_length"] for s in run.samples if s["model"] == "a"]
    stats = describe(values)
    row = next(r for r in table_rows(html, 'class="summary"') if r[1].startswith("Coherence Length"))
    assert row[2].startswith(f"{stats['mean']:#.3g}".rstrip("."))
    assert f"[{stats['ci_low']:#.3g}".rstrip(".") in row[2]
    rep = next(r for r in table_rows(html, 'class="summary"') if r[1].startswith("Repetition Rate"))
    assert rep[2].split()[0].endswith("%")


def _s(mean, low, high):
    return {"mean": mean, "ci_low": low, "ci_high": high}


def test_best_per_row_follows_direction_only_where_intervals_separate():
    stats = {"a": _s(1.0, 0.8, 1.2), "b": _s(3.0, 2.7, 3.3), "c": {"mean": None}}
    assert best_models(stats, True) == {"b"}
    assert best_models(stats, False) == {"a"}
    assert best_models(stats, None) == set()  # tokens generated has no better direction
    assert best_models({"a": _s(2.0, 1.9, 2.1), "b": _s(2.0, 1.9, 2.1)}, True) == set()  # a tie
    assert best_models({"a": _s(2.0, 1.9, 2.1)}, True) == set()
    # 0.335 vs 0.334 with overlapping intervals (the case): nothing is "best"
    close = {"a": _s(0.335, 0.320, 0.350), "b": _s(0.334, 0.319, 0.349), "c": _s(0.2, 0.18, 0.22)}
    assert best_models(close, True) == set()
    assert best_models(close, False) == {"c"}  # lowest, and clear of the runner-up
    assert best_models({"a": {"mean": 3.0}, "b": {"mean": 1.0}}, True) == set()  # no intervals: no claim


def test_best_highlight_in_html(make_run):
    run = load_run(make_run(models=("fast", "slow")))
    ctx = build_context([run])
    html = summary_table(ctx, ctx.series[0])
    tps_row = html[html.index('data-metric="tps"') :].split("</tr>")[0]
    lat_row = html[html.index('data-metric="latency_ms"') :].split("</tr>")[0]
    tok_row = html[html.index('data-metric="tokens_generated"') :].split("</tr>")[0]
    means = {
        m: describe([s["metrics"]["tps"] for s in run.samples if s["model"] == m])["mean"] for m in ("fast", "slow")
    }
    best = max(means, key=means.get)
    assert f'data-model="{best}" class="best"' in tps_row and tps_row.count('class="best"') == 1
    lat = {m: describe([s["metrics"]["latency_ms"] for s in run.samples if s["model"] == m]) for m in means}
    fast, slow = sorted(lat, key=lambda m: lat[m]["mean"])
    separated = lat[fast]["ci_high"] < lat[slow]["ci_low"]
    assert (f'data-model="{fast}" class="best"' in lat_row) == separated  # only a difference the data supports
    assert not separated  # this fixture's latencies overlap: the row must crown nobody
    assert 'class="best"' not in tok_row


def test_batched_run_gets_its_own_labelled_table(make_run):
    one = load_run(make_run("one", models=("a",)))
    many = load_run(make_run("many", models=("a",), batched=True))
    ctx = build_context([one, many])
    html = summary_section(ctx)
    assert html.count('<table class="summary"') == 2
    assert 'data-batched="true"' in html and 'data-batched="false"' in html
    assert "batched (batch size 4)" in html and "not comparable with the batch-1 numbers" in html


def test_mixed_batched_flags_in_one_run_are_split(make_run):
    path = make_run(models=("a",))
    run = load_run(path)
    for s in run.samples[: len(run.samples) // 2]:
        s["batched"] = True
    ctx = build_context([run])
    assert [s.batched for s in ctx.series] == [False, True]
    assert sum(len(s.samples) for s in ctx.series) == len(run.samples)


def test_study_table_only_for_tinystories_and_labelled(make_run, tmp_path):
    smoke = write_report([make_run("s", suite="smoke")], tmp_path / "s.html").read_text(encoding="utf-8")
    assert 'data-seed="true"' not in smoke
    tiny = write_report([make_run("t", suite="tinystories")], tmp_path / "t.html").read_text(encoding="utf-8")
    assert 'data-seed="true"' in tiny and "NVIDIA L4" in tiny and "not measured here" in tiny
    assert 'class="side-by-side"' in tiny  # beside ours


def test_study_table_values_as_published():
    rows = table_rows(study_table(), 'data-seed="true"')
    assert rows[0] == ["#", "Metric", "10M", "7M", "5M", "2.5M"]
    by_label = {r[1]: r[2:] for r in rows[1:]}
    assert by_label["TTFT (ms)"] == ["5.5", "7.8", "4.1", "4.1"]
    assert by_label["TPS (tokens/sec)"] == ["297", "169", "531", "538"]
    assert by_label["Total Latency (ms)"] == ["90.2", "178.5", "61.0", "68.7"]
    assert by_label["Avg Token Probability"] == ["0.496", "0.513", "0.494", "0.538"]
    assert by_label["Repetition Rate"] == ["13.0%", "12.2%", "9.5%", "6.8%"]
    assert by_label["Vocab Diversity"] == ["82.3%", "81.2%", "83.5%", "83.7%"]
    assert list(STUDY_TABLE2) == STUDY_ORDER


def test_header_shows_provenance_in_both_commit_formats(make_run):
    from harness.report.builtin import run_header

    run = load_run(make_run(models=("a",), status="interrupted"))
    html = run_header(run, None)
    for text in (
        "smoke",
        "Fixture CPU · 2 cores",
        "torch 2.13.0",
        "0123456789abcdef",
        "threads",
        "batch size",
        "2026-06-22T10:00:00",
        "results are partial",
    ):
        assert text in html, text
    env = run.manifest.environment
    env.pop("git")
    env["git_commit"] = "feedface"  # the field name docs/run-directory.md documents
    assert "feedface" in run_header(run, 0) and "(baseline)" in run_header(run, 0)
    env["git"] = {"commit": "abc", "dirty": True}
    env.pop("git_commit")
    assert "uncommitted changes" in run_header(run, None)


def test_best_per_row_counts_equal_printed_values_as_a_tie():
    from harness.report.markup import fmt_number

    stats = {"a": _s(389.01, 388.0, 389.1), "b": _s(389.2, 389.15, 390.0), "c": _s(405.0, 400.0, 410.0)}
    assert best_models(stats, False) == {"a"}
    assert best_models(stats, False, fmt_number) == set()  # both print as 389: never crowned
