"""Write a transformers Llama model and its byte-level BPE tokenizer as a GGUF file (F32, F16 or Q8_0).

Why this exists: the equivalence tests and the speed benchmark need a GGUF file of *known* weights, made
offline, next to the same weights under ``hf:``. llama.cpp's own ``convert_hf_to_gguf.py`` is not on PyPI,
so this writes the file with the ``gguf`` package (llama.cpp's own writer library) the way that converter
does for ``LlamaForCausalLM``: its tensor names, the rotary permutation of the query and key matrices
(transformers rotates half-vectors, llama.cpp interleaved pairs), the tokenizer as a ``gpt2`` BPE vocabulary.
For real models use llama.cpp's converter; this covers Llama-family models with a ByteLevel BPE tokenizer.

Q8_0 quantises matrices whose rows are a multiple of 32 wide and stores the others as F16, as the converter
does; ``tensor_types`` in the returned summary says what the file really holds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

QUANT_BLOCK = 32  # Q8_0 block width: a row must be a whole number of blocks
#: The test Llama's shape: two layers with grouped-query attention (the key permutation uses the KV head count).
TINY_LLAMA_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """transformers' rotate-half q/k layout -> llama.cpp's interleaved one (convert_hf_to_gguf's ``permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vocab(tokenizer_json: dict[str, Any]) -> tuple[list[str], list[int], list[str], set[int]]:
    """(tokens by id, token types, merges, special ids) from a tokenizers ``tokenizer.json`` (ByteLevel BPE)."""
    import gguf

    model = tokenizer_json.get("model", {})
    if model.get("type") != "BPE":
        raise ValueError(f"only BPE tokenizers are written (this one is {model.get('type')!r})")
    vocab: dict[str, int] = dict(model["vocab"])
    special: set[int] = set()
    for added in tokenizer_json.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["id"])
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    for text, index in vocab.items():
        tokens[index] = text
    types = [
        int(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
        if tokens[i] in vocab
        else int(gguf.TokenType.UNUSED)
        for i in range(size)
    ]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges, special


def write_llama_gguf(
    model: Any,
    tokenizer_file: str | Path,
    out: str | Path,
    qtype: str = "F32",
    bos: str | None = "<bos>",
    eos: str | None = "<eos>",
    pad: str | None = "<pad>",
) -> dict[str, Any]:
    """Write ``model`` (a ``LlamaForCausalLM``) + ``tokenizer_file`` to ``out``; returns a summary of the file."""
    import gguf

    qtype = qtype.upper()
    if qtype not in ("F32", "F16", "Q8_0"):
        raise ValueError(f"qtype {qtype!r}: write F32, F16 or Q8_0")
    cfg = model.config
    n_head, n_kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    tok_json = json.loads(Path(tokenizer_file).read_text(encoding="utf-8"))
    tokens, types, merges, _ = _vocab(tok_json)
    if len(tokens) > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokens)} tokens, the model's vocab_size is {cfg.vocab_size}")
    unused = int(gguf.TokenType.UNUSED)
    types += [unused] * (cfg.vocab_size - len(tokens))
    tokens += [f"[PAD{i}]" for i in range(len(tokens), cfg.vocab_size)]  # llama.cpp wants one entry per row
    by_text = {t: i for i, t in enumerate(tokens)}

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("harness-test-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_vocab_size(cfg.vocab_size)
    file_type = {
        "F32": gguf.LlamaFileType.ALL_F32,
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer.add_file_type(file_type[qtype])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for name, setter in (
        (bos, writer.add_bos_token_id),
        (eos, writer.add_eos_token_id),
        (pad, writer.add_pad_token_id),
    ):
        if name is not None and name in by_text:
            setter(by_text[name])
    writer.add_add_bos_token(bos is not None and bos in by_text)
    writer.add_add_eos_token(False)

    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(cfg.num_hidden_layers):
        for src, dst in per_layer.items():
            names[f"model.layers.{i}.{src}"] = f"blk.{i}.{dst}"
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    written: Counter[str] = Counter()
    for key, value in state.items():
        if key == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        if key not in names:
            raise ValueError(f"unexpected tensor {key!r}: only LlamaForCausalLM weights are written")
        if key.endswith("q_proj.weight"):
            value = _permute(value, n_head)
        elif key.endswith("k_proj.weight"):
            value = _permute(value, n_kv)
        kind = "F32"
        if value.ndim == 2 and qtype != "F32":
            kind = "Q8_0" if qtype == "Q8_0" and value.shape[-1] % QUANT_BLOCK == 0 else "F16"
        if kind == "Q8_0":
            data = gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(names[key], data, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif kind == "F16":
            writer.add_tensor(names[key], value.astype(np.float16))
        else:
            writer.add_tensor(names[key], np.ascontiguousarray(value, dtype=np.float32))
        written[kind] += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"path": str(out), "qtype": qtype, "tensor_types": dict(written), "tied": tied}


def write_random_llama(
    tokenizer: Any, root: str | Path, seed: int = 0, qtypes: tuple[str, ...] = ("F32",), shape: dict | None = None
) -> dict[str, Path]:
    """A Llama with random weights and ``tokenizer`` (a ``tokenizers.Tokenizer`` with ``<bos>``/``<eos>``/``<pad>``),
    saved as ``root/hf`` (save_pretrained) and ``root/model-<qtype>.gguf``: the same weights for ``hf:`` and
    ``gguf:``. The weights are drawn wider than transformers' init (std 0.15, norms around 1): with std 0.02
    every next-token distribution is nearly uniform and greedy decoding is decided by rounding noise."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = Path(root)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        **(shape or TINY_LLAMA_SHAPE),
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.token_to_id("<bos>"),
        eos_token_id=tokenizer.token_to_id("<eos>"),
        pad_token_id=tokenizer.token_to_id("<pad>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("norm.weight"):
                    param.normal_(1.0, 0.1)
                else:
                    param.normal_(0.0, 0.15)
    hf_dir = root / "hf"
    model.save_pretrained(hf_dir)
    special = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special).save_pretrained(hf_dir)
    paths = {"hf": hf_dir}
    for qtype in qtypes:
        paths[qtype] = root / f"model-{qtype.lower()}.gguf"
        write_llama_gguf(model, hf_dir / "tokenizer.json", paths[qtype], qtype=qtype)
    return paths
