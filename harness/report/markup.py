"""Escaping and number formatting shared by every report section.

Model output and prompts are untrusted input: they reach the page only through ``esc`` (HTML text and
attributes), ``esc_plotly`` (plotly labels, which plotly parses for a few tags) or ``script_json``
(data blocks read by JavaScript). Nothing else writes user text into the HTML.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

# Characters that could end a <script> data block, start an HTML comment or break JavaScript string
# literals. JSON allows the \\uXXXX form of every one of them inside strings, and they never occur in
# JSON outside strings, so replacing them keeps the JSON identical after JSON.parse.
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE_RE = re.compile("[<>&\u2028\u2029]")


def esc(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute (``& < > " '``)."""
    return html.escape("" if value is None else str(value), quote=True)


def esc_plotly(value: Any) -> str:
    """Escape text for plotly labels (trace names, hover text, titles).

    Plotly turns a handful of tags (``<b>``, ``<br>``, ``<a href>``…) into SVG, so raw ``<`` in model
    output must not reach it. Only ``& < >`` are escaped: plotly decodes ``&amp; &lt; &gt;`` back to
    characters but shows ``&quot;`` literally, and quotes are harmless in SVG text.
    """
    return html.escape("" if value is None else str(value), quote=False)


def clean_json(value: Any) -> Any:
    """Recursively replace NaN/inf by None, so the page's JSON is strict (``JSON.parse`` rejects NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def script_safe(json_text: str) -> str:
    """Make serialized JSON safe inside ``<script type="application/json">`` (no ``</script>`` break-out)."""
    return _SCRIPT_UNSAFE_RE.sub(lambda m: _SCRIPT_UNSAFE[m.group(0)], json_text)


def script_json(data: Any) -> str:
    """Serialize data for a ``<script type="application/json">`` block, escaped against break-out."""
    return script_safe(json.dumps(clean_json(data), ensure_ascii=False, allow_nan=False, separators=(",", ":")))


def json_block(element_id: str, data: Any) -> str:
    """A non-executed data block that the page's JavaScript reads with ``JSON.parse``."""
    return f'<script type="application/json" id="{esc(element_id)}">{script_json(data)}</script>'


def slug(text: str) -> str:
    """An HTML id fragment from a section or metric name (letters, digits, dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def is_percent(meta: dict[str, Any]) -> bool:
    """Metrics with unit ``%`` are stored as fractions in [0, 1] (see metrics.md) and shown ×100."""
    return meta.get("unit") == "%"


def scale_of(meta: dict[str, Any]) -> float:
    return 100.0 if is_percent(meta) else 1.0


def fmt_number(value: float | None) -> str:
    """Three significant digits like the study's Table 2 (297, 90.2, 5.50, 0.496); no exponent above 1000."""
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    text = f"{value:#.3g}"  # '#' keeps trailing zeros (8.00, not 8) so a column reads evenly
    if "e" in text:
        return f"{value:.2e}"
    return text.rstrip(".")


def fmt_metric(value: float | None, meta: dict[str, Any]) -> str:
    """A value in the metric's display unit: fractions with unit % become '13.0%'."""
    if value is None or not math.isfinite(value):
        return "–"
    if is_percent(meta):
        return f"{value * 100:.1f}%"
    return fmt_number(value)


def fmt_signed(value: float | None, meta: dict[str, Any]) -> str:
    """A delta with an explicit sign, in the metric's display unit (percentage points for % metrics)."""
    if value is None or not math.isfinite(value):
        return "–"
    sign = "+" if value > 0 else ("±" if value == 0 else "−")
    if is_percent(meta):
        return f"{sign}{abs(value) * 100:.1f} pp"
    return f"{sign}{fmt_number(abs(value))}"


def fmt_params(count: Any) -> str:
    """Parameter count as the study writes it (10.7M, 512K)."""
    if not isinstance(count, (int, float)) or count <= 0:
        return ""
    if count >= 1e9:
        return f"{count / 1e9:.2f}B"
    if count >= 1e6:
        return f"{count / 1e6:.1f}M"
    return f"{count / 1e3:.0f}K"
