"""Throughput mode: sample many prompts at once, each with its own generator and its own EOS.

Rows are left-padded; each token keeps its own position and attends only to its own sequence, so
the math per row is the batch-1 math. Each row draws from its own generator exactly as often as at
batch 1, so tokens match batch-1 generation except where batched matrix products round differently
in the last bits and a sampling draw falls within that rounding of a boundary (rare; see
docs/performance.md).
"""

from __future__ import annotations

import math
import time

import torch

from tinylm_ref.model import LLM
from tinylm_ref.sampling import Generation, pick_token, sync


@torch.inference_mode()
def generate_batch(
    model: LLM,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    generators: list[torch.Generator],
    eos_id: int | None,
) -> list[Generation]:
    """One Generation per prompt; timestamps are shared wall-clock readings for the whole batch."""
    if len(prompts) != len(generators):
        raise ValueError("one generator per prompt is required")
    context = model.config.max_seq_len
    for ids in prompts:
        if not ids or len(ids) >= context:
            raise ValueError(f"prompt of {len(ids)} tokens does not fit the context of {context}")
    device = model.tok_emb.weight.device
    B, P = len(prompts), max(len(p) for p in prompts)
    budgets = [min(max_new_tokens, context - len(p)) for p in prompts]
    cache = model.new_cache(B, capacity=P + max(budgets))
    pads = [P - len(p) for p in prompts]
    idx = torch.tensor([[0] * pad + p for pad, p in zip(pads, prompts, strict=True)], device=device)
    positions = torch.tensor(
        [[0] * pad + list(range(len(p))) for pad, p in zip(pads, prompts, strict=True)], device=device
    )
    valid = torch.zeros(B, P + max(budgets), dtype=torch.bool, device=device)
    for row, pad in enumerate(pads):
        valid[row, pad:P] = True
    outs = [Generation() for _ in prompts]
    active = [True] * B
    lengths = [len(p) for p in prompts]
    sync(device)
    start = time.perf_counter_ns()
    for out in outs:
        out.start_ns = start
    logits = model.forward_padded(idx, positions, valid, cache)[:, -1, :].float()
    for step in range(max_new_tokens):
        logprobs = torch.log_softmax(logits, dim=-1)
        next_tokens = []
        for row in range(B):
            if not active[row]:
                next_tokens.append(0)
                continue
            if step >= budgets[row]:
                outs[row].stop_reason, active[row] = "context", False
                next_tokens.append(0)
                continue
            out = outs[row]
            if math.isnan(float(logprobs[row].max())):  # NaN or +inf logits poison the row
                out.nonfinite, out.stop_reason, active[row] = True, "nonfinite", False
                out.end_ns = time.perf_counter_ns()
                next_tokens.append(0)
                continue
            token_id = int(pick_token(logits[row : row + 1], temperature, top_k, generators[row]).item())
            logprob = float(logprobs[row, token_id])
            now = out.end_ns = time.perf_counter_ns()
            if out.first_token_ns is None:
                out.first_token_ns = now
            if token_id == eos_id:
                out.eos_hit, out.stop_reason, active[row] = True, "eos", False
            else:
                out.tokens.append(token_id)
                out.logprobs.append(logprob)
                out.token_times_ns.append(now)
            next_tokens.append(max(token_id, 0))
        if not any(active) or step + 1 >= max_new_tokens:
            break
        slot = P + step
        valid[:, slot] = torch.tensor(active, device=device)
        token = torch.tensor(next_tokens, device=device)[:, None]
        pos = torch.tensor([min(length + step, context - 1) for length in lengths], device=device)[:, None]
        logits = model.forward_padded(token, pos, valid, cache)[:, -1, :].float()
    return outs
