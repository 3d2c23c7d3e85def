#!/usr/bin/env python
"""Decode speed of the reference backend against a no-cache loop, Hugging Face and the matvec floor.

For each preset (random weights), batch 1, N new tokens with EOS ignored, top-k 50 / temperature 0.8:

  (1) reference  ``TinyLMModel.generate`` exactly as the harness calls it (``eos_id = None``): the fused
                 C step (``tinylm_ref.fused_decoder``: prefill and every token in one call each) where a C
                 compiler built it, else ``FastDecoder``; the header says which
  (1e) same      with the fused step off (``generate(..., fused=False)``): ``LLM.forward`` for the prompt,
                 then ``tinylm_ref.decoder.FastDecoder`` per token, what runs without a C compiler
  (1b) same      with ``--dtype bfloat16`` (the decode step's matrices in bf16; docs/performance.md)
  (2) naive      the study's shape: full forward over every token so far each step, no KV cache
  (3) HF         transformers ``generate()`` on an equivalent ``LlamaForCausalLM`` (vocab, dim, layers,
                 heads, FFN, tied embeddings; RoPE instead of learned positions), do_sample, top-k 50,
                 temperature 0.8, min_new_tokens = max_new_tokens so EOS never ends it. Timed with a
                 ``transformers`` streamer whose ``put`` stamps ``perf_counter_ns`` each time a sampled token
                 reaches it; TTFT is measured from just before the ``generate()`` call, so it includes HF's
                 own set-up (generation config, logits processors, cache) as a user would see it.
  (3b) same      with the model in bfloat16 (``.to(torch.bfloat16)``), the comparison for (1b)
  (4) floor      the same matrix-vector products alone (per token: qkv, proj, gate_up, down for every
                 layer, then the head) in every layout at hand: ``F.linear`` on a 1×dim row (linear),
                 ``torch.mv`` into a preallocated buffer (mv), ``torch.mm`` with a pre-transposed
                 contiguous copy (mmT), every matrix pre-packed for oneDNN (onednn), FastDecoder's
                 own per-matrix choice (sized), and the fused step's own products alone (panels: same
                 panels, threads and barriers, ``tl_matvecs_only``); the fastest is the floor. It has no
                 attention, norms, activations or sampling, so (1)/(4) is the share of a token the step
                 spends in its matrix products.
  (4b) floor     the same with bf16 weights and inputs: the bound for (1b).
  (5), (6), (6b) ONNX Runtime (the exported tinylm model) and llama.cpp (the (3) model in GGUF F32 and Q8_0),
                 through the harness's ``onnx`` and ``gguf`` backends, in the same rounds: see ``_native.py``
                 (skipped when the ``[onnx]`` / ``[gguf]`` extras are not installed; ``--no-native`` skips them).

TTFT (ms) = first token on the host - start of prefill; decode tok/s = (n - 1) / (t_last - t_first); both
the median over --reps repetitions after one warm-up each. Repetitions are interleaved across the paths
(one round = every path once), so background load affects them alike, and the ratio against HF is the
median of the per-round ratios: on a shared machine whose speed drifts by tens of percent between rounds,
that pairs each measurement with the one taken next to it (the ratio of the medians is printed too).

At batch 1 the float32 floor is memory-bandwidth bound once the weights outgrow the last-level cache
(10m reads 41 MB per token), so "(4)/(3)" is also printed: (1)/(3) can never exceed it.

Harness overhead: a generated suite (16 prompts × 64 tokens, warmup 1) runs in-process through ``SuiteRun``
for tinylm:random/5m and 2.5m. Per model, generation = Σ (end_ns - start_ns) over samples (samples.jsonl
``end_ms``) and the warmup is timed separately (by wrapping ``SuiteRun._warmup``); the share is what is left of
``wall_s - load_s`` (manifest.json) after both, over ``wall_s - load_s - warmup``; the time spent in
``os.fsync`` (the run directory's per-sample durability) is shown as part of it.

Reproduce (about 1 minute on an idle 2-core machine; background load inflates and spreads everything):
    python benchmarks/decode_speed.py --json reports/decode_speed.json
    python benchmarks/decode_speed.py --threads 1 --presets 10m,5m --reps 9
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _native  # noqa: E402
import _speed  # noqa: E402

from harness.backends.tinylm import TinyLMModel, load_random  # noqa: E402
from harness.environment import cpu_isa, cpu_name  # noqa: E402
from tinylm_ref.config import PRESETS  # noqa: E402
from tinylm_ref.fused_decoder import FusedDecoder  # noqa: E402
from tinylm_ref.native import load_kernel, unavailable_reason  # noqa: E402

PROMPT = "Once upon a time, there was a little girl named Lily."
METHODS = ("reference", "reference_eager", "reference_bf16", "naive", "hf", "hf_bf16", "floor", "floor_bf16")
LABELS = {
    "reference": "(1) reference (harness path)",
    "reference_eager": "(1e) same, fused step off",
    "reference_bf16": "(1b) same, --dtype bfloat16",
    "naive": "(2) naive, no KV cache",
    "hf": "(3) HF LlamaForCausalLM",
    "hf_bf16": "(3b) same, dtype bfloat16",
    "floor": "(4) floor: matvecs only",
    "floor_bf16": "(4b) floor, bf16 matvecs",
}

HF_RATIO_TARGET, FLOOR_SHARE_TARGET, OVERHEAD_TARGET = 3.0, 0.5, 0.05
FLOOR_PRESETS = {"10m", "5m"}


def decode_kernel_line() -> str:
    """Which step row (1) runs: the fused C step, or why not."""
    library = load_kernel()
    return "fused C kernel" if library is not None else f"FastDecoder ({unavailable_reason()})"


def _floor(weights, prompt_len: int, tokens: int, variant: str, dtype: torch.dtype, seed: int) -> _speed.Timing:
    return _speed.run_floor(weights, prompt_len, tokens, variant, dtype)


def _floor_runs(weights, llm, prompt_len: int, tokens: int) -> dict:
    """Every floor variant for both dtypes; "panels" is the fused step's own products (float32)."""
    runs = {}
    for dtype, suffix in ((torch.float32, ""), (torch.bfloat16, "_bf16")):
        for variant in _speed.floor_variants(dtype):
            if variant == "panels":
                fused = FusedDecoder(llm, load_kernel())
                runs[f"floor{suffix}_{variant}"] = lambda seed, f=fused: _speed.run_floor_panels(f, prompt_len, tokens)
            else:
                runs[f"floor{suffix}_{variant}"] = functools.partial(
                    _floor, weights, prompt_len, tokens, variant, dtype
                )
    return runs


def bench_preset(
    preset: str, tokens: int, reps: int, warmup: int, native: bool = True, threads: int | None = None
) -> dict:
    model = load_random(preset, f"tinylm:random/{preset}", torch.device("cpu"))
    model.eos_id = None  # 128 tokens, EOS ignored
    llm, config = model.model, model.model.config
    prompt_ids = model.encode(PROMPT)
    if len(prompt_ids) + tokens > config.max_seq_len:
        raise SystemExit(
            f"--tokens {tokens}: prompt ({len(prompt_ids)}) + tokens exceeds the context {config.max_seq_len}"
        )
    hf_model = _speed.build_hf_llama(config)
    hf_model_bf16 = _speed.build_hf_llama(config).to(torch.bfloat16)
    weights = _speed.floor_weights(llm)
    model_bf16 = TinyLMModel(llm, model.tokenizer, model.info)
    model_bf16.eos_id, model_bf16.weight_dtype = None, torch.bfloat16
    runs = {
        "reference": lambda seed: _speed.run_reference(model, prompt_ids, tokens, seed),
        "reference_eager": lambda seed: _speed.run_reference_eager(model, prompt_ids, tokens, seed),
        "reference_bf16": lambda seed: _speed.run_reference(model_bf16, prompt_ids, tokens, seed),
        "naive": lambda seed: _speed.run_naive(llm, prompt_ids, tokens, seed),
        "hf": lambda seed: _speed.run_hf(hf_model, prompt_ids, tokens, seed),
        "hf_bf16": lambda seed: _speed.run_hf(hf_model_bf16, prompt_ids, tokens, seed),
    }
    native_runs, native_notes = _native.native_runs(preset, model, hf_model, threads) if native else ({}, {})
    for name, run in native_runs.items():
        runs[name] = functools.partial(run, prompt_ids, tokens)
    runs.update(_floor_runs(weights, llm, len(prompt_ids), tokens))
    timings: dict[str, list] = {name: [] for name in runs}
    for rep in range(warmup + reps):
        for name, run in runs.items():
            timing = run(1000 + rep)
            if rep >= warmup:
                timings[name].append(timing)
    results = {name: _speed.summarize(t) for name, t in timings.items()}
    for floor, dtype in (("floor", torch.float32), ("floor_bf16", torch.bfloat16)):  # the fastest variant is the floor
        best = max((f"{floor}_{v}" for v in _speed.floor_variants(dtype)), key=lambda k: results[k]["decode_tps"])
        results[floor] = {**results[best], "variant": best.removeprefix(f"{floor}_")}
    ref, ref_bf16 = results["reference"]["decode_tps"], results["reference_bf16"]["decode_tps"]
    hf = results["hf"]["decode_tps"]

    def paired(a: str, b: str) -> float:
        """Median over rounds of a/b within the same round: robust to the machine's speed drifting between rounds."""
        return statistics.median(x.decode_tps() / y.decode_tps() for x, y in zip(timings[a], timings[b], strict=True))

    ratios = {
        "ref_over_hf": paired("reference", "hf"),
        "ref_bf16_over_hf": paired("reference_bf16", "hf"),
        "ref_bf16_over_hf_bf16": paired("reference_bf16", "hf_bf16"),
        "ref_over_hf_of_medians": ref / hf,
        "ref_bf16_over_hf_of_medians": ref_bf16 / hf,
        "ref_over_floor": ref / results["floor"]["decode_tps"],
        "ref_bf16_over_floor_bf16": ref_bf16 / results["floor_bf16"]["decode_tps"],
        "ref_over_naive": ref / results["naive"]["decode_tps"],
        "ref_over_eager": paired("reference", "reference_eager"),
        "floor_over_hf": results["floor"]["decode_tps"] / hf,
        **{f"{name}_over_ref": paired(name, "reference") for name in native_runs},
        **{f"{name}_over_hf": paired(name, "hf") for name in native_runs},
    }
    targets = {
        "ref >= 3x hf": ratios["ref_over_hf"] >= HF_RATIO_TARGET,
        # like for like too: against HF in bfloat16 as well as in float32
        "ref bf16 >= 3x hf": min(ratios["ref_bf16_over_hf"], ratios["ref_bf16_over_hf_bf16"]) >= HF_RATIO_TARGET,
    }
    if preset in FLOOR_PRESETS:
        targets["ref >= 50% floor"] = ratios["ref_over_floor"] >= FLOOR_SHARE_TARGET
    shape = {k: getattr(config, k) for k in ("vocab_size", "dim", "n_layers", "n_heads", "ffn_dim")}
    return {
        "preset": preset,
        "shape": shape,
        "parameters": llm.num_parameters(),
        "prompt_tokens": len(prompt_ids),
        "new_tokens": tokens,
        "results": results,
        "native_files": native_notes,
        "ratios": ratios,
        "targets": targets,
    }


def print_preset(r: dict, reps: int) -> None:
    s = r["shape"]
    print(
        f"\n== {r['preset']}: dim {s['dim']}, layers {s['n_layers']}, heads {s['n_heads']}, ffn {s['ffn_dim']}, "
        f"vocab {s['vocab_size']}; {r['parameters'] / 1e6:.2f}M params; prompt {r['prompt_tokens']} tokens, "
        f"{r['new_tokens']} new, median of {reps}"
    )
    print(f"  {'method':<32}{'TTFT ms':>9}{'decode tok/s':>14}{'(min-max)':>17}{'e2e tok/s':>11}")
    for m in (*METHODS, *(m for m in _native.METHODS if m in r["results"])):
        x = r["results"][m]
        label = {**LABELS, **_native.LABELS}[m] + (f" [{x['variant']}]" if m == "floor" else "")
        spread = f"{x['decode_tps_min']:.0f}-{x['decode_tps_max']:.0f}"
        print(f"  {label:<32}{x['ttft_ms']:>9.2f}{x['decode_tps']:>14.0f}{spread:>17}{x['e2e_tps']:>11.0f}")
    q = r["ratios"]
    print(
        f"  (1)/(3) decode {q['ref_over_hf']:6.3f}x   target >= {HF_RATIO_TARGET:.0f}x    "
        f"{'PASS' if r['targets']['ref >= 3x hf'] else 'MISS'}   (median of per-round ratios; "
        f"ratio of medians {q['ref_over_hf_of_medians']:.3f}x)"
    )
    print(
        f"  (1b)/(3)       {q['ref_bf16_over_hf']:6.3f}x   (opt-in --dtype bfloat16 vs HF float32; "
        f"{100 * q['ref_bf16_over_floor_bf16']:.0f}% of (4b))"
    )
    print(
        f"  (1b)/(3b)      {q['ref_bf16_over_hf_bf16']:6.3f}x   both in bfloat16; target >= {HF_RATIO_TARGET:.0f}x "
        f"for both (1b) ratios: {'PASS' if r['targets']['ref bf16 >= 3x hf'] else 'MISS'}"
    )
    verdict = (
        ("PASS" if r["targets"]["ref >= 50% floor"] else "MISS")
        if "ref >= 50% floor" in r["targets"]
        else "(no target)"
    )
    print(f"  (1)/(4) decode {100 * q['ref_over_floor']:6.1f}%   target >= {100 * FLOOR_SHARE_TARGET:.0f}%   {verdict}")
    print(f"  (4)/(3) decode {q['floor_over_hf']:6.2f}x   (ceiling for (1)/(3): the floor's own lead over HF)")
    print(f"  (1)/(2) decode {q['ref_over_naive']:6.2f}x   (KV cache vs none, for reference)")
    print(
        f"  (1)/(1e)       {q['ref_over_eager']:6.2f}x   (fused step vs FastDecoder, the fallback without a C compiler)"
    )
    for m in (m for m in _native.METHODS if m in r["results"]):
        print(
            f"  {_native.LABELS[m].split(')')[0]})/(1) {q[f'{m}_over_ref']:6.3f}x   /(3) {q[f'{m}_over_hf']:6.3f}x   "
            f"(median of per-round ratios; {r['native_files'][m]})"
        )


def print_overhead(rows: list[dict], n_prompts: int, tokens: int) -> None:
    print(
        f"\n== harness overhead: SuiteRun in-process, {n_prompts} prompts × {tokens} tokens, warmup 1, default metrics; "
        f"share = outside / (wall - load - warmup)"
    )
    print(
        f"  {'model':<20}{'wall-load s':>12}{'warmup s':>10}{'gen s':>8}{'outside s':>11}{'of it fsync':>12}"
        f"{'ms/sample':>10}{'share':>8}{'w/o fsync':>10}{'warmup as ovh':>15}  target <= {100 * OVERHEAD_TARGET:.0f}%"
    )
    for o in rows:
        verdict = "PASS" if o["overhead_share"] <= OVERHEAD_TARGET else "MISS"
        print(
            f"  {o['model']:<20}{o['wall_s'] - o['load_s']:>12.3f}{o['warmup_s']:>10.3f}{o['generation_s']:>8.3f}"
            f"{o['outside_s']:>11.3f}{o['fsync_s']:>12.3f}{o['overhead_ms_per_sample']:>10.2f}"
            f"{100 * o['overhead_share']:>7.1f}%{100 * o['overhead_share_without_fsync']:>9.1f}%"
            f"{100 * o['overhead_share_warmup_counted']:>14.1f}%  {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="10m,7m,5m,2.5m", help="comma-separated presets (default: all four)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per generation (default 128)")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per path (default 7; median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions per path first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    parser.add_argument("--overhead-prompts", type=int, default=16, help="prompts in the overhead suite (default 16)")
    parser.add_argument("--overhead-tokens", type=int, default=64, help="new tokens per overhead sample (default 64)")
    parser.add_argument("--overhead-models", default="tinylm:random/5m,tinylm:random/2.5m")
    parser.add_argument(
        "--overhead-dir",
        type=Path,
        default=None,
        help="where the overhead run directory is created (default: the system temp dir); "
        "its disk's fsync latency is part of the overhead",
    )
    parser.add_argument("--no-overhead", action="store_true", help="skip the harness-overhead suite run")
    parser.add_argument("--no-native", action="store_true", help="skip the ONNX Runtime and llama.cpp rows")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also save all results as JSON")
    args = parser.parse_args(argv)
    presets = [p.strip().lower() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}")
    if args.tokens < 2 or args.reps < 1:
        parser.error("--tokens must be >= 2 and --reps >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    t_start = time.perf_counter()
    env = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu_name(),
        "cpu_isa": cpu_isa(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    print(
        f"decode_speed: torch {env['torch']}, transformers {env['transformers']}, python {env['python']}, "
        f"threads {env['threads']} (interop {env['interop_threads']}), CPU {env['cpu']} × {env['cpu_count']} "
        f"(ISA {' '.join(env['cpu_isa']) or 'none listed'}; decode step: {decode_kernel_line()}), "
        f"load avg {env['loadavg_start'][0]:.2f}, {env['date_utc']} UTC"
    )
    print(
        f"batch 1, {args.tokens} new tokens, EOS ignored, top-k {_speed.TOP_K}, temperature {_speed.TEMPERATURE}, "
        f"prompt {PROMPT!r}; median over {args.reps} reps after {args.warmup} warm-up, paths interleaved"
    )
    results = []
    for preset in presets:
        r = bench_preset(preset, args.tokens, args.reps, args.warmup, not args.no_native, args.threads)
        print_preset(r, args.reps)
        results.append(r)
        sys.stdout.flush()
    overhead = None
    if not args.no_overhead:
        specs = [s.strip() for s in args.overhead_models.split(",") if s.strip()]
        overhead = _speed.measure_overhead(
            specs, args.overhead_prompts, args.overhead_tokens, args.threads, args.overhead_dir
        )
        print_overhead(overhead, args.overhead_prompts, args.overhead_tokens)
    env["loadavg_end"] = os.getloadavg()
    env["elapsed_s"] = time.perf_counter() - t_start
    passed = [ok for r in results for name, ok in r["targets"].items() if "bf16" not in name]
    opt_in = [r["targets"]["ref bf16 >= 3x hf"] for r in results]
    if overhead:
        passed += [o["overhead_share"] <= OVERHEAD_TARGET for o in overhead]
    print(
        f"\ntargets (default float32 path): {sum(passed)}/{len(passed)} PASS; with --dtype bfloat16, "
        f">= 3x HF for {sum(opt_in)}/{len(opt_in)} presets; load avg at end {env['loadavg_end'][0]:.2f}; "
        f"benchmark took {env['elapsed_s']:.0f} s"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "environment": env,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "presets": results,
                    "overhead": overhead,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
