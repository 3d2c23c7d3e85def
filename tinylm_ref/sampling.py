"""Fast autoregressive sampling with a preallocated KV cache and per-token timing.

Everything the harness measures comes out of ``sample_loop``, so it records what the metric
contract needs (raw log-probabilities, host-side timestamps) and does nothing else per token.
Every backend drives the same loop, so stop rules, timing points and the sampler are identical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection

import torch

from tinylm_ref.decoder import step_decoder, supports
from tinylm_ref.fused_decoder import FusedDecoder
from tinylm_ref.generation import Generation
from tinylm_ref.model import LLM


def pick_token(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Sample one token id per row of ``logits`` (B, V) with temperature and top-k; temperature 0 is greedy.

    Top-k keeps exactly the k largest logits (``torch.topk``; an exact tie at the k-th value keeps the
    lower index) and samples among those k only. The draw is the exponential race: the index maximising
    p_i / E_i with E_i ~ Exp(1) i.i.d. is i with probability p_i; it is what ``torch.multinomial`` does
    for one sample, minus its argument checks, and over k entries instead of the vocabulary (at batch 1
    that was a third of the per-token sampling time). The E_i come from ``generator`` on its own device,
    so a CPU generator gives the same draws whatever device the logits are on.
    """
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    indices = None
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        logits, indices = torch.topk(logits, top_k, dim=-1)  # sorted: column 0 holds the maximum
        shifted = logits - logits[:, :1]
    else:
        shifted = logits - logits.amax(dim=-1, keepdim=True)
    # shifting by the maximum first keeps a tiny temperature from overflowing to inf/inf = NaN
    probs = torch.softmax(shifted / temperature, dim=-1)
    if generator is not None and generator.device != probs.device:
        race = torch.empty(probs.shape, device=generator.device).exponential_(1, generator=generator)
        race = race.to(probs.device)
    else:
        race = torch.empty_like(probs).exponential_(1, generator=generator)
    choice = probs.div_(race).argmax(dim=-1, keepdim=True)
    return choice if indices is None else indices.gather(-1, choice)


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a timestamp taken next means the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


NextLogits = Callable[[int | None], torch.Tensor]
#: Called as each generated token is on the host: ``(token_id, logprob, perf_counter_ns)``; never for the
#: stop token (EOS), which is not part of the output.
#: A server streams through it; raising from it stops generation (a client that went away).
OnToken = Callable[[int, float, int], None]


def sample_loop(
    next_logits: NextLogits,
    prompt_len: int,
    context: int,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None,
    stop_ids: Collection[int],
    device: torch.device,
    on_token: OnToken | None = None,
) -> Generation:
    """The per-token loop every backend shares.

    ``next_logits(None)`` runs the prefill and returns the last position's logits (1, V);
    ``next_logits(token_id)`` feeds the sampled token and returns the next logits. Generation stops
    at a stop id, after ``max_new_tokens``, when the context is full (learned positions cannot extend
    past it, so no sliding window), or on NaN/inf logits. Those are caught from the sampled token's
    log-prob: log-softmax is finite for every finite logit, and a NaN or +inf logit makes it NaN or
    -inf wherever the sampler lands, so no separate scan of the vocabulary is needed.
    """
    out = Generation()
    budget = min(max_new_tokens, context - prompt_len)
    sync(device)
    out.start_ns = time.perf_counter_ns()
    logits = next_logits(None).float()
    for step in range(max_new_tokens):
        if step >= budget:
            out.stop_reason = "context"
            break
        logprobs = torch.log_softmax(logits, dim=-1)
        token_id = int(pick_token(logits, temperature, top_k, generator))  # host sync: the token is here
        logprob = float(logprobs[0, token_id])
        now = out.end_ns = time.perf_counter_ns()
        if not math.isfinite(logprob):
            out.nonfinite, out.stop_reason = True, "nonfinite"
            break
        if out.first_token_ns is None:
            out.first_token_ns = now
        if token_id in stop_ids:
            out.eos_hit, out.stop_reason = True, "eos"
            break
        out.tokens.append(token_id)
        out.logprobs.append(logprob)
        out.token_times_ns.append(now)
        if on_token is not None:
            on_token(token_id, logprob, now)
        if step + 1 < budget:
            logits = next_logits(token_id).float()
    if out.end_ns == 0:
        out.end_ns = time.perf_counter_ns()
    return out


@torch.inference_mode()
def generate(
    model: LLM,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 50,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    weight_dtype: torch.dtype = torch.float32,
    on_token: OnToken | None = None,
    fused: bool = True,
) -> Generation:
    """Sample a continuation of ``prompt_ids`` with a preallocated KV cache (see ``sample_loop``).

    Each new token runs through ``decoder.step_decoder``'s choice (the compiled ``FusedDecoder`` on CPU unless
    ``fused`` is false, else ``FastDecoder``; either holds its matrices in ``weight_dtype``), or through the
    compiled static-shape step after ``LLM.compile_decode()``. The prompt runs through the fused prefill with
    float32 matrices, else through ``LLM.forward`` (so a bf16 run's first token is the float32 one).
    """
    context = model.config.max_seq_len
    if not prompt_ids:
        raise ValueError("prompt must contain at least one token")
    if len(prompt_ids) >= context:
        raise ValueError(f"prompt has {len(prompt_ids)} tokens; the context holds {context} with room for one more")
    device = model.tok_emb.weight.device
    compiled = model.__dict__.get("_compiled_step") is not None
    decoder = step_decoder(model, weight_dtype, fused) if not compiled and supports(model) else None
    pooled = isinstance(decoder, FusedDecoder)
    cache = decoder.take_cache(model) if pooled else model.new_cache(1)
    views = None if decoder is None else decoder.layer_views(cache)

    def next_logits(token_id: int | None) -> torch.Tensor:
        if token_id is None:
            if pooled and decoder.prefills:
                return decoder.prefill(prompt_ids, cache)
            idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
            return model(idx, cache=cache, last_only=True)[:, -1, :]
        if decoder is None:
            return model.decode_step(torch.tensor([[token_id]], device=device), cache)
        pos = cache.length
        logits = decoder.step(token_id, pos, views)
        cache.length = pos + 1
        return logits

    stop_ids = () if eos_id is None else (eos_id,)
    try:
        return sample_loop(
            next_logits,
            len(prompt_ids),
            context,
            max_new_tokens,
            temperature,
            top_k,
            generator,
            stop_ids,
            device,
            on_token,
        )
    finally:
        if pooled:
            decoder.give_back(cache)
