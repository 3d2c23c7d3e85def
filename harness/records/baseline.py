"""``baseline.json``: the compact, commit-friendly file a gate reads like a run, validated on read.

A baseline is the evidence a CI gate trusts. A value turned into ``null`` or a string by a bad merge
or a hand edit must not read as "missing" (the gate would then have nothing to compare and pass);
so every field is typed, every metric value is a finite number or ``null``, every status, kind and
direction is one the harness writes, and sample keys are unique. The layout (``format_version`` 1)::

    {"format": "tinylm-harness-baseline", "format_version": 1, "created_at": "...",
     "suite": {"name", "sha256", "prompts_sha256", "n_prompts", "samples_per_prompt", "sampling"},
     "models": {"10m": {ModelInfo...}},
     "metrics": {"tps": {"unit", "higher_is_better", "kind", "level"}},
     "rounds": [{"run_id", "source", "environment", "batch_size",
                 "models": {"10m": {"status": "ok",
                                    "columns": ["prompt_id", "sample_index", "tps", ...],
                                    "rows": [["p001", 0, 296.1, ...], ...],
                                    "model_metrics": {"heldout_bpb": 1.23}}}}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import DamagedRecordError, UserError
from harness.records.files import parse_json, write_text_atomic
from harness.records.manifest import describe_validation_error

FORMAT = "tinylm-harness-baseline"
FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class BaselineMetric(_Strict):
    unit: str = ""
    higher_is_better: bool | None
    kind: Literal["timing", "quality", "count"]
    level: Literal["sample", "model"]


class BaselineSuite(_Strict):
    name: str
    sha256: str = Field(min_length=1)
    prompts_sha256: str | None = None
    n_prompts: int | None = Field(default=None, ge=0)
    samples_per_prompt: int | None = Field(default=None, ge=1)
    sampling: dict[str, Any] | None = None


class BaselineModelBlock(_Strict):
    status: Literal["ok", "failed", "interrupted", "pending"]
    columns: list[str]
    rows: list[list[str | int | float | None]]
    model_metrics: dict[str, float | None] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _key_columns_first(cls, columns: list[str]) -> list[str]:
        if columns[:2] != ["prompt_id", "sample_index"]:
            raise ValueError("must start with 'prompt_id', 'sample_index'")
        if len(set(columns)) != len(columns):
            raise ValueError("a column is named twice")
        return columns

    @model_validator(mode="after")
    def _rows_match_columns(self) -> BaselineModelBlock:
        seen: set[tuple[str, int]] = set()
        for number, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"rows[{number}] has {len(row)} values for {len(self.columns)} columns")
            prompt_id, index, *values = row
            if not isinstance(prompt_id, str) or not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise ValueError(f"rows[{number}] must start with a prompt id (string) and a sample index (int >= 0)")
            if (prompt_id, index) in seen:
                raise ValueError(f"rows[{number}]: sample ({prompt_id}, {index}) appears twice")
            seen.add((prompt_id, index))
            for column, value in zip(self.columns[2:], values, strict=True):
                if value is not None and (isinstance(value, (str, bool)) or not isinstance(value, (int, float))):
                    raise ValueError(f"rows[{number}] column {column!r}: {value!r} is not a number or null")
        return self


class BaselineRound(_Strict):
    run_id: str
    source: str = ""
    environment: dict[str, Any] = Field(default_factory=dict)
    batch_size: int | None = Field(default=None, ge=1)
    timing_flags: dict[str, str] = Field(default_factory=dict)  # model -> "busy 48%": timing taken on a busy CPU
    hardware_flags: dict[str, str] = Field(default_factory=dict)  # model -> why: timing from several hardware kinds
    models: dict[str, BaselineModelBlock]


class BaselineFile(_Strict):
    format: Literal["tinylm-harness-baseline"]
    format_version: Literal[1]
    created_at: str | None = None
    suite: BaselineSuite
    models: dict[str, dict[str, Any]]
    metrics: dict[str, BaselineMetric]
    rounds: list[BaselineRound] = Field(min_length=1)

    @model_validator(mode="after")
    def _rounds_name_known_models(self) -> BaselineFile:
        for number, rnd in enumerate(self.rounds):
            for model in rnd.models:
                if model not in self.models:
                    raise ValueError(f"rounds[{number}] has model {model!r} that 'models' does not list")
        return self


def parse_baseline(data: Any, path: Path) -> BaselineFile:
    """Validate a parsed baseline file; one line naming the file and field on any problem."""
    where = str(path)
    if not isinstance(data, dict):
        raise UserError(f"{where}: not a harness baseline file (top level is not an object)")
    if data.get("format") != FORMAT:
        found = data.get("format")
        raise UserError(
            f"{where}: not a harness baseline file (format {found!r}); "
            f"make one with 'harness baseline export RUN_DIR -o {path.name}'"
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{where}: baseline format_version {data.get('format_version')!r} is not supported "
            f"(expected {FORMAT_VERSION})"
        )
    try:
        return BaselineFile.model_validate(data)
    except ValidationError as exc:
        raise DamagedRecordError(
            describe_validation_error(exc, where) + "; re-export it with 'harness baseline export'"
        ) from None


def read_baseline(path: Path) -> BaselineFile:
    """Read and validate ``baseline.json``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DamagedRecordError(f"{path}: not UTF-8 text; not a harness baseline file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read baseline ({exc.strerror})") from None
    return parse_baseline(parse_json(text, str(path)), Path(path))


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value)


def dumps_compact(data: Any, indent: int = 0) -> str:
    """JSON with objects indented but lists of scalars on one line: one sample per line in ``rows``."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(data, dict):
        if not data:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {dumps_compact(v, indent + 2)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(data, list) and data and not _is_scalar_list(data):
        items = [f"{inner}{dumps_compact(v, indent + 2)}" for v in data]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


def write_baseline_file(path: Path, data: dict[str, Any]) -> None:
    """Write a baseline atomically; what is written must read back (validated before it is written)."""
    parse_baseline(data, Path(path))
    write_text_atomic(path, dumps_compact(data) + "\n")
