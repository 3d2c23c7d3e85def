"""Structure of the figure data: traces per model, one point per sample, axis titles, hover, distributions."""

from __future__ import annotations

import math
import re
import statistics

import pytest

from harness.records import load_run
from harness.report import write_report
from harness.report.context import build_context
from harness.report.figures import STUDY_SCATTERS, distribution_figure, scatter_figure

from .conftest import XSS_OUTPUT, Page


def _both(sample: dict, x: str, y: str) -> bool:
    m = sample["metrics"]
    return all(m.get(k) is not None and math.isfinite(m[k]) for k in (x, y))


def _points(fig):
    """The traces that hold one point per sample (not the median markers or the marginal histograms)."""
    return [t for t in fig.data if t.type == "scatter" and t.customdata is not None]


@pytest.mark.parametrize("spec", STUDY_SCATTERS, ids=lambda s: s.key)
def test_scatter_one_trace_per_model_one_point_per_sample(make_run, spec):
    run = load_run(make_run(models=("a", "b", "c"), n_prompts=10, samples_per_prompt=2))
    fig, omitted = scatter_figure(build_context([run]), spec)
    assert [t.name for t in _points(fig)] == ["a", "b", "c"]
    for trace in _points(fig):
        expected = [s for s in run.samples if s["model"] == trace.name and _both(s, spec.x, spec.y)]
        assert len(trace.x) == len(trace.y) == len(trace.text) == len(expected)
        assert trace.mode == "markers" and trace.marker.opacity < 0.6
        true_x = sorted(c[0] for c in trace.customdata)
        scale = 100 if spec.y in ("repetition_rate", "vocab_diversity") else 1
        assert true_x == sorted(s["metrics"][spec.x] for s in expected)
        assert sorted(c[1] for c in trace.customdata) == pytest.approx(
            sorted(s["metrics"][spec.y] * scale for s in expected)
        )
        if spec.x == "tokens_generated":  # jittered for display, never by more than 0.4 token
            assert any(px != c[0] for px, c in zip(trace.x, trace.customdata, strict=True))
            assert all(abs(px - c[0]) <= 0.4 for px, c in zip(trace.x, trace.customdata, strict=True))
        medians = [t for t in fig.data if t.name == f"{trace.name} median"]
        assert len(medians) == 1 and medians[0].x[0] == statistics.median(c[0] for c in trace.customdata)
    assert [t.type for t in fig.data].count("histogram") == 6  # top and right margins, per model
    assert omitted == sum(not _both(s, spec.x, spec.y) for s in run.samples)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    bound = [a.text for a in fig.layout.annotations]
    assert bool(bound) == (spec.key == "tokens-vs-coherence")  # only coherence is bounded by tokens
    if bound:
        assert "cannot exceed tokens generated" in bound[0] and fig.layout.shapes[0].x1 == fig.layout.shapes[0].y1


def test_a_note_when_runs_of_different_suites_are_overlaid(make_run, tmp_path):
    same = write_report([make_run("a"), make_run("b")], tmp_path / "same.html").read_text(encoding="utf-8")
    mixed = write_report(
        [make_run("c", suite="smoke"), make_run("d", suite="tinystories")], tmp_path / "mixed.html"
    ).read_text(encoding="utf-8")
    assert 'data-mixed-suites="true"' not in same and 'data-mixed-suites="true"' in mixed


def test_scatter_axis_titles_and_percent_scale(make_run):
    run = load_run(make_run())
    ctx = build_context([run])
    fig, _ = scatter_figure(ctx, STUDY_SCATTERS[1])
    assert fig.layout.xaxis.title.text == "Tokens Generated"
    assert fig.layout.yaxis.title.text == "Repetition Rate (%)"
    assert max(max(t.y) for t in _points(fig)) > 1  # fractions plotted as percent
    tps_fig, _ = scatter_figure(ctx, STUDY_SCATTERS[3])
    assert tps_fig.layout.xaxis.title.text == "TPS (tokens/sec)"
    assert tps_fig.layout.yaxis.title.text == "Total Latency (ms)"


def test_hover_has_prompt_category_and_escaped_output(make_run):
    run = load_run(make_run())
    fig, _ = scatter_figure(build_context([run]), STUDY_SCATTERS[0])
    texts = list(_points(fig)[0].text)
    xss = next(t for t in texts if "p001" in t)
    assert "story openings" in xss
    assert "&lt;img src=x onerror=" in xss and "<img" not in xss  # plotly would parse raw tags
    assert "%{text}" in _points(fig)[0].hovertemplate


def test_colour_fixed_per_model_across_figures_and_runs(make_run):
    a = load_run(make_run("a", models=("m1", "m2")))
    b = load_run(make_run("b", models=("m2", "m1")))
    ctx = build_context([a, b])
    fig, _ = scatter_figure(ctx, STUDY_SCATTERS[0])
    colours = {}
    for trace in fig.data:
        model = (trace.name or trace.legendgroup).split(" · ")[0]
        colours.setdefault(model, set()).add(trace.marker.color)
    assert all(len(c) == 1 for c in colours.values()) and colours["m1"] != colours["m2"]
    points = _points(fig)
    assert len({t.marker.symbol for t in points}) == 2  # runs told apart by symbol
    assert len(points) == 4 and all(t.name.endswith((" · run 1", " · run 2")) for t in points)  # short labels


def test_distribution_for_every_sample_metric_including_plugin_ones(make_run):
    run = load_run(make_run(models=("a", "b")))
    ctx = build_context([run])
    metrics = ctx.sample_metrics()
    assert "example_word_len" in metrics and "distinct_2" in metrics  # plugin metrics, no extra code
    assert "eos_rate" not in metrics  # model-level: one value per model, nothing to distribute
    fig = distribution_figure(ctx, "example_word_len")
    assert [t.type for t in fig.data] == ["box", "box"] and [t.name for t in fig.data] == ["a", "b"]
    expected = [s for s in run.samples if s["model"] == "a" and s["metrics"]["example_word_len"] is not None]
    assert len(fig.data[0].y) == len(expected)


def test_report_html_embeds_every_figure(make_run, tmp_path):
    run_dir = make_run(models=("a", "b"), n_prompts=6)
    out = write_report([run_dir], tmp_path / "r.html")
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    ctx = build_context([load_run(run_dir)])
    scatter_divs = re.findall(r'data-scatter="([^"]+)"><div class="plot" id="([^"]+)"', text)
    assert [k for k, _ in scatter_divs] == [s.key for s in STUDY_SCATTERS]
    for _, fig_id in scatter_divs:
        spec = page.json[f"{fig_id}-spec"]
        points = [t for t in spec["data"] if t.get("customdata")]
        assert len(points) == 2 and len(spec["data"]) == 8 and spec["layout"]["xaxis"]["title"]["text"]
        assert "template" not in spec["layout"]  # embedded once as plotly-template
    dist = [d for d in page.find("div") if d.get("data-metric") and "dist" in (d.get("class") or "")]
    assert [d["data-metric"] for d in dist] == ctx.sample_metrics()
    assert "plotly-template" in page.json
    assert XSS_OUTPUT not in text
