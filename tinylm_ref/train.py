"""Training loop with the study's recipe as defaults; exact resume from the last checkpoint.

A resumed run reproduces the uninterrupted loss curve because batches are a function of
(seed, step) and the optimizer, scheduler and RNG states travel in ``train_state.pt``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from tokenizers import Tokenizer

from tinylm_ref.checkpoint import TOKENIZER_FILE, save_checkpoint
from tinylm_ref.config import ModelConfig
from tinylm_ref.data import TokenStream
from tinylm_ref.model import LLM

STATE_FILE, LOG_FILE, RECIPE_FILE = "train_state.pt", "loss_log.csv", "recipe.json"
LOG_FIELDS = ["step", "tokens_seen", "lr", "train_loss", "val_loss", "tokens_per_s", "elapsed_s"]


@dataclass
class TrainConfig:
    """The study's recipe (AdamW 0.9/0.95, wd 0.01, lr 3e-4, warmup 500, cosine, batch 64, clip 1, 50k steps)."""

    steps: int = 50_000
    batch_size: int = 64
    seq_len: int | None = None  # defaults to the model's context
    lr: float = 3e-4
    min_lr: float = 0.0
    warmup_steps: int = 500
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 20
    save_every: int = 250
    patience: int | None = None  # stop after this many evaluations without a new best
    seed: int = 1337
    device: str = "auto"
    bf16: bool = False  # autocast on CUDA only
    threads: int | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` then cosine decay to ``min_lr`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: LLM, cfg: TrainConfig) -> torch.optim.AdamW:
    """Decay matrices only; norms and other vectors are not regularised."""
    params = {id(p): p for p in model.parameters()}.values()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


@torch.no_grad()
def evaluate(model: LLM, stream: TokenStream, batch_size: int, max_batches: int, device: torch.device) -> float:
    """Mean token cross-entropy over the first ``max_batches`` sequential windows (deterministic)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in stream.sequential_batches(batch_size, max_batches):
        logits = model(x.to(device))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.to(device).flatten(), reduction="sum")
        total += float(loss)
        count += y.numel()
    model.train(was_training)
    return total / max(1, count)


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _append_log(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from, so the curve has no duplicates."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= step]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train(
    model_config: ModelConfig,
    tokenizer: Tokenizer,
    train_tokens: Path,
    val_tokens: Path | None,
    out_dir: str | Path,
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    session_steps: int | None = None,
) -> dict:
    """Train (or resume) into ``out_dir``; returns a summary dict also written to ``recipe.json``.

    ``session_steps`` stops this invocation after that many steps (a checkpoint is saved), so long
    trainings can be time-boxed on shared machines and continued with ``resume=True``.
    """
    if cfg.patience is not None and val_tokens is None:
        raise ValueError("early stopping (patience) needs validation data; pass --valid")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    seq_len = cfg.seq_len or model_config.max_seq_len
    train_stream = TokenStream(train_tokens, seq_len)
    val_stream = TokenStream(val_tokens, seq_len) if val_tokens else None

    torch.manual_seed(cfg.seed)
    model = LLM(model_config).to(device)
    optimizer = make_optimizer(model, cfg)
    start_step, best_val, evals_since_best, elapsed_before = 0, float("inf"), 0, 0.0
    state_path = out / STATE_FILE
    if resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"])
        start_step, best_val = state["step"], state["best_val"]
        evals_since_best, elapsed_before = state["evals_since_best"], state["elapsed_s"]
        _truncate_log(out / LOG_FILE, start_step)
    tokenizer.save(str(out / TOKENIZER_FILE))
    (out / RECIPE_FILE).write_text(json.dumps({"model": model_config.to_dict(), "train": asdict(cfg)}, indent=2))

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.bf16 and device.type == "cuda") else None
    model.train()
    t0 = time.perf_counter()
    window_t, window_tokens, last_loss = time.perf_counter(), 0, float("nan")
    stopped_early = False
    step = start_step
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f} · {task.fields[tps]:,.0f} tok/s"),
        TimeRemainingColumn(),
        disable=not progress,
    )
    with bar:
        task = bar.add_task(f"train {out.name}", total=cfg.steps, completed=start_step, loss=float("nan"), tps=0.0)
        stop_at = cfg.steps if session_steps is None else min(cfg.steps, start_step + session_steps)
        while step < stop_at:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            x, y = train_stream.batch(cfg.batch_size, cfg.seed, step)
            x, y = x.to(device), y.to(device)
            if autocast:
                with autocast:
                    logits = model(x)
            else:
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            last_loss = loss.item()
            window_tokens += x.numel()
            tps = window_tokens / max(1e-9, time.perf_counter() - window_t)
            bar.update(task, completed=step, loss=last_loss, tps=tps)
            is_eval = step % cfg.eval_every == 0 or step == cfg.steps
            if is_eval:
                val = (
                    evaluate(model, val_stream, cfg.batch_size, cfg.eval_batches, device)
                    if val_stream
                    else float("nan")
                )
                _append_log(
                    out / LOG_FILE,
                    {
                        "step": step,
                        "tokens_seen": step * cfg.batch_size * seq_len,
                        "lr": f"{lr_at(step - 1, cfg):.3e}",
                        "train_loss": f"{last_loss:.4f}",
                        "val_loss": f"{val:.4f}",
                        "tokens_per_s": f"{tps:.0f}",
                        "elapsed_s": f"{elapsed_before + time.perf_counter() - t0:.1f}",
                    },
                )
                window_t, window_tokens = time.perf_counter(), 0
                if val_stream and val < best_val:
                    best_val, evals_since_best = val, 0
                    save_checkpoint(model, tokenizer, out / "best")
                else:
                    evals_since_best += 1
                if cfg.patience is not None and evals_since_best >= cfg.patience:
                    stopped_early = True
            if step % cfg.save_every == 0 or step in (cfg.steps, stop_at) or stopped_early:
                _atomic_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "step": step,
                        "best_val": best_val,
                        "evals_since_best": evals_since_best,
                        "elapsed_s": elapsed_before + time.perf_counter() - t0,
                        "rng_cpu": torch.get_rng_state(),
                        "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                    },
                    state_path,
                )
                save_checkpoint(model, tokenizer, out / "last")
            if stopped_early:
                break
    summary = {
        "steps": step,
        "tokens_seen": step * cfg.batch_size * seq_len,
        "best_val_loss": best_val,
        "final_train_loss": last_loss,
        "elapsed_s": elapsed_before + time.perf_counter() - t0,
        "stopped_early": stopped_early,
    }
    (out / RECIPE_FILE).write_text(
        json.dumps({"model": model_config.to_dict(), "train": asdict(cfg), "result": summary}, indent=2)
    )
    return summary
