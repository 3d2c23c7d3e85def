"""Export a tinylm_ref model as a transformers ``save_pretrained`` directory (model_type ``tinylm_ref``).

This is how the two backends are shown to agree: the same weights, loaded once by the ``tinylm``
backend and once by the ``hf`` backend from the export, give the same log-probs (see
docs/backends.md, "Cross-backend equivalence"). The harness registers the architecture's classes
in-process (``hf_tinylm_arch.register_auto_classes``), so it needs nothing else.

For plain transformers, ``remote_code=True`` also writes ``modeling_tinylm_ref.py`` and an ``auto_map``
(``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` then works without the harness).
It is off by default because transformers (5.x) loads a directory's model config before its tokenizer,
and an ``auto_map`` makes even ``AutoTokenizer.from_pretrained(dir)`` stop and ask whether to run the
repository's code; without it the tokenizer loads with no prompt and no code from the directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tokenizers import Tokenizer

from harness.backends import hf_tinylm_arch
from harness.backends.hf_tinylm_arch import TinyLMRefConfig, TinyLMRefForCausalLM
from tinylm_ref.config import ModelConfig
from tinylm_ref.model import LLM
from tinylm_ref.tokenizer import BOS, EOS, PAD, UNK

MODELING_FILE = "modeling_tinylm_ref.py"


def llama_shape(cfg: ModelConfig) -> dict[str, int]:
    """A tinylm_ref shape in the field names of transformers' Llama-family configs (Llama, SmolLM3...),
    for building an equivalent-shaped model to compare against."""
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,
        "max_position_embeddings": cfg.max_seq_len,
    }


def tinylm_to_hf_state(model: LLM) -> dict:
    """tinylm_ref parameter names -> the export's: a ``model.`` prefix; an untied head becomes ``lm_head``."""
    state = {}
    for key, value in model.state_dict().items():
        if key == "head.weight":
            if not model.config.tie_weights:
                state["lm_head.weight"] = value
            continue
        state[f"model.{key}"] = value
    return state


def export_tinylm_to_hf(model: LLM, tokenizer: Tokenizer, directory: str | Path, remote_code: bool = False) -> Path:
    """Write ``model`` + ``tokenizer`` as a directory ``AutoModelForCausalLM``/``AutoTokenizer`` load
    (the model class through the harness's registration, or, with ``remote_code``, the copied modeling file)."""
    import transformers
    from transformers import PreTrainedTokenizerFast

    transformers.utils.logging.disable_progress_bar()
    directory = Path(directory)
    cfg = model.config
    ids = {name: tokenizer.token_to_id(name) for name in (BOS, EOS, PAD)}
    config = TinyLMRefConfig(
        vocab_size=cfg.vocab_size,
        dim=cfg.dim,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        ffn_dim=cfg.ffn_dim,
        max_seq_len=cfg.max_seq_len,
        tie_weights=cfg.tie_weights,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
        architectures=["TinyLMRefForCausalLM"],
        **(
            {
                "auto_map": {
                    "AutoConfig": "modeling_tinylm_ref.TinyLMRefConfig",
                    "AutoModelForCausalLM": "modeling_tinylm_ref.TinyLMRefForCausalLM",
                }
            }
            if remote_code
            else {}
        ),
    )
    hf_model = TinyLMRefForCausalLM(config)
    hf_model.load_state_dict(tinylm_to_hf_state(model), strict=True)
    hf_model.save_pretrained(directory)
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=cfg.max_seq_len,
        **{k: v for k, v in special.items() if tokenizer.token_to_id(v) is not None},
    )
    fast.save_pretrained(directory)
    if remote_code:
        shutil.copyfile(hf_tinylm_arch.__file__, directory / MODELING_FILE)
    return directory
