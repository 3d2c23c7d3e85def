"""The runner: suite × models -> samples -> metrics -> run directory.

Every sample is seeded from (suite seed, prompt id, sample index) alone, so it is the same whatever
the order, a resume, a shard split, or which other models ran; samples are appended and flushed as
they finish so an interruption (a signal, a full disk) loses at most the one in flight, and the
manifest then says ``interrupted`` so ``--resume`` finishes the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness import records
from harness.devices import resolve_device
from harness.environment import describe_environment, peak_rss_mb, reset_peak_rss
from harness.errors import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_REGRESSION, UserError
from harness.load import level_name
from harness.metric_evaluation import select_metrics
from harness.metrics.load import NAMES as LOAD_METRICS
from harness.model_pass import elapsed_s, encode_checked, generate_pass, score_model
from harness.models import load_model
from harness.plugins import Registry
from harness.records import Manifest, ModelEntry, RunSettings, ShardSpec, SuiteRecord, Throughput
from harness.records.files import dump_json, is_disk_full
from harness.records.samples import SuiteMembership
from harness.references import load_reference_texts
from harness.sample_sink import SampleSink
from harness.suite import LoadedSuite, Prompt
from harness.summary import write_summaries
from harness.types import LoadOptions, Model, SampleFailed
from harness.work import Shard

#: Space kept in the run directory so that a full disk can still be recorded as an interruption.
RESERVE = ".reserve"


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
    concurrency: list[int] | None = None  # load mode: one row per level and model (harness.load)
    progress: bool = True
    executor: Any = None  # None: this process; else an object with run() (harness.executors.ray_executor)
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    suite_overrides: dict[str, int] = field(default_factory=dict)  # recorded as suite.overrides
    partial: bool = False  # --limit dropped prompts


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


class DiskFull(Exception):
    """Writing the run directory failed for lack of space; carries the original error."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, DiskFull) or is_disk_full(exc)


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
        self.levels: dict[str, tuple[str, int]] = {}  # row name -> (spec, concurrency) of load levels
        if options.concurrency:
            self.levels = {level_name(s, n): (s, n) for s in model_specs for n in options.concurrency}
            self.model_specs = list(self.levels)
        self.device = options.device or self.suite.device
        self.metrics = select_metrics(self.suite, self.loaded.path, registry)
        if options.concurrency:
            self._add_load_metrics()
        self.outcomes: list[ModelOutcome] = []
        self.manifest: Manifest | None = None
        self.resources: dict[str, Any] | None = None
        self.summary: dict[str, Any] = {}  # summary.json content, set by finish()
        self.created = False  # this process made the directory (a failed start may remove it)
        threads = options.threads or self.suite.threads
        if threads:  # before the manifest records the environment, so it records what runs
            torch.set_num_threads(threads)

    def _add_load_metrics(self) -> None:
        """Load metrics are off by default; a run with load levels always computes them."""
        self.metrics.update({n: (self.registry.metric(n), {}) for n in LOAD_METRICS if n in self.registry.metrics})

    # ---------------------------------------------------------------- manifest
    def _settings(self) -> RunSettings:
        shard = self.options.shard
        return RunSettings(
            batch_size=self.options.batch_size,
            dtype=self.options.dtype or "float32",
            compile=self.options.compile,
            shard=None if shard is None else ShardSpec(index=shard.index, count=shard.count),
        )

    def _initial_manifest(self) -> Manifest:
        settings = self._settings()
        suite = SuiteRecord(
            name=self.suite.name,
            path=str(self.loaded.path),
            sha256=self.loaded.sha256,
            prompts_sha256=self.loaded.prompts_sha256,
            n_prompts=len(self.loaded.prompts),
            samples_per_prompt=self.suite.samples_per_prompt,
            sampling=self.suite.sampling.model_dump(),
            warmup=self.suite.warmup,
            definition={
                **self.suite.model_dump(exclude={"prompts"}),
                "prompts": [p.model_dump() for p in self.loaded.prompts],
            },
            overrides=dict(self.options.suite_overrides),
            partial=self.options.partial,
            **({"prompt_source": self.loaded.prompt_source} if self.loaded.prompt_source else {}),
        )
        return Manifest(
            format_version=records.FORMAT_VERSION,
            run_id=self.dir.name,
            status="running",
            created_at=_now(),
            finished_at=None,
            command=self.options.command,
            suite=suite,
            models=[self._new_entry(name) for name in self.model_specs],
            batch_size=settings.batch_size,
            dtype=settings.dtype,
            compile=settings.compile,
            shard=settings.shard,
            environment=describe_environment(self._driver_device()),
        )

    def _driver_device(self) -> str:
        """The device the manifest's environment names: resolved here, or as asked when an executor's
        workers resolve it on their own machines (a CPU-only driver of a GPU cluster)."""
        return self.device if self.options.executor is not None else str(resolve_device(self.device))

    def _new_entry(self, name: str) -> ModelEntry:
        spec, concurrency = self.levels.get(name, (name, None))
        entry = ModelEntry(name=name, spec=spec, status="pending", error=None, info=None)
        if concurrency is not None:  # set only for load levels: other manifests stay as they were
            entry.concurrency = concurrency
        return entry

    def _save_manifest(self) -> None:
        records.write_manifest(self.dir, self.manifest)

    # ---------------------------------------------------------------- inputs checked before the directory exists
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

        for spec in dict.fromkeys(self.levels.get(name, (name, 0))[0] for name in self.model_specs):
            backend = resolve_backend(spec, self.registry)
            if self.levels and not getattr(backend, "concurrent_requests", False):
                raise UserError(
                    f"model {spec}: --concurrency drives served models (openai:URL#MODEL); the {backend.name} "
                    "backend runs in this process one request at a time; serve it with 'harness serve' instead"
                )
            check = getattr(backend, "check_options", None)
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

    # ---------------------------------------------------------------- one model
    def work_items(self, model: str) -> list[tuple[Prompt, int]]:
        shard = self.options.shard
        return [
            (prompt, index)
            for prompt in self.loaded.prompts
            for index in range(self.suite.samples_per_prompt)
            if shard is None or shard.owns(model, prompt.id, index)
        ]

    def pending_items(self, model: str, done: set[tuple[str, str, int]]) -> list[tuple[Prompt, int]]:
        """The samples of ``model`` this session still has to make, in suite order (every executor asks here)."""
        return [(p, i) for p, i in self.work_items(model) if (model, p.id, i) not in done]

    def _run_model(
        self,
        name: str,
        done: set[tuple[str, str, int]],
        earlier: list[dict[str, Any]],
        out: SampleSink,
        model_out: records.JsonlAppender,
        resources: dict[str, Any],
        progress: Progress,
    ) -> ModelOutcome:
        entry = self.manifest.model(name)
        spec = entry.spec
        outcome = ModelOutcome(name=name, status="ok")
        t0 = time.perf_counter()
        reset_peak_rss()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        previous = entry.throughput or Throughput(batch_size=self.options.batch_size)
        tokens, generation_s = previous.tokens, previous.generation_s
        model = None
        try:
            model = load_model(spec, self.registry, self._load_options(), name=name)
            entry.info = model.info.to_dict()
            entry.load_s = elapsed_s(t0)
            items = self.pending_items(name, done)
            encoded = {p.id: encode_checked(model, p, self.loaded.path, spec) for p, _ in items}  # all, up front
            task = progress.add_task(name, total=len(items))
            result = generate_pass(
                model,
                self.loaded,
                items,
                encoded,
                self.metrics,
                resources,
                self.options.batch_size,
                out,
                lambda: progress.advance(task),
                entry.concurrency,
            )
            outcome.samples = result.samples
            tokens, generation_s = tokens + result.tokens, generation_s + result.generation_ns / 1e9
            if result.timing is not None:
                entry.timing = result.timing
            entry.info = model.info.to_dict()  # a served model adds what the server echoed while generating
            scoring = dict(resources)
            if entry.concurrency is not None:
                scoring["load"] = {
                    "concurrency": entry.concurrency,
                    "wall_s": result.wall_ns / 1e9,
                    "samples": result.samples,
                    "tokens": result.tokens,
                    "errors": result.failed,
                }
            score_model(model, self.metrics, earlier + result.records, scoring, self._peak_mem_mb(model), model_out)
            if result.failed:
                outcome.status = "failed"
                outcome.error = (
                    f"model {name}: {result.failed} of {len(items)} samples failed (first: {result.first_error}); "
                    f"the others are recorded; finish with: harness run --resume {self.dir}"
                )
        except SampleFailed as exc:  # the endpoint went away: keep what is recorded, --resume finishes
            outcome.status = "failed"
            outcome.error = (
                f"model {name}: {exc}; the samples so far are recorded; finish with: harness run --resume {self.dir}"
            )
        except (KeyboardInterrupt, Interrupted):
            outcome.status = "interrupted"
            raise
        except (OSError, UserError) as exc:
            if _is_disk_full(exc):
                outcome.status = "interrupted"
                raise DiskFull(str(exc)) from exc
            if isinstance(exc, UserError):
                outcome.status, outcome.error, outcome.input_error = "failed", str(exc), True
            else:
                outcome.status, outcome.error = "failed", self._crash(spec, exc)
        except Exception as exc:  # a crashing backend fails its model only; the other models still run
            outcome.status, outcome.error = "failed", self._crash(spec, exc)
        finally:
            outcome.wall_s = time.perf_counter() - t0
            entry.status, entry.error, entry.wall_s = outcome.status, outcome.error, round(outcome.wall_s, 3)
            entry.throughput = Throughput.of(self.options.batch_size, tokens, generation_s)
            if model is not None:
                model.close()
            try:
                self._checkpoint(out, model_out)
            except (OSError, UserError) as exc:
                if not _is_disk_full(exc):
                    raise
                entry.status = outcome.status = "interrupted"
                raise DiskFull(str(exc)) from exc
        return outcome

    def _checkpoint(self, *appenders: records.JsonlAppender | SampleSink) -> None:
        """Make the samples durable, then the manifest that may now say "ok" about them."""
        for appender in appenders:
            appender.sync()
        self._save_manifest()

    def _crash(self, spec: str, exc: Exception) -> str:
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in spec)
        with contextlib.suppress(UserError):  # the error line itself still reaches the manifest and terminal
            records.write_text_atomic(self.dir / f"error-{name}.txt", traceback.format_exc())
        return f"model {spec} crashed: {exc.__class__.__name__}: {exc} (traceback in the run directory)"

    @staticmethod
    def _peak_mem_mb(model: Model) -> float | None:
        if model.info.device == "remote":  # a served model: this process's memory says nothing about it
            server_peak = getattr(model, "peak_memory_mb", None)
            return server_peak() if server_peak is not None else None
        if model.info.device.startswith("cuda"):
            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mb()

    # ---------------------------------------------------------------- resume
    def _adopt_recorded_settings(self) -> None:
        """A resumed run keeps the batch size, dtype, compile flag and shard it started with (they change
        the numbers); a conflicting flag is an error."""
        recorded = self.manifest.settings
        if self.options.batch_size not in (1, recorded.batch_size):
            raise UserError(f"{self.dir}: was run with --batch-size {recorded.batch_size}; resume without --batch-size")
        if self.options.dtype not in (None, recorded.dtype):
            raise UserError(f"{self.dir}: was run with --dtype {recorded.dtype}; resume without --dtype")
        if self.options.compile and not recorded.compile:
            raise UserError(f"{self.dir}: was run without --compile; resume without --compile")
        given, shard = self.options.shard, recorded.shard
        if given is not None and (shard is None or (given.index, given.count) != (shard.index, shard.count)):
            recorded_text = "no shard" if shard is None else f"shard {shard.index}/{shard.count}"
            raise UserError(f"{self.dir}: was run with {recorded_text}; resume without --shard")
        self.options.batch_size, self.options.dtype, self.options.compile = (
            recorded.batch_size,
            recorded.dtype,
            recorded.compile,
        )
        self.options.shard = Shard(shard.index, shard.count) if shard else None

    def _prepare(self) -> tuple[set[tuple[str, str, int]], list[dict[str, Any]]]:
        """The manifest for this session, and the samples already done (validated, on a resume)."""
        done_records: list[dict[str, Any]] = []
        if self.resume:
            records.check_run_files(self.dir)  # also for callers that skip the CLI's check
            records.repair_torn_tail(self.dir / records.SAMPLES)
            old = records.load_run(self.dir, check_complete=False)
            if old.suite_sha256 != self.loaded.sha256:
                raise UserError(
                    f"{self.dir}: was run with a different suite (hash {old.suite_sha256[:12]}); "
                    "resume with the same suite file or start a new run"
                )
            self.manifest = old.manifest
            self._adopt_recorded_settings()
            if any(m.concurrency for m in self.manifest.models):
                self._add_load_metrics()
            known = set(self.manifest.model_names)
            self.manifest.models = self.manifest.models + [
                self._new_entry(s) for s in self.model_specs if s not in known
            ]
            self.model_specs = self.manifest.model_names
            self.manifest.status = "running"
            self.manifest.resumed_at = [*(self.manifest.resumed_at or []), _now()]
            done_records = old.samples
        elif self.manifest is None:
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
        records.write_metric_registry(self.dir, meta)
        self._save_manifest()
        return {(r["model"], r["prompt_id"], r["sample_index"]) for r in done_records}, done_records

    def _models_done(self, earlier: list[dict[str, Any]]) -> set[str]:
        """Models whose status is ok *and* whose samples are all on disk (a damaged tail re-runs them)."""
        membership = SuiteMembership(self.manifest)
        counts: dict[str, int] = {}
        for record in earlier:
            counts[record["model"]] = counts.get(record["model"], 0) + 1
        return {
            m.name
            for m in self.manifest.models
            if m.status == "ok" and counts.get(m.name, 0) == membership.expected(m.name)
        }

    # ---------------------------------------------------------------- orchestration
    def execute(self) -> int:
        """Run every model; returns the exit code.

        0 ok; 1 a model crashed; 2 a model could not run because of an input error (missing checkpoint,
        prompt too long...) or the disk filled up; 130 interrupted. The other models always run and keep
        their results.
        """
        with records.RunLock(self.dir):
            return self._execute_locked()

    def _reserve_space(self) -> None:
        """Keep a little space aside, so a full disk can still be written down as an interruption."""
        size = max(1 << 20, 4 * len(dump_json(self.manifest.to_json())))
        self._release_reserve()  # a fresh file: never write through a planted symlink or hard link
        try:
            fd = os.open(self.dir / RESERVE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                view = memoryview(b"\0" * size)
                while view:  # a short write means the disk is nearly full: the next one says so
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._release_reserve()
            if _is_disk_full(exc):
                raise UserError(f"{self.dir}: no space left on the device; free some space and retry") from None
            raise UserError(f"{self.dir}: cannot write ({exc.strerror}); choose another directory") from None

    def _release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.dir / RESERVE)

    def _start(self) -> tuple[set[tuple[str, str, int]], list[dict[str, Any]]]:
        """Prepare the directory; a new run that cannot even start leaves no directory behind."""
        try:
            if not self.resume:
                self.manifest = self._initial_manifest()
                self._reserve_space()
            prepared = self._prepare()
            if self.resume:
                self._reserve_space()
            return prepared
        except (UserError, OSError) as exc:
            if self.created:
                shutil.rmtree(self.dir, ignore_errors=True)
            if isinstance(exc, OSError):
                raise UserError(
                    f"{self.dir}: cannot write the run directory ({exc.strerror}); free space or choose another"
                ) from None
            raise

    def _execute_locked(self) -> int:
        done, earlier = self._start()
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
        models_done = self._models_done(earlier)
        resources = self.load_resources()
        status, disk_full = "complete", None
        progress = Progress(
            TextColumn("{task.description:>14}", markup=False),  # a model spec is user text, never markup
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
                records.JsonlAppender(self.dir / records.SAMPLES) as samples_out,
                records.JsonlAppender(self.dir / records.MODEL_METRICS) as model_out,
            ):
                out = SampleSink(samples_out, done)
                pending = [spec for spec in self.model_specs if spec not in models_done]
                if self.options.executor is not None:  # e.g. Ray: same sink and pending items, other machines
                    self.options.executor.run(self, pending, earlier, out, model_out, progress)  # fills outcomes
                else:
                    for spec in pending:
                        mine = [r for r in earlier if r["model"] == spec]
                        self.outcomes.append(self._run_model(spec, done, mine, out, model_out, resources, progress))
        except (KeyboardInterrupt, Interrupted):
            status = "interrupted"
        except (DiskFull, OSError, UserError) as exc:
            if not _is_disk_full(exc):
                raise
            status, disk_full = "interrupted", exc
        finally:
            signal.signal(signal.SIGTERM, previous)
            judge = resources.get("judge")
            if judge is not None:
                judge.close()
            self._release_reserve()  # gives a full disk room for the final manifest
        failed = [o for o in self.outcomes if o.status == "failed"]
        if status == "complete" and failed:
            status = "failed" if len(failed) == len(self.model_specs) else "complete_with_failures"
        self.finish(status)
        if disk_full is not None:
            kept = len(records.load_run(self.dir, check_complete=False).samples)
            raise UserError(
                f"{self.dir}: no space left on the device; the {kept} samples written so far are kept; "
                f"free some space and finish with: harness run --resume {self.dir}"
            )
        if status == "interrupted":
            return EXIT_INTERRUPTED
        if any(o.input_error for o in failed):
            return EXIT_INPUT
        return EXIT_REGRESSION if failed else EXIT_OK

    def finish(self, status: str) -> None:
        """Summaries and final manifest, written even after an interruption (from what exists).

        The manifest goes last: a run that says it finished always has its summaries. Summaries are
        derived data, so a disk too full for them still gets the manifest that says "interrupted".
        """
        self.manifest.status = status
        self.manifest.finished_at = _now()
        try:
            run = records.load_run(self.dir, check_complete=False)
            run.manifest = self.manifest
            self.summary = write_summaries(run)
        except UserError:
            if status != "interrupted":
                raise
        self._save_manifest()


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")
