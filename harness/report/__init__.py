"""HTML reports from run directories: ``write_report(run_dirs, out)`` and the ``harness report`` command.

Plugins add sections with the ``register_report_sections`` hook by registering ``ReportSection``s;
see docs/reports.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ReportContext": "harness.report.context",
    "Series": "harness.report.context",
    "esc": "harness.report.markup",
    "esc_plotly": "harness.report.markup",
    "render_html": "harness.report.render",
    "write_report": "harness.report.render",
    "ReportSection": "harness.report.sections",
    "collect_sections": "harness.report.sections",
}

__all__ = [
    "ReportContext",
    "ReportSection",
    "Series",
    "collect_sections",
    "esc",
    "esc_plotly",
    "render_html",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """Load on first use (pandas, plotly assets), so registering the report command stays cheap."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


if TYPE_CHECKING:
    from harness.report.context import ReportContext, Series
    from harness.report.markup import esc, esc_plotly
    from harness.report.render import render_html, write_report
    from harness.report.sections import ReportSection, collect_sections
