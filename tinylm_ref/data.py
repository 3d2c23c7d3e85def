"""TinyStories text files: streamed story by story, tokenized once into a memory-mapped cache.

The official files (``TinyStoriesV2-GPT4-train.txt``, 1.9 GB) separate stories with a line
``<|endoftext|>``. Nothing here holds more than one batch of stories in memory, so the full
file works the same way as the small offline sample.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from tinylm_ref.tokenizer import EOS, batched, special_id

STORY_SEPARATOR = "<|endoftext|>"


def iter_stories(path: str | Path) -> Iterator[str]:
    """Yield each non-empty story of a TinyStories text file, stripped of surrounding blank space."""
    lines: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip() == STORY_SEPARATOR:
                story = "".join(lines).strip()
                if story:
                    yield story
                lines = []
            else:
                lines.append(line)
    story = "".join(lines).strip()
    if story:
        yield story


def _cache_path(data: Path, tokenizer: Tokenizer, cache_dir: Path) -> Path:
    stat = data.stat()
    key = hashlib.sha256()
    key.update(f"{data.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    key.update(tokenizer.to_str().encode())
    return cache_dir / f"{data.stem}.{key.hexdigest()[:16]}.u16"


def tokenize_to_file(data: str | Path, tokenizer: Tokenizer, cache_dir: str | Path, batch_stories: int = 512) -> Path:
    """Tokenize every story (``<bos> story <eos>``) into a flat uint16 file; reuse it if present."""
    data, cache_dir = Path(data), Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = _cache_path(data, tokenizer, cache_dir)
    if out.exists():
        return out
    if tokenizer.get_vocab_size() > np.iinfo(np.uint16).max:
        raise ValueError("token cache stores uint16 ids; vocabulary too large")
    eos = special_id(tokenizer, EOS)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        for stories in batched(iter_stories(data), batch_stories):
            for encoding in tokenizer.encode_batch(stories):
                np.asarray(encoding.ids + [eos], dtype=np.uint16).tofile(handle)
    os.replace(tmp, out)
    return out


class TokenStream:
    """A flat token file served as random fixed-length windows.

    Batches are a pure function of (seed, step), so a resumed run draws exactly the batches the
    uninterrupted run would have, without storing a data position.
    """

    def __init__(self, path: str | Path, seq_len: int) -> None:
        self.tokens = np.memmap(path, dtype=np.uint16, mode="r")
        self.seq_len = seq_len
        if len(self.tokens) <= seq_len + 1:
            raise ValueError(f"{path}: only {len(self.tokens)} tokens, need more than {seq_len + 1}")

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, batch_size: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, len(self.tokens) - self.seq_len - 1, (batch_size,), generator=generator)
        rows = np.stack([self.tokens[s : s + self.seq_len + 1] for s in starts.tolist()]).astype(np.int64)
        window = torch.from_numpy(rows)
        return window[:, :-1], window[:, 1:]

    def sequential_batches(
        self, batch_size: int, max_batches: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows in file order, for a deterministic validation loss."""
        n_windows = (len(self.tokens) - 1) // self.seq_len
        starts = list(range(0, n_windows * self.seq_len, self.seq_len))
        for i, chunk in enumerate(range(0, len(starts), batch_size)):
            if max_batches is not None and i >= max_batches:
                return
            rows = np.stack([self.tokens[s : s + self.seq_len + 1] for s in starts[chunk : chunk + batch_size]])
            window = torch.from_numpy(rows.astype(np.int64))
            yield window[:, :-1], window[:, 1:]
