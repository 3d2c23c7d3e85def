"""One model's pass over its share of the suite: load, warm up, generate, score, append.

Split from the runner (which owns the run directory and its manifest) because this is the part that
touches a model: it knows nothing about resumes, locks or statuses beyond the set of samples already
done, and it reports back the counts the manifest records.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.errors import UserError
from harness.metric_evaluation import model_metrics, sample_metrics
from harness.records import JsonlAppender
from harness.suite import LoadedSuite, Prompt
from harness.types import Generation, Metric, Model, SampleFailed, SamplingParams
from harness.work import derive_seed

WARMUP_PROMPT = "Once upon a time"
#: A served model that fails this many samples in a row is down: the model stops (resumable) instead of
#: spending retries and timeouts on every remaining sample.
MAX_CONSECUTIVE_FAILURES = 5


@dataclass
class PassResult:
    """What one model's pass produced (throughput counts only this session's generation)."""

    samples: int = 0
    tokens: int = 0
    generation_ns: int = 0
    timing: dict[str, Any] | None = None  # the contention probe over the generation window
    records: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0  # samples a backend gave up on (SampleFailed): not recorded, retried by --resume
    first_error: str | None = None
    wall_ns: int = 0  # first request to last answer (load levels: the denominator of requests/s)
    _consecutive: int = 0

    def sample_failed(self, exc: SampleFailed) -> None:
        """Count a lost sample; after MAX_CONSECUTIVE_FAILURES in a row the endpoint is taken to be gone."""
        self.failed += 1
        self._consecutive += 1
        self.first_error = self.first_error or str(exc)
        if self._consecutive >= MAX_CONSECUTIVE_FAILURES:
            raise SampleFailed(f"{self._consecutive} samples in a row failed, the last with: {exc}")

    def sample_done(self) -> None:
        self._consecutive = 0


_TOKEN_TEXTS: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()


def token_texts(model: Model, ids: list[int]) -> list[str]:
    """Each token's own text, memoised per model: a token id always decodes the same, and decoding one at a
    time cost a tokenizer call per generated token (a request per token for a served model)."""
    try:
        memo = _TOKEN_TEXTS.setdefault(model, {})
    except TypeError:  # a model object that cannot be weakly referenced: no memo
        memo = {}
    out = []
    for token in ids:
        text = memo.get(token)
        if text is None:
            text = memo[token] = model.decode([token])
        out.append(text)
    return out


def sample_record(
    suite: LoadedSuite,
    model: Model,
    prompt: Prompt,
    sample_index: int,
    seed: int,
    prompt_ids: list[int],
    generation: Generation,
    batched: bool,
    values: dict[str, float | None],
    errors: dict[str, str],
) -> dict[str, Any]:
    """The samples.jsonl line for one generation (fields documented in docs/run-directory.md)."""
    start = generation.start_ns
    return {
        "suite": suite.suite.name,
        "model": model.info.name,
        "prompt_id": prompt.id,
        "category": prompt.category,
        "sample_index": sample_index,
        "seed": seed,
        "prompt_text": prompt.text,
        "prompt_tokens": len(prompt_ids),
        "output_text": model.decode(generation.tokens),
        "output_ids": list(generation.tokens),
        "output_tokens": token_texts(model, generation.tokens),  # for the report's token view
        "eos_hit": bool(generation.eos_hit),
        "stop_reason": generation.stop_reason,
        "token_times_ms": [round((t - start) / 1e6, 4) for t in generation.token_times_ns],
        "end_ms": round((generation.end_ns - start) / 1e6, 4),
        "logprobs": [round(lp, 6) if math.isfinite(lp) else None for lp in generation.logprobs],
        "batched": batched,
        "flags": ["nonfinite"] if generation.nonfinite else [],
        "metrics": values,
        "metric_errors": errors,
    }


def warm_up(model: Model, sampling: SamplingParams, rounds: int) -> None:
    ids = model.encode(WARMUP_PROMPT)
    for i in range(rounds):
        model.generate(ids, sampling, torch.Generator(device="cpu").manual_seed(i))


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate_stream(
    model: Model,
    suite: LoadedSuite,
    items: list[tuple[Prompt, int]],
    encoded: dict[str, list[int]],
    metrics: dict[str, tuple[Metric, dict[str, Any]]],
    resources: dict[str, Any],
    batch_size: int,
    result: PassResult,
    warmup: bool = True,
    node: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Warm up, then yield the sample record of each of ``items`` as it finishes.

    A generator, so that the local runner appends each record where it runs and a Ray worker streams it
    to the driver: both executors make their samples with this one loop. ``result`` gets the counts and
    the contention probe's verdict over the generation window when the stream ends. Every record says
    which ``node`` made it (this machine unless the caller knows better).
    """
    from harness.contention import ContentionProbe
    from harness.node import node_identity
    from harness.threads import ThreadGovernor, policy_name

    if not items:
        return
    node = node if node is not None else node_identity(model.info.device)
    if warmup:
        warm_up(model, suite.suite.sampling.params(), suite.suite.warmup)
    governor = ThreadGovernor(max_threads=torch.get_num_threads(), policy=policy_name())
    probe = ContentionProbe.start()
    try:
        batches = _generate_batches(model, suite, items, encoded, metrics, resources, batch_size, governor, result)
        for record in batches:
            record["node"] = node
            yield record
    finally:
        governor.restore()
    measured = probe.stop()
    result.timing = {**measured, "threads": governor.summary()}


def generate_pass(
    model: Model,
    suite: LoadedSuite,
    items: list[tuple[Prompt, int]],
    encoded: dict[str, list[int]],
    metrics: dict[str, tuple[Metric, dict[str, Any]]],
    resources: dict[str, Any],
    batch_size: int,
    out: Any,
    advance: Callable[[], None],
    concurrency: int | None = None,
) -> PassResult:
    """Generate ``items`` (already filtered to the samples not yet done), appending each as it finishes.

    ``out`` has ``append(record)``: the run's :class:`harness.sample_sink.SampleSink` (or a JSONL appender).
    ``concurrency`` (load mode, served models): keep that many requests in flight from a thread pool; the
    backend must be safe to call from several threads (the ``openai`` backend is).
    """
    result = PassResult()
    if concurrency is not None:
        _generate_concurrent(model, suite, items, encoded, metrics, resources, concurrency, out, advance, result)
        return result
    for record in generate_stream(model, suite, items, encoded, metrics, resources, batch_size, result):
        out.append(record)
        result.records.append(record)
        advance()
    return result


def _generate_concurrent(
    model: Model,
    suite: LoadedSuite,
    items: list[tuple[Prompt, int]],
    encoded: dict[str, list[int]],
    metrics: dict[str, tuple[Metric, dict[str, Any]]],
    resources: dict[str, Any],
    concurrency: int,
    out: Any,
    advance: Callable[[], None],
    result: PassResult,
) -> None:
    """Load mode: warm up, then ``harness.load.generate_concurrent`` under the same probe and thread policy."""
    from harness.contention import ContentionProbe
    from harness.load import generate_concurrent
    from harness.threads import ThreadGovernor, policy_name

    if not items:
        return
    warm_up(model, suite.suite.sampling.params(), suite.suite.warmup)
    governor = ThreadGovernor(max_threads=torch.get_num_threads(), policy=policy_name())
    probe = ContentionProbe.start()
    start = time.perf_counter_ns()
    try:
        generate_concurrent(model, suite, items, encoded, metrics, resources, concurrency, out, advance, result)
    finally:
        result.wall_ns += time.perf_counter_ns() - start
        governor.restore()
    result.timing = {**probe.stop(), "threads": governor.summary()}


def _generate_batches(
    model: Model,
    suite: LoadedSuite,
    items: list[tuple[Prompt, int]],
    encoded: dict[str, list[int]],
    metrics: dict[str, tuple[Metric, dict[str, Any]]],
    resources: dict[str, Any],
    batch_size: int,
    governor: Any,
    result: PassResult,
) -> Iterator[dict[str, Any]]:
    sampling = suite.suite.sampling.params()
    for batch in chunks(items, batch_size):
        governor.check(len(batch))
        prompt_ids = [encoded[prompt.id] for prompt, _ in batch]
        seeds = [derive_seed(sampling.seed, prompt.id, index) for prompt, index in batch]
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        if len(batch) > 1 and hasattr(model, "generate_batch"):
            generations: list[Generation | None] = model.generate_batch(prompt_ids, sampling, generators)
            result.generation_ns += max(g.end_ns for g in generations) - generations[0].start_ns
        else:  # batch 1, or a backend without a batched path: one at a time
            generations = []
            for ids, gen in zip(prompt_ids, generators, strict=True):
                try:
                    generations.append(model.generate(ids, sampling, gen))
                except SampleFailed as exc:  # this sample only: the others go on, --resume retries it
                    generations.append(None)
                    result.sample_failed(exc)
                    continue
                result.generation_ns += generations[-1].end_ns - generations[-1].start_ns
        for (prompt, sample_index), seed, ids, generation in zip(batch, seeds, prompt_ids, generations, strict=True):
            if generation is None:
                continue
            yield score_sample(
                suite, model, prompt, sample_index, seed, ids, generation, batch_size > 1, metrics, resources, result
            )


def score_sample(
    suite: LoadedSuite,
    model: Model,
    prompt: Prompt,
    sample_index: int,
    seed: int,
    ids: list[int],
    generation: Generation,
    batched: bool,
    metrics: dict[str, tuple[Metric, dict[str, Any]]],
    resources: dict[str, Any],
    result: PassResult,
) -> dict[str, Any]:
    """One finished generation's samples.jsonl record, scored by every metric and counted in ``result``."""
    sampling = suite.suite.sampling.params()
    values, errors = sample_metrics(metrics, generation, ids, model, sampling, resources)
    record = sample_record(suite, model, prompt, sample_index, seed, ids, generation, batched, values, errors)
    result.tokens += len(generation.tokens)
    result.samples += 1
    result.sample_done()
    return record


def encode_checked(model: Model, prompt: Prompt, suite_path: Any, spec: str) -> list[int]:
    """The prompt's token ids; a prompt that leaves no room in the model's context is the user's error."""
    ids = model.encode(prompt.text)
    if len(ids) >= model.info.context_length:
        raise UserError(
            f"{suite_path}: prompt {prompt.id!r} has {len(ids)} tokens for model {spec}, "
            f"whose context is {model.info.context_length}; shorten the prompt"
        )
    return ids


def score_model(
    model: Model,
    metrics: dict[str, tuple[Metric, dict[str, Any]]],
    records: list[dict[str, Any]],
    resources: dict[str, Any],
    peak_mem_mb: float | None,
    out: JsonlAppender | list[dict[str, Any]],
) -> None:
    """Model-level metrics (held-out bpb, peak memory) over every sample the model has, old and new."""
    values, errors = model_metrics(metrics, model, records, {**resources, "peak_mem_mb": peak_mem_mb})
    if values or errors:
        out.append({"model": model.info.name, "metrics": values, "metric_errors": errors})


def elapsed_s(start: float) -> float:
    return round(time.perf_counter() - start, 3)
