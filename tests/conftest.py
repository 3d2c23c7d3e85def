"""Shared fixtures: real TinyStories text (read from ../shared at test time), a real tokenizer and a real
tiny checkpoint trained for a few steps. Nothing here touches the network."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Hypothesis's defaults include wall-clock limits (a 200 ms deadline per example, the too_slow health check)
# that a loaded or 10x slower machine breaks; the suite must pass there too (tests/ceilings.py).
settings.register_profile("any-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "any-machine"))
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("TINYSTORIES_DIR", REPO.parent / "shared" / "data" / "tinystories"))
TINY_CONFIG = {"vocab_size": 320, "dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64, "max_seq_len": 64}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "train.txt").is_file():
        pytest.skip(f"TinyStories sample not found at {DATA_DIR} (set TINYSTORIES_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def stories(data_dir: Path) -> list[str]:
    from tinylm_ref.data import iter_stories

    return list(itertools.islice(iter_stories(data_dir / "train.txt"), 300))


@pytest.fixture(scope="session")
def tiny_tokenizer(stories):
    from tinylm_ref.tokenizer import train_tokenizer

    return train_tokenizer(stories, vocab_size=TINY_CONFIG["vocab_size"])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, stories, tiny_tokenizer) -> Path:
    """A real checkpoint directory: tiny config, trained 30 steps on real stories."""
    from tinylm_ref.config import ModelConfig
    from tinylm_ref.data import tokenize_to_file
    from tinylm_ref.train import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny_ckpt")
    text = root / "stories.txt"
    text.write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories), encoding="utf-8")
    tokens = tokenize_to_file(text, tiny_tokenizer, root / "cache")
    cfg = TrainConfig(
        steps=30, batch_size=8, lr=3e-3, warmup_steps=5, eval_every=30, save_every=30, seed=0, device="cpu"
    )
    train(ModelConfig(**TINY_CONFIG), tiny_tokenizer, tokens, tokens, root / "run", cfg, progress=False)
    return root / "run" / "last"
