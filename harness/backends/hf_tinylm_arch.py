"""The tinylm_ref architecture as a transformers model, so a tinylm checkpoint can be benchmarked as ``hf:``.

Why this exists: no built-in transformers architecture combines *learned absolute* position
embeddings with RMSNorm, a fused SwiGLU FFN and a tied head (Llama-style models use RoPE; GPT-2,
GPT-Neo and OPT use LayerNorm and GELU/ReLU). Without an exactly equivalent architecture the two
backends could not be shown to give the same log-probs for the same weights. So this module
re-implements the network against transformers' own interfaces (``PreTrainedModel``, the
``DynamicCache`` KV cache, ``logits_to_keep``) and ``export_tinylm_to_hf`` writes a tinylm_ref
checkpoint as a ``save_pretrained`` directory that ``AutoModelForCausalLM`` loads.

The file imports only torch and transformers (never ``harness`` or ``tinylm_ref``): the export copies
it next to the weights as ``modeling_tinylm_ref.py`` with an ``auto_map``, so plain transformers users
can load an exported repo with ``trust_remote_code=True``. Inside the harness the classes are
registered with the Auto classes in-process (``register_auto_classes``), so the harness itself never
has to execute code downloaded with a model.

Parameter names are tinylm_ref's under a ``model.`` prefix (``model.tok_emb.weight``,
``model.blocks.0.attn.qkv.weight``, ...), plus ``lm_head.weight`` when the head is not tied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

MODEL_TYPE = "tinylm_ref"
# transformers 5 renamed the output's ``past_key_values`` to ``cache`` (the old name still works, with a warning).
_CACHE_FIELD = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


class TinyLMRefConfig(PretrainedConfig):
    """tinylm_ref's ModelConfig fields, plus the standard names transformers code looks for."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 2000,
        dim: int = 384,
        n_layers: int = 4,
        n_heads: int = 4,
        ffn_dim: int = 1536,
        max_seq_len: int = 256,
        tie_weights: bool = True,
        rms_norm_eps: float | None = None,
        **kwargs,
    ) -> None:
        self.vocab_size, self.dim, self.n_layers, self.n_heads = vocab_size, dim, n_layers, n_heads
        self.ffn_dim, self.max_seq_len, self.tie_weights = ffn_dim, max_seq_len, tie_weights
        self.rms_norm_eps = rms_norm_eps  # None = torch.finfo(dtype).eps, as torch.nn.RMSNorm and tinylm_ref
        # Standard aliases so generic code (context length, cache sizing) understands the config.
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = dim, n_layers, n_heads
        self.max_position_embeddings = max_seq_len
        kwargs.pop("tie_word_embeddings", None)
        super().__init__(tie_word_embeddings=False, **kwargs)  # tying is done by sharing the tensor in forward


class _Attention(nn.Module):
    def __init__(self, config: TinyLMRefConfig, layer_idx: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.layer_idx = config.n_heads, config.dim // config.n_heads, layer_idx
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.proj = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, cache: Cache | None, past: int) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3×(B,H,T,D)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B,H,past+T,D)
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # query i sits at absolute position past + i and sees keys 0..past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class _Block(nn.Module):
    def __init__(self, config: TinyLMRefConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.dim, eps=config.rms_norm_eps)
        self.attn = _Attention(config, layer_idx)
        self.ffn_norm = nn.RMSNorm(config.dim, eps=config.rms_norm_eps)
        self.ffn = _SwiGLU(config)

    def forward(self, x: torch.Tensor, cache: Cache | None, past: int) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cache, past)
        return x + self.ffn(self.ffn_norm(x))


class _SwiGLU(nn.Module):
    def __init__(self, config: TinyLMRefConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.dim, 2 * config.ffn_dim, bias=False)
        self.down = nn.Linear(config.ffn_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class TinyLMRefPreTrainedModel(PreTrainedModel):
    config_class = TinyLMRefConfig
    base_model_prefix = "model"
    _no_split_modules = ["_Block"]
    _supports_cache_class = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.RMSNorm):
            nn.init.ones_(module.weight)


class TinyLMRefModel(TinyLMRefPreTrainedModel):
    """Embeddings, blocks and final norm: hidden states (B, T, C)."""

    def __init__(self, config: TinyLMRefConfig) -> None:
        super().__init__(config)
        self.tok_emb = nn.Embedding(config.vocab_size, config.dim)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.dim)
        self.blocks = nn.ModuleList(_Block(config, i) for i in range(config.n_layers))
        self.norm = nn.RMSNorm(config.dim, eps=config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.tok_emb = value

    def forward(self, input_ids: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        if past + T > self.config.max_seq_len:  # learned positions cannot extend past the table
            raise ValueError(f"sequence of {past + T} tokens exceeds the context of {self.config.max_seq_len}")
        pos = torch.arange(past, past + T, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x, cache, past)
        return self.norm(x)


class TinyLMRefForCausalLM(TinyLMRefPreTrainedModel, GenerationMixin):
    """Causal LM head on ``TinyLMRefModel``; with ``tie_weights`` the head *is* the token embedding."""

    def __init__(self, config: TinyLMRefConfig) -> None:
        super().__init__(config)
        self.model = TinyLMRefModel(config)
        self.lm_head = None if config.tie_weights else nn.Linear(config.dim, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        past_key_values: Cache | None = None,  # the pre-5.x name of ``cache``
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits for ``input_ids`` continuing ``cache`` (created when ``use_cache`` and none is given)."""
        cache = cache if cache is not None else past_key_values
        if cache is None and use_cache:
            cache = DynamicCache()
        hidden = self.model(input_ids, cache)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:, :]
        weight = self.model.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(hidden, weight)
        return CausalLMOutputWithPast(
            logits=logits, **{_CACHE_FIELD: cache if use_cache or cache is not None else None}
        )


def register_auto_classes() -> None:
    """Make ``model_type: tinylm_ref`` loadable by the Auto classes without remote code (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if MODEL_TYPE in CONFIG_MAPPING:
        return
    AutoConfig.register(MODEL_TYPE, TinyLMRefConfig)
    AutoModelForCausalLM.register(TinyLMRefConfig, TinyLMRefForCausalLM)
