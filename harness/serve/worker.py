"""One generation at a time, in arrival order, streamed to the event loop as tokens are sampled.

A harness model is not thread-safe and a CPU decode uses every core it is given, so the server runs one
generation at a time on one worker thread and queues the rest (FIFO). Batching concurrent requests through
``generate_batch`` is left out: it only pays when several requests arrive together and share a sampling
setup, and it would delay each request's first token until its batch starts (docs/serving.md).

Each token reaches the request's asyncio queue the moment the sampler has it (the backend's ``on_token``
callback, where it has one; tinylm does), so a client measures a real TTFT. A backend without ``on_token``
delivers its tokens when the whole generation ends. A client that goes away cancels its generation at the
next token (the callback raises), so an abandoned stream does not hold the queue.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from harness.types import Generation, Model, SamplingParams


class Cancelled(Exception):
    """Raised from ``on_token`` when the client that asked has gone away."""


class QueueFull(Exception):
    """More requests wait than ``max_queue``: answered 503 with ``Retry-After``."""


@dataclass
class Token:
    id: int
    logprob: float
    time_ns: int


@dataclass
class Finished:
    generation: Generation | None
    error: BaseException | None = None


class Job:
    """One request's generation: its events arrive on ``events`` (Token..., then one Finished)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: asyncio.Queue[Token | Finished] = asyncio.Queue()
        self.cancelled = threading.Event()

    def put(self, event: Token | Finished) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class GenerationWorker:
    """Runs ``model.generate`` for queued jobs on one thread."""

    def __init__(self, model: Model, max_queue: int) -> None:
        self.model, self.max_queue = model, max_queue
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.waiting = 0  # jobs submitted and not finished (event-loop thread only)
        self.refused = 0  # requests answered 503 because the queue was full
        self.streams = "on_token" in inspect.signature(model.generate).parameters

    def submit(self, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> Job:
        if self.waiting >= self.max_queue:
            self.refused += 1
            raise QueueFull(f"{self.waiting} requests are queued (--max-queue {self.max_queue})")
        job = Job(asyncio.get_running_loop())
        self.waiting += 1
        future = self.pool.submit(self._run, job, prompt_ids, sampling, seed)
        future.add_done_callback(lambda _: job.loop.call_soon_threadsafe(self._done))
        return job

    def _done(self) -> None:
        self.waiting -= 1

    def _run(self, job: Job, prompt_ids: list[int], sampling: SamplingParams, seed: int) -> None:
        if job.cancelled.is_set():
            job.put(Finished(None, Cancelled()))
            return
        generator = torch.Generator(device="cpu").manual_seed(seed)

        def on_token(token_id: int, logprob: float, now: int) -> None:
            if job.cancelled.is_set():
                raise Cancelled()
            job.put(Token(token_id, logprob, now))

        try:
            if self.streams:
                generation = self.model.generate(prompt_ids, sampling, generator, on_token=on_token)
            else:
                generation = self.model.generate(prompt_ids, sampling, generator)
                for token_id, logprob, now in zip(
                    generation.tokens, generation.logprobs, generation.token_times_ns, strict=True
                ):
                    job.put(Token(token_id, logprob, now))
        except BaseException as exc:  # delivered to the request, which answers with it
            job.put(Finished(None, exc))
            return
        job.put(Finished(generation))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def describe(model: Model) -> dict[str, Any]:
    """What ``/v1/models`` says about the served model (the client records it in its manifest)."""
    info = model.info
    return {
        "spec": info.spec,
        "backend": info.backend,
        "parameters": info.parameters,
        "vocab_size": info.vocab_size,
        "context_length": info.context_length,
        "device": info.device,
        "dtype": info.dtype,
        "source": info.source,
        "weights_sha256": info.weights_sha256,
        "tokenizer_sha256": info.tokenizer_sha256,
        "revision": info.revision,
    }
