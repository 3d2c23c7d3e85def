"""The tests' tiny Llama: random weights saved for ``hf:`` and as GGUF (``harness.backends.gguf_write``)."""

from __future__ import annotations

from pathlib import Path


def build_tiny_llama(tokenizer, root: Path, seed: int = 0, qtypes: tuple[str, ...] = ("F32",)) -> dict[str, Path]:
    """``root/hf`` and ``root/model-<qtype>.gguf`` over the same random weights, with the test tokenizer."""
    from harness.backends.gguf_write import write_random_llama

    return write_random_llama(tokenizer, root, seed=seed, qtypes=qtypes)
