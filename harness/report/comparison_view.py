"""Comparison view: per-metric deltas of each candidate run against the baseline (the first run).

Self-contained on purpose (the CI gate in harness/gate/ is the decision tool; this view is for reading).
Samples are paired by (model, prompt id, sample index) when both runs used the same prompts, and
compared with a Wilcoxon signed-rank test; otherwise with Mann-Whitney U. p-values are Holm-adjusted
over all tests of one comparison, because a report tests dozens of metric × model cells at once.
Timing metrics vary from run to run as a whole (load, clock), so their per-sample p-values overstate
certainty: they are marked as indicative, and batched timings are never compared with batch-1 ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from harness.records import Run
from harness.report.context import ReportContext, finite, metric_label, run_label
from harness.report.markup import esc, fmt_metric, fmt_signed

ALPHA = 0.05


@dataclass
class Delta:
    """One metric × model cell of a comparison."""

    metric: str
    model: str
    baseline: float | None
    candidate: float | None
    test: str  # wilcoxon | mann-whitney | identical | none
    n: int  # pairs (paired) or min group size
    p: float | None = None
    p_holm: float | None = None
    verdict: str = "no significant change"  # improved | regressed | changed | identical | no data

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        return self.candidate - self.baseline

    @property
    def relative(self) -> float | None:
        if self.delta is None or not self.baseline:
            return None
        return self.delta / abs(self.baseline)


@dataclass
class Comparison:
    baseline: Run
    candidate: Run
    paired: bool
    deltas: list[Delta] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _suite(run: Run) -> dict[str, Any]:
    return run.manifest.suite.identity()


def _by_key(run: Run, model: str, metric: str) -> dict[tuple[str, int], tuple[float, bool]]:
    """(prompt id, sample index) -> (value, batched) for the samples of one model with a value."""
    out = {}
    for s in run.samples:
        if s.get("model") != model:
            continue
        value = finite(s.get("metrics", {}).get(metric))
        if value is not None:
            out[(str(s.get("prompt_id")), int(s.get("sample_index", 0)))] = (value, bool(s.get("batched", False)))
    return out


def _test(base: dict, cand: dict, paired: bool) -> tuple[str, int, float | None, float | None, float | None]:
    """(test, n, p, baseline mean, candidate mean) on the values the test used."""
    if paired:
        keys = sorted(base.keys() & cand.keys())
        b = np.array([base[k][0] for k in keys])
        c = np.array([cand[k][0] for k in keys])
    else:
        b = np.array([v[0] for v in base.values()])
        c = np.array([v[0] for v in cand.values()])
    if len(b) == 0 or len(c) == 0:
        return "none", 0, None, None, None
    means = float(b.mean()), float(c.mean())
    if paired and np.array_equal(b, c):
        return "identical", len(b), 1.0, *means
    if not paired and len(set(b.tolist()) | set(c.tolist())) == 1:
        return "identical", min(len(b), len(c)), 1.0, *means
    try:
        if paired:
            p = float(stats.wilcoxon(b, c, zero_method="wilcox").pvalue) if np.any(b != c) else 1.0
            return "wilcoxon", len(b), p if math.isfinite(p) else None, *means
        p = float(stats.mannwhitneyu(b, c, alternative="two-sided").pvalue)
        return "mann-whitney", min(len(b), len(c)), p if math.isfinite(p) else None, *means
    except ValueError:  # too few non-zero differences for the test
        return ("wilcoxon" if paired else "mann-whitney"), len(b), None, *means


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _verdict(d: Delta, higher_is_better: bool | None) -> str:
    if d.test == "identical":
        return "identical"
    if d.test == "none":
        return "no data"
    if d.p_holm is None or d.p_holm >= ALPHA or not d.delta:
        return "no significant change"
    if higher_is_better is None:
        return "changed"
    return "improved" if (d.delta > 0) == higher_is_better else "regressed"


def compare_runs(baseline: Run, candidate: Run, metrics: dict[str, dict[str, Any]], order: list[str]) -> Comparison:
    """Deltas of every metric and model the two runs share."""
    b_suite, c_suite = _suite(baseline), _suite(candidate)
    b_prompts = b_suite.get("prompts_sha256") or b_suite.get("sha256")
    paired = b_prompts is not None and b_prompts == (c_suite.get("prompts_sha256") or c_suite.get("sha256"))
    comp = Comparison(baseline=baseline, candidate=candidate, paired=paired)
    if not paired:
        comp.notes.append(
            "The runs used different prompts (prompts_sha256 differs): samples are not paired, "
            "Mann-Whitney U compares the distributions."
        )
    models = [m for m in baseline.models if m in candidate.models]
    for name in [m for m in candidate.models if m not in baseline.models]:
        comp.notes.append(f"Model {name!r} is not in the baseline run: not compared.")
    for metric in order:
        meta = metrics[metric]
        for model in models:
            if meta.get("level") == "model":
                b = [
                    finite(r.get("metrics", {}).get(metric)) for r in baseline.model_metrics if r.get("model") == model
                ]
                c = [
                    finite(r.get("metrics", {}).get(metric)) for r in candidate.model_metrics if r.get("model") == model
                ]
                if b or c:
                    d = Delta(metric, model, b[0] if b else None, c[0] if c else None, "none", 1)
                    d.verdict = "identical" if d.delta == 0 else "one value per run: no test"
                    comp.deltas.append(d)
                continue
            base, cand = _by_key(baseline, model, metric), _by_key(candidate, model, metric)
            if not base and not cand:
                continue
            if meta.get("kind") == "timing" and {v[1] for v in base.values()} != {v[1] for v in cand.values()}:
                comp.notes.append(
                    f"{metric} of {model!r}: one run is batched and the other is not; timings not compared."
                )
                continue
            test, n, p, bm, cm = _test(base, cand, paired)
            comp.deltas.append(Delta(metric, model, bm, cm, test, n, p, verdict="no data" if test == "none" else ""))
    tested = [d for d in comp.deltas if d.p is not None and d.test in ("wilcoxon", "mann-whitney")]
    for d, adj in zip(tested, holm([d.p for d in tested]), strict=True):
        d.p_holm = adj
    for d in comp.deltas:
        if d.test != "none":
            d.verdict = _verdict(d, metrics[d.metric].get("higher_is_better"))
    return comp


def comparisons(ctx: ReportContext) -> tuple[list[Comparison], list[str]]:
    """Baseline (first run) against each later run of the same suite; other suites are named, not compared."""
    if len(ctx.runs) < 2:
        return [], []
    baseline, out, notes = ctx.runs[0], [], []
    for cand in ctx.runs[1:]:
        b_name, c_name = _suite(baseline).get("name"), _suite(cand).get("name")
        if b_name != c_name:
            notes.append(f"{run_label(cand)} ran suite {c_name!r}, the baseline ran {b_name!r}: not compared.")
            continue
        out.append(compare_runs(baseline, cand, ctx.metrics, ctx.metric_order))
    return out, notes


def _cell(d: Delta | None, meta: dict[str, Any]) -> str:
    if d is None:
        return "<td>–</td>"
    rel = f" ({d.relative:+.1%})" if d.relative and meta.get("unit") != "%" else ""
    p = f"p={d.p_holm:.3g}" if d.p_holm is not None else ""
    timing = " · timing: indicative" if meta.get("kind") == "timing" and d.test in ("wilcoxon", "mann-whitney") else ""
    title = (
        f"baseline {fmt_metric(d.baseline, meta)} → candidate {fmt_metric(d.candidate, meta)}; {d.test}, "
        f"n = {d.n}; Holm-adjusted p = {p or 'n/a'}"
    )
    klass = d.verdict.replace(" ", "-").replace(":", "")
    return (
        f'<td class="{esc(klass)}" data-model="{esc(d.model)}" data-verdict="{esc(d.verdict)}" title="{esc(title)}">'
        f'<span class="mean">{esc(fmt_signed(d.delta, meta))}{esc(rel)}</span>'
        f'<span class="ci">{esc(fmt_metric(d.baseline, meta))} → {esc(fmt_metric(d.candidate, meta))}</span>'
        f'<span class="sub">{esc(d.verdict)}{esc(" · " + p if p else "")}{esc(timing)}</span></td>'
    )


def comparison_table(comp: Comparison, ctx: ReportContext) -> str:
    models = list(dict.fromkeys(d.model for d in comp.deltas))
    cells = {(d.metric, d.model): d for d in comp.deltas}
    rows = []
    for metric in dict.fromkeys(d.metric for d in comp.deltas):
        meta = ctx.metrics[metric]
        rows.append(
            f'<tr data-metric="{esc(metric)}"><th scope="row">{esc(metric_label(metric, meta))}</th>'
            + "".join(_cell(cells.get((metric, m)), meta) for m in models)
            + "</tr>"
        )
    heads = "".join(f'<th data-model="{esc(m)}">{esc(m)}</th>' for m in models)
    how = "paired Wilcoxon signed-rank" if comp.paired else "Mann-Whitney U (unpaired)"
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in comp.notes)
    return (
        f"<h3>{esc(run_label(comp.candidate))} vs baseline {esc(run_label(comp.baseline))}</h3>{notes}"
        f'<table class="summary compare" data-candidate="{esc(run_label(comp.candidate))}"><caption>'
        f"Candidate − baseline (mean); {esc(how)}, Holm-adjusted, α = {ALPHA}.</caption>"
        f"<thead><tr><th>Metric</th>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def comparison_section(ctx: ReportContext) -> str:
    """Empty (section skipped) for a single run."""
    comps, notes = comparisons(ctx)
    if not comps and not notes:
        return ""
    intro = (
        "<p>The first run is the baseline. Green = improved, red = regressed, by each metric's direction; "
        "significance is per sample, so for timing metrics (which vary by run) treat it as indicative and use "
        "<code>harness gate</code> with several rounds to decide.</p>"
    )
    return (
        intro
        + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
        + "".join(comparison_table(c, ctx) for c in comps)
    )
