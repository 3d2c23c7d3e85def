"""CI regression gates on metrics: ``harness gate`` and ``harness baseline export``.

Modules: ``data`` (what is compared), ``baseline`` (baseline.json), ``rules`` (YAML rules),
``stats`` (tests, bootstrap, Holm), ``compare`` (one metric × model), ``engine`` (checks and
decision), ``report`` (table, Markdown, JUnit, JSON), ``commands`` (the Typer commands).
"""

from harness.gate.engine import GateResult, run_gate

__all__ = ["GateResult", "run_gate"]
