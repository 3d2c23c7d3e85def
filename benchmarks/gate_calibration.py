"""Calibrate ``harness gate``: false-alarm rate and power, measured by running the real gate many times.

    python benchmarks/gate_calibration.py --run runs/<a real run>   # resample real per-sample values
    python benchmarks/gate_calibration.py                            # documented synthetic data instead

Every trial builds a baseline and a candidate in memory and calls :func:`harness.gate.run_gate`
with the default rules (or ``--alpha`` / tolerances given here), exactly what ``harness gate`` does.

Scenarios (gates.md §7):

* **quality, no change** (false alarms): baseline and candidate samples drawn from one distribution;
  the whole default quality gate (every quality metric, Holm across them) must fail in at most
  alpha of trials, plus sampling error.
* **timing, no change, with whole-run shifts** (false alarms): each round's timing values get one
  shared multiplicative shift (``--run-noise``, default 3%: a noisy neighbour or clock change moves a
  whole run) on top of per-sample noise (``--sample-noise``, 5%). Compared by rounds (5 vs 5, round
  medians, Mann-Whitney U) and, for contrast, by a single run per side with a per-sample test.
* **seeded pairs** (``--paired-run``): in CI the candidate reuses the baseline's seeds, so paired
  samples are correlated even when the model or sampling code changed. Given a second run of the same
  prompts with a small change (e.g. temperature 0.80 → 0.82), trials pair each baseline sample with the
  same (prompt, sample index) of that run, rescaled to equal means, and inject the repetition rise.
* **power**: an injected 10% TPS drop (rounds) and a 20% rise in repetition rate (one run per side,
  paired by prompt), each at ``--samples`` samples per model (100 = the tinystories suite), plus
  changes at and well below the tolerance, where the gate should fire about half the time and almost never.

How samples are drawn from real data: with one sample per prompt (tinystories), a trial draws
each prompt's baseline and candidate samples independently from the model's per-sample records
(whole records, so correlations between metrics of one sample are kept); with several samples per
prompt (smoke), both sides draw from the same prompt's samples, which keeps prompt effects. The
injected changes multiply the candidate's values (a fraction such as repetition rate is capped at 1).

Synthetic data (used only without ``--run``): 100 prompts × 4 samples, shaped after a tinystories
run (4 samples per prompt) of the reference 2.5M model trained in this project. Per prompt an
effect u ~ N(0, 1), per sample and metric an independent e ~ N(0, 1):
tokens n = clip(round(180·e^{0.3u+0.4e}), 1, 256); tps = 800·e^{0.25u+0.1e}; ttft_ms = 2.6·e^{0.2u+0.1e};
latency_ms = 1000·n/tps; perplexity = 7.3·e^{0.08u+0.19e}; avg_token_prob = 0.30·e^{−0.05u+0.15e};
repetition_rate = min(1, 0.10·e^{0.11u+0.35e}) (mean ≈ 0.10, CV ≈ 0.38, prompt share of variance ≈ 0.09,
as measured); coherence_length = min(n, round(62·e^{0.17u+0.5e})); distinct_2 = 1 − 0.12·e^{0.1u+0.4e};
eos_rate ~ Bernoulli(0.46).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.gate import run_gate
from harness.gate.data import MetricMeta, Round, Side, side_from_runs
from harness.gate.rules import MetricRule, Rules, RulesFile, Settings
from harness.gate.stats import binomial_ci
from harness.records import load_run

ENV = {"cpu": "calibration", "platform": "calibration", "device": "cpu", "threads": 1}


@dataclass
class Pool:
    """Per-sample records of one model: what trials resample from."""

    source: str
    metas: dict[str, MetricMeta]
    records: list[tuple[str, dict[str, float]]]  # (prompt id, metric -> value) for every sample
    keys: list[tuple[str, int]] = field(default_factory=list)  # (prompt id, sample index) of each record, if known

    @property
    def by_prompt(self) -> dict[str, list[dict[str, float]]]:
        groups: dict[str, list[dict[str, float]]] = {}
        for prompt, values in self.records:
            groups.setdefault(prompt, []).append(values)
        return groups


def real_pool(run_dir: Path, model: str | None) -> Pool:
    side = side_from_runs([load_run(run_dir)], label=str(run_dir), allow_incomplete=True)
    model = model or side.model_names[0]
    if model not in side.model_names:
        sys.exit(f"error: {run_dir} has no model {model!r}; it has {', '.join(side.model_names)}")
    rnd = side.rounds[0]
    per_metric = rnd.samples.get(model, {})
    records, keys = [], rnd.keys.get(model, [])
    for key in keys:
        values = {m: v[key] for m, v in per_metric.items() if v.get(key) is not None}
        records.append((key[0], values))
    metas = {m: meta for m, meta in side.metrics.items() if meta.level == "sample" and m in per_metric}
    return Pool(
        f"real run {run_dir} (model {model!r}, {len(records)} samples, {len({p for p, _ in records})} prompts)",
        metas,
        records,
        list(keys),
    )


def seeded_pairs(first: Pool, second: Pool) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Samples with the same (prompt id, sample index), hence the same seed, in two runs.

    The second run differs a little (another temperature, dtype or checkpoint); each of its metrics is
    rescaled to the first run's mean, so that before an injection the two sides do not differ on average.
    """
    second_by_key = {key: values for key, (_, values) in zip(second.keys, second.records, strict=True)}
    pairs = [
        (values, second_by_key[key])
        for key, (_, values) in zip(first.keys, first.records, strict=True)
        if key in second_by_key
    ]
    factors = {}
    for metric in first.metas:
        both = [(a[metric], b[metric]) for a, b in pairs if metric in a and metric in b]
        mean_b = float(np.mean([b for _, b in both])) if both else 0.0
        factors[metric] = float(np.mean([a for a, _ in both])) / mean_b if mean_b else 1.0
    return [(dict(a), {m: v * factors.get(m, 1.0) for m, v in b.items()}) for a, b in pairs]


def synthetic_pool(seed: int = 12345, prompts: int = 100, per_prompt: int = 4) -> Pool:
    """Documented synthetic samples (see the module docstring), shaped like a real tinystories run."""
    rng = np.random.default_rng(seed)
    u = np.repeat(rng.normal(size=prompts), per_prompt)  # prompt effect, shared by the prompt's samples
    size = prompts * per_prompt

    def e() -> np.ndarray:
        return rng.normal(size=size)  # per-sample effect

    n = np.clip(np.round(np.exp(np.log(180) + 0.3 * u + 0.4 * e())), 1, 256)
    tps = 800 * np.exp(0.25 * u + 0.1 * e())
    columns = {
        "tps": tps,
        "ttft_ms": 2.6 * np.exp(0.2 * u + 0.1 * e()),
        "latency_ms": 1000 * n / tps,
        "perplexity": 7.3 * np.exp(0.08 * u + 0.19 * e()),
        "avg_token_prob": 0.30 * np.exp(-0.05 * u + 0.15 * e()),
        "repetition_rate": np.minimum(1.0, 0.10 * np.exp(0.11 * u + 0.35 * e())),
        "coherence_length": np.minimum(n, np.round(62 * np.exp(0.17 * u + 0.5 * e()))),
        "distinct_2": 1 - 0.12 * np.exp(0.1 * u + 0.4 * e()),
        "eos_rate": (rng.random(size) < 0.46).astype(float),
        "tokens_generated": n,
    }
    directions = {
        "tps": True,
        "ttft_ms": False,
        "latency_ms": False,
        "perplexity": False,
        "avg_token_prob": True,
        "repetition_rate": False,
        "coherence_length": True,
        "distinct_2": True,
        "eos_rate": True,
        "tokens_generated": None,
    }
    kinds = {"tps": "timing", "ttft_ms": "timing", "latency_ms": "timing", "tokens_generated": "count"}
    metas = {m: MetricMeta(m, higher_is_better=d, kind=kinds.get(m, "quality")) for m, d in directions.items()}
    records = [(f"p{i // per_prompt:03d}", {m: float(col[i]) for m, col in columns.items()}) for i in range(size)]
    return Pool(
        f"synthetic data (documented in {Path(__file__).name}; no --run given): {prompts} prompts x "
        f"{per_prompt} samples",
        metas,
        records,
    )


def side(label: str, metas: dict[str, MetricMeta], rounds: list[dict[tuple[str, int], dict[str, float]]]) -> Side:
    """A baseline or candidate in memory, exactly as a run directory would load."""
    built = []
    for index, samples in enumerate(rounds):
        per_metric: dict[str, dict[tuple[str, int], float | None]] = {m: {} for m in metas}
        for key, values in samples.items():
            for m in metas:
                per_metric[m][key] = values.get(m)
        built.append(
            Round(
                run_id=f"{label}-{index}",
                source=label,
                environment=ENV,
                batch_size=1,
                samples={"m": per_metric},
                keys={"m": list(samples)},
                statuses={"m": "ok"},
            )
        )
    suite = {"name": "calibration", "sha256": "s", "prompts_sha256": "p"}
    return Side(label, suite, {"m": {}}, metas, built)


def draw_quality_pair(pool: Pool, rng: np.random.Generator, n: int) -> tuple[dict, dict]:
    """Baseline and candidate samples of n prompts drawn from one distribution (see the module docstring)."""
    groups = pool.by_prompt
    prompts = list(groups)
    base, cand = {}, {}
    within = max(len(g) for g in groups.values()) > 1
    for i in range(n):
        key = (f"q{i:04d}", 0)
        if within:
            group = groups[prompts[rng.integers(len(prompts))]]
            i, j = rng.choice(len(group), size=2, replace=len(group) < 2)  # two different samples: fresh draws
            base[key], cand[key] = dict(group[i]), dict(group[j])
        else:
            base[key] = dict(pool.records[rng.integers(len(pool.records))][1])
            cand[key] = dict(pool.records[rng.integers(len(pool.records))][1])
    return base, cand


def draw_seeded_pair(pairs: list, rng: np.random.Generator, n: int) -> tuple[dict, dict]:
    """n seeded pairs drawn with replacement: baseline from the first run, candidate from the second."""
    base, cand = {}, {}
    for i in range(n):
        first, second = pairs[rng.integers(len(pairs))]
        base[(f"s{i:04d}", 0)], cand[(f"s{i:04d}", 0)] = dict(first), dict(second)
    return base, cand


def change(samples: dict, metric: str, factor: float, add: float, cap: float | None) -> None:
    """Inject a regression into the candidate: every sample's value × factor + add (capped for fractions)."""
    for values in samples.values():
        if metric in values:
            value = values[metric] * factor + add
            values[metric] = value if cap is None else min(cap, value)


def timing_rounds(
    pool: Pool,
    rng: np.random.Generator,
    truth: dict,
    rounds: int,
    run_noise: float,
    sample_noise: float,
    factors: dict[str, float],
) -> list[dict]:
    """Rounds of one side: every timing value of a round shares one shift (slower = lower tps, higher ms)."""
    timing = [m for m, meta in pool.metas.items() if meta.kind == "timing"]
    result = []
    for _ in range(rounds):
        shift = rng.normal(0, run_noise)
        samples = {}
        for key, values in truth.items():
            out = {}
            for m in timing:
                if m in values:
                    slower = np.exp(shift + rng.normal(0, sample_noise))
                    out[m] = values[m] / slower if pool.metas[m].higher_is_better else values[m] * slower
                    out[m] *= factors.get(m, 1.0)
            samples[key] = out
        result.append(samples)
    return result


def rate_line(name: str, hits: int, trials: int, target: str, ok: bool | None, extra: str = "") -> dict[str, Any]:
    low, high = binomial_ci(hits, trials)
    verdict = "" if ok is None else ("ok" if ok else "MISSED")
    print(
        f"  {name:<58} {hits:>4}/{trials:<4} = {hits / trials:6.1%}  95% CI [{low:5.1%}, {high:5.1%}]  "
        f"{target:<16} {verdict} {extra}".rstrip()
    )
    return {
        "scenario": name,
        "hits": hits,
        "trials": trials,
        "rate": hits / trials,
        "ci_low": low,
        "ci_high": high,
        "target": target,
        "ok": ok,
        "note": extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a real run directory to resample per-sample values from")
    parser.add_argument("--model", help="model in --run (default: the first)")
    parser.add_argument(
        "--paired-run",
        type=Path,
        help="a second run of the same prompts and seeds with a small change: adds seeded-pair scenarios",
    )
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100, help="samples per model per run (tinystories: 100)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--run-noise", type=float, default=0.03, help="sd of the whole-run log shift of timing")
    parser.add_argument("--sample-noise", type=float, default=0.05, help="sd of per-sample log noise of timing")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--resamples", type=int, default=500, help="bootstrap resamples (the CI does not decide)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the rates here")
    args = parser.parse_args(argv)

    pool = real_pool(args.run, args.model) if args.run else synthetic_pool()
    quality = [m for m, meta in pool.metas.items() if meta.kind != "timing" and meta.higher_is_better is not None]
    timing = [m for m, meta in pool.metas.items() if meta.kind == "timing"]
    rules = Rules(RulesFile(defaults=Settings(alpha=args.alpha), bootstrap_resamples=args.resamples))
    per_sample_timing = Rules(
        RulesFile(
            defaults=Settings(alpha=args.alpha),
            bootstrap_resamples=args.resamples,
            metrics={m: MetricRule(replicate="samples") for m in timing},
        )
    )
    tol_q = rules.resolve("repetition_rate", "m", "quality", False).rel_tolerance
    tol_t = rules.resolve("tps", "m", "timing", True).rel_tolerance
    rng = np.random.default_rng(args.seed)
    n, trials = args.samples, args.trials
    print(f"DATA: {pool.source}")
    print(
        f"gate: alpha {args.alpha}, Holm; default tolerances quality {tol_q:.0%}, timing {tol_t:.0%}; "
        f"{n} samples per model; {trials} trials per scenario; timing noise: run {args.run_noise:.0%}, "
        f"sample {args.sample_noise:.0%}; quality metrics gated together: {', '.join(quality)}"
    )
    results, started = [], time.perf_counter()

    def quality_trials(
        name: str,
        metric: str | None,
        factor: float,
        target: str,
        want: str,
        add_share: float = 0.0,
        gate_metrics: list[str] | None = None,
        pairs: list | None = None,
    ) -> None:
        """``factor`` multiplies each candidate sample; ``add_share`` adds that share of the pool mean to each.

        With ``pairs`` (from --paired-run) the two sides are seeded pairs instead of fresh draws.
        """
        cap = 1.0 if metric and max(v.get(metric, 0) for _, v in pool.records) <= 1 else None
        add = add_share * float(np.mean([v[metric] for _, v in pool.records if metric in v])) if metric else 0.0
        hits, realised = 0, []
        for _ in range(trials):
            base, cand = draw_seeded_pair(pairs, rng, n) if pairs else draw_quality_pair(pool, rng, n)
            if metric:
                before = np.mean([v[metric] for v in cand.values() if metric in v])
                change(cand, metric, factor, add, cap)
                realised.append(np.mean([v[metric] for v in cand.values() if metric in v]) / before - 1)
            result = run_gate(
                side("b", pool.metas, [base]), side("c", pool.metas, [cand]), rules, metrics=gate_metrics or quality
            )
            hits += any(c.failing and (metric is None or c.metric == metric) for c in result.comparisons)
        extra = f"(realised mean change {np.mean(realised):+.1%})" if metric and (cap or add) else ""
        ok = (
            hits / trials >= 0.9
            if want == "power"
            else binomial_ci(hits, trials)[0] <= args.alpha
            if want == "fa"
            else None
        )
        results.append(rate_line(name, hits, trials, target, ok, extra))

    def timing_trials(
        name: str,
        speed: float,
        rounds: int,
        target: str,
        want: str,
        single_rules: Rules | None = None,
        gate_metrics: list[str] | None = None,
    ) -> None:
        """``speed`` 0.9 = a 10% TPS drop: throughputs × 0.9 and times ÷ 0.9 (a slowdown moves them all)."""
        factors = {m: speed if pool.metas[m].higher_is_better else 1 / speed for m in timing}
        hits = 0
        for _ in range(trials):
            keys = [(f"t{i:04d}", 0) for i in range(n)]
            truth = {k: pool.records[rng.integers(len(pool.records))][1] for k in keys}
            base = timing_rounds(pool, rng, truth, rounds, args.run_noise, args.sample_noise, {})
            cand = timing_rounds(pool, rng, truth, rounds, args.run_noise, args.sample_noise, factors)
            result = run_gate(
                side("b", pool.metas, base),
                side("c", pool.metas, cand),
                single_rules or rules,
                metrics=gate_metrics or timing,
            )
            hits += any(c.failing for c in result.comparisons)
        ok = (
            hits / trials >= 0.9
            if want == "power"
            else binomial_ci(hits, trials)[0] <= args.alpha
            if want == "fa"
            else None
        )
        results.append(rate_line(name, hits, trials, target, ok))

    print("\nFalse alarms (no change; rate must be <= alpha within its binomial CI):")
    quality_trials(f"quality gate, all {len(quality)} metrics, 1 run per side", None, 1.0, f"<= {args.alpha:.0%}", "fa")
    if "tps" in timing:
        timing_trials(
            f"timing gate, all {len(timing)} metrics, {args.rounds} vs {args.rounds} rounds",
            1.0,
            args.rounds,
            f"<= {args.alpha:.0%}",
            "fa",
        )
        timing_trials(
            "timing, 1 run per side, per-sample test (NOT the default)",
            1.0,
            1,
            "shows why rounds",
            "",
            single_rules=per_sample_timing,
        )
    print(f"\nPower (injected regression caught; must be >= 90%) at {n} samples per model:")
    if "tps" in timing:
        timing_trials(
            f"tps -10%, {args.rounds} vs {args.rounds} rounds (all timing metrics, Holm)",
            0.90,
            args.rounds,
            ">= 90%",
            "power",
        )
        timing_trials(
            f"tps -10%, {args.rounds} vs {args.rounds} rounds (gate: tps only)",
            0.90,
            args.rounds,
            "(info)",
            "",
            gate_metrics=["tps"],
        )
    if "repetition_rate" in quality:
        quality_trials(
            "repetition_rate +20%: each sample x1.2 (all quality metrics, Holm)",
            "repetition_rate",
            1.20,
            ">= 90%",
            "power",
        )
        quality_trials(
            "repetition_rate +20%: each sample +20% of the mean (all, Holm)",
            "repetition_rate",
            1.0,
            ">= 90%",
            "power",
            add_share=0.20,
        )
        quality_trials(
            "repetition_rate +20%: each sample x1.2 (repetition_rate gated alone)",
            "repetition_rate",
            1.20,
            "(info)",
            "",
            gate_metrics=["repetition_rate"],
        )
    print("\nResponse around the tolerance (about 50% at it, about 0% well below):")
    if "tps" in timing:
        timing_trials(
            f"tps -{tol_t:.0%} (= tolerance), {args.rounds} vs {args.rounds} rounds", 1 - tol_t, args.rounds, "~50%", ""
        )
        timing_trials(
            f"tps -{tol_t / 3:.1%} (well below), {args.rounds} vs {args.rounds} rounds",
            1 - tol_t / 3,
            args.rounds,
            "~0%",
            "",
        )
    for metric, factors in (
        ("repetition_rate", (1 + tol_q, 1 + tol_q / 4)),
        ("perplexity", (1.03, 1 + tol_q, 1 + tol_q / 4)),
    ):
        if metric in quality:
            for factor in factors:
                quality_trials(f"{metric} {factor - 1:+.1%}, 1 run per side", metric, factor, "(info)", "")
    if args.paired_run:
        pairs = seeded_pairs(pool, real_pool(args.paired_run, args.model))
        reps = np.array(
            [
                (a["repetition_rate"], b["repetition_rate"])
                for a, b in pairs
                if "repetition_rate" in a and "repetition_rate" in b
            ]
        )
        corr = float(np.corrcoef(reps.T)[0, 1]) if len(reps) > 2 else float("nan")
        print(
            f"\nSeeded pairs: baseline from --run, candidate = same prompt and sample index (same seed) from "
            f"{args.paired_run} rescaled to equal means ({len(pairs)} pairs; repetition_rate correlation {corr:.2f}):"
        )
        # Only repetition_rate: the second run's other metrics differ in shape, not just in mean, so a
        # mean-rescaled seeded pair is a fair "no change" for the metric under test only.
        quality_trials(
            "repetition_rate, no change (fails of this metric, all gated)",
            "repetition_rate",
            1.0,
            f"<= {args.alpha:.0%}",
            "fa",
            pairs=pairs,
        )
        quality_trials(
            "repetition_rate +20%: each sample x1.2 (all, Holm)",
            "repetition_rate",
            1.20,
            ">= 90%",
            "power",
            pairs=pairs,
        )
        quality_trials(
            "repetition_rate +20%: each sample +20% of the mean (all, Holm)",
            "repetition_rate",
            1.0,
            ">= 90%",
            "power",
            add_share=0.20,
            pairs=pairs,
        )
    print(f"\n({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"data": pool.source, "args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2
            )
        )
    return 0 if all(r["ok"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
