"""Suites by name: the suites shipped inside the package, and how a command-line argument finds one.

Why ship them: a ``pip install``-ed harness has no checkout, so ``harness run tinystories`` must find the
study's suite without a path. A path always wins over a name (a user's own ``smoke`` file next to them is
what they mean), and a name that is neither gets one line listing what is bundled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from harness.errors import UserError, did_you_mean

SUITE_SUFFIXES = (".yaml", ".yml")


def bundled_suites() -> dict[str, Path]:
    """Name -> file of every suite shipped in ``harness/suites`` (sorted by name)."""
    folder = Path(str(resources.files("harness") / "suites"))
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in SUITE_SUFFIXES and p.is_file()}


def resolve_suite(argument: str | Path) -> Path:
    """The suite file an argument means: an existing path as given, else a bundled suite of that name."""
    path = Path(argument)
    if path.exists():
        return path
    text = str(argument)
    bundled = bundled_suites()
    name = path.stem if path.suffix in SUITE_SUFFIXES and path.parent == Path(".") else text
    if name in bundled:
        return bundled[name]
    if "/" in text or path.suffix in SUITE_SUFFIXES:  # meant as a path: say exactly that
        raise UserError(f"{text}: file not found")
    raise UserError(
        f"{text}: no such file and no bundled suite of that name{did_you_mean(name, list(bundled))}; bundled "
        f"suites: {', '.join(bundled) or 'none'} ('harness suites list' shows them)"
    )


@dataclass(frozen=True)
class SuiteSummary:
    """One row of ``harness suites list``."""

    name: str
    prompts: int
    categories: dict[str, int]
    samples_per_prompt: int
    max_new_tokens: int
    description: str
    path: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(path: Path) -> SuiteSummary:
    """Load and describe one suite file (the same validation as ``harness run``)."""
    from harness.suite import load_suite

    loaded = load_suite(path)
    categories = Counter(p.category for p in loaded.prompts)
    return SuiteSummary(
        name=loaded.suite.name,
        prompts=len(loaded.prompts),
        categories=dict(categories),
        samples_per_prompt=loaded.suite.samples_per_prompt,
        max_new_tokens=loaded.suite.sampling.max_new_tokens,
        description=" ".join(loaded.suite.description.split()),
        path=str(path),
    )
