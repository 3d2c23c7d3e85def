"""Prompts from a dataset: ``prompts: {dataset: ORG/NAME or a local path, split, column, ...}`` in a suite.

Why through the ``datasets`` library: researchers keep prompt sets on the Hugging Face Hub or as local
parquet/JSONL/CSV files, and ``datasets`` already reads all of them, caches Hub downloads (and honours
``HF_HUB_OFFLINE``) and fingerprints what it read. The harness only maps rows to prompts and records where
they came from (``suite.prompt_source`` in the manifest: dataset, revision, split, fingerprint, rows); the
prompts themselves are stored in the manifest and hashed into the suite identity like inline ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UserError, did_you_mean

#: Files ``datasets`` reads with a packaged builder, by suffix.
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}
MAX_DATASET_PROMPTS = 1_000_000
EXTRA_HINT = "pip install 'tinylm-harness[datasets]'"


class DatasetPrompts(BaseModel):
    """The ``prompts:`` mapping form of a suite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    dataset: str = Field(min_length=1)  # a Hub id (ORG/NAME) or a local file/directory, relative to the suite
    split: str = "train"
    column: str = "text"
    id_column: str | None = None  # default: the row number ("row-0", "row-1", ...)
    category_column: str | None = None
    category: str = "general"  # every prompt's category when there is no category column
    revision: str | None = None
    limit: int | None = Field(None, ge=1, le=MAX_DATASET_PROMPTS)  # the first N rows of the split


def _local_target(spec: DatasetPrompts, suite_path: Path) -> Path | None:
    """The local file or directory the spec names, if any (relative paths are relative to the suite file)."""
    candidate = Path(spec.dataset).expanduser()
    if not candidate.is_absolute():
        candidate = suite_path.parent / candidate
    looks_local = spec.dataset.startswith((".", "/", "~")) or candidate.exists()
    return candidate if looks_local else None


def _load(spec: DatasetPrompts, suite_path: Path) -> tuple[Any, dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise UserError(f"{suite_path}: prompts from a dataset need the datasets library; {EXTRA_HINT}") from None
    datasets.disable_progress_bars()
    local = _local_target(spec, suite_path)
    where = f"{suite_path}: prompts.dataset {spec.dataset!r}"
    try:
        if local is not None:
            if not local.exists():
                raise UserError(f"{where}: {local} does not exist")
            if local.is_file():
                builder = LOCAL_BUILDERS.get(local.suffix.lower())
                if builder is None:
                    raise UserError(
                        f"{where}: cannot read {local.suffix or 'this'} files; use {', '.join(LOCAL_BUILDERS)}"
                    )
                dataset = datasets.load_dataset(builder, data_files={spec.split: str(local)}, split=spec.split)
            else:
                dataset = datasets.load_dataset(str(local), split=spec.split)
        else:
            dataset = datasets.load_dataset(spec.dataset, split=spec.split, revision=spec.revision)
    except UserError:
        raise
    except ValueError as exc:  # unknown split, bad file contents
        raise UserError(f"{where}: {str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}") from None
    except Exception as exc:  # DatasetNotFoundError, ConnectionError offline, FileNotFoundError...
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(
            f"{where}: cannot load it ({exc.__class__.__name__}: {detail}); check the name, split and revision, "
            "or that it is in the Hugging Face cache when HF_HUB_OFFLINE is set"
        ) from None
    source = {
        "dataset": spec.dataset if local is None else str(local),
        "revision": spec.revision,
        "split": spec.split,
        "column": spec.column,
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "rows": len(dataset),
    }
    return dataset, source


def load_dataset_prompts(spec: DatasetPrompts, suite_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows mapped to prompt dicts (``id``, ``category``, ``text``; validated by the suite loader), and
    what to record about their source."""
    dataset, source = _load(spec, suite_path)
    columns = list(dataset.column_names)
    for field, name in (
        ("column", spec.column),
        ("id_column", spec.id_column),
        ("category_column", spec.category_column),
    ):
        if name is not None and name not in columns:
            raise UserError(
                f"{suite_path}: prompts.{field} {name!r} is not a column of {spec.dataset}"
                f"{did_you_mean(name, columns)}; columns: {', '.join(columns)}"
            )
    rows = min(len(dataset), spec.limit or MAX_DATASET_PROMPTS)
    if len(dataset) > rows and spec.limit is None:
        raise UserError(
            f"{suite_path}: {spec.dataset} has {len(dataset):,} rows; more than {MAX_DATASET_PROMPTS:,} prompts needs "
            "prompts.limit"
        )
    subset = dataset.select(range(rows))
    prompts = []
    for index, row in enumerate(subset):
        text = row[spec.column]
        if not isinstance(text, str):
            raise UserError(
                f"{suite_path}: row {index} of {spec.dataset}: column {spec.column!r} holds "
                f"{type(text).__name__}, not text"
            )
        prompts.append(
            {
                "id": str(row[spec.id_column]) if spec.id_column else f"row-{index}",
                "category": str(row[spec.category_column]) if spec.category_column else spec.category,
                "text": text,
            }
        )
    source["limit"] = spec.limit
    return prompts, source
