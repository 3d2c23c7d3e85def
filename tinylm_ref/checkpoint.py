"""Checkpoint directories: ``config.json`` + weights (safetensors or a ``.pt`` state dict) + ``tokenizer.json``.

Weights only ever load through safetensors or ``torch.load(weights_only=True)``: a checkpoint is
data, never code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from tinylm_ref.config import ModelConfig
from tinylm_ref.model import LLM
from tinylm_ref.tokenizer import load_tokenizer

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CheckpointError(ValueError):
    """A checkpoint directory is missing a file or does not match its config."""


@dataclass
class Checkpoint:
    model: LLM
    tokenizer: Tokenizer
    path: Path
    weights_path: Path

    def weights_sha256(self) -> str:
        return file_sha256(self.weights_path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(model: LLM, path: str | Path, dtype: str = "float32") -> None:
    """Save as safetensors, storing a tied head once (safetensors rejects shared tensors)."""
    state = model.state_dict()
    if model.config.tie_weights:
        state.pop("head.weight", None)
    save_file({k: v.detach().to(_DTYPES[dtype]).contiguous() for k, v in state.items()}, str(path))


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(model: LLM, path: str | Path) -> None:
    """Load weights into ``model`` (fp32 compute), restoring a tied head and naming mismatched keys.

    State dicts saved by other code with other parameter names go through the study-layout loader
    (``harness.backends.study_layout``), which has the key-mapping option.
    """
    try:
        state = load_state_dict(path)
    except Exception as exc:  # truncated or foreign files surface as many different exceptions
        raise CheckpointError(
            f"{path}: cannot read weights ({exc.__class__.__name__}: {exc}); re-export or re-download it"
        ) from exc
    if model.config.tie_weights and "head.weight" not in state and "tok_emb.weight" in state:
        state["head.weight"] = state["tok_emb.weight"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "check config.json (for foreign state dicts, see the key map in docs/backends.md)"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(value.shape)}, config expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict({k: v.float() for k, v in state.items()})


def save_checkpoint(model: LLM, tokenizer: Tokenizer, directory: str | Path, dtype: str = "float32") -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / CONFIG_FILE)
    save_weights(model, directory / WEIGHTS_FILE, dtype=dtype)
    tokenizer.save(str(directory / TOKENIZER_FILE))
    return directory


def find_weights(directory: Path) -> Path:
    for name in (WEIGHTS_FILE, "model.pt", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    candidates = sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.pt"))
    if len(candidates) == 1:
        return candidates[0]
    raise CheckpointError(f"{directory}: no weights file (expected {WEIGHTS_FILE} or model.pt)")


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint directory, checking that tokenizer and config agree on the vocabulary."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory")
    for name in (CONFIG_FILE, TOKENIZER_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory}: missing {name}")
    try:
        config = ModelConfig.load(directory / CONFIG_FILE)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {exc}") from exc
    try:
        tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
    except Exception as exc:  # tokenizers raises bare Exceptions for malformed JSON
        raise CheckpointError(f"{directory / TOKENIZER_FILE}: cannot read the tokenizer ({exc}); re-export it") from exc
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise CheckpointError(
            f"{directory}: tokenizer has {tokenizer.get_vocab_size()} tokens but config vocab_size is "
            f"{config.vocab_size}; use the tokenizer the model was trained with"
        )
    weights = find_weights(directory)
    model = LLM(config)
    load_weights(model, weights)
    model.to(device).eval()
    return Checkpoint(model=model, tokenizer=tokenizer, path=directory, weights_path=weights)
