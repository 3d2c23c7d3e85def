"""Comparison view: each later run against the baseline (the first run), decided by the gate's engine.

Why the gate's engine and not tests of its own: a report that marks decode speed "improved" for a pair
that ``harness gate`` refuses (a bf16 run against a float32 one), or calls a change significant that the
gate calls noise, teaches readers to distrust both. So the page runs ``harness.gate.engine.run_gate`` on
each pair with the default rules: the same one-sided tests on per-prompt means, the same cluster bootstrap
intervals, the same Holm family, timing replicated by runs, and the same refusals (different suite, dtype,
device or tokenizer), shown in the page with the gate's reason. What the page adds is for reading: the
configuration that differs between the runs, and the models only one of them has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.errors import UserError
from harness.gate.data import side_from_runs
from harness.gate.engine import GateResult, run_gate
from harness.gate.metric_tests import Comparison
from harness.gate.rules import Rules
from harness.records import Run
from harness.report.context import ReportContext, metric_label, run_label
from harness.report.markup import esc, fmt_metric, fmt_signed

#: How each gate verdict reads in the page (class, words).
VERDICT_WORDS = {
    "improved": "improved",
    "regression": "regressed",
    "inconclusive": "inconclusive",
    "missing": "values missing",
    "pass": "no significant change",
    "warning": "warning",
    "info": "not gated",
}


@dataclass
class RunComparison:
    """One candidate run against the baseline: the gate's result, or why the gate refuses the pair."""

    baseline: Run
    candidate: Run
    result: GateResult | None = None
    refused: str | None = None
    only_baseline: list[str] = field(default_factory=list)
    only_candidate: list[str] = field(default_factory=list)
    config_diff: list[tuple[str, str, str]] = field(default_factory=list)  # (setting, baseline, candidate)

    @property
    def comparisons(self) -> list[Comparison]:
        return self.result.comparisons if self.result else []


def _settings(run: Run) -> dict[str, str]:
    """What a reader checks before trusting a difference: how each run was made, flattened to text."""
    m = run.manifest
    env = dict(m.environment)
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    flat: dict[str, Any] = {
        "suite": f"{m.suite.name} ({m.suite.sha256[:12]})",
        "suite overrides": m.suite.overrides or None,
        "samples per prompt": m.suite.samples_per_prompt,
        **{f"sampling.{k}": v for k, v in m.suite.sampling.items()},
        "dtype": m.dtype,
        "batch size": m.batch_size,
        "compile": m.compile,
        "device": env.get("device"),
        "threads": env.get("threads"),
        "cpu": env.get("cpu"),
        "platform": env.get("platform"),
        "python": env.get("python"),
        "commit": (git or {}).get("commit"),
        **{f"package {k}": v for k, v in (env.get("packages") or {}).items()},
    }
    return {key: "" if value is None else str(value) for key, value in flat.items()}


def config_diff(baseline: Run, candidate: Run) -> list[tuple[str, str, str]]:
    b, c = _settings(baseline), _settings(candidate)
    return [(key, b.get(key, ""), c.get(key, "")) for key in dict.fromkeys([*b, *c]) if b.get(key) != c.get(key)]


def compare_runs(baseline: Run, candidate: Run, seed: int = 0) -> RunComparison:
    """The gate's verdict on ``candidate`` against ``baseline`` for the models both ran."""
    shared = [m for m in baseline.models if m in candidate.models]
    comp = RunComparison(
        baseline=baseline,
        candidate=candidate,
        only_baseline=[m for m in baseline.models if m not in candidate.models],
        only_candidate=[m for m in candidate.models if m not in baseline.models],
        config_diff=config_diff(baseline, candidate),
    )
    if not shared:
        comp.refused = "the runs have no model in common"
        return comp
    try:
        base = side_from_runs([baseline], label=run_label(baseline), allow_incomplete=True)
        cand = side_from_runs([candidate], label=run_label(candidate), allow_incomplete=True)
        comp.result = run_gate(base, cand, Rules(), models=shared, seed=seed)
    except UserError as exc:  # the gate's refusal (suite, dtype, device, tokenizer...): shown, never hidden
        comp.refused = str(exc)
    return comp


def comparisons(ctx: ReportContext) -> list[RunComparison]:
    """The baseline (first run) against each later run."""
    if len(ctx.runs) < 2:
        return []
    return [compare_runs(ctx.runs[0], cand) for cand in ctx.runs[1:]]


def _cell(c: Comparison | None, meta: dict[str, Any]) -> str:
    if c is None:
        return "<td>–</td>"
    words = VERDICT_WORDS.get(c.verdict, c.verdict)
    if c.verdict == "pass" and c.method == "identical":
        words = "identical"
    rel = f" ({c.rel_change:+.1%})" if c.rel_change and meta.get("unit") != "%" else ""
    p = f"p={c.p_adjusted:.3g}" if c.p_adjusted is not None else ""
    title = (
        f"baseline {fmt_metric(c.baseline_mean, meta)} → candidate {fmt_metric(c.candidate_mean, meta)}; "
        f"{c.method}, replicated by {c.unit_of_replication}, n = {c.n_baseline}/{c.n_candidate}; "
        f"Holm-adjusted p = {p or 'n/a'}. {c.reason or c.not_gated_reason}"
    )
    klass = words.replace(" ", "-")
    return (
        f'<td class="{esc(klass)}" data-model="{esc(c.model)}" data-verdict="{esc(c.verdict)}" title="{esc(title)}">'
        f'<span class="mean">{esc(fmt_signed(c.change, meta))}{esc(rel)}</span>'
        f'<span class="ci">{esc(fmt_metric(c.baseline_mean, meta))} → {esc(fmt_metric(c.candidate_mean, meta))}</span>'
        f'<span class="sub">{esc(words)}{esc(" · " + p if p else "")}</span></td>'
    )


def _diff_table(comp: RunComparison) -> str:
    if not comp.config_diff:
        return '<p class="note">Configuration: identical (suite, sampling, dtype, device, threads, CPU, versions).</p>'
    rows = "".join(
        f'<tr><th scope="row">{esc(key)}</th><td>{esc(b or "–")}</td><td>{esc(c or "–")}</td></tr>'
        for key, b, c in comp.config_diff
    )
    return (
        '<table class="summary config-diff"><caption>Configuration that differs between the runs</caption>'
        f"<thead><tr><th>setting</th><th>baseline</th><th>candidate</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def comparison_table(comp: RunComparison, ctx: ReportContext) -> str:
    title = f"<h3>{esc(run_label(comp.candidate))} vs baseline {esc(run_label(comp.baseline))}</h3>"
    notes = [f"Only in the baseline, not compared: {', '.join(comp.only_baseline)}."] if comp.only_baseline else []
    if comp.only_candidate:
        notes.append(f"Only in {run_label(comp.candidate)}, not compared: {', '.join(comp.only_candidate)}.")
    if comp.refused is not None:
        notes.insert(0, f"Not compared: {comp.refused}")
    notes.extend(comp.result.notes if comp.result else [])
    body = title + "".join(f'<p class="note">{esc(n)}</p>' for n in notes) + _diff_table(comp)
    if comp.result is None:
        return f'<div class="comparison refused" data-candidate="{esc(run_label(comp.candidate))}">{body}</div>'
    models = list(dict.fromkeys(c.model for c in comp.comparisons))
    cells = {(c.metric, c.model): c for c in comp.comparisons}
    rows = []
    for metric in dict.fromkeys(c.metric for c in comp.comparisons):
        meta = ctx.metrics.get(metric, {})
        rows.append(
            f'<tr data-metric="{esc(metric)}"><th scope="row">{esc(metric_label(metric, meta))}</th>'
            + "".join(_cell(cells.get((metric, m)), meta) for m in models)
            + "</tr>"
        )
    heads = "".join(f'<th data-model="{esc(m)}">{esc(m)}</th>' for m in models)
    return (
        f'<div class="comparison" data-candidate="{esc(run_label(comp.candidate))}">{body}'
        f'<table class="summary compare" data-candidate="{esc(run_label(comp.candidate))}"><caption>'
        "Candidate − baseline (mean), decided as <code>harness gate</code> decides with the default rules: one-sided "
        "tests on per-prompt means, Holm-adjusted over the page's family, tolerances from docs/ci.md."
        f"</caption><thead><tr><th>Metric</th>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def comparison_section(ctx: ReportContext) -> str:
    """Empty (section skipped) for a single run."""
    comps = comparisons(ctx)
    if not comps:
        return ""
    intro = (
        "<p>The first run is the baseline. Each cell is the verdict <code>harness gate CANDIDATE --baseline "
        "BASELINE</code> gives with the default rules (the same tests, clustering by prompt, Holm family and "
        "refusals): green = improved, red = regressed, amber = a change beyond tolerance that the data cannot "
        "confirm. Timing metrics are replicated by runs, so one run per side leaves timing changes inconclusive; "
        "gate several rounds to decide (docs/ci.md).</p>"
    )
    return intro + "".join(comparison_table(c, ctx) for c in comps)
