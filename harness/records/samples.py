"""``samples.jsonl``, ``model_metrics.jsonl`` and ``metrics.json``: validated line by line.

A sample line is evidence: summaries, reports and gates average it. So a line of the wrong type, a
non-finite value, a second copy of a sample, or a sample of another suite is refused with the file,
line and field, instead of quietly moving a mean (a resume once counted n = 22 for 16 samples).
Records stay plain dicts after validation: the report and metrics read them by key, and the sample
format is documented field by field in docs/run-directory.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from harness.errors import DamagedRecordError
from harness.records.files import read_json, read_jsonl
from harness.records.manifest import Manifest, describe_validation_error
from harness.work import Shard, derive_seed

SampleKey = tuple[str, str, int]  # (model, prompt_id, sample_index)
MetricValues = dict[str, float | None]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class SampleRecord(_Strict):
    """One generated sample; see docs/run-directory.md for every field's meaning."""

    suite: str
    model: str = Field(min_length=1)
    prompt_id: str = Field(min_length=1)
    sample_index: int = Field(ge=0)
    category: str | None = None
    seed: int | None = None
    prompt_text: str | None = None
    prompt_tokens: int | None = Field(default=None, ge=0)
    output_text: str | None = None
    output_ids: list[int] | None = None
    output_tokens: list[str] | None = None  # each output id decoded alone (the report's token view)
    eos_hit: bool | None = None
    stop_reason: str | None = None
    token_times_ms: list[float] | None = None
    end_ms: float | None = None
    logprobs: list[float | None] | None = None
    batched: bool | None = None
    flags: list[str] | None = None
    node: dict[str, str | None] | None = None  # the machine that made it (harness.node): host, cpu, gpu
    metrics: MetricValues
    metric_errors: dict[str, str] = Field(default_factory=dict)


class ModelMetricsRecord(_Strict):
    model: str = Field(min_length=1)
    metrics: MetricValues
    metric_errors: dict[str, str] = Field(default_factory=dict)


class MetricMetaRecord(_Strict):
    """One entry of metrics.json: how to read a metric (its direction is what a gate calls a regression)."""

    unit: str = ""
    higher_is_better: bool | None = None
    level: Literal["sample", "model"] = "sample"
    kind: Literal["timing", "quality", "count"] = "quality"
    description: str | None = None
    plugin: str | None = None


_METRICS_FILE = TypeAdapter(dict[str, MetricMetaRecord], config=ConfigDict(strict=True))


def _validated(model: type[_Strict], value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DamagedRecordError(f"{where}: expected a JSON object, got {type(value).__name__}; the run is damaged")
    try:
        model.model_validate(value)
    except ValidationError as exc:
        raise DamagedRecordError(describe_validation_error(exc, where) + "; the run directory is damaged") from None
    return value


class SuiteMembership:
    """Which (model, prompt, sample index) keys belong to a run, and with which seed.

    A sample whose key, suite name or seed does not match the manifest was appended from another run
    (or edited): counting it would mix two experiments in one mean.
    """

    def __init__(self, manifest: Manifest) -> None:
        self.suite = manifest.suite.name
        self.models = set(manifest.model_names)
        self.prompts = {p.id for p in manifest.suite.definition.prompts}
        self.samples_per_prompt = manifest.suite.samples_per_prompt
        self.sampling_seed = manifest.suite.sampling_seed
        self.shard = Shard(manifest.shard.index, manifest.shard.count) if manifest.shard else None

    def problem(self, record: dict[str, Any]) -> str | None:
        """Why ``record`` is not a sample of this run, or None."""
        model, prompt_id, index = record["model"], record["prompt_id"], record["sample_index"]
        if record["suite"] != self.suite:
            return f"suite {record['suite']!r} is not this run's suite {self.suite!r}"
        if model not in self.models:
            return f"model {model!r} is not one of this run's models ({', '.join(sorted(self.models))})"
        if prompt_id not in self.prompts:
            return f"prompt_id {prompt_id!r} is not in this run's suite"
        if index >= self.samples_per_prompt:
            return f"sample_index {index} is beyond samples_per_prompt {self.samples_per_prompt}"
        if self.shard is not None and not self.shard.owns(model, prompt_id, index):
            return f"sample ({model}, {prompt_id}, {index}) belongs to another shard than {self.shard.index}/{self.shard.count}"
        seed = record.get("seed")
        if (
            seed is not None
            and self.sampling_seed is not None
            and seed != derive_seed(self.sampling_seed, prompt_id, index)
        ):
            return f"seed {seed} is not this suite's seed for ({prompt_id}, {index}): made with other sampling"
        return None

    def expected(self, model: str) -> int:
        """How many samples a finished model has (its shard's share when sharded)."""
        if self.shard is None:
            return len(self.prompts) * self.samples_per_prompt
        return sum(
            self.shard.owns(model, prompt, index) for prompt in self.prompts for index in range(self.samples_per_prompt)
        )


def read_samples(path: Path, manifest: Manifest) -> list[dict[str, Any]]:
    """Every sample line, validated; duplicates and foreign samples are refused naming the line."""
    membership = SuiteMembership(manifest)
    first_line: dict[SampleKey, int] = {}
    samples: list[dict[str, Any]] = []
    for number, value in read_jsonl(path):
        where = f"{path}:{number}"
        record = _validated(SampleRecord, value, where)
        problem = membership.problem(record)
        if problem is not None:
            raise DamagedRecordError(f"{where}: {problem}; remove the line or use the run directory it came from")
        key: SampleKey = (record["model"], record["prompt_id"], record["sample_index"])
        if key in first_line:
            raise DamagedRecordError(
                f"{where}: sample (model {key[0]}, prompt {key[1]}, index {key[2]}) already recorded at line "
                f"{first_line[key]}; remove the duplicate line"
            )
        first_line[key] = number
        samples.append(record)
    return samples


def read_model_metrics(path: Path, models: set[str]) -> list[dict[str, Any]]:
    """One record per model: a resumed model's later line replaces its earlier one (never both counted)."""
    latest: dict[str, dict[str, Any]] = {}
    for number, value in read_jsonl(path):
        where = f"{path}:{number}"
        record = _validated(ModelMetricsRecord, value, where)
        if record["model"] not in models:
            raise DamagedRecordError(f"{where}: model {record['model']!r} is not one of this run's models")
        latest[record["model"]] = record
    return list(latest.values())


def read_metric_registry(path: Path) -> dict[str, dict[str, Any]]:
    """metrics.json: name -> unit, direction, level, kind (missing file = no metrics recorded)."""
    if not path.exists():
        return {}
    data = read_json(path, "run directory")
    if not isinstance(data, dict):
        raise DamagedRecordError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    try:
        _METRICS_FILE.validate_python(data)
    except ValidationError as exc:
        raise DamagedRecordError(describe_validation_error(exc, str(path)) + "; the run directory is damaged") from None
    return data
