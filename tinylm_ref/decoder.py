"""Batch-1 decoding with the weights pre-arranged for the fewest, cheapest kernel calls.

At batch 1 a tiny decoder's step is a few dozen small matrix-vector products and twice as many
tiny element-wise ops, so per-call dispatch costs as much as the arithmetic. ``FastDecoder`` keeps
the math of ``LLM.forward`` but spends fewer, cheaper calls per token:

- every weight is stored transposed and contiguous (``x @ Wt``), which MKL runs ~10-25 % faster
  than ``F.linear``'s transposed view for these shapes;
- each RMSNorm's gain is folded into the rows of the matrix that follows it, and the attention
  scale into the query columns, so a norm costs one vector norm and one scalar (not 5 kernels);
- residual additions are fused into the output projections (``addmm``);
- the per-layer cache views are built once per generation, not once per step.

Folding changes rounding in the last bits only (tests hold the logits to the full forward within
float32 noise). Optionally the matrices are held in bfloat16 (``--dtype bfloat16``): their inputs
are rounded to bfloat16 and the products accumulate in float32, while the residual stream, norms,
attention, KV cache and logits stay float32. That halves the bytes each token reads, which is what
limits the 10m preset on a CPU whose last-level cache cannot hold 41 MB of float32 weights.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinylm_ref.model import LLM, KVCache

WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class _Layer:
    qkv: torch.Tensor  # (C, 3C): attn-norm gain folded into rows, attention scale into the q columns
    proj: torch.Tensor  # (C, C)
    gate_up: torch.Tensor  # (C, 2F): ffn-norm gain folded into rows
    down: torch.Tensor  # (F, C)


def _norm_eps(norm: torch.nn.RMSNorm) -> float:
    """``nn.RMSNorm(eps=None)`` uses the float32 machine epsilon, so the folded norm must too."""
    return float(norm.eps) if norm.eps is not None else float(torch.finfo(torch.float32).eps)


class FastDecoder:
    """One decode step for a batch of one sequence, reading and extending a ``KVCache``."""

    def __init__(self, model: LLM, weight_dtype: torch.dtype = torch.float32) -> None:
        cfg = model.config
        self.dim, self.heads, self.head_dim, self.ffn_dim = cfg.dim, cfg.n_heads, cfg.head_dim, cfg.ffn_dim
        self.mixed = weight_dtype != torch.float32
        self.weight_dtype = weight_dtype
        self.host_scalars = model.tok_emb.weight.device.type == "cpu"  # a .item() per norm is free only on CPU
        eps = {_norm_eps(b.attn_norm) for b in model.blocks} | {_norm_eps(b.ffn_norm) for b in model.blocks}
        eps.add(_norm_eps(model.norm))
        if len(eps) != 1:
            raise ValueError("FastDecoder expects one RMSNorm epsilon for the whole model")
        self.eps = eps.pop()

        def arrange(weight: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
            w = weight.detach().float()
            if gain is not None:
                w = w * gain.detach().float()[None, :]
            return w.t().contiguous().to(weight_dtype)

        with torch.no_grad():
            self.layers = []
            for block in model.blocks:
                qkv = block.attn.qkv.weight.detach().float().clone()
                qkv[: cfg.dim] *= cfg.head_dim**-0.5
                self.layers.append(
                    _Layer(
                        qkv=arrange(qkv, block.attn_norm.weight),
                        proj=arrange(block.attn.proj.weight),
                        gate_up=arrange(block.ffn.gate_up.weight, block.ffn_norm.weight),
                        down=arrange(block.ffn.down.weight),
                    )
                )
            self.head = arrange(model.head.weight, model.norm.weight)
            self.tok_emb = model.tok_emb.weight.detach().float()
            self.pos_emb = model.pos_emb.weight.detach().float()

    def _inv_rms(self, x: torch.Tensor) -> float | torch.Tensor:
        """1 / RMS(x) for a (1, C) row: a Python float on CPU (cheapest), a 0-d tensor elsewhere (no sync)."""
        norm = torch.linalg.vector_norm(x)
        if self.host_scalars:
            n = float(norm)
            return 1.0 / math.sqrt(n * n / self.dim + self.eps)
        return norm.square().div_(self.dim).add_(self.eps).rsqrt_()

    def _mm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.mixed:
            return torch.mm(x.to(self.weight_dtype), w).float()
        return torch.mm(x, w)

    def _mm_add(self, residual: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.mixed:
            return residual + torch.mm(x.to(self.weight_dtype), w)
        return torch.addmm(residual, x, w)

    def layer_views(self, cache: KVCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (keys, values) views (H, S, D) of row 0 of ``cache``; build once per generation."""
        if cache.k.shape[1] != 1:
            raise ValueError(f"FastDecoder decodes one sequence; the cache holds {cache.k.shape[1]}")
        return [(cache.k[layer, 0], cache.v[layer, 0]) for layer in range(len(self.layers))]

    def step(self, token_id: int, pos: int, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Logits (1, V) after feeding ``token_id`` at position ``pos``; writes cache slot ``pos``.

        The caller owns ``cache.length`` (``sampling.generate`` advances it), so a step never
        half-updates the cache bookkeeping if it raises.
        """
        C, H, D, Fd = self.dim, self.heads, self.head_dim, self.ffn_dim
        x = (self.tok_emb[token_id] + self.pos_emb[pos]).view(1, C)
        end = pos + 1
        for layer, (keys, values) in zip(self.layers, kv, strict=True):
            q, k, v = self._mm(x, layer.qkv).mul_(self._inv_rms(x)).view(3, H, D).unbind(0)
            keys[:, pos] = k
            values[:, pos] = v
            scores = torch.bmm(q.unsqueeze(1), keys[:, :end].transpose(1, 2))  # (H, 1, end), q pre-scaled
            y = torch.bmm(torch.softmax(scores, dim=-1), values[:, :end]).view(1, C)
            x = self._mm_add(x, y, layer.proj)
            gate_up = self._mm(x, layer.gate_up).mul_(self._inv_rms(x))
            x = self._mm_add(x, F.silu(gate_up[:, :Fd]).mul_(gate_up[:, Fd:]), layer.down)
        return self._mm(x, self.head).mul_(self._inv_rms(x))


_DECODERS: weakref.WeakKeyDictionary[LLM, tuple[tuple, FastDecoder]] = weakref.WeakKeyDictionary()


def fast_decoder(model: LLM, weight_dtype: torch.dtype = torch.float32) -> FastDecoder:
    """The model's ``FastDecoder``, rebuilt only when a parameter changed (training updates in place,
    which bumps ``Tensor._version``), moved device, or another weight dtype is asked for.

    Building one copies every weight once (milliseconds), which a suite pays per model, not per sample."""
    params = list(model.parameters())
    # Inference tensors keep no version counter; they cannot be trained, so they count as unchanged.
    versions = tuple(-1 if p.is_inference() else p._version for p in params)
    key = (weight_dtype, params[0].device, tuple(id(p) for p in params), versions)
    cached = _DECODERS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    decoder = FastDecoder(model, weight_dtype)
    _DECODERS[model] = (key, decoder)
    return decoder
