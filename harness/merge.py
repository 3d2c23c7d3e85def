"""``harness merge``: join shard run directories into one run that reports and gates like a single run.

Shards come from ``harness run --shard K/N``: each owns a deterministic share of the
(model, prompt, sample) work and seeds every sample independently, so the union of the shards is
exactly the single-machine run's set of samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness import rundir
from harness.errors import UserError


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


def merge_runs(shard_dirs: list[Path], out: Path) -> Path:
    """Validate that the shards belong together and cover 1..N once each, then write the merged run."""
    from harness.summary import write_summaries  # pandas: only when merging

    runs = [rundir.load_run(d) for d in shard_dirs]
    first = runs[0]
    for run in runs[1:]:
        if run.suite_sha256 != first.suite_sha256:
            raise UserError(
                f"{run.path}: suite hash {run.suite_sha256[:12]} differs from {first.path} "
                f"({first.suite_sha256[:12]}); merge shards of one suite only"
            )
        if run.models != first.models:
            raise UserError(f"{run.path}: models {run.models} differ from {first.path} {first.models}")
        for option, default in (("dtype", "float32"), ("batch_size", 1), ("compile", False)):
            mine, theirs = run.manifest.get(option, default), first.manifest.get(option, default)
            if mine != theirs:
                raise UserError(
                    f"{run.path}: {option} {mine!r} differs from {first.path} ({theirs!r}); "
                    "merge shards run with the same options"
                )
    shards = [run.manifest.get("shard") for run in runs]
    if any(s is None for s in shards):
        bad = next(run.path for run, s in zip(runs, shards, strict=True) if s is None)
        raise UserError(f"{bad}: not a shard run (no --shard); merge only directories made with --shard K/N")
    counts = {s["count"] for s in shards}
    if len(counts) != 1:
        raise UserError(f"shards disagree on N: {sorted(counts)}; merge shards of one split")
    count = counts.pop()
    indices = sorted(s["index"] for s in shards)
    if indices != list(range(1, count + 1)):
        raise UserError(f"shards {indices} do not cover 1..{count} exactly once; add the missing shard directories")
    for run in runs:
        if run.manifest.get("status") not in ("complete", "complete_with_failures"):
            raise UserError(
                f"{run.path}: status {run.manifest.get('status')!r}; finish it with 'harness run --resume' first"
            )
    rundir.ensure_new_dir(out, "-o")

    order = {
        (m, p["id"], i): n
        for n, (m, p, i) in enumerate(
            (m, p, i)
            for m in first.models
            for p in first.manifest["suite"]["definition"]["prompts"]
            for i in range(first.manifest["suite"]["samples_per_prompt"])
        )
    }
    samples = sorted(
        (s for run in runs for s in run.samples),
        key=lambda r: order.get((r["model"], r["prompt_id"], r["sample_index"]), len(order)),
    )
    keys = [(r["model"], r["prompt_id"], r["sample_index"]) for r in samples]
    if len(set(keys)) != len(keys):
        raise UserError("the shards contain the same sample twice; were they made with different --shard splits?")
    with rundir.JsonlAppender(out / rundir.SAMPLES) as writer:
        for record in samples:
            writer.append(record)
    with rundir.JsonlAppender(out / rundir.MODEL_METRICS) as writer:
        for model in first.models:
            entries = [r for run in runs for r in run.model_metrics if r["model"] == model]
            if entries:
                writer.append(_merge_model_metrics(entries, first.metrics))
    rundir.write_json_atomic(out / rundir.METRICS, first.metrics)

    manifest = dict(first.manifest)
    manifest["run_id"] = out.name
    manifest["shard"] = None
    manifest["merged_from"] = [
        {
            "path": str(run.path),
            "shard": run.manifest["shard"],
            "run_id": run.manifest["run_id"],
            "environment": run.manifest["environment"],
        }
        for run in runs
    ]
    manifest["models"] = []
    for index in range(len(first.models)):
        entries = [run.manifest["models"][index] for run in runs]
        failed = [e for e in entries if e["status"] == "failed"]
        throughputs = [e.get("throughput") or {} for e in entries]
        tokens = sum(t.get("tokens", 0) for t in throughputs)
        seconds = sum(t.get("generation_s", 0.0) for t in throughputs)
        manifest["models"].append(
            {
                **entries[0],
                "status": "failed" if failed else "ok",
                "error": failed[0]["error"] if failed else None,
                "wall_s": round(sum(e.get("wall_s") or 0 for e in entries), 3),
                "load_s": round(sum(e.get("load_s") or 0 for e in entries), 3),
                # summed over shards: generation time on several machines, not a wall-clock span
                "throughput": {
                    "batch_size": throughputs[0].get("batch_size", 1),
                    "tokens": tokens,
                    "generation_s": round(seconds, 4),
                    "tokens_per_s": round(tokens / seconds, 2) if seconds else None,
                },
            }
        )
    manifest["created_at"] = min(run.manifest["created_at"] for run in runs)
    manifest["finished_at"] = max(run.manifest.get("finished_at") or "" for run in runs)
    manifest["status"] = (
        "complete" if all(m["status"] == "ok" for m in manifest["models"]) else "complete_with_failures"
    )
    rundir.write_json_atomic(out / rundir.MANIFEST, manifest)
    merged = rundir.load_run(out)
    write_summaries(merged)
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
