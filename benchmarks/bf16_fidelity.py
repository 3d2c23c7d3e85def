#!/usr/bin/env python
"""How much ``--dtype bfloat16`` moves the numbers: the same tokens scored by both decode paths.

Sampled tokens diverge between float32 and bfloat16 runs, so comparing two runs' means mixes rounding
with sampling noise. Instead this replays a float32 run's own samples (prompt + output ids) through
the decode step the harness uses (the fused step where it builds, else ``FastDecoder``; ``--eager`` forces
``FastDecoder``) in float32 and in bfloat16 and compares, token by token, the log-probability each gives
the recorded token, and per sample the perplexity. The float32 replay must reproduce the recorded
perplexity exactly (checked), which shows the replay is the harness's own computation.

    harness run suites/tinystories.yaml --models 10m,7m,5m,2.5m --out runs/main
    python benchmarks/bf16_fidelity.py runs/main --samples 30
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from harness.backends.tinylm import BUNDLED_DIR, load_directory
from tinylm_ref.decoder import decode_kernel, step_decoder


@torch.inference_mode()
def replay(model, decoder, prompt: list[int], out: list[int]) -> list[float]:
    """Log-probabilities of ``out`` after ``prompt``: prefill in float32, then ``decoder`` per token."""
    cache = model.new_cache(1)
    logits = model(torch.tensor([prompt]), cache=cache, last_only=True)[:, -1, :]
    views = decoder.layer_views(cache)
    logprobs = [float(torch.log_softmax(logits, -1)[0, out[0]])]
    for prev, nxt in zip(out[:-1], out[1:], strict=True):
        logits = decoder.step(prev, cache.length, views)
        cache.length += 1
        logprobs.append(float(torch.log_softmax(logits, -1)[0, nxt]))
    return logprobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a float32 run directory of bundled presets")
    parser.add_argument("--samples", type=int, default=30, help="samples per model (default 30)")
    parser.add_argument("--eager", action="store_true", help="replay through FastDecoder, not the fused step")
    args = parser.parse_args()
    records = [json.loads(line) for line in (args.run / "samples.jsonl").read_text().splitlines() if line.strip()]
    for preset in dict.fromkeys(r["model"] for r in records):
        wrapped = load_directory(BUNDLED_DIR / preset, preset, torch.device("cpu"))
        model = wrapped.model.eval()
        decoders = {
            dtype: step_decoder(model, dtype, fused=not args.eager) for dtype in (torch.float32, torch.bfloat16)
        }
        kernel = "eager" if args.eager else decode_kernel(model)["kernel"]
        diffs, ratios, replay_error = [], [], 0.0
        mine = [r for r in records if r["model"] == preset and len(r["output_ids"]) >= 2][: args.samples]
        for record in mine:
            prompt = wrapped.encode(record["prompt_text"])
            f32, bf16 = (replay(model, decoders[d], prompt, record["output_ids"]) for d in decoders)
            diffs += [abs(a - b) for a, b in zip(f32, bf16, strict=True)]
            ppl32, ppl16 = (math.exp(-sum(lp) / len(lp)) for lp in (f32, bf16))
            ratios.append(ppl16 / ppl32)
            recorded = record["metrics"].get("perplexity")
            if recorded is not None:
                replay_error = max(replay_error, abs(ppl32 - recorded) / recorded)
        print(
            f"{preset:>5} ({kernel} step): {len(mine)} samples, {len(diffs)} tokens; |log p(bf16) - log p(fp32)| mean "
            f"{sum(diffs) / len(diffs):.4f} nats, max {max(diffs):.3f}; perplexity bf16/fp32 per sample: mean "
            f"{sum(ratios) / len(ratios):.4f}, range {min(ratios):.4f}-{max(ratios):.4f}; "
            f"float32 replay vs recorded perplexity: max rel. diff {replay_error:.1e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
