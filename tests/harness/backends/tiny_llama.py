"""A tiny Llama with random weights, saved twice: as a transformers directory and as GGUF files.

The weights are drawn wider than transformers' init (std 0.02 would make every next-token distribution
nearly uniform, where greedy decoding is decided by noise); the tokenizer is the test's byte-level BPE.
"""

from __future__ import annotations

from pathlib import Path

import torch

LLAMA_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # grouped-query attention: the key permutation uses the KV head count
    "max_position_embeddings": 64,
}


def build_tiny_llama(tokenizer, root: Path, seed: int = 0, qtypes: tuple[str, ...] = ("F32",)) -> dict[str, Path]:
    """Write ``root/hf`` (save_pretrained) and ``root/model-<qtype>.gguf``; returns their paths by name."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from harness.backends.gguf_write import write_llama_gguf

    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        **LLAMA_SHAPE,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.token_to_id("<bos>"),
        eos_token_id=tokenizer.token_to_id("<eos>"),
        pad_token_id=tokenizer.token_to_id("<pad>"),
    )
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
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(hf_dir)
    paths = {"hf": hf_dir}
    for qtype in qtypes:
        out = root / f"model-{qtype.lower()}.gguf"
        write_llama_gguf(model, hf_dir / "tokenizer.json", out, qtype=qtype)
        paths[qtype] = out
    return paths
