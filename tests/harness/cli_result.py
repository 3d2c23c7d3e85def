"""Typer's CliRunner for a sub-app, with user errors mapped the way ``harness.cli.main`` maps them.

Commands raise ``UserError`` and leave the exit to ``main()`` (one error path); tests that drive a
sub-app directly go through the same mapping (``harness.cli.error_line``) instead of restating it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import typer
from typer.testing import CliRunner

from harness.cli import error_line
from harness.errors import UserError


def invoke(app: typer.Typer, args: list[Any]) -> SimpleNamespace:
    result = CliRunner().invoke(app, [str(a) for a in args])
    stderr = result.stderr
    exit_code = result.exit_code
    if isinstance(result.exception, UserError):
        stderr, exit_code = stderr + error_line(result.exception) + "\n", result.exception.exit_code
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(
        exit_code=exit_code, stdout=result.stdout, stderr=stderr, output=result.stdout + stderr, exception=None
    )
