"""Every run-derived text is escaped; the page is self-contained with a CSP that allows no network source."""

from __future__ import annotations

import base64
import hashlib
import json
import re

from harness.report import esc, esc_plotly, write_report
from harness.report.markup import fmt_metric, fmt_number, script_json
from harness.report.render import plotly_js

from .conftest import XSS_OUTPUT, XSS_PROMPT, Page


def test_script_json_cannot_break_out_and_round_trips():
    data = {"t": "</script><script>alert(1)</script><!-- & \u2028\u2029", "n": float("nan")}
    text = script_json(data)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"t": data["t"], "n": None}


def test_esc_helpers():
    assert esc('<a href="x">\'&') == "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;"
    assert esc(None) == ""
    assert esc_plotly('<b>"x"</b>') == '&lt;b&gt;"x"&lt;/b&gt;'


def test_number_formats():
    assert [fmt_number(v) for v in (297.4, 90.23, 5.5, 0.4961, 8.0, 0, 12345.6)] == [
        "297",
        "90.2",
        "5.50",
        "0.496",
        "8.00",
        "0",
        "12,346",
    ]
    assert fmt_metric(0.13, {"unit": "%"}) == "13.0%"
    assert fmt_metric(None, {}) == "–" and fmt_metric(float("nan"), {}) == "–"


def test_payloads_never_reach_the_page_as_markup(make_run, tmp_path):
    out = write_report([make_run(models=("<b>m&1</b>", "ok"))], tmp_path / "r.html")
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert page.exec_scripts == 2  # plotly.js and the app; payload scripts would add more
    for raw in (XSS_PROMPT, XSS_OUTPUT, "<b>m&1</b>", 'onerror="window'):
        assert raw not in text
    assert not [a for t, a in page.elements if t == "img"]
    assert not [a for t, a in page.elements if any(k.startswith("on") for k in a)]  # no event handler attributes
    data = page.json["browser-data"]
    assert data["prompts"][0]["text"] == XSS_PROMPT  # intact once parsed: shown as text by textContent
    assert any(s["out"].startswith(XSS_OUTPUT) for col in data["cells"][0] for s in col)
    assert data["columns"][0]["model"] == "<b>m&1</b>"


def test_self_contained_with_hash_only_csp(make_run, tmp_path):
    out = write_report([make_run()], tmp_path / "r.html")
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert text.count(plotly_js()) == 1  # plotly.js inlined exactly once
    assert not [a for t, a in page.elements if a.get("src") or (a.get("href") and not a["href"].startswith("#"))]
    csp = next(
        a["content"] for t, a in page.elements if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert (
        "default-src 'none'" in csp and "connect-src 'none'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    )
    scripts = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    assert len(scripts) == 2
    for body in scripts:
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
        assert f"'sha256-{digest}'" in csp
