"""What runs inside a Ray worker process: one unit (a model × a block of the suite's samples) or a scoring.

Why a module of plain functions: Ray pickles a task by reference to an importable function, so the
worker imports this module and the harness with it; the functions reuse the local path's pieces
(:func:`harness.model_pass.generate_stream`, :func:`harness.model_pass.score_model`) so a sample made
here is the sample a local run makes. A worker process keeps the last model it loaded (Ray reuses
worker processes), so the units of one model that land on one worker load it once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.suite import LoadedSuite
from harness.types import LoadOptions

_STATE: dict[str, Any] = {}  # per worker process: the loaded model (one at a time), its warm-up, the judge


@dataclass
class UnitJob:
    """Everything a worker needs besides the unit itself; put in the object store once per run."""

    loaded: LoadedSuite
    load_options: LoadOptions
    batch_size: int
    plugins_dir: str | None
    cwd: str  # the driver's working directory: relative model paths mean the same there (shared filesystem)
    reference_texts: list[str] | None
    judge: str | None


def _setup(job: UnitJob) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from harness.metric_evaluation import select_metrics
    from harness.models import load_model
    from harness.plugins import get_registry

    if os.path.isdir(job.cwd):
        os.chdir(job.cwd)
    registry = get_registry(Path(job.plugins_dir) if job.plugins_dir else None)
    metrics = select_metrics(job.loaded.suite, job.loaded.path, registry)
    resources: dict[str, Any] = {}
    if job.reference_texts is not None:
        resources["reference_texts"] = job.reference_texts
    if job.judge:
        judge = _STATE.get("judge")
        if judge is None or judge[0] != job.judge:
            _STATE["judge"] = (job.judge, load_model(job.judge, registry, job.load_options))
        resources["judge"] = _STATE["judge"][1]
    return registry, metrics, resources


def _model(spec: str, job: UnitJob, registry: Any) -> tuple[Any, float | None, bool]:
    """(model, load seconds when loaded now, whether this process already warmed it up)."""
    from harness.environment import reset_peak_rss
    from harness.model_pass import elapsed_s
    from harness.models import load_model

    key = (spec, repr(job.load_options))
    cached = _STATE.get("model")
    if cached is not None and cached[0] == key:
        return cached[1], None, cached[2]
    if cached is not None:
        _STATE.pop("model")
        with contextlib.suppress(Exception):
            cached[1].close()
    reset_peak_rss()
    t0 = time.perf_counter()
    model = load_model(spec, registry, job.load_options, name=spec)
    _STATE["model"] = (key, model, False)
    return model, elapsed_s(t0), False


def _node(device: str) -> dict[str, Any]:
    import ray

    from harness.node import node_identity

    return {**node_identity(device), "ray_node": ray.get_runtime_context().get_node_id()[:12]}


def run_unit(job: UnitJob, spec: str, keys: list[tuple[str, int]]) -> Iterator[tuple[str, Any]]:
    """Stream one unit: ``("info", ...)`` once, ``("sample", record)`` per sample, ``("done", counts)`` last."""
    from harness.model_pass import PassResult, encode_checked, generate_stream

    registry, metrics, resources = _setup(job)
    model, load_s, warm = _model(spec, job, registry)
    yield ("info", {"info": model.info.to_dict(), "load_s": load_s})
    prompts = {p.id: p for p in job.loaded.prompts}
    items = [(prompts[prompt_id], index) for prompt_id, index in keys]
    encoded = {p.id: encode_checked(model, p, job.loaded.path, spec) for p, _ in items}
    result = PassResult()
    node = _node(model.info.device)
    stream = generate_stream(
        model, job.loaded, items, encoded, metrics, resources, job.batch_size, result, warmup=not warm, node=node
    )
    for record in stream:
        yield ("sample", record)
    _STATE["model"] = (*_STATE["model"][:2], True)
    yield ("done", {"tokens": result.tokens, "generation_ns": result.generation_ns, "timing": result.timing})


def score_unit(job: UnitJob, spec: str, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The model-level metrics line (held-out bpb, peak memory of this worker) over all of a model's samples."""
    import torch

    from harness.environment import peak_rss_mb
    from harness.model_pass import score_model

    registry, metrics, resources = _setup(job)
    model, _, _ = _model(spec, job, registry)
    on_gpu = model.info.device.startswith("cuda")
    peak = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else peak_rss_mb()
    out: list[dict[str, Any]] = []
    score_model(model, metrics, records, resources, peak, out)
    return out[0] if out else None
