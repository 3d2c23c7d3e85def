"""``tinylm``: train tokenizers and models, sample from checkpoints, show the presets."""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import torch
import typer
from rich.table import Table
from rich.text import Text

from tinylm_ref.config import PRESETS, STUDY_PARAMS, ModelConfig, get_preset
from tinylm_ref.consoles import make_console

app = typer.Typer(
    help="The reference tiny decoder: tokenizers, training, sampling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tokenizer_app = typer.Typer(help="BPE tokenizers.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
console = make_console()
err_console = make_console(stderr=True)


MAX_SEED = 2**63 - 1
MAX_COUNT = 2**31 - 1
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


def _one_line(text: object) -> str:
    """Control characters, line breaks and lone surrogates escaped: an error is exactly one line."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") else c for c in str(text))


def _fail(message: str) -> NoReturn:
    """User mistakes: one line on stderr, exit code 2, no traceback; never markup or emoji codes."""
    err_console.print(Text(f"error: {_one_line(message)}"), soft_wrap=True)
    raise typer.Exit(2)


def _int_in(label: str, value: int | None, low: int, high: int = MAX_COUNT) -> None:
    if value is not None and not low <= value <= high:
        _fail(f"{label} {value}: must be an integer from {low:,} to {high:,}")


def _float_in(label: str, value: float, low: float, high: float = math.inf, below_high: bool = False) -> None:
    """A finite number in [low, high] (or [low, high) with ``below_high``); NaN and infinities never pass."""
    inside = math.isfinite(value) and low <= value and (value < high if below_high else value <= high)
    if not inside:
        upper = "" if math.isinf(high) else f" and {'below' if below_high else 'at most'} {high:g}"
        _fail(f"{label} {value}: must be a finite number ≥ {low:g}{upper}")


def _device(name: str) -> torch.device:
    """A device that exists here; otherwise one line listing those that do."""
    present = ["auto", "cpu"]
    if torch.cuda.is_available():
        present += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        present.append("mps")
    if not re.match(DEVICE_PATTERN, name) or name not in present:
        _fail(f"--device {name!r}: not a device on this machine; available: {', '.join(present)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _version(value: bool) -> None:
    if value:
        from tinylm_ref import package_version

        console.print(Text(f"tinylm (tinylm-harness) {package_version()}"))
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """The reference tiny decoder: tokenizers, training, sampling."""


def _preset_rows(names: list[str]) -> list[dict[str, object]]:
    from tinylm_ref.bundled import bundled_checkpoints
    from tinylm_ref.model import LLM

    bundled = bundled_checkpoints()
    rows = []
    for name in names:
        cfg = PRESETS[name]
        params, study = LLM(cfg).num_parameters(), STUDY_PARAMS[name]
        rows.append(
            {
                "preset": name,
                "vocab": cfg.vocab_size,
                "dim": cfg.dim,
                "layers": cfg.n_layers,
                "heads": cfg.n_heads,
                "ffn": cfg.ffn_dim,
                "context": cfg.max_seq_len,
                "params": params,
                "params_study": study,
                "diff": (params - study) / study,
                "bundled_checkpoint": str(bundled[name]) if name in bundled else None,
            }
        )
    return rows


@app.command()
def info(
    preset: Annotated[Optional[str], typer.Argument(help="One preset (10m, 7m, 5m, 2.5m); default: all.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the four presets with their parameter counts beside the study's Table 1."""
    import json

    if preset is not None and preset.lower() not in PRESETS:
        _fail(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    rows = _preset_rows([preset.lower()] if preset else list(PRESETS))
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="tinylm_ref presets (study Table 1)")
    columns = ("preset", "vocab", "dim", "layers", "heads", "ffn", "context", "params (ours)", "params (study)", "diff")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            *(str(row[key]) for key in ("preset", "vocab", "dim", "layers", "heads", "ffn", "context")),
            f"{row['params'] / 1e6:.2f}M",
            f"{row['params_study'] / 1e6:.1f}M",
            f"{row['diff']:+.1%}",
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
    _int_in("--vocab-size", vocab_size, 1, 1_000_000)
    try:
        tokenizer = train_tokenizer(iter_stories(data), vocab_size)
    except ValueError as exc:
        _fail(f"--vocab-size {vocab_size}: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out))
    console.print(Text(f"wrote {_one_line(out)} ({tokenizer.get_vocab_size()} tokens)"))


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
    for label, value, low in (
        ("--steps", steps, 1),
        ("--batch-size", batch_size, 1),
        ("--seq-len", seq_len, 2),
        ("--warmup-steps", warmup_steps, 0),
        ("--eval-every", eval_every, 1),
        ("--eval-batches", eval_batches, 1),
        ("--save-every", save_every, 1),
        ("--patience", patience, 1),
    ):
        _int_in(label, value, low)
    _int_in("--seq-len", seq_len, 2, model_config.max_seq_len)
    _int_in("--seed", seed, 0, MAX_SEED)
    _int_in("--threads", threads, 1, 1024)
    _float_in("--lr", lr, 0.0)
    _float_in("--weight-decay", weight_decay, 0.0)
    _float_in("--grad-clip", grad_clip, 0.0)
    _float_in("--dropout", dropout, 0.0, 1.0, below_high=True)
    _device(device)
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
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint directory, or a bundled preset name (10m, 7m, 5m, 2.5m).")
    ],
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

    # every value first, each with its valid range: nothing is loaded for a command that cannot run
    _int_in("--max-new-tokens", max_new_tokens, 1, 100_000)
    _float_in("--temperature", temperature, 0.0)
    _int_in("--top-k", top_k, 1)
    _int_in("--n", n, 1, 10_000)
    _int_in("--seed", seed, 0, MAX_SEED)
    torch_device = _device(device)
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:  # undecodable bytes in the argument arrive as lone surrogates
        _fail(f"the prompt is not valid UTF-8 (at character {exc.start}); pass UTF-8 text")
    from tinylm_ref.bundled import resolve_checkpoint

    checkpoint = resolve_checkpoint(checkpoint)
    try:
        ckpt = load_checkpoint(checkpoint, device=torch_device)
    except (CheckpointError, ValueError, OSError) as exc:
        _fail(str(exc))
    context = ckpt.model.config.max_seq_len
    # byte-level BPE: no token covers more bytes than its string has characters, so a prompt this long
    # cannot fit (4x margin for normalisation) and is refused without tokenizing it
    longest = max((len(t) for t in ckpt.tokenizer.get_vocab(with_added_tokens=True)), default=1)
    if len(prompt.encode("utf-8")) > 4 * longest * context:
        _fail(f"the prompt is {len(prompt):,} characters; the context holds {context} tokens; shorten it")
    try:
        ids = ckpt.tokenizer.encode(prompt).ids
        eos = special_id(ckpt.tokenizer, EOS)
    except (ValueError, TypeError, UnicodeError) as exc:
        _fail(f"{checkpoint}: {exc}")
    if not ids:
        _fail("the prompt encodes to no tokens; give a non-empty prompt")
    if len(ids) >= context:
        _fail(f"the prompt has {len(ids)} tokens; the context holds {context}; shorten it")
    for i in range(n):
        gen = generate(  # a CPU generator on every device: the same seed gives the harness's tokens
            ckpt.model,
            ids,
            max_new_tokens,
            temperature,
            top_k,
            torch.Generator().manual_seed(seed + i),
            eos,
        )
        # the prompt and the model's text are shown as they are: never markup, emoji codes or highlighting
        console.print(Text.assemble((prompt, "bold"), decode(ckpt.tokenizer, gen.tokens)))


export_app = typer.Typer(help="Export a checkpoint for other runtimes.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_cmd(
    checkpoint: Annotated[
        str, typer.Argument(help="A preset (10m, 7m, 5m, 2.5m: the bundled checkpoint) or a checkpoint directory.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory (created; must be empty if it exists).")],
    split: Annotated[bool, typer.Option(help="Write a prefill and a decode graph instead of one graph.")] = False,
) -> None:
    """Write CHECKPOINT as an ONNX decoder with its KV cache (optimum's causal-LM layout) + tokenizer.json."""
    from tinylm_ref.checkpoint import CheckpointError, load_checkpoint

    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)

        from tinylm_ref.onnx_export import export_onnx
    except ImportError as exc:
        _fail(f"exporting to ONNX needs the onnx package ({exc}); pip install 'tinylm-harness[onnx]'")
    source = Path(__file__).resolve().parent / "checkpoints" / checkpoint.lower()
    if checkpoint.lower() not in PRESETS or not source.is_dir():
        source = Path(checkpoint).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        _fail(f"--out {out}: exists and is not an empty directory; choose a new directory")
    try:
        ckpt = load_checkpoint(source, device=torch.device("cpu"))
    except (CheckpointError, ValueError, OSError) as exc:
        _fail(f"{checkpoint}: {exc}")
    export_onnx(ckpt.model, ckpt.tokenizer, out, split=split)
    console.print(Text(f"wrote {out} ({', '.join(sorted(p.name for p in out.iterdir()))})"))


def main() -> None:
    """Entry point: usage errors and user mistakes are one line on stderr and exit code 2."""
    try:
        result = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click's usage errors (bad type, missing argument, unknown option)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err_console.print(Text(f"error: {_one_line(exc.format_message())}{hint}"), soft_wrap=True)
            sys.exit(2)
        if exc.__class__.__name__ == "Abort":
            sys.exit(130)
        raise
    if isinstance(result, int):
        sys.exit(result)
