"""Checkpoint directories: ``config.json`` + weights (safetensors or a ``.pt`` state dict) + ``tokenizer.json``.

Weights only ever load through safetensors or ``torch.load(weights_only=True)``: a checkpoint is
data, never code. A pickle that needs more than tensors is refused in one line that suggests converting
it to safetensors, never loading it with ``weights_only=False``.

Cost is bounded before work: the config is validated (types, ranges, heads dividing dim), and the shapes
it implies are compared with the shapes in the safetensors header, or in the memory-mapped pickle,
*before* the model is built. The comparison never enumerates the config's network (``n_layers`` may say
two billion): it walks the file's keys, so it costs what the file holds. A config claiming a 6 GB network
beside 5 MB of weights is a one-line error, not 6 GB of RAM.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
from collections.abc import Iterator
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


#: safetensors caps its JSON header at 100 MB; ours are a few KB.
MAX_HEADER_BYTES = 100 * 2**20
_ITEM_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2}
_ITEM_BYTES.update({"I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1})


_LAYER_KEY = re.compile(r"^blocks\.(0|[1-9][0-9]{0,9})\.(.+)$")


def _layer_shapes(c: ModelConfig) -> dict[str, tuple[int, ...]]:
    """One block's parameters (tinylm_ref.model.Block); tests pin this to ``LLM(config).state_dict()``."""
    return {
        "attn_norm.weight": (c.dim,),
        "attn.qkv.weight": (3 * c.dim, c.dim),
        "attn.proj.weight": (c.dim, c.dim),
        "ffn_norm.weight": (c.dim,),
        "ffn.gate_up.weight": (2 * c.ffn_dim, c.dim),
        "ffn.down.weight": (c.dim, c.ffn_dim),
    }


def _global_shapes(c: ModelConfig) -> dict[str, tuple[int, ...]]:
    return {
        "tok_emb.weight": (c.vocab_size, c.dim),
        "pos_emb.weight": (c.max_seq_len, c.dim),
        "norm.weight": (c.dim,),
        "head.weight": (c.vocab_size, c.dim),
    }


def expected_shape(config: ModelConfig, key: str) -> tuple[int, ...] | None:
    """The shape ``LLM(config)`` gives parameter ``key``, or None if it has no such parameter. O(1)."""
    match = _LAYER_KEY.match(key)
    if match:
        return _layer_shapes(config).get(match.group(2)) if int(match.group(1)) < config.n_layers else None
    return _global_shapes(config).get(key)


def _expected_keys(config: ModelConfig) -> Iterator[str]:
    yield from ("tok_emb.weight", "pos_emb.weight")
    for layer in range(config.n_layers):
        yield from (f"blocks.{layer}.{name}" for name in _layer_shapes(config))
    yield from ("norm.weight", "head.weight")


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of ``LLM(config)`` with its shape (for trusted configs: it enumerates all layers)."""
    return {key: expected_shape(config, key) or () for key in _expected_keys(config)}


def compare_shapes(
    config: ModelConfig, shapes: dict[str, tuple[int, ...]], limit: int = 5
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """(missing keys, unexpected keys, (key, found, expected) shape mismatches), at most ``limit`` each.

    A tied head may be absent. Bounded by the file: each expected key walked is either present (at most
    ``len(shapes)`` of them) or missing (the walk stops at ``limit``), whatever ``n_layers`` says.
    """
    unexpected, wrong = [], []
    for key, shape in shapes.items():
        want = expected_shape(config, key)
        if want is None:
            unexpected.append(key)
        elif tuple(shape) != want:
            wrong.append((key, tuple(shape), want))
    missing = []
    tied_ok = config.tie_weights and "tok_emb.weight" in shapes
    for key in _expected_keys(config):
        if key not in shapes and not (key == "head.weight" and tied_ok):
            missing.append(key)
            if len(missing) >= limit:
                break
    return missing, sorted(unexpected)[:limit], wrong[:limit]


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors file's JSON header, without reading any tensor data.

    The header is checked against the file (offsets inside it, sizes matching shape × dtype), so a
    truncated or forged file is refused here with its name, before anything is allocated.
    """

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path}: cannot read weights ({why}); re-export or re-download it")

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise bad("the file is truncated: no safetensors header")
            length = int.from_bytes(prefix, "little")
            if length > min(size - 8, MAX_HEADER_BYTES):
                raise bad(f"header of {length:,} bytes in a {size:,}-byte file: truncated or not safetensors")
            header = json.loads(handle.read(length).decode("utf-8"))
    except OSError as exc:
        raise bad(f"{exc.strerror or exc.__class__.__name__}") from exc
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError
        raise bad("its header is not JSON: not a safetensors file") from exc
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    data_bytes = size - 8 - length
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = tuple(entry["shape"])
            start, end = entry["data_offsets"]
            dtype = entry["dtype"]
            valid = all(type(d) is int and d >= 0 for d in (*shape, start, end)) and start <= end
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            raise bad(f"malformed header entry for {name!r}")
        if end > data_bytes:
            raise bad(f"{name!r} ends at byte {end:,} of {data_bytes:,}: the file is truncated")
        if dtype in _ITEM_BYTES and math.prod(shape) * _ITEM_BYTES[dtype] != end - start:
            raise bad(f"{name!r}: shape {shape} does not match its {end - start:,} bytes")
        shapes[name] = shape
    return shapes


def check_shapes(config: ModelConfig, shapes: dict[str, tuple[int, ...]], path: Path) -> None:
    """Refuse weights whose keys or shapes differ from what ``config`` builds (a tied head may be absent)."""
    missing, unexpected, wrong = compare_shapes(config, shapes)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the config: missing {missing}, unexpected {unexpected}; "
            "check config.json (for foreign state dicts, see the key map in docs/backends.md)"
        )
    if wrong:
        key, found, want = wrong[0]
        raise CheckpointError(f"{path}: {key} has shape {found}, config expects {want}; fix config.json")


def load_pickle_state(path: Path) -> object:
    """``torch.load(weights_only=True)``, memory-mapped when the format allows (so tensors cost no RAM
    until used), with a pickle that wants code refused in one line."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap can only be used" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    except pickle.UnpicklingError as exc:
        match = re.search(r"GLOBAL (\S+)", str(exc))
        wants = f" (it asks for {match.group(1)})" if match else ""
        raise CheckpointError(
            f"{path}: refused: not a weights-only pickle of tensors{wants}, and loading it could run code; "
            "if you trust its source, convert it to safetensors and load that (docs/backends.md)"
        ) from exc
    except Exception as exc:  # truncated or foreign files surface as many different exceptions
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: cannot read weights ({exc.__class__.__name__}: {detail}); re-export or re-download it"
        ) from exc


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors, or a weights-only pickle); CheckpointError otherwise."""
    path = Path(path)
    if path.suffix != ".safetensors":
        state = load_pickle_state(path)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: not a state dict of tensors; save it with torch.save(model.state_dict())")
        return state
    try:
        return load_file(str(path))
    except Exception as exc:  # truncated or foreign files surface as many different exceptions
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: cannot read weights ({exc.__class__.__name__}: {detail}); re-export or re-download it"
        ) from exc


def load_weights(model: LLM, path: str | Path) -> None:
    """Load weights into ``model`` (fp32 compute), restoring a tied head and naming mismatched keys.

    State dicts saved by other code with other parameter names go through the study-layout loader
    (``harness.backends.study_layout``), which has the key-mapping option.
    """
    state = load_state_dict(path)
    check_shapes(model.config, {k: tuple(v.shape) for k, v in state.items()}, Path(path))
    if model.config.tie_weights and "head.weight" not in state and "tok_emb.weight" in state:
        state["head.weight"] = state["tok_emb.weight"]
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
    config, weights = check_checkpoint(directory)
    try:
        tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
    except Exception as exc:  # tokenizers raises bare Exceptions for malformed JSON
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(
            f"{directory / TOKENIZER_FILE}: cannot read the tokenizer ({detail}); re-export it"
        ) from exc
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise CheckpointError(
            f"{directory}: tokenizer has {tokenizer.get_vocab_size()} tokens but config vocab_size is "
            f"{config.vocab_size}; use the tokenizer the model was trained with"
        )
    state = load_state_dict(weights)  # safetensors: shapes already checked; pickles: memory-mapped
    check_shapes(config, {k: tuple(v.shape) for k, v in state.items()}, weights)
    if config.tie_weights and "head.weight" not in state and "tok_emb.weight" in state:
        state["head.weight"] = state["tok_emb.weight"]
    model = LLM(config)  # allocated only now, at the size the weights file itself has
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.to(device).eval()
    return Checkpoint(model=model, tokenizer=tokenizer, path=directory, weights_path=weights)


def check_checkpoint(directory: Path) -> tuple[ModelConfig, Path]:
    """Everything about a checkpoint directory that needs no tensor: files present, config valid, and
    (for safetensors) the header's shapes equal to the config's. Returns (config, weights path)."""
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory")
    for name in (CONFIG_FILE, TOKENIZER_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory}: missing {name}")
    try:
        config = ModelConfig.load(directory / CONFIG_FILE)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {exc}") from exc
    weights = find_weights(directory)
    if weights.suffix == ".safetensors":
        check_shapes(config, safetensors_shapes(weights), weights)
    return config, weights
