"""Load mode: keep N requests in flight against a served model, one load level per run row.

``harness run SUITE --models openai:... --concurrency 1,4,16`` runs the suite once per level; each level is
a row of its own (``SPEC@c4``), so its samples, quality metrics, load metrics (harness.metrics.load), report
and gate are those of any model. Requests go out from a thread pool (the ``openai`` backend is I/O-bound
and thread-safe); samples are scored and appended on the calling thread as they come back, so the run
directory is written exactly as in a sequential run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import torch

from harness.errors import UserError
from harness.types import Metric, Model, SampleFailed
from harness.work import derive_seed

if TYPE_CHECKING:
    from harness.model_pass import PassResult
    from harness.records import JsonlAppender
    from harness.suite import LoadedSuite, Prompt

MAX_CONCURRENCY = 1024
LEVEL_SUFFIX = re.compile(r"@c([0-9]+)$")


def parse_levels(text: str) -> list[int]:
    """``--concurrency 1,4,16`` -> [1, 4, 16]; each an integer from 1 to MAX_CONCURRENCY, none twice."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--concurrency {text!r}: expected comma-separated integers, e.g. 1,4,16") from None
    if not levels or any(not 1 <= n <= MAX_CONCURRENCY for n in levels):
        raise UserError(f"--concurrency {text!r}: each level must be an integer from 1 to {MAX_CONCURRENCY}")
    if len(set(levels)) != len(levels):
        raise UserError(f"--concurrency {text!r}: a level is listed twice")
    return levels


def level_name(spec: str, concurrency: int) -> str:
    """The row name of one load level: the spec with ``@cN`` appended."""
    return f"{spec}@c{concurrency}"


def split_level(name: str) -> tuple[str, int | None]:
    """(spec, concurrency) of a row name; concurrency is None for an ordinary row."""
    match = LEVEL_SUFFIX.search(name)
    if match is None:
        return name, None
    return name[: match.start()], int(match.group(1))


def generate_concurrent(
    model: Model,
    suite: LoadedSuite,
    items: list[tuple[Prompt, int]],
    encoded: dict[str, list[int]],
    metrics: dict[str, tuple[Metric, dict[str, Any]]],
    resources: dict[str, Any],
    concurrency: int,
    out: JsonlAppender,
    advance: Callable[[], None],
    result: PassResult,
) -> None:
    """Generate ``items`` with ``concurrency`` requests in flight; a new one starts as soon as one ends."""
    from harness.model_pass import score_sample
    from harness.node import node_identity

    sampling = suite.suite.sampling.params()
    node = node_identity(model.info.device)  # once: every sample of this pass ran here
    pending = list(reversed(items))
    in_flight: dict[Future, tuple[Prompt, int, int]] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load") as pool:
        try:
            while pending or in_flight:
                while pending and len(in_flight) < concurrency:
                    prompt, index = pending.pop()
                    seed = derive_seed(sampling.seed, prompt.id, index)
                    generator = torch.Generator(device="cpu").manual_seed(seed)
                    future = pool.submit(model.generate, encoded[prompt.id], sampling, generator)
                    in_flight[future] = (prompt, index, seed)
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    prompt, index, seed = in_flight.pop(future)
                    try:
                        generation = future.result()
                    except SampleFailed as exc:
                        result.sample_failed(exc)
                        advance()
                        continue
                    result.generation_ns += generation.end_ns - generation.start_ns
                    record = score_sample(
                        suite,
                        model,
                        prompt,
                        index,
                        seed,
                        encoded[prompt.id],
                        generation,
                        False,
                        metrics,
                        resources,
                        result,
                    )
                    record["node"] = node
                    out.append(record)
                    result.records.append(record)
                    advance()
        finally:
            for future in in_flight:  # an error or a signal: start nothing new, let the running ones end
                future.cancel()
