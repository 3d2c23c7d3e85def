"""Assemble one self-contained HTML file: works from disk, offline, with no request of any kind.

plotly.js comes from the installed plotly package and is inlined once; each figure is a JSON block
drawn by the page script. A Content-Security-Policy allows only the two inline scripts we wrote (by
hash) and no network source at all, so even a bug in escaping could not run injected script or fetch
anything: the escaping is the first wall, the CSP the second.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from plotly.offline import get_plotlyjs

from harness.errors import UserError
from harness.records import Run, check_output_file, load_run, write_bytes_atomic
from harness.report.assets import APP_JS, CSS
from harness.report.builtin import builtin_sections
from harness.report.context import ReportContext, build_context, default_template_json
from harness.report.markup import esc, json_block, slug
from harness.report.sections import ReportSection, vet_plugin_sections

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The installed plotly.js bundle, guarded against a literal ``</script`` ending its block early."""
    return get_plotlyjs().replace("</script", "<\\/script")


def _sha256(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(scripts: Sequence[str]) -> str:
    """No network source; scripts only by hash (no event-handler attributes, no injected <script>)."""
    hashes = " ".join(_sha256(s) for s in scripts)
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data: blob:; "
        "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )


def _version() -> str:
    try:
        return metadata.version("tinylm-harness")
    except metadata.PackageNotFoundError:
        return "unknown"


def _render_section(section: ReportSection, ctx: ReportContext, plugin: bool) -> str:
    """A plugin section that raises becomes a visible error box; the rest of the report still renders."""
    try:
        body = section.render(ctx)
    except Exception as exc:
        if not plugin:
            raise
        log.warning("report section %r failed: %s: %s", section.name, type(exc).__name__, exc)
        body = f'<p class="error">This section failed to render: {esc(type(exc).__name__)}: {esc(exc)}</p>'
    if not body:
        return ""
    return f'<section id="{esc(slug(section.name))}" data-section="{esc(section.name)}"><h2>{esc(section.title)}</h2>{body}</section>'


def render_html(runs: list[Run], sections_from_plugins: Sequence[ReportSection] = ()) -> str:
    """The whole report as one HTML string."""
    if not runs:
        raise UserError("harness report: give at least one run directory")
    ctx = build_context(runs)
    builtins = builtin_sections()
    plugin_sections, problems = vet_plugin_sections(builtins, sections_from_plugins)
    for problem in problems:
        log.warning("%s", problem)
    ordered = sorted(
        [(s, False) for s in builtins] + [(s, True) for s in plugin_sections], key=lambda pair: pair[0].order
    )  # stable: equal orders keep registration order
    rendered = [(s, _render_section(s, ctx, plugin)) for s, plugin in ordered]
    rendered = [(s, body) for s, body in rendered if body]
    nav = "".join(f'<a href="#{esc(slug(s.name))}">{esc(s.title)}</a>' for s, _ in rendered)
    suites = ", ".join(ctx.suites)
    title = f"{suites} · {', '.join(ctx.models)} — tinylm-harness report"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    js = plotly_js()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(content_security_policy([js, APP_JS]))}">'
        '<meta name="referrer" content="no-referrer"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>"
        f"<nav>{nav}</nav><main><h1>{esc(suites)} <span class='sub'>{esc(', '.join(ctx.models))}</span></h1>"
        + "".join(f'<p class="error plugin-problem">{esc(p)}</p>' for p in problems)
        + "\n".join(body for _, body in rendered)
        + f'<p class="note">Written by tinylm-harness {esc(_version())} on {esc(now)}. Self-contained: no network '
        "requests; all text from runs is escaped.</p></main>\n"
        + json_block("plotly-template", default_template_json())
        + f"\n<script>{js}</script>\n<script>{APP_JS}</script>\n</body></html>\n"
    )


def write_report(run_dirs: list[Path], out: Path, sections_from_plugins: Sequence[ReportSection] = ()) -> Path:
    """Read finished (or partial) run directories and write the HTML report to ``out``; return its path.

    ``sections_from_plugins`` are the sections collected through the ``register_report_sections`` hook
    (see ``harness.report.collect_sections``). The file is written via a temporary file and a rename,
    so a crash never leaves half a report behind.
    """
    out = check_output_file(Path(out), "-o")
    runs = [load_run(Path(p)) for p in run_dirs]
    text = render_html(runs, sections_from_plugins)
    # 'replace' turns lone surrogates from a broken decoder into '?' instead of failing the report
    write_bytes_atomic(out, text.encode("utf-8", errors="replace"))
    return out
