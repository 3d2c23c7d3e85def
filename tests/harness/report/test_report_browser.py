"""The report in a real headless Chromium: offline from disk, plots drawn, payloads shown as text, never run.

CI installs the Debian package (``apt-get install -y chromium``); locally the test is skipped only when
/usr/bin/chromium is absent. Playwright drives that system browser (no ``playwright install``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from harness.records import load_run
from harness.report import write_report
from harness.report.figures import STUDY_SCATTERS
from tests.ceilings import HANG_MS

from .conftest import XSS_OUTPUT, XSS_PROMPT

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]


def _expected_points(run_dirs: list[Path]) -> dict[str, int]:
    samples = [s for d in run_dirs for s in load_run(d).samples]
    ok = lambda v: v is not None and math.isfinite(v)  # noqa: E731
    return {
        spec.key: sum(ok(s["metrics"].get(spec.x)) and ok(s["metrics"].get(spec.y)) for s in samples)
        for spec in STUDY_SCATTERS
    }


def test_report_in_headless_chromium(make_run, tmp_path):
    from playwright.sync_api import sync_playwright

    runs = [
        make_run("base", models=("2.5m", "10m", "7m"), n_prompts=16),
        make_run("cand", models=("2.5m", "10m", "7m"), n_prompts=16, speed=0.8, timing_seed=4),
    ]
    report = write_report(runs, tmp_path / "report.html")
    url = report.resolve().as_uri()
    requests: list[str] = []
    console_errors: list[str] = []
    dialogs: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True, timeout=HANG_MS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=True)
            # every wait below is for an event (load, __reportReady, a selector); Playwright's 30 s defaults
            # are wall-clock limits that a slow or shared machine breaks, so only a hang ceiling is left
            context.set_default_timeout(HANG_MS)
            context.set_default_navigation_timeout(HANG_MS)

            def route(r):
                requests.append(r.request.url)
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda req: requests.append(req.url) if req.url != url else None)
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: console_errors.append(str(exc)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            page.goto(url)
            page.wait_for_function("window.__reportReady === true", timeout=HANG_MS)

            points = page.evaluate("""() => Object.fromEntries(
                Array.from(document.querySelectorAll('[data-scatter] .plot')).map(gd => [
                    gd.parentElement.dataset.scatter,
                    {data: gd.data.filter(t => t.type === 'scatter' && t.customdata)
                                  .reduce((n, t) => n + t.x.length, 0),
                     traces: gd.data.filter(t => t.type === 'scatter' && t.customdata).length,
                     medians: gd.data.filter(t => t.type === 'scatter' && !t.customdata).length,
                     histograms: gd.data.filter(t => t.type === 'histogram').length,
                     svg: gd.querySelectorAll('.scatterlayer .point').length,
                     x: gd.layout.xaxis.title.text, y: gd.layout.yaxis.title.text}]))""")
            expected = _expected_points(runs)
            assert set(points) == {s.key for s in STUDY_SCATTERS}
            for key, got in points.items():
                assert got["data"] == expected[key] and got["svg"] == expected[key] + got["medians"], key
                assert got["traces"] == got["medians"] == 6 and got["histograms"] == 12 and got["x"] and got["y"]
            n_plots = page.evaluate("window.__reportPlots")  # drawn before the page says it is ready
            eager = "document.querySelectorAll('div.plot:not([data-lazy]).js-plotly-plot').length"
            assert n_plots == page.evaluate(eager) >= 4
            # distributions and category small multiples are drawn as they come near the viewport
            page.evaluate("document.querySelector('[data-section=\"distributions\"]').scrollIntoView()")
            page.wait_for_selector(".dist div.plot.js-plotly-plot", timeout=HANG_MS)
            page.evaluate("window.__drawAllPlots()")
            total = page.evaluate("document.querySelectorAll('div.plot').length")
            assert page.evaluate("document.querySelectorAll('div.plot.js-plotly-plot').length") == total > n_plots

            # the <script> prompt is shown as text and nothing from it ran
            page.select_option("#browser-prompt-select", index=0)
            assert page.text_content("#browser-prompt") == XSS_PROMPT
            assert XSS_OUTPUT in page.text_content("#browser-columns")
            assert page.evaluate("document.querySelectorAll('#sample-browser img, #sample-browser script').length") == 0
            assert page.evaluate("document.querySelectorAll('script').length") == 2 + page.evaluate(
                "document.querySelectorAll('script[type=\"application/json\"]').length"
            )

            # hover text on the payload sample is plotly text, not markup
            hover = page.evaluate("""() => {
                const gd = document.querySelector('[data-scatter="tokens-vs-coherence"] .plot');
                const i = gd.data[0].text.findIndex(t => t.includes('p001'));
                Plotly.Fx.hover(gd, [{curveNumber: 0, pointNumber: i}]);
                return gd.querySelector('.hoverlayer').textContent;
            }""")
            assert "<img src=x onerror=" in hover
            assert page.evaluate("document.querySelectorAll('.hoverlayer img').length") == 0

            page.select_option("#browser-category", "dialogue starters")
            assert page.text_content("#browser-prompt-meta").endswith("dialogue starters")
            page.click("#browser-next")

            # a click on a scatter point opens that sample in the browser
            clicked = page.evaluate("""() => {
                const gd = document.querySelector('[data-scatter="tokens-vs-repetition"] .plot');
                window.__clicked = null;
                gd.on('plotly_click', ev => { window.__clicked = ev.points[0].customdata; });
                const node = gd.querySelectorAll('.scatterlayer .trace')[2].querySelectorAll('.point')[3];
                node.scrollIntoView({block: 'center'});
                const box = node.getBoundingClientRect();
                return [box.x + box.width / 2, box.y + box.height / 2];
            }""")
            page.mouse.click(*clicked)
            page.wait_for_function("window.__clicked !== null", timeout=HANG_MS)
            run, batched, prompt_id, sample_index, model = page.evaluate("window.__clicked")[2:]
            assert page.text_content("#browser-prompt-meta").startswith(f"{prompt_id} ·")
            focus = page.query_selector("#browser-columns .sample.focus")
            assert focus is not None and focus.get_attribute("data-i") == str(sample_index)
            column = page.evaluate("document.querySelector('.sample.focus').closest('.column').dataset.column")
            assert page.text_content(f'#browser-columns [data-column="{column}"] h4').startswith(model)

            # sort every sample by a metric, lowest first, and open the first row
            page.select_option("#samples-sort", "coherence_length")
            page.select_option("#samples-order", "asc")
            shown = page.evaluate(
                "Array.from(document.querySelectorAll('#samples-table tbody tr')).map(r => r.cells[4].textContent)"
            )
            values = sorted(s["metrics"]["coherence_length"] for d in runs for s in load_run(d).samples)
            assert [float(v) for v in shown[:5]] == pytest.approx(values[:5], rel=0.01) and len(shown) == len(values)
            page.click("#samples-table tbody tr:first-child")
            assert page.query_selector("#browser-columns .sample.focus") is not None
            page.fill("#samples-search", "park")
            texts = page.evaluate(
                "Array.from(document.querySelectorAll('#samples-table tbody tr')).map(r => r.textContent.toLowerCase())"
            )
            assert texts and len(texts) < len(values)
            assert page.text_content("#samples-count").startswith(f"{len(texts)} of {len(values)}")

            # the token view: one span per token, coloured by log-prob, repeats and the coherence break marked
            page.check("#browser-token-view")
            view = page.evaluate("""() => Array.from(document.querySelectorAll('#browser-columns .sample')).map(s => ({
                tokens: s.querySelectorAll('span.tok').length,
                coloured: s.querySelectorAll('span.tok[data-logprob]').length,
                repeated: s.querySelectorAll('span.tok.rep').length,
                breaks: s.querySelectorAll('span.coherence-break').length}))""")
            assert view and all(v["tokens"] == v["coloured"] for v in view)
            assert sum(v["tokens"] for v in view) > 0
            title = page.get_attribute("#browser-columns span.tok >> nth=0", "title")
            assert "log-prob" in title and " ms" in title
            shown_prompt = page.text_content("#browser-prompt-meta").split(" ·")[0]
            by_key = {(s["model"], s["prompt_id"]): s for s in load_run(runs[0]).samples}
            first_model = page.text_content('#browser-columns [data-column="0"] h4').split(" ·")[0]
            sample = by_key[(first_model, shown_prompt)]
            assert view[0]["tokens"] == len(sample["output_ids"])
            assert view[0]["breaks"] == (1 if sample["metrics"]["coherence_length"] < len(sample["output_ids"]) else 0)
            page.select_option("#browser-prompt-select", index=0)  # the payload prompt, token by token
            assert XSS_OUTPUT in page.text_content("#browser-columns")
            page.uncheck("#browser-token-view")

            assert page.evaluate("window.__xss") is None
            shot = Path(os.environ.get("REPORT_SCREENSHOT_DIR", tmp_path)) / "report-browser-test.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()

    assert dialogs == []
    assert console_errors == []
    assert [r for r in requests if r != url] == [], "the report made a request besides loading itself"


def test_screenshot_helper_crops_one_section(make_run, tmp_path):
    from harness.report.screenshot import screenshot

    report = write_report([make_run(models=("a", "b"), n_prompts=4)], tmp_path / "r.html")
    png = screenshot(report, tmp_path / "shots" / "summary.png", section="summary", timeout_s=HANG_MS / 1000)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
