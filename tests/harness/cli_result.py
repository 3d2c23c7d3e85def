"""Typer's CliRunner for a sub-app, with user errors mapped the way ``harness.cli.main`` maps them.

Commands raise ``UserError`` and leave the exit to ``main()`` (one error path); tests that drive a
sub-app directly go through the same mapping (``harness.cli.error_line``) instead of restating it.
"""

from __future__ import annotations

from pathlib import Path
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


def run_main(args: list[Any], cwd: Path | None = None) -> SimpleNamespace:
    """``harness ARGS`` in this process through the real entry point (``harness.cli.main``).

    Much faster than a subprocess (no interpreter and torch start per call), for property tests that
    drive many commands. Returns ``returncode``, ``stdout`` and ``stderr`` like ``subprocess.run``.
    """
    import contextlib
    import io
    import os
    import sys

    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["harness", *map(str, args)]
    code: int | str | None = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code
            except Exception:  # a traceback is exactly what these tests look for
                import traceback

                err.write(traceback.format_exc())
                code = "traceback"
    finally:
        sys.argv = argv
        os.chdir(old_cwd)
    return SimpleNamespace(returncode=0 if code is None else code, stdout=out.getvalue(), stderr=err.getvalue())
