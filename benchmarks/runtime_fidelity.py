#!/usr/bin/env python
"""How far the native runtimes' log-probs sit from the same weights in PyTorch (the figures in docs/backends.md).

ONNX Runtime: each preset's bundled checkpoint, exported with ``tinylm_ref.onnx_export``, against the
``tinylm`` backend: seeded samples (same tokens?) and the largest per-token log-prob difference, plus
``score()`` on the prompt and the sample.

llama.cpp: the preset's Llama-equivalent shape (random weights, as in ``decode_speed.py``'s HF row) written
to GGUF F32, under ``gguf:`` with an f32 and an f16 KV cache, against the same weights under ``hf:``:
greedy tokens equal?, largest log-prob difference over the greedy samples and ``score()``.

Reproduce: ``python benchmarks/runtime_fidelity.py --presets 10m,2.5m`` (needs the ``[onnx,gguf,hf]`` extras).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _speed  # noqa: E402

from harness.backends.gguf import BACKEND as GGUF  # noqa: E402
from harness.backends.hf import BACKEND as HF  # noqa: E402
from harness.backends.onnx import BACKEND as ONNX  # noqa: E402
from harness.backends.tinylm import BUNDLED_DIR, TOKENIZER_DIR, load_directory  # noqa: E402
from harness.types import LoadOptions, SamplingParams  # noqa: E402

PROMPTS = ["Once upon a time", "Lily was a curious girl who loved", '"Look at that!" said Tom.', "The sun was"]
CPU = LoadOptions(device="cpu")


def max_diff(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def compare(ref, other, params: SamplingParams, seeds: range) -> tuple[int, int, float]:
    """(runs with equal tokens, runs, largest |log-prob difference| over samples and scores)."""
    same, worst, runs = 0, 0.0, 0
    for prompt in PROMPTS:
        ids = ref.encode(prompt)
        for seed in seeds:
            a = ref.generate(ids, params, torch.Generator().manual_seed(seed))
            b = other.generate(ids, params, torch.Generator().manual_seed(seed))
            runs += 1
            same += a.tokens == b.tokens
            n = min(len(a.tokens), len(b.tokens))
            worst = max(worst, max_diff(a.logprobs[:n], b.logprobs[:n]))
            worst = max(worst, max_diff(ref.score(ids + a.tokens), other.score(ids + a.tokens)))
    return same, runs, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="10m,7m,5m,2.5m")
    parser.add_argument("--tokens", type=int, default=100)
    args = parser.parse_args(argv)
    sampled = SamplingParams(temperature=0.8, top_k=50, max_new_tokens=args.tokens)
    greedy = SamplingParams(temperature=0.0, top_k=None, max_new_tokens=args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
            ref = load_directory(BUNDLED_DIR / preset, preset, torch.device("cpu"))
            from tinylm_ref.onnx_export import export_onnx

            export_onnx(ref.model, ref.tokenizer, root / f"{preset}-onnx")
            onnx = ONNX.load(f"onnx:{root / f'{preset}-onnx'}", CPU)
            same, runs, worst = compare(ref, onnx, sampled, range(3))
            print(
                f"{preset}  onnx vs tinylm (bundled checkpoint): same tokens {same}/{runs}, max |dlogprob| {worst:.2e}"
            )

            from transformers import PreTrainedTokenizerFast

            from harness.backends.gguf_write import write_llama_gguf

            hf_model = _speed.build_hf_llama(ref.model.config)
            hf_model.config.bos_token_id, hf_model.config.eos_token_id = 2, 1  # the preset tokenizer's ids
            hf_dir = root / f"{preset}-hf"
            hf_model.save_pretrained(hf_dir)
            tokenizer_file = TOKENIZER_DIR / f"{preset}.json"
            PreTrainedTokenizerFast(
                tokenizer_file=str(tokenizer_file), bos_token="<bos>", eos_token="<eos>"
            ).save_pretrained(hf_dir)
            write_llama_gguf(hf_model, tokenizer_file, root / f"{preset}.gguf", qtype="F32")
            hf = HF.load(f"hf:{hf_dir}", CPU)
            for kv in ("f32", "f16"):
                model = GGUF.load(f"gguf:{root / f'{preset}.gguf'}", LoadOptions(device="cpu", extra={"kv_cache": kv}))
                same, runs, worst = compare(hf, model, greedy, range(1))
                print(
                    f"{preset}  gguf F32 ({kv} KV cache) vs hf (random Llama shape): same greedy tokens "
                    f"{same}/{runs}, max |dlogprob| {worst:.2e}"
                )
                model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
