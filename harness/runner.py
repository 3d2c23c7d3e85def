"""The runner: suite × models -> samples -> metrics -> run directory.

Every sample is seeded from (suite seed, prompt id, sample index) alone, so it is the same whatever
the order, a resume, a shard split, or which other models ran; samples are appended and fsynced as
they finish so an interruption loses at most the one in flight.
"""

from __future__ import annotations

import math
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness import rundir
from harness.devices import resolve_device
from harness.environment import describe_environment, peak_rss_mb, reset_peak_rss
from harness.errors import UserError
from harness.metric_evaluation import model_metrics, sample_metrics, select_metrics
from harness.models import load_model
from harness.plugins import Registry
from harness.references import load_reference_texts
from harness.suite import LoadedSuite, Prompt
from harness.summary import write_summaries
from harness.types import LoadOptions, Model
from harness.work import Shard, derive_seed

FORMAT_VERSION = 1
WARMUP_PROMPT = "Once upon a time"


@dataclass
class RunOptions:
    device: str | None = None  # overrides the suite's device
    threads: int | None = None
    batch_size: int = 1
    shard: Shard | None = None
    trust_remote_code: bool = False
    compile: bool = False
    dtype: str | None = None  # None: float32 for a new run, the recorded dtype when resuming
    model_options: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class ModelOutcome:
    name: str
    status: str  # ok | failed | interrupted
    error: str | None = None
    input_error: bool = False  # the user's input was wrong (bad checkpoint, prompt too long), not a crash
    samples: int = 0
    wall_s: float = 0.0


class Interrupted(BaseException):
    """SIGTERM: stop after the sample in flight and leave a resumable directory.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` (a metric, a loader) swallows it.
    """


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SuiteRun:
    """One execution of a suite, writing into one run directory."""

    def __init__(
        self,
        loaded: LoadedSuite,
        model_specs: list[str],
        out_dir: Path,
        registry: Registry,
        options: RunOptions,
        console: Console,
        resume: bool = False,
    ) -> None:
        self.loaded, self.suite, self.registry, self.options, self.console = (
            loaded,
            loaded.suite,
            registry,
            options,
            console,
        )
        self.model_specs, self.dir, self.resume = model_specs, out_dir, resume
        self.sampling = self.suite.sampling.params()
        self.device = options.device or self.suite.device
        self.metrics = select_metrics(self.suite, self.loaded.path, registry)
        self.outcomes: list[ModelOutcome] = []
        self.manifest: dict[str, Any] = {}
        self.resources: dict[str, Any] | None = None
        self.summary: dict[str, Any] = {}  # summary.json content, set by finish()
        threads = options.threads or self.suite.threads
        if threads:  # before the manifest records the environment, so it records what runs
            torch.set_num_threads(threads)

    # ---------------------------------------------------------------- manifest
    def _initial_manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "run_id": self.dir.name,
            "status": "running",
            "created_at": _now(),
            "finished_at": None,
            "command": self.options.command,
            "suite": {
                "name": self.suite.name,
                "path": str(self.loaded.path),
                "sha256": self.loaded.sha256,
                "prompts_sha256": self.loaded.prompts_sha256,
                "n_prompts": len(self.loaded.prompts),
                "samples_per_prompt": self.suite.samples_per_prompt,
                "sampling": self.suite.sampling.model_dump(),
                "warmup": self.suite.warmup,
                "definition": {
                    **self.suite.model_dump(exclude={"prompts"}),
                    "prompts": [p.model_dump() for p in self.loaded.prompts],
                },
            },
            "models": [
                {"name": spec, "spec": spec, "status": "pending", "error": None, "info": None}
                for spec in self.model_specs
            ],
            "batch_size": self.options.batch_size,
            "dtype": self.options.dtype or "float32",
            "compile": self.options.compile,
            "shard": None
            if self.options.shard is None
            else {"index": self.options.shard.index, "count": self.options.shard.count},
            "environment": describe_environment(str(resolve_device(self.device))),
        }

    def _save_manifest(self) -> None:
        rundir.write_json_atomic(self.dir / rundir.MANIFEST, self.manifest)

    def _model_entry(self, name: str) -> dict[str, Any]:
        return next(m for m in self.manifest["models"] if m["name"] == name)

    # ---------------------------------------------------------------- work
    def work_items(self, model: str) -> Iterator[tuple[Prompt, int]]:
        for prompt in self.loaded.prompts:
            for sample_index in range(self.suite.samples_per_prompt):
                if self.options.shard is None or self.options.shard.owns(model, prompt.id, sample_index):
                    yield prompt, sample_index

    def _record(
        self,
        model: Model,
        prompt: Prompt,
        sample_index: int,
        seed: int,
        prompt_ids: list[int],
        generation: Any,
        values: dict[str, float | None],
        errors: dict[str, str],
    ) -> dict[str, Any]:
        start = generation.start_ns
        return {
            "suite": self.suite.name,
            "model": model.info.name,
            "prompt_id": prompt.id,
            "category": prompt.category,
            "sample_index": sample_index,
            "seed": seed,
            "prompt_text": prompt.text,
            "prompt_tokens": len(prompt_ids),
            "output_text": model.decode(generation.tokens),
            "output_ids": list(generation.tokens),
            "eos_hit": bool(generation.eos_hit),
            "stop_reason": generation.stop_reason,
            "token_times_ms": [round((t - start) / 1e6, 4) for t in generation.token_times_ns],
            "end_ms": round((generation.end_ns - start) / 1e6, 4),
            "logprobs": [round(lp, 6) if math.isfinite(lp) else None for lp in generation.logprobs],
            "batched": self.options.batch_size > 1,
            "flags": ["nonfinite"] if generation.nonfinite else [],
            "metrics": values,
            "metric_errors": errors,
        }

    def load_resources(self) -> dict[str, Any]:
        """Reference texts and judge model, loaded only when a selected metric requires them.

        Called before the run directory exists (by the CLI), so a bad reference path or judge spec
        fails without leaving a half-made run behind.
        """
        if self.resources is None:
            needed = {r for metric, _ in self.metrics.values() for r in metric.requires}
            resources: dict[str, Any] = {}
            if "reference_texts" in needed and self.suite.reference is not None:
                resources["reference_texts"] = load_reference_texts(self.suite.reference, self.loaded.path)
            if "judge" in needed and self.suite.judge:
                resources["judge"] = load_model(self.suite.judge, self.registry, self._load_options())
            self.resources = resources
        return self.resources

    def check_model_options(self) -> None:
        """Let each model's backend refuse options it cannot honour (``Backend.check_options``, optional),
        before the CLI creates the run directory."""
        from harness.models import resolve_backend

        for spec in self.model_specs:
            check = getattr(resolve_backend(spec, self.registry), "check_options", None)
            if check is not None:
                check(spec, self._load_options())

    def _load_options(self) -> LoadOptions:
        return LoadOptions(
            device=self.device,
            threads=self.options.threads or self.suite.threads,
            dtype=self.options.dtype or "float32",
            trust_remote_code=self.options.trust_remote_code,
            compile=self.options.compile,
            batch_size=self.options.batch_size,
            extra=dict(self.options.model_options),
        )

    def _warmup(self, model: Model) -> None:
        ids = model.encode(WARMUP_PROMPT)
        for i in range(self.suite.warmup):
            model.generate(ids, self.sampling, torch.Generator(device="cpu").manual_seed(i))

    def _run_model(
        self,
        spec: str,
        done: set[tuple[str, str, int]],
        out: rundir.JsonlAppender,
        model_out: rundir.JsonlAppender,
        resources: dict[str, Any],
        progress: Progress,
    ) -> ModelOutcome:
        entry = self._model_entry(spec)
        outcome = ModelOutcome(name=spec, status="ok")
        t0 = time.perf_counter()
        reset_peak_rss()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        # samples of this model from earlier sessions count for model-level metrics and throughput
        records = [r for r in rundir.iter_jsonl(self.dir / rundir.SAMPLES) if r["model"] == spec]
        previous = entry.get("throughput") or {}
        tokens, generation_ns = previous.get("tokens", 0), int(previous.get("generation_s", 0) * 1e9)
        model = None
        try:
            model = load_model(spec, self.registry, self._load_options(), name=spec)
            entry["info"] = model.info.to_dict()
            entry["load_s"] = round(time.perf_counter() - t0, 3)
            items = [(p, i) for p, i in self.work_items(spec) if (spec, p.id, i) not in done]
            encoded = {p.id: self._encode_checked(model, p, spec) for p, _ in items}  # every prompt, up front
            task = progress.add_task(spec, total=len(items))
            if items:
                self._warmup(model)
            for batch in _chunks(items, self.options.batch_size):
                prompt_ids = [encoded[prompt.id] for prompt, _ in batch]
                seeds = [derive_seed(self.sampling.seed, prompt.id, index) for prompt, index in batch]
                generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
                if len(batch) > 1 and hasattr(model, "generate_batch"):
                    generations = model.generate_batch(prompt_ids, self.sampling, generators)
                    generation_ns += max(g.end_ns for g in generations) - generations[0].start_ns
                else:  # batch 1, or a backend without a batched path: one at a time
                    generations = [
                        model.generate(ids, self.sampling, gen) for ids, gen in zip(prompt_ids, generators, strict=True)
                    ]
                    generation_ns += sum(g.end_ns - g.start_ns for g in generations)
                for (prompt, sample_index), seed, ids, generation in zip(
                    batch, seeds, prompt_ids, generations, strict=True
                ):
                    values, errors = sample_metrics(self.metrics, generation, ids, model, self.sampling, resources)
                    record = self._record(model, prompt, sample_index, seed, ids, generation, values, errors)
                    out.append(record)
                    records.append(record)
                    tokens += len(generation.tokens)
                    outcome.samples += 1
                    progress.advance(task)
            self._model_metrics(model, records, resources, model_out)
        except (KeyboardInterrupt, Interrupted):
            outcome.status = "interrupted"
            raise
        except UserError as exc:
            outcome.status, outcome.error, outcome.input_error = "failed", str(exc), True
        except Exception as exc:  # a crashing backend fails its model only; the other models still run
            outcome.status = "failed"
            outcome.error = f"model {spec} crashed: {exc.__class__.__name__}: {exc} (traceback in the run directory)"
            (self.dir / f"error-{spec.replace('/', '_').replace(':', '_')}.txt").write_text(traceback.format_exc())
        finally:
            outcome.wall_s = time.perf_counter() - t0
            entry.update(status=outcome.status, error=outcome.error, wall_s=round(outcome.wall_s, 3))
            entry["throughput"] = {
                "batch_size": self.options.batch_size,
                "tokens": tokens,
                "generation_s": round(generation_ns / 1e9, 4),
                "tokens_per_s": round(tokens / (generation_ns / 1e9), 2) if generation_ns else None,
            }
            out.sync()  # the manifest may now say "ok": its samples must be as durable as it is
            model_out.sync()
            self._save_manifest()
            if model is not None:
                model.close()
        return outcome

    def _encode_checked(self, model: Model, prompt: Prompt, spec: str) -> list[int]:
        ids = model.encode(prompt.text)
        if len(ids) >= model.info.context_length:
            raise UserError(
                f"{self.loaded.path}: prompt {prompt.id!r} has {len(ids)} tokens for model {spec}, "
                f"whose context is {model.info.context_length}; shorten the prompt"
            )
        return ids

    def _model_metrics(
        self, model: Model, records: list[dict[str, Any]], resources: dict[str, Any], model_out: rundir.JsonlAppender
    ) -> None:
        model_resources = {**resources, "peak_mem_mb": self._peak_mem_mb(model)}
        values, errors = model_metrics(self.metrics, model, records, model_resources)
        if values or errors:
            model_out.append({"model": model.info.name, "metrics": values, "metric_errors": errors})

    @staticmethod
    def _peak_mem_mb(model: Model) -> float | None:
        if model.info.device.startswith("cuda"):
            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mb()

    # ---------------------------------------------------------------- orchestration
    def _done_samples(self) -> tuple[set[tuple[str, str, int]], set[str]]:
        done = {(r["model"], r["prompt_id"], r["sample_index"]) for r in rundir.iter_jsonl(self.dir / rundir.SAMPLES)}
        models_done = {m["name"] for m in self.manifest["models"] if m["status"] == "ok"}
        return done, models_done

    def _adopt_recorded_options(self) -> None:
        """A resumed run keeps the batch size, dtype, compile flag and shard it started with (they change
        the numbers); a conflicting flag is an error."""
        recorded_batch = self.manifest.get("batch_size", 1)
        recorded_shard = self.manifest.get("shard")
        recorded_dtype = self.manifest.get("dtype", "float32")  # runs before dtype was recorded were float32
        recorded_compile = self.manifest.get("compile", False)
        if self.options.batch_size not in (1, recorded_batch):
            raise UserError(f"{self.dir}: was run with --batch-size {recorded_batch}; resume without --batch-size")
        if self.options.dtype not in (None, recorded_dtype):
            raise UserError(f"{self.dir}: was run with --dtype {recorded_dtype}; resume without --dtype")
        if self.options.compile and not recorded_compile:
            raise UserError(f"{self.dir}: was run without --compile; resume without --compile")
        self.options.dtype, self.options.compile = recorded_dtype, recorded_compile
        given = self.options.shard
        if given is not None and (
            recorded_shard is None or (given.index, given.count) != (recorded_shard["index"], recorded_shard["count"])
        ):
            raise UserError(f"{self.dir}: was run with shard {recorded_shard}; resume without --shard")
        self.options.batch_size = recorded_batch
        self.options.shard = Shard(recorded_shard["index"], recorded_shard["count"]) if recorded_shard else None

    def _prepare(self) -> None:
        if self.resume:
            old = rundir.load_run(self.dir)
            if old.manifest["suite"]["sha256"] != self.loaded.sha256:
                raise UserError(
                    f"{self.dir}: was run with a different suite (hash {old.manifest['suite']['sha256'][:12]}); "
                    "resume with the same suite file or start a new run"
                )
            self.manifest = old.manifest
            self._adopt_recorded_options()
            known = {m["name"] for m in self.manifest["models"]}
            self.manifest["models"] += [
                {"name": s, "spec": s, "status": "pending", "error": None, "info": None}
                for s in self.model_specs
                if s not in known
            ]
            self.model_specs = [m["name"] for m in self.manifest["models"]]
            self.manifest["status"] = "running"
            self.manifest.setdefault("resumed_at", []).append(_now())
            rundir.repair_torn_tail(self.dir / rundir.SAMPLES)
        else:
            self.manifest = self._initial_manifest()
        meta = {
            name: {
                "unit": m.unit,
                "higher_is_better": m.higher_is_better,
                "level": m.level,
                "kind": m.kind,
                "description": m.description,
                "plugin": self.registry.owner.get(("metric", name)),
            }
            for name, (m, _) in self.metrics.items()
        }
        rundir.write_json_atomic(self.dir / rundir.METRICS, meta)
        self._save_manifest()

    def execute(self) -> int:
        """Run every model; returns the exit code.

        0 ok; 1 a model crashed; 2 a model could not run because of an input error (missing checkpoint,
        prompt too long...); 130 interrupted. The other models always run and keep their results.
        """
        with rundir.RunLock(self.dir):
            return self._execute_locked()

    def _execute_locked(self) -> int:
        self._prepare()
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
        done, models_done = self._done_samples()
        resources = self.load_resources()
        status = "complete"
        progress = Progress(
            TextColumn("{task.description:>14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.options.progress,
        )
        try:
            with (
                progress,
                rundir.JsonlAppender(self.dir / rundir.SAMPLES) as out,
                rundir.JsonlAppender(self.dir / rundir.MODEL_METRICS) as model_out,
            ):
                for spec in self.model_specs:
                    if spec in models_done:
                        continue
                    self.outcomes.append(self._run_model(spec, done, out, model_out, resources, progress))
        except (KeyboardInterrupt, Interrupted):
            status = "interrupted"
        finally:
            signal.signal(signal.SIGTERM, previous)
            judge = resources.get("judge")
            if judge is not None:
                judge.close()
        failed = [o for o in self.outcomes if o.status == "failed"]
        if status == "complete" and failed:
            status = "failed" if len(failed) == len(self.model_specs) else "complete_with_failures"
        self.finish(status)
        if status == "interrupted":
            return 130
        if any(o.input_error for o in failed):
            return 2
        return 1 if failed else 0

    def finish(self, status: str) -> None:
        """Summaries and final manifest, written even after an interruption (from what exists)."""
        self.manifest["status"] = status
        self.manifest["finished_at"] = _now()
        run = rundir.load_run(self.dir)
        run.manifest = self.manifest
        self.summary = write_summaries(run)
        self._save_manifest()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")
