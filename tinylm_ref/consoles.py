"""Consoles for both CLIs: tables never cut when output goes to a pipe or a file.

Rich sizes a console that is not a terminal to 80 columns, so ``harness plugins | cat`` or a CI log cut
table cells with an ellipsis. Off a terminal the width is set far wider than any row, so every table is
laid out at its natural width, as ``ls -l | cat`` is.
"""

from __future__ import annotations

from rich.console import Console

#: Width used when the output is not a terminal: wide enough for any row, so nothing is truncated.
PIPE_WIDTH = 10_000


def make_console(stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)
