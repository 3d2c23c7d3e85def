"""Plugin hooks. Each takes a ``register`` callback, so a hook can grow without breaking plugins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("harness")
hookimpl = pluggy.HookimplMarker("harness")


@hookspec
def register_backends(register: Callable[[Any], None]) -> None:
    """Register model backends: call ``register(backend)`` with objects following ``harness.types.Backend``."""


@hookspec
def register_metrics(register: Callable[[Any], None]) -> None:
    """Register metrics: call ``register(metric)`` with ``harness.types.Metric`` instances."""


@hookspec
def register_report_sections(register: Callable[[Any], None]) -> None:
    """Register HTML report sections: call ``register(section)`` with ``harness.report.ReportSection`` objects."""


@hookspec
def register_commands(app: Any) -> None:
    """Add subcommands to the ``harness`` Typer app."""
