"""Export a tinylm_ref checkpoint as an ONNX decoder with a KV cache, in the layout optimum writes.

The directory holds ``model.onnx`` (one graph for prefill and decode: an empty past of length 0 is the
prefill), ``tokenizer.json`` and a ``config.json`` in transformers' field names, so the harness's ``onnx``
backend (and other ONNX Runtime code written for optimum's causal-LM exports) can drive it:

  inputs   ``input_ids`` (batch, seq) int64, ``attention_mask`` (batch, past + seq) int64,
           ``position_ids`` (batch, seq) int64, ``past_key_values.N.key`` / ``.value``
           (batch, heads, past, head_dim) float32 for every layer N
  outputs  ``logits`` (batch, seq, vocab) float32, ``present.N.key`` / ``.value`` (batch, heads, past + seq,
           head_dim): the past with this call's keys and values appended

``split=True`` writes optimum's older two-graph layout instead: ``decoder_model.onnx`` (no past inputs) for
the prefill and ``decoder_with_past_model.onnx`` for decoding.

The graph is traced with torch's TorchScript-based exporter (``dynamo=False``), which needs only the ``onnx``
package; the dynamo exporter would also need ``onnxscript``. Attention is written out (matmul, mask,
softmax) rather than through ``scaled_dot_product_attention`` so the traced graph has no fused op whose
export differs between torch versions. The math is the model's own: learned positions, RMSNorm with the
float32 epsilon, SwiGLU, the tied or untied head.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from tinylm_ref.model import LLM
from tinylm_ref.tokenizer import BOS, EOS, PAD, UNK

GRAPH_FILE = "model.onnx"
PREFILL_FILE, DECODE_FILE = "decoder_model.onnx", "decoder_with_past_model.onnx"
OPSET = 17  # LayerNorm-era opset every ONNX Runtime since 1.13 runs; nothing here needs a newer one


class OnnxDecoder(nn.Module):
    """The network as a function of (ids, mask, positions, past) -> (logits, present), for tracing."""

    def __init__(self, model: LLM, with_past: bool = True) -> None:
        super().__init__()
        self.model, self.with_past = model, with_past
        cfg = model.config
        self.n_layers, self.n_heads, self.head_dim = cfg.n_layers, cfg.n_heads, cfg.head_dim

    @staticmethod
    def _rms(x: torch.Tensor, norm: nn.RMSNorm) -> torch.Tensor:
        eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * norm.weight

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        m = self.model
        B, T = input_ids.shape
        H, D = self.n_heads, self.head_dim
        x = m.tok_emb(input_ids) + m.pos_emb(position_ids)
        total = attention_mask.shape[1]  # past + T
        offset = total - T
        query_pos = torch.arange(T, device=x.device)[:, None] + offset
        key_pos = torch.arange(total, device=x.device)[None, :]
        allowed = (key_pos <= query_pos)[None, None] & (attention_mask[:, None, None, :] > 0)  # (B, 1, T, total)
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(
            ~allowed, torch.finfo(x.dtype).min
        )
        presents: list[torch.Tensor] = []
        for layer, block in enumerate(m.blocks):
            h = self._rms(x, block.attn_norm)
            q, k, v = block.attn.qkv(h).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # 3×(B, H, T, D)
            if self.with_past:
                k = torch.cat([past[2 * layer], k], dim=2)
                v = torch.cat([past[2 * layer + 1], v], dim=2)
            presents += [k, v]
            scores = torch.matmul(q, k.transpose(-1, -2)) * (D**-0.5) + bias
            y = torch.matmul(torch.softmax(scores, dim=-1), v)
            x = x + block.attn.proj(y.transpose(1, 2).reshape(B, T, H * D))
            h = self._rms(x, block.ffn_norm)
            gate, up = block.ffn.gate_up(h).chunk(2, dim=-1)
            x = x + block.ffn.down(F.silu(gate) * up)
        logits = m.head(self._rms(x, m.norm))
        return (logits, *presents)


def _names(n_layers: int, with_past: bool) -> tuple[list[str], list[str], dict[str, dict[int, str]]]:
    inputs = ["input_ids", "attention_mask", "position_ids"]
    outputs = ["logits"]
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    for i in range(n_layers):
        for kind in ("key", "value"):
            if with_past:
                name = f"past_key_values.{i}.{kind}"
                inputs.append(name)
                axes[name] = {0: "batch_size", 2: "past_sequence_length"}
            name = f"present.{i}.{kind}"
            outputs.append(name)
            axes[name] = {0: "batch_size", 2: "total_sequence_length"}
    return inputs, outputs, axes


def _export_graph(model: LLM, path: Path, with_past: bool) -> None:
    cfg = model.config
    wrapper = OnnxDecoder(model, with_past=with_past).eval()
    past_len, T = (3, 2) if with_past else (0, 5)  # example shapes only; every such axis is dynamic
    ids = torch.randint(4, cfg.vocab_size, (1, T))
    mask = torch.ones(1, past_len + T, dtype=torch.long)
    positions = torch.arange(past_len, past_len + T)[None]
    past = [torch.zeros(1, cfg.n_heads, past_len, cfg.head_dim) for _ in range(2 * cfg.n_layers)] if with_past else []
    inputs, outputs, axes = _names(cfg.n_layers, with_past)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python values: the axes are declared
        torch.onnx.export(
            wrapper,
            (ids, mask, positions, *past),
            str(path),
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )


def onnx_config(model: LLM, tokenizer: Tokenizer) -> dict:
    """config.json in transformers' field names (what ONNX loaders read), plus tinylm_ref's own config."""
    cfg = model.config
    ids = {name: tokenizer.token_to_id(name) for name in (BOS, EOS, PAD, UNK)}
    return {
        "model_type": "tinylm_ref",
        "architectures": ["TinyLMRefForCausalLM"],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.ffn_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "tie_word_embeddings": cfg.tie_weights,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "pad_token_id": ids[PAD],
        "num_parameters": model.num_parameters(),  # the graph may hold a folded copy of the tied head
        "tinylm_ref": cfg.to_dict(),
        "onnx_export": {"exporter": f"torch.onnx (TorchScript) {torch.__version__}", "opset": OPSET},
    }


def export_onnx(model: LLM, tokenizer: Tokenizer, directory: str | Path, split: bool = False) -> Path:
    """Write the graph(s), ``tokenizer.json`` and ``config.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    if split:
        _export_graph(model, directory / PREFILL_FILE, with_past=False)
        _export_graph(model, directory / DECODE_FILE, with_past=True)
    else:
        _export_graph(model, directory / GRAPH_FILE, with_past=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "config.json").write_text(json.dumps(onnx_config(model, tokenizer), indent=2) + "\n")
    return directory
