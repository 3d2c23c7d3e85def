"""Every hook must have a documented signature in docs/plugins.md and a test named test_hook_<name>."""

import inspect
import re
from pathlib import Path

from harness import hookspecs

REPO = Path(__file__).resolve().parents[2]


def _hooks():
    return {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "harness_spec")}


def test_there_are_hooks():
    assert set(_hooks()) >= {"register_backends", "register_metrics", "register_report_sections", "register_commands"}


def test_every_hook_is_documented_with_its_signature():
    docs = (REPO / "docs" / "plugins.md").read_text()
    headings = set(re.findall(r"^### `(\w+\([^)]*\))`", docs, flags=re.M))
    for name, fn in _hooks().items():
        params = ", ".join(inspect.signature(fn).parameters)
        assert f"{name}({params})" in headings, f"docs/plugins.md lacks a '### `{name}({params})`' section"


def test_every_hook_has_a_test():
    sources = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for name in _hooks():
        assert re.search(rf"def test_hook_{name}\b", sources), f"no test named test_hook_{name}"
