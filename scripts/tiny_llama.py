"""Write a tiny Llama with random weights twice: a transformers directory and GGUF files (F32, Q8_0).

For trying the gguf backend against hf on the same weights (docs/backends.md), e.g.

    python scripts/tiny_llama.py exports/tiny-llama
    harness run suites/smoke.yaml --models gguf:exports/tiny-llama/model-f32.gguf,hf:exports/tiny-llama/hf

The tokenizer is a bundled tinylm one (byte-level BPE); needs the [gguf] and [hf] extras.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.backends.gguf_write import write_random_llama
from harness.backends.tinylm import TOKENIZER_DIR
from tinylm_ref.config import PRESETS
from tinylm_ref.tokenizer import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output directory (hf/ and model-*.gguf are written in it)")
    parser.add_argument("--tokenizer", default="2.5m", choices=list(PRESETS), help="bundled tokenizer (default 2.5m)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_random_llama(
        load_tokenizer(TOKENIZER_DIR / f"{args.tokenizer}.json"), args.out, seed=args.seed, qtypes=("F32", "Q8_0")
    )
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
