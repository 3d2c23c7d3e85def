"""``harness merge``: join shard run directories into one run that reports and gates like a single run.

Shards come from ``harness run --shard K/N``: each owns a deterministic share of the
(model, prompt, sample) work and seeds every sample independently, so the union of the shards is
exactly the single-machine run's set of samples.

The merged directory is built beside the target under a hidden name and renamed into place only
when every file (summaries included) is written: a merge killed at any point leaves no directory
that claims to be complete, and a retry starts afresh.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from harness import records
from harness.errors import UserError
from harness.records import Manifest, Run, Throughput

_STAGING_PREFIX = ".merging-"


def _merge_model_metrics(entries: list[dict], registry: dict[str, dict]) -> dict:
    """One model's model-level metrics over its shards.

    Quality ones (held-out bits per byte, judge scores) are the same computation on every shard: the first
    shard's value stands. Machine-dependent ones where lower is better (``peak_mem_mb``) are the maximum
    over the shards, the peak of the whole sweep; other timing ones keep the first shard's value.
    """
    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for entry in entries:
        errors = {**entry.get("metric_errors", {}), **errors}
        for name, value in entry["metrics"].items():
            meta = registry.get(name, {})
            peak = meta.get("kind") == "timing" and meta.get("higher_is_better") is False
            if name not in values or values[name] is None:
                values[name] = value
            elif peak and value is not None:
                values[name] = max(values[name], value)
    return {"model": entries[0]["model"], "metrics": values, "metric_errors": errors}


def check_shards(runs: list[Run]) -> None:
    """The shards must be of one suite, models and settings, cover 1..N once each, and be finished."""
    first = runs[0]
    for run in runs[1:]:
        if run.suite_sha256 != first.suite_sha256:
            raise UserError(
                f"{run.path}: suite hash {run.suite_sha256[:12]} differs from {first.path} "
                f"({first.suite_sha256[:12]}); merge shards of one suite only"
            )
        if run.models != first.models:
            raise UserError(f"{run.path}: models {run.models} differ from {first.path} {first.models}")
        for option, mine, theirs in run.manifest.settings.differences(first.manifest.settings):
            raise UserError(
                f"{run.path}: {option} {mine!r} differs from {first.path} ({theirs!r}); "
                "merge shards run with the same options"
            )
    for run in runs:
        if run.manifest.shard is None:
            raise UserError(f"{run.path}: not a shard run (no --shard); merge only directories made with --shard K/N")
    counts = {run.manifest.shard.count for run in runs}
    if len(counts) != 1:
        raise UserError(f"shards disagree on N: {sorted(counts)}; merge shards of one split")
    count = counts.pop()
    indices = sorted(run.manifest.shard.index for run in runs)
    if indices != list(range(1, count + 1)):
        raise UserError(f"shards {indices} do not cover 1..{count} exactly once; add the missing shard directories")
    for run in runs:
        if run.manifest.status not in ("complete", "complete_with_failures"):
            raise UserError(f"{run.path}: status {run.manifest.status!r}; finish it with 'harness run --resume' first")


def _merged_manifest(runs: list[Run], run_id: str) -> Manifest:
    first = runs[0]
    manifest = first.manifest.model_copy(deep=True)
    manifest.run_id = run_id
    manifest.shard = None
    manifest.merged_from = [
        {
            "path": str(run.path),
            "shard": run.manifest.shard.to_json(),
            "run_id": run.manifest.run_id,
            "environment": run.manifest.environment,
        }
        for run in runs
    ]
    merged_models = []
    for index in range(len(first.models)):
        entries = [run.manifest.models[index] for run in runs]
        failed = [e for e in entries if e.status == "failed"]
        entry = entries[0].model_copy(deep=True)
        entry.status = "failed" if failed else "ok"
        entry.error = failed[0].error if failed else None
        entry.wall_s = round(sum(e.wall_s or 0 for e in entries), 3)
        entry.load_s = round(sum(e.load_s or 0 for e in entries), 3)
        entry.throughput = Throughput.combine([e.throughput for e in entries if e.throughput is not None])
        busy = [e.timing for e in entries if e.timing and e.timing.get("contended")]
        entry.timing = busy[0] if busy else entries[0].timing  # one busy shard flags the merged timing
        merged_models.append(entry)
    manifest.models = merged_models
    manifest.created_at = min(run.manifest.created_at for run in runs)
    manifest.finished_at = max(run.manifest.finished_at or "" for run in runs)
    manifest.status = "complete" if all(m.status == "ok" for m in merged_models) else "complete_with_failures"
    return manifest


def _write_merged(runs: list[Run], staging: Path, run_id: str) -> None:
    from harness.summary import write_summaries  # pandas: only when merging

    first = runs[0]
    order: dict[tuple[str, str, int], int] = {}
    for model in first.models:
        for prompt in first.manifest.suite.definition.prompts:
            for index in range(first.manifest.suite.samples_per_prompt):
                order[(model, prompt.id, index)] = len(order)
    samples = sorted(
        (s for run in runs for s in run.samples),
        key=lambda r: order.get((r["model"], r["prompt_id"], r["sample_index"]), len(order)),
    )
    keys = [(r["model"], r["prompt_id"], r["sample_index"]) for r in samples]
    if len(set(keys)) != len(keys):
        raise UserError("the shards contain the same sample twice; were they made with different --shard splits?")
    with records.JsonlAppender(staging / records.SAMPLES) as writer:
        for record in samples:
            writer.append(record)
    with records.JsonlAppender(staging / records.MODEL_METRICS) as writer:
        for model in first.models:
            entries = [r for run in runs for r in run.model_metrics if r["model"] == model]
            if entries:
                writer.append(_merge_model_metrics(entries, first.metrics))
    records.write_metric_registry(staging, first.metrics)
    manifest = _merged_manifest(runs, run_id)
    unfinished = manifest.model_copy(update={"status": "running"})
    records.write_manifest(staging, unfinished)  # summaries read it; "running" until they exist
    merged = records.load_run(staging, check_complete=False)
    merged.manifest = manifest
    write_summaries(merged)
    records.write_manifest(staging, manifest)


def _remove_stale_staging(out: Path) -> None:
    """Staging directories of merges that were killed (their process is gone) are removed."""
    parent = out.parent if str(out.parent) else Path(".")
    for candidate in parent.glob(f".{out.name}{_STAGING_PREFIX}*"):
        pid = candidate.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def merge_runs(shard_dirs: list[Path], out: Path) -> Path:
    """Validate that the shards belong together and cover 1..N once each, then write the merged run."""
    records.check_output_dir(out, "-o")
    runs = [records.load_run(d) for d in shard_dirs]
    check_shards(runs)
    _remove_stale_staging(out)
    staging = out.with_name(f".{out.name}{_STAGING_PREFIX}{os.getpid()}")
    try:
        staging.mkdir(parents=True)
        _write_merged(runs, staging, out.name)
        records.check_output_dir(out, "-o")  # still absent or empty: nothing raced us to it
        os.rename(staging, out)  # atomic; replaces an empty directory
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(
            f"-o {out}: cannot write the merged run ({exc.strerror}); free space or choose another path"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def add_commands(app: typer.Typer) -> None:
    @app.command()
    def merge(
        shards: Annotated[list[Path], typer.Argument(help="Shard run directories (from harness run --shard K/N).")],
        out: Annotated[Path, typer.Option("-o", "--out", help="Merged run directory to create.")],
    ) -> None:
        """Join shard run directories into one run directory."""
        path = merge_runs(shards, out)
        typer.echo(f"merged {len(shards)} shards into {path}")
