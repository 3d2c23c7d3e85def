"""``manifest.json`` as typed records: what ran, where, with which settings, and how each model fared.

Why typed: the manifest used to be a dict read and written in nine modules, with old-run defaults
(float32, batch size 1, no compile) restated in four places, so a damaged or hand-edited manifest
surfaced as a ``KeyError`` deep in a report. Here every field is validated once, on read; the
defaults for runs made before a field existed live only in :class:`RunSettings`; unknown keys (from
a newer harness or a plugin) are kept and written back unchanged. The JSON stays format_version 1.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import DamagedRecordError

FORMAT_VERSION = 1

RunStatus = Literal["running", "complete", "complete_with_failures", "interrupted", "failed"]
ModelStatus = Literal["pending", "ok", "failed", "interrupted"]
#: A run in one of these states has written its summaries: readers may rely on them.
FINISHED_STATUSES = ("complete", "complete_with_failures", "failed")


class Record(BaseModel):
    """Strict types, finite numbers, unknown keys kept (written back as they came)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, validate_assignment=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, without defaults that were never set (old runs read back unchanged)."""
        return self.model_dump(mode="json", exclude_unset=True)


class ShardSpec(Record):
    index: int = Field(ge=1)
    count: int = Field(ge=1)


class RunSettings(Record):
    """Options that change the numbers, so a resume keeps them and a merge requires them equal.

    The defaults are what runs recorded before each field existed used.
    """

    batch_size: int = Field(default=1, ge=1)
    dtype: str = "float32"
    compile: bool = False
    shard: ShardSpec | None = None

    def differences(self, other: RunSettings) -> list[tuple[str, Any, Any]]:
        """``(field, mine, theirs)`` for every setting that differs."""
        return [
            (name, getattr(self, name), getattr(other, name))
            for name in ("batch_size", "dtype", "compile")
            if getattr(self, name) != getattr(other, name)
        ]


class Throughput(Record):
    """Generation time and tokens of one model; several shards' records combine by summing."""

    batch_size: int = Field(default=1, ge=1)
    tokens: int = Field(default=0, ge=0)
    generation_s: float = Field(default=0.0, ge=0)
    tokens_per_s: float | None = Field(default=None, ge=0)

    @classmethod
    def of(cls, batch_size: int, tokens: int, generation_s: float) -> Throughput:
        rate = round(tokens / generation_s, 2) if generation_s > 0 else None
        return cls(batch_size=batch_size, tokens=tokens, generation_s=round(generation_s, 4), tokens_per_s=rate)

    @classmethod
    def combine(cls, parts: list[Throughput]) -> Throughput:
        """Summed over shards: generation time on several machines, not a wall-clock span."""
        return cls.of(
            parts[0].batch_size if parts else 1,
            sum(p.tokens for p in parts),
            sum(p.generation_s for p in parts),
        )


class ModelEntry(Record):
    name: str = Field(min_length=1)
    spec: str
    status: ModelStatus = "pending"
    error: str | None = None
    info: dict[str, Any] | None = None
    load_s: float | None = None
    wall_s: float | None = None
    throughput: Throughput | None = None
    timing: dict[str, Any] | None = None  # contention probe of the generation window (harness.contention)
    concurrency: int | None = Field(default=None, ge=1)  # a load level (harness.load): requests kept in flight


class PromptDefinition(Record):
    id: str = Field(min_length=1)
    text: str
    category: str | None = None


class SuiteDefinition(Record):
    prompts: list[PromptDefinition]


class SuiteRecord(Record):
    name: str
    path: str
    sha256: str = Field(min_length=1)
    prompts_sha256: str | None = None
    n_prompts: int = Field(ge=0)
    samples_per_prompt: int = Field(ge=1)
    sampling: dict[str, Any]
    warmup: int = Field(default=0, ge=0)
    definition: SuiteDefinition
    overrides: dict[str, int] = Field(default_factory=dict)  # --limit / --seed / --samples-per-prompt given
    partial: bool = False  # --limit dropped prompts: never a gate baseline
    prompt_source: dict[str, Any] | None = None  # prompts from a dataset: its name, revision, fingerprint, rows

    @property
    def sampling_seed(self) -> int | None:
        seed = self.sampling.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None

    def identity(self) -> dict[str, Any]:
        """What decides whether two runs are comparable (the baseline file stores exactly this)."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "prompts_sha256": self.prompts_sha256,
            "n_prompts": self.n_prompts,
            "samples_per_prompt": self.samples_per_prompt,
            "sampling": self.sampling,
            **({"overrides": self.overrides} if self.overrides else {}),
            **({"partial": True} if self.partial else {}),
        }


class Manifest(Record):
    format_version: Literal[1]
    run_id: str
    status: RunStatus
    created_at: str
    finished_at: str | None = None
    command: list[str] = Field(default_factory=list)
    suite: SuiteRecord
    models: list[ModelEntry]
    batch_size: int = Field(default=1, ge=1)
    dtype: str = "float32"
    compile: bool = False
    shard: ShardSpec | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    resumed_at: list[str] | None = None
    merged_from: list[dict[str, Any]] | None = None
    executor: dict[str, Any] | None = None  # where the samples were made, when not here (--executor ray)

    @property
    def settings(self) -> RunSettings:
        return RunSettings(batch_size=self.batch_size, dtype=self.dtype, compile=self.compile, shard=self.shard)

    def apply(self, settings: RunSettings) -> None:
        self.batch_size, self.dtype, self.compile, self.shard = (
            settings.batch_size,
            settings.dtype,
            settings.compile,
            settings.shard,
        )

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def model(self, name: str) -> ModelEntry:
        for entry in self.models:
            if entry.name == name:
                return entry
        raise KeyError(name)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


def describe_validation_error(exc: ValidationError, where: str, root: str = "") -> str:
    """The first problem of a pydantic error as ``where: field a.b[2]: message`` (one line)."""
    first = exc.errors()[0]
    parts: list[str] = [root] if root else []
    for loc in first["loc"]:
        if isinstance(loc, int):
            parts[-1:] = [f"{parts[-1]}[{loc}]" if parts else f"[{loc}]"]
        else:
            parts.append(str(loc))
    field = ".".join(parts) or "(top level)"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: field {field}: {first['msg'].lower()}{suffix}"


def parse_manifest(data: Any, where: str) -> Manifest:
    if not isinstance(data, dict):
        raise DamagedRecordError(f"{where}: expected a JSON object, got {type(data).__name__}; the run is damaged")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise DamagedRecordError(
            f"{where}: format_version {version!r} is not supported (expected {FORMAT_VERSION}); "
            "use the harness version that wrote it"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise DamagedRecordError(describe_validation_error(exc, where)) from None
    names = manifest.model_names
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise DamagedRecordError(f"{where}: model {duplicate!r} is listed twice in models; the run is damaged")
    return manifest
