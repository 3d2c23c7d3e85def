"""Gate outputs: a terminal table, Markdown (``$GITHUB_STEP_SUMMARY`` / PR comment), JUnit XML and JSON.

Every format carries the same numbers; CI systems differ only in what they can display. JUnit
turns each metric × model into a test case so test dashboards show gates next to unit tests
(failure = regression, skipped = inconclusive).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.gate.engine import GateResult
from harness.gate.metric_tests import IMPROVED, INCONCLUSIVE, INFO, MISSING, PASS, REGRESSION, WARNING, Comparison

JSON_FORMAT = "tinylm-harness-gate"
MARKDOWN_MARKER = "<!-- tinylm-harness-gate -->"  # lets a CI step find and update its PR comment in place
SEVERITY = {REGRESSION: 0, MISSING: 0, INCONCLUSIVE: 1, WARNING: 2, IMPROVED: 3, PASS: 4, INFO: 5}
STYLE = {
    REGRESSION: "bold red",
    MISSING: "bold red",
    INCONCLUSIVE: "yellow",
    WARNING: "yellow",
    IMPROVED: "green",
    PASS: "green",
    INFO: "dim",
}
ICON = {REGRESSION: "❌", MISSING: "❌", INCONCLUSIVE: "⚠️", WARNING: "⚠️", IMPROVED: "🟢", PASS: "✅", INFO: "ℹ️"}


def fmt_num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4g}"


def fmt_change(comp: Comparison) -> str:
    """Relative change when the baseline mean is nonzero, else the absolute change."""
    if comp.change is None:
        return "–"
    if comp.change == 0:
        return "±0"
    if comp.rel_change is not None:
        return f"{comp.rel_change * 100:+.2f}%"
    return f"{comp.change:+.4g}"


def fmt_ci(comp: Comparison) -> str:
    ci = comp.ci
    if comp.rel_change is not None and ci.rel_low is not None and ci.rel_high is not None:
        return f"[{ci.rel_low * 100:+.2f}%, {ci.rel_high * 100:+.2f}%]"
    if ci.abs_low is not None and ci.abs_high is not None:
        return f"[{ci.abs_low:+.4g}, {ci.abs_high:+.4g}]"
    return "–"


def fmt_p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def verdict_label(comp: Comparison) -> str:
    return comp.verdict if comp.gated or comp.verdict in (INFO, PASS, IMPROVED) else f"{comp.verdict} (not gated)"


def headline(result: GateResult) -> str:
    """One line saying what happened and which exit code follows."""
    counts = Counter(c.verdict for c in result.comparisons if c.gated)
    if result.regressions:
        names = ", ".join(f"{c.metric}/{c.model}" for c in result.regressions[:5])
        more = "…" if len(result.regressions) > 5 else ""
        return f"gate FAILED: {len(result.regressions)} regression(s): {names}{more} (exit {result.exit_code})"
    if result.inconclusive:
        return f"gate inconclusive: {counts[INCONCLUSIVE]} gate(s) lack the data to decide (exit {result.exit_code})"
    return f"gate passed: {sum(counts.values())} gate(s), no regression (exit {result.exit_code})"


def _sorted(result: GateResult) -> list[Comparison]:
    def key(comp: Comparison) -> int:
        if not comp.gated and comp.verdict in (REGRESSION, MISSING, INCONCLUSIVE):
            return SEVERITY[WARNING]  # would have failed, but is only reported
        return SEVERITY.get(comp.verdict, 9)

    return sorted(result.comparisons, key=key)


def _context(result: GateResult) -> str:
    suite = result.baseline.suite
    family = max((c.family_size for c in result.comparisons if c.in_family), default=0)
    return (
        f"suite {suite.get('name')!r} (sha256 {str(suite.get('sha256'))[:12]}) · baseline {result.baseline.label} "
        f"({len(result.baseline.rounds)} round(s)) · candidate {result.candidate.label} "
        f"({len(result.candidate.rounds)} round(s)) · Holm over {family} test(s)"
    )


def render_table(result: GateResult, console: Console | None = None) -> None:
    """The terminal table: worst verdicts first, then notes and the headline."""
    console = console or Console(width=None if Console().is_terminal else 160)
    table = Table(title=_context(result), title_justify="left", show_lines=False)
    for column, justify in (
        ("metric", "left"),
        ("model", "left"),
        ("baseline", "right"),
        ("candidate", "right"),
        ("change", "right"),
        (f"{result.rules.spec.confidence:.0%} CI", "right"),
        ("p", "right"),
        ("p (Holm)", "right"),
        ("verdict", "left"),
        ("why", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for comp in _sorted(result):
        style = STYLE.get(comp.verdict, "") if comp.gated else "dim"
        table.add_row(
            comp.metric,
            comp.model,
            fmt_num(comp.baseline_mean),
            fmt_num(comp.candidate_mean),
            fmt_change(comp),
            fmt_ci(comp),
            fmt_p(comp.p_value),
            fmt_p(comp.p_adjusted),
            f"[{style}]{verdict_label(comp)}[/]",
            comp.reason,
        )
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    style = "bold red" if result.regressions else "yellow" if result.inconclusive else "bold green"
    console.print(f"[{style}]{headline(result)}[/]", highlight=False)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: GateResult) -> str:
    """GitHub-flavoured Markdown: a headline, the table (worst first) and notes."""
    icon = "❌" if result.regressions else "⚠️" if result.inconclusive else "✅"
    lines = [
        MARKDOWN_MARKER,
        f"### {icon} {headline(result)}",
        "",
        _cell(_context(result)),
        "",
        f"| verdict | metric | model | baseline | candidate | change | {result.rules.spec.confidence:.0%} CI | p | p (Holm) | why |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for comp in _sorted(result):
        cells = [
            f"{ICON.get(comp.verdict, '')} {verdict_label(comp)}",
            comp.metric,
            comp.model,
            fmt_num(comp.baseline_mean),
            fmt_num(comp.candidate_mean),
            fmt_change(comp),
            fmt_ci(comp),
            fmt_p(comp.p_value),
            fmt_p(comp.p_adjusted),
            comp.reason,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if result.notes:
        lines += ["", "**Notes**", ""] + [f"- {_cell(note)}" for note in result.notes]
    return "\n".join(lines) + "\n"


def _details(comp: Comparison) -> str:
    """The failure text of a JUnit test case: everything needed to judge the verdict without the logs."""
    tol = comp.rule
    return "\n".join(
        [
            f"{comp.metric} for {comp.model}: {comp.verdict} ({comp.reason})",
            f"baseline mean {fmt_num(comp.baseline_mean)} (n={comp.n_baseline}, missing {comp.missing_baseline}), "
            f"candidate mean {fmt_num(comp.candidate_mean)} (n={comp.n_candidate}, missing {comp.missing_candidate})",
            f"change {fmt_change(comp)} ({fmt_num(comp.change)} {comp.meta.unit}".rstrip() + f"), CI {fmt_ci(comp)}",
            f"test {comp.method} by {comp.unit_of_replication}, p = {fmt_p(comp.p_value)}, Holm-adjusted p = "
            f"{fmt_p(comp.p_adjusted)}, adjusted alpha = {fmt_p(comp.alpha_step or tol.alpha)} (alpha {tol.alpha})",
            f"direction {tol.direction}, tolerance {fmt_num(comp.tolerance)} (rel {tol.rel_tolerance}, abs {tol.abs_tolerance})",
        ]
    )


def render_junit(result: GateResult) -> str:
    """JUnit XML: one test case per metric × model; failure = regression/missing, skipped = inconclusive."""
    failures = sum(1 for c in result.comparisons if c.failing)
    skipped = sum(1 for c in result.comparisons if c.gated and c.verdict == INCONCLUSIVE)
    attrs = {
        "tests": str(len(result.comparisons)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
        "time": "0",
    }
    root = ET.Element("testsuites", {"name": "harness gate", **attrs})
    suite = ET.SubElement(root, "testsuite", {"name": f"harness gate: {result.baseline.suite.get('name')}", **attrs})
    for comp in result.comparisons:
        case = ET.SubElement(suite, "testcase", {"classname": f"gate.{comp.model}", "name": comp.metric, "time": "0"})
        summary = (
            f"{comp.metric}/{comp.model}: change {fmt_change(comp)}, CI {fmt_ci(comp)}, p {fmt_p(comp.p_value)}, "
            f"Holm p {fmt_p(comp.p_adjusted)}, adjusted alpha {fmt_p(comp.alpha_step or comp.rule.alpha)}"
        )
        if comp.failing:
            ET.SubElement(case, "failure", {"message": summary, "type": comp.verdict}).text = _details(comp)
        elif comp.gated and comp.verdict == INCONCLUSIVE:
            ET.SubElement(case, "skipped", {"message": f"inconclusive: {comp.reason}"})
        else:
            ET.SubElement(case, "system-out").text = _details(comp)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def comparison_dict(comp: Comparison) -> dict[str, Any]:
    rule = comp.rule
    return {
        "metric": comp.metric,
        "model": comp.model,
        "kind": comp.meta.kind,
        "unit": comp.meta.unit,
        "level": comp.meta.level,
        "direction": rule.direction,
        "test": comp.method,
        "unit_of_replication": comp.unit_of_replication,
        "n_baseline": comp.n_baseline,
        "n_candidate": comp.n_candidate,
        "missing_baseline": comp.missing_baseline,
        "missing_candidate": comp.missing_candidate,
        "baseline_mean": _finite(comp.baseline_mean),
        "candidate_mean": _finite(comp.candidate_mean),
        "change": _finite(comp.change),
        "rel_change": _finite(comp.rel_change),
        "ci": {
            "abs_low": comp.ci.abs_low,
            "abs_high": comp.ci.abs_high,
            "rel_low": comp.ci.rel_low,
            "rel_high": comp.ci.rel_high,
        },
        "p_value": comp.p_value,
        "p_adjusted": comp.p_adjusted,
        "min_p": comp.test.min_p if comp.test else None,
        "alpha": rule.alpha,
        "alpha_step": comp.alpha_step,
        "family_size": comp.family_size if comp.in_family else 0,
        "rel_tolerance": rule.rel_tolerance,
        "abs_tolerance": rule.abs_tolerance,
        "tolerance": _finite(comp.tolerance),
        "strict": rule.strict,
        "beyond_tolerance": comp.beyond_tolerance,
        "gated": comp.gated,
        "verdict": comp.verdict,
        "reason": comp.reason,
    }


def _side(side: Any) -> dict[str, Any]:
    return {
        "label": side.label,
        "rounds": [{"run_id": r.run_id, "source": r.source} for r in side.rounds],
        "environment": {k: side.environment.get(k) for k in ("cpu", "platform", "device", "threads")},
    }


def result_dict(result: GateResult) -> dict[str, Any]:
    """Machine-readable result: the verdict, the exit code and every comparison."""
    return {
        "format": JSON_FORMAT,
        "format_version": 1,
        "status": result.status,
        "exit_code": result.exit_code,
        "headline": headline(result),
        "suite": {k: result.baseline.suite.get(k) for k in ("name", "sha256", "prompts_sha256")},
        "baseline": _side(result.baseline),
        "candidate": _side(result.candidate),
        "rules": result.rules.source,
        "confidence": result.rules.spec.confidence,
        "other_machine": result.other_machine,
        "notes": result.notes,
        "counts": dict(Counter(c.verdict for c in result.comparisons)),
        "results": [comparison_dict(c) for c in result.comparisons],
    }


def render_json(result: GateResult) -> str:
    return json.dumps(result_dict(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
