"""Fixtures for the metric tests: Generation/context builders and a real tiny language model.

The model is a randomly initialised ``tinylm_ref`` network with a BPE tokenizer trained on real
TinyStories text read from ../shared at test time (never copied into the repo). Random weights are
enough: the held-out and judge tests check the windowing and the arithmetic, not model quality.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.types import Generation, ModelInfo, SampleContext, SamplingParams

DATA_DIR = Path(
    os.environ.get("TINYSTORIES_DIR", Path(__file__).resolve().parents[4] / "shared" / "data" / "tinystories")
)
CONTEXT = 32  # small on purpose, so real stories need several windows
VOCAB = 300


class RefLM:
    """A real tinylm_ref network behind the parts of the ``Model`` protocol the metrics use.

    ``score`` is the textbook definition (full forward pass, log-softmax, gather) so the metric code
    is checked against first principles; ``windows`` records every call's length.
    """

    def __init__(self, net: Any, tokenizer: Any) -> None:
        from tinylm_ref.tokenizer import EOS, special_id

        self.net, self.tokenizer = net, tokenizer
        self.eos_id: int | None = special_id(tokenizer, EOS)
        self.info = ModelInfo(
            name="ref",
            spec="ref",
            backend="test",
            parameters=net.num_parameters(),
            vocab_size=net.config.vocab_size,
            context_length=net.config.max_seq_len,
            device="cpu",
            dtype="float32",
            source="test",
        )
        self.windows: list[int] = []

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        from tinylm_ref.tokenizer import decode

        return decode(self.tokenizer, ids)

    def generate(self, prompt_ids: list[int], sampling: SamplingParams, generator: torch.Generator) -> Generation:
        raise NotImplementedError("not needed by the metric tests")

    @torch.inference_mode()
    def score(self, ids: list[int]) -> list[float]:
        self.windows.append(len(ids))
        x = torch.tensor([ids])
        logprobs = torch.log_softmax(self.net(x)[0, :-1].float(), dim=-1)  # net raises past its context
        return (-logprobs.gather(1, x[0, 1:, None])[:, 0]).tolist()

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def story_texts() -> list[str]:
    if not (DATA_DIR / "train.txt").is_file():
        pytest.skip(f"TinyStories sample not found at {DATA_DIR} (set TINYSTORIES_DIR)")
    from tinylm_ref.data import iter_stories

    return list(itertools.islice(iter_stories(DATA_DIR / "train.txt"), 300))


@pytest.fixture(scope="session")
def ref_lm(story_texts: list[str]) -> RefLM:
    from tinylm_ref import LLM, ModelConfig
    from tinylm_ref.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(story_texts, vocab_size=VOCAB)
    torch.manual_seed(0)
    net = LLM(ModelConfig(vocab_size=VOCAB, dim=32, n_layers=1, n_heads=2, ffn_dim=64, max_seq_len=CONTEXT)).eval()
    return RefLM(net, tokenizer)


@pytest.fixture
def lm(ref_lm: RefLM) -> Iterator[RefLM]:
    """The shared model with its call log cleared, so each test sees only its own windows.

    Runs torch on one thread (restored afterwards): for a model this small extra threads only add
    synchronisation, which costs seconds per test when the 2-core machine is busy.
    """
    ref_lm.windows.clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield ref_lm
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def make_generation() -> Callable[..., Generation]:
    """Build a consistent Generation: ``n`` tokens, times 1 ms apart after a 5 ms prefill."""

    def build(tokens: list[int], eos_hit: bool = False, start_ns: int = 1_000_000, **overrides: Any) -> Generation:
        times = [start_ns + 5_000_000 + 1_000_000 * i for i in range(len(tokens))]
        end = (times[-1] if times else start_ns + 5_000_000) + (1_000_000 if eos_hit else 0)
        fields: dict[str, Any] = dict(
            tokens=list(tokens),
            logprobs=[-0.5] * len(tokens),
            token_times_ns=times,
            start_ns=start_ns,
            end_ns=end,
            eos_hit=eos_hit,
            stop_reason="eos" if eos_hit else "max_new_tokens",
            first_token_ns=times[0] if times else (end if eos_hit else None),
        )
        fields.update(overrides)
        return Generation(**fields)

    return build


@pytest.fixture
def sample_ctx() -> Callable[..., SampleContext]:
    def build(
        generation: Generation, model: Any = None, resources: dict | None = None, options: dict | None = None
    ) -> SampleContext:
        return SampleContext(
            generation=generation,
            prompt_ids=[2],
            model=model,
            sampling=SamplingParams(),
            options=options or {},
            resources=resources or {},
        )

    return build
