"""Prompt suites: YAML files validated with errors that name the file, field, line and expectation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.dataset_prompts import DatasetPrompts, load_dataset_prompts
from harness.errors import UserError, did_you_mean
from harness.types import MAX_NEW_TOKENS, MAX_SEED, MAX_THREADS, MAX_TOP_K, SamplingParams
from harness.yaml_safe import MAX_FILE_BYTES, check_finite, decode_utf8, line_of, load_json_line, load_yaml, read_capped

#: No model's context holds a longer prompt (a 128k-token context is ~512 KiB of text); refused before
#: any tokenizer sees it, so a 50 MB prompt costs a file-size check, not minutes and gigabytes.
MAX_PROMPT_BYTES = 2**20
MAX_SAMPLES_PER_PROMPT = 100_000
MAX_WARMUP = 1_000
MAX_TEXTS = 1_000_000
#: Every number in a suite is finite: no field means NaN or infinity (metric options included).
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class Prompt(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1, max_length=1000)
    category: str = Field("general", max_length=1000)
    text: str = Field(min_length=1)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class Sampling(BaseModel):
    model_config = _STRICT
    temperature: float = Field(0.8, ge=0.0)
    top_k: int | None = Field(50, ge=1, le=MAX_TOP_K)
    max_new_tokens: int = Field(256, ge=1, le=MAX_NEW_TOKENS)
    seed: int = Field(1234, ge=0, le=MAX_SEED)

    def params(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_k, self.max_new_tokens, self.seed)


class Reference(BaseModel):
    """Held-out texts for ``heldout_bpb``: a local TinyStories-format file or a Hub dataset file."""

    model_config = _STRICT
    path: str | None = None
    hub_dataset: str | None = None  # e.g. roneneldan/TinyStories (needs network or a warm cache)
    hub_file: str | None = None
    max_texts: int = Field(200, ge=1, le=MAX_TEXTS)

    @model_validator(mode="after")
    def _one_source(self) -> Reference:
        if (self.path is None) == (self.hub_dataset is None):
            raise ValueError("give exactly one of 'path' or 'hub_dataset' (with 'hub_file')")
        if self.hub_dataset and not self.hub_file:
            raise ValueError("'hub_dataset' needs 'hub_file'")
        return self


class Suite(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    prompts: list[Prompt] | DatasetPrompts | None = None  # inline, or {dataset: ..., split, column, ...}
    prompts_file: str | None = None
    samples_per_prompt: int = Field(1, ge=1, le=MAX_SAMPLES_PER_PROMPT)
    sampling: Sampling = Sampling()
    metrics: list[str] | dict[str, dict[str, Any] | None] | None = None
    reference: Reference | None = None
    judge: str | None = None
    warmup: int = Field(2, ge=0, le=MAX_WARMUP)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)

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
    prompt_source: dict[str, Any] | None = None  # where dataset prompts came from (recorded in the manifest)

    @property
    def sha256(self) -> str:
        """Hash of everything that changes results (prompts, sampling, metrics), not of formatting."""
        data = self.suite.model_dump(exclude={"description", "prompts_file", "prompts", "device", "threads"})
        data["prompts"] = [p.model_dump() for p in self.prompts]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    @property
    def prompts_sha256(self) -> str:
        return hashlib.sha256(json.dumps([[p.id, p.text] for p in self.prompts]).encode()).hexdigest()


def _read_text(path: Path, what: str) -> str:
    """The file's text, read once with a byte cap (see harness.yaml_safe.read_capped)."""
    return decode_utf8(read_capped(path, what, MAX_FILE_BYTES), path, what)


def _field_error(path: Path, root: yaml.Node | None, error: dict[str, Any], model: type[BaseModel]) -> str:
    loc = tuple(
        part
        for part in error["loc"]
        if not (
            isinstance(part, str)
            and part in {"list[Prompt]", "DatasetPrompts", "dict[str,nullable[dict[str,any]]]", "list[str]"}
        )
    )
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    if error["type"] == "extra_forbidden":
        known = list(model.model_fields) if len(loc) == 1 else []
        if len(loc) > 1 and loc[0] == "sampling":
            known = list(Sampling.model_fields)
        elif len(loc) > 2 and loc[0] == "prompts":
            known = list(Prompt.model_fields)
        elif len(loc) == 2 and loc[0] == "prompts":
            known = list(DatasetPrompts.model_fields)
        return f"{where}: unknown field '{field}'{did_you_mean(str(loc[-1]), known)}"
    return f"{where}: field '{field}': {error['msg']}"


def _load_prompts_file(path: Path, suite_path: Path) -> list[Prompt]:
    text = _read_text(path, "prompts file (YAML or JSONL)")
    if path.suffix == ".jsonl":
        data = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(load_json_line(line))
            except ValueError as exc:  # JSONDecodeError, NaN/Infinity, nesting
                detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                raise UserError(f"{path}:{number}: cannot parse prompts ({detail}); one JSON object per line") from exc
        check_finite(data, None, path)
    else:
        data, _ = load_yaml(text, path)
    if isinstance(data, dict) and "prompts" in data:
        data = data["prompts"]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of prompts (id, category, text), referenced from {suite_path}")
    return _validate_prompts(data, str(path))


def _validate_prompts(items: list[Any], where: str) -> list[Prompt]:
    prompts = []
    for index, item in enumerate(items):
        try:
            prompts.append(Prompt.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise UserError(
                f"{where}: prompt #{index + 1}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}"
            ) from exc
    return prompts


def _check_prompt_sizes(prompts: list[Prompt], path: Path) -> None:
    for prompt in prompts:
        size = len(prompt.text.encode("utf-8", "surrogatepass"))
        if size > MAX_PROMPT_BYTES:
            raise UserError(
                f"{path}: prompt {prompt.id!r} is {size:,} bytes; a prompt may be at most {MAX_PROMPT_BYTES:,} bytes "
                "(far more than any model's context holds); shorten it"
            )


def load_suite(path: str | Path) -> LoadedSuite:
    """Parse and validate a suite file; every problem is a one-line UserError."""
    path = Path(path)
    data, root = load_yaml(_read_text(path, "suite YAML file"), path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: a suite must be a YAML mapping with at least 'name' and 'prompts'")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # prompts is a list or a mapping: report the error of the form the file uses, not the other one's
        form = "DatasetPrompts" if isinstance(data.get("prompts"), dict) else "list[Prompt]"
        other = {"DatasetPrompts", "list[Prompt]"} - {form}
        relevant = [e for e in errors if not other & set(map(str, e["loc"]))] or errors
        raise UserError(_field_error(path, root, relevant[0], Suite)) from exc
    source = None
    if isinstance(suite.prompts, DatasetPrompts):
        rows, source = load_dataset_prompts(suite.prompts, path)
        prompts = _validate_prompts(rows, f"{path}: prompts.dataset {suite.prompts.dataset}")
    elif suite.prompts is not None:
        prompts = suite.prompts
    else:
        prompts = _load_prompts_file(path.parent / suite.prompts_file, path)
    if not prompts:
        raise UserError(f"{path}: field 'prompts': the suite has no prompts; add at least one")
    _check_prompt_sizes(prompts, path if suite.prompts_file is None else path.parent / str(suite.prompts_file))
    seen: dict[str, int] = {}
    for index, prompt in enumerate(prompts):
        if prompt.id in seen:
            raise UserError(
                f"{path}: duplicate prompt id {prompt.id!r} (prompts #{seen[prompt.id] + 1} and #{index + 1}); ids must be unique"
            )
        seen[prompt.id] = index
    return LoadedSuite(suite=suite, path=path, prompts=prompts, prompt_source=source)
