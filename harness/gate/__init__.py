"""CI regression gates on metrics: ``harness gate`` and ``harness baseline export``.

Modules: ``data`` (what is compared), ``baseline`` (baseline.json), ``rules`` (YAML rules),
``stats`` (tests, bootstrap, Holm), ``compare`` (one metric × model), ``engine`` (checks and
decision), ``report`` (table, Markdown, JUnit, JSON), ``commands`` (the Typer commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["GateResult", "run_gate"]


def __getattr__(name: str) -> Any:
    """Load the engine (scipy, pandas) on first use, so registering the gate commands stays cheap."""
    if name in __all__:
        from harness.gate import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'harness.gate' has no attribute {name!r}")


if TYPE_CHECKING:
    from harness.gate.engine import GateResult, run_gate
