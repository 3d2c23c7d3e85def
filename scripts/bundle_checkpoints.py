"""Package trained runs as the bundled checkpoints (``tinylm_ref/checkpoints/<preset>/``).

For each preset: the best-validation weights in bf16 safetensors, config, tokenizer, the loss log,
a golden greedy output for the regression test, and a model card with measured numbers.

    python scripts/bundle_checkpoints.py --runs RUNS_DIR --valid ../shared/data/tinystories/valid.txt
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
from pathlib import Path

import torch

from harness.backends.tinylm import load_directory
from harness.environment import cpu_name
from harness.metrics._windowed_nll import texts_bits_per_byte
from harness.types import SamplingParams
from tinylm_ref.checkpoint import load_checkpoint, save_weights
from tinylm_ref.data import iter_stories

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tinylm_ref" / "checkpoints"
GOLDEN = REPO / "tests" / "tinylm_ref" / "golden"
GOLDEN_PROMPT = "Once upon a time, there was a little"
CARD_PROMPTS = [
    "Once upon a time, there was a little",
    "Lily wanted to play outside, but",
    '"Can I have a cookie?" asked Tom.',
    "The dog ran to the park and",
    "One day, a small bird",
]


def bundle(preset: str, run: Path, valid: Path) -> dict:
    out = OUT / preset
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ckpt = load_checkpoint(run / "best")
    save_weights(ckpt.model, out / "model.safetensors", dtype="bfloat16")
    ckpt.model.config.save(out / "config.json")
    shutil.copy(run / "best" / "tokenizer.json", out / "tokenizer.json")
    shutil.copy(run / "loss_log.csv", out / "loss_log.csv")
    recipe = json.loads((run / "recipe.json").read_text())
    with open(run / "loss_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    model = load_directory(out, preset, torch.device("cpu"))  # what users get: the bf16 weights
    texts = list(iter_stories(valid))
    bpb = texts_bits_per_byte(texts, model.encode, model.score, model.info.context_length)
    greedy = model.generate(model.encode(GOLDEN_PROMPT), SamplingParams(0.0, None, 48, 0), torch.Generator())
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / f"{preset}.json").write_text(
        json.dumps(
            {
                "prompt": GOLDEN_PROMPT,
                "max_new_tokens": 48,
                "tokens": greedy.tokens,
                "text": model.decode(greedy.tokens),
            },
            indent=1,
        )
        + "\n"
    )
    samples = []
    for i, prompt in enumerate(CARD_PROMPTS):
        gen = model.generate(
            model.encode(prompt), SamplingParams(0.8, 50, 256, 1234), torch.Generator().manual_seed(1234 + i)
        )
        samples.append((prompt, model.decode(gen.tokens)))
    facts = {
        "preset": preset,
        "parameters": model.info.parameters,
        "steps": int(rows[-1]["step"]),
        "best_step": int(best["step"]),
        "tokens_seen": int(rows[-1]["tokens_seen"]),
        "tokens_seen_at_best": int(best["tokens_seen"]),
        "wall_time_s": round(float(rows[-1]["elapsed_s"]), 1),
        "final_train_loss": float(rows[-1]["train_loss"]),
        "final_val_loss": float(rows[-1]["val_loss"]),
        "best_val_loss": float(best["val_loss"]),
        "heldout_bpb_valid": round(bpb, 4),
        "weights_bytes": (out / "model.safetensors").stat().st_size,
    }
    (out / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
    train = recipe["train"]
    card = [
        f"# tinylm_ref {preset} (bundled checkpoint)",
        "",
        f"The study's {preset} preset ({model.info.parameters:,} parameters), trained on this project's build machine "
        "on the offline TinyStories sample. Weights: the best-validation step, stored in bf16 (computed in fp32).",
        "",
        "| | |",
        "|---|---|",
        f"| config | vocab {model.info.vocab_size}, dim {recipe['model']['dim']}, layers {recipe['model']['n_layers']}, heads {recipe['model']['n_heads']}, FFN {recipe['model']['ffn_dim']} (SwiGLU), context {model.info.context_length}, tied head |",
        "| data | `train.txt` of the offline TinyStories sample (1,888 stories, 1.55 M characters); validation on `valid.txt` (200 held-out stories) |",
        f"| tokenizer | byte-level BPE, {model.info.vocab_size} tokens, trained on `train.txt` |",
        f"| recipe | AdamW ({train['beta1']}, {train['beta2']}), weight decay {train['weight_decay']}, lr {train['lr']} with {train['warmup_steps']} warmup steps then cosine to 0, batch {train['batch_size']} × {train['seq_len'] or recipe['model']['max_seq_len']} tokens, dropout {recipe['model']['dropout']}, grad clip {train['grad_clip']}, fp32, {train['steps']} steps, eval every {train['eval_every']} steps, early-stop patience {train['patience']} |",
        f"| steps run | {facts['steps']} (best validation at step {facts['best_step']}) |",
        f"| tokens seen | {facts['tokens_seen']:,} ({facts['tokens_seen_at_best']:,} at the best step) |",
        f"| wall time | {facts['wall_time_s']:,.0f} s on {cpu_name()} ({platform.machine()}), torch CPU threads {train.get('threads') or 'default'}, shared with other jobs |",
        f"| final train loss | {facts['final_train_loss']:.3f} nats/token |",
        f"| final / best validation loss | {facts['final_val_loss']:.3f} / {facts['best_val_loss']:.3f} nats/token |",
        f"| held-out bits per byte (`valid.txt`, all 200 stories, bf16 weights) | {facts['heldout_bpb_valid']:.3f} |",
        "",
        "Reproduce: `tinylm train --config " + preset + " --data train.txt --valid valid.txt --tokenizer tok.json "
        f"--steps {train['steps']} --batch-size {train['batch_size']} --lr {train['lr']} --warmup-steps {train['warmup_steps']} "
        f"--dropout {recipe['model']['dropout']} --eval-every {train['eval_every']} --patience {train['patience']} --out runs/{preset}` "
        "(the tokenizer from `tinylm tokenizer train --vocab-size " + str(model.info.vocab_size) + "`).",
        "",
        "## Samples (temperature 0.8, top-k 50, at most 256 new tokens, seeds 1234–1238)",
        "",
    ]
    for prompt, text in samples:
        card.append(f"- **{prompt}**{text.replace(chr(10), ' ')}")
    card += ["", "The loss curve is in `loss_log.csv`.", ""]
    (out / "README.md").write_text("\n".join(card), encoding="utf-8")
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--valid", type=Path, required=True)
    parser.add_argument("--presets", default="10m,7m,5m,2.5m")
    args = parser.parse_args()
    for preset in args.presets.split(","):
        if not (args.runs / preset / "best").is_dir():
            print(f"{preset}: no trained run in {args.runs / preset}, skipped")
            continue
        print(json.dumps(bundle(preset, args.runs / preset, args.valid)))


if __name__ == "__main__":
    main()
