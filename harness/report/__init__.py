"""HTML reports from run directories: ``write_report(run_dirs, out)`` and the ``harness report`` command.

Plugins add sections with the ``register_report_sections`` hook by registering ``ReportSection``s;
see docs/reports.md.
"""

from harness.report.context import ReportContext, Series
from harness.report.markup import esc, esc_plotly
from harness.report.render import render_html, write_report
from harness.report.sections import ReportSection, collect_sections

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
