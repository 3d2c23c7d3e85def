"""Fast autoregressive sampling with a preallocated KV cache and per-token timing.

Everything the harness measures comes out of this loop, so it records what the metric contract
needs (raw log-probabilities, host-side timestamps) and does nothing else per token.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from tinylm_ref.model import LLM


@dataclass
class Generation:
    """One generated continuation. ``tokens`` excludes the EOS token that ended it, if any."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # log p(g_i) under the raw distribution
    token_times_ns: list[int] = field(default_factory=list)  # perf_counter_ns when g_i was on the host
    start_ns: int = 0  # just before the prefill forward pass
    end_ns: int = 0  # when the last token (or EOS) was on the host
    eos_hit: bool = False
    stop_reason: str = "max_new_tokens"  # "eos", "max_new_tokens" or "context"
    nonfinite: bool = False  # the model produced NaN/inf logits; generation stopped there


def pick_token(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Sample from ``logits`` (B, V) with temperature and top-k; temperature 0 means greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    scaled = logits / temperature
    if top_k is not None and 0 < top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def generate(
    model: LLM,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 50,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> Generation:
    """Sample a continuation of ``prompt_ids``.

    Generation stops at EOS, after ``max_new_tokens``, or when the context window is full (the
    documented policy: learned positions cannot extend past ``max_seq_len``, so no sliding window).
    """
    context = model.config.max_seq_len
    if not prompt_ids:
        raise ValueError("prompt must contain at least one token")
    if len(prompt_ids) >= context:
        raise ValueError(f"prompt has {len(prompt_ids)} tokens; the context holds {context} with room for one more")
    device = model.tok_emb.weight.device
    cache = model.new_cache(1)
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    out = Generation()
    budget = min(max_new_tokens, context - len(prompt_ids))
    _sync(device)
    out.start_ns = time.perf_counter_ns()
    logits = model(idx, cache=cache, last_only=True)[:, -1, :].float()  # prefill
    for step in range(max_new_tokens):
        if step >= budget:
            out.stop_reason = "context"
            break
        logprobs = torch.log_softmax(logits, dim=-1)
        try:
            token = pick_token(logits, temperature, top_k, generator)
        except RuntimeError:  # multinomial refuses NaN/inf probabilities
            token = None
        token_id = int(token.item()) if token is not None else -1  # host sync: the token is materialised
        logprob = float(logprobs[0, token_id]) if token is not None else math.nan
        now = time.perf_counter_ns()
        out.end_ns = now
        if not math.isfinite(logprob):  # any NaN/inf logit poisons the whole log-softmax
            out.nonfinite, out.stop_reason = True, "nonfinite"
            break
        if token_id == eos_id:
            out.eos_hit, out.stop_reason = True, "eos"
            break
        out.tokens.append(token_id)
        out.logprobs.append(logprob)
        out.token_times_ns.append(now)
        if step + 1 < budget:
            logits = model.decode_step(token, cache).float()
    if out.end_ns == 0:
        out.end_ns = time.perf_counter_ns()
    return out
