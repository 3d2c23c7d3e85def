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
def register_trackers(register: Callable[[Any], None]) -> None:
    """Register experiment trackers: call ``register(tracker)`` with ``harness.types.Tracker`` objects.

    ``harness run --track NAME`` (and ``harness track RUN_DIR --to NAME``) hands the finished run to the
    tracker of that name: MLflow is built in; a W&B, Hub or database tracker is a plugin with this hook.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add subcommands to the ``harness`` Typer app."""
