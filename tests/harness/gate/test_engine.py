"""The gate's decisions on run directories written in the documented format."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from harness.errors import UserError
from harness.gate.engine import GateResult
from harness.gate.metric_tests import IMPROVED, INCONCLUSIVE, INFO, MISSING, PASS, REGRESSION, WARNING

QUALITY = ["perplexity", "repetition_rate"]


def by(result: GateResult, metric: str, model: str = "m"):  # noqa: ANN201 - test helper
    return next(c for c in result.comparisons if c.metric == metric and c.model == model)


def noisy(values: list[float | None], factor: float, sd: float, seed: int) -> list[float | None]:
    """The same samples, scaled and with fresh multiplicative noise: a changed model on the same prompts."""
    rng = np.random.default_rng(seed)
    return [None if v is None else float(v * factor * rng.lognormal(-sd * sd / 2, sd)) for v in values]


def test_identical_runs_pass_at_once(kit: SimpleNamespace) -> None:
    values = {"m": kit.values(100, seed=1)}
    result = kit.gate(
        kit.run("base", values, model_values={"m": {"heldout_bpb": 1.5}}),
        kit.run("cand", values, model_values={"m": {"heldout_bpb": 1.5}}),
    )
    assert result.exit_code == 0 and result.status == "pass"
    assert all(c.method == "identical" and c.verdict == PASS for c in result.comparisons)
    assert all(c.p_adjusted is None for c in result.comparisons)  # nothing spent on Holm


def test_injected_regression_fails(kit: SimpleNamespace) -> None:
    base = kit.values(100, seed=1)
    cand = {**base, "perplexity": noisy(base["perplexity"], 1.10, 0.05, seed=2)}
    result = kit.gate(kit.run("base", {"m": base}), kit.run("cand", {"m": cand}))
    comp = by(result, "perplexity")
    assert comp.verdict == REGRESSION and result.exit_code == 1
    assert comp.method == "wilcoxon" and comp.rel_change == pytest.approx(0.10, abs=0.02)
    assert comp.ci.rel_low < comp.rel_change < comp.ci.rel_high
    assert comp.p_adjusted <= comp.rule.alpha
    assert [c.metric for c in result.regressions] == ["perplexity"]


def test_significant_change_within_tolerance_passes(kit: SimpleNamespace) -> None:
    base = kit.values(100, seed=1)
    cand = {**base, "perplexity": noisy(base["perplexity"], 1.01, 0.005, seed=2)}
    comp = by(kit.gate(kit.run("base", {"m": base}), kit.run("cand", {"m": cand})), "perplexity")
    assert comp.p_value < 1e-6  # clearly significant ...
    assert comp.verdict == PASS and not comp.beyond_tolerance  # ... but only 1%, under the 2% default


def test_improvement_is_not_a_regression(kit: SimpleNamespace) -> None:
    base = kit.values(100, seed=1)
    cand = {**base, "perplexity": noisy(base["perplexity"], 0.90, 0.05, seed=2)}
    result = kit.gate(kit.run("base", {"m": base}), kit.run("cand", {"m": cand}))
    assert by(result, "perplexity").verdict == IMPROVED and result.exit_code == 0


def test_direction_handling(kit: SimpleNamespace) -> None:
    metrics = {
        name: {"unit": "", "higher_is_better": hib, "level": "sample", "kind": "quality"}
        for name, hib in (("up", True), ("down", False), ("flat", None))
    }
    rng = np.random.default_rng(3)
    base = {name: [float(v) for v in rng.lognormal(0, 0.2, 100)] for name in metrics}
    cand = {name: noisy(series, 0.85, 0.02, seed=4) for name, series in base.items()}  # everything drops 15%
    dirs = kit.run("base", {"m": base}, metrics=metrics), kit.run("cand", {"m": cand}, metrics=metrics)
    result = kit.gate(*dirs)
    assert by(result, "up").verdict == REGRESSION  # higher is better and it fell
    assert by(result, "down").verdict == IMPROVED  # lower is better and it fell
    flat = by(result, "flat")
    assert flat.verdict == INFO and not flat.gated and flat.p_value < 0.01  # no direction: reported only
    result = kit.gate(*dirs, rules="metrics:\n  flat: {direction: any}\n  down: {direction: higher}\n")
    assert by(result, "flat").verdict == REGRESSION and by(result, "down").verdict == REGRESSION


def test_missing_values(kit: SimpleNamespace) -> None:
    base = kit.values(100, seed=1)
    partial = {**base, "perplexity": [None if i % 10 == 0 else v for i, v in enumerate(base["perplexity"])]}
    comp = by(kit.gate(kit.run("base", {"m": base}), kit.run("partial", {"m": partial})), "perplexity")
    assert comp.verdict == PASS and comp.missing_candidate == 10 and comp.n_candidate == 90
    assert comp.method == "wilcoxon" and comp.change == 0  # pairs present on both sides are unchanged

    gone = {**base, "perplexity": [None] * 100}
    result = kit.gate(kit.run("base2", {"m": base}), kit.run("gone", {"m": gone}))
    assert by(result, "perplexity").verdict == MISSING and result.exit_code == 1

    # a baseline with no usable value for a gated metric is missing evidence: an input error, never a pass
    with pytest.raises(UserError, match="metric 'perplexity' of model 'm' has no usable baseline value"):
        kit.gate(kit.run("base3", {"m": gone}), kit.run("back", {"m": base}))
    # a metric the baseline never had is new: reported, not gated
    result = kit.gate(
        kit.run("base4", {"m": {k: v for k, v in base.items() if k != "perplexity"}}), kit.run("new", {"m": base})
    )
    assert by(result, "perplexity").verdict == INFO and result.exit_code == 0


def test_suite_mismatch_is_an_input_error(kit: SimpleNamespace) -> None:
    values = {"m": kit.values(20, seed=1)}
    base = kit.run("base", values)
    with pytest.raises(UserError, match="suite mismatch: candidate suite"):
        kit.gate(base, kit.run("other_suite", values, suite_sha="c" * 64))
    with pytest.raises(UserError, match="different prompts"):
        kit.gate(base, kit.run("other_prompts", values, suite_sha="c" * 64, prompts_sha="d" * 64))


def test_model_mismatches(kit: SimpleNamespace) -> None:
    values = {"m": kit.values(20, seed=1)}
    base = kit.run("base", values)
    retrained = kit.run("retrained", values, infos={"m": {"weights_sha256": "x" * 64}})
    result = kit.gate(base, retrained)  # a model change is what gates are for: allowed, with a note
    assert result.exit_code == 0 and any("weights_sha256 differs" in n for n in result.notes)
    with pytest.raises(UserError, match="model mismatch: 'm' weights_sha256"):
        kit.gate(base, retrained, rules="require_match: [weights]\n")
    with pytest.raises(UserError, match="exact gates need the baseline's weights"):
        kit.gate(base, retrained, rules="metrics:\n  perplexity: {test: exact}\n")
    with pytest.raises(UserError, match="tokenizer_sha256"):
        kit.gate(base, kit.run("tok", values, infos={"m": {"tokenizer_sha256": "y" * 64}}))
    with pytest.raises(UserError, match="'m' device"):
        kit.gate(base, kit.run("gpu", values, infos={"m": {"device": "cuda:0"}}))
    assert (
        kit.gate(
            kit.run("gpu0", values, infos={"m": {"device": "cuda:0"}}),
            kit.run("gpu1", values, infos={"m": {"device": "cuda:1"}}),
        ).exit_code
        == 0
    )  # same device kind


def test_model_sets(kit: SimpleNamespace) -> None:
    base = kit.run("base", {"a": kit.values(20, seed=1), "b": kit.values(20, seed=2)})
    with pytest.raises(UserError, match="candidate has no model 'b'"):
        kit.gate(base, kit.run("only_a", {"a": kit.values(20, seed=1)}))
    only_a = kit.gate(base, kit.run("only_a2", {"a": kit.values(20, seed=1)}), models=["a"])
    assert {c.model for c in only_a.comparisons} == {"a"}
    more = kit.gate(
        kit.run("base_a", {"a": kit.values(20, seed=1)}),
        kit.run("a_and_c", {"a": kit.values(20, seed=1), "c": kit.values(20, seed=3)}),
    )
    assert any("not in the baseline" in n for n in more.notes) and {c.model for c in more.comparisons} == {"a"}
    with pytest.raises(UserError, match="no metric 'perplexty'"):
        kit.gate(base, base, metrics=["perplexty"])


def test_incomplete_candidate_is_an_input_error(kit: SimpleNamespace) -> None:
    values = {"m": kit.values(20, seed=1)}
    with pytest.raises(UserError, match="run status is 'interrupted'"):
        kit.gate(kit.run("base", values), kit.run("cand", values, status="interrupted"))


def test_holm_correction_across_metrics(kit: SimpleNamespace) -> None:
    """One moderate regression is significant alone but not after correcting over ten noisy metrics."""
    names = ["target"] + [f"other{i}" for i in range(9)]
    metrics = {n: {"unit": "", "higher_is_better": False, "level": "sample", "kind": "quality"} for n in names}
    rng = np.random.default_rng(11)
    base = {n: [float(v) for v in rng.lognormal(0, 0.3, 60)] for n in names}
    cand = {n: noisy(base[n], 1.0, 0.3, seed=20 + i) for i, n in enumerate(names)}
    cand["target"] = noisy(base["target"], 1.20, 0.3, seed=8)
    dirs = kit.run("base", {"m": base}, metrics=metrics), kit.run("cand", {"m": cand}, metrics=metrics)
    alone = by(kit.gate(*dirs, metrics=["target"]), "target")
    assert alone.verdict == REGRESSION and alone.p_value == alone.p_adjusted and alone.family_size == 1
    together = kit.gate(*dirs)
    target = by(together, "target")
    assert target.p_value == pytest.approx(alone.p_value)
    assert target.family_size == 10 and target.p_adjusted > 0.05 and target.verdict == PASS
    assert target.beyond_tolerance and target.reason == "beyond tolerance but not significant"
    assert together.exit_code == 0


def _rounds(kit: SimpleNamespace, side: str, factor: float, n: int, env: dict | None = None) -> list:
    rng = np.random.default_rng(100 if side == "base" else 200)
    fixed = kit.values(100, seed=1)
    paths = []
    for r in range(n):
        values = kit.values(
            100, seed=sum(map(ord, side)) * 10 + r, run_shift=float(rng.normal(0, 0.03)), scale={"tps": factor}
        )
        values.update({k: fixed[k] for k in ("perplexity", "repetition_rate", "tokens_generated")})
        paths.append(kit.run(f"{side}/r{r}", {"m": values}, environment=env))
    return paths


def test_timing_rounds_detect_a_tps_drop(kit: SimpleNamespace) -> None:
    base = _rounds(kit, "base", 1.0, 5)
    result = kit.gate(base, _rounds(kit, "slow", 0.85, 5), rounds=5)
    tps = by(result, "tps")
    assert tps.unit_of_replication == "round" and tps.n_baseline == 5 and tps.n_candidate == 5
    assert tps.verdict == REGRESSION and tps.p_value == pytest.approx(1 / 252) and result.exit_code == 1
    assert by(result, "perplexity").method == "identical"
    null = kit.gate(base, _rounds(kit, "same", 1.0, 5), rounds=5)
    assert by(null, "tps").verdict == PASS and null.exit_code == 0
    with pytest.raises(UserError, match="--rounds 4: the baseline has 5 round"):
        kit.gate(base, _rounds(kit, "slow2", 0.85, 5), rounds=4)


def test_single_round_timing_change_is_inconclusive(kit: SimpleNamespace) -> None:
    base = _rounds(kit, "base", 1.0, 1)
    slow = _rounds(kit, "slow", 0.70, 1)
    result = kit.gate(base, slow)
    assert by(result, "tps").verdict == INCONCLUSIVE and result.exit_code == 0 and result.status == "inconclusive"
    assert any("replicated by runs" in n for n in result.notes)
    assert kit.gate(base, slow, fail_on_inconclusive=True).exit_code == 3
    # the user can accept per-sample replication with a wide tolerance for single runs
    wide = kit.gate(base, slow, rules="metrics:\n  tps: {replicate: samples, rel_tolerance: 0.2}\n")
    assert by(wide, "tps").verdict == REGRESSION and by(wide, "tps").method == "wilcoxon"


def test_timing_from_another_machine_is_reported_not_gated(kit: SimpleNamespace) -> None:
    base = _rounds(kit, "base", 1.0, 5, env={**kit.ENV, "cpu": "Other CPU"})
    slow = _rounds(kit, "slow", 0.85, 5)
    result = kit.gate(base, slow)
    tps = by(result, "tps")
    assert tps.verdict == WARNING and not tps.gated and result.exit_code == 0
    assert "another machine" in tps.reason and result.other_machine
    assert any("across machines" in n for n in result.notes)
    gated = kit.gate(base, slow, rules="timing_other_machine: gate\n")
    assert by(gated, "tps").verdict == REGRESSION and gated.exit_code == 1


def test_strict_mode_needs_the_whole_interval_beyond_tolerance(kit: SimpleNamespace) -> None:
    base = kit.values(100, seed=1)
    cand = {**base, "perplexity": noisy(base["perplexity"], 1.03, 0.08, seed=2)}
    dirs = kit.run("base", {"m": base}), kit.run("cand", {"m": cand})
    loose = by(kit.gate(*dirs), "perplexity")
    assert loose.verdict == REGRESSION and loose.ci.rel_low < 0.02  # point beyond 2%, interval reaches below it
    strict = by(kit.gate(*dirs, rules="metrics:\n  perplexity: {strict: true}\n"), "perplexity")
    assert strict.verdict == PASS


def test_exact_gate_for_deterministic_metrics(kit: SimpleNamespace) -> None:
    base = kit.values(50, seed=1)
    nudged = list(base["perplexity"])
    nudged[7] += 1e-6
    dirs = kit.run("base", {"m": base}), kit.run("cand", {"m": {**base, "perplexity": nudged}})
    exact = by(kit.gate(*dirs, rules="metrics:\n  perplexity: {test: exact, abs_tolerance: 0}\n"), "perplexity")
    assert exact.verdict == REGRESSION and "1 of 50 values differ (first p007#0" in exact.reason
    fp = by(kit.gate(*dirs, rules="metrics:\n  perplexity: {test: exact, abs_tolerance: 1.0e-5}\n"), "perplexity")
    assert fp.verdict == PASS and fp.method == "identical"
    default = by(kit.gate(*dirs), "perplexity")
    assert default.verdict == PASS  # a 1e-6 nudge is far inside the 2% tolerance


def test_several_samples_per_prompt_use_prompt_clusters(kit: SimpleNamespace) -> None:
    base = kit.values(40, seed=1, samples_per_prompt=3)
    cand = {**base, "repetition_rate": noisy(base["repetition_rate"], 1.3, 0.1, seed=2)}
    result = kit.gate(
        kit.run("base", {"m": base}, samples_per_prompt=3), kit.run("cand", {"m": cand}, samples_per_prompt=3)
    )
    comp = by(result, "repetition_rate")
    assert comp.unit_of_replication == "prompt (cluster)" and comp.test.n == 40  # 40 prompts, not 120 samples
    assert comp.verdict == REGRESSION


def test_unpaired_test_when_asked(kit: SimpleNamespace) -> None:
    base = kit.values(100, seed=1)
    cand = {**base, "perplexity": noisy(base["perplexity"], 1.3, 0.1, seed=2)}
    comp = by(
        kit.gate(
            kit.run("base", {"m": base}),
            kit.run("cand", {"m": cand}),
            rules="metrics:\n  perplexity: {test: mannwhitney}\n",
        ),
        "perplexity",
    )
    assert comp.method == "mannwhitney" and comp.verdict == REGRESSION


def test_model_level_metric_single_value(kit: SimpleNamespace) -> None:
    values = {"m": kit.values(20, seed=1)}
    base = kit.run("base", values, model_values={"m": {"heldout_bpb": 1.50}})
    worse = by(kit.gate(base, kit.run("worse", values, model_values={"m": {"heldout_bpb": 1.60}})), "heldout_bpb")
    assert worse.verdict == REGRESSION and worse.method == "single value"
    close = by(kit.gate(base, kit.run("close", values, model_values={"m": {"heldout_bpb": 1.51}})), "heldout_bpb")
    assert close.verdict == PASS


def test_exact_gate_applies_to_metrics_without_direction(kit: SimpleNamespace) -> None:
    base = kit.values(20, seed=1)
    longer = {**base, "tokens_generated": [v + 1 for v in base["tokens_generated"]]}
    result = kit.gate(
        kit.run("base", {"m": base}),
        kit.run("cand", {"m": longer}),
        rules="metrics:\n  tokens_generated: {test: exact}\n",
    )
    comp = by(result, "tokens_generated")
    assert comp.gated and comp.verdict == REGRESSION and result.exit_code == 1
