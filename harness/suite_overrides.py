"""Command-line changes to a suite (``--limit``, ``--seed``, ``--samples-per-prompt``) without editing its file.

Why they change the suite itself rather than the run: the overridden prompts, seed and sample count are
applied to the loaded suite before anything hashes it, so the suite hash recorded in the manifest (and the
baseline exported from it) is that of what actually ran; a gate can never take a 2-prompt quick run or a
different seed for the original suite. The overrides are also recorded by name (``suite.overrides``), and
a run whose ``--limit`` dropped prompts is marked ``partial``: the gate refuses it as a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.suite import MAX_SAMPLES_PER_PROMPT, LoadedSuite
from harness.types import MAX_SEED
from harness.validation import check_int

#: At most this many prompts of each category (suites of thousands of prompts exist; 1M is "no limit").
MAX_LIMIT = 1_000_000


@dataclass(frozen=True)
class SuiteOverrides:
    """What the command line changes; ``None`` leaves the suite's own value."""

    limit: int | None = None  # the first N prompts of each category, in file order
    seed: int | None = None
    samples_per_prompt: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None:
            check_int("--limit", self.limit, 1, MAX_LIMIT)
        if self.seed is not None:
            check_int("--seed", self.seed, 0, MAX_SEED)
        if self.samples_per_prompt is not None:
            check_int("--samples-per-prompt", self.samples_per_prompt, 1, MAX_SAMPLES_PER_PROMPT)

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> SuiteOverrides:
        record = record or {}
        return cls(record.get("limit"), record.get("seed"), record.get("samples_per_prompt"))

    def as_record(self) -> dict[str, int]:
        """The overrides that were given, by flag name without dashes (empty when none)."""
        values = {"limit": self.limit, "seed": self.seed, "samples_per_prompt": self.samples_per_prompt}
        return {key: value for key, value in values.items() if value is not None}

    def __bool__(self) -> bool:
        return bool(self.as_record())

    def describe(self) -> str:
        return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in self.as_record().items())


@dataclass(frozen=True)
class OverriddenSuite:
    loaded: LoadedSuite
    overrides: SuiteOverrides
    partial: bool  # --limit dropped at least one prompt


def apply_overrides(loaded: LoadedSuite, overrides: SuiteOverrides) -> OverriddenSuite:
    """The suite as it will run: prompts limited per category (file order kept), seed and count replaced."""
    prompts = loaded.prompts
    if overrides.limit is not None:
        taken: dict[str, int] = {}
        kept = []
        for prompt in prompts:
            if taken.get(prompt.category, 0) < overrides.limit:
                taken[prompt.category] = taken.get(prompt.category, 0) + 1
                kept.append(prompt)
        prompts = kept
    update: dict[str, Any] = {}
    if overrides.samples_per_prompt is not None:
        update["samples_per_prompt"] = overrides.samples_per_prompt
    if overrides.seed is not None:
        update["sampling"] = loaded.suite.sampling.model_copy(update={"seed": overrides.seed})
    suite = loaded.suite.model_copy(update=update) if update else loaded.suite
    return OverriddenSuite(
        loaded=LoadedSuite(suite=suite, path=loaded.path, prompts=prompts, prompt_source=loaded.prompt_source),
        overrides=overrides,
        partial=len(prompts) < len(loaded.prompts),
    )


def merge_with_recorded(given: SuiteOverrides, recorded: SuiteOverrides, run_dir: str) -> SuiteOverrides:
    """A resumed run keeps the overrides it started with; a flag that contradicts them is an error."""
    for key, value in given.as_record().items():
        if recorded.as_record().get(key) != value:
            was = recorded.as_record().get(key)
            flag = f"--{key.replace('_', '-')}"
            started = f"{flag} {was}" if was is not None else f"no {flag}"
            raise UserError(f"{run_dir}: was run with {started}; resume without {flag}")
    return recorded


def suite_as_recorded(definition: dict[str, Any], path: str, sha256: str, run_dir: str) -> LoadedSuite:
    """Rebuild the suite a run ran (overrides applied) from its manifest, for ``--resume DIR`` alone.

    The manifest keeps the whole definition (prompts inline), so a resume needs neither the suite file nor
    the flags it was started with; the rebuilt suite must hash to the recorded value, or it is not the same.
    """
    from pydantic import ValidationError

    from harness.suite import Prompt, Suite

    data = dict(definition)
    prompts = data.pop("prompts", None)
    data["prompts_file"] = None
    try:
        suite = Suite.model_validate({**data, "prompts": prompts})
        loaded = LoadedSuite(suite=suite, path=path, prompts=[Prompt.model_validate(p) for p in prompts or []])
    except (ValidationError, TypeError) as exc:
        raise UserError(
            f"{run_dir}: the suite recorded in manifest.json cannot be rebuilt ({exc.__class__.__name__}); "
            "resume with the suite file: harness run SUITE --resume DIR"
        ) from None
    if loaded.sha256 != sha256:
        raise UserError(
            f"{run_dir}: the suite recorded in manifest.json no longer hashes to {sha256[:12]} (written by another "
            "version?); resume with the suite file: harness run SUITE --resume DIR"
        )
    return loaded


def suite_for_run(argument: str | None, overrides: SuiteOverrides, resume_dir: Any | None) -> OverriddenSuite:
    """The suite ``harness run`` runs: from its argument (a path or a bundled name) with the overrides, or,
    on ``--resume DIR``, the one the run started with (a suite given then must be that suite, and override
    flags must repeat the recorded ones)."""
    from harness.records import read_manifest
    from harness.suite import load_suite
    from harness.suite_catalog import resolve_suite

    if resume_dir is None:
        if argument is None:
            raise UserError(
                "give a suite: a YAML file or a bundled name ('harness suites list'), e.g. harness run smoke"
            )
        return apply_overrides(load_suite(resolve_suite(argument)), overrides)
    record = read_manifest(resume_dir).suite
    recorded = merge_with_recorded(overrides, SuiteOverrides.from_record(record.overrides), str(resume_dir))
    if argument is None:
        loaded = suite_as_recorded(record.definition.model_dump(), record.path, record.sha256, str(resume_dir))
        return OverriddenSuite(loaded=loaded, overrides=recorded, partial=record.partial)
    # the runner compares this suite's hash with the recorded one and names the mismatch
    return apply_overrides(load_suite(resolve_suite(argument)), recorded)
