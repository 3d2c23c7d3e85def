"""Reading an ONNX causal-LM decoder's signature: which inputs it takes and how its KV cache is laid out.

The harness drives any graph that follows optimum's causal-LM export: ``input_ids``, ``attention_mask``,
``position_ids`` (when the model uses them), ``past_key_values.N.key`` / ``.value`` in and ``logits``,
``present.N.key`` / ``.value`` out, as one graph (``model.onnx``, ``decoder_model_merged.onnx``, the latter
with a ``use_cache_branch`` flag) or as a prefill graph without past inputs plus a decode graph with them
(``decoder_model.onnx`` + ``decoder_with_past_model.onnx``). Anything else is refused here, in one line
that names the file and what is missing, before a token is generated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError

#: Graph files in the order they are looked for, in the directory itself and in ``onnx/`` below it.
MERGED_FILES = ("model.onnx", "decoder_model_merged.onnx")
SPLIT_FILES = ("decoder_model.onnx", "decoder_with_past_model.onnx")
_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclass
class Signature:
    """What one session takes and returns, read from its input and output metadata."""

    path: Path
    inputs: list[str]
    outputs: list[str]
    n_layers: int  # layers with a past (0 for a prefill-only graph)
    heads: int | None  # from the past's static shape, when the graph fixes it
    head_dim: int | None
    past_dtype: Any = np.float32
    uses_positions: bool = False
    uses_mask: bool = False
    cache_branch: bool = False  # optimum's merged graph: a bool ``use_cache_branch`` input
    extra_inputs: list[str] = field(default_factory=list)


def find_graphs(directory: Path) -> tuple[Path, Path | None]:
    """(the graph that decodes with a past, the prefill graph or None) under ``directory`` or ``directory/onnx``."""
    for base in (directory, directory / "onnx"):
        for name in MERGED_FILES:
            if (base / name).is_file():
                return base / name, None
        if all((base / name).is_file() for name in SPLIT_FILES):
            return base / SPLIT_FILES[1], base / SPLIT_FILES[0]
    raise UserError(
        f"{directory}: no ONNX decoder graph (looked for {', '.join(MERGED_FILES)}, or {' + '.join(SPLIT_FILES)}, "
        "here and in onnx/); export one with 'tinylm export onnx' or optimum-cli export onnx"
    )


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def read_signature(session: Any, path: Path, needs_past: bool) -> Signature:
    """Check a session's inputs and outputs against the causal-LM layout; one UserError naming ``path`` if not."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    if "input_ids" not in inputs or "logits" not in outputs:
        raise UserError(
            f"{path}: not a causal-LM decoder graph (it needs an input_ids input and a logits output; it has inputs "
            f"{sorted(inputs)[:6]} and outputs {outputs[:6]}); export the model for text generation"
        )
    layers: dict[int, set[str]] = {}
    for name in inputs:
        match = _PAST.match(name)
        if match:
            layers.setdefault(int(match.group(1)), set()).add(match.group(2))
    n_layers = len(layers)
    if needs_past and n_layers == 0:
        raise UserError(
            f"{path}: the graph has no KV-cache inputs (past_key_values.N.key/value), so every token would re-run "
            "the whole sequence; export it with its cache (optimum: --task text-generation-with-past)"
        )
    if sorted(layers) != list(range(n_layers)) or any(kinds != {"key", "value"} for kinds in layers.values()):
        raise UserError(f"{path}: its past_key_values inputs are not a key and a value for layers 0..N-1")
    returned = n_layers or sum(1 for name in outputs if name.startswith("present.") and name.endswith(".key"))
    missing = [f"present.{i}.{k}" for i in range(max(returned, 1)) for k in ("key", "value")]
    missing = [name for name in missing if name not in outputs]
    if missing:
        raise UserError(f"{path}: the graph does not return its KV cache ({missing[0]} missing); export it with past")
    heads = head_dim = None
    past_dtype: Any = np.float32
    if n_layers:
        first = inputs["past_key_values.0.key"]
        shape = list(first.shape)
        if len(shape) != 4:
            raise UserError(
                f"{path}: past_key_values.0.key has {len(shape)} dimensions; expected (batch, heads, past, head_dim)"
            )
        heads, head_dim = _dim(shape[1]), _dim(shape[3])
        if first.type not in _ONNX_TYPES:
            raise UserError(f"{path}: past_key_values.0.key is {first.type}; expected a float tensor")
        past_dtype = _ONNX_TYPES[first.type]
    known = {"input_ids", "attention_mask", "position_ids", "use_cache_branch"}
    extra = [n for n in inputs if n not in known and not _PAST.match(n)]
    if extra:
        raise UserError(
            f"{path}: the graph needs inputs the harness does not know how to feed ({', '.join(extra[:4])}); "
            "only input_ids, attention_mask, position_ids, use_cache_branch and past_key_values.N.key/value are fed"
        )
    return Signature(
        path=path,
        inputs=list(inputs),
        outputs=outputs,
        n_layers=n_layers,
        heads=heads,
        head_dim=head_dim,
        past_dtype=past_dtype,
        uses_positions="position_ids" in inputs,
        uses_mask="attention_mask" in inputs,
        cache_branch="use_cache_branch" in inputs,
    )
