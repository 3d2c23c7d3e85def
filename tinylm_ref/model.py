"""The reference tiny decoder: pre-norm transformer with RMSNorm, SwiGLU and a tied head.

Shapes in comments: B batch, T time, C = dim, H heads, D = head_dim, V vocab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinylm_ref.config import ModelConfig


class KVCache:
    """Preallocated keys/values for every layer, so decoding never reallocates or concatenates."""

    def __init__(
        self,
        config: ModelConfig,
        batch_size: int,
        device: torch.device,
        dtype: torch.dtype,
        capacity: int | None = None,
    ) -> None:
        # Left-padded batches may need more slots than the context (positions still stop at the context).
        shape = (config.n_layers, batch_size, config.n_heads, capacity or config.max_seq_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # number of positions filled so far

    @property
    def capacity(self) -> int:
        return self.k.shape[3]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.proj = nn.Linear(config.dim, config.dim, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3×(B,H,T,D)
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            start, end = cache.length, cache.length + T
            cache.k[layer, :, :, start:end] = k
            cache.v[layer, :, :, start:end] = v
            keys, values = cache.k[layer, :, :, :end], cache.v[layer, :, :, :end]
            if T == 1:  # a single new query may look at every cached position
                y = F.scaled_dot_product_attention(q, keys, values)
            elif start == 0:
                y = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
            else:  # chunk appended after a prefix: query i sees positions <= start + i
                mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    """Gated FFN; with hidden = 4·dim it reproduces the study's Table 1 parameter counts."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.dim, 2 * config.ffn_dim, bias=False)
        self.down = nn.Linear(config.ffn_dim, config.dim, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(F.silu(gate) * up))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.dim)
        self.attn = Attention(config)
        self.ffn_norm = nn.RMSNorm(config.dim)
        self.ffn = SwiGLU(config)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.resid_dropout(self.attn(self.attn_norm(x), cache, layer))
        return x + self.ffn(self.ffn_norm(x))


class LLM(nn.Module):
    """Decoder-only language model; ``LLM(ModelConfig())`` is the study's 10M network."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        self.tok_emb = nn.Embedding(config.vocab_size, config.dim)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2 style: shrink the residual projections so deep stacks start near identity.
        for name, param in self.named_parameters():
            if name.endswith(("proj.weight", "down.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / (2 * config.n_layers) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Unique parameters (the tied head counted once), as the study's Table 1 counts them."""
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    def new_cache(self, batch_size: int = 1, capacity: int | None = None) -> KVCache:
        param = self.tok_emb.weight
        return KVCache(self.config, batch_size, param.device, param.dtype, capacity)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, V) for token ids ``idx`` (B, T).

        With a cache the tokens continue the cached sequence and the cache advances by T.
        ``last_only`` computes the head for the final position only, which is all sampling needs.
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context of {self.config.max_seq_len}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.length += T
        if last_only:
            x = x[:, -1:, :]
        return self.head(self.norm(x))

    def forward_padded(
        self, idx: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """Logits (B, T, V) for a batch whose rows start at different cache slots (left padding).

        ``idx`` (B, T) fills cache slots [cache.length, cache.length + T); ``positions`` (B, T) are each
        token's own position in its sequence; ``valid`` (B, slots) marks slots holding real tokens.
        A query sees valid earlier slots and always itself, so padding rows never attend to nothing.
        """
        B, T = idx.shape
        start, end = cache.length, cache.length + T
        H, D = self.config.n_heads, self.config.head_dim
        slot = torch.arange(end, device=idx.device)
        causal = slot[None, :] <= (start + torch.arange(T, device=idx.device))[:, None]  # (T, end)
        mask = (causal[None] & valid[:, None, :end]) | (
            slot[None, None, :] == start + torch.arange(T, device=idx.device)[None, :, None]
        )
        mask = mask[:, None]  # (B, 1, T, end)
        x = F.embedding(idx, self.tok_emb.weight) + F.embedding(positions, self.pos_emb.weight)
        for layer, block in enumerate(self.blocks):
            h = block.attn_norm(x)
            q, k, v = block.attn.qkv(h).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)
            cache.k[layer, :, :, start:end] = k
            cache.v[layer, :, :, start:end] = v
            y = F.scaled_dot_product_attention(
                q, cache.k[layer, :, :, :end], cache.v[layer, :, :, :end], attn_mask=mask
            )
            x = x + block.attn.proj(y.transpose(1, 2).reshape(B, T, H * D))
            x = x + block.ffn(block.ffn_norm(x))
        cache.length = end
        return self.head(self.norm(x))

    def decode_step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, V) for one new token per sequence (B, 1), continuing the cache.

        The same math as ``forward`` in eval mode, written with functional calls only: at batch 1 a
        tiny model's decode time is dominated by per-call Python overhead, not arithmetic, and skipping
        module dispatch and no-op dropouts is what brings it close to the bare matrix-vector floor.
        After ``compile_decode()`` it runs the static-shape variant through ``torch.compile`` instead.
        """
        pos = cache.length
        if pos >= self.config.max_seq_len:
            raise ValueError(f"sequence of {pos + 1} tokens exceeds the context of {self.config.max_seq_len}")
        compiled = self.__dict__.get("_compiled_step")
        if compiled is not None:
            logits = compiled(token, torch.tensor(pos, device=token.device), cache.k, cache.v)
            cache.length = pos + 1
            return logits
        B = token.shape[0]
        H, D = self.config.n_heads, self.config.head_dim
        x = F.embedding(token, self.tok_emb.weight) + self.pos_emb.weight[pos]
        for layer, block in enumerate(self.blocks):
            attn, ffn = block.attn, block.ffn
            h = F.rms_norm(x, block.attn_norm.normalized_shape, block.attn_norm.weight, block.attn_norm.eps)
            q, k, v = F.linear(h, attn.qkv.weight).view(B, 1, 3, H, D).unbind(2)  # 3×(B,1,H,D)
            cache.k[layer, :, :, pos] = k[:, 0]
            cache.v[layer, :, :, pos] = v[:, 0]
            keys, values = cache.k[layer, :, :, : pos + 1], cache.v[layer, :, :, : pos + 1]
            if B == 1:  # bmm over heads: SDPA's CPU kernel opens a parallel region per call, which
                # costs more than the math for 4 heads and collapses under load with 2+ threads
                scores = torch.bmm(q[0].transpose(0, 1), keys[0].transpose(1, 2)) * (D**-0.5)  # (H, 1, S)
                y = torch.bmm(torch.softmax(scores, dim=-1), values[0])  # (H, 1, D)
            else:
                y = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values)
            x = x + F.linear(y.reshape(B, 1, H * D), attn.proj.weight)
            h = F.rms_norm(x, block.ffn_norm.normalized_shape, block.ffn_norm.weight, block.ffn_norm.eps)
            gate, up = F.linear(h, ffn.gate_up.weight).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, ffn.down.weight)
        cache.length = pos + 1
        x = F.rms_norm(x[:, 0], self.norm.normalized_shape, self.norm.weight, self.norm.eps)
        return F.linear(x, self.head.weight)

    def decode_step_static(
        self, token: torch.Tensor, pos: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor
    ) -> torch.Tensor:
        """``decode_step`` with every shape fixed: the position is a tensor and attention spans the
        whole cache under a mask, so ``torch.compile`` traces it once and, on CUDA, can replay it as a
        CUDA graph instead of recompiling for every position."""
        B = token.shape[0]
        H, D = self.config.n_heads, self.config.head_dim
        slots = cache_k.shape[3]
        x = F.embedding(token, self.tok_emb.weight) + F.embedding(pos.view(1, 1), self.pos_emb.weight)
        mask = (torch.arange(slots, device=token.device) <= pos).view(1, 1, 1, slots)
        for layer, block in enumerate(self.blocks):
            attn, ffn = block.attn, block.ffn
            h = F.rms_norm(x, block.attn_norm.normalized_shape, block.attn_norm.weight, block.attn_norm.eps)
            q, k, v = F.linear(h, attn.qkv.weight).view(B, 1, 3, H, D).unbind(2)
            cache_k[layer].index_copy_(2, pos.view(1), k.transpose(1, 2))
            cache_v[layer].index_copy_(2, pos.view(1), v.transpose(1, 2))
            y = F.scaled_dot_product_attention(q.transpose(1, 2), cache_k[layer], cache_v[layer], attn_mask=mask)
            x = x + F.linear(y.view(B, 1, H * D), attn.proj.weight)
            h = F.rms_norm(x, block.ffn_norm.normalized_shape, block.ffn_norm.weight, block.ffn_norm.eps)
            gate, up = F.linear(h, ffn.gate_up.weight).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, ffn.down.weight)
        x = F.rms_norm(x[:, 0], self.norm.normalized_shape, self.norm.weight, self.norm.eps)
        return F.linear(x, self.head.weight)

    def compile_decode(self, mode: str | None = None) -> None:
        """Route ``decode_step`` through ``torch.compile`` of the static-shape step.

        ``mode`` defaults to ``"reduce-overhead"`` (CUDA graphs) on CUDA and inductor's default on CPU.
        The first calls pay the compilation (seconds); warmup generations absorb it.
        """
        if mode is None:
            mode = "reduce-overhead" if self.tok_emb.weight.device.type == "cuda" else "default"
        self.__dict__["_compiled_step"] = torch.compile(self.decode_step_static, mode=mode, dynamic=False)
