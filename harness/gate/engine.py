"""The gate: check that baseline and candidate are comparable, compare every metric × model,
correct for multiple testing, and decide.

Input errors (exit 2) are raised as :class:`harness.errors.UserError` *before* any statistics:
a different suite or different prompts means the numbers do not measure the same thing, so the
gate must not pass by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, UserError, did_you_mean
from harness.gate.data import MetricMeta, Side
from harness.gate.metric_tests import (
    IMPROVED,
    INCONCLUSIVE,
    INFO,
    MISSING,
    PASS,
    REGRESSION,
    WARNING,
    Comparison,
    compare,
)
from harness.gate.rules import Rules
from harness.gate.stats import holm

ENVIRONMENT_FIELDS = ("cpu", "platform", "device", "threads")
MATCH_FIELDS = {"weights": "weights_sha256", "tokenizer": "tokenizer_sha256", "dtype": "dtype", "device": "device"}


@dataclass
class GateResult:
    """The outcome of a gate: every comparison, notes for the reader, and the exit code."""

    comparisons: list[Comparison]
    baseline: Side
    candidate: Side
    rules: Rules
    notes: list[str] = field(default_factory=list)
    other_machine: list[str] = field(default_factory=list)  # which environment fields differ
    fail_on_inconclusive: bool = False

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.failing]

    @property
    def inconclusive(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.gated and c.verdict == INCONCLUSIVE]

    @property
    def status(self) -> str:
        if self.regressions:
            return "regression"
        return "inconclusive" if self.inconclusive else "pass"

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return EXIT_REGRESSION
        if self.inconclusive and self.fail_on_inconclusive:
            return EXIT_INCONCLUSIVE
        return EXIT_OK


def check_suites(baseline: Side, candidate: Side) -> None:
    """Different suite hash or prompts: an input error, never a pass."""
    b, c = baseline.suite, candidate.suite
    if b.get("prompts_sha256") and c.get("prompts_sha256") and b["prompts_sha256"] != c["prompts_sha256"]:
        raise UserError(
            f"suite mismatch: the candidate ran different prompts than the baseline "
            f"(prompts_sha256 {str(c['prompts_sha256'])[:12]} vs {str(b['prompts_sha256'])[:12]}); "
            f"re-export the baseline from a run of the same suite"
        )
    if b.get("sha256") != c.get("sha256"):
        raise UserError(
            f"suite mismatch: candidate suite {c.get('name')!r} (sha256 {str(c.get('sha256'))[:12]}) is not the "
            f"baseline's {b.get('name')!r} (sha256 {str(b.get('sha256'))[:12]}): prompts, sampling or metrics "
            f"changed; re-export the baseline with 'harness baseline export'"
        )


def _device_kind(value: Any) -> Any:
    return str(value).split(":")[0] if value is not None else None


def check_models(baseline: Side, candidate: Side, rules: Rules, models: list[str], exact_models: set[str]) -> list[str]:
    """Required model-info matches (exit 2 on a mismatch); returns notes about allowed differences."""
    notes = []
    for model in models:
        b_info, c_info = baseline.models.get(model, {}), candidate.models.get(model, {})
        required = set(rules.spec.require_match) | ({"weights"} if model in exact_models else set())
        for name, key in MATCH_FIELDS.items():
            b_val, c_val = b_info.get(key), c_info.get(key)
            if name == "device":
                b_val, c_val = _device_kind(b_val), _device_kind(c_val)
            if b_val is None or c_val is None or b_val == c_val:
                continue
            shown = f"{str(c_val)[:12]} vs baseline {str(b_val)[:12]}"
            if name in required:
                why = (
                    "exact gates need the baseline's weights"
                    if name == "weights" and model in exact_models
                    else f"remove {name!r} from require_match in the rules to compare anyway"
                )
                raise UserError(f"model mismatch: {model!r} {key} is {shown}; {why}")
            notes.append(f"{model}: {key} differs from the baseline ({shown}): gating a model change")
    return notes


def environment_differences(baseline: Side, candidate: Side) -> list[str]:
    """Which machine properties differ: timing from another machine measures the machine, not the change."""
    diffs = []
    b_env, c_env = baseline.environment, candidate.environment
    for key in ENVIRONMENT_FIELDS:
        if b_env.get(key) is not None and c_env.get(key) is not None and b_env.get(key) != c_env.get(key):
            diffs.append(f"{key} {c_env.get(key)!r} vs baseline {b_env.get(key)!r}")
    b_batch, c_batch = baseline.rounds[0].batch_size, candidate.rounds[0].batch_size
    if b_batch is not None and c_batch is not None and b_batch != c_batch:
        diffs.append(f"batch_size {c_batch} vs baseline {b_batch}")
    return diffs


def _select(wanted: list[str] | None, available: list[str], what: str) -> list[str]:
    if not wanted:
        return available
    for name in wanted:
        if name not in available:
            raise UserError(f"no {what} {name!r} in both baseline and candidate{did_you_mean(name, available)}")
    return [n for n in available if n in wanted]


def _metas(baseline: Side, candidate: Side, notes: list[str]) -> dict[str, MetricMeta]:
    """The baseline defines what a regression is; a candidate that disagrees on direction gets a note."""
    metas = dict(baseline.metrics)
    for name, meta in candidate.metrics.items():
        if name not in metas:
            metas[name] = meta
        elif metas[name].higher_is_better != meta.higher_is_better:
            notes.append(
                f"{name}: candidate says higher_is_better={meta.higher_is_better}, baseline "
                f"{metas[name].higher_is_better}; using the baseline's"
            )
    return metas


def _clearly_better(comp: Comparison) -> bool:
    """An improvement is claimed when the whole CI is on the better side (tests are one-sided toward worse)."""
    if comp.test is None:
        return True  # a single deterministic value
    low, high = comp.ci.abs_low, comp.ci.abs_high
    if low is None or high is None:
        return False
    return high < 0 if comp.rule.direction == "lower" else low > 0


def _settle(comp: Comparison) -> None:
    """The verdict of a comparison whose significance is known (or not needed)."""
    rule = comp.rule
    if comp.verdict == REGRESSION:  # exact gates decide without a test
        return
    if comp.n_baseline and not comp.n_candidate:
        comp.verdict, comp.reason = (
            MISSING,
            f"no candidate values ({comp.missing_candidate} missing); the baseline has {comp.n_baseline}",
        )
        return
    if not comp.n_baseline:
        comp.verdict = INFO
        comp.reason = (
            "no values on either side"
            if not comp.n_candidate
            else "no baseline values: new metric or model, nothing to compare"
        )
        comp.gated = False
        return
    if comp.method == "identical":
        comp.verdict, comp.reason = PASS, comp.reason or "identical values"
        return
    if rule.direction == "none":
        comp.verdict, comp.reason = INFO, "no better direction (higher_is_better is null): reported, not gated"
        return
    significant = comp.test is not None and (comp.p_adjusted if comp.in_family else comp.test.p_value) <= rule.alpha
    if comp.method == "single value":
        significant = True  # a deterministic model-level value: any change beyond tolerance is real
    if comp.beyond_tolerance:
        if significant:
            comp.verdict = REGRESSION if comp.gated else WARNING
            comp.reason = (
                "one value per side: changed beyond tolerance"
                if comp.test is None
                else "significant and beyond tolerance"
            )
        elif comp.test is not None and comp.test.min_p * max(1, comp.family_size) > rule.alpha:
            comp.verdict = INCONCLUSIVE
            comp.reason = (
                f"beyond tolerance, but {comp.n_baseline} vs {comp.n_candidate} {comp.unit_of_replication}s "
                f"cannot reach p ≤ {rule.alpha / max(1, comp.family_size):.2g} (best possible p = "
                f"{comp.test.min_p:.2g}); add {'rounds (--rounds)' if comp.unit_of_replication == 'round' else 'samples'}"
            )
        else:
            comp.verdict, comp.reason = PASS, "beyond tolerance but not significant"
    elif comp.better_beyond_tolerance and _clearly_better(comp):
        comp.verdict, comp.reason = IMPROVED, "better beyond tolerance"
    else:
        comp.verdict, comp.reason = PASS, comp.reason or "within tolerance"
    if not comp.gated and comp.not_gated_reason:
        comp.reason = f"{comp.reason}; not gated: {comp.not_gated_reason}"


def run_gate(
    baseline: Side,
    candidate: Side,
    rules: Rules | None = None,
    models: list[str] | None = None,
    metrics: list[str] | None = None,
    rounds: int | None = None,
    fail_on_inconclusive: bool = False,
    seed: int = 0,
) -> GateResult:
    """Compare candidate against baseline under the rules; raise UserError for input errors (exit 2)."""
    rules = rules or Rules()
    check_suites(baseline, candidate)
    if rounds is not None:
        for side, name in ((baseline, "baseline"), (candidate, "candidate")):
            if len(side.rounds) != rounds:
                raise UserError(
                    f"--rounds {rounds}: the {name} has {len(side.rounds)} round(s) ({side.label}); "
                    f"give one run directory per round"
                )
    missing = [m for m in baseline.model_names if m not in candidate.model_names]
    wanted_missing = [m for m in missing if not models or m in models]
    if wanted_missing:
        raise UserError(
            f"candidate has no model {wanted_missing[0]!r} that the baseline has; run it, or gate a subset with --model"
        )
    model_list = _select(models, [m for m in baseline.model_names if m in candidate.model_names], "model")
    notes: list[str] = []
    extra = [m for m in candidate.model_names if m not in baseline.model_names]
    if extra:
        notes.append(f"not in the baseline, not gated: {', '.join(extra)}")
    metas = _metas(baseline, candidate, notes)
    rules.check_names(list(metas), baseline.model_names + extra)
    metric_list = _select(metrics, list(metas), "metric")
    resolved = {
        (m, model): rules.resolve(m, model, metas[m].kind, metas[m].higher_is_better)
        for m in metric_list
        for model in model_list
    }
    exact_models = {model for (_, model), rule in resolved.items() if rule.test == "exact"}
    notes.extend(check_models(baseline, candidate, rules, model_list, exact_models))
    other_machine = environment_differences(baseline, candidate)
    if other_machine and any(metas[m].kind == "timing" for m in metric_list):
        action = (
            "gated anyway (timing_other_machine: gate)"
            if rules.spec.timing_other_machine == "gate"
            else "reported, not gated"
        )
        notes.append(f"timing metrics compared across machines ({'; '.join(other_machine)}): {action}")
    comparisons = []
    for metric in metric_list:
        for model in model_list:
            rule = resolved[(metric, model)]
            comp = compare(
                metas[metric],
                model,
                rule,
                baseline,
                candidate,
                rules.spec.bootstrap_resamples,
                rules.spec.confidence,
                seed,
            )
            if not rule.gate:
                comp.gated, comp.not_gated_reason = False, "gate: false in the rules"
            elif metas[metric].kind == "timing" and other_machine and rules.spec.timing_other_machine == "report":
                comp.gated, comp.not_gated_reason = False, "baseline from another machine"
            if rule.direction == "none" and rule.test != "exact":  # exact gates any change, whatever the direction
                comp.gated = False
            comparisons.append(comp)
    _require_baseline_evidence(comparisons, baseline)
    _holm(comparisons)
    for comp in comparisons:
        _settle(comp)
    notes.extend(_flag_busy_timing(comparisons, baseline, candidate))
    notes.extend(_flag_mixed_hardware(comparisons, baseline, candidate))
    single_round_timing = [c for c in comparisons if c.unit_of_replication == "round" and c.verdict == INCONCLUSIVE]
    if single_round_timing and min(len(baseline.rounds), len(candidate.rounds)) < 2:
        notes.append(
            "timing metrics are replicated by runs: with one run per side a timing change can only be "
            "inconclusive; use --rounds (docs/ci.md) or 'replicate: samples' with a wide tolerance"
        )
    return GateResult(comparisons, baseline, candidate, rules, notes, other_machine, fail_on_inconclusive)


def _require_baseline_evidence(comparisons: list[Comparison], baseline: Side) -> None:
    """A gated metric the baseline declares but holds no usable value for is an input error.

    Passing it would let a damaged baseline (values nulled or turned into strings) wave any regression
    through; only a metric the baseline never had (new metric or model) is reported as info.
    """
    for comp in comparisons:
        if comp.n_baseline or not comp.gated or comp.rule.direction == "none":
            continue
        if comp.metric in baseline.metrics and comp.model in baseline.models:
            raise UserError(
                f"{baseline.label}: metric {comp.metric!r} of model {comp.model!r} has no usable baseline value "
                f"({comp.missing_baseline} missing); the gate cannot decide without evidence: re-export the baseline "
                f"from a complete run, or leave the metric out (--metric, or 'gate: false' in the rules)"
            )


def _flag_busy_timing(comparisons: list[Comparison], baseline: Side, candidate: Side) -> list[str]:
    """Timing comparisons of a model whose timing was taken on a busy CPU say so (row and note).

    The verdict stands (a flag, not a pass): a timing regression measured under load may be the load.
    """
    notes = []
    for side, name in ((baseline, "baseline"), (candidate, "candidate")):
        busy: dict[str, list[str]] = {}
        for rnd in side.rounds:
            for model, flag in rnd.busy.items():
                busy.setdefault(model, []).append(flag)
        for model, flags in busy.items():
            timing = [c for c in comparisons if c.model == model and c.meta.kind == "timing"]
            for comp in timing:
                comp.reason = f"{comp.reason}; {name} timing taken on a busy CPU ({flags[0]})"
            if timing:
                notes.append(
                    f"{name} timing of {model} was taken while other processes used the CPU "
                    f"({', '.join(flags)} in {len(flags)} of {len(side.rounds)} round(s)): its timing verdicts may "
                    "reflect that load; re-run on a quiet machine to confirm"
                )
    return notes


def _flag_mixed_hardware(comparisons: list[Comparison], baseline: Side, candidate: Side) -> list[str]:
    """Timing comparisons of a model whose timing samples came from several kinds of hardware say so.

    Like a busy CPU, a flag and not a verdict: the mean mixes machines (``--executor ray``, harness.node).
    """
    notes = []
    for side, name in ((baseline, "baseline"), (candidate, "candidate")):
        mixed: dict[str, str] = {}
        for rnd in side.rounds:
            for model, reason in rnd.mixed_hardware.items():
                mixed.setdefault(model, reason)
        for model, reason in mixed.items():
            timing = [c for c in comparisons if c.model == model and c.meta.kind == "timing"]
            for comp in timing:
                comp.reason = f"{comp.reason}; {name} timing from different kinds of hardware"
            if timing:
                notes.append(
                    f"{name} timing of {model} mixes different kinds of hardware ({reason}): its timing verdicts "
                    "compare a blend of machines; pin the model to one kind of node to confirm"
                )
    return notes


def _holm(comparisons: list[Comparison]) -> None:
    """Holm across every gated test of the job.

    Left out: exact and identical gates (no test needed) and tests too small to ever reach alpha
    (Tarone's refinement: they cannot produce a false alarm, so they need no share of alpha).
    """
    family = [
        c
        for c in comparisons
        if c.gated
        and c.test is not None
        and c.rule.direction != "none"
        and c.method not in ("identical", "exact")
        and c.verdict != REGRESSION
        and c.test.min_p <= c.rule.alpha
    ]  # Tarone: a test that can never reject costs no alpha
    adjusted, divisors = holm([c.test.p_value for c in family])  # type: ignore[union-attr]
    for comp, p_adj, divisor in zip(family, adjusted, divisors, strict=True):
        comp.in_family, comp.p_adjusted = True, p_adj
        comp.alpha_step = comp.rule.alpha / divisor
        comp.family_size = len(family)
    for comp in comparisons:
        if not comp.in_family:
            comp.family_size = 1
