"""``tinylm``: train tokenizers and models, sample from checkpoints, show the presets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from tinylm_ref.config import PRESETS, STUDY_PARAMS, ModelConfig, get_preset

app = typer.Typer(help="The reference tiny decoder: tokenizers, training, sampling.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="BPE tokenizers.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
console = Console()


err_console = Console(stderr=True)


def _fail(message: str) -> None:
    """User mistakes: one line on stderr, exit code 2, no traceback."""
    err_console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def info() -> None:
    """Print the four presets with their parameter counts beside the study's Table 1."""
    from tinylm_ref.model import LLM

    table = Table(title="tinylm_ref presets (study Table 1)")
    for column in (
        "preset",
        "vocab",
        "dim",
        "layers",
        "heads",
        "ffn",
        "context",
        "params (ours)",
        "params (study)",
        "diff",
    ):
        table.add_column(column, justify="right")
    for name, cfg in PRESETS.items():
        params = LLM(cfg).num_parameters()
        study = STUDY_PARAMS[name]
        table.add_row(
            name,
            str(cfg.vocab_size),
            str(cfg.dim),
            str(cfg.n_layers),
            str(cfg.n_heads),
            str(cfg.ffn_dim),
            str(cfg.max_seq_len),
            f"{params / 1e6:.2f}M",
            f"{study / 1e6:.1f}M",
            f"{(params - study) / study:+.1%}",
        )
    console.print(table)


@tokenizer_app.command("train")
def tokenizer_train(
    data: Annotated[Path, typer.Option(help="TinyStories text file (stories separated by <|endoftext|> lines).")],
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size, special tokens included.")],
    out: Annotated[Path, typer.Option(help="Output tokenizer JSON file.")],
) -> None:
    """Train a byte-level BPE tokenizer on a TinyStories file."""
    from tinylm_ref.data import iter_stories
    from tinylm_ref.tokenizer import train_tokenizer

    if not data.is_file():
        _fail(f"data file not found: {data}")
    try:
        tokenizer = train_tokenizer(iter_stories(data), vocab_size)
    except ValueError as exc:
        _fail(f"--vocab-size {vocab_size}: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out))
    console.print(f"wrote {out} ({tokenizer.get_vocab_size()} tokens)")


@app.command()
def train(
    config: Annotated[str, typer.Option(help="Preset name (10m, 7m, 5m, 2.5m) or a config.json path.")],
    data: Annotated[Path, typer.Option(help="Training text file.")],
    out: Annotated[Path, typer.Option(help="Output directory (checkpoints, loss log).")],
    valid: Annotated[Optional[Path], typer.Option(help="Validation text file for eval and early stopping.")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="Tokenizer JSON; trained on --data if omitted.")] = None,
    steps: int = 50_000,
    batch_size: int = 64,
    seq_len: Annotated[Optional[int], typer.Option(help="Training window; defaults to the context length.")] = None,
    lr: float = 3e-4,
    warmup_steps: int = 500,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    dropout: float = 0.0,
    eval_every: int = 250,
    eval_batches: int = 20,
    save_every: int = 250,
    patience: Annotated[Optional[int], typer.Option(help="Early stop after N evals without improvement.")] = None,
    seed: int = 1337,
    device: str = "auto",
    bf16: bool = False,
    threads: Optional[int] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/train_state.pt exactly.")] = False,
    cache_dir: Annotated[Path, typer.Option(help="Where tokenized data is cached.")] = Path(".cache/tinylm"),
) -> None:
    """Train a model with the study's recipe (every value overridable)."""
    from dataclasses import replace

    from tinylm_ref.data import iter_stories, tokenize_to_file
    from tinylm_ref.tokenizer import load_tokenizer, train_tokenizer
    from tinylm_ref.train import TrainConfig
    from tinylm_ref.train import train as run_training

    try:
        model_config = ModelConfig.load(config) if config.endswith(".json") else get_preset(config)
    except (KeyError, ValueError, OSError) as exc:
        _fail(f"--config {config}: {exc}")
    model_config = replace(model_config, dropout=dropout)
    for path in (data, valid):
        if path is not None and not path.is_file():
            _fail(f"data file not found: {path}")
    if tokenizer is not None:
        if not tokenizer.is_file():
            _fail(f"--tokenizer {tokenizer}: file not found")
        tok = load_tokenizer(tokenizer)
    elif resume and (out / "tokenizer.json").exists():
        tok = load_tokenizer(out / "tokenizer.json")
    else:
        tok = train_tokenizer(iter_stories(data), model_config.vocab_size)
    if tok.get_vocab_size() > model_config.vocab_size:
        _fail(f"tokenizer has {tok.get_vocab_size()} tokens, more than vocab_size={model_config.vocab_size}")
    train_tokens = tokenize_to_file(data, tok, cache_dir)
    val_tokens = tokenize_to_file(valid, tok, cache_dir) if valid else None
    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        eval_every=eval_every,
        eval_batches=eval_batches,
        save_every=save_every,
        patience=patience,
        seed=seed,
        device=device,
        bf16=bf16,
        threads=threads,
    )
    if patience is not None and valid is None:
        _fail("--patience needs --valid (early stopping watches the validation loss)")
    summary = run_training(model_config, tok, train_tokens, val_tokens, out, cfg, resume=resume)
    console.print(summary)


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory.")],
    prompt: Annotated[str, typer.Argument(help="Prompt text.")] = "Once upon a time",
    max_new_tokens: int = 128,
    temperature: float = 0.8,
    top_k: int = 50,
    seed: int = 0,
    n: Annotated[int, typer.Option(help="Number of samples.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Sample continuations of PROMPT from a checkpoint directory."""
    from tinylm_ref.checkpoint import CheckpointError, load_checkpoint
    from tinylm_ref.sampling import generate
    from tinylm_ref.tokenizer import EOS, decode, special_id
    from tinylm_ref.train import resolve_device

    try:
        ckpt = load_checkpoint(checkpoint, device=resolve_device(device))
    except (CheckpointError, ValueError) as exc:
        _fail(str(exc))
    ids = ckpt.tokenizer.encode(prompt).ids
    if len(ids) >= ckpt.model.config.max_seq_len:
        _fail(f"the prompt has {len(ids)} tokens; the context holds {ckpt.model.config.max_seq_len}; shorten it")
    for i in range(n):
        gen = generate(  # a CPU generator on every device: the same seed gives the harness's tokens
            ckpt.model,
            ids,
            max_new_tokens,
            temperature,
            top_k,
            torch.Generator().manual_seed(seed + i),
            special_id(ckpt.tokenizer, EOS),
        )
        console.print(f"[bold]{prompt}[/bold]{decode(ckpt.tokenizer, gen.tokens)}", highlight=False)


def main() -> None:
    app()
