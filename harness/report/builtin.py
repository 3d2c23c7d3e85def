"""The built-in sections, and the header that says exactly what was measured, where and with what."""

from __future__ import annotations

from typing import Any

from harness.records import Run, Throughput
from harness.report.browser import browser_section
from harness.report.categories import category_section
from harness.report.comparison_view import comparison_section
from harness.report.context import ReportContext, run_label
from harness.report.figures import distribution_section, scatter_section
from harness.report.load_plot import load_section
from harness.report.markup import esc, fmt_params
from harness.report.sections import ReportSection
from harness.report.summary_tables import summary_section

# Packages worth naming in the header even when the manifest lists many.
KEY_PACKAGES = ("torch", "tinylm-harness", "tokenizers", "transformers", "numpy", "plotly", "scipy")


def _dl(items: list[tuple[str, Any]]) -> str:
    return (
        '<dl class="meta">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items if v not in (None, "", []))
        + "</dl>"
    )


def _short(sha: Any) -> str:
    return esc(str(sha)[:12]) if sha else ""


def _throughput(tp: Throughput | None) -> str:
    if tp is None or tp.tokens_per_s is None:
        return ""
    return f"{tp.tokens_per_s:.1f} tokens/s overall at batch size {esc(tp.batch_size)}"


def _models(run: Run) -> str:
    rows = []
    for m in run.manifest.models:
        info = m.info or {}
        bits = [
            esc(m.spec),
            esc(fmt_params(info.get("parameters"))),
            f"weights {_short(info.get('weights_sha256'))}" if info.get("weights_sha256") else "",
            f"{m.wall_s:.1f} s" if m.wall_s is not None else "",
            _throughput(m.throughput),
        ]
        flag = (
            ""
            if m.status == "ok"
            else f' <span class="warn">{esc(m.status)}{": " + esc(m.error) if m.error else ""}</span>'
        )
        rows.append(f"<li><b>{esc(m.name)}</b> — {' · '.join(b for b in bits if b)}{flag}</li>")
    return "<ul>" + "".join(rows) + "</ul>" if rows else "none"


def _packages(env: dict[str, Any]) -> str:
    packages = env.get("packages") or {}
    key = [f"{esc(k)} {esc(packages[k])}" for k in KEY_PACKAGES if k in packages]
    rest = [f"{esc(k)} {esc(v)}" for k, v in sorted(packages.items()) if k not in KEY_PACKAGES]
    more = f" <details><summary>{len(rest)} more</summary>{', '.join(rest)}</details>" if rest else ""
    return ", ".join(key) + more


def _cpu(env: dict[str, Any]) -> str:
    parts = [env.get("cpu"), f"{env['cpu_count']} cores" if env.get("cpu_count") else None, env.get("gpu")]
    return " · ".join(str(p) for p in parts if p)


def _commit(env: dict[str, Any]) -> str:
    """``git_commit`` (docs/run-directory.md) or ``git: {commit, dirty}`` (what the runner writes)."""
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    commit = env.get("git_commit") or git.get("commit")
    if not commit:
        return "unknown"
    return esc(commit) + (" <span class='warn'>uncommitted changes</span>" if git.get("dirty") else "")


def run_header(run: Run, index: int | None) -> str:
    """One run's provenance: the manifest fields a reader needs to trust (or doubt) the numbers."""
    man, env = run.manifest, run.manifest.environment
    suite = man.suite
    sampling = suite.sampling
    status = man.status
    warn = (
        ""
        if status == "complete"
        else (
            f'<p class="warn">Run status: {esc(status)} — results are partial; finish it with '
            "<code>harness run --resume</code>.</p>"
        )
    )
    samples = len(run.samples)
    items = [
        (
            "run",
            esc(run_label(run))
            + (f" <span class='sub'>run id {esc(man.run_id)}</span>" if man.run_id != run_label(run) else ""),
        ),
        ("status", esc(status)),
        (
            "suite",
            f"{esc(suite.name)} · {esc(suite.n_prompts)} prompts × "
            f"{esc(suite.samples_per_prompt)} sample(s) · sha256 {_short(suite.sha256)}",
        ),
        ("sampling", esc(", ".join(f"{k} {v}" for k, v in sampling.items()))),
        ("samples", f"{samples}" + (" (batched)" if any(s.get("batched") for s in run.samples) else "")),
        ("models", _models(run)),
        ("date", f"{esc(man.created_at)} → {esc(man.finished_at or 'not finished')}"),
        ("machine", f"{esc(env.get('platform'))}<span class='sub'>{esc(_cpu(env))}</span>"),
        ("device", esc(env.get("device"))),
        ("threads", esc(env.get("threads"))),
        ("batch size", esc(man.batch_size)),
        ("python", esc(env.get("python"))),
        ("packages", _packages(env)),
        ("commit", _commit(env)),
        ("command", f"<code>{esc(' '.join(map(str, man.command)))}</code>"),
    ]
    title = f"<h3>Run {index + 1}{' (baseline)' if index == 0 else ''}</h3>" if index is not None else ""
    return f'<div class="run-header" data-run="{esc(run_label(run))}">{title}{warn}{_dl(items)}</div>'


def header_section(ctx: ReportContext) -> str:
    many = len(ctx.runs) > 1
    return "".join(run_header(run, i if many else None) for i, run in enumerate(ctx.runs))


def builtin_sections() -> list[ReportSection]:
    """The report's own sections, ordered by ``order``; plugin sections default to order 100."""
    return [
        ReportSection("header", "Runs", header_section, order=0),
        ReportSection("summary", "Summary (Table 2 layout)", summary_section, order=10),
        ReportSection("scatter", "The study's four scatter plots", scatter_section, order=30),
        ReportSection("categories", "By prompt category", category_section, order=35),
        ReportSection("load", "Latency vs throughput across load levels", load_section, order=37),
        ReportSection("distributions", "Metric distributions", distribution_section, order=40),
        ReportSection("comparison", "Comparison with the baseline run", comparison_section, order=50),
        ReportSection("samples", "Sample browser", browser_section, order=60),
    ]
