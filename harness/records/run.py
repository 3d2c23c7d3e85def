"""A run directory: the only thing reports, gates, exports and merges read.

Layout (docs/run-directory.md)::

    manifest.json        suite identity, model infos, settings, environment, times, status
    samples.jsonl        one JSON object per sample, appended (flushed) as each sample finishes
    model_metrics.jsonl  one JSON object per model for model-level metrics (held-out bpb, memory)
    metrics.json         the metric registry seen by the run: unit, direction, level, kind
    summary.json / summary.csv   per model and metric: mean, median, p5, p95, std, 95% CI, n, missing

:func:`load_run` validates everything it returns (types, finite numbers, unique sample keys, samples
that belong to the run's suite, a finished run that has all its samples and its summaries), so no
reader ever sees a damaged directory as data.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import DamagedRecordError, UserError
from harness.records.files import check_output_dir, read_json, write_json_atomic, write_text_atomic
from harness.records.manifest import Manifest, parse_manifest
from harness.records.samples import SuiteMembership, read_metric_registry, read_model_metrics, read_samples

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

_FRAME_COLUMNS = (
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


@dataclass
class Run:
    """A finished (or partial) run directory loaded into memory and validated."""

    path: Path
    manifest: Manifest
    samples: list[dict[str, Any]]
    model_metrics: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> unit, higher_is_better, level, kind

    @property
    def models(self) -> list[str]:
        """Model names in the order the run used them."""
        return self.manifest.model_names

    @property
    def suite_sha256(self) -> str:
        return self.manifest.suite.sha256

    def timing_flags(self) -> dict[str, dict[str, str]]:
        """Models whose timing window the contention probe judged busy: {model: {"flag", "reason"}}.

        Their timing metrics are flagged wherever they are shown (terminal table, report, gate output);
        the numbers are kept, because a busy CPU is a fact about the measurement, not a reason to lose it.
        """
        from harness.contention import flag_text

        return {
            entry.name: {"flag": flag_text(entry.timing) or "busy", "reason": str(entry.timing.get("reason", ""))}
            for entry in self.manifest.models
            if entry.timing and entry.timing.get("contended")
        }

    def hardware_flags(self) -> dict[str, dict[str, str]]:
        """Models whose samples ran on more than one kind of hardware: {model: {"flag", "reason"}}.

        Shown beside the busy-CPU flags (terminal table, report, gate output): a timing mean over two
        kinds of machine describes neither (``--executor ray`` on a mixed cluster, a resume elsewhere).
        """
        from harness.node import hardware_flags

        return hardware_flags(self.samples)

    def sample_frame(self) -> pd.DataFrame:
        """One row per sample: identifiers plus one column per sample-level metric (NaN = missing)."""
        import pandas as pd  # only the readers of a run need it, not every command that imports records

        rows = []
        for record in self.samples:
            row = {k: record.get(k) for k in _FRAME_COLUMNS}
            row.update({name: (float("nan") if value is None else value) for name, value in record["metrics"].items()})
            rows.append(row)
        return pd.DataFrame(rows)


def read_manifest(path: Path) -> Manifest:
    """The validated manifest of the run directory ``path``."""
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path}: not a run directory (no {MANIFEST}); pass a directory written by 'harness run'")
    return parse_manifest(read_json(manifest_path, "run directory"), str(manifest_path))


def _check_complete(run: Run) -> None:
    """A run that says it finished must hold every sample its ok models made, and its summaries."""
    membership = SuiteMembership(run.manifest)
    counts: dict[str, int] = {}
    for record in run.samples:
        counts[record["model"]] = counts.get(record["model"], 0) + 1
    for entry in run.manifest.models:
        if entry.status == "ok":
            expected = membership.expected(entry.name)
            if counts.get(entry.name, 0) != expected:
                raise DamagedRecordError(
                    f"{run.path / SAMPLES}: model {entry.name} has {counts.get(entry.name, 0)} samples but the "
                    f"manifest says it finished {expected}; the run directory is damaged (re-run it)"
                )
    if run.manifest.finished:
        for name in (SUMMARY_JSON, SUMMARY_CSV):
            if not (run.path / name).is_file():
                raise DamagedRecordError(
                    f"{run.path}: status {run.manifest.status!r} but {name} is missing; the run directory is "
                    "incomplete (an interrupted merge or copy); re-create it"
                )


def load_run(path: str | Path, check_complete: bool = True) -> Run:
    """Load and validate a run directory; one-line :class:`UserError` for anything damaged.

    ``check_complete=False`` is for the writer itself (resume, finishing summaries), which reads a
    directory whose manifest may say "ok" before its summaries exist.
    """
    path = Path(path)
    manifest = read_manifest(path)
    run = Run(
        path=path,
        manifest=manifest,
        samples=read_samples(path / SAMPLES, manifest),
        model_metrics=read_model_metrics(path / MODEL_METRICS, set(manifest.model_names)),
        metrics=read_metric_registry(path / METRICS),
    )
    if check_complete:
        _check_complete(run)
    return run


def write_manifest(path: Path, manifest: Manifest) -> None:
    write_json_atomic(Path(path) / MANIFEST, manifest.to_json())


def write_metric_registry(path: Path, metrics: dict[str, dict[str, Any]]) -> None:
    write_json_atomic(Path(path) / METRICS, metrics)


def write_summary_files(path: Path, summary: dict[str, Any], csv_text: str) -> None:
    write_json_atomic(Path(path) / SUMMARY_JSON, summary)
    write_text_atomic(Path(path) / SUMMARY_CSV, csv_text)


def check_run_files(path: Path) -> None:
    """Before a resume writes into ``path``: every file it appends to or replaces is a plain file.

    A ``samples.jsonl`` planted as a symlink would otherwise have its target's tail cut by the torn-line
    repair and lines appended to it; a FIFO would block the reader forever.
    """
    import stat

    for name in (MANIFEST, SAMPLES, MODEL_METRICS, METRICS, SUMMARY_JSON, SUMMARY_CSV, ".reserve"):
        try:
            info = (Path(path) / name).lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UserError(f"{Path(path) / name}: cannot use ({exc.strerror})") from None
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            raise DamagedRecordError(
                f"{Path(path) / name}: is {kind}; a run directory holds only files the harness wrote (remove it)"
            )


def ensure_new_dir(path: Path, flag: str) -> Path:
    """Create ``path`` for a new run, refusing anything that exists and is not an empty directory."""
    check_output_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot create ({exc.strerror}); choose another path") from None
    return path


def new_run_dir(base: Path, suite_name: str) -> Path:
    """A fresh directory; ``mkdir`` without exist_ok means two concurrent runs can never share one."""
    check_output_dir(base, "runs directory") if not base.is_dir() else None
    try:
        base.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            path = base / f"{suite_name}-{stamp}-{secrets.token_hex(3)}"
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise UserError(f"{base}: cannot create a run directory ({exc.strerror}); pass --out") from None
    raise UserError(f"{base}: could not create a unique run directory")
