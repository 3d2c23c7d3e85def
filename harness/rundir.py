"""Run directories: the only thing reports and gates read.

Layout (see docs/run-directory.md)::

    manifest.json        suite hash, model infos, versions, seeds, device, threads, commit, times, status
    samples.jsonl        one JSON object per sample, appended (flushed) as each sample finishes
    model_metrics.jsonl  one JSON object per model for model-level metrics (held-out bpb, memory)
    metrics.json         the metric registry seen by the run: unit, direction, level, kind
    summary.json / summary.csv   per model and metric: mean, median, p5, p95, std, 95% CI, n, missing
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

MANIFEST, SAMPLES, MODEL_METRICS, METRICS, SUMMARY_JSON, SUMMARY_CSV = (
    "manifest.json",
    "samples.jsonl",
    "model_metrics.jsonl",
    "metrics.json",
    "summary.json",
    "summary.csv",
)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and rename, so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class JsonlAppender:
    """Appends one JSON object per line; durable against a killed process at once, against a crashed OS
    at the next ``fsync``.

    Every line is flushed to the kernel before ``append`` returns, so ``kill -9`` (or any crash of this
    process) loses at most the line in flight. ``fsync`` (surviving power loss or a kernel crash) runs on
    the first append at least ``fsync_interval`` seconds after the previous one, on ``sync()`` (the runner
    calls it before every manifest update, so the manifest never claims samples the disk may not have) and
    on close. Per line it cost ~0.4 ms on a quiet disk and several ms on a busy one, which was most of the
    harness's own overhead for the small presets (docs/performance.md).
    """

    def __init__(self, path: Path, fsync_interval: float = 1.0) -> None:
        self.path = path
        self.fsync_interval = fsync_interval
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open across appends on purpose
        self._last_sync = time.monotonic()

    def append(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        self._handle.flush()
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_interval:
            os.fsync(self._handle.fileno())
            self._last_sync = now

    def sync(self) -> None:
        """Make every line appended so far durable now (before a manifest update that relies on them)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (from a hard kill) is skipped, not fatal."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # the sample in flight when the process died
                return
            raise UserError(f"{path}:{number}: corrupt JSON line ({exc.msg}); the run directory is damaged") from exc


@dataclass
class Run:
    """A finished (or partial) run directory loaded into memory."""

    path: Path
    manifest: dict[str, Any]
    samples: list[dict[str, Any]]
    model_metrics: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> unit, higher_is_better, level, kind

    @property
    def models(self) -> list[str]:
        """Model names in the order the run used them."""
        return [m["name"] for m in self.manifest.get("models", [])]

    @property
    def suite_sha256(self) -> str:
        return self.manifest["suite"]["sha256"]

    def sample_frame(self) -> pd.DataFrame:
        """One row per sample: identifiers plus one column per sample-level metric (NaN = missing)."""
        import pandas as pd  # only the readers of a run need it, not every command that imports rundir

        rows = []
        for record in self.samples:
            row = {
                k: record.get(k)
                for k in (
                    "model",
                    "prompt_id",
                    "category",
                    "sample_index",
                    "seed",
                    "prompt_text",
                    "output_text",
                    "eos_hit",
                    "batched",
                )
            }
            row.update({name: (float("nan") if value is None else value) for name, value in record["metrics"].items()})
            rows.append(row)
        return pd.DataFrame(rows)


def load_run(path: str | Path) -> Run:
    """Load a run directory, with a one-line error when it is not one."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path}: not a run directory (no {MANIFEST}); pass a directory written by 'harness run'")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{manifest_path}: invalid JSON ({exc.msg})") from exc
    metrics_path = path / METRICS
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
    return Run(
        path=path,
        manifest=manifest,
        samples=list(iter_jsonl(path / SAMPLES)),
        model_metrics=list(iter_jsonl(path / MODEL_METRICS)),
        metrics=metrics,
    )


def ensure_new_dir(path: Path, flag: str) -> Path:
    """Create ``path`` for a new run, refusing anything that exists and is not an empty directory."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{flag} {path}: exists and is not an empty directory; choose a new path")
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_dir(base: Path, suite_name: str) -> Path:
    """A fresh directory; ``mkdir`` without exist_ok means two concurrent runs can never share one."""
    base.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = base / f"{suite_name}-{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"{base}: could not create a unique run directory")


def repair_torn_tail(path: Path) -> None:
    """Drop a partial last line left by a hard kill, so appends start on a clean line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class RunLock:
    """An exclusive lock on a run directory, so two processes never write into the same one
    (two ``--resume`` of one directory, say). Released when the process ends, even by ``kill -9``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".lock"
        self._handle = None

    def __enter__(self) -> RunLock:
        self._handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run's lifetime
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            raise UserError(
                f"{self.path.parent}: in use by harness process {holder}; wait for it or use another directory"
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
