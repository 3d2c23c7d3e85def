"""``harness run --executor ray``: the run's samples made on a Ray cluster, streamed into one run directory.

How the work splits: each model's pending samples (``SuiteRun.pending_items``: what the suite, the shard
and the samples already on disk leave) are cut into units, contiguous blocks of the suite's prompts, about
``UNITS_PER_SLOT`` per slot of the cluster (a slot is the CPUs one unit asks for, or a GPU), each a
multiple of the batch size so that batches are the ones a local run makes. Each unit is a Ray task
(a streaming generator) that asks for ``threads`` CPUs and, on CUDA, one GPU. The driver (this process)
appends every sample as it arrives through the run's :class:`~harness.sample_sink.SampleSink`, so a
lost worker's unit, retried by Ray, cannot record a sample twice, and a killed driver leaves a directory
that ``--resume`` (with or without Ray) completes. When a model's units are done, one more task scores it
(model-level metrics), then the manifest says ``ok``.

Seeds are per sample (:func:`harness.work.derive_seed`), so every sample equals the one a local run
makes, given the same threads and batch size. Ray is imported only here, when such a run starts.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.executors.ray_worker import UnitJob, run_unit, score_unit
from harness.records import Throughput

if TYPE_CHECKING:
    from rich.progress import Progress

    from harness.records import JsonlAppender
    from harness.runner import SuiteRun
    from harness.sample_sink import SampleSink

UNITS_PER_SLOT = 2  # a few units per slot: a slow node or a retried unit does not leave the rest idle
MAX_RETRIES = 3  # Ray re-runs a unit whose worker process or node died this many times
WAIT_S = 1.0
RAY_EXTRA = "pip install 'tinylm-harness[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, an optional extra: {RAY_EXTRA}") from None
    return ray


@dataclass
class _ModelState:
    spec: str
    started: float
    units: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    generation_ns: int = 0
    timings: list[dict[str, Any]] = field(default_factory=list)
    failed: bool = False
    finished: bool = False  # its outcome is recorded (ok or failed)
    task: Any = None


class RayExecutor:
    """Connects to (or starts) Ray, then runs the pending models of a :class:`SuiteRun` on it."""

    def __init__(self, address: str | None = None, plugins_dir: Path | None = None, device: str = "auto") -> None:
        self.address = address
        self.plugins_dir = plugins_dir
        self.device = device
        self.ray: Any = None
        self.stats: dict[str, int] = {"units": 0, "duplicates_dropped": 0}

    # ---------------------------------------------------------------- cluster
    def connect(self) -> None:
        """Join the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``) or start a local
        Ray; before the run directory exists, so a wrong address leaves nothing behind."""
        if self.device.startswith("cuda:"):
            raise UserError(
                f"--device {self.device}: with --executor ray use --device cuda (Ray gives each unit its own GPU)"
            )
        ray = import_ray()
        if self.address not in (None, "auto"):
            _check_reachable(self.address)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning"}
        if self.address is None:
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=self.address, **kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError... depending on how it fails
            where = f"--ray-address {self.address}" if self.address else "--executor ray"
            reason = " ".join(str(exc).split())[:300]
            raise UserError(
                f"{where}: cannot start or join Ray ({exc.__class__.__name__}: {reason}); "
                "check the address ('ray status' on the head node) or omit --ray-address for a local Ray"
            ) from None
        self.ray = ray

    def close(self) -> None:
        if self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the cluster that made the samples."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {"kind": "ray", "address": self.address, "nodes": len(nodes), **self.stats}

    def _slots(self, cpus: int, gpu: bool) -> int:
        resources = self.ray.cluster_resources()
        if gpu:
            return max(1, int(resources.get("GPU", 0)))
        return max(1, int(resources.get("CPU", 1) // cpus))

    # ---------------------------------------------------------------- the run
    def run(
        self,
        suite_run: SuiteRun,
        specs: list[str],
        earlier: list[dict[str, Any]],
        sink: SampleSink,
        model_out: JsonlAppender,
        progress: Progress,
    ) -> None:
        """Make every pending sample of ``specs`` on the cluster; appends each model's outcome to the run."""
        ray = self.ray
        options = suite_run._load_options()
        cpus = options.threads or 1
        gpu = str(options.device).startswith("cuda") or (
            options.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0
        )
        resources = suite_run.load_resources()
        job = ray.put(
            UnitJob(
                loaded=suite_run.loaded,
                load_options=options,
                batch_size=suite_run.options.batch_size,
                plugins_dir=str(self.plugins_dir) if self.plugins_dir else None,
                cwd=os.getcwd(),
                reference_texts=resources.get("reference_texts"),
                judge=suite_run.suite.judge if "judge" in resources else None,
            )
        )
        request = {"num_cpus": cpus, "num_gpus": 1 if gpu else 0, "max_retries": MAX_RETRIES}
        unit_task = ray.remote(run_unit).options(**request)
        score_task = ray.remote(score_unit).options(**request)
        slots = self._slots(cpus, gpu)
        streams: dict[Any, str] = {}
        scores: dict[Any, str] = {}
        states: dict[str, _ModelState] = {}
        try:
            for spec in specs:
                state = states[spec] = _ModelState(spec, time.perf_counter())
                state.records = [r for r in earlier if r["model"] == spec]
                items = suite_run.pending_items(spec, sink.done)
                state.task = progress.add_task(spec, total=len(items))
                for block in _blocks(items, suite_run.options.batch_size, UNITS_PER_SLOT * slots):
                    streams[unit_task.remote(job, spec, [(p.id, i) for p, i in block])] = spec
                    state.units += 1
                self.stats["units"] += state.units
                if state.units == 0:  # every sample on disk already: only the scoring is left
                    scores[score_task.remote(job, spec, state.records)] = spec
            while streams or scores:
                # a bounded wait, so that SIGTERM / Ctrl-C are handled between waits, not after the next sample
                ready, _ = ray.wait([*streams, *scores], num_returns=1, timeout=WAIT_S)
                for waitable in ready:
                    if waitable in scores:
                        self._scored(suite_run, states[scores.pop(waitable)], waitable, sink, model_out)
                    elif self._advance(suite_run, states[streams[waitable]], waitable, sink, progress):
                        state = states[streams.pop(waitable)]
                        state.units -= 1
                        if state.failed:
                            self._cancel([g for g, s in streams.items() if s == state.spec], streams)
                        elif state.units == 0:
                            scores[score_task.remote(job, state.spec, state.records)] = state.spec
        except BaseException:  # interrupted, disk full: stop the cluster's work, record who was cut short
            self._cancel([*streams, *scores], {})
            for state in states.values():
                if not state.finished:
                    suite_run.manifest.model(state.spec).status = "interrupted"
            raise
        finally:
            self.stats["duplicates_dropped"] = sink.duplicates
            with contextlib.suppress(Exception):  # a cluster gone mid-run still leaves a resumable directory
                suite_run.manifest.executor = self.describe()

    def _cancel(self, waitables: list[Any], streams: dict[Any, str]) -> None:
        for waitable in waitables:
            streams.pop(waitable, None)
            with contextlib.suppress(Exception):  # already finished, or the cluster is gone: nothing to stop
                self.ray.cancel(waitable, force=False)

    def _advance(
        self, suite_run: SuiteRun, state: _ModelState, stream: Any, sink: SampleSink, progress: Progress
    ) -> bool:
        """Take the next item of a unit's stream; True when the unit is over (finished or failed)."""
        try:
            ref = next(stream)
            kind, payload = self.ray.get(ref)
        except StopIteration:
            return True
        except Exception as exc:  # the unit raised, or Ray gave up on it after MAX_RETRIES lost workers
            if not state.failed:
                self._fail(suite_run, state, exc)
            return True
        if state.failed:
            return False
        entry = suite_run.manifest.model(state.spec)
        if kind == "info":
            entry.info = payload["info"]
            if payload["load_s"] is not None:
                entry.load_s = max(entry.load_s or 0.0, payload["load_s"])
        elif kind == "sample":
            if sink.append(payload):
                state.records.append(payload)
                progress.advance(state.task)
        elif kind == "done":
            state.tokens += payload["tokens"]
            state.generation_ns += payload["generation_ns"]
            if payload["timing"] is not None:
                state.timings.append(payload["timing"])
        return False

    def _fail(self, suite_run: SuiteRun, state: _ModelState, exc: BaseException) -> None:
        """A unit's error fails its model (the others keep running), as a local run does."""
        from harness.runner import ModelOutcome

        cause = getattr(exc, "cause", None) or exc
        state.failed = True
        outcome = ModelOutcome(name=state.spec, status="failed")
        if isinstance(cause, UserError):
            outcome.error, outcome.input_error = str(cause), True
        else:
            outcome.error = suite_run._crash(state.spec, cause)
        self._finish(suite_run, state, outcome)

    def _scored(
        self, suite_run: SuiteRun, state: _ModelState, ref: Any, sink: SampleSink, model_out: JsonlAppender
    ) -> None:
        from harness.runner import ModelOutcome

        try:
            line = self.ray.get(ref)
        except Exception as exc:
            self._fail(suite_run, state, exc)
            return
        if line is not None:
            model_out.append(line)
        outcome = ModelOutcome(name=state.spec, status="ok")
        self._finish(suite_run, state, outcome, sink, model_out)

    def _finish(self, suite_run: SuiteRun, state: _ModelState, outcome: Any, *appenders: Any) -> None:
        """Record the model's outcome, throughput and timing in the manifest, after its samples are durable."""
        entry = suite_run.manifest.model(state.spec)
        outcome.samples = len(state.records)
        outcome.wall_s = time.perf_counter() - state.started
        previous = entry.throughput or Throughput(batch_size=suite_run.options.batch_size)
        entry.throughput = Throughput.of(
            suite_run.options.batch_size,
            previous.tokens + state.tokens,
            previous.generation_s + state.generation_ns / 1e9,
        )
        busy = [t for t in state.timings if t.get("contended")]
        if state.timings:  # one busy unit flags the model's timing, as one busy shard does in a merge
            entry.timing = busy[0] if busy else state.timings[0]
        entry.status, entry.error, entry.wall_s = outcome.status, outcome.error, round(outcome.wall_s, 3)
        state.finished = True
        suite_run.outcomes.append(outcome)
        suite_run._checkpoint(*appenders) if appenders else suite_run._save_manifest()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse an address nothing listens on at once: Ray itself retries a dead GCS for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(
            f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the cluster "
            "('ray start --head') or check the address ('ray status' on the head node)"
        ) from None


def _blocks(items: list[Any], batch_size: int, target: int) -> list[list[Any]]:
    """Contiguous blocks of ``items``, about ``target`` of them, each a multiple of ``batch_size`` long."""
    if not items:
        return []
    batches = math.ceil(len(items) / batch_size)
    size = batch_size * math.ceil(batches / max(1, target))
    return [items[start : start + size] for start in range(0, len(items), size)]
