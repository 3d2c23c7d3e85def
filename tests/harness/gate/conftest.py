"""A fixture writer for run directories in exactly the documented format (docs/run-directory.md).

Gates read only run directories, so the tests build them by hand: manifest.json, samples.jsonl,
model_metrics.jsonl and metrics.json, with every documented field present.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from harness.gate.data import load_side
from harness.gate.engine import GateResult, run_gate
from harness.gate.rules import load_rules
from harness.records import load_run
from harness.summary import write_summaries
from harness.work import derive_seed

METRICS: dict[str, dict[str, Any]] = {
    "tps": {"unit": "tokens/s", "higher_is_better": True, "level": "sample", "kind": "timing"},
    "latency_ms": {"unit": "ms", "higher_is_better": False, "level": "sample", "kind": "timing"},
    "perplexity": {"unit": "", "higher_is_better": False, "level": "sample", "kind": "quality"},
    "repetition_rate": {"unit": "%", "higher_is_better": False, "level": "sample", "kind": "quality"},
    "tokens_generated": {"unit": "tokens", "higher_is_better": None, "level": "sample", "kind": "count"},
    "heldout_bpb": {"unit": "bits/byte", "higher_is_better": False, "level": "model", "kind": "quality"},
}
ENV = {
    "python": "3.11.7",
    "platform": "Linux-6.1-x86_64",
    "cpu": "Test CPU 9000",
    "device": "cpu",
    "threads": 2,
    "packages": {"torch": "2.4.0"},
    "git_commit": "abc",
}


def keys(prompts: int, samples_per_prompt: int = 1) -> list[tuple[str, int]]:
    return [(f"p{i:03d}", j) for i in range(prompts) for j in range(samples_per_prompt)]


def synthetic_values(
    prompts: int,
    seed: int = 0,
    samples_per_prompt: int = 1,
    scale: dict[str, float] | None = None,
    run_shift: float = 0.0,
) -> dict[str, list[float | None]]:
    """Plausible per-sample values: prompt effects plus per-sample noise; ``scale`` multiplies a metric."""
    rng = np.random.default_rng(seed)
    n = prompts * samples_per_prompt
    prompt_effect = np.repeat(np.random.default_rng(1000).lognormal(0, 0.2, prompts), samples_per_prompt)
    values = {
        "tps": 300 * prompt_effect * rng.lognormal(0, 0.05, n) * np.exp(run_shift),
        "latency_ms": 90 / prompt_effect * rng.lognormal(0, 0.05, n) * np.exp(-run_shift),
        "perplexity": 20 * prompt_effect * rng.lognormal(0, 0.1, n),
        "repetition_rate": np.clip(0.3 * prompt_effect * rng.lognormal(0, 0.3, n), 0, 1),
        "tokens_generated": np.round(100 * prompt_effect * rng.lognormal(0, 0.1, n)),
    }
    for name, factor in (scale or {}).items():
        values[name] = values[name] * factor
    return {name: [float(v) for v in arr] for name, arr in values.items()}


def write_run(
    path: Path,
    values: dict[str, dict[str, list[float | None]]],
    *,
    prompts: int,
    samples_per_prompt: int = 1,
    suite: str = "smoke",
    suite_sha: str = "a" * 64,
    prompts_sha: str = "b" * 64,
    model_values: dict[str, dict[str, float | None]] | None = None,
    infos: dict[str, dict[str, Any]] | None = None,
    environment: dict[str, Any] | None = None,
    status: str = "complete",
    metrics: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 1,
    model_status: dict[str, str] | None = None,
) -> Path:
    """Write a run directory: ``values`` is model -> metric -> one value per sample in ``keys()`` order."""
    path.mkdir(parents=True, exist_ok=True)
    present = {name for per_metric in values.values() for name in per_metric}
    present |= {name for per_metric in (model_values or {}).values() for name in per_metric}
    # like a real run, metrics.json declares the metrics the run computed (a declared metric with no
    # value at all is missing evidence, which the gate refuses)
    metric_meta = metrics if metrics is not None else {k: v for k, v in METRICS.items() if k in present}
    models = []
    for name in values:
        info = {
            "name": name,
            "spec": name,
            "backend": "tinylm",
            "parameters": 2_500_000,
            "vocab_size": 512,
            "context_length": 512,
            "device": "cpu",
            "dtype": "float32",
            "source": f"/ckpt/{name}",
            "weights_sha256": "w" * 64,
            "tokenizer_sha256": "t" * 64,
            "revision": None,
            "extra": {},
        }
        info.update((infos or {}).get(name, {}))
        models.append(
            {
                "name": name,
                "spec": name,
                "status": (model_status or {}).get(name, "ok"),
                "error": None,
                "info": info,
                "load_s": 0.1,
                "wall_s": 1.0,
            }
        )
    manifest = {
        "format_version": 1,
        "run_id": path.name,
        "status": status,
        "created_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z",
        "command": ["harness", "run", f"suites/{suite}.yaml"],
        "suite": {
            "name": suite,
            "path": f"suites/{suite}.yaml",
            "sha256": suite_sha,
            "prompts_sha256": prompts_sha,
            "n_prompts": prompts,
            "samples_per_prompt": samples_per_prompt,
            "sampling": {"temperature": 0.8, "top_k": 50, "max_new_tokens": 256, "seed": 1234},
            "definition": {
                "name": suite,
                "prompts": [{"id": f"p{i:03d}", "text": f"Once p{i:03d}", "category": "story"} for i in range(prompts)],
            },
        },
        "models": models,
        "batch_size": batch_size,
        "shard": None,
        "environment": environment or ENV,
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (path / "metrics.json").write_text(
        json.dumps({k: {**v, "description": k, "plugin": "test"} for k, v in metric_meta.items()})
    )
    with open(path / "samples.jsonl", "w") as handle:
        for model, per_metric in values.items():
            for index, (prompt_id, sample_index) in enumerate(keys(prompts, samples_per_prompt)):
                record = {
                    "suite": suite,
                    "model": model,
                    "prompt_id": prompt_id,
                    "category": "story",
                    "sample_index": sample_index,
                    "seed": derive_seed(1234, prompt_id, sample_index),
                    "prompt_text": f"Once {prompt_id}",
                    "prompt_tokens": 3,
                    "output_text": "upon a time",
                    "output_ids": [1, 2, 3],
                    "eos_hit": True,
                    "stop_reason": "eos",
                    "token_times_ms": [1.0, 2.0, 3.0],
                    "end_ms": 3.0,
                    "logprobs": [-1.0, -1.0, -1.0],
                    "batched": batch_size > 1,
                    "flags": [],
                    "metrics": {name: series[index] for name, series in per_metric.items()},
                    "metric_errors": {},
                }
                handle.write(json.dumps(record) + "\n")
    with open(path / "model_metrics.jsonl", "w") as handle:
        for model, per_metric in (model_values or {}).items():
            handle.write(json.dumps({"model": model, "metrics": per_metric}) + "\n")
    if status in ("complete", "complete_with_failures", "failed"):  # a finished run has its summaries
        write_summaries(load_run(path, check_complete=False))
    return path


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """``make_run(name, values, prompts=..., ...)`` writes a run directory under tmp_path."""

    def _make(name: str, values: dict[str, dict[str, list[float | None]]], **kwargs: Any) -> Path:
        return write_run(tmp_path / name, values, **kwargs)

    return _make


@pytest.fixture
def kit(tmp_path: Path) -> SimpleNamespace:
    """The helpers above as one fixture (tests run in importlib mode and cannot import conftest)."""

    def gate_dirs(
        baseline: Path | list[Path], candidate: Path | list[Path], rules: str | None = None, **kwargs: Any
    ) -> GateResult:
        rules_path = None
        if rules is not None:
            rules_path = tmp_path / "gates.yaml"
            rules_path.write_text(rules)
        base = load_side(baseline if isinstance(baseline, list) else [baseline], "baseline")
        cand = load_side(candidate if isinstance(candidate, list) else [candidate], "candidate")
        return run_gate(base, cand, load_rules(rules_path), **kwargs)

    def run(name: str, values: dict[str, dict[str, list[float | None]]], **kwargs: Any) -> Path:
        kwargs.setdefault(
            "prompts", len(next(iter(next(iter(values.values())).values()))) // kwargs.get("samples_per_prompt", 1)
        )
        return write_run(tmp_path / name, values, **kwargs)

    return SimpleNamespace(
        run=run, gate=gate_dirs, values=synthetic_values, keys=keys, METRICS=METRICS, ENV=ENV, tmp=tmp_path
    )
