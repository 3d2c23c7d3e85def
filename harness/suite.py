"""Prompt suites: YAML files validated with errors that name the file, field, line and expectation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import UserError, did_you_mean
from harness.types import SamplingParams


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    category: str = "general"
    text: str = Field(min_length=1)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.8, ge=0.0)
    top_k: int | None = Field(50, ge=1)
    max_new_tokens: int = Field(256, ge=1, le=100_000)
    seed: int = 1234

    def params(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_k, self.max_new_tokens, self.seed)


class Reference(BaseModel):
    """Held-out texts for ``heldout_bpb``: a local TinyStories-format file or a Hub dataset file."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    hub_dataset: str | None = None  # e.g. roneneldan/TinyStories (needs network or a warm cache)
    hub_file: str | None = None
    max_texts: int = Field(200, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> Reference:
        if (self.path is None) == (self.hub_dataset is None):
            raise ValueError("give exactly one of 'path' or 'hub_dataset' (with 'hub_file')")
        if self.hub_dataset and not self.hub_file:
            raise ValueError("'hub_dataset' needs 'hub_file'")
        return self


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    prompts: list[Prompt] | None = None
    prompts_file: str | None = None
    samples_per_prompt: int = Field(1, ge=1)
    sampling: Sampling = Sampling()
    metrics: list[str] | dict[str, dict[str, Any] | None] | None = None
    reference: Reference | None = None
    judge: str | None = None
    warmup: int = Field(2, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _prompt_source(self) -> Suite:
        if (self.prompts is None) == (self.prompts_file is None):
            raise ValueError("give exactly one of 'prompts' (inline list) or 'prompts_file'")
        return self

    def metric_options(self) -> dict[str, dict[str, Any]] | None:
        """Metric name -> options, or None for "every default metric"."""
        if self.metrics is None:
            return None
        if isinstance(self.metrics, list):
            return {name: {} for name in self.metrics}
        return {name: dict(options or {}) for name, options in self.metrics.items()}


class LoadedSuite(BaseModel):
    """A validated suite with its prompts resolved, plus where it came from."""

    suite: Suite
    path: Path
    prompts: list[Prompt]

    @property
    def sha256(self) -> str:
        """Hash of everything that changes results (prompts, sampling, metrics), not of formatting."""
        data = self.suite.model_dump(exclude={"description", "prompts_file", "prompts", "device", "threads"})
        data["prompts"] = [p.model_dump() for p in self.prompts]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    @property
    def prompts_sha256(self) -> str:
        return hashlib.sha256(json.dumps([[p.id, p.text] for p in self.prompts]).encode()).hexdigest()


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at pydantic location ``loc`` (deepest node found)."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not valid UTF-8 (byte {exc.start}); save the file as UTF-8") from exc


def _field_error(path: Path, root: yaml.Node | None, error: dict[str, Any], model: type[BaseModel]) -> str:
    loc = tuple(
        part
        for part in error["loc"]
        if not (isinstance(part, str) and part in {"list[Prompt]", "dict[str,nullable[dict[str,any]]]", "list[str]"})
    )
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = _line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    if error["type"] == "extra_forbidden":
        known = list(model.model_fields) if len(loc) == 1 else []
        if len(loc) > 1 and loc[0] == "sampling":
            known = list(Sampling.model_fields)
        elif len(loc) > 2 and loc[0] == "prompts":
            known = list(Prompt.model_fields)
        return f"{where}: unknown field '{field}'{did_you_mean(str(loc[-1]), known)}"
    return f"{where}: field '{field}': {error['msg']}"


def _load_prompts_file(path: Path, suite_path: Path) -> list[Prompt]:
    text = _read_text(path)
    try:
        data = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else yaml.safe_load(text)
        )
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot parse prompts ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc
    if isinstance(data, dict) and "prompts" in data:
        data = data["prompts"]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of prompts (id, category, text), referenced from {suite_path}")
    prompts = []
    for index, item in enumerate(data):
        try:
            prompts.append(Prompt.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise UserError(
                f"{path}: prompt #{index + 1}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}"
            ) from exc
    return prompts


def load_suite(path: str | Path) -> LoadedSuite:
    """Parse and validate a suite file; every problem is a one-line UserError."""
    path = Path(path)
    text = _read_text(path)
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        detail = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise UserError(f"{where}: malformed YAML ({detail})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: a suite must be a YAML mapping with at least 'name' and 'prompts'")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise UserError(_field_error(path, root, exc.errors()[0], Suite)) from exc
    prompts = suite.prompts if suite.prompts is not None else _load_prompts_file(path.parent / suite.prompts_file, path)
    if not prompts:
        raise UserError(f"{path}: field 'prompts': the suite has no prompts; add at least one")
    seen: dict[str, int] = {}
    for index, prompt in enumerate(prompts):
        if prompt.id in seen:
            raise UserError(
                f"{path}: duplicate prompt id {prompt.id!r} (prompts #{seen[prompt.id] + 1} and #{index + 1}); ids must be unique"
            )
        seen[prompt.id] = index
    return LoadedSuite(suite=suite, path=path, prompts=prompts)
